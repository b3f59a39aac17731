//! The event log through the engine's public API: gap-free seqs, idempotent
//! re-appends, reopen, concurrent appenders, pulled events with their cursor,
//! and a model-based property test against an in-memory `Vec`.

use std::sync::Arc;

use proptest::prelude::*;
use station_agent::{Agent, AgentError, HubLogChange, InitOptions, OpenOptions, StoreError};
use station_proto::ids::Uuid;
use station_proto::v1::{ActivityHeld, ActivityKind};
use station_proto::{Body, Event};

use crate::fixtures::{STATION, today};

fn init(dir: &std::path::Path) -> Agent {
    crate::fixtures::init_device(dir, "w01")
}

fn activity(participants: i32) -> Body {
    Body::ActivityHeld(ActivityHeld {
        held_on: "2026-11-29".into(),
        community_code: "540502001003".into(),
        kind: ActivityKind::ElderlyCare as i32,
        title: "为老服务 རྒན་འཁོགས".into(),
        participants,
        person_times: participants,
        volunteers: 1,
        volunteer_minutes: 60,
    })
}

fn own_ids(agent: &Agent) -> Vec<(u64, Uuid)> {
    agent
        .own_events(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.origin_seq, Uuid::from_slice(&e.event_id).unwrap()))
        .collect()
}

#[test]
fn appends_get_gap_free_seqs_that_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    let mut ids = Vec::new();
    for n in 1..=20 {
        let r = agent.record(activity(n)).unwrap();
        assert_eq!(r.origin_seq, n as u64);
        assert!(!r.duplicate);
        ids.push((r.origin_seq, r.event_id));
    }
    drop(agent);
    let agent = Agent::open(dir.path(), OpenOptions::default()).unwrap();
    assert_eq!(own_ids(&agent), ids);
    let next = agent.record(activity(1)).unwrap();
    assert_eq!(next.origin_seq, 21);
    let events = agent.own_events(0, usize::MAX).unwrap();
    let origin = agent.identity().origin_id;
    assert!(events.iter().all(|e| e.origin_id == origin.as_bytes()
        && e.station_code == STATION
        && e.author == "w01"));
    assert!(events.windows(2).all(|w| w[0].hlc < w[1].hlc), "HLCs grow");
}

#[test]
fn re_appending_a_known_event_id_returns_the_original_seq() {
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    let id = Uuid::now_v7();
    let first = agent
        .record_with(Some(id), activity(3), today(), 1_000)
        .unwrap();
    agent.record(activity(4)).unwrap();
    let again = agent
        .record_with(Some(id), activity(99), today(), 2_000)
        .unwrap();
    assert_eq!(again.origin_seq, first.origin_seq);
    assert_eq!(again.event_id, id);
    assert!(again.duplicate);
    assert_eq!(agent.log().head_seq(), 2);
}

#[test]
fn a_rejected_entry_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    agent.record(activity(5)).unwrap();
    let before = own_ids(&agent);
    let err = agent.record(activity(-1)).unwrap_err();
    assert!(
        matches!(&err, AgentError::Invalid(i) if i.field == "activity_held.participants"),
        "{err}"
    );
    let mut other_station = activity(5);
    if let Body::ActivityHeld(m) = &mut other_station {
        m.community_code = "540502101001".into();
    }
    assert!(matches!(
        agent.record(other_station),
        Err(AgentError::Invalid(_))
    ));
    assert_eq!(own_ids(&agent), before);
}

#[test]
fn init_refuses_an_existing_store_and_open_refuses_an_empty_one() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Agent::open(dir.path(), OpenOptions::default()),
        Err(AgentError::Store(StoreError::NotInitialised))
    ));
    let agent = init(dir.path());
    let origin = agent.identity().origin_id;
    drop(agent);
    let err = Agent::init(
        dir.path(),
        InitOptions {
            station_code: "540502101".into(),
            worker_id: "w02".into(),
            hub_url: None,
            token: None,
        },
        OpenOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, AgentError::Store(StoreError::AlreadyInitialised(o)) if o == origin));
    let agent = Agent::open(dir.path(), OpenOptions::default()).unwrap();
    assert_eq!(agent.identity().station_code, STATION);
}

#[test]
fn concurrent_appenders_share_syncs_and_keep_seqs_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Arc::new(init(dir.path()));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let agent = Arc::clone(&agent);
            std::thread::spawn(move || {
                (0..25)
                    .map(|n| agent.record(activity(n)).unwrap().origin_seq)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    assert_eq!(agent.log().durable_seq(), 200);
    let stored: Vec<u64> = own_ids(&agent).into_iter().map(|(s, _)| s).collect();
    assert_eq!(stored, seqs);
}

fn colleague_event(origin: Uuid, seq: u64, station: &str, body: Body) -> Event {
    Event {
        event_id: Uuid::now_v7().as_bytes().to_vec(),
        origin_id: origin.as_bytes().to_vec(),
        origin_seq: seq,
        station_code: station.into(),
        author: "w02".into(),
        recorded_at_ms: 1_700_000_000_000,
        hlc: (1_700_000_000_000u64 << 16) + seq,
        body: Some(body),
    }
}

#[test]
fn pulled_events_are_stored_once_with_their_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    let mine = agent.record(activity(1)).unwrap();
    let colleague = Uuid::new_v4();
    let a = colleague_event(colleague, 1, STATION, activity(7));
    let b = colleague_event(colleague, 2, STATION, activity(8));
    let own = agent.log().event(mine.event_id).unwrap().unwrap();
    let applied = agent
        .apply_pulled(vec![(1, a.clone()), (2, own), (3, b.clone())], 3)
        .unwrap();
    assert_eq!((applied.stored, applied.skipped, applied.cursor), (2, 1, 3));
    // A page pulled again after a lost response changes nothing.
    let again = agent.apply_pulled(vec![(3, b)], 3).unwrap();
    assert_eq!((again.stored, again.skipped), (0, 1));
    assert_eq!(agent.log().pull_cursor().unwrap(), 3);
    let pulled = agent.log().pulled_events(0, 10).unwrap();
    assert_eq!(pulled.len(), 2);
    assert_eq!(pulled[0].1, a);
    // Own seqs are untouched by pulled events.
    assert_eq!(agent.log().head_seq(), 1);
}

#[test]
fn another_hub_log_moves_pulled_events_out_of_its_positions_and_pulls_again() {
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    let colleague = Uuid::new_v4();
    let a = colleague_event(colleague, 1, STATION, activity(7));
    let b = colleague_event(colleague, 2, STATION, activity(8));
    agent
        .apply_pulled(vec![(1, a.clone()), (2, b.clone())], 2)
        .unwrap();
    let log = agent.log();
    assert_eq!(log.follow_hub_log(&[1; 16]).unwrap(), HubLogChange::Adopted);
    assert_eq!(log.follow_hub_log(&[1; 16]).unwrap(), HubLogChange::Same);
    assert_eq!(
        log.pull_cursor().unwrap(),
        2,
        "the first log named is adopted"
    );
    let views = log.views_snapshot().unwrap();

    // The hub's log is replaced: what was pulled moves out of the way and
    // the stream is pulled again from the start.
    assert_eq!(
        log.follow_hub_log(&[2; 16]).unwrap(),
        HubLogChange::Replaced { moved: 2 }
    );
    assert_eq!(log.pull_cursor().unwrap(), 0);
    assert_eq!(log.views_snapshot().unwrap(), views, "views are unchanged");
    // Position 1 of the new log holds another event: both are kept, and an
    // event pulled again is not stored twice.
    let c = colleague_event(colleague, 3, STATION, activity(9));
    let applied = agent
        .apply_pulled(vec![(1, c.clone()), (2, a.clone())], 2)
        .unwrap();
    assert_eq!((applied.stored, applied.skipped), (1, 1));
    for event in [&a, &b, &c] {
        let id = Uuid::from_slice(&event.event_id).unwrap();
        assert_eq!(log.event(id).unwrap().as_ref(), Some(event));
    }
    assert_eq!(log.pulled_events(0, 10).unwrap().len(), 3);
    // The views derived again from the events are the ones kept.
    let kept = log.views_snapshot().unwrap();
    log.rebuild_views().unwrap();
    assert_eq!(log.views_snapshot().unwrap(), kept);
    // A second replacement moves them past the first ones.
    assert_eq!(
        log.follow_hub_log(&[3; 16]).unwrap(),
        HubLogChange::Replaced { moved: 1 }
    );
    assert_eq!(log.pulled_events(0, 10).unwrap().len(), 3);
}

#[test]
fn a_pulled_page_with_another_stations_event_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    let colleague = Uuid::new_v4();
    let ok = colleague_event(colleague, 1, STATION, activity(7));
    let foreign = colleague_event(colleague, 2, "540502101", activity(8));
    let err = agent
        .apply_pulled(vec![(1, ok), (2, foreign)], 2)
        .unwrap_err();
    assert!(matches!(
        err,
        AgentError::Store(StoreError::BadPulledEvent(_))
    ));
    assert_eq!(agent.log().pull_cursor().unwrap(), 0);
    assert!(agent.log().pulled_events(0, 10).unwrap().is_empty());
}

#[derive(Debug, Clone)]
enum Op {
    Append,
    AppendWithId,
    ReAppend(usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Append),
        2 => Just(Op::AppendWithId),
        2 => any::<usize>().prop_map(Op::ReAppend),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The real log against a `Vec` of event ids under random appends,
    /// idempotent re-appends and reopens.
    #[test]
    fn log_matches_a_vec_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut agent = Some(init(dir.path()));
        let mut model: Vec<Uuid> = Vec::new();
        for op in ops {
            let a = agent.as_ref().unwrap();
            match op {
                Op::Append => {
                    let r = a.record(activity(2)).unwrap();
                    model.push(r.event_id);
                    prop_assert_eq!(r.origin_seq, model.len() as u64);
                }
                Op::AppendWithId => {
                    let id = Uuid::now_v7();
                    let r = a.record_with(Some(id), activity(2), today(), 5).unwrap();
                    model.push(id);
                    prop_assert_eq!(r.origin_seq, model.len() as u64);
                    prop_assert!(!r.duplicate);
                }
                Op::ReAppend(i) => {
                    if model.is_empty() { continue; }
                    let i = i % model.len();
                    let r = a.record_with(Some(model[i]), activity(2), today(), 5).unwrap();
                    prop_assert!(r.duplicate);
                    prop_assert_eq!(r.origin_seq, i as u64 + 1);
                }
                Op::Reopen => {
                    drop(agent.take());
                    agent = Some(Agent::open(dir.path(), OpenOptions::default()).unwrap());
                    let ids: Vec<Uuid> = own_ids(agent.as_ref().unwrap()).into_iter().map(|(_, id)| id).collect();
                    prop_assert_eq!(&ids, &model);
                }
            }
        }
        let a = agent.as_ref().unwrap();
        let stored = own_ids(a);
        prop_assert_eq!(stored.iter().map(|(_, id)| *id).collect::<Vec<_>>(), model.clone());
        prop_assert!(stored.iter().enumerate().all(|(i, (seq, _))| *seq == i as u64 + 1));
        prop_assert_eq!(a.log().head_seq(), model.len() as u64);
    }
}

#[test]
fn a_store_in_use_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    agent.record(activity(2)).unwrap();
    let err = Agent::open(dir.path(), OpenOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    // The open store goes on working, and reopens once closed.
    agent.record(activity(3)).unwrap();
    drop(agent);
    let agent = Agent::open(dir.path(), OpenOptions::default()).unwrap();
    assert_eq!(agent.log().head_seq(), 2);
}
