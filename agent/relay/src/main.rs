//! `station-relay`: a station PC serving its station's phones and
//! forwarding to the city hub. Parses arguments, sets up tracing and calls
//! [`station_relay::Relay`]; `station-agent relay` runs it too.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use station_agent::sync::SyncOptions;
use station_hub::server::{ServerOptions, TlsIdentity};
use station_hub::store::StoreKey;
use station_relay::{Relay, RelayOptions};

/// Where the relay's passphrase comes from, when it has one.
const PASSPHRASE_ENV: &str = "STATION_RELAY_PASSPHRASE";

/// A station PC relaying its station's phones to the city hub.
#[derive(Debug, Parser)]
#[command(name = "station-relay", version)]
struct Args {
    /// The relay's data folder (its log and relay.json).
    #[arg(long, default_value = "./relay-data", env = "STATION_RELAY_DATA")]
    data: PathBuf,
    /// The 9-digit code of the station it serves.
    #[arg(long)]
    station: String,
    /// Where the phones reach it, e.g. 0.0.0.0:7401.
    #[arg(long, default_value = "0.0.0.0:7401")]
    listen: String,
    /// The city hub's address, e.g. https://hub.example:7400.
    #[arg(long)]
    hub: String,
    /// A file holding the relay token (`station-hub enroll --relay NAME
    /// --station CODE`); or STATION_RELAY_TOKEN.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// A PEM CA certificate to trust for the hub's TLS certificate.
    #[arg(long)]
    hub_ca: Option<PathBuf>,
    /// Serve the phones TLS with this certificate (PEM), with --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The key file of the relay's store (default `<data>.key` beside the
    /// folder, created on first start); or a passphrase in
    /// STATION_RELAY_PASSPHRASE.
    #[arg(long, env = "STATION_RELAY_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Milliseconds between rounds of the uplink (a round also starts right
    /// after a phone pushes).
    #[arg(long, default_value_t = 10_000)]
    interval_ms: u64,
    /// MB kept free on the relay's disk: below it, phones' pushes are
    /// refused (retryably).
    #[arg(long, default_value_t = 256)]
    disk_reserve_mb: u64,
    /// The name the relay is advertised under on the LAN (default
    /// relay-<station>); no personal name.
    #[arg(long)]
    name: Option<String>,
    /// Do not advertise the relay on the LAN with mDNS (phones then need
    /// its address configured).
    #[arg(long)]
    no_advertise: bool,
}

fn token(args: &Args) -> anyhow::Result<String> {
    let token = match &args.token_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => std::env::var("STATION_RELAY_TOKEN")
            .context("give the relay token with --token-file FILE or STATION_RELAY_TOKEN")?,
    };
    let token = token.trim().to_string();
    anyhow::ensure!(!token.is_empty(), "the relay token is empty");
    Ok(token)
}

fn store_key(args: &Args) -> anyhow::Result<StoreKey> {
    let passphrase = std::env::var(PASSPHRASE_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .map(zeroize::Zeroizing::new);
    let default = station_agent::seal::default_key_file(&args.data)?;
    if passphrase.is_none() && args.key_file.is_none() && !default.exists() {
        station_agent::seal::WrappingKey::create_key_file(&default)?;
        eprintln!(
            "created the key file {}: the relay's store is encrypted under it",
            default.display()
        );
    }
    let key_file = args.key_file.clone().unwrap_or(default);
    let chosen = station_agent::seal::choose_key(
        &args.data.join("log"),
        passphrase.is_none().then_some(key_file.as_path()),
        passphrase,
        false,
    )?;
    Ok(StoreKey {
        key: chosen.key,
        ..StoreKey::default()
    })
}

/// The relay's advertisement on the LAN, unless `--no-advertise`.
///
/// # Errors
/// A name that cannot be advertised. An mDNS responder that cannot start
/// is only a warning: phones with the address configured still reach the
/// relay.
#[cfg(feature = "mdns")]
fn advertise(
    args: &Args,
    listen: std::net::SocketAddr,
    tls: bool,
) -> anyhow::Result<Option<station_relay::advertise::Advertisement>> {
    use station_relay::advertise::{self, AdvertiseError, AdvertiseOptions, Advertisement};
    if args.no_advertise {
        return Ok(None);
    }
    let options = AdvertiseOptions {
        name: args
            .name
            .clone()
            .unwrap_or_else(|| advertise::default_name(&args.station)),
        station_code: args.station.clone(),
        listen,
        tls,
    };
    match Advertisement::start(&options) {
        Ok(advertisement) => {
            println!(
                "relay advertised on the LAN as {}",
                advertisement.fullname()
            );
            Ok(Some(advertisement))
        }
        Err(error @ AdvertiseError::Name(_)) => Err(error.into()),
        Err(error) => {
            tracing::warn!(%error, "cannot advertise the relay on the LAN");
            Ok(None)
        }
    }
}

/// Without mDNS nothing is advertised; `--no-advertise` is accepted all
/// the same.
#[cfg(not(feature = "mdns"))]
fn advertise(
    args: &Args,
    _listen: std::net::SocketAddr,
    _tls: bool,
) -> anyhow::Result<Option<NoAdvertisement>> {
    if !args.no_advertise {
        tracing::info!("built without mDNS: the relay is not advertised on the LAN");
    }
    Ok(None)
}

/// What stands for an advertisement in a build without mDNS.
#[cfg(not(feature = "mdns"))]
struct NoAdvertisement;

#[cfg(not(feature = "mdns"))]
impl NoAdvertisement {
    fn withdraw(self) {}
}

/// Completes at SIGINT or SIGTERM.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = term.recv() => {}
        }
    })
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut hub = SyncOptions::new(args.hub.clone(), Some(token(&args)?));
    if let Some(ca) = &args.hub_ca {
        hub.tls_ca_pem =
            Some(std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?);
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsIdentity::from_files(cert, key)?),
        _ => None,
    };
    let tls_on = tls.is_some();
    let options = RelayOptions {
        data: args.data.clone(),
        station_code: args.station.clone(),
        hub,
        server: ServerOptions {
            tls,
            disk_reserve: args.disk_reserve_mb.saturating_mul(1024 * 1024),
            ..ServerOptions::default()
        },
        key: store_key(&args)?,
        interval: Duration::from_millis(args.interval_ms.max(10)),
        on_devices: Some(|devices| {
            use std::io::Write as _;
            // Nobody reading stdout any more is no reason to stop relaying.
            let _ = writeln!(
                std::io::stdout(),
                "relay serves {devices} devices of its station"
            );
        }),
    };
    tokio::runtime::Runtime::new()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let shutdown = shutdown_signal()?;
        let relay = Relay::open(options).await?;
        let local = listener.local_addr()?;
        println!("relay listening on {local}");
        let advertised = advertise(&args, local, tls_on)?;
        let served = relay.serve(listener, shutdown).await;
        if let Some(advertisement) = advertised {
            tokio::task::spawn_blocking(move || advertisement.withdraw()).await?;
        }
        served?;
        anyhow::Ok(())
    })
}
