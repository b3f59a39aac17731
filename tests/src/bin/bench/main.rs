//! The benchmark harness: each figure side by side with its baseline, measured
//! in the same run on the same bytes. Prints a markdown table and writes it
//! with a JSON copy under `target/bench/`.
//!
//! Scenarios:
//! - `durable-append`: the agent log (validate, append, views, flush + fsync,
//!   group commit) against SQLite through rusqlite (WAL, `synchronous=FULL`,
//!   one transaction per event) and against plain file append + `fdatasync`,
//!   with 1 and with 8 concurrent appenders.
//! - `sync-backlog`: a device's backlog pushed to a real hub through the
//!   weak-link simulator (64 kbit/s up, 256 kbit/s down, 300 ms round trip,
//!   a cut every 20 s): wire bytes per event against the protobuf size, and
//!   wall time against the link's limit for the bytes that crossed it.

use std::fs::OpenOptions as FileOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use prost::Message as _;
use station_agent::{Agent, InitOptions, OpenOptions};
use station_proto::v1::{ActivityHeld, ActivityKind};
use station_proto::{Body, Event};

/// Benchmarks of station-sync against their baselines.
#[derive(Debug, Parser)]
struct Args {
    /// Small sizes, for a smoke run.
    #[arg(long)]
    quick: bool,
    /// Run only the scenario with this name.
    #[arg(long)]
    only: Option<String>,
    /// Where to write the results (default: target/bench).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// One line of the results table.
#[derive(Debug, serde::Serialize)]
struct Row {
    scenario: String,
    metric: String,
    ours: f64,
    baseline_name: String,
    baseline: f64,
    /// ours / baseline, for figures where bigger is better.
    ratio: f64,
    unit: String,
}

fn body() -> Body {
    Body::ActivityHeld(ActivityHeld {
        held_on: "2026-11-20".into(),
        community_code: "540502001003".into(),
        kind: ActivityKind::ChildCare as i32,
        title: "儿童之家 བྱིས་པའི་ཁྱིམ 周末课堂".into(),
        participants: 18,
        person_times: 18,
        volunteers: 3,
        volunteer_minutes: 360,
    })
}

/// The bytes the baselines store: an event as the agent would encode it.
fn event_bytes() -> Vec<u8> {
    Event {
        event_id: vec![7; 16],
        origin_id: vec![9; 16],
        origin_seq: 1,
        station_code: "540502001".into(),
        author: "zd-sw-01".into(),
        recorded_at_ms: 1_796_000_000_000,
        hlc: 1_796_000_000_000 << 16,
        body: Some(body()),
    }
    .encode_to_vec()
}

/// Runs `per_thread` operations on each of `threads` threads; returns ops/s.
fn run_threads<F>(threads: usize, per_thread: usize, op: F) -> anyhow::Result<f64>
where
    F: Fn(usize, usize) -> anyhow::Result<()> + Send + Sync + 'static,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let op = Arc::clone(&op);
            std::thread::spawn(move || -> anyhow::Result<()> {
                for i in 0..per_thread {
                    op(t, i)?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("benchmark thread panicked"))??;
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    Ok((threads * per_thread) as f64 / secs)
}

fn agent_appends(dir: &Path, threads: usize, per_thread: usize) -> anyhow::Result<f64> {
    let agent = Arc::new(Agent::init(
        &dir.join("agent"),
        InitOptions {
            station_code: "540502001".into(),
            worker_id: "bench".into(),
            hub_url: None,
            token: None,
        },
        OpenOptions::default(),
    )?);
    run_threads(threads, per_thread, move |_, _| {
        agent.record(body())?;
        Ok(())
    })
}

fn sqlite_appends(dir: &Path, threads: usize, per_thread: usize) -> anyhow::Result<f64> {
    let path = dir.join("baseline.sqlite");
    let setup = rusqlite::Connection::open(&path)?;
    setup.pragma_update(None, "journal_mode", "WAL")?;
    setup.execute_batch(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, event_id BLOB UNIQUE, body BLOB NOT NULL);",
    )?;
    drop(setup);
    let connections: Vec<Mutex<rusqlite::Connection>> = (0..threads)
        .map(|_| -> anyhow::Result<_> {
            let c = rusqlite::Connection::open(&path)?;
            c.pragma_update(None, "synchronous", "FULL")?;
            c.busy_timeout(Duration::from_secs(60))?;
            Ok(Mutex::new(c))
        })
        .collect::<anyhow::Result<_>>()?;
    let bytes = event_bytes();
    run_threads(threads, per_thread, move |t, i| {
        let mut c = connections[t]
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let id = uuid::Uuid::now_v7();
        tx.execute(
            "INSERT INTO events (event_id, body) VALUES (?1, ?2)",
            rusqlite::params![id.as_bytes().as_slice(), &bytes],
        )
        .with_context(|| format!("insert {t}/{i}"))?;
        tx.commit()?;
        Ok(())
    })
}

fn file_appends(dir: &Path, threads: usize, per_thread: usize) -> anyhow::Result<f64> {
    let file = FileOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("baseline.log"))?;
    let file = Arc::new(Mutex::new(file));
    let bytes = event_bytes();
    let mut record = (bytes.len() as u32).to_le_bytes().to_vec();
    record.extend_from_slice(&bytes);
    run_threads(threads, per_thread, move |_, _| {
        let mut f = file.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        f.write_all(&record)?;
        let f = f.try_clone()?;
        f.sync_data()?;
        Ok(())
    })
}

fn durable_append(quick: bool, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let n = if quick { 100 } else { 1000 };
    for threads in [1usize, 8] {
        let per_thread = n / threads;
        let ours = agent_appends(tempfile::tempdir()?.path(), threads, per_thread)?;
        let sqlite = sqlite_appends(tempfile::tempdir()?.path(), threads, per_thread)?;
        let file = file_appends(tempfile::tempdir()?.path(), threads, per_thread)?;
        let metric = format!("{threads} appender(s), {n} events");
        rows.push(Row {
            scenario: "durable-append".into(),
            metric: metric.clone(),
            ours,
            baseline_name: "SQLite WAL synchronous=FULL".into(),
            baseline: sqlite,
            ratio: ours / sqlite,
            unit: "events/s".into(),
        });
        rows.push(Row {
            scenario: "durable-append".into(),
            metric,
            ours,
            baseline_name: "file append + fdatasync".into(),
            baseline: file,
            ratio: ours / file,
            unit: "events/s".into(),
        });
    }
    Ok(())
}

async fn sync_backlog(quick: bool, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    use station_tests::weaklink::WeakLink;
    let events = if quick { 200 } else { 2000 };
    let hub_dir = tempfile::tempdir()?;
    let store = Arc::new(station_hub::store::HubStore::open(
        hub_dir.path(),
        64 << 20,
    )?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hub_addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(station_hub::server::run(
        listener,
        Arc::clone(&store),
        async {
            let _ = stopped.await;
        },
    ));
    let device_dir = tempfile::tempdir()?;
    let agent = Arc::new(Agent::init(
        device_dir.path(),
        InitOptions {
            station_code: "540502001".into(),
            worker_id: "bench".into(),
            hub_url: None,
            token: None,
        },
        OpenOptions::default(),
    )?);
    let mut work = station_tests::fieldwork::FieldWork::new("540502001", 42);
    for _ in 0..events {
        let body = work.next_body();
        let is_case = matches!(body, Body::CaseOpened(_));
        let r = agent.record(body)?;
        if is_case {
            work.opened(r.event_id);
        }
    }
    let proto_bytes: usize = agent
        .own_events(0, usize::MAX)?
        .iter()
        .map(prost::Message::encoded_len)
        .sum();
    let link = WeakLink::start(hub_addr, profile(7)).await?;
    let token = station_hub::auth::enroll_device(&store, "540502001", "bench")?.bearer;
    let options =
        station_agent::sync::SyncOptions::new(format!("http://{}", link.local_addr()), Some(token));
    let start = Instant::now();
    loop {
        match station_agent::sync::sync_once(Arc::clone(&agent), &options).await {
            Ok(report) if report.durable_through == events as u64 => break,
            Ok(_) => {}
            Err(e) if e.is_retriable() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let c = link.counters();
    let limit = c.up_bytes as f64 / (64_000.0 / 8.0) + c.down_bytes as f64 / (256_000.0 / 8.0);
    let n = events as f64;
    rows.push(Row {
        scenario: "sync-backlog".into(),
        metric: format!("{events} events: wire bytes/event up (vs protobuf bytes/event)"),
        ours: c.up_bytes as f64 / n,
        baseline_name: "protobuf encoding".into(),
        baseline: proto_bytes as f64 / n,
        ratio: c.up_bytes as f64 / proto_bytes as f64,
        unit: "bytes/event".into(),
    });
    rows.push(Row {
        scenario: "sync-backlog".into(),
        metric: format!(
            "{events} events through 64/256 kbit/s, 300 ms RTT ({} cuts)",
            c.cuts
        ),
        ours: elapsed,
        baseline_name: "link limit for the bytes sent".into(),
        baseline: limit,
        ratio: elapsed / limit,
        unit: "s".into(),
    });
    link.shutdown().await;

    // A colleague's phone of the same station pulls the whole backlog.
    let colleague_dir = tempfile::tempdir()?;
    let colleague = Arc::new(Agent::init(
        colleague_dir.path(),
        InitOptions {
            station_code: "540502001".into(),
            worker_id: "bench-2".into(),
            hub_url: None,
            token: None,
        },
        OpenOptions::default(),
    )?);
    let down_link = WeakLink::start(hub_addr, profile(7)).await?;
    let token = station_hub::auth::enroll_device(&store, "540502001", "bench-2")?.bearer;
    let options = station_agent::sync::SyncOptions::new(
        format!("http://{}", down_link.local_addr()),
        Some(token),
    );
    let start = Instant::now();
    loop {
        match station_agent::sync::sync_once(Arc::clone(&colleague), &options).await {
            Ok(report) if report.pull_cursor >= events as u64 => break,
            Ok(_) => {}
            Err(e) if e.is_retriable() => {}
            Err(e) => return Err(e.into()),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let c = down_link.counters();
    let limit = c.up_bytes as f64 / (64_000.0 / 8.0) + c.down_bytes as f64 / (256_000.0 / 8.0);
    rows.push(Row {
        scenario: "sync-backlog".into(),
        metric: format!("{events} events pulled by a colleague: wire bytes/event down"),
        ours: c.down_bytes as f64 / n,
        baseline_name: "protobuf encoding".into(),
        baseline: proto_bytes as f64 / n,
        ratio: c.down_bytes as f64 / proto_bytes as f64,
        unit: "bytes/event".into(),
    });
    rows.push(Row {
        scenario: "sync-backlog".into(),
        metric: format!(
            "{events} events pulled through 256 kbit/s down ({} cuts)",
            c.cuts
        ),
        ours: elapsed,
        baseline_name: "link limit for the bytes sent".into(),
        baseline: limit,
        ratio: elapsed / limit,
        unit: "s".into(),
    });
    down_link.shutdown().await;
    let _ = stop.send(());
    server.await??;
    Ok(())
}

fn profile(seed: u64) -> station_tests::weaklink::LinkProfile {
    station_tests::weaklink::LinkProfile {
        up_bytes_per_sec: 64_000 / 8,
        down_bytes_per_sec: 256_000 / 8,
        one_way_latency: Duration::from_millis(150),
        cut_every: Some((Duration::from_secs(20), Duration::from_secs(20))),
        stall_every: None,
        stall_for: (Duration::ZERO, Duration::ZERO),
        seed,
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rows = Vec::new();
    let wanted = |name: &str| args.only.as_deref().is_none_or(|only| only == name);
    if wanted("durable-append") {
        durable_append(args.quick, &mut rows)?;
    }
    if wanted("sync-backlog") {
        tokio::runtime::Runtime::new()?.block_on(sync_backlog(args.quick, &mut rows))?;
    }
    let mut table = String::from(
        "| scenario | metric | ours | baseline | baseline value | ours / baseline | unit |\n\
         | --- | --- | ---: | --- | ---: | ---: | --- |\n",
    );
    for r in &rows {
        table.push_str(&format!(
            "| {} | {} | {:.1} | {} | {:.1} | {:.2} | {} |\n",
            r.scenario, r.metric, r.ours, r.baseline_name, r.baseline, r.ratio, r.unit
        ));
    }
    print!("{table}");
    let out = args.out.unwrap_or_else(|| PathBuf::from("target/bench"));
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("results.md"), &table)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&rows)?,
    )?;
    Ok(())
}
