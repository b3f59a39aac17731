//! The hub's gRPC side: the `station.v1.Sync` service over the hub's log
//! (`sync`) and the bureau's `station.v1.Query` service over the
//! projections (`query`), both behind the token check of [`crate::auth`],
//! with the standard health and reflection services beside them, in plain
//! text or TLS. Their bounds are in `limits`, the status of each error in
//! `status`. The hub as a whole (this side, HTTP, the administration
//! socket, the projector) is served by [`crate::serve`].
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

use station_proto::v1::query_server::QueryServer;
use station_proto::v1::sync_server::SyncServer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_stream::StreamExt as _;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;

use crate::guard::{self, Admission, ConnectionLimits, DiskReserve};

use crate::auth::Authenticator;
use crate::config::{ConfigError, HubConfig};
use crate::projections::{ProjectionError, Projections};
use crate::store::HubError;

mod limits;
mod packed;
mod query;
mod status;
mod sync;
pub mod transfer_feed;
mod wire;

pub use limits::{
    MAX_MESSAGE_BYTES, MAX_PULL_BYTES, MAX_PULL_EVENTS, MAX_PULL_WAIT, MAX_PUSH_EVENTS,
};
pub use query::QueryService;
pub use status::status_of;
pub use sync::{
    MAX_DIRECTORY_LINES, PULL_LEVEL, PagesCompressed, SharedHubLog, SharedLog, SyncService,
    Upstream,
};

/// How long shutdown waits for calls in flight by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

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
        identity.acceptor(&[])?;
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

    /// A TLS acceptor for this identity offering the application protocols
    /// `alpn` (`h2` for gRPC, `http/1.1` for the HTTP side).
    pub(crate) fn acceptor(&self, alpn: &[&[u8]]) -> Result<TlsAcceptor, ServeError> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let refused = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
        let certs = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refused(&e))?;
        if certs.is_empty() {
            return Err(ServeError::Tls("no certificate in the PEM file".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| refused(&e))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| refused(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| refused(&e))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsAcceptor::from(Arc::new(config)))
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
    /// The bounds of each listener's connections.
    pub limits: ConnectionLimits,
    /// Bytes kept free on the store's disk: below it, pushes are refused
    /// (retryably) and health says `NOT_SERVING` for `Sync`; 0 turns the
    /// check off.
    pub disk_reserve: u64,
    /// Reverse proxies in front of the HTTP side, whose `X-Forwarded-For`
    /// names the client (for the per-address limits and the read audit);
    /// with any, session cookies are `Secure`, as the proxy speaks TLS.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Where the Sync service reads "now" (receipt times, last contact,
    /// clock skew): the system clock, unless a simulation gives its own.
    pub clock: station_agent::clock::SharedClock,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            tls: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            config: None,
            limits: ConnectionLimits::default(),
            disk_reserve: crate::guard::DEFAULT_DISK_RESERVE,
            trusted_proxies: Vec::new(),
            clock: station_agent::clock::system(),
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

/// Serves `station.v1.Sync` and `station.v1.Query` (token checked),
/// `grpc.health.v1.Health` and server reflection (both open) on `listener`
/// until `shutdown` completes. Then it stops accepting connections, ends
/// long polls and lets the calls in flight finish (at most
/// [`ServerOptions::shutdown_grace`]). The projector, the other listeners and
/// the final sync are [`crate::Hub::serve`]'s. With `shared`, `Sync` decides
/// on that log and `projections`' store is this front-end's mirror of it.
///
/// A call still running after the grace period is not waited for: a push it
/// stored is durable all the same (each push waits for its own sync), only its
/// acknowledgement may not reach the device, which sends the batch again.
pub(crate) async fn serve_grpc(
    listener: TcpListener,
    projections: Arc<Projections>,
    shared: Option<SharedLog>,
    options: &ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().ok();
    let store = Arc::clone(projections.store());
    // One authenticator for both services: they share the limits on refused
    // calls.
    let authenticator = Authenticator::new(Arc::clone(&store));
    let query = InterceptedService::new(
        QueryService::new(Arc::clone(&projections)).into_server(),
        authenticator.clone(),
    );
    let disk = Arc::new(DiskReserve::new(store.dir(), options.disk_reserve));
    let mut service = SyncService::new(Arc::clone(&store))
        .with_disk_reserve(Arc::clone(&disk))
        .with_clock(Arc::clone(&options.clock))
        .with_directory(Arc::clone(&projections));
    if let Some(log) = shared {
        service = service.over_shared_log(log);
    }
    let stopping = service.clone();
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<SyncServer<SyncService>>()
        .await;
    health_reporter
        .set_serving::<QueryServer<QueryService>>()
        .await;
    let disk_health = tokio::spawn(follow_disk(
        disk,
        health_reporter.clone(),
        stopping.stopping(),
    ));
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(station_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let sync = InterceptedService::new(service.into_server(), authenticator);
    let tls = match &options.tls {
        Some(tls) => Some(tls.acceptor(&[b"h2"])?),
        None => None,
    };
    let limits = &options.limits;
    let router = Server::builder()
        .max_concurrent_streams(limits.max_streams)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .http2_max_header_list_size(64 * 1024)
        .max_connection_age(limits.max_connection_age)
        .max_connection_age_grace(MAX_PULL_WAIT + options.shutdown_grace)
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(sync)
        .add_service(query);
    tracing::info!(
        ?addr,
        tls = options.tls.is_some(),
        max_connections = limits.max_connections,
        "hub listening"
    );

    let mut stopped = stopping.stopping();
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
    // Connections are admitted under the listener's cap, with TLS and the
    // HTTP/2 preface bounded by the handshake timeout (and TCP_NODELAY: a
    // small answer would otherwise wait for the delayed ACK of the previous
    // segment, about 40 ms on Linux).
    let incoming = tokio_stream::wrappers::ReceiverStream::new(guard::admit(
        listener,
        Admission {
            name: "grpc",
            limits: limits.clone(),
            tls,
            preface: guard::HTTP2_OPENING_BYTES,
        },
    ))
    .map(Ok::<_, std::io::Error>);
    let grace = options.shutdown_grace;
    let grace_ended = async move {
        if stopped.wait_for(|stopping| *stopping).await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(grace).await;
    };
    let served = tokio::select! {
        served = router.serve_with_incoming_shutdown(incoming, signal) => {
            served.map_err(ServeError::from)
        }
        () = grace_ended => {
            tracing::warn!(?grace, "calls still in flight after the grace period: not waiting for them");
            Ok(())
        }
    };
    disk_health.abort();
    served
}

/// Serves `station.v1.Sync` alone, as a station relay serves it to its
/// phones: `service` (a [`SyncService::relaying`] over the relay's own store)
/// behind `gate`, which puts a [`crate::auth::Caller`] on each call, with
/// the hub's TLS, connection bounds and keepalives, until `shutdown`
/// completes; then long polls end and the calls in flight finish (at most
/// [`ServerOptions::shutdown_grace`]).
///
/// # Errors
/// [`ServeError::Tls`] for an identity rustls refuses, transport errors.
pub async fn serve_sync<G>(
    listener: TcpListener,
    service: SyncService,
    gate: G,
    options: &ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError>
where
    G: tonic::service::Interceptor + Clone + Send + Sync + 'static,
{
    let addr = listener.local_addr().ok();
    let stopping = service.clone();
    let sync = InterceptedService::new(service.into_server(), gate);
    let tls = match &options.tls {
        Some(tls) => Some(tls.acceptor(&[b"h2"])?),
        None => None,
    };
    let limits = &options.limits;
    let router = Server::builder()
        .max_concurrent_streams(limits.max_streams)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .http2_max_header_list_size(64 * 1024)
        .max_connection_age(limits.max_connection_age)
        .max_connection_age_grace(MAX_PULL_WAIT + options.shutdown_grace)
        .add_service(sync);
    tracing::info!(?addr, tls = options.tls.is_some(), "sync service listening");
    let mut stopped = stopping.stopping();
    let signal = async move {
        shutdown.await;
        stopping.begin_shutdown();
    };
    let incoming = tokio_stream::wrappers::ReceiverStream::new(guard::admit(
        listener,
        Admission {
            name: "grpc",
            limits: limits.clone(),
            tls,
            preface: guard::HTTP2_OPENING_BYTES,
        },
    ))
    .map(Ok::<_, std::io::Error>);
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
        () = grace_ended => Ok(()),
    }
}

/// Keeps `Sync`'s health in step with the disk reserve until the hub begins
/// to stop: `NOT_SERVING` while pushes are refused for lack of space,
/// `SERVING` again once space returns. The free space is read every
/// [`guard::DISK_CHECK_INTERVAL`] as well as at each push, so that health
/// turns back without a push. Once stopping, it leaves `NOT_SERVING`.
async fn follow_disk(
    disk: Arc<DiskReserve>,
    health: tonic_health::server::HealthReporter,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let mut low = disk.watch();
    let mut tick = tokio::time::interval(guard::DISK_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let _ = disk.check();
            }
            changed = low.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            stopped = stopping.wait_for(|stopping| *stopping) => {
                let _ = stopped;
                return;
            }
        }
        let is_low = *low.borrow_and_update();
        if is_low != shown {
            shown = is_low;
            if is_low {
                health.set_not_serving::<SyncServer<SyncService>>().await;
            } else {
                health.set_serving::<SyncServer<SyncService>>().await;
            }
        }
        if *stopping.borrow() {
            health.set_not_serving::<SyncServer<SyncService>>().await;
            return;
        }
    }
}
