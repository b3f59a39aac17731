//! Crashes during sync, with real processes and SIGKILL: the hub killed
//! while acknowledging pushes, a device killed while pushing and pulling.
//! After every restart nothing acknowledged is lost and nothing is stored
//! twice, and the sync completes.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;

use rand::Rng;
use station_agent::sync::{SyncOptions, sync_once};
use station_agent::{Agent, OpenOptions};
use station_hub::store::HubStore;
use station_proto::ids::Uuid;
use station_sim::fieldwork::FieldWork;

use crate::fixtures::{STATION, new_device, one_test_at_a_time, record_field_work, seeded_rng};

pub(crate) fn device(dir: &Path, events: usize) -> Arc<Agent> {
    let agent = new_device(dir, STATION, "sw");
    record_field_work(&agent, &mut FieldWork::new(STATION, 7), events);
    Arc::new(agent)
}

/// A `sync-hub` process and the lines it logs.
pub(crate) struct HubProcess {
    child: Child,
    pub(crate) url: String,
    log: mpsc::Receiver<String>,
}

impl HubProcess {
    pub(crate) fn spawn(data: &Path) -> HubProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sync-hub"))
            .arg("--data")
            .arg(data)
            .env("RUST_LOG", "station_hub=debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening ").unwrap().to_string();
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        HubProcess {
            child,
            url: format!("http://{addr}"),
            log,
        }
    }

    /// Blocks until the hub has logged `n` more acknowledged pushes.
    pub(crate) fn wait_for_acks(&self, n: usize) {
        let mut seen = 0;
        while seen < n {
            let line = self.log.recv().unwrap();
            if line.contains("push acknowledged") {
                seen += 1;
            }
        }
    }

    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

pub(crate) fn check_hub(data: &Path, origin: Uuid, head: u64) -> BTreeSet<Uuid> {
    let store = HubStore::open(data, 8 * 1024 * 1024).unwrap();
    let state = store.origin(origin).unwrap();
    assert!(state.durable_through <= head);
    let page = store.pull(STATION, 0, usize::MAX, usize::MAX).unwrap();
    let ids: BTreeSet<Uuid> = page
        .events
        .iter()
        .map(|(_, e)| Uuid::from_slice(&e.event_id).unwrap())
        .collect();
    assert_eq!(ids.len(), page.events.len(), "no event stored twice");
    assert_eq!(
        store.event_count() + state.quarantined,
        state.durable_through,
        "the hub holds exactly 1..=durable_through"
    );
    ids
}

#[test]
fn hub_killed_while_acknowledging_pushes_loses_and_duplicates_nothing() {
    let _alone = one_test_at_a_time();
    let mut rng = seeded_rng("hub_killed_while_acknowledging_pushes");
    let hub_dir = tempfile::tempdir().unwrap();
    let agent_dir = tempfile::tempdir().unwrap();
    let agent = device(agent_dir.path(), 600);
    let head = agent.log().head_seq();
    let token = {
        let store = HubStore::open(hub_dir.path(), 8 * 1024 * 1024).unwrap();
        station_hub::auth::enroll_device(&store, STATION, "phone")
            .unwrap()
            .bearer
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut kills = 0;
    let mut acked_before_kill = 0;
    loop {
        let hub = HubProcess::spawn(hub_dir.path());
        let mut options = SyncOptions::new(hub.url.clone(), Some(token.clone()));
        options.batch_bytes = 1024;
        options.retry_budget = std::time::Duration::ZERO;
        let sync = runtime.spawn({
            let agent = Arc::clone(&agent);
            async move { sync_once(agent, &options).await }
        });
        if kills < 8 {
            hub.wait_for_acks(rng.random_range(1..=6));
            hub.kill();
            kills += 1;
            let _ = runtime.block_on(sync).unwrap();
            let acked = agent.log().acked().unwrap();
            assert!(acked >= acked_before_kill, "acks never go back");
            acked_before_kill = acked;
            let ids = check_hub(hub_dir.path(), agent.identity().origin_id, head);
            assert!(
                ids.len() as u64 >= acked,
                "everything acknowledged is on the hub's disk"
            );
        } else {
            let report = runtime.block_on(sync).unwrap().unwrap();
            assert_eq!(report.durable_through, head);
            let mut child = hub.child;
            drop(child.stdin.take());
            child.wait().unwrap();
            break;
        }
    }
    let ids = check_hub(hub_dir.path(), agent.identity().origin_id, head);
    let own: BTreeSet<Uuid> = agent
        .own_events(0, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| Uuid::from_slice(&e.event_id).unwrap())
        .collect();
    assert_eq!(ids, own, "the hub holds the device's log exactly");
    eprintln!("hub kills: {kills}, events: {head}");
}

pub(crate) fn run_agent(data: &Path, hub: &str, token: &str, record: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sync-agent"))
        .arg("--data")
        .arg(data)
        .args([
            "--hub",
            hub,
            "--token",
            token,
            "--record",
            &record.to_string(),
        ])
        .args(["--batch-bytes", "1024", "--pull-events", "7"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

pub(crate) fn check_device(data: &Path) -> (u64, usize) {
    let agent = Agent::open(data, OpenOptions::default()).unwrap();
    let own = agent.own_events(0, usize::MAX).unwrap();
    assert!(
        own.iter()
            .enumerate()
            .all(|(i, e)| e.origin_seq == i as u64 + 1)
    );
    let pulled = agent.log().pulled_events(0, usize::MAX).unwrap();
    let cursor = agent.log().pull_cursor().unwrap();
    assert!(
        pulled.iter().all(|(pos, _)| *pos <= cursor),
        "pulled events and cursor agree"
    );
    let ids: BTreeSet<Vec<u8>> = pulled.iter().map(|(_, e)| e.event_id.clone()).collect();
    assert_eq!(ids.len(), pulled.len(), "nothing pulled twice");
    (agent.log().head_seq(), pulled.len())
}

#[test]
fn device_killed_while_pushing_and_pulling_loses_and_duplicates_nothing() {
    let _alone = one_test_at_a_time();
    let mut rng = seeded_rng("device_killed_while_pushing_and_pulling");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hub_dir = tempfile::tempdir().unwrap();
    let store = Arc::new(HubStore::open(hub_dir.path(), 16 * 1024 * 1024).unwrap());
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(station_hub::serve::run(
        listener,
        Arc::clone(&store),
        async {
            let _ = stopped.await;
        },
    ));

    // A colleague's events, so the device has a stream to pull.
    let colleague_dir = tempfile::tempdir().unwrap();
    let colleague = device(colleague_dir.path(), 300);
    let colleague_token = station_hub::auth::enroll_device(&store, STATION, "colleague")
        .unwrap()
        .bearer;
    runtime
        .block_on(sync_once(
            Arc::clone(&colleague),
            &SyncOptions::new(url.clone(), Some(colleague_token)),
        ))
        .unwrap();
    let token = station_hub::auth::enroll_device(&store, STATION, "phone")
        .unwrap()
        .bearer;
    let base = store.event_count();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("device");
    let mut grown = store.subscribe();
    let mut kills = 0;
    for cycle in 0..10 {
        let mut child = run_agent(&data, &url, &token, if cycle == 0 { 800 } else { 0 });
        if store.event_count() == base + 800 {
            // Pushing is over: kill at a random moment of the pull.
            std::thread::sleep(std::time::Duration::from_millis(rng.random_range(0..150)));
            child.kill().unwrap();
            child.wait().unwrap();
            kills += 1;
            check_device(&data);
            continue;
        }
        // Kill at a random number of stored pushes.
        let target = base + rng.random_range(1..=800u64);
        let done = runtime.block_on(async {
            loop {
                if *grown.borrow_and_update() >= target {
                    return false;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    return true;
                }
                let changed =
                    tokio::time::timeout(std::time::Duration::from_millis(50), grown.changed());
                let _ = changed.await;
            }
        });
        if done {
            assert!(child.wait().unwrap().success());
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        check_device(&data);
    }
    // Run to completion.
    let mut child = run_agent(&data, &url, &token, 0);
    assert!(child.wait().unwrap().success());
    let (head, pulled) = check_device(&data);
    assert_eq!(head, 800);
    assert_eq!(store.event_count(), base + 800, "each event stored once");
    let agent = Agent::open(&data, OpenOptions::default()).unwrap();
    let origin = store.origin(agent.identity().origin_id).unwrap();
    assert_eq!(origin.durable_through, 800);
    assert_eq!(pulled, 300, "the device holds its colleague's events once");
    eprintln!("device kills: {kills}");
    let _ = stop.send(());
    runtime.block_on(server).unwrap().unwrap();
}
