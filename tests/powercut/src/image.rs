//! The disk's two images: what running programs see (`live`) and what a power
//! cut leaves (`durable`), with the one rule that moves data from the first to
//! the second.
//!
//! # The rule
//!
//! | operation | changes | becomes durable when |
//! | --- | --- | --- |
//! | `write`, `pwrite`, truncate or extend (`ftruncate`, `O_TRUNC`) | the file's contents and size | the file is `fsync`ed or `fdatasync`ed |
//! | `create`, `mkdir` | a name in the parent directory | the parent directory is `fsync`ed |
//! | `rename` | a name removed from one directory, added to another | each directory is `fsync`ed (each side on its own) |
//! | `unlink`, `rmdir` | a name removed from the parent directory | the parent directory is `fsync`ed |
//! | `chmod` | the mode | the file (or directory) is `fsync`ed |
//! | `close`, `flush`, `sync_file_range`, a timer | nothing | never |
//!
//! `fsync` and `fdatasync` do the same here: both make the file's whole
//! contents and its size durable (the size is what `fdatasync` must keep for
//! the data to read back). Neither makes the file's *name* durable: a file
//! created and fsynced in a directory that was never fsynced is gone after a
//! cut. Syncing a directory makes every name in it durable as it is now; a
//! name whose file was never fsynced comes back as an empty file (its inode
//! reached the disk, its data did not), a new subdirectory as an empty one.
//!
//! A cut ([`Images::cut`]) replaces the live image by the durable one, keeping
//! only what is reachable from the root through durable names.
//!
//! # Invariants
//! - inode numbers are never reused, so a durable entry can never name a
//!   different file than the one that was synced;
//! - the root ([`ROOT`]) is in both images at all times;
//! - bytes of a chunk at or past the file's length are zero, so extending a
//!   file reads zeros;
//! - every change is refused whole or made whole: an operation that answers
//!   an error has changed nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::sync::Arc;
use std::time::SystemTime;

/// The root directory's inode number.
pub const ROOT: u64 = 1;

/// Size of one shared piece of a file's contents: a sync copies pointers to
/// pieces, and a write copies only the pieces it touches.
const CHUNK: usize = 64 * 1024;

/// An error number (`libc::E*`), as FUSE answers it.
pub type Errno = libc::c_int;

/// A file's contents, in copy-on-write chunks of [`CHUNK`] bytes.
#[derive(Clone, Debug, Default)]
pub struct Contents {
    /// The file's size in bytes.
    len: u64,
    /// The chunks from the start; missing ones past the end read as zeros.
    chunks: Vec<Arc<Vec<u8>>>,
}

impl Contents {
    /// The file's size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Up to `size` bytes from `offset`, fewer at the end of the file.
    pub fn read(&self, offset: u64, size: usize) -> Vec<u8> {
        let end = self.len.min(offset.saturating_add(size as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut pos = offset;
        while pos < end {
            let (index, within) = split(pos);
            let n = (CHUNK - within).min((end - pos) as usize);
            match self.chunks.get(index) {
                Some(chunk) => out.extend_from_slice(&chunk[within..within + n]),
                None => out.resize(out.len() + n, 0),
            }
            pos += n as u64;
        }
        out
    }

    /// Writes `data` at `offset`, extending the file when it goes past the end.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let needed = chunks_for(end);
        if self.chunks.len() < needed {
            self.chunks.resize_with(needed, || Arc::new(vec![0; CHUNK]));
        }
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let (index, within) = split(pos);
            let n = (CHUNK - within).min(rest.len());
            Arc::make_mut(&mut self.chunks[index])[within..within + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            pos += n as u64;
        }
        self.len = self.len.max(end);
    }

    /// Cuts or extends the file to `len` bytes; extended bytes read as zeros.
    pub fn set_len(&mut self, len: u64) {
        if len < self.len {
            self.chunks.truncate(chunks_for(len));
            let (index, within) = split(len);
            if within > 0
                && let Some(chunk) = self.chunks.get_mut(index)
            {
                Arc::make_mut(chunk)[within..].fill(0);
            }
        }
        self.len = len;
    }
}

/// The chunk holding byte `pos`, and where in it.
fn split(pos: u64) -> (usize, usize) {
    ((pos / CHUNK as u64) as usize, (pos % CHUNK as u64) as usize)
}

/// How many chunks hold the bytes before `end`.
fn chunks_for(end: u64) -> usize {
    end.div_ceil(CHUNK as u64) as usize
}

/// A file or a directory, as one image holds it.
#[derive(Clone, Debug)]
pub enum Kind {
    /// A regular file and its contents.
    File(Contents),
    /// A directory: name → inode number.
    Dir(BTreeMap<OsString, u64>),
}

/// One inode of an image.
#[derive(Clone, Debug)]
pub struct Node {
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// What it is and what it holds.
    pub kind: Kind,
}

impl Node {
    fn empty_like(&self) -> Node {
        Node {
            mode: self.mode,
            kind: match self.kind {
                Kind::File(_) => Kind::File(Contents::default()),
                Kind::Dir(_) => Kind::Dir(BTreeMap::new()),
            },
        }
    }
}

/// An inode of the live image: the node, and what a cut would lose of it.
#[derive(Clone, Debug)]
struct Live {
    /// What programs see now.
    node: Node,
    /// Last change of contents or names, for `stat`.
    mtime: SystemTime,
    /// Whether it changed since its last sync.
    unsynced: bool,
}

impl Live {
    fn new(node: Node) -> Live {
        Live {
            node,
            mtime: SystemTime::now(),
            unsynced: false,
        }
    }

    fn changed(&mut self) {
        self.mtime = SystemTime::now();
        self.unsynced = true;
    }
}

/// What `stat` reports of an inode.
#[derive(Clone, Copy, Debug)]
pub struct Attr {
    /// The inode number.
    pub ino: u64,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Last change of contents or names.
    pub mtime: SystemTime,
}

/// How many operations the disk has seen: a test shows them, and can check
/// that the program under test really synced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// `write` calls.
    pub writes: u64,
    /// `fsync` and `fdatasync` of files.
    pub file_syncs: u64,
    /// `fsync` of directories.
    pub dir_syncs: u64,
    /// Power cuts.
    pub cuts: u64,
}

/// What one power cut threw away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CutReport {
    /// Files whose contents had changed since their last sync.
    pub unsynced_files: usize,
    /// Directories whose names had changed since their last sync.
    pub unsynced_dirs: usize,
}

impl CutReport {
    /// Whether the cut lost anything at all.
    pub fn lost_anything(&self) -> bool {
        self.unsynced_files + self.unsynced_dirs > 0
    }
}

/// The live and the durable image of one disk.
#[derive(Debug)]
pub struct Images {
    /// What programs see: every inode still in use.
    live: HashMap<u64, Live>,
    /// What a cut leaves: the state of each inode at its last sync.
    durable: HashMap<u64, Node>,
    /// The next inode number to hand out.
    next_ino: u64,
    /// Operations seen.
    counts: Counts,
    /// How many more syncs complete before the power goes at the next one;
    /// `None`: no cut planned.
    syncs_left: Option<u64>,
    /// Whether a sync is held where the power went: it never completes.
    stalled: bool,
}

impl Default for Images {
    fn default() -> Self {
        Self::new()
    }
}

impl Images {
    /// An empty disk: a root directory, durable.
    pub fn new() -> Images {
        let root = Node {
            mode: 0o755,
            kind: Kind::Dir(BTreeMap::new()),
        };
        Images {
            live: HashMap::from([(ROOT, Live::new(root.clone()))]),
            durable: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            counts: Counts::default(),
            syncs_left: None,
            stalled: false,
        }
    }

    /// Plans a power cut as a sync starts, after `completed` more syncs
    /// (of files or directories) have completed: that sync, and every
    /// request after it, waits for the cut and makes nothing durable.
    pub fn stall_at_sync(&mut self, completed: u64) {
        self.syncs_left = Some(completed);
        self.stalled = false;
    }

    /// Whether a sync may go ahead; `false` (and stalled from then on) when
    /// the planned power cut comes at this one.
    pub fn begin_sync(&mut self) -> bool {
        match self.syncs_left {
            Some(0) => {
                self.stalled = true;
                false
            }
            Some(n) => {
                self.syncs_left = Some(n - 1);
                true
            }
            None => true,
        }
    }

    /// Whether a sync is held at the planned power cut.
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// Lets a held sync go (it fails) and forgets the plan.
    pub fn release(&mut self) {
        self.syncs_left = None;
        self.stalled = false;
    }

    /// Operations seen so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn live(&self, ino: u64) -> Result<&Live, Errno> {
        self.live.get(&ino).ok_or(libc::ENOENT)
    }

    fn live_mut(&mut self, ino: u64) -> Result<&mut Live, Errno> {
        self.live.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn entries(&self, dir: u64) -> Result<&BTreeMap<OsString, u64>, Errno> {
        match &self.live(dir)?.node.kind {
            Kind::Dir(entries) => Ok(entries),
            Kind::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        let live = self.live_mut(dir)?;
        if let Kind::File(_) = live.node.kind {
            return Err(libc::ENOTDIR);
        }
        live.changed();
        match &mut live.node.kind {
            Kind::Dir(entries) => Ok(entries),
            Kind::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn contents_mut(&mut self, ino: u64) -> Result<&mut Contents, Errno> {
        let live = self.live_mut(ino)?;
        if let Kind::Dir(_) = live.node.kind {
            return Err(libc::EISDIR);
        }
        live.changed();
        match &mut live.node.kind {
            Kind::File(contents) => Ok(contents),
            Kind::Dir(_) => Err(libc::EISDIR),
        }
    }

    /// The inode `name` names in `parent`.
    ///
    /// # Errors
    /// `ENOENT`, `ENOTDIR`.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.entries(parent)?.get(name).copied().ok_or(libc::ENOENT)
    }

    /// What `stat` says of `ino`.
    ///
    /// # Errors
    /// `ENOENT`.
    pub fn attr(&self, ino: u64) -> Result<Attr, Errno> {
        let live = self.live(ino)?;
        let (is_dir, size) = match &live.node.kind {
            Kind::File(contents) => (false, contents.len()),
            Kind::Dir(_) => (true, 0),
        };
        Ok(Attr {
            ino,
            is_dir,
            size,
            mode: live.node.mode,
            mtime: live.mtime,
        })
    }

    fn add(&mut self, parent: u64, name: &OsStr, node: Node) -> Result<u64, Errno> {
        if self.entries(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let mut live = Live::new(node);
        live.changed();
        self.live.insert(ino, live);
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    /// Creates an empty file `name` in `parent`.
    ///
    /// # Errors
    /// `EEXIST`, `ENOENT`, `ENOTDIR`.
    pub fn create(&mut self, parent: u64, name: &OsStr, mode: u32) -> Result<u64, Errno> {
        let node = Node {
            mode: mode & 0o7777,
            kind: Kind::File(Contents::default()),
        };
        self.add(parent, name, node)
    }

    /// Creates an empty directory `name` in `parent`.
    ///
    /// # Errors
    /// `EEXIST`, `ENOENT`, `ENOTDIR`.
    pub fn mkdir(&mut self, parent: u64, name: &OsStr, mode: u32) -> Result<u64, Errno> {
        let node = Node {
            mode: mode & 0o7777,
            kind: Kind::Dir(BTreeMap::new()),
        };
        self.add(parent, name, node)
    }

    /// Removes the name of a file (`dir == false`) or of an empty directory.
    ///
    /// # Errors
    /// `ENOENT`, `ENOTDIR`, `EISDIR`, `ENOTEMPTY`.
    pub fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (&self.live(ino)?.node.kind, dir) {
            (Kind::File(_), true) => return Err(libc::ENOTDIR),
            (Kind::Dir(_), false) => return Err(libc::EISDIR),
            (Kind::Dir(entries), true) if !entries.is_empty() => return Err(libc::ENOTEMPTY),
            _ => {}
        }
        // The inode stays live while open; a cut forgets it if no durable
        // name reaches it.
        self.entries_mut(parent)?.remove(name);
        Ok(())
    }

    /// Renames `name` in `parent` to `new_name` in `new_parent`, replacing
    /// a file there, or an empty directory when moving a directory.
    /// `no_replace` (`RENAME_NOREPLACE`) refuses to replace anything.
    ///
    /// # Errors
    /// `ENOENT`, `ENOTDIR`, `EISDIR`, `ENOTEMPTY`, `EEXIST`, `EINVAL` (a
    /// directory moved into itself).
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        self.entries(new_parent)?;
        let moving_dir = self.attr(ino)?.is_dir;
        if moving_dir && self.reaches(ino, new_parent) {
            return Err(libc::EINVAL);
        }
        if let Ok(replaced) = self.lookup(new_parent, new_name) {
            if replaced == ino {
                return Ok(());
            }
            if no_replace {
                return Err(libc::EEXIST);
            }
            match (&self.live(replaced)?.node.kind, moving_dir) {
                (Kind::File(_), true) => return Err(libc::ENOTDIR),
                (Kind::Dir(_), false) => return Err(libc::EISDIR),
                (Kind::Dir(entries), true) if !entries.is_empty() => {
                    return Err(libc::ENOTEMPTY);
                }
                _ => {}
            }
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(new_parent)?
            .insert(new_name.to_owned(), ino);
        Ok(())
    }

    /// Whether directory `from` is `to` or holds it, at any depth.
    fn reaches(&self, from: u64, to: u64) -> bool {
        let mut stack = vec![from];
        while let Some(ino) = stack.pop() {
            if ino == to {
                return true;
            }
            if let Ok(entries) = self.entries(ino) {
                stack.extend(entries.values().copied());
            }
        }
        false
    }

    /// The names in directory `dir`, with their inodes and whether each is
    /// a directory.
    ///
    /// # Errors
    /// `ENOENT`, `ENOTDIR`.
    pub fn list(&self, dir: u64) -> Result<Vec<(u64, bool, OsString)>, Errno> {
        Ok(self
            .entries(dir)?
            .iter()
            .map(|(name, &ino)| {
                let is_dir = self.attr(ino).is_ok_and(|attr| attr.is_dir);
                (ino, is_dir, name.clone())
            })
            .collect())
    }

    /// Up to `size` bytes of file `ino` from `offset`.
    ///
    /// # Errors
    /// `ENOENT`, `EISDIR`.
    pub fn read(&self, ino: u64, offset: u64, size: usize) -> Result<Vec<u8>, Errno> {
        match &self.live(ino)?.node.kind {
            Kind::File(contents) => Ok(contents.read(offset, size)),
            Kind::Dir(_) => Err(libc::EISDIR),
        }
    }

    /// Writes `data` at `offset` of file `ino`.
    ///
    /// # Errors
    /// `ENOENT`, `EISDIR`.
    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.contents_mut(ino)?.write(offset, data);
        self.counts.writes += 1;
        Ok(())
    }

    /// Cuts or extends file `ino` to `len` bytes.
    ///
    /// # Errors
    /// `ENOENT`, `EISDIR`.
    pub fn set_len(&mut self, ino: u64, len: u64) -> Result<(), Errno> {
        self.contents_mut(ino)?.set_len(len);
        Ok(())
    }

    /// Sets the permission bits of `ino`.
    ///
    /// # Errors
    /// `ENOENT`.
    pub fn set_mode(&mut self, ino: u64, mode: u32) -> Result<(), Errno> {
        let live = self.live_mut(ino)?;
        live.node.mode = mode & 0o7777;
        live.unsynced = true;
        Ok(())
    }

    /// `fsync`/`fdatasync` of `ino`: a file's contents and size, or a
    /// directory's names, become durable as they are now.
    ///
    /// # Errors
    /// `ENOENT`.
    pub fn sync(&mut self, ino: u64) -> Result<(), Errno> {
        let live = self.live_mut(ino)?;
        live.unsynced = false;
        let node = live.node.clone();
        if let Kind::Dir(entries) = &node.kind {
            // A name reaching an inode the disk never saw: the inode is on
            // disk now, without the contents or names it was never synced with.
            for child in entries.values() {
                if !self.durable.contains_key(child) {
                    let empty = self.live(*child)?.node.empty_like();
                    self.durable.insert(*child, empty);
                }
            }
            self.counts.dir_syncs += 1;
        } else {
            self.counts.file_syncs += 1;
        }
        self.durable.insert(ino, node);
        Ok(())
    }

    /// What a power cut would lose now.
    pub fn unsynced(&self) -> CutReport {
        let mut report = CutReport::default();
        for live in self.live.values().filter(|live| live.unsynced) {
            match live.node.kind {
                Kind::File(_) => report.unsynced_files += 1,
                Kind::Dir(_) => report.unsynced_dirs += 1,
            }
        }
        report
    }

    /// The power cut: what was not synced is lost, and the live image is the
    /// durable one, as reachable from the root.
    pub fn cut(&mut self) -> CutReport {
        let report = self.unsynced();
        let mut reachable = HashSet::new();
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            if !reachable.insert(ino) {
                continue;
            }
            if let Some(Node {
                kind: Kind::Dir(entries),
                ..
            }) = self.durable.get(&ino)
            {
                stack.extend(entries.values().copied());
            }
        }
        self.durable.retain(|ino, _| reachable.contains(ino));
        self.live = self
            .durable
            .iter()
            .map(|(&ino, node)| (ino, Live::new(node.clone())))
            .collect();
        self.counts.cuts += 1;
        self.release();
        report
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn contents_read_what_was_written_across_chunks() {
        let mut contents = Contents::default();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        contents.write(10, &data);
        assert_eq!(contents.len(), 200_010);
        assert_eq!(contents.read(0, 10), vec![0; 10]);
        assert_eq!(contents.read(10, data.len()), data);
        assert_eq!(contents.read(200_000, 100).len(), 10);
    }

    #[test]
    fn shrinking_then_extending_reads_zeros() {
        let mut contents = Contents::default();
        contents.write(0, &[7; 100]);
        contents.set_len(40);
        contents.set_len(100);
        assert_eq!(contents.read(0, 100)[..40], [7; 40]);
        assert_eq!(contents.read(40, 60), vec![0; 60]);
        contents.write(200, &[1]);
        assert_eq!(contents.read(100, 100), vec![0; 100]);
    }

    #[test]
    fn a_synced_copy_does_not_see_later_writes() {
        let mut images = Images::new();
        let file = images.create(ROOT, name("f"), 0o644).unwrap();
        images.write(file, 0, b"one").unwrap();
        images.sync(file).unwrap();
        images.sync(ROOT).unwrap();
        images.write(file, 0, b"two").unwrap();
        let report = images.cut();
        assert_eq!(report.unsynced_files, 1);
        assert_eq!(images.read(file, 0, 10).unwrap(), b"one");
    }

    #[test]
    fn a_moved_directory_cannot_go_inside_itself() {
        let mut images = Images::new();
        let a = images.mkdir(ROOT, name("a"), 0o755).unwrap();
        images.mkdir(a, name("b"), 0o755).unwrap();
        let b = images.lookup(a, name("b")).unwrap();
        assert_eq!(
            images.rename(ROOT, name("a"), b, name("a"), false),
            Err(libc::EINVAL)
        );
        assert_eq!(images.lookup(ROOT, name("a")), Ok(a));
    }

    #[test]
    fn names_synced_before_their_files_come_back_empty() {
        let mut images = Images::new();
        let dir = images.mkdir(ROOT, name("d"), 0o755).unwrap();
        let file = images.create(dir, name("f"), 0o644).unwrap();
        images.write(file, 0, b"data").unwrap();
        images.sync(ROOT).unwrap();
        images.sync(dir).unwrap();
        images.cut();
        assert_eq!(images.lookup(dir, name("f")), Ok(file));
        assert_eq!(images.attr(file).unwrap().size, 0);
    }
}
