//! `station-agent`: the command line of a station device. It parses
//! arguments, sets up tracing and calls the engine; every rule lives in the
//! library or in `station-proto`.
//!
//! # Layout
//!
//! - `args`: the commands and their arguments (clap); enum arguments parsed
//!   by `station_proto::names`.
//! - `entry`: entry commands into event bodies; bulk entry from JSON.
//! - `print`: tables and JSON for every command that shows something.
//! - `hub`: sync settings from the arguments; the signals that stop `run`.
//! - `keys`: where the store's key comes from (key file, passphrase).
//!
//! Exit status: 0 on success; 2 for an entry refused (bad arguments or a
//! broken rule, with a one-line reason naming the field); 1 for anything
//! else (no store, a storage or sync failure).

mod args;
mod entry;
mod hub;
mod keys;
mod print;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use station_agent::engine;
use station_agent::sync;
use station_agent::views::CaseStatus;
use station_agent::{Agent, AgentError, InitOptions, OpenOptions, StoreError};
use station_proto::Body;

use crate::args::{CaseCommand, Cli, Command, ReviewCommand};

/// The global arguments that say how the store opens.
struct StoreArgs {
    data: std::path::PathBuf,
    cache_capacity: u64,
    key_file: Option<std::path::PathBuf>,
    cipher: station_agent::seal::Algorithm,
}

impl StoreArgs {
    fn of(cli: &Cli) -> Self {
        Self {
            data: cli.data.clone(),
            cache_capacity: cli.cache_capacity,
            key_file: cli.key_file.clone(),
            cipher: cli.cipher,
        }
    }
}

/// How the store in `cli.data` opens: its key and cache.
fn open_options(cli: &StoreArgs, may_create: bool) -> anyhow::Result<OpenOptions> {
    Ok(OpenOptions {
        cache_capacity: cli.cache_capacity,
        key: keys::key_source(&cli.data, cli.key_file.as_deref(), may_create)?,
        algorithm: cli.cipher,
        ..OpenOptions::default()
    })
}

fn open_agent(cli: &StoreArgs) -> anyhow::Result<Agent> {
    let open =
        || -> anyhow::Result<Agent> { Ok(Agent::open(&cli.data, open_options(cli, false)?)?) };
    open().with_context(|| format!("cannot open the store in {}", cli.data.display()))
}

/// `rekey`: wraps the data key under a new key while holding the store's lock.
fn rekey(cli: &StoreArgs, new_key_file: Option<&Path>, new_passphrase: bool) -> anyhow::Result<()> {
    let old = keys::key_source(&cli.data, cli.key_file.as_deref(), false)?
        .context("no key for this store: give --key-file or STATION_AGENT_PASSPHRASE")?;
    if !station_agent::seal::Vault::exists(&cli.data) {
        anyhow::bail!(
            "the store in {} is not encrypted yet: open it once with a key first",
            cli.data.display()
        );
    }
    let _lock = station_agent::durable::lock_store(&cli.data)?;
    let new = keys::new_key_source(new_key_file, new_passphrase)?;
    station_agent::seal::Vault::rekey(&cli.data, &old, &new)?;
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let store = StoreArgs::of(&cli);
    match cli.command {
        Command::Init {
            station,
            worker,
            hub,
            token,
        } => {
            let token = hub::token_of(token)?;
            if let Some(url) = &hub {
                hub::warn_if_plain(url, false);
            }
            let agent = Agent::init(
                &cli.data,
                InitOptions {
                    station_code: station,
                    worker_id: worker,
                    hub_url: hub,
                    token,
                },
                open_options(&store, true)?,
            )?;
            let id = agent.identity();
            writeln!(
                out,
                "initialised origin_id={} station={} worker={} in {}",
                id.origin_id,
                id.station_code,
                id.worker_id,
                cli.data.display()
            )?;
        }
        Command::Record { json } => {
            let agent = open_agent(&store)?;
            drop(out);
            if !entry::record_json(&agent, &json)? {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Cases {
            due,
            within,
            all,
            format,
        } => {
            let agent = open_agent(&store)?;
            if due {
                let due = agent.due_follow_ups(engine::today(), within)?;
                print::due(&mut out, &due, format)?;
            } else {
                let cases: Vec<_> = agent
                    .cases()?
                    .into_iter()
                    .filter(|c| all || c.status == CaseStatus::Open)
                    .collect();
                print::cases(&mut out, &cases, agent.intervals(), format)?;
            }
        }
        Command::Review(ReviewCommand::List { all, format }) => {
            let agent = open_agent(&store)?;
            let items: Vec<_> = agent
                .review_items()?
                .into_iter()
                .filter(|(_, item)| all || item.is_queued() || item.is_returned())
                .collect();
            print::reviews(&mut out, &items, engine::today(), format)?;
        }
        Command::Case(CaseCommand::Transfers { format }) => {
            let agent = open_agent(&store)?;
            let incoming = agent.log().incoming_transfers()?;
            print::incoming_transfers(&mut out, &incoming, engine::today(), format)?;
        }
        Command::Log {
            since,
            limit,
            format,
        } => {
            let agent = open_agent(&store)?;
            print::log(&mut out, &agent.own_events(since, limit)?, format)?;
        }
        Command::Relay { args } => {
            let relay = std::env::current_exe()
                .context("cannot find this program's folder")?
                .with_file_name("station-relay");
            let mut command = std::process::Command::new(&relay);
            if cli.data != Path::new("./station-data") {
                command.arg("--data").arg(&cli.data);
            }
            command.args(args);
            #[cfg(unix)]
            {
                use std::os::unix::process::CommandExt as _;
                let error = command.exec();
                anyhow::bail!("cannot run {}: {error}", relay.display());
            }
            #[cfg(not(unix))]
            {
                let status = command
                    .status()
                    .with_context(|| format!("cannot run {}", relay.display()))?;
                return Ok(ExitCode::from(
                    u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
                ));
            }
        }
        Command::Status { format } => {
            if let Some(at) = station_agent::seal::Vault::wiped_at(&cli.data)? {
                print::wiped(&mut out, at, format)?;
                return Ok(ExitCode::SUCCESS);
            }
            let agent = open_agent(&store)?;
            let status = agent.status()?;
            let sync = agent.log().sync_state()?;
            print::status(&mut out, status, sync, format)?;
            let incoming = agent.log().incoming_transfers()?.len();
            if incoming > 0 && matches!(format, args::Format::Table) {
                writeln!(
                    out,
                    "{incoming} transfer requests of other stations to answer: station-agent case transfers"
                )?;
            }
        }
        Command::Rekey {
            ref new_key_file,
            new_passphrase,
        } => {
            rekey(&store, new_key_file.as_deref(), new_passphrase)?;
            writeln!(out, "rekeyed the store in {}", cli.data.display())?;
        }
        Command::RebuildViews => {
            let agent = open_agent(&store)?;
            let n = agent.rebuild_views()?;
            writeln!(out, "rebuilt views from {n} events")?;
        }
        Command::Sync {
            hub,
            retry_parked,
            retry_secs,
        } => {
            let agent = Arc::new(open_agent(&store)?);
            let (mut options, _) = hub::sync_options(&agent, hub)?;
            options.retry_budget = Duration::from_secs(retry_secs);
            if retry_parked {
                agent.log().set_parked(None)?;
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let report = runtime.block_on(sync::sync_once(agent, &options))?;
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
            if report.wiped.is_some() {
                eprintln!("{}", sync::SyncError::Wiped);
            }
        }
        Command::Run {
            hub,
            interval_secs,
            retry_parked,
        } => {
            let agent = Arc::new(open_agent(&store)?);
            let (mut options, rediscovery) = hub::sync_options(&agent, hub)?;
            options.interval = Duration::from_secs(interval_secs);
            if retry_parked {
                agent.log().set_parked(None)?;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let shutdown = hub::shutdown_signal()?;
                writeln!(
                    out,
                    "syncing with {} every {interval_secs} s; Ctrl-C to stop",
                    options.hub_url
                )?;
                out.flush()?;
                drop(out);
                match sync::run_rediscovering(agent, options, rediscovery, shutdown).await {
                    Err(sync::SyncError::Wiped) => eprintln!("{}", sync::SyncError::Wiped),
                    other => other?,
                }
                anyhow::Ok(())
            })?;
        }
        command => {
            let is_case = matches!(command, Command::Case(CaseCommand::Open(_)));
            let agent = open_agent(&store)?;
            let body: Body = match entry::body_of(command, &entry::resolve_with(&agent)) {
                Ok(body) => body,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let possible = match &body {
                Body::CaseOpened(opening) => agent.possible_duplicates(opening)?,
                _ => Vec::new(),
            };
            match agent.record_now_reviewed(body) {
                Ok(recorded) => {
                    let opened = if is_case {
                        agent.case(recorded.entry.event_id)?
                    } else {
                        None
                    };
                    print::recorded(&mut out, opened.as_ref(), &recorded)?;
                    if !possible.is_empty() && !recorded.entry.duplicate {
                        eprintln!("warning: {}", print::possible_duplicate(&possible));
                    }
                }
                Err(e @ AgentError::Store(_)) => return Err(e.into()),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let reason = match e.downcast_ref::<AgentError>() {
                Some(AgentError::Store(StoreError::NotInitialised)) => {
                    "this device is not initialised: run `station-agent init` first".to_string()
                }
                _ => format!("{e:#}"),
            };
            eprintln!("error: {reason}");
            ExitCode::FAILURE
        }
    }
}
