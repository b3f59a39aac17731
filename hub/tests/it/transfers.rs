//! Transfers of a file between stations through the hub's store and
//! projections: after an accepted transfer the receiving station holds the
//! file (open cases, caseload, overdue) with its whole history, services
//! stay counted where they were given, and the log refuses an answer from a
//! station the request was not addressed to and entries of a station that
//! never held the file.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::events::*;
use chrono::NaiveDate;
use station_hub::config::HubConfig;
use station_hub::projections::Projections;
use station_hub::store::HubStore;
use station_proto::Event;
use station_proto::v1::{Category, Tier, VisitKind};

const YADUI: &str = "540502200";
const CZ1: &str = "540502101001";
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

/// Pushes `events`; the quarantine's reasons, in order.
fn push(store: &HubStore, events: &[Event]) -> Vec<String> {
    let held = |q: &[(station_proto::ids::Uuid, station_hub::ingest::Quarantined)]| {
        q.iter()
            .map(|(origin, q)| (*origin, q.origin_seq))
            .collect::<Vec<_>>()
    };
    let before = held(&store.quarantine().unwrap());
    store.push(events.to_vec(), today(), RECEIVED_MS).unwrap();
    let mut new: Vec<(u64, String)> = store
        .quarantine()
        .unwrap()
        .into_iter()
        .filter(|(origin, q)| !before.contains(&(*origin, q.origin_seq)))
        .map(|(_, q)| (q.origin_seq, q.reason))
        .collect();
    new.sort();
    new.into_iter().map(|(_, reason)| reason).collect()
}

fn month(p: &Projections, period: &str, station: &str) -> BTreeMap<&'static str, i64> {
    let table = p
        .indicators(period.parse().unwrap(), &[station.to_string()])
        .unwrap();
    table.rows[0]
        .values
        .iter()
        .map(|v| (v.metric.name(), v.raw))
        .collect()
}

fn open_cases(p: &Projections, station: &str) -> u32 {
    p.caseload(&[station.to_string()]).unwrap().stations[0].open_cases
}

#[test]
fn an_accepted_transfer_moves_the_file_with_its_history_and_services_stay_where_given() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path());
    let mut cz = Device::new(CHANGZHU, "cz-worker-1");
    let mut zd = Device::new(ZEDANG, "zd-worker-1");
    let opening = cz.record(opened(
        "次仁",
        41,
        CZ1,
        Tier::Key,
        &[Category::Elderly],
        "2025-05-02",
    ));
    let case = id_of(&opening);
    let first_visit = cz.record(visit(case, "2025-05-04", VisitKind::Home));
    let request = cz.record(transfer_requested(case, ZEDANG, "2025-05-10"));
    let sent = vec![opening, first_visit, request.clone()];
    assert!(push(&store, &sent).is_empty());
    p.catch_up().unwrap();
    assert_eq!((open_cases(&p, CHANGZHU), open_cases(&p, ZEDANG)), (1, 0));

    // Zedang takes the file over (its device has seen the request), then
    // visits the family at its new home.
    let accepted = zd.record_after(
        request.hlc,
        transfer_accepted(case, id_of(&request), C1, "2025-05-12"),
    );
    let taken = vec![
        accepted,
        zd.record(visit(case, "2025-06-03", VisitKind::Home)),
    ];
    assert!(
        push(&store, &taken).is_empty(),
        "the receiver writes the file"
    );
    p.catch_up().unwrap();
    assert_eq!((open_cases(&p, CHANGZHU), open_cases(&p, ZEDANG)), (0, 1));
    let cz_may = month(&p, "2025-05", CHANGZHU);
    assert_eq!(
        (
            cz_may["cases_new"],
            cz_may["home_visits"],
            cz_may["cases_open"]
        ),
        (1, 1, 0),
        "{cz_may:?}"
    );
    let zd_may = month(&p, "2025-05", ZEDANG);
    assert_eq!(
        (
            zd_may["cases_new"],
            zd_may["home_visits"],
            zd_may["cases_open"]
        ),
        (0, 0, 1),
        "{zd_may:?}"
    );
    let zd_june = month(&p, "2025-06", ZEDANG);
    assert_eq!(
        (zd_june["home_visits"], zd_june["households_visited"]),
        (1, 1)
    );
    // Followed up at Zedang from the last visit of the whole history, in
    // its new community.
    let overdue = p.overdue(today(), &[ZEDANG.to_string()], None).unwrap();
    assert_eq!(overdue.cases.len(), 1, "{overdue:?}");
    assert_eq!(overdue.cases[0].case_id, case);
    assert_eq!(overdue.cases[0].community_code, C1);
    assert_eq!(
        overdue.cases[0].last_visit,
        NaiveDate::from_ymd_opt(2025, 6, 3)
    );
    assert!(
        p.overdue(today(), &[CHANGZHU.to_string()], None)
            .unwrap()
            .cases
            .is_empty()
    );
    assert_eq!(p.case_timeline(case).unwrap().entries.len(), 5);

    // A late entry of the sending station (a visit given before the
    // transfer, from a phone that was offline) counts where it was given.
    assert!(
        push(
            &store,
            &[cz.record(visit(case, "2025-05-08", VisitKind::Home))]
        )
        .is_empty()
    );
    p.catch_up().unwrap();
    assert_eq!(month(&p, "2025-05", CHANGZHU)["home_visits"], 2);
    assert_eq!((open_cases(&p, CHANGZHU), open_cases(&p, ZEDANG)), (0, 1));

    let incremental = p.dump().unwrap();
    p.rebuild().unwrap();
    assert_eq!(p.dump().unwrap(), incremental);
    p.rebuild_in(1).unwrap();
    assert_eq!(p.dump().unwrap(), incremental);

    // Voided, the acceptance never happened: Changzhu holds the file again.
    let mut zd2 = Device::new(ZEDANG, "zd-worker-2");
    let undo = zd2.record(void(id_of(&taken[0])));
    assert!(push(&store, &[undo]).is_empty());
    p.catch_up().unwrap();
    assert_eq!((open_cases(&p, CHANGZHU), open_cases(&p, ZEDANG)), (1, 0));
    assert_eq!(month(&p, "2025-06", ZEDANG)["home_visits"], 0);
}

#[test]
fn a_station_not_asked_cannot_answer_and_a_station_that_never_held_the_file_cannot_write_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path());
    let mut cz = Device::new(CHANGZHU, "cz-worker-1");
    let mut zd = Device::new(ZEDANG, "zd-worker-1");
    let mut yd = Device::new(YADUI, "yd-worker-1");
    let opening = cz.record(opened(
        "卓嘎",
        42,
        CZ1,
        Tier::General,
        &[Category::Dibao],
        "2025-05-02",
    ));
    let case = id_of(&opening);
    let request = cz.record(transfer_requested(case, ZEDANG, "2025-05-10"));
    assert!(push(&store, &[opening, request.clone()]).is_empty());

    // Yadui was not asked: its acceptance and its entries are refused.
    let refused = push(
        &store,
        &[
            yd.record_after(
                request.hlc,
                transfer_accepted(case, id_of(&request), "540502200001", "2025-05-12"),
            ),
            yd.record(visit(case, "2025-05-13", VisitKind::Home)),
        ],
    );
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(
        refused[0].contains("addressed to station 540502001"),
        "{refused:?}"
    );
    assert!(
        refused[1].contains("belongs to station 540502101"),
        "{refused:?}"
    );
    // An answer naming a request the hub does not hold is refused too.
    let unknown = push(
        &store,
        &[zd.record(transfer_declined(case, case, "2025-05-12"))],
    );
    assert_eq!(unknown.len(), 1);
    assert!(unknown[0].contains("no transfer request"), "{unknown:?}");

    // Zedang declines: the file stays at Changzhu, and a later acceptance of
    // the declined request takes no effect.
    let declined = zd.record_after(
        request.hlc,
        transfer_declined(case, id_of(&request), "2025-05-12"),
    );
    let late = zd.record(transfer_accepted(case, id_of(&request), C1, "2025-05-13"));
    assert!(push(&store, &[declined, late]).is_empty());
    p.catch_up().unwrap();
    assert_eq!((open_cases(&p, CHANGZHU), open_cases(&p, ZEDANG)), (1, 0));
}
