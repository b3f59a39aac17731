//! The hub's store: [`HubStore`], the sled implementation of the hub's log
//! ([`HubLog`], whose contract it keeps), with the token records
//! ([`TokenStore`]) and the projections' tree in the same database.
//!
//! - [`format`]: the on-disk format (version 2), as a table;
//! - [`chains`]: every origin's hash chain recomputed from the store, for
//!   `verify` and for stores written before the hub kept chains;
//! - [`log`]: the [`HubLog`] contract and the types it exchanges;
//! - [`memory`]: [`MemoryLog`], the reference implementation;
//! - `jetstream` (cargo feature `jetstream`): `JetStreamLog`, the log on a
//!   NATS JetStream cluster;
//! - [`tokens`]: the `tokens` tree;
//! - [`migrate`]: format 1 → 2 on open, crash-safe;
//! - [`mirror`]: the store as a hub front-end's copy of a shared log.
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

pub mod backup;
pub mod chains;
pub mod format;
#[cfg(feature = "jetstream")]
pub mod jetstream;
pub mod log;
pub mod memory;
pub mod migrate;
pub mod mirror;
pub mod tokens;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use prost::Message as _;
use station_agent::durable::GroupCommit;
use station_proto::Event;
use station_proto::ids::Uuid;
use station_proto::v1::SignedHead;

pub use self::format::FORMAT_VERSION;
use self::format::{
    HEADS, IDS, M_FORMAT, M_HUB_SEQ, M_LOG_ID, M_SEALED, M_SEALING, M_SEALING_RUNS, ORIGINS,
    Positions, QUARANTINE, RUNS, Run, RunWriter, SEALED_SPACES, STREAMS, TAKEN_OVER, TOKENS_TREE,
    TREE, event_place, key, read_u64,
};
#[cfg(feature = "jetstream")]
pub use self::jetstream::{Imported, JetStreamLog, JetStreamOptions, Replica};
pub use self::log::{HubLog, LoggedEvent, OriginBinding, PULL_MAX_SCANNED, PullPage, PushOutcome};
pub use self::memory::MemoryLog;
pub use self::migrate::MigrationOptions;
pub use self::tokens::{TokenRecord, TokenScope, TokenStore, WipeOrder};
use crate::ingest::{self, Policy, Refusal, Verdict};
pub use crate::ingest::{OriginState, Quarantined, StoredHead};
use station_agent::seal::{self, Algorithm, KeySource, SealError, SealedTree, SealingOptions};

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

impl From<seal::SealInPlaceError> for HubError {
    fn from(error: seal::SealInPlaceError) -> Self {
        match error {
            seal::SealInPlaceError::Sled(e) => HubError::Sled(e),
            seal::SealInPlaceError::Seal(e) => HubError::Seal(e),
        }
    }
}

/// The kind of store bound into every sealed value of the hub.
pub const STORE_KIND: &str = "hub";

/// How the hub store's data is protected, for [`HubStore::open_keyed`].
#[derive(Debug, Clone, Default)]
pub struct StoreKey {
    /// The key that wraps the store's data key; `None` opens a store in
    /// clear and refuses an encrypted one. `station-hub` always gives one.
    pub key: Option<KeySource>,
    /// The AEAD of a store encrypted by this open.
    pub algorithm: Algorithm,
    /// How a store in clear is encrypted in place.
    pub sealing: SealingOptions,
}

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
            Refusal::Conflict { origin, seq } => HubError::Conflict { origin, seq },
            Refusal::Unsigned { .. } | Refusal::Forged(_) => {
                HubError::Signature(refusal.to_string())
            }
            Refusal::NoChain(_) => HubError::Corrupt(refusal.to_string()),
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
    /// The store's key is missing or wrong, or a sealed value does not open.
    #[error(transparent)]
    Seal(#[from] SealError),
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
    /// A push carries, at a seq the hub holds, another event than the one
    /// held: refused, and counted in the origin's `conflicts`.
    #[error(
        "origin {origin}: seq {seq} is held with another event: the device's log conflicts with what it pushed before"
    )]
    Conflict {
        /// The origin.
        origin: Uuid,
        /// The seq held with another event.
        seq: u64,
    },
    /// A push of a signed origin without a head, or whose head does not
    /// verify over the chain: the batch is not what the device signed.
    #[error("{0}")]
    Signature(String),
    /// No token has this id.
    #[error("no token has the id {0}")]
    UnknownToken(String),
    /// The token was revoked: it binds nothing more.
    #[error("token {0} is revoked")]
    TokenRevoked(String),
    /// The device token speaks for another origin.
    #[error("token {token_id} is bound to origin {origin}, and to no other")]
    TokenBound {
        /// The token.
        token_id: String,
        /// The origin it is bound to.
        origin: Uuid,
    },
    /// Another token speaks for the origin: this token may not.
    #[error("origin {0} is not this token's: a token speaks only for the origin it introduced")]
    OriginTaken(Uuid),
    /// The origin is bound to another device key.
    #[error("origin {0} is bound to another device key: a new key needs a new origin")]
    KeyMismatch(Uuid),
    /// A push's events cannot be attributed to an origin.
    #[error("event {index} of the batch: {reason}")]
    Malformed {
        /// Position in the batch.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The run holding `hub_seq`, if the log has that position.
///
/// Its events are as stored: read them with [`Run::event`] and the store's
/// sealed values.
fn run_at(tree: &sled::Tree, hub_seq: u64) -> Result<Option<Run>, HubError> {
    match tree.range(key(RUNS, &[&hub_seq.to_be_bytes()])..).next() {
        Some(item) => {
            let (k, v) = item?;
            if !k.starts_with(RUNS) {
                return Ok(None);
            }
            let run = Run::decode(&k, v)?;
            Ok(run.holds(hub_seq).then_some(run))
        }
        None => Ok(None),
    }
}

/// The log read in hub order from some position on: see [`HubStore::scan_after`].
pub struct LogScan {
    /// The `l:` range.
    runs: sled::Iter,
    /// The run being read.
    run: Option<Run>,
    /// The next position to yield.
    next: u64,
    /// Whether to fill in receive times.
    receipts: bool,
    /// Opens the sealed events.
    values: Arc<SealedTree>,
}

impl std::fmt::Debug for LogScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogScan")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Iterator for LogScan {
    type Item = Result<LoggedEvent, HubError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(run) = &self.run
                && self.next <= run.last
            {
                let hub_seq = self.next;
                self.next += 1;
                return Some(run.event(hub_seq, &self.values).map(|event| LoggedEvent {
                    hub_seq,
                    received_at_ms: if self.receipts {
                        run.received_at_ms
                    } else {
                        None
                    },
                    event,
                }));
            }
            let (k, v) = match self.runs.next()? {
                Ok(item) => item,
                Err(e) => return Some(Err(e.into())),
            };
            if !k.starts_with(RUNS) {
                return None;
            }
            match Run::decode(&k, v) {
                Ok(run) => {
                    self.next = self.next.max(run.first);
                    self.run = Some(run);
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The receive times of the log read in hub order from some position on:
/// see [`HubStore::scan_receipts_after`].
pub struct ReceiptScan {
    /// The `l:` range.
    runs: sled::Iter,
    /// The run read last: its first and last position and receive time.
    run: Option<(u64, u64, Option<i64>)>,
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
            if let Some((first, last, received)) = self.run
                && hub_seq <= last
            {
                return Ok(if hub_seq >= first { received } else { None });
            }
            match self.runs.next().transpose()? {
                Some((k, v)) if k.starts_with(RUNS) => {
                    let (first, received) = format::run_header(&v)?;
                    self.run = Some((first, read_u64(&k[RUNS.len()..])?, received));
                }
                _ => {
                    self.run = Some((u64::MAX, u64::MAX, None));
                    return Ok(None);
                }
            }
        }
    }
}

/// The hub's durable log, on sled: the embedded implementation of
/// [`HubLog`], with the token records beside it.
#[derive(Debug)]
pub struct HubStore {
    /// The sled database, for the trees derived from the log.
    db: sled::Db,
    /// Key spaces of the format in [`format`].
    tree: sled::Tree,
    /// The issued tokens, by id.
    tokens: TokenStore,
    /// Flush + fsync shared by concurrent pushes and token writes.
    group: Arc<GroupCommit>,
    /// The single writer: the last hub position assigned.
    writer: Mutex<u64>,
    /// The highest hub position known durable; wakes long-polling pulls and
    /// the projector when the log grows. It only grows.
    grown: tokio::sync::watch::Sender<u64>,
    /// Stations events may belong to; an event of another station goes to
    /// quarantine. `None` accepts every well-formed station code.
    roster: Option<BTreeSet<String>>,
    /// How far ahead of the hub's clock an event's clocks may run.
    max_clock_skew_ms: i64,
    /// The data folder the store was opened in, where the hub keeps its
    /// other files (the read audit log).
    dir: std::path::PathBuf,
    /// The identity of this log: see [`HubStore::log_id`].
    log_id: std::sync::Mutex<Uuid>,
    /// Seals and opens the events and quarantined events.
    values: Arc<SealedTree>,
    /// The district's secret (`m:district_secret`), made once; keys of
    /// people's tags are derived from it. Its `Debug` shows nothing of it.
    district_secret: station_proto::person::TagKey,
    /// The station of each case whose opening the log holds, as
    /// [`HubStore::case_station`] found it: an opening never changes, so
    /// an answer found once stays true. Bounded by [`CASE_STATIONS_HELD`].
    case_stations: std::sync::Mutex<HashMap<Uuid, String>>,
    /// The store's lock file, held while the hub has it open.
    _lock: std::fs::File,
}

/// Case stations kept in memory, at most: about 100 bytes each. Past it the
/// map starts again empty (a lookup in the log is the fallback).
const CASE_STATIONS_HELD: usize = 100_000;

/// What the key of the projections' tags of people is derived for.
const PROJECTION_TAGS: &str = "station.v1 hub projections person tags";

/// The district secret stored in `tree`, made and stored (durably, with the
/// caller's sync) when absent.
fn district_secret(tree: &sled::Tree) -> Result<[u8; 32], HubError> {
    if let Some(stored) = tree.get(format::M_DISTRICT_SECRET)? {
        return <[u8; 32]>::try_from(stored.as_ref())
            .map_err(|_| HubError::Corrupt("district secret".into()));
    }
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
    tree.insert(format::M_DISTRICT_SECRET, &secret)?;
    tracing::info!("district secret made");
    Ok(secret)
}

impl HubStore {
    /// Opens (creating when absent) the hub store in `dir`, migrating a
    /// format-1 store to the current format first.
    ///
    /// # Errors
    /// sled cannot open it, the format is unknown, the migration fails, or
    /// the initial sync fails.
    pub fn open(dir: &Path, cache_capacity: u64) -> Result<Self, HubError> {
        Self::open_with(dir, cache_capacity, MigrationOptions::default())
    }

    /// [`HubStore::open`] with the migration's options.
    ///
    /// # Errors
    /// As [`HubStore::open`].
    pub fn open_with(
        dir: &Path,
        cache_capacity: u64,
        migration: MigrationOptions,
    ) -> Result<Self, HubError> {
        Self::open_keyed(dir, cache_capacity, migration, StoreKey::default())
    }

    /// [`HubStore::open_with`] with the store's key: a new store is
    /// encrypted under a new data key, a store in clear is encrypted in
    /// place first (its projections are dropped and rebuilt from the log).
    ///
    /// # Errors
    /// As [`HubStore::open`]; [`HubError::Seal`] for a key that is missing or
    /// wrong (nothing is changed then).
    pub fn open_keyed(
        dir: &Path,
        cache_capacity: u64,
        migration: MigrationOptions,
        key: StoreKey,
    ) -> Result<Self, HubError> {
        use station_agent::durable;
        durable::create_dir_durably(dir)?;
        durable::secure_store_dir(dir)?;
        let lock = durable::lock_store(dir)?;
        durable::remove_incomplete_snapshots(dir)?;
        let db = durable::open_sled(&sled::Config::new().cache_capacity(cache_capacity).path(dir))?;
        durable::make_private(dir)?;
        let tree = db.open_tree(TREE)?;
        let format = match tree.get(M_FORMAT)? {
            None => {
                tree.insert(M_FORMAT, &FORMAT_VERSION.to_be_bytes())?;
                FORMAT_VERSION
            }
            Some(v) => <[u8; 4]>::try_from(v.as_ref())
                .map(u32::from_be_bytes)
                .map_err(|_| HubError::Corrupt("bad format marker".into()))?,
        };
        let migrated = match format {
            FORMAT_VERSION => false,
            format::FORMAT_1 => {
                migrate::from_format_1(&tree, migration)?;
                true
            }
            other => return Err(HubError::UnsupportedFormat(other)),
        };
        let (log_id, named) = match tree.get(M_LOG_ID)? {
            Some(id) => (
                Uuid::from_slice(&id).map_err(|_| HubError::Corrupt("bad log id".into()))?,
                false,
            ),
            None => {
                let id = Uuid::new_v4();
                tree.insert(M_LOG_ID, id.as_bytes())?;
                (id, true)
            }
        };
        let values = Arc::new(Self::unlock(dir, &db, &tree, &key)?);
        let hub_seq = tree.get(M_HUB_SEQ)?.map_or(Ok(0), |v| read_u64(&v))?;
        let made_secret = !tree.contains_key(format::M_DISTRICT_SECRET)?;
        let district_secret = station_proto::person::TagKey::from_bytes(district_secret(&tree)?);
        let tokens = db.open_tree(TOKENS_TREE)?;
        let group = Arc::new(GroupCommit::open(db.clone(), dir, 0)?);
        if migrated || named || made_secret {
            group.wait_durable(group.written(None))?;
        }
        let (grown, _) = tokio::sync::watch::channel(hub_seq);
        let tokens = TokenStore::new(tokens, Arc::clone(&group));
        let bound = tokens.bind_earlier_tokens()?;
        if bound > 0 {
            tracing::info!(bound, "origins bound to the tokens that introduced them");
        }
        let store = Self {
            db,
            tree,
            tokens,
            group,
            writer: Mutex::new(hub_seq),
            grown,
            roster: None,
            max_clock_skew_ms: station_proto::validate::MAX_CLOCK_SKEW_MS,
            dir: dir.to_path_buf(),
            log_id: std::sync::Mutex::new(log_id),
            values,
            district_secret,
            case_stations: std::sync::Mutex::default(),
            _lock: lock,
        };
        let chained = chains::fill_missing(&store)?;
        if chained > 0 {
            tracing::info!(
                chained,
                "hash chains computed for origins stored before them"
            );
        }
        Ok(store)
    }

    /// Unlocks the store's data key, encrypting a store in clear in place
    /// when a key is given: every run's events, then quarantine, each in
    /// atomic, flushed steps that a reopen resumes; the projections tree,
    /// derived from the log, is dropped to be rebuilt sealed.
    fn unlock(
        dir: &Path,
        db: &sled::Db,
        tree: &sled::Tree,
        key: &StoreKey,
    ) -> Result<SealedTree, HubError> {
        let prepared = seal::prepare(
            dir,
            STORE_KIND,
            key.key.as_ref(),
            key.algorithm,
            tree.contains_key(M_SEALED)?,
        )?;
        let vault = match prepared {
            seal::Prepared::Plain => return Ok(SealedTree::new(None, TREE, SEALED_SPACES)),
            seal::Prepared::Sealed(vault) => {
                return Ok(SealedTree::new(Some(Arc::new(vault)), TREE, SEALED_SPACES));
            }
            seal::Prepared::NeedsSealing(vault) => Arc::new(vault),
        };
        let values = SealedTree::new(Some(Arc::clone(&vault)), TREE, SEALED_SPACES);
        let mut sealed_runs = 0usize;
        loop {
            let start = match tree.get(M_SEALING_RUNS)? {
                Some(last) => key_after(&last),
                None => RUNS.to_vec(),
            };
            let mut batch = sled::Batch::default();
            let mut last = None;
            for item in tree.range(start..).take(key.sealing.chunk_values.max(1)) {
                let (k, v) = item?;
                if !k.starts_with(RUNS) {
                    break;
                }
                let (run_key, sealed) = Run::decode(&k, v)?.sealed(&values)?;
                batch.insert(run_key, sealed);
                last = Some(k.to_vec());
                sealed_runs += 1;
            }
            let Some(last) = last else { break };
            batch.insert(M_SEALING_RUNS, last);
            tree.apply_batch(batch)?;
            tree.flush()?;
            if let Some(after_step) = &key.sealing.after_step {
                after_step(sealed_runs);
            }
        }
        // Every run is sealed: the rest of the tree but the runs.
        let quarantine = SealedTree::new(Some(Arc::clone(&vault)), TREE, &[QUARANTINE]);
        quarantine.seal_in_place(tree, M_SEALING, &key.sealing)?;
        db.drop_tree(crate::projections::TREE)?;
        let mut done = sled::Batch::default();
        done.remove(M_SEALING_RUNS);
        done.remove(M_SEALING);
        done.insert(M_SEALED, &[1u8]);
        tree.apply_batch(done)?;
        tree.flush()?;
        if sealed_runs > 0 {
            tracing::info!(sealed_runs, "hub store encrypted in place");
        }
        Ok(values)
    }

    /// The sealing of this store's log, for the trees derived from it.
    pub(crate) fn vault(&self) -> Option<&Arc<seal::Vault>> {
        self.values.vault()
    }

    /// The key of the people's tags the projections keep (to find the
    /// files of one person without holding the ID number), derived from the
    /// district secret.
    pub fn projection_tag_key(&self) -> station_proto::person::TagKey {
        self.district_secret.derive_key(PROJECTION_TAGS)
    }

    /// The district directory's key, derived from the district secret: the
    /// key of the directory tags the projections keep and the district's
    /// devices compute ([`station_proto::directory`]). A secret: handed
    /// only to device tokens, never logged.
    pub fn directory_key(&self) -> station_proto::person::TagKey {
        station_proto::directory::key_from_secret(&self.district_secret)
    }

    /// Sets the chain head of each origin given whose state has none, in
    /// one durable batch.
    fn set_chain_heads(
        &self,
        heads: &[(Uuid, station_proto::chain::Digest)],
    ) -> Result<(), HubError> {
        if heads.is_empty() {
            return Ok(());
        }
        let _writer = self.lock_writer();
        let mut batch = sled::Batch::default();
        for (origin, head) in heads {
            let mut state = self.origin(*origin)?;
            if state.chain_head.is_none() {
                state.chain_head = Some(head.to_vec());
                batch.insert(key(ORIGINS, &[origin.as_bytes()]), origin_json(&state)?);
            }
        }
        self.tree.apply_batch(batch)?;
        self.group.wait_durable(self.group.written(None))?;
        Ok(())
    }

    /// The store, refusing (into quarantine) events of stations outside
    /// `stations` from now on.
    #[must_use]
    pub fn with_roster(mut self, stations: impl IntoIterator<Item = String>) -> Self {
        self.roster = Some(stations.into_iter().collect());
        self
    }

    /// The store, quarantining from now on events whose `recorded_at_ms`,
    /// `hlc` or event id runs more than `skew_ms` ahead of the hub's clock
    /// (by default [`station_proto::validate::MAX_CLOCK_SKEW_MS`], 24 h).
    #[must_use]
    pub fn with_max_clock_skew(mut self, skew_ms: i64) -> Self {
        self.max_clock_skew_ms = skew_ms.max(0);
        self
    }

    /// The data folder the store was opened in, where the hub keeps its
    /// other files (the read audit log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The identity of this log, made at random when the log is created and
    /// again when it is replaced ([`HubStore::renew_log_id`]): hub positions
    /// mean something only within one log, so devices pull again from the
    /// start when it changes.
    pub fn log_id(&self) -> Uuid {
        *self
            .log_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives the log a new identity, durably: for a log restored from a
    /// backup, whose positions after the backup will be given to other
    /// events than the lost log gave them.
    ///
    /// # Errors
    /// Storage errors; the identity is then unchanged.
    pub fn renew_log_id(&self) -> Result<Uuid, HubError> {
        let _writer = self.lock_writer();
        let id = Uuid::new_v4();
        self.tree.insert(M_LOG_ID, id.as_bytes())?;
        self.group.wait_durable(self.group.written(None))?;
        *self
            .log_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = id;
        Ok(id)
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

    /// Makes every write completed so far durable: flush, then fsync. Writes
    /// in progress under the writers complete first.
    ///
    /// # Errors
    /// The flush or fsync failed.
    pub fn sync(&self) -> Result<(), HubError> {
        let ticket = {
            let _writer = self.lock_writer();
            let _token_writer = self.tokens.lock_writer();
            self.group.written(None)
        };
        self.group.wait_durable(ticket)?;
        Ok(())
    }

    /// The token records.
    pub fn token_store(&self) -> &TokenStore {
        &self.tokens
    }

    /// Stores a new token record unless its id is taken: [`TokenStore::insert`].
    ///
    /// # Errors
    /// Storage errors: the token must then not be handed out.
    pub fn insert_token(&self, record: &TokenRecord) -> Result<bool, HubError> {
        self.tokens.insert(record)
    }

    /// The token record with this id, if any.
    ///
    /// # Errors
    /// Storage errors.
    pub fn token(&self, token_id: &str) -> Result<Option<TokenRecord>, HubError> {
        self.tokens.get(token_id)
    }

    /// Every token record, by id.
    ///
    /// # Errors
    /// Storage errors.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, HubError> {
        self.tokens.all()
    }

    /// Changes one token record: [`TokenStore::update`].
    ///
    /// # Errors
    /// [`HubError::UnknownToken`], or storage errors (then nothing changed).
    pub fn update_token(
        &self,
        token_id: &str,
        change: impl FnOnce(&mut TokenRecord) -> bool,
    ) -> Result<TokenRecord, HubError> {
        self.tokens.update(token_id, change)
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
        self.tree
            .insert(key(ORIGINS, &[origin.as_bytes()]), origin_json(&state)?)?;
        Ok(state)
    }

    /// Stores a pushed batch as [`crate::ingest::decide`] decides: per origin,
    /// events at or below `durable_through` are ignored, the rest must
    /// continue it without a gap. Valid events go to the log with a new hub
    /// position and their receive time (`now_ms`); events that decode but
    /// break a rule, or belong to a station outside the roster given to
    /// [`HubStore::with_roster`], go to quarantine with the reason. Returns
    /// once durable.
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
        self.push_signed(events, &[], today, now_ms)
    }

    /// [`HubStore::push`] with the push's signed heads: an origin whose
    /// device key is bound must carry one that verifies (see
    /// [`crate::ingest::verify_heads`]); each verified head is stored with
    /// the batch.
    ///
    /// # Errors
    /// As [`HubStore::push`], and [`HubError::Signature`] or
    /// [`HubError::Conflict`] refuse the whole batch.
    pub fn push_signed(
        &self,
        events: Vec<Event>,
        heads: &[SignedHead],
        today: chrono::NaiveDate,
        now_ms: i64,
    ) -> Result<PushOutcome, HubError> {
        self.push_via(events, heads, None, today, now_ms)
    }

    /// [`HubStore::push_signed`] of a batch that came by `via_relay` (the
    /// id of the relay token that carried it; `None`: its devices pushed it
    /// themselves), recorded in the state of each origin it brings new seqs
    /// of, in the same write.
    ///
    /// # Errors
    /// As [`HubStore::push_signed`].
    pub fn push_via(
        &self,
        events: Vec<Event>,
        heads: &[SignedHead],
        via_relay: Option<&str>,
        today: chrono::NaiveDate,
        now_ms: i64,
    ) -> Result<PushOutcome, HubError> {
        self.push_checked(events, heads, via_relay, true, today, now_ms)
    }

    /// Stores a page a station relay pulled from its city hub, which
    /// verified every signature before it stored the events: the page is
    /// decided and stored as a push is (idempotent, gap-free, each origin's
    /// chain carried on), without asking for signed heads. Only a relay's
    /// store, fed over its authenticated link to the hub, calls it.
    ///
    /// # Errors
    /// As [`HubStore::push`].
    pub fn push_from_city(
        &self,
        events: Vec<Event>,
        today: chrono::NaiveDate,
        now_ms: i64,
    ) -> Result<PushOutcome, HubError> {
        self.push_checked(events, &[], None, false, today, now_ms)
    }

    fn push_checked(
        &self,
        events: Vec<Event>,
        heads: &[SignedHead],
        via_relay: Option<&str>,
        check_signatures: bool,
        today: chrono::NaiveDate,
        now_ms: i64,
    ) -> Result<PushOutcome, HubError> {
        // What depends on the events alone is done before the writer is
        // taken, so that concurrent pushes do it side by side: validation,
        // encoding, and the stations of the cases the log opened (an
        // opening, once held, never changes).
        let ctx = ingest::context(today, now_ms, self.max_clock_skew_ms);
        let checked = ingest::check(events, &ctx);
        let events = &checked.events;
        let mut case_stations = HashMap::new();
        for case in events
            .iter()
            .filter_map(|e| e.body.as_ref().and_then(station_proto::case::case_of))
        {
            if let std::collections::hash_map::Entry::Vacant(entry) = case_stations.entry(case) {
                entry.insert(self.case_station(case)?);
            }
        }
        let mut writer = self.lock_writer();
        for (case, station) in &mut case_stations {
            if station.is_none() {
                *station = self.case_station(*case)?;
            }
        }
        let mut origins = BTreeMap::new();
        for origin in ingest::origins_of(events)? {
            if let std::collections::btree_map::Entry::Vacant(entry) = origins.entry(origin) {
                entry.insert(self.origin(origin)?);
            }
        }
        let mut held = HashSet::new();
        for event in events {
            if self.tree.contains_key(key(IDS, &[&event.event_id]))? {
                held.insert(event.event_id.clone());
            }
        }
        let mut keys = BTreeMap::new();
        for origin in origins.keys().filter(|_| check_signatures) {
            if let Some(key) = self.tokens.binding(*origin)?.and_then(|b| b.public_key) {
                keys.insert(*origin, key);
            }
        }
        let signed: BTreeSet<Uuid> = keys.keys().copied().collect();
        let transfers = self.known_transfers(events)?;
        let policy = Policy {
            today,
            roster: self.roster.as_ref(),
            now_ms,
            max_clock_skew_ms: self.max_clock_skew_ms,
            signed: Some(&signed),
            transfers: Some(&transfers),
        };
        let mut resent = HashMap::new();
        for (origin, seq, event_id) in ingest::resent(events, &origins) {
            if let Some(found) = self.held_at(origin, seq, event_id)? {
                resent.insert((origin, seq), found);
            }
        }
        let mut decision = match ingest::decide_checked(
            checked,
            origins,
            |id| held.contains(id),
            |origin, seq| resent.get(&(origin, seq)).cloned(),
            |case| case_stations.get(&case).cloned().flatten(),
            &policy,
        ) {
            Err(Refusal::Conflict { origin, seq }) => {
                self.count_conflict(origin)?;
                return Err(HubError::Conflict { origin, seq });
            }
            decided => decided?,
        };
        ingest::verify_heads(&mut decision, heads, |origin| keys.get(&origin).cloned())?;
        let mut outcome = PushOutcome::counting(&decision);
        let mut batch = sled::Batch::default();
        let mut hub_seq = *writer;
        let mut run = RunWriter::new(hub_seq + 1, Some(now_ms));
        let mut streams: BTreeMap<String, Positions> = BTreeMap::new();
        for verdict in decision.verdicts {
            match verdict.verdict {
                Verdict::Accept(accepted) => {
                    let ingest::Accepted { event, encoded } = *accepted;
                    let raw = self.values.seal(&event_place(hub_seq + 1), encoded)?;
                    if run.is_full_for(raw.len()) {
                        let full =
                            std::mem::replace(&mut run, RunWriter::new(hub_seq + 1, Some(now_ms)));
                        write_run(&mut batch, full, std::mem::take(&mut streams));
                    }
                    hub_seq = run.push(&raw);
                    batch.insert(key(IDS, &[&event.event_id]), &hub_seq.to_be_bytes());
                    if let Some(body @ station_proto::Body::CaseTransferAccepted(_)) = &event.body
                        && let Some((case, _)) = ingest::answered_request(body)
                    {
                        batch.insert(
                            key(
                                TAKEN_OVER,
                                &[case.as_bytes(), event.station_code.as_bytes()],
                            ),
                            &[],
                        );
                    }
                    streams.entry(event.station_code).or_default().push(hub_seq);
                }
                Verdict::Quarantine(q) => {
                    let json = serde_json::to_vec(&q)
                        .map_err(|e| HubError::Corrupt(format!("quarantine: {e}")))?;
                    let k = key(
                        QUARANTINE,
                        &[verdict.origin.as_bytes(), &verdict.origin_seq.to_be_bytes()],
                    );
                    let sealed = self.values.seal(&k, json)?;
                    batch.insert(k, sealed);
                }
                Verdict::AlreadyHeld => {}
            }
        }
        if !run.is_empty() {
            write_run(&mut batch, run, streams);
        }
        for (origin, state) in &mut decision.origins {
            if let Some((first, last)) = decision.new_seqs.get(origin) {
                state.via_relay = via_relay.map(str::to_string);
                if via_relay.is_some() {
                    state.relayed_events += last + 1 - first;
                    state.last_relayed_ms = now_ms;
                }
            }
            batch.insert(key(ORIGINS, &[origin.as_bytes()]), origin_json(state)?);
            outcome.acks.push((*origin, state.durable_through));
            if let Some(head) = &state.signed_head
                && decision
                    .new_seqs
                    .get(origin)
                    .is_some_and(|(_, last)| *last == head.last_seq)
            {
                batch.insert(
                    key(HEADS, &[origin.as_bytes(), &head.last_seq.to_be_bytes()]),
                    head.signature.as_slice(),
                );
            }
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

    /// Every signed head verified for `origin`, oldest first.
    ///
    /// # Errors
    /// Storage errors.
    pub fn signed_heads(&self, origin: Uuid) -> Result<Vec<StoredHead>, HubError> {
        let prefix = key(HEADS, &[origin.as_bytes()]);
        self.tree
            .scan_prefix(&prefix)
            .map(|item| {
                let (k, v) = item?;
                Ok(StoredHead {
                    last_seq: read_u64(&k[prefix.len()..])?,
                    signature: v.to_vec(),
                })
            })
            .collect()
    }

    /// The event held at `origin`'s `seq`, found by the id of the event
    /// resent there: in the log under that id when it is of that origin and
    /// seq, else in quarantine at that seq; `None` when neither.
    fn held_at(&self, origin: Uuid, seq: u64, event_id: &[u8]) -> Result<Option<Event>, HubError> {
        if let Some(pos) = self.position_of(event_id)?
            && let Some(event) = self.event_at(pos)?
            && event.origin_id == origin.as_bytes()
            && event.origin_seq == seq
        {
            return Ok(Some(event));
        }
        let k = key(QUARANTINE, &[origin.as_bytes(), &seq.to_be_bytes()]);
        let Some(json) = self.tree.get(&k)? else {
            return Ok(None);
        };
        let json = self.values.open(&k, &json)?;
        let quarantined: Quarantined = serde_json::from_slice(&json)
            .map_err(|e| HubError::Corrupt(format!("quarantine: {e}")))?;
        Event::decode(quarantined.event.as_slice())
            .map(Some)
            .map_err(|e| HubError::Corrupt(format!("quarantined event: {e}")))
    }

    /// Counts a refused conflict in the origin's state, durably; the caller
    /// holds the writer.
    fn count_conflict(&self, origin: Uuid) -> Result<(), HubError> {
        let mut state = self.origin(origin)?;
        state.conflicts += 1;
        self.tree
            .insert(key(ORIGINS, &[origin.as_bytes()]), origin_json(&state)?)?;
        self.group.wait_durable(self.group.written(None))?;
        tracing::warn!(%origin, conflicts = state.conflicts, "push refused: conflict at a held seq");
        Ok(())
    }

    /// The station's newest hub position.
    ///
    /// # Errors
    /// Storage errors.
    pub fn station_head(&self, station_code: &str) -> Result<u64, HubError> {
        let prefix = key(STREAMS, &[station_code.as_bytes()]);
        match self.tree.scan_prefix(&prefix).next_back() {
            Some(item) => {
                let (k, _) = item?;
                read_u64(&k[prefix.len()..])
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
        let prefix = key(STREAMS, &[station_code.as_bytes()]);
        let start = key(&prefix, &[&after.saturating_add(1).to_be_bytes()]);
        let mut page = PullPage {
            next_cursor: after,
            head: self.station_head(station_code)?,
            ..PullPage::default()
        };
        let mut bytes = 0usize;
        let mut scanned = 0usize;
        let mut run: Option<Run> = None;
        'records: for item in self.tree.range(start..) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            for pos in Positions::decode(&v)? {
                if pos <= after {
                    continue;
                }
                if page.events.len() >= max_events || scanned >= PULL_MAX_SCANNED {
                    break 'records;
                }
                scanned += 1;
                if !run.as_ref().is_some_and(|r| r.holds(pos)) {
                    run = Some(
                        run_at(&self.tree, pos)?
                            .ok_or_else(|| HubError::Corrupt(format!("missing event {pos}")))?,
                    );
                }
                let Some(current) = &run else {
                    // Set just above.
                    continue;
                };
                let raw = current.opened(pos, &self.values)?;
                if !page.events.is_empty() && bytes + raw.len() > max_bytes {
                    break 'records;
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
            receipts: true,
            ..self.scan_events_after(after)
        }
    }

    /// [`HubStore::scan_after`] without receive times (`received_at_ms` is
    /// `None`): the times can be read apart with
    /// [`HubStore::scan_receipts_after`], on another thread, say.
    pub fn scan_events_after(&self, after: u64) -> LogScan {
        let next = after.saturating_add(1);
        LogScan {
            runs: self.tree.range(key(RUNS, &[&next.to_be_bytes()])..),
            run: None,
            next,
            receipts: false,
            values: Arc::clone(&self.values),
        }
    }

    /// The receive times of the events after hub position `after`, read as
    /// one sequential scan alongside [`HubStore::scan_events_after`].
    pub fn scan_receipts_after(&self, after: u64) -> ReceiptScan {
        let start = after.saturating_add(1).to_be_bytes();
        ReceiptScan {
            runs: self.tree.range(key(RUNS, &[&start])..),
            run: None,
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

    /// What the log holds of the transfers `events` touch: the requests
    /// their answers name, and the stations that took their cases over.
    ///
    /// # Errors
    /// Storage errors.
    pub fn known_transfers(&self, events: &[Event]) -> Result<ingest::KnownTransfers, HubError> {
        let mut known = ingest::KnownTransfers::default();
        let mut scanned = HashSet::new();
        for body in events.iter().filter_map(|e| e.body.as_ref()) {
            if let Some((_, request)) = ingest::answered_request(body)
                && let Some(position) = self.position_of(request.as_bytes())?
                && let Some(found) = self
                    .event_at(position)?
                    .and_then(|e| ingest::requested_transfer(e.body.as_ref()?))
            {
                known.requests.insert(request, found);
            }
            if let Some(case) = station_proto::case::case_of(body)
                && scanned.insert(case)
            {
                let prefix = key(TAKEN_OVER, &[case.as_bytes()]);
                for item in self.tree.scan_prefix(&prefix).keys() {
                    let k = item?;
                    if let Ok(station) = std::str::from_utf8(&k[prefix.len()..]) {
                        known.taken_over.insert((case, station.to_owned()));
                    }
                }
            }
        }
        Ok(known)
    }

    /// Whether `station` took `case` over by an acceptance the log holds
    /// (whether or not it took effect).
    ///
    /// # Errors
    /// Storage errors.
    pub fn took_over(&self, case: Uuid, station: &str) -> Result<bool, HubError> {
        Ok(self
            .tree
            .contains_key(key(TAKEN_OVER, &[case.as_bytes(), station.as_bytes()]))?)
    }

    /// The station of the case `case` opened, when the log holds its
    /// opening event.
    ///
    /// # Errors
    /// Storage errors.
    pub fn case_station(&self, case: Uuid) -> Result<Option<String>, HubError> {
        if let Some(station) = self.held_case_stations().get(&case) {
            return Ok(Some(station.clone()));
        }
        let Some(position) = self.position_of(case.as_bytes())? else {
            return Ok(None);
        };
        let station = self.event_at(position)?.and_then(|event| {
            matches!(event.body, Some(station_proto::Body::CaseOpened(_)))
                .then_some(event.station_code)
        });
        if let Some(station) = &station {
            let mut held = self.held_case_stations();
            if held.len() >= CASE_STATIONS_HELD {
                held.clear();
            }
            held.insert(case, station.clone());
        }
        Ok(station)
    }

    fn held_case_stations(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, String>> {
        // The map holds only answers read from the log: one left by a
        // panicking holder is still true.
        self.case_stations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The hub wall clock (ms) when the event at `hub_seq` was received.
    ///
    /// # Errors
    /// Storage errors.
    pub fn received_at(&self, hub_seq: u64) -> Result<Option<i64>, HubError> {
        Ok(run_at(&self.tree, hub_seq)?.and_then(|run| run.received_at_ms))
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
                let v = self.values.open(&k, &v)?;
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
        run_at(&self.tree, hub_seq)?
            .map(|run| run.event(hub_seq, &self.values))
            .transpose()
    }
}

/// The smallest key above `k`.
fn key_after(k: &[u8]) -> Vec<u8> {
    let mut next = k.to_vec();
    next.push(0);
    next
}

fn origin_json(state: &OriginState) -> Result<Vec<u8>, HubError> {
    serde_json::to_vec(state).map_err(|e| HubError::Corrupt(format!("origin: {e}")))
}

/// Adds a run and its stations' `t:` records to `batch`.
pub(crate) fn write_run(
    batch: &mut sled::Batch,
    run: RunWriter,
    streams: BTreeMap<String, Positions>,
) {
    let (k, v) = run.finish();
    batch.insert(k, v);
    for (station, positions) in streams {
        if let Some(last) = positions.last() {
            batch.insert(
                key(STREAMS, &[station.as_bytes(), &last.to_be_bytes()]),
                positions.encode(),
            );
        }
    }
}

impl HubLog for HubStore {
    fn push_signed(
        &self,
        events: Vec<Event>,
        heads: &[SignedHead],
        today: chrono::NaiveDate,
        now_ms: i64,
    ) -> Result<PushOutcome, HubError> {
        HubStore::push_signed(self, events, heads, today, now_ms)
    }

    fn signed_heads(&self, origin: Uuid) -> Result<Vec<StoredHead>, HubError> {
        HubStore::signed_heads(self, origin)
    }

    fn hello(
        &self,
        origin: Uuid,
        station_code: &str,
        head_seq: u64,
        device_clock_ms: i64,
        now_ms: i64,
    ) -> Result<OriginState, HubError> {
        HubStore::hello(
            self,
            origin,
            station_code,
            head_seq,
            device_clock_ms,
            now_ms,
        )
    }

    fn bind_origin(
        &self,
        origin: Uuid,
        token_id: &str,
        public_key: Option<&[u8]>,
    ) -> Result<OriginBinding, HubError> {
        self.tokens.bind(origin, token_id, public_key)
    }

    fn binding(&self, origin: Uuid) -> Result<Option<OriginBinding>, HubError> {
        self.tokens.binding(origin)
    }

    fn origin(&self, origin: Uuid) -> Result<OriginState, HubError> {
        HubStore::origin(self, origin)
    }

    fn origins(&self) -> Result<Vec<(Uuid, OriginState)>, HubError> {
        HubStore::origins(self)
    }

    fn pull_for(
        &self,
        station_code: &str,
        after: u64,
        max_events: usize,
        max_bytes: usize,
        skip_origin: Option<Uuid>,
    ) -> Result<PullPage, HubError> {
        HubStore::pull_for(
            self,
            station_code,
            after,
            max_events,
            max_bytes,
            skip_origin,
        )
    }

    fn station_head(&self, station_code: &str) -> Result<u64, HubError> {
        HubStore::station_head(self, station_code)
    }

    fn event_count(&self) -> u64 {
        HubStore::event_count(self)
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>, HubError> {
        HubStore::events_after(self, after, limit)
    }

    fn position_of(&self, event_id: &[u8]) -> Result<Option<u64>, HubError> {
        HubStore::position_of(self, event_id)
    }

    fn quarantine(&self) -> Result<Vec<(Uuid, Quarantined)>, HubError> {
        HubStore::quarantine(self)
    }
}
