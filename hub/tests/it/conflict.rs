//! A resent seq whose event differs from the one the hub holds: refused as a
//! conflict, never acknowledged as a duplicate, counted and shown to the
//! bureau in the sync health.

use crate::fixtures::{Hub, authorized, recorded};
use station_proto::ids::Uuid;
use station_proto::v1::{GetSyncHealthRequest, PushRequest};

const ZEDANG: &str = "540502001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_event_at_a_held_seq_is_a_conflict_the_bureau_sees() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (agent, events) = recorded(dir.path(), ZEDANG, 3);
    let origin = agent.identity().origin_id;
    let token = hub.device_token(ZEDANG, "zd-1");
    hub.push(&token, &events).await;
    let mut client = hub.client().await;

    // The same events again: duplicates, acknowledged.
    let ack = client
        .push(authorized(
            PushRequest {
                events: events[1..].to_vec(),
                ..PushRequest::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.acks[0].durable_through, 3);

    // Another event at seq 2, alone and ahead of a new seq: refused whole.
    let before = hub.snapshot();
    let mut other = events[1].clone();
    other.event_id = Uuid::now_v7().as_bytes().to_vec();
    let mut next = events[2].clone();
    next.origin_seq = 4;
    next.event_id = Uuid::now_v7().as_bytes().to_vec();
    for batch in [vec![other.clone()], vec![other, next]] {
        let status = client
            .push(authorized(
                PushRequest {
                    events: batch,
                    ..PushRequest::default()
                },
                &token,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
        assert!(status.message().contains("seq 2"), "{status}");
    }
    assert_eq!(hub.snapshot(), before, "a conflict stores nothing");
    assert_eq!(hub.store.origin(origin).unwrap().conflicts, 2);

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
    let device = health
        .devices
        .iter()
        .find(|d| d.origin_id == origin.as_bytes())
        .unwrap();
    assert_eq!(device.conflicts, 2);
    hub.stop().await;
}
