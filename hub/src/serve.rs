//! The hub as served: one entry, [`serve`]`(listeners, options, shutdown)`,
//! that runs everything a hub is while it serves and stops it all together.
//!
//! | part | on | started when |
//! | --- | --- | --- |
//! | `Sync` and `Query`, health, reflection | [`Listeners::grpc`], plain or TLS | always |
//! | the bureau's HTTP side | [`Listeners::http`] | that listener is given |
//! | the administration socket | `DATA/admin/hub.sock` | [`Hub::open`] could bind it |
//! | the projector ([`Projections::follow`]) | the blocking pool | always |
//! | the feed of a front-end's mirror (`frontend::Frontend::feed`) | a task | `[log] engine = "jetstream"` |
//!
//! With `[log] engine = "jetstream"` (cargo feature `jetstream`) the hub is
//! a front-end of the deployment's JetStream log: `Sync` decides on that
//! log, and the data folder holds the front-end's mirror of it, its
//! projections and its copy of the token records (see `crate::frontend`).
//!
//! The caller binds the listeners (tests bind `127.0.0.1:0` and read the
//! addresses back), so a busy address is refused before any data is
//! touched. [`Hub::open`] is the first half of [`serve`] for callers that
//! use the store before serving (to enroll devices) or print where the hub
//! is (the `station-hub` command line): it opens the store and the
//! projections and binds the administration socket; [`Hub::serve`] is the
//! second. [`rebuild`] is what a stopped hub's projections need
//! (`station-hub rebuild`).
//!
//! Invariants: [`Hub::serve`] returns only once every part has stopped: the
//! gRPC calls in flight have finished (or the grace period ran out), the HTTP
//! requests in flight have been answered, the administration socket is
//! removed, the projector has finished its current batch, and then the store
//! is synced. Any part that ends on its own (an HTTP listener that fails,
//! say) stops the others. The administration socket is never bound by a hub
//! that does not hold the store's lock.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{self, AdminSocket};
use crate::config::HubConfig;
use crate::projections::{CatchUp, Projections};
use crate::server::{self, ServeError, ServerOptions};
use crate::store::{HubStore, MigrationOptions, StoreKey};

/// The sockets a hub serves on, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// `station.v1.Sync` and `station.v1.Query`, with health and reflection:
    /// what devices and the bureau's programs call.
    pub grpc: TcpListener,
    /// The bureau's HTTP side (JSON, ledgers, dashboard), in TLS when the
    /// hub has a TLS identity, else plain text; no HTTP side when `None`.
    pub http: Option<TcpListener>,
}

impl Listeners {
    /// The gRPC listener alone.
    pub fn grpc(grpc: TcpListener) -> Self {
        Self { grpc, http: None }
    }
}

/// Where the hub's data is, and how it serves.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// The data folder: the store, and the administration socket in it.
    pub data: PathBuf,
    /// sled's page cache, in bytes: what a hub keeps of the log in memory.
    pub cache_capacity: u64,
    /// TLS, grace period, and the configuration whose roster the store
    /// admits stations from and `Query` answers with.
    pub server: ServerOptions,
    /// The key of the store's data key (`station-hub` always gives one).
    pub key: StoreKey,
}

/// A hub whose store and projections are open, ready to serve.
#[derive(Debug)]
pub struct Hub {
    /// The projections, and through them the store they are built from.
    projections: Arc<Projections>,
    /// TLS and grace period.
    options: ServerOptions,
    /// The administration socket, bound but not answering yet; `None` when it
    /// could not be bound (a data folder whose path is too long for a
    /// socket, say) or the hub was made over a store it did not open. With
    /// the roster a device's station must be on to be enrolled.
    admin: Option<(AdminSocket, Arc<HubConfig>)>,
    /// The shared log, when the hub is a front-end of one.
    #[cfg(feature = "jetstream")]
    frontend: Option<Arc<crate::frontend::Frontend>>,
}

impl Hub {
    /// Opens the store in `options.data` with the roster of
    /// `options.server.config` (the built-in one when `None`), its
    /// projections, and binds the administration socket. Without the socket
    /// the hub still serves (and says why in the log): tokens are then
    /// managed while it is stopped.
    ///
    /// # Errors
    /// [`ServeError::Config`] when the built-in configuration does not load,
    /// [`ServeError::Store`] when the store cannot be opened (another hub
    /// holds it, a format this hub does not know),
    /// [`ServeError::Projections`].
    pub async fn open(options: HubOptions) -> Result<Hub, ServeError> {
        let HubOptions {
            data,
            cache_capacity,
            mut server,
            key,
        } = options;
        let config = match server.config.clone() {
            Some(config) => config,
            None => Arc::new(HubConfig::builtin()?),
        };
        server.config = Some(Arc::clone(&config));
        let folder = data.clone();
        let roster = config.station_codes();
        let skew = config.sync.max_clock_skew_ms();
        let open = move || {
            HubStore::open_keyed(
                &folder,
                cache_capacity,
                MigrationOptions::default(),
                key.clone(),
            )
            .map(|store| Arc::new(store.with_roster(roster.clone()).with_max_clock_skew(skew)))
        };
        #[cfg(not(feature = "jetstream"))]
        if config.log.engine == crate::config::LogEngine::Jetstream {
            return Err(ServeError::Config(crate::config::ConfigError::Invalid(
                "log.engine: this station-hub was built without the `jetstream` feature".into(),
            )));
        }
        #[cfg(feature = "jetstream")]
        let (store, frontend) = if config.log.engine == crate::config::LogEngine::Jetstream {
            let rules = config.log.clone();
            let roster = config.station_codes();
            let (store, frontend) = tokio::task::spawn_blocking(move || {
                let frontend = crate::frontend::Frontend::open(&rules, None, roster)?;
                let mut store = open()?;
                if frontend.join(&store)? {
                    // The district secret is read when the store opens.
                    drop(store);
                    store = open()?;
                    frontend.join(&store)?;
                }
                Ok::<_, crate::store::HubError>((store, frontend))
            })
            .await??;
            (store, Some(Arc::new(frontend)))
        } else {
            (tokio::task::spawn_blocking(open).await??, None)
        };
        #[cfg(not(feature = "jetstream"))]
        let store = tokio::task::spawn_blocking(open).await??;
        let mut hub = Hub::with_store(store, server).await?;
        #[cfg(feature = "jetstream")]
        {
            hub.frontend = frontend;
        }
        let admin_path = admin::socket_path(&data);
        match AdminSocket::bind(admin_path.clone()) {
            Ok(socket) => hub.admin = Some((socket, config)),
            Err(error) => tracing::warn!(%error, path = %admin_path.display(),
                "no admin socket: enroll, revoke and tokens need the hub stopped"),
        }
        Ok(hub)
    }

    /// A hub over a store the caller opened (its roster left as it is), with
    /// projections opened with `options.config`, else the built-in roster;
    /// no administration socket.
    ///
    /// # Errors
    /// [`ServeError::Config`], [`ServeError::Projections`].
    pub async fn with_store(
        store: Arc<HubStore>,
        options: ServerOptions,
    ) -> Result<Hub, ServeError> {
        let config = match options.config.clone() {
            Some(config) => config,
            None => Arc::new(HubConfig::builtin()?),
        };
        let projections =
            tokio::task::spawn_blocking(move || Projections::open(store, config)).await??;
        Ok(Hub::with_projections(Arc::new(projections), options))
    }

    /// A hub over projections the caller opened (and may keep, to wait for
    /// the projector with [`Projections::wait_through`]); `options.config`
    /// is not read: the projections carry theirs. No administration socket.
    pub fn with_projections(projections: Arc<Projections>, options: ServerOptions) -> Hub {
        projections.use_clock(Arc::clone(&options.clock));
        Hub {
            projections,
            options,
            admin: None,
            #[cfg(feature = "jetstream")]
            frontend: None,
        }
    }

    /// The hub's store: its log and tokens.
    pub fn store(&self) -> &Arc<HubStore> {
        self.projections.store()
    }

    /// The projections the hub serves and its projector keeps up to date.
    pub fn projections(&self) -> &Arc<Projections> {
        &self.projections
    }

    /// Where the administration socket is, when the hub has one.
    pub fn admin_socket(&self) -> Option<&Path> {
        self.admin.as_ref().map(|(socket, _)| socket.path())
    }

    /// Serves on `listeners` until `shutdown` completes (or a part ends on
    /// its own), then stops every part and syncs the store: see the module's
    /// invariants.
    ///
    /// # Errors
    /// [`ServeError::Tls`] for a refused identity, [`ServeError::Transport`]
    /// and [`ServeError::Http`] for listeners that failed,
    /// [`ServeError::Store`] when the final sync fails.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let Hub {
            projections,
            options,
            admin,
            #[cfg(feature = "jetstream")]
            frontend,
        } = self;
        let store = Arc::clone(projections.store());
        // Turns true when any part stops: every other part then stops too.
        let (stop, _) = watch::channel(false);
        let stop = Arc::new(stop);
        let until_stopped = |stop: &watch::Sender<bool>| {
            let mut stopped = stop.subscribe();
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }
        };

        let (stop_projector, projector_stopped) = tokio::sync::oneshot::channel::<()>();
        let projector = tokio::spawn(Arc::clone(&projections).follow(async move {
            let _ = projector_stopped.await;
        }));
        let admin = admin.map(|(socket, config)| {
            tokio::spawn(socket.serve(Arc::clone(&store), config, until_stopped(&stop)))
        });
        // The HTTP side speaks TLS with the gRPC side's identity.
        let http_tls = match (&listeners.http, &options.tls) {
            (Some(_), Some(tls)) => Some(tls.acceptor(&[b"http/1.1"])?),
            _ => None,
        };
        let http = listeners.http.map(|listener| {
            let served = crate::http::serve_http(
                listener,
                Arc::clone(&projections),
                options.limits.clone(),
                http_tls,
                options.trusted_proxies.clone().into(),
                until_stopped(&stop),
            );
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let served = served.await;
                stop.send_replace(true);
                served
            })
        });
        #[cfg(feature = "jetstream")]
        let (shared, feed): (Option<server::SharedLog>, _) = match frontend {
            Some(frontend) => (
                Some(Arc::clone(frontend.log()) as server::SharedLog),
                Some(tokio::spawn(
                    frontend.feed(Arc::clone(&store), until_stopped(&stop)),
                )),
            ),
            None => (None, None),
        };
        #[cfg(not(feature = "jetstream"))]
        let shared: Option<server::SharedLog> = None;
        let grpc_stopped = until_stopped(&stop);
        let served =
            server::serve_grpc(listeners.grpc, projections, shared, &options, async move {
                tokio::select! {
                    () = shutdown => {}
                    () = grpc_stopped => {}
                }
            })
            .await;
        stop.send_replace(true);

        let http = match http {
            Some(task) => task.await.map(|served| served.map_err(ServeError::Http)),
            None => Ok(Ok(())),
        };
        let admin = match admin {
            Some(task) => task.await,
            None => Ok(()),
        };
        #[cfg(feature = "jetstream")]
        if let Some(feed) = feed {
            let _ = feed.await;
        }
        let _ = stop_projector.send(());
        let projected = projector.await;
        let synced = tokio::task::spawn_blocking(move || store.sync()).await;
        served?;
        http??;
        admin?;
        projected?;
        synced??;
        tracing::info!("hub stopped, store synced");
        Ok(())
    }
}

/// Opens the hub of `options` ([`Hub::open`]) and serves it on `listeners`
/// until `shutdown` completes ([`Hub::serve`]).
///
/// # Errors
/// Those of [`Hub::open`] and [`Hub::serve`].
pub async fn serve(
    listeners: Listeners,
    options: HubOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    Hub::open(options).await?.serve(listeners, shutdown).await
}

/// Clears the projections of the hub store in `data` and rebuilds them from
/// its log, then syncs the store: `station-hub rebuild`. A hub serving the
/// folder holds the store's lock, so this is refused while it runs. The
/// projections' state does not depend on the configuration: the built-in one
/// opens them.
///
/// # Errors
/// [`ServeError::Store`] when the store cannot be opened (a hub serves it,
/// say) or synced, [`ServeError::Config`], [`ServeError::Projections`].
pub fn rebuild(data: &Path, cache_capacity: u64, key: StoreKey) -> Result<CatchUp, ServeError> {
    let store = Arc::new(HubStore::open_keyed(
        data,
        cache_capacity,
        MigrationOptions::default(),
        key,
    )?);
    let projections = Projections::open(Arc::clone(&store), Arc::new(HubConfig::builtin()?))?;
    let done = projections.rebuild()?;
    drop(projections);
    store.sync()?;
    Ok(done)
}

/// The hub's gRPC side over `store` alone, in plain text on `listener`, until
/// `shutdown` completes; then it finishes the calls in flight, syncs the
/// store and returns.
///
/// # Errors
/// See [`run_with`].
pub async fn run(
    listener: TcpListener,
    store: Arc<HubStore>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    run_with(listener, store, ServerOptions::default(), shutdown).await
}

/// The hub's gRPC side over `store` alone, without HTTP or administration
/// socket: [`Hub::with_store`] served on `listener` (see [`Hub::serve`]). The
/// projections are opened with `options.config`, else the built-in roster;
/// the store's roster is left as the caller set it.
///
/// # Errors
/// [`ServeError::Tls`] for a refused identity, [`ServeError::Transport`],
/// [`ServeError::Store`] when the final sync fails, [`ServeError::Config`]
/// and [`ServeError::Projections`] when they cannot be opened.
pub async fn run_with(
    listener: TcpListener,
    store: Arc<HubStore>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    Hub::with_store(store, options)
        .await?
        .serve(Listeners::grpc(listener), shutdown)
        .await
}

/// [`run_with`] over projections the caller opened (and may keep, to wait
/// for the projector with [`Projections::wait_through`]); the store is
/// theirs. `options.config` is not read: the projections carry theirs.
///
/// # Errors
/// As [`run_with`].
pub async fn serve_projections(
    listener: TcpListener,
    projections: Arc<Projections>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    Hub::with_projections(projections, options)
        .serve(Listeners::grpc(listener), shutdown)
        .await
}
