//! `sync-backlog`: a phone's backlog of field work pushed to a real hub
//! through the weak-link simulator (64 kbit/s up, 256 kbit/s down, 300 ms
//! round trip, each connection cut 20 s after it opens), then pulled by a
//! colleague's phone through the same kind of link.
//!
//! Against: the link limit (the zstd-compressed protobuf payload ÷ the
//! bandwidth), the protobuf encoding of the events, and the peer, PouchDB
//! replication of the same records as JSON documents through the same
//! simulator. Targets: wire bytes (both ways) at most ¼ of PouchDB's, and
//! wall time at most 1.5× the link limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use serde_json::{Map, Value};
use station_agent::sync::{SyncOptions, sync_once};
use station_agent::{Agent, InitOptions, OpenOptions};
use station_proto::Event;
use station_proto::ids::Uuid;
use station_proto::v1::{PullResponse, PulledEvent, PushRequest};
use station_sim::fieldwork::FieldWork;
use station_sim::weaklink::{LinkProfile, WeakLink};

use crate::{Goal, Row, pouchdb, progress};

const SCENARIO: &str = "sync-backlog";
const STATION: &str = "540502001";
const UP_BYTES_PER_SEC: u64 = 64_000 / 8;
const DOWN_BYTES_PER_SEC: u64 = 256_000 / 8;

/// The link of the scenario: 64 kbit/s up, 256 kbit/s down, 150 ms each
/// way, every connection cut 20 s after it opens.
pub fn profile(seed: u64) -> LinkProfile {
    LinkProfile {
        up_bytes_per_sec: UP_BYTES_PER_SEC,
        down_bytes_per_sec: DOWN_BYTES_PER_SEC,
        one_way_latency: Duration::from_millis(150),
        cut_every: Some((Duration::from_secs(20), Duration::from_secs(20))),
        stall_every: None,
        stall_for: (Duration::ZERO, Duration::ZERO),
        seed,
    }
}

fn uuid_text(bytes: &[u8]) -> String {
    Uuid::from_slice(bytes).map_or_else(
        |_| bytes.iter().map(|b| format!("{b:02x}")).collect(),
        |id| id.to_string(),
    )
}

/// An event as a PouchDB document: the body in the proto3 JSON mapping
/// (`{"visitRecorded": {…}}`) beside the envelope fields, named and written
/// as proto3 JSON writes them (64-bit integers as strings), ids as UUID
/// text; `_id` is the event id.
pub fn event_doc(event: &Event) -> Value {
    let mut doc = match event.body.as_ref().map(station_proto::json::body_to_json) {
        Some(Value::Object(body)) => body,
        _ => Map::new(),
    };
    let id = uuid_text(&event.event_id);
    doc.insert("_id".into(), Value::String(id.clone()));
    doc.insert("eventId".into(), Value::String(id));
    doc.insert("originId".into(), uuid_text(&event.origin_id).into());
    doc.insert("originSeq".into(), event.origin_seq.to_string().into());
    doc.insert("stationCode".into(), event.station_code.clone().into());
    doc.insert("author".into(), event.author.clone().into());
    doc.insert(
        "recordedAtMs".into(),
        event.recorded_at_ms.to_string().into(),
    );
    doc.insert("hlc".into(), event.hlc.to_string().into());
    Value::Object(doc)
}

fn new_agent(dir: &std::path::Path, worker: &str) -> anyhow::Result<Arc<Agent>> {
    Ok(Arc::new(Agent::init(
        dir,
        InitOptions {
            station_code: STATION.into(),
            worker_id: worker.into(),
            hub_url: None,
            token: None,
        },
        OpenOptions::default(),
    )?))
}

/// Syncs until `done` says the round got everything.
async fn sync_until(
    agent: &Arc<Agent>,
    options: &SyncOptions,
    done: impl Fn(&station_agent::sync::SyncReport) -> bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        match sync_once(Arc::clone(agent), options).await {
            Ok(report) if done(&report) => return Ok(start.elapsed()),
            Ok(_) => {}
            Err(e) if e.is_retriable() => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// zstd (default level, as tonic sends) of one message's encoding: the
/// fewest bytes the payload can cross the link in.
fn compressed_len(encoded: &[u8]) -> anyhow::Result<usize> {
    Ok(zstd::bulk::compress(encoded, 0)?.len())
}

/// Runs the scenario, adding its rows.
pub async fn run(quick: bool, peer: bool, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let events = if quick { 100 } else { 10_000 };
    let hub_dir = tempfile::tempdir()?;
    let store = Arc::new(station_hub::store::HubStore::open(
        hub_dir.path(),
        64 << 20,
    )?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hub_addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(station_hub::serve::run(
        listener,
        Arc::clone(&store),
        async {
            let _ = stopped.await;
        },
    ));

    progress!("sync-backlog: recording {events} events on the phone");
    let device_dir = tempfile::tempdir()?;
    let agent = new_agent(device_dir.path(), "bench")?;
    let mut work = FieldWork::new(STATION, 42);
    work.record_on(&agent, events)?;
    let own = agent.own_events(0, usize::MAX)?;
    anyhow::ensure!(own.len() == events, "the phone holds {} events", own.len());
    let proto_bytes: usize = own.iter().map(prost::Message::encoded_len).sum();
    let push_payload = compressed_len(
        &PushRequest {
            events: own.clone(),
            heads: Vec::new(),
            ..PushRequest::default()
        }
        .encode_to_vec(),
    )?;
    let n = events as f64;
    compression_breakdown(&own)?;

    // The phone pushes its backlog.
    progress!("sync-backlog: pushing through the weak link");
    let link = WeakLink::start(hub_addr, profile(7)).await?;
    let token = station_hub::auth::enroll_device(&store, STATION, "bench")?.bearer;
    let options = SyncOptions::new(format!("http://{}", link.local_addr()), Some(token));
    let push_time = sync_until(&agent, &options, |r| r.durable_through == events as u64)
        .await?
        .as_secs_f64();
    let push = link.counters();
    link.shutdown().await;
    let push_limit = push_payload as f64 / UP_BYTES_PER_SEC as f64;
    let ours_wire = (push.up_bytes + push.down_bytes) as f64;

    // The peer: PouchDB replicates the same records.
    progress!("sync-backlog: PouchDB replication of the same records");
    let docs: Vec<Value> = own.iter().map(event_doc).collect();
    let json_bytes: usize = docs.iter().map(|d| d.to_string().len()).sum();
    let peer_metric_bytes = format!("push of {events} events: wire bytes per event, up + down");
    let peer_metric_time = format!("push of {events} events: wall time");
    let peer_name = "PouchDB 7 replication (express-pouchdb)";
    let timeout = Duration::from_secs(if quick { 300 } else { 3_600 });
    let peer = match peer.then(pouchdb::install) {
        None => Err("left out by --no-peer".to_string()),
        Some(Ok(peer)) => peer
            .replicate(&docs, profile(7), timeout)
            .await
            .map_err(|e| format!("{e:#}")),
        Some(Err(why)) => Err(why),
    };
    match peer {
        Ok(peer) => {
            let theirs = (peer.counters.up_bytes + peer.counters.down_bytes) as f64;
            rows.push(
                Row::new(
                    SCENARIO,
                    peer_metric_bytes,
                    ours_wire / n,
                    peer_name,
                    theirs / n,
                    "bytes/event",
                )
                .goal(Goal::RatioAtMost(0.25))
                .note(format!(
                    "ours {} up + {} down; PouchDB {} up + {} down, JSON documents {} bytes/event",
                    push.up_bytes,
                    push.down_bytes,
                    peer.counters.up_bytes,
                    peer.counters.down_bytes,
                    crate::number(json_bytes as f64 / n)
                )),
            );
            rows.push(
                Row::new(
                    SCENARIO,
                    peer_metric_time,
                    push_time,
                    peer_name,
                    peer.elapsed.as_secs_f64(),
                    "s",
                )
                .note(format!(
                    "PouchDB: {} cuts, {} replication starts",
                    peer.counters.cuts, peer.attempts
                )),
            );
        }
        Err(why) => {
            progress!("sync-backlog: PouchDB peer skipped: {why}");
            rows.push(
                Row::skipped(
                    SCENARIO,
                    peer_metric_bytes,
                    peer_name,
                    "bytes/event",
                    why.clone(),
                )
                .goal(Goal::RatioAtMost(0.25)),
            );
            rows.push(Row::skipped(
                SCENARIO,
                peer_metric_time,
                peer_name,
                "s",
                why,
            ));
        }
    }
    rows.push(Row::new(
        SCENARIO,
        format!("push of {events} events: wire bytes per event, up"),
        push.up_bytes as f64 / n,
        "protobuf encoding",
        proto_bytes as f64 / n,
        "bytes/event",
    ));
    rows.push(
        Row::new(
            SCENARIO,
            format!(
                "push of {events} events through 64 kbit/s up, 300 ms RTT ({} cuts)",
                push.cuts
            ),
            push_time,
            "link limit: zstd payload ÷ 64 kbit/s",
            push_limit,
            "s",
        )
        .goal(Goal::RatioAtMost(1.2))
        .note(format!("payload {push_payload} bytes")),
    );

    // A colleague's phone of the same station pulls the whole backlog.
    progress!("sync-backlog: a colleague pulls the backlog");
    let colleague_dir = tempfile::tempdir()?;
    let colleague = new_agent(colleague_dir.path(), "bench-2")?;
    let down_link = WeakLink::start(hub_addr, profile(8)).await?;
    let token = station_hub::auth::enroll_device(&store, STATION, "bench-2")?.bearer;
    let options = SyncOptions::new(format!("http://{}", down_link.local_addr()), Some(token));
    let pull_time = sync_until(&colleague, &options, |r| r.pull_cursor >= events as u64)
        .await?
        .as_secs_f64();
    let pull = down_link.counters();
    down_link.shutdown().await;
    let pulled: Vec<PulledEvent> = own
        .iter()
        .enumerate()
        .map(|(i, event)| PulledEvent {
            hub_seq: i as u64 + 1,
            event: Some(event.clone()),
        })
        .collect();
    let pull_payload = compressed_len(
        &PullResponse {
            events: pulled,
            next_cursor: events as u64,
            head: events as u64,
            heads: Vec::new(),
            ..PullResponse::default()
        }
        .encode_to_vec(),
    )?;
    let pull_limit = pull_payload as f64 / DOWN_BYTES_PER_SEC as f64;
    rows.push(Row::new(
        SCENARIO,
        format!("pull of {events} events by a colleague: wire bytes per event, down"),
        pull.down_bytes as f64 / n,
        "protobuf encoding",
        proto_bytes as f64 / n,
        "bytes/event",
    ));
    rows.push(
        Row::new(
            SCENARIO,
            format!(
                "pull of {events} events through 256 kbit/s down, 300 ms RTT ({} cuts)",
                pull.cuts
            ),
            pull_time,
            "link limit: zstd payload ÷ 256 kbit/s",
            pull_limit,
            "s",
        )
        .goal(Goal::RatioAtMost(1.2))
        .note(format!(
            "payload {pull_payload} bytes; {} up + {} down crossed",
            pull.up_bytes, pull.down_bytes
        )),
    );
    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// Prints what batching costs in compressed bytes: the backlog cut into
/// batches of a given encoded size, each compressed apart, at tonic's zstd
/// level (3) and at the level pushes are sent at, against the whole backlog
/// compressed at once.
fn compression_breakdown(own: &[Event]) -> anyhow::Result<()> {
    let whole = PushRequest {
        events: own.to_vec(),
        heads: Vec::new(),
        ..PushRequest::default()
    }
    .encode_to_vec();
    for level in [3, station_agent::sync::compress::PUSH_LEVEL] {
        let started = Instant::now();
        let all = zstd::bulk::compress(&whole, level)?.len();
        let mut line = format!(
            "level {level}: whole {all} in {:.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        for budget in [16_000usize, 32_000, 64_000, 128_000, 256_000] {
            let mut total = 0usize;
            let mut packed = 0usize;
            let mut left: Option<std::sync::Arc<[u8]>> = None;
            let mut batch: Vec<Event> = Vec::new();
            let mut bytes = 0usize;
            let mut batches = 0usize;
            let mut flush = |batch: &mut Vec<Event>| -> anyhow::Result<()> {
                let push = PushRequest {
                    events: std::mem::take(batch),
                    heads: Vec::new(),
                    ..PushRequest::default()
                };
                total += zstd::bulk::compress(&push.encode_to_vec(), level)?.len();
                // Packed as a device packs it, against the batch before.
                let (sent, next) =
                    station_agent::sync::compress::pack(&push, left.as_deref(), level)?;
                packed += sent.encoded_len();
                left = Some(next);
                batches += 1;
                Ok(())
            };
            for event in own {
                let len = event.encoded_len();
                if !batch.is_empty() && bytes + len > budget {
                    flush(&mut batch)?;
                    bytes = 0;
                }
                bytes += len;
                batch.push(event.clone());
            }
            if !batch.is_empty() {
                flush(&mut batch)?;
            }
            line.push_str(&format!(
                "; {}k×{batches}: {total} ({:.3}), packed {packed} ({:.3})",
                budget / 1000,
                total as f64 / all as f64,
                packed as f64 / all as f64
            ));
        }
        progress!("sync-backlog breakdown: {line}");
    }
    Ok(())
}
