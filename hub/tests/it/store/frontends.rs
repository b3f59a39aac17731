//! Hub front-ends over one JetStream log: real `station-hub serve` processes
//! over a three-node cluster on loopback, a device syncing through an address
//! list, SIGKILL of a front-end and of a NATS node mid-push, and the
//! projections of every front-end equal to each other and to a rebuild from
//! an empty folder.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use station_agent::Agent;
use station_agent::sync::{SyncOptions, sync_once};
use station_hub::store::HubLog;
use station_proto::v1::query_client::QueryClient;
use station_proto::v1::sync_client::SyncClient;
use station_proto::v1::{GetCaseloadRequest, GetIndicatorsRequest, PushRequest};

use super::nats::Cluster;
use crate::fixtures::{activity, authorized, device, hello, hub_cli, next_after, stdout_of};

const STATION: &str = "540502001";

/// A `station-hub serve` process, SIGKILLed when dropped.
struct FrontEnd {
    child: Child,
    url: String,
}

impl FrontEnd {
    fn start(data: &Path, config: &Path) -> FrontEnd {
        let mut child = Command::new(env!("CARGO_BIN_EXE_station-hub"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--shutdown-grace-secs",
                "1",
            ])
            .arg("--data")
            .arg(data)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the front-end exited before serving")
                .unwrap();
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.to_string();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        FrontEnd {
            child,
            url: format!("http://{addr}"),
        }
    }

    /// SIGKILL: nothing of the front-end's shutdown runs.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for FrontEnd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A configuration naming the cluster's log.
fn config(dir: &Path, cluster: &Cluster, stream: &str) -> PathBuf {
    let builtin = station_hub::config::DEFAULT_TOML;
    let servers: Vec<String> = cluster
        .servers()
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect();
    let section = format!(
        "[log]\nengine = \"jetstream\"\nservers = [{}]\nreplicas = 3\nstream = \"{stream}\"\n",
        servers.join(", ")
    );
    let start = builtin.find("[log]\n").unwrap();
    let end = start + builtin[start..].find("\n\n").unwrap() + 1;
    let path = dir.join("hub.toml");
    std::fs::write(
        &path,
        format!("{}{section}{}", &builtin[..start], &builtin[end..]),
    )
    .unwrap();
    path
}

/// Polls `check` until it holds, for at most 60 s.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn channel(url: &str) -> Option<tonic::transport::Channel> {
    tonic::transport::Channel::from_shared(url.to_string())
        .ok()?
        .connect()
        .await
        .ok()
}

/// Whether the front-end at `url` takes `token` (its token records caught
/// up with the deployment's).
async fn accepts(url: &str, token: &str, origin: station_proto::ids::Uuid) -> bool {
    let Some(channel) = channel(url).await else {
        return false;
    };
    let mut client = SyncClient::new(channel);
    client
        .hello(authorized(hello(origin, STATION), token))
        .await
        .is_ok()
}

/// What the bureau reads at `url`: the indicators of the events' month and
/// the caseload, as projected from the log, once the front-end's projections
/// hold `through` events.
async fn projected(url: &str, bureau: &str, through: u64) -> Option<String> {
    let mut query = QueryClient::new(channel(url).await?);
    let mut indicators = query
        .get_indicators(authorized(
            GetIndicatorsRequest {
                period: "2026-11".into(),
                stations: vec![],
            },
            bureau,
        ))
        .await
        .ok()?
        .into_inner();
    if indicators.computed_through_hub_seq != through {
        return None;
    }
    // Completeness follows the devices' last contact, which each front-end
    // copies from the shared origin states now and then: not the log's.
    for row in &mut indicators.rows {
        row.complete_through_ms = None;
        row.complete = false;
    }
    let caseload = query
        .get_caseload(authorized(GetCaseloadRequest { stations: vec![] }, bureau))
        .await
        .ok()?
        .into_inner();
    Some(format!("{:?}\n{:?}", indicators.rows, caseload.stations))
}

fn record(agent: &Agent, from: i32, count: i32) {
    for n in from..from + count {
        agent.record(activity(STATION, n)).unwrap();
    }
}

fn options(urls: &[&str], token: &str) -> SyncOptions {
    let mut options = SyncOptions::new(urls.join(","), Some(token.to_string()));
    // Small batches: a push is under way whenever a front-end is killed.
    options.batch_bytes = 2048;
    options.retry_budget = Duration::from_secs(30);
    options.connect_timeout = Duration::from_secs(2);
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_ends_share_the_log_survive_kills_and_project_alike() {
    let Some(mut cluster) = Cluster::three() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &cluster, "FRONT");
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let token = stdout_of(&hub_cli(
        &data_a,
        &["enroll", "--station", STATION, "--device", "phone-1"],
    ))
    .trim()
    .to_string();
    let bureau = stdout_of(&hub_cli(&data_a, &["enroll", "--bureau", "city"]))
        .trim()
        .to_string();

    // The cluster has elected its leaders once the log opens.
    let log = tokio::task::block_in_place(|| cluster.open(&cluster.options("FRONT", 3)));
    let mut a = FrontEnd::start(&data_a, &config);
    let b = FrontEnd::start(&data_b, &config);
    let phone_dir = tempfile::tempdir().unwrap();
    let phone = device(phone_dir.path(), STATION, "worker-1");
    record(&phone, 1, 40);
    let first = phone.own_events(0, 1).unwrap();
    let origin = station_proto::ids::Uuid::from_slice(&first[0].origin_id).unwrap();
    // B learns A's tokens from the shared log.
    until("front-end B to take the device token", || {
        accepts(&b.url, &token, origin)
    })
    .await;

    // Through A, then through B when A is SIGKILLed mid-push.
    let report = sync_once(Arc::clone(&phone), &options(&[&a.url, &b.url], &token))
        .await
        .unwrap();
    assert_eq!(report.durable_through, 40);
    record(&phone, 41, 400);
    let pushing = tokio::spawn({
        let phone = Arc::clone(&phone);
        let options = options(&[&a.url, &b.url], &token);
        async move { sync_once(phone, &options).await }
    });
    let held = |log: &station_hub::store::JetStreamLog| {
        tokio::task::block_in_place(|| log.origin(origin).map(|s| s.durable_through).unwrap_or(0))
    };
    until("a push under way through A", || {
        let held = held(&log);
        async move { held > 40 }
    })
    .await;
    a.kill();
    // The round that lost A may end in error; the next goes through B.
    let _ = pushing.await.unwrap();
    let report = sync_once(Arc::clone(&phone), &options(&[&a.url, &b.url], &token))
        .await
        .unwrap();
    assert_eq!(report.durable_through, 440);

    // A NATS node SIGKILLed mid-push: B carries on over the other two.
    record(&phone, 441, 200);
    let pushing = tokio::spawn({
        let phone = Arc::clone(&phone);
        let options = options(&[&b.url], &token);
        async move { sync_once(phone, &options).await }
    });
    until("a push under way through B", || {
        let held = held(&log);
        async move { held > 440 }
    })
    .await;
    cluster.nodes[0].kill();
    let _ = pushing.await.unwrap();
    let report = sync_once(Arc::clone(&phone), &options(&[&b.url], &token))
        .await
        .unwrap();
    assert_eq!(report.durable_through, 640);
    cluster.restart(0);

    // Every acknowledged event is in the log once, in the device's order.
    let logged = tokio::task::block_in_place(|| log.events_after(0, usize::MAX)).unwrap();
    let ids: BTreeSet<&[u8]> = logged.iter().map(|l| l.event.event_id.as_slice()).collect();
    assert_eq!(logged.len(), 640);
    assert_eq!(ids.len(), 640);
    let seqs: Vec<u64> = logged.iter().map(|l| l.event.origin_seq).collect();
    assert_eq!(seqs, (1..=640).collect::<Vec<_>>());
    assert_eq!(held(&log), 640);

    // A back on its folder catches up; C, on an empty folder, rebuilds
    // everything from the stream: all three answer the bureau alike.
    let a = FrontEnd::start(&data_a, &config);
    let c = FrontEnd::start(&dir.path().join("c"), &config);
    let mut answers = Vec::new();
    for front in [&a, &b, &c] {
        let deadline = Instant::now() + Duration::from_secs(60);
        let answer = loop {
            if let Some(answer) = projected(&front.url, &bureau, 640).await {
                break answer;
            }
            assert!(Instant::now() < deadline, "{} did not project", front.url);
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        answers.push(answer);
    }
    assert!(answers[0].contains("540502001"), "{}", answers[0]);
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);

    // A colleague's phone, enrolled through A while it serves, long-polls B;
    // a push through A wakes it.
    let colleague = stdout_of(&hub_cli(
        &data_a,
        &["enroll", "--station", STATION, "--device", "phone-2"],
    ))
    .trim()
    .to_string();
    let other = station_proto::ids::Uuid::now_v7();
    until("front-end B to take the colleague's token", || {
        accepts(&b.url, &colleague, other)
    })
    .await;
    let waiting = tokio::spawn({
        let url = b.url.clone();
        let colleague = colleague.clone();
        async move {
            let mut client = SyncClient::new(channel(&url).await.unwrap());
            client
                .pull(authorized(
                    station_proto::v1::PullRequest {
                        station_code: STATION.into(),
                        after: 640,
                        max_events: 100,
                        wait_ms: 30_000,
                        ..Default::default()
                    },
                    &colleague,
                ))
                .await
                .unwrap()
                .into_inner()
        }
    });
    record(&phone, 641, 1);
    let report = sync_once(Arc::clone(&phone), &options(&[&a.url], &token))
        .await
        .unwrap();
    assert_eq!(report.durable_through, 641);
    let pulled = waiting.await.unwrap();
    assert_eq!(pulled.events.len(), 1);
    assert_eq!(pulled.events[0].hub_seq, 641);

    // Refusals are the shared log's: a push skipping seqs, sent to B after
    // pushes through A, is refused whole and changes nothing.
    let mut gap = next_after(&phone.own_events(640, 1).unwrap()[0]);
    gap.origin_seq += 3;
    let mut client = SyncClient::new(channel(&b.url).await.unwrap());
    let refused = client
        .push(authorized(
            PushRequest {
                events: vec![gap],
                heads: Vec::new(),
                ..PushRequest::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
    assert_eq!(held(&log), 641);
    let count = tokio::task::block_in_place(|| log.event_count());
    assert_eq!(count, 641);

    // A token revoked through A is refused by B too.
    let token_id = colleague.split('.').next().unwrap().to_string();
    stdout_of(&hub_cli(&data_a, &["revoke", "--token-id", &token_id]));
    until("front-end B to refuse the revoked token", || {
        let url = b.url.clone();
        let colleague = colleague.clone();
        async move { !accepts(&url, &colleague, other).await }
    })
    .await;
}
