//! The `station.v1.Sync` service over the hub's log: `Hello`, `Push` and
//! `Pull`, each checked against the rules of [`crate::auth`] before it
//! touches the store.
//!
//! Invariants: a `Push` is answered only after its batch is durable; a batch
//! that breaks a protocol rule (gap, bad origin, another station's event,
//! too large) is refused whole and changes nothing; blocking store calls run
//! off the async workers; once the hub begins to stop, long polls answer at
//! once; a push that starts past what the hub holds of its origin waits at
//! most [`OVERTAKEN_WAIT`] for the push before it, then is refused as a gap.
//!
//! Over a shared log ([`SyncService::over_shared_log`], a hub front-end's),
//! `Hello`, `Push`, `Pull` and the bindings go through the shared log, which
//! every front-end of the deployment decides on; the store is then the
//! front-end's mirror of it, whose token records authenticate callers and
//! whose growth wakes long polls. A relay's pushes are not counted as relayed
//! there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use station_proto::ids::Uuid;
use station_proto::v1::SignedHead;
use station_proto::v1::sync_server::{Sync, SyncServer};
use station_proto::v1::{
    DirectoryLine, DirectoryPage, DirectoryStation, HelloRequest, HelloResponse, OriginAck,
    PullRequest, PullResponse, PulledEvent, PushRequest, PushResponse,
};
use station_proto::{chain, validate};
use tokio::sync::watch;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::limits::{
    MAX_MESSAGE_BYTES, MAX_PULL_BYTES, MAX_PULL_EVENTS, MAX_PULL_WAIT, MAX_PUSH_EVENTS,
};
use crate::auth::{self, AuthError};
use crate::guard::DiskReserve;
use crate::projections;
use crate::store::{HubError, HubLog, HubStore};
use station_agent::clock::SharedClock;

/// How long a push whose first event of an origin lies past what the hub
/// holds waits for the origin's earlier push: a device sends its next batch
/// while the last is being acknowledged, and the two may reach the store in
/// either order. Past the wait the push is refused as a gap, as before.
pub const OVERTAKEN_WAIT: Duration = Duration::from_secs(2);

/// A log several hub front-ends share (the JetStream log): what `Sync`
/// decides on when the service is a front-end's.
pub type SharedLog = Arc<dyn SharedHubLog>;

/// A [`HubLog`] that front-ends can share between threads.
pub trait SharedHubLog: HubLog + Send + std::marker::Sync + std::fmt::Debug {}

impl<T: HubLog + Send + std::marker::Sync + std::fmt::Debug> SharedHubLog for T {}

/// How often a push waiting for an earlier one looks at the shared log's
/// origin states, which change without waking it.
const SHARED_POLL: Duration = Duration::from_millis(20);

/// What a station relay knows of the city hub, for the answers it gives
/// its phones: serving with one makes the service a relay's (see
/// [`SyncService::relaying`]).
pub trait Upstream: Send + std::marker::Sync + std::fmt::Debug {
    /// How much of `origin` the city hub has acknowledged, as far as the
    /// relay knows (0 when nothing).
    fn city_durable_through(&self, origin: Uuid) -> u64;
}

/// The `Sync` service. It expects the [`crate::auth::Caller`] that
/// [`crate::auth::Authenticator`] puts on each request, and refuses calls without one.
#[derive(Debug, Clone)]
pub struct SyncService {
    /// The hub's durable log.
    store: Arc<HubStore>,
    /// Turns true when the hub begins to shut down, so long polls end early.
    stopping: Arc<watch::Sender<bool>>,
    /// The free space pushes need on the store's disk; none checked when
    /// `None`.
    disk: Option<Arc<DiskReserve>>,
    /// Set on a station relay: the city's acknowledgements it hands on, and
    /// the rule that it carries only signed logs.
    upstream: Option<Arc<dyn Upstream>>,
    /// Receipt times, last contact and clock skew are read from it.
    clock: SharedClock,
    /// Set on the city hub: the projections whose district directory the
    /// service hands to device tokens (its key at Hello, its delta with each
    /// Pull that asks for it), and whose configuration's review policy every
    /// Hello tells. A relay keeps no directory and tells no policy.
    directory: Option<Arc<projections::Projections>>,
    /// Set on a front-end of a shared log: the log `Sync` decides on.
    shared: Option<SharedLog>,
    /// What packed pushes are packed against, per token.
    dictionaries: Arc<super::packed::Dictionaries>,
}

/// Bytes a line of the directory takes on the wire, about: for sizing a
/// page of the directory to the pull's byte budget.
const DIRECTORY_LINE_BYTES: usize = 24;
/// Lines of the directory in one page, at most.
pub const MAX_DIRECTORY_LINES: usize = 20_000;

impl SyncService {
    /// A service over `store`.
    pub fn new(store: Arc<HubStore>) -> Self {
        let (stopping, _) = watch::channel(false);
        Self {
            store,
            stopping: Arc::new(stopping),
            disk: None,
            upstream: None,
            clock: station_agent::clock::system(),
            directory: None,
            shared: None,
            dictionaries: Arc::default(),
        }
    }

    /// The service as a front-end of `log` serves it: pushes, pulls, hellos
    /// and bindings go through `log`; the service's store is the
    /// front-end's mirror of it.
    #[must_use]
    pub fn over_shared_log(mut self, log: SharedLog) -> Self {
        self.shared = Some(log);
        self
    }

    /// The service reading "now" (receipt times, last contact, the skew of
    /// a device's clock, today's date for service dates) from `clock`
    /// instead of the system clock: a simulation's, so that receipts follow
    /// its simulated days.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The service as the city hub serves it: device tokens get the
    /// district directory of `projections` (its key in the answer to
    /// Hello, its delta with each Pull that asks for it).
    #[must_use]
    pub fn with_directory(mut self, projections: Arc<projections::Projections>) -> Self {
        self.directory = Some(projections);
        self
    }

    /// A page of the directory for `caller`, when it asks for one, is a
    /// device, and this service keeps the directory; about `max_bytes` of
    /// lines at most.
    async fn directory_page(
        &self,
        caller: &auth::Caller,
        pull: &PullRequest,
        max_bytes: usize,
    ) -> Result<Option<DirectoryPage>, Status> {
        let (Some(after), Some(projections), auth::Caller::Device { .. }) =
            (pull.directory_after, &self.directory, caller)
        else {
            return Ok(None);
        };
        let lines = (max_bytes / 2 / DIRECTORY_LINE_BYTES).clamp(16, MAX_DIRECTORY_LINES);
        let projections = Arc::clone(projections);
        let epoch = pull.directory_epoch.clone();
        let delta = tokio::task::spawn_blocking(move || {
            projections
                .directory_delta(&epoch, after, lines)
                .map(|delta| {
                    let config = projections.config();
                    let codes: BTreeSet<&str> = delta
                        .changes
                        .iter()
                        .map(|c| c.station_code.as_str())
                        .collect();
                    let stations = codes
                        .into_iter()
                        .map(|code| DirectoryStation {
                            station_code: code.to_string(),
                            name: config.station_name(code).to_string(),
                        })
                        .collect();
                    DirectoryPage {
                        epoch: delta.epoch,
                        reset: delta.reset,
                        lines: delta
                            .changes
                            .into_iter()
                            .map(|c| DirectoryLine {
                                tag: c.tag.to_vec(),
                                station_code: c.station_code,
                                present: c.present,
                            })
                            .collect(),
                        next_cursor: delta.next_cursor,
                        head: delta.head,
                        stations,
                    }
                })
        })
        .await
        .map_err(|e| Status::internal(format!("hub task failed: {e}")))?
        .map_err(|e| Status::internal(format!("district directory: {e}")))?;
        Ok(Some(delta))
    }

    /// A page of the transfers feed for `caller` ([`super::transfer_feed`]),
    /// when it asks for one, is a device, and this service is the city
    /// hub's; about a quarter of `max_bytes` at most.
    async fn transfer_page(
        &self,
        caller: &auth::Caller,
        pull: &PullRequest,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Option<station_proto::v1::TransferPage>, Status> {
        let (Some(after), Some(projections), auth::Caller::Device { .. }) =
            (pull.transfers_after, &self.directory, caller)
        else {
            return Ok(None);
        };
        // The station's stream as the log holds it now, once applied (a
        // device's acceptance pushed just before this pull, say): waited for
        // a moment at most.
        let station_head = self
            .blocking({
                let station = pull.station_code.clone();
                move |store| store.station_head(&station)
            })
            .await?;
        let _ = tokio::time::timeout(
            super::transfer_feed::PROJECTION_WAIT,
            projections.wait_through(station_head),
        )
        .await;
        let projections = Arc::clone(projections);
        let station = pull.station_code.clone();
        tokio::task::spawn_blocking(move || {
            super::transfer_feed::page(&projections, &station, after, max_events, max_bytes / 4)
        })
        .await
        .map_err(|e| Status::internal(format!("hub task failed: {e}")))?
        .map(Some)
        .map_err(|e| Status::internal(format!("transfers feed: {e}")))
    }

    /// The service as a station relay serves it to its phones: every answer
    /// carries, beside what the relay holds, what the city hub has
    /// acknowledged (from `upstream`), and a `Hello` without a device key is
    /// refused (`FAILED_PRECONDITION`): the relay forwards what it can prove.
    #[must_use]
    pub fn relaying(mut self, upstream: Arc<dyn Upstream>) -> Self {
        self.upstream = Some(upstream);
        self
    }

    fn city_of(&self, origin: Uuid) -> Option<u64> {
        self.upstream
            .as_ref()
            .map(|up| up.city_durable_through(origin))
    }

    /// The service, refusing pushes (`UNAVAILABLE`, retryable) while the
    /// store's disk has less free space than `disk` keeps.
    #[must_use]
    pub fn with_disk_reserve(mut self, disk: Arc<DiskReserve>) -> Self {
        self.disk = Some(disk);
        self
    }

    /// Ends the long polls waiting now and makes later ones answer at once.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
    }

    /// Turns true when [`SyncService::begin_shutdown`] is called.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// The tonic server for this service, with compression and limits set,
    /// and pulled pages sent at [`PULL_LEVEL`] (see [`PagesCompressed`]).
    pub fn into_server(self) -> PagesCompressed<SyncServer<Self>> {
        PagesCompressed {
            compressing: Arc::new(tokio::sync::Semaphore::new(MAX_RECOMPRESSING)),
            inner: SyncServer::new(self)
                .accept_compressed(CompressionEncoding::Zstd)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        }
    }

    /// Waits, for at most [`OVERTAKEN_WAIT`], until no origin of `events`
    /// starts past the hub's `durable_through + 1`; the store decides what a
    /// gap left after the wait means.
    async fn await_earlier_pushes(&self, events: &[station_proto::Event]) {
        let mut firsts: BTreeMap<&[u8], u64> = BTreeMap::new();
        for event in events {
            let first = firsts.entry(event.origin_id.as_slice()).or_insert(u64::MAX);
            *first = (*first).min(event.origin_seq);
        }
        let overtaken = |store: &HubStore| {
            firsts.iter().any(|(origin, first)| {
                Uuid::from_slice(origin)
                    .ok()
                    .and_then(|origin| store.origin(origin).ok())
                    .is_some_and(|state| *first > state.durable_through.saturating_add(1))
            })
        };
        let mut grown = self.store.subscribe();
        let deadline = tokio::time::Instant::now() + OVERTAKEN_WAIT;
        if let Some(log) = &self.shared {
            let firsts: Vec<(Vec<u8>, u64)> =
                firsts.into_iter().map(|(o, f)| (o.to_vec(), f)).collect();
            loop {
                let log = Arc::clone(log);
                let firsts = firsts.clone();
                let overtaken = tokio::task::spawn_blocking(move || {
                    firsts.iter().any(|(origin, first)| {
                        Uuid::from_slice(origin)
                            .ok()
                            .and_then(|origin| log.origin(origin).ok())
                            .is_some_and(|state| *first > state.durable_through.saturating_add(1))
                    })
                })
                .await
                .unwrap_or(false);
                if !overtaken || tokio::time::Instant::now() >= deadline {
                    return;
                }
                tokio::time::sleep(SHARED_POLL).await;
            }
        }
        while overtaken(&self.store) {
            match tokio::time::timeout_at(deadline, grown.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    async fn blocking<T, E, F>(&self, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        E: Into<Status> + Send + 'static,
        F: FnOnce(&HubStore) -> Result<T, E> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Status::internal(format!("hub task failed: {e}")))?
            .map_err(Into::into)
    }
}

/// The newest signed head, with its public key, of each signed origin with
/// events in `events`.
fn signed_heads_of(
    store: &(impl HubLog + ?Sized),
    events: &[(u64, station_proto::Event)],
) -> Result<Vec<SignedHead>, HubError> {
    let origins: BTreeSet<&[u8]> = events.iter().map(|(_, e)| e.origin_id.as_slice()).collect();
    let mut heads = Vec::new();
    for origin in origins {
        let Ok(origin) = Uuid::from_slice(origin) else {
            continue;
        };
        let (Some(head), Some(public_key)) = (
            store.origin(origin)?.signed_head,
            store.binding(origin)?.and_then(|b| b.public_key),
        ) else {
            continue;
        };
        heads.push(SignedHead {
            origin_id: origin.as_bytes().to_vec(),
            last_seq: head.last_seq,
            signature: head.signature,
            public_key,
        });
    }
    Ok(heads)
}

#[tonic::async_trait]
impl Sync for SyncService {
    async fn hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloResponse>, Status> {
        let caller = auth::caller(&request)?;
        let hello = request.into_inner();
        let origin = validate::uuid16("origin_id", &hello.origin_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        validate::station_code("station_code", &hello.station_code)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let public_key = if hello.public_key.is_empty() {
            // A relay chained behind this one says Hello for its own origin,
            // which records nothing and so has no key.
            if self.upstream.is_some() && !matches!(caller, auth::Caller::Relay { .. }) {
                return Err(Status::failed_precondition(
                    "public_key: this station relay carries only signed device logs; \
                     update the app, or sync with the hub",
                ));
            }
            None
        } else {
            chain::check_public_key(&hello.public_key)
                .map_err(|e| Status::invalid_argument(format!("public_key: {e}")))?;
            Some(hello.public_key.clone())
        };
        auth::authorize_hello(&caller, origin, &hello.station_code)?;
        let wipe = caller.wipe_ordered();
        if hello.wiped && !wipe {
            return Err(AuthError::Denied(format!(
                "no wipe was ordered for token {}: a device wipes itself only when told",
                caller.token_id()
            ))
            .into());
        }
        let now = self.clock.now_ms();
        let station = hello.station_code.clone();
        let directory_key = match (&self.directory, &caller) {
            (Some(_), auth::Caller::Device { .. }) => {
                self.store.directory_key().secret_bytes().to_vec()
            }
            _ => Vec::new(),
        };
        let shared = self.shared.clone();
        let relaying = self.upstream.is_some();
        let (state, head, station_devices, station_relays, held) = self
            .blocking(move |store| -> Result<_, AuthError> {
                let log: &dyn HubLog = match &shared {
                    Some(log) => {
                        auth::bind_origin(&**log, &caller, origin, public_key.as_deref())?;
                        &**log as &dyn HubLog
                    }
                    None => store,
                };
                auth::bind_origin(store, &caller, origin, public_key.as_deref())?;
                let state = log.hello(
                    origin,
                    &hello.station_code,
                    hello.head_seq,
                    hello.device_clock_ms,
                    now,
                )?;
                if wipe {
                    auth::wipe_hello(
                        store,
                        &caller,
                        hello.head_seq,
                        hello.wiped,
                        state.durable_through,
                    )?;
                    if hello.wiped {
                        tracing::warn!(
                            %origin,
                            not_uploaded = hello.head_seq.saturating_sub(state.durable_through),
                            "device says it is wiped; its token is revoked"
                        );
                    }
                }
                let devices = auth::station_devices(store, &caller)?;
                let relays = auth::station_relays(store, &caller)?;
                let held = if relaying {
                    auth::station_origins_held(store, &caller)?
                } else {
                    Vec::new()
                };
                Ok((state, log.station_head(&station)?, devices, relays, held))
            })
            .await?;
        tracing::debug!(%origin, durable_through = state.durable_through, "hello");
        Ok(Response::new(HelloResponse {
            durable_through: state.durable_through,
            hub_clock_ms: now,
            station_pull_head: head,
            log_id: self.store.log_id().as_bytes().to_vec(),
            city_durable_through: self.city_of(origin),
            station_devices,
            station_relays,
            station_origins: held
                .into_iter()
                .map(|(origin, durable_through)| OriginAck {
                    origin_id: origin.as_bytes().to_vec(),
                    durable_through,
                    city_durable_through: self.city_of(origin),
                })
                .collect(),
            wipe,
            directory_key,
            review_policy: self
                .directory
                .as_ref()
                .map(|projections| projections.config().review.to_wire()),
            packed_pushes: true,
        }))
    }

    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let caller = auth::caller(&request)?;
        let PushRequest {
            events,
            heads,
            packed,
            dictionary,
        } = request.into_inner();
        let (events, heads, left) = if packed.is_empty() {
            if !dictionary.is_empty() {
                return Err(Status::invalid_argument("dictionary: set only with packed"));
            }
            (events, heads, None)
        } else {
            if !events.is_empty() || !heads.is_empty() {
                return Err(Status::invalid_argument(
                    "packed: a packed push carries its events and heads inside it only",
                ));
            }
            let (push, left) = self
                .dictionaries
                .unpack(caller.token_id(), &packed, &dictionary)?;
            (push.events, push.heads, Some(left))
        };
        let token_id = caller.token_id().to_string();
        if events.len() > MAX_PUSH_EVENTS {
            return Err(Status::resource_exhausted(format!(
                "a push may carry at most {MAX_PUSH_EVENTS} events, got {}",
                events.len()
            )));
        }
        let origins = auth::authorize_push(&caller, &events)?;
        let wiping = caller.wipe_ordered();
        if let Some(disk) = &self.disk {
            disk.admit()
                .map_err(|low| Status::unavailable(low.to_string()))?;
        }
        let count = events.len();
        self.await_earlier_pushes(&events).await;
        // Service dates are China's: "not in the future" is judged by the
        // date in China, whatever the hub machine's time zone.
        let now = self.clock.now_ms();
        let today = projections::date_in_china(now);
        let shared = self.shared.clone();
        let outcome = self
            .blocking(move |store| -> Result<_, AuthError> {
                if wiping {
                    let record = store
                        .token(caller.token_id())?
                        .ok_or(AuthError::InvalidToken)?;
                    auth::authorize_wipe_push(&record, &events)?;
                }
                let via_relay = match &caller {
                    auth::Caller::Relay { token_id, .. } => {
                        for origin in origins {
                            auth::admit_relayed(store, &caller, origin, &events, &heads)?;
                        }
                        Some(token_id.as_str())
                    }
                    auth::Caller::Device { .. }
                    | auth::Caller::Supervisor { .. }
                    | auth::Caller::Bureau { .. } => {
                        for origin in origins {
                            if let Some(log) = &shared {
                                auth::bind_origin(&**log, &caller, origin, None)?;
                            }
                            auth::bind_origin(store, &caller, origin, None)?;
                        }
                        None
                    }
                };
                Ok(match &shared {
                    Some(log) => log.push_signed(events, &heads, today, now)?,
                    None => store.push_via(events, &heads, via_relay, today, now)?,
                })
            })
            .await?;
        if let Some(left) = left {
            self.dictionaries.remember(&token_id, left);
        }
        tracing::debug!(
            count,
            stored = outcome.stored,
            quarantined = outcome.quarantined,
            packed = !packed.is_empty(),
            "push acknowledged"
        );
        Ok(Response::new(PushResponse {
            acks: outcome
                .acks
                .into_iter()
                .map(|(origin, durable_through)| OriginAck {
                    origin_id: origin.as_bytes().to_vec(),
                    durable_through,
                    city_durable_through: self.city_of(origin),
                })
                .collect(),
            quarantined: u32::try_from(outcome.quarantined).unwrap_or(u32::MAX),
        }))
    }

    async fn pull(&self, request: Request<PullRequest>) -> Result<Response<PullResponse>, Status> {
        let caller = auth::caller(&request)?;
        let pull = request.into_inner();
        validate::station_code("station_code", &pull.station_code)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        auth::authorize_pull(&caller, &pull.station_code)?;
        let max_events = pull.max_events.clamp(1, MAX_PULL_EVENTS) as usize;
        let max_bytes = if pull.max_bytes == 0 {
            MAX_PULL_BYTES
        } else {
            pull.max_bytes.min(MAX_PULL_BYTES)
        } as usize;
        let wait = Duration::from_millis(u64::from(pull.wait_ms)).min(MAX_PULL_WAIT);
        let skip_origin = auth::pulled_without(&caller);
        let mut grown = self.store.subscribe();
        let mut stopping = self.stopping.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        let mut woken = false;
        loop {
            grown.borrow_and_update();
            if woken {
                // A token revoked while the poll waited ends it: nothing is
                // delivered on a revoked token.
                let token_id = caller.token_id().to_string();
                let record = self.blocking(move |store| store.token(&token_id)).await?;
                match record {
                    Some(record) if record.revoked_at_ms.is_none() && record.wipe.is_none() => {}
                    // Nor on the token of a device ordered wiped meanwhile.
                    Some(record) if record.revoked_at_ms.is_none() => {
                        return Err(AuthError::Denied(format!(
                            "token {} is of a device ordered wiped: it pulls nothing more",
                            record.token_id
                        ))
                        .into());
                    }
                    _ => return Err(AuthError::Revoked.into()),
                }
            }
            woken = true;
            let station = pull.station_code.clone();
            let after = pull.after;
            let shared = self.shared.clone();
            let (page, heads) = self
                .blocking(move |store| {
                    let log: &dyn HubLog = match &shared {
                        Some(log) => &**log as &dyn HubLog,
                        None => store,
                    };
                    let page = log.pull_for(&station, after, max_events, max_bytes, skip_origin)?;
                    let heads = signed_heads_of(log, &page.events)?;
                    Ok::<_, HubError>((page, heads))
                })
                .await?;
            let directory = self.directory_page(&caller, &pull, max_bytes).await?;
            let directory_moved = directory
                .as_ref()
                .is_some_and(|d| d.reset || Some(d.next_cursor) != pull.directory_after);
            let waited_enough = tokio::time::Instant::now() >= deadline || *stopping.borrow();
            if page.next_cursor > pull.after || directory_moved || waited_enough {
                let transfers = self
                    .transfer_page(&caller, &pull, max_events, max_bytes)
                    .await?;
                let mut response = Response::new(PullResponse {
                    events: page
                        .events
                        .into_iter()
                        .map(|(hub_seq, event)| PulledEvent {
                            hub_seq,
                            event: Some(event),
                        })
                        .collect(),
                    next_cursor: page.next_cursor,
                    head: page.head,
                    heads,
                    directory,
                    transfers,
                });
                // The page's cursor in the headers too, which cross the link
                // before the page: a device can ask for the next page while
                // this one is still coming down.
                response.metadata_mut().insert(
                    station_proto::PULL_NEXT_CURSOR_HEADER,
                    page.next_cursor.into(),
                );
                if pull.max_bytes != 0 && pull.max_bytes < MAX_PULL_BYTES {
                    response.extensions_mut().insert(AirtimeSized);
                }
                return Ok(response);
            }
            tokio::select! {
                _ = tokio::time::timeout_at(deadline, grown.changed()) => {}
                _ = stopping.wait_for(|stopping| *stopping) => {}
            }
        }
    }
}

/// The zstd level of pulled pages. A page of a backlog is compressed apart
/// from the pages before it, and at tonic's default level it comes out larger
/// than the same events compressed at once; at this level it comes out
/// smaller. The hub spends the time while the page before it is still
/// coming down (the device asks for the next page from the headers).
pub const PULL_LEVEL: i32 = 19;

/// Pages at least this large (compressed, as tonic sent them) are compressed
/// again at [`PULL_LEVEL`]; smaller ones (a long poll's news) are left as
/// they are, the gain not worth the hub's time.
const RECOMPRESS_FROM: usize = 4 * 1024;

/// Marks a `Pull` answer whose page the device sized below the hub's cap:
/// by the airtime of its link, which is then the bottleneck, and worth the
/// hub's time at [`PULL_LEVEL`]. A device on a fast link (a phone on the
/// station's LAN, say) asks for pages at the cap, and gets them as tonic
/// compresses them.
#[derive(Debug, Clone, Copy)]
struct AirtimeSized;

/// The Sync server, its `Pull` answers of pages sized by airtime
/// ([`AirtimeSized`]) compressed at [`PULL_LEVEL`] instead
/// of tonic's fixed default level: standard gRPC zstd compression, which any
/// client that accepts zstd decodes. The answer's headers go out at once,
/// the page after it is compressed again.
///
/// Invariants: only an answer that is one zstd-compressed gRPC message is
/// touched; its message decompresses to exactly the bytes tonic encoded
/// (within [`MAX_MESSAGE_BYTES`]); anything else, and anything that fails,
/// goes out as tonic made it.
#[derive(Debug, Clone)]
pub struct PagesCompressed<S> {
    /// The tonic server.
    inner: S,
    /// Pages being compressed again: past [`MAX_RECOMPRESSING`] at once, a
    /// page goes out as tonic made it, so that callers asking for page after
    /// page cannot hold the hub's cores at the higher level.
    compressing: Arc<tokio::sync::Semaphore>,
}

/// Pages compressed again at once, at most.
const MAX_RECOMPRESSING: usize = 2;

impl<S> tonic::server::NamedService for PagesCompressed<S>
where
    S: tonic::server::NamedService,
{
    const NAME: &'static str = S::NAME;
}

type HttpRequest = tonic::codegen::http::Request<tonic::body::Body>;
type HttpResponse = tonic::codegen::http::Response<tonic::body::Body>;

impl<S> tonic::codegen::Service<HttpRequest> for PagesCompressed<S>
where
    S: tonic::codegen::Service<
            HttpRequest,
            Response = HttpResponse,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let answer = self.inner.call(request);
        let compressing = Arc::clone(&self.compressing);
        Box::pin(async move {
            let response = answer.await?;
            let pull = response.extensions().get::<AirtimeSized>().is_some();
            let zstd = response
                .headers()
                .get("grpc-encoding")
                .is_some_and(|e| e.as_bytes() == b"zstd");
            // A refusal comes as headers alone (trailers-only): left as is.
            let refused = response.headers().contains_key("grpc-status");
            if !pull || !zstd || refused {
                return Ok(response);
            }
            let Ok(permit) = compressing.try_acquire_owned() else {
                return Ok(response);
            };
            let (parts, body) = response.into_parts();
            let (mut sender, page) =
                http_body_util::channel::Channel::<tonic::codegen::Bytes, Status>::new(2);
            tokio::spawn(async move {
                use http_body_util::BodyExt as _;
                let collected = match body.collect().await {
                    Ok(collected) => collected,
                    Err(status) => {
                        sender.abort(status);
                        return;
                    }
                };
                let trailers = collected.trailers().cloned();
                let message = collected.to_bytes();
                let message = tokio::task::spawn_blocking(move || {
                    recompressed(&message, PULL_LEVEL).map_or(message, Into::into)
                })
                .await;
                drop(permit);
                let Ok(message) = message else {
                    sender.abort(Status::internal("the page could not be compressed"));
                    return;
                };
                if sender.send_data(message).await.is_err() {
                    return;
                }
                if let Some(trailers) = trailers {
                    let _ = sender.send_trailers(trailers).await;
                }
            });
            Ok(HttpResponse::from_parts(
                parts,
                tonic::body::Body::new(page),
            ))
        })
    }
}

/// The gRPC message `framed` (one zstd-compressed message, with its prefix)
/// compressed again at `level`, with its prefix; `None` when `framed` is
/// anything else, too small to be worth it, or does not get smaller.
fn recompressed(framed: &[u8], level: i32) -> Option<Vec<u8>> {
    const PREFIX: usize = 5;
    let (prefix, compressed) = framed.split_at_checked(PREFIX)?;
    let length = u32::from_be_bytes(prefix[1..].try_into().ok()?);
    if prefix[0] != 1
        || usize::try_from(length).ok()? != compressed.len()
        || compressed.len() < RECOMPRESS_FROM
    {
        return None;
    }
    let mut message = Vec::new();
    let mut decoder = zstd::stream::read::Decoder::new(compressed).ok()?;
    std::io::Read::read_to_end(
        &mut std::io::Read::take(&mut decoder, MAX_MESSAGE_BYTES as u64 + 1),
        &mut message,
    )
    .ok()?;
    if message.len() > MAX_MESSAGE_BYTES {
        return None;
    }
    let again = zstd::bulk::compress(&message, level).ok()?;
    if again.len() >= compressed.len() {
        return None;
    }
    let mut out = Vec::with_capacity(PREFIX + again.len());
    out.push(1);
    out.extend_from_slice(&u32::try_from(again.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&again);
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `message` compressed at `level` and framed as tonic frames it.
    fn framed(message: &[u8], level: i32) -> Vec<u8> {
        let compressed = zstd::bulk::compress(message, level).unwrap();
        let mut out = vec![1];
        out.extend_from_slice(&u32::try_from(compressed.len()).unwrap().to_be_bytes());
        out.extend_from_slice(&compressed);
        out
    }

    fn page() -> Vec<u8> {
        (0..20_000u32)
            .flat_map(|n| format!("{} 540502001 {} 乃东 སྣེ་གདོང;", n, n % 97).into_bytes())
            .collect()
    }

    #[test]
    fn a_large_page_is_sent_smaller_and_decompresses_to_the_same_bytes() {
        let message = page();
        let tonic = framed(&message, 3);
        let sent = recompressed(&tonic, PULL_LEVEL).unwrap();
        assert!(sent.len() < tonic.len());
        assert_eq!(sent[0], 1);
        let length = u32::from_be_bytes(sent[1..5].try_into().unwrap()) as usize;
        assert_eq!(length, sent.len() - 5);
        assert_eq!(zstd::stream::decode_all(&sent[5..]).unwrap(), message);
    }

    #[test]
    fn anything_else_goes_out_as_tonic_made_it() {
        let message = page();
        let mut plain = vec![0];
        plain.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        plain.extend_from_slice(&message);
        assert_eq!(recompressed(&plain, PULL_LEVEL), None, "not compressed");
        let tonic = framed(&message, 3);
        assert_eq!(
            recompressed(&tonic[..tonic.len() - 1], PULL_LEVEL),
            None,
            "a lying length"
        );
        let small = framed(b"a long poll's news", 3);
        assert_eq!(
            recompressed(&small, PULL_LEVEL),
            None,
            "too small to be worth it"
        );
        assert_eq!(recompressed(&[], PULL_LEVEL), None, "empty");
        // More than a message may be: left alone.
        let large = page().repeat(MAX_MESSAGE_BYTES / message.len() + 1);
        assert!(large.len() > MAX_MESSAGE_BYTES);
        let bomb = framed(&large, 3);
        assert!(bomb.len() > RECOMPRESS_FROM);
        assert_eq!(
            recompressed(&bomb, PULL_LEVEL),
            None,
            "past the message limit"
        );
    }
}
