//! station-powercut: a filesystem for tests that loses, at a power cut,
//! everything that was not yet fsynced, as a disk without battery-backed
//! cache does.
//!
//! SIGKILL keeps every write in the kernel's page cache, so a crash test
//! that only kills processes cannot tell an `fsync` that happened from one
//! that did not. Mounted with FUSE, this filesystem keeps two images of the
//! disk: the live one every program sees, and the durable one that only
//! `fsync`/`fdatasync` of a file, and `fsync` of a directory for the names
//! in it, bring up to date. [`Mount::cut_power`] unmounts, throws the live
//! image away and mounts the durable one: the state a machine finds when the
//! power comes back. [`image`] states exactly which operation makes what
//! durable, and [`fs`] what the kernel forwards of each system call (notably
//! not `sync_file_range`, on which sled 0.34's `flush()` relies).
//!
//! # Layout
//! - [`image`]: the two images and the rule between them, pure and tested
//!   without FUSE;
//! - [`fs`]: the FUSE requests answered from the images;
//! - [`Disk`] and [`Mount`] (here): a disk, its mounts, and the power cut.
//!
//! Mounting needs `/dev/fuse` and, for an unprivileged user, `fusermount3`;
//! as root neither libfuse nor `fusermount3` is needed. Where a mount fails,
//! [`Disk::mount`] says why, and [`Disk::mount_or_skip`] prints
//! `skipped: …` with that reason for a test that cannot run here.
//!
//! # What it does not model
//! - Both images live in memory (a disk starts empty; nothing is written
//!   to a backing folder): the stores under test are small.
//! - A cut keeps *none* of the unsynced writes. A real disk may keep any
//!   part of them; a store whose recovery checks what it reads (sled's
//!   checksums) is tested here for what it relies on being synced, not for
//!   torn writes.
//! - Names change per directory, all or nothing at its next sync; regular
//!   files and directories only (no links, symlinks, sockets or extended
//!   attributes); one thread answers every request.

pub mod fs;
pub mod image;

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;

use fuser::{BackgroundSession, MountOption};
use nix::mount::MntFlags;

pub use image::{Counts, CutReport};

/// One disk: its images outlive its mounts, as a disk outlives a power cut.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    /// Shared with the filesystem of the current mount.
    shared: Arc<fs::Shared>,
}

impl Disk {
    /// An empty disk.
    pub fn new() -> Disk {
        Disk::default()
    }

    fn images(&self) -> MutexGuard<'_, image::Images> {
        self.shared.images()
    }

    /// Plans the power cut at a sync: after `completed` more syncs complete,
    /// the next one never does, and the disk answers nothing more until
    /// [`Mount::cut_power`]. Whatever a program reported before it blocked
    /// there was really synced; a test kills the program and cuts the power
    /// at exactly that moment, whichever sync of its start-up or run it is.
    pub fn stall_at_sync(&self, completed: u64) {
        self.images().stall_at_sync(completed);
    }

    /// Waits up to `timeout` for the planned cut of [`Disk::stall_at_sync`]
    /// to be reached; `false` when no sync came that far in time.
    pub fn wait_stalled(&self, timeout: Duration) -> bool {
        self.shared.wait_stalled(timeout)
    }

    /// Mounts the disk on the directory `at` (which must exist), serving it
    /// from a background thread until the returned [`Mount`] is dropped.
    ///
    /// # Errors
    /// The mount failed: no `/dev/fuse`, not allowed to mount (not root and
    /// no `fusermount3`), or `at` is not a directory. The message says which.
    pub fn mount(&self, at: &Path) -> io::Result<Mount> {
        let fs = fs::PowerCutFs::new(Arc::clone(&self.shared));
        let options = [
            MountOption::FSName("station-powercut".into()),
            MountOption::RW,
            MountOption::NoAtime,
        ];
        let session = fuser::spawn_mount2(fs, at, &options).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot mount a FUSE filesystem on {}: {e}", at.display()),
            )
        })?;
        Ok(Mount {
            disk: self.clone(),
            at: at.to_path_buf(),
            session: Some(session),
        })
    }

    /// What a power cut would lose now.
    pub fn unsynced(&self) -> CutReport {
        self.images().unsynced()
    }

    /// [`Disk::mount`] for a test: where FUSE cannot mount, prints
    /// `skipped: <test>: <reason>` and returns `None`. The line goes straight
    /// to standard error, past the test harness's capture, so a skipped test
    /// says so in every run.
    pub fn mount_or_skip(&self, test: &str, at: &Path) -> Option<Mount> {
        match self.mount(at) {
            Ok(mount) => Some(mount),
            Err(e) => {
                // Nothing to do if standard error itself is gone.
                let _ = writeln!(io::stderr(), "skipped: {test}: {e}");
                None
            }
        }
    }

    /// Operations the disk has seen, over all its mounts.
    pub fn counts(&self) -> Counts {
        self.images().counts()
    }
}

/// A mounted [`Disk`]; dropping it unmounts.
#[derive(Debug)]
pub struct Mount {
    /// The disk served.
    disk: Disk,
    /// The mount point.
    at: PathBuf,
    /// The FUSE session; `None` once unmounted.
    session: Option<BackgroundSession>,
}

impl Mount {
    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.at
    }

    /// The disk this mount serves.
    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    /// Cuts the power: unmounts, loses everything not synced, and mounts
    /// what the disk durably holds. Kill every process using the mount
    /// first (a power cut stops them too); a process blocked in a sync held
    /// by [`Disk::stall_at_sync`] only ends once this has aborted the mount,
    /// so wait for it after this returns.
    ///
    /// # Errors
    /// Mounting again failed.
    pub fn cut_power(mut self) -> io::Result<(Mount, CutReport)> {
        self.unmount();
        let report = self.disk.images().cut();
        let mount = self.disk.mount(&self.at)?;
        Ok((mount, report))
    }

    /// Aborts the FUSE connection and detaches the mount, then waits for the
    /// session's thread: no request of this mount reaches the images after
    /// it returns. A file this process still holds open on the mount (a
    /// store's background thread finishing, say) gets errors from then on,
    /// as it would from a machine whose power went.
    fn unmount(&mut self) {
        if let Some(session) = self.session.take() {
            let flags = MntFlags::MNT_FORCE | MntFlags::MNT_DETACH;
            if let Err(e) = nix::mount::umount2(&self.at, flags) {
                // Not allowed (not root): the session's own unmount below
                // goes through fusermount3.
                eprintln!("station-powercut: umount2 of {}: {e}", self.at.display());
            }
            // A sync held at a planned cut now fails, into the aborted
            // connection: the session's thread can end.
            self.disk.shared.release();
            // The session's loop ends with ENODEV or, when the forced
            // unmount aborts the connection first, with ECONNABORTED, which
            // fuser's `join` unwraps into a panic: both are this mount's end.
            let joined = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| session.join()));
            if let Err(panic) = joined {
                let aborted = panic
                    .downcast_ref::<String>()
                    .is_some_and(|message| message.contains("ConnectionAborted"));
                if !aborted {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.unmount();
    }
}
