//! Online backup and restore of the hub store.
//!
//! A backup is a hub store folder of its own: the log, the tokens and every
//! other tree of the store, copied while the hub serves, its wrapped data
//! key (so the backup opens with the hub's key and nothing else: values stay
//! sealed as they were), the read audit as far as it is written, plus a
//! [`BACKUP_MARKER`] file saying what it holds. The projections are not
//! copied: they are derived from the log, and [`restore`] rebuilds them.
//!
//! Invariants:
//! - a backup is a consistent cut: it is taken under the store's writer
//!   locks (the log's and the tokens'), so no push, enrolment or revocation
//!   lands half in it; pushes wait while it is copied and go on after;
//! - a backup is durable (sled flush, then fsync of its data file) before it
//!   appears at its destination: it is built in a hidden sibling folder and
//!   renamed into place, and the parent folder is synced, so a crash leaves
//!   either no backup or a whole one;
//! - a destination that exists is never written over, and a folder that is
//!   not a backup is never restored; a restore fills a new folder the same
//!   way (hidden sibling, synced, renamed);
//! - a restored log has a new [`HubStore::log_id`]: the positions the lost
//!   log gave after the backup's last will go to other events, so devices
//!   pull the station's stream again.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use station_agent::durable::{self, GroupCommit};

use super::{HubError, HubStore, MigrationOptions, StoreKey};
use crate::projections;

/// The file in a backup folder that says it is one, and what it holds.
pub const BACKUP_MARKER: &str = "station-backup.json";

/// Entries copied per sled batch.
const BATCH: usize = 4_096;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// Events in the log (the last hub position) when it was taken.
    pub events: u64,
    /// Entries copied, over every tree.
    pub entries: u64,
    /// Trees copied.
    pub trees: Vec<String>,
    /// When it was taken, RFC 3339 in UTC.
    pub taken_at: String,
}

/// Why a backup or a restore was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The destination exists already.
    #[error("{} exists already: a backup or restore never writes over a folder", .0.display())]
    Exists(PathBuf),
    /// The folder to restore from is not a backup.
    #[error("{} is not a hub backup: it has no {BACKUP_MARKER}", .0.display())]
    NotABackup(PathBuf),
    /// The marker of the backup does not read.
    #[error("the backup's {BACKUP_MARKER} does not read: {0}")]
    Marker(String),
    /// Reading or writing the files failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The reason.
        source: io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] HubError),
    /// The restored store did not open, or its projections did not rebuild.
    #[error("the restored store does not open: {0}")]
    Rebuild(String),
}

impl BackupError {
    fn io(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BackupError + use<> {
        let path = path.to_path_buf();
        move |source| BackupError::Io { what, path, source }
    }
}

/// The hidden sibling a folder is built in before it is renamed to `to`.
fn staging(to: &Path) -> Result<PathBuf, BackupError> {
    let name = to
        .file_name()
        .ok_or_else(|| BackupError::Exists(to.to_path_buf()))?;
    Ok(to.with_file_name(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Refuses an existing `to`; makes its parent; clears a staging folder left
/// by a crash.
fn prepare(to: &Path) -> Result<PathBuf, BackupError> {
    if to.exists() {
        return Err(BackupError::Exists(to.to_path_buf()));
    }
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        durable::create_dir_durably(parent).map_err(BackupError::io("cannot create", parent))?;
    }
    let staging = staging(to)?;
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(BackupError::io("cannot clear", &staging))?;
    }
    Ok(staging)
}

/// Renames the synced `staging` folder to `to` and syncs their parent.
fn publish(staging: &Path, to: &Path) -> Result<(), BackupError> {
    std::fs::rename(staging, to).map_err(BackupError::io("cannot rename into", to))?;
    let parent = match to.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(BackupError::io("cannot sync", parent))
}

/// Copies the store into a new folder `to` while it serves: see the
/// module's invariants.
///
/// # Errors
/// [`BackupError::Exists`] when `to` exists; [`BackupError::Io`] and
/// [`BackupError::Store`] when reading the store or writing the copy fails
/// (nothing then appears at `to`).
pub fn backup(store: &HubStore, to: &Path) -> Result<BackupInfo, BackupError> {
    let staging = prepare(to)?;
    let built = copy_into(store, &staging);
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    let info = built?;
    publish(&staging, to)?;
    tracing::info!(
        events = info.events,
        entries = info.entries,
        to = %to.display(),
        "backup taken"
    );
    Ok(info)
}

fn copy_into(store: &HubStore, staging: &Path) -> Result<BackupInfo, BackupError> {
    durable::create_dir_durably(staging).map_err(BackupError::io("cannot create", staging))?;
    let copy = durable::open_sled(&sled::Config::new().path(staging)).map_err(HubError::from)?;
    let group = GroupCommit::open(copy.clone(), staging, 0).map_err(HubError::from)?;
    let mut trees = Vec::new();
    let mut entries = 0u64;
    let events;
    {
        let writer = store.lock_writer();
        let _token_writer = store.tokens.lock_writer();
        events = *writer;
        for name in store.db.tree_names() {
            if name.as_ref() == projections::TREE.as_bytes() {
                continue;
            }
            let from = store.db.open_tree(&name).map_err(HubError::from)?;
            let into = copy.open_tree(&name).map_err(HubError::from)?;
            let mut batch = sled::Batch::default();
            let mut pending = 0;
            for entry in from.iter() {
                let (key, value) = entry.map_err(HubError::from)?;
                batch.insert(key, value);
                pending += 1;
                entries += 1;
                if pending == BATCH {
                    into.apply_batch(std::mem::take(&mut batch))
                        .map_err(HubError::from)?;
                    pending = 0;
                }
            }
            into.apply_batch(batch).map_err(HubError::from)?;
            trees.push(String::from_utf8_lossy(&name).into_owned());
        }
    }
    group
        .wait_durable(group.written(None))
        .map_err(HubError::from)?;
    drop(group);
    drop(copy);
    let info = BackupInfo {
        events,
        entries,
        trees,
        taken_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    // The wrapped data key: the copy opens with the hub's own key, and with
    // nothing else.
    let header = store.dir().join(station_agent::seal::HEADER_FILE);
    if header.is_file() {
        let copied = staging.join(station_agent::seal::HEADER_FILE);
        std::fs::copy(&header, &copied).map_err(BackupError::io("cannot copy", &header))?;
        std::fs::File::open(&copied)
            .and_then(|file| file.sync_all())
            .map_err(BackupError::io("cannot sync", &copied))?;
    }
    // The read audit, as far as it is written: a line being appended is
    // cut when the restored hub opens it.
    let audit = store.dir().join(crate::audit::FOLDER);
    if audit.is_dir() {
        copy_files(&audit, &staging.join(crate::audit::FOLDER))?;
    }
    let marker = staging.join(BACKUP_MARKER);
    let json = serde_json::to_vec_pretty(&info).map_err(|e| BackupError::Marker(e.to_string()))?;
    write_synced(&marker, &json)?;
    // As private as the store: the folder 0700, its files 0600.
    durable::make_private(staging).map_err(BackupError::io("cannot make private", staging))?;
    std::fs::File::open(staging)
        .and_then(|dir| dir.sync_all())
        .map_err(BackupError::io("cannot sync", staging))?;
    Ok(info)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).map_err(BackupError::io("cannot create", path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(BackupError::io("cannot write", path))
}

/// What a backup folder holds, from its marker.
///
/// # Errors
/// [`BackupError::NotABackup`] when `from` has no marker,
/// [`BackupError::Marker`] when it does not read.
pub fn inspect(from: &Path) -> Result<BackupInfo, BackupError> {
    let marker = from.join(BACKUP_MARKER);
    let bytes = match std::fs::read(&marker) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BackupError::NotABackup(from.to_path_buf()));
        }
        Err(e) => return Err(BackupError::io("cannot read", &marker)(e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| BackupError::Marker(e.to_string()))
}

/// Makes a new hub folder `to` from the backup in `from`: copies its files
/// (not the marker), opens it as a hub store with `key` (the key of the hub
/// the backup was taken from) and rebuilds the projections, then renames it
/// into place. The backup is left as it was.
///
/// # Errors
/// [`BackupError::Exists`] when `to` exists, [`BackupError::NotABackup`]
/// when `from` is not a backup, [`BackupError::Io`] and
/// [`BackupError::Store`] when copying or opening fails (nothing then
/// appears at `to`).
pub fn restore(
    from: &Path,
    to: &Path,
    cache_capacity: u64,
    key: StoreKey,
) -> Result<BackupInfo, BackupError> {
    let info = inspect(from)?;
    let staging = prepare(to)?;
    let built = copy_files(from, &staging).and_then(|()| {
        // Positions after the backup's last will go to other events than the
        // lost log gave them: a new log, that devices pull again.
        HubStore::open_keyed(
            &staging,
            cache_capacity,
            MigrationOptions::default(),
            key.clone(),
        )?
        .renew_log_id()?;
        crate::serve::rebuild(&staging, cache_capacity, key)
            .map(drop)
            .map_err(|e| BackupError::Rebuild(e.to_string()))
    });
    if built.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    built?;
    publish(&staging, to)?;
    tracing::info!(events = info.events, to = %to.display(), "backup restored");
    Ok(info)
}

/// Copies the files of folder `from` into new folder `to`, recursively,
/// each synced, leaving out the backup's marker and the lock files.
fn copy_files(from: &Path, to: &Path) -> Result<(), BackupError> {
    durable::create_dir_durably(to).map_err(BackupError::io("cannot create", to))?;
    let entries = std::fs::read_dir(from).map_err(BackupError::io("cannot read", from))?;
    for entry in entries {
        let entry = entry.map_err(BackupError::io("cannot read", from))?;
        let name = entry.file_name();
        if name == BACKUP_MARKER || name == "station.lock" || name == "audit.lock" {
            continue;
        }
        let source = entry.path();
        let target = to.join(&name);
        let kind = entry
            .file_type()
            .map_err(BackupError::io("cannot read", &source))?;
        if kind.is_dir() {
            copy_files(&source, &target)?;
        } else if kind.is_file() {
            std::fs::copy(&source, &target).map_err(BackupError::io("cannot copy", &source))?;
            std::fs::File::open(&target)
                .and_then(|file| file.sync_all())
                .map_err(BackupError::io("cannot sync", &target))?;
        }
    }
    std::fs::File::open(to)
        .and_then(|dir| dir.sync_all())
        .map_err(BackupError::io("cannot sync", to))
}
