//! The relay's uplink: forwards what its phones saved at the station to the
//! city hub, and pulls the hub's station stream into the relay, driven by
//! the agent's sans-IO [`SyncMachine`].
//!
//! The machine was made for one device log; here the "log" it pushes is the
//! relay's own log in relay order. Its `durable_through` is
//! [`RelayState::forwarded_through`]: every position up to it is held by the
//! city. A batch is read from the positions after it, leaving out each event
//! whose seq the city is known to hold ([`RelayState::city`]), and carries,
//! per origin, the signed head the phone sent with its last event in the
//! batch (with its public key, for an origin the hub may not have seen), so
//! the hub verifies every event as if the phone had pushed it.
//!
//! # In flight, packed
//!
//! Up to the machine's push window (two) batches are in flight: the next is
//! read after the last one sent, taking its seqs as held, and travels while
//! the other end acknowledges the one before. Answers are taken oldest
//! first; any failure forgets every batch in flight and the next `Hello`
//! says where to resume (the other end ignores what it already holds).
//!
//! To a hub (or relay) whose `Hello` says it unpacks them, each batch goes
//! packed (`PushRequest.packed`): one zstd frame at the harder level,
//! compressed against what the relay pushed before it as far as
//! acknowledged, so a batch costs the airtime of what is new in it. The
//! dictionary lives in memory only, on both ends; a hub that no longer
//! holds it (restarted, or the relay now talks to another) refuses the batch
//! with "unknown dictionary", and it goes again packed alone.
//!
//! # Behind another relay
//!
//! The uplink may lead to another relay of the station instead of the hub
//! (a village outpost's PC whose only link is the station PC): that relay
//! serves this one as the hub serves a relay, and its answers carry a city
//! figure, which the hub's never do. Then its acknowledgements and what is
//! pulled from it say what *it* holds ([`RelayState::upstream`]: enough not
//! to send it again), and "received by the city" ([`RelayState::city`]) is
//! taken only from the city figures it hands on, in its acks and, per
//! origin of the station, in its answer to each `Hello`; so this relay never
//! tells a phone the city holds what the hub did not acknowledge.
//!
//! # Invariants
//!
//! - A phone's push is stored by the relay as one run of positions ending at
//!   a seq the phone signed, so a batch that stops at the end of a run can
//!   always be signed; past its byte budget a batch only finishes the run it
//!   is in, and per origin it is cut back to the last signed seq it holds.
//! - `forwarded_through` and the city's acknowledgements are written
//!   together, after the hub's ack, in one durable write of the state file:
//!   a relay killed in between sends the batch again and the hub ignores
//!   what it holds (nothing lost, nothing stored twice).
//! - Pulled events are taken as the hub verified them; the city's holding of
//!   their seqs is recorded before they are stored, and the cursor after, so
//!   a relay killed in between pulls the page again and ignores what it
//!   holds.
//! - Runs that no signature reaches (events pulled from the hub, or of an
//!   origin from before signatures) are passed over with a warning: only
//!   their device can prove them, and the city holds them or will from it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use station_agent::clock::SharedClock;
use station_agent::sync::classify::fault;
use station_agent::sync::machine::{
    Action, Batch, Call, Fault, HelloAnswer, PullPage, PullPlan, SyncMachine,
};
use station_agent::sync::{SyncOptions, compress, endpoint};
use station_hub::server::MAX_PUSH_EVENTS;
use station_hub::store::{HubError, HubLog as _, HubStore};
use station_proto::Event;
use station_proto::ids::Uuid;
use station_proto::packed;
use station_proto::v1::sync_client::SyncClient;
use station_proto::v1::{HelloRequest, PullRequest, PushRequest, PushResponse, SignedHead};
use tokio::time::Instant;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::gate::{Listed, learn_tokens};
use crate::state::{RelayState, StateError, StateFile};

/// Events one forwarded batch carries at most, unless a run it holds is
/// still open; whatever run is open, never more than the hub takes
/// ([`MAX_PUSH_EVENTS`]), which is also the most one phone's push (one run)
/// can hold: a run begun at the start of a batch always fits whole, so a
/// batch never comes out empty for want of room.
const MAX_BATCH_EVENTS: usize = 4_500;
/// Positions one batch looks at, at most.
const MAX_SCAN: usize = 9_000;

/// Why a round of the uplink stopped.
#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    /// The hub's address, TLS settings or the relay token are unusable.
    #[error("{0}")]
    Setup(String),
    /// The hub could not be reached or failed, past the retry budget.
    #[error("the hub: {0}")]
    Hub(String),
    /// The relay's store failed.
    #[error(transparent)]
    Store(#[from] HubError),
    /// The state file failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// One batch read from the relay's log.
#[derive(Debug, Default)]
struct Forward {
    /// The events, each origin's contiguous and in seq order.
    events: Vec<Event>,
    /// One signed head per origin of `events`, for its last event.
    heads: Vec<SignedHead>,
    /// The position the batch accounts for: every position up to it is in
    /// the batch, held by the city, or cannot be forwarded.
    through: u64,
}

/// The events of one origin a batch is gathering.
#[derive(Debug, Default)]
struct Run {
    /// `(position, event)` in seq order.
    events: Vec<(u64, Event)>,
}

fn origin_of(event: &Event) -> Option<Uuid> {
    Uuid::from_slice(&event.origin_id).ok()
}

/// Reads the batch after position `after` of at most about `budget` bytes,
/// leaving out the seqs of each origin up to what `held` says the other
/// end holds.
fn read_batch(
    store: &HubStore,
    held: &BTreeMap<Uuid, u64>,
    after: u64,
    budget: usize,
) -> Result<Forward, HubError> {
    let page = store.events_after(after, MAX_SCAN)?;
    let mut runs: BTreeMap<Uuid, Run> = BTreeMap::new();
    let mut signed: BTreeMap<Uuid, BTreeSet<u64>> = BTreeMap::new();
    let mut quarantined: Option<BTreeMap<(Uuid, u64), Event>> = None;
    let mut bytes = 0usize;
    let mut count = 0usize;
    let mut through = after;
    // The origin whose run is still open (its last event not signed).
    let mut open: Option<Uuid> = None;
    for logged in page {
        let Some(origin) = origin_of(&logged.event) else {
            through = logged.hub_seq;
            continue;
        };
        if let std::collections::btree_map::Entry::Vacant(entry) = signed.entry(origin) {
            let heads = store.signed_heads(origin)?;
            entry.insert(heads.into_iter().map(|h| h.last_seq).collect());
        }
        let full = bytes >= budget || count >= MAX_BATCH_EVENTS;
        if full && open != Some(origin) {
            break;
        }
        if count >= MAX_PUSH_EVENTS {
            break;
        }
        let seq = logged.event.origin_seq;
        let held = held.get(&origin).copied().unwrap_or(0);
        let run = runs.entry(origin).or_default();
        let expected = run
            .events
            .last()
            .map_or(held + 1, |(_, e)| e.origin_seq + 1);
        if seq < expected {
            through = logged.hub_seq;
            continue;
        }
        // Seqs the relay kept in quarantine are not in its log: take them
        // from there, as received, so the hub sees no gap.
        let mut missing = Vec::new();
        if seq > expected {
            let kept = match &quarantined {
                Some(kept) => kept,
                None => quarantined.insert(quarantined_events(store)?),
            };
            for s in expected..seq {
                match kept.get(&(origin, s)) {
                    Some(event) => missing.push((logged.hub_seq, event.clone())),
                    None => {
                        tracing::warn!(%origin, seq = s, "a seq is missing from the relay's log");
                        missing.clear();
                        break;
                    }
                }
            }
            if missing.len() as u64 != seq - expected || count + missing.len() >= MAX_PUSH_EVENTS {
                break;
            }
        }
        for (pos, event) in missing {
            bytes += event.encoded_len();
            count += 1;
            run.events.push((pos, event));
        }
        bytes += logged.event.encoded_len();
        count += 1;
        through = logged.hub_seq;
        let at_head = signed.get(&origin).is_some_and(|s| s.contains(&seq));
        run.events.push((logged.hub_seq, logged.event));
        open = (!at_head).then_some(origin);
    }
    let mut forward = Forward {
        through,
        ..Forward::default()
    };
    for (origin, run) in runs {
        let Some(first) = run.events.first().map(|(_, e)| e.origin_seq) else {
            continue;
        };
        let heads = signed.get(&origin).cloned().unwrap_or_default();
        let last = run.events.last().map_or(first, |(_, e)| e.origin_seq);
        let head = heads.range(first..=last).next_back().copied();
        let beyond = heads.range(last.saturating_add(1)..).next().is_some();
        let Some(head) = head else {
            if beyond {
                // Its signature lies past this batch: leave it for the next.
                if let Some((pos, _)) = run.events.first() {
                    forward.through = forward.through.min(pos - 1);
                }
            } else {
                tracing::warn!(
                    %origin,
                    first,
                    last,
                    "entries no signature of their device covers: left to the device itself"
                );
            }
            continue;
        };
        if let Some((pos, _)) = run.events.iter().find(|(_, e)| e.origin_seq > head) {
            forward.through = forward.through.min(pos - 1);
        }
        let Some(stored) = store
            .signed_heads(origin)?
            .into_iter()
            .find(|h| h.last_seq == head)
        else {
            continue;
        };
        let public_key = store
            .binding(origin)?
            .and_then(|b| b.public_key)
            .unwrap_or_default();
        forward.events.extend(
            run.events
                .into_iter()
                .map(|(_, e)| e)
                .filter(|e| e.origin_seq <= head),
        );
        forward.heads.push(SignedHead {
            origin_id: origin.as_bytes().to_vec(),
            last_seq: head,
            signature: stored.signature,
            public_key,
        });
    }
    Ok(forward)
}

/// Every event the relay keeps in quarantine, by origin and seq, decoded.
fn quarantined_events(store: &HubStore) -> Result<BTreeMap<(Uuid, u64), Event>, HubError> {
    let mut kept = BTreeMap::new();
    for (origin, q) in store.quarantine()? {
        if let Ok(event) = Event::decode(q.event.as_slice()) {
            kept.insert((origin, q.origin_seq), event);
        }
    }
    Ok(kept)
}

/// The relay's link to the hub: the machine, the connection, the store.
#[derive(Debug)]
pub struct Uplink {
    /// The relay's log: read for forwarding, written with pulled events.
    store: Arc<HubStore>,
    /// What the relay knows of the hub.
    state: Arc<StateFile>,
    /// Where and how to connect.
    endpoint: Endpoint,
    /// `Bearer <relay token>`.
    authorization: MetadataValue<Ascii>,
    /// Sizes, deadlines, retries.
    machine: SyncMachine,
    /// The open connection, if any.
    client: Option<Clients>,
    /// Whether the last `Hello` said the other end unpacks packed pushes.
    unpacks: bool,
    /// What the next packed push is packed against: the end of the last
    /// one acknowledged.
    dictionary: Option<Arc<[u8]>>,
    /// The batches sent and not yet answered, oldest first (up to the
    /// machine's push window).
    in_flight: VecDeque<Sent>,
    /// The station whose stream is pulled.
    station: String,
    /// How long one round keeps retrying.
    retry_budget: Duration,
    /// How many devices the relay serves, when a `Hello` changed it and no
    /// round has reported it yet.
    devices_changed: Option<usize>,
    /// The time told to the hub at `Hello`.
    clock: SharedClock,
    /// Whether the last `Hello` was answered by another station relay
    /// rather than the city hub (its answer carries a city figure): then
    /// what it holds is not yet the city's, and "received by the city" is
    /// taken only from the city figures it hands on.
    behind_relay: bool,
}

/// One connection's clients: calls compressed by tonic, and packed pushes
/// (compressed already) sent as they are.
#[derive(Debug, Clone)]
struct Clients {
    calls: SyncClient<Channel>,
    packed: SyncClient<Channel>,
}

/// A batch sent and not yet answered.
#[derive(Debug)]
struct Sent {
    /// The call; `None` for a batch with nothing to send (every event in it
    /// held by the other end already).
    call: Option<tokio::task::JoinHandle<Result<PushResponse, StepError>>>,
    /// The relay positions it accounts for: after `after`, through `through`.
    after: u64,
    through: u64,
    /// Events in it.
    count: u64,
    /// The last seq of each origin in it.
    lasts: BTreeMap<Uuid, u64>,
    /// Whether it went packed against the batch before it.
    against_previous: bool,
    /// The dictionary it leaves once acknowledged, when packed.
    left: Option<Arc<[u8]>>,
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Events sent to the hub in acknowledged batches.
    pub forwarded: u64,
    /// Acknowledged batches that went packed against the one before them.
    pub packed_against_previous: u64,
    /// Events pulled from the hub and stored.
    pub pulled: u64,
    /// When the hub's list of the station's device tokens changed what the
    /// relay holds: how many it now serves.
    pub devices: Option<usize>,
}

/// Why a step did not complete.
#[derive(Debug)]
enum StepError {
    Local(UplinkError),
    Failed { call: Call, fault: Fault },
}

impl From<HubError> for StepError {
    fn from(error: HubError) -> Self {
        StepError::Local(error.into())
    }
}

impl From<StateError> for StepError {
    fn from(error: StateError) -> Self {
        StepError::Local(error.into())
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Uplink {
    /// The uplink to the hub of `options` (its address, TLS and the relay
    /// token) for `store` and `state`.
    ///
    /// # Errors
    /// [`UplinkError::Setup`] for an address, TLS settings or token tonic
    /// refuses, or no token.
    pub fn new(
        store: Arc<HubStore>,
        state: Arc<StateFile>,
        options: &SyncOptions,
    ) -> Result<Self, UplinkError> {
        Self::with_clock(store, state, options, station_agent::clock::system())
    }

    /// [`Uplink::new`], telling the hub the time of `clock` at `Hello`
    /// instead of the system clock's (a simulation's clock).
    ///
    /// # Errors
    /// As [`Uplink::new`].
    pub fn with_clock(
        store: Arc<HubStore>,
        state: Arc<StateFile>,
        options: &SyncOptions,
        clock: SharedClock,
    ) -> Result<Self, UplinkError> {
        let endpoint = endpoint(options).map_err(|e| UplinkError::Setup(e.to_string()))?;
        let token = options
            .token
            .as_deref()
            .ok_or_else(|| UplinkError::Setup("no relay token: give --token-file".into()))?;
        let authorization = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| UplinkError::Setup("the relay token must be printable ASCII".into()))?;
        let station = state.get().station_code;
        let seed = state.get().relay_origin.as_u128() as u64;
        Ok(Self {
            store,
            state,
            endpoint,
            authorization,
            machine: SyncMachine::new(options.machine_config(), seed),
            client: None,
            unpacks: false,
            dictionary: None,
            in_flight: VecDeque::new(),
            station,
            retry_budget: options.retry_budget,
            devices_changed: None,
            clock,
            behind_relay: false,
        })
    }

    fn request<T>(&self, message: T, deadline: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(deadline);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    async fn client(&mut self) -> Result<SyncClient<Channel>, StepError> {
        Ok(self.clients().await?.calls)
    }

    async fn clients(&mut self) -> Result<Clients, StepError> {
        if let Some(clients) = &self.client {
            return Ok(clients.clone());
        }
        let channel = self
            .endpoint
            .connect()
            .await
            .map_err(|e| StepError::Failed {
                call: Call::Connect,
                fault: Fault::Link(e.to_string()),
            })?;
        let calls = SyncClient::new(channel.clone())
            .send_compressed(CompressionEncoding::Zstd)
            .accept_compressed(CompressionEncoding::Zstd)
            .accept_compressed(CompressionEncoding::Gzip);
        let packed = SyncClient::new(channel)
            .accept_compressed(CompressionEncoding::Zstd)
            .accept_compressed(CompressionEncoding::Gzip);
        let clients = Clients { calls, packed };
        self.client = Some(clients.clone());
        Ok(clients)
    }

    async fn call<T, F>(call: Call, deadline: Duration, future: F) -> Result<T, StepError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(deadline, future).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(StepError::Failed {
                call,
                fault: fault(&status),
            }),
            Err(_) => Err(StepError::Failed {
                call,
                fault: Fault::Link(format!("no answer within {deadline:?}")),
            }),
        }
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, StepError>
    where
        T: Send + 'static,
        F: FnOnce(&HubStore, &StateFile) -> Result<T, StepError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || f(&store, &state))
            .await
            .map_err(|e| StepError::Local(UplinkError::Hub(format!("relay task failed: {e}"))))?
    }

    async fn hello(&mut self) -> Result<(), StepError> {
        let mut client = self.client().await?;
        let state = self.state.get();
        let deadline = self.machine.begin_hello(now());
        let request = self.request(
            HelloRequest {
                origin_id: state.relay_origin.as_bytes().to_vec(),
                station_code: self.station.clone(),
                head_seq: 0,
                device_clock_ms: self.clock.now_ms(),
                agent_version: env!("CARGO_PKG_VERSION").into(),
                public_key: Vec::new(),
                wiped: false,
            },
            deadline,
        );
        let mut answer = Self::call(Call::Hello, deadline, client.hello(request)).await?;
        let devices = std::mem::take(&mut answer.station_devices);
        let relays = std::mem::take(&mut answer.station_relays);
        let station = self.station.clone();
        let (devices, relays) = self
            .blocking(move |store, _| {
                let devices = learn_tokens(store, &station, Listed::Devices, &devices)?;
                let relays = learn_tokens(store, &station, Listed::Relays, &relays)?;
                Ok((devices, relays))
            })
            .await?;
        if let Some(known) = devices {
            tracing::info!(
                devices = known,
                "the station's device tokens changed at the hub"
            );
            self.devices_changed = Some(known);
        }
        if let Some(known) = relays {
            tracing::info!(
                relays = known,
                "the station's relay tokens changed at the hub"
            );
        }
        self.behind_relay = answer.city_durable_through.is_some();
        self.unpacks = answer.packed_pushes;
        if !answer.log_id.is_empty() {
            let log_id: String = answer.log_id.iter().map(|b| format!("{b:02x}")).collect();
            let replaced = self
                .blocking(move |_, state| Ok(state.update(|s| s.follow_hub_log(&log_id))?))
                .await?;
            if replaced {
                tracing::warn!(
                    "the hub's log was replaced (restored from a backup?): \
                     forwarding everything the relay holds again"
                );
            }
        }
        let held = std::mem::take(&mut answer.station_origins);
        if self.behind_relay && !held.is_empty() {
            self.blocking(move |_, state| {
                state.update(|s| {
                    for ack in &held {
                        if let Ok(origin) = Uuid::from_slice(&ack.origin_id) {
                            s.upstream_holds(origin, ack.durable_through);
                            // Taken as told, even when lower than before: the
                            // relay ahead forgets the city's figures when the
                            // hub's log is replaced, and so does this one.
                            s.city.insert(origin, ack.city_durable_through.unwrap_or(0));
                        }
                    }
                })?;
                Ok(())
            })
            .await?;
        }
        let forwarded = self.state.get().forwarded_through;
        self.machine.on_hello(
            HelloAnswer {
                durable_through: forwarded,
                station_pull_head: answer.station_pull_head,
            },
            self.store.event_count(),
            now(),
        );
        Ok(())
    }

    /// Reads the next batch after `after` and sends it; its answer is
    /// taken by [`Uplink::take_push`], oldest first.
    async fn send_push(&mut self, after: u64, budget: usize) -> Result<(), StepError> {
        let state = self.state.get();
        let mut held: BTreeMap<Uuid, u64> = state
            .city
            .keys()
            .chain(state.upstream.keys())
            .map(|origin| (*origin, state.held_beyond(*origin)))
            .collect();
        // The batches in flight go before this one: their seqs are taken.
        for sent in &self.in_flight {
            for (origin, last) in &sent.lasts {
                let held = held.entry(*origin).or_insert(0);
                *held = (*held).max(*last);
            }
        }
        let batch = self
            .blocking(move |store, _| Ok(read_batch(store, &held, after, budget)?))
            .await?;
        let count = batch.events.len() as u64;
        let mut lasts: BTreeMap<Uuid, u64> = BTreeMap::new();
        for event in &batch.events {
            if let Some(origin) = origin_of(event) {
                let last = lasts.entry(origin).or_insert(0);
                *last = (*last).max(event.origin_seq);
            }
        }
        let through = batch.through;
        let message = PushRequest {
            events: batch.events,
            heads: batch.heads,
            ..PushRequest::default()
        };
        let bytes = message.encoded_len();
        let deadline = self.machine.begin_push(
            Batch {
                after,
                through,
                bytes,
            },
            now(),
        );
        if through <= after && count == 0 {
            return Err(StepError::Local(UplinkError::Hub(format!(
                "the relay's entries after position {after} cannot be forwarded yet"
            ))));
        }
        let mut sent = Sent {
            call: None,
            after,
            through,
            count,
            lasts,
            against_previous: false,
            left: None,
        };
        if count == 0 {
            self.in_flight.push_back(sent);
            return Ok(());
        }
        let clients = self.clients().await?;
        let (mut client, message) = if self.unpacks {
            // Packed against the last batch acknowledged: a batch sent
            // beside another in flight is packed against the same one.
            let dictionary = self.dictionary.clone();
            sent.against_previous = dictionary.is_some();
            let (packed, left) = tokio::task::spawn_blocking(move || {
                compress::pack(&message, dictionary.as_deref(), compress::PUSH_LEVEL)
            })
            .await
            .map_err(|e| packing_failed(&e))?
            .map_err(|e| packing_failed(&e))?;
            sent.left = Some(left);
            (clients.packed, packed)
        } else {
            (clients.calls, message)
        };
        tracing::debug!(
            after,
            through,
            count,
            bytes,
            sent = message.encoded_len(),
            against_previous = sent.against_previous,
            "forwarding"
        );
        let request = self.request(message, deadline);
        let call =
            tokio::spawn(
                async move { Self::call(Call::Push, deadline, client.push(request)).await },
            );
        sent.call = Some(call);
        self.in_flight.push_back(sent);
        Ok(())
    }

    /// Takes the answer to the oldest batch in flight: what the other end
    /// acknowledged is written to the state file, then the machine moves.
    async fn take_push(&mut self, report: &mut RoundReport) -> Result<(), StepError> {
        let Some(sent) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let acks = match sent.call {
            None => Vec::new(),
            Some(call) => {
                call.await
                    .map_err(|e| {
                        StepError::Local(UplinkError::Hub(format!("relay task failed: {e}")))
                    })??
                    .acks
            }
        };
        let (after, through) = (sent.after, sent.through);
        self.blocking(move |_, state| {
            state.update(|s| {
                for ack in &acks {
                    if let Ok(origin) = Uuid::from_slice(&ack.origin_id) {
                        note_held(s, origin, ack.durable_through, ack.city_durable_through);
                    }
                }
                s.forwarded_through = s.forwarded_through.max(through);
            })?;
            Ok(())
        })
        .await?;
        if through > after {
            self.machine
                .on_push_ack(through, now())
                .map_err(|v| StepError::Local(UplinkError::Hub(v.reason)))?;
        }
        if let Some(left) = sent.left {
            self.dictionary = Some(left);
        }
        report.forwarded += sent.count;
        report.packed_against_previous += u64::from(sent.against_previous);
        Ok(())
    }

    /// Forgets the batches in flight, their calls stopped: after a failure
    /// the next `Hello` says where to resume.
    fn forget_pushes(&mut self) {
        for sent in self.in_flight.drain(..) {
            if let Some(call) = sent.call {
                call.abort();
            }
        }
    }

    async fn pull(&mut self, plan: PullPlan, report: &mut RoundReport) -> Result<(), StepError> {
        let mut client = self.client().await?;
        let request = self.request(
            PullRequest {
                station_code: self.station.clone(),
                after: plan.after,
                max_events: plan.max_events,
                max_bytes: plan.max_bytes,
                wait_ms: u32::try_from(plan.wait.as_millis()).unwrap_or(u32::MAX),
                ..PullRequest::default()
            },
            plan.deadline,
        );
        let page = Self::call(Call::Pull, plan.deadline, client.pull(request)).await?;
        let bytes = page.encoded_len();
        let next_cursor = page.next_cursor;
        let head = page.head;
        let events: Vec<Event> = page.events.into_iter().filter_map(|p| p.event).collect();
        let count = events.len();
        let behind_relay = self.behind_relay;
        let stored = self
            .blocking(move |store, state| {
                state.update(|s| {
                    for event in &events {
                        if let Some(origin) = origin_of(event) {
                            if behind_relay {
                                s.upstream_holds(origin, event.origin_seq);
                            } else {
                                s.city_holds(origin, event.origin_seq);
                            }
                        }
                    }
                })?;
                let stored = store_pulled(store, events)?;
                state.update(|s| s.pull_cursor = s.pull_cursor.max(next_cursor))?;
                Ok(stored)
            })
            .await?;
        report.pulled += stored as u64;
        self.machine
            .on_pull(
                PullPage {
                    next_cursor,
                    head,
                    events: count,
                    bytes,
                },
                now(),
            )
            .map_err(|v| StepError::Local(UplinkError::Hub(v.reason)))?;
        Ok(())
    }

    /// One step: Hello, one batch sent (while the window has room), the
    /// answer to the oldest batch in flight taken, or one page pulled; false
    /// once caught up both ways.
    async fn step(&mut self, report: &mut RoundReport) -> Result<bool, StepError> {
        if self.machine.needs_hello() {
            self.hello().await?;
            return Ok(true);
        }
        if let Some(plan) = self.machine.next_push(self.store.event_count()) {
            self.send_push(plan.after, plan.max_bytes).await?;
            return Ok(true);
        }
        if !self.in_flight.is_empty() {
            self.take_push(report).await?;
            return Ok(true);
        }
        let cursor = self.state.get().pull_cursor;
        if let Some(plan) = self.machine.next_pull(cursor, now()) {
            self.pull(plan, report).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// One round: Hello, forward until caught up, pull until caught up,
    /// retrying what the link breaks for the retry budget.
    ///
    /// # Errors
    /// The hub refused the relay, or the retry budget ran out, or the
    /// relay's store or state failed. What was acknowledged or stored stays.
    pub async fn round(&mut self) -> Result<RoundReport, UplinkError> {
        // A round dropped midway leaves its batches in flight behind.
        self.forget_pushes();
        self.machine.new_round();
        self.machine.clear_parked();
        let mut report = RoundReport::default();
        let retry_until = Instant::now().checked_add(self.retry_budget);
        loop {
            match self.step(&mut report).await {
                Ok(true) => {}
                Ok(false) => {
                    report.devices = self.devices_changed.take();
                    return Ok(report);
                }
                Err(StepError::Local(error)) => {
                    self.forget_pushes();
                    return Err(error);
                }
                Err(StepError::Failed { call, fault }) => {
                    self.forget_pushes();
                    let reason = fault.reason().to_string();
                    if matches!(call, Call::Push) && reason.contains(packed::UNKNOWN_DICTIONARY) {
                        // The other end no longer holds it: the batch goes
                        // again packed alone.
                        self.dictionary = None;
                    }
                    match self.machine.on_error(call, fault, now()) {
                        Action::RetryAt(at) | Action::ReconnectAt(at) => {
                            self.client = None;
                            let at = Instant::from_std(at);
                            if retry_until.is_some_and(|limit| at > limit) {
                                return Err(UplinkError::Hub(reason));
                            }
                            tracing::debug!(?call, %reason, "uplink call failed; retrying");
                            tokio::time::sleep_until(at).await;
                        }
                        Action::Park(parked) => {
                            return Err(UplinkError::Hub(parked.reason));
                        }
                        Action::Stop(reason) => return Err(UplinkError::Hub(reason)),
                    }
                }
            }
        }
    }
}

/// Notes in `state` an acknowledgement of `origin` through `durable_through`:
/// the city's own when `city` is absent (the hub answered), else what the
/// relay forwarded through holds, with `city` the hub's figure it hands on.
fn note_held(state: &mut RelayState, origin: Uuid, durable_through: u64, city: Option<u64>) {
    match city {
        None => state.city_holds(origin, durable_through),
        Some(city) => {
            state.upstream_holds(origin, durable_through);
            state.city_holds(origin, city);
        }
    }
}

/// Stores a page pulled from the hub; an origin whose seqs the relay cannot
/// follow (the hub keeps one in quarantine) is left out of it. Returns how
/// many events were new.
fn store_pulled(store: &HubStore, mut events: Vec<Event>) -> Result<usize, HubError> {
    let today = station_hub::projections::today_in_china();
    loop {
        if events.is_empty() {
            return Ok(0);
        }
        match store.push_from_city(events.clone(), today, chrono::Utc::now().timestamp_millis()) {
            Ok(outcome) => return Ok(outcome.stored),
            Err(HubError::Gap { origin, .. }) => {
                tracing::warn!(%origin, "pulled entries the relay cannot follow: left out");
                events.retain(|e| e.origin_id != origin.as_bytes());
            }
            Err(HubError::Conflict { origin, .. }) => {
                tracing::warn!(%origin, "pulled entries that conflict with the relay's: left out");
                events.retain(|e| e.origin_id != origin.as_bytes());
            }
            Err(error) => return Err(error),
        }
    }
}

fn packing_failed(error: &dyn std::fmt::Display) -> StepError {
    StepError::Local(UplinkError::Hub(format!("packing a batch failed: {error}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use station_agent::{Agent, InitOptions, OpenOptions};
    use station_hub::auth;
    use station_proto::chain;

    const STATION: &str = "540502001";

    /// A relay store holding one phone's push of `count` events, the most
    /// one push may carry, signed at its last.
    fn one_full_push(dir: &std::path::Path, count: u64) -> (HubStore, Uuid) {
        let phone = Agent::init(
            &dir.join("phone"),
            InitOptions {
                station_code: STATION.into(),
                worker_id: "zd-1".into(),
                hub_url: None,
                token: None,
            },
            OpenOptions::default(),
        )
        .unwrap();
        phone
            .record(station_proto::Body::ActivityHeld(
                station_proto::v1::ActivityHeld {
                    held_on: "2026-11-20".into(),
                    community_code: format!("{STATION}001"),
                    kind: station_proto::v1::ActivityKind::PartyPublicWelfare as i32,
                    title: "党建+公益".into(),
                    participants: 3,
                    person_times: 3,
                    volunteers: 0,
                    volunteer_minutes: 0,
                },
            ))
            .unwrap();
        let template = phone.own_events(0, 1).unwrap().remove(0);
        let origin = Uuid::now_v7();
        let secret = [7u8; 32];
        let mut chain = chain::Chain::start(origin);
        let events: Vec<Event> = (1..=count)
            .map(|seq| {
                let mut event = template.clone();
                event.origin_id = origin.as_bytes().to_vec();
                event.origin_seq = seq;
                event.event_id = Uuid::now_v7().as_bytes().to_vec();
                chain.push(&event).unwrap();
                event
            })
            .collect();
        let head = SignedHead {
            origin_id: origin.as_bytes().to_vec(),
            last_seq: count,
            signature: chain::sign_head(&secret, origin, count, &chain.head()).to_vec(),
            public_key: Vec::new(),
        };
        let store = HubStore::open(&dir.join("relay"), 16 * 1024 * 1024).unwrap();
        let token = auth::enroll_device(&store, STATION, "zd-1").unwrap();
        store
            .bind_origin(origin, &token.token_id, Some(&chain::public_key(&secret)))
            .unwrap();
        let today = station_hub::projections::today_in_china();
        let now = chrono::Utc::now().timestamp_millis();
        let outcome = store.push_via(events, &[head], None, today, now).unwrap();
        assert_eq!(outcome.stored as u64, count);
        (store, origin)
    }

    /// A phone's log pushed to the relay in runs of `per_run` events, each
    /// signed at its end, continuing `chain`.
    fn phone_runs(
        store: &HubStore,
        template: &Event,
        chain: &mut chain::Chain,
        secret: &[u8; 32],
        runs: usize,
        per_run: u64,
    ) {
        let origin = chain.origin();
        let today = station_hub::projections::today_in_china();
        for _ in 0..runs {
            let events: Vec<Event> = (0..per_run)
                .map(|_| {
                    let mut event = template.clone();
                    event.origin_id = origin.as_bytes().to_vec();
                    event.origin_seq = chain.seq() + 1;
                    event.event_id = Uuid::now_v7().as_bytes().to_vec();
                    chain.push(&event).unwrap();
                    event
                })
                .collect();
            let head = SignedHead {
                origin_id: origin.as_bytes().to_vec(),
                last_seq: chain.seq(),
                signature: chain::sign_head(secret, origin, chain.seq(), &chain.head()).to_vec(),
                public_key: Vec::new(),
            };
            let now = chrono::Utc::now().timestamp_millis();
            let outcome = store.push_via(events, &[head], None, today, now).unwrap();
            assert_eq!(outcome.stored as u64, per_run);
        }
    }

    /// Serves a hub over `store` on `addr` until the sender is dropped or
    /// sent to; a hub served again starts with no dictionaries.
    async fn serve_hub(
        store: &Arc<HubStore>,
        listener: tokio::net::TcpListener,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let hub = station_hub::Hub::with_store(
            Arc::clone(store),
            station_hub::server::ServerOptions::default(),
        )
        .await
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            hub.serve(station_hub::Listeners::grpc(listener), async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        (stop, served)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_go_packed_against_the_last_and_alone_once_the_hub_forgot() {
        let dir = tempfile::tempdir().unwrap();
        let (relay_store, origin) = one_full_push(dir.path(), 1);
        let template = relay_store.scan_after(0).next().unwrap().unwrap().event;
        let secret = [7u8; 32];
        let mut chain = chain::Chain::start(origin);
        chain.push(&template).unwrap();
        phone_runs(&relay_store, &template, &mut chain, &secret, 6, 40);
        let relay_store = Arc::new(relay_store);

        let hub_store =
            Arc::new(HubStore::open(&dir.path().join("hub"), 16 * 1024 * 1024).unwrap());
        let token = auth::enroll_relay(&hub_store, STATION, "relay-1")
            .unwrap()
            .bearer;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, served) = serve_hub(&hub_store, listener).await;

        let state = Arc::new(StateFile::open(&dir.path().join("relay"), STATION).unwrap());
        let mut options = SyncOptions::new(format!("http://{addr}"), Some(token));
        // About one phone run per batch.
        options.batch_bytes = 4 * 1024;
        let mut uplink = Uplink::new(Arc::clone(&relay_store), state, &options).unwrap();
        let first = uplink.round().await.unwrap();
        assert_eq!(first.forwarded, 241);
        // The first two go alone (the second is sent before the first is
        // acknowledged); each later one against the last acknowledged.
        assert!(
            first.packed_against_previous >= 3,
            "batches after the first acknowledged packed against it: {first:?}"
        );
        assert_eq!(hub_store.event_count(), 241);

        // The hub restarts: it holds no dictionary, and the relay's next
        // batch, packed against the last, is refused and goes alone.
        stop.send(()).unwrap();
        served.await.unwrap();
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let (stop, served) = serve_hub(&hub_store, listener).await;
        phone_runs(&relay_store, &template, &mut chain, &secret, 3, 40);
        let second = uplink.round().await.unwrap();
        assert_eq!(second.forwarded, 120);
        assert!(
            second.packed_against_previous >= 1,
            "after the refusal, a batch packed against one the restarted hub acknowledged: {second:?}"
        );
        assert_eq!(hub_store.event_count(), 361);
        let stored: Vec<u64> = hub_store
            .scan_after(0)
            .map(|logged| logged.unwrap().event.origin_seq)
            .collect();
        assert_eq!(
            stored,
            (1..=361).collect::<Vec<u64>>(),
            "each once, in order"
        );
        stop.send(()).unwrap();
        served.await.unwrap();
    }

    #[test]
    fn a_phone_push_of_the_most_a_push_may_carry_is_forwarded_whole() {
        let dir = tempfile::tempdir().unwrap();
        let count = MAX_PUSH_EVENTS as u64;
        let (store, origin) = one_full_push(dir.path(), count);
        let batch = read_batch(&store, &BTreeMap::new(), 0, 64 * 1024).unwrap();
        assert_eq!(batch.events.len() as u64, count, "one run, whole");
        assert_eq!(batch.through, count);
        assert_eq!(batch.heads.len(), 1);
        assert_eq!(batch.heads[0].last_seq, count);
        assert_eq!(batch.heads[0].origin_id, origin.as_bytes());

        // What the other end holds is left out.
        let held = BTreeMap::from([(origin, count)]);
        let batch = read_batch(&store, &held, 0, 64 * 1024).unwrap();
        assert!(batch.events.is_empty());
        assert_eq!(batch.through, count);
    }
}
