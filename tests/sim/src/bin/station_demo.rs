//! `station-demo`: the whole system on a simulated district, in one command.
//!
//! Starts a hub on its sled store (gRPC and the bureau's dashboard), enrolls
//! two devices for each of the seven Nedong stations and lets real agents
//! enter months of field work while they sync through 2G links that cut and
//! stall. At the end it prints each station's indicators against targets and
//! serves the dashboard until Ctrl-C. Deterministic for a `--seed`; a second
//! run on the same `--data` resumes and enters nothing twice.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use station_sim::demo::{Demo, DemoOptions};

/// A simulated district, end to end: hub, agents, weak links, dashboard.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The data folder: the hub's store, each device's store, the bureau token.
    #[arg(long, default_value = "demo-data")]
    data: PathBuf,
    /// Seeds the field work and the links: the same seed enters the same work.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Days of field work, ending today.
    #[arg(long, default_value_t = 120)]
    days: u32,
    /// At most this many simulated days per second (each day also waits
    /// for every phone's evening sync); 0 does not pace.
    #[arg(long, default_value_t = 10.0)]
    speed: f64,
    /// Devices (social workers) per station.
    #[arg(long, default_value_t = 2)]
    devices: u32,
    /// How many of the Nedong stations take part (street station first).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u8).range(1..=7))]
    stations: u8,
    /// The hub's gRPC address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: String,
    /// The dashboard's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: String,
    /// Keep every device's link up (no offline stretch).
    #[arg(long)]
    no_offline: bool,
    /// Let the second station's phones sync straight to the hub (no station
    /// relay whose uplink is down for a stretch).
    #[arg(long)]
    no_relay: bool,
    /// Exit after the table instead of serving the dashboard.
    #[arg(long)]
    no_serve: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut options = DemoOptions::new(&args.data);
    options.seed = args.seed;
    options.days = args.days;
    options.speed = args.speed;
    options.devices = args.devices;
    options.stations.truncate(usize::from(args.stations));
    options.listen = args.listen;
    options.http = args.http;
    options.offline_device = !args.no_offline;
    options.relay = !args.no_relay;
    options.progress = true;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let mut demo = Demo::start(options).await?;
        println!(
            "hub: gRPC on {}, dashboard on {}",
            demo.grpc_addr(),
            demo.dashboard_url()
        );
        println!(
            "entering {} days of field work ending {} on {} devices (seed {})",
            args.days,
            demo.last_day(),
            usize::from(args.stations) * args.devices as usize,
            args.seed
        );
        let report = demo.simulate(ctrl_c()).await?;
        let saved: u64 = report.ledgers.iter().map(|(_, l)| l.saved).sum();
        println!(
            "{} entries saved ({} in this run, {} by an earlier one), {} invalid entries refused; \
             the hub holds {} events; {:.1} s",
            saved,
            report.saved_now,
            report.replayed,
            report.refused_now,
            report.hub_events,
            report.elapsed.as_secs_f64()
        );
        if !report.finished {
            println!("stopped early: run the same command again to resume");
            demo.stop().await?;
            return anyhow::Ok(());
        }
        println!();
        print!("{}", demo.summary()?);
        println!();
        println!("dashboard: {}", demo.dashboard_url());
        println!("bureau token (read-only): {}", demo.bureau_token());
        println!(
            "gRPC Query API: grpcurl -plaintext -H 'authorization: Bearer <token>' {} list",
            demo.grpc_addr()
        );
        if args.no_serve {
            demo.stop().await?;
            return anyhow::Ok(());
        }
        println!("serving until Ctrl-C");
        ctrl_c().await;
        println!("shutting down");
        demo.stop().await.context("shutting down")?;
        anyhow::Ok(())
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn ctrl_c() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
