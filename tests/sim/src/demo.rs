//! The simulated district, end to end: a hub on its sled store with its gRPC
//! and HTTP servers, one real agent per device, two devices per station, each
//! entering months of [`district`](crate::district) field work and syncing
//! through its own [`WeakLink`].
//!
//! Layout of the data folder:
//! - `demo.json`: the run's parameters (seed, days, last day, devices) and
//!   the bureau's token; a later run on the folder must use the same
//!   parameters, and resumes;
//! - `hub/`: the hub's store;
//! - `devices/<station>-<n>/`: each device's agent store;
//! - `relays/<station>/`: the station relay of the second station, whose
//!   phones sync through it (see [`crate::relayed`]).
//!
//! Resuming: a worker's entries are a function of the parameters, so a run
//! replays them and skips the ones its device's log already holds (entry k
//! of the worker that was saved is the log's own seq k, compared on replay).
//! Nothing is entered twice; the hub ignores what it holds already.
//!
//! Transfers between stations ([`district::plan_transfers`]) are planned
//! among the devices that sync straight to the hub every evening (not the
//! phone whose link goes down, not the relay's phones). The days are played
//! in lockstep, so a request is saved before the day of its answer is
//! planned; an entry that needs what sync brings from another station (an
//! answer, a visit to a file taken over) waits while its device syncs, once
//! the hub's projections hold every entry saved so far, and is entered
//! then: the entries, and so a resumed run's replay, do not depend on when
//! sync delivered.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use chrono::{Datelike, Days, NaiveDate};
use prost::Message as _;
use station_agent::sync::{SyncOptions, SyncReport, sync_once};
use station_agent::{Agent, AgentError, InitOptions, OpenOptions};
use station_hub::auth;
use station_hub::config::HubConfig;
use station_hub::projections::Projections;
use station_hub::projections::period::{Metric, Period};
use station_hub::server::ServerOptions;
use station_hub::store::HubStore;
use station_proto::Body;
use station_proto::ids::Uuid;
use tokio::net::TcpListener;
use tokio::sync::watch;
use unicode_width::UnicodeWidthStr as _;

use crate::clock::SimClock;
use crate::district::{self, Entry, Expect, Ledger, TransferAnswer, Worker};
use crate::relayed::StationRelay;
use crate::weaklink::{LinkProfile, WeakLink};

/// Hub page cache, bytes.
/// The key of a store of the demo: its key file beside the store's folder,
/// made with the store.
pub(crate) fn demo_key(store: &Path) -> anyhow::Result<Option<station_agent::seal::KeySource>> {
    if let Some(parent) = store.parent() {
        std::fs::create_dir_all(parent)?;
    }
    Ok(station_agent::seal::choose_key(store, None, None, true)?.key)
}

const HUB_CACHE: u64 = 64 << 20;
/// Agent page cache, bytes: a phone's.
const AGENT_CACHE: u64 = 8 << 20;

/// How a demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The data folder (created when missing).
    pub data: PathBuf,
    /// Seeds all field work and links.
    pub seed: u64,
    /// Days of field work, ending on the day of the first run.
    pub days: u32,
    /// At most this many simulated days per second of wall time (a day
    /// also lasts until every phone with a link has synced that evening);
    /// 0 does not pace.
    pub speed: f64,
    /// The stations, by code.
    pub stations: Vec<String>,
    /// Devices per station.
    pub devices: u32,
    /// The hub's gRPC address.
    pub listen: String,
    /// The dashboard's address.
    pub http: String,
    /// How every device's link behaves (its seed is varied per device).
    pub link: LinkProfile,
    /// Whether one device (the second of 亚堆乡, or of the third station)
    /// loses its link from 40% to 85% of the days.
    pub offline_device: bool,
    /// Whether the second station's phones sync through a station relay
    /// whose uplink to the hub is down from 15% to 35% of the days (in a
    /// run of at least 20 days).
    pub relay: bool,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
    /// The last day of field work of a new data folder (default: today in
    /// China); never after today.
    pub last_day: Option<NaiveDate>,
}

impl DemoOptions {
    /// The defaults: the seven Nedong stations, two devices each, 120 days at
    /// 10 days a second, 2G links that cut and stall.
    pub fn new(data: impl Into<PathBuf>) -> Self {
        Self {
            data: data.into(),
            seed: 2026,
            days: 120,
            speed: 10.0,
            stations: district::NEDONG_STATIONS
                .iter()
                .map(ToString::to_string)
                .collect(),
            devices: 2,
            listen: "127.0.0.1:7400".into(),
            http: "127.0.0.1:8080".into(),
            link: demo_link(),
            offline_device: true,
            relay: true,
            progress: false,
            last_day: None,
        }
    }
}

/// A 2G link in the field: 64 kbit/s up, 256 kbit/s down, 300 ms round trip,
/// each connection cut 5–20 s after it opens, stalls of 0.5–2 s.
pub fn demo_link() -> LinkProfile {
    LinkProfile {
        up_bytes_per_sec: 64_000 / 8,
        down_bytes_per_sec: 256_000 / 8,
        one_way_latency: Duration::from_millis(150),
        cut_every: Some((Duration::from_secs(5), Duration::from_secs(20))),
        stall_every: Some((Duration::from_secs(8), Duration::from_secs(30))),
        stall_for: (Duration::from_millis(500), Duration::from_secs(2)),
        seed: 0,
    }
}

/// What a data folder was made with; a later run must match.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Saved {
    seed: u64,
    days: u32,
    last_day: NaiveDate,
    stations: Vec<String>,
    devices: u32,
    bureau_token: String,
}

/// Running totals, shared with the progress bar.
#[derive(Debug, Default)]
pub struct Progress {
    /// Device-days entered.
    pub device_days: AtomicU64,
    /// Entries saved in this run.
    pub saved: AtomicU64,
    /// Entries found saved by an earlier run.
    pub replayed: AtomicU64,
    /// Invalid entries refused.
    pub refused: AtomicU64,
    /// Sync rounds the link or the hub broke (retried).
    pub failed_rounds: AtomicU64,
    /// Devices whose link is down now.
    pub offline: AtomicU64,
}

/// One device: its agent, its link and its worker.
#[derive(Debug)]
struct Device {
    name: String,
    agent: Arc<Agent>,
    link: WeakLink,
    options: SyncOptions,
    worker: Worker,
    offline: Option<(NaiveDate, NaiveDate)>,
}

/// A running demo: the hub's servers and the devices.
#[derive(Debug)]
pub struct Demo {
    options: DemoOptions,
    saved: Saved,
    store: Arc<HubStore>,
    projections: Arc<Projections>,
    devices: Vec<Device>,
    grpc_addr: std::net::SocketAddr,
    http_addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    progress: Arc<Progress>,
    /// "Now" for the hub's Sync service and every device.
    clock: Arc<SimClock>,
    /// The second station's relay, when the demo runs one.
    relay: Option<StationRelay>,
}

/// What a simulation did.
#[derive(Debug)]
pub struct DemoReport {
    /// Per station, the merged ledger of its workers.
    pub ledgers: Vec<(String, Ledger)>,
    /// Entries saved in this run.
    pub saved_now: u64,
    /// Entries an earlier run had saved.
    pub replayed: u64,
    /// Invalid entries refused in this run.
    pub refused_now: u64,
    /// Each device's own head seq at the end.
    pub device_heads: Vec<u64>,
    /// Events the hub holds.
    pub hub_events: u64,
    /// False when a stop request cut the simulation short.
    pub finished: bool,
    /// Wall time of the simulation.
    pub elapsed: Duration,
}

impl Demo {
    /// Opens (or creates) the data folder, starts the hub's gRPC and HTTP
    /// servers and opens every device, enrolling the new ones.
    ///
    /// # Errors
    /// A data folder made with other parameters, a busy address, storage
    /// errors.
    pub async fn start(options: DemoOptions) -> anyhow::Result<Demo> {
        if options.days == 0 || options.devices == 0 || options.stations.is_empty() {
            bail!("--days, --devices and the stations must be at least 1");
        }
        if !options.speed.is_finite() || options.speed < 0.0 {
            bail!("--speed must be 0 (no pacing) or a positive number of days per second");
        }
        // Addresses first: a busy port leaves the data folder untouched.
        let grpc = TcpListener::bind(&options.listen)
            .await
            .with_context(|| format!("cannot listen on {} (--listen)", options.listen))?;
        let http = TcpListener::bind(&options.http)
            .await
            .with_context(|| format!("cannot listen on {} (--http)", options.http))?;
        std::fs::create_dir_all(&options.data)
            .with_context(|| format!("cannot create {}", options.data.display()))?;
        let config = Arc::new(HubConfig::builtin()?);
        let roster = config.station_codes();
        if let Some(unknown) = options.stations.iter().find(|s| !roster.contains(s)) {
            bail!("station {unknown} is not on the hub's roster");
        }
        // `station-hub enroll --data DATA/hub` reaches the demo's hub through
        // its administration socket; without the socket the demo still runs.
        let hub_key = demo_key(&options.data.join("hub"))?;
        let clock = Arc::new(SimClock::new());
        let hub = station_hub::Hub::open(station_hub::HubOptions {
            data: options.data.join("hub"),
            cache_capacity: HUB_CACHE,
            server: ServerOptions {
                shutdown_grace: Duration::from_secs(2),
                config: Some(config),
                clock: Arc::clone(&clock) as station_agent::clock::SharedClock,
                ..ServerOptions::default()
            },
            key: station_hub::store::StoreKey {
                key: hub_key,
                ..Default::default()
            },
        })
        .await
        .context("cannot open the hub's store")?;
        if hub.admin_socket().is_none() {
            eprintln!(
                "no admin socket at {}: enroll phones once the demo is stopped",
                station_hub::admin::socket_path(&options.data.join("hub")).display()
            );
        }
        let store = Arc::clone(hub.store());
        let projections = Arc::clone(hub.projections());
        let saved = load_or_create(&options, &store)?;

        let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        let (stop, mut stopped) = watch::channel(false);
        let listeners = station_hub::Listeners {
            grpc,
            http: Some(http),
        };
        let servers = vec![tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            hub.serve(listeners, stopped).await?;
            anyhow::Ok(())
        })];

        let last_day = saved.last_day;
        let first_day = last_day - Days::new(u64::from(saved.days) - 1);
        let stations: Vec<&str> = saved.stations.iter().map(String::as_str).collect();
        let mut workers =
            district::district(saved.seed, &stations, saved.devices, saved.days, last_day);
        let offline_index = options
            .offline_device
            .then(|| offline_device(&saved.stations, saved.devices))
            .flatten();
        let relayed_station = saved
            .stations
            .get(1)
            .filter(|_| options.relay && saved.days >= 20);
        let direct: Vec<bool> = workers
            .iter()
            .enumerate()
            .map(|(i, worker)| {
                Some(i) != offline_index && relayed_station.is_none_or(|s| s != worker.station())
            })
            .collect();
        district::plan_transfers(&mut workers, saved.seed, &direct);
        let relay = match relayed_station {
            Some(station) => {
                let span = u64::from(saved.days);
                let mut profile = options.link.clone();
                profile.seed = saved.seed.wrapping_mul(7_919);
                Some(
                    StationRelay::start(
                        &options.data,
                        station,
                        &store,
                        grpc_addr,
                        profile,
                        Arc::clone(&clock) as station_agent::clock::SharedClock,
                        (
                            first_day + Days::new(span * 3 / 20),
                            first_day + Days::new(span * 7 / 20),
                        ),
                    )
                    .await?,
                )
            }
            _ => None,
        };
        let mut devices = Vec::with_capacity(workers.len());
        for (index, worker) in workers.into_iter().enumerate() {
            let n = index as u32 % saved.devices + 1;
            let name = format!("{}-{n}", worker.station());
            let dir = options.data.join("devices").join(&name);
            let agent = open_device(&store, &dir, worker.station(), &name, &clock).await?;
            let mut profile = options.link.clone();
            profile.seed = saved
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add(index as u64);
            let link = WeakLink::start(grpc_addr, profile).await?;
            let direct = format!("http://{}", link.local_addr());
            let hub_url = match &relay {
                Some(relay) if relay.station() == worker.station() => relay.hub_url(&direct),
                _ => direct,
            };
            let mut sync = SyncOptions::new(hub_url, agent.identity().token.clone());
            sync.retry_budget = Duration::from_secs(20);
            sync.long_poll = Duration::ZERO;
            sync.jitter_seed = Some(saved.seed.wrapping_add(index as u64));
            let offline = (Some(index) == offline_index).then(|| {
                let span = u64::from(saved.days);
                (
                    first_day + Days::new(span * 2 / 5),
                    first_day + Days::new(span * 17 / 20),
                )
            });
            devices.push(Device {
                name,
                agent,
                link,
                options: sync,
                worker,
                offline,
            });
        }
        if let Some(relay) = &relay {
            let tokens: Vec<String> = devices
                .iter()
                .filter(|device| device.worker.station() == relay.station())
                .filter_map(|device| device.agent.identity().token.clone())
                .collect();
            relay.serves(&tokens).await?;
        }
        Ok(Demo {
            options,
            saved,
            store,
            projections,
            devices,
            grpc_addr,
            http_addr,
            stop,
            servers,
            progress: Arc::new(Progress::default()),
            clock,
            relay,
        })
    }

    /// The dashboard's address.
    pub fn dashboard_url(&self) -> String {
        format!("http://{}/", self.http_addr)
    }

    /// The hub's gRPC address.
    pub fn grpc_addr(&self) -> std::net::SocketAddr {
        self.grpc_addr
    }

    /// The bureau's read-only token for the dashboard and the Query API.
    pub fn bureau_token(&self) -> &str {
        &self.saved.bureau_token
    }

    /// The last day of field work.
    pub fn last_day(&self) -> NaiveDate {
        self.saved.last_day
    }

    /// The hub's store.
    pub fn store(&self) -> &Arc<HubStore> {
        &self.store
    }

    /// The hub's projections.
    pub fn projections(&self) -> &Arc<Projections> {
        &self.projections
    }

    /// Each device's name and agent, station by station.
    pub fn devices(&self) -> impl Iterator<Item = (&str, &Arc<Agent>)> {
        self.devices.iter().map(|d| (d.name.as_str(), &d.agent))
    }

    /// The stations, by code.
    pub fn stations(&self) -> &[String] {
        &self.saved.stations
    }

    /// Plays the simulated days: each day every device enters its worker's
    /// field work, then, in the evening, every device with a link syncs,
    /// with the hub's clock and the devices' at that evening (see
    /// [`crate::clock`]); a device whose link is down keeps its entries
    /// until its link is back. After the last day every device syncs once
    /// more and the projections catch up. `stop` (Ctrl-C, say) cuts it
    /// short: entries saved stay saved, and the next run resumes.
    ///
    /// # Errors
    /// An entry the agent treated other than expected, a sync refused for
    /// good, storage errors.
    pub async fn simulate(
        &mut self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<DemoReport> {
        let started = Instant::now();
        let cancel = Arc::new(AtomicBool::new(false));
        let bar = self.options.progress.then(|| self.progress_bar());
        let stop_watch = tokio::spawn({
            let cancel = Arc::clone(&cancel);
            async move {
                stop.await;
                cancel.store(true, Ordering::SeqCst);
            }
        });
        let result = self.play_days(&cancel, bar.as_ref()).await;
        stop_watch.abort();
        // From here on, the hub and the devices follow real time.
        self.clock.release();
        if result.is_err()
            && let Some(bar) = &bar
        {
            bar.abandon();
        }
        let finished = result?;
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        let ledgers = district::station_ledgers(self.devices.iter().map(|d| &d.worker));
        let device_heads = self
            .devices
            .iter()
            .map(|device| device.agent.log().head_seq())
            .collect();
        Ok(DemoReport {
            ledgers,
            saved_now: self.progress.saved.load(Ordering::SeqCst),
            replayed: self.progress.replayed.load(Ordering::SeqCst),
            refused_now: self.progress.refused.load(Ordering::SeqCst),
            device_heads,
            hub_events: self.store.event_count(),
            finished,
            elapsed: started.elapsed(),
        })
    }

    /// The days of [`Demo::simulate`]; false when `cancel` cut them short.
    async fn play_days(
        &mut self,
        cancel: &Arc<AtomicBool>,
        bar: Option<&indicatif::ProgressBar>,
    ) -> anyhow::Result<bool> {
        let last_day = self.saved.last_day;
        let first_day = last_day - Days::new(u64::from(self.saved.days) - 1);
        let mut runs: Vec<Entering> = std::mem::take(&mut self.devices)
            .into_iter()
            .map(Entering::new)
            .collect();
        let mut paced_from: Option<(Instant, NaiveDate)> = None;
        let mut played = 0;
        let mut outcome = Ok(());
        while played < self.saved.days && !cancel.load(Ordering::SeqCst) {
            let day = first_day + Days::new(u64::from(played));
            for run in &mut runs {
                run.follow_link(day, &self.progress);
            }
            if let Some(relay) = &self.relay {
                relay.follow_uplink(day);
            }
            // The devices' clocks read the day's first entry time.
            self.clock.set(district::china_ms(day, FIRST_ENTRY_MINUTES));
            // The day's entries, every device at once; a device with an
            // entry that waits for what another station entered syncs, and
            // goes on.
            let mut waiting = vec![true; runs.len()];
            for attempt in 0.. {
                let results;
                (runs, results) = enter(runs, &waiting, day, &self.progress).await?;
                for (i, result) in results {
                    match result {
                        Ok(done) => waiting[i] = !done,
                        Err(e) => {
                            waiting[i] = false;
                            let name = &runs[i].device.name;
                            outcome = outcome.and(Err(e.context(format!("device {name}"))));
                        }
                    }
                }
                if outcome.is_err() || !waiting.contains(&true) {
                    break;
                }
                let stuck = runs
                    .iter()
                    .zip(&waiting)
                    .filter(|(run, w)| **w && (attempt >= 3 || run.offline_on(day)))
                    .map(|(run, _)| run.device.name.as_str())
                    .collect::<Vec<_>>();
                if !stuck.is_empty() {
                    outcome = Err(anyhow::anyhow!(
                        "devices {stuck:?} cannot receive what another station entered, \
                         which their next entry needs"
                    ));
                    break;
                }
                self.projections
                    .wait_through(self.store.durable_head())
                    .await;
                let syncing = runs.iter().zip(&waiting).filter(|(_, w)| **w);
                outcome = self
                    .rounds(syncing.map(|(run, _)| &run.device), cancel)
                    .await;
                if outcome.is_err() {
                    break;
                }
            }
            if outcome.is_err() {
                break;
            }
            self.progress
                .device_days
                .fetch_add(runs.len() as u64, Ordering::Relaxed);
            if runs.iter().any(|run| run.saved_on == Some(day)) {
                if self.options.speed > 0.0 {
                    let (t0, d0) = *paced_from.get_or_insert((Instant::now(), day));
                    let days = (day - d0).num_days() as f64 + 1.0;
                    let due = t0 + Duration::from_secs_f64(days / self.options.speed);
                    tokio::time::sleep_until(due.into()).await;
                }
                // The evening: every device with a link syncs.
                self.clock.set(district::china_ms(day, SYNC_MINUTES));
                let online = runs.iter().filter(|run| !run.offline_on(day));
                outcome = self.rounds(online.map(|run| &run.device), cancel).await;
                if outcome.is_err() {
                    break;
                }
                // The station relay forwards its phones' entries that
                // evening, when its uplink is up.
                if let Some(relay) = &self.relay
                    && relay.uplink_up_on(day)
                {
                    outcome = self
                        .relayed(relay, runs.iter().map(|run| &run.device))
                        .await;
                    if outcome.is_err() {
                        break;
                    }
                }
            }
            played += 1;
        }
        for run in &runs {
            run.device.link.control().set_online(true);
            if run.was_offline {
                self.progress.offline.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.devices = runs.into_iter().map(|run| run.device).collect();
        if let Err(e) = outcome {
            cancel.store(true, Ordering::SeqCst);
            return Err(e);
        }
        let finished = played == self.saved.days && !cancel.load(Ordering::SeqCst);
        if finished {
            if let Some(bar) = bar {
                bar.set_message("last round: every device takes its colleagues' entries");
            }
            // Every push is in; one more round gives each device all of its
            // station's events.
            self.clock.set(district::china_ms(last_day, SYNC_MINUTES));
            self.rounds(self.devices.iter(), cancel).await?;
            if let Some(relay) = &self.relay {
                // Everything the relay holds reaches the hub, and its phones
                // hear that the city holds their entries.
                relay.uplink_back();
                self.relayed(relay, self.devices.iter()).await?;
                let phones = self
                    .devices
                    .iter()
                    .filter(|device| device.worker.station() == relay.station());
                self.rounds(phones, cancel).await?;
            }
            let head = self.store.durable_head();
            if let Some(bar) = bar {
                bar.set_message("the hub's projections catch up");
            }
            self.projections.wait_through(head).await;
        }
        Ok(finished)
    }

    /// Waits until the hub holds what each of `devices` served by `relay`
    /// saved at the station.
    async fn relayed<'a>(
        &self,
        relay: &StationRelay,
        devices: impl Iterator<Item = &'a Device>,
    ) -> anyhow::Result<()> {
        let heads: Vec<(Uuid, u64)> = devices
            .filter(|device| device.worker.station() == relay.station())
            .map(|device| {
                (
                    device.agent.identity().origin_id,
                    device.agent.log().head_seq(),
                )
            })
            .collect();
        relay.forwarded(&self.store, &heads).await
    }

    /// One sync round of each of `devices`, all at once, each retried until
    /// it completes.
    async fn rounds<'a>(
        &self,
        devices: impl Iterator<Item = &'a Device>,
        cancel: &Arc<AtomicBool>,
    ) -> anyhow::Result<()> {
        let tasks: Vec<_> = devices
            .map(|device| {
                let (name, agent, options) = (
                    device.name.clone(),
                    Arc::clone(&device.agent),
                    device.options.clone(),
                );
                let (progress, cancel) = (Arc::clone(&self.progress), Arc::clone(cancel));
                tokio::spawn(async move {
                    round(&agent, &options, &progress, &cancel)
                        .await
                        .with_context(|| format!("device {name}"))
                })
            })
            .collect();
        let mut outcome = Ok(());
        for task in tasks {
            if let Err(e) = task.await? {
                cancel.store(true, Ordering::SeqCst);
                outcome = outcome.and(Err(e));
            }
        }
        outcome
    }

    fn progress_bar(&self) -> indicatif::ProgressBar {
        let total = u64::from(self.saved.days) * self.devices.len() as u64;
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {elapsed:>3} {bar:24} {percent:>3}% {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let progress = Arc::clone(&self.progress);
        let store = Arc::clone(&self.store);
        let ticker = bar.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            while !ticker.is_finished() {
                tick.tick().await;
                let p = &progress;
                ticker.set_position(p.device_days.load(Ordering::Relaxed));
                let offline = p.offline.load(Ordering::Relaxed);
                ticker.set_message(format!(
                    "{} saved, {} refused · hub holds {} · {} retries{}",
                    p.saved.load(Ordering::Relaxed) + p.replayed.load(Ordering::Relaxed),
                    p.refused.load(Ordering::Relaxed),
                    store.event_count(),
                    p.failed_rounds.load(Ordering::Relaxed),
                    if offline > 0 {
                        format!(" · {offline} phone offline")
                    } else {
                        String::new()
                    },
                ));
            }
        });
        bar
    }

    /// The end-of-run table: per station, key indicators of the last full
    /// month against targets, open cases by tier, overdue follow-ups and
    /// how far its data is complete.
    ///
    /// # Errors
    /// Storage errors.
    pub fn summary(&self) -> anyhow::Result<String> {
        let last = self.saved.last_day;
        let month = last_full_month(last);
        let stations = &self.saved.stations;
        let table = self.projections.indicators(month, stations)?;
        let caseload = self.projections.caseload(stations)?;
        let overdue = self.projections.overdue(last, stations, Some(0))?;
        let metrics = [
            Metric::HomeVisits,
            Metric::HouseholdsVisited,
            Metric::CasesNew,
            Metric::Activities,
            Metric::PersonTimes,
            Metric::ResourcesYuan,
        ];
        let mut header = vec!["station".to_string()];
        header.extend(metrics.iter().map(|m| m.label().to_string()));
        header.extend(
            ["open (high/key/general)", "overdue", "complete through"].map(ToString::to_string),
        );
        let mut rows = vec![header];
        for row in &table.rows {
            let mut cells = vec![row.station_name.clone()];
            for metric in metrics {
                let value = row.values.iter().find(|v| v.metric == metric);
                cells.push(match value {
                    Some(v) => match v.target {
                        Some(target) => format!("{}/{target}", v.value),
                        None => v.value.to_string(),
                    },
                    None => "-".into(),
                });
            }
            let load = caseload
                .stations
                .iter()
                .find(|s| s.station_code == row.station_code);
            cells.push(load.map_or_else(
                || "-".into(),
                |l| format!("{} ({}/{}/{})", l.open_cases, l.high_risk, l.key, l.general),
            ));
            cells.push(
                overdue
                    .stations
                    .iter()
                    .find(|s| s.station_code == row.station_code)
                    .map_or_else(|| "-".into(), |s| s.overdue.to_string()),
            );
            cells.push(row.complete_through_ms.map_or_else(
                || "-".into(),
                |ms| china_time(ms).unwrap_or_else(|| "-".into()),
            ));
            rows.push(cells);
        }
        let mut out = format!(
            "{} · indicators of {} (value/target) · overdue as of {last}\n",
            self.projections.config().district.name,
            month.key()
        );
        out.push_str(&render(&rows));
        if let Some(relay) = &self.relay {
            let (from, to) = relay.down();
            let name = table
                .rows
                .iter()
                .find(|row| row.station_code == relay.station())
                .map_or(relay.station(), |row| row.station_name.as_str());
            out.push_str(&format!(
                "{name}: phones sync through the station relay; its uplink was down from {from} to {}\n",
                to.pred_opt().unwrap_or(to)
            ));
        }
        out.push_str(&self.transfer_lines()?);
        Ok(out)
    }

    /// The transfers between stations the workers entered, district-wide,
    /// in request order: each with its answer.
    pub fn transfers(&self) -> Vec<district::TransferRecord> {
        let mut district = Ledger::default();
        for (_, ledger) in district::station_ledgers(self.devices.iter().map(|d| &d.worker)) {
            district.merge(&ledger);
        }
        district.transfers()
    }

    /// The summary's lines on transfers: how many were accepted, declined
    /// and left pending, then one line each, by file number and stations.
    fn transfer_lines(&self) -> anyhow::Result<String> {
        let transfers = self.transfers();
        if transfers.is_empty() {
            return Ok(String::new());
        }
        let count =
            |f: fn(&TransferAnswer) -> bool| transfers.iter().filter(|t| f(&t.answer)).count();
        let config = self.projections.config();
        let mut out = format!(
            "transfers between stations (转移): {} accepted, {} declined, {} pending\n",
            count(|a| matches!(a, TransferAnswer::Accepted(_))),
            count(|a| matches!(a, TransferAnswer::Declined(_))),
            count(|a| matches!(a, TransferAnswer::Pending)),
        );
        for transfer in &transfers {
            let mut number = String::new();
            for device in self
                .devices
                .iter()
                .filter(|d| d.worker.station() == transfer.from)
            {
                if let Some(case) = device.agent.case(transfer.case)? {
                    number = case.file_number;
                    break;
                }
            }
            let answer = match transfer.answer {
                TransferAnswer::Accepted(on) => format!("accepted {on}"),
                TransferAnswer::Declined(on) => format!("declined {on}"),
                TransferAnswer::Pending => format!(
                    "pending, {} days",
                    (self.saved.last_day - transfer.requested_on).num_days()
                ),
            };
            out.push_str(&format!(
                "  {number}: {} → {}, asked {}, {answer}\n",
                config.station_name(&transfer.from),
                config.station_name(&transfer.to),
                transfer.requested_on,
            ));
        }
        Ok(out)
    }

    /// Stops the servers and the links, and syncs the stores.
    ///
    /// # Errors
    /// A server that failed.
    pub async fn stop(self) -> anyhow::Result<()> {
        if let Some(relay) = self.relay {
            relay.stop().await?;
        }
        let _ = self.stop.send(true);
        for device in self.devices {
            device.link.shutdown().await;
        }
        for server in self.servers {
            server.await??;
        }
        self.store.sync()?;
        Ok(())
    }
}

/// The device that loses its link for a while: the second of the third
/// station (亚堆乡 in Nedong), else the last device.
fn offline_device(stations: &[String], devices: u32) -> Option<usize> {
    let per = devices as usize;
    let total = stations.len() * per;
    if total < 2 {
        return None;
    }
    let preferred = 2 * per + per.min(2) - 1;
    Some(if preferred < total {
        preferred
    } else {
        total - 1
    })
}

fn load_or_create(options: &DemoOptions, store: &HubStore) -> anyhow::Result<Saved> {
    let path = options.data.join("demo.json");
    match std::fs::read(&path) {
        Ok(bytes) => {
            let saved: Saved = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a demo's parameters", path.display()))?;
            if saved.seed != options.seed
                || saved.days != options.days
                || saved.devices != options.devices
                || saved.stations != options.stations
            {
                bail!(
                    "{} holds a demo of --seed {} --days {} --devices {} ({} stations); \
                     run again with those, or give a new --data folder",
                    options.data.display(),
                    saved.seed,
                    saved.days,
                    saved.devices,
                    saved.stations.len()
                );
            }
            Ok(saved)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bureau = auth::enroll_bureau(store, "民政局 demo")?;
            let saved = Saved {
                seed: options.seed,
                days: options.days,
                last_day: options
                    .last_day
                    .unwrap_or_else(station_hub::projections::today_in_china)
                    .min(station_hub::projections::today_in_china()),
                stations: options.stations.clone(),
                devices: options.devices,
                bureau_token: bureau.bearer,
            };
            store.sync()?;
            write_private(&path, &serde_json::to_vec_pretty(&saved)?)?;
            Ok(saved)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes `bytes` to `path` durably, readable by the owner only (it holds a
/// token): a temporary file, fsynced, renamed over.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        file.mode(0o600);
    }
    let mut file = file
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Opens a device's agent; a new device is enrolled at the hub first.
async fn open_device(
    store: &Arc<HubStore>,
    dir: &Path,
    station: &str,
    name: &str,
    clock: &Arc<SimClock>,
) -> anyhow::Result<Arc<Agent>> {
    let (store, dir, station, name) = (
        Arc::clone(store),
        dir.to_path_buf(),
        station.to_string(),
        name.to_string(),
    );
    let open = OpenOptions {
        cache_capacity: AGENT_CACHE,
        key: demo_key(&dir)?,
        clock: Arc::clone(clock) as station_agent::clock::SharedClock,
        ..OpenOptions::default()
    };
    let agent = tokio::task::spawn_blocking(move || -> anyhow::Result<Agent> {
        match Agent::open(&dir, open.clone()) {
            Ok(agent) => Ok(agent),
            Err(AgentError::Store(station_agent::StoreError::NotInitialised)) => {
                let token = auth::enroll_device(&store, &station, &name)?;
                store.sync()?;
                Ok(Agent::init(
                    &dir,
                    InitOptions {
                        station_code: station,
                        worker_id: format!("sw-{name}"),
                        hub_url: None,
                        token: Some(token.bearer),
                    },
                    open,
                )?)
            }
            Err(e) => Err(e.into()),
        }
    })
    .await??;
    Ok(Arc::new(agent))
}

/// When the devices sync each simulated day: 20:00 China time, after the
/// day's entries (which start at 09:30, seven minutes apart).
const SYNC_MINUTES: i64 = 20 * 60;
/// When the devices' day starts: the time of each worker's first entry.
const FIRST_ENTRY_MINUTES: i64 = 9 * 60 + 30;

/// A device while the days are played: its worker's next entry, and how
/// much of its log the run found saved already.
#[derive(Debug)]
struct Entering {
    device: Device,
    /// The own head seq when the run began: entries up to it are replayed.
    head: u64,
    /// Entries replayed so far.
    replayed: u64,
    /// The worker's entry that waits for sync to bring what another station
    /// entered.
    pending: Option<Entry>,
    /// The last day on which this run saved an entry.
    saved_on: Option<NaiveDate>,
    /// Whether its link is down now.
    was_offline: bool,
}

impl Entering {
    fn new(device: Device) -> Self {
        Self {
            head: device.agent.log().head_seq(),
            device,
            replayed: 0,
            pending: None,
            saved_on: None,
            was_offline: false,
        }
    }

    /// Whether the device's link is down on `day`.
    fn offline_on(&self, day: NaiveDate) -> bool {
        self.device
            .offline
            .is_some_and(|(from, to)| (from..to).contains(&day))
    }

    /// Takes the link down or up for `day`.
    fn follow_link(&mut self, day: NaiveDate, progress: &Progress) {
        let offline = self.offline_on(day);
        if offline != self.was_offline {
            self.device.link.control().set_online(!offline);
            if offline {
                progress.offline.fetch_add(1, Ordering::Relaxed);
            } else {
                progress.offline.fetch_sub(1, Ordering::Relaxed);
            }
            self.was_offline = offline;
        }
    }

    /// Enters the worker's field work of `day` (and of any earlier day not
    /// entered yet): replays what the log holds, saves the rest. Returns
    /// false when an entry needs what sync brings from another station
    /// first ([`Entry::from_elsewhere`]): it is kept, and entered by the
    /// next call.
    fn enter_day(&mut self, day: NaiveDate, progress: &Progress) -> anyhow::Result<bool> {
        let (agent, worker) = (&self.device.agent, &mut self.device.worker);
        loop {
            let Some(entry) = self
                .pending
                .take()
                .or_else(|| worker.next_entry_through(day))
            else {
                return Ok(true);
            };
            if self.replayed < self.head {
                match entry.expect {
                    Expect::Saved => {
                        self.replayed += 1;
                        let seq = self.replayed;
                        let stored = agent
                            .own_events(seq - 1, 1)?
                            .pop()
                            .with_context(|| format!("the log has no own event {seq}"))?;
                        let same = stored
                            .body
                            .as_ref()
                            .is_some_and(|b| comparable(b) == comparable(&entry.body));
                        if !same {
                            bail!(
                                "entry {seq} in the log differs from the field work of these \
                                 parameters: this folder was made by another version of the \
                                 demo (log: {:?}; expected: {:?})",
                                stored.body,
                                entry.body
                            );
                        }
                        worker.saved(Uuid::from_slice(&stored.event_id)?);
                        progress.replayed.fetch_add(1, Ordering::Relaxed);
                    }
                    // Tried and refused by the run that saved what follows.
                    Expect::Refused(_) => worker.refused(),
                }
                continue;
            }
            match agent.record_with(None, entry.body.clone(), entry.day, entry.recorded_at_ms) {
                Ok(recorded) => {
                    if let Expect::Refused(why) = entry.expect {
                        bail!("an invalid entry ({why}) was saved: {:?}", entry.body);
                    }
                    worker.saved(recorded.event_id);
                    self.saved_on = Some(day);
                    progress.saved.fetch_add(1, Ordering::Relaxed);
                }
                Err(AgentError::Store(e)) => return Err(e.into()),
                Err(_) if entry.expect == Expect::Saved && entry.from_elsewhere => {
                    self.pending = Some(entry);
                    return Ok(false);
                }
                Err(refusal) => {
                    if entry.expect == Expect::Saved {
                        bail!("a valid entry was refused: {refusal}");
                    }
                    worker.refused();
                    progress.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Enters `day` on each of `runs` that `pick` names, every device at once;
/// returns the runs in their order, and each picked one's result.
async fn enter(
    runs: Vec<Entering>,
    pick: &[bool],
    day: NaiveDate,
    progress: &Arc<Progress>,
) -> anyhow::Result<(Vec<Entering>, Vec<(usize, anyhow::Result<bool>)>)> {
    let tasks: Vec<_> = runs
        .into_iter()
        .zip(pick)
        .map(|(mut run, pick)| {
            let (progress, pick) = (Arc::clone(progress), *pick);
            tokio::task::spawn_blocking(move || {
                let result = pick.then(|| run.enter_day(day, &progress));
                (run, result)
            })
        })
        .collect();
    let mut runs = Vec::with_capacity(tasks.len());
    let mut results = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let (run, result) = task.await?;
        if let Some(result) = result {
            results.push((i, result));
        }
        runs.push(run);
    }
    Ok((runs, results))
}

/// A body as generated: the agent fills in the last event seen of a tier
/// change and the file number of an opening, which the generator leaves
/// empty.
fn comparable(body: &Body) -> Vec<u8> {
    let mut body = body.clone();
    // What the device fills in when the entry leaves it empty.
    if let Body::CaseAssessed(m) = &mut body {
        m.last_seen_event_id.clear();
    }
    if let Body::CaseOpened(m) = &mut body {
        m.file_number.clear();
    }
    station_proto::Event {
        body: Some(body),
        ..Default::default()
    }
    .encode_to_vec()
}

/// One sync round, retried after what the link or the hub broke until it
/// completes; `None` once `cancel` is set.
async fn round(
    agent: &Arc<Agent>,
    options: &SyncOptions,
    progress: &Progress,
    cancel: &AtomicBool,
) -> anyhow::Result<Option<SyncReport>> {
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Ok(None);
        }
        match sync_once(Arc::clone(agent), options).await {
            Ok(report) => {
                if let Some(parked) = report.parked {
                    bail!("the hub refused a batch for good: {parked:?}");
                }
                return Ok(Some(report));
            }
            Err(e) if e.is_retriable() => {
                progress.failed_rounds.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The last month that ends on or before `day`.
pub fn last_full_month(day: NaiveDate) -> Period {
    let end_of_month = day
        .checked_add_days(Days::new(1))
        .is_some_and(|next| next.month() != day.month());
    let month_day = if end_of_month {
        day
    } else {
        day.with_day(1).and_then(|d| d.pred_opt()).unwrap_or(day)
    };
    Period::of_date(month_day)[0]
}

fn china_time(ms: i64) -> Option<String> {
    let offset = chrono::FixedOffset::east_opt(8 * 3600)?;
    let at = chrono::DateTime::from_timestamp_millis(ms)?.with_timezone(&offset);
    Some(at.format("%Y-%m-%d %H:%M").to_string())
}

/// A plain-text table whose columns line up in a terminal, Chinese and
/// Tibetan included.
fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.width())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - cell.width())))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    out
}
