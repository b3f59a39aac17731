//! One sync round with the hub: `Hello`, push the own log from the hub's
//! `durable_through` until caught up, then pull the station's stream until
//! caught up.
//!
//! Invariants: push resumes from what the hub says it holds, so a batch lost
//! with a dropped link is simply sent again and the hub ignores what it has;
//! only events already durable on the device are pushed; pulled events and
//! their cursor are stored in one atomic write; every `tonic::Code` is
//! classified as retriable or permanent in one place, [`is_retriable`].

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use station_proto::v1::sync_client::SyncClient;
use station_proto::v1::{HelloRequest, PullRequest, PushRequest};
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::engine::{Agent, AgentError, now_ms};

/// How a sync round talks to the hub.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The hub's address, e.g. `http://127.0.0.1:7400`.
    pub hub_url: String,
    /// The device token, sent as `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Encoded bytes per pushed batch (a few seconds of a 2G uplink).
    pub batch_bytes: usize,
    /// Events per pulled page.
    pub pull_events: u32,
    /// Deadline of each call.
    pub call_timeout: Duration,
}

impl SyncOptions {
    /// Defaults sized for a 64 kbit/s uplink.
    pub fn new(hub_url: impl Into<String>, token: Option<String>) -> Self {
        Self {
            hub_url: hub_url.into(),
            token,
            batch_bytes: 24 * 1024,
            pull_events: 500,
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// What a sync round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SyncReport {
    /// Own events sent (and acknowledged).
    pub pushed: u64,
    /// Batches sent.
    pub batches: u64,
    /// The hub's `durable_through` for this device after the round.
    pub durable_through: u64,
    /// Station events pulled and stored.
    pub pulled: u64,
    /// The pull cursor after the round.
    pub pull_cursor: u64,
}

/// Why a sync round stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No hub address is configured.
    #[error("no hub configured: pass --hub or run init with --hub")]
    NoHub,
    /// The address is not a valid URL.
    #[error("bad hub address: {0}")]
    BadAddress(String),
    /// The hub could not be reached.
    #[error("cannot reach the hub: {0}")]
    Connect(String),
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
}

impl SyncError {
    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            SyncError::Connect(_) => true,
            SyncError::Rpc { code, .. } => is_retriable(*code),
            _ => false,
        }
    }
}

/// The one place that decides which gRPC codes are worth retrying: the link
/// or the hub is temporarily unable, not the request wrong.
pub fn is_retriable(code: tonic::Code) -> bool {
    use tonic::Code;
    match code {
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Unknown => true,
        Code::ResourceExhausted => false,
        Code::Ok
        | Code::Cancelled
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::Internal
        | Code::DataLoss
        | Code::Unauthenticated => false,
    }
}

fn rpc_error(call: &'static str, status: tonic::Status) -> SyncError {
    SyncError::Rpc {
        call,
        code: status.code(),
        message: status.message().to_string(),
    }
}

fn request<T>(message: T, options: &SyncOptions) -> Result<tonic::Request<T>, SyncError> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(options.call_timeout);
    if let Some(token) = &options.token {
        let value = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| SyncError::Protocol("the token is not valid ASCII".into()))?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// Connects to the hub.
///
/// # Errors
/// [`SyncError::BadAddress`] or [`SyncError::Connect`].
pub async fn connect(options: &SyncOptions) -> Result<SyncClient<Channel>, SyncError> {
    let endpoint = Endpoint::from_shared(options.hub_url.clone())
        .map_err(|e| SyncError::BadAddress(e.to_string()))?
        .connect_timeout(Duration::from_secs(20))
        .tcp_nodelay(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| SyncError::Connect(e.to_string()))?;
    Ok(SyncClient::new(channel)
        .send_compressed(CompressionEncoding::Zstd)
        .accept_compressed(CompressionEncoding::Zstd)
        .accept_compressed(CompressionEncoding::Gzip))
}

async fn blocking<T, F>(agent: &Arc<Agent>, f: F) -> Result<T, SyncError>
where
    T: Send + 'static,
    F: FnOnce(&Agent) -> Result<T, AgentError> + Send + 'static,
{
    let agent = Arc::clone(agent);
    tokio::task::spawn_blocking(move || f(&agent))
        .await
        .map_err(|e| SyncError::Protocol(format!("local task failed: {e}")))?
        .map_err(SyncError::from)
}

/// Runs one sync round: hello, push until caught up, pull until caught up.
///
/// # Errors
/// The first error met; everything acknowledged or stored before it stays.
pub async fn sync_once(agent: Arc<Agent>, options: &SyncOptions) -> Result<SyncReport, SyncError> {
    let mut client = connect(options).await?;
    let identity = agent.identity().clone();
    let origin = identity.origin_id;
    let head_seq = agent.log().head_seq();
    let hello = client
        .hello(request(
            HelloRequest {
                origin_id: origin.as_bytes().to_vec(),
                station_code: identity.station_code.clone(),
                head_seq,
                device_clock_ms: now_ms(),
                agent_version: env!("CARGO_PKG_VERSION").into(),
            },
            options,
        )?)
        .await
        .map_err(|s| rpc_error("Hello", s))?
        .into_inner();
    let mut report = SyncReport {
        durable_through: hello.durable_through,
        ..SyncReport::default()
    };
    if hello.durable_through > head_seq {
        return Err(SyncError::Protocol(format!(
            "the hub holds seq {} of this device, which only has {head_seq}",
            hello.durable_through
        )));
    }
    let acked = hello.durable_through;
    blocking(&agent, move |a| Ok(a.log().set_acked(acked)?)).await?;

    loop {
        let after = report.durable_through;
        let budget = options.batch_bytes;
        let batch = blocking(&agent, move |a| {
            let events = a.log().own_events(after, 2_000)?;
            let mut bytes = 0usize;
            let mut batch = Vec::new();
            for event in events {
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
        if batch.is_empty() {
            break;
        }
        let sent = batch.len() as u64;
        let response = client
            .push(request(PushRequest { events: batch }, options)?)
            .await
            .map_err(|s| rpc_error("Push", s))?
            .into_inner();
        let ack = response
            .acks
            .iter()
            .find(|a| a.origin_id == origin.as_bytes())
            .ok_or_else(|| {
                SyncError::Protocol("the push was not acknowledged for this device".into())
            })?
            .durable_through;
        if ack <= after {
            return Err(SyncError::Protocol(format!(
                "the hub did not advance durable_through past {after}"
            )));
        }
        report.pushed += sent.min(ack - after);
        report.batches += 1;
        report.durable_through = ack;
        blocking(&agent, move |a| Ok(a.log().set_acked(ack)?)).await?;
    }

    loop {
        let cursor = blocking(&agent, |a| Ok(a.log().pull_cursor()?)).await?;
        let page = client
            .pull(request(
                PullRequest {
                    station_code: identity.station_code.clone(),
                    after: cursor,
                    max_events: options.pull_events,
                    max_bytes: 0,
                    wait_ms: 0,
                },
                options,
            )?)
            .await
            .map_err(|s| rpc_error("Pull", s))?
            .into_inner();
        let next = page.next_cursor;
        let events: Vec<_> = page
            .events
            .into_iter()
            .filter_map(|p| p.event.map(|e| (p.hub_seq, e)))
            .collect();
        let applied = blocking(&agent, move |a| a.apply_pulled(events, next)).await?;
        report.pulled += applied.stored as u64;
        report.pull_cursor = next;
        if next >= page.head || next == cursor {
            break;
        }
    }
    Ok(report)
}
