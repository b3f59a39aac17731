//! The peer of `sync-backlog`: PouchDB replication of the same records, as
//! JSON documents, from an in-memory PouchDB on the "phone" to
//! express-pouchdb on the "hub", through the same weak-link simulator.
//!
//! `scripts/pouchdb-peer.sh` installs the pinned npm packages of
//! `tests/bench/pouchdb/` under `target/pouchdb-peer/`; the node scripts of
//! `tests/bench/pouchdb/` run with that `node_modules` as `NODE_PATH`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use station_sim::weaklink::{LinkCounters, LinkProfile, WeakLink};
use tokio::io::AsyncBufReadExt as _;
use tokio::process::Command;

use crate::workspace_root;

/// The installed peer.
#[derive(Debug)]
pub struct Peer {
    /// `node_modules` of the pinned packages.
    node_path: PathBuf,
    /// `tests/bench/pouchdb`, where the node scripts are.
    scripts: PathBuf,
}

/// What one replication took.
#[derive(Debug)]
pub struct PeerRun {
    /// Wall time from the start of replication until the hub side held every document.
    pub elapsed: Duration,
    /// Replications started (one, plus one after each failure).
    pub attempts: u64,
    /// Bytes the link carried.
    pub counters: LinkCounters,
}

/// Installs the peer (once per lock file). `Err` carries why it cannot run
/// here, to print in the skipped row.
pub fn install() -> Result<Peer, String> {
    let root = workspace_root();
    let output = std::process::Command::new("bash")
        .arg(root.join("scripts/pouchdb-peer.sh"))
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("scripts/pouchdb-peer.sh could not run: {e}"))?;
    match output.status.code() {
        Some(0) => {}
        Some(3) => {
            return Err(
                "Node.js or npm is not installed; install them to measure the PouchDB peer".into(),
            );
        }
        _ => {
            return Err(format!(
                "scripts/pouchdb-peer.sh failed ({}): npm could not install the PouchDB peer",
                output.status
            ));
        }
    }
    let node_path = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .map(str::trim)
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .ok_or("scripts/pouchdb-peer.sh printed no node_modules directory")?;
    Ok(Peer {
        node_path,
        scripts: root.join("tests/bench/pouchdb"),
    })
}

impl Peer {
    fn node(&self, script: &str) -> Command {
        let mut command = Command::new("node");
        command
            .arg(self.scripts.join(script))
            .env("NODE_PATH", &self.node_path)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Replicates `docs` (one JSON document each, with its `_id`) to a fresh
    /// express-pouchdb through a weak link of `profile`.
    pub async fn replicate(
        &self,
        docs: &[serde_json::Value],
        profile: LinkProfile,
        timeout: Duration,
    ) -> anyhow::Result<PeerRun> {
        let dir = tempfile::tempdir()?;
        let docs_path = dir.path().join("docs.jsonl");
        let mut jsonl = String::new();
        for doc in docs {
            jsonl.push_str(&serde_json::to_string(doc)?);
            jsonl.push('\n');
        }
        std::fs::write(&docs_path, jsonl)?;

        let mut server = self
            .node("server.js")
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting node server.js")?;
        let stdout = server.stdout.take().context("server stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("express-pouchdb did not start within 30 s")??
            .context("express-pouchdb exited before listening")?;
        let port: serde_json::Value = serde_json::from_str(&first)?;
        let port = port["port"].as_u64().context("no port from server.js")?;
        let upstream: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;

        let link = WeakLink::start(upstream, profile).await?;
        let target = format!("http://{}/bench", link.local_addr());
        let check = format!("http://{upstream}/bench");
        let started = Instant::now();
        let run = self
            .node("replicate.js")
            .arg(&docs_path)
            .arg(&target)
            .arg(&check)
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output();
        let output = tokio::time::timeout(timeout, run)
            .await
            .with_context(|| format!("PouchDB replication did not finish within {timeout:?}"))??;
        let wall = started.elapsed();
        let counters = link.counters();
        link.shutdown().await;
        let _ = server.kill().await;
        anyhow::ensure!(
            output.status.success(),
            "replicate.js failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).with_context(|| {
                format!(
                    "replicate.js printed {:?}",
                    String::from_utf8_lossy(&output.stdout)
                )
            })?;
        anyhow::ensure!(
            report["docs"].as_u64() == Some(docs.len() as u64),
            "replicate.js reported {report}"
        );
        let elapsed = report["ms"].as_u64().map_or(wall, Duration::from_millis);
        Ok(PeerRun {
            elapsed,
            attempts: report["attempts"].as_u64().unwrap_or(0),
            counters,
        })
    }
}
