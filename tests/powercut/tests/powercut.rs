//! The power-cut filesystem itself, mounted for real: what a program did
//! without syncing is gone after a cut, what it synced is there, and names
//! follow their directory's sync, not their file's.
//!
//! Where FUSE cannot mount, each test prints `skipped: …` with the reason.

#![allow(clippy::unwrap_used, missing_docs)]

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::Path;

use station_powercut::{Disk, Mount};
use tempfile::TempDir;

/// A fresh disk mounted in a temporary directory, or `None` (with the
/// reason printed) where FUSE cannot mount.
fn mounted(test: &str) -> Option<(TempDir, Mount)> {
    let dir = tempfile::tempdir().unwrap();
    let mount = Disk::new().mount_or_skip(test, dir.path())?;
    Some((dir, mount))
}

fn sync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

fn write_new(path: &Path, data: &[u8]) -> File {
    let mut file = File::create(path).unwrap();
    file.write_all(data).unwrap();
    file
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_write_never_synced_is_lost_and_a_synced_one_kept() {
    let Some((_dir, mount)) = mounted("a_write_never_synced_is_lost") else {
        return;
    };
    let root = mount.path().to_path_buf();
    let synced = write_new(&root.join("synced"), b"kept");
    synced.sync_data().unwrap();
    drop(write_new(&root.join("unsynced"), b"lost"));
    sync_dir(&root);
    // Both read back before the cut: the page cache and the live image agree.
    assert_eq!(fs::read(root.join("unsynced")).unwrap(), b"lost");

    let (mount, report) = mount.cut_power().unwrap();
    assert_eq!(report.unsynced_files, 1, "{report:?}");
    assert_eq!(fs::read(mount.path().join("synced")).unwrap(), b"kept");
    assert_eq!(
        fs::read(mount.path().join("unsynced")).unwrap(),
        b"",
        "the name was synced, the contents were not"
    );
}

#[test]
fn fdatasync_keeps_the_contents_up_to_it_and_nothing_after() {
    let Some((_dir, mount)) = mounted("fdatasync_keeps_the_contents") else {
        return;
    };
    let path = mount.path().join("log");
    let mut file = write_new(&path, b"first ");
    sync_dir(mount.path());
    file.sync_data().unwrap();
    file.write_all(b"second").unwrap();
    let (mount, _) = mount.cut_power().unwrap();
    assert_eq!(fs::read(mount.path().join("log")).unwrap(), b"first ");

    // A shrink is lost the same way: the size is part of what fdatasync keeps.
    let file = OpenOptions::new()
        .write(true)
        .open(mount.path().join("log"))
        .unwrap();
    file.set_len(2).unwrap();
    let (mount, _) = mount.cut_power().unwrap();
    assert_eq!(fs::read(mount.path().join("log")).unwrap(), b"first ");
}

#[test]
fn a_new_file_fsynced_in_a_directory_never_synced_disappears() {
    let Some((_dir, mount)) = mounted("a_new_file_in_an_unsynced_directory") else {
        return;
    };
    let dir = mount.path().join("store");
    fs::create_dir(&dir).unwrap();
    sync_dir(mount.path());
    write_new(&dir.join("db"), b"data").sync_all().unwrap();
    fs::create_dir(mount.path().join("unsynced-dir")).unwrap();

    let (mount, report) = mount.cut_power().unwrap();
    assert_eq!(report.unsynced_dirs, 3, "{report:?}");
    assert_eq!(names(mount.path()), ["store"]);
    assert!(names(&mount.path().join("store")).is_empty());

    // Once the directory is synced as well, the file is there with its data.
    let dir = mount.path().join("store");
    write_new(&dir.join("db"), b"data").sync_all().unwrap();
    sync_dir(&dir);
    let (mount, _) = mount.cut_power().unwrap();
    assert_eq!(fs::read(mount.path().join("store/db")).unwrap(), b"data");
}

#[test]
fn a_rename_counts_only_once_its_directory_is_synced() {
    let Some((_dir, mount)) = mounted("a_rename_counts_once_its_directory_is_synced") else {
        return;
    };
    let root = mount.path().to_path_buf();
    write_new(&root.join("config"), b"old").sync_all().unwrap();
    sync_dir(&root);
    write_new(&root.join("config.tmp"), b"new")
        .sync_all()
        .unwrap();
    fs::rename(root.join("config.tmp"), root.join("config")).unwrap();
    assert_eq!(fs::read(root.join("config")).unwrap(), b"new");

    // Before the directory sync: the old file, and no temporary name either.
    let (mount, _) = mount.cut_power().unwrap();
    let root = mount.path().to_path_buf();
    assert_eq!(names(&root), ["config"]);
    assert_eq!(fs::read(root.join("config")).unwrap(), b"old");

    // After it: the new file under the old name.
    write_new(&root.join("config.tmp"), b"new")
        .sync_all()
        .unwrap();
    fs::rename(root.join("config.tmp"), root.join("config")).unwrap();
    sync_dir(&root);
    let (mount, _) = mount.cut_power().unwrap();
    assert_eq!(names(mount.path()), ["config"]);
    assert_eq!(fs::read(mount.path().join("config")).unwrap(), b"new");
}

#[test]
fn an_unlink_not_synced_comes_back() {
    let Some((_dir, mount)) = mounted("an_unlink_not_synced_comes_back") else {
        return;
    };
    let root = mount.path().to_path_buf();
    write_new(&root.join("snap.1"), b"snapshot")
        .sync_all()
        .unwrap();
    sync_dir(&root);
    fs::remove_file(root.join("snap.1")).unwrap();
    let (mount, _) = mount.cut_power().unwrap();
    assert_eq!(fs::read(mount.path().join("snap.1")).unwrap(), b"snapshot");

    fs::remove_file(mount.path().join("snap.1")).unwrap();
    sync_dir(mount.path());
    let (mount, _) = mount.cut_power().unwrap();
    assert!(names(mount.path()).is_empty());
}

#[test]
fn a_clean_unmount_loses_nothing_and_sync_file_range_keeps_nothing() {
    let Some((dir, mount)) = mounted("a_clean_unmount_loses_nothing") else {
        return;
    };
    let disk = mount.disk().clone();
    let path = mount.path().join("db");
    let file = write_new(&path, b"written");
    sync_dir(mount.path());
    sync_file_range(&file);
    drop(file);
    // Unmounting is not a power cut: the live image stays.
    drop(mount);
    let mount = disk.mount(dir.path()).unwrap();
    assert_eq!(fs::read(mount.path().join("db")).unwrap(), b"written");
    let before = disk.counts();
    let (mount, report) = mount.cut_power().unwrap();
    assert_eq!(report.unsynced_files, 1);
    assert_eq!(
        before.file_syncs, 0,
        "sync_file_range reached the filesystem"
    );
    assert_eq!(fs::read(mount.path().join("db")).unwrap(), b"");
}

/// What sled 0.34's `flush()` ends in: `sync_file_range` with wait flags.
fn sync_file_range(file: &File) {
    use std::os::fd::AsRawFd as _;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: the descriptor is open for as long as `file` is borrowed, and
    // the call reads no memory of this process.
    #[allow(unsafe_code)]
    let result = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, flags) };
    assert_eq!(result, 0, "{}", std::io::Error::last_os_error());
}

#[test]
fn a_cut_planned_at_a_sync_keeps_the_syncs_before_it_and_nothing_after() {
    let Some((_dir, mount)) = mounted("a_cut_planned_at_a_sync") else {
        return;
    };
    let disk = mount.disk().clone();
    let root = mount.path().to_path_buf();
    // Two syncs complete (the file, then its directory); the third is where
    // the power goes.
    disk.stall_at_sync(2);
    let writer = std::thread::spawn(move || {
        write_new(&root.join("before"), b"synced").sync_all()?;
        sync_dir(&root);
        let after = write_new(&root.join("after"), b"never synced");
        after.sync_all()
    });
    assert!(disk.wait_stalled(std::time::Duration::from_secs(10)));
    let (mount, _) = mount.cut_power().unwrap();
    assert!(
        writer.join().unwrap().is_err(),
        "the sync held at the cut must not report success"
    );
    assert_eq!(names(mount.path()), ["before"]);
    assert_eq!(fs::read(mount.path().join("before")).unwrap(), b"synced");
}
