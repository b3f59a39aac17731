//! The projections through the library: exact indicator numbers of a
//! hand-built scenario (voids, a visit before its case), caseload, overdue,
//! tier conflicts, resuming from the checkpoint, rebuild equal to
//! incremental, and the same tree for every interleaving of devices' streams.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::events::*;
use chrono::NaiveDate;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use station_hub::config::HubConfig;
use station_hub::projections::period::{Metric, Period};
use station_hub::projections::{IndicatorTable, KeyValue, Projections};
use station_hub::store::HubStore;
use station_proto::Body;
use station_proto::Event;
use station_proto::ids::Uuid;
use station_proto::v1::{
    AbsenceReason, CallOutcome, Category, GuardianCalled, Tier, VisitAttempted, VisitKind,
};

/// Hub clock of every push in these tests, so receive times do not depend on
/// when a test runs.
const RECEIVED_MS: i64 = EPOCH_MS + 400 * 86_400_000;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
}

fn open(dir: &std::path::Path) -> (Arc<HubStore>, Projections) {
    let store = Arc::new(HubStore::open(dir, 16 * 1024 * 1024).unwrap());
    let config = Arc::new(HubConfig::builtin().unwrap());
    let projections = Projections::open(Arc::clone(&store), config).unwrap();
    (store, projections)
}

fn push(store: &HubStore, events: &[Event]) {
    let outcome = store.push(events.to_vec(), today(), RECEIVED_MS).unwrap();
    assert_eq!(outcome.quarantined, 0, "{outcome:?}");
}

fn values(table: &IndicatorTable, station: &str) -> BTreeMap<&'static str, i64> {
    let row = table
        .rows
        .iter()
        .find(|r| r.station_code == station)
        .unwrap();
    row.values
        .iter()
        .map(|v| (v.metric.name(), v.raw))
        .collect()
}

fn indicators(p: &Projections, period: &str, station: &str) -> BTreeMap<&'static str, i64> {
    let table = p
        .indicators(period.parse().unwrap(), &[station.to_string()])
        .unwrap();
    values(&table, station)
}

fn expect(pairs: &[(&'static str, i64)]) -> BTreeMap<&'static str, i64> {
    let mut all: BTreeMap<&'static str, i64> = Metric::ALL.iter().map(|m| (m.name(), 0)).collect();
    for (k, v) in pairs {
        all.insert(k, *v);
    }
    all
}

#[test]
fn indicators_count_by_service_date_without_voided_events_and_with_held_visits() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path());
    let s = scenario();
    push(&store, &s.b);
    push(&store, &s.c);
    p.catch_up().unwrap();
    // Nothing of B's visit counts before its case arrives: it is held.
    assert_eq!(indicators(&p, "2025-03", ZEDANG), expect(&[]));
    let health = p.sync_health(&[ZEDANG.to_string()]).unwrap();
    assert_eq!(health.stations[0].held_events, 1);
    push(&store, &s.a);
    let done = p.catch_up().unwrap();
    assert_eq!(done.checkpoint, store.event_count());

    let march = expect(&[
        ("home_visits", 2),
        ("households_visited", 1),
        ("cases_open", 2),
        ("cases_new", 3),
        ("cases_closed", 1),
        ("group_sessions", 1),
        ("activities", 1),
        ("person_times", 38),
        ("volunteers", 5),
        ("volunteer_hours", 150),
        ("resources_yuan", 85_000),
        ("trainings", 1),
    ]);
    assert_eq!(indicators(&p, "2025-03", ZEDANG), march);
    assert_eq!(
        indicators(&p, "2025-04", ZEDANG),
        expect(&[
            ("home_visits", 1),
            ("households_visited", 1),
            ("cases_open", 2)
        ])
    );
    assert_eq!(indicators(&p, "2025-02", ZEDANG), expect(&[]));
    let mut q1 = march.clone();
    q1.insert("cases_open", 2);
    assert_eq!(indicators(&p, "2025-Q1", ZEDANG), q1);
    let mut year = march;
    year.insert("home_visits", 3);
    assert_eq!(indicators(&p, "2025", ZEDANG), year);
    assert_eq!(
        indicators(&p, "2025-03", CHANGZHU),
        expect(&[
            ("activities", 1),
            ("person_times", 12),
            ("volunteers", 1),
            ("volunteer_hours", 30)
        ])
    );

    let table = p
        .indicators(
            "2025-03".parse().unwrap(),
            &[ZEDANG.to_string(), CHANGZHU.to_string()],
        )
        .unwrap();
    assert_eq!(table.computed_through_hub_seq, store.event_count());
    let zedang = &table.rows[0];
    assert_eq!(zedang.station_name, "泽当街道");
    assert_eq!(zedang.station_name_bo.as_deref(), Some("རྩེད་ཐང"));
    let value = |row: &station_hub::projections::IndicatorRow, m: Metric| {
        row.values.iter().find(|v| v.metric == m).unwrap().clone()
    };
    let hours = value(zedang, Metric::VolunteerHours);
    assert_eq!((hours.value, hours.raw_unit), (2.5, "minute"));
    assert_eq!(value(zedang, Metric::ResourcesYuan).value, 850.0);
    // Targets: the street station's own, the township's half of it rounded up.
    let street = value(zedang, Metric::HomeVisits).target.unwrap();
    assert_eq!(
        value(&table.rows[1], Metric::HomeVisits).target,
        Some((street + 1) / 2)
    );

    let health = p.sync_health(&[ZEDANG.to_string()]).unwrap();
    let zd = &health.stations[0];
    assert_eq!((zd.held_events, zd.voided_events, zd.devices), (1, 3, 2));
    assert_eq!(zd.events_logged, (s.a.len() + s.b.len()) as u64);

    // Caseload: case 1 (two categories) and case 2 are open; 3 is closed and
    // 4 was voided.
    let caseload = p.caseload(&[ZEDANG.to_string()]).unwrap();
    let total = &caseload.stations[0];
    assert_eq!(
        (total.open_cases, total.high_risk, total.key, total.general),
        (2, 1, 1, 0)
    );
    let cells: Vec<(String, i32, i32, u32)> = caseload
        .cells
        .iter()
        .map(|c| (c.community_code.clone(), c.tier, c.category, c.open_cases))
        .collect();
    assert_eq!(
        cells,
        vec![
            (C1.to_string(), Tier::Key as i32, Category::Dibao as i32, 1),
            (
                C1.to_string(),
                Tier::Key as i32,
                Category::Elderly as i32,
                1
            ),
            (
                C2.to_string(),
                Tier::HighRisk as i32,
                Category::Orphan as i32,
                1
            ),
        ]
    );
    assert!(caseload.cells[0].community_name.contains("第一社区"));

    // Overdue: case 2 (7 days, its only visit voided) since 2025-03-22;
    // case 1 (30 days after its 04-02 follow-up) from 2025-05-03.
    let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let overdue = p
        .overdue(date("2025-04-20"), &[ZEDANG.to_string()], None)
        .unwrap();
    let rows: Vec<(Uuid, i64)> = overdue
        .cases
        .iter()
        .map(|c| (c.case_id, c.days_overdue))
        .collect();
    assert_eq!(rows, vec![(s.case2, 29)]);
    let overdue = p
        .overdue(date("2025-05-10"), &[ZEDANG.to_string()], None)
        .unwrap();
    let rows: Vec<(Uuid, i64)> = overdue
        .cases
        .iter()
        .map(|c| (c.case_id, c.days_overdue))
        .collect();
    assert_eq!(rows, vec![(s.case2, 49), (s.case1, 8)]);
    assert_eq!(overdue.cases[1].last_visit, Some(date("2025-04-02")));
    let json = serde_json::to_string(&overdue).unwrap();
    assert!(!json.contains("19500101"), "an ID number leaked: {json}");

    // The timeline of case 2 lists its voided visit, flagged, and the void.
    let timeline = p.case_timeline(s.case2).unwrap();
    assert!(timeline.opened);
    assert_eq!(timeline.entries.len(), 3);
    assert!(timeline.entries[1].voided);
    assert_eq!(
        timeline.entries[1].voided_by,
        Some(timeline.entries[2].event_id)
    );
}

#[test]
fn guardian_calls_count_apart_from_visits_and_do_not_stand_for_a_follow_up() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path());
    let mut opener = Device::new(ZEDANG, "sw-1");
    let mut caller = Device::new(ZEDANG, "sw-2");
    let opening = opener.record(opened(
        "拉姆",
        41,
        C1,
        Tier::HighRisk,
        &[Category::LeftBehindChild],
        "2025-03-01",
    ));
    let case = id_of(&opening);
    let call = |on: &str, outcome: CallOutcome, minutes: i32| {
        Body::GuardianCalled(GuardianCalled {
            case_id: case.as_bytes().to_vec(),
            called_on: on.into(),
            outcome: outcome as i32,
            duration_minutes: minutes,
            notes: String::new(),
        })
    };
    let reached = caller.record_after(opening.hlc, call("2025-03-05", CallOutcome::Reached, 10));
    let missed = caller.record(call("2025-03-06", CallOutcome::NoAnswer, 0));
    let mistaken = caller.record(call("2025-03-07", CallOutcome::Reached, 3));
    let correction = caller.record(void(id_of(&mistaken)));
    // The calls arrive before the case they are about: held, then counted.
    push(&store, &[reached, missed, mistaken, correction]);
    p.catch_up().unwrap();
    assert_eq!(indicators(&p, "2025-03", ZEDANG), expect(&[]));
    push(&store, &[opening]);
    p.catch_up().unwrap();
    assert_eq!(
        indicators(&p, "2025-03", ZEDANG),
        expect(&[("guardian_calls", 2), ("cases_new", 1), ("cases_open", 1)])
    );

    // Calls are not visits: the high-risk case fell due a week after it opened.
    let day = NaiveDate::from_ymd_opt(2025, 3, 20).unwrap();
    let overdue = p.overdue(day, &[ZEDANG.to_string()], None).unwrap();
    assert_eq!(overdue.cases.len(), 1);
    assert_eq!(overdue.cases[0].case_id, case);
    assert_eq!(overdue.cases[0].last_visit, None);
    assert_eq!(overdue.cases[0].days_overdue, 12);

    // The case's timeline holds the calls, the mistaken one voided.
    let timeline = p.case_timeline(case).unwrap();
    assert_eq!(timeline.entries.len(), 5);
    assert_eq!(
        timeline.entries.iter().filter(|e| e.voided).count(),
        1,
        "{timeline:?}"
    );
}

#[test]
fn visits_that_found_nobody_count_apart_and_do_not_stand_for_a_follow_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut opener = Device::new(ZEDANG, "sw-1");
    let mut visitor = Device::new(ZEDANG, "sw-2");
    let opening = opener.record(opened(
        "央金",
        42,
        C1,
        Tier::HighRisk,
        &[Category::Elderly],
        "2025-03-01",
    ));
    let case = id_of(&opening);
    let attempt = |on: &str, reason: AbsenceReason| {
        Body::VisitAttempted(VisitAttempted {
            case_id: case.as_bytes().to_vec(),
            attempted_on: on.into(),
            reason: reason as i32,
            notes: String::new(),
        })
    };
    let away = visitor.record_after(opening.hlc, attempt("2025-03-05", AbsenceReason::Away));
    let locked = visitor.record(attempt("2025-03-06", AbsenceReason::NobodyHome));
    let mistaken = visitor.record(attempt("2025-04-02", AbsenceReason::Other));
    let correction = visitor.record(void(id_of(&mistaken)));
    let seen = visitor.record(visit(case, "2025-04-03", VisitKind::Home));
    {
        let (store, p) = open(dir.path());
        // The attempts arrive before the case they are about: held, then counted.
        push(&store, &[away, locked, mistaken, correction]);
        p.catch_up().unwrap();
        assert_eq!(indicators(&p, "2025-03", ZEDANG), expect(&[]));
        push(&store, &[opening]);
        p.catch_up().unwrap();
        assert_eq!(
            indicators(&p, "2025-03", ZEDANG),
            expect(&[("visit_attempts", 2), ("cases_new", 1), ("cases_open", 1)])
        );

        // Nobody was seen: the high-risk case fell due a week after it opened.
        let day = NaiveDate::from_ymd_opt(2025, 3, 20).unwrap();
        let overdue = p.overdue(day, &[ZEDANG.to_string()], None).unwrap();
        assert_eq!(overdue.cases.len(), 1);
        assert_eq!(overdue.cases[0].case_id, case);
        assert_eq!(overdue.cases[0].last_visit, None);
        assert_eq!(overdue.cases[0].days_overdue, 12);

        let timeline = p.case_timeline(case).unwrap();
        assert_eq!(timeline.entries.len(), 5);
        assert_eq!(timeline.entries.iter().filter(|e| e.voided).count(), 1);
        drop(p);
        store.sync().unwrap();
    }
    // Read back after a restart, the case's attempts still count; a visit
    // that found the person counts as a home visit, not as an attempt.
    let (store, p) = open(dir.path());
    push(&store, &[seen]);
    p.catch_up().unwrap();
    assert_eq!(
        indicators(&p, "2025-04", ZEDANG),
        expect(&[
            ("home_visits", 1),
            ("households_visited", 1),
            ("cases_open", 1)
        ])
    );
    assert_eq!(
        indicators(&p, "2025-03", ZEDANG),
        expect(&[("visit_attempts", 2), ("cases_new", 1), ("cases_open", 1)])
    );
    let incremental = p.dump().unwrap();
    p.rebuild().unwrap();
    assert_eq!(p.dump().unwrap(), incremental);
}

#[test]
fn concurrent_tier_changes_are_flagged_and_resolved_by_hlc() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path());
    let mut a = Device::new(ZEDANG, "zd-worker-1");
    let mut b = Device::new(ZEDANG, "zd-worker-2");
    let case = a.record(opened(
        "格桑",
        9,
        C1,
        Tier::General,
        &[Category::Elderly],
        "2025-05-01",
    ));
    let case_id = id_of(&case);
    let calm = a.record(opened(
        "白玛",
        10,
        C1,
        Tier::General,
        &[Category::Elderly],
        "2025-05-01",
    ));
    let calm_id = id_of(&calm);
    // Both saw only the opening, and disagree.
    let high = a.record(assessed(case_id, Tier::HighRisk, case_id, "2025-05-02"));
    let general_later = b.record_after(
        high.hlc,
        assessed(case_id, Tier::Key, case_id, "2025-05-02"),
    );
    // One after the other on the calm case: no conflict.
    let first = a.record(assessed(calm_id, Tier::Key, calm_id, "2025-05-02"));
    let second = b.record_after(
        first.hlc,
        assessed(calm_id, Tier::HighRisk, id_of(&first), "2025-05-03"),
    );
    push(&store, &[case, calm, high.clone(), first]);
    push(&store, &[general_later.clone(), second]);
    p.catch_up().unwrap();
    let found = p.conflicts(&[ZEDANG.to_string()]).unwrap();
    assert_eq!(found.conflicts.len(), 1, "{found:?}");
    let conflict = &found.conflicts[0];
    assert_eq!(conflict.case_id, case_id);
    let ids: Vec<Uuid> = conflict.assessments.iter().map(|a| a.event_id).collect();
    assert_eq!(ids, vec![id_of(&high), id_of(&general_later)]);
    assert_eq!(conflict.resolved_tier, Tier::Key as i32);
    assert_eq!(conflict.resolved_by_event_id, id_of(&general_later));
    let caseload = p.caseload(&[ZEDANG.to_string()]).unwrap();
    assert_eq!(
        (caseload.stations[0].key, caseload.stations[0].high_risk),
        (1, 1)
    );
    let health = p.sync_health(&[ZEDANG.to_string()]).unwrap();
    assert_eq!(health.stations[0].tier_conflicts, 1);
}

#[test]
fn a_restart_resumes_from_the_checkpoint_and_rebuild_gives_the_same_tree() {
    let dir = tempfile::tempdir().unwrap();
    let s = scenario();
    let first_count;
    {
        let (store, p) = open(dir.path());
        push(&store, &s.a);
        first_count = store.event_count();
        let done = p.catch_up().unwrap();
        assert_eq!(done.applied, first_count);
        assert_eq!(p.applied_since_open(), first_count);
        drop(p);
        store.sync().unwrap();
    }
    let (store, p) = open(dir.path());
    assert_eq!(p.checkpoint(), first_count);
    assert_eq!(p.catch_up().unwrap().applied, 0);
    assert_eq!(p.applied_since_open(), 0);
    push(&store, &s.b);
    push(&store, &s.c);
    // In small steps, as a projector following pushes would.
    while p.apply_next(u64::MAX, 3).unwrap().applied > 0 {}
    assert_eq!(p.applied_since_open(), store.event_count() - first_count);
    let incremental = p.dump().unwrap();
    let rebuilt = p.rebuild().unwrap();
    assert_eq!(rebuilt.applied, store.event_count());
    assert_eq!(p.dump().unwrap(), incremental);
}

/// Random field work of three devices (two of Zedang, one of Changzhu) that
/// refer to each other's events: visits and voids of events another device
/// recorded, concurrent assessments, closings and reopenings.
fn field_work(seed: u64, steps: usize) -> Vec<Vec<Event>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut devices = [
        Device::new(ZEDANG, "zd-1"),
        Device::new(ZEDANG, "zd-2"),
        Device::new(CHANGZHU, "cz-1"),
    ];
    let mut streams: Vec<Vec<Event>> = vec![Vec::new(); 3];
    let mut cases: Vec<(Uuid, &'static str)> = Vec::new();
    let mut known: Vec<(Uuid, u64)> = Vec::new();
    let mut serial = 0;
    for _ in 0..steps {
        let d = rng.random_range(0..3);
        let station = if d == 2 { CHANGZHU } else { ZEDANG };
        let community = if d == 2 { "540502101201" } else { C1 };
        let date = format!(
            "2025-{:02}-{:02}",
            rng.random_range(1..=12),
            rng.random_range(1..=28)
        );
        let seen = known.iter().map(|(_, hlc)| *hlc).max().unwrap_or(0);
        let own_cases: Vec<Uuid> = cases
            .iter()
            .filter(|c| c.1 == station)
            .map(|c| c.0)
            .collect();
        let pick = |rng: &mut StdRng, from: &[Uuid]| from[rng.random_range(0..from.len())];
        let tier = [Tier::HighRisk, Tier::Key, Tier::General][rng.random_range(0..3)];
        let body = match rng.random_range(0..14) {
            0 | 1 => {
                // Now and then a person opened before, as two offline
                // phones of one station do: a duplicate file.
                let person = if serial > 0 && rng.random_bool(0.3) {
                    rng.random_range(1..=serial)
                } else {
                    serial += 1;
                    serial
                };
                opened(
                    "卓嘎",
                    person,
                    community,
                    tier,
                    &[Category::Elderly, Category::Other],
                    &date,
                )
            }
            2..=4 if !own_cases.is_empty() => {
                // Own station's cases only: the hub quarantines an entry
                // naming another station's case (see the trust tests).
                let case = pick(&mut rng, &own_cases);
                let kind = [VisitKind::Home, VisitKind::Phone, VisitKind::FollowUp]
                    [rng.random_range(0..3)];
                visit(case, &date, kind)
            }
            5 if !own_cases.is_empty() => {
                let case = pick(&mut rng, &own_cases);
                assessed(case, tier, case, &date)
            }
            6 if !own_cases.is_empty() => closed(pick(&mut rng, &own_cases), &date),
            7 if !own_cases.is_empty() => reopened(pick(&mut rng, &own_cases), &date),
            8 => resource(
                own_cases.first().copied().filter(|_| rng.random_bool(0.5)),
                &date,
                1_234,
                100,
            ),
            9 => group_session(community, &date, rng.random_range(0..20)),
            10 if !known.is_empty() => void(known[rng.random_range(0..known.len())].0),
            // Merges and dismissals between the station's files, some of
            // them of one person, some chained or crossed.
            n @ (11 | 12) if own_cases.len() >= 2 => {
                let first = rng.random_range(0..own_cases.len());
                let other = (first + rng.random_range(1..own_cases.len())) % own_cases.len();
                let (one, two) = (own_cases[first], own_cases[other]);
                if n == 11 {
                    merged(one, two, &date)
                } else {
                    dismissed(one, two, &date)
                }
            }
            _ => activity(community, &date, rng.random_range(0..50), 2, 90),
        };
        let event = devices[d].record_after(seen, body);
        if let Some(station_proto::Body::CaseOpened(_)) = event.body {
            cases.push((id_of(&event), station));
        }
        known.push((id_of(&event), event.hlc));
        streams[d].push(event);
    }
    streams
}

/// Pushes the streams in the order `choices` draws devices (each device's
/// own order kept), applying the projections in steps of `steps` events,
/// and returns the tree.
fn project(streams: &[Vec<Event>], choices: &[usize], steps: &[usize]) -> Vec<KeyValue> {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path());
    let mut next = vec![0usize; streams.len()];
    let mut order = Vec::new();
    for &c in choices {
        let d = (0..streams.len())
            .map(|i| (c + i) % streams.len())
            .find(|&d| next[d] < streams[d].len());
        let Some(d) = d else { break };
        order.push(streams[d][next[d]].clone());
        next[d] += 1;
    }
    for d in 0..streams.len() {
        order.extend(streams[d][next[d]..].iter().cloned());
    }
    let mut step = steps.iter().copied().cycle();
    for event in order {
        push(&store, &[event]);
        let n = step.next().unwrap_or(1);
        if n > 0 {
            p.apply_next(u64::MAX, n).unwrap();
        }
    }
    p.catch_up().unwrap();
    p.dump().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_interleaving_of_the_devices_gives_the_same_projections(
        seed in any::<u64>(),
        choices in proptest::collection::vec(0usize..3, 60),
        steps in proptest::collection::vec(0usize..5, 1..8),
    ) {
        let streams = field_work(seed, 60);
        let sequential = project(&streams, &[], &[DEFAULT_STEP]);
        let interleaved = project(&streams, &choices, &steps);
        prop_assert!(sequential == interleaved, "projections differ for seed {seed}");
    }
}

const DEFAULT_STEP: usize = 1_000;

#[test]
fn a_period_that_is_not_a_month_quarter_or_year_is_refused() {
    for bad in ["2025-13", "2025-Q0", "25", "2025/03"] {
        assert!(bad.parse::<Period>().is_err(), "{bad}");
    }
}

#[test]
fn with_a_roster_events_of_other_stations_are_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let config = HubConfig::builtin().unwrap();
    let store = HubStore::open(dir.path(), 16 * 1024 * 1024)
        .unwrap()
        .with_roster(config.station_codes());
    let mut stranger = Device::new("540502999", "x");
    let mut zedang = Device::new(ZEDANG, "zd");
    let events = [
        stranger.record(activity("540502999001", "2025-03-01", 3, 0, 0)),
        zedang.record(activity(C1, "2025-03-01", 3, 0, 0)),
    ];
    let outcome = store.push(events.to_vec(), today(), RECEIVED_MS).unwrap();
    assert_eq!((outcome.stored, outcome.quarantined), (1, 1));
    let (_, held) = &store.quarantine().unwrap()[0];
    assert!(
        held.reason.contains("not in the hub's roster"),
        "{}",
        held.reason
    );
}

#[test]
fn overdue_on_a_past_date_judges_each_case_as_it_stood_then() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path());
    let mut a = Device::new(ZEDANG, "zd");
    let mut events = Vec::new();
    // A: high-risk, visited 01-05 and 02-20, closed 03-01.
    let opened_a = a.record(opened(
        "卓嘎",
        21,
        C1,
        Tier::HighRisk,
        &[Category::Elderly],
        "2025-01-01",
    ));
    let case_a = id_of(&opened_a);
    events.push(opened_a);
    events.push(a.record(visit(case_a, "2025-01-05", VisitKind::Home)));
    events.push(a.record(visit(case_a, "2025-02-20", VisitKind::Home)));
    events.push(a.record(closed(case_a, "2025-03-01")));
    // B: key, its only visit voided, raised to high-risk on 02-10.
    let opened_b = a.record(opened(
        "旺堆",
        22,
        C2,
        Tier::Key,
        &[Category::Orphan],
        "2025-01-10",
    ));
    let case_b = id_of(&opened_b);
    events.push(opened_b);
    let wrong = a.record(visit(case_b, "2025-01-15", VisitKind::Home));
    let wrong_id = id_of(&wrong);
    events.push(wrong);
    events.push(a.record(void(wrong_id)));
    let last = id_of(events.last().unwrap());
    events.push(a.record(assessed(case_b, Tier::HighRisk, last, "2025-02-10")));
    push(&store, &events);
    p.catch_up().unwrap();

    let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let on = |day: &str| -> Vec<(Uuid, i64, i32)> {
        let list = p.overdue(date(day), &[ZEDANG.to_string()], None).unwrap();
        assert_eq!(list.total, list.cases.len() as u64);
        list.cases
            .iter()
            .map(|c| (c.case_id, c.days_overdue, c.tier))
            .collect()
    };
    let high = Tier::HighRisk as i32;
    // A was due 01-12 after its 01-05 visit: it counts although it has been
    // visited and closed since. B, key then, was due 02-09.
    assert_eq!(on("2025-02-01"), vec![(case_a, 20, high)]);
    // The 02-20 visit covers A until 02-27; B is high-risk from 02-10, due a
    // week after its opening (its visit was voided).
    assert_eq!(on("2025-02-25"), vec![(case_b, 39, high)]);
    // Closed on 03-01, A is no longer followed up.
    assert_eq!(on("2025-03-10"), vec![(case_b, 52, high)]);
    // Before anything was opened, nothing.
    assert_eq!(on("2024-12-31"), vec![]);
    // Today the open cases' views answer, and agree: B alone.
    let today = station_hub::projections::today_in_china();
    let now = p.overdue(today, &[ZEDANG.to_string()], None).unwrap();
    assert_eq!(now.cases.len(), 1);
    assert_eq!(now.cases[0].case_id, case_b);
    assert_eq!(now.cases[0].due_on, date("2025-01-17"));
}

/// `opening` with `number` as its 档案编号, as its device gives it.
fn numbered(opening: Event, number: &str) -> Event {
    let mut body = opening.body.clone().unwrap();
    if let Body::CaseOpened(m) = &mut body {
        m.file_number = number.into();
    }
    Event {
        body: Some(body),
        ..opening
    }
}

#[test]
fn a_second_file_for_one_person_from_two_offline_phones_is_flagged_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path());
    let zedang = [ZEDANG.to_string()];
    let duplicates = |p: &Projections| p.sync_health(&zedang).unwrap().stations[0].duplicate_files;
    let tiers = |p: &Projections| {
        let caseload = p.caseload(&zedang).unwrap();
        let s = &caseload.stations[0];
        (s.open_cases, s.high_risk, s.key)
    };
    // Two phones of one station, both offline, open a file for one person.
    let mut a = Device::new(ZEDANG, "zd-worker-1");
    let mut b = Device::new(ZEDANG, "zd-worker-2");
    let first = a.record(opened(
        "次仁",
        77,
        C1,
        Tier::Key,
        &[Category::Elderly],
        "2025-05-02",
    ));
    let second = b.record(opened(
        "次仁 ཚེ་རིང",
        77,
        C1,
        Tier::HighRisk,
        &[Category::Elderly],
        "2025-05-03",
    ));
    let visit_second = b.record(visit(id_of(&second), "2025-05-04", VisitKind::Home));
    let (first, second) = (
        numbered(first, "泽当-2025-AB-0007"),
        numbered(second, "泽当-2025-CD-0001"),
    );

    // The later file arrives first: alone, it is the person's file.
    push(&store, &[second.clone(), visit_second]);
    p.catch_up().unwrap();
    assert_eq!(tiers(&p), (1, 1, 0));
    assert_eq!(duplicates(&p), 0);

    // The earlier one arrives: the later is flagged, and counted once.
    push(&store, std::slice::from_ref(&first));
    p.catch_up().unwrap();
    assert_eq!(tiers(&p), (1, 0, 1));
    assert_eq!(duplicates(&p), 1);
    let may = indicators(&p, "2025-05", ZEDANG);
    assert_eq!(may["cases_new"], 1, "{may:?}");
    assert_eq!(may["cases_open"], 1, "{may:?}");
    // The visit was made: it counts, its household with the person's file.
    assert_eq!(may["home_visits"], 1, "{may:?}");
    let listed = p.duplicates(&zedang).unwrap().files;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].case_id, listed[0].duplicate_of),
        (id_of(&second), id_of(&first))
    );
    assert_eq!(
        (
            listed[0].file_number.as_str(),
            listed[0].duplicate_of_file_number.as_str()
        ),
        ("泽当-2025-CD-0001", "泽当-2025-AB-0007")
    );
    // The person's file shows its number in the overdue list.
    let overdue = p.overdue(today(), &zedang, None).unwrap();
    assert_eq!(overdue.cases.len(), 1, "{overdue:?}");
    assert_eq!(overdue.cases[0].file_number, "泽当-2025-AB-0007");
    // The timeline of the flagged file is kept whole.
    assert_eq!(p.case_timeline(id_of(&second)).unwrap().entries.len(), 2);

    // A closing of the first file before the second was opened makes the
    // second a file of its own.
    let close = a.record(closed(id_of(&first), "2025-05-02"));
    push(&store, std::slice::from_ref(&close));
    p.catch_up().unwrap();
    assert_eq!(tiers(&p), (1, 1, 0));
    assert_eq!(duplicates(&p), 0);
    assert!(p.duplicates(&zedang).unwrap().files.is_empty());
    let may = indicators(&p, "2025-05", ZEDANG);
    assert_eq!((may["cases_new"], may["cases_closed"]), (2, 1), "{may:?}");

    // Voided, the closing never happened: flagged again.
    push(&store, &[a.record(void(id_of(&close)))]);
    p.catch_up().unwrap();
    assert_eq!(tiers(&p), (1, 0, 1));
    assert_eq!(duplicates(&p), 1);

    // Another station's file for the person is not a duplicate at this one.
    let mut c = Device::new(CHANGZHU, "cz-worker-1");
    push(
        &store,
        &[c.record(opened(
            "次仁",
            77,
            "540502101001",
            Tier::General,
            &[Category::Elderly],
            "2025-05-05",
        ))],
    );
    p.catch_up().unwrap();
    assert_eq!(duplicates(&p), 1);
    let changzhu = p.sync_health(&[CHANGZHU.to_string()]).unwrap();
    assert_eq!(changzhu.stations[0].duplicate_files, 0);

    // Rebuilt from the log, and applied in other batches: the same.
    let incremental = p.dump().unwrap();
    p.rebuild().unwrap();
    assert_eq!(p.dump().unwrap(), incremental);
    p.rebuild_in(1).unwrap();
    assert_eq!(p.dump().unwrap(), incremental);
}

#[test]
fn a_merge_counts_a_flagged_pair_as_one_file_and_a_void_of_it_flags_the_pair_again() {
    use station_hub::projections::DuplicateResolution;
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path());
    let zedang = [ZEDANG.to_string()];
    let flagged = |p: &Projections| p.sync_health(&zedang).unwrap().stations[0].duplicate_files;
    let open_cases = |p: &Projections| {
        let caseload = p.caseload(&zedang).unwrap();
        let s = &caseload.stations[0];
        (s.open_cases, s.high_risk, s.key)
    };
    let listed = |p: &Projections| {
        p.duplicates(&zedang)
            .unwrap()
            .files
            .iter()
            .map(|f| (f.case_id, f.duplicate_of, f.resolution))
            .collect::<Vec<_>>()
    };
    // Two offline phones open a file for one person; each visits it.
    let mut a = Device::new(ZEDANG, "zd-worker-1");
    let mut b = Device::new(ZEDANG, "zd-worker-2");
    let first = a.record(opened(
        "次仁",
        77,
        C1,
        Tier::Key,
        &[Category::Elderly],
        "2025-05-02",
    ));
    let second = b.record(opened(
        "次仁",
        77,
        C1,
        Tier::HighRisk,
        &[Category::Elderly],
        "2025-05-03",
    ));
    let (first_id, second_id) = (id_of(&first), id_of(&second));
    let events = vec![
        first,
        second,
        a.record(visit(first_id, "2025-05-04", VisitKind::Home)),
        b.record(visit(second_id, "2025-06-20", VisitKind::Home)),
    ];
    push(&store, &events);
    p.catch_up().unwrap();
    assert_eq!(flagged(&p), 1);
    assert_eq!(open_cases(&p), (1, 0, 1));
    assert_eq!(
        listed(&p),
        vec![(second_id, first_id, DuplicateResolution::Open)]
    );

    // The station merges the second file into the first.
    let merge = a.record(merged(first_id, second_id, "2025-06-21"));
    push(&store, std::slice::from_ref(&merge));
    p.catch_up().unwrap();
    assert_eq!(flagged(&p), 0);
    assert_eq!(open_cases(&p), (1, 0, 1), "the survivor keeps its tier");
    let may = indicators(&p, "2025-05", ZEDANG);
    assert_eq!(
        (may["cases_new"], may["cases_open"], may["home_visits"]),
        (1, 1, 1),
        "{may:?}"
    );
    let june = indicators(&p, "2025-06", ZEDANG);
    assert_eq!(
        (
            june["home_visits"],
            june["households_visited"],
            june["cases_open"]
        ),
        (1, 1, 1),
        "the absorbed file's visit counts with the survivor: {june:?}"
    );
    // The survivor is followed up from the joined timeline's last visit.
    let overdue = p.overdue(today(), &zedang, None).unwrap();
    assert_eq!(overdue.cases.len(), 1, "{overdue:?}");
    assert_eq!(overdue.cases[0].case_id, first_id);
    assert_eq!(
        overdue.cases[0].last_visit,
        NaiveDate::from_ymd_opt(2025, 6, 20)
    );
    assert_eq!(
        listed(&p),
        vec![(second_id, first_id, DuplicateResolution::Merged)]
    );
    // The survivor's timeline holds both files' entries and the merge.
    assert_eq!(p.case_timeline(first_id).unwrap().entries.len(), 5);
    assert_eq!(p.case_timeline(second_id).unwrap().entries.len(), 2);
    let merged_tree = p.dump().unwrap();
    p.rebuild().unwrap();
    assert_eq!(p.dump().unwrap(), merged_tree);

    // Voided, the merge never happened: the pair is flagged again.
    let unmerge = a.record(void(id_of(&merge)));
    push(&store, std::slice::from_ref(&unmerge));
    p.catch_up().unwrap();
    assert_eq!(flagged(&p), 1);
    assert_eq!(
        listed(&p),
        vec![(second_id, first_id, DuplicateResolution::Open)]
    );
    let june = indicators(&p, "2025-06", ZEDANG);
    assert_eq!(
        (june["home_visits"], june["households_visited"]),
        (1, 0),
        "{june:?}"
    );
    let overdue = p.overdue(today(), &zedang, None).unwrap();
    assert_eq!(
        overdue.cases[0].last_visit,
        NaiveDate::from_ymd_opt(2025, 5, 4)
    );
    // The voided merge stays in the survivor's timeline, flagged.
    assert_eq!(p.case_timeline(first_id).unwrap().entries.len(), 4);

    // The station finds they are two people: the flag is lifted and the
    // second file counts as a file of its own.
    push(
        &store,
        &[b.record(dismissed(second_id, first_id, "2025-06-22"))],
    );
    p.catch_up().unwrap();
    assert_eq!(flagged(&p), 0);
    assert_eq!(open_cases(&p), (2, 1, 1));
    let may = indicators(&p, "2025-05", ZEDANG);
    assert_eq!(may["cases_new"], 2, "{may:?}");
    assert_eq!(
        listed(&p),
        vec![(second_id, first_id, DuplicateResolution::Dismissed)]
    );

    // Rebuilt from the log, and applied in other batches: the same.
    let incremental = p.dump().unwrap();
    p.rebuild().unwrap();
    assert_eq!(p.dump().unwrap(), incremental);
    p.rebuild_in(1).unwrap();
    assert_eq!(p.dump().unwrap(), incremental);
}
