//! `sync-hub`: a hub process for end-to-end tests. It serves the hub's
//! library on an ephemeral port, prints `listening <addr>`, and runs until
//! killed or its standard input closes.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use station_hub::store::HubStore;
use tokio::io::AsyncReadExt as _;

/// A hub on an ephemeral port.
#[derive(Debug, Parser)]
struct Args {
    /// The hub's data folder.
    #[arg(long)]
    data: PathBuf,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("station_hub=debug")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let store = Arc::new(HubStore::open(&args.data, 32 * 1024 * 1024)?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening {}", listener.local_addr()?);
        let stdin_closed = async {
            let mut sink = Vec::new();
            let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        };
        station_hub::serve::run(listener, store, stdin_closed).await?;
        anyhow::Ok(())
    })
}
