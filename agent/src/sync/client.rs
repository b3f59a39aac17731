//! The tonic edge of sync: connections, calls, timers and the store, driven by
//! the [`SyncMachine`]. [`sync_once`] runs one round; [`run`] is the daemon.
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
//!   [`is_retriable`] alone for the hub's answers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use station_proto::ids::Uuid;
use station_proto::v1::sync_client::SyncClient;
use station_proto::v1::{HelloRequest, PullRequest, PushRequest};
use tokio::time::Instant;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::machine::{
    Action, Batch, Call, Config, Fault, HelloAnswer, Parked, PullPage, PullPlan, PullProgress,
    SyncMachine,
};
use crate::engine::{Agent, AgentError, now_ms};
use crate::store::{ParkedBatch, StoreError};

/// How the agent talks to the hub.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The hub's address, e.g. `http://127.0.0.1:7400` or `https://hub:7400`.
    pub hub_url: String,
    /// The device token, sent as `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The most encoded bytes one pushed batch or pulled page may carry; the
    /// airtime sizing stays below it (a single larger event still goes alone).
    pub batch_bytes: usize,
    /// Events per pulled page, at most.
    pub pull_events: u32,
    /// The longest deadline of any call (a long poll adds its wait).
    pub call_timeout: Duration,
    /// A PEM CA certificate to trust for the hub's TLS certificate. Setting
    /// it turns TLS on (an `http://` address is upgraded to `https://`);
    /// without it an `https://` address is checked against the webpki roots.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// The name the hub's certificate must carry, when it differs from the
    /// address's host (say, a hub reached by IP address).
    pub tls_domain: Option<String>,
    /// How long one round keeps retrying what the link or the hub broke
    /// before it returns the error.
    pub retry_budget: Duration,
    /// The ceiling of the first retry delay after progress; it doubles per
    /// failure up to [`Self::backoff_cap`].
    pub backoff_base: Duration,
    /// The longest retry delay.
    pub backoff_cap: Duration,
    /// The daemon starts a round this often, and right after each new entry.
    pub interval: Duration,
    /// How long an idle daemon's pull waits on the hub for new events; zero
    /// turns long polling off (the station's stream then comes with each
    /// round), which spares the radio on a phone.
    pub long_poll: Duration,
    /// HTTP/2 keepalive ping interval (and timeout) while a call is open; no
    /// pings on an idle connection.
    pub keepalive: Duration,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// Seeds the retry jitter; `None` draws one from the origin and the clock.
    pub jitter_seed: Option<u64>,
}

impl SyncOptions {
    /// Defaults for a 2G/3G phone: batches sized by measured airtime up to
    /// 256 KiB, a minute of retries per round, a round every minute.
    pub fn new(hub_url: impl Into<String>, token: Option<String>) -> Self {
        let machine = Config::default();
        Self {
            hub_url: hub_url.into(),
            token,
            batch_bytes: machine.max_batch_bytes,
            pull_events: machine.pull_events,
            call_timeout: machine.deadline_cap,
            tls_ca_pem: None,
            tls_domain: None,
            retry_budget: Duration::from_secs(60),
            backoff_base: machine.backoff_base,
            backoff_cap: machine.backoff_cap,
            interval: Duration::from_secs(60),
            long_poll: machine.long_poll,
            keepalive: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(20),
            jitter_seed: None,
        }
    }

    /// The state machine's knobs these options imply.
    pub fn machine_config(&self) -> Config {
        Config {
            max_batch_bytes: self.batch_bytes.max(1),
            pull_events: self.pull_events.max(1),
            deadline_cap: self.call_timeout,
            backoff_base: self.backoff_base,
            backoff_cap: self.backoff_cap,
            long_poll: self.long_poll,
            ..Config::default()
        }
    }
}

/// What a sync round did.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct SyncReport {
    /// Own events the hub came to hold during the round: acknowledged, or
    /// shown by a later Hello to have been stored when their ack was lost.
    pub pushed: u64,
    /// Batches acknowledged.
    pub batches: u64,
    /// The hub's `durable_through` for this device after the round.
    pub durable_through: u64,
    /// Station events pulled and stored.
    pub pulled: u64,
    /// The pull cursor after the round.
    pub pull_cursor: u64,
    /// Calls retried after the link or the hub failed.
    pub retries: u64,
    /// The batch the hub refused for good, if any: nothing is pushed until
    /// `station-agent sync --retry-parked`.
    pub parked: Option<ParkedBatch>,
    /// The uplink rate estimate, in bits of encoded events per second.
    pub uplink_bps: u64,
}

/// Why a sync round stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No hub address is configured.
    #[error("no hub configured: pass --hub or run init with --hub")]
    NoHub,
    /// The address or the TLS settings are unusable.
    #[error("bad hub address: {0}")]
    BadAddress(String),
    /// The token cannot be sent as gRPC metadata.
    #[error("the device token must be printable ASCII")]
    BadToken,
    /// The hub could not be reached.
    #[error("cannot reach the hub: {0}")]
    Connect(String),
    /// The link failed during a call: nothing is known about its outcome.
    #[error("the link failed during {call}: {message}")]
    Link {
        /// Which call.
        call: &'static str,
        /// What the transport said.
        message: String,
    },
    /// The hub answered with an error status.
    #[error("hub refused {call}: {code:?}: {message}")]
    Rpc {
        /// Which call.
        call: &'static str,
        /// The gRPC code.
        code: tonic::Code,
        /// The hub's message.
        message: String,
    },
    /// The hub's answer breaks the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The local store failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A local task died (a bug, not the link's fault).
    #[error("a local sync task failed: {0}")]
    Local(String),
}

impl SyncError {
    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            SyncError::Connect(_) | SyncError::Link { .. } | SyncError::Protocol(_) => true,
            SyncError::Rpc { code, .. } => is_retriable(*code),
            SyncError::NoHub
            | SyncError::BadAddress(_)
            | SyncError::BadToken
            | SyncError::Agent(_)
            | SyncError::Local(_) => false,
        }
    }
}

/// The one place that decides which gRPC codes *answered by the hub* are
/// worth retrying.
///
/// Permanent: the request itself is wrong and sent again it fails again —
/// `InvalidArgument` (a batch that does not decode), `PermissionDenied`
/// (another station's event), `Unauthenticated`, `NotFound`, `AlreadyExists`,
/// `OutOfRange`, `Unimplemented`. A pushed batch refused with one of them is
/// parked (`Unauthenticated` stops the round instead: the token is wrong, not
/// the batch).
///
/// Retriable, as vector's gRPC sinks do: the hub or the path to it is unable
/// for now — `Unavailable`, `DeadlineExceeded`, `Aborted`, `Cancelled`,
/// `ResourceExhausted`; `Unknown` and `Internal`, which tonic also reports for
/// a stream cut by a proxy without a transport error to show for it (parking
/// on those would strand a device for a dropped link); `DataLoss`; and
/// `FailedPrecondition`, the hub's answer to a gap, which a fresh Hello
/// resolves by resuming from the hub's real `durable_through`.
pub fn is_retriable(code: tonic::Code) -> bool {
    use tonic::Code;
    match code {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Cancelled
        | Code::ResourceExhausted
        | Code::Unknown
        | Code::Internal
        | Code::DataLoss
        | Code::FailedPrecondition => true,
        Code::Ok
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::Unauthenticated => false,
    }
}

/// Classifies a failed call for the state machine.
///
/// A status that tonic built from a transport error (it carries that error as
/// its source: a reset, an EOF, a timeout, a refused stream) is a
/// [`Fault::Link`] whatever its code, because tonic maps broken connections to
/// codes that, answered by the hub, would be permanent. A status the hub
/// answered is [`Fault::Busy`] when [`is_retriable`], else
/// [`Fault::Denied`] for `Unauthenticated` and [`Fault::Refused`] for the rest.
pub fn fault(status: &tonic::Status) -> Fault {
    let reason = format!("{:?}: {}", status.code(), status.message());
    if std::error::Error::source(status).is_some() {
        Fault::Link(reason)
    } else if is_retriable(status.code()) {
        Fault::Busy(reason)
    } else if status.code() == tonic::Code::Unauthenticated {
        Fault::Denied(reason)
    } else {
        Fault::Refused(reason)
    }
}

fn call_name(call: Call) -> &'static str {
    match call {
        Call::Connect => "Connect",
        Call::Hello => "Hello",
        Call::Push => "Push",
        Call::Pull => "Pull",
    }
}

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

/// One device's link to the hub: the machine, the connection, the store.
struct Edge {
    /// The device: its log is read for pushes and written with answers.
    agent: Arc<Agent>,
    /// Where and how to connect; a new connection is opened from it on demand.
    endpoint: Endpoint,
    /// Every decision: sizes, deadlines, retries, parking.
    machine: SyncMachine,
    /// The open connection; `None` until needed and after the machine said
    /// reconnect.
    client: Option<SyncClient<Channel>>,
    /// This device's origin, to find its ack among a push's acks.
    origin: Uuid,
    /// The station whose stream is pulled.
    station: String,
    /// The `authorization` metadata, checked once when the edge is built.
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
    /// Hellos answered in the current round: after the first, a higher
    /// `durable_through` counts as pushed (its ack was lost).
    round_hellos: u32,
}

impl Edge {
    /// Prepares the edge from the options and the state persisted by earlier
    /// runs. A batch parked by another agent version is released: the new
    /// version may send it differently.
    async fn new(agent: Arc<Agent>, options: &SyncOptions) -> Result<Self, SyncError> {
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
            origin: identity.origin_id,
            station: identity.station_code,
            authorization,
            round_hellos: 0,
        })
    }

    fn request<T>(&self, message: T, deadline: Duration) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(deadline);
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        request
    }

    async fn client(&mut self) -> Result<SyncClient<Channel>, StepError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        match self.endpoint.connect().await {
            Ok(channel) => {
                let client = sync_client(channel);
                self.client = Some(client.clone());
                Ok(client)
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
        let deadline = self.machine.begin_hello(now());
        let request = self.request(
            HelloRequest {
                origin_id: self.origin.as_bytes().to_vec(),
                station_code: self.station.clone(),
                head_seq,
                device_clock_ms: now_ms(),
                agent_version: env!("CARGO_PKG_VERSION").into(),
            },
            deadline,
        );
        let answer = Self::call(Call::Hello, deadline, client.hello(request)).await?;
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
        blocking(&self.agent, move |a| {
            Ok(a.log().set_acked(durable_through)?)
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
            parked_at_ms: now_ms(),
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

    async fn push(
        &mut self,
        plan: super::machine::BatchPlan,
        report: &mut SyncReport,
    ) -> Result<(), StepError> {
        let mut client = self.client().await?;
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
        let Some(through) = events.last().map(|e| e.origin_seq) else {
            return Err(StepError::Local(SyncError::Agent(AgentError::Store(
                StoreError::Corrupt(format!(
                    "own events after seq {after} are missing from the store"
                )),
            ))));
        };
        let message = PushRequest { events };
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
        let request = self.request(message, deadline);
        let answer = Self::call(Call::Push, deadline, client.push(request)).await?;
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
        report.pushed += acked.newly_acked;
        report.batches += 1;
        report.durable_through = acked.durable_through;
        let durable_through = acked.durable_through;
        blocking(&self.agent, move |a| {
            Ok(a.log().set_acked(durable_through)?)
        })
        .await?;
        Ok(())
    }

    async fn pull(
        &mut self,
        plan: PullPlan,
        report: &mut SyncReport,
    ) -> Result<PullProgress, StepError> {
        let mut client = self.client().await?;
        let request = self.request(
            PullRequest {
                station_code: self.station.clone(),
                after: plan.after,
                max_events: plan.max_events,
                max_bytes: plan.max_bytes,
                wait_ms: u32::try_from(plan.wait.as_millis()).unwrap_or(u32::MAX),
            },
            plan.deadline,
        );
        let page = Self::call(Call::Pull, plan.deadline, client.pull(request)).await?;
        let bytes = page.encoded_len();
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
        Ok(progress)
    }

    /// One step of a round: connect, Hello, one push or one pull.
    async fn step(&mut self, report: &mut SyncReport) -> Result<Step, StepError> {
        if self.machine.needs_hello() {
            self.hello(report).await?;
            return Ok(Step::Progress);
        }
        if let Some(plan) = self.machine.next_push(self.agent.log().durable_seq()) {
            self.push(plan, report).await?;
            return Ok(Step::Progress);
        }
        let cursor = blocking(&self.agent, |a| Ok(a.log().pull_cursor()?)).await?;
        if let Some(plan) = self.machine.next_pull(cursor, now()) {
            self.pull(plan, report).await?;
            return Ok(Step::Progress);
        }
        Ok(Step::CaughtUp)
    }

    /// Acts on a failed step as the machine says. Waits are cut short by
    /// nothing: the caller races them against shutdown.
    async fn recover(
        &mut self,
        failure: StepError,
        retry_until: Option<Instant>,
        report: &mut SyncReport,
    ) -> Next {
        let (action, error) = match failure {
            StepError::Local(error) => return Next::Fail(error),
            StepError::Failed { call, fault, error } => {
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
    /// up, retrying for at most `retry_budget`.
    async fn round(
        &mut self,
        report: &mut SyncReport,
        retry_budget: Duration,
    ) -> Result<(), SyncError> {
        self.machine.new_round();
        self.round_hellos = 0;
        let retry_until = Instant::now().checked_add(retry_budget);
        loop {
            match self.step(report).await {
                Ok(Step::Progress) => {}
                Ok(Step::CaughtUp) => return Ok(()),
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
    async fn finish(&mut self, completed: bool, report: &mut SyncReport) -> Result<(), SyncError> {
        let rate = self.machine.uplink_bytes_per_sec();
        // The rate is clamped to a finite range well inside u64.
        let uplink = self.machine.uplink_measured().then_some(rate as u64);
        let completed_at = completed.then(now_ms);
        let state = blocking(&self.agent, move |a| {
            a.log().record_sync(completed_at, uplink)?;
            Ok((
                a.log().sync_state()?,
                a.log().pull_cursor()?,
                a.log().acked()?,
            ))
        })
        .await?;
        let (state, cursor, acked) = state;
        report.parked = state.parked;
        report.pull_cursor = cursor;
        report.durable_through = self.machine.durable_through().unwrap_or(acked);
        report.uplink_bps = (rate * 8.0) as u64;
        Ok(())
    }

    /// One idle step of the daemon: a long poll, or the wait before retrying
    /// one. Never returns an error: failures are logged and waited out.
    async fn idle(&mut self, retry_at: &mut Option<Instant>, stopped: &mut bool) {
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

    /// Hello when needed, else one long poll; true when it got somewhere
    /// (a Hello answered, events pulled).
    async fn long_poll_step(&mut self, report: &mut SyncReport) -> Result<bool, StepError> {
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
pub async fn sync_once(agent: Arc<Agent>, options: &SyncOptions) -> Result<SyncReport, SyncError> {
    let mut edge = Edge::new(agent, options).await?;
    let mut report = SyncReport::default();
    let result = edge.round(&mut report, options.retry_budget).await;
    let finished = edge.finish(result.is_ok(), &mut report).await;
    result?;
    finished?;
    Ok(report)
}

/// Runs the sync daemon until `shutdown` completes: a round at once, then one
/// every [`SyncOptions::interval`] and right after each new entry
/// ([`Agent::subscribe_recorded`]); between rounds, a long poll keeps the
/// station's stream flowing in. A failed round is logged and retried at the
/// next occasion; nothing spins.
///
/// # Errors
/// Only at start: settings that can never work (a bad address, TLS settings
/// or token), or a store whose sync state cannot be read.
pub async fn run(
    agent: Arc<Agent>,
    options: SyncOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SyncError> {
    let mut edge = Edge::new(Arc::clone(&agent), &options).await?;
    let mut recorded = agent.subscribe_recorded();
    let mut watching = true;
    tokio::pin!(shutdown);
    loop {
        recorded.borrow_and_update();
        let mut report = SyncReport::default();
        let result = tokio::select! {
            () = &mut shutdown => return Ok(()),
            result = edge.round(&mut report, options.retry_budget) => result,
        };
        let completed = result.is_ok();
        match result {
            Ok(()) => tracing::info!(
                pushed = report.pushed,
                pulled = report.pulled,
                durable_through = report.durable_through,
                "sync round completed"
            ),
            Err(error) => tracing::warn!(%error, "sync round failed"),
        }
        if let Err(error) = edge.finish(completed, &mut report).await {
            tracing::warn!(%error, "cannot record the round");
        }
        let now = Instant::now();
        let next_round = now
            .checked_add(options.interval)
            .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        let mut retry_at = None;
        let mut stopped = false;
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep_until(next_round) => break,
                changed = recorded.changed(), if watching => {
                    if changed.is_ok() {
                        break;
                    }
                    // The sender lives in the agent, which this task holds;
                    // should it ever be gone, rounds follow the schedule only.
                    watching = false;
                }
                () = edge.idle(&mut retry_at, &mut stopped) => {}
            }
        }
    }
}
