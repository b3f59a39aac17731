//! The district directory: a projection of the open files as (directory
//! tag, station), its delta feed as a device follows it (pages, cursors,
//! closures, reopenings, duplicates, merges, a rebuild's new epoch), and
//! how the Sync service hands out its key and its pages.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::events::*;
use crate::fixtures::{Hub, authorized, device, hello};
use chrono::NaiveDate;
use station_agent::Agent;
use station_agent::AgentError;
use station_agent::sync::{SyncOptions, SyncReport, sync_once};
use station_hub::config::HubConfig;
use station_hub::projections::{DirectoryDelta, Projections};
use station_hub::store::HubStore;
use station_proto::directory::{self, DirectoryTag};
use station_proto::ids::Uuid;
use station_proto::v1::sync_client::SyncClient;
use station_proto::v1::{CaseOpened, CaseSource, Category, Gender, PullRequest, Tier};
use station_proto::{Body, Event};

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

/// A device's copy of the directory and where it stands in the feed.
#[derive(Debug, Default)]
struct Copy {
    epoch: Vec<u8>,
    cursor: u64,
    lines: BTreeSet<(DirectoryTag, String)>,
    resets: usize,
}

impl Copy {
    fn apply(&mut self, delta: DirectoryDelta) -> bool {
        if delta.reset {
            self.lines.clear();
            self.resets += 1;
        }
        for change in delta.changes {
            let line = (change.tag, change.station_code);
            if change.present {
                self.lines.insert(line);
            } else {
                self.lines.remove(&line);
            }
        }
        self.epoch = delta.epoch;
        self.cursor = delta.next_cursor;
        self.cursor == delta.head
    }

    /// Pulls pages of `page` lines until caught up.
    fn follow(&mut self, p: &Projections, page: usize) {
        for _ in 0..10_000 {
            let delta = p.directory_delta(&self.epoch, self.cursor, page).unwrap();
            assert!(delta.changes.len() <= page);
            if self.apply(delta) {
                return;
            }
        }
        panic!("the feed never ended");
    }
}

/// The directory tags of an opening: its ID number's and its weak tag.
fn tags_of(key: &station_proto::person::TagKey, opening: &Event) -> Vec<DirectoryTag> {
    match &opening.body {
        Some(Body::CaseOpened(m)) => directory::tags_of(key, m),
        _ => panic!("not an opening"),
    }
}

fn number_of(opening: &Event) -> String {
    match &opening.body {
        Some(Body::CaseOpened(m)) => m.id_number.clone(),
        _ => panic!("not an opening"),
    }
}

#[test]
fn the_directory_lists_each_persons_open_files_by_station_and_follows_closures_merges_and_rebuilds()
{
    let dir = tempfile::tempdir().unwrap();
    let (store, p) = open(dir.path());
    let key = store.directory_key();
    let tag = |e: &Event| directory::tag(&key, &number_of(e));
    let mut zedang = Device::new(ZEDANG, "卓玛");
    let mut zedang2 = Device::new(ZEDANG, "扎西");
    let mut changzhu = Device::new(CHANGZHU, "次仁");
    let community = format!("{ZEDANG}001");
    let at_changzhu = format!("{CHANGZHU}201");
    let a = zedang.record(opened(
        "卓嘎",
        1,
        &community,
        Tier::Key,
        &[Category::Elderly],
        "2025-01-02",
    ));
    let b = changzhu.record(opened(
        "拉姆",
        2,
        &at_changzhu,
        Tier::Key,
        &[Category::Elderly],
        "2025-01-02",
    ));
    // The same person as `a`, at the other station.
    let a_elsewhere = changzhu.record(opened(
        "卓嘎",
        1,
        &at_changzhu,
        Tier::Key,
        &[Category::Elderly],
        "2025-01-03",
    ));
    push(&store, std::slice::from_ref(&a));
    push(&store, &[b.clone(), a_elsewhere.clone()]);
    p.catch_up().unwrap();
    let mut copy = Copy::default();
    copy.follow(&p, 1);
    // Each open file has two lines: its ID number's and its weak tag's.
    let expected = |lines: &[(&Event, &str)]| -> BTreeSet<(DirectoryTag, String)> {
        lines
            .iter()
            .flat_map(|(e, s)| tags_of(&key, e).into_iter().map(|t| (t, s.to_string())))
            .collect()
    };
    assert_eq!(
        copy.lines,
        expected(&[(&a, ZEDANG), (&b, CHANGZHU), (&a_elsewhere, CHANGZHU)])
    );
    assert_eq!(tag(&a), tag(&a_elsewhere), "one person, one tag");
    assert_eq!(copy.epoch.len(), 16);
    let first_epoch = copy.epoch.clone();
    // Nothing new: an empty page at the head.
    let idle = p.directory_delta(&copy.epoch, copy.cursor, 100).unwrap();
    assert!(idle.changes.is_empty() && !idle.reset);
    assert_eq!(idle.next_cursor, copy.cursor);

    // Closing at Changzhu takes that line away; Zedang's stays.
    let close = changzhu.record(closed(id_of(&a_elsewhere), "2025-02-01"));
    // A second file for `a` at Zedang from an offline phone is a duplicate:
    // the line counts it once, and its merge changes nothing.
    let dup = zedang2.record(opened(
        "卓嘎",
        1,
        &community,
        Tier::Key,
        &[Category::Elderly],
        "2025-01-05",
    ));
    push(&store, std::slice::from_ref(&close));
    push(&store, std::slice::from_ref(&dup));
    p.catch_up().unwrap();
    let before = copy.cursor;
    copy.follow(&p, 1);
    assert!(copy.cursor > before);
    assert_eq!(copy.lines, expected(&[(&a, ZEDANG), (&b, CHANGZHU)]));
    let merge = zedang.record(merged(id_of(&a), id_of(&dup), "2025-02-02"));
    push(&store, &[merge]);
    p.catch_up().unwrap();
    copy.follow(&p, 3);
    assert_eq!(copy.lines, expected(&[(&a, ZEDANG), (&b, CHANGZHU)]));

    // Reopened at Changzhu, closed at Zedang.
    let reopen = changzhu.record(reopened(id_of(&a_elsewhere), "2025-03-01"));
    let close_a = zedang.record(closed(id_of(&a), "2025-03-02"));
    push(&store, &[reopen]);
    push(&store, std::slice::from_ref(&close_a));
    p.apply_next(u64::MAX, 1).unwrap();
    copy.follow(&p, 2);
    assert_eq!(
        copy.lines,
        expected(&[(&a, ZEDANG), (&b, CHANGZHU), (&a_elsewhere, CHANGZHU)])
    );
    p.catch_up().unwrap();
    copy.follow(&p, 2);
    let now = expected(&[(&b, CHANGZHU), (&a_elsewhere, CHANGZHU)]);
    assert_eq!(copy.lines, now);
    // A void of the closure opens the file again.
    let undo = zedang.record(void(id_of(&close_a)));
    push(&store, &[undo]);
    p.catch_up().unwrap();
    copy.follow(&p, 2);
    let now = expected(&[(&a, ZEDANG), (&b, CHANGZHU), (&a_elsewhere, CHANGZHU)]);
    assert_eq!(copy.lines, now);

    // A fresh device pulls the same directory; so does one that pulled in
    // pages of one line.
    let mut fresh = Copy::default();
    fresh.follow(&p, 1_000);
    assert_eq!(fresh.lines, now);
    assert_eq!(fresh.resets, 1);

    // A rebuild starts another epoch: the copy is replaced whole, and ends
    // the same.
    p.rebuild().unwrap();
    copy.follow(&p, 2);
    assert_ne!(copy.epoch, first_epoch);
    assert_eq!(copy.resets, 2);
    assert_eq!(copy.lines, now);
    // And a restart over the rebuilt tree keeps the epoch and the feed.
    let (epoch, cursor) = (copy.epoch.clone(), copy.cursor);
    drop(p);
    store.sync().unwrap();
    drop(store);
    let (_store, p) = open(dir.path());
    let idle = p.directory_delta(&epoch, cursor, 10).unwrap();
    assert!(!idle.reset && idle.changes.is_empty(), "{idle:?}");
}

#[tokio::test]
async fn devices_get_the_directory_key_at_hello_and_a_page_of_the_directory_with_each_pull() {
    let hub = Hub::start().await;
    let token = hub.device_token(ZEDANG, "phone-1");
    let origin = Uuid::now_v7();
    let mut client = SyncClient::new(hub.channel.clone());
    let answer = client
        .hello(authorized(hello(origin, ZEDANG), &token))
        .await
        .unwrap()
        .into_inner();
    let key = hub.store.directory_key();
    assert_eq!(answer.directory_key, key.secret_bytes().to_vec());
    // The key is the directory's own, not the district secret's other keys.
    assert_ne!(
        answer.directory_key.as_slice(),
        hub.store.projection_tag_key().secret_bytes()
    );

    let other = hub.device_token(CHANGZHU, "phone-2");
    let mut changzhu = Device::new(CHANGZHU, "次仁");
    let opening = changzhu.record(opened(
        "拉姆",
        7,
        &format!("{CHANGZHU}201"),
        Tier::Key,
        &[Category::Elderly],
        "2025-01-02",
    ));
    assert_eq!(hub.push(&other, std::slice::from_ref(&opening)).await, 0);
    hub.projected().await;

    let pull = |after: Option<u64>, epoch: Vec<u8>| PullRequest {
        station_code: ZEDANG.into(),
        max_events: 100,
        directory_after: after,
        directory_epoch: epoch,
        ..PullRequest::default()
    };
    // Without asking, no directory.
    let page = client
        .pull(authorized(pull(None, Vec::new()), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(page.directory.is_none());
    let page = client
        .pull(authorized(pull(Some(0), Vec::new()), &token))
        .await
        .unwrap()
        .into_inner();
    let directory = page.directory.unwrap();
    assert!(directory.reset);
    // The ID number's line and the weak one, of name, birth date and gender.
    assert_eq!(directory.lines.len(), 2);
    let tags: BTreeSet<Vec<u8>> = directory.lines.iter().map(|l| l.tag.clone()).collect();
    assert!(tags.contains(directory::tag(&key, &number_of(&opening)).as_slice()));
    assert_eq!(
        tags,
        tags_of(&key, &opening)
            .iter()
            .map(|t| t.to_vec())
            .collect::<BTreeSet<_>>()
    );
    for line in &directory.lines {
        assert_eq!(line.station_code, CHANGZHU);
        assert!(line.present);
    }
    assert_eq!(directory.next_cursor, directory.head);
    assert_eq!(directory.stations.len(), 1);
    assert_eq!(directory.stations[0].station_code, CHANGZHU);
    assert_eq!(directory.stations[0].name, "昌珠镇");
    // Caught up: nothing more, same epoch.
    let again = client
        .pull(authorized(
            pull(Some(directory.next_cursor), directory.epoch.clone()),
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .directory
        .unwrap();
    assert!(!again.reset && again.lines.is_empty());

    // The bureau reads no directory, and gets no key.
    let bureau = hub.bureau_token("民政局");
    let page = client
        .pull(authorized(
            PullRequest {
                station_code: CHANGZHU.into(),
                directory_after: Some(0),
                ..PullRequest::default()
            },
            &bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(page.directory.is_none());
    hub.stop().await;
}

fn day() -> String {
    station_hub::projections::today_in_china()
        .format("%Y-%m-%d")
        .to_string()
}

/// An opening at `station` for the person of serial 3.
fn opening_at(station: &str, reason: &str) -> Body {
    Body::CaseOpened(CaseOpened {
        name: "次仁 ཚེ་རིང".into(),
        id_number: id_number("19500101", 3, true),
        gender: Gender::Female as i32,
        birth_date: "1950-01-01".into(),
        community_code: if station == ZEDANG {
            format!("{station}002")
        } else {
            format!("{station}201")
        },
        language: "bo".into(),
        categories: vec![Category::Elderly as i32],
        tier: Tier::Key as i32,
        source: CaseSource::Outreach as i32,
        opened_on: day(),
        duplicate_reason: reason.into(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_of_another_station_is_warned_offline_once_the_directory_reached_it() {
    let hub = Hub::start().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let zedang = device(dir_a.path(), ZEDANG, "卓玛");
    let changzhu = device(dir_b.path(), CHANGZHU, "次仁");
    let (token_a, token_b) = (
        hub.device_token(ZEDANG, "phone-a"),
        hub.device_token(CHANGZHU, "phone-b"),
    );
    // B syncs first: it holds the key, and an empty directory.
    let first = sync(&hub, &changzhu, &token_b).await;
    assert_eq!(first.directory_lines, 0);
    assert!(changzhu.log().keeps_directory().unwrap());

    let held = zedang.record(opening_at(ZEDANG, "")).unwrap();
    sync(&hub, &zedang, &token_a).await;
    hub.projected().await;
    let id = id_number("19500101", 3, true);
    // Before the directory reaches B, B knows nothing of it.
    assert!(changzhu.held_elsewhere(&id).unwrap().is_empty());
    let report = sync(&hub, &changzhu, &token_b).await;
    // The ID number's line and the weak one.
    assert_eq!(report.directory_lines, 2);
    assert!(report.directory_cursor > 0);

    // Offline from here on: the hub is gone.
    hub.stop().await;
    let holders = changzhu.held_elsewhere(&id).unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].station_code, ZEDANG);
    assert_eq!(holders[0].station_name, "泽当街道");
    let refused = changzhu.record(opening_at(CHANGZHU, "")).unwrap_err();
    match &refused {
        AgentError::HeldAtAnotherStation { field, stations } => {
            assert_eq!(field, "case_opened.id_number");
            assert_eq!(stations, &["泽当街道".to_string()]);
        }
        other => panic!("expected a warning, got {other:?}"),
    }
    let message = refused.to_string();
    assert!(message.contains("泽当街道"), "{message}");
    assert!(!message.contains(&id), "the warning names no ID number");
    assert!(changzhu.cases().unwrap().is_empty(), "nothing recorded");
    // Confirmed with a reason, it is recorded with the reason and the
    // station the directory named.
    let reason = "全家迁入昌珠镇，已请泽当街道转出";
    let opened = changzhu.record(opening_at(CHANGZHU, reason)).unwrap();
    let event = changzhu.log().event(opened.event_id).unwrap().unwrap();
    match event.body {
        Some(Body::CaseOpened(m)) => {
            assert_eq!(m.duplicate_reason, reason);
            assert_eq!(m.duplicate_of_stations, vec![ZEDANG.to_string()]);
        }
        other => panic!("not an opening: {other:?}"),
    }
    // A's own station's refusal is untouched: a second file at A is refused
    // as before, reason or not.
    let again = zedang.record(opening_at(ZEDANG, reason)).unwrap_err();
    assert!(
        matches!(again, AgentError::PersonHasOpenFile { case_id, .. } if case_id == held.event_id)
    );
}

/// An opening at `station` of a person known by name, birth date and
/// gender, with `id_number` (empty: none).
fn person_at(station: &str, name: &str, birth_date: &str, id_number: &str) -> CaseOpened {
    let Body::CaseOpened(mut m) = opening_at(station, "") else {
        unreachable!("opening_at makes an opening")
    };
    m.name = name.into();
    m.birth_date = birth_date.into();
    m.id_number = id_number.into();
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_without_an_id_number_is_a_possible_duplicate_across_stations_never_refused() {
    let hub = Hub::start().await;
    let (dir_a, dir_b, dir_c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let zedang = device(dir_a.path(), ZEDANG, "卓玛");
    let zedang2 = device(dir_c.path(), ZEDANG, "扎西");
    let changzhu = device(dir_b.path(), CHANGZHU, "次仁");
    let (token_a, token_b, token_c) = (
        hub.device_token(ZEDANG, "phone-a"),
        hub.device_token(CHANGZHU, "phone-b"),
        hub.device_token(ZEDANG, "phone-c"),
    );
    // Zedang opens a file for a child without an ID card, and one for an
    // elder with an ID number.
    let child = person_at(ZEDANG, "扎西·次仁", "2019-06-01", "");
    zedang.record(Body::CaseOpened(child.clone())).unwrap();
    let elder_number = id_number("19500101", 3, true);
    let elder = person_at(ZEDANG, "次仁 ཚེ་རིང", "1950-01-01", &elder_number);
    zedang.record(Body::CaseOpened(elder.clone())).unwrap();
    // A second child without a card at the same station, another birth
    // date: no number compares them, so no refusal and no warning.
    let sibling = person_at(ZEDANG, "扎西·次仁", "2020-06-01", "");
    assert!(zedang.possible_duplicates(&sibling).unwrap().is_empty());
    zedang.record(Body::CaseOpened(sibling)).unwrap();
    // The same child again on this phone: a possible duplicate at its own
    // station, warned and not refused.
    let own = zedang.possible_duplicates(&child).unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].station_code, ZEDANG);
    sync(&hub, &zedang, &token_a).await;
    hub.projected().await;
    sync(&hub, &changzhu, &token_b).await;
    sync(&hub, &zedang2, &token_c).await;

    // Offline from here on.
    hub.stop().await;
    // Changzhu: the child, written another way, is a possible duplicate at
    // Zedang; the directory names the station, never the child.
    let again = person_at(CHANGZHU, "扎西 次仁", "2019-06-01", "");
    let holders = changzhu.possible_duplicates(&again).unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].station_code, ZEDANG);
    assert_eq!(holders[0].station_name, "泽当街道");
    // Not refused, and no reason asked: a possible duplicate only.
    let opened = changzhu.record(Body::CaseOpened(again)).unwrap();
    let event = changzhu.log().event(opened.event_id).unwrap().unwrap();
    match event.body {
        Some(Body::CaseOpened(m)) => {
            assert!(m.id_number.is_empty());
            assert!(m.duplicate_of_stations.is_empty() && m.duplicate_reason.is_empty());
        }
        other => panic!("not an opening: {other:?}"),
    }
    // Another person of that name, born another day: no warning.
    let other = person_at(CHANGZHU, "扎西次仁", "2019-06-02", "");
    assert!(changzhu.possible_duplicates(&other).unwrap().is_empty());
    // The elder held at Zedang with an ID number, opened at Changzhu
    // without one: a possible duplicate, by name, birth date and gender.
    let elder_no_card = person_at(CHANGZHU, "次仁ཚེ་རིང", "1950-01-01", "");
    let holders = changzhu.possible_duplicates(&elder_no_card).unwrap();
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].station_code, ZEDANG);
    // With the ID number the stronger rule holds: refused without a reason.
    let elder_here = person_at(CHANGZHU, "次仁 ཚེ་རིང", "1950-01-01", &elder_number);
    assert!(matches!(
        changzhu.record(Body::CaseOpened(elder_here)).unwrap_err(),
        AgentError::HeldAtAnotherStation { .. }
    ));
    // Zedang's other phone learnt its colleague's files through the pull:
    // the child is a possible duplicate at its own station.
    let holders = zedang2.possible_duplicates(&child).unwrap();
    assert_eq!(
        holders
            .iter()
            .map(|h| h.station_code.as_str())
            .collect::<Vec<_>>(),
        [ZEDANG]
    );
}
