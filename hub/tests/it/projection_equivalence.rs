//! Every read of the projections is the same whether the log was applied
//! incrementally, in batches of random sizes with restarts in between, or
//! replayed by a rebuild; and the same for every order in which the devices'
//! streams reached the hub. The generated field work has what makes that
//! hard: voids (of case events, of counted events, of voids, of another
//! station's events, of events the hub has not seen yet, of ids it never
//! sees), visits and assessments that reach the hub before their case,
//! concurrent tier changes, closings, reopenings and verifications.

use std::sync::Arc;

use crate::events::*;
use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use station_hub::config::HubConfig;
use station_hub::projections::Projections;
use station_hub::store::HubStore;
use station_proto::ids::Uuid;
use station_proto::v1::{
    BeneficiaryVerified, CaseNoteAdded, CaseReopened, Category, NoteKind, Tier, VisitKind,
};
use station_proto::{Body, Event};

const YANGDUI: &str = "540502200";
const STATIONS: [&str; 3] = [ZEDANG, CHANGZHU, YANGDUI];

fn community(station: &str, n: u32) -> String {
    format!("{station}{:03}", 1 + n % 3)
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
}

/// A version 7 id drawn from `rng`, so a seed gives the same log every run.
fn v7(rng: &mut StdRng, ms: u64) -> Uuid {
    let mut bytes: [u8; 16] = rng.random();
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70 | (bytes[6] & 0x0f);
    bytes[8] = 0x80 | (bytes[8] & 0x3f);
    Uuid::from_bytes(bytes)
}

fn date(rng: &mut StdRng) -> String {
    format!(
        "{}-{:02}-{:02}",
        rng.random_range(2024..=2026),
        rng.random_range(1..=12),
        rng.random_range(1..=28)
    )
}

/// The streams of `devices` devices over the three stations after `steps`
/// entries, each device's in its own order.
fn field_work(seed: u64, devices: usize, steps: usize) -> Vec<Vec<Event>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut logs: Vec<Device> = (0..devices)
        .map(|d| {
            let mut device = Device::new(STATIONS[d % STATIONS.len()], &format!("worker-{d}"));
            device.origin = v7(&mut rng, 1);
            device
        })
        .collect();
    let mut streams: Vec<Vec<Event>> = vec![Vec::new(); devices];
    // (case, station, hlc of its opening)
    let mut cases: Vec<(Uuid, String, u64)> = Vec::new();
    // (event id, hlc)
    let mut known: Vec<(Uuid, u64)> = Vec::new();
    let mut serial = 0;
    for _ in 0..steps {
        let d = rng.random_range(0..devices);
        let station = logs[d].station.clone();
        let on = date(&mut rng);
        let own: Vec<Uuid> = cases
            .iter()
            .filter(|c| c.1 == station)
            .map(|c| c.0)
            .collect();
        // A device has seen most, not all, of what the others recorded.
        let seen = if known.is_empty() || rng.random_bool(0.3) {
            0
        } else {
            known[rng.random_range(0..known.len())].1
        };
        // Own station's cases only: the hub quarantines an entry naming
        // another station's case (see the trust tests).
        let any_case = |rng: &mut StdRng| -> Option<Uuid> {
            (!own.is_empty()).then(|| own[rng.random_range(0..own.len())])
        };
        let tier = [Tier::HighRisk, Tier::Key, Tier::General][rng.random_range(0..3)];
        let roll = rng.random_range(0..100);
        let body = match roll {
            0..=11 => {
                // Now and then a person opened before, as two offline
                // phones of one station do: a duplicate file.
                let person = if serial > 0 && rng.random_bool(0.2) {
                    rng.random_range(1..=serial)
                } else {
                    serial += 1;
                    serial
                };
                let categories = [Category::Elderly, Category::Dibao, Category::Orphan];
                let n = rng.random_range(1..=3);
                opened(
                    "次仁 ཚེ་རིང",
                    person,
                    &community(&station, person),
                    tier,
                    &categories[..n],
                    &on,
                )
            }
            12..=44 => match any_case(&mut rng) {
                Some(case) => {
                    let kind = [VisitKind::Home, VisitKind::Phone, VisitKind::FollowUp]
                        [rng.random_range(0..3)];
                    visit(case, &on, kind)
                }
                None => activity(&community(&station, 1), &on, 3, 1, 20),
            },
            45..=51 => match any_case(&mut rng) {
                // Last seen: the case itself, or any event: concurrent
                // changes share a stale one.
                Some(case) => {
                    let last_seen = if rng.random_bool(0.5) || known.is_empty() {
                        case
                    } else {
                        known[rng.random_range(0..known.len())].0
                    };
                    assessed(case, tier, last_seen, &on)
                }
                None => training(&on),
            },
            52..=55 => match any_case(&mut rng) {
                Some(case) => closed(case, &on),
                None => training(&on),
            },
            56..=58 => match any_case(&mut rng) {
                Some(case) => {
                    let tier = if rng.random_bool(0.5) {
                        Tier::Unspecified
                    } else {
                        tier
                    };
                    Body::CaseReopened(CaseReopened {
                        tier: tier as i32,
                        ..match reopened(case, &on) {
                            Body::CaseReopened(m) => m,
                            _ => unreachable!(),
                        }
                    })
                }
                None => training(&on),
            },
            59..=60 => match any_case(&mut rng) {
                Some(case) => {
                    let still_eligible = rng.random_bool(0.7);
                    Body::BeneficiaryVerified(BeneficiaryVerified {
                        case_id: case.as_bytes().to_vec(),
                        verified_on: on.clone(),
                        categories: if still_eligible {
                            vec![Category::Disabled as i32, Category::Dibao as i32]
                        } else {
                            vec![]
                        },
                        still_eligible,
                        ..BeneficiaryVerified::default()
                    })
                }
                None => training(&on),
            },
            61..=62 => match any_case(&mut rng) {
                Some(case) => Body::CaseNoteAdded(CaseNoteAdded {
                    case_id: case.as_bytes().to_vec(),
                    kind: NoteKind::Intervention as i32,
                    text: "随访记录".into(),
                    noted_on: on.clone(),
                }),
                None => training(&on),
            },
            63..=66 => resource(
                any_case(&mut rng).filter(|_| rng.random_bool(0.6)),
                &on,
                rng.random_range(0..100_000),
                rng.random_range(0..3) * 1_000,
            ),
            67..=70 => group_session(&community(&station, 2), &on, rng.random_range(0..20)),
            71..=72 => training(&on),
            73..=84 => {
                let target = if known.is_empty() || rng.random_bool(0.05) {
                    // An id the hub never sees.
                    v7(&mut rng, 2)
                } else if rng.random_bool(0.7) {
                    // Recent events mostly.
                    let from = known.len().saturating_sub(30);
                    known[rng.random_range(from..known.len())].0
                } else {
                    known[rng.random_range(0..known.len())].0
                };
                void(target)
            }
            _ => activity(
                &community(&station, 0),
                &on,
                rng.random_range(0..60),
                rng.random_range(0..5),
                rng.random_range(0..240),
            ),
        };
        let mut event = logs[d].record_after(seen, body);
        let id = v7(&mut rng, event.hlc >> 16);
        event.event_id = id.as_bytes().to_vec();
        if let Some(Body::CaseOpened(_)) = event.body {
            cases.push((id, station.clone(), event.hlc));
        }
        known.push((id, event.hlc));
        streams[d].push(event);
    }
    streams
}

/// The streams merged in an order drawn from `rng`, each device's kept, and
/// cut into pushes of random sizes.
fn arrival(streams: &[Vec<Event>], rng: &mut StdRng) -> Vec<Vec<Event>> {
    let mut next = vec![0usize; streams.len()];
    let mut pushes = Vec::new();
    loop {
        let open: Vec<usize> = (0..streams.len())
            .filter(|&d| next[d] < streams[d].len())
            .collect();
        if open.is_empty() {
            return pushes;
        }
        // One device's run of events, as one push.
        let d = open[rng.random_range(0..open.len())];
        let n = rng.random_range(1..=12).min(streams[d].len() - next[d]);
        pushes.push(streams[d][next[d]..next[d] + n].to_vec());
        next[d] += n;
    }
}

fn open(dir: &std::path::Path) -> (Arc<HubStore>, Projections) {
    let store = Arc::new(HubStore::open(dir, 16 * 1024 * 1024).unwrap());
    let config = Arc::new(HubConfig::builtin().unwrap());
    let projections = Projections::open(Arc::clone(&store), config).unwrap();
    (store, projections)
}

fn stations() -> Vec<String> {
    STATIONS.iter().map(|s| s.to_string()).collect()
}

/// Every answer of the read API over everything the log holds.
fn reads(p: &Projections, cases: &[Uuid], with_health: bool) -> Value {
    let stations = stations();
    let mut indicators = Vec::new();
    for year in 2024..=2026 {
        let mut periods = vec![format!("{year}")];
        periods.extend((1..=4).map(|q| format!("{year}-Q{q}")));
        periods.extend((1..=12).map(|m| format!("{year}-{m:02}")));
        for period in periods {
            let table = p.indicators(period.parse().unwrap(), &stations).unwrap();
            let mut table = serde_json::to_value(table).unwrap();
            if !with_health {
                for row in table["rows"].as_array_mut().unwrap() {
                    row["complete_through_ms"] = Value::Null;
                    row["complete"] = Value::Null;
                }
            }
            indicators.push(table);
        }
    }
    let overdue: Vec<Value> = ["2024-06-30", "2025-03-31", "2025-12-31", "2027-01-01"]
        .iter()
        .map(|d| {
            serde_json::to_value(p.overdue(d.parse().unwrap(), &stations, None).unwrap()).unwrap()
        })
        .collect();
    let timelines: Vec<Value> = cases
        .iter()
        .map(|case| match p.case_timeline(*case) {
            Ok(t) => serde_json::to_value(t).unwrap(),
            Err(e) => json!(e.to_string()),
        })
        .collect();
    let case_stations: Vec<Value> = cases
        .iter()
        .map(|case| json!(p.case_station(*case).unwrap()))
        .collect();
    let mut health = serde_json::to_value(p.sync_health(&stations).unwrap()).unwrap();
    health["hub_clock_ms"] = Value::Null;
    if !with_health {
        // Receive times and contacts depend on when each push arrived.
        health["devices"] = Value::Null;
        for row in health["stations"].as_array_mut().unwrap() {
            row["complete_through_ms"] = Value::Null;
        }
    }
    json!({
        "indicators": indicators,
        "caseload": p.caseload(&stations).unwrap(),
        "overdue": overdue,
        "conflicts": p.conflicts(&stations).unwrap(),
        "health": health,
        "timelines": timelines,
        "case_stations": case_stations,
    })
}

/// Every id a case could have: the case events' case ids and every event id
/// (most are not cases).
fn case_ids(streams: &[Vec<Event>]) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = streams
        .iter()
        .flatten()
        .filter_map(|e| match &e.body {
            Some(Body::CaseOpened(_)) => Some(id_of(e)),
            Some(body) => station_proto::case::case_of(body),
            None => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Pushes `pushes` and applies them as a following projector would, in
/// batches of random sizes, reopening the projections now and then; returns
/// the reads, then rebuilds and checks the reads and the tree are the same.
fn incremental_then_rebuild(pushes: &[Vec<Event>], cases: &[Uuid], seed: u64) -> Value {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let (mut store, mut p) = open(dir.path());
    for (i, push) in pushes.iter().enumerate() {
        let now = EPOCH_MS + 86_400_000 * (1 + i as i64 / 10);
        let outcome = store.push(push.clone(), today(), now).unwrap();
        assert_eq!(outcome.quarantined, 0, "{outcome:?}");
        match rng.random_range(0..12) {
            0 => {}
            1 => {
                p.catch_up().unwrap();
            }
            10 | 11 => {
                p.catch_up_in(rng.random_range(1..5)).unwrap();
            }
            2 if rng.random_bool(0.2) => {
                drop(p);
                store.sync().unwrap();
                drop(store);
                (store, p) = open(dir.path());
            }
            _ => {
                let n = [1, 2, 3, 7, 20, 100][rng.random_range(0..6)];
                p.apply_next(u64::MAX, n).unwrap();
            }
        }
    }
    p.catch_up().unwrap();
    assert_eq!(p.checkpoint(), store.event_count());
    let incremental = reads(&p, cases, true);
    let tree = p.dump().unwrap();
    let rebuilt = p.rebuild().unwrap();
    assert_eq!(rebuilt.applied, store.event_count());
    assert!(
        incremental == reads(&p, cases, true),
        "a rebuild reads differently from incremental application (seed {seed})"
    );
    assert!(
        tree == p.dump().unwrap(),
        "a rebuild holds other records than incremental application (seed {seed})"
    );
    // Rebuilt again in small batches: the same.
    p.rebuild_in(7).unwrap();
    assert!(incremental == reads(&p, cases, true), "seed {seed}");
    assert!(tree == p.dump().unwrap(), "seed {seed}");
    // And a restart over the rebuilt projections resumes them unchanged.
    drop(p);
    store.sync().unwrap();
    drop(store);
    let (_store, p) = open(dir.path());
    assert!(incremental == reads(&p, cases, true), "seed {seed}");
    incremental
}

fn without_health(mut reads: Value) -> Value {
    reads["health"]["devices"] = Value::Null;
    for row in reads["health"]["stations"].as_array_mut().unwrap() {
        row["complete_through_ms"] = Value::Null;
    }
    for table in reads["indicators"].as_array_mut().unwrap() {
        for row in table["rows"].as_array_mut().unwrap() {
            row["complete_through_ms"] = Value::Null;
            row["complete"] = Value::Null;
        }
    }
    for timeline in reads["timelines"].as_array_mut().unwrap() {
        if let Some(entries) = timeline.get_mut("entries").and_then(Value::as_array_mut) {
            for entry in entries {
                entry["hub_seq"] = Value::Null;
                entry["received_at_ms"] = Value::Null;
            }
        }
    }
    reads
}

#[test]
fn incremental_application_in_any_batches_and_any_arrival_order_reads_like_a_rebuild() {
    for seed in 0..6u64 {
        let streams = field_work(seed, 5, 400);
        let cases = case_ids(&streams);
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        let first = incremental_then_rebuild(&arrival(&streams, &mut rng), &cases, seed);
        let second = incremental_then_rebuild(&arrival(&streams, &mut rng), &cases, seed + 100);
        assert!(
            without_health(first) == without_health(second),
            "the order of arrival changed an answer (seed {seed})"
        );
    }
}

#[test]
fn the_generated_work_exercises_what_it_should() {
    let streams = field_work(3, 5, 400);
    let cases = case_ids(&streams);
    let mut rng = StdRng::seed_from_u64(3);
    let reads = incremental_then_rebuild(&arrival(&streams, &mut rng), &cases, 3);
    let health = &reads["health"]["stations"];
    let total = |field: &str| -> u64 {
        health
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[field].as_u64().unwrap())
            .sum()
    };
    assert!(total("voided_events") > 20, "{health}");
    assert!(total("held_events") > 0, "{health}");
    assert!(total("tier_conflicts") > 0, "{health}");
    assert!(total("duplicate_files") > 0, "{health}");
    assert!(!reads["overdue"][2]["cases"].as_array().unwrap().is_empty());
    let open: u64 = reads["caseload"]["stations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["open_cases"].as_u64().unwrap())
        .sum();
    assert!(open > 10, "{}", reads["caseload"]);
}
