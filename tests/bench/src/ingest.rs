//! `hub-ingest`: many devices pushing their backlogs to one hub at once, on
//! loopback: each device is enrolled with its own token, says `Hello`, then
//! pushes its events in batches through the `Sync` service (zstd, as the
//! agent sends), each push acknowledged once durable. The hub runs as it is
//! served, projector included. Each device's backlog is field work of the
//! demo's district generator (`station_sim::district`).
//!
//! Against: raw sled batch inserts of the same encoded events, in the same
//! batches from as many concurrent writers, each batch made durable the same
//! way (flush + fsync, shared by concurrent writers). Target: at least half
//! the raw rate.
//!
//! Signed logs: the same backlogs pushed by devices whose key the hub holds,
//! each push carrying its signed head (made before the clock starts: the
//! device's work), against the same pushes unsigned, in the same run. The
//! hub extends each origin's chain either way; signed, it also verifies one
//! signature per push and compares what it would store with what was sent.
//! Target: at least 90% of the unsigned rate.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use station_agent::durable::GroupCommit;
use station_proto::Event;
use station_proto::chain::{self, Chain};
use station_proto::ids::Uuid;
use station_proto::v1::sync_client::SyncClient;
use station_proto::v1::{HelloRequest, PushRequest, SignedHead};
use station_sim::district::{NEDONG_STATIONS as STATIONS, Worker};
use tonic::transport::Channel;

use crate::{Goal, Row, ms, percentile, progress};

const SCENARIO: &str = "hub-ingest";
/// The hub's default page cache (`station-hub serve --cache-capacity`).
const CACHE: u64 = 256 * 1024 * 1024;

/// One device's backlog.
#[derive(Clone)]
pub(crate) struct Device {
    pub(crate) station: &'static str,
    pub(crate) origin: Uuid,
    /// Its events, in batches as pushed.
    pub(crate) batches: Vec<Vec<Event>>,
    /// Its public key and each batch's signed head, when it signs.
    signed: Option<(Vec<u8>, Vec<SignedHead>)>,
}

impl Device {
    /// The same backlog, signed by a key of its own: one head per batch.
    fn signed(&self, seed: u8) -> Device {
        let secret = [seed; chain::SECRET_KEY_BYTES];
        let mut links = Chain::start(self.origin);
        let heads = self
            .batches
            .iter()
            .map(|batch| {
                for event in batch {
                    // The backlog is gap-free from seq 1.
                    let _ = links.push(event);
                }
                SignedHead {
                    origin_id: self.origin.as_bytes().to_vec(),
                    last_seq: links.seq(),
                    signature: chain::sign_head(&secret, self.origin, links.seq(), &links.head())
                        .to_vec(),
                    public_key: Vec::new(),
                }
            })
            .collect();
        Device {
            signed: Some((chain::public_key(&secret).to_vec(), heads)),
            ..self.clone()
        }
    }
}

/// `count` devices, each with `pushes` batches of `batch` valid events.
pub(crate) fn devices(count: usize, pushes: usize, batch: usize) -> Vec<Device> {
    let events = pushes * batch;
    // About two entries a day per worker: enough days for the backlog.
    let last_day = station_hub::projections::today_in_china();
    let first_day = last_day - chrono::Days::new(events as u64 + 30);
    (0..count)
        .map(|d| {
            let station = STATIONS[d % STATIONS.len()];
            let origin = Uuid::now_v7();
            let device = u32::try_from(d / STATIONS.len()).unwrap_or(u32::MAX);
            let global = u32::try_from(d).unwrap_or(u32::MAX);
            let mut worker = Worker::new(7, station, device, global, first_day, last_day);
            let entries = worker.take_valid(events, Uuid::now_v7);
            let events: Vec<Event> = entries
                .into_iter()
                .zip(1u64..)
                .map(|((id, entry), seq)| Event {
                    event_id: id.as_bytes().to_vec(),
                    origin_id: origin.as_bytes().to_vec(),
                    origin_seq: seq,
                    station_code: station.into(),
                    author: format!("worker-{d}"),
                    recorded_at_ms: entry.recorded_at_ms,
                    hlc: (entry.recorded_at_ms as u64) << 16 | seq,
                    body: Some(entry.body),
                })
                .collect();
            Device {
                station,
                origin,
                batches: events.chunks(batch).map(<[Event]>::to_vec).collect(),
                signed: None,
            }
        })
        .collect()
}

/// One writer's timings: when its first batch started, when its last ended,
/// and each batch's latency.
struct Timings {
    start: Instant,
    end: Instant,
    latencies_ms: Vec<f64>,
}

fn summarise(timings: &[Timings], events: usize) -> (f64, f64) {
    let start = timings.iter().map(|t| t.start).min();
    let end = timings.iter().map(|t| t.end).max();
    let secs = match (start, end) {
        (Some(s), Some(e)) => e.duration_since(s).as_secs_f64().max(1e-9),
        _ => 1e-9,
    };
    let mut latencies: Vec<f64> = timings
        .iter()
        .flat_map(|t| t.latencies_ms.iter().copied())
        .collect();
    latencies.sort_by(f64::total_cmp);
    (events as f64 / secs, percentile(&latencies, 0.99))
}

pub fn with_token<T>(message: T, bearer: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {bearer}").parse()?);
    request.set_timeout(Duration::from_secs(120));
    Ok(request)
}

async fn device_pushes(
    url: String,
    bearer: String,
    device: Device,
    barrier: Arc<tokio::sync::Barrier>,
) -> anyhow::Result<Timings> {
    let options = station_agent::sync::SyncOptions::new(url, None);
    let mut client: SyncClient<Channel> = station_agent::sync::connect(&options).await?;
    let hello = HelloRequest {
        origin_id: device.origin.as_bytes().to_vec(),
        station_code: device.station.into(),
        head_seq: device.batches.iter().map(|b| b.len() as u64).sum(),
        device_clock_ms: chrono::Utc::now().timestamp_millis(),
        agent_version: "bench".into(),
        public_key: device
            .signed
            .as_ref()
            .map(|(key, _)| key.clone())
            .unwrap_or_default(),
        wiped: false,
    };
    client.hello(with_token(hello, &bearer)?).await?;
    barrier.wait().await;
    let start = Instant::now();
    let mut latencies_ms = Vec::with_capacity(device.batches.len());
    let mut heads = device.signed.map(|(_, heads)| heads.into_iter());
    for events in device.batches {
        let last = events.last().map_or(0, |e| e.origin_seq);
        let heads = heads
            .as_mut()
            .and_then(Iterator::next)
            .into_iter()
            .collect();
        let sent = Instant::now();
        let acks = client
            .push(with_token(
                PushRequest {
                    events,
                    heads,
                    ..PushRequest::default()
                },
                &bearer,
            )?)
            .await?
            .into_inner();
        latencies_ms.push(ms(sent.elapsed()));
        anyhow::ensure!(
            acks.acks.iter().any(|a| a.durable_through == last) && acks.quarantined == 0,
            "push not acknowledged through {last}: {acks:?}"
        );
    }
    Ok(Timings {
        start,
        end: Instant::now(),
        latencies_ms,
    })
}

/// Pushes every device's backlog to a fresh hub: served as `station-hub
/// serve` serves it (`Sync`, `Query`, the projector applying pushes as they
/// become durable), or with `Sync` alone; its store encrypted at rest, as
/// `station-hub` opens it, unless `in_clear`.
async fn hub(
    devices: Vec<Device>,
    projector: bool,
    in_clear: bool,
) -> anyhow::Result<Vec<Timings>> {
    let dir = tempfile::tempdir()?;
    let key = if in_clear {
        None
    } else {
        Some(station_agent::seal::KeySource::Key(
            station_agent::seal::WrappingKey::generate()?,
        ))
    };
    let store = Arc::new(station_hub::store::HubStore::open_keyed(
        dir.path(),
        CACHE,
        station_hub::store::MigrationOptions::default(),
        station_hub::store::StoreKey {
            key,
            ..Default::default()
        },
    )?);
    let mut bearers = Vec::with_capacity(devices.len());
    for (d, device) in devices.iter().enumerate() {
        bearers.push(
            station_hub::auth::enroll_device(&store, device.station, &format!("dev-{d}"))?.bearer,
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let server = if projector {
        tokio::spawn(station_hub::serve::run(
            listener,
            Arc::clone(&store),
            shutdown,
        ))
    } else {
        let sync = tonic::service::interceptor::InterceptedService::new(
            station_hub::server::SyncService::new(Arc::clone(&store)).into_server(),
            station_hub::auth::Authenticator::new(Arc::clone(&store)),
        );
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(sync)
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
                .map_err(station_hub::server::ServeError::from)
        })
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(devices.len()));
    let tasks: Vec<_> = devices
        .into_iter()
        .zip(bearers)
        .map(|(device, bearer)| {
            tokio::spawn(device_pushes(
                url.clone(),
                bearer,
                device,
                Arc::clone(&barrier),
            ))
        })
        .collect();
    let mut timings = Vec::with_capacity(tasks.len());
    for task in tasks {
        timings.push(task.await??);
    }
    let _ = stop.send(());
    server.await??;
    Ok(timings)
}

/// One event as the raw baseline writes it.
struct RawEvent {
    station: &'static str,
    event_id: Vec<u8>,
    bytes: Vec<u8>,
}

/// Writes every writer's batches into a fresh sled database from as many
/// threads: the encoded event under its position alone, or (`hub_keys`) in
/// the keys of the hub's log format 2 (one run record and one station
/// record per batch, one id key per event). Each batch is made durable before the
/// next, sharing syncs with the other writers.
fn raw_sled(writers: &[Vec<Vec<RawEvent>>], hub_keys: bool) -> anyhow::Result<Vec<Timings>> {
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(CACHE)
        .open()?;
    let tree = db.open_tree("hub")?;
    let group = GroupCommit::open(db.clone(), dir.path(), 0)?;
    let next = AtomicU64::new(1);
    let barrier = std::sync::Barrier::new(writers.len());
    let now_ms = chrono::Utc::now().timestamp_millis().to_be_bytes();
    let key = |prefix: &[u8], parts: &[&[u8]]| {
        let mut key = prefix.to_vec();
        for part in parts {
            key.extend_from_slice(part);
        }
        key
    };
    std::thread::scope(|scope| {
        let threads: Vec<_> = writers
            .iter()
            .map(|writer| {
                let (tree, group, next, barrier) = (&tree, &group, &next, &barrier);
                scope.spawn(move || -> anyhow::Result<Timings> {
                    barrier.wait();
                    let start = Instant::now();
                    let mut latencies_ms = Vec::new();
                    for events in writer {
                        let sent = Instant::now();
                        let mut batch = sled::Batch::default();
                        let first = next.fetch_add(events.len() as u64, Ordering::Relaxed);
                        if hub_keys {
                            // Format 2: the batch's events in one run record
                            // with its receive time, the station's positions
                            // as one range, and an id key per event.
                            let last = first + events.len() as u64 - 1;
                            let mut run = first.to_be_bytes().to_vec();
                            run.push(1);
                            run.extend_from_slice(&now_ms);
                            for (i, event) in events.iter().enumerate() {
                                let pos = (first + i as u64).to_be_bytes();
                                run.extend_from_slice(&(event.bytes.len() as u32).to_be_bytes());
                                run.extend_from_slice(&event.bytes);
                                batch.insert(key(b"i:", &[&event.event_id]), &pos);
                            }
                            batch.insert(key(b"l:", &[&last.to_be_bytes()]), run);
                            if let Some(event) = events.first() {
                                let mut range = first.to_be_bytes().to_vec();
                                range.extend_from_slice(&(events.len() as u32).to_be_bytes());
                                batch.insert(
                                    key(b"t:", &[event.station.as_bytes(), &last.to_be_bytes()]),
                                    range,
                                );
                            }
                        } else {
                            for (i, event) in events.iter().enumerate() {
                                let pos = (first + i as u64).to_be_bytes();
                                batch.insert(key(b"e:", &[&pos]), event.bytes.as_slice());
                            }
                        }
                        tree.apply_batch(batch)?;
                        let ticket = group.written(None);
                        group.wait_durable(ticket)?;
                        latencies_ms.push(ms(sent.elapsed()));
                    }
                    Ok(Timings {
                        start,
                        end: Instant::now(),
                        latencies_ms,
                    })
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| anyhow::anyhow!("a writer thread panicked"))?
            })
            .collect()
    })
}

/// Runs the scenario, adding its rows.
pub async fn run(quick: bool, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let (count, pushes, batch) = if quick { (200, 2, 10) } else { (200, 5, 100) };
    let events = count * pushes * batch;
    progress!("hub-ingest: {count} devices × {pushes} pushes × {batch} events");
    let devices = devices(count, pushes, batch);
    let raw: Arc<Vec<Vec<Vec<RawEvent>>>> = Arc::new(
        devices
            .iter()
            .map(|d| {
                d.batches
                    .iter()
                    .map(|b| {
                        b.iter()
                            .map(|e| RawEvent {
                                station: d.station,
                                event_id: e.event_id.clone(),
                                bytes: prost::Message::encode_to_vec(e),
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect(),
    );
    let signed: Vec<Device> = devices
        .iter()
        .zip(0u8..)
        .map(|(d, seed)| d.signed(seed.wrapping_add(1)))
        .collect();
    let served = hub(devices.clone(), true, false).await?;
    progress!("hub-ingest: the same hub with its store in clear");
    let served_clear = hub(devices.clone(), true, true).await?;
    progress!("hub-ingest: the hub with Sync alone, unsigned then signed pushes");
    let sync_only = hub(devices.clone(), false, false).await?;
    let sync_signed = hub(signed, false, false).await?;
    let sync_unsigned_again = hub(devices, false, false).await?;
    progress!("hub-ingest: raw sled baselines");
    let one_key = tokio::task::spawn_blocking({
        let raw = Arc::clone(&raw);
        move || raw_sled(&raw, false)
    })
    .await??;
    let hub_keys = tokio::task::spawn_blocking(move || raw_sled(&raw, true)).await??;
    let (served_rate, served_p99) = summarise(&served, events);
    let (clear_rate, _) = summarise(&served_clear, events);
    let (sync_rate, _) = summarise(&sync_only, events);
    let (signed_rate, signed_p99) = summarise(&sync_signed, events);
    let (unsigned_again_rate, _) = summarise(&sync_unsigned_again, events);
    // The unsigned runs either side of the signed one, so drift in the
    // machine's speed does not count for or against the signatures.
    let unsigned_rate = (sync_rate + unsigned_again_rate) / 2.0;
    let (raw_rate, raw_p99) = summarise(&one_key, events);
    let (keys_rate, _) = summarise(&hub_keys, events);
    let metric = format!("{count} devices pushing {pushes} × {batch} events each, loopback");
    let baseline_name =
        "raw sled apply_batch of the same bytes + flush and fdatasync (group commit)";
    rows.push(
        Row::new(
            SCENARIO,
            format!("{metric}: events/s"),
            served_rate,
            baseline_name,
            raw_rate,
            "events/s",
        )
        .goal(Goal::RatioAtLeast(0.5))
        .note("the hub as served: Sync, Query and the projector"),
    );
    rows.push(
        Row::new(
            SCENARIO,
            format!("{metric}: events/s"),
            served_rate,
            "the same hub with its store in clear",
            clear_rate,
            "events/s",
        )
        .goal(Goal::RatioAtLeast(0.9))
        .note("encryption at rest: each event sealed once, as it is stored"),
    );
    rows.push(Row::new(
        SCENARIO,
        format!("{metric}: p99 push latency"),
        served_p99,
        baseline_name,
        raw_p99,
        "ms",
    ));
    rows.push(
        Row::new(
            SCENARIO,
            "the same, hub serving Sync alone (no projector): events/s",
            sync_rate,
            baseline_name,
            raw_rate,
            "events/s",
        )
        .note("the projector's share of the two cores"),
    );
    rows.push(
        Row::new(
            SCENARIO,
            "the same, hub serving Sync alone (no projector): events/s",
            sync_rate,
            "raw sled writing the hub's log format 2 (per push a run and a station record, per event an id key)",
            keys_rate,
            "events/s",
        )
        .note("the cost of the log's indexes"),
    );
    rows.push(
        Row::new(
            SCENARIO,
            "the same, hub serving Sync alone, every push signed and verified: events/s",
            signed_rate,
            "the same pushes unsigned (mean of the runs before and after)",
            unsigned_rate,
            "events/s",
        )
        .goal(Goal::RatioAtLeast(0.9))
        .note(format!(
            "chain extended per event either way; signed: one Ed25519 verification per push and the stored form compared with the signed bytes; unsigned runs {sync_rate:.0} and {unsigned_again_rate:.0} events/s; signed p99 push {signed_p99:.1} ms"
        )),
    );
    Ok(())
}
