//! `station-agent`: the command line of a station device. It parses
//! arguments, sets up tracing and calls the engine; every rule lives in the
//! library.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use station_agent::engine::{self, tier_from_number};
use station_agent::sync::{self, SyncOptions};
use station_agent::views::{CaseStatus, category_label, tier_label};
use station_agent::{Agent, AgentError, InitOptions, OpenOptions, StoreError};
use station_proto::id_number as gb11643;
use station_proto::ids::Uuid;
use station_proto::v1::{
    ActivityHeld, ActivityKind, BeneficiaryVerified, CaseAssessed, CaseClosed, CaseNoteAdded,
    CaseOpened, CaseReopened, CaseSource, Category, EventVoided, Gender, GroupSessionHeld,
    NoteKind, ResourceKind, ResourceLinked, Tier, TrainingHeld, TrainingKind, VisitKind,
    VisitRecorded,
};
use station_proto::{Body, json, money, names};

/// Records social work entries on this device, durably and offline.
#[derive(Debug, Parser)]
#[command(name = "station-agent", version, about)]
struct Cli {
    /// The device's data folder.
    #[arg(
        long,
        global = true,
        env = "STATION_AGENT_DATA",
        default_value = "./station-data"
    )]
    data: PathBuf,
    /// sled page cache in bytes.
    #[arg(long, global = true, default_value_t = station_agent::store::DEFAULT_CACHE_CAPACITY)]
    cache_capacity: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Creates this device's identity (once).
    Init {
        /// 9-digit station code, e.g. 540502001.
        #[arg(long)]
        station: String,
        /// The social worker's id.
        #[arg(long)]
        worker: String,
        /// The hub's address, e.g. http://hub:7400.
        #[arg(long)]
        hub: Option<String>,
        /// The device token printed by `station-hub enroll`.
        #[arg(long)]
        token: Option<String>,
    },
    /// Case files: open, assess, note, close, reopen.
    #[command(subcommand)]
    Case(CaseCommand),
    /// Records a visit (入户走访).
    Visit(VisitArgs),
    /// Records a community activity (社区活动).
    Activity(ActivityArgs),
    /// Records one session of a group (小组).
    GroupSession(GroupSessionArgs),
    /// Records a linked resource (链接资源).
    Resource(ResourceArgs),
    /// Records a training, supervision or co-learning session.
    Training(TrainingArgs),
    /// Records a verification of a beneficiary's information (信息核实).
    Verify(VerifyArgs),
    /// Voids an earlier event (a correction).
    Void {
        /// The id of the event to void.
        #[arg(long)]
        event: String,
        /// Why it is voided.
        #[arg(long)]
        reason: String,
    },
    /// Records event bodies given as proto3 JSON, one per line.
    Record {
        /// A file, or - for standard input.
        #[arg(long)]
        json: String,
    },
    /// Lists the station's cases.
    Cases {
        /// Only cases due for a follow-up (overdue first).
        #[arg(long)]
        due: bool,
        /// With --due: also those due within this many days.
        #[arg(long, default_value_t = 7)]
        within: u32,
        /// Include closed cases.
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Lists this device's own events.
    Log {
        /// Only events with origin_seq above this.
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// At most this many events.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = LogFormat::Table)]
        format: LogFormat,
    },
    /// Shows this device's identity and sync position.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Recomputes the local views from the log.
    RebuildViews,
    /// One sync round with the hub: push until caught up, pull until caught
    /// up; prints a JSON report.
    Sync {
        #[command(flatten)]
        hub: HubArgs,
        /// Push again a batch the hub refused for good (see `status`).
        #[arg(long)]
        retry_parked: bool,
        /// How long to keep retrying what the link or the hub broke.
        #[arg(long, default_value_t = 60)]
        retry_secs: u64,
    },
    /// Syncs until Ctrl-C or SIGTERM: a round at once, then on a schedule,
    /// long-polling the station's new events in between.
    Run {
        #[command(flatten)]
        hub: HubArgs,
        /// Seconds between scheduled rounds.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
        interval_secs: u64,
        /// Push again a batch the hub refused for good (see `status`).
        #[arg(long)]
        retry_parked: bool,
    },
}

/// Where the hub is and how to prove who this device is.
#[derive(Debug, Args)]
struct HubArgs {
    /// The hub's address (default: the one given at init).
    #[arg(long)]
    hub: Option<String>,
    /// The device token (default: the one given at init).
    #[arg(long)]
    token: Option<String>,
    /// A PEM CA certificate to trust for the hub's TLS certificate; turns TLS on.
    #[arg(long, env = "STATION_AGENT_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// The name on the hub's certificate, when it differs from the address's host.
    #[arg(long)]
    tls_domain: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Table,
    Jsonl,
}

#[derive(Debug, Subcommand)]
enum CaseCommand {
    /// Opens a case file for one person (一人一档); prints the case id.
    Open(CaseOpenArgs),
    /// Changes a case's tier (预估), with the reason.
    Assess {
        #[arg(long)]
        case: String,
        /// 1 high risk, 2 key, 3 general.
        #[arg(long)]
        tier: u8,
        #[arg(long)]
        reason: String,
        /// Date of the assessment (default today).
        #[arg(long)]
        date: Option<String>,
    },
    /// Adds a plan, intervention, review or supervision note.
    Note {
        #[arg(long)]
        case: String,
        #[arg(long, value_enum)]
        kind: NoteKindArg,
        #[arg(long)]
        text: String,
        #[arg(long)]
        date: Option<String>,
    },
    /// Closes a case.
    Close {
        #[arg(long)]
        case: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        date: Option<String>,
    },
    /// Reopens a closed case.
    Reopen {
        #[arg(long)]
        case: String,
        #[arg(long)]
        reason: String,
        /// Tier to follow the reopened case at (default: the last tier).
        #[arg(long)]
        tier: Option<u8>,
        #[arg(long)]
        date: Option<String>,
    },
}

#[derive(Debug, Args)]
struct CaseOpenArgs {
    #[arg(long)]
    name: String,
    /// 18-character resident ID number.
    #[arg(long)]
    id_number: String,
    /// 12-digit community code, inside this device's station.
    #[arg(long)]
    community: String,
    /// Beneficiary category; repeat for several (e.g. dibao, 低保, elderly).
    #[arg(long = "category", required = true, value_parser = parse_category)]
    categories: Vec<Category>,
    /// 1 high risk, 2 key, 3 general.
    #[arg(long)]
    tier: u8,
    #[arg(long, value_enum, default_value_t = SourceArg::Outreach)]
    source: SourceArg,
    /// Derived from the ID number when not given.
    #[arg(long, value_enum)]
    gender: Option<GenderArg>,
    /// YYYY-MM-DD; derived from the ID number when not given.
    #[arg(long)]
    birth_date: Option<String>,
    #[arg(long, default_value = "")]
    address: String,
    #[arg(long, default_value = "")]
    phone: String,
    /// Preferred language, e.g. zh or bo.
    #[arg(long, default_value = "")]
    language: String,
    /// Date the case was opened (default today).
    #[arg(long)]
    date: Option<String>,
}

#[derive(Debug, Args)]
struct VisitArgs {
    #[arg(long)]
    case: String,
    /// YYYY-MM-DD, the day of the visit (default today).
    #[arg(long)]
    date: Option<String>,
    #[arg(long, value_enum, default_value_t = VisitKindArg::Home)]
    kind: VisitKindArg,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    minutes: i32,
    #[arg(long, default_value = "")]
    note: String,
    /// A need found during the visit; repeat for several.
    #[arg(long = "need")]
    needs: Vec<String>,
}

#[derive(Debug, Args)]
struct ActivityArgs {
    #[arg(long, value_enum)]
    kind: ActivityKindArg,
    #[arg(long)]
    date: Option<String>,
    #[arg(long)]
    community: String,
    #[arg(long, allow_negative_numbers = true)]
    participants: i32,
    #[arg(long, allow_negative_numbers = true)]
    person_times: i32,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    volunteers: i32,
    /// Volunteer service hours, decimals allowed.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    volunteer_hours: f64,
    #[arg(long, default_value = "")]
    title: String,
}

#[derive(Debug, Args)]
struct GroupSessionArgs {
    #[arg(long)]
    group: String,
    #[arg(long, allow_negative_numbers = true)]
    session: i32,
    #[arg(long)]
    date: Option<String>,
    #[arg(long)]
    community: String,
    #[arg(long, allow_negative_numbers = true)]
    participants: i32,
    #[arg(long, default_value = "")]
    topic: String,
}

#[derive(Debug, Args)]
struct ResourceArgs {
    /// The case the resource is for; omit for a community-level resource.
    #[arg(long)]
    case: Option<String>,
    #[arg(long)]
    date: Option<String>,
    #[arg(long, value_enum)]
    kind: ResourceKindArg,
    /// Where the resource came from.
    #[arg(long)]
    source: String,
    /// Cash value in yuan, e.g. 1200.50.
    #[arg(long, default_value = "0", allow_hyphen_values = true)]
    cash: String,
    /// In-kind value in yuan.
    #[arg(long, default_value = "0", allow_hyphen_values = true)]
    in_kind: String,
    #[arg(long, default_value = "")]
    description: String,
}

#[derive(Debug, Args)]
struct TrainingArgs {
    #[arg(long, value_enum)]
    kind: TrainingKindArg,
    #[arg(long)]
    date: Option<String>,
    #[arg(long)]
    title: String,
    #[arg(long, allow_negative_numbers = true)]
    trainees: i32,
    /// Duration in hours, decimals allowed.
    #[arg(long, allow_negative_numbers = true)]
    hours: f64,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[arg(long)]
    case: String,
    #[arg(long)]
    date: Option<String>,
    /// Category confirmed; repeat for several.
    #[arg(long = "category", value_parser = parse_category)]
    categories: Vec<Category>,
    /// Whether the person is still eligible.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    eligible: bool,
    #[arg(long, default_value = "")]
    note: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum NoteKindArg {
    Plan,
    Intervention,
    Review,
    Supervision,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SourceArg {
    Request,
    Outreach,
    Referral,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum GenderArg {
    Male,
    Female,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum VisitKindArg {
    Home,
    Assessment,
    Verification,
    FollowUp,
    Phone,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ActivityKindArg {
    PartyPublicWelfare,
    Clinic,
    ChildCare,
    ElderlyCare,
    DisabilitySupport,
    PolicyPublicity,
    Cultural,
    Other,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ResourceKindArg {
    Cash,
    InKind,
    Service,
    Policy,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TrainingKindArg {
    Training,
    Supervision,
    CoLearning,
}

/// Pads `s` with spaces to `width` terminal columns: Chinese characters take
/// two columns, Tibetan combining marks none.
fn pad(s: &str, width: usize) -> String {
    let used = unicode_width::UnicodeWidthStr::width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(used)))
}

/// A category by its short name, proto name or Chinese name.
fn parse_category(s: &str) -> Result<Category, String> {
    names::parse(s).ok_or_else(|| {
        let expected: Vec<&str> = names::short_names::<Category>().collect();
        format!("expected one of {}", expected.join(", "))
    })
}

/// An input error found before the engine is called.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InputError(String);

fn parse_id(field: &str, s: &str) -> Result<Uuid, InputError> {
    Uuid::parse_str(s.trim())
        .map_err(|_| InputError(format!("{field}: not an id (expected a UUID like 0193…-…)")))
}

fn parse_tier(field: &str, n: u8) -> Result<Tier, InputError> {
    tier_from_number(n).ok_or_else(|| InputError(format!("{field}: tier must be 1, 2 or 3")))
}

/// Parses a yuan amount into fen, keeping its sign so that validation
/// reports a negative amount by name.
fn parse_yuan(field: &str, s: &str) -> Result<i64, InputError> {
    money::parse_yuan(s).map_err(|e| InputError(format!("{field}: {e}")))
}

fn hours_to_minutes(field: &str, hours: f64) -> Result<i32, InputError> {
    let minutes = (hours * 60.0).round();
    if !minutes.is_finite() || minutes.abs() > f64::from(i32::MAX) {
        return Err(InputError(format!("{field}: not a number of hours")));
    }
    // In range by the check above.
    Ok(minutes as i32)
}

fn date_or_today(date: Option<String>) -> String {
    date.unwrap_or_else(|| engine::today().format("%Y-%m-%d").to_string())
}

fn open_body(args: CaseOpenArgs) -> Body {
    let id_number = args.id_number.trim();
    let birth_date = args.birth_date.unwrap_or_else(|| {
        gb11643::birth_date(id_number)
            .map_or_else(String::new, |d| d.format("%Y-%m-%d").to_string())
    });
    let gender = match args.gender {
        Some(GenderArg::Male) => Gender::Male,
        Some(GenderArg::Female) => Gender::Female,
        None => gb11643::gender(id_number).unwrap_or(Gender::Unspecified),
    };
    Body::CaseOpened(CaseOpened {
        name: args.name,
        id_number: args.id_number,
        gender: gender as i32,
        birth_date,
        community_code: args.community,
        address: args.address,
        phone: args.phone,
        language: args.language,
        categories: args.categories.into_iter().map(|c| c as i32).collect(),
        tier: 0,
        source: match args.source {
            SourceArg::Request => CaseSource::Request,
            SourceArg::Outreach => CaseSource::Outreach,
            SourceArg::Referral => CaseSource::Referral,
        } as i32,
        opened_on: date_or_today(args.date),
    })
}

fn body_of(command: Command) -> Result<Body, InputError> {
    let body = match command {
        Command::Case(CaseCommand::Open(args)) => {
            let tier = parse_tier("case_opened.tier", args.tier)?;
            let mut body = open_body(args);
            if let Body::CaseOpened(m) = &mut body {
                m.tier = tier as i32;
            }
            body
        }
        Command::Case(CaseCommand::Assess {
            case,
            tier,
            reason,
            date,
        }) => Body::CaseAssessed(CaseAssessed {
            case_id: parse_id("case_assessed.case_id", &case)?
                .as_bytes()
                .to_vec(),
            tier: parse_tier("case_assessed.tier", tier)? as i32,
            reason,
            last_seen_event_id: Vec::new(),
            assessed_on: date_or_today(date),
        }),
        Command::Case(CaseCommand::Note {
            case,
            kind,
            text,
            date,
        }) => Body::CaseNoteAdded(CaseNoteAdded {
            case_id: parse_id("case_note_added.case_id", &case)?
                .as_bytes()
                .to_vec(),
            kind: match kind {
                NoteKindArg::Plan => NoteKind::Plan,
                NoteKindArg::Intervention => NoteKind::Intervention,
                NoteKindArg::Review => NoteKind::Review,
                NoteKindArg::Supervision => NoteKind::Supervision,
            } as i32,
            text,
            noted_on: date_or_today(date),
        }),
        Command::Case(CaseCommand::Close { case, reason, date }) => Body::CaseClosed(CaseClosed {
            case_id: parse_id("case_closed.case_id", &case)?.as_bytes().to_vec(),
            reason,
            closed_on: date_or_today(date),
        }),
        Command::Case(CaseCommand::Reopen {
            case,
            reason,
            tier,
            date,
        }) => Body::CaseReopened(CaseReopened {
            case_id: parse_id("case_reopened.case_id", &case)?
                .as_bytes()
                .to_vec(),
            reason,
            reopened_on: date_or_today(date),
            tier: match tier {
                Some(n) => parse_tier("case_reopened.tier", n)? as i32,
                None => Tier::Unspecified as i32,
            },
        }),
        Command::Visit(args) => Body::VisitRecorded(VisitRecorded {
            case_id: parse_id("visit_recorded.case_id", &args.case)?
                .as_bytes()
                .to_vec(),
            visit_date: date_or_today(args.date),
            kind: match args.kind {
                VisitKindArg::Home => VisitKind::Home,
                VisitKindArg::Assessment => VisitKind::Assessment,
                VisitKindArg::Verification => VisitKind::Verification,
                VisitKindArg::FollowUp => VisitKind::FollowUp,
                VisitKindArg::Phone => VisitKind::Phone,
            } as i32,
            duration_minutes: args.minutes,
            notes: args.note,
            needs_found: args.needs,
        }),
        Command::Activity(args) => Body::ActivityHeld(ActivityHeld {
            held_on: date_or_today(args.date),
            community_code: args.community,
            kind: match args.kind {
                ActivityKindArg::PartyPublicWelfare => ActivityKind::PartyPublicWelfare,
                ActivityKindArg::Clinic => ActivityKind::Clinic,
                ActivityKindArg::ChildCare => ActivityKind::ChildCare,
                ActivityKindArg::ElderlyCare => ActivityKind::ElderlyCare,
                ActivityKindArg::DisabilitySupport => ActivityKind::DisabilitySupport,
                ActivityKindArg::PolicyPublicity => ActivityKind::PolicyPublicity,
                ActivityKindArg::Cultural => ActivityKind::Cultural,
                ActivityKindArg::Other => ActivityKind::Other,
            } as i32,
            title: args.title,
            participants: args.participants,
            person_times: args.person_times,
            volunteers: args.volunteers,
            volunteer_minutes: hours_to_minutes(
                "activity_held.volunteer_minutes",
                args.volunteer_hours,
            )?,
        }),
        Command::GroupSession(args) => Body::GroupSessionHeld(GroupSessionHeld {
            group_name: args.group,
            session_number: args.session,
            held_on: date_or_today(args.date),
            community_code: args.community,
            participants: args.participants,
            topic: args.topic,
        }),
        Command::Resource(args) => Body::ResourceLinked(ResourceLinked {
            case_id: match &args.case {
                Some(case) => parse_id("resource_linked.case_id", case)?
                    .as_bytes()
                    .to_vec(),
                None => Vec::new(),
            },
            linked_on: date_or_today(args.date),
            kind: match args.kind {
                ResourceKindArg::Cash => ResourceKind::Cash,
                ResourceKindArg::InKind => ResourceKind::InKind,
                ResourceKindArg::Service => ResourceKind::Service,
                ResourceKindArg::Policy => ResourceKind::Policy,
            } as i32,
            source: args.source,
            cash_fen: parse_yuan("resource_linked.cash_fen", &args.cash)?,
            in_kind_fen: parse_yuan("resource_linked.in_kind_fen", &args.in_kind)?,
            description: args.description,
        }),
        Command::Training(args) => Body::TrainingHeld(TrainingHeld {
            held_on: date_or_today(args.date),
            kind: match args.kind {
                TrainingKindArg::Training => TrainingKind::Training,
                TrainingKindArg::Supervision => TrainingKind::Supervision,
                TrainingKindArg::CoLearning => TrainingKind::CoLearning,
            } as i32,
            title: args.title,
            trainees: args.trainees,
            minutes: hours_to_minutes("training_held.minutes", args.hours)?,
        }),
        Command::Verify(args) => Body::BeneficiaryVerified(BeneficiaryVerified {
            case_id: parse_id("beneficiary_verified.case_id", &args.case)?
                .as_bytes()
                .to_vec(),
            verified_on: date_or_today(args.date),
            categories: args.categories.into_iter().map(|c| c as i32).collect(),
            still_eligible: args.eligible,
            notes: args.note,
        }),
        Command::Void { event, reason } => Body::EventVoided(EventVoided {
            voided_event_id: parse_id("event_voided.voided_event_id", &event)?
                .as_bytes()
                .to_vec(),
            reason,
        }),
        Command::Init { .. }
        | Command::Record { .. }
        | Command::Cases { .. }
        | Command::Log { .. }
        | Command::Status { .. }
        | Command::RebuildViews
        | Command::Sync { .. }
        | Command::Run { .. } => {
            return Err(InputError("not an entry command".into()));
        }
    };
    Ok(body)
}

/// `status --format json`: the engine's summary plus the sync client's state.
#[derive(Debug, serde::Serialize)]
struct StatusReport {
    #[serde(flatten)]
    status: station_agent::Status,
    /// The batch the hub refused for good, or null.
    parked: Option<station_agent::store::ParkedBatch>,
    /// Wall-clock milliseconds of the last completed sync round, or null.
    last_sync_ms: Option<i64>,
    /// Measured uplink rate in bits of encoded events per second, or null.
    throughput_bps: Option<u64>,
}

fn sync_options(agent: &Agent, args: HubArgs) -> anyhow::Result<SyncOptions> {
    let identity = agent.identity();
    let hub_url = args
        .hub
        .or_else(|| identity.hub_url.clone())
        .ok_or(sync::SyncError::NoHub)?;
    let mut options = SyncOptions::new(hub_url, args.token.or_else(|| identity.token.clone()));
    if let Some(path) = args.tls_ca {
        let pem = std::fs::read(&path)
            .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
        options.tls_ca_pem = Some(pem);
    }
    options.tls_domain = args.tls_domain;
    Ok(options)
}

/// Registers for Ctrl-C and SIGTERM at once (inside a runtime); the future
/// completes on either.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

fn open_agent(cli_data: &Path, cache_capacity: u64) -> anyhow::Result<Agent> {
    Agent::open(cli_data, OpenOptions { cache_capacity })
        .with_context(|| format!("cannot open the store in {}", cli_data.display()))
}

fn print_recorded(
    out: &mut impl Write,
    body_is_case: bool,
    r: &engine::Recorded,
) -> std::io::Result<()> {
    if body_is_case {
        write!(out, "case_id={} ", r.event_id)?;
    }
    write!(out, "event_id={} origin_seq={}", r.event_id, r.origin_seq)?;
    if r.duplicate {
        write!(out, " (already recorded)")?;
    }
    writeln!(out)
}

fn record_json(agent: &Agent, source: &str) -> anyhow::Result<bool> {
    let reader: Box<dyn BufRead> = if source == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(source).with_context(|| format!("cannot read {source}"))?,
        ))
    };
    let mut out = std::io::stdout().lock();
    let (mut ok, mut failed) = (0usize, 0usize);
    for (index, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read line {}", index + 1))?;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let n = index + 1;
        let result = json::body_from_json(trimmed)
            .map_err(|e| e.to_string())
            .and_then(|body| {
                let is_case = matches!(body, Body::CaseOpened(_));
                agent
                    .record(body)
                    .map(|r| (is_case, r))
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok((is_case, recorded)) => {
                ok += 1;
                write!(out, "line {n}: ok ")?;
                print_recorded(&mut out, is_case, &recorded)?;
            }
            Err(reason) => {
                failed += 1;
                writeln!(out, "line {n}: error: {reason}")?;
            }
        }
    }
    writeln!(out, "{ok} recorded, {failed} refused")?;
    Ok(failed == 0)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Init {
            station,
            worker,
            hub,
            token,
        } => {
            let agent = Agent::init(
                &cli.data,
                InitOptions {
                    station_code: station,
                    worker_id: worker,
                    hub_url: hub,
                    token,
                },
                OpenOptions {
                    cache_capacity: cli.cache_capacity,
                },
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
            let agent = open_agent(&cli.data, cli.cache_capacity)?;
            drop(out);
            if !record_json(&agent, &json)? {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Cases {
            due,
            within,
            all,
            format,
        } => {
            let agent = open_agent(&cli.data, cli.cache_capacity)?;
            let today = engine::today();
            if due {
                let due = agent.due_follow_ups(today, within)?;
                match format {
                    Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&due)?)?,
                    Format::Table => {
                        writeln!(
                            out,
                            "{:<36}  {:<12}  {:<6}  {:<10}  {:>7}  name",
                            "case_id", "community", "tier", "due_on", "overdue"
                        )?;
                        for d in &due {
                            writeln!(
                                out,
                                "{:<36}  {:<12}  {}  {:<10}  {:>7}  {}",
                                d.case.case_id,
                                d.case.community_code,
                                pad(tier_label(d.case.tier), 6),
                                d.due_on,
                                if d.is_overdue() {
                                    format!("{}d", d.days_overdue)
                                } else {
                                    "-".into()
                                },
                                d.case.name
                            )?;
                        }
                        writeln!(
                            out,
                            "{} due, {} overdue",
                            due.len(),
                            due.iter().filter(|d| d.is_overdue()).count()
                        )?;
                    }
                }
            } else {
                let cases: Vec<_> = agent
                    .cases()?
                    .into_iter()
                    .filter(|c| all || c.status == CaseStatus::Open)
                    .collect();
                match format {
                    Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&cases)?)?,
                    Format::Table => {
                        writeln!(
                            out,
                            "{:<36}  {:<12}  {:<6}  {:<6}  {:<10}  {:<10}  {:<24}  name",
                            "case_id",
                            "community",
                            "status",
                            "tier",
                            "last_visit",
                            "next_due",
                            "categories"
                        )?;
                        for c in &cases {
                            let categories: Vec<&str> =
                                c.categories.iter().map(|&k| category_label(k)).collect();
                            writeln!(
                                out,
                                "{:<36}  {:<12}  {:<6}  {}  {:<10}  {:<10}  {}  {}",
                                c.case_id,
                                c.community_code,
                                if c.status == CaseStatus::Open {
                                    "open"
                                } else {
                                    "closed"
                                },
                                pad(tier_label(c.tier), 6),
                                c.last_visit.map_or("-".into(), |d| d.to_string()),
                                c.next_due(agent.intervals())
                                    .map_or("-".into(), |d| d.to_string()),
                                pad(&categories.join(","), 24),
                                c.name
                            )?;
                        }
                        writeln!(out, "{} cases", cases.len())?;
                    }
                }
            }
        }
        Command::Log {
            since,
            limit,
            format,
        } => {
            let agent = open_agent(&cli.data, cli.cache_capacity)?;
            for event in agent.own_events(since, limit)? {
                let id = Uuid::from_slice(&event.event_id)
                    .map_or_else(|_| "?".into(), |u| u.to_string());
                let body = event
                    .body
                    .as_ref()
                    .map(json::body_to_json)
                    .unwrap_or_default();
                match format {
                    LogFormat::Jsonl => {
                        let line = serde_json::json!({
                            "event_id": id,
                            "origin_seq": event.origin_seq,
                            "station_code": event.station_code,
                            "author": event.author,
                            "recorded_at_ms": event.recorded_at_ms,
                            "hlc": event.hlc.to_string(),
                            "body": body,
                        });
                        writeln!(out, "{line}")?;
                    }
                    LogFormat::Table => {
                        writeln!(out, "{:>6}  {}  {}", event.origin_seq, id, body)?;
                    }
                }
            }
        }
        Command::Status { format } => {
            let agent = open_agent(&cli.data, cli.cache_capacity)?;
            let status = agent.status()?;
            let sync = agent.log().sync_state()?;
            match format {
                Format::Json => {
                    let report = StatusReport {
                        throughput_bps: sync.uplink_bytes_per_sec.map(|b| b.saturating_mul(8)),
                        parked: sync.parked,
                        last_sync_ms: sync.last_sync_ms,
                        status,
                    };
                    writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
                }
                Format::Table => {
                    writeln!(out, "origin_id        {}", status.origin_id)?;
                    writeln!(out, "station          {}", status.station)?;
                    writeln!(out, "worker           {}", status.worker_id)?;
                    writeln!(
                        out,
                        "hub              {}",
                        status.hub_url.as_deref().unwrap_or("-")
                    )?;
                    writeln!(out, "head_seq         {}", status.head_seq)?;
                    writeln!(out, "durable_through  {}", status.durable_through)?;
                    writeln!(out, "pending          {}", status.pending)?;
                    match &sync.parked {
                        Some(p) => writeln!(
                            out,
                            "parked           seqs {}..={}: {}",
                            p.from_seq, p.through_seq, p.reason
                        )?,
                        None => writeln!(out, "parked           -")?,
                    }
                    let last_sync = sync.last_sync_ms.map_or("never".into(), |ms| {
                        chrono::DateTime::from_timestamp_millis(ms)
                            .map_or(ms.to_string(), |t| t.to_rfc3339())
                    });
                    writeln!(out, "last sync        {last_sync}")?;
                    let rate = sync
                        .uplink_bytes_per_sec
                        .map_or("-".into(), |b| format!("{} bit/s", b.saturating_mul(8)));
                    writeln!(out, "uplink           {rate}")?;
                    writeln!(out, "open cases       {}", status.open_cases)?;
                    writeln!(out, "closed cases     {}", status.closed_cases)?;
                }
            }
        }
        Command::RebuildViews => {
            let agent = open_agent(&cli.data, cli.cache_capacity)?;
            let n = agent.rebuild_views()?;
            writeln!(out, "rebuilt views from {n} events")?;
        }
        Command::Sync {
            hub,
            retry_parked,
            retry_secs,
        } => {
            let agent = Arc::new(open_agent(&cli.data, cli.cache_capacity)?);
            let mut options = sync_options(&agent, hub)?;
            options.retry_budget = Duration::from_secs(retry_secs);
            if retry_parked {
                agent.log().set_parked(None)?;
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let report = runtime.block_on(sync::sync_once(agent, &options))?;
            writeln!(out, "{}", serde_json::to_string(&report)?)?;
        }
        Command::Run {
            hub,
            interval_secs,
            retry_parked,
        } => {
            let agent = Arc::new(open_agent(&cli.data, cli.cache_capacity)?);
            let mut options = sync_options(&agent, hub)?;
            options.interval = Duration::from_secs(interval_secs);
            if retry_parked {
                agent.log().set_parked(None)?;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let shutdown = shutdown_signal()?;
                writeln!(
                    out,
                    "syncing with {} every {interval_secs} s; Ctrl-C to stop",
                    options.hub_url
                )?;
                out.flush()?;
                drop(out);
                sync::run(agent, options, shutdown).await?;
                anyhow::Ok(())
            })?;
        }
        entry => {
            let is_case = matches!(entry, Command::Case(CaseCommand::Open(_)));
            let body = match body_of(entry) {
                Ok(body) => body,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let agent = open_agent(&cli.data, cli.cache_capacity)?;
            match agent.record(body) {
                Ok(recorded) => print_recorded(&mut out, is_case, &recorded)?,
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
