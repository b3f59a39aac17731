//! Transfers of a file between stations through the hub's store and
//! projections: after an accepted transfer the receiving station holds the
//! file (open cases, caseload, overdue) with its whole history, services
//! stay counted where they were given, and the log refuses an answer from a
//! station the request was not addressed to and entries of a station that
//! never held the file. A file taken over merges into the receiving
//! station's file for the person and counts once there.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::events::*;
use chrono::NaiveDate;
use station_hub::config::HubConfig;
use station_hub::projections::Projections;
use station_hub::store::HubStore;
use station_proto::ids::Uuid;
use station_proto::v1::{Category, GetPendingTransfersRequest, Tier, VisitKind};
use station_proto::{Body, Event};

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

    // The same rows over Query, audited the same way.
    let mut query = hub.query();
    let answer = query
        .get_pending_transfers(crate::fixtures::authorized(
            GetPendingTransfersRequest {
                stations: vec![ZEDANG.into()],
                as_of: "2025-03-15".into(),
            },
            &bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.as_of, "2025-03-15");
    assert!(answer.computed_through_hub_seq >= 2);
    assert_eq!(answer.transfers.len(), 1, "{answer:?}");
    let row = &answer.transfers[0];
    assert_eq!(
        (
            row.request_id.as_slice(),
            row.case_id.as_slice(),
            row.file_number.as_str(),
            row.from_station_code.as_str(),
            row.to_station_code.as_str(),
            row.requested_on.as_str(),
            row.age_days
        ),
        (
            id_of(&request).as_bytes().as_slice(),
            case.as_bytes().as_slice(),
            "昌珠-2025-0007",
            CHANGZHU,
            ZEDANG,
            "2025-03-05",
            10
        )
    );
    let audit = hub
        .get_as(&format!("/api/audit?case={case}"), &bureau)
        .await
        .json();
    let reads: Vec<&serde_json::Value> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["read"])
        .collect();
    assert_eq!(reads.len(), 2, "{audit}");
    assert!(reads.iter().all(|r| *r == "transfers"), "{audit}");
    // A station's device reads its own station's list, and no other.
    let own = query
        .get_pending_transfers(crate::fixtures::authorized(
            GetPendingTransfersRequest::default(),
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.transfers.len(), 1, "Changzhu's own request");
    assert!(own.transfers[0].age_days >= 0);
    let refused = query
        .get_pending_transfers(crate::fixtures::authorized(
            GetPendingTransfersRequest {
                stations: vec![YADUI.into()],
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let bad_day = query
        .get_pending_transfers(crate::fixtures::authorized(
            GetPendingTransfersRequest {
                as_of: "2025-13-01".into(),
                ..Default::default()
            },
            &bureau,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_day.code(), tonic::Code::InvalidArgument, "{bad_day:?}");

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

async fn sync(
    hub: &crate::fixtures::Hub,
    agent: &Arc<station_agent::Agent>,
    token: &str,
) -> station_agent::sync::SyncReport {
    station_agent::sync::sync_once(
        Arc::clone(agent),
        &station_agent::sync::SyncOptions::new(hub.url(), Some(token.to_string())),
    )
    .await
    .unwrap()
}

/// The ids of the events a device holds of `case`.
fn held_ids(agent: &station_agent::Agent, case: Uuid) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = agent
        .log()
        .case_events(case)
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiving_stations_phones_learn_of_a_request_through_sync_and_hold_the_file_with_its_history_once_accepted()
 {
    use crate::fixtures::{Hub, device};
    let hub = Hub::start().await;
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let changzhu = device(dirs[0].path(), CHANGZHU, "cz-worker-1");
    let zedang = device(dirs[1].path(), ZEDANG, "zd-worker-1");
    let zedang_2 = device(dirs[2].path(), ZEDANG, "zd-worker-2");
    let yadui = device(dirs[3].path(), YADUI, "yd-worker-1");
    let tokens = [
        hub.device_token(CHANGZHU, "cz-phone"),
        hub.device_token(ZEDANG, "zd-phone"),
        hub.device_token(ZEDANG, "zd-phone-2"),
        hub.device_token(YADUI, "yd-phone"),
    ];
    // Changzhu's file, visited there, then asked to move to Zedang; a
    // second file stays at Changzhu and never reaches another station.
    let case = changzhu
        .record(opened(
            "次仁 ཚེ་རིང",
            41,
            CZ1,
            Tier::Key,
            &[Category::Elderly],
            "2025-05-02",
        ))
        .unwrap()
        .event_id;
    let visit_at_changzhu = changzhu
        .record(visit(case, "2025-05-04", VisitKind::Home))
        .unwrap()
        .event_id;
    let other = changzhu
        .record(opened(
            "卓玛",
            42,
            CZ1,
            Tier::General,
            &[Category::Elderly],
            "2025-05-02",
        ))
        .unwrap()
        .event_id;
    changzhu
        .record(visit(other, "2025-05-05", VisitKind::Home))
        .unwrap();
    let request = changzhu
        .record(transfer_requested(case, ZEDANG, "2025-05-10"))
        .unwrap()
        .event_id;
    sync(&hub, &changzhu, &tokens[0]).await;
    hub.projected().await;

    // Zedang's phone learns of the request: the opening and the request,
    // nothing of the visit yet, nothing of the other file.
    let first = sync(&hub, &zedang, &tokens[1]).await;
    assert_eq!(first.transfers_pulled, 2, "{first:?}");
    let mut expected = vec![case, request];
    expected.sort();
    assert_eq!(held_ids(&zedang, case), expected);
    assert!(held_ids(&zedang, other).is_empty());
    let incoming = zedang.log().incoming_transfers().unwrap();
    assert_eq!(incoming.len(), 1, "{incoming:?}");
    let asked = &incoming[0];
    assert_eq!(
        (
            asked.request_id,
            asked.case_id,
            asked.from_station.as_str(),
            asked.name.as_str(),
            asked.reason.as_str()
        ),
        (request, case, CHANGZHU, "次仁 ཚེ་རིང", "全家迁居")
    );
    assert!(asked.file_number.starts_with("昌珠-"), "{asked:?}");
    assert!(
        zedang.cases().unwrap().is_empty(),
        "a file only asked for is not among the station's cases"
    );
    // A station that is not asked learns nothing.
    let bystander = sync(&hub, &yadui, &tokens[3]).await;
    assert_eq!(bystander.transfers_pulled, 0);
    assert!(held_ids(&yadui, case).is_empty());

    // Offline, Zedang accepts.
    let dir = hub.stop().await;
    let accepted = zedang
        .record(Body::CaseTransferAccepted(
            station_proto::v1::CaseTransferAccepted {
                request_id: request.as_bytes().to_vec(),
                community_code: "540502001003".into(),
                accepted_on: "2025-05-12".into(),
                ..Default::default()
            },
        ))
        .unwrap()
        .event_id;
    assert!(zedang.log().incoming_transfers().unwrap().is_empty());
    let held = zedang.log().case(case).unwrap().expect("the file is held");
    assert_eq!(held.status, station_proto::case::CaseStatus::Open);
    let hub = Hub::start_in(dir, Default::default()).await;
    // The round that pushes the acceptance brings the file's whole
    // history: the one visit Zedang lacked.
    let pushed = sync(&hub, &zedang, &tokens[1]).await;
    assert_eq!(pushed.transfers_pulled, 1, "{pushed:?}");
    hub.projected().await;
    let second = sync(&hub, &zedang, &tokens[1]).await;
    assert_eq!(second.transfers_pulled, 0, "{second:?}");
    let mut expected = vec![case, request, visit_at_changzhu, accepted];
    expected.sort();
    assert_eq!(held_ids(&zedang, case), expected);
    let view = zedang.log().case(case).unwrap().unwrap();
    assert_eq!(
        (view.status, view.visits, view.community_code.as_str()),
        (station_proto::case::CaseStatus::Open, 1, "540502001003")
    );
    assert_eq!(zedang.cases().unwrap().len(), 1);
    // A colleague's phone at Zedang gets it all too, with the acceptance
    // from the station's stream.
    sync(&hub, &zedang_2, &tokens[2]).await;
    assert_eq!(held_ids(&zedang_2, case), expected);
    assert_eq!(zedang_2.cases().unwrap().len(), 1);
    // Zedang visits the family; Changzhu's phone keeps a closed stub.
    zedang
        .record(visit(case, "2025-06-03", VisitKind::Home))
        .unwrap();
    sync(&hub, &zedang, &tokens[1]).await;
    hub.projected().await;
    let back = sync(&hub, &changzhu, &tokens[0]).await;
    assert_eq!(back.transfers_pulled, 1, "the acceptance: {back:?}");
    let stub = changzhu.log().case(case).unwrap().unwrap();
    assert_eq!(stub.status, station_proto::case::CaseStatus::Closed);
    assert_eq!(stub.transferred_to.as_deref(), Some(ZEDANG));
    assert_eq!(stub.visits, 1, "Zedang's visits are not Changzhu's");
    assert!(held_ids(&yadui, case).is_empty());
    assert_eq!(sync(&hub, &yadui, &tokens[3]).await.transfers_pulled, 0);

    // The hub counts the services where they were given.
    hub.projected().await;
    let p = &hub.projections;
    assert_eq!(month(p, "2025-05", CHANGZHU)["home_visits"], 2);
    assert_eq!(month(p, "2025-05", ZEDANG)["home_visits"], 0);
    assert_eq!(month(p, "2025-06", ZEDANG)["home_visits"], 1);
    assert_eq!((open_cases(p, CHANGZHU), open_cases(p, ZEDANG)), (1, 1));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_or_withdrawn_request_leaves_the_file_where_it_is_on_every_phone() {
    use crate::fixtures::{Hub, device};
    let hub = Hub::start().await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let changzhu = device(dirs[0].path(), CHANGZHU, "cz-worker-1");
    let zedang = device(dirs[1].path(), ZEDANG, "zd-worker-1");
    let tokens = [
        hub.device_token(CHANGZHU, "cz-phone"),
        hub.device_token(ZEDANG, "zd-phone"),
    ];
    let opening = |serial| {
        opened(
            "次仁",
            serial,
            CZ1,
            Tier::Key,
            &[Category::Elderly],
            "2025-05-02",
        )
    };
    let declined_case = changzhu.record(opening(41)).unwrap().event_id;
    let withdrawn_case = changzhu.record(opening(43)).unwrap().event_id;
    let declined = changzhu
        .record(transfer_requested(declined_case, ZEDANG, "2025-05-10"))
        .unwrap()
        .event_id;
    let withdrawn = changzhu
        .record(transfer_requested(withdrawn_case, ZEDANG, "2025-05-10"))
        .unwrap()
        .event_id;
    sync(&hub, &changzhu, &tokens[0]).await;
    hub.projected().await;
    sync(&hub, &zedang, &tokens[1]).await;
    assert_eq!(zedang.log().incoming_transfers().unwrap().len(), 2);

    zedang
        .record(transfer_declined(declined_case, declined, "2025-05-11"))
        .unwrap();
    changzhu.record(void(withdrawn)).unwrap();
    sync(&hub, &zedang, &tokens[1]).await;
    hub.projected().await;
    let pushed = sync(&hub, &changzhu, &tokens[0]).await;
    hub.projected().await;
    let report = sync(&hub, &zedang, &tokens[1]).await;
    assert_eq!(report.transfers_pulled, 1, "the void: {report:?}");
    assert!(zedang.log().incoming_transfers().unwrap().is_empty());
    assert!(zedang.cases().unwrap().is_empty());
    assert_eq!(pushed.transfers_pulled, 1, "the decline: {pushed:?}");
    for case in [declined_case, withdrawn_case] {
        let view = changzhu.log().case(case).unwrap().unwrap();
        assert_eq!(view.status, station_proto::case::CaseStatus::Open);
        assert_eq!(view.transferred_to, None);
    }
    let p = &hub.projections;
    assert!(
        p.pending_transfers(&[ZEDANG.to_string()], today())
            .unwrap()
            .transfers
            .is_empty()
    );
    hub.stop().await;
}

/// The ids the transfers feed hands `token`'s station, from its start.
async fn feed_of(hub: &crate::fixtures::Hub, token: &str, station: &str) -> Vec<Uuid> {
    let page = hub
        .client()
        .await
        .pull(crate::fixtures::authorized(
            station_proto::v1::PullRequest {
                station_code: station.into(),
                max_events: 100,
                transfers_after: Some(0),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    let feed = page
        .transfers
        .expect("a device of the city hub gets the feed");
    assert_eq!(feed.next_cursor, feed.head, "one page holds it all");
    let mut ids: Vec<Uuid> = feed.events.iter().map(id_of).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_gives_a_station_only_what_it_held_of_a_file_that_moved_on_and_nothing_else() {
    let hub = crate::fixtures::Hub::start().await;
    let mut cz = Device::new(CHANGZHU, "cz-worker-1");
    let mut zd = Device::new(ZEDANG, "zd-worker-1");
    let mut yd = Device::new(YADUI, "yd-worker-1");
    let opening = cz.record(opened(
        "次仁",
        51,
        CZ1,
        Tier::Key,
        &[Category::Elderly],
        "2025-05-02",
    ));
    let case = id_of(&opening);
    let cz_visit = cz.record(visit(case, "2025-05-04", VisitKind::Home));
    let to_zedang = cz.record(transfer_requested(case, ZEDANG, "2025-05-10"));
    let other = cz.record(opened(
        "卓玛",
        52,
        CZ1,
        Tier::General,
        &[Category::Elderly],
        "2025-05-02",
    ));
    let cz_events = vec![
        opening.clone(),
        cz_visit.clone(),
        to_zedang.clone(),
        other.clone(),
    ];
    let zd_accepts = zd.record_after(
        to_zedang.hlc,
        transfer_accepted(case, id_of(&to_zedang), C1, "2025-05-12"),
    );
    let zd_visit = zd.record(visit(case, "2025-06-03", VisitKind::Home));
    let to_yadui = zd.record(transfer_requested(case, YADUI, "2025-07-01"));
    let yd_accepts = yd.record_after(
        to_yadui.hlc,
        transfer_accepted(case, id_of(&to_yadui), "540502200001", "2025-07-03"),
    );
    let yd_visit = yd.record(visit(case, "2025-07-10", VisitKind::Home));
    let tokens = [
        hub.device_token(CHANGZHU, "cz"),
        hub.device_token(ZEDANG, "zd"),
        hub.device_token(YADUI, "yd"),
        hub.device_token("540502201", "sz"),
    ];
    assert_eq!(hub.push(&tokens[0], &cz_events).await, 0);
    assert_eq!(
        hub.push(
            &tokens[1],
            &[zd_accepts.clone(), zd_visit.clone(), to_yadui.clone()]
        )
        .await,
        0
    );
    assert_eq!(
        hub.push(&tokens[2], &[yd_accepts.clone(), yd_visit.clone()])
            .await,
        0
    );
    hub.projected().await;

    let sorted = |mut ids: Vec<Uuid>| {
        ids.sort();
        ids
    };
    // Zedang held it between: Changzhu's history and every transfer step,
    // nothing of Yadui's visit, nothing of the other file.
    assert_eq!(
        feed_of(&hub, &tokens[1], ZEDANG).await,
        sorted(vec![
            case,
            id_of(&cz_visit),
            id_of(&to_zedang),
            id_of(&yd_accepts)
        ])
    );
    // Yadui holds it: the whole history of the stations before it.
    assert_eq!(
        feed_of(&hub, &tokens[2], YADUI).await,
        sorted(vec![
            case,
            id_of(&cz_visit),
            id_of(&to_zedang),
            id_of(&zd_accepts),
            id_of(&zd_visit),
            id_of(&to_yadui)
        ])
    );
    // Changzhu opened it: the answers and later transfer steps only.
    assert_eq!(
        feed_of(&hub, &tokens[0], CHANGZHU).await,
        sorted(vec![
            id_of(&zd_accepts),
            id_of(&to_yadui),
            id_of(&yd_accepts)
        ])
    );
    // A station never asked gets nothing.
    assert!(feed_of(&hub, &tokens[3], "540502201").await.is_empty());
    // A bureau token gets no feed.
    let bureau = hub.bureau_token("山南市民政局");
    let page = hub
        .client()
        .await
        .pull(crate::fixtures::authorized(
            station_proto::v1::PullRequest {
                station_code: ZEDANG.into(),
                transfers_after: Some(0),
                ..Default::default()
            },
            &bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(page.transfers.is_none());
    hub.stop().await;
}

#[test]
fn a_file_taken_over_merges_into_the_receivers_file_for_the_person_and_counts_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path());
    let mut cz = Device::new(CHANGZHU, "cz-worker-1");
    let mut zd = Device::new(ZEDANG, "zd-worker-1");
    // One person with a file at each station: Changzhu's, visited there,
    // and Zedang's, opened after the family moved.
    let old = cz.record(opened(
        "次仁",
        41,
        CZ1,
        Tier::Key,
        &[Category::Elderly],
        "2025-05-02",
    ));
    let old_id = id_of(&old);
    let visited = cz.record(visit(old_id, "2025-05-04", VisitKind::Home));
    let new = zd.record(opened(
        "次仁",
        41,
        C1,
        Tier::Key,
        &[Category::Elderly],
        "2025-05-06",
    ));
    let new_id = id_of(&new);
    assert!(push(&store, &[old, visited]).is_empty());
    assert!(push(&store, std::slice::from_ref(&new)).is_empty());
    // Zedang merges Changzhu's file into its own before holding it: the
    // merge claims nothing, each station counts its file.
    let merge = zd.record(merged(new_id, old_id, "2025-05-07"));
    assert!(push(&store, std::slice::from_ref(&merge)).is_empty());
    p.catch_up().unwrap();
    let counts = |p: &Projections| {
        let [cz, zd] = [CHANGZHU, ZEDANG].map(|s| {
            let m = month(p, "2025-05", s);
            (
                open_cases(p, s),
                m.get("cases_new").copied().unwrap_or(0),
                m.get("cases_open").copied().unwrap_or(0),
                m.get("home_visits").copied().unwrap_or(0),
                m.get("households_visited").copied().unwrap_or(0),
            )
        });
        (cz, zd)
    };
    assert_eq!(counts(&p), ((1, 1, 1, 1, 1), (1, 1, 1, 0, 0)));

    // Changzhu asks Zedang to take its file over; Zedang accepts: both
    // files are Zedang's now, the merge counts, and the person is one open
    // file there. Changzhu's visit stays counted where it was given.
    let request = cz.record(transfer_requested(old_id, ZEDANG, "2025-05-10"));
    assert!(push(&store, std::slice::from_ref(&request)).is_empty());
    let accepted = zd.record_after(
        request.hlc,
        transfer_accepted(old_id, id_of(&request), C1, "2025-05-12"),
    );
    assert!(push(&store, &[accepted]).is_empty());
    p.catch_up().unwrap();
    assert_eq!(counts(&p), ((0, 0, 0, 1, 1), (1, 1, 1, 0, 0)));
    // Rebuilt from the log alone, the projections agree.
    let incremental = p.dump().unwrap();
    p.rebuild().unwrap();
    assert_eq!(p.dump().unwrap(), incremental);

    // A merge by a station that holds neither file still claims nothing.
    let mut yd = Device::new(YADUI, "yd-worker-1");
    let elsewhere = yd.record(opened(
        "达瓦",
        42,
        "540502200201",
        Tier::General,
        &[Category::Elderly],
        "2025-05-03",
    ));
    let foreign = cz.record(merged(old_id, id_of(&elsewhere), "2025-05-20"));
    push(&store, &[elsewhere]);
    push(&store, &[foreign]);
    p.catch_up().unwrap();
    assert_eq!(open_cases(&p, YADUI), 1);
    assert_eq!(counts(&p), ((0, 0, 0, 1, 1), (1, 1, 1, 0, 0)));
}
