//! A real `station-hub serve` process under hostile load, with its open-file
//! limit lowered to 256 (by `prlimit`): hundreds of idle and slow-loris
//! sockets on both ports do not stop a device's sync nor the bureau's JSON;
//! the hub closes the sockets that never finish their handshake, and says
//! so in its log once per interval, not once per socket.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::events::ZEDANG;
use crate::fixtures::{authorized, hello, hub_cli, recorded, stdout_of};
use crate::http::try_request;
use station_agent::sync::{SyncOptions, sync_once};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// A `station-hub serve` process with gRPC and HTTP, killed when dropped.
pub struct Served {
    child: Child,
    /// The gRPC listener.
    pub grpc: SocketAddr,
    /// The HTTP listener.
    pub http: SocketAddr,
    /// Where its standard error goes.
    pub log: PathBuf,
}

impl Served {
    /// Starts the hub on `data` under an open-file limit of `files` (soft
    /// and hard), with `args` added; `None` when `prlimit` is not there.
    pub fn start(data: &Path, files: u32, args: &[&str]) -> Option<Served> {
        if Command::new("prlimit").arg("--version").output().is_err() {
            println!("SKIPPED: no prlimit on this machine to lower the hub's file limit");
            return None;
        }
        let log = data.with_extension("log");
        let mut child = Command::new("prlimit")
            .arg(format!("--nofile={files}:{files}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_station-hub"))
            .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--data")
            .arg(data)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut grpc, mut http) = (None, None);
        while grpc.is_none() || http.is_none() {
            let line = lines
                .next()
                .expect("the hub exited before serving")
                .unwrap();
            if let Some(addr) = line.strip_prefix("listening on ") {
                grpc = Some(addr.parse().unwrap());
            }
            if let Some(addr) = line.strip_prefix("http on ") {
                http = Some(addr.parse().unwrap());
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Some(Served {
            child,
            grpc: grpc.unwrap(),
            http: http.unwrap(),
            log,
        })
    }

    /// What the hub has logged so far.
    pub fn logged(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `count` sockets to `addr`: every other one sends `opening` and then
/// nothing more, the rest send nothing at all.
async fn hold(addr: SocketAddr, count: usize, opening: &[u8]) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for n in 0..count {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        if n % 2 == 0 {
            // The hub may already have closed it (over its cap).
            let _ = socket.write_all(opening).await;
        }
        held.push(socket);
    }
    held
}

/// Whether the hub has closed `socket`: a read ends (EOF or reset).
async fn closed_by_hub(mut socket: TcpStream) -> bool {
    let mut buf = [0_u8; 1024];
    loop {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            // The server's HTTP/2 settings, say: keep reading.
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_sockets_on_both_ports_do_not_stop_sync_or_the_bureau() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let Some(hub) = Served::start(&data, 256, &["--handshake-timeout-secs", "2"]) else {
        return;
    };
    let device = stdout_of(&hub_cli(
        &data,
        &["enroll", "--station", ZEDANG, "--device", "zd-1"],
    ))
    .trim()
    .to_string();
    let bureau = stdout_of(&hub_cli(&data, &["enroll", "--bureau", "山南市民政局"]))
        .trim()
        .to_string();
    let (agent, events) = recorded(&dir.path().join("phone"), ZEDANG, 20);

    // More sockets than the hub has files: half-sent request heads and
    // silent sockets on HTTP, bare HTTP/2 prefaces and silent sockets on gRPC.
    let slow_http = hold(
        hub.http,
        300,
        b"GET /api/indicators HTTP/1.1\r\nHost: x\r\n",
    )
    .await;
    let slow_grpc = hold(hub.grpc, 300, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;

    let mut options = SyncOptions::new(format!("http://{}", hub.grpc), Some(device));
    options.retry_budget = Duration::from_secs(60);
    options.backoff_cap = Duration::from_secs(1);
    let sync = sync_once(Arc::clone(&agent), &options);
    let bearer = format!("Bearer {bureau}");
    let read = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let reply = tokio::time::timeout(
                Duration::from_secs(5),
                try_request(
                    hub.http,
                    "GET",
                    "/api/indicators?period=2026-11&station=540502001",
                    &[("Authorization", &bearer)],
                    b"",
                ),
            )
            .await;
            match reply {
                Ok(Some(reply)) => return reply,
                _ if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => panic!("the bureau's JSON never answered"),
            }
        }
    };
    let (synced, reply) = tokio::join!(sync, read);
    let synced = synced.unwrap();
    assert_eq!(synced.pushed, events.len() as u64);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json().get("rows").is_some(), "{}", reply.text());

    // Every held socket is closed by the hub: over the cap at once, the
    // others when their handshake time ran out.
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        let mut closing = tokio::task::JoinSet::new();
        for socket in slow_http.into_iter().chain(slow_grpc) {
            closing.spawn(closed_by_hub(socket));
        }
        closing.join_all().await.into_iter().filter(|c| *c).count()
    })
    .await
    .expect("the hub kept idle sockets open");
    assert_eq!(closed, 600);

    // The conditions are in the log, but not once per socket.
    let logged = hub.logged();
    assert!(logged.contains("connection limit reached"), "{logged}");
    assert!(
        logged.matches("connection limit reached").count() < 10,
        "{logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_calls_are_logged_once_per_interval_with_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let Some(hub) = Served::start(&data, 1024, &[]) else {
        return;
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", hub.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = station_proto::v1::sync_client::SyncClient::new(channel);
    for _ in 0..200 {
        let refused = client
            .hello(authorized(
                hello(station_proto::ids::Uuid::now_v7(), ZEDANG),
                "0123456789ab.00",
            ))
            .await
            .unwrap_err();
        assert!(matches!(
            refused.code(),
            tonic::Code::Unauthenticated | tonic::Code::ResourceExhausted
        ));
    }
    for n in 0..200 {
        let reply = crate::http::request(
            hub.http,
            "POST",
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            format!("token={n:012x}.00").as_bytes(),
        )
        .await;
        assert!(matches!(reply.status, 401 | 429), "{}", reply.status);
    }
    let logged = hub.logged();
    let lines = logged.lines().filter(|l| l.contains("refused")).count();
    assert!((1..=8).contains(&lines), "{lines} lines: {logged}");
    assert!(logged.contains("count"), "{logged}");
}
