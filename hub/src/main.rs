//! `station-hub`: the city hub's command line. It parses arguments, sets up
//! tracing and calls the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use station_hub::admin::{self, AdminReply, AdminRequest};
use station_hub::audit;
use station_hub::config::{DEFAULT_TOML, HubConfig};
use station_hub::guard::ConnectionLimits;
use station_hub::server::{ServerOptions, TlsIdentity};
use station_hub::store::{HubStore, MigrationOptions, StoreKey, TokenRecord, TokenScope, chains};
use station_hub::{Hub, HubOptions, Listeners};

/// The city hub of station-sync.
#[derive(Debug, Parser)]
#[command(name = "station-hub", version, about)]
struct Cli {
    /// The key file (64 hexadecimal digits, mode 0600) that unlocks the hub
    /// store. Default: `<data>.key` beside the data folder, created by
    /// `serve` when absent; or a passphrase in STATION_HUB_PASSPHRASE.
    #[arg(long, global = true, env = "STATION_HUB_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// The cipher of a store encrypted now: xchacha20-poly1305 (default) or
    /// sm4-gcm (商用密码). A store keeps the cipher it was encrypted with.
    /// `serve` also takes it from the configuration's `[store]`.
    #[arg(long, global = true)]
    cipher: Option<station_agent::seal::Algorithm>,
    #[command(subcommand)]
    command: Command,
}

/// The environment variable holding a passphrase that unlocks the store.
const PASSPHRASE_ENV: &str = "STATION_HUB_PASSPHRASE";
/// The environment variable holding the new passphrase of `rekey`.
const NEW_PASSPHRASE_ENV: &str = "STATION_HUB_NEW_PASSPHRASE";

/// A passphrase from `var`, when set and not empty.
fn passphrase(var: &str) -> Option<zeroize::Zeroizing<String>> {
    std::env::var(var)
        .ok()
        .filter(|p| !p.is_empty())
        .map(zeroize::Zeroizing::new)
}

/// The key of the hub store in `data`: `--key-file`, the passphrase, or the
/// default key file beside the folder, created when `may_create` (`serve`
/// and `enroll`, which make the store or encrypt one in clear) and announced
/// on stderr. The other commands read a store in clear as it is.
fn store_key(
    data: &std::path::Path,
    key_file: Option<&std::path::Path>,
    cipher: station_agent::seal::Algorithm,
    may_create: bool,
) -> anyhow::Result<StoreKey> {
    let chosen =
        station_agent::seal::choose_key(data, key_file, passphrase(PASSPHRASE_ENV), may_create)?;
    if let Some(path) = &chosen.created {
        eprintln!(
            "created the key file {}: the hub store is encrypted under it. Keep a copy \
             apart from the server; without it nobody can read the data.",
            path.display()
        );
    }
    let mut key = chosen.key;
    if key.is_none() && station_agent::seal::Vault::exists(data) {
        // An encrypted store and no key: ask on the terminal, if there is one.
        key = station_agent::prompt::passphrase(&format!(
            "passphrase of the hub store in {}: ",
            data.display()
        ))?
        .map(station_agent::seal::KeySource::Passphrase);
    }
    Ok(StoreKey {
        key,
        algorithm: cipher,
        ..StoreKey::default()
    })
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves the Sync and Query services (and with `--http` the bureau's
    /// HTTP side) until Ctrl-C or SIGTERM.
    Serve {
        /// The hub's data folder.
        #[arg(long, default_value = "./hub-data")]
        data: PathBuf,
        /// The configuration (TOML): roster, follow-up intervals, targets.
        /// The built-in Nedong roster when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7400")]
        listen: String,
        /// sled page cache in bytes.
        #[arg(long, default_value_t = 256 * 1024 * 1024)]
        cache_capacity: u64,
        /// PEM certificate chain: serve TLS instead of plain text, on the
        /// gRPC listener and the HTTP one (`--http`) alike.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// PEM private key of the certificate.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Seconds shutdown waits for calls in flight.
        #[arg(long, default_value_t = 30)]
        shutdown_grace_secs: u64,
        /// Also serve the bureau's HTTP side (JSON, ledgers, dashboard) on
        /// this address: HTTPS with --tls-cert/--tls-key, else plain text
        /// (then keep it on 127.0.0.1 behind a TLS reverse proxy).
        #[arg(long)]
        http: Option<String>,
        /// Open connections each listener holds at most; one more is closed
        /// at once. Default: what the open-file limit (raised to its hard
        /// limit at start) leaves after 128 for the hub itself, shared by
        /// the listeners, at most 4096.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max_connections: Option<u32>,
        /// Seconds a connection has for its TLS handshake and then its
        /// HTTP/2 preface (gRPC) or request head (HTTP); also how long a
        /// kept-alive HTTP connection waits for its next request.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        handshake_timeout_secs: u64,
        /// Seconds an HTTP request may take, its body included (else 408).
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
        request_timeout_secs: u64,
        /// MiB kept free on the data folder's filesystem: with less free,
        /// pushes are refused (devices retry) and health says NOT_SERVING
        /// for Sync, until space is freed; reads go on. 0 turns it off.
        #[arg(long, default_value_t = 256)]
        disk_reserve_mb: u64,
        /// The address of a reverse proxy in front of --http (repeat for
        /// several): from it, the client's address is read from
        /// X-Forwarded-For, and session cookies are Secure.
        #[arg(long = "trusted-proxy", value_name = "IP")]
        trusted_proxies: Vec<std::net::IpAddr>,
    },
    /// Clears the projections and rebuilds them from the log. The hub must
    /// not be running.
    Rebuild {
        /// The hub's data folder.
        #[arg(long, default_value = "./hub-data")]
        data: PathBuf,
        /// sled page cache in bytes.
        #[arg(long, default_value_t = 256 * 1024 * 1024)]
        cache_capacity: u64,
    },
    /// Prints the built-in configuration, or checks a configuration file.
    Config {
        /// Print the built-in configuration (TOML, with its comments).
        #[arg(long, conflicts_with = "check")]
        print_default: bool,
        /// Check this configuration file and print what it holds.
        #[arg(long, required_unless_present = "print_default")]
        check: Option<PathBuf>,
    },
    /// Copies the hub's log from its sled store in --data into the NATS
    /// JetStream cluster that the configuration's `[log]` names (engine
    /// "jetstream"): every event at its hub position with its receive time,
    /// and every origin's state, token binding, quarantined events and
    /// signed heads. The hub must not be running. Run again after an
    /// interruption, it carries on where it stopped.
    #[cfg(feature = "jetstream")]
    Migrate {
        /// The hub's data folder.
        #[arg(long, default_value = "./hub-data")]
        data: PathBuf,
        /// The configuration whose `[log]` names the cluster.
        #[arg(long)]
        config: PathBuf,
    },
    /// Lists the events held in quarantine, with their reasons.
    Quarantine {
        /// The hub's data folder.
        #[arg(long, default_value = "./hub-data")]
        data: PathBuf,
    },
    /// Issues a token and prints it: a device token (--station and --device),
    /// a station relay's (--station and --relay), a supervisor's (--station
    /// and --supervisor) or a read-only bureau token (--bureau). Through the running hub's
    /// administration socket when it serves the folder, else on the store.
    Enroll {
        /// The hub's data folder.
        #[arg(long, default_value = "./hub-data")]
        data: PathBuf,
        /// The 9-digit code of the device's (or relay's) station; for a
        /// supervisor, the stations supervised, comma separated.
        #[arg(long, conflicts_with = "bureau")]
        station: Option<String>,
        /// A name telling the device apart in `tokens`.
        #[arg(long, requires = "station", conflicts_with = "relay")]
        device: Option<String>,
        /// A name for a station relay (a station PC forwarding its phones'
        /// signed logs): issues a relay token for --station.
        #[arg(long, requires = "station", conflicts_with = "supervisor")]
        relay: Option<String>,
        /// A supervisor's name, for a token that reads the stations given
        /// with --station and writes only review decisions.
        #[arg(long, requires = "station", conflicts_with = "device")]
        supervisor: Option<String>,
        /// The bureau's name, for a read-only token.
        #[arg(long, required_unless_present = "station")]
        bureau: Option<String>,
        /// The configuration whose roster a device's station must be on, when
        /// the hub is stopped (a running hub checks the roster it serves
        /// with). The built-in Nedong roster when absent.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Revokes a token: every later call with it is refused, at once when
    /// the hub runs. With --wipe, for a lost device: the token may then only
    /// upload the device's backlog, and at its next Hello the device is told
    /// to destroy its keys once the hub holds it; `tokens` shows "wipe
    /// pending", then "wiped" (and the token revoked) when the device says so.
    Revoke {
        /// The hub's data folder.
        #[arg(long, default_value = "./hub-data")]
        data: PathBuf,
        /// The id printed by `enroll` and `tokens`.
        #[arg(long)]
        token_id: String,
        /// Order the device wiped (a lost or stolen phone) instead of only
        /// refusing its token.
        #[arg(long)]
        wipe: bool,
    },
    /// Takes a consistent copy of the hub store into a new folder, while
    /// the hub serves (through its administration socket) or while it is
    /// stopped. The copy is a hub folder: `verify --data` checks it,
    /// `restore` makes a hub from it. Pushes wait while it is copied.
    Backup {
        /// The hub's data folder.
        #[arg(long, default_value = "./hub-data")]
        data: PathBuf,
        /// The folder to create; it must not exist.
        #[arg(long)]
        to: PathBuf,
    },
    /// Makes a new hub data folder from a backup, with its projections
    /// rebuilt. The backup is left as it was. It opens with the key of the
    /// hub it was taken from: `--key-file`, the passphrase, or `<data>.key`
    /// beside the new folder.
    Restore {
        /// The backup folder.
        #[arg(long)]
        from: PathBuf,
        /// The hub data folder to create; it must not exist.
        #[arg(long, default_value = "./hub-data")]
        data: PathBuf,
        /// sled page cache in bytes.
        #[arg(long, default_value_t = 256 * 1024 * 1024)]
        cache_capacity: u64,
    },
    /// Checks every origin's hash chain and signed heads in a stopped
    /// store (or a backup) offline, and prints per origin "verified through
    /// seq N" or its first break. Exits non-zero when any origin breaks.
    Verify {
        /// The hub's data folder.
        #[arg(long, default_value = "./hub-data")]
        data: PathBuf,
    },
    /// Prints the read audit (who read which case's records, or which
    /// report, when and from where), one JSON record per line, oldest first,
    /// after checking its whole hash chain; a running hub may be appending.
    /// Exits non-zero when the chain is broken, naming where.
    Audit {
        /// The hub's data folder.
        #[arg(long, default_value = "./hub-data")]
        data: PathBuf,
        /// Only reads that carried this case (its UUID).
        #[arg(long)]
        case: Option<String>,
        /// Only reads on this day (China time, YYYY-MM-DD) or later.
        #[arg(long)]
        since: Option<String>,
    },
    /// Lists the issued tokens (never their secrets).
    Tokens {
        /// The hub's data folder.
        #[arg(long, default_value = "./hub-data")]
        data: PathBuf,
    },
    /// Wraps the store's data key under a new key (a new key file, or the
    /// passphrase in STATION_HUB_NEW_PASSPHRASE); the data is not rewritten.
    /// The hub must not be running.
    Rekey {
        /// The hub's data folder.
        #[arg(long, default_value = "./hub-data")]
        data: PathBuf,
        /// The new key file; created (0600) when it does not exist.
        #[arg(long, conflicts_with = "new_passphrase")]
        new_key_file: Option<PathBuf>,
        /// Take the new passphrase from STATION_HUB_NEW_PASSPHRASE.
        #[arg(long)]
        new_passphrase: bool,
    },
}

/// The configuration in `path`, else the built-in one.
fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<HubConfig> {
    Ok(match path {
        Some(path) => HubConfig::load(path)?,
        None => HubConfig::builtin()?,
    })
}

/// `station-hub migrate`: the sled log of `data` into the cluster of
/// `config`'s `[log]`.
#[cfg(feature = "jetstream")]
fn migrate(
    data: &std::path::Path,
    config: &std::path::Path,
    key_file: Option<&std::path::Path>,
    cipher: station_agent::seal::Algorithm,
) -> anyhow::Result<()> {
    use station_hub::config::LogEngine;
    use station_hub::store::{JetStreamLog, JetStreamOptions};
    let hub_config = HubConfig::load(config)?;
    let log = &hub_config.log;
    anyhow::ensure!(
        log.engine == LogEngine::Jetstream,
        "{}: [log] engine must be \"jetstream\" to migrate into the cluster it names",
        config.display()
    );
    let folder = config.parent().unwrap_or(std::path::Path::new("."));
    let options = JetStreamOptions {
        servers: log.servers.clone(),
        credentials: log.credentials.as_ref().map(|c| folder.join(c)),
        replicas: log.replicas,
        stream: log.stream.clone(),
        ..JetStreamOptions::default()
    };
    let key = store_key(data, key_file, cipher, false)?;
    let store = open_store(data, admin::COMMAND_CACHE, key)?;
    let started = std::time::Instant::now();
    let cluster = JetStreamLog::open(&options)
        .with_context(|| format!("cannot open the JetStream log {}", options.stream))?;
    let done = cluster
        .import(&store)
        .with_context(|| format!("cannot migrate {} into {}", data.display(), options.stream))?;
    println!(
        "migrated {} events, {} origins ({} bound to tokens), {} quarantined events and {} signed heads into stream {} in {:.2} s",
        done.events,
        done.origins,
        done.bindings,
        done.quarantined,
        done.heads,
        options.stream,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn open_store(
    data: &std::path::Path,
    cache_capacity: u64,
    key: StoreKey,
) -> anyhow::Result<HubStore> {
    HubStore::open_keyed(data, cache_capacity, MigrationOptions::default(), key)
        .with_context(|| format!("cannot open the hub store in {}", data.display()))
}

/// `rekey`: the data key rewrapped under a new key, under the store's lock.
fn rekey(
    data: &std::path::Path,
    old: StoreKey,
    new_key_file: Option<&std::path::Path>,
    new_passphrase: bool,
) -> anyhow::Result<()> {
    use station_agent::seal::{KeySource, Vault, WrappingKey};
    let old = old
        .key
        .context("no key for this store: give --key-file or STATION_HUB_PASSPHRASE")?;
    if !Vault::exists(data) {
        anyhow::bail!(
            "the hub store in {} is not encrypted yet: open it once with a key first",
            data.display()
        );
    }
    let _lock = station_agent::durable::lock_store(data)?;
    let new = if new_passphrase {
        KeySource::Passphrase(
            passphrase(NEW_PASSPHRASE_ENV)
                .with_context(|| format!("--new-passphrase: set {NEW_PASSPHRASE_ENV}"))?,
        )
    } else {
        let path = new_key_file.context("give --new-key-file PATH or --new-passphrase")?;
        if path.exists() {
            KeySource::Key(WrappingKey::from_key_file(path)?)
        } else {
            let key = WrappingKey::create_key_file(path)?;
            eprintln!("created the key file {}", path.display());
            KeySource::Key(key)
        }
    };
    Vault::rekey(data, &old, &new)?;
    Ok(())
}

fn time_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

fn token_line(record: &TokenRecord) -> String {
    let (kind, station, name, origin) = match &record.scope {
        TokenScope::Device {
            station_code,
            device,
            bound_origin,
        } => (
            "device",
            station_code.clone(),
            device.as_str(),
            bound_origin.map_or_else(|| "-".to_string(), |o| o.to_string()),
        ),
        TokenScope::Relay {
            station_code,
            relay,
            bound_origin,
        } => (
            "relay",
            station_code.clone(),
            relay.as_str(),
            bound_origin.map_or_else(|| "-".to_string(), |o| o.to_string()),
        ),
        TokenScope::Bureau { bureau } => {
            ("bureau", "-".to_string(), bureau.as_str(), "-".to_string())
        }
        TokenScope::Supervisor {
            supervisor,
            stations,
            bound_origin,
        } => (
            "supervisor",
            stations.join(","),
            supervisor.as_str(),
            bound_origin.map_or_else(|| "-".to_string(), |o| o.to_string()),
        ),
    };
    let revoked = record
        .revoked_at_ms
        .map_or_else(|| "-".to_string(), time_of);
    let wipe = record.wipe.map_or("-", |wipe| wipe.state());
    format!(
        "{}\t{kind}\t{station}\t{name}\t{origin}\t{revoked}\t{}\t{wipe}",
        record.token_id,
        time_of(record.created_at_ms)
    )
}

/// Writes `lines` to standard output. A reader that stops early (`tokens |
/// head -1`) closes the pipe: the listing then ends quietly instead of
/// failing.
///
/// # Errors
/// Standard output failed otherwise.
fn print_lines(lines: impl IntoIterator<Item = String>) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let written = lines
        .into_iter()
        .try_for_each(|line| writeln!(out, "{line}"))
        .and_then(|()| out.flush());
    match written {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal sent as soon as
/// the hub says where it listens stops it cleanly.
///
/// # Errors
/// The handlers cannot be installed.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
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
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
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
    let cli = Cli::parse();
    let key_file = cli.key_file.as_deref();
    let cipher = cli.cipher.unwrap_or_default();
    match cli.command {
        Command::Serve {
            data,
            config,
            listen,
            cache_capacity,
            tls_cert,
            tls_key,
            shutdown_grace_secs,
            http,
            max_connections,
            handshake_timeout_secs,
            request_timeout_secs,
            disk_reserve_mb,
            trusted_proxies,
        } => {
            let tls = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(TlsIdentity::from_files(&cert, &key)?),
                _ => None,
            };
            let files = match station_hub::guard::raise_file_limit() {
                Ok(files) => files,
                Err(error) => {
                    tracing::warn!(%error, "cannot raise the open-file limit");
                    1024
                }
            };
            let listeners = if http.is_some() { 2 } else { 1 };
            let mut limits = ConnectionLimits::for_file_limit(files, listeners);
            if let Some(max) = max_connections {
                limits.max_connections = max as usize;
            }
            limits.handshake_timeout = std::time::Duration::from_secs(handshake_timeout_secs);
            limits.request_timeout = std::time::Duration::from_secs(request_timeout_secs);
            let mut loaded = load_config(config.as_deref())?;
            // The credentials file of [log] is named relative to the
            // configuration's folder.
            if let (Some(credentials), Some(folder)) = (
                loaded.log.credentials.as_mut(),
                config.as_deref().and_then(std::path::Path::parent),
            ) {
                *credentials = folder.join(&*credentials);
            }
            // The configuration's [store], unless the command line says.
            let configured_key = loaded.store.key_file.as_ref().map(|file| {
                config
                    .as_deref()
                    .and_then(std::path::Path::parent)
                    .map_or_else(|| file.clone(), |folder| folder.join(file))
            });
            let key = store_key(
                &data,
                key_file.or(configured_key.as_deref()),
                cli.cipher.or(loaded.store.cipher).unwrap_or_default(),
                true,
            )?;
            let options = HubOptions {
                key,
                cache_capacity,
                server: ServerOptions {
                    tls,
                    shutdown_grace: std::time::Duration::from_secs(shutdown_grace_secs),
                    config: Some(Arc::new(loaded)),
                    limits,
                    disk_reserve: disk_reserve_mb.saturating_mul(1024 * 1024),
                    trusted_proxies,
                    clock: station_agent::clock::system(),
                },
                data,
            };
            tokio::runtime::Runtime::new()?.block_on(async {
                let grpc = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                let http = match &http {
                    Some(http) => Some(
                        tokio::net::TcpListener::bind(http)
                            .await
                            .with_context(|| format!("cannot listen on {http}"))?,
                    ),
                    None => None,
                };
                let shutdown = shutdown_signal()?;
                let data = options.data.clone();
                let hub = Hub::open(options)
                    .await
                    .with_context(|| format!("cannot open the hub in {}", data.display()))?;
                // Scripts and tests read these lines; by the first the
                // administration socket is bound, if it could be.
                println!("listening on {}", grpc.local_addr()?);
                if let Some(path) = hub.admin_socket() {
                    println!("admin socket {}", path.display());
                }
                if let Some(http) = &http {
                    println!("http on {}", http.local_addr()?);
                }
                hub.serve(Listeners { grpc, http }, shutdown).await?;
                anyhow::Ok(())
            })?;
        }
        Command::Enroll {
            data,
            station,
            device,
            relay,
            supervisor,
            bureau,
            config,
        } => {
            let request = match (station, device, relay, supervisor, bureau) {
                (Some(station), Some(device), None, None, None) => {
                    AdminRequest::EnrollDevice { station, device }
                }
                (Some(station), None, Some(relay), None, None) => {
                    AdminRequest::EnrollRelay { station, relay }
                }
                (Some(stations), None, None, Some(supervisor), None) => {
                    AdminRequest::EnrollSupervisor {
                        supervisor,
                        stations: stations.split(',').map(|s| s.trim().to_string()).collect(),
                    }
                }
                (None, None, None, None, Some(bureau)) => AdminRequest::EnrollBureau { bureau },
                _ => anyhow::bail!(
                    "give --station and --device, --station and --relay, \
                     --station and --supervisor, or --bureau"
                ),
            };
            // Enrolling on a stopped hub may create its store.
            let key = store_key(&data, key_file, cipher, true)?;
            match admin::administer(&data, request, config.as_deref(), key)? {
                AdminReply::Issued { token_id, bearer } => {
                    eprintln!("token {token_id} issued; it is shown only now, keep it secret");
                    println!("{bearer}");
                }
                other => anyhow::bail!("unexpected answer from the hub: {other:?}"),
            }
        }
        Command::Revoke {
            data,
            token_id,
            wipe,
        } => {
            let key = store_key(&data, key_file, cipher, false)?;
            match admin::administer(&data, AdminRequest::Revoke { token_id, wipe }, None, key)? {
                AdminReply::Revoked(record) => print_lines([token_line(&record)])?,
                other => anyhow::bail!("unexpected answer from the hub: {other:?}"),
            }
        }
        Command::Tokens { data } => {
            let key = store_key(&data, key_file, cipher, false)?;
            match admin::administer(&data, AdminRequest::Tokens, None, key)? {
                AdminReply::Tokens(records) => print_lines(
                    std::iter::once(
                        "id\tkind\tstation\tname\torigin\trevoked\tcreated\twipe".to_string(),
                    )
                    .chain(records.iter().map(token_line)),
                )?,
                other => anyhow::bail!("unexpected answer from the hub: {other:?}"),
            }
        }
        Command::Rekey {
            data,
            new_key_file,
            new_passphrase,
        } => {
            let old = store_key(&data, key_file, cipher, false)?;
            rekey(&data, old, new_key_file.as_deref(), new_passphrase)?;
            println!("rekeyed the hub store in {}", data.display());
        }
        Command::Rebuild {
            data,
            cache_capacity,
        } => {
            let started = std::time::Instant::now();
            let key = store_key(&data, key_file, cipher, false)?;
            let done = station_hub::serve::rebuild(&data, cache_capacity, key)
                .with_context(|| format!("cannot rebuild the projections in {}", data.display()))?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "rebuilt the projections from {} events in {secs:.2} s ({:.0} events/s); checkpoint {}",
                done.applied,
                done.applied as f64 / secs.max(1e-9),
                done.checkpoint
            );
        }
        Command::Config {
            print_default,
            check,
        } => {
            if print_default {
                let text = DEFAULT_TOML.strip_suffix('\n').unwrap_or(DEFAULT_TOML);
                print_lines([text.to_string()])?;
            } else if let Some(path) = check {
                let config = HubConfig::load(&path)?;
                println!(
                    "{}: valid; {} stations, follow-up every {}/{}/{} days",
                    path.display(),
                    config.stations.len(),
                    config.follow_up.high_risk_days,
                    config.follow_up.key_days,
                    config.follow_up.general_days
                );
            }
        }
        Command::Backup { data, to } => {
            let to = std::path::absolute(&to)
                .with_context(|| format!("cannot resolve {}", to.display()))?;
            let info = match admin::call(&data, &AdminRequest::Backup { to: to.clone() })
                .with_context(|| format!("the hub serving {} did not answer", data.display()))?
            {
                Some(AdminReply::BackedUp(info)) => info,
                Some(AdminReply::Refused(reason)) => anyhow::bail!("{reason}"),
                Some(other) => anyhow::bail!("unexpected answer from the hub: {other:?}"),
                None => {
                    anyhow::ensure!(
                        data.join("db").exists(),
                        "no hub store in {}",
                        data.display()
                    );
                    let key = store_key(&data, key_file, cipher, false)?;
                    let store = open_store(&data, admin::COMMAND_CACHE, key)?;
                    station_hub::store::backup::backup(&store, &to)?
                }
            };
            println!(
                "backup of {} events ({} entries) taken at {} into {}",
                info.events,
                info.entries,
                info.taken_at,
                to.display()
            );
        }
        Command::Restore {
            from,
            data,
            cache_capacity,
        } => {
            let key = store_key(&data, key_file, cipher, false)?;
            let info = station_hub::store::backup::restore(&from, &data, cache_capacity, key)?;
            println!(
                "restored {} events from the backup taken at {} into {}; projections rebuilt",
                info.events,
                info.taken_at,
                data.display()
            );
        }
        Command::Verify { data } => {
            let key = store_key(&data, key_file, cipher, false)?;
            let store = open_store(&data, admin::COMMAND_CACHE, key)?;
            let mut broken = 0usize;
            for (origin, verdict) in chains::verify(&store)? {
                match verdict {
                    chains::Verdict::Verified {
                        through,
                        signed_from,
                        signed_through,
                    } => {
                        let signed = match (signed_from, signed_through) {
                            (Some(from), Some(to)) => format!("signed seqs {from}..={to}"),
                            _ => "unsigned (no device key)".to_string(),
                        };
                        println!("{origin}	verified through seq {through}	{signed}");
                    }
                    chains::Verdict::Broken {
                        verified_through,
                        at,
                        reason,
                    } => {
                        broken += 1;
                        println!(
                            "{origin}	BROKEN at seq {at}	verified through seq {verified_through}	{reason}"
                        );
                    }
                }
            }
            if broken > 0 {
                anyhow::bail!("{broken} origin(s) do not verify");
            }
        }
        Command::Audit { data, case, since } => {
            let case = case
                .map(|text| text.parse::<station_proto::ids::Uuid>())
                .transpose()
                .map_err(|_| anyhow::anyhow!("--case: must be a UUID"))?;
            let since = since
                .map(|text| station_hub::params::since(&text))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--{}", e.0))?;
            let reading = audit::read(
                &data,
                &audit::Filter {
                    case,
                    since,
                    limit: None,
                },
            )?;
            let mut lines = Vec::with_capacity(reading.records.len());
            for record in &reading.records {
                lines.push(serde_json::to_string(record)?);
            }
            print_lines(lines)?;
            match reading.broken {
                None => eprintln!(
                    "chain intact: {} record(s) in the log, {} shown",
                    reading.total,
                    reading.records.len()
                ),
                Some(broken) => anyhow::bail!(
                    "the read audit's chain is BROKEN in {} at line {}: {}",
                    broken.segment,
                    broken.line,
                    broken.reason
                ),
            }
        }
        #[cfg(feature = "jetstream")]
        Command::Migrate { data, config } => migrate(&data, &config, key_file, cipher)?,
        Command::Quarantine { data } => {
            let key = store_key(&data, key_file, cipher, false)?;
            let store = open_store(&data, admin::COMMAND_CACHE, key)?;
            print_lines(store.quarantine()?.into_iter().map(|(origin, q)| {
                format!(
                    "{origin}\t{}\t{}\t{}",
                    q.origin_seq, q.station_code, q.reason
                )
            }))?;
        }
    }
    Ok(())
}
