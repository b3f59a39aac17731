//! The disk reserve: the hub stops taking pushes while the filesystem of its
//! store has less free space than a reserve, and takes them again as soon as
//! space returns, without a restart.
//!
//! sled 0.34 cannot recover from a write that fails for lack of space: the
//! database keeps the error and refuses everything afterwards, reads
//! included, until the process opens it again. So the hub never lets the disk
//! get that full through pushes: it refuses them, retryably, while less than
//! the reserve is free. What is already accepted (the projector's writes for
//! events stored before, a first `Hello`'s origin binding, the final sync)
//! is small beside the reserve and goes through.
//!
//! Invariants:
//! - a push is admitted only when, at the moment it is checked, the free
//!   space available to the hub is at least the reserve;
//! - [`DiskReserve::watch`] is `true` exactly while the last check found less
//!   than the reserve; every change is logged once, when it happens, and
//!   refusals in between at most once per [`super::LOG_INTERVAL`];
//! - a filesystem whose free space cannot be read, or that reports no size
//!   (some FUSE filesystems), is not a reason to refuse: it is logged, and the
//!   store's own errors stay the judge.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use super::Throttle;

/// Bytes kept free on the store's filesystem by default: 256 MiB.
pub const DEFAULT_DISK_RESERVE: u64 = 256 * 1024 * 1024;

/// How often the free space is read while no push comes, so that health
/// turns back to serving once space returns.
pub const DISK_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Why a push was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the hub's disk is nearly full: pushes are refused until an operator frees space; \
     what was acknowledged is kept; retry later"
)]
pub struct DiskLow {
    /// Bytes free when the push was checked.
    pub free: u64,
    /// Bytes the hub keeps free.
    pub reserve: u64,
}

/// The free-space check of one store's filesystem.
#[derive(Debug)]
pub struct DiskReserve {
    /// The store's folder.
    dir: PathBuf,
    /// Bytes to keep free.
    reserve: u64,
    /// `true` while the last check found less than the reserve.
    low: watch::Sender<bool>,
    /// Refused pushes, logged once per interval.
    refused: Throttle,
    /// Failed reads of the free space, logged once per interval.
    unreadable: Throttle,
}

impl DiskReserve {
    /// The check of the filesystem holding `dir`, keeping `reserve` bytes
    /// free (0 turns it off).
    pub fn new(dir: &Path, reserve: u64) -> Self {
        let (low, _) = watch::channel(false);
        Self {
            dir: dir.to_path_buf(),
            reserve,
            low,
            refused: Throttle::default(),
            unreadable: Throttle::default(),
        }
    }

    /// Bytes kept free.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Bytes the hub's user may still write on the store's filesystem.
    ///
    /// # Errors
    /// The filesystem's figures cannot be read, or it reports no size.
    pub fn free_bytes(&self) -> io::Result<u64> {
        let stats = rustix::fs::statvfs(&self.dir)?;
        if stats.f_blocks == 0 {
            // Some filesystems (FUSE ones among them) report no size at all.
            return Err(io::Error::other("the filesystem reports no size"));
        }
        Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
    }

    /// Reads the free space now and records whether it is below the reserve.
    ///
    /// # Errors
    /// [`DiskLow`] when less than the reserve is free.
    pub fn check(&self) -> Result<(), DiskLow> {
        if self.reserve == 0 {
            return Ok(());
        }
        let free = match self.free_bytes() {
            Ok(free) => free,
            Err(error) => {
                if let Some(times) = self.unreadable.note() {
                    tracing::warn!(%error, times, "cannot read the free space of the hub's disk");
                }
                return Ok(());
            }
        };
        let low = free < self.reserve;
        let was = self.low.send_replace(low);
        if low != was {
            if low {
                tracing::warn!(
                    free,
                    reserve = self.reserve,
                    "the hub's disk is nearly full: pushes are refused until space is freed"
                );
            } else {
                tracing::info!(
                    free,
                    reserve = self.reserve,
                    "disk space recovered: pushes are accepted again"
                );
            }
        }
        if low {
            return Err(DiskLow {
                free,
                reserve: self.reserve,
            });
        }
        Ok(())
    }

    /// [`Self::check`] for a push: a refusal is also counted, and logged at
    /// most once per interval.
    ///
    /// # Errors
    /// [`DiskLow`] when less than the reserve is free.
    pub fn admit(&self) -> Result<(), DiskLow> {
        self.check().inspect_err(|low| {
            if let Some(times) = self.refused.note() {
                tracing::warn!(
                    free = low.free,
                    reserve = low.reserve,
                    times,
                    "pushes refused: the hub's disk is nearly full"
                );
            }
        })
    }

    /// Follows whether the disk is below the reserve.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.low.subscribe()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_beyond_the_free_space_refuses_and_zero_admits() {
        let dir = tempfile::tempdir().unwrap();
        let full = DiskReserve::new(dir.path(), u64::MAX);
        let low = full.admit().unwrap_err();
        assert_eq!(low.reserve, u64::MAX);
        assert!(low.free < u64::MAX);
        assert!(*full.watch().borrow());

        let off = DiskReserve::new(dir.path(), 0);
        assert_eq!(off.admit(), Ok(()));
        assert!(!*off.watch().borrow());
    }

    #[test]
    fn an_unreadable_filesystem_is_no_reason_to_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let gone = DiskReserve::new(&dir.path().join("absent"), u64::MAX);
        assert!(gone.free_bytes().is_err());
        assert_eq!(gone.admit(), Ok(()));
    }

    #[test]
    fn the_refusal_says_what_to_do_and_no_figures() {
        let text = DiskLow {
            free: 12,
            reserve: 34,
        }
        .to_string();
        assert!(text.contains("retry later"), "{text}");
        assert!(!text.contains("12") && !text.contains("34"), "{text}");
    }
}
