//! The station relay: a station PC that serves its station's phones over
//! the LAN or hotspot with the same `station.v1.Sync` service as the city
//! hub, keeps their signed batches on its own disk ("saved at the
//! station"), serves them the station's stream so colleagues see each
//! other's entries with the uplink down, and forwards everything to the hub
//! when the uplink is up, handing the phones the hub's acknowledgements
//! ("received by the city") as they come.
//!
//! # Layout
//!
//! - the relay's log is a hub store ([`station_hub::store::HubStore`]) in
//!   `DATA/log`, sealed under the relay's key (`DATA.key` beside the folder
//!   unless another is given), durable with group-committed fsyncs: the
//!   same code that verifies, stores and serves a station's events on the
//!   hub does so here, with the rules of [`station_hub::auth`];
//! - [`gate`]: who may use it (the station's device and relay tokens the
//!   hub listed, see its doc for what a hostile device on the LAN can and
//!   cannot do);
//! - [`uplink`]: forwarding and pulling through the agent's sync machine,
//!   to the hub or to another relay of the station;
//! - [`state`]: what the relay knows of the hub (`DATA/relay.json`);
//! - `advertise` (feature `mdns`, on by default): the relay advertised on
//!   the LAN with mDNS while it serves.
//!
//! Dependencies point one way: the relay uses the agent's sync machine and
//! the hub's store and service; neither knows of it.
//!
//! Invariants: a phone's push is acknowledged only once durable on the
//! relay; everything acknowledged is forwarded until the hub holds it
//! (kill -9 at any point sends again what may not have arrived, and the hub
//! ignores what it holds); nothing is forwarded that the phone did not sign.

#[cfg(feature = "mdns")]
pub mod advertise;
pub mod gate;
pub mod state;
pub mod uplink;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use station_agent::sync::SyncOptions;
use station_hub::server::{ServerOptions, SyncService};
use station_hub::store::{HubError, HubStore, MigrationOptions, StoreKey};
use tokio::net::TcpListener;

use crate::gate::PhoneGate;
use crate::state::{StateError, StateFile};
use crate::uplink::{Uplink, UplinkError};

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// The relay's data folder: `log/` and `relay.json`.
    pub data: PathBuf,
    /// The station it serves.
    pub station_code: String,
    /// The hub, or another relay of the station it forwards through:
    /// address, relay token, TLS trust.
    pub hub: SyncOptions,
    /// How the phones' side is served (TLS, bounds, disk reserve).
    pub server: ServerOptions,
    /// The key of the relay's store.
    pub key: StoreKey,
    /// A round of the uplink starts this often, and right after phones push.
    pub interval: Duration,
    /// Called with how many device tokens the relay serves whenever the
    /// hub's list of the station's devices changes it.
    pub on_devices: Option<fn(usize)>,
}

/// Why the relay could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The station code is not one.
    #[error("station: {0}")]
    Station(String),
    /// The data folder could not be made.
    #[error("{}: {source}", path.display())]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The store failed to open.
    #[error(transparent)]
    Store(#[from] HubError),
    /// The state file failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The uplink's settings are unusable.
    #[error(transparent)]
    Uplink(#[from] UplinkError),
    /// Serving the phones failed.
    #[error(transparent)]
    Serve(#[from] station_hub::server::ServeError),
    /// A task of the relay did not run to its end.
    #[error("a task of the relay failed")]
    Task(#[from] tokio::task::JoinError),
}

/// An open relay: its store and state.
#[derive(Debug)]
pub struct Relay {
    /// The relay's log.
    store: Arc<HubStore>,
    /// What it knows of the hub.
    state: Arc<StateFile>,
    /// How it runs.
    options: RelayOptions,
}

fn make_folder(path: &Path) -> Result<(), RelayError> {
    std::fs::create_dir_all(path).map_err(|source| RelayError::Folder {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| RelayError::Folder {
                path: path.to_path_buf(),
                source,
            },
        )?;
    }
    Ok(())
}

impl Relay {
    /// Opens (or makes) the relay's folder.
    ///
    /// # Errors
    /// A bad station code, a folder of another station, a store that does
    /// not open (wrong key, another process holds it).
    pub async fn open(options: RelayOptions) -> Result<Self, RelayError> {
        station_proto::validate::station_code("station", &options.station_code)
            .map_err(|e| RelayError::Station(e.to_string()))?;
        make_folder(&options.data)?;
        let state = Arc::new(StateFile::open(&options.data, &options.station_code)?);
        let dir = options.data.join("log");
        let key = options.key.clone();
        let store = tokio::task::spawn_blocking(move || {
            HubStore::open_keyed(&dir, 32 * 1024 * 1024, MigrationOptions::default(), key)
        })
        .await??;
        Ok(Self {
            store: Arc::new(store),
            state,
            options,
        })
    }

    /// The relay's log.
    pub fn store(&self) -> &Arc<HubStore> {
        &self.store
    }

    /// What the relay knows of the hub.
    pub fn state(&self) -> &Arc<StateFile> {
        &self.state
    }

    /// Serves the phones on `listener` and runs the uplink until `shutdown`
    /// completes; then the calls in flight finish and the store is synced.
    ///
    /// # Errors
    /// The uplink's settings are unusable, serving failed, or the final
    /// sync of the store failed. A failing uplink round does not stop the
    /// relay: it is logged and tried again.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), RelayError> {
        let clock = Arc::clone(&self.options.server.clock);
        let mut uplink = Uplink::with_clock(
            Arc::clone(&self.store),
            Arc::clone(&self.state),
            &self.options.hub,
            Arc::clone(&clock),
        )?;
        let service = SyncService::new(Arc::clone(&self.store))
            .with_clock(clock)
            .with_disk_reserve(Arc::new(station_hub::guard::DiskReserve::new(
                self.store.dir(),
                self.options.server.disk_reserve,
            )))
            .relaying(Arc::clone(&self.state) as Arc<dyn station_hub::server::Upstream>);
        let gate = PhoneGate::new(Arc::clone(&self.store), &self.options.station_code);
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let interval = self.options.interval;
        let on_devices = self.options.on_devices;
        let mut grown = self.store.subscribe();
        let forwarding = tokio::spawn(async move {
            loop {
                let round = uplink.round().await;
                if let (Ok(report), Some(announce)) = (&round, on_devices)
                    && let Some(devices) = report.devices
                {
                    announce(devices);
                }
                match round {
                    Ok(report) if report.forwarded > 0 || report.pulled > 0 => {
                        tracing::info!(
                            forwarded = report.forwarded,
                            packed_against_previous = report.packed_against_previous,
                            pulled = report.pulled,
                            "uplink round"
                        );
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "uplink round failed; trying again"),
                }
                tokio::select! {
                    _ = stop_rx.wait_for(|stop| *stop) => return,
                    _ = tokio::time::sleep(interval) => {}
                    _ = grown.changed() => {}
                }
            }
        });
        let served = station_hub::server::serve_sync(
            listener,
            service,
            gate,
            &self.options.server,
            shutdown,
        )
        .await;
        stop_tx.send_replace(true);
        forwarding.abort();
        let _ = forwarding.await;
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.sync()).await??;
        served?;
        Ok(())
    }
}
