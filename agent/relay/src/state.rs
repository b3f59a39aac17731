//! The relay's bookkeeping of its uplink: `relay.json` in its data folder.
//!
//! | field | meaning |
//! | --- | --- |
//! | `station_code` | the station the relay serves; fixed when the folder is made |
//! | `relay_origin` | the relay's own origin id, with which it says `Hello` to the hub |
//! | `hub_log_id` | the id of the hub log the figures below are about (hex), once told |
//! | `forwarded_through` | every position of the relay's log up to it is held by the city hub, or cannot be forwarded (see [`crate::uplink`]) |
//! | `pull_cursor` | the hub position of the last station event pulled from the hub |
//! | `city` | per origin, how much of it the city hub holds: its acknowledgements, and the seqs pulled from it; behind another relay, the city figures that relay hands on |
//! | `upstream` | per origin, how much of it the relay forwarded through holds (its acknowledgements and the seqs pulled from it), when that is another relay of the station rather than the hub |
//!
//! Invariants:
//! - the file is replaced whole: written beside it, fsynced, renamed over
//!   it, and its folder fsynced, so a crash leaves the old or the new one;
//! - every figure is one the hub gave (an ack, a pulled seq, a cursor), or
//!   0: a lost or older file makes the relay send again what the hub
//!   already holds, which the hub ignores, and never skips anything;
//! - behind another relay, "the hub" above is that relay for every figure
//!   but `city`, which only ever holds what the city hub acknowledged, as
//!   that relay hands it on: what it holds itself counts as `upstream`;
//! - when the hub's log id changes (a hub restored from a backup), every
//!   figure goes back to 0, so the relay refills the hub with all it holds.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use station_hub::server::Upstream;
use station_proto::ids::Uuid;

/// The file's name in the relay's data folder.
pub const STATE_FILE: &str = "relay.json";

/// What the relay knows of the city hub (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayState {
    /// The station the relay serves.
    pub station_code: String,
    /// The relay's own origin, for its `Hello` to the hub.
    pub relay_origin: Uuid,
    /// The hub log the other figures are about, hex; `None` until told.
    pub hub_log_id: Option<String>,
    /// Positions of the relay's log up to this one need no forwarding.
    pub forwarded_through: u64,
    /// Hub position of the last station event pulled from the hub.
    pub pull_cursor: u64,
    /// Per origin, how much of it the city hub holds.
    pub city: BTreeMap<Uuid, u64>,
    /// Per origin, how much of it the relay forwarded through holds, when
    /// the uplink leads to another relay: what need not be sent again,
    /// though the city may not hold it yet.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstream: BTreeMap<Uuid, u64>,
}

impl RelayState {
    /// A new relay of `station_code`, knowing nothing of the hub.
    pub fn new(station_code: &str) -> Self {
        Self {
            station_code: station_code.to_string(),
            relay_origin: Uuid::new_v4(),
            hub_log_id: None,
            forwarded_through: 0,
            pull_cursor: 0,
            city: BTreeMap::new(),
            upstream: BTreeMap::new(),
        }
    }

    /// Notes that the city hub holds `origin` through `seq`.
    pub fn city_holds(&mut self, origin: Uuid, seq: u64) {
        let held = self.city.entry(origin).or_default();
        *held = (*held).max(seq);
    }

    /// Notes that the relay forwarded through holds `origin` through `seq`.
    pub fn upstream_holds(&mut self, origin: Uuid, seq: u64) {
        let held = self.upstream.entry(origin).or_default();
        *held = (*held).max(seq);
    }

    /// How much of `origin` need not be forwarded again: what the city or
    /// the relay forwarded through holds.
    pub fn held_beyond(&self, origin: Uuid) -> u64 {
        let city = self.city.get(&origin).copied().unwrap_or(0);
        let upstream = self.upstream.get(&origin).copied().unwrap_or(0);
        city.max(upstream)
    }

    /// Adopts the hub log `log_id` (hex); when it replaces another, forgets
    /// every figure about the old one. Returns whether it replaced one.
    pub fn follow_hub_log(&mut self, log_id: &str) -> bool {
        let replaced = self
            .hub_log_id
            .as_deref()
            .is_some_and(|known| known != log_id);
        if replaced {
            self.forwarded_through = 0;
            self.pull_cursor = 0;
            self.city.clear();
            self.upstream.clear();
        }
        self.hub_log_id = Some(log_id.to_string());
        replaced
    }
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading, writing or syncing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The file does not hold a relay's state.
    #[error("{}: not a relay's state: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The folder is another station's relay.
    #[error("this relay folder serves station {found}, not {asked}")]
    OtherStation {
        /// The station in the file.
        found: String,
        /// The station asked for.
        asked: String,
    },
}

/// The state file and its current contents; every change is durable
/// before [`StateFile::update`] returns.
#[derive(Debug)]
pub struct StateFile {
    /// `relay.json` in the data folder.
    path: PathBuf,
    /// The contents, changed only through [`StateFile::update`].
    state: Mutex<RelayState>,
}

impl StateFile {
    /// Opens the state in `dir`, or makes it for `station_code`.
    ///
    /// # Errors
    /// [`StateError::OtherStation`] for a folder of another station; a file
    /// that cannot be read, parsed or written.
    pub fn open(dir: &Path, station_code: &str) -> Result<Self, StateError> {
        let path = dir.join(STATE_FILE);
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                let state: RelayState =
                    serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if state.station_code != station_code {
                    return Err(StateError::OtherStation {
                        found: state.station_code,
                        asked: station_code.to_string(),
                    });
                }
                state
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let state = RelayState::new(station_code);
                write_whole(&path, &state)?;
                state
            }
            Err(e) => return Err(io(e)),
        };
        Ok(Self {
            path,
            state: Mutex::new(state),
        })
    }

    fn lock(&self) -> MutexGuard<'_, RelayState> {
        // The state is replaced whole under the lock, never left half-changed.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A copy of the current state.
    pub fn get(&self) -> RelayState {
        self.lock().clone()
    }

    /// Lets `change` edit the state and writes it durably; the change is
    /// kept only once written.
    ///
    /// # Errors
    /// The file cannot be written: the state is as before.
    pub fn update<T>(&self, change: impl FnOnce(&mut RelayState) -> T) -> Result<T, StateError> {
        let mut state = self.lock();
        let mut next = state.clone();
        let out = change(&mut next);
        if next != *state {
            write_whole(&self.path, &next)?;
            *state = next;
        }
        Ok(out)
    }
}

impl Upstream for StateFile {
    fn city_durable_through(&self, origin: Uuid) -> u64 {
        self.lock().city.get(&origin).copied().unwrap_or(0)
    }
}

/// Writes `state` to `path` through a file beside it, fsynced and renamed.
fn write_whole(path: &Path, state: &RelayState) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let next = path.with_extension("json.next");
    let mut file = std::fs::File::create(&next).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&next, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_new_hub_log_forgets_what_the_old_one_held() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::open(dir.path(), "540502001").unwrap();
        let origin = Uuid::now_v7();
        file.update(|s| {
            assert!(!s.follow_hub_log("aa"));
            s.city_holds(origin, 5);
            s.city_holds(origin, 3);
            s.forwarded_through = 9;
        })
        .unwrap();
        assert_eq!(file.city_durable_through(origin), 5);
        let reopened = StateFile::open(dir.path(), "540502001").unwrap();
        assert_eq!(reopened.get(), file.get());
        reopened
            .update(|s| assert!(s.follow_hub_log("bb")))
            .unwrap();
        let state = reopened.get();
        assert_eq!((state.forwarded_through, state.city.len()), (0, 0));
        assert!(matches!(
            StateFile::open(dir.path(), "540502101"),
            Err(StateError::OtherStation { .. })
        ));
    }
}
