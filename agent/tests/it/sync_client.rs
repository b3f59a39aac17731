//! The tonic edge of sync against a scripted stand-in hub served in process
//! on an ephemeral port (the real hub lives downstream of this crate): the
//! calls, retries, parking, the daemon's triggers and TLS.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use station_agent::Agent;
use station_agent::sync::{self, SyncError, SyncOptions, sync_once};
use station_proto::Body;
use station_proto::v1::sync_server::{Sync as SyncService, SyncServer};
use station_proto::v1::{
    ActivityHeld, ActivityKind, Event, HelloRequest, HelloResponse, OriginAck, PullRequest,
    PullResponse, PulledEvent, PushRequest, PushResponse,
};
use tokio::sync::{oneshot, watch};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::fixtures::STATION;

/// What the stand-in hub does with the next push.
#[derive(Debug, Clone)]
enum Script {
    /// Refuses it with this status, storing nothing.
    Refuse(tonic::Code),
    /// Stores it, then answers Unavailable: the ack is lost.
    LoseAck,
}

#[derive(Default)]
struct HubState {
    /// Per origin, the hub holds seqs `1..=durable_through`.
    durable: HashMap<Vec<u8>, u64>,
    /// The station's stream in hub order; hub_seq = index + 1.
    log: Vec<Event>,
    /// Push calls that reached the hub.
    pushes: usize,
    /// The `after` of every pull received.
    pulls_after: Vec<u64>,
    /// What the next pushes do.
    script: VecDeque<Script>,
    /// Hello answers Unauthenticated.
    deny: bool,
}

/// The hub's rules for one station, in memory.
struct StandInHub {
    state: Mutex<HubState>,
    changed: watch::Sender<u64>,
}

impl StandInHub {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(HubState::default()),
            changed: watch::Sender::new(0),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut HubState) -> T) -> T {
        let out = f(&mut self.state.lock().unwrap());
        self.changed.send_modify(|n| *n += 1);
        out
    }

    /// Waits (without a timer: on the hub's own changes) until `done` holds.
    async fn until(&self, done: impl Fn(&HubState) -> bool) {
        let mut changes = self.changed.subscribe();
        let wait = async {
            loop {
                if done(&self.state.lock().unwrap()) {
                    return;
                }
                changes.changed().await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .expect("the hub never saw it");
    }

    fn held_seqs(&self, origin: &[u8]) -> Vec<u64> {
        self.with(|s| {
            s.log
                .iter()
                .filter(|e| e.origin_id == origin)
                .map(|e| e.origin_seq)
                .collect()
        })
    }
}

#[tonic::async_trait]
impl SyncService for StandInHub {
    async fn hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloResponse>, Status> {
        let hello = request.into_inner();
        self.with(|s| {
            if s.deny {
                return Err(Status::unauthenticated("this token was revoked"));
            }
            Ok(Response::new(HelloResponse {
                durable_through: s.durable.get(&hello.origin_id).copied().unwrap_or(0),
                hub_clock_ms: 0,
                station_pull_head: s.log.len() as u64,
                log_id: Vec::new(),
                city_durable_through: None,
                station_devices: Vec::new(),
                wipe: false,
                ..HelloResponse::default()
            }))
        })
    }

    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let events = request.into_inner().events;
        // Like the hub, a push that overtook the one before it waits for it.
        let first = events[0].origin_seq;
        let origin = events[0].origin_id.clone();
        let mut changes = self.changed.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while first
                > self
                    .state
                    .lock()
                    .unwrap()
                    .durable
                    .get(&origin)
                    .map_or(1, |d| d + 1)
            {
                if changes.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        self.with(|s| {
            s.pushes += 1;
            let script = s.script.pop_front();
            if let Some(Script::Refuse(code)) = script {
                return Err(Status::new(code, "event 1 is refused by the test"));
            }
            let origin = events[0].origin_id.clone();
            let mut durable = s.durable.get(&origin).copied().unwrap_or(0);
            if events[0].origin_seq > durable + 1 {
                return Err(Status::failed_precondition(format!(
                    "expected origin_seq {}",
                    durable + 1
                )));
            }
            for event in events {
                if event.origin_seq > durable {
                    durable = event.origin_seq;
                    s.log.push(event);
                }
            }
            s.durable.insert(origin.clone(), durable);
            if let Some(Script::LoseAck) = script {
                return Err(Status::unavailable("stored, but the answer is lost"));
            }
            Ok(Response::new(PushResponse {
                acks: vec![OriginAck {
                    origin_id: origin,
                    durable_through: durable,
                    city_durable_through: None,
                }],
                quarantined: 0,
            }))
        })
    }

    async fn pull(&self, request: Request<PullRequest>) -> Result<Response<PullResponse>, Status> {
        let pull = request.into_inner();
        let mut changes = self.changed.subscribe();
        self.with(|s| s.pulls_after.push(pull.after));
        let page = || {
            let s = self.state.lock().unwrap();
            let events: Vec<_> = s
                .log
                .iter()
                .enumerate()
                .skip(pull.after as usize)
                .take(pull.max_events as usize)
                .map(|(i, e)| PulledEvent {
                    hub_seq: i as u64 + 1,
                    event: Some(e.clone()),
                })
                .collect();
            let head = s.log.len() as u64;
            let next_cursor = events.last().map_or(pull.after, |e| e.hub_seq);
            PullResponse {
                events,
                next_cursor,
                head,
                heads: Vec::new(),
                ..PullResponse::default()
            }
        };
        let wait = Duration::from_millis(u64::from(pull.wait_ms));
        let waited = tokio::time::timeout(wait, async {
            loop {
                let answer = page();
                if !answer.events.is_empty() {
                    return answer;
                }
                if changes.changed().await.is_err() {
                    return answer;
                }
            }
        })
        .await;
        Ok(Response::new(waited.unwrap_or_else(|_| page())))
    }
}

struct Served {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

async fn serve(hub: Arc<StandInHub>, tls: Option<tonic::transport::ServerTlsConfig>) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let service = SyncServer::from_arc(hub)
        .accept_compressed(CompressionEncoding::Zstd)
        .send_compressed(CompressionEncoding::Zstd);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).unwrap();
    }
    let router = builder.add_service(service);
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap();
    });
    Served {
        url: format!("http://{addr}"),
        stop: Some(stop),
        task,
    }
}

fn device(dir: &std::path::Path) -> Arc<Agent> {
    Arc::new(crate::fixtures::init_device(dir, "zd-1"))
}

fn activity(n: i32) -> Body {
    Body::ActivityHeld(ActivityHeld {
        held_on: "2026-11-20".into(),
        community_code: format!("{STATION}001"),
        kind: ActivityKind::PartyPublicWelfare as i32,
        title: format!("党建+公益 {n} བོད"),
        participants: n,
        person_times: n,
        volunteers: 0,
        volunteer_minutes: 0,
    })
}

/// Fast retries for tests; everything else as shipped.
fn options(url: &str) -> SyncOptions {
    let mut o = SyncOptions::new(url, Some("device-token".into()));
    o.backoff_base = Duration::from_millis(10);
    o.backoff_cap = Duration::from_millis(50);
    o.retry_budget = Duration::from_secs(20);
    o.jitter_seed = Some(1);
    o
}

/// A colleague's events, already on the hub.
fn colleague_events(hub: &StandInHub, count: i32) {
    let dir = tempfile::tempdir().unwrap();
    let colleague = device(dir.path());
    for n in 1..=count {
        colleague.record(activity(n)).unwrap();
    }
    let events = colleague.own_events(0, usize::MAX).unwrap();
    hub.with(|s| {
        s.durable
            .insert(events[0].origin_id.clone(), events.len() as u64);
        s.log.extend(events);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_pushes_the_log_pulls_the_station_and_records_it() {
    let hub = StandInHub::new();
    colleague_events(&hub, 5);
    let served = serve(Arc::clone(&hub), None).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = device(dir.path());
    for n in 1..=40 {
        agent.record(activity(n)).unwrap();
    }
    let mut o = options(&served.url);
    o.batch_bytes = 1_000;
    o.pull_events = 4;
    let report = sync_once(Arc::clone(&agent), &o).await.unwrap();
    assert_eq!((report.pushed, report.durable_through), (40, 40));
    assert!(report.batches > 1, "{report:?}");
    assert_eq!(report.pulled, 5, "the colleague's events; own ones skipped");
    assert_eq!(report.pull_cursor, 45);
    assert_eq!((report.retries, report.parked.clone()), (0, None));
    let origin = agent.identity().origin_id;
    assert_eq!(
        hub.held_seqs(origin.as_bytes()),
        (1..=40).collect::<Vec<_>>()
    );

    let status = agent.status().unwrap();
    assert_eq!((status.durable_through, status.pending), (40, 0));
    let state = agent.log().sync_state().unwrap();
    assert!(state.last_sync_ms.is_some());

    let again = sync_once(Arc::clone(&agent), &o).await.unwrap();
    assert_eq!((again.pushed, again.pulled, again.batches), (0, 0, 0));
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_ack_and_a_busy_hub_are_retried_without_duplicates() {
    let hub = StandInHub::new();
    hub.with(|s| {
        s.script.extend([
            Script::LoseAck,
            Script::Refuse(tonic::Code::Unavailable),
            Script::LoseAck,
        ]);
    });
    let served = serve(Arc::clone(&hub), None).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = device(dir.path());
    for n in 1..=30 {
        agent.record(activity(n)).unwrap();
    }
    let mut o = options(&served.url);
    o.batch_bytes = 1_500;
    // One batch at a time, so that the scripted answers meet the batches
    // in the order they were sent.
    o.push_window = 1;
    let report = sync_once(Arc::clone(&agent), &o).await.unwrap();
    assert_eq!(report.retries, 3, "{report:?}");
    assert_eq!(report.durable_through, 30);
    assert_eq!(report.pushed, 30, "stored with a lost ack counts as pushed");
    let origin = agent.identity().origin_id;
    assert_eq!(
        hub.held_seqs(origin.as_bytes()),
        (1..=30).collect::<Vec<_>>(),
        "each event exactly once"
    );
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_parked_shown_and_not_resent_until_released() {
    let hub = StandInHub::new();
    colleague_events(&hub, 3);
    hub.with(|s| {
        s.script
            .push_back(Script::Refuse(tonic::Code::InvalidArgument))
    });
    let served = serve(Arc::clone(&hub), None).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = device(dir.path());
    for n in 1..=10 {
        agent.record(activity(n)).unwrap();
    }
    let o = options(&served.url);
    let report = sync_once(Arc::clone(&agent), &o).await.unwrap();
    let parked = report.parked.clone().unwrap();
    assert_eq!((parked.from_seq, parked.through_seq), (1, 10));
    assert!(
        parked.reason.contains("InvalidArgument"),
        "{}",
        parked.reason
    );
    assert_eq!(report.pulled, 3, "pulling goes on");
    assert_eq!(report.retries, 0, "no spinning on a refusal");
    assert_eq!(agent.log().sync_state().unwrap().parked, Some(parked));

    // Later rounds push nothing while it is parked, even with new entries.
    agent.record(activity(11)).unwrap();
    let report = sync_once(Arc::clone(&agent), &o).await.unwrap();
    assert_eq!(report.pushed, 0);
    assert!(report.parked.is_some());
    assert_eq!(hub.with(|s| s.pushes), 1);

    // Released (what `sync --retry-parked` does), everything goes.
    agent.log().set_parked(None).unwrap();
    let report = sync_once(Arc::clone(&agent), &o).await.unwrap();
    assert_eq!((report.pushed, report.parked), (11, None));
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_ends_the_round_at_once() {
    let hub = StandInHub::new();
    hub.with(|s| s.deny = true);
    let served = serve(Arc::clone(&hub), None).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = device(dir.path());
    agent.record(activity(1)).unwrap();
    let error = sync_once(Arc::clone(&agent), &options(&served.url))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            SyncError::Rpc {
                code: tonic::Code::Unauthenticated,
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.is_retriable());
    assert_eq!(agent.log().sync_state().unwrap().parked, None);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_pushes_after_each_entry_long_polls_and_stops_on_shutdown() {
    let hub = StandInHub::new();
    let served = serve(Arc::clone(&hub), None).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = device(dir.path());
    agent.record(activity(1)).unwrap();
    let origin = agent.identity().origin_id.as_bytes().to_vec();

    let mut o = options(&served.url);
    // Only an entry can trigger a round within the test.
    o.interval = Duration::from_secs(3_600);
    let (stop, stopped) = oneshot::channel::<()>();
    let daemon = tokio::spawn(sync::run(Arc::clone(&agent), o, async {
        let _ = stopped.await;
    }));

    // The first round at once.
    hub.until(|s| s.durable.get(&origin) == Some(&1)).await;
    // A new entry is pushed right away, not at the next scheduled round.
    let recorder = Arc::clone(&agent);
    tokio::task::spawn_blocking(move || recorder.record(activity(2)).unwrap())
        .await
        .unwrap();
    hub.until(|s| s.durable.get(&origin) == Some(&2)).await;

    // A colleague's event reaches the idle device through the long poll: its
    // next poll starts after it, so it was stored with its cursor.
    colleague_events(&hub, 1);
    hub.until(|s| s.pulls_after.last() == Some(&3)).await;
    let pulled = agent.log().pulled_events(0, 10).unwrap();
    assert_eq!(pulled.len(), 1);
    assert_eq!(pulled[0].0, 3);

    // Shutdown ends it, long poll in flight or not.
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), daemon)
        .await
        .expect("the daemon stops")
        .unwrap()
        .unwrap();
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_hubs_ca() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let hub_key = rcgen::KeyPair::generate().unwrap();
    let hub_cert = rcgen::CertificateParams::new(vec!["hub.station.test".to_string()])
        .unwrap()
        .signed_by(&hub_key, &ca)
        .unwrap();
    let identity = tonic::transport::Identity::from_pem(hub_cert.pem(), hub_key.serialize_pem());
    let tls = tonic::transport::ServerTlsConfig::new().identity(identity);

    let hub = StandInHub::new();
    let served = serve(Arc::clone(&hub), Some(tls)).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = device(dir.path());
    agent.record(activity(1)).unwrap();

    // Without the CA the certificate is not trusted.
    let mut o = options(&served.url.replace("http://", "https://"));
    o.tls_domain = Some("hub.station.test".into());
    o.retry_budget = Duration::ZERO;
    let error = sync_once(Arc::clone(&agent), &o).await.unwrap_err();
    assert!(matches!(error, SyncError::Connect(_)), "{error}");

    // With it, over the same plain-looking address, TLS is on and trusted.
    let mut o = options(&served.url);
    o.tls_ca_pem = Some(ca.pem().into_bytes());
    o.tls_domain = Some("hub.station.test".into());
    let report = sync_once(Arc::clone(&agent), &o).await.unwrap();
    assert_eq!(report.durable_through, 1);
    served.stop().await;
}

/// An address where nothing listens: a port bound, then let go.
fn closed_port() -> String {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_first_address_passes_the_round_to_the_next_at_once() {
    let hub = StandInHub::new();
    let served = serve(Arc::clone(&hub), None).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = device(dir.path());
    for n in 1..=5 {
        agent.record(activity(n)).unwrap();
    }
    let both = format!("{},{}", closed_port(), served.url);
    let report = sync_once(Arc::clone(&agent), &options(&both))
        .await
        .unwrap();
    assert_eq!(report.durable_through, 5);
    // One refused connection, one to the hub; nothing retried.
    assert_eq!((report.connects, report.retries), (2, 0), "{report:?}");

    // The daemon passes over it the same way.
    agent.record(activity(6)).unwrap();
    let origin = agent.identity().origin_id.as_bytes().to_vec();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut o = options(&both);
    o.interval = Duration::from_secs(3_600);
    let daemon = tokio::spawn(sync::run(Arc::clone(&agent), o, async {
        let _ = stopped.await;
    }));
    hub.until(|s| s.durable.get(&origin) == Some(&6)).await;
    let _ = stop.send(());
    daemon.await.unwrap().unwrap();
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_address_refuses_the_last_is_retried_with_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let agent = device(dir.path());
    agent.record(activity(1)).unwrap();
    let both = format!("{},{}", closed_port(), closed_port());
    let mut o = options(&both);
    o.retry_budget = Duration::from_millis(300);
    o.backoff_base = Duration::from_millis(40);
    o.backoff_cap = Duration::from_millis(80);
    let error = sync_once(Arc::clone(&agent), &o).await.unwrap_err();
    assert!(matches!(error, SyncError::Connect(_)), "{error}");
    assert!(error.is_retriable());
    let state = agent.log().sync_state().unwrap();
    assert_eq!(state.last_sync_ms, None, "no round completed");
}
