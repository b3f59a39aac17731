//! The command line's arguments: what each command takes, as clap parses it.
//!
//! Invariants: enum arguments are the `station.v1` enums themselves, parsed by
//! [`station_proto::names`] (short name, proto name, Chinese alias) and listed
//! in `--help` from the same table, so no second list of spellings exists; a
//! value clap refuses exits with status 2 before any store is opened.

use std::ffi::OsStr;
use std::marker::PhantomData;
use std::path::PathBuf;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser, Subcommand, ValueEnum};
use station_proto::names::{self, Named};
use station_proto::v1::{
    AbsenceReason, ActivityKind, CallOutcome, CaseSource, Category, Gender, NoteKind, ResourceKind,
    ReviewSubject, TrainingKind, VisitKind,
};

/// Records social work entries on this device, durably and offline.
#[derive(Debug, Parser)]
#[command(name = "station-agent", version, about)]
pub struct Cli {
    /// The device's data folder.
    #[arg(
        long,
        global = true,
        env = "STATION_AGENT_DATA",
        default_value = "./station-data"
    )]
    pub data: PathBuf,
    /// sled page cache in bytes.
    #[arg(long, global = true, default_value_t = station_agent::store::DEFAULT_CACHE_CAPACITY)]
    pub cache_capacity: u64,
    /// The key file (64 hexadecimal digits, mode 0600) that unlocks the
    /// store. Default: `<data>.key` beside the data folder, created by
    /// `init` when absent; or a passphrase in STATION_AGENT_PASSPHRASE.
    #[arg(long, global = true, env = "STATION_AGENT_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// The cipher of a store encrypted now: xchacha20-poly1305 (default) or
    /// sm4-gcm (商用密码). A store keeps the cipher it was encrypted with.
    #[arg(long, global = true, default_value = "xchacha20-poly1305")]
    pub cipher: station_agent::seal::Algorithm,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Creates this device's identity (once).
    Init {
        /// 9-digit station code, e.g. 540502001.
        #[arg(long)]
        station: String,
        /// The social worker's id.
        #[arg(long)]
        worker: String,
        /// The hub's address, e.g. https://hub:7400 (a warning is printed
        /// when http:// names another machine: the token would cross the
        /// network in clear).
        #[arg(long)]
        hub: Option<String>,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Case files: open, assess, note, close, reopen.
    #[command(subcommand)]
    Case(CaseCommand),
    /// Records a visit (入户走访).
    Visit(VisitArgs),
    /// Records a phone call to a case's guardian (电话联系监护人).
    Call(CallArgs),
    /// Records a visit that found nobody at home (上门未遇).
    Attempt(AttemptArgs),
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
    /// Supervision (督导审核): ask for a review, approve or return one, list them.
    #[command(subcommand)]
    Review(ReviewCommand),
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
    /// Wraps the store's data key under a new key (a new key file, or the
    /// passphrase in STATION_AGENT_NEW_PASSPHRASE); the data is not rewritten.
    Rekey {
        /// The new key file; created (0600) when it does not exist.
        #[arg(long, conflicts_with = "new_passphrase")]
        new_key_file: Option<PathBuf>,
        /// Take the new passphrase from STATION_AGENT_NEW_PASSPHRASE.
        #[arg(long)]
        new_passphrase: bool,
    },
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
    /// Runs this PC as its station's relay: `station-relay` (installed
    /// beside this program) with these arguments, e.g. `relay --station
    /// 540502001 --listen 0.0.0.0:7401 --hub https://hub:7400 --token-file
    /// relay.token`; `--data` names the relay's folder (default
    /// ./relay-data). See `station-relay --help`.
    Relay {
        /// The arguments of `station-relay`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// The device token printed by `station-hub enroll`: from a file, from the
/// environment variable `STATION_AGENT_TOKEN`, or (shown to every user of the
/// machine by `ps`) on the command line.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The device token printed by `station-hub enroll`. Other users of the
    /// machine see it in `ps`: prefer --token-file or STATION_AGENT_TOKEN.
    #[arg(long, env = "STATION_AGENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the device token (surrounding white space ignored).
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
}

/// Where the hub is and how to prove who this device is.
#[derive(Debug, Args)]
pub struct HubArgs {
    /// The hub's address (default: the one given at init).
    #[arg(long)]
    pub hub: Option<String>,
    /// The device token (default: the one given at init).
    #[command(flatten)]
    pub token: TokenArgs,
    /// A PEM CA certificate to trust for the hub's TLS certificate; turns TLS on.
    #[arg(long, env = "STATION_AGENT_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// The name on the hub's certificate, when it differs from the address's host.
    #[arg(long)]
    pub tls_domain: Option<String>,
    /// Looks for the station's relay on the LAN (mDNS, up to 2 s, at start
    /// and, for `run`, every 5 minutes after) and tries the relays found
    /// before the hub's addresses; a
    /// relay found must pass the same TLS and token checks as a configured
    /// one, and a plain (non-TLS) relay is used only when a configured
    /// address is plain http:// too.
    #[arg(long)]
    pub discover: bool,
}

/// How `cases` and `status` print.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// How `log` prints.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Table,
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub enum CaseCommand {
    /// Opens a case file for one person (一人一档); prints the case id.
    Open(CaseOpenArgs),
    /// Changes a case's tier (预估), with the reason.
    Assess {
        /// The case: its id, or a prefix of it no other case shares (4+ hex digits).
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
        /// The case: its id, or a prefix of it no other case shares (4+ hex digits).
        #[arg(long)]
        case: String,
        #[arg(long, value_parser = enum_name::<NoteKind>())]
        kind: NoteKind,
        #[arg(long)]
        text: String,
        #[arg(long)]
        date: Option<String>,
    },
    /// Closes a case.
    Close {
        /// The case: its id, or a prefix of it no other case shares (4+ hex digits).
        #[arg(long)]
        case: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        date: Option<String>,
    },
    /// Reopens a closed case.
    Reopen {
        /// The case: its id, or a prefix of it no other case shares (4+ hex digits).
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
    /// Merges two files of one person (合并档案): the survivor keeps its
    /// number, status and tier; the other file's visits and notes join it,
    /// and the other file is no longer counted. Undone by voiding the merge.
    Merge {
        /// The file that stays: its id, 档案编号, or a prefix of its id.
        #[arg(long)]
        into: String,
        /// The file absorbed into it: its id, 档案编号, or a prefix of its id.
        #[arg(long)]
        case: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        date: Option<String>,
    },
    /// Says that a file the bureau's list flags as a duplicate is not one
    /// (非重复), with the reason: it counts as a file of its own again.
    NotDuplicate {
        /// The flagged file: its id, 档案编号, or a prefix of its id.
        #[arg(long)]
        case: String,
        /// The file it was flagged as a duplicate of.
        #[arg(long)]
        of: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        date: Option<String>,
    },
    /// Asks another station to take a file of this station over (转移申请),
    /// with the reason; prints the request's event id.
    Transfer {
        /// The file: its id, 档案编号, or a prefix of its id.
        #[arg(long)]
        case: String,
        /// The 9-digit code of the station asked to take the file.
        #[arg(long)]
        to: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        date: Option<String>,
    },
    /// Takes over a file another station asked this one to take (接收转移).
    AcceptTransfer {
        /// The request's event id.
        #[arg(long)]
        request: String,
        /// The community of this station the person now lives in (12 digits).
        #[arg(long)]
        community: String,
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        date: Option<String>,
    },
    /// Lists the transfer requests of other stations waiting for this
    /// station's answer (待接收转移), as this device learnt them from the
    /// city hub: request id, file number, name, sending station, age and
    /// reason.
    Transfers {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Declines a transfer request addressed to this station (拒绝转移).
    DeclineTransfer {
        /// The request's event id.
        #[arg(long)]
        request: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        date: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Asks a supervisor to review a tier change, a case plan or a closure;
    /// prints the request's event id.
    Request {
        /// The case: its id, its file number, or a prefix of its id.
        #[arg(long)]
        case: String,
        /// tier-change, case-plan or closure.
        #[arg(long, value_parser = enum_name::<ReviewSubject>())]
        what: ReviewSubject,
        /// The event under review (default: the case's latest of that kind).
        #[arg(long)]
        event: Option<String>,
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long)]
        date: Option<String>,
    },
    /// Approves a review request (a supervisor's token).
    Approve {
        /// The request's event id.
        #[arg(long)]
        request: String,
        #[arg(long, default_value = "")]
        comment: String,
        #[arg(long)]
        date: Option<String>,
    },
    /// Returns a review request to its author with what to change.
    Return {
        /// The request's event id.
        #[arg(long)]
        request: String,
        #[arg(long)]
        comment: String,
        #[arg(long)]
        date: Option<String>,
    },
    /// Lists review requests: those waiting (with their age) and those
    /// returned and not yet resubmitted; --all adds the decided ones.
    List {
        #[arg(long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Debug, Args)]
pub struct CaseOpenArgs {
    #[arg(long)]
    pub name: String,
    /// 18-character resident ID number. Leave it out for a person without
    /// one (a child without a card, an elder): --birth-date and --gender
    /// are then required.
    #[arg(long, default_value = "")]
    pub id_number: String,
    /// 12-digit community code, inside this device's station.
    #[arg(long)]
    pub community: String,
    /// Beneficiary category; repeat for several (e.g. dibao, 低保, elderly).
    #[arg(long = "category", required = true, value_parser = enum_name::<Category>())]
    pub categories: Vec<Category>,
    /// 1 high risk, 2 key, 3 general.
    #[arg(long)]
    pub tier: u8,
    #[arg(long, value_parser = enum_name::<CaseSource>(), default_value = "outreach")]
    pub source: CaseSource,
    /// Derived from the ID number when not given; required without one.
    #[arg(long, value_parser = enum_name::<Gender>())]
    pub gender: Option<Gender>,
    /// YYYY-MM-DD; derived from the ID number when not given; required
    /// without one.
    #[arg(long)]
    pub birth_date: Option<String>,
    #[arg(long, default_value = "")]
    pub address: String,
    #[arg(long, default_value = "")]
    pub phone: String,
    /// Preferred language, e.g. zh or bo.
    #[arg(long, default_value = "")]
    pub language: String,
    /// Date the case was opened (default today).
    #[arg(long)]
    pub date: Option<String>,
    /// Open the file although the district directory says another station
    /// holds an open file for this person, for this reason (recorded with
    /// the opening, seen by the hub and the bureau).
    #[arg(long, value_name = "REASON")]
    pub despite_duplicate: Option<String>,
}

#[derive(Debug, Args)]
pub struct VisitArgs {
    /// The case: its id, or a prefix of it no other case shares (4+ hex digits).
    #[arg(long)]
    pub case: String,
    /// YYYY-MM-DD, the day of the visit (default today).
    #[arg(long)]
    pub date: Option<String>,
    #[arg(long, value_parser = enum_name::<VisitKind>(), default_value = "home")]
    pub kind: VisitKind,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub minutes: i32,
    #[arg(long, default_value = "")]
    pub note: String,
    /// A need found during the visit; repeat for several.
    #[arg(long = "need")]
    pub needs: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The case: its id, or a prefix of it no other case shares (4+ hex digits).
    #[arg(long)]
    pub case: String,
    /// YYYY-MM-DD, the day of the call (default today).
    #[arg(long)]
    pub date: Option<String>,
    #[arg(long, value_parser = enum_name::<CallOutcome>())]
    pub outcome: CallOutcome,
    /// Length of the call; 0 when it did not connect.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub minutes: i32,
    #[arg(long, default_value = "")]
    pub note: String,
}

#[derive(Debug, Args)]
pub struct AttemptArgs {
    /// The case: its id, or a prefix of it no other case shares (4+ hex digits).
    #[arg(long)]
    pub case: String,
    /// YYYY-MM-DD, the day of the attempt (default today).
    #[arg(long)]
    pub date: Option<String>,
    /// Why the person was not seen: nobody-home, away, moved, other (or 家中无人, 外出, 已搬离, 其他).
    #[arg(long, value_parser = enum_name::<AbsenceReason>())]
    pub reason: AbsenceReason,
    #[arg(long, default_value = "")]
    pub note: String,
}

#[derive(Debug, Args)]
pub struct ActivityArgs {
    #[arg(long, value_parser = enum_name::<ActivityKind>())]
    pub kind: ActivityKind,
    #[arg(long)]
    pub date: Option<String>,
    #[arg(long)]
    pub community: String,
    #[arg(long, allow_negative_numbers = true)]
    pub participants: i32,
    #[arg(long, allow_negative_numbers = true)]
    pub person_times: i32,
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub volunteers: i32,
    /// Volunteer service hours, decimals allowed.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub volunteer_hours: f64,
    #[arg(long, default_value = "")]
    pub title: String,
}

#[derive(Debug, Args)]
pub struct GroupSessionArgs {
    #[arg(long)]
    pub group: String,
    #[arg(long, allow_negative_numbers = true)]
    pub session: i32,
    #[arg(long)]
    pub date: Option<String>,
    #[arg(long)]
    pub community: String,
    #[arg(long, allow_negative_numbers = true)]
    pub participants: i32,
    #[arg(long, default_value = "")]
    pub topic: String,
}

#[derive(Debug, Args)]
pub struct ResourceArgs {
    /// The case the resource is for (its id, or a prefix of it no other case
    /// shares, 4+ hex digits); omit for a community-level resource.
    #[arg(long)]
    pub case: Option<String>,
    #[arg(long)]
    pub date: Option<String>,
    #[arg(long, value_parser = enum_name::<ResourceKind>())]
    pub kind: ResourceKind,
    /// Where the resource came from.
    #[arg(long)]
    pub source: String,
    /// Cash value in yuan, e.g. 1200.50.
    #[arg(long, default_value = "0", allow_hyphen_values = true)]
    pub cash: String,
    /// In-kind value in yuan.
    #[arg(long, default_value = "0", allow_hyphen_values = true)]
    pub in_kind: String,
    #[arg(long, default_value = "")]
    pub description: String,
}

#[derive(Debug, Args)]
pub struct TrainingArgs {
    #[arg(long, value_parser = enum_name::<TrainingKind>())]
    pub kind: TrainingKind,
    #[arg(long)]
    pub date: Option<String>,
    #[arg(long)]
    pub title: String,
    #[arg(long, allow_negative_numbers = true)]
    pub trainees: i32,
    /// Duration in hours, decimals allowed.
    #[arg(long, allow_negative_numbers = true)]
    pub hours: f64,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The case: its id, or a prefix of it no other case shares (4+ hex digits).
    #[arg(long)]
    pub case: String,
    #[arg(long)]
    pub date: Option<String>,
    /// Category confirmed; repeat for several.
    #[arg(long = "category", value_parser = enum_name::<Category>())]
    pub categories: Vec<Category>,
    /// Whether the person is still eligible.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub eligible: bool,
    #[arg(long, default_value = "")]
    pub note: String,
}

/// Parses a `station.v1` enum by the names [`station_proto::names`] accepts
/// and offers its short names to `--help` and to the error for a wrong value.
#[derive(Debug, Clone, Copy)]
pub struct EnumName<E>(PhantomData<fn() -> E>);

/// The value parser of enum `E`.
pub fn enum_name<E: Named>() -> EnumName<E> {
    EnumName(PhantomData)
}

impl<E: Named> TypedValueParser for EnumName<E> {
    type Value = E;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<E, clap::Error> {
        if let Some(parsed) = value.to_str().and_then(names::parse::<E>) {
            return Ok(parsed);
        }
        let mut error = clap::Error::new(ErrorKind::InvalidValue).with_cmd(cmd);
        if let Some(arg) = arg {
            error.insert(
                ContextKind::InvalidArg,
                ContextValue::String(arg.to_string()),
            );
        }
        error.insert(
            ContextKind::InvalidValue,
            ContextValue::String(value.to_string_lossy().into_owned()),
        );
        error.insert(
            ContextKind::ValidValue,
            ContextValue::Strings(names::short_names::<E>().map(String::from).collect()),
        );
        Err(error)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(names::short_names::<E>().map(PossibleValue::new)))
    }
}
