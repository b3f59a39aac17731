//! `relay`: 14 phones of one station save their field work at the station's
//! relay over the station LAN (loopback here) while its uplink to the hub is
//! down; then the uplink comes back through the weak-link simulator of
//! `sync-backlog` (64 kbit/s up, 256 kbit/s down, 300 ms round trip, each
//! connection cut 20 s after it opens), and the relay forwards everything.
//!
//! Against: the link limit of the uplink (the zstd-compressed protobuf
//! payload of every phone's events ÷ the uplink's bandwidth) for the time
//! from the uplink's return until the hub holds every event; the same link
//! limit for the phones' time to save at the station (what the phones would
//! need at best without a relay, each on its own 2G link being one fourteenth
//! of that).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prost::Message as _;
use station_agent::seal::{KeySource, WrappingKey};
use station_agent::sync::{SyncOptions, sync_once};
use station_agent::{Agent, InitOptions, OpenOptions};
use station_hub::server::ServerOptions;
use station_hub::store::{HubStore, StoreKey};
use station_proto::v1::PushRequest;
use station_relay::{Relay, RelayOptions};
use station_sim::fieldwork::FieldWork;
use station_sim::weaklink::WeakLink;

use crate::{Row, progress};

const SCENARIO: &str = "relay";
const STATION: &str = "540502001";
const PHONES: usize = 14;
const UP_BYTES_PER_SEC: f64 = 64_000.0 / 8.0;

fn phone(dir: &std::path::Path, n: usize) -> anyhow::Result<Arc<Agent>> {
    Ok(Arc::new(Agent::init(
        dir,
        InitOptions {
            station_code: STATION.into(),
            worker_id: format!("zd-sw-{n:02}"),
            hub_url: None,
            token: None,
        },
        OpenOptions::default(),
    )?))
}

/// How many device tokens the relay serves, as it last said.
static DEVICES: AtomicUsize = AtomicUsize::new(0);

/// Runs the scenario, adding its rows.
pub async fn run(quick: bool, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let per_phone = if quick { 10 } else { 715 };
    DEVICES.store(0, Ordering::SeqCst);
    let total = (per_phone * PHONES) as u64;
    let hub_dir = tempfile::tempdir()?;
    let store = Arc::new(HubStore::open(hub_dir.path(), 64 << 20)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hub_addr = listener.local_addr()?;
    let (stop_hub, hub_stopped) = tokio::sync::oneshot::channel::<()>();
    let hub = tokio::spawn(station_hub::serve::run(
        listener,
        Arc::clone(&store),
        async {
            let _ = hub_stopped.await;
        },
    ));
    let link = WeakLink::start(hub_addr, crate::sync::profile(11)).await?;

    progress!("relay: recording {per_phone} events on each of {PHONES} phones");
    let dirs = (0..PHONES)
        .map(|_| tempfile::tempdir())
        .collect::<Result<Vec<_>, _>>()?;
    let mut phones = Vec::new();
    let mut all = Vec::new();
    for (n, dir) in dirs.iter().enumerate() {
        let agent = phone(dir.path(), n)?;
        FieldWork::new(STATION, 100 + n as u64).record_on(&agent, per_phone)?;
        all.extend(agent.own_events(0, usize::MAX)?);
        let token = station_hub::auth::enroll_device(&store, STATION, &format!("p{n}"))?.bearer;
        phones.push((agent, token));
    }
    let relay_dir = tempfile::tempdir()?;
    let token = station_hub::auth::enroll_relay(&store, STATION, "bench relay")?.bearer;
    let mut uplink = SyncOptions::new(format!("http://{}", link.local_addr()), Some(token));
    uplink.retry_budget = Duration::from_secs(3_600);
    let relay = Relay::open(RelayOptions {
        data: relay_dir.path().join("relay"),
        station_code: STATION.into(),
        hub: uplink,
        server: ServerOptions {
            disk_reserve: 0,
            ..ServerOptions::default()
        },
        key: StoreKey {
            key: Some(KeySource::Key(WrappingKey::generate()?)),
            ..StoreKey::default()
        },
        interval: Duration::from_millis(500),
        on_devices: Some(|devices| DEVICES.store(devices, Ordering::SeqCst)),
    })
    .await?;
    let relay_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let relay_url = format!("http://{}", relay_listener.local_addr()?);
    let (stop_relay, relay_stopped) = tokio::sync::oneshot::channel::<()>();
    let relay_task = tokio::spawn(relay.serve(relay_listener, async {
        let _ = relay_stopped.await;
    }));
    // The relay learns the station's device tokens from the hub, then the
    // uplink goes down.
    let learning = Instant::now();
    while DEVICES.load(Ordering::SeqCst) < PHONES {
        anyhow::ensure!(
            learning.elapsed() < Duration::from_secs(60),
            "the relay never learnt the station's devices"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    link.set_online(false);

    let payload = zstd::bulk::compress(
        &PushRequest {
            events: all,
            heads: Vec::new(),
            ..PushRequest::default()
        }
        .encode_to_vec(),
        0,
    )?
    .len();
    let link_limit = payload as f64 / UP_BYTES_PER_SEC;

    progress!("relay: the phones save at the station, uplink down");
    let started = Instant::now();
    let saving: Vec<_> = phones
        .iter()
        .map(|(agent, token)| {
            let agent = Arc::clone(agent);
            let options = SyncOptions::new(relay_url.clone(), Some(token.clone()));
            tokio::spawn(async move { sync_once(agent, &options).await })
        })
        .collect();
    for task in saving {
        let report = task.await??;
        anyhow::ensure!(report.city_durable_through == 0, "the uplink was down");
    }
    let lan_time = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        store.event_count() == 0,
        "the hub got events with the uplink down"
    );

    progress!("relay: the uplink is back");
    let started = Instant::now();
    let mut grown = store.subscribe();
    link.set_online(true);
    tokio::time::timeout(Duration::from_secs(3_600), async {
        while store.event_count() < total {
            if grown.changed().await.is_err() {
                break;
            }
        }
    })
    .await?;
    let converge = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        store.event_count() == total,
        "the hub holds every event once"
    );
    let counters = link.counters();

    rows.push(
        Row::new(
            SCENARIO,
            format!("{PHONES} phones × {per_phone} events saved at the relay, uplink down"),
            lan_time,
            "the uplink's link limit for the same events",
            link_limit,
            "s",
        )
        .note("station LAN on loopback; every phone at once"),
    );
    rows.push(
        Row::new(
            SCENARIO,
            format!("uplink back: until the hub holds all {total} events"),
            converge,
            "the uplink's link limit (zstd payload ÷ 64 kbit/s)",
            link_limit,
            "s",
        )
        .note(format!(
            "{} bytes up, {} down through the weak link ({:.1} bytes/event up)",
            counters.up_bytes,
            counters.down_bytes,
            counters.up_bytes as f64 / total as f64
        )),
    );
    let _ = stop_relay.send(());
    relay_task.await??;
    link.shutdown().await;
    let _ = stop_hub.send(());
    hub.await??;
    Ok(())
}
