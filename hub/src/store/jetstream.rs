//! [`JetStreamLog`]: the hub's log ([`HubLog`]) on a NATS JetStream cluster,
//! for deployments that must survive losing a machine. Several hub
//! front-ends may share one log; each keeps an index of it in memory (the
//! events themselves, by position, event id, origin seq and station),
//! caught up from the stream before every decision and read, and read back
//! whole when it opens.
//!
//! The stream holds events as the hub accepted them: encryption at rest is
//! the cluster's (the `jetstream { key: … }` setting of each server).
//!
//! # Layout in JetStream
//!
//! | where | key / subject | value |
//! | --- | --- | --- |
//! | stream `NAME` (file storage, R1 or R3, no deletes, no purges) | `NAME.<station>.<origin hex>` | the accepted event, protobuf; header `Nats-Msg-Id` = event id (hex), `Station-Received-At` = hub ms |
//! | bucket `NAME_origins` | origin hex | [`OriginState`], JSON |
//! | bucket `NAME_quarantine` | origin hex | the origin's [`Quarantined`] events by seq, JSON |
//! | bucket `NAME_bindings` | origin hex | [`OriginBinding`], JSON |
//! | bucket `NAME_tokens` | token id (hex) | the origin the token speaks for, hex |
//! | bucket `NAME_heads` | origin hex | the origin's verified [`StoredHead`]s, oldest first, JSON |
//! | bucket `NAME_records` | token id (hex) | the token's [`TokenRecord`] (no secret, its SHA-256), JSON, shared by the front-ends |
//! | bucket `NAME_shared` | `log_id`, `district_secret` | what every front-end of the deployment must agree on, hex |
//!
//! # Invariants
//!
//! - **Hub positions are stream sequences.** The stream holds accepted events
//!   only, never deletes or purges, so positions are `1, 2, 3, …` without
//!   gaps and never change.
//! - **Per-origin order and exactly once.** Each event is published with
//!   `Nats-Msg-Id` = its event id (a resend inside the duplicate window is
//!   recognised by the server) and the expected last sequence of its
//!   origin's subject: two front-ends deciding the same origin's seq from the
//!   same view cannot both append; the loser's push fails and changes
//!   nothing of that origin.
//! - **Acknowledged means replicated.** A push returns `Ok` only after
//!   JetStream acknowledged every event of it (a quorum of the replicas
//!   wrote it) and every key-value write of it; the server's
//!   `sync_interval` decides whether those writes reached the disk.
//! - **Write order of a push.** Quarantine first, then the events in batch
//!   order, then the signed heads, then the origins' states (each a
//!   compare-and-set on the revision read before deciding). A push cut off
//!   midway leaves events in the stream above the origin's
//!   `durable_through`; the next push of that origin finds them in the index
//!   and extends the origin's state over them before deciding, so they are
//!   held once and its resend is counted as duplicates.
//! - **Bindings.** A token's origin is created once (`create` refuses a
//!   second); an origin's binding is created once and only gains a key.
//! - **Token records** only gain: a record merged into the bucket keeps the
//!   earliest revocation, a wipe once ordered, and the furthest a wipe got
//!   ([`merge_token_records`]); a shared value is set once.
//!
//! The trait is synchronous: each call runs on the log's own runtime and the
//! caller's thread waits for it. Call it from a blocking context (a plain
//! thread or `spawn_blocking`), never from an async task.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use prost::Message as _;
use serde::{Serialize, de::DeserializeOwned};
use station_proto::Event;
use station_proto::chain;
use station_proto::ids::Uuid;
use station_proto::v1::SignedHead;
use tokio::sync::Mutex;

use super::HubError;
use super::log::{
    HubLog, LoggedEvent, OriginBinding, PullPage, PushOutcome, held_station_stream, page_of,
};
use super::tokens::{TokenRecord, WipeOrder};
use crate::ingest::{self, OriginState, Policy, Quarantined, Refusal, StoredHead, Verdict};

/// The header holding an event's receive time, hub wall clock ms.
const RECEIVED_AT: &str = "Station-Received-At";

/// How many times a write that lost a compare-and-set to another front-end
/// is tried again on fresh state.
const CAS_ATTEMPTS: usize = 16;

/// Where the log lives and how it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamOptions {
    /// NATS server URLs (`nats://host:port`), any node of the cluster.
    pub servers: Vec<String>,
    /// A NATS credentials file (JWT and NKey seed), when the cluster wants one.
    pub credentials: Option<PathBuf>,
    /// Replicas of the stream and buckets: 3 in production, 1 in tests.
    pub replicas: usize,
    /// The stream's name; buckets and subjects are named after it.
    pub stream: String,
    /// How long one request to the cluster may take before the call fails.
    pub timeout: Duration,
}

impl Default for JetStreamOptions {
    fn default() -> Self {
        Self {
            servers: vec!["nats://127.0.0.1:4222".into()],
            credentials: None,
            replicas: 3,
            stream: "STATION_LOG".into(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl JetStreamOptions {
    /// Checks the options before anything connects.
    ///
    /// # Errors
    /// A message naming the wrong option.
    pub fn validate(&self) -> Result<(), String> {
        if self.servers.is_empty() {
            return Err("log.servers: name at least one NATS server".into());
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(format!(
                "log.replicas: {} is not between 1 and 5",
                self.replicas
            ));
        }
        if self.stream.is_empty()
            || self.stream.len() > 32
            || !self
                .stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "log.stream: {:?} must be 1 to 32 letters, digits, '_' or '-'",
                self.stream
            ));
        }
        Ok(())
    }
}

/// What [`JetStreamLog::import`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Imported {
    /// Events, at their positions.
    pub events: u64,
    /// Origins' states.
    pub origins: usize,
    /// Origins' bindings to their tokens.
    pub bindings: usize,
    /// Quarantined events.
    pub quarantined: usize,
    /// Signed heads.
    pub heads: usize,
}

/// One server holding the stream, as the cluster reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The server's name.
    pub server: String,
    /// Whether it leads the stream (appends go through it).
    pub leader: bool,
    /// Whether it holds every operation the leader holds.
    pub current: bool,
    /// Operations it lacks, as the leader last saw.
    pub lag: u64,
}

/// The log's index of the stream, in memory: what it read of the stream so
/// far, in hub order.
#[derive(Debug, Default)]
struct Index {
    /// The log in hub order: position `i + 1` at index `i`, with its receive
    /// time when the hub kept it.
    events: Vec<(Event, Option<i64>)>,
    /// Position of each event id.
    ids: HashMap<Vec<u8>, u64>,
    /// Position of each origin's seqs held in the log.
    seqs: HashMap<(Uuid, u64), u64>,
    /// Each origin's last position (the last sequence of its subject).
    origin_last: HashMap<Uuid, u64>,
    /// Each station's newest position.
    station_last: HashMap<String, u64>,
    /// Transfer requests and the stations that took files over, as the
    /// foreign-case rule of ingest reads them.
    transfers: crate::ingest::KnownTransfers,
}

impl Index {
    fn add(&mut self, event: Event, received_at_ms: Option<i64>) -> Result<(), HubError> {
        let origin = Uuid::from_slice(&event.origin_id)
            .map_err(|_| HubError::Corrupt("the stream holds an event without origin".into()))?;
        let position = self.events.len() as u64 + 1;
        self.ids.insert(event.event_id.clone(), position);
        self.seqs.insert((origin, event.origin_seq), position);
        self.origin_last.insert(origin, position);
        self.station_last
            .insert(event.station_code.clone(), position);
        self.transfers.learn(&event);
        self.events.push((event, received_at_ms));
        Ok(())
    }

    fn event(&self, position: u64) -> Option<&Event> {
        let index = usize::try_from(position).ok()?.checked_sub(1)?;
        self.events.get(index).map(|(event, _)| event)
    }
}

/// The buckets beside the stream.
#[derive(Debug, Clone)]
struct Buckets {
    origins: kv::Store,
    quarantine: kv::Store,
    bindings: kv::Store,
    tokens: kv::Store,
    heads: kv::Store,
    records: kv::Store,
    shared: kv::Store,
}

/// What the runtime's tasks share.
#[derive(Debug)]
struct Shared {
    context: jetstream::Context,
    stream: stream::Stream,
    subject_prefix: String,
    buckets: Buckets,
    index: Mutex<Index>,
    /// One push at a time from this front-end: pushes decide on the index.
    pushing: Mutex<()>,
    /// Stations events may belong to, when the log was given a roster.
    roster: std::sync::OnceLock<BTreeSet<String>>,
}

/// The hub's log on NATS JetStream.
#[derive(Debug)]
pub struct JetStreamLog {
    /// Runs every call; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
}

/// A failure of the cluster: nothing was acknowledged.
fn cluster(what: &str, error: impl std::fmt::Display) -> HubError {
    HubError::Io(std::io::Error::other(format!("JetStream: {what}: {error}")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// Two records of one token merged: the first's identity and secret, the
/// origin either bound, the earliest revocation, and of a wipe the earliest
/// order, the furthest backlog and the earliest report of it done.
pub fn merge_token_records(held: &TokenRecord, other: &TokenRecord) -> TokenRecord {
    fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    let mut merged = held.clone();
    let mut scope = other.scope.clone();
    if let (Some(mine), Some(theirs)) = (merged.scope.bound_origin_mut(), scope.bound_origin_mut())
        && mine.is_none()
    {
        *mine = *theirs;
    }
    merged.revoked_at_ms = earliest(held.revoked_at_ms, other.revoked_at_ms);
    merged.wipe = match (held.wipe, other.wipe) {
        (Some(a), Some(b)) => Some(WipeOrder {
            ordered_at_ms: a.ordered_at_ms.min(b.ordered_at_ms),
            backlog_through: a.backlog_through.max(b.backlog_through),
            wiped_at_ms: earliest(a.wiped_at_ms, b.wiped_at_ms),
            not_uploaded: a.not_uploaded.max(b.not_uploaded),
        }),
        (a, b) => a.or(b),
    };
    merged
}

fn origin_key(origin: Uuid) -> String {
    hex(origin.as_bytes())
}

fn parse_origin_key(key: &str) -> Option<Uuid> {
    if key.len() != 32 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..16)
        .map(|i| u8::from_str_radix(key.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    Uuid::from_slice(&bytes?).ok()
}

fn to_json<T: Serialize>(value: &T) -> Result<Bytes, HubError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| HubError::Corrupt(format!("cannot encode a value: {e}")))
}

fn from_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, HubError> {
    serde_json::from_slice(bytes).map_err(|e| HubError::Corrupt(format!("{what}: {e}")))
}

/// A station code as a subject token: kept when it is letters, digits, `-`
/// or `_` (every valid code), hex-encoded otherwise.
fn subject_token(station_code: &str) -> String {
    if !station_code.is_empty()
        && station_code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        station_code.to_string()
    } else {
        format!("x{}", hex(station_code.as_bytes()))
    }
}

impl JetStreamLog {
    /// Connects to the cluster and opens the log, creating its stream and
    /// buckets when they do not exist, and reads the stream into the index.
    ///
    /// # Errors
    /// Invalid options ([`HubError::Corrupt`] naming the option), the
    /// cluster unreachable or refusing ([`HubError::Io`]).
    pub fn open(options: &JetStreamOptions) -> Result<Self, HubError> {
        options.validate().map_err(HubError::Corrupt)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("jetstream-log")
            .enable_all()
            .build()?;
        let options = options.clone();
        let shared = runtime.block_on(async move { Shared::connect(&options).await })?;
        let log = Self {
            runtime: Some(runtime),
            shared: Arc::new(shared),
        };
        log.run(|shared| async move { shared.catch_up().await.map(drop) })?;
        Ok(log)
    }

    /// The log, quarantining events of stations outside `stations`.
    #[must_use]
    pub fn with_roster(self, stations: impl IntoIterator<Item = String>) -> Self {
        // Set once, right after open: a second roster is ignored.
        let _ = self.shared.roster.set(stations.into_iter().collect());
        self
    }

    /// The servers that hold the stream: its leader first, then the other
    /// replicas, each with whether it is current.
    ///
    /// # Errors
    /// The cluster unreachable ([`HubError::Io`]).
    pub fn replicas(&self) -> Result<Vec<Replica>, HubError> {
        self.run(|shared| async move {
            let info = shared
                .stream
                .get_info()
                .await
                .map_err(|e| cluster("stream info", e))?;
            let Some(group) = info.cluster else {
                return Ok(Vec::new());
            };
            let mut replicas = Vec::new();
            if let Some(leader) = group.leader {
                replicas.push(Replica {
                    server: leader,
                    leader: true,
                    current: true,
                    lag: 0,
                });
            }
            replicas.extend(group.replicas.into_iter().map(|peer| Replica {
                server: peer.name,
                leader: false,
                current: peer.current && !peer.offline,
                lag: peer.lag.unwrap_or(0),
            }));
            Ok(replicas)
        })
    }

    /// Copies the log `from` into this one: every event at its position with
    /// its receive time, and every origin's state, binding, quarantined
    /// events and signed heads. Run again after an interruption, it carries
    /// on where it stopped; it refuses a log holding other events.
    ///
    /// # Errors
    /// [`HubError::Corrupt`] when this log holds, at a position, another
    /// event than `from`; errors of either log.
    pub fn import(&self, from: &dyn HubLog) -> Result<Imported, HubError> {
        const PAGE: usize = 512;
        let mut imported = Imported::default();
        let mut after = 0;
        loop {
            let page = from.events_after(after, PAGE)?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.hub_seq;
            imported.events += page.len() as u64;
            self.run(move |shared| async move { shared.import_events(page).await })?;
        }
        let quarantine = from.quarantine()?;
        let mut by_origin: BTreeMap<Uuid, BTreeMap<u64, Quarantined>> = BTreeMap::new();
        for (origin, q) in quarantine {
            imported.quarantined += 1;
            by_origin.entry(origin).or_default().insert(q.origin_seq, q);
        }
        for (origin, state) in from.origins()? {
            imported.origins += 1;
            let binding = from.binding(origin)?;
            imported.bindings += usize::from(binding.is_some());
            let heads = from.signed_heads(origin)?;
            imported.heads += heads.len();
            let quarantined = by_origin.remove(&origin).unwrap_or_default();
            self.run(move |shared| async move {
                let key = origin_key(origin);
                let buckets = &shared.buckets;
                if !quarantined.is_empty() {
                    Shared::put(&buckets.quarantine, &key, &quarantined, "quarantine").await?;
                }
                if !heads.is_empty() {
                    Shared::put(&buckets.heads, &key, &heads, "heads").await?;
                }
                if let Some(binding) = binding {
                    let token = hex(binding.token_id.as_bytes());
                    Shared::put(&buckets.tokens, &token, &key, "token").await?;
                    Shared::put(&buckets.bindings, &key, &binding, "binding").await?;
                }
                Shared::put(&buckets.origins, &key, &state, "origin").await
            })?;
        }
        Ok(imported)
    }

    /// The value the deployment keeps under `name` (`log_id`,
    /// `district_secret`): set to `proposed` by the first front-end that
    /// asks, then the same for every front-end, for good.
    ///
    /// # Errors
    /// The cluster unreachable ([`HubError::Io`]), a stored value that does
    /// not decode ([`HubError::Corrupt`]).
    pub fn shared_value(&self, name: &str, proposed: &[u8]) -> Result<Vec<u8>, HubError> {
        let name = name.to_string();
        let proposed = hex(proposed);
        self.run(move |shared| async move {
            let bucket = &shared.buckets.shared;
            for _ in 0..CAS_ATTEMPTS {
                if let Some((value, _)) = Shared::entry::<String>(bucket, &name, "shared").await? {
                    return from_hex(&value)
                        .ok_or_else(|| HubError::Corrupt(format!("shared {name} is not hex")));
                }
                if Shared::swap(bucket, &name, &proposed, None, "shared").await? {
                    return from_hex(&proposed)
                        .ok_or_else(|| HubError::Corrupt(format!("shared {name} is not hex")));
                }
            }
            Err(cluster("shared", "too many concurrent writers"))
        })
    }

    /// Every token record the front-ends shared, by token id.
    ///
    /// # Errors
    /// The cluster unreachable ([`HubError::Io`]), a record that does not
    /// decode ([`HubError::Corrupt`]).
    pub fn token_records(&self) -> Result<Vec<TokenRecord>, HubError> {
        self.run(|shared| async move {
            let mut records = Vec::new();
            for key in Shared::keys(&shared.buckets.records, "records").await? {
                if let Some((record, _)) =
                    Shared::entry::<TokenRecord>(&shared.buckets.records, &key, "record").await?
                {
                    records.push(record);
                }
            }
            records.sort_by(|a, b| a.token_id.cmp(&b.token_id));
            Ok(records)
        })
    }

    /// Merges `record` into the shared one of its token (see
    /// [`merge_token_records`]) and returns the record as shared afterwards.
    ///
    /// # Errors
    /// The cluster unreachable ([`HubError::Io`]), a record that does not
    /// decode ([`HubError::Corrupt`]).
    pub fn share_token_record(&self, record: &TokenRecord) -> Result<TokenRecord, HubError> {
        let record = record.clone();
        self.run(move |shared| async move {
            let bucket = &shared.buckets.records;
            let key = hex(record.token_id.as_bytes());
            for _ in 0..CAS_ATTEMPTS {
                let (merged, revision) =
                    match Shared::entry::<TokenRecord>(bucket, &key, "record").await? {
                        Some((held, revision)) => {
                            let merged = merge_token_records(&held, &record);
                            if merged == held {
                                return Ok(held);
                            }
                            (merged, Some(revision))
                        }
                        None => (record.clone(), None),
                    };
                if Shared::swap(bucket, &key, &merged, revision, "record").await? {
                    return Ok(merged);
                }
            }
            Err(cluster("records", "too many concurrent writers"))
        })
    }

    /// A counter that grows each time the cluster tells this front-end of an
    /// event appended to the stream (by any front-end): what long polls and
    /// the projections' feed wait on. A wake-up may be missed while the
    /// connection is down: callers also look on their own, now and then.
    ///
    /// # Errors
    /// The cluster refused the subscription ([`HubError::Io`]).
    pub fn appends(&self) -> Result<tokio::sync::watch::Receiver<u64>, HubError> {
        let (grown, appends) = tokio::sync::watch::channel(0u64);
        self.run(move |shared| async move {
            use futures_util::StreamExt as _;
            let mut subscriber = shared
                .context
                .client()
                .subscribe(format!("{}.>", shared.subject_prefix))
                .await
                .map_err(|e| cluster("subscribe", e))?;
            tokio::spawn(async move {
                while subscriber.next().await.is_some() {
                    grown.send_modify(|count| *count += 1);
                    if grown.is_closed() {
                        break;
                    }
                }
            });
            Ok(())
        })?;
        Ok(appends)
    }

    /// Runs `call` on the log's runtime and waits for its answer.
    fn run<T, F>(&self, call: impl FnOnce(Arc<Shared>) -> F) -> Result<T, HubError>
    where
        F: Future<Output = Result<T, HubError>> + Send + 'static,
        T: Send + 'static,
    {
        let Some(runtime) = &self.runtime else {
            return Err(cluster("the log", "closed"));
        };
        let (answer, answered) = std::sync::mpsc::sync_channel(1);
        let future = call(Arc::clone(&self.shared));
        runtime.spawn(async move {
            // The receiver waits below; it is gone only if the caller was
            // torn down, and then nobody needs the answer.
            let _ = answer.send(future.await);
        });
        answered
            .recv()
            .map_err(|_| cluster("the log", "a call ended without answer"))?
    }
}

impl Drop for JetStreamLog {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Shared {
    async fn connect(options: &JetStreamOptions) -> Result<Self, HubError> {
        let mut connect = match &options.credentials {
            Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| cluster("credentials file", e))?,
            None => async_nats::ConnectOptions::new(),
        };
        connect = connect
            .connection_timeout(options.timeout)
            .request_timeout(Some(options.timeout))
            .retry_on_initial_connect();
        let servers = options
            .servers
            .iter()
            .map(|s| s.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HubError::Corrupt(format!("log.servers: {e}")))?;
        let client = tokio::time::timeout(
            options.timeout,
            async_nats::connect_with_options(servers, connect),
        )
        .await
        .map_err(|e| cluster("connect", e))?
        .map_err(|e| cluster("connect", e))?;
        let context = jetstream::ContextBuilder::new()
            .timeout(options.timeout)
            .build(client);
        let name = &options.stream;
        let stream = context
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("{name}.>")],
                storage: stream::StorageType::File,
                num_replicas: options.replicas,
                retention: stream::RetentionPolicy::Limits,
                max_messages: -1,
                max_bytes: -1,
                duplicate_window: Duration::from_secs(120),
                deny_delete: true,
                deny_purge: true,
                allow_direct: true,
                ..stream::Config::default()
            })
            .await
            .map_err(|e| cluster("stream", e))?;
        let bucket = |suffix: &str| {
            let context = context.clone();
            let config = kv::Config {
                bucket: format!("{name}_{suffix}"),
                history: 1,
                storage: stream::StorageType::File,
                num_replicas: options.replicas,
                ..kv::Config::default()
            };
            async move {
                match context.get_key_value(&config.bucket).await {
                    Ok(store) => Ok(store),
                    Err(_) => context
                        .create_key_value(config)
                        .await
                        .map_err(|e| cluster("bucket", e)),
                }
            }
        };
        let buckets = Buckets {
            origins: bucket("origins").await?,
            quarantine: bucket("quarantine").await?,
            bindings: bucket("bindings").await?,
            tokens: bucket("tokens").await?,
            heads: bucket("heads").await?,
            records: bucket("records").await?,
            shared: bucket("shared").await?,
        };
        Ok(Self {
            context,
            stream,
            subject_prefix: name.clone(),
            buckets,
            index: Mutex::new(Index::default()),
            pushing: Mutex::new(()),
            roster: std::sync::OnceLock::new(),
        })
    }

    /// Reads what the stream gained since the index last looked; returns the
    /// index, locked.
    async fn catch_up(&self) -> Result<tokio::sync::MutexGuard<'_, Index>, HubError> {
        let mut index = self.index.lock().await;
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| cluster("stream info", e))?;
        let last = info.state.last_sequence;
        while (index.events.len() as u64) < last {
            let position = index.events.len() as u64 + 1;
            let message = self
                .stream
                .direct_get(position)
                .await
                .map_err(|e| cluster("read", e))?;
            let event = Event::decode(message.payload.as_ref()).map_err(|e| {
                HubError::Corrupt(format!("position {position} does not decode: {e}"))
            })?;
            let received_at_ms = message
                .headers
                .get(RECEIVED_AT)
                .and_then(|v| v.as_str().parse::<i64>().ok());
            index.add(event, received_at_ms)?;
        }
        Ok(index)
    }

    /// Appends logged events at their own positions, skipping those the
    /// stream holds already (the same event at the same position).
    async fn import_events(&self, page: Vec<LoggedEvent>) -> Result<(), HubError> {
        let _pushing = self.pushing.lock().await;
        let mut index = self.catch_up().await?;
        for logged in page {
            let held = index.events.len() as u64;
            if logged.hub_seq <= held {
                if index.event(logged.hub_seq).map(|e| &e.event_id) != Some(&logged.event.event_id)
                {
                    return Err(HubError::Corrupt(format!(
                        "position {} of the JetStream log holds another event: import only into a new stream",
                        logged.hub_seq
                    )));
                }
                continue;
            }
            if logged.hub_seq != held + 1 {
                return Err(HubError::Corrupt(format!(
                    "the log to import skips from position {held} to {}",
                    logged.hub_seq
                )));
            }
            let origin = Uuid::from_slice(&logged.event.origin_id)
                .map_err(|_| HubError::Corrupt("an event without origin".into()))?;
            let subject = format!(
                "{}.{}.{}",
                self.subject_prefix,
                subject_token(&logged.event.station_code),
                origin_key(origin)
            );
            let mut publish = jetstream::message::PublishMessage::build()
                .payload(Bytes::from(logged.event.encode_to_vec()))
                .message_id(hex(&logged.event.event_id))
                .expected_last_sequence(held);
            if let Some(received) = logged.received_at_ms {
                publish = publish.header(RECEIVED_AT, received.to_string().as_str());
            }
            let ack = self
                .context
                .send_publish(subject, publish)
                .await
                .map_err(|e| cluster("publish", e))?
                .await
                .map_err(|e| cluster("publish", e))?;
            if ack.duplicate || ack.sequence != logged.hub_seq {
                return Err(cluster(
                    "import",
                    "another writer appended to the log meanwhile",
                ));
            }
            index.add(logged.event, logged.received_at_ms)?;
        }
        Ok(())
    }

    async fn put<T: Serialize>(
        store: &kv::Store,
        key: &str,
        value: &T,
        what: &str,
    ) -> Result<(), HubError> {
        store
            .put(key, to_json(value)?)
            .await
            .map(drop)
            .map_err(|e| cluster(what, e))
    }

    async fn entry<T: DeserializeOwned>(
        store: &kv::Store,
        key: &str,
        what: &str,
    ) -> Result<Option<(T, u64)>, HubError> {
        let entry = store.entry(key).await.map_err(|e| cluster(what, e))?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                Ok(Some((from_json(&entry.value, what)?, entry.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Writes `value` at `key` if it is still at `revision` (`None`: absent).
    /// `Ok(false)` when another writer got there first.
    async fn swap<T: Serialize>(
        store: &kv::Store,
        key: &str,
        value: &T,
        revision: Option<u64>,
        what: &str,
    ) -> Result<bool, HubError> {
        let bytes = to_json(value)?;
        let written = match revision {
            Some(revision) => store
                .update(key, bytes, revision)
                .await
                .map(drop)
                .map_err(|e| {
                    if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                        None
                    } else {
                        Some(cluster(what, e))
                    }
                }),
            None => store.create(key, bytes).await.map(drop).map_err(|e| {
                if e.kind() == kv::CreateErrorKind::AlreadyExists {
                    None
                } else {
                    Some(cluster(what, e))
                }
            }),
        };
        match written {
            Ok(()) => Ok(true),
            Err(None) => Ok(false),
            Err(Some(error)) => Err(error),
        }
    }

    async fn origin(&self, origin: Uuid) -> Result<(OriginState, Option<u64>), HubError> {
        Ok(
            match Self::entry(&self.buckets.origins, &origin_key(origin), "origin").await? {
                Some((state, revision)) => (state, Some(revision)),
                None => (OriginState::default(), None),
            },
        )
    }

    async fn quarantined(
        &self,
        origin: Uuid,
    ) -> Result<(BTreeMap<u64, Quarantined>, Option<u64>), HubError> {
        Ok(
            match Self::entry(&self.buckets.quarantine, &origin_key(origin), "quarantine").await? {
                Some((held, revision)) => (held, Some(revision)),
                None => (BTreeMap::new(), None),
            },
        )
    }

    /// Extends `state` over seqs above its `durable_through` that a push cut
    /// off midway left in the stream or in quarantine.
    fn extend_over_held(
        origin: Uuid,
        state: &mut OriginState,
        index: &Index,
        quarantined: &BTreeMap<u64, Quarantined>,
    ) {
        let Some(mut chain) = state.chain(origin) else {
            return;
        };
        let mut extended = false;
        loop {
            let seq = state.durable_through + 1;
            let canonical =
                if let Some(event) = index.seqs.get(&(origin, seq)).and_then(|p| index.event(*p)) {
                    chain::canonical_bytes(event)
                } else if let Some(q) = quarantined.get(&seq) {
                    match Event::decode(q.event.as_slice()) {
                        Ok(event) => chain::canonical_bytes(&event),
                        Err(_) => break,
                    }
                } else {
                    break;
                };
            if chain.push_bytes(seq, &canonical).is_err() {
                break;
            }
            if state.station_code.is_empty()
                && let Some(event) = index.seqs.get(&(origin, seq)).and_then(|p| index.event(*p))
            {
                state.station_code = event.station_code.clone();
            }
            state.durable_through = seq;
            extended = true;
        }
        if extended {
            state.quarantined = quarantined.len() as u64;
            state.chain_head = Some(chain.head().to_vec());
        }
    }

    async fn push_signed(
        &self,
        events: Vec<Event>,
        heads: Vec<SignedHead>,
        today: chrono::NaiveDate,
        now_ms: i64,
    ) -> Result<PushOutcome, HubError> {
        let _pushing = self.pushing.lock().await;
        let ids = ingest::origins_of(&events)?;
        let origins: BTreeSet<Uuid> = ids.into_iter().collect();
        let mut index = self.catch_up().await?;

        let mut states = BTreeMap::new();
        let mut revisions = BTreeMap::new();
        let mut quarantines = BTreeMap::new();
        let mut keys = BTreeMap::new();
        for &origin in &origins {
            let (mut state, revision) = self.origin(origin).await?;
            let (quarantined, q_revision) = self.quarantined(origin).await?;
            Self::extend_over_held(origin, &mut state, &index, &quarantined);
            states.insert(origin, state);
            revisions.insert(origin, revision);
            quarantines.insert(origin, (quarantined, q_revision));
            if let Some((binding, _)) =
                Self::entry::<OriginBinding>(&self.buckets.bindings, &origin_key(origin), "binding")
                    .await?
                && let Some(key) = binding.public_key
            {
                keys.insert(origin, key);
            }
        }
        let signed: BTreeSet<Uuid> = keys.keys().copied().collect();
        let policy = Policy {
            today,
            roster: self.roster.get(),
            now_ms,
            max_clock_skew_ms: station_proto::validate::MAX_CLOCK_SKEW_MS,
            signed: Some(&signed),
            transfers: Some(&index.transfers),
        };
        let decided = {
            let index = &*index;
            let at = |origin: Uuid, seq: u64| {
                if let Some(q) = quarantines.get(&origin).and_then(|(q, _)| q.get(&seq)) {
                    return Event::decode(q.event.as_slice()).ok();
                }
                index
                    .seqs
                    .get(&(origin, seq))
                    .and_then(|p| index.event(*p))
                    .cloned()
            };
            let case_station = |case: Uuid| {
                let position = *index.ids.get(case.as_bytes().as_slice())?;
                let event = index.event(position)?;
                matches!(event.body, Some(station_proto::Body::CaseOpened(_)))
                    .then(|| event.station_code.clone())
            };
            ingest::decide(
                events,
                states.clone(),
                |id| index.ids.contains_key(id),
                at,
                case_station,
                &policy,
            )
        };
        let mut decision = match decided {
            Err(Refusal::Conflict { origin, seq }) => {
                drop(index);
                self.count_conflict(origin).await?;
                return Err(HubError::Conflict { origin, seq });
            }
            decided => decided?,
        };
        ingest::verify_heads(&mut decision, &heads, |origin| keys.get(&origin).cloned())?;
        let mut outcome = PushOutcome::counting(&decision);

        // Quarantine first: a seq taken there is found by the next push.
        let mut new_quarantine: BTreeMap<Uuid, Vec<Quarantined>> = BTreeMap::new();
        for verdict in &decision.verdicts {
            if let Verdict::Quarantine(q) = &verdict.verdict {
                new_quarantine
                    .entry(verdict.origin)
                    .or_default()
                    .push(q.clone());
            }
        }
        for (origin, added) in new_quarantine {
            let (held, revision) = quarantines.remove(&origin).unwrap_or_default();
            let mut held = held;
            for q in added {
                held.insert(q.origin_seq, q);
            }
            if !Self::swap(
                &self.buckets.quarantine,
                &origin_key(origin),
                &held,
                revision,
                "quarantine",
            )
            .await?
            {
                return Err(cluster(
                    "quarantine",
                    "another front-end wrote this origin meanwhile; push again",
                ));
            }
        }

        // The events, in batch order, each after its origin's last one.
        for verdict in &decision.verdicts {
            let Verdict::Accept(accepted) = &verdict.verdict else {
                continue;
            };
            let event = &accepted.event;
            let subject = format!(
                "{}.{}.{}",
                self.subject_prefix,
                subject_token(&event.station_code),
                origin_key(verdict.origin)
            );
            let expected = index.origin_last.get(&verdict.origin).copied().unwrap_or(0);
            let publish = jetstream::message::PublishMessage::build()
                .payload(Bytes::from(accepted.encoded.clone()))
                .message_id(hex(&event.event_id))
                .expected_last_subject_sequence(expected)
                .header(RECEIVED_AT, now_ms.to_string().as_str());
            let ack = self
                .context
                .send_publish(subject, publish)
                .await
                .map_err(|e| cluster("publish", e))?
                .await
                .map_err(|e| cluster("publish", e))?;
            if ack.duplicate || ack.sequence != index.events.len() as u64 + 1 {
                // Another front-end appended meanwhile: what this push
                // decided may no longer hold. The index catches up next time.
                return Err(cluster(
                    "publish",
                    "another front-end appended to the log meanwhile; push again",
                ));
            }
            index.add(event.clone(), Some(now_ms))?;
        }
        drop(index);

        for (origin, state) in &decision.origins {
            if let Some(head) = &state.signed_head
                && decision
                    .new_seqs
                    .get(origin)
                    .is_some_and(|(_, last)| *last == head.last_seq)
            {
                self.add_head(*origin, head.clone()).await?;
            }
        }
        for (origin, state) in decision.origins {
            outcome.acks.push((origin, state.durable_through));
            self.write_state(origin, state, revisions.remove(&origin).flatten())
                .await?;
        }
        Ok(outcome)
    }

    async fn add_head(&self, origin: Uuid, head: StoredHead) -> Result<(), HubError> {
        for _ in 0..CAS_ATTEMPTS {
            let (mut heads, revision) = match Self::entry::<Vec<StoredHead>>(
                &self.buckets.heads,
                &origin_key(origin),
                "heads",
            )
            .await?
            {
                Some((heads, revision)) => (heads, Some(revision)),
                None => (Vec::new(), None),
            };
            if heads.last() == Some(&head) {
                return Ok(());
            }
            heads.push(head.clone());
            if Self::swap(
                &self.buckets.heads,
                &origin_key(origin),
                &heads,
                revision,
                "heads",
            )
            .await?
            {
                return Ok(());
            }
        }
        Err(cluster("heads", "too many concurrent writers"))
    }

    /// Writes the state a push decided; if a `Hello` changed it meanwhile,
    /// keeps that `Hello`'s fields and the push's own.
    async fn write_state(
        &self,
        origin: Uuid,
        state: OriginState,
        mut revision: Option<u64>,
    ) -> Result<(), HubError> {
        let key = origin_key(origin);
        let mut state = state;
        for _ in 0..CAS_ATTEMPTS {
            if Self::swap(&self.buckets.origins, &key, &state, revision, "origin").await? {
                return Ok(());
            }
            let (fresh, fresh_revision) = self.origin(origin).await?;
            if fresh.durable_through > state.durable_through {
                return Err(cluster(
                    "origin",
                    "another front-end stored this origin meanwhile; push again",
                ));
            }
            state.reported_head = fresh.reported_head;
            state.clock_skew_ms = fresh.clock_skew_ms;
            state.last_contact_ms = state.last_contact_ms.max(fresh.last_contact_ms);
            state.conflicts = state.conflicts.max(fresh.conflicts);
            revision = fresh_revision;
        }
        Err(cluster("origin", "too many concurrent writers"))
    }

    async fn count_conflict(&self, origin: Uuid) -> Result<(), HubError> {
        self.update_origin(origin, |state| state.conflicts += 1)
            .await
            .map(drop)
    }

    async fn update_origin(
        &self,
        origin: Uuid,
        change: impl Fn(&mut OriginState),
    ) -> Result<OriginState, HubError> {
        for _ in 0..CAS_ATTEMPTS {
            let (mut state, revision) = self.origin(origin).await?;
            change(&mut state);
            if Self::swap(
                &self.buckets.origins,
                &origin_key(origin),
                &state,
                revision,
                "origin",
            )
            .await?
            {
                return Ok(state);
            }
        }
        Err(cluster("origin", "too many concurrent writers"))
    }

    async fn bind_origin(
        &self,
        origin: Uuid,
        token_id: String,
        public_key: Option<Vec<u8>>,
    ) -> Result<OriginBinding, HubError> {
        let token_key = hex(token_id.as_bytes());
        let bound = match Self::entry::<String>(&self.buckets.tokens, &token_key, "token").await? {
            Some((bound, _)) => Some(bound),
            None => {
                let key = origin_key(origin);
                if Self::swap(&self.buckets.tokens, &token_key, &key, None, "token").await? {
                    None
                } else {
                    Self::entry::<String>(&self.buckets.tokens, &token_key, "token")
                        .await?
                        .map(|(bound, _)| bound)
                }
            }
        };
        if let Some(bound) = bound
            && bound != origin_key(origin)
        {
            return Err(HubError::TokenBound {
                token_id,
                origin: parse_origin_key(&bound)
                    .ok_or_else(|| HubError::Corrupt("a token's origin does not parse".into()))?,
            });
        }
        let key = origin_key(origin);
        for _ in 0..CAS_ATTEMPTS {
            let current =
                Self::entry::<OriginBinding>(&self.buckets.bindings, &key, "binding").await?;
            let (mut binding, revision) = match current {
                Some((binding, _)) if binding.token_id != token_id => {
                    return Err(HubError::OriginTaken(origin));
                }
                Some((binding, revision)) => (binding, Some(revision)),
                None => (
                    OriginBinding {
                        token_id: token_id.clone(),
                        public_key: None,
                    },
                    None,
                ),
            };
            let changed = match (&binding.public_key, &public_key) {
                (Some(bound), Some(key)) if bound != key => {
                    return Err(HubError::KeyMismatch(origin));
                }
                (None, Some(key)) => {
                    binding.public_key = Some(key.clone());
                    true
                }
                _ => revision.is_none(),
            };
            if !changed
                || Self::swap(&self.buckets.bindings, &key, &binding, revision, "binding").await?
            {
                return Ok(binding);
            }
        }
        Err(cluster("binding", "too many concurrent writers"))
    }

    async fn keys(store: &kv::Store, what: &str) -> Result<Vec<String>, HubError> {
        use futures_util::TryStreamExt as _;
        let keys = store.keys().await.map_err(|e| cluster(what, e))?;
        let mut keys: Vec<String> = keys.try_collect().await.map_err(|e| cluster(what, e))?;
        keys.sort();
        Ok(keys)
    }
}

impl HubLog for JetStreamLog {
    fn push_signed(
        &self,
        events: Vec<Event>,
        heads: &[SignedHead],
        today: chrono::NaiveDate,
        now_ms: i64,
    ) -> Result<PushOutcome, HubError> {
        let heads = heads.to_vec();
        self.run(
            move |shared| async move { shared.push_signed(events, heads, today, now_ms).await },
        )
    }

    fn signed_heads(&self, origin: Uuid) -> Result<Vec<StoredHead>, HubError> {
        self.run(move |shared| async move {
            Ok(Shared::entry::<Vec<StoredHead>>(
                &shared.buckets.heads,
                &origin_key(origin),
                "heads",
            )
            .await?
            .map(|(heads, _)| heads)
            .unwrap_or_default())
        })
    }

    fn hello(
        &self,
        origin: Uuid,
        station_code: &str,
        head_seq: u64,
        device_clock_ms: i64,
        now_ms: i64,
    ) -> Result<OriginState, HubError> {
        let station_code = station_code.to_string();
        self.run(move |shared| async move {
            shared
                .update_origin(origin, |state| {
                    if state.station_code.is_empty() {
                        state.station_code.clone_from(&station_code);
                    }
                    state.reported_head = head_seq;
                    state.last_contact_ms = now_ms;
                    state.clock_skew_ms = device_clock_ms.saturating_sub(now_ms);
                })
                .await
        })
    }

    fn bind_origin(
        &self,
        origin: Uuid,
        token_id: &str,
        public_key: Option<&[u8]>,
    ) -> Result<OriginBinding, HubError> {
        let token_id = token_id.to_string();
        let public_key = public_key.map(<[u8]>::to_vec);
        self.run(
            move |shared| async move { shared.bind_origin(origin, token_id, public_key).await },
        )
    }

    fn binding(&self, origin: Uuid) -> Result<Option<OriginBinding>, HubError> {
        self.run(move |shared| async move {
            Ok(Shared::entry::<OriginBinding>(
                &shared.buckets.bindings,
                &origin_key(origin),
                "binding",
            )
            .await?
            .map(|(binding, _)| binding))
        })
    }

    fn origin(&self, origin: Uuid) -> Result<OriginState, HubError> {
        self.run(move |shared| async move { Ok(shared.origin(origin).await?.0) })
    }

    fn origins(&self) -> Result<Vec<(Uuid, OriginState)>, HubError> {
        self.run(|shared| async move {
            let mut origins = Vec::new();
            for key in Shared::keys(&shared.buckets.origins, "origins").await? {
                let Some(origin) = parse_origin_key(&key) else {
                    continue;
                };
                if let Some((state, _)) =
                    Shared::entry::<OriginState>(&shared.buckets.origins, &key, "origin").await?
                {
                    origins.push((origin, state));
                }
            }
            origins.sort_by_key(|(origin, _)| *origin);
            Ok(origins)
        })
    }

    fn pull_for(
        &self,
        station_code: &str,
        after: u64,
        max_events: usize,
        max_bytes: usize,
        skip_origin: Option<Uuid>,
    ) -> Result<PullPage, HubError> {
        let station_code = station_code.to_string();
        self.run(move |shared| async move {
            let index = shared.catch_up().await?;
            let head = index.station_last.get(&station_code).copied().unwrap_or(0);
            let stream = held_station_stream(&index.events, &station_code, after);
            Ok(page_of(
                stream,
                after,
                head,
                max_events,
                max_bytes,
                skip_origin,
            ))
        })
    }

    fn station_head(&self, station_code: &str) -> Result<u64, HubError> {
        let station_code = station_code.to_string();
        self.run(move |shared| async move {
            let index = shared.catch_up().await?;
            Ok(index.station_last.get(&station_code).copied().unwrap_or(0))
        })
    }

    fn event_count(&self) -> u64 {
        // The contract gives no error here: when the cluster cannot be
        // reached, the count is what the index last read.
        self.run(|shared| async move {
            match shared.catch_up().await {
                Ok(index) => Ok(index.events.len() as u64),
                Err(_) => Ok(shared.index.lock().await.events.len() as u64),
            }
        })
        .unwrap_or_default()
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>, HubError> {
        self.run(move |shared| async move {
            let index = shared.catch_up().await?;
            Ok(index
                .events
                .iter()
                .zip(1u64..)
                .skip(usize::try_from(after).unwrap_or(usize::MAX))
                .take(limit)
                .map(|((event, received), hub_seq)| LoggedEvent {
                    hub_seq,
                    received_at_ms: *received,
                    event: event.clone(),
                })
                .collect())
        })
    }

    fn position_of(&self, event_id: &[u8]) -> Result<Option<u64>, HubError> {
        let event_id = event_id.to_vec();
        self.run(move |shared| async move {
            let index = shared.catch_up().await?;
            Ok(index.ids.get(&event_id).copied())
        })
    }

    fn quarantine(&self) -> Result<Vec<(Uuid, Quarantined)>, HubError> {
        self.run(|shared| async move {
            let mut all = Vec::new();
            for key in Shared::keys(&shared.buckets.quarantine, "quarantine").await? {
                let Some(origin) = parse_origin_key(&key) else {
                    continue;
                };
                let (held, _) = shared.quarantined(origin).await?;
                all.extend(held.into_values().map(|q| (origin, q)));
            }
            all.sort_by(|(a, qa), (b, qb)| (a, qa.origin_seq).cmp(&(b, qb.origin_seq)));
            Ok(all)
        })
    }
}
