//! The Sync service end to end: a real hub on an ephemeral port, real agents
//! with their sled logs, one sync round at a time.

use std::sync::Arc;

use crate::fixtures::{Hub, activity, authorized, device, hello};
use station_agent::Agent;
use station_agent::sync::{SyncOptions, sync_once};
use station_hub::auth;
use station_hub::server::ServerOptions;
use station_hub::store::HubStore;
use station_proto::Body;
use station_proto::ids::Uuid;
use station_proto::v1::{
    CaseOpened, CaseSource, Category, Gender, HelloRequest, PullRequest, PushRequest, Tier,
    VisitKind, VisitRecorded,
};
use tokio::sync::oneshot;

fn case(station: &str) -> Body {
    Body::CaseOpened(CaseOpened {
        name: "尼玛 ཉི་མ".into(),
        id_number: "11010519491231002X".into(),
        gender: Gender::Female as i32,
        birth_date: "1949-12-31".into(),
        community_code: format!("{station}002"),
        address: String::new(),
        phone: String::new(),
        language: "bo".into(),
        categories: vec![Category::Tekun as i32],
        tier: Tier::HighRisk as i32,
        source: CaseSource::Request as i32,
        opened_on: "2026-11-01".into(),
        file_number: String::new(),
        duplicate_reason: String::new(),
        duplicate_of_stations: Vec::new(),
    })
}

fn station_ids(agent: &Agent) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = agent
        .own_events(0, usize::MAX)
        .unwrap()
        .into_iter()
        .chain(
            agent
                .log()
                .pulled_events(0, usize::MAX)
                .unwrap()
                .into_iter()
                .map(|(_, e)| e),
        )
        .map(|e| Uuid::from_slice(&e.event_id).unwrap())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_of_a_station_converge_through_the_hub() {
    let hub = Hub::start().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = device(dirs[0].path(), "540502001", "zd-1");
    let b = device(dirs[1].path(), "540502001", "zd-2");
    let other = device(dirs[2].path(), "540502101", "cz-1");

    let case_id = a.record(case("540502001")).unwrap().event_id;
    for n in 1..=30 {
        a.record(activity("540502001", n)).unwrap();
        b.record(activity("540502001", n)).unwrap();
        other.record(activity("540502101", n)).unwrap();
    }
    // One device token each, found by the device's station and worker.
    let tokens: std::collections::BTreeMap<_, _> = [&a, &b, &other]
        .into_iter()
        .map(|d| {
            let identity = d.identity();
            let token = hub.device_token(&identity.station_code, &identity.worker_id);
            (identity.origin_id, token)
        })
        .collect();
    let options = |agent: &Agent| {
        let token = tokens.get(&agent.identity().origin_id).cloned();
        let mut o = SyncOptions::new(hub.url(), token);
        o.batch_bytes = 1024; // several batches per round
        o.pull_events = 7; // several pages per round
        o
    };

    let ra = sync_once(Arc::clone(&a), &options(&a)).await.unwrap();
    assert_eq!((ra.pushed, ra.durable_through), (31, 31));
    assert!(ra.batches > 1);
    let rb = sync_once(Arc::clone(&b), &options(&b)).await.unwrap();
    assert_eq!(rb.pulled, 31, "b receives a's events");
    sync_once(Arc::clone(&other), &options(&other))
        .await
        .unwrap();
    let ra = sync_once(Arc::clone(&a), &options(&a)).await.unwrap();
    assert_eq!((ra.pushed, ra.pulled), (0, 30), "a receives b's events");

    // The hub holds every event exactly once.
    assert_eq!(hub.store.event_count(), 31 + 30 + 30);
    for agent in [&a, &b, &other] {
        let origin = hub.store.origin(agent.identity().origin_id).unwrap();
        assert_eq!(origin.durable_through, agent.log().head_seq());
        assert_eq!(agent.status().unwrap().pending, 0);
    }
    // Both devices of the station hold the station's whole stream, nothing else.
    assert_eq!(station_ids(&a), station_ids(&b));
    assert_eq!(station_ids(&a).len(), 61);
    assert_eq!(station_ids(&other).len(), 30);

    // b can follow up a case opened on a's phone.
    b.record(Body::VisitRecorded(VisitRecorded {
        case_id: case_id.as_bytes().to_vec(),
        visit_date: "2026-11-25".into(),
        kind: VisitKind::Home as i32,
        duration_minutes: 30,
        notes: String::new(),
        needs_found: vec![],
    }))
    .unwrap();
    sync_once(Arc::clone(&b), &options(&b)).await.unwrap();
    sync_once(Arc::clone(&a), &options(&a)).await.unwrap();
    let seen_by_a = a.case(case_id).unwrap().unwrap();
    assert_eq!(seen_by_a.visits, 1);

    // Another round changes nothing.
    let again = sync_once(Arc::clone(&a), &options(&a)).await.unwrap();
    assert_eq!((again.pushed, again.pulled), (0, 0));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_refuses_gaps_ignores_resends_and_quarantines_invalid_bodies() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = device(dir.path(), "540502001", "zd-1");
    for n in 1..=5 {
        agent.record(activity("540502001", n)).unwrap();
    }
    let events = agent.own_events(0, 10).unwrap();
    let token = hub.device_token("540502001", "zd-1");
    let mut client = station_agent::sync::connect(&SyncOptions::new(hub.url(), None))
        .await
        .unwrap();

    // A gap: seq 3 first.
    let before = hub.snapshot();
    let status = client
        .push(authorized(
            PushRequest {
                events: events[2..].to_vec(),
                heads: Vec::new(),
                ..PushRequest::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("expected origin_seq 1"),
        "{status}"
    );
    let after = hub.snapshot();
    assert_eq!((after.events, after.durable_through), (0, vec![]));
    assert_eq!(after.quarantined, before.quarantined);

    // 1..=3, then 2..=5 again: the overlap is ignored.
    let ack = client
        .push(authorized(
            PushRequest {
                events: events[..3].to_vec(),
                heads: Vec::new(),
                ..PushRequest::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.acks[0].durable_through, 3);

    // A gap after 3: refused, nothing changes.
    let before = hub.snapshot();
    let status = client
        .push(authorized(
            PushRequest {
                events: events[4..].to_vec(),
                heads: Vec::new(),
                ..PushRequest::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("expected origin_seq 4, got 5"),
        "{status}"
    );
    assert_eq!(hub.snapshot(), before);

    let ack = client
        .push(authorized(
            PushRequest {
                events: events[1..].to_vec(),
                heads: Vec::new(),
                ..PushRequest::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.acks[0].durable_through, 5);
    assert_eq!(hub.store.event_count(), 5);

    // An event that decodes but breaks a rule (an old client's, say) is acked,
    // kept in quarantine with its reason, and does not block what follows.
    let mut bad = events[4].clone();
    bad.origin_seq = 6;
    bad.event_id = Uuid::now_v7().as_bytes().to_vec();
    if let Some(Body::ActivityHeld(m)) = &mut bad.body {
        m.participants = -4;
    }
    let mut good = events[4].clone();
    good.origin_seq = 7;
    good.event_id = Uuid::now_v7().as_bytes().to_vec();
    let ack = client
        .push(authorized(
            PushRequest {
                events: vec![bad, good],
                heads: Vec::new(),
                ..PushRequest::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.acks[0].durable_through, 7);
    assert_eq!(ack.quarantined, 1);
    assert_eq!(hub.store.event_count(), 6);
    let quarantine = hub.store.quarantine().unwrap();
    assert_eq!(quarantine.len(), 1);
    assert_eq!(quarantine[0].1.origin_seq, 6);
    assert!(
        quarantine[0]
            .1
            .reason
            .contains("activity_held.participants"),
        "{}",
        quarantine[0].1.reason
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_a_hub_restart() {
    let dir = tempfile::tempdir().unwrap();
    let agent_dir = tempfile::tempdir().unwrap();
    let agent = device(agent_dir.path(), "540502001", "zd-1");
    for n in 1..=10 {
        agent.record(activity("540502001", n)).unwrap();
    }
    let token = {
        let store = HubStore::open(dir.path(), 16 * 1024 * 1024).unwrap();
        auth::enroll_device(&store, "540502001", "zd-1")
            .unwrap()
            .bearer
    };
    for round in 0..2 {
        let store = Arc::new(HubStore::open(dir.path(), 16 * 1024 * 1024).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(station_hub::serve::run(
            listener,
            Arc::clone(&store),
            async {
                let _ = stopped.await;
            },
        ));
        let report = sync_once(
            Arc::clone(&agent),
            &SyncOptions::new(url, Some(token.clone())),
        )
        .await
        .unwrap();
        assert_eq!(report.durable_through, 10 + round * 5);
        assert_eq!(store.event_count(), 10 + round * 5);
        let _ = stop.send(());
        server.await.unwrap().unwrap();
        drop(store);
        for n in 1..=5 {
            agent.record(activity("540502001", n)).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_long_polls_and_finishes_pushes_in_flight() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, events) = crate::fixtures::recorded(dir.path(), "540502001", 400);
    let token = hub.device_token("540502001", "zd-1");
    let client = hub.client().await;

    // A long poll and a push go out first on one connection; the Hello sent
    // after them on the same connection is answered only once the hub has
    // taken both in. Then the hub is told to stop.
    let (mut polling, mut pushing) = (client.clone(), client.clone());
    let long_poll = polling.pull(authorized(
        PullRequest {
            station_code: "540502001".into(),
            after: 1_000_000,
            max_events: 10,
            max_bytes: 0,
            wait_ms: 30_000,
            ..PullRequest::default()
        },
        &token,
    ));
    let push = pushing.push(authorized(
        PushRequest {
            events,
            heads: Vec::new(),
            ..PushRequest::default()
        },
        &token,
    ));
    let hello_then_stop = async {
        client
            .clone()
            .hello(authorized(
                HelloRequest {
                    origin_id: agent.identity().origin_id.as_bytes().to_vec(),
                    station_code: "540502001".into(),
                    head_seq: 400,
                    device_clock_ms: 0,
                    agent_version: "test".into(),
                    public_key: Vec::new(),
                    wiped: false,
                },
                &token,
            ))
            .await
            .unwrap();
        hub.stop().await
    };
    let (page, ack, dir) = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        tokio::join!(long_poll, push, hello_then_stop)
    })
    .await
    .expect("the hub stops without waiting out the long poll");
    assert!(page.unwrap().into_inner().events.is_empty());
    assert_eq!(ack.unwrap().into_inner().acks[0].durable_through, 400);

    let hub = Hub::start_in(dir, ServerOptions::default()).await;
    assert_eq!(hub.store.event_count(), 400);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_pulled_page_announces_its_cursor_in_its_headers() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = device(dir.path(), "540502001", "zd-1");
    for n in 1..=25 {
        a.record(activity("540502001", n)).unwrap();
    }
    let mut options = SyncOptions::new(hub.url(), Some(hub.device_token("540502001", "zd-1")));
    options.long_poll = std::time::Duration::ZERO;
    let pushed = sync_once(Arc::clone(&a), &options).await.unwrap();
    assert_eq!(pushed.durable_through, 25);

    let bureau = hub.bureau_token("山南市民政局");
    let mut client = hub.client().await;
    let mut after = 0;
    let mut pages = 0;
    while after < 25 {
        let response = client
            .pull(authorized(
                PullRequest {
                    station_code: "540502001".into(),
                    after,
                    max_events: 10,
                    ..Default::default()
                },
                &bureau,
            ))
            .await
            .unwrap();
        let announced: u64 = response
            .metadata()
            .get(station_proto::PULL_NEXT_CURSOR_HEADER)
            .expect("the page's cursor in its headers")
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let page = response.into_inner();
        assert_eq!(announced, page.next_cursor);
        assert!(page.next_cursor > after);
        after = page.next_cursor;
        pages += 1;
    }
    assert_eq!(pages, 3, "10 + 10 + 5 events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_pulled_in_large_pages_arrives_whole_and_once() {
    let hub = Hub::start().await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = device(dirs[0].path(), "540502001", "zd-1");
    let b = device(dirs[1].path(), "540502001", "zd-2");
    for n in 1..=600 {
        a.record(activity("540502001", n)).unwrap();
    }
    let options = |worker: &str| {
        let mut o = SyncOptions::new(hub.url(), Some(hub.device_token("540502001", worker)));
        o.long_poll = std::time::Duration::ZERO;
        // Pages of about 200 events: large enough to be compressed again at
        // the hub's pull level, several of them in flight.
        o.pull_events = 200;
        o
    };
    let pushed = sync_once(Arc::clone(&a), &options("zd-1")).await.unwrap();
    assert_eq!(pushed.durable_through, 600);
    let pulled = sync_once(Arc::clone(&b), &options("zd-2")).await.unwrap();
    assert_eq!((pulled.pulled, pulled.pull_cursor), (600, 600));
    assert_eq!(pulled.retries, 0);
    let held = b.log().pulled_events(0, usize::MAX).unwrap();
    let origin = a.identity().origin_id;
    let seqs: Vec<u64> = held
        .iter()
        .filter(|(_, e)| e.origin_id == origin.as_bytes())
        .map(|(_, e)| e.origin_seq)
        .collect();
    assert_eq!(seqs, (1..=600).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pull_reaches_a_zstd_client_as_its_status() {
    let hub = Hub::start().await;
    let token = hub.device_token("540502001", "zd-1");
    // The device's own client: it sends and accepts zstd.
    let mut client = station_agent::sync::connect(&SyncOptions::new(hub.url(), None))
        .await
        .unwrap();
    let status = client
        .pull(authorized(
            PullRequest {
                station_code: "540502101".into(),
                max_events: 10,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
}

/// `events` packed as a device packs them, against `dictionary`.
fn packed(events: &[station_proto::Event], dictionary: Option<&[u8]>) -> (PushRequest, Arc<[u8]>) {
    let push = PushRequest {
        events: events.to_vec(),
        ..PushRequest::default()
    };
    station_agent::sync::compress::pack(&push, dictionary, 3).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_packed_push_is_unpacked_against_what_its_token_pushed_last_and_only_that() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = device(dir.path(), "540502001", "zd-1");
    for n in 1..=30 {
        agent.record(activity("540502001", n)).unwrap();
    }
    let events = agent.own_events(0, 30).unwrap();
    let origin = agent.identity().origin_id;
    let token = hub.device_token("540502001", "zd-1");
    let mut client = hub.client().await;
    let answer = client
        .hello(authorized(hello(origin, "540502001"), &token))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.packed_pushes, "the hub says it unpacks");

    // Alone, then against the first.
    let (first, left) = packed(&events[..10], None);
    let ack = client
        .push(authorized(first, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.acks[0].durable_through, 10);
    let (second, _) = packed(&events[10..20], Some(&left));
    let alone = packed(&events[10..20], None).0;
    assert!(
        second.packed.len() < alone.packed.len(),
        "the dictionary saves bytes: {} against {} alone",
        second.packed.len(),
        alone.packed.len()
    );
    let ack = client
        .push(authorized(second, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.acks[0].durable_through, 20);
    // Pulled by a colleague (a device does not pull its own events).
    let colleague = hub.device_token("540502001", "zd-2");
    let held: Vec<Uuid> = hub
        .pull_station(&colleague, "540502001")
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|p| Uuid::from_slice(&p.event.unwrap().event_id).unwrap())
        .collect();
    let sent: Vec<Uuid> = events[..20]
        .iter()
        .map(|e| Uuid::from_slice(&e.event_id).unwrap())
        .collect();
    assert_eq!(held, sent, "stored as sent, once, in order");

    // Refused, changing nothing: another token's dictionary, an unknown one,
    // events beside the packed ones, and bytes that are not a frame.
    let (named, _) = packed(&events[20..], Some(&left));
    let before = hub.snapshot();
    let status = client
        .push(authorized(named.clone(), &colleague))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
    assert!(
        status
            .message()
            .starts_with(station_proto::packed::UNKNOWN_DICTIONARY),
        "{status}"
    );
    let mut beside = named.clone();
    beside.events = events[20..21].to_vec();
    let mut garbage = named.clone();
    garbage.packed = b"not a zstd frame".to_vec();
    let mut unnamed = named.clone();
    unnamed.packed = Vec::new();
    for (request, says) in [
        (beside, "inside it only"),
        (garbage, "not one zstd frame"),
        (unnamed, "set only with packed"),
    ] {
        let status = client.push(authorized(request, &token)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
        assert!(status.message().contains(says), "{status}");
    }
    assert_eq!(hub.snapshot(), before);

    // A restarted hub holds no dictionary: the device's batch is refused
    // until sent alone.
    let hub = hub.restart().await;
    let mut client = hub.client().await;
    let status = client.push(authorized(named, &token)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
    assert_eq!(hub.snapshot().events, 20);
    let (alone, _) = packed(&events[20..], None);
    let ack = client
        .push(authorized(alone, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.acks[0].durable_through, 30);
    hub.stop().await;
}
