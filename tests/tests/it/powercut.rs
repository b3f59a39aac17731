//! Power cuts, not just kills: the agent's log and the hub's log on a disk
//! that loses everything not yet synced (`station-powercut`). A SIGKILL
//! leaves every write in the kernel's page cache; these tests kill the
//! processes *and* drop what was never fsynced, so a missing or misplaced
//! fsync (of a file, of a directory) loses acknowledged data and fails them.
//!
//! What a user relies on, checked after every cut:
//! - every entry the agent reported saved is in the reopened store, once,
//!   at its `origin_seq`, and the store opens without repair (the checks of
//!   [`crate::crash`]);
//! - every event the hub acknowledged to the device is in the hub's log
//!   after its restart, once, and its `durable_through` counts exactly what
//!   it holds (the checks of [`crate::crash_sync`]).
//!
//! The moments of the cuts are seeded; the seed is printed, and
//! `CRASH_SEED=<n>` replays a run. Where FUSE cannot mount, each test prints
//! `skipped: …` with the reason.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::Rng as _;
use station_agent::sync::{SyncError, SyncOptions, SyncReport, sync_once};
use station_hub::store::HubStore;
use station_powercut::{Disk, Mount};
use station_proto::ids::Uuid;
use tempfile::TempDir;

use crate::crash::{Appender, merge_acks, reopen_and_check};
use crate::crash_sync::{HubProcess, check_hub, device};
use crate::fixtures::{STATION, one_test_at_a_time, seeded_rng};

/// A fresh power-cut disk mounted in a temporary directory, or `None` (with
/// the reason printed) where FUSE cannot mount.
fn mounted(test: &str) -> Option<(TempDir, Mount)> {
    let dir = tempfile::tempdir().unwrap();
    let mount = Disk::new().mount_or_skip(test, dir.path())?;
    Some((dir, mount))
}

/// Cuts the power of `mount` (its processes are already dead), counting the
/// cuts that lost something.
fn cut(mount: Mount, lossy_cuts: &mut usize) -> Mount {
    let (mount, report) = mount.cut_power().unwrap();
    if report.lost_anything() {
        *lossy_cuts += 1;
    }
    mount
}

/// A `crash-appender` records entries on the power-cut disk, its store
/// created there by the first round; the power goes after a random number of
/// saved entries, or at a random moment of start-up and recovery, 40 times.
#[test]
fn power_cuts_while_recording_lose_no_saved_entry() {
    const ROUNDS: usize = 40;
    let _alone = one_test_at_a_time();
    let Some((_dir, mut mount)) = mounted("power_cuts_while_recording") else {
        return;
    };
    let started = Instant::now();
    let mut rng = seeded_rng("power_cuts_while_recording");
    let mut known: BTreeMap<u64, Uuid> = BTreeMap::new();
    let (mut acked, mut lossy_cuts) = (0, 0);
    let mut startup = Duration::from_millis(50);
    for round in 0..ROUNDS {
        let store = mount.path().join("device");
        let threads = if rng.random_bool(0.5) { 1 } else { 4 };
        let appender = Appender::spawn(&store, threads);
        let acks = if round > 0 && rng.random_bool(0.3) {
            appender.kill_at(startup.mul_f64(rng.random_range(0.0..=1.5)))
        } else {
            let spawned = Instant::now();
            let acks = appender.kill_after(rng.random_range(1..=40));
            startup = spawned.elapsed().min(Duration::from_millis(500));
            acks
        };
        acked += acks.len();
        merge_acks(&mut known, &acks);
        mount = cut(mount, &mut lossy_cuts);
        known = reopen_and_check(&mount.path().join("device"), &known).events;
    }
    let counts = mount.disk().counts();
    eprintln!(
        "power_cuts_while_recording: {ROUNDS} cuts ({lossy_cuts} lost unsynced writes), \
         {acked} entries saved, {} stored, {} file syncs, {} directory syncs, {:.1?}",
        known.len(),
        counts.file_syncs,
        counts.dir_syncs,
        started.elapsed()
    );
    assert!(
        lossy_cuts > 0,
        "no cut found anything unsynced to lose: the test would miss a missing fsync"
    );
}

/// A plain crash (SIGKILL, no power cut) leaves a store with writes that
/// were never synced; the power then goes exactly as the restart reaches
/// its first sync, then its second, and so on through its start-up
/// (sled's recovery and start-up snapshot, the log's first syncs) and its
/// first entries: the recovery must sync what it builds on before what
/// points to it.
#[test]
fn a_power_cut_at_each_sync_of_a_restart_after_a_crash_loses_nothing() {
    const SYNCS: u64 = 24;
    let _alone = one_test_at_a_time();
    let Some((_dir, mut mount)) = mounted("a_power_cut_at_each_sync_of_a_restart") else {
        return;
    };
    let started = Instant::now();
    let mut rng = seeded_rng("a_power_cut_at_each_sync_of_a_restart");
    let mut known: BTreeMap<u64, Uuid> = BTreeMap::new();
    let (mut lossy_cuts, mut crashes_left_unsynced) = (0, 0);
    for at_sync in 0..SYNCS {
        let store = mount.path().join("device");
        let acks = Appender::spawn(&store, 4).kill_after(rng.random_range(1..=30));
        merge_acks(&mut known, &acks);
        let disk = mount.disk().clone();
        if disk.unsynced().unsynced_files > 0 {
            crashes_left_unsynced += 1;
        }
        disk.stall_at_sync(at_sync);
        let threads = if rng.random_bool(0.5) { 1 } else { 4 };
        let appender = Appender::spawn(&store, threads);
        assert!(
            disk.wait_stalled(Duration::from_secs(30)),
            "the restarted appender never reached sync {at_sync}"
        );
        let mut slot = Some(mount);
        let acks = appender.kill_then(|| {
            let stalled = slot.take().unwrap();
            slot = Some(cut(stalled, &mut lossy_cuts));
        });
        mount = slot.unwrap();
        merge_acks(&mut known, &acks);
        known = reopen_and_check(&mount.path().join("device"), &known).events;
    }
    eprintln!(
        "a_power_cut_at_each_sync_of_a_restart: {SYNCS} cuts ({lossy_cuts} lost unsynced \
         writes; {crashes_left_unsynced} crashes before them left unsynced files), \
         {} entries stored, {:.1?}",
        known.len(),
        started.elapsed()
    );
    assert!(lossy_cuts > 0, "no cut found anything unsynced to lose");
}

/// The `station-agent` command line, as `cargo test --workspace` builds
/// it beside this crate's helper binaries; `None` (with the reason printed)
/// when it was not built, as under `cargo test -p station-tests` alone.
fn station_agent_cli(test: &str) -> Option<PathBuf> {
    let cli = Path::new(env!("CARGO_BIN_EXE_crash-appender")).with_file_name("station-agent");
    if cli.is_file() {
        return Some(cli);
    }
    // Nothing to do if standard error itself is gone.
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {test}: {} is not built (cargo build -p station-agent)",
        cli.display()
    );
    None
}

/// The real command line on the power-cut disk: `station-agent init`, then
/// `station-agent record --json -` fed entries without end; the power goes
/// after a random number of entries it reported saved (`line N: ok
/// event_id=… origin_seq=…`), 12 times. A command that ended by itself is
/// no safer: the first cut comes right after `init` returned.
#[test]
fn station_agent_reports_saved_only_what_survives_a_power_cut() {
    const ROUNDS: usize = 12;
    let test = "station_agent_reports_saved_only_what_survives";
    let Some(cli) = station_agent_cli(test) else {
        return;
    };
    let _alone = one_test_at_a_time();
    let Some((_dir, mut mount)) = mounted(test) else {
        return;
    };
    let started = Instant::now();
    let mut rng = seeded_rng(test);
    let data = mount.path().join("station-data");
    let init = Command::new(&cli)
        .arg("--data")
        .arg(&data)
        .args(["init", "--station", STATION, "--worker", "zd-sw-01"])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    let mut lossy_cuts = 0;
    mount = cut(mount, &mut lossy_cuts);
    let mut known = reopen_and_check(&data, &BTreeMap::new()).events;
    for _ in 0..ROUNDS {
        let mut child = Command::new(&cli)
            .arg("--data")
            .arg(&data)
            .args(["record", "--json", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let entry = format!(
            "{{\"activityHeld\":{{\"heldOn\":\"{}\",\"communityCode\":\"{STATION}001\",\
             \"kind\":\"ACTIVITY_KIND_CHILD_CARE\",\"title\":\"儿童关爱\",\
             \"participants\":10,\"personTimes\":12}}}}\n",
            station_agent::engine::today()
        );
        // Entries without end, until the command dies and the pipe breaks.
        std::thread::spawn(move || while stdin.write_all(entry.as_bytes()).is_ok() {});
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, saved) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(parse_saved(&line)).is_err() {
                    break;
                }
            }
        });
        let mut acks = Vec::new();
        for _ in 0..rng.random_range(1..=30) {
            acks.push(saved.recv().unwrap());
        }
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        acks.extend(saved.iter());
        merge_acks(&mut known, &acks);
        mount = cut(mount, &mut lossy_cuts);
        known = reopen_and_check(&data, &known).events;
    }
    eprintln!(
        "{test}: {} cuts ({lossy_cuts} lost unsynced writes), {} entries stored, {:.1?}",
        ROUNDS + 1,
        known.len(),
        started.elapsed()
    );
    assert!(lossy_cuts > 0, "no cut found anything unsynced to lose");
}

/// `(origin_seq, event_id)` of a line `line N: ok event_id=… origin_seq=…`.
fn parse_saved(line: &str) -> (u64, Uuid) {
    let field = |name: &str| {
        line.split_ascii_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    assert!(line.contains(": ok "), "not a saved entry: {line:?}");
    (
        field("origin_seq=").parse().unwrap(),
        field("event_id=").parse().unwrap(),
    )
}

/// A device holding 600 entries of field work, and a hub store on the
/// power-cut disk with a token enrolled for it, as `station-hub enroll` makes
/// before the first `serve`.
struct HubScene {
    _agent_dir: TempDir,
    agent: Arc<station_agent::Agent>,
    origin: Uuid,
    head: u64,
    hub_data: PathBuf,
    token: String,
    runtime: tokio::runtime::Runtime,
}

impl HubScene {
    fn on(mount: &Mount) -> Self {
        let agent_dir = tempfile::tempdir().unwrap();
        let agent = device(agent_dir.path(), 600);
        let hub_data = mount.path().join("hub");
        let token = {
            let store = HubStore::open(&hub_data, 8 * 1024 * 1024).unwrap();
            station_hub::auth::enroll_device(&store, STATION, "phone")
                .unwrap()
                .bearer
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        HubScene {
            origin: agent.identity().origin_id,
            head: agent.log().head_seq(),
            _agent_dir: agent_dir,
            agent,
            hub_data,
            token,
            runtime,
        }
    }
}

/// A `sync-hub` on the power-cut disk receives a device's pushes; the power
/// goes after a random number of acknowledged pushes, 10 times, then the
/// sync runs to completion. The hub's store is created on the disk by the
/// test, as `station-hub enroll` does before the first `serve`.
#[test]
fn power_cuts_of_the_hub_lose_no_acknowledged_push() {
    const CUTS: usize = 10;
    let _alone = one_test_at_a_time();
    let Some((_dir, mut mount)) = mounted("power_cuts_of_the_hub") else {
        return;
    };
    let started = Instant::now();
    let mut rng = seeded_rng("power_cuts_of_the_hub");
    let HubScene {
        _agent_dir,
        agent,
        origin,
        head,
        hub_data,
        token,
        runtime,
    } = HubScene::on(&mount);
    let mut lossy_cuts = 0;
    for _ in 0..CUTS {
        let hub = HubProcess::spawn(&hub_data);
        let sync = runtime.spawn(push(Arc::clone(&agent), &hub.url, &token));
        hub.wait_for_acks(rng.random_range(1..=6));
        hub.kill();
        // The push fails with the hub gone; what it acknowledged before is
        // recorded on the device.
        let _ = runtime.block_on(sync).unwrap();
        mount = cut(mount, &mut lossy_cuts);
        check_acknowledged_on_hub(&hub_data, &agent, origin, head);
    }
    let hub = HubProcess::spawn(&hub_data);
    let report = runtime
        .block_on(push(Arc::clone(&agent), &hub.url, &token))
        .unwrap();
    assert_eq!(report.durable_through, head);
    hub.kill();
    mount = cut(mount, &mut lossy_cuts);
    let held = check_acknowledged_on_hub(&hub_data, &agent, origin, head);
    assert_eq!(
        held, head as usize,
        "the hub holds the device's log exactly"
    );
    eprintln!(
        "power_cuts_of_the_hub: {} cuts ({lossy_cuts} lost unsynced writes), {head} events, \
         {:.1?}",
        CUTS + 1,
        started.elapsed()
    );
    assert!(lossy_cuts > 0, "no cut found anything unsynced to lose");
    drop(mount);
}

/// The hub's power goes exactly as it reaches its first sync, then its
/// second, and so on, while it opens its store and acknowledges a device's
/// pushes: whatever it acknowledged before the cut is in its log after it.
#[test]
fn a_power_cut_at_each_sync_of_the_hub_loses_no_acknowledged_push() {
    const SYNCS: u64 = 16;
    let _alone = one_test_at_a_time();
    let Some((_dir, mut mount)) = mounted("a_power_cut_at_each_sync_of_the_hub") else {
        return;
    };
    let started = Instant::now();
    let HubScene {
        _agent_dir,
        agent,
        origin,
        head,
        hub_data,
        token,
        runtime,
    } = HubScene::on(&mount);
    let mut lossy_cuts = 0;
    for at_sync in 0..SYNCS {
        let disk = mount.disk().clone();
        disk.stall_at_sync(at_sync);
        let (mut hub, listening) = spawn_hub(&hub_data);
        // The cut may come while the hub opens its store, before it listens.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut sync = None;
        while !disk.wait_stalled(Duration::from_millis(20)) {
            assert!(
                Instant::now() < deadline,
                "the hub never reached sync {at_sync}"
            );
            if sync.is_none()
                && let Ok(url) = listening.try_recv()
            {
                sync = Some(runtime.spawn(push(Arc::clone(&agent), &url, &token)));
            }
        }
        hub.kill().unwrap();
        mount = cut(mount, &mut lossy_cuts);
        hub.wait().unwrap();
        if let Some(sync) = sync {
            let _ = runtime.block_on(sync).unwrap();
        }
        check_acknowledged_on_hub(&hub_data, &agent, origin, head);
    }
    eprintln!(
        "a_power_cut_at_each_sync_of_the_hub: {SYNCS} cuts ({lossy_cuts} lost unsynced writes), \
         {} of {head} events acknowledged, {:.1?}",
        agent.log().acked().unwrap(),
        started.elapsed()
    );
    assert!(agent.log().acked().unwrap() > 0, "no push was acknowledged");
}

/// A `sync-hub` on `data`, and where it says it listens once its store is
/// open. Killing it does not wait: a hub blocked on a held sync ends only
/// once the power is cut.
fn spawn_hub(data: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sync-hub"))
        .arg("--data")
        .arg(data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, listening) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.trim().strip_prefix("listening ") {
                let _ = tx.send(format!("http://{addr}"));
            }
        }
    });
    (child, listening)
}

/// One push of `agent`'s log to the hub at `url`, no retries.
fn push(
    agent: Arc<station_agent::Agent>,
    url: &str,
    token: &str,
) -> impl Future<Output = Result<SyncReport, SyncError>> + Send + 'static {
    let mut options = SyncOptions::new(url.to_owned(), Some(token.to_owned()));
    options.batch_bytes = 1024;
    options.retry_budget = Duration::ZERO;
    async move { sync_once(agent, &options).await }
}

/// Reopens the hub's store after a cut: it holds every event the device
/// recorded as acknowledged, once, and exactly `1..=durable_through`.
/// Returns how many of the device's events it holds.
fn check_acknowledged_on_hub(
    hub_data: &Path,
    agent: &station_agent::Agent,
    origin: Uuid,
    head: u64,
) -> usize {
    let ids = check_hub(hub_data, origin, head);
    let acked = agent.log().acked().unwrap();
    let own = agent.own_events(0, usize::MAX).unwrap();
    for event in own.iter().filter(|e| e.origin_seq <= acked) {
        let event_id = Uuid::from_slice(&event.event_id).unwrap();
        assert!(
            ids.contains(&event_id),
            "event {} (seq {}) was acknowledged by the hub, which lost it in a power cut \
             (acknowledged through {acked})",
            event_id,
            event.origin_seq
        );
    }
    ids.len()
}

/// A `sync-agent` device on the power-cut disk records 800 entries and syncs
/// with a hub (on an ordinary disk, never cut) that holds a colleague's 300;
/// the device's power goes at a random number of pushes stored by the hub,
/// or at a random moment of its pull, 10 times, then it syncs to the end.
/// The device keeps its log and what it pulled, once each, and the hub ends
/// with each of its events once.
#[test]
fn power_cuts_of_a_syncing_device_lose_and_duplicate_nothing() {
    const CUTS: usize = 10;
    const EVENTS: u64 = 800;
    let _alone = one_test_at_a_time();
    let Some((_dir, mut mount)) = mounted("power_cuts_of_a_syncing_device") else {
        return;
    };
    let started = Instant::now();
    let mut rng = seeded_rng("power_cuts_of_a_syncing_device");
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

    let mut grown = store.subscribe();
    let mut lossy_cuts = 0;
    let mut cuts = 0;
    while cuts < CUTS {
        let data = mount.path().join("device");
        let record = if cuts == 0 { EVENTS as usize } else { 0 };
        let mut child = crate::crash_sync::run_agent(&data, &url, &token, record);
        if store.event_count() == base + EVENTS {
            // Pushing is over: cut at a random moment of the pull.
            std::thread::sleep(Duration::from_millis(rng.random_range(0..150)));
        } else {
            let target = base + rng.random_range(1..=EVENTS);
            let finished = runtime.block_on(async {
                loop {
                    if *grown.borrow_and_update() >= target {
                        return false;
                    }
                    if let Ok(Some(_)) = child.try_wait() {
                        return true;
                    }
                    let changed = tokio::time::timeout(Duration::from_millis(50), grown.changed());
                    let _ = changed.await;
                }
            });
            if finished {
                assert!(child.wait().unwrap().success());
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        mount = cut(mount, &mut lossy_cuts);
        cuts += 1;
        let (head, _) = crate::crash_sync::check_device(&mount.path().join("device"));
        assert_eq!(head, EVENTS, "every recorded entry survives the cut");
    }
    let data = mount.path().join("device");
    let mut child = crate::crash_sync::run_agent(&data, &url, &token, 0);
    assert!(child.wait().unwrap().success());
    let (head, pulled) = crate::crash_sync::check_device(&data);
    assert_eq!(head, EVENTS);
    assert_eq!(pulled, 300, "the device holds its colleague's events once");
    assert_eq!(store.event_count(), base + EVENTS, "each event stored once");
    let agent = station_agent::Agent::open(&data, crate::fixtures::open_options(&data)).unwrap();
    let origin = store.origin(agent.identity().origin_id).unwrap();
    assert_eq!(origin.durable_through, EVENTS);
    drop(agent);
    eprintln!(
        "power_cuts_of_a_syncing_device: {cuts} cuts ({lossy_cuts} lost unsynced writes), \
         {:.1?}",
        started.elapsed()
    );
    let _ = stop.send(());
    runtime.block_on(server).unwrap().unwrap();
    assert!(lossy_cuts > 0, "no cut found anything unsynced to lose");
}
