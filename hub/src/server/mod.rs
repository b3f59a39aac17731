//! The hub's gRPC side: the `station.v1.Sync` service over [`HubStore`]
//! and the bureau's `station.v1.Query` service over [`Projections`], both
//! behind the token check of [`crate::auth`], with the standard health and
//! reflection services beside them, in plain text or TLS. The hub as a
//! whole (this side, HTTP, the administration socket, the projector) is
//! served by [`crate::serve`].
//!
//! Invariants: every `Sync` and `Query` call passes [`Authenticator`] and the
//! rules of [`crate::auth`] before it touches the store; a device token reads
//! only its own station's projections; a `Push` is answered only
//! after its batch is durable; a batch that breaks a protocol rule (gap, bad
//! origin, another station's event, too large) is refused whole and changes
//! nothing; a read's limits, period and date are parsed by [`crate::params`],
//! as HTTP parses them; blocking store calls run off the async workers; the
//! gRPC side stops only after the calls in flight have finished (or the
//! grace period ran out).

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use station_proto::v1::query_server::{Query, QueryServer};
use station_proto::v1::sync_server::{Sync, SyncServer};
use station_proto::v1::{
    GetCaseTimelineRequest, GetCaseTimelineResponse, GetCaseloadRequest, GetCaseloadResponse,
    GetConflictsRequest, GetConflictsResponse, GetIndicatorsRequest, GetIndicatorsResponse,
    GetOverdueRequest, GetOverdueResponse, GetQuarantineRequest, GetQuarantineResponse,
    GetSyncHealthRequest, GetSyncHealthResponse, HelloRequest, HelloResponse, OriginAck,
    PullRequest, PullResponse, PulledEvent, PushRequest, PushResponse,
};
use station_proto::validate;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use crate::auth::{self, AuthError, Authenticator, Caller};
use crate::config::{ConfigError, HubConfig};
use crate::params::{self, BadParameter};
use crate::projections::{self, ProjectionError, Projections};
use crate::store::{HubError, HubStore};

mod wire;

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
/// How long shutdown waits for calls in flight by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The `Sync` service. It expects the [`Caller`] that
/// [`Authenticator`] puts on each request, and refuses calls without one.
#[derive(Debug, Clone)]
pub struct SyncService {
    /// The hub's durable log.
    store: Arc<HubStore>,
    /// Turns true when the hub begins to shut down, so long polls end early.
    stopping: Arc<watch::Sender<bool>>,
}

impl SyncService {
    /// A service over `store`.
    pub fn new(store: Arc<HubStore>) -> Self {
        let (stopping, _) = watch::channel(false);
        Self {
            store,
            stopping: Arc::new(stopping),
        }
    }

    /// Ends the long polls waiting now and makes later ones answer at once.
    pub fn begin_shutdown(&self) {
        self.stopping.send_replace(true);
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

/// The gRPC status of a store error.
pub fn status_of(error: HubError) -> Status {
    match error {
        HubError::Gap { .. } => Status::failed_precondition(error.to_string()),
        HubError::Malformed { .. } => Status::invalid_argument(error.to_string()),
        HubError::UnknownToken(_) => Status::not_found(error.to_string()),
        HubError::Sled(_) | HubError::Io(_) => Status::unavailable(error.to_string()),
        HubError::Corrupt(_) | HubError::UnsupportedFormat(_) => {
            Status::internal(error.to_string())
        }
    }
}

impl From<BadParameter> for Status {
    fn from(error: BadParameter) -> Self {
        Status::invalid_argument(error.0)
    }
}

impl From<HubError> for Status {
    fn from(error: HubError) -> Self {
        status_of(error)
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
        let caller = auth::caller(&request)?;
        let hello = request.into_inner();
        let origin = validate::uuid16("origin_id", &hello.origin_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        validate::station_code("station_code", &hello.station_code)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        auth::authorize_hello(&caller, origin, &hello.station_code)?;
        let now = now_ms();
        let station = hello.station_code.clone();
        let (state, head) = self
            .blocking(move |store| -> Result<_, AuthError> {
                auth::bind_origin(store, &caller, origin)?;
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
        let caller = auth::caller(&request)?;
        let events = request.into_inner().events;
        if events.len() > MAX_PUSH_EVENTS {
            return Err(Status::resource_exhausted(format!(
                "a push may carry at most {MAX_PUSH_EVENTS} events, got {}",
                events.len()
            )));
        }
        let origins = auth::authorize_push(&caller, &events)?;
        let count = events.len();
        // Service dates are China's: "not in the future" is judged by the
        // date in China, whatever the hub machine's time zone.
        let today = projections::today_in_china();
        let now = now_ms();
        let outcome = self
            .blocking(move |store| -> Result<_, AuthError> {
                for origin in origins {
                    auth::bind_origin(store, &caller, origin)?;
                }
                Ok(store.push(events, today, now)?)
            })
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
        loop {
            grown.borrow_and_update();
            let station = pull.station_code.clone();
            let page = self
                .blocking(move |store| {
                    store.pull_for(&station, pull.after, max_events, max_bytes, skip_origin)
                })
                .await?;
            let waited_enough = tokio::time::Instant::now() >= deadline || *stopping.borrow();
            if page.next_cursor > pull.after || waited_enough {
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
            tokio::select! {
                _ = tokio::time::timeout_at(deadline, grown.changed()) => {}
                _ = stopping.wait_for(|stopping| *stopping) => {}
            }
        }
    }
}

/// A certificate chain and its private key, PEM encoded, checked when made.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The certificate chain, leaf first.
    cert_pem: Vec<u8>,
    /// The private key of the leaf certificate.
    key_pem: Vec<u8>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity").finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// An identity from PEM bytes.
    ///
    /// # Errors
    /// [`ServeError::Tls`] when rustls does not accept the certificate and key.
    pub fn from_pem(cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<Self, ServeError> {
        let identity = Self { cert_pem, key_pem };
        Server::builder()
            .tls_config(identity.server_config())
            .map_err(|e| ServeError::Tls(error_chain(&e)))?;
        Ok(identity)
    }

    /// An identity read from a certificate file and a key file, both PEM.
    ///
    /// # Errors
    /// [`ServeError::Read`] when a file cannot be read, [`ServeError::Tls`]
    /// when rustls does not accept them.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, ServeError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| ServeError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        Self::from_pem(read(cert)?, read(key)?)
    }

    fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new().identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
    }
}

/// How the hub serves.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Serve TLS with this identity; plain text when `None`.
    pub tls: Option<TlsIdentity>,
    /// How long shutdown waits for calls in flight (a push on a slow link,
    /// say) before closing their connections.
    pub shutdown_grace: Duration,
    /// Roster, intervals and targets `Query` answers with; the built-in
    /// Nedong roster when `None`.
    pub config: Option<Arc<HubConfig>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            tls: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            config: None,
        }
    }
}

/// Why the server could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A TLS file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// rustls refused the certificate or key; the text says why.
    #[error("TLS certificate or key refused: {0}")]
    Tls(String),
    /// The reflection service could not read the descriptors.
    #[error("the reflection service could not be built")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    /// The final sync of the store failed.
    #[error(transparent)]
    Store(#[from] HubError),
    /// A task of the hub (opening the store, the projector, the final
    /// sync) did not run to its end.
    #[error("a task of the hub failed")]
    Task(#[from] tokio::task::JoinError),
    /// The built-in configuration did not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The projections could not be opened.
    #[error(transparent)]
    Projections(#[from] ProjectionError),
    /// The HTTP side's listener failed.
    #[error("the HTTP side failed")]
    Http(#[source] std::io::Error),
}

/// The causes of a tonic transport error, which itself only says
/// "transport error".
fn error_chain(error: &dyn std::error::Error) -> String {
    let error = error.source().unwrap_or(error);
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Serves `station.v1.Sync` and `station.v1.Query` (token checked),
/// `grpc.health.v1.Health` and server reflection (both open) on `listener`
/// until `shutdown` completes. Then it stops accepting connections, ends
/// long polls and lets the calls in flight finish (at most
/// [`ServerOptions::shutdown_grace`]). The projector, the other listeners and
/// the final sync are [`Hub::serve`]'s.
///
/// A call still running after the grace period is not waited for: a push it
/// stored is durable all the same (each push waits for its own sync), only its
/// acknowledgement may not reach the device, which sends the batch again.
pub(crate) async fn serve_grpc(
    listener: TcpListener,
    projections: Arc<Projections>,
    options: &ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().ok();
    let store = Arc::clone(projections.store());
    let query = InterceptedService::new(
        QueryService::new(projections).into_server(),
        Authenticator::new(Arc::clone(&store)),
    );
    let service = SyncService::new(Arc::clone(&store));
    let stopping = service.clone();
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<SyncServer<SyncService>>()
        .await;
    health_reporter
        .set_serving::<QueryServer<QueryService>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(station_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let sync = InterceptedService::new(service.into_server(), Authenticator::new(store));
    let mut server = Server::builder();
    if let Some(tls) = &options.tls {
        server = server
            .tls_config(tls.server_config())
            .map_err(|e| ServeError::Tls(error_chain(&e)))?;
    }
    let router = server
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(sync)
        .add_service(query);
    tracing::info!(?addr, tls = options.tls.is_some(), "hub listening");

    let mut stopped = stopping.stopping.subscribe();
    let signal = async move {
        shutdown.await;
        tracing::info!("hub stopping: finishing the calls in flight");
        stopping.begin_shutdown();
        health_reporter
            .set_not_serving::<SyncServer<SyncService>>()
            .await;
        health_reporter
            .set_not_serving::<QueryServer<QueryService>>()
            .await;
    };
    // Without TCP_NODELAY a small answer waits for the delayed ACK of the
    // previous segment: about 40 ms added to every call on Linux.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let grace = options.shutdown_grace;
    let grace_ended = async move {
        if stopped.wait_for(|stopping| *stopping).await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = router.serve_with_incoming_shutdown(incoming, signal) => {
            served.map_err(ServeError::from)
        }
        () = grace_ended => {
            tracing::warn!(?grace, "calls still in flight after the grace period: not waiting for them");
            Ok(())
        }
    }
}

/// The `Query` service: the bureau's read side. It expects the
/// [`Caller`] that [`Authenticator`] puts on each request: a bureau token
/// reads every station, a device token only its own.
#[derive(Debug, Clone)]
pub struct QueryService {
    /// The projections and their read API.
    projections: Arc<Projections>,
}

impl From<ProjectionError> for Status {
    fn from(error: ProjectionError) -> Self {
        match error {
            ProjectionError::Store(store) => status_of(store),
            ProjectionError::Sled(_) => Status::unavailable(error.to_string()),
            ProjectionError::Corrupt(_) => Status::internal(error.to_string()),
            ProjectionError::BadRequest(_) => Status::invalid_argument(error.to_string()),
            ProjectionError::UnknownCase(_) => Status::not_found(error.to_string()),
        }
    }
}

impl QueryService {
    /// A service over `projections`.
    pub fn new(projections: Arc<Projections>) -> Self {
        Self { projections }
    }

    /// The tonic server for this service, with compression and limits set.
    pub fn into_server(self) -> QueryServer<Self> {
        QueryServer::new(self)
            .accept_compressed(CompressionEncoding::Zstd)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn stations(&self, caller: &Caller, asked: Vec<String>) -> Result<Vec<String>, Status> {
        Ok(auth::readable_stations(
            caller,
            asked,
            self.projections.config(),
        )?)
    }

    async fn read<T, F>(&self, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Projections) -> Result<T, ProjectionError> + Send + 'static,
    {
        let projections = Arc::clone(&self.projections);
        tokio::task::spawn_blocking(move || f(&projections))
            .await
            .map_err(|e| Status::internal(format!("query task failed: {e}")))?
            .map_err(Into::into)
    }
}

#[tonic::async_trait]
impl Query for QueryService {
    async fn get_indicators(
        &self,
        request: Request<GetIndicatorsRequest>,
    ) -> Result<Response<GetIndicatorsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let asked = request.into_inner();
        let period = params::period(&asked.period)?;
        let stations = self.stations(&caller, asked.stations)?;
        let table = self.read(move |p| p.indicators(period, &stations)).await?;
        Ok(Response::new(table.into()))
    }

    async fn get_caseload(
        &self,
        request: Request<GetCaseloadRequest>,
    ) -> Result<Response<GetCaseloadResponse>, Status> {
        let caller = auth::caller(&request)?;
        let stations = self.stations(&caller, request.into_inner().stations)?;
        let caseload = self.read(move |p| p.caseload(&stations)).await?;
        Ok(Response::new(caseload.into()))
    }

    async fn get_overdue(
        &self,
        request: Request<GetOverdueRequest>,
    ) -> Result<Response<GetOverdueResponse>, Status> {
        let caller = auth::caller(&request)?;
        let asked = request.into_inner();
        let as_of = params::as_of(&asked.as_of)?;
        let limit = params::OVERDUE_CASES.of(asked.limit.into())?;
        let stations = self.stations(&caller, asked.stations)?;
        let list = self
            .read(move |p| p.overdue(as_of, &stations, Some(limit)))
            .await?;
        Ok(Response::new(list.into()))
    }

    async fn get_conflicts(
        &self,
        request: Request<GetConflictsRequest>,
    ) -> Result<Response<GetConflictsResponse>, Status> {
        let caller = auth::caller(&request)?;
        let stations = self.stations(&caller, request.into_inner().stations)?;
        let found = self.read(move |p| p.conflicts(&stations)).await?;
        Ok(Response::new(found.into()))
    }

    async fn get_sync_health(
        &self,
        request: Request<GetSyncHealthRequest>,
    ) -> Result<Response<GetSyncHealthResponse>, Status> {
        let caller = auth::caller(&request)?;
        let stations = self.stations(&caller, request.into_inner().stations)?;
        let health = self.read(move |p| p.sync_health(&stations)).await?;
        Ok(Response::new(health.into()))
    }

    async fn get_quarantine(
        &self,
        request: Request<GetQuarantineRequest>,
    ) -> Result<Response<GetQuarantineResponse>, Status> {
        let caller = auth::caller(&request)?;
        let asked = request.into_inner();
        let max = params::QUARANTINE_EVENTS.of(asked.max_events.into())?;
        let stations = self.stations(&caller, asked.stations)?;
        let list = self.read(move |p| p.quarantine(&stations, max)).await?;
        Ok(Response::new(list.into()))
    }

    async fn get_case_timeline(
        &self,
        request: Request<GetCaseTimelineRequest>,
    ) -> Result<Response<GetCaseTimelineResponse>, Status> {
        let caller = auth::caller(&request)?;
        let case_id = validate::uuid16("case_id", &request.into_inner().case_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let timeline = self.read(move |p| p.case_timeline(case_id)).await?;
        auth::authorize_case(&caller, case_id, &timeline.station_code)?;
        Ok(Response::new(timeline.into()))
    }
}
