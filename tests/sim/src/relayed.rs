//! A station relay in the simulated district: one township's station PC
//! serves its phones on the station's LAN and forwards their entries to the
//! hub through a 2G uplink of its own, which is down for a stretch of the
//! simulated days. While it is down the phones go on saving at the station
//! and seeing each other's entries; once it is back the relay forwards the
//! backlog, and the dashboard shows the path (经工作站中继) and the catch-up
//! as lag.
//!
//! Layout: `relays/<station>/` is the relay's data folder (its key file
//! beside it), `relays/<station>.token` the relay token the hub issued it,
//! readable by the owner only.
//!
//! Invariants: the relay serves with the simulation's clock, so what it
//! tells the phones and the hub follows the simulated day; the phones list
//! the relay first and their own link to the hub after it, so a phone the
//! relay does not serve yet still syncs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::NaiveDate;
use station_agent::clock::SharedClock;
use station_agent::sync::SyncOptions;
use station_hub::server::ServerOptions;
use station_hub::store::{HubStore, StoreKey};
use station_proto::ids::Uuid;
use station_relay::{Relay, RelayError, RelayOptions};
use tokio::net::TcpListener;

use crate::weaklink::{LinkProfile, WeakLink};

/// How long the relay may take to learn its phones, or to forward what they
/// saved once its uplink is up, before the demo gives up.
const PATIENCE: Duration = Duration::from_secs(300);

/// A running station relay and its uplink.
#[derive(Debug)]
pub struct StationRelay {
    /// The station it serves.
    station: String,
    /// Where its phones reach it.
    url: String,
    /// The relay's link to the hub.
    uplink: WeakLink,
    /// The days its uplink is down: `from..to`.
    down: (NaiveDate, NaiveDate),
    /// The relay's own log.
    store: Arc<HubStore>,
    /// Stops the relay.
    stop: tokio::sync::oneshot::Sender<()>,
    /// The relay serving and forwarding.
    task: tokio::task::JoinHandle<Result<(), RelayError>>,
}

impl StationRelay {
    /// Opens (or makes) the relay of `station` under `data/relays/`,
    /// enrolling it at the hub the first time, and starts it: its phones'
    /// side on a loopback port, its uplink through a weak link of `profile`
    /// to the hub at `hub_addr`, down on the days `down` (`from..to`).
    ///
    /// # Errors
    /// Storage errors, a busy port, a relay that does not open.
    pub async fn start(
        data: &Path,
        station: &str,
        hub: &Arc<HubStore>,
        hub_addr: std::net::SocketAddr,
        profile: LinkProfile,
        clock: SharedClock,
        down: (NaiveDate, NaiveDate),
    ) -> anyhow::Result<Self> {
        let folder = data.join("relays").join(station);
        std::fs::create_dir_all(data.join("relays"))?;
        let token = relay_token(
            &data.join("relays").join(format!("{station}.token")),
            || {
                let token = station_hub::auth::enroll_relay(hub, station, "站点中继 demo")?;
                hub.sync()?;
                Ok(token.bearer)
            },
        )?;
        let uplink = WeakLink::start(hub_addr, profile).await?;
        let mut options = SyncOptions::new(format!("http://{}", uplink.local_addr()), Some(token));
        options.retry_budget = Duration::from_secs(20);
        options.long_poll = Duration::ZERO;
        let relay = Relay::open(RelayOptions {
            key: StoreKey {
                key: crate::demo::demo_key(&folder)?,
                ..StoreKey::default()
            },
            data: folder,
            station_code: station.to_string(),
            hub: options,
            server: ServerOptions {
                disk_reserve: 0,
                shutdown_grace: Duration::from_secs(2),
                clock,
                ..ServerOptions::default()
            },
            interval: Duration::from_secs(1),
            on_devices: None,
        })
        .await
        .context("cannot open the station relay")?;
        let store = Arc::clone(relay.store());
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(relay.serve(listener, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            station: station.to_string(),
            url,
            uplink,
            down,
            store,
            stop,
            task,
        })
    }

    /// Waits until the relay has heard from the hub of each of `tokens`
    /// (its phones' bearer tokens), so that each phone is served by it from
    /// its first sync.
    ///
    /// # Errors
    /// A token not of a token's form, storage errors, or a relay that has
    /// not heard of them within [`PATIENCE`].
    pub async fn serves(&self, tokens: &[String]) -> anyhow::Result<()> {
        let mut wanted = Vec::with_capacity(tokens.len());
        for token in tokens {
            let (id, _) = station_hub::auth::parse_bearer(Some(&format!("Bearer {token}")))?;
            wanted.push(id);
        }
        let started = Instant::now();
        loop {
            let mut known = true;
            for token in &wanted {
                known &= self.store.token(token)?.is_some();
            }
            if known {
                return Ok(());
            }
            if started.elapsed() > PATIENCE {
                bail!("the station relay never heard of its station's devices from the hub");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The station it serves.
    pub fn station(&self) -> &str {
        &self.station
    }

    /// The address list a phone of its station syncs with: the relay first,
    /// then `direct`, the phone's own way to the hub.
    pub fn hub_url(&self, direct: &str) -> String {
        format!("{},{direct}", self.url)
    }

    /// The days its uplink is down: `from..to`.
    pub fn down(&self) -> (NaiveDate, NaiveDate) {
        self.down
    }

    /// Whether its uplink is up on `day`.
    pub fn uplink_up_on(&self, day: NaiveDate) -> bool {
        !(self.down.0..self.down.1).contains(&day)
    }

    /// Takes the uplink down or up for `day`.
    pub fn follow_uplink(&self, day: NaiveDate) {
        self.uplink.control().set_online(self.uplink_up_on(day));
    }

    /// Brings the uplink up for good (the last round).
    pub fn uplink_back(&self) {
        self.uplink.control().set_online(true);
    }

    /// Waits until the hub holds each of `heads` (an origin and the seq its
    /// device has reached), which the relay forwards once its uplink is up.
    ///
    /// # Errors
    /// The hub's store failed, or the relay did not forward within
    /// [`PATIENCE`].
    pub async fn forwarded(&self, hub: &HubStore, heads: &[(Uuid, u64)]) -> anyhow::Result<()> {
        let mut grown = hub.subscribe();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let mut held = true;
            for (origin, head) in heads {
                held &= hub.origin(*origin)?.durable_through >= *head;
            }
            if held {
                return Ok(());
            }
            // A relay round ends with the hub's log grown; a resend of what
            // the hub holds does not grow it, so the wait is also bounded.
            match tokio::time::timeout_at(
                deadline.min(tokio::time::Instant::now() + Duration::from_secs(1)),
                grown.changed(),
            )
            .await
            {
                Ok(Err(_)) => bail!("the hub stopped"),
                Ok(Ok(())) | Err(_) if tokio::time::Instant::now() < deadline => {}
                _ => bail!(
                    "the station relay of {} did not forward its phones' entries",
                    self.station
                ),
            }
        }
    }

    /// Stops the relay (its store synced) and its uplink.
    ///
    /// # Errors
    /// The relay failed.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await??;
        self.uplink.shutdown().await;
        Ok(())
    }
}

/// The relay token kept at `path`, or a new one from `enroll` written there
/// durably, readable by the owner only.
fn relay_token(
    path: &PathBuf,
    enroll: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(token) => Ok(token.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let token = enroll()?;
            crate::demo::write_private(path, token.as_bytes())?;
            Ok(token)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}
