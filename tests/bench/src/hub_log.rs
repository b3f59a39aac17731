//! `hub-log`: the hub's log alone, on each engine: the devices of
//! `hub-ingest` (same generator, same batches) each pushing its batches
//! straight into [`HubLog::push`] from a thread of its own, on the embedded
//! sled store, then on JetStream over one node (R1) and over three nodes on
//! loopback (R3), in the same run. Every push returns once its engine made
//! it durable (sled: fdatasync, group-committed; JetStream: acknowledged by
//! a quorum of replicas).
//!
//! The nodes are the pinned `nats-server` that `STATION_NATS_SERVER` names
//! (`scripts/test.sh` sets it from `scripts/nats-server.sh path`); without
//! it the JetStream rows are kept, marked skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use station_hub::store::{HubLog, HubStore, JetStreamLog, JetStreamOptions};

use crate::ingest::{Device, devices};
use crate::{Row, progress};

const SCENARIO: &str = "hub-log";

/// Pushes every device's batches, one thread per device; events per second.
fn push_all(log: Arc<dyn HubLog + Send + Sync>, devices: &[Device]) -> anyhow::Result<f64> {
    let today = station_hub::projections::today_in_china();
    let events: usize = devices
        .iter()
        .map(|d| d.batches.iter().map(Vec::len).sum::<usize>())
        .sum();
    let started = Instant::now();
    std::thread::scope(|scope| {
        let writers: Vec<_> = devices
            .iter()
            .map(|device| {
                let log = Arc::clone(&log);
                scope.spawn(move || -> anyhow::Result<()> {
                    for batch in &device.batches {
                        // A push that fails was not acknowledged: the device
                        // sends it again, as the agent does.
                        let mut attempts = 0;
                        loop {
                            let now_ms = chrono::Utc::now().timestamp_millis();
                            match log.push(batch.clone(), today, now_ms) {
                                Ok(_) => break,
                                Err(error) if attempts >= 5 => return Err(error.into()),
                                Err(_) => attempts += 1,
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        writers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a writer panicked"))?)
    })?;
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// Nodes of a local cluster, killed when dropped.
pub(crate) struct Nodes {
    children: Vec<Child>,
    /// Their client URLs.
    pub(crate) servers: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn start_nodes(binary: &Path, count: usize) -> anyhow::Result<Nodes> {
    let ports = (0..count)
        .map(|_| Ok((free_port()?, free_port()?)))
        .collect::<anyhow::Result<Vec<(u16, u16)>>>()?;
    let routes: Vec<String> = ports
        .iter()
        .map(|(_, route)| format!("nats-route://127.0.0.1:{route}"))
        .collect();
    let mut nodes = Nodes {
        children: Vec::new(),
        servers: Vec::new(),
        _dir: tempfile::tempdir()?,
    };
    for (n, (client, route)) in ports.iter().enumerate() {
        let node = nodes._dir.path().join(format!("n{n}"));
        std::fs::create_dir_all(node.join("js"))?;
        let cluster = if count > 1 {
            format!(
                "cluster {{\n  name: bench\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                routes.join(", ")
            )
        } else {
            String::new()
        };
        std::fs::write(
            node.join("nats.conf"),
            format!(
                "server_name: n{n}\nlisten: 127.0.0.1:{client}\njetstream {{\n  store_dir: {:?}\n}}\n{cluster}",
                node.join("js")
            ),
        )?;
        nodes.children.push(
            Command::new(binary)
                .arg("--config")
                .arg(node.join("nats.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        nodes.servers.push(format!("nats://127.0.0.1:{client}"));
    }
    Ok(nodes)
}

/// Opens a log over `nodes`, polling while they start and elect leaders.
pub(crate) fn open(nodes: &Nodes, replicas: usize) -> anyhow::Result<JetStreamLog> {
    let options = JetStreamOptions {
        servers: nodes.servers.clone(),
        credentials: None,
        replicas,
        stream: "BENCH".into(),
        timeout: Duration::from_secs(5),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match JetStreamLog::open(&options) {
            Ok(log) => return Ok(log),
            Err(error) if Instant::now() > deadline => return Err(error.into()),
            Err(_) => std::thread::yield_now(),
        }
    }
}

/// Runs the scenario, adding its rows.
pub fn run(quick: bool, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let (count, pushes, batch) = if quick { (20, 2, 10) } else { (50, 5, 100) };
    let devices = devices(count, pushes, batch);
    let size = format!("{count} devices pushing {pushes} × {batch} events each, one thread each");
    let baseline = "the embedded sled store (fdatasync, group commit)";

    progress!("hub-log: sled");
    let dir = tempfile::tempdir()?;
    let sled: Arc<dyn HubLog + Send + Sync> = Arc::new(HubStore::open(dir.path(), 256 << 20)?);
    let sled_rate = push_all(sled, &devices)?;

    let binary = std::env::var_os("STATION_NATS_SERVER").map(PathBuf::from);
    let Some(binary) = binary.filter(|b| b.is_file()) else {
        for replicas in [1, 3] {
            rows.push(Row::skipped(
                SCENARIO,
                format!("JetStream R{replicas}: {size}: events/s"),
                baseline,
                "events/s",
                "no nats-server: set STATION_NATS_SERVER (scripts/nats-server.sh path)",
            ));
        }
        return Ok(());
    };
    for (replicas, nodes) in [(1, 1), (3, 3)] {
        progress!("hub-log: JetStream R{replicas} on {nodes} local node(s)");
        let cluster = start_nodes(&binary, nodes)?;
        let log: Arc<dyn HubLog + Send + Sync> = Arc::new(open(&cluster, replicas)?);
        let rate = push_all(log, &devices)?;
        rows.push(
            Row::new(
                SCENARIO,
                format!("JetStream R{replicas}: {size}: events/s"),
                rate,
                baseline,
                sled_rate,
                "events/s",
            )
            .note(format!(
                "{nodes} nats-server 2.15 node(s) on loopback, default sync (the OS writes back); one front-end, its pushes one at a time"
            )),
        );
    }
    Ok(())
}
