//! The hub's gRPC server: the `station.v1.Sync` service over [`HubStore`].
//!
//! Invariants: a `Push` is answered only after its batch is durable; a batch
//! that breaks a protocol rule (gap, bad origin, too large) is refused whole
//! and changes nothing; blocking store calls run off the async workers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use station_proto::v1::sync_server::{Sync, SyncServer};
use station_proto::v1::{
    HelloRequest, HelloResponse, OriginAck, PullRequest, PullResponse, PulledEvent, PushRequest,
    PushResponse,
};
use station_proto::validate;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::store::{HubError, HubStore};

/// Most events one `Push` may carry.
pub const MAX_PUSH_EVENTS: usize = 5_000;
/// Largest request or response the hub decodes or sends, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Most events and bytes one `Pull` page returns.
pub const MAX_PULL_EVENTS: u32 = 5_000;
/// Byte budget of one `Pull` page.
pub const MAX_PULL_BYTES: u32 = 1024 * 1024;
/// Longest long-poll a `Pull` may ask for.
pub const MAX_PULL_WAIT: Duration = Duration::from_secs(30);

/// The `Sync` service.
#[derive(Debug, Clone)]
pub struct SyncService {
    /// The hub's durable log.
    store: Arc<HubStore>,
}

impl SyncService {
    /// A service over `store`.
    pub fn new(store: Arc<HubStore>) -> Self {
        Self { store }
    }

    /// The tonic server for this service, with compression and limits set.
    pub fn into_server(self) -> SyncServer<Self> {
        SyncServer::new(self)
            .accept_compressed(CompressionEncoding::Zstd)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&HubStore) -> Result<T, HubError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Status::internal(format!("hub task failed: {e}")))?
            .map_err(status_of)
    }
}

/// The gRPC status of a store error.
pub fn status_of(error: HubError) -> Status {
    match error {
        HubError::Gap { .. } => Status::failed_precondition(error.to_string()),
        HubError::Malformed { .. } => Status::invalid_argument(error.to_string()),
        HubError::Sled(_) | HubError::Io(_) => Status::unavailable(error.to_string()),
        HubError::Corrupt(_) | HubError::UnsupportedFormat(_) => {
            Status::internal(error.to_string())
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tonic::async_trait]
impl Sync for SyncService {
    async fn hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloResponse>, Status> {
        let hello = request.into_inner();
        let origin = validate::uuid16("origin_id", &hello.origin_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        validate::station_code("station_code", &hello.station_code)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let now = now_ms();
        let station = hello.station_code.clone();
        let (state, head) = self
            .blocking(move |store| {
                let state = store.hello(
                    origin,
                    &hello.station_code,
                    hello.head_seq,
                    hello.device_clock_ms,
                    now,
                )?;
                Ok((state, store.station_head(&station)?))
            })
            .await?;
        tracing::debug!(%origin, durable_through = state.durable_through, "hello");
        Ok(Response::new(HelloResponse {
            durable_through: state.durable_through,
            hub_clock_ms: now,
            station_pull_head: head,
        }))
    }

    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let events = request.into_inner().events;
        if events.len() > MAX_PUSH_EVENTS {
            return Err(Status::resource_exhausted(format!(
                "a push may carry at most {MAX_PUSH_EVENTS} events, got {}",
                events.len()
            )));
        }
        let count = events.len();
        let today = chrono::Local::now().date_naive();
        let now = now_ms();
        let outcome = self
            .blocking(move |store| store.push(events, today, now))
            .await?;
        tracing::debug!(
            count,
            stored = outcome.stored,
            quarantined = outcome.quarantined,
            "push acknowledged"
        );
        Ok(Response::new(PushResponse {
            acks: outcome
                .acks
                .into_iter()
                .map(|(origin, durable_through)| OriginAck {
                    origin_id: origin.as_bytes().to_vec(),
                    durable_through,
                })
                .collect(),
            quarantined: u32::try_from(outcome.quarantined).unwrap_or(u32::MAX),
        }))
    }

    async fn pull(&self, request: Request<PullRequest>) -> Result<Response<PullResponse>, Status> {
        let pull = request.into_inner();
        validate::station_code("station_code", &pull.station_code)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let max_events = pull.max_events.clamp(1, MAX_PULL_EVENTS) as usize;
        let max_bytes = if pull.max_bytes == 0 {
            MAX_PULL_BYTES
        } else {
            pull.max_bytes.min(MAX_PULL_BYTES)
        } as usize;
        let wait = Duration::from_millis(u64::from(pull.wait_ms)).min(MAX_PULL_WAIT);
        let mut grown = self.store.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            grown.borrow_and_update();
            let station = pull.station_code.clone();
            let page = self
                .blocking(move |store| store.pull(&station, pull.after, max_events, max_bytes))
                .await?;
            let waited_enough = tokio::time::Instant::now() >= deadline;
            if !page.events.is_empty() || waited_enough {
                return Ok(Response::new(PullResponse {
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
                }));
            }
            if tokio::time::timeout_at(deadline, grown.changed())
                .await
                .is_err()
            {
                continue;
            }
        }
    }
}

/// Serves the hub on `listener` until `shutdown` completes, then finishes the
/// calls in flight and returns.
///
/// # Errors
/// The transport fails.
pub async fn run(
    listener: TcpListener,
    store: Arc<HubStore>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, "hub listening");
    tonic::transport::Server::builder()
        .add_service(SyncService::new(store).into_server())
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
