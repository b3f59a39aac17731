//! Convergence over weak links: the seven Nedong stations, two devices each,
//! record field work while syncing through 2G-like links that cut and stall.
//! At the end the hub holds every event exactly once, each device's
//! `durable_through` equals its head, and each device holds its whole
//! station's stream and nothing of other stations.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use station_agent::Agent;
use station_agent::sync::{SyncOptions, SyncReport, sync_once};
use station_hub::store::HubStore;
use station_proto::ids::Uuid;
use station_sim::district::NEDONG_STATIONS as STATIONS;
use station_sim::fieldwork::FieldWork;
use station_sim::weaklink::{LinkCounters, LinkProfile, WeakLink};
use tokio::sync::oneshot;

use crate::fixtures::{new_device, record_field_work};

const EVENTS_PER_DEVICE: usize = 300;
const BURSTS: usize = 10;

fn link_profile(seed: u64) -> LinkProfile {
    LinkProfile {
        up_bytes_per_sec: 64_000 / 8,
        down_bytes_per_sec: 256_000 / 8,
        one_way_latency: Duration::from_millis(150),
        cut_every: Some((Duration::from_secs(5), Duration::from_secs(20))),
        stall_every: Some((Duration::from_secs(8), Duration::from_secs(30))),
        stall_for: (Duration::from_millis(500), Duration::from_secs(2)),
        seed,
    }
}

/// Syncs until one round completes, retrying what the link broke.
async fn sync_through(agent: &Arc<Agent>, options: &SyncOptions) -> (SyncReport, u32) {
    let mut failures = 0;
    loop {
        match sync_once(Arc::clone(agent), options).await {
            Ok(report) => return (report, failures),
            Err(e) if e.is_retriable() => {
                failures += 1;
                assert!(failures < 200, "sync keeps failing: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("permanent sync failure: {e}"),
        }
    }
}

struct Device {
    agent: Arc<Agent>,
    station: &'static str,
    token: String,
    link: WeakLink,
    _dir: tempfile::TempDir,
}

fn all_ids(agent: &Agent) -> BTreeSet<Uuid> {
    let own = agent.own_events(0, usize::MAX).unwrap();
    let pulled = agent.log().pulled_events(0, usize::MAX).unwrap();
    let total = own.len() + pulled.len();
    let ids: BTreeSet<Uuid> = own
        .into_iter()
        .chain(pulled.into_iter().map(|(_, e)| e))
        .map(|e| Uuid::from_slice(&e.event_id).unwrap())
        .collect();
    assert_eq!(ids.len(), total, "no event is held twice");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_stations_converge_over_links_that_cut_and_stall() {
    let hub_dir = tempfile::tempdir().unwrap();
    let store = Arc::new(HubStore::open(hub_dir.path(), 32 * 1024 * 1024).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub_addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(station_hub::serve::run(
        listener,
        Arc::clone(&store),
        async {
            let _ = stopped.await;
        },
    ));

    let mut devices = Vec::new();
    for (s, station) in STATIONS.iter().enumerate() {
        for d in 0..2 {
            let token =
                station_hub::auth::enroll_device(&store, station, &format!("phone-{s}-{d}"))
                    .unwrap()
                    .bearer;
            let dir = tempfile::tempdir().unwrap();
            let agent = Arc::new(new_device(dir.path(), station, &format!("sw-{s}-{d}")));
            let link = WeakLink::start(hub_addr, link_profile((s * 2 + d) as u64))
                .await
                .unwrap();
            devices.push(Device {
                agent,
                station,
                token,
                link,
                _dir: dir,
            });
        }
    }

    // Every device runs the sync daemon while its social worker records the
    // field work in bursts through the day.
    let total = (STATIONS.len() * 2 * EVENTS_PER_DEVICE) as u64;
    let (stop_daemons, daemons_stopped) = tokio::sync::watch::channel(false);
    let mut daemons = Vec::new();
    let mut workers = Vec::new();
    for (i, device) in devices.iter().enumerate() {
        let mut options = SyncOptions::new(
            format!("http://{}", device.link.local_addr()),
            Some(device.token.clone()),
        );
        options.interval = Duration::from_secs(5);
        options.long_poll = Duration::from_secs(3);
        let mut stopped = daemons_stopped.clone();
        daemons.push(tokio::spawn(station_agent::sync::run(
            Arc::clone(&device.agent),
            options,
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            },
        )));
        let agent = Arc::clone(&device.agent);
        let station = device.station;
        workers.push(tokio::spawn(async move {
            let mut work = FieldWork::new(station, 1_000 + i as u64);
            for _ in 0..BURSTS {
                work = tokio::task::spawn_blocking({
                    let agent = Arc::clone(&agent);
                    move || {
                        record_field_work(&agent, &mut work, EVENTS_PER_DEVICE / BURSTS);
                        work
                    }
                })
                .await
                .unwrap();
                // The time between two households.
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        }));
    }
    // Besides the cuts each connection draws, the whole link of a device
    // drops every 5–20 s, as a 2G cell does.
    let mut cutters = Vec::new();
    for (i, device) in devices.iter().enumerate() {
        let link = device.link.control();
        cutters.push(tokio::spawn(async move {
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(i as u64);
            loop {
                let wait = rand::Rng::random_range(&mut rng, 5_000..20_000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                link.cut_all();
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    let mut grown = store.subscribe();
    let received = tokio::time::timeout(
        Duration::from_secs(120),
        grown.wait_for(|_| store.event_count() >= total),
    )
    .await;
    if received.is_err() {
        for device in &devices {
            let origin = store.origin(device.agent.identity().origin_id).unwrap();
            eprintln!(
                "{}: head {} hub durable_through {} state {:?} counters {:?}",
                device.station,
                device.agent.log().head_seq(),
                origin.durable_through,
                device.agent.log().sync_state().unwrap(),
                device.link.counters()
            );
        }
        panic!("the hub did not receive every event");
    }
    for cutter in cutters {
        cutter.abort();
    }
    let _ = stop_daemons.send(true);
    for daemon in daemons {
        daemon.await.unwrap().unwrap();
    }
    // A last round brings each device its colleague's latest events.
    let mut retries = 0;
    for device in &devices {
        let options = SyncOptions::new(
            format!("http://{}", device.link.local_addr()),
            Some(device.token.clone()),
        );
        let (report, failed) = sync_through(&device.agent, &options).await;
        assert_eq!(report.pushed, 0);
        retries += failed;
    }

    assert_eq!(store.event_count(), total, "every event once on the hub");
    assert!(store.quarantine().unwrap().is_empty());
    for station in STATIONS {
        let page = store.pull(station, 0, usize::MAX, usize::MAX).unwrap();
        let ids: BTreeSet<Uuid> = page
            .events
            .iter()
            .map(|(_, e)| Uuid::from_slice(&e.event_id).unwrap())
            .collect();
        assert_eq!(
            ids.len(),
            2 * EVENTS_PER_DEVICE,
            "{station}: distinct events"
        );
        for device in devices.iter().filter(|d| d.station == station) {
            let origin = store.origin(device.agent.identity().origin_id).unwrap();
            assert_eq!(origin.durable_through, device.agent.log().head_seq());
            assert_eq!(device.agent.status().unwrap().pending, 0);
            assert_eq!(
                all_ids(&device.agent),
                ids,
                "{station}: device holds its station's stream"
            );
        }
    }

    let mut counters = LinkCounters::default();
    for device in devices {
        let c = device.link.counters();
        counters.up_bytes += c.up_bytes;
        counters.down_bytes += c.down_bytes;
        counters.cuts += c.cuts;
        counters.stalls += c.stalls;
        device.link.shutdown().await;
    }
    eprintln!(
        "convergence: {total} events, {} B up ({:.1} B/event), {} B down, {} cuts, {} stalls, {retries} retried rounds",
        counters.up_bytes,
        counters.up_bytes as f64 / total as f64,
        counters.down_bytes,
        counters.cuts,
        counters.stalls
    );
    assert!(counters.cuts > 0, "the links did cut");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
