//! `durable-append`: the agent log (validate, append, views, flush + fsync,
//! group commit) against SQLite through rusqlite (WAL, `synchronous=FULL`,
//! one transaction per event) and against plain file append + `fdatasync`,
//! with 1 and with 8 concurrent appenders. Target: at least SQLite's rate.
//! The agent's store is encrypted, as the product opens it; the same run
//! measures it in clear too (target: encrypted at least 90% of that).

use std::fs::OpenOptions as FileOptions;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use prost::Message as _;
use station_agent::{Agent, InitOptions, OpenOptions};
use station_proto::v1::{ActivityHeld, ActivityKind};
use station_proto::{Body, Event};

use crate::{Goal, Row};

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

fn agent_appends(
    dir: &Path,
    threads: usize,
    per_thread: usize,
    encrypted: bool,
) -> anyhow::Result<f64> {
    let key = if encrypted {
        Some(station_agent::seal::KeySource::Key(
            station_agent::seal::WrappingKey::generate()?,
        ))
    } else {
        None
    };
    let agent = Arc::new(Agent::init(
        &dir.join("agent"),
        InitOptions {
            station_code: "540502001".into(),
            worker_id: "bench".into(),
            hub_url: None,
            token: None,
        },
        OpenOptions {
            key,
            ..OpenOptions::default()
        },
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

/// Runs the scenario, adding its rows.
pub fn run(quick: bool, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let n = if quick { 100 } else { 1000 };
    for threads in [1usize, 8] {
        let per_thread = n / threads;
        let ours = agent_appends(tempfile::tempdir()?.path(), threads, per_thread, true)?;
        let clear = agent_appends(tempfile::tempdir()?.path(), threads, per_thread, false)?;
        let sqlite = sqlite_appends(tempfile::tempdir()?.path(), threads, per_thread)?;
        let file = file_appends(tempfile::tempdir()?.path(), threads, per_thread)?;
        let metric = format!("{threads} appender(s), {n} events, each durable");
        rows.push(
            Row::new(
                "durable-append",
                metric.clone(),
                ours,
                "SQLite WAL synchronous=FULL",
                sqlite,
                "events/s",
            )
            .goal(Goal::RatioAtLeast(1.0)),
        );
        rows.push(
            Row::new(
                "durable-append",
                metric.clone(),
                ours,
                "the same store in clear",
                clear,
                "events/s",
            )
            .goal(Goal::RatioAtLeast(0.9)),
        );
        rows.push(Row::new(
            "durable-append",
            metric,
            ours,
            "file append + fdatasync",
            file,
            "events/s",
        ));
    }
    Ok(())
}
