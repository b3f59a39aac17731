//! An enrolled device trying to speak for another device's log: its `Hello`
//! and `Push` are refused, tell it nothing, change nothing, and the real
//! device's entries all reach the hub. Through the real sync client and a
//! real hub on an ephemeral port.

use std::sync::Arc;

use crate::fixtures::{Hub, activity, authorized, device, hello, next_after};
use station_agent::Agent;
use station_agent::sync::{SyncOptions, sync_once};
use station_hub::auth;
use station_proto::ids::Uuid;
use station_proto::v1::PushRequest;

const ZEDANG: &str = "540502001";
const CHANGZHU: &str = "540502101";

/// The real phone of `station` with `count` activities, synced with its own
/// token; returns the phone and its token.
async fn synced_phone(
    hub: &Hub,
    dir: &std::path::Path,
    station: &str,
    count: i32,
) -> (Arc<Agent>, String) {
    let phone = device(dir, station, "worker-1");
    for n in 1..=count {
        phone.record(activity(station, n)).unwrap();
    }
    let token = hub.device_token(station, "phone");
    let report = sync_once(
        Arc::clone(&phone),
        &SyncOptions::new(hub.url(), Some(token.clone())),
    )
    .await
    .unwrap();
    assert_eq!(report.durable_through, u64::try_from(count).unwrap());
    (phone, token)
}

/// The intruder's `Hello` and `Push` for `victim`'s origin are refused with
/// `PERMISSION_DENIED`, and the hub's state is unchanged.
async fn intrusion_is_refused(hub: &Hub, intruder: &str, victim: &Agent, intruder_station: &str) {
    let before = hub.snapshot();
    let origin = victim.identity().origin_id;
    let mut client = hub.client().await;
    let mut request = hello(origin, intruder_station);
    request.head_seq = 9;
    let status = client
        .hello(authorized(request, intruder))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(!status.message().contains("durable_through"));

    let last = victim.own_events(0, usize::MAX).unwrap().pop().unwrap();
    let mut forged = next_after(&last);
    forged.station_code = intruder_station.into();
    let status = client
        .push(authorized(
            PushRequest {
                events: vec![forged],
                heads: Vec::new(),
                ..PushRequest::default()
            },
            intruder,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(
        hub.snapshot(),
        before,
        "a refused intrusion changes nothing"
    );
}

/// The phone records its visit and syncs: it reaches the hub.
async fn next_entry_reaches_the_hub(hub: &Hub, phone: &Arc<Agent>, token: &str, seq: u64) {
    let station = phone.identity().station_code.clone();
    let recorded = phone.record(activity(&station, 99)).unwrap();
    assert_eq!(recorded.origin_seq, seq);
    let report = sync_once(
        Arc::clone(phone),
        &SyncOptions::new(hub.url(), Some(token.into())),
    )
    .await
    .unwrap();
    assert_eq!(report.durable_through, seq);
    assert_eq!(phone.status().unwrap().pending, 0);
    for event in phone.own_events(0, usize::MAX).unwrap() {
        assert!(
            hub.store.position_of(&event.event_id).unwrap().is_some(),
            "seq {} of the phone is on the hub",
            event.origin_seq
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_token_of_the_station_cannot_take_over_a_phones_log() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (phone, token) = synced_phone(&hub, dir.path(), ZEDANG, 9).await;
    let intruder = hub.device_token(ZEDANG, "second phone");

    intrusion_is_refused(&hub, &intruder, &phone, ZEDANG).await;
    next_entry_reaches_the_hub(&hub, &phone, &token, 10).await;
    // The intruder stays unbound: it can still introduce a log of its own.
    let own = Uuid::now_v7();
    let answer = hub
        .client()
        .await
        .hello(authorized(hello(own, ZEDANG), &intruder))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.durable_through, 0);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_another_station_cannot_take_over_a_phones_log() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (phone, token) = synced_phone(&hub, dir.path(), CHANGZHU, 9).await;
    let intruder = hub.device_token(ZEDANG, "zedang phone");

    intrusion_is_refused(&hub, &intruder, &phone, ZEDANG).await;
    intrusion_is_refused(&hub, &intruder, &phone, CHANGZHU).await;
    next_entry_reaches_the_hub(&hub, &phone, &token, 10).await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_tells_a_bound_token_nothing_about_other_origins() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (phone, _) = synced_phone(&hub, dir.path(), ZEDANG, 3).await;
    let other = tempfile::tempdir().unwrap();
    let (_, token) = synced_phone(&hub, other.path(), ZEDANG, 1).await;
    let mut client = hub.client().await;
    let (held, never_seen) = (phone.identity().origin_id, Uuid::now_v7());
    let existing = client
        .hello(authorized(hello(held, ZEDANG), &token))
        .await
        .unwrap_err();
    let unknown = client
        .hello(authorized(hello(never_seen, ZEDANG), &token))
        .await
        .unwrap_err();
    assert_eq!(existing.code(), tonic::Code::PermissionDenied);
    // The same answer whether the origin exists or not, but for the id asked.
    assert_eq!(
        (
            existing.code(),
            existing.message().replace(&held.to_string(), "ASKED")
        ),
        (
            unknown.code(),
            unknown.message().replace(&never_seen.to_string(), "ASKED")
        ),
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_devices_origin_is_closed() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (phone, token) = synced_phone(&hub, dir.path(), ZEDANG, 2).await;
    let token_id = token.split_once('.').unwrap().0;
    auth::revoke(&hub.store, token_id).unwrap();
    let replacement = hub.device_token(ZEDANG, "replacement");
    let before = hub.snapshot();

    phone.record(activity(ZEDANG, 3)).unwrap();
    let error = sync_once(
        Arc::clone(&phone),
        &SyncOptions::new(hub.url(), Some(token)),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("revoked"), "{error}");
    // A new token cannot pick the origin up either.
    intrusion_is_refused(&hub, &replacement, &phone, ZEDANG).await;
    assert_eq!(hub.snapshot(), before);
    hub.stop().await;
}
