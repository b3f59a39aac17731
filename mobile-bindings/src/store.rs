//! [`FieldStore`]: one device's store, as the apps hold it — opened on a
//! path, entries recorded through blocking calls, views read back.
//!
//! Invariants:
//! - every call blocks the calling thread and returns; none waits without a
//!   bound (a save waits for its own fsync, a sync for at most
//!   [`StoreOptions::sync_timeout_secs`]); the app calls them off its UI thread;
//! - an entry is validated completely (by the agent, against `station-proto`'s
//!   rules and the device's state) before anything is written; a rejected entry
//!   changes nothing, an accepted one is durable when the call returns;
//! - the object is `Send + Sync`: the agent inside is shared, its writer is
//!   serialised by the log, and sync rounds are serialised by the runtime lock;
//! - the store directory is locked while the object lives, and released when
//!   the last reference to it is dropped;
//! - a locked store ([`FieldStore::lock`], or idle longer than
//!   [`StoreOptions::lock_after_idle_secs`]) holds no engine, no data key and
//!   no open file; `unlock` asks the app's key provider again;
//! - once a sync wiped the device on the hub's order (it was reported lost),
//!   the object holds no engine and every call answers
//!   [`FieldError::Wiped`], as does opening the store again;
//! - wherever a call takes a case id it takes the whole id or a prefix of it
//!   no other case of the station shares (4 or more hexadecimal digits); an
//!   ambiguous prefix is refused as invalid input, an unknown one as an
//!   unknown case.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use station_agent::engine::{now_ms, today};
use station_agent::{Agent, AgentError, InitOptions, OpenOptions, StoreError};
use station_proto::Body;
use station_proto::validate;

use crate::entries::{
    Assessment, CaseClosing, CaseMerging, CaseNote, CaseOpening, CaseReopening, CommunityActivity,
    DuplicateDismissal, GroupSession, GuardianCall, Resource, ReviewDecision, ReviewRequest,
    Training, Verification, Visit, Voiding, id_text, parse_entry_id, parse_id,
};
use crate::error::FieldError;
use crate::keys::{KeyProvider, ProviderWrapper};
use crate::views::{CaseSummary, FollowUp, ReviewSummary, StoreStatus, TimelineEntry};
use station_agent::seal::KeySource;

/// The sled page cache a store opens with unless told otherwise: small, for
/// phones (the agent's default).
pub const DEFAULT_CACHE_BYTES: u64 = station_agent::store::DEFAULT_CACHE_CAPACITY;

/// How long one `sync_now` may take unless told otherwise, in seconds.
pub const DEFAULT_SYNC_TIMEOUT_SECS: u32 = 60;

/// The shortest sync bound accepted, in seconds: a Hello and one small batch
/// on a slow link.
const MIN_SYNC_TIMEOUT_SECS: u32 = 2;

/// How a store is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct StoreOptions {
    /// sled's page cache, in bytes (default 4 MiB).
    #[uniffi(default = 4194304)]
    pub cache_bytes: u64,
    /// The longest one `sync_now` may take, in seconds (default 60, at least
    /// 2): half of it for retries after the link drops, the rest for the
    /// calls in flight.
    #[uniffi(default = 60)]
    pub sync_timeout_secs: u32,
    /// Locks the store by itself once no call used it for this many seconds
    /// (see [`FieldStore::lock`]); 0, the default, never.
    #[uniffi(default = 0)]
    pub lock_after_idle_secs: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            cache_bytes: DEFAULT_CACHE_BYTES,
            sync_timeout_secs: DEFAULT_SYNC_TIMEOUT_SECS,
            lock_after_idle_secs: 0,
        }
    }
}

/// An entry saved on the device.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Recorded {
    /// The entry's id; for a case opening, the case id.
    pub event_id: String,
    /// Its place in this device's log (1, 2, 3 …).
    pub origin_seq: u64,
    /// True when an entry with the same `entry_id` was saved before: nothing
    /// new was written and the earlier entry's id and place are returned.
    pub duplicate: bool,
    /// The id of the review request (提请审核) recorded with the entry, when
    /// the district's review policy ([`FieldStore::review_policy`]) says
    /// entries of its kind need a supervisor's review; `None` otherwise.
    pub review_request_id: Option<String>,
}

/// One device's store of field entries: the station's cases, the entries
/// recorded on this phone and those pulled from colleagues, and the sync with
/// the hub. Every method blocks; call them off the UI thread.
#[derive(Debug, uniffi::Object)]
pub struct FieldStore {
    /// The engine while the store is open: identity, durable log, views,
    /// state checks. Shared with sync tasks, which outlive no call.
    pub(crate) held: Mutex<Held>,
    /// Where the store is and how it opens again at [`FieldStore::unlock`]
    /// (with the app's key provider, asked again).
    pub(crate) reopen: (PathBuf, OpenOptions),
    /// The idle time after which the store locks itself, if any.
    pub(crate) idle_lock: Option<Duration>,
    /// When a call last used the engine.
    pub(crate) last_used: Mutex<Instant>,
    /// The thread that locks the store once idle, woken when the store is
    /// dropped so that it ends.
    pub(crate) idle_watch: Mutex<Option<std::thread::Thread>>,
    /// The bound of one `sync_now`.
    pub(crate) sync_timeout: Duration,
    /// The runtime sync runs on, started by the first `sync_now`; holding the
    /// lock for a whole round serialises rounds.
    pub(crate) runtime: Mutex<Option<tokio::runtime::Runtime>>,
    /// Why the last `sync_now` failed, for `status`.
    pub(crate) last_error: Mutex<Option<String>>,
}

/// What a [`FieldStore`] holds.
#[derive(Debug)]
pub(crate) enum Held {
    /// The open engine.
    Open(Arc<Agent>),
    /// Locked by [`FieldStore::lock`] or after the idle time: the engine,
    /// its data key and its open files are dropped; every call but
    /// `unlock` answers [`FieldError::Locked`].
    Locked,
    /// The hub ordered the device wiped and it was: its keys are destroyed,
    /// the engine is dropped, and every call answers [`FieldError::Wiped`].
    Wiped,
}

/// Locks a mutex whose data stays consistent even if a holder panicked (each
/// holder replaces the value whole).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[uniffi::export]
impl FieldStore {
    /// Opens the store at `path` (a directory in the app's private storage),
    /// creating it for `station_code` and `worker_id` when it is empty. The
    /// store is encrypted under a data key that `key_provider` wraps with
    /// the platform's key store (see [`KeyProvider`]): a new store is created
    /// encrypted, a store in clear of an earlier version is encrypted in
    /// place first. There is no way to open a store in clear.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`] for a bad station code or worker id;
    /// [`FieldError::WrongStore`] when the store was set up for another
    /// station or worker; [`FieldError::Storage`] when it cannot be opened
    /// (for one, when it is open already), or naming the key when the
    /// provider fails or its key does not open this store (nothing is
    /// changed then); [`FieldError::Wiped`] when the hub had it wiped.
    #[uniffi::constructor]
    pub fn open(
        path: String,
        station_code: String,
        worker_id: String,
        key_provider: Arc<dyn KeyProvider>,
    ) -> Result<Arc<Self>, FieldError> {
        Self::open_with_options(
            path,
            station_code,
            worker_id,
            key_provider,
            StoreOptions::default(),
        )
    }

    /// [`FieldStore::open`] with a page cache size, a sync bound and an idle
    /// lock.
    ///
    /// # Errors
    /// As [`FieldStore::open`].
    #[uniffi::constructor]
    pub fn open_with_options(
        path: String,
        station_code: String,
        worker_id: String,
        key_provider: Arc<dyn KeyProvider>,
        options: StoreOptions,
    ) -> Result<Arc<Self>, FieldError> {
        let key = KeySource::Provider(Arc::new(ProviderWrapper(key_provider)));
        Self::open_keyed(path, station_code, worker_id, options, key)
    }
}

impl FieldStore {
    fn open_keyed(
        path: String,
        station_code: String,
        worker_id: String,
        options: StoreOptions,
        key: KeySource,
    ) -> Result<Arc<Self>, FieldError> {
        if path.trim().is_empty() {
            return Err(FieldError::invalid("path", "must not be empty"));
        }
        validate::station_code("station_code", &station_code)?;
        let mut worker = worker_id;
        validate::text("worker_id", &mut worker, validate::AUTHOR_MAX, true)?;
        let dir = PathBuf::from(path);
        let open = OpenOptions {
            cache_capacity: options.cache_bytes,
            key: Some(key),
            ..OpenOptions::default()
        };
        let open_again = open.clone();
        let agent = match Agent::open(&dir, open.clone()) {
            Ok(agent) => agent,
            Err(AgentError::Store(StoreError::NotInitialised)) => Agent::init(
                &dir,
                InitOptions {
                    station_code: station_code.clone(),
                    worker_id: worker.clone(),
                    hub_url: None,
                    token: None,
                },
                open,
            )?,
            Err(error) => return Err(error.into()),
        };
        let identity = agent.identity();
        if identity.station_code != station_code {
            return Err(FieldError::WrongStore {
                reason: format!(
                    "the store belongs to station {}, not {station_code}",
                    identity.station_code
                ),
            });
        }
        if identity.worker_id != worker {
            return Err(FieldError::WrongStore {
                reason: "the store belongs to another social worker; \
                         give each worker a store of their own"
                    .to_string(),
            });
        }
        let timeout_secs = options.sync_timeout_secs.max(MIN_SYNC_TIMEOUT_SECS);
        let idle_lock = (options.lock_after_idle_secs > 0)
            .then(|| Duration::from_secs(u64::from(options.lock_after_idle_secs)));
        let store = Arc::new(Self {
            held: Mutex::new(Held::Open(Arc::new(agent))),
            reopen: (dir, open_again),
            idle_lock,
            last_used: Mutex::new(Instant::now()),
            idle_watch: Mutex::new(None),
            sync_timeout: Duration::from_secs(u64::from(timeout_secs)),
            runtime: Mutex::new(None),
            last_error: Mutex::new(None),
        });
        if let Some(idle) = idle_lock {
            let weak = Arc::downgrade(&store);
            let watcher = std::thread::Builder::new()
                .name("station-idle-lock".into())
                .spawn(move || {
                    let mut wait = idle;
                    loop {
                        std::thread::park_timeout(wait);
                        let Some(store) = weak.upgrade() else {
                            return;
                        };
                        wait = store.lock_if_idle(idle);
                    }
                })
                .map_err(|e| FieldError::Internal {
                    reason: format!("cannot start the idle lock: {}", e.kind()),
                })?;
            *lock(&store.idle_watch) = Some(watcher.thread().clone());
        }
        Ok(store)
    }

    /// Locks the store when no call used it for `idle`; returns how long
    /// until it may be idle that long.
    fn lock_if_idle(&self, idle: Duration) -> Duration {
        let since = lock(&self.last_used).elapsed();
        if since >= idle {
            self.close_engine();
            idle
        } else {
            idle - since
        }
    }

    /// Drops the open engine, leaving the store locked.
    fn close_engine(&self) {
        let mut held = lock(&self.held);
        if matches!(*held, Held::Open(_)) {
            *held = Held::Locked;
        }
    }
}

#[uniffi::export]
impl FieldStore {
    /// 一人一档: opens a case file. The returned `event_id` is the case id.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`] naming the field and the rule (bad ID
    /// check character, birth date not matching, date in the future …);
    /// [`FieldError::PersonHasOpenFile`] naming the open file the station
    /// already holds for the same ID number.
    pub fn open_case(&self, entry: CaseOpening) -> Result<Recorded, FieldError> {
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body())
    }

    /// 预估: changes a case's tier.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`], [`FieldError::UnknownCase`],
    /// [`FieldError::CaseClosed`].
    pub fn assess_case(&self, mut entry: Assessment) -> Result<Recorded, FieldError> {
        entry.case_id = self.resolve("case_assessed.case_id", &entry.case_id)?;
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body()?)
    }

    /// Adds a note to a case (open or closed).
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`], [`FieldError::UnknownCase`].
    pub fn add_note(&self, mut entry: CaseNote) -> Result<Recorded, FieldError> {
        entry.case_id = self.resolve("case_note_added.case_id", &entry.case_id)?;
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body()?)
    }

    /// 入户走访: records a visit to an open case.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`], [`FieldError::UnknownCase`],
    /// [`FieldError::CaseClosed`].
    pub fn record_visit(&self, mut entry: Visit) -> Result<Recorded, FieldError> {
        entry.case_id = self.resolve("visit_recorded.case_id", &entry.case_id)?;
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body()?)
    }

    /// 电话联系监护人: records a phone call to an open case's guardian.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`], [`FieldError::UnknownCase`],
    /// [`FieldError::CaseClosed`].
    pub fn record_guardian_call(&self, mut entry: GuardianCall) -> Result<Recorded, FieldError> {
        entry.case_id = self.resolve("guardian_called.case_id", &entry.case_id)?;
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body()?)
    }

    /// 信息核实: records a verification; confirmed categories replace the
    /// case's categories.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`], [`FieldError::UnknownCase`].
    pub fn verify_beneficiary(&self, mut entry: Verification) -> Result<Recorded, FieldError> {
        entry.case_id = self.resolve("beneficiary_verified.case_id", &entry.case_id)?;
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body()?)
    }

    /// 合并档案: merges the file `absorbed_case_id` into the open file
    /// `survivor_case_id` (both named by id, 档案编号 or a unique prefix).
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`] (also for a file merged already, or one
    /// with files merged into it, as the absorbed file),
    /// [`FieldError::UnknownCase`], [`FieldError::CaseClosed`].
    pub fn merge_cases(&self, mut entry: CaseMerging) -> Result<Recorded, FieldError> {
        entry.survivor_case_id =
            self.resolve("cases_merged.survivor_case_id", &entry.survivor_case_id)?;
        entry.absorbed_case_id =
            self.resolve("cases_merged.absorbed_case_id", &entry.absorbed_case_id)?;
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body()?)
    }

    /// 非重复: records that a flagged file is not a duplicate of another.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`], [`FieldError::UnknownCase`].
    pub fn dismiss_duplicate(&self, mut entry: DuplicateDismissal) -> Result<Recorded, FieldError> {
        entry.case_id = self.resolve("duplicate_dismissed.case_id", &entry.case_id)?;
        entry.duplicate_of_case_id = self.resolve(
            "duplicate_dismissed.duplicate_of_case_id",
            &entry.duplicate_of_case_id,
        )?;
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body()?)
    }

    /// Closes an open case.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`], [`FieldError::UnknownCase`],
    /// [`FieldError::CaseClosed`].
    pub fn close_case(&self, mut entry: CaseClosing) -> Result<Recorded, FieldError> {
        entry.case_id = self.resolve("case_closed.case_id", &entry.case_id)?;
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body()?)
    }

    /// Reopens a closed case.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`], [`FieldError::UnknownCase`],
    /// [`FieldError::CaseAlreadyOpen`]; [`FieldError::PersonHasOpenFile`]
    /// when the person has another open file at the station.
    pub fn reopen_case(&self, mut entry: CaseReopening) -> Result<Recorded, FieldError> {
        entry.case_id = self.resolve("case_reopened.case_id", &entry.case_id)?;
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body()?)
    }

    /// 社区活动: records a community activity.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`].
    pub fn record_activity(&self, entry: CommunityActivity) -> Result<Recorded, FieldError> {
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body())
    }

    /// 小组工作: records one session of a group.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`].
    pub fn record_group_session(&self, entry: GroupSession) -> Result<Recorded, FieldError> {
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body())
    }

    /// 链接资源: records a resource linked for a case or a community.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`] (a negative amount, nothing of value for
    /// a cash or in-kind resource …), [`FieldError::UnknownCase`].
    pub fn link_resource(&self, mut entry: Resource) -> Result<Recorded, FieldError> {
        if let Some(case_id) = &entry.case_id {
            entry.case_id = Some(self.resolve("resource_linked.case_id", case_id)?);
        }
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body()?)
    }

    /// 培训/督导/共学: records a training.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`].
    pub fn record_training(&self, entry: Training) -> Result<Recorded, FieldError> {
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body())
    }

    /// Voids an entry recorded by mistake (on this device or pulled from a
    /// colleague); views then read as if it had never been recorded.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`] (a void of a void, an entry voided
    /// already), [`FieldError::UnknownEntry`].
    pub fn void_entry(&self, entry: Voiding) -> Result<Recorded, FieldError> {
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body()?)
    }

    /// 提请审核: asks a supervisor to review a tier change, a case plan or a
    /// closure of a case.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`] (among others, a case with no entry of
    /// that kind to review), [`FieldError::UnknownCase`].
    pub fn request_review(&self, mut entry: ReviewRequest) -> Result<Recorded, FieldError> {
        entry.case_id = self.resolve("review_requested.case_id", &entry.case_id)?;
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body()?)
    }

    /// A supervisor's decision on a review request, offline like any entry:
    /// approved, or returned with what to change.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`] (among others, a request this device
    /// does not hold, a return without a comment), [`FieldError::UnknownCase`].
    pub fn decide_review(&self, entry: ReviewDecision) -> Result<Recorded, FieldError> {
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body()?)
    }

    /// Review requests of the station's cases: those waiting for a
    /// supervisor (with their age) and those returned and not resubmitted
    /// yet; with `all`, the decided ones too.
    ///
    /// # Errors
    /// [`FieldError::Storage`].
    pub fn reviews(&self, all: bool) -> Result<Vec<ReviewSummary>, FieldError> {
        let today = today();
        Ok(self
            .agent()?
            .review_items()?
            .iter()
            .filter(|(_, item)| all || item.is_queued() || item.is_returned())
            .map(|(case, item)| ReviewSummary::new(case, item, today))
            .collect())
    }

    /// The station's cases this device knows, open and closed, by community
    /// then name.
    ///
    /// # Errors
    /// [`FieldError::Storage`].
    pub fn cases(&self) -> Result<Vec<CaseSummary>, FieldError> {
        let agent = self.agent()?;
        let intervals = agent.intervals();
        Ok(agent
            .cases()?
            .iter()
            .map(|case| CaseSummary::new(case, intervals))
            .collect())
    }

    /// One case.
    ///
    /// # Errors
    /// [`FieldError::UnknownCase`], [`FieldError::InvalidInput`] for an id
    /// that is not a UUID, [`FieldError::Storage`].
    pub fn case(&self, case_id: String) -> Result<CaseSummary, FieldError> {
        let id = parse_id("case_id", &self.resolve("case_id", &case_id)?)?;
        let agent = self.agent()?;
        let case = agent.case(id)?.ok_or_else(|| FieldError::UnknownCase {
            field: "case_id".into(),
        })?;
        Ok(CaseSummary::new(&case, agent.intervals()))
    }

    /// Open cases whose follow-up is overdue or due within `horizon_days`
    /// from today, most overdue first.
    ///
    /// # Errors
    /// [`FieldError::Storage`].
    pub fn due_follow_ups(&self, horizon_days: u32) -> Result<Vec<FollowUp>, FieldError> {
        Ok(self
            .agent()?
            .due_follow_ups(today(), horizon_days)?
            .iter()
            .map(FollowUp::from)
            .collect())
    }

    /// Every entry of one case that is not voided, oldest first, whoever
    /// recorded it.
    ///
    /// # Errors
    /// [`FieldError::UnknownCase`] when the device holds nothing of the case;
    /// [`FieldError::InvalidInput`] for an id that is not a UUID;
    /// [`FieldError::Storage`].
    pub fn case_timeline(&self, case_id: String) -> Result<Vec<TimelineEntry>, FieldError> {
        let id = parse_id("case_id", &self.resolve("case_id", &case_id)?)?;
        let agent = self.agent()?;
        let events = agent.case_timeline(id)?;
        if events.is_empty() && agent.case(id)?.is_none() {
            return Err(FieldError::UnknownCase {
                field: "case_id".into(),
            });
        }
        Ok(events
            .into_iter()
            .filter_map(|event| TimelineEntry::new(event, false))
            .collect())
    }

    /// The latest `limit` entries recorded on this device, newest first,
    /// voids and voided entries included (marked).
    ///
    /// # Errors
    /// [`FieldError::Storage`].
    pub fn recent_entries(&self, limit: u32) -> Result<Vec<TimelineEntry>, FieldError> {
        let agent = self.agent()?;
        let log = agent.log();
        let limit = u64::from(limit);
        let after = log.durable_seq().saturating_sub(limit);
        let events = agent.own_events(after, usize::try_from(limit).unwrap_or(usize::MAX))?;
        let mut entries = Vec::with_capacity(events.len());
        for event in events.into_iter().rev() {
            let voided = match station_proto::ids::from_bytes(&event.event_id) {
                Some(id) => log.is_voided(id).map_err(AgentError::from)?,
                None => false,
            };
            entries.extend(TimelineEntry::new(event, voided));
        }
        Ok(entries)
    }

    /// Entries recorded on this device that the hub has not acknowledged yet.
    ///
    /// # Errors
    /// [`FieldError::Storage`].
    pub fn unacknowledged_count(&self) -> Result<u64, FieldError> {
        let agent = self.agent()?;
        let log = agent.log();
        let acked = log.acked().map_err(AgentError::from)?;
        Ok(log.head_seq().saturating_sub(acked))
    }

    /// Locks the store: drops its data key and closes its files, so that
    /// nothing of it is readable in the app's memory; every call but
    /// `unlock` (and `is_locked`) then answers [`FieldError::Locked`].
    /// Call it when the app goes to the background, say; see also
    /// [`StoreOptions::lock_after_idle_secs`]. A sync under way finishes
    /// first: the files close when it ends. Locking a locked or wiped store
    /// changes nothing.
    pub fn lock(&self) {
        self.close_engine();
    }

    /// Opens a locked store again, asking the app's key provider for the
    /// data key again (so the app can require the worker's PIN or
    /// biometric first). Unlocking an open store changes nothing.
    ///
    /// # Errors
    /// [`FieldError::Storage`] when the provider refuses or gives a wrong
    /// key (the store stays locked); [`FieldError::Wiped`].
    pub fn unlock(&self) -> Result<(), FieldError> {
        let mut held = lock(&self.held);
        match &*held {
            Held::Open(_) => return Ok(()),
            Held::Wiped => return Err(FieldError::wiped()),
            Held::Locked => {}
        }
        let (dir, open) = &self.reopen;
        let agent = Agent::open(dir, open.clone())?;
        *held = Held::Open(Arc::new(agent));
        *lock(&self.last_used) = Instant::now();
        Ok(())
    }

    /// Whether the store is locked (see [`FieldStore::lock`]).
    pub fn is_locked(&self) -> bool {
        matches!(*lock(&self.held), Held::Locked)
    }

    /// The device, its hub and its sync state, for the sync screen.
    ///
    /// # Errors
    /// [`FieldError::Storage`].
    pub fn status(&self) -> Result<StoreStatus, FieldError> {
        let agent = self.agent()?;
        let log = agent.log();
        let identity = log
            .identity()
            .map_err(AgentError::from)?
            .unwrap_or_else(|| agent.identity().clone());
        let durable_through = log.city_acked().map_err(AgentError::from)?;
        let saved_through = log.acked().map_err(AgentError::from)?;
        let head_seq = log.head_seq();
        let state = log.sync_state().map_err(AgentError::from)?;
        Ok(StoreStatus {
            origin_id: id_text(identity.origin_id),
            station_code: identity.station_code,
            worker_id: identity.worker_id,
            hub_url: identity.hub_url,
            has_token: identity.token.is_some(),
            head_seq,
            durable_through,
            saved_through,
            backlog: head_seq.saturating_sub(durable_through),
            pull_cursor: log.pull_cursor().map_err(AgentError::from)?,
            last_sync_ms: state.last_sync_ms,
            parked: state.parked.map(Into::into),
            last_error: lock(&self.last_error).clone(),
        })
    }
}

impl FieldStore {
    /// Validates and records `body` as an entry made now on this device.
    /// The whole id of the case `case_id` names: itself, or the one case
    /// whose id it is a prefix of (see [`Agent::resolve_case`]).
    pub(crate) fn resolve(&self, field: &str, case_id: &str) -> Result<String, FieldError> {
        Ok(self.agent()?.resolve_case(field, case_id)?.to_string())
    }

    pub(crate) fn record(
        &self,
        entry_id: Option<String>,
        body: Body,
    ) -> Result<Recorded, FieldError> {
        let event_id = parse_entry_id(entry_id.as_deref())?;
        let recorded = self
            .agent()?
            .record_reviewed(event_id, body, today(), now_ms())?;
        Ok(Recorded {
            event_id: id_text(recorded.entry.event_id),
            origin_seq: recorded.entry.origin_seq,
            duplicate: recorded.entry.duplicate,
            review_request_id: recorded.review.map(|review| id_text(review.event_id)),
        })
    }

    /// The engine inside, for Rust callers (tests, tools) that need more than
    /// the apps do.
    ///
    /// # Errors
    /// [`FieldError::Wiped`] once the store was wiped.
    /// [`FieldError::Locked`] while the store is locked.
    pub fn agent(&self) -> Result<Arc<Agent>, FieldError> {
        if let Some(idle) = self.idle_lock {
            self.lock_if_idle(idle);
        }
        match &*lock(&self.held) {
            Held::Open(agent) => {
                *lock(&self.last_used) = Instant::now();
                Ok(Arc::clone(agent))
            }
            Held::Locked => Err(FieldError::Locked {
                reason: "the store is locked: call unlock() once the user is authenticated"
                    .to_string(),
            }),
            Held::Wiped => Err(FieldError::wiped()),
        }
    }

    /// Drops the engine of a store a sync wiped: every later call answers
    /// [`FieldError::Wiped`].
    pub(crate) fn forget_wiped(&self) {
        *lock(&self.held) = Held::Wiped;
    }
}

impl Drop for FieldStore {
    fn drop(&mut self) {
        if let Some(watcher) = lock(&self.idle_watch).take() {
            // Its next look finds the store gone, and it ends.
            watcher.unpark();
        }
        let runtime = self
            .runtime
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(runtime) = runtime {
            // No round is running (it would hold a reference); this only
            // waits for blocking store tasks a timed-out round left behind.
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bindings_defaults_are_the_rust_defaults() {
        // The literals in the `#[uniffi(default = …)]` attributes of
        // `StoreOptions`, which Kotlin, Swift and Python callers get.
        let options = StoreOptions::default();
        assert_eq!(options.cache_bytes, 4_194_304);
        assert_eq!(options.sync_timeout_secs, 60);
    }
}
