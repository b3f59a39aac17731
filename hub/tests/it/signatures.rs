//! Signed logs end to end: a device's pushes carry its signed head, the hub
//! verifies it before the ack and hands it out in `Pull`; a batch altered in
//! transit, a push without its signature and another origin's batch replayed
//! are refused and change nothing; an origin that predates signatures is
//! signed from its next batch on; `station-hub verify` finds an event
//! altered in a stopped store.

use std::sync::Arc;

use crate::fixtures::{Hub, activity, authorized, device, hello, hub_cli, recorded, stdout_of};
use prost::Message as _;
use station_agent::Agent;
use station_agent::sync::{SyncOptions, sync_once};
use station_proto::chain::{self, Chain};
use station_proto::ids::Uuid;
use station_proto::v1::PushRequest;

const ZEDANG: &str = "540502001";

/// A device of Zedang with `count` activities, its token, and its `Hello`
/// (with its key) already answered.
async fn introduced(hub: &Hub, dir: &std::path::Path, count: i32) -> (Arc<Agent>, String) {
    let (agent, _) = recorded(dir, ZEDANG, count);
    let token = hub.device_token(ZEDANG, "zd-1");
    let mut request = hello(agent.identity().origin_id, ZEDANG);
    request.public_key = agent.log().public_key().unwrap().to_vec();
    hub.client()
        .await
        .hello(authorized(request, &token))
        .await
        .unwrap();
    (agent, token)
}

/// The device's whole own log as one signed push.
fn signed_push(agent: &Agent) -> PushRequest {
    let events = agent.own_events(0, usize::MAX).unwrap();
    let last = events.last().unwrap().origin_seq;
    PushRequest {
        events,
        heads: vec![agent.log().signed_head(last).unwrap()],
        ..PushRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_are_verified_and_pulls_hand_out_the_signed_heads() {
    let hub = Hub::start().await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let phone = device(dirs[0].path(), ZEDANG, "zd-1");
    for n in 1..=12 {
        phone.record(activity(ZEDANG, n)).unwrap();
    }
    let token = hub.device_token(ZEDANG, "phone");
    let mut options = SyncOptions::new(hub.url(), Some(token));
    options.batch_bytes = 600; // several signed batches
    let report = sync_once(Arc::clone(&phone), &options).await.unwrap();
    assert_eq!(report.durable_through, 12);
    assert!(report.batches > 1);

    let origin = phone.identity().origin_id;
    let state = hub.store.origin(origin).unwrap();
    assert_eq!(state.signed_from, Some(1));
    assert_eq!(state.signed_head.as_ref().unwrap().last_seq, 12);

    // A colleague verifies the phone's events from what it pulls.
    let colleague = hub.device_token(ZEDANG, "colleague");
    let mut client = hub.client().await;
    client
        .hello(authorized(hello(Uuid::now_v7(), ZEDANG), &colleague))
        .await
        .unwrap();
    let page = hub.pull_station(&colleague, ZEDANG).await.unwrap();
    assert_eq!(page.events.len(), 12);
    let head = page
        .heads
        .iter()
        .find(|h| h.origin_id == origin.as_bytes())
        .unwrap();
    assert_eq!(head.public_key, phone.log().public_key().unwrap());
    let mut chain = Chain::start(origin);
    for pulled in &page.events {
        chain.push(pulled.event.as_ref().unwrap()).unwrap();
    }
    chain::verify_head(
        &head.public_key,
        origin,
        head.last_seq,
        &chain.head(),
        &head.signature,
    )
    .unwrap();
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_flipped_in_transit_is_refused() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, token) = introduced(&hub, dir.path(), 5).await;
    let push = signed_push(&agent);
    // Flip one bit of one character of a title on the wire ("公益 3" → "公益 2").
    let mut wire = push.encode_to_vec();
    let needle = "公益 3".as_bytes();
    let at = wire
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
        + needle.len()
        - 1;
    wire[at] ^= 0x01;
    let altered = PushRequest::decode(wire.as_slice()).unwrap();
    assert_ne!(altered, push);

    let before = hub.snapshot();
    let mut client = hub.client().await;
    let status = client.push(authorized(altered, &token)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("does not verify"), "{status}");
    assert_eq!(hub.snapshot(), before, "nothing of it is stored");

    // Without its signature: refused as well.
    let unsigned = PushRequest {
        events: push.events.clone(),
        heads: vec![],
        ..PushRequest::default()
    };
    let status = client.push(authorized(unsigned, &token)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(hub.snapshot(), before);

    // The batch as signed is acknowledged.
    let ack = client
        .push(authorized(push, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.acks[0].durable_through, 5);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_batch_of_another_origin_is_refused() {
    let hub = Hub::start().await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let (victim, _) = introduced(&hub, dirs[0].path(), 4).await;
    let (intruder, intruder_token) = introduced(&hub, dirs[1].path(), 1).await;
    let captured = signed_push(&victim);
    let before = hub.snapshot();
    let mut client = hub.client().await;

    // As captured, with the intruder's token: not its origin.
    let status = client
        .push(authorized(captured.clone(), &intruder_token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // Relabelled as the intruder's own origin: the signature is the victim's.
    let own = intruder.identity().origin_id.as_bytes().to_vec();
    let mut relabelled = captured;
    for event in &mut relabelled.events {
        event.origin_id.clone_from(&own);
        event.event_id = Uuid::now_v7().as_bytes().to_vec();
    }
    relabelled.heads[0].origin_id.clone_from(&own);
    let status = client
        .push(authorized(relabelled, &intruder_token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(hub.snapshot(), before);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_predates_signatures_is_signed_from_its_next_batch() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, events) = recorded(dir.path(), ZEDANG, 3);
    let origin = agent.identity().origin_id;
    let token = hub.device_token(ZEDANG, "zd-1");
    // An agent of before: Hello without a key, pushes without heads.
    let mut client = hub.client().await;
    client
        .hello(authorized(hello(origin, ZEDANG), &token))
        .await
        .unwrap();
    hub.push(&token, &events).await;
    assert_eq!(hub.store.origin(origin).unwrap().signed_from, None);

    // The upgraded agent: its Hello binds its key, its next batch is signed.
    for n in 4..=6 {
        agent.record(activity(ZEDANG, n)).unwrap();
    }
    let report = sync_once(
        Arc::clone(&agent),
        &SyncOptions::new(hub.url(), Some(token.clone())),
    )
    .await
    .unwrap();
    assert_eq!(report.durable_through, 6);
    let state = hub.store.origin(origin).unwrap();
    assert_eq!(state.signed_from, Some(4));
    assert_eq!(state.signed_head.unwrap().last_seq, 6);

    // From now on an unsigned push of the origin is refused.
    agent.record(activity(ZEDANG, 7)).unwrap();
    let seventh = agent.own_events(6, 1).unwrap();
    let status = client
        .push(authorized(
            PushRequest {
                events: seventh,
                heads: vec![],
                ..PushRequest::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    // And its key cannot be replaced.
    let mut other_key = hello(origin, ZEDANG);
    other_key.public_key = chain::public_key(&[9; 32]).to_vec();
    let status = client
        .hello(authorized(other_key, &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    hub.stop().await;
}

/// Flips the last byte of `needle` in the first value of the hub's log tree
/// holding it, in a stopped store.
fn alter_stored_event(dir: &std::path::Path, needle: &[u8]) {
    let db = sled::open(dir).unwrap();
    let tree = db.open_tree("hub").unwrap();
    let (key, value) = tree
        .scan_prefix(b"l:")
        .map(Result::unwrap)
        .find(|(_, v)| v.windows(needle.len()).any(|w| w == needle))
        .unwrap();
    let mut value = value.to_vec();
    let at = value
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
        + needle.len()
        - 1;
    value[at] ^= 0x01;
    tree.insert(key, value).unwrap();
    db.flush().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_an_event_altered_in_a_stopped_store() {
    let hub = Hub::start().await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let phone = device(dirs[0].path(), ZEDANG, "zd-1");
    for n in 1..=6 {
        phone.record(activity(ZEDANG, n)).unwrap();
    }
    let token = hub.device_token(ZEDANG, "phone");
    let mut options = SyncOptions::new(hub.url(), Some(token));
    options.batch_bytes = 400;
    sync_once(Arc::clone(&phone), &options).await.unwrap();
    let (_, events) = recorded(dirs[1].path(), ZEDANG, 2);
    let unsigned = hub.device_token(ZEDANG, "old phone");
    hub.push(&unsigned, &events).await;
    let data = hub.stop().await;

    let verified = stdout_of(&hub_cli(data.path(), &["verify"]));
    let origin = phone.identity().origin_id.to_string();
    let line = verified.lines().find(|l| l.starts_with(&origin)).unwrap();
    assert!(line.contains("verified through seq 6"), "{verified}");
    assert!(line.contains("signed seqs 1..=6"), "{verified}");
    assert!(
        verified.contains("verified through seq 2\tunsigned"),
        "{verified}"
    );

    alter_stored_event(data.path(), "公益 5".as_bytes());
    let output = hub_cli(data.path(), &["verify"]);
    assert!(!output.status.success());
    let printed = String::from_utf8(output.stdout).unwrap();
    let line = printed.lines().find(|l| l.starts_with(&origin)).unwrap();
    assert!(line.contains("BROKEN"), "{printed}");
    assert!(!line.contains("verified through seq 6"), "{printed}");
}
