//! Local views through the engine: cases with tier and next due date, due and
//! overdue follow-ups, voids that disappear as if never recorded, events of
//! colleagues that arrive out of order, and rebuilds that change nothing.

use chrono::NaiveDate;
use station_agent::views::{CaseStatus, TierIntervals};
use station_agent::{Agent, AgentError, OpenOptions};
use station_proto::ids::Uuid;
use station_proto::v1::{
    CaseAssessed, CaseClosed, CaseOpened, CaseReopened, CaseSource, Category, EventVoided, Gender,
    Tier, VisitKind, VisitRecorded,
};
use station_proto::{Body, Event};

use crate::fixtures::today;

fn init(dir: &std::path::Path) -> Agent {
    crate::fixtures::init_device(dir, "w01")
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// A distinct person for each opening of a test run: 一人一档 refuses a
/// second open file for one ID number.
fn fresh_id_number() -> String {
    static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 500;
    station_proto::id_number::with_check_character(&format!("11010519491231{:03}", serial * 2))
        .unwrap()
}

fn opened(name: &str, tier: Tier, on: &str) -> Body {
    Body::CaseOpened(CaseOpened {
        name: name.into(),
        id_number: fresh_id_number(),
        gender: Gender::Female as i32,
        birth_date: "1949-12-31".into(),
        community_code: "540502001001".into(),
        address: "泽当镇 རྩེད་ཐང".into(),
        phone: String::new(),
        language: "bo".into(),
        categories: vec![Category::Elderly as i32, Category::Dibao as i32],
        tier: tier as i32,
        source: CaseSource::Outreach as i32,
        opened_on: on.into(),
        file_number: String::new(),
        duplicate_reason: String::new(),
        duplicate_of_stations: Vec::new(),
    })
}

fn visit(case: Uuid, on: &str) -> Body {
    Body::VisitRecorded(VisitRecorded {
        case_id: case.as_bytes().to_vec(),
        visit_date: on.into(),
        kind: VisitKind::Home as i32,
        duration_minutes: 40,
        notes: "家中取暖不足".into(),
        needs_found: vec!["取暖".into()],
    })
}

fn void(event: Uuid) -> Body {
    Body::EventVoided(EventVoided {
        voided_event_id: event.as_bytes().to_vec(),
        reason: "录入错误".into(),
    })
}

fn record(agent: &Agent, body: Body) -> Uuid {
    agent.record_with(None, body, today(), 0).unwrap().event_id
}

#[test]
fn a_case_shows_tier_last_visit_and_next_due_date() {
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    let name = "次仁卓玛 ཚེ་རིང་སྒྲོལ་མ";
    let case = record(&agent, opened(name, Tier::HighRisk, "2026-11-01"));
    record(&agent, visit(case, "2026-11-10"));
    record(&agent, visit(case, "2026-11-05"));
    let view = agent.case(case).unwrap().unwrap();
    assert_eq!(view.name, name, "Tibetan text round-trips unchanged");
    assert_eq!(view.tier, Tier::HighRisk as i32);
    assert_eq!(view.last_visit, Some(day("2026-11-10")));
    assert_eq!(view.visits, 2);
    assert_eq!(
        view.categories,
        vec![Category::Dibao as i32, Category::Elderly as i32]
    );
    let intervals = TierIntervals::default();
    assert_eq!(view.next_due(&intervals), Some(day("2026-11-17")));

    let due = agent.due_follow_ups(today(), 0).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].days_overdue, 13);
    assert!(due[0].is_overdue());

    // A tier change moves the due date; intervals are configuration.
    record(
        &agent,
        Body::CaseAssessed(CaseAssessed {
            case_id: case.as_bytes().to_vec(),
            tier: Tier::General as i32,
            reason: "情况稳定".into(),
            last_seen_event_id: Vec::new(),
            assessed_on: "2026-11-20".into(),
        }),
    );
    assert_eq!(
        agent.case(case).unwrap().unwrap().next_due(&intervals),
        Some(day("2027-02-08"))
    );
    assert!(agent.due_follow_ups(today(), 30).unwrap().is_empty());
    let custom = TierIntervals {
        general_days: 10,
        ..TierIntervals::default()
    };
    let agent = agent.with_intervals(custom);
    assert_eq!(
        agent.due_follow_ups(today(), 0).unwrap()[0].days_overdue,
        10
    );
}

#[test]
fn the_assessment_carries_the_last_event_the_author_saw() {
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    let case = record(&agent, opened("扎西", Tier::Key, "2026-11-01"));
    let v = record(&agent, visit(case, "2026-11-02"));
    let assessed = record(
        &agent,
        Body::CaseAssessed(CaseAssessed {
            case_id: case.as_bytes().to_vec(),
            tier: Tier::HighRisk as i32,
            reason: "独居，行动不便".into(),
            last_seen_event_id: Vec::new(),
            assessed_on: "2026-11-03".into(),
        }),
    );
    let event = agent.log().event(assessed).unwrap().unwrap();
    let Some(Body::CaseAssessed(m)) = event.body else {
        panic!("not an assessment")
    };
    assert_eq!(m.last_seen_event_id, v.as_bytes().to_vec());
}

#[test]
fn voided_events_disappear_from_every_view() {
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    let case = record(&agent, opened("格桑", Tier::Key, "2026-11-01"));
    record(&agent, visit(case, "2026-11-03"));
    let wrong = record(&agent, visit(case, "2026-11-20"));
    assert_eq!(
        agent.case(case).unwrap().unwrap().last_visit,
        Some(day("2026-11-20"))
    );
    record(&agent, void(wrong));
    let view = agent.case(case).unwrap().unwrap();
    assert_eq!(view.last_visit, Some(day("2026-11-03")));
    assert_eq!(view.visits, 1);
    assert_eq!(agent.case_timeline(case).unwrap().len(), 2);

    // Voiding twice, voiding a void, voiding the unknown: refused, nothing written.
    let head = agent.log().head_seq();
    assert!(matches!(
        agent.record(void(wrong)),
        Err(AgentError::AlreadyVoided(_))
    ));
    assert!(matches!(
        agent.record(void(Uuid::now_v7())),
        Err(AgentError::UnknownEvent(_))
    ));
    assert_eq!(agent.log().head_seq(), head);

    // Voiding the opening removes the case altogether.
    record(&agent, void(case));
    assert!(agent.case(case).unwrap().is_none());
    assert!(agent.cases().unwrap().is_empty());
    assert!(matches!(
        agent.record(visit(case, "2026-11-25")),
        Err(AgentError::UnknownCase { .. })
    ));
}

#[test]
fn closed_cases_are_not_due_and_reopening_restarts_the_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    let case = record(&agent, opened("卓嘎", Tier::HighRisk, "2026-10-01"));
    record(
        &agent,
        Body::CaseClosed(CaseClosed {
            case_id: case.as_bytes().to_vec(),
            reason: "迁出".into(),
            closed_on: "2026-10-05".into(),
        }),
    );
    assert_eq!(
        agent.case(case).unwrap().unwrap().status,
        CaseStatus::Closed
    );
    assert!(agent.due_follow_ups(today(), 0).unwrap().is_empty());
    assert!(matches!(
        agent.record(visit(case, "2026-11-01")),
        Err(AgentError::CaseClosed { .. })
    ));
    record(
        &agent,
        Body::CaseReopened(CaseReopened {
            case_id: case.as_bytes().to_vec(),
            reason: "迁回".into(),
            reopened_on: "2026-11-28".into(),
            tier: Tier::Key as i32,
        }),
    );
    let view = agent.case(case).unwrap().unwrap();
    assert_eq!(view.status, CaseStatus::Open);
    assert_eq!(view.tier, Tier::Key as i32);
    assert_eq!(
        view.next_due(&TierIntervals::default()),
        Some(day("2026-12-28"))
    );
}

fn as_colleague(mut event: Event, origin: Uuid, seq: u64) -> Event {
    event.origin_id = origin.as_bytes().to_vec();
    event.origin_seq = seq;
    event
}

#[test]
fn colleagues_events_give_the_same_views_in_any_arrival_order() {
    // A colleague's device records a case, two visits and a void.
    let source_dir = tempfile::tempdir().unwrap();
    let source = init(source_dir.path());
    let case = record(&source, opened("达瓦", Tier::Key, "2026-11-01"));
    record(&source, visit(case, "2026-11-04"));
    let v2 = record(&source, visit(case, "2026-11-09"));
    record(&source, void(v2));
    let events: Vec<(u64, Event)> = source
        .own_events(0, usize::MAX)
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, e))
        .collect();
    let colleague = Uuid::new_v4();

    let forward_dir = tempfile::tempdir().unwrap();
    let forward = init(forward_dir.path());
    for (pos, event) in &events {
        forward
            .apply_pulled(
                vec![(*pos, as_colleague(event.clone(), colleague, *pos))],
                *pos,
            )
            .unwrap();
    }

    // The same events arriving backwards: void first, visits before the case.
    let backward_dir = tempfile::tempdir().unwrap();
    let backward = init(backward_dir.path());
    for (pos, event) in events.iter().rev() {
        // The case is unknown until its opening, which arrives last.
        assert!(backward.case(case).unwrap().is_none());
        backward
            .apply_pulled(
                vec![(*pos, as_colleague(event.clone(), colleague, *pos))],
                *pos,
            )
            .unwrap();
    }

    let expected = source.case(case).unwrap().unwrap();
    assert_eq!(forward.case(case).unwrap().unwrap(), expected);
    assert_eq!(backward.case(case).unwrap().unwrap(), expected);
    assert_eq!(expected.last_visit, Some(day("2026-11-04")));

    // The colleague's case can be visited from this device.
    record(&forward, visit(case, "2026-11-29"));
    assert_eq!(
        forward.case(case).unwrap().unwrap().last_visit,
        Some(day("2026-11-29"))
    );
}

#[test]
fn rebuilding_the_views_from_the_log_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    for n in 0..5 {
        let case = record(&agent, opened(&format!("户主{n}"), Tier::Key, "2026-11-01"));
        let v = record(&agent, visit(case, "2026-11-10"));
        if n % 2 == 0 {
            record(&agent, void(v));
        }
    }
    let before = agent.log().views_snapshot().unwrap();
    assert!(!before.is_empty());
    assert_eq!(agent.rebuild_views().unwrap(), 13);
    assert_eq!(agent.log().views_snapshot().unwrap(), before);
    drop(agent);
    let agent = Agent::open(dir.path(), OpenOptions::default()).unwrap();
    assert_eq!(agent.log().views_snapshot().unwrap(), before);
    assert_eq!(agent.cases().unwrap().len(), 5);
}

/// An opening of the person with `id_number` (born 1949-12-31, female).
fn opened_for(id_number: &str, on: &str) -> Body {
    let mut body = opened("央金 དབྱངས་ཅན", Tier::Key, on);
    if let Body::CaseOpened(m) = &mut body {
        m.id_number = id_number.into();
    }
    body
}

fn closed(case: Uuid, on: &str) -> Body {
    Body::CaseClosed(CaseClosed {
        case_id: case.as_bytes().to_vec(),
        reason: "迁出".into(),
        closed_on: on.into(),
    })
}

fn reopened(case: Uuid, on: &str) -> Body {
    Body::CaseReopened(CaseReopened {
        case_id: case.as_bytes().to_vec(),
        reason: "迁回".into(),
        reopened_on: on.into(),
        tier: Tier::Key as i32,
    })
}

const PERSON: &str = "11010519491231002X";

#[test]
fn a_station_holds_one_open_file_per_person() {
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    let first = record(&agent, opened_for(PERSON, "2026-11-01"));
    let head = agent.log().head_seq();

    // The same number typed with a lower-case x and spaces is the same person.
    let refused = agent
        .record(opened_for(" 11010519491231002x ", "2026-11-02"))
        .unwrap_err();
    match &refused {
        AgentError::PersonHasOpenFile { field, case_id } => {
            assert_eq!(field, "case_opened.id_number");
            assert_eq!(*case_id, first);
        }
        other => panic!("{other:?}"),
    }
    let message = refused.to_string();
    assert!(message.contains(&first.to_string()), "{message}");
    assert!(!message.contains("11010519491231"), "{message}");
    assert_eq!(agent.log().head_seq(), head, "a refusal records nothing");
    assert_eq!(agent.cases().unwrap().len(), 1);

    // Another person is not refused.
    let other = record(&agent, opened("扎西", Tier::Key, "2026-11-02"));

    // Once the file is closed the person may get a new one; the old file
    // cannot be reopened while the new one is open, and can once it closes.
    record(&agent, closed(first, "2026-11-03"));
    let second = record(&agent, opened_for(PERSON, "2026-11-04"));
    match agent.record(reopened(first, "2026-11-05")) {
        Err(AgentError::PersonHasOpenFile { field, case_id }) => {
            assert_eq!(field, "case_reopened.case_id");
            assert_eq!(case_id, second);
        }
        other => panic!("{other:?}"),
    }
    record(&agent, closed(second, "2026-11-06"));
    record(&agent, reopened(first, "2026-11-07"));
    assert!(matches!(
        agent.record(opened_for(PERSON, "2026-11-08")),
        Err(AgentError::PersonHasOpenFile { case_id, .. }) if case_id == first
    ));

    // A void of the opening frees the person, as if it had never been made.
    record(&agent, void(first));
    assert!(agent.case(first).unwrap().is_none());
    let third = record(&agent, opened_for(PERSON, "2026-11-09"));
    assert!(agent.case(other).unwrap().is_some());

    // The index is a view: a rebuild and a reopen give the same bytes.
    let before = agent.log().views_snapshot().unwrap();
    agent.rebuild_views().unwrap();
    assert_eq!(agent.log().views_snapshot().unwrap(), before);
    drop(agent);
    let agent = Agent::open(dir.path(), OpenOptions::default()).unwrap();
    assert!(matches!(
        agent.record(opened_for(PERSON, "2026-11-10")),
        Err(AgentError::PersonHasOpenFile { case_id, .. }) if case_id == third
    ));
}

#[test]
fn a_colleagues_open_file_for_the_person_is_refused_too() {
    let colleague_dir = tempfile::tempdir().unwrap();
    let colleague = init(colleague_dir.path());
    let theirs = record(&colleague, opened_for(PERSON, "2026-11-01"));
    let pulled: Vec<(u64, Event)> = colleague
        .own_events(0, usize::MAX)
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, e))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    agent.apply_pulled(pulled, 1).unwrap();
    match agent.record(opened_for(PERSON, "2026-11-02")) {
        Err(AgentError::PersonHasOpenFile { case_id, .. }) => assert_eq!(case_id, theirs),
        other => panic!("{other:?}"),
    }
    // Adding to the colleague's file is what the worker does instead.
    record(&agent, visit(theirs, "2026-11-03"));
}

#[test]
fn saves_at_once_for_one_person_open_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    // Several people, each saved by eight threads released together.
    for serial in 100..120u32 {
        let person = station_proto::id_number::with_check_character(&format!(
            "11010519491231{:03}",
            serial * 2
        ))
        .unwrap();
        let start = std::sync::Barrier::new(8);
        let outcomes: Vec<Result<Uuid, AgentError>> = std::thread::scope(|scope| {
            let saves: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        agent
                            .record_with(None, opened_for(&person, "2026-11-01"), today(), 0)
                            .map(|r| r.event_id)
                    })
                })
                .collect();
            saves.into_iter().map(|s| s.join().unwrap()).collect()
        });
        let opened: Vec<Uuid> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok().copied())
            .collect();
        assert_eq!(opened.len(), 1, "{outcomes:?}");
        for outcome in &outcomes {
            if let Err(e) = outcome {
                assert!(
                    matches!(e, AgentError::PersonHasOpenFile { case_id, .. } if *case_id == opened[0]),
                    "{e}"
                );
            }
        }
    }
    assert_eq!(agent.cases().unwrap().len(), 20);
}

#[test]
fn a_store_made_before_the_person_index_gets_it_at_its_first_open() {
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    let first = record(&agent, opened_for(PERSON, "2026-11-01"));
    drop(agent);
    // As a store written before the index: no `n:` key, no marker.
    {
        // Waits for sled's lock, which the closed store's threads may still hold.
        let db = station_agent::durable::open_sled(&sled::Config::new().path(dir.path())).unwrap();
        let tree = db.open_tree("station").unwrap();
        let index: Vec<_> = tree.scan_prefix(b"n:").keys().map(|k| k.unwrap()).collect();
        // One open file: the tag of its ID number and its weak tag.
        assert_eq!(index.len(), 2, "one open file indexed");
        for k in index {
            tree.remove(k).unwrap();
        }
        tree.remove(b"m:person_index").unwrap();
        db.flush().unwrap();
    }
    let agent = Agent::open(dir.path(), OpenOptions::default()).unwrap();
    match agent.record(opened_for(PERSON, "2026-11-02")) {
        Err(AgentError::PersonHasOpenFile { case_id, .. }) => assert_eq!(case_id, first),
        other => panic!("{other:?}"),
    }
}

#[test]
fn each_device_numbers_its_files_by_year_without_asking_its_colleagues() {
    let colleague_dir = tempfile::tempdir().unwrap();
    let colleague = init(colleague_dir.path());
    let theirs = record(&colleague, opened("达瓦", Tier::Key, "2026-11-01"));
    let their_number = colleague.case(theirs).unwrap().unwrap().file_number;

    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    let pulled: Vec<(u64, Event)> = colleague
        .own_events(0, usize::MAX)
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, e))
        .collect();
    agent.apply_pulled(pulled, 1).unwrap();
    let code = station_proto::file_number::device_code(agent.identity().origin_id);
    let number = |case: Uuid| agent.case(case).unwrap().unwrap().file_number;
    let first = record(&agent, opened("扎西", Tier::Key, "2026-11-02"));
    let second = record(&agent, opened("尼玛", Tier::Key, "2026-11-03"));
    let next_year = record(&agent, opened("格桑", Tier::Key, "2025-12-31"));
    assert_eq!(number(first), format!("泽当-2026-{code}-0001"));
    assert_eq!(number(second), format!("泽当-2026-{code}-0002"));
    assert_eq!(number(next_year), format!("泽当-2025-{code}-0001"));
    // The colleague's file keeps the number its device gave it.
    assert_eq!(number(theirs), their_number);
    assert!(their_number.starts_with("泽当-2026-") && their_number.ends_with("-0001"));
    // A voided opening counts as never made: its number is given again.
    record(&agent, void(second));
    let third = record(&agent, opened("卓嘎", Tier::Key, "2026-11-04"));
    assert_eq!(number(third), format!("泽当-2026-{code}-0002"));
    assert_eq!(agent.resolve_case("case", &number(first)).unwrap(), first);
}

fn merged(survivor: Uuid, absorbed: Uuid, on: &str) -> Body {
    Body::CasesMerged(station_proto::v1::CasesMerged {
        survivor_case_id: survivor.as_bytes().to_vec(),
        absorbed_case_id: absorbed.as_bytes().to_vec(),
        reason: "两部手机离线各建一档".into(),
        merged_on: on.into(),
    })
}

#[test]
fn a_merge_joins_two_files_of_one_person_and_its_void_parts_them_again() {
    let person = station_proto::id_number::with_check_character("54050219491231004").unwrap();
    // A colleague's phone and this one, both offline, open a file for one
    // person and visit it.
    let colleague_dir = tempfile::tempdir().unwrap();
    let colleague = init(colleague_dir.path());
    let theirs = record(&colleague, opened_for(&person, "2026-11-01"));
    record(&colleague, visit(theirs, "2026-11-05"));
    let dir = tempfile::tempdir().unwrap();
    let agent = init(dir.path());
    let mine = record(&agent, opened_for(&person, "2026-11-02"));
    record(&agent, visit(mine, "2026-11-08"));
    let pulled: Vec<(u64, Event)> = colleague
        .own_events(0, usize::MAX)
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, e)| (i as u64 + 1, as_colleague(e, Uuid::new_v4(), i as u64 + 1)))
        .collect();
    agent.apply_pulled(pulled, 2).unwrap();
    assert_eq!(agent.due_follow_ups(today(), 90).unwrap().len(), 2);

    // The worker merges their own file into the colleague's.
    let merge = record(&agent, merged(theirs, mine, "2026-11-10"));
    let survivor = agent.case(theirs).unwrap().unwrap();
    assert_eq!(survivor.status, CaseStatus::Open);
    assert_eq!((survivor.visits, survivor.merged_into), (2, None));
    assert_eq!(survivor.last_visit, Some(day("2026-11-08")));
    let absorbed = agent.case(mine).unwrap().unwrap();
    assert_eq!(absorbed.status, CaseStatus::Closed);
    assert_eq!(absorbed.merged_into, Some(theirs));
    let due = agent.due_follow_ups(today(), 90).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].case.case_id, theirs);
    // The survivor's timeline holds both files' entries and the merge.
    assert_eq!(agent.case_timeline(theirs).unwrap().len(), 5);

    // What the merge makes impossible is refused, and records nothing.
    let head = agent.log().head_seq();
    assert!(matches!(
        agent.record(visit(mine, "2026-11-11")),
        Err(AgentError::CaseClosed { case_id, .. }) if case_id == mine
    ));
    match agent.record(merged(mine, theirs, "2026-11-11")) {
        Err(AgentError::MergeRefused { field, case_id, .. }) => {
            assert_eq!(field, "cases_merged.survivor_case_id");
            assert_eq!(case_id, mine);
        }
        other => panic!("{other:?}"),
    }
    let other = record(&agent, opened("扎西", Tier::Key, "2026-11-11"));
    let head_after_other = agent.log().head_seq();
    assert_eq!(head_after_other, head + 1);
    match agent.record(merged(other, mine, "2026-11-11")) {
        Err(AgentError::MergeRefused { field, case_id, .. }) => {
            assert_eq!(field, "cases_merged.absorbed_case_id");
            assert_eq!(case_id, mine);
        }
        other => panic!("{other:?}"),
    }
    match agent.record(merged(other, theirs, "2026-11-11")) {
        Err(AgentError::MergeRefused {
            field,
            case_id,
            rule,
        }) => {
            assert_eq!(field, "cases_merged.absorbed_case_id");
            assert_eq!(case_id, theirs);
            assert!(rule.contains("merged into it"), "{rule}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        agent.record(merged(theirs, theirs, "2026-11-11")),
        Err(AgentError::Invalid(_))
    ));
    assert_eq!(agent.log().head_seq(), head_after_other);
    // The person's open file is the survivor.
    assert!(matches!(
        agent.record(opened_for(&person, "2026-11-12")),
        Err(AgentError::PersonHasOpenFile { case_id, .. }) if case_id == theirs
    ));

    // The views are a function of the log.
    let before = agent.log().views_snapshot().unwrap();
    agent.rebuild_views().unwrap();
    assert_eq!(agent.log().views_snapshot().unwrap(), before);

    // Voided, the merge never happened.
    record(&agent, void(merge));
    let survivor = agent.case(theirs).unwrap().unwrap();
    assert_eq!(survivor.visits, 1);
    let restored = agent.case(mine).unwrap().unwrap();
    assert_eq!(
        (restored.status, restored.merged_into),
        (CaseStatus::Open, None)
    );
    assert_eq!(agent.case_timeline(theirs).unwrap().len(), 2);
    // Both files of the person and the other person's file are followed.
    assert_eq!(agent.due_follow_ups(today(), 90).unwrap().len(), 3);
}
