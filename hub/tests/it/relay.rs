//! Station relays at the hub: a relay token carries its station's phones'
//! signed logs (origins the hub has not seen are bound to the key their
//! signed head carries), a relay that alters an event or carries another
//! station's origin is refused and changes nothing, a device token still
//! pushes only its own origin, a phone that moves from the relay to the hub
//! goes on where the relay left it, and each device row says which path its
//! entries came by. Through a real hub on an ephemeral port.

use std::sync::Arc;

use crate::fixtures::{Hub, activity, authorized, device, hub_cli, stdout_of};
use station_agent::Agent;
use station_agent::sync::{SyncOptions, sync_once};
use station_hub::auth;
use station_hub::store::HubLog as _;
use station_proto::Event;
use station_proto::v1::{GetSyncHealthRequest, PushRequest, PushResponse, SignedHead};

const ZEDANG: &str = "540502001";
const CHANGZHU: &str = "540502101";
const RELAY_NAME: &str = "泽当站PC";

/// A phone of `station` with `count` activities, never synced.
fn phone(dir: &std::path::Path, station: &str, count: i32) -> Arc<Agent> {
    let phone = device(dir, station, "worker-1");
    for n in 1..=count {
        phone.record(activity(station, n)).unwrap();
    }
    phone
}

/// The phone's events after `after`, and its signed head over the last of
/// them with its public key, as a relay forwards them.
fn relayed(phone: &Agent, after: u64) -> (Vec<Event>, SignedHead) {
    let events = phone.own_events(after, usize::MAX).unwrap();
    let last = events.last().unwrap().origin_seq;
    let mut head = phone.log().signed_head(last).unwrap();
    head.public_key = phone.log().public_key().unwrap().to_vec();
    (events, head)
}

fn relay_token(hub: &Hub, station: &str) -> String {
    auth::enroll_relay(&hub.store, station, RELAY_NAME)
        .unwrap()
        .bearer
}

async fn push(
    hub: &Hub,
    token: &str,
    events: Vec<Event>,
    heads: Vec<SignedHead>,
) -> Result<PushResponse, tonic::Status> {
    hub.client()
        .await
        .push(authorized(
            PushRequest {
                events,
                heads,
                ..PushRequest::default()
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

fn ack_of(response: &PushResponse, phone: &Agent) -> u64 {
    response
        .acks
        .iter()
        .find(|a| a.origin_id == phone.identity().origin_id.as_bytes())
        .unwrap()
        .durable_through
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_carries_two_phones_and_a_phone_then_goes_on_directly() {
    let hub = Hub::start().await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = phone(dirs[0].path(), ZEDANG, 5);
    let b = phone(dirs[1].path(), ZEDANG, 7);
    let relay = relay_token(&hub, ZEDANG);

    let (mut events, head_a) = relayed(&a, 0);
    let (events_b, head_b) = relayed(&b, 0);
    events.extend(events_b);
    let response = push(&hub, &relay, events, vec![head_a, head_b])
        .await
        .unwrap();
    assert_eq!(ack_of(&response, &a), 5);
    assert_eq!(ack_of(&response, &b), 7);
    assert_eq!(hub.store.event_count(), 12);
    let relay_id = relay.split('.').next().unwrap();
    for phone in [&a, &b] {
        let origin = phone.identity().origin_id;
        let binding = hub.store.binding(origin).unwrap().unwrap();
        assert_eq!(
            binding.public_key.as_deref(),
            Some(&phone.log().public_key().unwrap()[..])
        );
        let state = hub.store.origin(origin).unwrap();
        assert_eq!(state.via_relay.as_deref(), Some(relay_id));
        assert_eq!(state.signed_head.unwrap().last_seq, phone.log().head_seq());
    }

    // Sent again, the same batch is harmless; the relay pulls its station.
    let (events, head) = relayed(&a, 0);
    let again = push(&hub, &relay, events, vec![head]).await.unwrap();
    assert_eq!(ack_of(&again, &a), 5);
    assert_eq!(hub.store.event_count(), 12);
    let page = hub.pull_station(&relay, ZEDANG).await.unwrap();
    assert_eq!(page.events.len(), 12);
    let other = hub.pull_station(&relay, CHANGZHU).await.unwrap_err();
    assert_eq!(other.code(), tonic::Code::PermissionDenied, "{other:?}");

    // Phone A comes within reach of the hub: its own token takes its origin
    // over from the relay, and it goes on from seq 6.
    for n in 6..=8 {
        a.record(activity(ZEDANG, n)).unwrap();
    }
    let token_a = hub.device_token(ZEDANG, "zd-phone-a");
    let report = sync_once(Arc::clone(&a), &SyncOptions::new(hub.url(), Some(token_a)))
        .await
        .unwrap();
    assert_eq!(report.durable_through, 8);
    assert_eq!(hub.store.event_count(), 15, "each event once");
    let state = hub.store.origin(a.identity().origin_id).unwrap();
    assert_eq!(state.via_relay, None);
    assert_eq!(state.relayed_events, 5);

    // The relay may still carry A's later entries (now bound to A's token).
    a.record(activity(ZEDANG, 9)).unwrap();
    let (events, head) = relayed(&a, 8);
    let response = push(&hub, &relay, events, vec![head]).await.unwrap();
    assert_eq!(ack_of(&response, &a), 9);

    // Every chain and signature checks, whichever path it came by.
    let verdicts = station_hub::store::chains::verify(&hub.store).unwrap();
    assert_eq!(verdicts.len(), 2);
    for (origin, verdict) in verdicts {
        assert!(
            matches!(
                verdict,
                station_hub::store::chains::Verdict::Verified {
                    signed_from: Some(1),
                    ..
                }
            ),
            "{origin}: {verdict:?}"
        );
    }

    // The device rows say which path each device's entries came by.
    hub.projected().await;
    let bureau = hub.bureau_token("民政局");
    let health = hub
        .query()
        .get_sync_health(authorized(
            GetSyncHealthRequest { stations: vec![] },
            &bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    let row = |phone: &Agent| {
        health
            .devices
            .iter()
            .find(|d| d.origin_id == phone.identity().origin_id.as_bytes())
            .unwrap()
            .clone()
    };
    assert_eq!(row(&a).via_relay, RELAY_NAME);
    assert_eq!(row(&a).relayed_events, 6);
    assert_eq!(row(&a).device_name, "zd-phone-a");
    assert_eq!(row(&b).via_relay, RELAY_NAME);
    assert_eq!(row(&b).relayed_events, 7);
    assert!(row(&b).last_relayed_ms > 0);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_alters_an_event_is_refused_and_nothing_is_stored() {
    let hub = Hub::start().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = phone(dirs[0].path(), ZEDANG, 4);
    let b = phone(dirs[1].path(), ZEDANG, 3);
    let relay = relay_token(&hub, ZEDANG);

    // An origin the hub has never seen, one title altered.
    let (mut events, head) = relayed(&a, 0);
    events[1].body = Some(activity(ZEDANG, 40));
    let before = hub.snapshot();
    let status = push(&hub, &relay, events, vec![head]).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("does not verify"), "{status}");
    assert_eq!(hub.snapshot(), before, "nothing of it is stored");
    assert_eq!(hub.store.binding(a.identity().origin_id).unwrap(), None);

    // An origin the hub holds: B's first entries arrive, then a batch in
    // which one of A's (unaltered) and one of B's (altered) travel together.
    let (events, head) = relayed(&b, 0);
    push(&hub, &relay, events, vec![head]).await.unwrap();
    b.record(activity(ZEDANG, 4)).unwrap();
    let (mut events, head_a) = relayed(&a, 0);
    let (mut events_b, head_b) = relayed(&b, 3);
    events_b[0].recorded_at_ms += 1;
    events.append(&mut events_b);
    let before = hub.snapshot();
    let status = push(&hub, &relay, events, vec![head_a, head_b])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(hub.snapshot(), before, "nothing of it is stored");
    assert_eq!(hub.store.event_count(), 3);

    // A new origin's events must start at seq 1, with its key. (A's
    // verified first events bound it, with its key, even though B's refused
    // the batch: the binding only records what A signed.)
    let c = phone(dirs[2].path(), ZEDANG, 4);
    let (events, mut head) = relayed(&c, 2);
    let status = push(&hub, &relay, events.clone(), vec![head.clone()])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    head.public_key.clear();
    let status = push(&hub, &relay, events, vec![head]).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(hub.snapshot(), before);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_carries_only_live_signed_origins_of_its_own_station() {
    let hub = Hub::start().await;
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let relay = relay_token(&hub, ZEDANG);

    // A phone of another station, known to the hub or not.
    let changzhu = phone(dirs[0].path(), CHANGZHU, 3);
    let (events, head) = relayed(&changzhu, 0);
    let before = hub.snapshot();
    let status = push(&hub, &relay, events.clone(), vec![head.clone()])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    let own = relay_token(&hub, CHANGZHU);
    push(&hub, &own, events.clone(), vec![head.clone()])
        .await
        .unwrap();
    let before_known = hub.snapshot();
    let status = push(&hub, &relay, events, vec![head]).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(hub.snapshot(), before_known);
    assert_ne!(before, before_known);

    // A phone of its station whose token was revoked: its origin is closed.
    let lost = phone(dirs[1].path(), ZEDANG, 2);
    let token = hub.device_token(ZEDANG, "lost");
    sync_once(
        Arc::clone(&lost),
        &SyncOptions::new(hub.url(), Some(token.clone())),
    )
    .await
    .unwrap();
    auth::revoke(&hub.store, token.split('.').next().unwrap()).unwrap();
    lost.record(activity(ZEDANG, 3)).unwrap();
    let (events, head) = relayed(&lost, 2);
    let before = hub.snapshot();
    let status = push(&hub, &relay, events, vec![head]).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("revoked"), "{status}");
    assert_eq!(hub.snapshot(), before);

    // A device token still pushes only its own origin, even a colleague's
    // signed one.
    let colleague = phone(dirs[2].path(), ZEDANG, 2);
    let own_phone = phone(dirs[3].path(), ZEDANG, 1);
    let token = hub.device_token(ZEDANG, "zd-3");
    sync_once(
        Arc::clone(&own_phone),
        &SyncOptions::new(hub.url(), Some(token.clone())),
    )
    .await
    .unwrap();
    let (events, head) = relayed(&colleague, 0);
    let before = hub.snapshot();
    let status = push(&hub, &token, events, vec![head]).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(hub.snapshot(), before);
    hub.stop().await;
}

/// A relay learns at its `Hello` the other relay tokens of its station, as
/// hashes, so that it can serve a relay chained behind it: never its own,
/// never another station's, revoked ones marked; a device token learns none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_learns_the_other_relay_tokens_of_its_station_as_hashes() {
    let hub = Hub::start().await;
    let own = auth::enroll_relay(&hub.store, ZEDANG, RELAY_NAME).unwrap();
    let outpost = auth::enroll_relay(&hub.store, ZEDANG, "村点PC").unwrap();
    let gone = auth::enroll_relay(&hub.store, ZEDANG, "旧PC").unwrap();
    auth::revoke(&hub.store, &gone.token_id).unwrap();
    let _other = auth::enroll_relay(&hub.store, CHANGZHU, "昌珠站PC").unwrap();
    let phone = auth::enroll_device(&hub.store, ZEDANG, "zd-1").unwrap();

    let hello = |token: String| {
        let hub = &hub;
        async move {
            hub.client()
                .await
                .hello(authorized(
                    crate::fixtures::hello(station_proto::ids::Uuid::new_v4(), ZEDANG),
                    &token,
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let answer = hello(own.bearer.clone()).await;
    let mut relays: Vec<_> = answer
        .station_relays
        .iter()
        .map(|r| (r.device.as_str(), r.revoked))
        .collect();
    relays.sort_unstable();
    assert_eq!(relays, [("旧PC", true), ("村点PC", false)]);
    let listed = answer
        .station_relays
        .iter()
        .find(|r| r.token_id == outpost.token_id)
        .unwrap();
    let (_, secret_sha256) =
        auth::parse_bearer(Some(&format!("Bearer {}", outpost.bearer))).unwrap();
    assert_eq!(
        listed.secret_sha256, secret_sha256,
        "the hash of the secret, never the secret"
    );
    assert_eq!(answer.station_devices.len(), 1);
    assert!(
        answer.station_origins.is_empty(),
        "the hub's acks are the city's"
    );
    assert_eq!(answer.city_durable_through, None);

    let answer = hello(phone.bearer.clone()).await;
    assert!(answer.station_relays.is_empty() && answer.station_devices.is_empty());
    hub.stop().await;
}

#[test]
fn enroll_issues_a_relay_token_that_tokens_lists() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let output = hub_cli(
        &data,
        &["enroll", "--station", ZEDANG, "--relay", RELAY_NAME],
    );
    assert!(output.status.success(), "{output:?}");
    let bearer = stdout_of(&output);
    let token_id = bearer.trim().split('.').next().unwrap().to_string();
    let listing = stdout_of(&hub_cli(&data, &["tokens"]));
    let line = listing.lines().find(|l| l.starts_with(&token_id)).unwrap();
    assert!(
        line.contains(&format!("\trelay\t{ZEDANG}\t{RELAY_NAME}\t")),
        "{line}"
    );
    let refused = hub_cli(
        &data,
        &[
            "enroll",
            "--station",
            ZEDANG,
            "--relay",
            "pc",
            "--device",
            "x",
        ],
    );
    assert!(!refused.status.success());
}
