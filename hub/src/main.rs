//! `station-hub`: the city hub's command line. It parses arguments, sets up
//! tracing and calls the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use station_hub::store::HubStore;

/// The city hub of station-sync.
#[derive(Debug, Parser)]
#[command(name = "station-hub", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the Sync service until Ctrl-C or SIGTERM.
    Serve {
        /// The hub's data folder.
        #[arg(long, default_value = "./hub-data")]
        data: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: String,
        /// sled page cache in bytes.
        #[arg(long, default_value_t = 256 * 1024 * 1024)]
        cache_capacity: u64,
    },
    /// Lists the events held in quarantine, with their reasons.
    Quarantine {
        /// The hub's data folder.
        #[arg(long, default_value = "./hub-data")]
        data: PathBuf,
    },
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve {
            data,
            listen,
            cache_capacity,
        } => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let store =
                    Arc::new(HubStore::open(&data, cache_capacity).with_context(|| {
                        format!("cannot open the hub store in {}", data.display())
                    })?);
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                println!("listening on {}", listener.local_addr()?);
                station_hub::server::run(listener, store, shutdown_signal()).await?;
                tracing::info!("hub stopped");
                anyhow::Ok(())
            })?;
        }
        Command::Quarantine { data } => {
            let store = HubStore::open(&data, 16 * 1024 * 1024)?;
            for (origin, q) in store.quarantine()? {
                println!(
                    "{origin}\t{}\t{}\t{}",
                    q.origin_seq, q.station_code, q.reason
                );
            }
        }
    }
    Ok(())
}
