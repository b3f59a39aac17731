//! Possible duplicates across stations: two stations' phones open one
//! person's file offline, before the district directory reached them; once
//! both sync, the bureau's list of possible duplicates shows the pair over
//! Query, JSON and the dashboard, never with the ID number or name, both
//! phones are warned once the directory reaches them, and the pair leaves
//! the list when it is resolved, with every count right.

use std::sync::Arc;

use crate::events::*;
use crate::fixtures::{Hub, authorized, device};
use chrono::NaiveDate;
use station_agent::Agent;
use station_agent::sync::{SyncOptions, SyncReport, sync_once};
use station_hub::config::HubConfig;
use station_hub::projections::{DuplicateResolution, Projections};
use station_hub::store::HubStore;
use station_proto::Body;
use station_proto::ids::Uuid;
use station_proto::v1::{
    CaseClosed, CaseOpened, CaseSource, Category, Gender, GetDuplicatesRequest, Tier,
};

const NAME: &str = "次仁卓玛 ཚེ་རིང་སྒྲོལ་མ";
const PERSON: &str = "11010519491231002X";

fn opening(community: &str, on: &str) -> Body {
    Body::CaseOpened(CaseOpened {
        name: NAME.into(),
        id_number: PERSON.into(),
        gender: Gender::Female as i32,
        birth_date: "1949-12-31".into(),
        community_code: community.into(),
        language: "bo".into(),
        categories: vec![Category::Elderly as i32],
        tier: Tier::Key as i32,
        source: CaseSource::Outreach as i32,
        opened_on: on.into(),
        ..CaseOpened::default()
    })
}

async fn sync(hub: &Hub, agent: &Arc<Agent>, token: &str) -> SyncReport {
    sync_once(
        Arc::clone(agent),
        &SyncOptions::new(hub.url(), Some(token.to_string())),
    )
    .await
    .unwrap()
}

fn open_cases(projections: &Projections) -> (u32, u32) {
    let caseload = projections
        .caseload(&[ZEDANG.to_string(), CHANGZHU.to_string()])
        .unwrap();
    (
        caseload.stations[0].open_cases,
        caseload.stations[1].open_cases,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stations_opening_one_person_offline_are_listed_warned_and_resolved() {
    let hub = Hub::start().await;
    let token_zd = hub.device_token(ZEDANG, "泽当-1");
    let token_cz = hub.device_token(CHANGZHU, "昌珠-1");
    let bureau = hub.bureau_token("山南市民政局");
    let (dir_zd, dir_cz) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let zedang = device(dir_zd.path(), ZEDANG, "zd-01");
    let changzhu = device(dir_cz.path(), CHANGZHU, "cz-01");

    // Both open the person's file offline: neither holds the directory yet.
    let earlier = zedang
        .record(opening("540502001003", "2026-11-02"))
        .unwrap()
        .event_id;
    let later = changzhu
        .record(opening("540502101201", "2026-11-20"))
        .unwrap()
        .event_id;
    sync(&hub, &zedang, &token_zd).await;
    sync(&hub, &changzhu, &token_cz).await;
    hub.projected().await;

    // The bureau's list: the later file against the earlier one, each with
    // its station, never the person.
    let listed = hub
        .query()
        .get_duplicates(authorized(
            GetDuplicatesRequest { stations: vec![] },
            &bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.files.len(), 1, "{listed:?}");
    let pair = &listed.files[0];
    assert_eq!(pair.station_code, CHANGZHU);
    assert_eq!(pair.case_id, later.as_bytes());
    assert_eq!(pair.opened_on, "2026-11-20");
    assert_eq!(pair.duplicate_of, earlier.as_bytes());
    assert_eq!(pair.duplicate_of_station_code, ZEDANG);
    assert_eq!(pair.duplicate_of_opened_on, "2026-11-02");
    assert_eq!(
        pair.resolution,
        station_proto::v1::DuplicateResolution::Open as i32
    );
    let reply = hub.get_as("/api/duplicates", &bureau).await;
    let json = reply.json();
    assert_eq!(
        json["files"][0]["duplicate_of_station_code"], ZEDANG,
        "{json}"
    );
    assert_eq!(json["files"][0]["station_code"], CHANGZHU, "{json}");
    assert_eq!(json["files"][0]["resolution"], "open", "{json}");
    let page = hub.get_as("/", &bureau).await;
    assert_eq!(page.status, 200);
    let html = page.text();
    let table = html
        .split("<table class=\"duplicates\">")
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .expect("the dashboard lists the pair")
        .to_string();
    assert!(table.contains("data-across=\"true\""), "{table}");
    assert!(table.contains("泽当街道（跨站，疑似重复）"), "{table}");
    for text in [reply.text(), table] {
        assert!(!text.contains(PERSON) && !text.contains("次仁"), "{text}");
    }
    // A possible duplicate across stations is not a flagged file: each
    // station counts its own until the pair is resolved.
    assert_eq!(open_cases(&hub.projections), (1, 1));

    // Once the directory reached them, each phone is warned of the other
    // station's file, offline.
    sync(&hub, &zedang, &token_zd).await;
    sync(&hub, &changzhu, &token_cz).await;
    let warned = |agent: &Agent| -> Vec<String> {
        agent
            .held_elsewhere(PERSON)
            .unwrap()
            .into_iter()
            .map(|h| h.station_name)
            .collect()
    };
    assert_eq!(warned(&zedang), ["昌珠镇"]);
    assert_eq!(warned(&changzhu), ["泽当街道"]);

    // 昌珠镇 closes its file, which 泽当街道 keeps: the pair leaves the
    // list, the person counts once, and the directory no longer warns.
    changzhu
        .record(Body::CaseClosed(CaseClosed {
            case_id: later.as_bytes().to_vec(),
            reason: "与泽当街道档案重复".into(),
            closed_on: "2026-11-21".into(),
        }))
        .unwrap();
    sync(&hub, &changzhu, &token_cz).await;
    hub.projected().await;
    let listed = hub
        .query()
        .get_duplicates(authorized(
            GetDuplicatesRequest { stations: vec![] },
            &bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.files.is_empty(), "{listed:?}");
    assert_eq!(open_cases(&hub.projections), (1, 0));
    sync(&hub, &zedang, &token_zd).await;
    assert!(warned(&zedang).is_empty());
    hub.stop().await;
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
}

fn push(store: &HubStore, events: &[station_proto::Event]) {
    let outcome = store
        .push(events.to_vec(), today(), EPOCH_MS + 400 * 86_400_000)
        .unwrap();
    assert_eq!(
        outcome.quarantined,
        0,
        "{outcome:?} {:?}",
        store.quarantine().ok()
    );
}

fn across(projections: &Projections) -> Vec<(Uuid, Uuid, DuplicateResolution)> {
    projections
        .duplicates(&[ZEDANG.to_string(), CHANGZHU.to_string()])
        .unwrap()
        .files
        .into_iter()
        .filter(|f| f.station_code != f.duplicate_of_station_code)
        .map(|f| (f.case_id, f.duplicate_of, f.resolution))
        .collect()
}

/// The pair through the log: a dismissal by the later file's station shows
/// it dismissed (and its void brings it back); a transfer of the later file
/// to the earlier file's station takes it off the list of pairs across
/// stations (both files are then that station's).
#[test]
fn a_pair_across_stations_is_dismissed_or_leaves_the_list_with_a_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(HubStore::open(dir.path(), 16 * 1024 * 1024).unwrap());
    let projections =
        Projections::open(Arc::clone(&store), Arc::new(HubConfig::builtin().unwrap())).unwrap();
    let (mut zd, mut cz) = (Device::new(ZEDANG, "zd-01"), Device::new(CHANGZHU, "cz-01"));
    let first = zd.record(opened(
        "卓玛",
        2,
        C1,
        Tier::Key,
        &[Category::Elderly],
        "2025-03-01",
    ));
    let second = cz.record(opened(
        "卓玛",
        2,
        "540502101201",
        Tier::Key,
        &[Category::Elderly],
        "2025-03-04",
    ));
    push(&store, std::slice::from_ref(&first));
    push(&store, std::slice::from_ref(&second));
    projections.catch_up().unwrap();
    let (first, second) = (id_of(&first), id_of(&second));
    assert_eq!(
        across(&projections),
        [(second, first, DuplicateResolution::Open)]
    );
    // Listed under the later file's station only.
    assert!(
        projections
            .duplicates(&[ZEDANG.to_string()])
            .unwrap()
            .files
            .is_empty()
    );

    let dismissal = cz.record(dismissed(second, first, "2025-03-05"));
    push(&store, std::slice::from_ref(&dismissal));
    projections.catch_up().unwrap();
    assert_eq!(
        across(&projections),
        [(second, first, DuplicateResolution::Dismissed)]
    );
    push(&store, &[cz.record(void(id_of(&dismissal)))]);
    projections.catch_up().unwrap();
    assert_eq!(
        across(&projections),
        [(second, first, DuplicateResolution::Open)]
    );
    assert_eq!(open_cases(&projections), (1, 1));

    let request = cz.record(transfer_requested(second, ZEDANG, "2025-03-06"));
    push(&store, std::slice::from_ref(&request));
    let accepted = zd.record_after(
        request.hlc,
        transfer_accepted(second, id_of(&request), C1, "2025-03-07"),
    );
    push(&store, &[accepted]);
    projections.catch_up().unwrap();
    assert!(
        across(&projections).is_empty(),
        "both files at one station: a pair of the station's own"
    );
    assert_eq!(open_cases(&projections), (2, 0));
}
