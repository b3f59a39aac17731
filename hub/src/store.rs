//! The hub's log: every event of every station, stored once, in hub order,
//! and the tokens that may read and write it.
//!
//! # On-disk format (format version 1)
//!
//! Tree `hub` (integers big-endian):
//!
//! | key | value |
//! | --- | --- |
//! | `m:format` | `u32` format version |
//! | `m:hub_seq` | `u64`, the last hub position assigned |
//! | `e:` hub_seq | encoded `Event` |
//! | `s:` station(9) hub_seq | empty: the station's stream, for `Pull` |
//! | `i:` event_id | `u64` hub_seq: an event is stored once |
//! | `o:` origin_id | JSON [`OriginState`]: `durable_through`, station, contact |
//! | `q:` origin_id origin_seq | JSON [`Quarantined`]: an event acked but not accepted |
//! | `r:` hub_seq | `i64` hub wall clock (ms) when the event at `hub_seq` was received; absent for events stored before it was kept |
//!
//! Tree `tokens`:
//!
//! | key | value |
//! | --- | --- |
//! | token_id (ASCII) | JSON [`TokenRecord`]: scope, SHA-256 of the secret, bound origin, revocation |
//!
//! Invariants, kept by writing one push in one batch under the single writer:
//! - for each origin, seqs `1..=durable_through` are accounted for, each either
//!   in the log or in quarantine, and nothing above `durable_through` is;
//! - hub positions are assigned by the one writer, gap-free, in arrival order;
//!   `Pull` cursors and projections use them;
//! - a push is acknowledged only after its batch is flushed and fsynced.
//!
//! Tree `projections` belongs to [`crate::projections`], which documents its
//! format; it is derived from this log and can be rebuilt from it.
//!
//! Invariants of the `tokens` tree, kept by one token writer:
//! - a token's secret is never stored, only its SHA-256;
//! - a device token's `bound_origin` goes from none to one origin once and
//!   never changes after; a revoked token stays revoked;
//! - a token write returns only once flushed and fsynced.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use prost::Message as _;
use serde::{Deserialize, Serialize};
use station_agent::durable::GroupCommit;
use station_proto::Event;
use station_proto::ids::Uuid;

use crate::ingest::{self, Policy, Refusal, Verdict, hex_bytes};
pub use crate::ingest::{OriginState, Quarantined};

/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const TREE: &str = "hub";
const TOKENS_TREE: &str = "tokens";
const M_HUB_SEQ: &[u8] = b"m:hub_seq";
const EVENTS: &[u8] = b"e:";
const STATIONS: &[u8] = b"s:";
const IDS: &[u8] = b"i:";
const ORIGINS: &[u8] = b"o:";
const QUARANTINE: &[u8] = b"q:";
const RECEIVED: &[u8] = b"r:";

impl From<Refusal> for HubError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Gap {
                origin,
                expected,
                got,
            } => HubError::Gap {
                origin,
                expected,
                got,
            },
            Refusal::Malformed { index, reason } => HubError::Malformed { index, reason },
        }
    }
}

impl From<station_agent::durable::OpenError> for HubError {
    fn from(error: station_agent::durable::OpenError) -> Self {
        use station_agent::durable::OpenError;
        match error {
            OpenError::Io(e) => HubError::Io(e),
            OpenError::Sled(e) => HubError::Sled(e),
            OpenError::BadMarker => HubError::Corrupt("bad format marker".into()),
            OpenError::Unsupported(found) => HubError::UnsupportedFormat(found),
        }
    }
}

/// Errors of the hub's store and ingest rules.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// sled failed.
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// flush or fsync failed: nothing was acknowledged.
    #[error("could not make the write durable: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes on disk do not decode.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The store was written by another format.
    #[error("hub store format {0} is not supported")]
    UnsupportedFormat(u32),
    /// A push skips seqs of an origin.
    #[error("origin {origin}: expected origin_seq {expected}, got {got}")]
    Gap {
        /// The origin.
        origin: Uuid,
        /// The next seq the hub can accept.
        expected: u64,
        /// The seq found.
        got: u64,
    },
    /// No token has this id.
    #[error("no token has the id {0}")]
    UnknownToken(String),
    /// A push's events cannot be attributed to an origin.
    #[error("event {index} of the batch: {reason}")]
    Malformed {
        /// Position in the batch.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// What a token lets its holder do, and on whose behalf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenScope {
    /// One device of one station: pushes its own origin, pulls its station.
    Device {
        /// The station the device works for.
        station_code: String,
        /// The name given at enrolment, to tell devices apart in listings.
        device: String,
        /// The origin (device log) that first presented the token; it alone
        /// may use the token afterwards.
        bound_origin: Option<Uuid>,
    },
    /// The civil-affairs bureau: reads every station, writes nothing.
    Bureau {
        /// The name given at enrolment.
        bureau: String,
    },
}

/// One issued token, as stored: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The public part of the token, its key in the `tokens` tree.
    pub token_id: String,
    /// Who the holder is and what it may do.
    #[serde(flatten)]
    pub scope: TokenScope,
    /// SHA-256 of the secret part, compared in constant time.
    #[serde(with = "hex_bytes")]
    pub secret_sha256: Vec<u8>,
    /// Hub wall clock when issued, ms.
    pub created_at_ms: i64,
    /// Hub wall clock when revoked, ms; a revoked token is refused.
    pub revoked_at_ms: Option<i64>,
}

/// The outcome of a push, per origin.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushOutcome {
    /// `durable_through` of each origin in the batch, after it.
    pub acks: Vec<(Uuid, u64)>,
    /// Events stored in the log.
    pub stored: usize,
    /// Events put in quarantine.
    pub quarantined: usize,
    /// Events at or below `durable_through`, ignored.
    pub duplicates: usize,
}

/// One event of the log, with where and when the hub took it in.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// The event's hub position.
    pub hub_seq: u64,
    /// Hub wall clock when the push that carried it arrived, ms; `None` for
    /// events stored before the hub kept it.
    pub received_at_ms: Option<i64>,
    /// The event as stored (validated, text in NFC).
    pub event: Event,
}

/// The log read in hub order from some position on: see [`HubStore::scan_after`].
pub struct LogScan {
    /// The `e:` range.
    events: sled::Iter,
    /// The `r:` range, read alongside; `None` to leave receive times out.
    received: Option<ReceiptScan>,
}

impl std::fmt::Debug for LogScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogScan").finish_non_exhaustive()
    }
}

impl Iterator for LogScan {
    type Item = Result<LoggedEvent, HubError>;

    fn next(&mut self) -> Option<Self::Item> {
        let (k, raw) = match self.events.next()? {
            Ok(item) => item,
            Err(e) => return Some(Err(e.into())),
        };
        if !k.starts_with(EVENTS) {
            return None;
        }
        let read = || -> Result<LoggedEvent, HubError> {
            let hub_seq = read_u64(&k[EVENTS.len()..])?;
            let event = Event::decode(raw.as_ref())
                .map_err(|e| HubError::Corrupt(format!("event {hub_seq}: {e}")))?;
            Ok(LoggedEvent {
                hub_seq,
                received_at_ms: None,
                event,
            })
        };
        Some(read().and_then(|mut logged| {
            if let Some(received) = &mut self.received {
                logged.received_at_ms = received.received_at(logged.hub_seq)?;
            }
            Ok(logged)
        }))
    }
}

/// The receive times of the log read in hub order from some position on:
/// see [`HubStore::scan_receipts_after`].
pub struct ReceiptScan {
    /// The `r:` range.
    received: sled::Iter,
    /// The next receive time read but not yet asked for: (hub_seq, ms).
    next: Option<(u64, i64)>,
}

impl std::fmt::Debug for ReceiptScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptScan").finish_non_exhaustive()
    }
}

impl ReceiptScan {
    /// The receive time of the event at `hub_seq`, asked for in increasing
    /// order of `hub_seq`; `None` for an event stored before they were kept.
    ///
    /// # Errors
    /// Storage errors, or [`HubError::Corrupt`] for a value that does not decode.
    pub fn received_at(&mut self, hub_seq: u64) -> Result<Option<i64>, HubError> {
        loop {
            if let Some((seq, ms)) = self.next {
                if seq >= hub_seq {
                    return Ok((seq == hub_seq).then_some(ms));
                }
                self.next = None;
            }
            match self.received.next().transpose()? {
                Some((k, v)) if k.starts_with(RECEIVED) => {
                    self.next = Some((read_u64(&k[RECEIVED.len()..])?, read_i64(&v)?));
                }
                _ => {
                    self.next = Some((u64::MAX, 0));
                    return Ok(None);
                }
            }
        }
    }
}

/// A page of one station's stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PullPage {
    /// Events with their hub positions.
    pub events: Vec<(u64, Event)>,
    /// The cursor to pull after next.
    pub next_cursor: u64,
    /// The station's newest hub position.
    pub head: u64,
}

fn key(prefix: &[u8], rest: &[&[u8]]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for r in rest {
        k.extend_from_slice(r);
    }
    k
}

fn token_json(record: &TokenRecord) -> Result<Vec<u8>, HubError> {
    serde_json::to_vec(record).map_err(|e| HubError::Corrupt(format!("token: {e}")))
}

fn read_u64(bytes: &[u8]) -> Result<u64, HubError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| HubError::Corrupt("expected an 8-byte integer".into()))
}

fn read_i64(bytes: &[u8]) -> Result<i64, HubError> {
    <[u8; 8]>::try_from(bytes)
        .map(i64::from_be_bytes)
        .map_err(|_| HubError::Corrupt("expected an 8-byte integer".into()))
}

/// The hub's durable log.
#[derive(Debug)]
pub struct HubStore {
    /// The sled database, for the trees derived from the log.
    db: sled::Db,
    /// Key spaces of the format above.
    tree: sled::Tree,
    /// The issued tokens, by id.
    tokens: sled::Tree,
    /// The single token writer: reads and writes of one record do not interleave.
    token_writer: Mutex<()>,
    /// Flush + fsync shared by concurrent pushes.
    group: GroupCommit,
    /// The single writer: the last hub position assigned.
    writer: Mutex<u64>,
    /// The highest hub position known durable; wakes long-polling pulls and
    /// the projector when the log grows. It only grows.
    grown: tokio::sync::watch::Sender<u64>,
    /// Stations events may belong to; an event of another station goes to
    /// quarantine. `None` accepts every well-formed station code.
    roster: Option<BTreeSet<String>>,
    /// The store's lock file, held while the hub has it open.
    _lock: std::fs::File,
}

impl HubStore {
    /// Opens (creating when absent) the hub store in `dir`.
    ///
    /// # Errors
    /// sled cannot open it, the format is unknown, or the initial sync fails.
    pub fn open(dir: &Path, cache_capacity: u64) -> Result<Self, HubError> {
        let station_agent::durable::OpenedStore { lock, db, tree } =
            station_agent::durable::open_store(
                dir,
                sled::Config::new().cache_capacity(cache_capacity),
                TREE,
                FORMAT_VERSION,
            )?;
        let hub_seq = tree.get(M_HUB_SEQ)?.map_or(Ok(0), |v| read_u64(&v))?;
        let tokens = db.open_tree(TOKENS_TREE)?;
        let group = GroupCommit::open(db.clone(), dir, 0)?;
        let (grown, _) = tokio::sync::watch::channel(hub_seq);
        Ok(Self {
            db,
            tree,
            tokens,
            token_writer: Mutex::new(()),
            group,
            writer: Mutex::new(hub_seq),
            grown,
            roster: None,
            _lock: lock,
        })
    }

    /// The store, refusing (into quarantine) events of stations outside
    /// `stations` from now on.
    #[must_use]
    pub fn with_roster(mut self, stations: impl IntoIterator<Item = String>) -> Self {
        self.roster = Some(stations.into_iter().collect());
        self
    }

    /// Opens (creating when absent) another tree of the same sled database,
    /// so its batches share the log's crash consistency.
    pub(crate) fn open_tree(&self, name: &str) -> Result<sled::Tree, HubError> {
        Ok(self.db.open_tree(name)?)
    }

    /// Drops a tree opened by [`HubStore::open_tree`] at once, however many
    /// keys it holds; handles to it must not be used afterwards.
    pub(crate) fn drop_tree(&self, name: &str) -> Result<(), HubError> {
        self.db.drop_tree(name)?;
        Ok(())
    }

    fn lock_writer(&self) -> MutexGuard<'_, u64> {
        // The counter is only advanced after a successful batch.
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lock_token_writer(&self) -> MutexGuard<'_, ()> {
        // It guards no data of its own: a panic while it was held left sled as it was.
        self.token_writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes every write completed so far durable: flush, then fsync. Writes
    /// in progress under the writers complete first.
    ///
    /// # Errors
    /// The flush or fsync failed.
    pub fn sync(&self) -> Result<(), HubError> {
        let ticket = {
            let _writer = self.lock_writer();
            let _token_writer = self.lock_token_writer();
            self.group.written(None)
        };
        self.group.wait_durable(ticket)?;
        Ok(())
    }

    /// Stores a new token record unless its id is taken; returns whether it
    /// was stored. Returns once durable.
    ///
    /// # Errors
    /// Storage errors: the token must then not be handed out.
    pub fn insert_token(&self, record: &TokenRecord) -> Result<bool, HubError> {
        let json = token_json(record)?;
        let stored = {
            let _token_writer = self.lock_token_writer();
            self.tokens
                .compare_and_swap(record.token_id.as_bytes(), None::<&[u8]>, Some(json))?
                .is_ok()
        };
        if stored {
            self.group.wait_durable(self.group.written(None))?;
        }
        Ok(stored)
    }

    /// The token record with this id, if any.
    ///
    /// # Errors
    /// Storage errors.
    pub fn token(&self, token_id: &str) -> Result<Option<TokenRecord>, HubError> {
        self.tokens
            .get(token_id.as_bytes())?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| HubError::Corrupt(format!("token: {e}")))
            })
            .transpose()
    }

    /// Every token record, by id.
    ///
    /// # Errors
    /// Storage errors.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, HubError> {
        self.tokens
            .iter()
            .map(|item| {
                let (_, v) = item?;
                serde_json::from_slice(&v).map_err(|e| HubError::Corrupt(format!("token: {e}")))
            })
            .collect()
    }

    /// Reads a token record, lets `change` edit it, and stores it when
    /// `change` returns true; returns the record as it is afterwards, once
    /// durable. Changes of one record never interleave.
    ///
    /// # Errors
    /// [`HubError::UnknownToken`], or storage errors (then nothing changed).
    pub fn update_token(
        &self,
        token_id: &str,
        change: impl FnOnce(&mut TokenRecord) -> bool,
    ) -> Result<TokenRecord, HubError> {
        let (record, ticket) = {
            let _token_writer = self.lock_token_writer();
            let mut record = self
                .token(token_id)?
                .ok_or_else(|| HubError::UnknownToken(token_id.to_string()))?;
            if change(&mut record) {
                record.token_id = token_id.to_string();
                self.tokens
                    .insert(token_id.as_bytes(), token_json(&record)?)?;
                (record, self.group.written(None))
            } else {
                // The record may have been written by another thread still
                // waiting for its sync: report it only once it is durable.
                (record, self.group.current())
            }
        };
        self.group.wait_durable(ticket)?;
        Ok(record)
    }

    /// The state of one origin (default when never seen).
    ///
    /// # Errors
    /// Storage errors.
    pub fn origin(&self, origin: Uuid) -> Result<OriginState, HubError> {
        self.tree
            .get(key(ORIGINS, &[origin.as_bytes()]))?
            .map_or(Ok(OriginState::default()), |v| {
                serde_json::from_slice(&v).map_err(|e| HubError::Corrupt(format!("origin: {e}")))
            })
    }

    /// Every origin the hub has heard of.
    ///
    /// # Errors
    /// Storage errors.
    pub fn origins(&self) -> Result<Vec<(Uuid, OriginState)>, HubError> {
        self.tree
            .scan_prefix(ORIGINS)
            .map(|item| {
                let (k, v) = item?;
                let id = Uuid::from_slice(&k[ORIGINS.len()..])
                    .map_err(|_| HubError::Corrupt("origin key".into()))?;
                let state = serde_json::from_slice(&v)
                    .map_err(|e| HubError::Corrupt(format!("origin: {e}")))?;
                Ok((id, state))
            })
            .collect()
    }

    /// Records a device's `Hello`: its head and clock.
    ///
    /// # Errors
    /// Storage errors.
    pub fn hello(
        &self,
        origin: Uuid,
        station_code: &str,
        head_seq: u64,
        device_clock_ms: i64,
        now_ms: i64,
    ) -> Result<OriginState, HubError> {
        let _writer = self.lock_writer();
        let mut state = self.origin(origin)?;
        if state.station_code.is_empty() {
            state.station_code = station_code.to_string();
        }
        state.reported_head = head_seq;
        state.last_contact_ms = now_ms;
        state.clock_skew_ms = device_clock_ms.saturating_sub(now_ms);
        self.put_origin(origin, &state)?;
        Ok(state)
    }

    fn put_origin(&self, origin: Uuid, state: &OriginState) -> Result<(), HubError> {
        let json =
            serde_json::to_vec(state).map_err(|e| HubError::Corrupt(format!("origin: {e}")))?;
        self.tree.insert(key(ORIGINS, &[origin.as_bytes()]), json)?;
        Ok(())
    }

    /// Stores a pushed batch as [`crate::ingest::decide`] decides: per origin, events at or below `durable_through`
    /// are ignored, the rest must continue it without a gap. Valid events go to
    /// the log with a new hub position and their receive time (`now_ms`);
    /// events that decode but break a rule, or belong to a station outside
    /// the roster given to [`HubStore::with_roster`], go to quarantine with
    /// the reason. Returns once durable.
    ///
    /// # Errors
    /// [`HubError::Gap`] or [`HubError::Malformed`] refuse the whole batch and
    /// change nothing; storage errors mean nothing was acknowledged.
    pub fn push(
        &self,
        events: Vec<Event>,
        today: chrono::NaiveDate,
        now_ms: i64,
    ) -> Result<PushOutcome, HubError> {
        let mut writer = self.lock_writer();
        let mut origins = BTreeMap::new();
        for origin in ingest::origins_of(&events)? {
            if let std::collections::btree_map::Entry::Vacant(entry) = origins.entry(origin) {
                entry.insert(self.origin(origin)?);
            }
        }
        let mut held = HashSet::new();
        for event in &events {
            if self.tree.contains_key(key(IDS, &[&event.event_id]))? {
                held.insert(event.event_id.clone());
            }
        }
        let policy = Policy {
            today,
            roster: self.roster.as_ref(),
            now_ms,
        };
        let decision = ingest::decide(events, origins, |id| held.contains(id), &policy)?;
        let mut outcome = PushOutcome {
            stored: decision.accepted(),
            quarantined: decision.quarantined(),
            duplicates: decision.already_held(),
            acks: Vec::new(),
        };
        let mut hub_seq = *writer;
        let mut batch = sled::Batch::default();
        for verdict in decision.verdicts {
            match verdict.verdict {
                Verdict::Accept(checked) => {
                    hub_seq += 1;
                    let pos = hub_seq.to_be_bytes();
                    batch.insert(key(EVENTS, &[&pos]), checked.encode_to_vec());
                    batch.insert(
                        key(STATIONS, &[checked.station_code.as_bytes(), &pos]),
                        Vec::<u8>::new(),
                    );
                    batch.insert(key(IDS, &[&checked.event_id]), pos.to_vec());
                    batch.insert(key(RECEIVED, &[&pos]), &now_ms.to_be_bytes());
                }
                Verdict::Quarantine(q) => {
                    let json = serde_json::to_vec(&q)
                        .map_err(|e| HubError::Corrupt(format!("quarantine: {e}")))?;
                    batch.insert(
                        key(
                            QUARANTINE,
                            &[verdict.origin.as_bytes(), &verdict.origin_seq.to_be_bytes()],
                        ),
                        json,
                    );
                }
                Verdict::AlreadyHeld => {}
            }
        }
        for (origin, state) in &decision.origins {
            let json =
                serde_json::to_vec(state).map_err(|e| HubError::Corrupt(format!("origin: {e}")))?;
            batch.insert(key(ORIGINS, &[origin.as_bytes()]), json);
            outcome.acks.push((*origin, state.durable_through));
        }
        batch.insert(M_HUB_SEQ, &hub_seq.to_be_bytes());
        self.tree.apply_batch(batch)?;
        let ticket = self.group.written(None);
        let grew = hub_seq > *writer;
        *writer = hub_seq;
        drop(writer);
        self.group.wait_durable(ticket)?;
        if grew {
            // Pushes become durable in any order: keep the highest.
            self.grown.send_if_modified(|durable| {
                let higher = hub_seq > *durable;
                if higher {
                    *durable = hub_seq;
                }
                higher
            });
        }
        Ok(outcome)
    }

    /// The station's newest hub position.
    ///
    /// # Errors
    /// Storage errors.
    pub fn station_head(&self, station_code: &str) -> Result<u64, HubError> {
        match self
            .tree
            .scan_prefix(key(STATIONS, &[station_code.as_bytes()]))
            .next_back()
        {
            Some(item) => {
                let (k, _) = item?;
                read_u64(&k[STATIONS.len() + station_code.len()..])
            }
            None => Ok(0),
        }
    }

    /// A page of the station's events after `after`: at most `max_events`,
    /// and at most `max_bytes` of encoded events (always at least one).
    ///
    /// # Errors
    /// Storage errors.
    pub fn pull(
        &self,
        station_code: &str,
        after: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<PullPage, HubError> {
        self.pull_for(station_code, after, max_events, max_bytes, None)
    }

    /// [`HubStore::pull`] for a device: events of `skip_origin` (the device's
    /// own, which it holds already) are passed over, so they cost no downlink,
    /// and the cursor still moves past them.
    ///
    /// # Errors
    /// Storage errors.
    pub fn pull_for(
        &self,
        station_code: &str,
        after: u64,
        max_events: usize,
        max_bytes: usize,
        skip_origin: Option<Uuid>,
    ) -> Result<PullPage, HubError> {
        /// Positions one call looks at, at most, so a long run of the
        /// caller's own events is passed over in bounded steps.
        const MAX_SCANNED: usize = 20_000;
        let prefix = key(STATIONS, &[station_code.as_bytes()]);
        let start = key(&prefix, &[&after.saturating_add(1).to_be_bytes()]);
        let mut page = PullPage {
            next_cursor: after,
            head: self.station_head(station_code)?,
            ..PullPage::default()
        };
        let mut bytes = 0usize;
        for (scanned, item) in self.tree.range(start..).enumerate() {
            let (k, _) = item?;
            if !k.starts_with(&prefix) || page.events.len() >= max_events || scanned >= MAX_SCANNED
            {
                break;
            }
            let pos = read_u64(&k[prefix.len()..])?;
            let raw = self
                .tree
                .get(key(EVENTS, &[&pos.to_be_bytes()]))?
                .ok_or_else(|| HubError::Corrupt(format!("missing event {pos}")))?;
            if !page.events.is_empty() && bytes + raw.len() > max_bytes {
                break;
            }
            let event = Event::decode(raw.as_ref())
                .map_err(|e| HubError::Corrupt(format!("event {pos}: {e}")))?;
            page.next_cursor = pos;
            if skip_origin.is_some_and(|origin| event.origin_id == origin.as_bytes()) {
                continue;
            }
            bytes += raw.len();
            page.events.push((pos, event));
        }
        Ok(page)
    }

    /// A receiver that changes whenever the log grows, for long polls.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.grown.subscribe()
    }

    /// The highest hub position whose event is durable: events `1..=` it can
    /// be read and will survive a crash.
    pub fn durable_head(&self) -> u64 {
        *self.grown.borrow()
    }

    /// At most `limit` events of the log after hub position `after`, in hub
    /// order, each with its receive time.
    ///
    /// # Errors
    /// Storage errors, or [`HubError::Corrupt`] for an event that does not decode.
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>, HubError> {
        self.scan_after(after).take(limit).collect()
    }

    /// The events of the log after hub position `after`, in hub order, each
    /// with its receive time, read as one sequential scan: for replaying a
    /// long run of the log. Positions above [`HubStore::durable_head`] may be
    /// listed; a caller that must see only durable events stops there.
    pub fn scan_after(&self, after: u64) -> LogScan {
        LogScan {
            received: Some(self.scan_receipts_after(after)),
            ..self.scan_events_after(after)
        }
    }

    /// [`HubStore::scan_after`] without receive times (`received_at_ms` is
    /// `None`): the times can be read apart with
    /// [`HubStore::scan_receipts_after`], on another thread, say.
    pub fn scan_events_after(&self, after: u64) -> LogScan {
        let start = after.saturating_add(1).to_be_bytes();
        LogScan {
            events: self.tree.range(key(EVENTS, &[&start])..),
            received: None,
        }
    }

    /// The receive times of the events after hub position `after`, read as
    /// one sequential scan alongside [`HubStore::scan_events_after`].
    pub fn scan_receipts_after(&self, after: u64) -> ReceiptScan {
        let start = after.saturating_add(1).to_be_bytes();
        ReceiptScan {
            received: self.tree.range(key(RECEIVED, &[&start])..),
            next: None,
        }
    }

    /// The hub position of the event with this id, if the log holds it.
    ///
    /// # Errors
    /// Storage errors.
    pub fn position_of(&self, event_id: &[u8]) -> Result<Option<u64>, HubError> {
        self.tree
            .get(key(IDS, &[event_id]))?
            .map(|v| read_u64(&v))
            .transpose()
    }

    /// The hub wall clock (ms) when the event at `hub_seq` was received.
    ///
    /// # Errors
    /// Storage errors.
    pub fn received_at(&self, hub_seq: u64) -> Result<Option<i64>, HubError> {
        self.tree
            .get(key(RECEIVED, &[&hub_seq.to_be_bytes()]))?
            .map(|v| read_i64(&v))
            .transpose()
    }

    /// Every quarantined event, by origin and seq.
    ///
    /// # Errors
    /// Storage errors.
    pub fn quarantine(&self) -> Result<Vec<(Uuid, Quarantined)>, HubError> {
        self.tree
            .scan_prefix(QUARANTINE)
            .map(|item| {
                let (k, v) = item?;
                let id = Uuid::from_slice(&k[QUARANTINE.len()..QUARANTINE.len() + 16])
                    .map_err(|_| HubError::Corrupt("quarantine key".into()))?;
                let q = serde_json::from_slice(&v)
                    .map_err(|e| HubError::Corrupt(format!("quarantine: {e}")))?;
                Ok((id, q))
            })
            .collect()
    }

    /// How many events the log holds.
    pub fn event_count(&self) -> u64 {
        *self.lock_writer()
    }

    /// The event at a hub position.
    ///
    /// # Errors
    /// Storage errors.
    pub fn event_at(&self, hub_seq: u64) -> Result<Option<Event>, HubError> {
        self.tree
            .get(key(EVENTS, &[&hub_seq.to_be_bytes()]))?
            .map(|raw| {
                Event::decode(raw.as_ref()).map_err(|e| HubError::Corrupt(format!("event: {e}")))
            })
            .transpose()
    }
}
