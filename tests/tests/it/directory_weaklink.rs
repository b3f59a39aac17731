//! The district directory's delta over a weak link: a phone that never
//! synced pulls a directory of thousands of open files of other stations
//! through a 2G-like link that keeps cutting; it stores each page it
//! received, resumes after the last one stored once the link is back, and
//! at the end the phone's copy equals the hub's: the same lines, the same
//! cursor, and every person found at the station that holds the file.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use station_agent::sync::{SyncOptions, sync_once};
use station_hub::config::HubConfig;
use station_hub::projections::Projections;
use station_hub::server::ServerOptions;
use station_hub::store::HubStore;
use station_proto::ids::Uuid;
use station_proto::v1::{CaseOpened, CaseSource, Category, Gender, Tier};
use station_proto::{Body, Event};
use station_sim::weaklink::{LinkProfile, WeakLink};
use tokio::sync::oneshot;

use crate::fixtures::new_device;

/// The phone's station, which holds none of the files.
const PHONE_STATION: &str = "540502001";
/// Stations holding the files, with a community of each, and their names.
const HOLDERS: [(&str, &str, &str); 2] = [
    ("540502101", "540502101201", "昌珠镇"),
    ("540502200", "540502200201", "亚堆乡"),
];
/// Open files per holding station.
const FILES_PER_STATION: usize = 4_000;

/// The ID numbers of `n` people, distinct, each with the GB 11643 check
/// character, and the birth date and gender they carry.
fn people(n: usize, first: usize) -> Vec<(String, String, Gender)> {
    (first..first + n)
        .map(|i| {
            let birth = format!(
                "{}{:02}{:02}",
                1940 + i / 336 % 60,
                1 + i / 28 % 12,
                1 + i % 28
            );
            let serial = (i / 20_160) % 500 * 2 + 1;
            let number = station_proto::id_number::with_check_character(&format!(
                "540502{birth}{serial:03}"
            ))
            .unwrap();
            let date = format!("{}-{}-{}", &birth[..4], &birth[4..6], &birth[6..]);
            (number, date, Gender::Male)
        })
        .collect()
}

/// The openings of `people` at `station`, as one device of it recorded
/// them yesterday.
fn openings(station: &str, community: &str, people: &[(String, String, Gender)]) -> Vec<Event> {
    let origin = Uuid::now_v7();
    let yesterday = station_agent::engine::now_ms() - 86_400_000;
    let opened_on = station_hub::projections::date_in_china(yesterday).to_string();
    people
        .iter()
        .enumerate()
        .map(|(i, (number, birth, gender))| Event {
            event_id: Uuid::now_v7().as_bytes().to_vec(),
            origin_id: origin.as_bytes().to_vec(),
            origin_seq: i as u64 + 1,
            station_code: station.into(),
            author: "worker".into(),
            recorded_at_ms: yesterday,
            hlc: ((yesterday as u64) << 16) + i as u64,
            body: Some(Body::CaseOpened(CaseOpened {
                name: format!("户主 {i}"),
                id_number: number.clone(),
                gender: *gender as i32,
                birth_date: birth.clone(),
                community_code: community.into(),
                categories: vec![Category::Elderly as i32],
                tier: Tier::General as i32,
                source: CaseSource::Outreach as i32,
                opened_on: opened_on.clone(),
                ..CaseOpened::default()
            })),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_reaches_a_phone_over_a_cutting_2g_link_and_equals_the_hubs() {
    let hub_dir = tempfile::tempdir().unwrap();
    let store = Arc::new(HubStore::open(hub_dir.path(), 32 * 1024 * 1024).unwrap());
    let today = station_hub::projections::today_in_china();
    let mut everyone = Vec::new();
    for (n, (station, community, name)) in HOLDERS.iter().enumerate() {
        let people = people(FILES_PER_STATION, n * FILES_PER_STATION);
        for chunk in openings(station, community, &people).chunks(500) {
            let outcome = store
                .push(chunk.to_vec(), today, station_agent::engine::now_ms())
                .unwrap();
            assert_eq!(outcome.quarantined, 0, "{outcome:?}");
        }
        everyone.extend(people.into_iter().map(|(number, _, _)| (number, *name)));
    }
    let projections = Arc::new(
        Projections::open(Arc::clone(&store), Arc::new(HubConfig::builtin().unwrap())).unwrap(),
    );
    projections.catch_up().unwrap();
    let hubs = projections.directory_delta(&[], 0, usize::MAX).unwrap();
    // Two lines per open file: its ID number's and its weak tag's.
    assert_eq!(hubs.changes.len(), 2 * HOLDERS.len() * FILES_PER_STATION);
    assert!(hubs.changes.iter().all(|line| line.present));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub_addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(station_hub::serve::serve_projections(
        listener,
        Arc::clone(&projections),
        ServerOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let token = station_hub::auth::enroll_device(&store, PHONE_STATION, "泽当-1")
        .unwrap()
        .bearer;
    let phone_dir = tempfile::tempdir().unwrap();
    let phone = Arc::new(new_device(phone_dir.path(), PHONE_STATION, "zd-01"));

    // 256 kbit/s down, 150 ms each way, and the whole link cut every 2.5 s:
    // the directory needs several connections.
    let link = WeakLink::start(
        hub_addr,
        LinkProfile {
            cut_every: None,
            stall_every: None,
            seed: 19,
            ..LinkProfile::mobile_2g()
        },
    )
    .await
    .unwrap();
    let control = link.control();
    let cutter = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(2_500)).await;
            control.cut_all();
        }
    });
    let mut options = SyncOptions::new(format!("http://{}", link.local_addr()), Some(token));
    // Pages of at most 64 KiB, as a phone on 2G asks for: the directory
    // takes several, and a cut loses at most the page on the air.
    options.batch_bytes = 64 * 1024;
    // Rounds until the phone holds the whole feed; within a round the
    // agent retries what a cut broke and goes on after the last page it
    // stored, so the cuts show as retries.
    let mut rounds = 0;
    let mut retries = 0;
    loop {
        rounds += 1;
        assert!(rounds < 50, "the directory never arrived");
        match sync_once(Arc::clone(&phone), &options).await {
            Ok(report) => {
                retries += report.retries;
                if report.directory_cursor == hubs.head {
                    break;
                }
            }
            Err(e) if e.is_retriable() => retries += 1,
            Err(e) => panic!("permanent sync failure: {e}"),
        }
    }
    cutter.abort();
    let counters = link.counters();
    assert!(
        counters.cuts > 0 && retries > 0,
        "{counters:?}, {retries} retries"
    );

    // The phone's copy is the hub's: as many lines, the same cursor, and
    // each person held where the hub says.
    let status = phone.log().directory_status().unwrap();
    assert!(status.has_key);
    assert_eq!(status.lines, hubs.changes.len());
    assert_eq!(status.cursor, hubs.head);
    for (number, station) in &everyone {
        let held: Vec<String> = phone
            .held_elsewhere(number)
            .unwrap()
            .into_iter()
            .map(|h| h.station_name)
            .collect();
        assert_eq!(held, [*station], "{number}");
    }
    eprintln!(
        "directory of {} lines over the weak link: {} rounds, {} retries, {} cuts, {} bytes down",
        status.lines, rounds, retries, counters.cuts, counters.down_bytes
    );
    link.shutdown().await;
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
