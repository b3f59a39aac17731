//! `sync-agent`: a device process for end-to-end tests. It opens (or creates)
//! a store, records generated field work when asked, then syncs with the hub
//! until one round completes, retrying what the link or the hub broke.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use station_agent::sync::{SyncOptions, sync_once};
use station_agent::{Agent, AgentError, InitOptions, OpenOptions, StoreError};
use station_sim::fieldwork::FieldWork;

/// A device that records and syncs once.
#[derive(Debug, Parser)]
struct Args {
    /// The device's data folder.
    #[arg(long)]
    data: PathBuf,
    /// The hub's address.
    #[arg(long)]
    hub: String,
    /// The device token.
    #[arg(long)]
    token: Option<String>,
    /// The station, when the store is created.
    #[arg(long, default_value = "540502001")]
    station: String,
    /// Record this many generated events before syncing.
    #[arg(long, default_value_t = 0)]
    record: usize,
    /// Bytes per pushed batch.
    #[arg(long, default_value_t = 2048)]
    batch_bytes: usize,
    /// Events per pulled page.
    #[arg(long, default_value_t = 10)]
    pull_events: u32,
}

fn open(args: &Args) -> anyhow::Result<Agent> {
    match Agent::open(&args.data, OpenOptions::default()) {
        Ok(agent) => Ok(agent),
        Err(AgentError::Store(StoreError::NotInitialised)) => Ok(Agent::init(
            &args.data,
            InitOptions {
                station_code: args.station.clone(),
                worker_id: "sync-agent".into(),
                hub_url: None,
                token: None,
            },
            OpenOptions::default(),
        )?),
        Err(e) => Err(e).context("cannot open the store"),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let agent = Arc::new(open(&args)?);
    let mut work = FieldWork::new(&args.station, agent.log().head_seq());
    work.record_on(&agent, args.record)?;
    println!("recorded head_seq={}", agent.log().head_seq());
    let mut options = SyncOptions::new(args.hub.clone(), args.token.clone());
    options.batch_bytes = args.batch_bytes;
    options.pull_events = args.pull_events;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut failures = 0u32;
        loop {
            match sync_once(Arc::clone(&agent), &options).await {
                Ok(report) => {
                    println!("synced {}", serde_json::to_string(&report)?);
                    return Ok(());
                }
                Err(e) if e.is_retriable() && failures < 50 => {
                    failures += 1;
                    eprintln!("retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(anyhow::Error::new(e)),
            }
        }
    })
}
