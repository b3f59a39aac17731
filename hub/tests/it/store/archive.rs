//! A store folder packed into one zstd-compressed file, so a sled store can
//! be committed as a test fixture: every regular file under the folder, by
//! relative path, with its bytes.
//!
//! Layout before compression: the magic line, then per file a `u16` path
//! length, the UTF-8 path (`/`-separated), a `u64` byte count and the bytes
//! (integers big-endian).

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"station-sync store archive 1\n";

fn files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}

/// Packs every file under `dir` into `archive`.
pub fn pack(dir: &Path, archive: &Path) {
    let mut paths = Vec::new();
    files(dir, dir, &mut paths);
    let mut raw = MAGIC.to_vec();
    for path in paths {
        let name = path.to_str().unwrap().replace('\\', "/");
        let bytes = std::fs::read(dir.join(&path)).unwrap();
        raw.extend_from_slice(&u16::try_from(name.len()).unwrap().to_be_bytes());
        raw.extend_from_slice(name.as_bytes());
        raw.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        raw.extend_from_slice(&bytes);
    }
    let packed = zstd::encode_all(raw.as_slice(), 19).unwrap();
    let mut file = std::fs::File::create(archive).unwrap();
    file.write_all(&packed).unwrap();
    file.sync_all().unwrap();
}

/// Unpacks `archive` into `dir`, which must be empty or absent.
pub fn unpack(archive: &Path, dir: &Path) {
    let mut raw = Vec::new();
    zstd::Decoder::new(std::fs::File::open(archive).unwrap())
        .unwrap()
        .read_to_end(&mut raw)
        .unwrap();
    let mut rest = raw.strip_prefix(MAGIC).expect("not a store archive");
    std::fs::create_dir_all(dir).unwrap();
    while !rest.is_empty() {
        let (len, tail) = rest.split_at(2);
        let len = u16::from_be_bytes(len.try_into().unwrap()) as usize;
        let (name, tail) = tail.split_at(len);
        let (size, tail) = tail.split_at(8);
        let size = usize::try_from(u64::from_be_bytes(size.try_into().unwrap())).unwrap();
        let (bytes, tail) = tail.split_at(size);
        rest = tail;
        let path = dir.join(std::str::from_utf8(name).unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}
