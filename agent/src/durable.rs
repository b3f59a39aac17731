//! Group commit: makes sled's writes survive power loss, with many concurrent
//! writers sharing one sync.
//!
//! sled 0.34's `flush()` ends in `sync_file_range`, which neither flushes the
//! drive's write cache nor the file's metadata, so a flushed write can still be
//! lost when the power goes. A write counts as durable only after `flush()` and
//! then `fdatasync` of sled's data file (the data and the size needed to
//! read it back; timestamps need not be committed).
//!
//! Invariants:
//! - a writer calls [`GroupCommit::written`] *after* its sled write returned and
//!   gets a ticket; [`GroupCommit::wait_durable`] returns only once a sync that
//!   *started* after that ticket was taken has completed;
//! - at most one sync runs at a time; writers that arrive while it runs wait for
//!   the next one, which covers all of them (one fsync for the whole group);
//! - `durable_seq` only grows, and never passes a seq whose write has not been
//!   synced.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Takes the store's own lock file, `station.lock`, for as long as the
/// returned handle lives: only one process uses a store at a time, and
/// nothing in the directory is touched before the lock is held.
///
/// # Errors
/// [`io::ErrorKind::WouldBlock`] when the store stays held for about two
/// seconds, by another process or another open handle; other
/// I/O errors when the file cannot be created.
pub fn lock_store(dir: &Path) -> io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(dir.join("station.lock"))?;
    // A store closed a moment ago may still be releasing (its last sync or a
    // reader finishing on another thread): wait for it a bounded time.
    let mut attempts = 0;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if attempts < 100 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "the store in {} is in use by another process",
                        dir.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Opens sled on `config`, waiting a bounded time for sled's own file lock:
/// a store closed a moment ago in this process may still be held by sled's
/// background flusher, which lets go at its next wake-up, later on a loaded
/// machine. Only call this while holding [`lock_store`], so no other
/// process can be the holder.
///
/// # Errors
/// sled's error, once the lock is still busy after [`SLED_LOCK_WAIT`].
pub fn open_sled(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + SLED_LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e)) if lock_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

/// Whether sled refused to open because its file lock is held. sled 0.34
/// reports that as an error of kind `Other` whose text begins "could not
/// acquire lock" (the would-block error of the lock call is only formatted
/// into that text), so the text is what tells it apart.
fn lock_busy(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock
        || (error.kind() == io::ErrorKind::Other
            && error.to_string().starts_with("could not acquire lock"))
}

/// How long [`open_sled`] waits for sled's file lock. Only this process can
/// hold it (the store lock keeps other processes out), and only while sled's
/// background threads of a closed handle finish.
pub const SLED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a store could not be opened by [`open_store`].
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory, its lock or a file in it failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// sled failed.
    #[error(transparent)]
    Sled(#[from] sled::Error),
    /// The format marker does not decode.
    #[error("bad format marker")]
    BadMarker,
    /// The store was written in another format version.
    #[error("format {0} is not supported")]
    Unsupported(u32),
}

/// A store opened by [`open_store`]: the lock held while it is open, the
/// database and its format-checked tree.
#[derive(Debug)]
pub struct OpenedStore {
    /// The store's lock file; dropping it releases the store.
    pub lock: File,
    /// The sled database.
    pub db: sled::Db,
    /// The tree holding the `m:format` marker.
    pub tree: sled::Tree,
}

/// Creates the store directory `dir` (and its missing parents) so that it
/// survives a power cut: `fsync` of a directory makes the names *in* it
/// durable, not its own name, which lives in its parent. Without this, a
/// store created by `init` and holding saved entries vanishes whole when the
/// power goes before the file system happens to commit the parent. The
/// parent is synced on every open, not only at creation: a process killed
/// between the two left a directory that a later power cut would still lose.
///
/// # Errors
/// A directory cannot be created, or a parent cannot be opened or synced.
pub fn create_dir_durably(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut next = Some(dir);
    while let Some(path) = next.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
        missing.push(path);
        next = path.parent();
    }
    std::fs::create_dir_all(dir)?;
    if missing.is_empty() {
        missing.push(dir);
    }
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Refuses a store folder that its group or others may write to (another
/// local user could replace its files or take its lock), then makes it
/// private: the folder 0700, and every file and folder in it 0600 and 0700,
/// whatever the umask they were created under. Call it on every open, after
/// [`create_dir_durably`]; sled's files are covered by calling
/// [`make_private`] again once sled has opened.
///
/// # Errors
/// [`io::ErrorKind::PermissionDenied`] naming the folder and its mode when
/// it is group- or world-writable (nothing is changed then); I/O errors.
pub fn secure_store_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "the store folder {} is writable by {} (mode {mode:04o}): another user \
                     could change or lock the store; make it private with chmod 700",
                    dir.display(),
                    if mode & 0o002 != 0 {
                        "every user"
                    } else {
                        "its group"
                    },
                ),
            ));
        }
    }
    make_private(dir)
}

/// Sets `dir` to 0700 and everything under it to 0600 (files) or 0700
/// (folders). Symbolic links are left as they are.
///
/// # Errors
/// I/O errors.
pub fn make_private(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let set = |path: &Path, meta: &std::fs::Metadata, mode: u32| -> io::Result<()> {
            if meta.permissions().mode() & 0o777 != mode {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            }
            Ok(())
        };
        set(dir, &std::fs::metadata(dir)?, 0o700)?;
        let mut pending = vec![dir.to_path_buf()];
        while let Some(folder) = pending.pop() {
            for entry in std::fs::read_dir(&folder)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                if meta.is_dir() {
                    set(&entry.path(), &meta, 0o700)?;
                    pending.push(entry.path());
                } else if meta.is_file() {
                    set(&entry.path(), &meta, 0o600)?;
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Opens a project store in `dir` the one safe way: create the directory
/// durably ([`create_dir_durably`]), refuse or make private its permissions
/// ([`secure_store_dir`]), take its lock, remove snapshots a crash left half-written, open sled on
/// `config` (whose path is set here), then open `tree` and check (or, when
/// new, write) its `m:format` marker against `format_version`.
///
/// # Errors
/// [`OpenError`] naming what failed; nothing is written but the marker of a
/// new store.
pub fn open_store(
    dir: &Path,
    config: sled::Config,
    tree: &str,
    format_version: u32,
) -> Result<OpenedStore, OpenError> {
    const M_FORMAT: &[u8] = b"m:format";
    create_dir_durably(dir)?;
    secure_store_dir(dir)?;
    let lock = lock_store(dir)?;
    remove_incomplete_snapshots(dir)?;
    let db = open_sled(&config.path(dir))?;
    make_private(dir)?;
    let tree = db.open_tree(tree)?;
    match tree.get(M_FORMAT)? {
        None => {
            tree.insert(M_FORMAT, &format_version.to_be_bytes())?;
        }
        Some(v) => {
            let found = <[u8; 4]>::try_from(v.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| OpenError::BadMarker)?;
            if found != format_version {
                return Err(OpenError::Unsupported(found));
            }
        }
    }
    Ok(OpenedStore { lock, db, tree })
}

/// Removes snapshot files sled left behind when its process was killed while
/// writing one. Call only while holding [`lock_store`].
///
/// sled 0.34 writes a snapshot as `snap.<lsn>.generating`, fsyncs it and then
/// renames it; a kill before the rename leaves the `.generating` file, which
/// later opens read as the newest snapshot and fail on as corrupt. Whether or
/// not the file was complete, removing it gives the state of a kill just
/// before the snapshot started: sled recovers from the previous snapshot and
/// its log, which the snapshot never replaced.
///
/// # Errors
/// The directory cannot be listed or a file cannot be removed.
pub fn remove_incomplete_snapshots(dir: &Path) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %name, "removing a snapshot left incomplete by a crash");
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    if removed > 0 {
        File::open(dir)?.sync_all()?;
    }
    Ok(removed)
}

/// Shared state of the writers and the one syncing thread.
#[derive(Debug, Default)]
struct SyncState {
    /// Tickets handed out so far: one per completed sled write.
    written: u64,
    /// The highest own `origin_seq` among the handed-out tickets.
    written_seq: u64,
    /// Every ticket at or below this one is on disk.
    durable: u64,
    /// Every own event at or below this `origin_seq` is on disk.
    durable_seq: u64,
    /// Whether some thread is running a sync right now.
    syncing: bool,
}

/// Coordinates flush + fdatasync for one sled database.
#[derive(Debug)]
pub struct GroupCommit {
    /// The database whose buffered writes `flush()` pushes to its file.
    db: sled::Db,
    /// sled's log file; fdatasync of it makes the flushed bytes and its size durable.
    data_file: File,
    /// The sync bookkeeping, guarded for writers and the syncing thread.
    state: Mutex<SyncState>,
    /// Wakes writers waiting for a sync to complete.
    synced: Condvar,
}

impl GroupCommit {
    /// Opens the coordinator for the sled database stored in `dir`, and makes
    /// everything sled recovered at open durable before anything is reported.
    pub fn open(db: sled::Db, dir: &Path, head_seq: u64) -> io::Result<Self> {
        let data_file = File::open(dir.join("db"))?;
        // The directory entry of files sled created must survive too.
        File::open(dir)?.sync_all()?;
        let group = Self {
            db,
            data_file,
            state: Mutex::new(SyncState {
                written_seq: head_seq,
                ..SyncState::default()
            }),
            synced: Condvar::new(),
        };
        group.sync_now()?;
        group.lock().durable_seq = head_seq;
        Ok(group)
    }

    fn lock(&self) -> MutexGuard<'_, SyncState> {
        // A poisoned lock only means another thread panicked while holding it;
        // the counters it guards are always left consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that a sled write has completed, returning its ticket.
    /// `own_seq` is the highest own `origin_seq` that write contained, if any.
    pub fn written(&self, own_seq: Option<u64>) -> u64 {
        let mut state = self.lock();
        state.written += 1;
        if let Some(seq) = own_seq {
            state.written_seq = state.written_seq.max(seq);
        }
        state.written
    }

    /// The ticket of the latest completed write, for callers that must wait
    /// for writes made by others (an idempotent re-append, say).
    pub fn current(&self) -> u64 {
        self.lock().written
    }

    /// The ticket of the latest write known to be on disk: every write
    /// whose ticket is at or below it is durable.
    pub fn durable(&self) -> u64 {
        self.lock().durable
    }

    /// The highest own `origin_seq` known to be on disk.
    pub fn durable_seq(&self) -> u64 {
        self.lock().durable_seq
    }

    /// Blocks until the write behind `ticket` is on disk.
    ///
    /// # Errors
    /// The flush or fsync error; the write's durability is then unknown and the
    /// caller must not report it as saved.
    pub fn wait_durable(&self, ticket: u64) -> io::Result<()> {
        let mut state = self.lock();
        loop {
            if state.durable >= ticket {
                return Ok(());
            }
            if state.syncing {
                state = self
                    .synced
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            state.syncing = true;
            let target = state.written;
            let target_seq = state.written_seq;
            drop(state);
            let result = self.sync_now();
            state = self.lock();
            state.syncing = false;
            if result.is_ok() {
                state.durable = state.durable.max(target);
                state.durable_seq = state.durable_seq.max(target_seq);
            }
            self.synced.notify_all();
            result?;
        }
    }

    /// sled flush, then fdatasync of its data file.
    fn sync_now(&self) -> io::Result<()> {
        self.db.flush().map_err(io::Error::other)?;
        self.data_file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sleds_lock_error_is_recognised_as_a_busy_lock() {
        let dir = tempfile::tempdir().unwrap();
        let config = sled::Config::new().path(dir.path().join("db"));
        let _held = config.open().unwrap();
        match config.open() {
            Err(sled::Error::Io(e)) => assert!(lock_busy(&e), "{e}"),
            other => panic!("expected a lock error, got {other:?}"),
        }
        assert!(!lock_busy(&io::Error::other("disk on fire")));
    }

    #[test]
    fn a_store_let_go_of_a_moment_later_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let config = sled::Config::new().path(dir.path().join("db"));
        let held = config.open().unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(held);
        });
        let reopened = open_sled(&config);
        holder.join().unwrap();
        assert!(reopened.is_ok(), "{reopened:?}");
    }
}
