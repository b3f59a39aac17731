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

fn case_opened(community_code: &str) -> Body {
    Body::CaseOpened(CaseOpened {
        name: "卓玛 སྒྲོལ་མ".into(),
        id_number: "11010519491231002X".into(),
        gender: Gender::Female as i32,
        birth_date: "1949-12-31".into(),
        community_code: community_code.into(),
        address: String::new(),
        phone: String::new(),
        language: "bo".into(),
        categories: vec![Category::Elderly as i32],
        tier: Tier::Key as i32,
        source: CaseSource::Outreach as i32,
        opened_on: today().to_string(),
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
/// case followed by a visit to it. Returns only on an error.
fn append_forever(agent: &Agent, community_code: &str) -> anyhow::Result<()> {
    for n in 1u64.. {
        if n % CASE_EVERY == 0 {
            let case_id = record_and_ack(agent, case_opened(community_code))?;
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
    let workers: Vec<_> = (0..args.threads)
        .map(|_| {
            let agent = Arc::clone(&agent);
            let community_code = community_code.clone();
            std::thread::spawn(move || append_forever(&agent, &community_code))
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
