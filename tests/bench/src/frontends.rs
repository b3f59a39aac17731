//! `frontends`: the hub as served (`Sync`, `Query`, the projector) over
//! each engine of its log, and a device's failover between front-ends.
//!
//! - ingest: the devices of `hub-ingest` (same generator, same batches, one
//!   connection each, all at once) pushing through one served hub: on its
//!   embedded sled store, then as a front-end of a JetStream log over one
//!   node (R1) and over three nodes on loopback (R3), in the same run. A push
//!   the front-end answers `UNAVAILABLE` (the cluster lost a race, a leader
//!   moved) is sent again, as the agent does.
//! - failover: two front-ends over the R3 log; a device that synced through
//!   the first syncs one new event after the first died (its runtime shut
//!   down: listener, connections and cluster link gone at once, as a killed
//!   process leaves them), with the address
//!   list `first,second`; against the same round straight to the second.
//!
//! The nodes are the pinned `nats-server` that `STATION_NATS_SERVER` names;
//! without it the JetStream rows are kept, marked skipped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use station_agent::sync::{SyncOptions, sync_once};
use station_agent::{Agent, InitOptions, OpenOptions};
use station_hub::config::{HubConfig, LogEngine, LogRules};
use station_hub::server::ServerOptions;
use station_hub::{Hub, HubOptions, Listeners};
use station_proto::Body;
use station_proto::v1::{ActivityHeld, ActivityKind, HelloRequest, PushRequest};

use crate::hub_log::{Nodes, start_nodes};
use crate::ingest::{Device, devices, with_token};
use crate::{Row, ms, progress};

const SCENARIO: &str = "frontends";
const CACHE: u64 = 256 * 1024 * 1024;

/// A hub served in this process, on the runtime it was started on.
struct Served {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), station_hub::server::ServeError>>,
}

impl Served {
    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await??;
        Ok(())
    }
}

/// A hub on `data`: on sled, or a front-end of the log `log` names.
async fn open(data: &Path, log: Option<LogRules>) -> anyhow::Result<Hub> {
    let mut config = HubConfig::builtin()?;
    if let Some(log) = log {
        config.log = log;
    }
    Ok(Hub::open(HubOptions {
        data: data.to_path_buf(),
        cache_capacity: CACHE,
        server: ServerOptions {
            config: Some(Arc::new(config)),
            ..ServerOptions::default()
        },
        key: station_hub::store::StoreKey::default(),
    })
    .await?)
}

async fn serve(hub: Hub) -> anyhow::Result<Served> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(hub.serve(Listeners::grpc(listener), async {
        let _ = stopped.await;
    }));
    Ok(Served {
        url,
        stop: Some(stop),
        task,
    })
}

fn rules(servers: &[String], replicas: usize, stream: &str) -> LogRules {
    LogRules {
        engine: LogEngine::Jetstream,
        servers: servers.to_vec(),
        credentials: None,
        replicas,
        stream: stream.into(),
    }
}

/// One device's pushes, each sent again while the hub answers
/// `UNAVAILABLE`; when it started and ended.
async fn pushes(
    url: String,
    bearer: String,
    device: Device,
    barrier: Arc<tokio::sync::Barrier>,
) -> anyhow::Result<(Instant, Instant)> {
    let options = SyncOptions::new(url, None);
    let mut client = station_agent::sync::connect(&options).await?;
    let hello = HelloRequest {
        origin_id: device.origin.as_bytes().to_vec(),
        station_code: device.station.into(),
        head_seq: device.batches.iter().map(|b| b.len() as u64).sum(),
        device_clock_ms: chrono::Utc::now().timestamp_millis(),
        agent_version: "bench".into(),
        ..HelloRequest::default()
    };
    client.hello(with_token(hello, &bearer)?).await?;
    barrier.wait().await;
    let start = Instant::now();
    for events in device.batches {
        let last = events.last().map_or(0, |e| e.origin_seq);
        let mut attempts = 0;
        loop {
            let request = PushRequest {
                events: events.clone(),
                heads: Vec::new(),
                ..PushRequest::default()
            };
            match client.push(with_token(request, &bearer)?).await {
                Ok(acks) => {
                    let acks = acks.into_inner();
                    anyhow::ensure!(
                        acks.acks.iter().any(|a| a.durable_through >= last),
                        "push not acknowledged through {last}: {acks:?}"
                    );
                    break;
                }
                Err(status) if status.code() == tonic::Code::Unavailable && attempts < 50 => {
                    attempts += 1;
                }
                Err(status) => return Err(status.into()),
            }
        }
    }
    Ok((start, Instant::now()))
}

/// Every device's pushes through a fresh hub on `data` (sled, or a
/// front-end of `log`); events per second.
async fn ingest(data: &Path, log: Option<LogRules>, devices: &[Device]) -> anyhow::Result<f64> {
    let hub = open(data, log).await?;
    let mut bearers = Vec::with_capacity(devices.len());
    for (d, device) in devices.iter().enumerate() {
        bearers.push(
            station_hub::auth::enroll_device(hub.store(), device.station, &format!("dev-{d}"))?
                .bearer,
        );
    }
    let served = serve(hub).await?;
    let barrier = Arc::new(tokio::sync::Barrier::new(devices.len()));
    let tasks: Vec<_> = devices
        .iter()
        .cloned()
        .zip(bearers)
        .map(|(device, bearer)| {
            tokio::spawn(pushes(
                served.url.clone(),
                bearer,
                device,
                Arc::clone(&barrier),
            ))
        })
        .collect();
    let mut spans = Vec::with_capacity(tasks.len());
    for task in tasks {
        spans.push(task.await??);
    }
    served.stop().await?;
    let events: usize = devices
        .iter()
        .map(|d| d.batches.iter().map(Vec::len).sum::<usize>())
        .sum();
    let start = spans.iter().map(|(s, _)| *s).min();
    let end = spans.iter().map(|(_, e)| *e).max();
    let secs = match (start, end) {
        (Some(start), Some(end)) => (end - start).as_secs_f64(),
        _ => 0.0,
    };
    Ok(events as f64 / secs.max(f64::EPSILON))
}

fn activity(n: i32) -> Body {
    Body::ActivityHeld(ActivityHeld {
        held_on: "2026-11-20".into(),
        community_code: "540502001001".into(),
        kind: ActivityKind::PartyPublicWelfare as i32,
        title: format!("活动 {n}"),
        participants: n,
        person_times: n,
        volunteers: 0,
        volunteer_minutes: 0,
    })
}

/// A device's round's time through the address list `urls`, after
/// recording one event.
async fn round(phone: &Arc<Agent>, urls: &str, bearer: &str, n: i32) -> anyhow::Result<f64> {
    phone.record(activity(n))?;
    let mut options = SyncOptions::new(urls, Some(bearer.to_string()));
    options.connect_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let report = sync_once(Arc::clone(phone), &options).await?;
    let took = ms(started.elapsed());
    anyhow::ensure!(
        report.durable_through == u64::try_from(n)?,
        "the round left the device at {} of {n}",
        report.durable_through
    );
    Ok(took)
}

/// Two front-ends over the log of `servers`: the failover round and the
/// direct one, in ms.
async fn failover(dir: &Path, servers: &[String]) -> anyhow::Result<(f64, f64)> {
    let log = rules(servers, 3, "FAILOVER");
    // The first front-end runs on a runtime of its own: shutting it down
    // drops its listener, its connections and its link to the cluster at
    // once, as a killed process does.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (started, first) = tokio::sync::oneshot::channel();
    let (data, rules_a) = (dir.join("a"), log.clone());
    runtime.spawn(async move {
        let result = async {
            let hub = open(&data, Some(rules_a)).await?;
            let bearer =
                station_hub::auth::enroll_device(hub.store(), "540502001", "phone")?.bearer;
            anyhow::Ok((serve(hub).await?, bearer))
        }
        .await;
        let _ = started.send(result);
    });
    let (first, bearer) = first.await??;
    let second = serve(open(&dir.join("b"), Some(log)).await?).await?;
    let phone = Arc::new(Agent::init(
        &dir.join("phone"),
        InitOptions {
            station_code: "540502001".into(),
            worker_id: "worker-1".into(),
            hub_url: None,
            token: None,
        },
        OpenOptions::default(),
    )?);
    let both = format!("{},{}", first.url, second.url);
    round(&phone, &first.url, &bearer, 1).await?;
    // The second front-end takes the token once it has read the shared
    // token records.
    let origin = phone.own_events(0, 1)?[0].origin_id.clone();
    let mut client =
        station_agent::sync::connect(&SyncOptions::new(second.url.clone(), None)).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let hello = HelloRequest {
            origin_id: origin.clone(),
            station_code: "540502001".into(),
            head_seq: 1,
            device_clock_ms: chrono::Utc::now().timestamp_millis(),
            agent_version: "bench".into(),
            ..HelloRequest::default()
        };
        match client.hello(with_token(hello, &bearer)?).await {
            Ok(_) => break,
            Err(status) if Instant::now() > deadline => return Err(status.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let direct = round(&phone, &second.url, &bearer, 2).await?;
    drop(first);
    runtime.shutdown_background();
    let failed_over = round(&phone, &both, &bearer, 3).await?;
    second.stop().await?;
    Ok((failed_over, direct))
}

/// Runs the scenario, adding its rows.
pub async fn run(quick: bool, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let (count, pushes, batch) = if quick { (20, 2, 10) } else { (50, 5, 100) };
    let devices = devices(count, pushes, batch);
    let size = format!("{count} devices pushing {pushes} × {batch} events each, loopback");
    let baseline = "the same hub served on its embedded sled store";
    progress!("frontends: sled");
    let dir = tempfile::tempdir()?;
    let sled_rate = ingest(&dir.path().join("sled"), None, &devices).await?;

    let binary = std::env::var_os("STATION_NATS_SERVER").map(PathBuf::from);
    let Some(binary) = binary.filter(|b| b.is_file()) else {
        for metric in [
            format!("front-end on JetStream R1: {size}: events/s"),
            format!("front-end on JetStream R3: {size}: events/s"),
            "failover: a device's round when its front-end died".to_string(),
        ] {
            rows.push(Row::skipped(
                SCENARIO,
                metric,
                baseline,
                "",
                "no nats-server: set STATION_NATS_SERVER (scripts/nats-server.sh path)",
            ));
        }
        return Ok(());
    };
    let mut r3: Option<Nodes> = None;
    for (replicas, nodes) in [(1, 1), (3, 3)] {
        progress!("frontends: a front-end on JetStream R{replicas}");
        let cluster = start_nodes(&binary, nodes)?;
        // The cluster has elected its leaders once the log opens.
        tokio::task::block_in_place(|| crate::hub_log::open(&cluster, replicas))?;
        let data = dir.path().join(format!("r{replicas}"));
        let rate = ingest(
            &data,
            Some(rules(&cluster.servers, replicas, "BENCH")),
            &devices,
        )
        .await?;
        rows.push(
            Row::new(
                SCENARIO,
                format!("front-end on JetStream R{replicas}: {size}: events/s"),
                rate,
                baseline,
                sled_rate,
                "events/s",
            )
            .note(format!(
                "one served front-end (Sync, Query, projector fed from the stream) over {nodes} nats-server 2.15 node(s), default sync"
            )),
        );
        if replicas == 3 {
            r3 = Some(cluster);
        }
    }
    if let Some(cluster) = r3 {
        progress!("frontends: failover between two front-ends");
        let (failed_over, direct) = failover(dir.path(), &cluster.servers).await?;
        rows.push(
            Row::new(
                SCENARIO,
                "failover: a device's round (1 new event) when its first front-end died",
                failed_over,
                "the same round straight to the live front-end",
                direct,
                "ms",
            )
            .note("address list first,second; the dead front-end refuses connections"),
        );
    }
    Ok(())
}
