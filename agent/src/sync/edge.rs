//! The tonic edge of sync: connections, calls, timers and the store, driven by
//! the [`SyncMachine`]. [`sync_once`] runs one round; the daemon
//! ([`super::run`]) drives the same [`Edge`] between rounds.
//!
//! Invariants:
//! - every call carries a deadline from the machine, enforced both as the
//!   gRPC timeout the hub sees and as a local timer over the whole call
//!   (headers and body), so a stalled link ends the call;
//! - only events durable on the device are pushed; the hub's answers are
//!   recorded only after the machine accepted them; pulled events and their
//!   cursor are stored in one atomic write ([`Agent::apply_pulled`]);
//! - every await point is a safe place to be cancelled (by a shutdown or a
//!   dropped link): each store write is atomic and everything sent is
//!   idempotent on the hub;
//! - whether a failure is worth retrying is decided by [`fault`], from
//!   [`super::is_retriable`] alone for the hub's answers;
//! - pushes in flight (up to the machine's window) run as tasks of their own
//!   so that the next batch travels while the last is acknowledged; their
//!   answers are taken in the order they were sent, and any failure aborts
//!   every one still in flight before the machine decides what follows,
//!   except a failed pull, which first takes the answers of the pushes
//!   beside it;
//! - pulls run as tasks of their own too, beside the pushes (the downlink
//!   pulls while the uplink pushes): the next page is asked for as soon as
//!   the last one's headers say where it ends, pages are stored in the order
//!   they were asked for, and a round whose pushes were acknowledged after
//!   its last pull was sent pulls once more, so its cursor passes them,
//!   when it pulled the station's stream; a round that pushed the
//!   acceptance of a transfer ends with a pull that asks for the transfers
//!   feed after the acceptance was acknowledged, since the feed brings the
//!   file's history;
//! - batches are packed ([`compress::pack`]) for a hub that takes them,
//!   against the dictionary the last acknowledged one left; those sized by
//!   the link's airtime (below the cap) at [`compress::PUSH_LEVEL`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use station_proto::ids::Uuid;
use station_proto::v1::sync_client::SyncClient;
use station_proto::v1::{HelloRequest, PullRequest, PullResponse, PushRequest, PushResponse};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::classify::fault;
use super::compress::{self, Compressed};
use super::machine::{
    Action, Batch, Call, Fault, HelloAnswer, Parked, PullPage, PullPlan, PullProgress, SyncMachine,
};
use super::options::{SyncError, SyncOptions, SyncReport, Wiped};
use crate::engine::{Agent, AgentError};
use crate::store::{ParkedBatch, StoreError};

/// Times a wiped device tries to tell the hub, one, then two seconds apart.
const WIPE_CONFIRM_ATTEMPTS: u32 = 3;

fn call_name(call: Call) -> &'static str {
    match call {
        Call::Connect => "Connect",
        Call::Hello => "Hello",
        Call::Push => "Push",
        Call::Pull => "Pull",
    }
}

/// The machine's fault and the error to report for a failed call.
fn status_error(call: Call, status: &tonic::Status) -> (Fault, SyncError) {
    let fault = fault(status);
    let error = match &fault {
        Fault::Link(_) => SyncError::Link {
            call: call_name(call),
            message: status.message().to_string(),
        },
        Fault::Busy(_) | Fault::Refused(_) | Fault::Denied(_) => SyncError::Rpc {
            call: call_name(call),
            code: status.code(),
            message: status.message().to_string(),
        },
    };
    (fault, error)
}

/// Builds the endpoint: address, TLS, HTTP/2 keepalive only while a call is
/// open (an idle phone sends nothing), no connection yet.
///
/// # Errors
/// [`SyncError::BadAddress`] for an address or TLS settings tonic refuses.
pub fn endpoint(options: &SyncOptions) -> Result<Endpoint, SyncError> {
    let mut url = options.hub_url.trim().to_string();
    if options.tls_ca_pem.is_some()
        && let Some(rest) = url.strip_prefix("http://")
    {
        url = format!("https://{rest}");
    }
    let endpoint = Endpoint::from_shared(url)
        .map_err(|e| SyncError::BadAddress(format!("{}: {e}", options.hub_url)))?
        .connect_timeout(options.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(options.keepalive)
        .keep_alive_timeout(options.keepalive)
        .keep_alive_while_idle(false);
    if endpoint.uri().scheme_str() != Some("https") {
        return Ok(endpoint);
    }
    let mut tls = ClientTlsConfig::new();
    tls = match &options.tls_ca_pem {
        Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
        None => tls.with_enabled_roots(),
    };
    if let Some(domain) = &options.tls_domain {
        tls = tls.domain_name(domain.clone());
    }
    endpoint
        .tls_config(tls)
        .map_err(|e| SyncError::BadAddress(format!("TLS settings: {e}")))
}

fn sync_client(channel: Channel) -> SyncClient<Channel> {
    SyncClient::new(channel)
        .send_compressed(CompressionEncoding::Zstd)
        .accept_compressed(CompressionEncoding::Zstd)
        .accept_compressed(CompressionEncoding::Gzip)
}

/// A `Pull` on `channel`, made as a server-streaming call of one message
/// (the same bytes on the wire as the unary call) so that the response's
/// headers are seen before its page: the page's end, when the hub announces
/// it there, goes to `announce` at once; a hub that does not say drops it
/// unsent.
async fn pull_call(
    channel: Channel,
    mut request: tonic::Request<PullRequest>,
    announce: oneshot::Sender<u64>,
) -> Result<tonic::Response<PullResponse>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel)
        .send_compressed(CompressionEncoding::Zstd)
        .accept_compressed(CompressionEncoding::Zstd)
        .accept_compressed(CompressionEncoding::Gzip);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("the connection is not ready: {e}")))?;
    request
        .extensions_mut()
        .insert(tonic::GrpcMethod::new("station.v1.Sync", "Pull"));
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/station.v1.Sync/Pull");
    let codec = tonic_prost::ProstCodec::<PullRequest, PullResponse>::default();
    let response = grpc.server_streaming(request, path, codec).await?;
    let (metadata, mut pages, extensions) = response.into_parts();
    if let Some(cursor) = metadata
        .get(station_proto::PULL_NEXT_CURSOR_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok())
    {
        let _ = announce.send(cursor);
    } else {
        drop(announce);
    }
    let page = pages
        .message()
        .await?
        .ok_or_else(|| tonic::Status::internal("the hub ended the pull without a page"))?;
    Ok(tonic::Response::from_parts(metadata, page, extensions))
}

/// Connects to the hub and returns a client that sends zstd and accepts zstd
/// and gzip.
///
/// # Errors
/// [`SyncError::BadAddress`] or [`SyncError::Connect`].
pub async fn connect(options: &SyncOptions) -> Result<SyncClient<Channel>, SyncError> {
    let channel = endpoint(options)?
        .connect()
        .await
        .map_err(|e| SyncError::Connect(error_chain(&e)))?;
    Ok(sync_client(channel))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

async fn blocking<T, F>(agent: &Arc<Agent>, f: F) -> Result<T, SyncError>
where
    T: Send + 'static,
    F: FnOnce(&Agent) -> Result<T, AgentError> + Send + 'static,
{
    let agent = Arc::clone(agent);
    tokio::task::spawn_blocking(move || f(&agent))
        .await
        .map_err(|e| SyncError::Local(e.to_string()))?
        .map_err(SyncError::from)
}

/// The machine's clock: tokio's, so that paused test time drives it.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Why one step of a round did not complete.
enum StepError {
    /// The store failed: the round ends.
    Local(SyncError),
    /// A call failed; the machine decides what follows.
    Failed {
        call: Call,
        fault: Fault,
        error: SyncError,
    },
    /// An answer broke the protocol; the machine already decided.
    Violated { action: Action, error: SyncError },
}

impl From<SyncError> for StepError {
    fn from(error: SyncError) -> Self {
        StepError::Local(error)
    }
}

/// What a step achieved.
enum Step {
    /// A call succeeded; there may be more to do.
    Progress,
    /// Pushed and pulled everything there was.
    CaughtUp,
}

/// What follows a failure, once the edge has acted on the machine's word.
enum Next {
    /// Go on (after the wait the machine asked for).
    Continue,
    /// End the round with this error.
    Fail(SyncError),
}

/// A call running as a task of its own; dropping it aborts the task, whose
/// answer is then not wanted.
struct Running<T>(tokio::task::JoinHandle<Result<T, StepError>>);

impl<T> Drop for Running<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T: Send + 'static> Running<T> {
    fn spawn(call: impl Future<Output = Result<T, StepError>> + Send + 'static) -> Self {
        Self(tokio::spawn(call))
    }

    /// The call's answer; a task that ended without one is a lost call.
    async fn answer(&mut self, call: Call) -> Result<T, StepError> {
        match (&mut self.0).await {
            Ok(answer) => answer,
            Err(join) => {
                let message = format!("the call was lost: {join}");
                Err(StepError::Failed {
                    call,
                    fault: Fault::Link(message.clone()),
                    error: SyncError::Link {
                        call: call_name(call),
                        message,
                    },
                })
            }
        }
    }
}

/// The first answer of a push and a pull in flight together.
enum Answered {
    /// The oldest push's.
    Push(Result<Pushed, StepError>),
    /// The oldest pull's.
    Pull(Result<PullResponse, StepError>),
}

/// A pull sent and not yet taken.
struct PendingPull {
    /// What it asked for.
    plan: PullPlan,
    /// The directory cursor it asked from; `None` when it did not ask.
    directory_after: Option<u64>,
    /// Whether it asked for the directory and the transfers feed: no other
    /// pull may ask until its page is stored, which moves their cursors.
    feeds: bool,
    /// Where its page ends, as soon as the hub's headers say (dropped
    /// without a word by a hub that does not say); taken once read.
    announced: Option<oneshot::Receiver<u64>>,
    /// The call.
    call: Running<PullResponse>,
}

/// The clients of one connection.
#[derive(Clone)]
struct Clients {
    /// The connection itself, for calls made without the generated client.
    channel: Channel,
    /// Hello and Pull: small requests, compressed by tonic.
    calls: SyncClient<Channel>,
    /// Push of batches sized by airtime: compressed at
    /// [`compress::PUSH_LEVEL`], since they are what fills the uplink.
    pushes: SyncClient<Compressed>,
    /// Packed pushes: compressed already, sent as they are.
    packed: SyncClient<Channel>,
}

/// A push's answer, with the dictionary it leaves for the next packed push
/// once acknowledged (none for a push that was not packed).
type Pushed = (PushResponse, Option<Arc<[u8]>>);

/// `message` as a request under `deadline`, with the token when there is one.
fn with_authorization<T>(
    message: T,
    deadline: Duration,
    authorization: Option<&MetadataValue<tonic::metadata::Ascii>>,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
    }
    request
}

/// One device's link to the hub: the machine, the connection, the store.
pub(super) struct Edge {
    /// The device: its log is read for pushes and written with answers.
    agent: Arc<Agent>,
    /// Where and how to connect; a new connection is opened from it on demand.
    endpoint: Endpoint,
    /// Every decision: sizes, deadlines, retries, parking.
    machine: SyncMachine,
    /// The open connection; `None` until needed and after the machine said
    /// reconnect.
    client: Option<Clients>,
    /// Pushes sent and not yet answered, in the machine's order.
    pushes: VecDeque<Running<Pushed>>,
    /// The hub said at the last Hello that it takes packed pushes.
    hub_unpacks: bool,
    /// The dictionary of the next packed push: the end of the last packed
    /// push acknowledged, which the hub keeps for a while.
    dictionary: Option<Arc<[u8]>>,
    /// Pulls sent and not yet taken, in the machine's order: the next page
    /// is asked for as soon as the last one's headers say where it ends.
    pulls: VecDeque<PendingPull>,
    /// A push was acknowledged after the last pull was sent: a round that
    /// pulled the station's stream ends with one more pull, so that its
    /// cursor passes what it pushed, as when pulls followed the pushes.
    pushed_since_pull: bool,
    /// The round found the station's stream ahead of the device's cursor
    /// and pulled it.
    stream_pulled: bool,
    /// The round pushed the acceptance of a transfer: the hub then adds the
    /// file's history to the station's stream, which the round must pull
    /// even when the stream was caught up before.
    pushed_takeover: bool,
    /// A push was acknowledged after the round sent the acceptance of a
    /// transfer, and no pull has asked for the transfers feed since: the
    /// file's history comes with the feed, so the round owes one such pull.
    feed_owed: bool,
    /// This device's origin, to find its ack among a push's acks.
    origin: Uuid,
    /// The station whose stream is pulled.
    station: String,
    /// The `authorization` metadata, checked once when the edge is built.
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
    /// Hellos answered in the current round: after the first, a higher
    /// `durable_through` counts as pushed (its ack was lost).
    round_hellos: u32,
    /// The head this device gave in its last Hello.
    announced_head: u64,
    /// Set once a Hello said the hub ordered this device wiped: the log's
    /// head then, the last entry to push before the keys go.
    wipe_head: Option<u64>,
    /// Set once the device is wiped: nothing more is done.
    wiped: Option<Wiped>,
    /// The last page of the district directory left more after it: the
    /// round pulls on once the station stream is caught up.
    directory_behind: bool,
    /// The last page of the transfers feed left more after it.
    transfers_behind: bool,
    /// Connections opened or tried since the edge was made.
    connects: u64,
}

impl Edge {
    /// Prepares the edge from the options and the state persisted by earlier
    /// runs. A batch parked by another agent version is released: the new
    /// version may send it differently.
    pub(super) async fn new(agent: Arc<Agent>, options: &SyncOptions) -> Result<Self, SyncError> {
        if crate::seal::Vault::wiped_at(agent.log().dir())
            .map_err(|e| SyncError::Agent(AgentError::Store(e.into())))?
            .is_some()
        {
            return Err(SyncError::Wiped);
        }
        let endpoint = endpoint(options)?;
        let authorization = options
            .token
            .as_ref()
            .map(|token| {
                MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| SyncError::BadToken)
            })
            .transpose()?;
        let identity = agent.identity().clone();
        let state = blocking(&agent, |a| {
            let mut state = a.log().sync_state()?;
            if let Some(parked) = &state.parked
                && parked.agent_version != env!("CARGO_PKG_VERSION")
            {
                tracing::info!(
                    from_seq = parked.from_seq,
                    parked_by = %parked.agent_version,
                    "agent upgraded: pushing the parked batch again"
                );
                a.log().set_parked(None)?;
                state.parked = None;
            }
            Ok(state)
        })
        .await?;
        let seed = options.jitter_seed.unwrap_or_else(|| {
            let origin = identity.origin_id.as_u128();
            let clock = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            // Truncation keeps the low, fast-changing bits of both.
            ((origin ^ clock) as u64) ^ ((origin >> 64) as u64)
        });
        let mut machine =
            SyncMachine::new(options.machine_config(), seed).with_parked(state.parked.map(|p| {
                Parked {
                    from_seq: p.from_seq,
                    through_seq: p.through_seq,
                    reason: p.reason,
                }
            }));
        if let Some(rate) = state.uplink_bytes_per_sec {
            machine = machine.with_uplink(rate);
        }
        Ok(Self {
            agent,
            endpoint,
            machine,
            client: None,
            pushes: VecDeque::new(),
            hub_unpacks: false,
            dictionary: None,
            pulls: VecDeque::new(),
            pushed_since_pull: false,
            stream_pulled: false,
            pushed_takeover: false,
            feed_owed: false,
            origin: identity.origin_id,
            station: identity.station_code,
            authorization,
            round_hellos: 0,
            announced_head: 0,
            wipe_head: None,
            wiped: None,
            directory_behind: false,
            transfers_behind: false,
            connects: 0,
        })
    }

    fn request<T>(&self, message: T, deadline: Duration) -> tonic::Request<T> {
        with_authorization(message, deadline, self.authorization.as_ref())
    }

    async fn client(&mut self) -> Result<SyncClient<Channel>, StepError> {
        Ok(self.clients().await?.calls)
    }

    /// The open connection's clients, connecting first when there is none.
    async fn clients(&mut self) -> Result<Clients, StepError> {
        if let Some(clients) = &self.client {
            return Ok(clients.clone());
        }
        self.connects += 1;
        match self.endpoint.connect().await {
            Ok(channel) => {
                let clients = Clients {
                    channel: channel.clone(),
                    pushes: SyncClient::new(Compressed::new(channel.clone(), compress::PUSH_LEVEL))
                        .accept_compressed(CompressionEncoding::Zstd)
                        .accept_compressed(CompressionEncoding::Gzip),
                    packed: SyncClient::new(channel.clone())
                        .accept_compressed(CompressionEncoding::Zstd)
                        .accept_compressed(CompressionEncoding::Gzip),
                    calls: sync_client(channel),
                };
                self.client = Some(clients.clone());
                Ok(clients)
            }
            Err(e) => {
                let message = error_chain(&e);
                Err(StepError::Failed {
                    call: Call::Connect,
                    fault: Fault::Link(message.clone()),
                    error: SyncError::Connect(message),
                })
            }
        }
    }

    /// Runs `call` under `deadline`, mapping failures for the machine.
    async fn call<T, F>(call: Call, deadline: Duration, future: F) -> Result<T, StepError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(deadline, future).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => {
                let (fault, error) = status_error(call, &status);
                Err(StepError::Failed { call, fault, error })
            }
            Err(_) => {
                let message = format!("no answer within {deadline:?}");
                Err(StepError::Failed {
                    call,
                    fault: Fault::Link(message.clone()),
                    error: SyncError::Link {
                        call: call_name(call),
                        message,
                    },
                })
            }
        }
    }

    async fn hello(&mut self, report: &mut SyncReport) -> Result<(), StepError> {
        let mut client = self.client().await?;
        let head_seq = self.agent.log().head_seq();
        let public_key = blocking(&self.agent, |a| Ok(a.log().public_key()?)).await?;
        let deadline = self.machine.begin_hello(now());
        let request = self.request(
            HelloRequest {
                origin_id: self.origin.as_bytes().to_vec(),
                station_code: self.station.clone(),
                head_seq,
                device_clock_ms: self.agent.log().now_ms(),
                agent_version: env!("CARGO_PKG_VERSION").into(),
                public_key: public_key.to_vec(),
                wiped: false,
            },
            deadline,
        );
        let answer = Self::call(Call::Hello, deadline, client.hello(request)).await?;
        self.announced_head = head_seq;
        self.hub_unpacks = answer.packed_pushes;
        if answer.wipe && self.wipe_head.is_none() {
            tracing::warn!(
                "the hub ordered this device wiped: uploading its entries, then destroying its keys"
            );
            let wipe_head = blocking(&self.agent, |a| Ok(a.log().order_wipe()?)).await?;
            self.wipe_head = Some(wipe_head);
        }
        if !answer.log_id.is_empty() {
            let log_id = answer.log_id.clone();
            let change =
                blocking(&self.agent, move |a| Ok(a.log().follow_hub_log(&log_id)?)).await?;
            if let crate::HubLogChange::Replaced { moved } = change {
                tracing::warn!(
                    moved,
                    "the hub's log was replaced (restored from a backup?): \
                     pulling the station's stream again from the start"
                );
            }
        }
        if !answer.directory_key.is_empty() {
            let key = answer.directory_key.clone();
            let changed =
                blocking(&self.agent, move |a| Ok(a.log().set_directory_key(&key)?)).await?;
            if changed {
                tracing::info!("the hub gave a district directory key: pulling the directory");
            }
            self.directory_behind = true;
            // The city hub (the one that gives the key) keeps the transfers
            // feed too: asked for once a round, even when the station's
            // stream has nothing new.
            self.transfers_behind = true;
        }
        if let Some(policy) = &answer.review_policy {
            let policy = station_proto::review::ReviewPolicy::from_wire(policy);
            let changed = blocking(&self.agent, move |a| {
                Ok(a.log().set_review_policy(&policy)?)
            })
            .await?;
            if changed {
                tracing::info!(
                    tier_change = policy.tier_change,
                    case_plan = policy.case_plan,
                    closure = policy.closure,
                    "the hub's review policy changed"
                );
            }
        }
        let durable_through = answer.durable_through;
        tracing::debug!(
            durable_through,
            head_seq,
            station_head = answer.station_pull_head,
            "hello answered"
        );
        let parked = self.machine.on_hello(
            HelloAnswer {
                durable_through,
                station_pull_head: answer.station_pull_head,
            },
            head_seq,
            now(),
        );
        if self.round_hellos > 0 {
            report.pushed += durable_through.saturating_sub(report.durable_through);
        }
        self.round_hellos += 1;
        report.durable_through = durable_through;
        let city = answer.city_durable_through.unwrap_or(durable_through);
        report.city_durable_through = city;
        blocking(&self.agent, move |a| {
            Ok(a.log().set_acks(durable_through, city)?)
        })
        .await?;
        if let Some(parked) = parked {
            self.persist_parked(parked, report).await?;
        }
        Ok(())
    }

    async fn persist_parked(
        &mut self,
        parked: Parked,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        tracing::warn!(
            from_seq = parked.from_seq,
            through_seq = parked.through_seq,
            reason = %parked.reason,
            "push parked: the hub refused a batch for good"
        );
        let record = ParkedBatch {
            from_seq: parked.from_seq,
            through_seq: parked.through_seq,
            reason: parked.reason,
            parked_at_ms: self.agent.log().now_ms(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
        };
        let stored = record.clone();
        blocking(&self.agent, move |a| {
            Ok(a.log().set_parked(Some(&stored))?)
        })
        .await?;
        report.parked = Some(record);
        Ok(())
    }

    /// Sends batches until the machine's window is full, then takes the
    /// answer of the oldest; `false` when nothing was left to push.
    async fn push_step(&mut self, report: &mut SyncReport) -> Result<bool, StepError> {
        while let Some(plan) = self.machine.next_push(self.agent.log().durable_seq()) {
            self.send_batch(plan).await?;
        }
        let Some(call) = self.pushes.front_mut() else {
            return Ok(false);
        };
        let answer = call.answer(Call::Push).await;
        self.pushes.pop_front();
        self.take_ack(answer?, report).await?;
        Ok(true)
    }

    /// Reads, signs and sends the batch `plan` asks for, as a task of its own.
    async fn send_batch(&mut self, plan: super::machine::BatchPlan) -> Result<(), StepError> {
        let clients = self.clients().await?;
        // A batch sized below the cap is sized by the link's airtime, which
        // the higher level saves; on a fast link (the station's LAN) the
        // phone's time is worth more than the bytes.
        let harder = plan.max_bytes < self.machine.config().max_batch_bytes;
        let after = plan.after;
        let budget = plan.max_bytes;
        // Enough events to fill the budget with small ones; the hub takes
        // at most 5,000 per push.
        let limit = (budget / 32 + 1).min(4_000);
        let events = blocking(&self.agent, move |a| {
            let mut bytes = 0usize;
            let mut batch = Vec::new();
            for event in a.log().own_events(after, limit)? {
                let len = event.encoded_len();
                if !batch.is_empty() && bytes + len > budget {
                    break;
                }
                bytes += len;
                batch.push(event);
            }
            Ok(batch)
        })
        .await?;
        self.pushed_takeover |= events
            .iter()
            .any(|e| matches!(e.body, Some(station_proto::Body::CaseTransferAccepted(_))));
        let Some(through) = events.last().map(|e| e.origin_seq) else {
            return Err(StepError::Local(SyncError::Agent(AgentError::Store(
                StoreError::Corrupt(format!(
                    "own events after seq {after} are missing from the store"
                )),
            ))));
        };
        let head = blocking(&self.agent, move |a| Ok(a.log().signed_head(through)?)).await?;
        let message = PushRequest {
            events,
            heads: vec![head],
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
        tracing::debug!(after, through, bytes, ?deadline, "pushing");
        if self.hub_unpacks {
            // Packed against the last push acknowledged: the batch says
            // only what that one did not.
            let level = if harder { compress::PUSH_LEVEL } else { 3 };
            let dictionary = self.dictionary.clone();
            let authorization = self.authorization.clone();
            self.pushes.push_back(Running::spawn(async move {
                let packing = tokio::task::spawn_blocking(move || {
                    compress::pack(&message, dictionary.as_deref(), level)
                });
                let packing_failed = |e: String| {
                    StepError::Local(SyncError::Protocol(format!("packing a push failed: {e}")))
                };
                let (packed, left) = packing
                    .await
                    .map_err(|e| packing_failed(e.to_string()))?
                    .map_err(|e| packing_failed(e.to_string()))?;
                let request = with_authorization(packed, deadline, authorization.as_ref());
                let mut client = clients.packed;
                let answer = Self::call(Call::Push, deadline, client.push(request)).await?;
                Ok((answer, Some(left)))
            }));
            return Ok(());
        }
        let request = self.request(message, deadline);
        self.pushes.push_back(Running::spawn(async move {
            let answer = if harder {
                let mut client = clients.pushes;
                Self::call(Call::Push, deadline, client.push(request)).await
            } else {
                let mut client = clients.calls;
                Self::call(Call::Push, deadline, client.push(request)).await
            };
            Ok((answer?, None))
        }));
        Ok(())
    }

    /// Takes the hub's answer to the oldest push in flight.
    async fn take_ack(
        &mut self,
        (answer, dictionary): Pushed,
        report: &mut SyncReport,
    ) -> Result<(), StepError> {
        let origin = self.origin.as_bytes();
        let Some(ack) = answer.acks.iter().find(|a| a.origin_id == origin) else {
            let message = "the push was not acknowledged for this device".to_string();
            return Err(StepError::Failed {
                call: Call::Push,
                fault: Fault::Busy(message.clone()),
                error: SyncError::Protocol(message),
            });
        };
        let acked = self
            .machine
            .on_push_ack(ack.durable_through, now())
            .map_err(|v| StepError::Violated {
                action: v.action,
                error: SyncError::Protocol(v.reason),
            })?;
        tracing::debug!(
            durable_through = acked.durable_through,
            quarantined = answer.quarantined,
            "batch acknowledged"
        );
        if dictionary.is_some() {
            self.dictionary = dictionary;
        }
        report.pushed += acked.newly_acked;
        report.batches += 1;
        self.pushed_since_pull = true;
        self.feed_owed |= self.pushed_takeover;
        report.durable_through = acked.durable_through;
        let durable_through = acked.durable_through;
        let city = ack.city_durable_through.unwrap_or(durable_through);
        report.city_durable_through = city;
        blocking(&self.agent, move |a| {
            Ok(a.log().set_acks(durable_through, city)?)
        })
        .await?;
        Ok(())
    }

    /// Sends the pull `plan` asks for, as a task of its own, after those in
    /// flight. With `directory`, the pull also asks for the district
    /// directory after the device's cursor; a pull sent before the last page
    /// is stored does not, since that page may still move the cursor.
    async fn send_pull(&mut self, plan: PullPlan, directory: bool) -> Result<(), StepError> {
        let channel = self.clients().await?.channel;
        let (directory_epoch, directory_after, transfers_after) = blocking(&self.agent, move |a| {
            let log = a.log();
            let (epoch, after) = match directory && log.keeps_directory()? {
                true => {
                    let (epoch, cursor) = log.directory_cursor()?;
                    (epoch, Some(cursor))
                }
                false => (Vec::new(), None),
            };
            // The transfers feed, asked for with the directory: a pull
            // sent before the last page is stored does not ask.
            let transfers = directory.then(|| log.transfer_cursor()).transpose()?;
            Ok((epoch, after, transfers))
        })
        .await?;
        let request = self.request(
            PullRequest {
                station_code: self.station.clone(),
                after: plan.after,
                max_events: plan.max_events,
                max_bytes: plan.max_bytes,
                wait_ms: u32::try_from(plan.wait.as_millis()).unwrap_or(u32::MAX),
                directory_after,
                directory_epoch,
                transfers_after,
            },
            plan.deadline,
        );
        let (announce, announced) = oneshot::channel();
        let call = Running::spawn(async move {
            Self::call(
                Call::Pull,
                plan.deadline,
                pull_call(channel, request, announce),
            )
            .await
        });
        self.pushed_since_pull = false;
        if directory {
            self.feed_owed = false;
        }
        self.pulls.push_back(PendingPull {
            plan,
            directory_after,
            feeds: directory,
            announced: Some(announced),
            call,
        });
        Ok(())
    }

    /// Pulls one page as `plan` says and stores it.
    async fn pull(
        &mut self,
        plan: PullPlan,
        report: &mut SyncReport,
    ) -> Result<PullProgress, StepError> {
        self.send_pull(plan, true).await?;
        self.take_pull(report).await
    }

    /// Takes the oldest pull in flight: as soon as its headers say where its
    /// page ends, asks for the next page (the machine permitting), so that
    /// it is on its way while this one comes down; then stores the page.
    async fn take_pull(&mut self, report: &mut SyncReport) -> Result<PullProgress, StepError> {
        let Some(front) = self.pulls.front_mut() else {
            return Ok(PullProgress::CaughtUp);
        };
        let plan = front.plan;
        if let Some(announced) = front.announced.take()
            && let Ok(next_cursor) = announced.await
        {
            self.machine
                .on_pull_announced(next_cursor, now())
                .map_err(|v| StepError::Violated {
                    action: v.action,
                    error: SyncError::Protocol(v.reason),
                })?;
            if plan.wait.is_zero()
                && let Some(next) = self.machine.next_pull(next_cursor, now())
            {
                // The directory and the transfers feed ride along, unless
                // the page still coming down asked for them.
                let feeds = (self.directory_behind || self.transfers_behind)
                    && !self.pulls.iter().any(|p| p.feeds);
                self.send_pull(next, feeds).await?;
            }
        }
        let Some(mut pull) = self.pulls.pop_front() else {
            return Ok(PullProgress::CaughtUp);
        };
        let page = pull.call.answer(Call::Pull).await?;
        self.take_page(pull.plan, page, pull.directory_after, report)
            .await
    }

    /// Checks a pulled page with the machine, asks for the next one if the
    /// hub has more, and stores the page with its cursor.
    async fn take_page(
        &mut self,
        plan: PullPlan,
        mut page: PullResponse,
        directory_after: Option<u64>,
        report: &mut SyncReport,
    ) -> Result<PullProgress, StepError> {
        let bytes = page.encoded_len();
        let directory = page.directory.take();
        let transfers = page.transfers.take();
        let next_cursor = page.next_cursor;
        let events: Vec<_> = page
            .events
            .into_iter()
            .filter_map(|p| p.event.map(|e| (p.hub_seq, e)))
            .collect();
        let progress = self
            .machine
            .on_pull(
                PullPage {
                    next_cursor,
                    head: page.head,
                    events: events.len(),
                    bytes,
                },
                now(),
            )
            .map_err(|v| StepError::Violated {
                action: v.action,
                error: SyncError::Protocol(v.reason),
            })?;
        // A hub that does not announce where its pages end: the next page
        // is asked for while this one is stored.
        if progress == PullProgress::More
            && plan.wait.is_zero()
            && self.pulls.is_empty()
            && let Some(next) = self.machine.next_pull(next_cursor, now())
        {
            self.send_pull(next, false).await?;
        }
        if !events.is_empty() || next_cursor != plan.after {
            let applied =
                blocking(&self.agent, move |a| a.apply_pulled(events, next_cursor)).await?;
            report.pulled += applied.stored as u64;
            tracing::debug!(
                stored = applied.stored,
                cursor = next_cursor,
                head = page.head,
                "pulled"
            );
        }
        report.pull_cursor = next_cursor;
        if directory_after.is_some() {
            self.directory_behind = false;
            self.transfers_behind = false;
        }
        if let Some(transfers) = transfers {
            let behind = transfers.next_cursor < transfers.head;
            let next_cursor = transfers.next_cursor;
            let applied = blocking(&self.agent, move |a| {
                Ok(a.log().apply_transferred(transfers.events, next_cursor)?)
            })
            .await?;
            report.transfers_pulled += applied.stored as u64;
            self.transfers_behind = behind;
            tracing::debug!(
                stored = applied.stored,
                cursor = applied.cursor,
                "transfers feed pulled"
            );
        }
        if let Some(directory) = directory {
            let applied = blocking(&self.agent, move |a| {
                Ok(a.log().apply_directory(&directory)?)
            })
            .await?;
            report.directory_lines += applied.lines as u64;
            report.directory_cursor = applied.cursor;
            self.directory_behind =
                !applied.caught_up && (applied.reset || Some(applied.cursor) != directory_after);
            tracing::debug!(
                lines = applied.lines,
                cursor = applied.cursor,
                reset = applied.reset,
                "district directory pulled"
            );
        }
        Ok(progress)
    }

    /// The last steps of a wipe the hub ordered: the backlog is pushed (or
    /// parked, refused for good), so destroy the store's keys, then tell the
    /// hub with the token this edge holds in memory. The confirmation is
    /// tried a few times; the device stays wiped whether or not it arrives.
    async fn wipe(&mut self, report: &mut SyncReport) -> Result<(), StepError> {
        let wipe_head = self.wipe_head.unwrap_or(self.announced_head);
        let durable_through = self.machine.durable_through().unwrap_or(0);
        let public_key = blocking(&self.agent, |a| Ok(a.log().public_key()?)).await?;
        let at_ms = self.agent.log().now_ms();
        blocking(&self.agent, move |a| Ok(a.log().wipe(at_ms)?)).await?;
        let not_uploaded = wipe_head.saturating_sub(durable_through);
        tracing::warn!(
            not_uploaded,
            "device wiped: its data key and signing key are destroyed"
        );
        let mut wiped = Wiped {
            at_ms,
            not_uploaded,
            confirmed: false,
        };
        for attempt in 0..WIPE_CONFIRM_ATTEMPTS {
            if attempt > 0 {
                self.client = None;
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
            let Ok(mut client) = self.client().await else {
                continue;
            };
            let deadline = self.machine.begin_hello(now());
            let request = self.request(
                HelloRequest {
                    origin_id: self.origin.as_bytes().to_vec(),
                    station_code: self.station.clone(),
                    head_seq: wipe_head,
                    device_clock_ms: self.agent.log().now_ms(),
                    agent_version: env!("CARGO_PKG_VERSION").into(),
                    public_key: public_key.to_vec(),
                    wiped: true,
                },
                deadline,
            );
            match Self::call(Call::Hello, deadline, client.hello(request)).await {
                Ok(_) => {
                    wiped.confirmed = true;
                    break;
                }
                Err(StepError::Failed { error, .. } | StepError::Violated { error, .. })
                | Err(StepError::Local(error)) => {
                    tracing::warn!(%error, "the hub did not take the wipe's confirmation");
                }
            }
        }
        self.wiped = Some(wiped);
        report.wiped = Some(wiped);
        Ok(())
    }

    /// One step of a round: connect, Hello, one push or one pull.
    async fn step(&mut self, report: &mut SyncReport) -> Result<Step, StepError> {
        if self.wiped.is_some() {
            return Err(StepError::Local(SyncError::Wiped));
        }
        if self.machine.needs_hello() {
            self.hello(report).await?;
            return Ok(Step::Progress);
        }
        if let Some(wipe_head) = self.wipe_head {
            // Entries made between the Hello and the order come under a
            // new Hello, so that the hub takes them as backlog.
            if wipe_head > self.announced_head {
                self.hello(report).await?;
                return Ok(Step::Progress);
            }
            if self.push_step(report).await? {
                return Ok(Step::Progress);
            }
            self.wipe(report).await?;
            return Ok(Step::CaughtUp);
        }
        while let Some(plan) = self.machine.next_push(self.agent.log().durable_seq()) {
            self.send_batch(plan).await?;
        }
        // The downlink pulls while the uplink pushes: a round's pulls do not
        // wait for its pushes to be acknowledged.
        if self.pulls.is_empty() {
            let cursor = blocking(&self.agent, |a| Ok(a.log().pull_cursor()?)).await?;
            let catch_up = self.machine.next_pull(cursor, now());
            self.stream_pulled |= catch_up.is_some();
            let plan = catch_up.or_else(|| {
                // The station stream is caught up, the directory not yet (or
                // not asked for since the Hello): one more pull, without
                // waiting.
                (self.directory_behind || self.transfers_behind)
                    .then(|| self.machine.pull_now(cursor, now()))
                    .flatten()
            });
            if let Some(plan) = plan {
                self.send_pull(plan, true).await?;
            }
        }
        let first = match (self.pushes.front_mut(), self.pulls.front_mut()) {
            (None, None) => {
                if !((self.pushed_since_pull && self.stream_pulled) || self.feed_owed) {
                    return Ok(Step::CaughtUp);
                }
                // The stream this round pulls has grown by what was pushed
                // since the last pull was sent: one more pull passes the
                // cursor over it. After an accepted transfer, it asks for
                // the feeds too (nothing is in flight), which bring the
                // file's history.
                let cursor = blocking(&self.agent, |a| Ok(a.log().pull_cursor()?)).await?;
                match self.machine.pull_now(cursor, now()) {
                    Some(plan) => self.send_pull(plan, true).await?,
                    None => return Ok(Step::CaughtUp),
                }
                return Ok(Step::Progress);
            }
            (Some(_), None) => {
                self.push_step(report).await?;
                return Ok(Step::Progress);
            }
            (None, Some(_)) => {
                self.take_pull(report).await?;
                return Ok(Step::Progress);
            }
            // Each call's answer is kept by its task until taken, so waiting
            // for the one is safe to give up for the other.
            (Some(push), Some(pull)) => tokio::select! {
                answer = push.answer(Call::Push) => Answered::Push(answer),
                answer = pull.call.answer(Call::Pull) => Answered::Pull(answer),
            },
        };
        match first {
            Answered::Push(answer) => {
                self.pushes.pop_front();
                self.take_ack(answer?, report).await?;
            }
            Answered::Pull(answer) => {
                let Some(pull) = self.pulls.pop_front() else {
                    return Ok(Step::Progress);
                };
                self.take_page(pull.plan, answer?, pull.directory_after, report)
                    .await?;
            }
        }
        Ok(Step::Progress)
    }

    /// Takes the answers of the pushes still in flight, oldest first, until
    /// one fails: a failed pull does not take with it the pushes sent beside
    /// it, which the hub may already hold. Without this, a hub that fails
    /// every pull (a damaged station stream) would also lose every push
    /// that had not been answered before the pull failed.
    async fn drain_pushes(&mut self, report: &mut SyncReport) {
        while let Some(mut push) = self.pushes.pop_front() {
            let taken = match push.answer(Call::Push).await {
                Ok(answer) => self.take_ack(answer, report).await,
                Err(error) => Err(error),
            };
            if let Err(
                StepError::Local(error)
                | StepError::Failed { error, .. }
                | StepError::Violated { error, .. },
            ) = taken
            {
                tracing::debug!(%error, "a push beside the failed pull failed too");
                break;
            }
        }
    }

    /// Acts on a failed step as the machine says. Waits are cut short by
    /// nothing: the caller races them against shutdown.
    async fn recover(
        &mut self,
        failure: StepError,
        retry_until: Option<Instant>,
        report: &mut SyncReport,
    ) -> Next {
        self.pulls.clear();
        if matches!(
            failure,
            StepError::Failed {
                call: Call::Pull,
                ..
            }
        ) {
            self.drain_pushes(report).await;
        }
        self.pushes.clear();
        let (action, error) = match failure {
            StepError::Local(error) => return Next::Fail(error),
            StepError::Failed { call, fault, error } => {
                if matches!(call, Call::Push)
                    && fault
                        .reason()
                        .contains(station_proto::packed::UNKNOWN_DICTIONARY)
                {
                    // The hub no longer holds it: the batch goes again
                    // packed alone, and leaves a dictionary it holds.
                    self.dictionary = None;
                }
                tracing::debug!(
                    call = call_name(call),
                    reason = fault.reason(),
                    "call failed"
                );
                (self.machine.on_error(call, fault, now()), error)
            }
            StepError::Violated { action, error } => (action, error),
        };
        match action {
            Action::RetryAt(at) | Action::ReconnectAt(at) => {
                if matches!(action, Action::ReconnectAt(_)) {
                    self.client = None;
                }
                let at = Instant::from_std(at);
                if retry_until.is_some_and(|limit| at > limit) {
                    return Next::Fail(error);
                }
                tracing::info!(
                    %error,
                    wait_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64,
                    "retrying"
                );
                report.retries += 1;
                tokio::time::sleep_until(at).await;
                Next::Continue
            }
            Action::Park(parked) => match self.persist_parked(parked, report).await {
                Ok(()) => Next::Continue,
                Err(local) => Next::Fail(local),
            },
            Action::Stop(reason) => {
                tracing::warn!(%reason, "round stopped");
                Next::Fail(error)
            }
        }
    }

    /// One round: Hello, push until caught up (or parked), pull until caught
    /// up, retrying for at most `retry_budget`. With `pass_on` (another
    /// address follows this one), a connection that cannot be opened ends
    /// the round at once with [`SyncError::Connect`] instead of being
    /// retried: the next address is tried without waiting. A link that fails
    /// once connected is retried with backoff all the same.
    pub(super) async fn round(
        &mut self,
        report: &mut SyncReport,
        retry_budget: Duration,
        pass_on: bool,
    ) -> Result<(), SyncError> {
        let connects = self.connects;
        let result = self.steps(report, retry_budget, pass_on).await;
        report.connects += self.connects - connects;
        result
    }

    async fn steps(
        &mut self,
        report: &mut SyncReport,
        retry_budget: Duration,
        pass_on: bool,
    ) -> Result<(), SyncError> {
        self.machine.new_round();
        self.pushes.clear();
        self.pulls.clear();
        self.pushed_since_pull = false;
        self.stream_pulled = false;
        self.pushed_takeover = false;
        self.feed_owed = false;
        self.round_hellos = 0;
        let retry_until = Instant::now().checked_add(retry_budget);
        loop {
            match self.step(report).await {
                Ok(Step::Progress) => {}
                Ok(Step::CaughtUp) => return Ok(()),
                Err(StepError::Failed {
                    call: Call::Connect,
                    error,
                    ..
                }) if pass_on => {
                    self.pushes.clear();
                    self.pulls.clear();
                    return Err(error);
                }
                Err(failure) => {
                    if let Next::Fail(error) = self.recover(failure, retry_until, report).await {
                        return Err(error);
                    }
                }
            }
        }
    }

    /// Records what the round learned: the uplink rate always, the time when
    /// it completed; and fills in the report's closing figures.
    pub(super) async fn finish(
        &mut self,
        completed: bool,
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        if let Some(wiped) = self.wiped {
            // The store is gone: nothing to record.
            report.wiped = Some(wiped);
            return Ok(());
        }
        let rate = self.machine.uplink_bytes_per_sec();
        // The rate is clamped to a finite range well inside u64.
        let uplink = self.machine.uplink_measured().then_some(rate as u64);
        let completed_at = completed.then(|| self.agent.log().now_ms());
        let state = blocking(&self.agent, move |a| {
            a.log().record_sync(completed_at, uplink)?;
            Ok((
                a.log().sync_state()?,
                a.log().pull_cursor()?,
                a.log().acked()?,
                a.log().city_acked()?,
            ))
        })
        .await?;
        let (state, cursor, acked, city) = state;
        report.city_durable_through = city;
        report.parked = state.parked;
        report.pull_cursor = cursor;
        report.durable_through = self.machine.durable_through().unwrap_or(acked);
        report.uplink_bps = (rate * 8.0) as u64;
        Ok(())
    }

    /// One idle step of the daemon: a long poll, or the wait before retrying
    /// one. Never returns an error: failures are logged and waited out.
    pub(super) async fn idle(&mut self, retry_at: &mut Option<Instant>, stopped: &mut bool) {
        let wait = self.machine.config().long_poll;
        if *stopped || wait.is_zero() {
            return std::future::pending().await;
        }
        if let Some(at) = retry_at.take() {
            tokio::time::sleep_until(at).await;
            return;
        }
        let mut report = SyncReport::default();
        let started = Instant::now();
        let failure = match self.long_poll_step(&mut report).await {
            Ok(true) => return,
            Ok(false) => {
                // An empty answer long before the wait was up: a hub that
                // does not long-poll. Pace the polls instead of spinning.
                if started.elapsed() < wait / 2 {
                    *retry_at = started.checked_add(wait);
                }
                return;
            }
            Err(failure) => failure,
        };
        let (action, error) = match failure {
            StepError::Local(error) => {
                tracing::warn!(%error, "long poll stopped");
                *stopped = true;
                return;
            }
            StepError::Failed { call, fault, error } => {
                (self.machine.on_error(call, fault, now()), error)
            }
            StepError::Violated { action, error } => (action, error),
        };
        match action {
            Action::RetryAt(at) | Action::ReconnectAt(at) => {
                if matches!(action, Action::ReconnectAt(_)) {
                    self.client = None;
                }
                tracing::debug!(%error, "long poll failed; retrying");
                *retry_at = Some(Instant::from_std(at));
            }
            Action::Park(parked) => {
                if let Err(error) = self.persist_parked(parked, &mut report).await {
                    tracing::warn!(%error, "cannot record the parked batch");
                }
            }
            Action::Stop(reason) => {
                tracing::warn!(%reason, "long poll refused; waiting for the next round");
                *stopped = true;
            }
        }
    }

    /// Whether a round wiped the device on the hub's order.
    pub(super) fn wiped(&self) -> bool {
        self.wiped.is_some()
    }

    /// Hello when needed, else one long poll; true when it got somewhere
    /// (a Hello answered, events pulled).
    async fn long_poll_step(&mut self, report: &mut SyncReport) -> Result<bool, StepError> {
        if self.wiped.is_some() || self.wipe_head.is_some() {
            // A wiped device, or one being wiped, pulls nothing.
            return Ok(false);
        }
        if self.machine.needs_hello() {
            self.hello(report).await?;
            return Ok(true);
        }
        let cursor = blocking(&self.agent, |a| Ok(a.log().pull_cursor()?)).await?;
        let Some(plan) = self.machine.long_poll(cursor, now()) else {
            return Ok(false);
        };
        report.pull_cursor = cursor;
        self.pull(plan, report).await?;
        Ok(report.pull_cursor != cursor)
    }
}

/// Runs one sync round: Hello, push until caught up, pull until caught up.
/// Failures the link or the hub may get over are retried with backoff for
/// [`SyncOptions::retry_budget`]; a batch the hub refuses for good is parked
/// (see [`SyncReport::parked`]) and the round goes on pulling.
///
/// # Errors
/// The error that ended the round: the retry budget ran out, the hub refused
/// Hello or Pull for good, or the store failed. Everything acknowledged or
/// stored before it stays.
///
/// With several addresses ([`SyncOptions::addresses`]), they are tried in
/// order: an address that refuses the connection or cannot be reached passes
/// the round on to the next at once; one whose link fails once connected
/// is retried for at most [`super::options::ALTERNATE_RETRY_BUDGET`] before
/// the round passes on; one that does not know the device's token (a
/// station relay that has not heard of it from the hub yet) passes it on
/// too. The last address is retried with backoff for the whole
/// [`SyncOptions::retry_budget`], so a round where every address refuses
/// waits between its attempts rather than spinning; its error is returned.
/// The report's [`SyncReport::retries`] and [`SyncReport::connects`] count
/// every address tried.
pub async fn sync_once(agent: Arc<Agent>, options: &SyncOptions) -> Result<SyncReport, SyncError> {
    let addresses = options.per_address();
    let last = addresses.len().saturating_sub(1);
    let mut tally = SyncReport::default();
    for (i, one) in addresses.iter().enumerate() {
        match sync_one(Arc::clone(&agent), one, i < last, &mut tally).await {
            Err(error) if i < last && unreachable(&error) => {
                tracing::info!(address = %one.hub_url, %error, "unreachable: trying the next address");
            }
            Err(
                error @ SyncError::Rpc {
                    code: tonic::Code::Unauthenticated,
                    ..
                },
            ) if i < last => {
                tracing::info!(address = %one.hub_url, %error, "token refused: trying the next address");
            }
            done => return done,
        }
    }
    sync_one(agent, options, false, &mut tally).await
}

/// Whether `error` says the address was out of reach (rather than refused).
pub(super) fn unreachable(error: &SyncError) -> bool {
    matches!(error, SyncError::Connect(_) | SyncError::Link { .. })
}

/// One round with one address; `tally` carries the retries and connections
/// of the addresses tried before it, and takes this one's.
async fn sync_one(
    agent: Arc<Agent>,
    options: &SyncOptions,
    pass_on: bool,
    tally: &mut SyncReport,
) -> Result<SyncReport, SyncError> {
    let mut edge = Edge::new(agent, options).await?;
    let mut report = SyncReport {
        retries: tally.retries,
        connects: tally.connects,
        ..SyncReport::default()
    };
    let result = edge.round(&mut report, options.retry_budget, pass_on).await;
    tally.retries = report.retries;
    tally.connects = report.connects;
    let finished = edge.finish(result.is_ok(), &mut report).await;
    result?;
    finished?;
    Ok(report)
}
