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
    // The bureau sees the request waiting, with its age, from either end.
    let as_of = NaiveDate::from_ymd_opt(2025, 5, 11).unwrap();
    for station in [CHANGZHU, ZEDANG] {
        let pending = p.pending_transfers(&[station.to_string()], as_of).unwrap();
        assert_eq!(pending.transfers.len(), 1, "{pending:?}");
        let t = &pending.transfers[0];
        assert_eq!(
            (
                t.request_id,
                t.case_id,
                t.from_station.as_str(),
                t.to_station.as_str(),
                t.age_days
            ),
            (id_of(&request), case, CHANGZHU, ZEDANG, 1)
        );
    }
    assert!(
        p.pending_transfers(&[YADUI.to_string()], as_of)
            .unwrap()
            .transfers
            .is_empty()
    );

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
    assert!(
        p.pending_transfers(&[ZEDANG.to_string()], today())
            .unwrap()
            .transfers
            .is_empty(),
        "answered"
    );
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
    assert!(
        p.pending_transfers(&[ZEDANG.to_string()], today())
            .unwrap()
            .transfers
            .is_empty()
    );
    assert_eq!((open_cases(&p, CHANGZHU), open_cases(&p, ZEDANG)), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bureau_sees_pending_transfers_over_json_and_the_dashboard_by_file_number_only() {
    let hub = crate::fixtures::Hub::start().await;
    let token = station_hub::auth::enroll_device(&hub.store, CHANGZHU, "昌珠-1")
        .unwrap()
        .bearer;
    let bureau = station_hub::auth::enroll_bureau(&hub.store, "山南市民政局")
        .unwrap()
        .bearer;
    let mut cz = Device::new(CHANGZHU, "cz-worker-1");
    let opening = numbered(
        cz.record(opened(
            "次仁",
            43,
            CZ1,
            Tier::Key,
            &[Category::Elderly],
            "2025-03-02",
        )),
        "昌珠-2025-0007",
    );
    let case = id_of(&opening);
    let request = cz.record(transfer_requested(case, ZEDANG, "2025-03-05"));
    hub.push(&token, &[opening, request.clone()]).await;
    hub.projected().await;

    let reply = hub
        .get_as(
            &format!("/api/transfers?station={ZEDANG}&as_of=2025-03-15"),
            &bureau,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let json = reply.json();
    let listed = json["transfers"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{json}");
    assert_eq!(listed[0]["request_id"], id_of(&request).to_string());
    assert_eq!(listed[0]["file_number"], "昌珠-2025-0007");
    assert_eq!(listed[0]["from_station"], CHANGZHU);
    assert_eq!(listed[0]["to_station"], ZEDANG);
    assert_eq!(listed[0]["age_days"], 10);
    assert!(!reply.text().contains("次仁"), "never the person");
    // The list names a case: its read is audited.
    let audit = hub
        .get_as(&format!("/api/audit?case={case}"), &bureau)
        .await
        .json();
    assert_eq!(audit["records"][0]["read"], "transfers", "{audit}");

    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let login = crate::http::request(
        hub.http,
        "POST",
        "/login",
        &form,
        format!("token={bureau}").as_bytes(),
    )
    .await;
    let session = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = hub.get("/?period=2025-03", &[("Cookie", &session)]).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("待接收转移"), "the list on the dashboard");
    assert!(html.contains("昌珠-2025-0007"));
    assert!(!html.contains(&id_number("19500101", 43, true)));
}

/// `opening` with `number` as its 档案编号, as its device gives it.
fn numbered(opening: Event, number: &str) -> Event {
    let mut body = opening.body.clone().unwrap();
    if let station_proto::Body::CaseOpened(m) = &mut body {
        m.file_number = number.into();
    }
    Event {
        body: Some(body),
        ..opening
    }
}
