//! `hostile-load`: what an attacker holding sockets open costs the devices
//! and the bureau. A hub served as `station-hub serve` serves it (gRPC and
//! HTTP, projector included) answers a device's 100-event pushes and the
//! bureau's indicator JSON (`GET /api/indicators`, a fresh connection each),
//! first on a quiet network, then while 1,000 idle connections and 200
//! slow-loris clients are held against its two ports (half on each). An
//! idle connection sends nothing; a slow-loris client sends the start of a
//! request (an HTTP head, the HTTP/2 preface) one byte a second; each
//! reconnects as soon as the hub closes it, so the load lasts the whole
//! measurement.
//!
//! Target: the p99 of each within 2× of its quiet figure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use station_hub::server::ServerOptions;
use station_proto::v1::sync_client::SyncClient;
use station_proto::v1::{HelloRequest, PushRequest};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tonic::transport::Channel;

use crate::ingest::{Device, devices, with_token};
use crate::{Goal, Row, ms, percentile, progress};

const SCENARIO: &str = "hostile-load";
/// Idle connections held, half on each port.
const IDLE: usize = 1_000;
/// Slow-loris clients held, half on each port.
const SLOW: usize = 200;

/// Holds one attacking connection to `addr` until `stop`, reconnecting
/// whenever the hub closes it; a slow one sends `opening` a byte a second.
async fn attacker(
    addr: SocketAddr,
    opening: Option<&'static [u8]>,
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicU64>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut socket) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        opened.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0_u8; 256];
        let mut sent = 0;
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if let Some(opening) = opening
                && sent < opening.len()
            {
                if socket.write_all(&opening[sent..=sent]).await.is_err() {
                    break;
                }
                sent += 1;
            }
            // Wait a second, or until the hub closes the connection.
            let read = tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buf)).await;
            if let Ok(Ok(0) | Err(_)) = read {
                break;
            }
        }
    }
}

/// One bureau read of the indicators on a fresh connection: its latency.
async fn indicators(http: SocketAddr, bearer: &str) -> anyhow::Result<f64> {
    let sent = Instant::now();
    let mut stream = TcpStream::connect(http).await?;
    stream.set_nodelay(true)?;
    let head = format!(
        "GET /api/indicators?period=2026-11 HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\
         Authorization: Bearer {bearer}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    anyhow::ensure!(
        answer.starts_with(b"HTTP/1.1 200"),
        "indicators answered {}",
        String::from_utf8_lossy(&answer[..answer.len().min(200)])
    );
    Ok(ms(sent.elapsed()))
}

/// Pushes `device`'s batches one after another: each push's latency.
async fn pushes(grpc: SocketAddr, bearer: &str, device: Device) -> anyhow::Result<Vec<f64>> {
    let options = station_agent::sync::SyncOptions::new(format!("http://{grpc}"), None);
    let mut client: SyncClient<Channel> = station_agent::sync::connect(&options).await?;
    let hello = HelloRequest {
        origin_id: device.origin.as_bytes().to_vec(),
        station_code: device.station.into(),
        head_seq: device.batches.iter().map(|b| b.len() as u64).sum(),
        device_clock_ms: chrono::Utc::now().timestamp_millis(),
        agent_version: "bench".into(),
        public_key: Vec::new(),
        wiped: false,
    };
    client.hello(with_token(hello, bearer)?).await?;
    let mut latencies = Vec::with_capacity(device.batches.len());
    for events in device.batches {
        let sent = Instant::now();
        client
            .push(with_token(
                PushRequest {
                    events,
                    heads: Vec::new(),
                    ..PushRequest::default()
                },
                bearer,
            )?)
            .await?;
        latencies.push(ms(sent.elapsed()));
    }
    Ok(latencies)
}

/// The p99 push and indicator-read latencies of one phase.
async fn phase(
    grpc: SocketAddr,
    http: SocketAddr,
    device: (String, Device),
    bureau: &str,
    reads: usize,
) -> anyhow::Result<(f64, f64)> {
    let (bearer, device) = device;
    let mut pushed = pushes(grpc, &bearer, device).await?;
    let mut read = Vec::with_capacity(reads);
    for _ in 0..reads {
        read.push(indicators(http, bureau).await?);
    }
    pushed.sort_by(f64::total_cmp);
    read.sort_by(f64::total_cmp);
    Ok((percentile(&pushed, 0.99), percentile(&read, 0.99)))
}

pub async fn run(quick: bool, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let (count, idle, slow) = if quick {
        (20, 100, 20)
    } else {
        (200, IDLE, SLOW)
    };
    // The bench holds both ends of every connection.
    if let Err(error) = station_hub::guard::raise_file_limit() {
        progress!("{SCENARIO}: cannot raise the open-file limit: {error}");
    }
    let dir = tempfile::tempdir()?;
    let store = Arc::new(station_hub::store::HubStore::open(
        dir.path(),
        256 * 1024 * 1024,
    )?);
    let mut phones = devices(2, count, 100).into_iter();
    let mut device = |name: &str| -> anyhow::Result<(String, Device)> {
        let device = phones
            .next()
            .ok_or_else(|| anyhow::anyhow!("no device left"))?;
        let bearer = station_hub::auth::enroll_device(&store, device.station, name)?.bearer;
        Ok((bearer, device))
    };
    let (quiet_device, loaded_device) = (device("quiet")?, device("loaded")?);
    let bureau = station_hub::auth::enroll_bureau(&store, "bench")?.bearer;
    let hub = station_hub::Hub::with_store(Arc::clone(&store), ServerOptions::default()).await?;
    let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (grpc, http) = (grpc_listener.local_addr()?, http_listener.local_addr()?);
    let (stop_hub, hub_stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(hub.serve(
        station_hub::Listeners {
            grpc: grpc_listener,
            http: Some(http_listener),
        },
        async {
            let _ = hub_stopped.await;
        },
    ));

    progress!("{SCENARIO}: quiet");
    let (quiet_push, quiet_read) = phase(grpc, http, quiet_device, &bureau, count).await?;

    progress!("{SCENARIO}: {idle} idle and {slow} slow-loris connections");
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicU64::new(0));
    let mut attackers = Vec::new();
    for n in 0..idle + slow {
        let addr = if n % 2 == 0 { grpc } else { http };
        let opening: Option<&'static [u8]> = match (n >= idle, n % 2 == 0) {
            (false, _) => None,
            (true, true) => Some(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            (true, false) => Some(b"GET /api/indicators HTTP/1.1\r\nHost: hub\r\nX-A: "),
        };
        attackers.push(tokio::spawn(attacker(
            addr,
            opening,
            Arc::clone(&stop),
            Arc::clone(&opened),
        )));
    }
    // Measure once every attacker holds a connection.
    while opened.load(Ordering::Relaxed) < (idle + slow) as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (loaded_push, loaded_read) = phase(grpc, http, loaded_device, &bureau, count).await?;
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        attacker.await?;
    }
    let _ = stop_hub.send(());
    served.await??;

    let held = format!("{idle} idle + {slow} slow-loris connections held");
    rows.push(
        Row::new(
            SCENARIO,
            format!("push p99, 100 events, {count} pushes, {held}"),
            loaded_push,
            "the same, no attack",
            quiet_push,
            "ms",
        )
        .goal(Goal::RatioAtMost(2.0)),
    );
    rows.push(
        Row::new(
            SCENARIO,
            format!("indicator JSON p99, {count} reads (fresh connection each), {held}"),
            loaded_read,
            "the same, no attack",
            quiet_read,
            "ms",
        )
        .goal(Goal::RatioAtMost(2.0)),
    );
    Ok(())
}
