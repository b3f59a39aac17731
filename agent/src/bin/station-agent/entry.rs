//! Entry commands into event bodies, and bulk entry from proto3 JSON.
//!
//! Invariants: building a body checks only what the arguments' types cannot
//! say (an id written as a UUID, a tier numbered 1–3, an amount in yuan, a
//! number of hours) and names the proto field it fills; every domain rule is
//! left to `station-proto`'s validation, which the engine runs on record; what
//! the ID number says (birth date, gender) is read by `station-proto`.

use std::io::{BufRead, Write};

use anyhow::Context as _;
use station_agent::Agent;
use station_agent::engine::{self, tier_from_number};
use station_proto::id_number as gb11643;
use station_proto::ids::Uuid;
use station_proto::v1::{
    ActivityHeld, BeneficiaryVerified, CaseAssessed, CaseClosed, CaseNoteAdded, CaseOpened,
    CaseReopened, CaseTransferAccepted, CaseTransferDeclined, CaseTransferRequested, CasesMerged,
    DuplicateDismissed, EventVoided, Gender, GroupSessionHeld, GuardianCalled, ResourceLinked,
    ReviewApproved, ReviewRequested, ReviewReturned, Tier, TrainingHeld, VisitAttempted,
    VisitRecorded,
};
use station_proto::{Body, json, money};

use crate::args::{CaseCommand, CaseOpenArgs, Command, ReviewCommand};
use crate::print;

/// An input error found before the engine is called.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(String);

fn parse_id(field: &str, s: &str) -> Result<Uuid, InputError> {
    Uuid::parse_str(s.trim())
        .map_err(|_| InputError(format!("{field}: not an id (expected a UUID like 0193…-…)")))
}

fn id_bytes(field: &str, s: &str) -> Result<Vec<u8>, InputError> {
    Ok(parse_id(field, s)?.as_bytes().to_vec())
}

/// How the case a command names is found: the engine's
/// [`Agent::resolve_case`] (a whole id, or a unique prefix of one).
pub type ResolveCase<'a> = &'a dyn Fn(&str, &str) -> Result<Uuid, InputError>;

fn case_bytes(resolve: ResolveCase<'_>, field: &str, s: &str) -> Result<Vec<u8>, InputError> {
    Ok(resolve(field, s)?.as_bytes().to_vec())
}

/// A [`ResolveCase`] over `agent`'s cases.
pub fn resolve_with(agent: &Agent) -> impl Fn(&str, &str) -> Result<Uuid, InputError> + '_ {
    |field, s| {
        agent
            .resolve_case(field, s)
            .map_err(|e| InputError(e.to_string()))
    }
}

fn parse_tier(field: &str, n: u8) -> Result<Tier, InputError> {
    tier_from_number(n).ok_or_else(|| InputError(format!("{field}: tier must be 1, 2 or 3")))
}

/// Parses a yuan amount into fen, keeping its sign so that validation
/// reports a negative amount by name.
fn parse_yuan(field: &str, s: &str) -> Result<i64, InputError> {
    money::parse_yuan(s).map_err(|e| InputError(format!("{field}: {e}")))
}

/// Hours as typed (decimals allowed) into the whole minutes events carry.
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

/// A case opening; birth date and gender default to what the ID number says
/// (without an ID number they must be given: validation names the missing
/// one).
fn open_body(args: CaseOpenArgs, tier: Tier) -> Body {
    let id_number = args.id_number.trim();
    let birth_date = args.birth_date.unwrap_or_else(|| {
        gb11643::birth_date(id_number)
            .map_or_else(String::new, |d| d.format("%Y-%m-%d").to_string())
    });
    let gender = args
        .gender
        .or_else(|| gb11643::gender(id_number))
        .unwrap_or(Gender::Unspecified);
    Body::CaseOpened(CaseOpened {
        name: args.name,
        id_number: args.id_number,
        gender: gender.into(),
        birth_date,
        community_code: args.community,
        address: args.address,
        phone: args.phone,
        language: args.language,
        categories: args.categories.into_iter().map(i32::from).collect(),
        tier: tier.into(),
        source: args.source.into(),
        opened_on: date_or_today(args.date),
        file_number: String::new(),
        duplicate_reason: args.despite_duplicate.unwrap_or_default(),
        duplicate_of_stations: Vec::new(),
    })
}

/// The event body an entry command records.
///
/// # Errors
/// An argument the types could not refuse (see the module's invariants), or
/// a command that records nothing.
pub fn body_of(command: Command, resolve: ResolveCase<'_>) -> Result<Body, InputError> {
    let body = match command {
        Command::Case(CaseCommand::Open(args)) => {
            let tier = parse_tier("case_opened.tier", args.tier)?;
            open_body(args, tier)
        }
        Command::Case(CaseCommand::Assess {
            case,
            tier,
            reason,
            date,
        }) => Body::CaseAssessed(CaseAssessed {
            case_id: case_bytes(resolve, "case_assessed.case_id", &case)?,
            tier: parse_tier("case_assessed.tier", tier)?.into(),
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
            case_id: case_bytes(resolve, "case_note_added.case_id", &case)?,
            kind: kind.into(),
            text,
            noted_on: date_or_today(date),
        }),
        Command::Case(CaseCommand::Close { case, reason, date }) => Body::CaseClosed(CaseClosed {
            case_id: case_bytes(resolve, "case_closed.case_id", &case)?,
            reason,
            closed_on: date_or_today(date),
        }),
        Command::Case(CaseCommand::Reopen {
            case,
            reason,
            tier,
            date,
        }) => Body::CaseReopened(CaseReopened {
            case_id: case_bytes(resolve, "case_reopened.case_id", &case)?,
            reason,
            reopened_on: date_or_today(date),
            tier: match tier {
                Some(n) => parse_tier("case_reopened.tier", n)?,
                None => Tier::Unspecified,
            }
            .into(),
        }),
        Command::Case(CaseCommand::Merge {
            into,
            case,
            reason,
            date,
        }) => Body::CasesMerged(CasesMerged {
            survivor_case_id: case_bytes(resolve, "cases_merged.survivor_case_id", &into)?,
            absorbed_case_id: case_bytes(resolve, "cases_merged.absorbed_case_id", &case)?,
            reason,
            merged_on: date_or_today(date),
        }),
        Command::Case(CaseCommand::NotDuplicate {
            case,
            of,
            reason,
            date,
        }) => Body::DuplicateDismissed(DuplicateDismissed {
            case_id: case_bytes(resolve, "duplicate_dismissed.case_id", &case)?,
            duplicate_of_case_id: case_bytes(
                resolve,
                "duplicate_dismissed.duplicate_of_case_id",
                &of,
            )?,
            reason,
            dismissed_on: date_or_today(date),
        }),
        Command::Case(CaseCommand::Transfer {
            case,
            to,
            reason,
            date,
        }) => Body::CaseTransferRequested(CaseTransferRequested {
            case_id: case_bytes(resolve, "case_transfer_requested.case_id", &case)?,
            to_station_code: to,
            reason,
            requested_on: date_or_today(date),
        }),
        Command::Case(CaseCommand::AcceptTransfer {
            request,
            community,
            note,
            date,
        }) => Body::CaseTransferAccepted(CaseTransferAccepted {
            // Filled from the request by the engine.
            case_id: Vec::new(),
            request_id: id_bytes("case_transfer_accepted.request_id", &request)?,
            community_code: community,
            accepted_on: date_or_today(date),
            note: note.unwrap_or_default(),
        }),
        Command::Case(CaseCommand::DeclineTransfer {
            request,
            reason,
            date,
        }) => Body::CaseTransferDeclined(CaseTransferDeclined {
            case_id: Vec::new(),
            request_id: id_bytes("case_transfer_declined.request_id", &request)?,
            reason,
            declined_on: date_or_today(date),
        }),
        Command::Visit(args) => Body::VisitRecorded(VisitRecorded {
            case_id: case_bytes(resolve, "visit_recorded.case_id", &args.case)?,
            visit_date: date_or_today(args.date),
            kind: args.kind.into(),
            duration_minutes: args.minutes,
            notes: args.note,
            needs_found: args.needs,
        }),
        Command::Call(args) => Body::GuardianCalled(GuardianCalled {
            case_id: case_bytes(resolve, "guardian_called.case_id", &args.case)?,
            called_on: date_or_today(args.date),
            outcome: args.outcome.into(),
            duration_minutes: args.minutes,
            notes: args.note,
        }),
        Command::Attempt(args) => Body::VisitAttempted(VisitAttempted {
            case_id: case_bytes(resolve, "visit_attempted.case_id", &args.case)?,
            attempted_on: date_or_today(args.date),
            reason: args.reason.into(),
            notes: args.note,
        }),
        Command::Activity(args) => Body::ActivityHeld(ActivityHeld {
            held_on: date_or_today(args.date),
            community_code: args.community,
            kind: args.kind.into(),
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
                Some(case) => case_bytes(resolve, "resource_linked.case_id", case)?,
                None => Vec::new(),
            },
            linked_on: date_or_today(args.date),
            kind: args.kind.into(),
            source: args.source,
            cash_fen: parse_yuan("resource_linked.cash_fen", &args.cash)?,
            in_kind_fen: parse_yuan("resource_linked.in_kind_fen", &args.in_kind)?,
            description: args.description,
        }),
        Command::Training(args) => Body::TrainingHeld(TrainingHeld {
            held_on: date_or_today(args.date),
            kind: args.kind.into(),
            title: args.title,
            trainees: args.trainees,
            minutes: hours_to_minutes("training_held.minutes", args.hours)?,
        }),
        Command::Verify(args) => Body::BeneficiaryVerified(BeneficiaryVerified {
            case_id: case_bytes(resolve, "beneficiary_verified.case_id", &args.case)?,
            verified_on: date_or_today(args.date),
            categories: args.categories.into_iter().map(i32::from).collect(),
            still_eligible: args.eligible,
            notes: args.note,
        }),
        Command::Review(ReviewCommand::Request {
            case,
            what,
            event,
            note,
            date,
        }) => Body::ReviewRequested(ReviewRequested {
            case_id: case_bytes(resolve, "review_requested.case_id", &case)?,
            subject: what.into(),
            subject_event_id: match &event {
                Some(event) => id_bytes("review_requested.subject_event_id", event)?,
                None => Vec::new(),
            },
            last_seen_event_id: Vec::new(),
            requested_on: date_or_today(date),
            note,
        }),
        // The case is the request's, filled in by the engine.
        Command::Review(ReviewCommand::Approve {
            request,
            comment,
            date,
        }) => Body::ReviewApproved(ReviewApproved {
            case_id: Vec::new(),
            request_id: id_bytes("review_approved.request_id", &request)?,
            last_seen_event_id: Vec::new(),
            decided_on: date_or_today(date),
            comment,
        }),
        Command::Review(ReviewCommand::Return {
            request,
            comment,
            date,
        }) => Body::ReviewReturned(ReviewReturned {
            case_id: Vec::new(),
            request_id: id_bytes("review_returned.request_id", &request)?,
            last_seen_event_id: Vec::new(),
            decided_on: date_or_today(date),
            comment,
        }),
        Command::Void { event, reason } => Body::EventVoided(EventVoided {
            voided_event_id: id_bytes("event_voided.voided_event_id", &event)?,
            reason,
        }),
        Command::Init { .. }
        | Command::Review(ReviewCommand::List { .. })
        | Command::Case(CaseCommand::Transfers { .. })
        | Command::Record { .. }
        | Command::Cases { .. }
        | Command::Log { .. }
        | Command::Status { .. }
        | Command::RebuildViews
        | Command::Rekey { .. }
        | Command::Sync { .. }
        | Command::Run { .. }
        | Command::Relay { .. } => {
            return Err(InputError("not an entry command".into()));
        }
    };
    Ok(body)
}

/// Records the proto3 JSON bodies of `source` (a file, or `-` for standard
/// input), one per line, each on its own; prints a line per entry and a
/// summary. Returns whether every entry was recorded.
///
/// # Errors
/// The source cannot be read, or standard output cannot be written.
pub fn record_json(agent: &Agent, source: &str) -> anyhow::Result<bool> {
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
                let possible = match &body {
                    Body::CaseOpened(opening) => agent
                        .possible_duplicates(opening)
                        .map_err(|e| e.to_string())?,
                    _ => Vec::new(),
                };
                agent
                    .record_now_reviewed(body)
                    .map(|r| (is_case, r, possible))
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok((is_case, recorded, possible)) => {
                ok += 1;
                write!(out, "line {n}: ok ")?;
                let opened = if is_case {
                    agent.case(recorded.entry.event_id)?
                } else {
                    None
                };
                print::recorded(&mut out, opened.as_ref(), &recorded)?;
                if !possible.is_empty() && !recorded.entry.duplicate {
                    eprintln!(
                        "line {n}: warning: {}",
                        print::possible_duplicate(&possible)
                    );
                }
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
