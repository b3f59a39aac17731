//! `crash-appender`: appends valid events to a station-agent store forever,
//! printing `ack <origin_seq> <event_id>` for each one `Agent::record`
//! reported saved, so a test can SIGKILL it at any moment and check that
//! every acknowledged event survived.
//!
//! Invariant: an ack line is written (and stdout flushed) only after `record`
//! returned `Ok`, and each line is written whole under the stdout lock, so a
//! line the test reads always names an event the agent called durable.
//!
//! Usage: `crash-appender --data DIR --station 540502001 [--threads N]`.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, bail};
use station_agent::engine::today;
use station_agent::{Agent, AgentError, InitOptions, OpenOptions, StoreError};
use station_proto::Body;
use station_proto::v1::{
    ActivityHeld, ActivityKind, CaseOpened, CaseSource, Category, Gender, Tier, VisitKind,
    VisitRecorded,
};
use station_tests::ack_line;

/// Every fifth event of a thread opens a case (followed by a visit to it).
const CASE_EVERY: u64 = 5;

/// The command line.
struct Args {
    /// The store directory.
    data: PathBuf,
    /// The 9-digit station code used when the store has no identity yet.
    station: String,
    /// How many threads append concurrently on the one `Agent`.
    threads: usize,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut data = None;
    let mut station = None;
    let mut threads = 1;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--data" => data = Some(PathBuf::from(value)),
            "--station" => station = Some(value),
            "--threads" => {
                threads = value
                    .parse()
                    .with_context(|| format!("--threads {value}: not a number"))?;
                if threads == 0 {
                    bail!("--threads must be at least 1");
                }
            }
            _ => bail!("unknown argument {flag}"),
        }
    }
    Ok(Args {
        data: data.context("--data DIR is required")?,
        station: station.context("--station CODE is required")?,
        threads,
    })
}

/// Opens the store, creating its identity when it has none.
fn open_or_init(args: &Args) -> anyhow::Result<Agent> {
    match Agent::open(&args.data, OpenOptions::default()) {
        Ok(agent) => Ok(agent),
        Err(AgentError::Store(StoreError::NotInitialised)) => Ok(Agent::init(
            &args.data,
            InitOptions {
                station_code: args.station.clone(),
                worker_id: "crash-appender".into(),
                hub_url: None,
                token: None,
            },
            OpenOptions::default(),
        )?),
        Err(e) => Err(e.into()),
    }
}

fn activity(community_code: &str) -> Body {
    Body::ActivityHeld(ActivityHeld {
        held_on: today().to_string(),
        community_code: community_code.into(),
        kind: ActivityKind::ChildCare as i32,
        title: "儿童关爱 བྱིས་པ".into(),
        participants: 10,
        person_times: 12,
        volunteers: 2,
        volunteer_minutes: 120,
    })
}

/// The `n`th person of the appender: female, serial `n % 500`, born on a
/// day counted from 1950-01-01 by `n / 500` (28 days a month), so that people
/// differ for every `n` below 500 × 28 × 12 × 60.
fn case_opened(community_code: &str, n: u64) -> Body {
    let day = n / 500;
    let (year, month, day) = (1950 + day / 336 % 60, 1 + day / 28 % 12, 1 + day % 28);
    let birth = format!("{year}{month:02}{day:02}");
    let first17 = format!("540502{birth}{:03}", n % 500 * 2);
    Body::CaseOpened(CaseOpened {
        name: "卓玛 སྒྲོལ་མ".into(),
        id_number: station_proto::id_number::with_check_character(&first17).unwrap_or_default(),
        gender: Gender::Female as i32,
        birth_date: format!("{year}-{month:02}-{day:02}"),
        community_code: community_code.into(),
        address: String::new(),
        phone: String::new(),
        language: "bo".into(),
        categories: vec![Category::Elderly as i32],
        tier: Tier::Key as i32,
        source: CaseSource::Outreach as i32,
        opened_on: today().to_string(),
        file_number: String::new(),
        duplicate_reason: String::new(),
        duplicate_of_stations: Vec::new(),
    })
}

fn visit(case_id: station_proto::ids::Uuid) -> Body {
    Body::VisitRecorded(VisitRecorded {
        case_id: case_id.as_bytes().to_vec(),
        visit_date: today().to_string(),
        kind: VisitKind::Home as i32,
        duration_minutes: 30,
        notes: "上门探访".into(),
        needs_found: Vec::new(),
    })
}

/// Records `body` and prints its ack once `record` reported it durable.
fn record_and_ack(agent: &Agent, body: Body) -> anyhow::Result<station_proto::ids::Uuid> {
    let appended = agent.record(body)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "{}",
        ack_line(appended.origin_seq, appended.event_id)
    )?;
    stdout.flush()?;
    Ok(appended.event_id)
}

/// One appending thread: activities, and every [`CASE_EVERY`]th event a new
/// case followed by a visit to it. People are drawn from `people`, shared by
/// the threads; one whose file a run before a crash opened already is
/// refused by the agent (一人一档) and the next is taken. Returns only on an
/// error.
fn append_forever(agent: &Agent, community_code: &str, people: &AtomicU64) -> anyhow::Result<()> {
    for n in 1u64.. {
        if n % CASE_EVERY == 0 {
            let case_id = loop {
                let person = people.fetch_add(1, Ordering::Relaxed);
                match record_and_ack(agent, case_opened(community_code, person)) {
                    Ok(case_id) => break case_id,
                    Err(e)
                        if matches!(
                            e.downcast_ref::<AgentError>(),
                            Some(AgentError::PersonHasOpenFile { .. })
                        ) => {}
                    Err(e) => return Err(e),
                }
            };
            record_and_ack(agent, visit(case_id))?;
        } else {
            record_and_ack(agent, activity(community_code))?;
        }
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let community_code = format!("{}001", args.station);
    let agent = Arc::new(open_or_init(&args)?);
    // Past every person a run before this one could have drawn, unless it
    // was killed with openings in flight: those are refused and skipped.
    let people = Arc::new(AtomicU64::new(agent.log().head_seq()));
    let workers: Vec<_> = (0..args.threads)
        .map(|_| {
            let agent = Arc::clone(&agent);
            let people = Arc::clone(&people);
            let community_code = community_code.clone();
            std::thread::spawn(move || append_forever(&agent, &community_code, &people))
        })
        .collect();
    for worker in workers {
        match worker.join() {
            Ok(result) => result?,
            Err(_) => bail!("an appending thread panicked"),
        }
    }
    Ok(())
}
