//! Every refusal of the `Sync` service: the right status code, and nothing of
//! the hub's state changed (events, `durable_through`, quarantine, tokens).

use std::sync::Arc;

use crate::fixtures::{Hub, authorized, next_after, recorded};
use prost::Message as _;
use prost::bytes::{Buf as _, BufMut as _};
use station_agent::sync::{SyncError, SyncOptions, connect, sync_once};
use station_hub::auth;
use station_hub::server::{MAX_MESSAGE_BYTES, MAX_PUSH_EVENTS};
use station_hub::store::TokenScope;
use station_proto::Event;
use station_proto::ids::Uuid;
use station_proto::v1::sync_client::SyncClient;
use station_proto::v1::{HelloRequest, PullRequest, PushRequest};
use tonic::Code;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

const ZEDANG: &str = "540502001";
const CHANGZHU: &str = "540502101";

fn hello_of(events: &[Event]) -> HelloRequest {
    HelloRequest {
        origin_id: events[0].origin_id.clone(),
        station_code: events[0].station_code.clone(),
        head_seq: events.len() as u64,
        device_clock_ms: 0,
        agent_version: "test".into(),
        public_key: Vec::new(),
        wiped: false,
    }
}

fn pull_of(station: &str) -> PullRequest {
    PullRequest {
        station_code: station.into(),
        after: 0,
        max_events: 100,
        max_bytes: 0,
        wait_ms: 0,
        ..PullRequest::default()
    }
}

fn push_of(events: &[Event]) -> PushRequest {
    PushRequest {
        events: events.to_vec(),
        heads: Vec::new(),
        ..PushRequest::default()
    }
}

/// Hello, Push and Pull carrying `authorization` (none when `None`), each
/// refused with `code` and a message holding `message`.
async fn every_call_refused(
    client: &mut SyncClient<Channel>,
    events: &[Event],
    authorization: Option<&AsciiMetadataValue>,
    code: Code,
    message: &str,
) {
    let mut hello = tonic::Request::new(hello_of(events));
    let mut push = tonic::Request::new(push_of(events));
    let mut pull = tonic::Request::new(pull_of(ZEDANG));
    if let Some(value) = authorization {
        for metadata in [
            hello.metadata_mut(),
            push.metadata_mut(),
            pull.metadata_mut(),
        ] {
            metadata.insert("authorization", value.clone());
        }
    }
    let statuses = [
        client.hello(hello).await.unwrap_err(),
        client.push(push).await.unwrap_err(),
        client.pull(pull).await.unwrap_err(),
    ];
    for status in statuses {
        assert_eq!(status.code(), code, "{status}");
        assert!(status.message().contains(message), "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_live_token_are_unauthenticated_and_change_nothing() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_agent, events) = recorded(dir.path(), ZEDANG, 6);
    let token = hub.device_token(ZEDANG, "zd-1");
    let mut client = hub.client().await;
    client
        .push(authorized(push_of(&events[..3]), &token))
        .await
        .unwrap();
    let before = hub.snapshot();

    let (token_id, secret) = token.split_once('.').unwrap();
    let wrong_secret = format!("Bearer {token_id}.{}", "0".repeat(secret.len()));
    let unknown_id = format!("Bearer 000000000000.{secret}");
    let basic = format!("Basic {token}");
    let value = |text: &str| AsciiMetadataValue::try_from(text.as_bytes()).unwrap();
    let refusals = [
        (None, "missing bearer token"),
        (Some(value("Bearer nonsense")), "invalid token"),
        (Some(value(&wrong_secret)), "invalid token"),
        (Some(value(&unknown_id)), "invalid token"),
        (Some(value("Bearer ")), "Bearer <token>"),
        (Some(value(&basic)), "Bearer <token>"),
        (
            Some(AsciiMetadataValue::try_from(&b"Bearer \xff\xfe"[..]).unwrap()),
            "Bearer <token>",
        ),
    ];
    for (authorization, message) in refusals {
        every_call_refused(
            &mut client,
            &events[3..],
            authorization.as_ref(),
            Code::Unauthenticated,
            message,
        )
        .await;
    }
    assert_eq!(hub.snapshot(), before);

    // Revoked: refused from the next call on, the rest stays as it was.
    let revoked = auth::revoke(&hub.store, token_id).unwrap();
    assert!(revoked.revoked_at_ms.is_some());
    let before = hub.snapshot();
    every_call_refused(
        &mut client,
        &events[3..],
        Some(&value(&format!("Bearer {token}"))),
        Code::Unauthenticated,
        "token revoked",
    )
    .await;
    assert_eq!(hub.snapshot(), before);
    assert_eq!(hub.store.event_count(), 3);

    // The agent sees a permanent refusal, not one to retry.
    let agent_dir = tempfile::tempdir().unwrap();
    let agent = crate::fixtures::device(agent_dir.path(), ZEDANG, "zd-2");
    agent.record(crate::fixtures::activity(ZEDANG, 1)).unwrap();
    let error = sync_once(agent, &SyncOptions::new(hub.url(), Some(token)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            SyncError::Rpc {
                code: Code::Unauthenticated,
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.is_retriable());
    assert_eq!(hub.snapshot(), before);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_token_pushes_and_pulls_its_own_station_only() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_agent, events) = recorded(dir.path(), ZEDANG, 4);
    let token = hub.device_token(ZEDANG, "zd-1");
    let mut client = hub.client().await;
    client
        .push(authorized(push_of(&events[..2]), &token))
        .await
        .unwrap();
    let before = hub.snapshot();

    // One event of another station refuses the whole batch.
    let mut foreign = next_after(&events[3]);
    foreign.station_code = CHANGZHU.into();
    let mut batch = events[2..].to_vec();
    batch.push(foreign);
    let status = client
        .push(authorized(push_of(&batch), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
    assert!(
        status
            .message()
            .contains(&format!("event 2 belongs to station {CHANGZHU}")),
        "{status}"
    );
    assert_eq!(hub.snapshot(), before);

    // Another station's stream and Hello are refused too.
    let status = client
        .pull(authorized(pull_of(CHANGZHU), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
    assert!(status.message().contains(CHANGZHU), "{status}");
    let mut hello = hello_of(&events);
    hello.station_code = CHANGZHU.into();
    let status = client.hello(authorized(hello, &token)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
    assert_eq!(hub.snapshot(), before);

    // Its own station it may pull (its own events are not sent back, the
    // cursor passes over them), and the rest of its log it may push.
    let page = client
        .pull(authorized(pull_of(ZEDANG), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.events.len(), 0);
    assert_eq!((page.next_cursor, page.head), (2, 2));
    let ack = client
        .push(authorized(push_of(&events[2..]), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.acks[0].durable_through, 4);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_token_is_bound_to_the_first_origin_that_presents_it() {
    let hub = Hub::start().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (a, a_events) = recorded(dirs[0].path(), ZEDANG, 3);
    let (b, b_events) = recorded(dirs[1].path(), ZEDANG, 3);
    let token = hub.device_token(ZEDANG, "zd-1");
    let token_id = token.split_once('.').unwrap().0.to_string();
    let mut client = hub.client().await;

    // An unbound token may not carry two origins in one batch.
    let before = hub.snapshot();
    let mixed = [&a_events[..1], &b_events[..1]].concat();
    let status = client
        .push(authorized(push_of(&mixed), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
    assert_eq!(hub.snapshot(), before, "the token stays unbound");

    // a syncs first: the token is now a's.
    sync_once(
        Arc::clone(&a),
        &SyncOptions::new(hub.url(), Some(token.clone())),
    )
    .await
    .unwrap();
    let bound = |hub: &Hub| match hub.store.token(&token_id).unwrap().unwrap().scope {
        TokenScope::Device { bound_origin, .. }
        | TokenScope::Relay { bound_origin, .. }
        | TokenScope::Supervisor { bound_origin, .. } => bound_origin,
        TokenScope::Bureau { .. } => None,
    };
    assert_eq!(bound(&hub), Some(a.identity().origin_id));

    // The binding is durable: it survives a restart of the hub.
    let hub = hub.restart().await;
    let mut client = hub.client().await;
    assert_eq!(bound(&hub), Some(a.identity().origin_id));
    let before = hub.snapshot();

    // b presenting a's token: refused, naming both origins.
    let expected = format!(
        "token {token_id} is bound to origin {}, not {}",
        a.identity().origin_id,
        b.identity().origin_id
    );
    let status = client
        .hello(authorized(hello_of(&b_events), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
    assert!(status.message().contains(&expected), "{status}");
    let status = client
        .push(authorized(push_of(&b_events), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
    assert!(
        status.message().contains(&format!(
            "event 0 is of origin {}, but token {token_id} acts for origin {}",
            b.identity().origin_id,
            a.identity().origin_id
        )),
        "{status}"
    );
    // a's events re-sent after one of b's: refused whole.
    let mixed = [&a_events[..], &b_events[..1]].concat();
    let status = client
        .push(authorized(push_of(&mixed), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
    let error = sync_once(Arc::clone(&b), &SyncOptions::new(hub.url(), Some(token)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SyncError::Rpc {
                code: Code::PermissionDenied,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(hub.snapshot(), before);
    assert_eq!(
        hub.store
            .origin(b.identity().origin_id)
            .unwrap()
            .durable_through,
        0
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bureau_token_reads_every_station_and_writes_nothing() {
    let hub = Hub::start().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    for (dir, station) in dirs.iter().zip([ZEDANG, CHANGZHU]) {
        let (agent, _) = recorded(dir.path(), station, 3);
        let token = hub.device_token(station, "worker-1");
        sync_once(agent, &SyncOptions::new(hub.url(), Some(token)))
            .await
            .unwrap();
    }
    let bureau = hub.bureau_token("山南市民政局");
    let mut client = hub.client().await;
    let before = hub.snapshot();

    let other_dir = tempfile::tempdir().unwrap();
    let (_, events) = recorded(other_dir.path(), ZEDANG, 2);
    let status = client
        .push(authorized(push_of(&events), &bureau))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
    assert!(
        status.message().contains("bureau token cannot push"),
        "{status}"
    );
    let status = client
        .hello(authorized(hello_of(&events), &bureau))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status}");
    assert_eq!(hub.snapshot(), before);

    for station in [ZEDANG, CHANGZHU] {
        let page = client
            .pull(authorized(pull_of(station), &bureau))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.events.len(), 3, "{station}");
        assert!(
            page.events
                .iter()
                .all(|p| p.event.as_ref().unwrap().station_code == station)
        );
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batches_are_refused_and_change_nothing() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_agent, events) = recorded(dir.path(), ZEDANG, 2);
    let token = hub.device_token(ZEDANG, "zd-1");
    let mut client = hub.client().await;
    client
        .push(authorized(push_of(&events[..1]), &token))
        .await
        .unwrap();
    let before = hub.snapshot();

    // More events than one push may carry.
    let mut many = vec![events[1].clone()];
    while many.len() <= MAX_PUSH_EVENTS {
        let next = next_after(many.last().unwrap());
        many.push(next);
    }
    let status = client
        .push(authorized(push_of(&many), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
    assert!(
        status.message().contains(&MAX_PUSH_EVENTS.to_string()),
        "{status}"
    );
    assert_eq!(hub.snapshot(), before);

    // More bytes than the hub decodes, sent plain...
    let mut huge = events[1].clone();
    huge.author = "x".repeat(MAX_MESSAGE_BYTES);
    let status = client
        .push(authorized(push_of(&[huge.clone()]), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status}");
    assert_eq!(hub.snapshot(), before);

    // ...and compressed into a few kilobytes that would inflate past the limit.
    let mut zstd = connect(&SyncOptions::new(hub.url(), None)).await.unwrap();
    let status = zstd
        .push(authorized(push_of(&[huge]), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
    assert_eq!(hub.snapshot(), before);

    // The device goes on where it was.
    let ack = zstd
        .push(authorized(push_of(&events[1..]), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.acks[0].durable_through, 2);
    hub.stop().await;
}

/// Sends and receives message bodies as they are, bytes the hub must decode.
#[derive(Debug, Clone, Copy, Default)]
struct RawBytes;

impl Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> Self::Encoder {
        RawBytes
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawBytes
    }
}

impl Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

async fn push_raw(
    hub: &Hub,
    body: Vec<u8>,
    token: &str,
    compression: Option<CompressionEncoding>,
) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(hub.channel().await);
    if let Some(encoding) = compression {
        grpc = grpc.send_compressed(encoding);
    }
    grpc.ready().await.unwrap();
    grpc.unary(
        authorized(body, token),
        PathAndQuery::from_static("/station.v1.Sync/Push"),
        RawBytes,
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_do_not_decode_are_refused_and_change_nothing() {
    let hub = Hub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_agent, events) = recorded(dir.path(), ZEDANG, 2);
    let token = hub.device_token(ZEDANG, "zd-1");
    let mut client = hub.client().await;
    client
        .push(authorized(push_of(&events[..1]), &token))
        .await
        .unwrap();
    let before = hub.snapshot();

    // A well-formed push cut short, random-looking garbage, a varint that
    // never ends, and garbage that arrives gzip-compressed.
    let good = push_of(&events[1..]).encode_to_vec();
    let cut = good[..good.len() - 5].to_vec();
    let garbage: Vec<u8> = (0u8..=255).map(|b| b.wrapping_mul(167) ^ 0x5a).collect();
    let endless = vec![
        0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    for (body, compression) in [
        (cut, None),
        (garbage, None),
        (endless, None),
        (
            vec![0xde, 0xad, 0xbe, 0xef],
            Some(CompressionEncoding::Gzip),
        ),
    ] {
        let plain = compression.is_none();
        let status = push_raw(&hub, body, &token, compression).await.unwrap_err();
        if plain {
            // Bytes that do not decode: the caller's fault, not to be retried.
            assert_eq!(status.code(), Code::InvalidArgument, "{status}");
        } else {
            // A compressed body that does not even decompress is refused by
            // tonic's transport layer before the codec sees it.
            assert_ne!(status.code(), Code::Ok, "{status}");
        }
        assert_eq!(hub.snapshot(), before);
    }
    // The decoding refusal comes after the token check.
    let status = push_raw(&hub, vec![0xff; 8], "nonsense", None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // The same bytes uncut are accepted.
    let reply = push_raw(&hub, good, &token, None).await.unwrap();
    let ack = station_proto::v1::PushResponse::decode(reply.as_slice()).unwrap();
    assert_eq!(ack.acks[0].durable_through, 2);
    assert_eq!(
        Uuid::from_slice(&ack.acks[0].origin_id).unwrap().as_bytes()[..],
        events[0].origin_id[..]
    );
    hub.stop().await;
}
