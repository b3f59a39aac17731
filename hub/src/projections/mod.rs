//! The bureau's projections: indicators, caseload, overdue follow-ups, tier
//! conflicts, sync health and case timelines, built from the hub's log in hub
//! order, and the read API the `Query` service (and an HTTP layer) calls.
//!
//! # Layout
//!
//! Modules depend one way, each only on those listed before it:
//!
//! - [`period`]: periods, metrics and units; `time`: China time and the
//!   end of a day; `error`: [`ProjectionError`].
//! - `answer`: the answers of the read API; `health`: sync health, lag
//!   buckets and the per-device statistics kept for them.
//! - `fold`: pure: what an event contributes and what a case file derives,
//!   through the shared case model ([`station_proto::case`]); it takes
//!   `fold::LogEntry`s, not the store's types.
//! - `codec`: the encodings of records; `layout`: where records lie in the tree.
//! - `apply`: the overlay that applies a run of events and writes one batch.
//! - this module: [`Projections`], the single writer that follows the log
//!   (open, catch-up, rebuild, follow).
//! - `read`: the read API, one module per answer, as methods of [`Projections`].
//!
//! # On-disk format (tree `projections`, format version 6)
//!
//! | key | value |
//! | --- | --- |
//! | `m:format` | `u32` format version |
//! | `m:checkpoint` | `u64`: the log's events `1..=checkpoint` are applied, each once; absent for none |
//! | `c:` case_id | case file: its station(s) and every fact of its events (voided ones flagged), binary (encodings in `codec.rs`) |
//! | `o:` station case_id | [`station_proto::case::CaseView`] of an open case, binary; empty when a run's copy is no longer open |
//! | `v:` event_id | the voids (id, station) naming this event, binary, kept even before it arrives |
//! | `C:` / `O:` station / `V:` first id | a run: many `c:` / `o:` / `v:` records packed into one value, written by a replay into an empty tree (how records are found: `layout.rs`) |
//! | `n:` counter | `i64`: a sum of contributions; counters are named `i:{station}:{period}:{metric}` (indicators, raw units; `i:{station}:{period}:cases_closed_approved` counts the closures a review approved), `o:{station}:{YYYY-MM}` (cases opened minus closed that month) and `q:{station}:{name}` (data quality); never 0 |
//! | `k:` station case_id | JSON [`TierConflict`] of a case with a flagged tier conflict |
//! | `r:` station case_id | JSON review rows ([`ReviewRow`]) of a case with review requests, sealed like case files (comments are free text) |
//! | `g:` origin_id | JSON per-device statistics: events, last seq, entry-to-receipt lag |
//! | `p:` station tag | the case ids (16 bytes each, ascending) of the files opened for one person at a station; `tag` is the 16-byte keyed tag of the ID number ([`station_proto::person`], under a key derived from the store's district secret) |
//! | `t:` case_id | the station, the tag of the ID number (none for a person without one) and the directory tags (of the ID number, then of name, birth date and gender) of the person the case was opened for |
//! | `j:` case_id | the case ids (16 bytes each, ascending) of the files holding a merge (`CasesMerged`, voided or not) that names this case as absorbed |
//! | `y:` dtag station | a line of the district directory: `u32` the person's open files at the station (as the caseload counts them), `u8` whether the feed lists it present, `u64` its place in the feed (0: none); `dtag` is the 6-byte directory tag ([`station_proto::directory`]) |
//! | `Y:` position | the directory feed: the last change of one line, `dtag`, `u8` present, station code; a line changed again moves to the end (its earlier place is removed), so the feed holds one record per line |
//! | `m:directory_head` | `u64`: the feed's last position |
//! | `m:directory_epoch` | 16 random bytes, written with the first batch of a tree filled from nothing: a feed position means something only within its epoch |
//!
//! Integers in keys and `m:`/`n:` values are big-endian. A tree of another
//! format version (format 1 kept JSON case files, and `f:` and `x:`
//! indexes; format 2 had no `p:` and `t:` and no duplicate files, format 3 no
//! merges, dismissals nor `j:`, format 4 no directory, format 5 one
//! directory tag per file and no weak tags) is dropped
//! when opened and rebuilt from the log. No key or value holds an ID number.
//!
//! # Invariants
//! - Exactly once: the changes of a run of events and the new checkpoint go
//!   in one sled batch of this one tree, so after a crash the tree holds the
//!   effect of exactly the events `1..=checkpoint`. A restart resumes after
//!   the checkpoint; [`Projections::rebuild`] drops the tree (records and
//!   checkpoint go at once, however many) and replays; a tree that holds
//!   records without a checkpoint is cleared when opened.
//! - Only durable events are applied: the projector follows
//!   [`HubStore::durable_head`].
//! - Order-independent: every record is a function of the *set* of events
//!   applied (and their receive times), never of their hub order, so the
//!   logical content ([`Projections::dump`]) of incremental and rebuilt
//!   trees is equal, and devices' streams interleaved in any order give the
//!   same records. Case files are kept whole and derived again when they
//!   change; counters are sums of per-event or per-case contributions, a
//!   case's contribution is derived from its file, so a change takes the old
//!   one back exactly; a void that comes first is remembered so its target
//!   contributes nothing, and a void that comes after finds its target in
//!   the log.
//! - Memory, not the tree, takes the load of a replay: a run of events is
//!   folded in an overlay that derives each case once per batch; a replay
//!   into an empty tree holds everything in memory and writes it packed, in
//!   batches of [`REBUILD_BATCH`] events. A long run of events is read and
//!   decoded on a second thread while the applying thread reads their
//!   receive times and folds; the log is still applied in hub order.
//! - A void applies to an event of its own station; a voided event counts as
//!   if never recorded, and stays voided (voiding a void does not restore it).
//! - One person, one file: a duplicate file (two offline phones) is kept
//!   and flagged, not counted as a file; a `CasesMerged` makes the absorbed
//!   file count through its survivor only (its services where they were
//!   given, its file not at all), a `DuplicateDismissed` lifts the flag,
//!   and a void of either restores the flag, all as functions of the set of
//!   events (the fold's merge rule is the case model's, `survivor_of`).
//! - The district directory is what the caseload counts open, per person
//!   and station: a line is present exactly when the person has an open
//!   file there, once every batch is applied. Its feed is cut at batches
//!   (a line that opens and closes within one batch is not listed), so a
//!   feed position handed out is always a batch's end, where the lines
//!   listed up to it are exactly the directory then; a rebuild starts a new
//!   epoch, and a device's copy of another epoch is replaced whole.
//! - One writer applies; readers see whole batches: each query reads under a
//!   shared gate that a batch takes exclusively, so an answer's
//!   `computed_through_hub_seq` is exactly what it was computed from.
//! - The state does not depend on the configuration; queries join it with
//!   the roster, intervals and targets of [`HubConfig`].

mod answer;
mod apply;
mod codec;
mod error;
mod fold;
mod health;
mod layout;
pub mod period;
mod read;
mod time;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

pub use answer::{
    CaseTimeline, Caseload, CaseloadCell, ConcurrentAssessment, Conflicts, DuplicateFile,
    DuplicateFiles, DuplicateResolution, IndicatorRow, IndicatorTable, IndicatorValue, OverdueCase,
    OverdueList, QuarantineList, QuarantinedEvent, ReviewQueue, ReviewRow, StationCaseload,
    StationOverdue, TierConflict, TimelineEntry,
};
pub use error::ProjectionError;
pub use health::{DeviceHealth, LAG_BUCKETS_MS, LagBucket, StationHealth, SyncHealth, WipeStatus};
pub use layout::KeyValue;
pub use read::{
    DirectoryChange, DirectoryDelta, MetricTrend, PendingTransfer, PendingTransfers, StationTrend,
    TREND_MONTHS, Trends,
};
pub use time::{CHINA_UTC_OFFSET_SECS, date_in_china, end_of_day_ms, parse_as_of, today_in_china};

use crate::audit::{Access, AuditLog};

use crate::config::HubConfig;
use crate::store::{self, HubError, HubStore};

/// The format version of the `projections` tree.
pub const FORMAT_VERSION: u32 = 6;
/// The tree's name in the hub's sled database.
pub const TREE: &str = "projections";
/// Events applied per batch by default: small, so a query waits little
/// behind a batch and a projector stops soon.
pub const DEFAULT_BATCH: usize = 2_000;
/// Events applied per batch by a rebuild, or by a catch-up from nothing:
/// large, because a replay folds them in memory and writes each record once
/// per batch; a crash during the replay loses at most one batch.
pub const REBUILD_BATCH: usize = 1_000_000;

/// Runs of at least this many events are read ahead on a second thread.
#[cfg(not(test))]
const READ_AHEAD_FROM: usize = 50_000;
/// Events per chunk read ahead.
#[cfg(not(test))]
const READ_AHEAD_CHUNK: usize = 2_048;
// Small, so that tests read ahead, in many chunks.
#[cfg(test)]
const READ_AHEAD_FROM: usize = 100;
#[cfg(test)]
const READ_AHEAD_CHUNK: usize = 16;
/// Chunks read ahead and not yet folded, at most.
const READ_AHEAD_CHUNKS: usize = 8;

const M_FORMAT: &[u8] = b"m:format";
const M_CHECKPOINT: &[u8] = b"m:checkpoint";

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
    /// The `projections` tree of the store's database. Readers share it; a
    /// batch being applied, or a rebuild replacing the tree, holds it alone.
    tree: RwLock<sled::Tree>,
    /// The log the projections are built from, and origins, tokens and
    /// quarantine the read API joins in.
    store: Arc<HubStore>,
    /// Roster, intervals and targets the read API joins in.
    config: Arc<HubConfig>,
    /// The single writer.
    writer: Mutex<()>,
    /// The checkpoint, published after each batch.
    checkpoint: tokio::sync::watch::Sender<u64>,
    /// Events applied by this process since the projections were opened.
    applied: AtomicU64,
    /// The read audit, in the store's data folder: every read of a
    /// person-level record through the services is recorded there first.
    audit: AuditLog,
    /// Seals and opens the case files and open-case views (see [`layout`]).
    records: Arc<station_agent::seal::SealedTree>,
    /// The keys people's tags are made under.
    tags: fold::Tags,
    /// Where answers read "now" (the hub's clock in the sync-health answer,
    /// which last contact, lag and staleness are measured against): the
    /// system clock unless the server was given another
    /// ([`crate::server::ServerOptions::clock`]), as the Sync service reads
    /// its receipt times.
    clock: std::sync::RwLock<station_agent::clock::SharedClock>,
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

impl From<store::LoggedEvent> for fold::LogEntry {
    fn from(logged: store::LoggedEvent) -> Self {
        let store::LoggedEvent {
            hub_seq,
            received_at_ms,
            event,
        } = logged;
        Self {
            hub_seq,
            received_at_ms,
            event,
        }
    }
}

fn read_u64(bytes: &[u8]) -> Result<u64, ProjectionError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| ProjectionError::Corrupt("expected an 8-byte integer".into()))
}

/// Sends `events`, prepared for the fold, to the folding thread in chunks,
/// until they end, one fails, or the folding thread stops listening.
fn read_ahead(
    events: impl Iterator<Item = Result<store::LoggedEvent, HubError>>,
    chunks: &std::sync::mpsc::SyncSender<Result<Vec<fold::Prepared>, HubError>>,
    tags: &fold::Tags,
) {
    let mut stations = fold::Stations::default();
    let mut chunk = Vec::with_capacity(READ_AHEAD_CHUNK);
    for logged in events {
        match logged {
            Ok(logged) => chunk.push(fold::prepare(logged.into(), &mut stations, tags)),
            Err(e) => {
                // A send fails only when the fold failed first.
                let _ = chunks.send(Err(e));
                return;
            }
        }
        if chunk.len() == READ_AHEAD_CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(READ_AHEAD_CHUNK));
            if chunks.send(Ok(full)).is_err() {
                return;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = chunks.send(Ok(chunk));
    }
}

impl Projections {
    /// Opens the projections of `store`, resuming from their checkpoint. A
    /// tree of another format, or ahead of the log, is cleared (it is
    /// rebuilt from the log by the next catch-up).
    ///
    /// # Errors
    /// Storage errors.
    pub fn open(store: Arc<HubStore>, config: Arc<HubConfig>) -> Result<Self, ProjectionError> {
        let mut tree = store.open_tree(TREE)?;
        let format = tree
            .get(M_FORMAT)?
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok().map(u32::from_be_bytes));
        let mut checkpoint = tree.get(M_CHECKPOINT)?.map_or(Ok(0), |v| read_u64(&v))?;
        let records_without_checkpoint = checkpoint == 0
            && tree
                .iter()
                .keys()
                .any(|k| k.map_or(true, |k| &*k != M_FORMAT));
        if format != Some(FORMAT_VERSION)
            || checkpoint > store.event_count()
            || records_without_checkpoint
        {
            if !tree.is_empty() {
                tracing::warn!(
                    ?format,
                    checkpoint,
                    "projections of another format, ahead of the log or without a checkpoint: rebuilding"
                );
            }
            tree = Self::fresh_tree(&store, tree)?;
            checkpoint = 0;
        }
        let (checkpoint, _) = tokio::sync::watch::channel(checkpoint);
        let audit = AuditLog::new(store.dir(), config.audit.retention_days);
        let records = Arc::new(station_agent::seal::SealedTree::new(
            store.vault().cloned(),
            TREE,
            layout::SEALED_SPACES,
        ));
        Ok(Self {
            audit,
            tree: RwLock::new(tree),
            tags: fold::Tags {
                person: store.projection_tag_key(),
                directory: store.directory_key(),
            },
            store,
            config,
            writer: Mutex::new(()),
            checkpoint,
            applied: AtomicU64::new(0),
            records,
            clock: std::sync::RwLock::new(station_agent::clock::system()),
        })
    }

    /// Reads "now" from `clock` from here on: the clock the server stamps
    /// receipts and last contact with, so that the answers measure against
    /// the same time.
    pub fn use_clock(&self, clock: station_agent::clock::SharedClock) {
        *self
            .clock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = clock;
    }

    /// Milliseconds since the Unix epoch on the hub's clock (see
    /// [`Projections::use_clock`]).
    pub fn now_ms(&self) -> i64 {
        self.clock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .now_ms()
    }

    /// Drops `tree` (at once, where removing its keys one by one takes
    /// seconds per million) and opens it again, empty but for the format.
    fn fresh_tree(store: &HubStore, tree: sled::Tree) -> Result<sled::Tree, ProjectionError> {
        drop(tree);
        store.drop_tree(TREE)?;
        let tree = store.open_tree(TREE)?;
        tree.insert(M_FORMAT, &FORMAT_VERSION.to_be_bytes())?;
        Ok(tree)
    }

    /// The configuration queries join in.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The hub store the projections are built from.
    pub fn store(&self) -> &Arc<HubStore> {
        &self.store
    }

    /// Records a read of person-level records in the read audit and returns
    /// once the record is durable: call it before answering such a read,
    /// once per read, and refuse the read when it fails.
    ///
    /// # Errors
    /// [`ProjectionError::Audit`] when the record cannot be written.
    pub fn audit_read(&self, access: Access) -> Result<u64, ProjectionError> {
        Ok(self.audit.record(&self.store, access)?)
    }

    /// The read audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
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

    /// The tree, for reading whole batches: no batch is applied while held.
    pub(crate) fn read_gate(&self) -> RwLockReadGuard<'_, sled::Tree> {
        // Whoever panicked holding it left the tree at a whole batch.
        self.tree
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_gate(&self) -> RwLockWriteGuard<'_, sled::Tree> {
        self.tree
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies at most `max_events` durable events after the checkpoint, but
    /// none after `through`, in one atomic batch.
    ///
    /// # Errors
    /// Storage errors: then nothing of the batch was applied.
    pub fn apply_next(&self, through: u64, max_events: usize) -> Result<CatchUp, ProjectionError> {
        let writer = self.lock_writer();
        self.advance(&writer, through, max_events, 1)
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
        let writer = self.lock_writer();
        self.advance(&writer, u64::MAX, batch, usize::MAX)
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
        let writer = self.lock_writer();
        {
            let mut tree = self.write_gate();
            // Dropping the tree takes its checkpoint and records at once; a
            // crash after it leaves no tree, or one with just the format.
            match Self::fresh_tree(&self.store, tree.clone()) {
                Ok(fresh) => {
                    *tree = fresh;
                    self.checkpoint.send_replace(0);
                }
                Err(error) => {
                    // The tree may be gone: go on with what is there now.
                    let now = self.store.open_tree(TREE)?;
                    let checkpoint = now.get(M_CHECKPOINT)?.map_or(Ok(0), |v| read_u64(&v))?;
                    *tree = now;
                    self.checkpoint.send_replace(checkpoint);
                    return Err(error);
                }
            }
        }
        self.advance(&writer, u64::MAX, batch, usize::MAX)
    }

    /// Applies durable events after the checkpoint, none after `through`,
    /// `batch` per atomic write and at most `max_batches` writes, through
    /// one overlay: a record read or derived for one batch is not read again
    /// for the next.
    fn advance(
        &self,
        _writer: &MutexGuard<'_, ()>,
        through: u64,
        batch: usize,
        max_batches: usize,
    ) -> Result<CatchUp, ProjectionError> {
        let mut checkpoint = self.checkpoint();
        let mut total = CatchUp {
            applied: 0,
            checkpoint,
        };
        // Only the writer replaces the tree, and it is this caller.
        let tree = self.read_gate().clone();
        let mut overlay = apply::Overlay::new(checkpoint, Arc::clone(&self.records));
        for _ in 0..max_batches {
            let through = through.min(self.store.durable_head());
            if checkpoint >= through || batch == 0 {
                break;
            }
            let wanted = usize::try_from(through - checkpoint).unwrap_or(usize::MAX);
            let (applied, last) =
                self.fold_events(&tree, &mut overlay, checkpoint, wanted.min(batch), through)?;
            if applied == 0 {
                break;
            }
            let mut writes = overlay.flush(&tree)?;
            writes.insert(M_CHECKPOINT, &last.to_be_bytes());
            {
                let _gate = self.write_gate();
                tree.apply_batch(writes)?;
                self.checkpoint.send_replace(last);
            }
            self.applied.fetch_add(applied, Ordering::Relaxed);
            tracing::debug!(applied, checkpoint = last, "projections advanced");
            checkpoint = last;
            total.applied += applied;
            total.checkpoint = last;
        }
        Ok(total)
    }

    /// Applies to `overlay` at most `count` events of the log after `after`,
    /// none after `through`; returns how many and the last one's position.
    /// A long run is read and decoded on a second thread while this one
    /// folds.
    fn fold_events(
        &self,
        tree: &sled::Tree,
        overlay: &mut apply::Overlay,
        after: u64,
        count: usize,
        through: u64,
    ) -> Result<(u64, u64), ProjectionError> {
        let within = |logged: &Result<store::LoggedEvent, HubError>| {
            logged.as_ref().map_or(true, |l| l.hub_seq <= through)
        };
        let mut folded = (0u64, after);
        if count < READ_AHEAD_FROM {
            let events = self.store.scan_after(after).take(count).take_while(within);
            for logged in events {
                let event = fold::prepare(logged?.into(), overlay.stations(), &self.tags);
                folded = (folded.0 + 1, event.hub_seq);
                overlay.apply(tree, &self.store, event)?;
            }
            return Ok(folded);
        }
        // Events are read and decoded on a second thread; this one reads
        // their receive times alongside and folds.
        let events = self
            .store
            .scan_events_after(after)
            .take(count)
            .take_while(within);
        let mut receipts = self.store.scan_receipts_after(after);
        let events = std::sync::Mutex::new(Some(events));
        std::thread::scope(|scope| -> Result<(), ProjectionError> {
            let (chunks, received) = std::sync::mpsc::sync_channel(READ_AHEAD_CHUNKS);
            let to_read = &events;
            let tags = &self.tags;
            let reader = std::thread::Builder::new()
                .name("projections-read".into())
                .spawn_scoped(scope, move || {
                    let events = to_read.lock().ok().and_then(|mut e| e.take());
                    read_ahead(events.into_iter().flatten(), &chunks, tags);
                });
            let chunks: Box<dyn Iterator<Item = Result<Vec<fold::Prepared>, HubError>>> =
                match reader {
                    Ok(_) => Box::new(received.into_iter()),
                    Err(error) => {
                        // Without a second thread, this one reads as well.
                        tracing::debug!(%error, "reading the log on the folding thread");
                        drop(received);
                        let events = events.lock().ok().and_then(|mut e| e.take());
                        let mut stations = fold::Stations::default();
                        let tags = self.tags.clone();
                        Box::new(events.into_iter().flatten().map(move |logged| {
                            logged.map(|logged| {
                                vec![fold::prepare(logged.into(), &mut stations, &tags)]
                            })
                        }))
                    }
                };
            for chunk in chunks {
                for mut event in chunk? {
                    event.received_at_ms = receipts.received_at(event.hub_seq)?;
                    folded = (folded.0 + 1, event.hub_seq);
                    overlay.apply(tree, &self.store, event)?;
                }
            }
            Ok(())
        })?;
        Ok(folded)
    }

    /// Waits until the checkpoint reaches `hub_seq` (or the projections are
    /// dropped).
    pub async fn wait_through(&self, hub_seq: u64) {
        let mut checkpoint = self.subscribe();
        let _ = checkpoint.wait_for(|applied| *applied >= hub_seq).await;
    }

    /// Every record of the tree under its own key, in key order, records
    /// packed into runs listed one by one: for comparing a rebuilt tree with
    /// an incremental one.
    ///
    /// # Errors
    /// Storage errors.
    pub fn dump(&self) -> Result<Vec<KeyValue>, ProjectionError> {
        layout::logical(&self.read_gate(), &self.records)
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
                // From nothing (a new or cleared tree), a replay in memory.
                if projections.checkpoint() == 0 {
                    projections.catch_up_in(REBUILD_BATCH)
                } else {
                    projections.apply_next(u64::MAX, DEFAULT_BATCH)
                }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use station_proto::ids::Uuid;
    use station_proto::v1::{
        ActivityHeld, ActivityKind, CaseOpened, CaseSource, Category, EventVoided, Gender,
        VisitKind, VisitRecorded,
    };
    use station_proto::{Body, Event};

    use super::*;

    const STATION: &str = "540502001";

    fn id_number(serial: u32) -> String {
        let first = format!("54050219500101{:03}", serial % 500 * 2);
        station_proto::id_number::with_check_character(&first).expect("17 digits")
    }

    /// Cases, visits, activities and voids of two devices.
    fn log(seed: u64, n: usize) -> Vec<Event> {
        let mut rng = StdRng::seed_from_u64(seed);
        let origins = [Uuid::from_u128(1), Uuid::from_u128(2)];
        let mut seqs = [0u64; 2];
        let mut cases: Vec<Uuid> = Vec::new();
        let mut ids: Vec<Uuid> = Vec::new();
        let mut events = Vec::new();
        for i in 0..n {
            let date = format!(
                "2025-{:02}-{:02}",
                rng.random_range(1..=12),
                rng.random_range(1..=28)
            );
            let body = match rng.random_range(0..10) {
                0 | 1 => Body::CaseOpened(CaseOpened {
                    name: "卓嘎".into(),
                    id_number: id_number(i as u32),
                    gender: Gender::Female as i32,
                    birth_date: "1950-01-01".into(),
                    community_code: format!("{STATION}001"),
                    language: "bo".into(),
                    categories: vec![Category::Elderly as i32],
                    tier: rng.random_range(1..=3),
                    source: CaseSource::Outreach as i32,
                    opened_on: date,
                    ..CaseOpened::default()
                }),
                2..=6 if !cases.is_empty() => Body::VisitRecorded(VisitRecorded {
                    case_id: cases[rng.random_range(0..cases.len())].as_bytes().to_vec(),
                    visit_date: date,
                    kind: VisitKind::Home as i32,
                    ..VisitRecorded::default()
                }),
                7 if !ids.is_empty() => Body::EventVoided(EventVoided {
                    voided_event_id: ids[rng.random_range(0..ids.len())].as_bytes().to_vec(),
                    reason: "录入错误".into(),
                }),
                _ => Body::ActivityHeld(ActivityHeld {
                    held_on: date,
                    community_code: format!("{STATION}002"),
                    kind: ActivityKind::PartyPublicWelfare as i32,
                    title: "党建".into(),
                    participants: 3,
                    person_times: 4,
                    volunteers: 1,
                    volunteer_minutes: 30,
                }),
            };
            let d = rng.random_range(0..2);
            seqs[d] += 1;
            let mut random: [u8; 16] = rng.random();
            let recorded_at_ms = 1_735_689_600_000 + i as i64;
            random[..6].copy_from_slice(&recorded_at_ms.to_be_bytes()[2..]);
            random[6] = 0x70 | (random[6] & 0x0f);
            random[8] = 0x80 | (random[8] & 0x3f);
            let id = Uuid::from_bytes(random);
            if matches!(body, Body::CaseOpened(_)) {
                cases.push(id);
            }
            ids.push(id);
            events.push(Event {
                event_id: id.as_bytes().to_vec(),
                origin_id: origins[d].as_bytes().to_vec(),
                origin_seq: seqs[d],
                station_code: STATION.into(),
                author: "worker".into(),
                recorded_at_ms,
                hlc: 1_000 + i as u64,
                body: Some(body),
            });
        }
        events
    }

    fn projections(dir: &std::path::Path, events: &[Event]) -> Projections {
        let store = Arc::new(HubStore::open(dir, 8 * 1024 * 1024).unwrap());
        let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        for chunk in events.chunks(50) {
            let outcome = store
                .push(chunk.to_vec(), today, 1_767_225_600_000)
                .unwrap();
            assert_eq!(outcome.quarantined, 0);
        }
        Projections::open(store, Arc::new(HubConfig::builtin().unwrap())).unwrap()
    }

    #[test]
    fn a_replay_that_outgrows_its_cache_ends_where_one_step_at_a_time_does() {
        let events = log(9, 600);
        let dir = tempfile::tempdir().unwrap();
        let p = projections(dir.path(), &events);
        while p.apply_next(u64::MAX, 1).unwrap().applied > 0 {}
        let one_by_one = p.dump().unwrap();
        let stations = [STATION.to_string()];
        let caseload = p.caseload(&stations).unwrap();
        assert!(caseload.stations[0].open_cases > 40);
        // Past the cache's size the replay continues by reading the tree.
        for batch in [25, 100, 1_000] {
            p.rebuild_in(batch).unwrap();
            assert!(p.dump().unwrap() == one_by_one, "batches of {batch}");
            assert_eq!(p.caseload(&stations).unwrap(), caseload);
        }
        // A catch-up over many batches from a checkpoint keeps what it read.
        p.rebuild_in(10).unwrap();
        p.catch_up_in(30).unwrap();
        assert!(p.dump().unwrap() == one_by_one);
    }

    #[test]
    fn a_tree_of_records_without_a_checkpoint_is_cleared_when_opened() {
        let events = log(4, 200);
        let dir = tempfile::tempdir().unwrap();
        let p = projections(dir.path(), &events);
        p.catch_up().unwrap();
        let whole = p.dump().unwrap();
        // Records that no checkpoint accounts for.
        p.read_gate().remove(M_CHECKPOINT).unwrap();
        let store = Arc::clone(p.store());
        drop(p);
        let p = Projections::open(store, Arc::new(HubConfig::builtin().unwrap())).unwrap();
        assert_eq!(p.checkpoint(), 0);
        assert_eq!(p.dump().unwrap().len(), 1, "only the format marker is left");
        p.catch_up().unwrap();
        assert!(p.dump().unwrap() == whole);
    }
}
