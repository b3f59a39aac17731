//! The bureau's projections: indicators, caseload, overdue follow-ups, tier
//! conflicts, sync health and case timelines, built from the hub's log in hub
//! order, and the read API the `Query` service (and an HTTP layer) calls.
//!
//! # On-disk format (tree `projections`, format version 1)
//!
//! | key | value |
//! | --- | --- |
//! | `m:format` | `u32` format version |
//! | `m:checkpoint` | `u64`: the log's events `1..=checkpoint` are applied, each once |
//! | `c:` case_id | JSON case record: its station, every fact of its events (voided flagged), its counter contribution |
//! | `f:` event_id | case_id: the case a case event belongs to, so a later void finds it |
//! | `x:` event_id | JSON contribution of an event that counts by itself (activity, group session, training, community resource) |
//! | `v:` event_id | JSON list of the voids (id, station) naming this event, kept even before it arrives |
//! | `n:` counter | `i64`: a sum of contributions; counters are named `i:{station}:{period}:{metric}` (indicators, raw units), `o:{station}:{YYYY-MM}` (cases opened minus closed that month) and `q:{station}:{name}` (data quality); never 0 |
//! | `o:` station case_id | JSON [`station_agent::views::CaseView`] of an open case |
//! | `k:` station case_id | JSON [`TierConflict`] of a case with a flagged tier conflict |
//! | `g:` origin_id | JSON per-device statistics: events, last seq, entry-to-receipt lag |
//!
//! Integers are big-endian.
//!
//! # Invariants
//! - Exactly once: the changes of a run of events and the new checkpoint go
//!   in one sled batch of this one tree, so after a crash the tree holds the
//!   effect of exactly the events `1..=checkpoint`. A restart resumes after
//!   the checkpoint; [`Projections::rebuild`] clears the tree and replays.
//! - Only durable events are applied: the projector follows
//!   [`HubStore::durable_head`].
//! - Order-independent: every stored value is a function of the *set* of
//!   events applied (and their receive times), never of their hub order, so
//!   incremental and rebuilt trees are byte-for-byte equal, and devices'
//!   streams interleaved in any order give the same tree. Case rows are
//!   recomputed from the case's facts; counters are sums of per-event or
//!   per-case contributions, a contribution is stored so that a void can take
//!   it back, and a void that comes first is remembered so its target
//!   contributes nothing.
//! - A void applies to an event of its own station; a voided event counts as
//!   if never recorded, and stays voided (voiding a void does not restore it).
//! - One writer applies; readers see whole batches: each query reads under a
//!   shared gate that a batch takes exclusively, so an answer's
//!   `computed_through_hub_seq` is exactly what it was computed from.
//! - The state does not depend on the configuration; queries join it with
//!   the roster, intervals and targets of [`HubConfig`].

mod apply;
pub(crate) mod fold;
pub mod period;
mod read;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::Duration;

pub use read::{
    CHINA_UTC_OFFSET_SECS, CaseTimeline, Caseload, CaseloadCell, ConcurrentAssessment, Conflicts,
    DeviceHealth, IndicatorRow, IndicatorTable, IndicatorValue, LAG_BUCKETS_MS, LagBucket,
    OverdueCase, OverdueList, QuarantineList, QuarantinedEvent, StationCaseload, StationHealth,
    SyncHealth, TierConflict, TimelineEntry, end_of_day_ms, today_in_china,
};

use crate::config::HubConfig;
use crate::store::{HubError, HubStore};

/// The format version of the `projections` tree.
pub const FORMAT_VERSION: u32 = 1;
/// The tree's name in the hub's sled database.
pub const TREE: &str = "projections";
/// Events applied per batch by default: small, so a query waits little
/// behind a batch and a projector stops soon.
pub const DEFAULT_BATCH: usize = 2_000;
/// Events applied per batch by a rebuild: larger, so hot records are read
/// and written fewer times.
pub const REBUILD_BATCH: usize = 20_000;

const M_FORMAT: &[u8] = b"m:format";
const M_CHECKPOINT: &[u8] = b"m:checkpoint";

/// Errors of the projections.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The hub's store failed.
    #[error(transparent)]
    Store(#[from] HubError),
    /// sled failed on the projections tree.
    #[error("projection storage error: {0}")]
    Sled(#[from] sled::Error),
    /// Bytes of the projections tree do not decode.
    #[error("projections are corrupt: {0}; run `station-hub rebuild`")]
    Corrupt(String),
    /// The question is not well formed.
    #[error("{0}")]
    BadRequest(String),
    /// No case has this id.
    #[error("no case {0} is known")]
    UnknownCase(station_proto::ids::Uuid),
}

/// One raw key and value of the projections tree, as [`Projections::dump`] lists them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// What one [`Projections::catch_up`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CatchUp {
    /// Events applied by this call.
    pub applied: u64,
    /// The checkpoint afterwards.
    pub checkpoint: u64,
}

/// The projections over one hub store, and the read API over them.
pub struct Projections {
    /// The `projections` tree of the store's database.
    tree: sled::Tree,
    /// The log the projections are built from, and origins, tokens and
    /// quarantine the read API joins in.
    store: Arc<HubStore>,
    /// Roster, intervals and targets the read API joins in.
    config: Arc<HubConfig>,
    /// The single writer.
    writer: Mutex<()>,
    /// Readers share it; a batch being applied holds it alone.
    gate: RwLock<()>,
    /// The checkpoint, published after each batch.
    checkpoint: tokio::sync::watch::Sender<u64>,
    /// Events applied by this process since the projections were opened.
    applied: AtomicU64,
}

impl std::fmt::Debug for Projections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // sled's own Debug would print the tree's contents.
        f.debug_struct("Projections")
            .field("checkpoint", &self.checkpoint())
            .field("applied", &self.applied_since_open())
            .finish_non_exhaustive()
    }
}

fn read_u64(bytes: &[u8]) -> Result<u64, ProjectionError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| ProjectionError::Corrupt("expected an 8-byte integer".into()))
}

impl Projections {
    /// Opens the projections of `store`, resuming from their checkpoint. A
    /// tree of another format, or ahead of the log, is cleared (it is
    /// rebuilt from the log by the next catch-up).
    ///
    /// # Errors
    /// Storage errors.
    pub fn open(store: Arc<HubStore>, config: Arc<HubConfig>) -> Result<Self, ProjectionError> {
        let tree = store.open_tree(TREE)?;
        let format = tree
            .get(M_FORMAT)?
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok().map(u32::from_be_bytes));
        let mut checkpoint = tree.get(M_CHECKPOINT)?.map_or(Ok(0), |v| read_u64(&v))?;
        if format != Some(FORMAT_VERSION) || checkpoint > store.event_count() {
            if !tree.is_empty() {
                tracing::warn!(
                    ?format,
                    checkpoint,
                    "projections of another format or ahead of the log: rebuilding"
                );
            }
            tree.clear()?;
            tree.insert(M_FORMAT, &FORMAT_VERSION.to_be_bytes())?;
            checkpoint = 0;
        }
        let (checkpoint, _) = tokio::sync::watch::channel(checkpoint);
        Ok(Self {
            tree,
            store,
            config,
            writer: Mutex::new(()),
            gate: RwLock::new(()),
            checkpoint,
            applied: AtomicU64::new(0),
        })
    }

    /// The configuration queries join in.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The hub store the projections are built from.
    pub fn store(&self) -> &Arc<HubStore> {
        &self.store
    }

    /// The last hub position applied.
    pub fn checkpoint(&self) -> u64 {
        *self.checkpoint.borrow()
    }

    /// A receiver that changes whenever the checkpoint moves.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.checkpoint.subscribe()
    }

    /// Events applied by this process since [`Projections::open`]; a restart
    /// that resumes from the checkpoint does not apply old events again.
    pub fn applied_since_open(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // Guards no data: a panic while held left the tree at a whole batch.
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn read_gate(&self) -> RwLockReadGuard<'_, ()> {
        // Guards no data of its own.
        self.gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies at most `max_events` durable events after the checkpoint, but
    /// none after `through`, in one atomic batch.
    ///
    /// # Errors
    /// Storage errors: then nothing of the batch was applied.
    pub fn apply_next(&self, through: u64, max_events: usize) -> Result<CatchUp, ProjectionError> {
        let _writer = self.lock_writer();
        let checkpoint = self.checkpoint();
        let through = through.min(self.store.durable_head());
        if checkpoint >= through || max_events == 0 {
            return Ok(CatchUp {
                applied: 0,
                checkpoint,
            });
        }
        let wanted = usize::try_from(through - checkpoint).unwrap_or(usize::MAX);
        let events = self
            .store
            .events_after(checkpoint, wanted.min(max_events))?;
        let Some(last) = events.last().map(|e| e.hub_seq) else {
            return Ok(CatchUp {
                applied: 0,
                checkpoint,
            });
        };
        let mut pending = apply::Pending::new(&self.tree);
        for logged in &events {
            pending.apply(logged)?;
        }
        let mut batch = pending.finish()?;
        batch.insert(M_CHECKPOINT, &last.to_be_bytes());
        {
            let _gate = self
                .gate
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.tree.apply_batch(batch)?;
            self.checkpoint.send_replace(last);
        }
        let applied = events.len() as u64;
        self.applied.fetch_add(applied, Ordering::Relaxed);
        tracing::debug!(applied, checkpoint = last, "projections advanced");
        Ok(CatchUp {
            applied,
            checkpoint: last,
        })
    }

    /// Applies every durable event after the checkpoint, in batches of
    /// [`DEFAULT_BATCH`].
    ///
    /// # Errors
    /// Storage errors: the batches applied before stay applied.
    pub fn catch_up(&self) -> Result<CatchUp, ProjectionError> {
        self.catch_up_in(DEFAULT_BATCH)
    }

    /// [`Projections::catch_up`] in batches of `batch` events.
    ///
    /// # Errors
    /// As [`Projections::catch_up`].
    pub fn catch_up_in(&self, batch: usize) -> Result<CatchUp, ProjectionError> {
        let mut total = CatchUp {
            applied: 0,
            checkpoint: self.checkpoint(),
        };
        loop {
            let step = self.apply_next(u64::MAX, batch.max(1))?;
            if step.applied == 0 {
                return Ok(total);
            }
            total.applied += step.applied;
            total.checkpoint = step.checkpoint;
        }
    }

    /// Clears the projections and replays the whole log.
    ///
    /// # Errors
    /// Storage errors; the tree is then partly rebuilt, consistent with its
    /// checkpoint, and the next catch-up continues.
    pub fn rebuild(&self) -> Result<CatchUp, ProjectionError> {
        self.rebuild_in(REBUILD_BATCH)
    }

    /// [`Projections::rebuild`] in batches of `batch` events.
    ///
    /// # Errors
    /// As [`Projections::rebuild`].
    pub fn rebuild_in(&self, batch: usize) -> Result<CatchUp, ProjectionError> {
        {
            let _writer = self.lock_writer();
            let _gate = self
                .gate
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.tree.clear()?;
            self.tree.insert(M_FORMAT, &FORMAT_VERSION.to_be_bytes())?;
            self.checkpoint.send_replace(0);
        }
        self.catch_up_in(batch)
    }

    /// Waits until the checkpoint reaches `hub_seq` (or the projections are
    /// dropped).
    pub async fn wait_through(&self, hub_seq: u64) {
        let mut checkpoint = self.subscribe();
        let _ = checkpoint.wait_for(|applied| *applied >= hub_seq).await;
    }

    /// Every key and value of the tree, in key order: for comparing a
    /// rebuilt tree with an incremental one.
    ///
    /// # Errors
    /// Storage errors.
    pub fn dump(&self) -> Result<Vec<KeyValue>, ProjectionError> {
        let _gate = self.read_gate();
        self.tree
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    /// Applies new durable events as they come, until `stop` completes: the
    /// projector of a serving hub. Each batch runs on the blocking pool; a
    /// failed batch is retried after a pause.
    pub async fn follow(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        let mut grown = self.store.subscribe();
        tokio::pin!(stop);
        let mut failures = 0u32;
        loop {
            grown.borrow_and_update();
            let projections = Arc::clone(&self);
            let step = tokio::task::spawn_blocking(move || {
                projections.apply_next(u64::MAX, DEFAULT_BATCH)
            })
            .await;
            let more = match step
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                Ok(step) => {
                    failures = 0;
                    step.applied > 0
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(%error, failures, "projections could not advance");
                    let pause = Duration::from_millis(100u64 << failures.min(8));
                    tokio::select! {
                        () = &mut stop => return,
                        () = tokio::time::sleep(pause) => {}
                    }
                    true
                }
            };
            if more {
                tokio::select! {
                    biased;
                    () = &mut stop => return,
                    () = std::future::ready(()) => continue,
                }
            }
            tokio::select! {
                () = &mut stop => return,
                changed = grown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
