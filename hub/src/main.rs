//! `station-hub`: the city hub's command line.

use clap::Parser;

/// The city hub of station-sync.
#[derive(Debug, Parser)]
#[command(name = "station-hub", version, about)]
struct Cli {}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let _cli = Cli::parse();
    tracing::info!(version = station_hub::VERSION, "station-hub");
    Ok(())
}
