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
    /// Each page's cursor goes in its headers too, as the hub sends it.
    announce: bool,
    /// Every pull is answered with this status.
    fail_pulls: Option<tonic::Code>,
    /// Pulls answered with `fail_pulls` so far.
    pulls_failed: usize,
    /// A push is answered only after a pull has failed.
    push_after_failed_pull: bool,
    /// Hello says the hub takes packed pushes.
    unpacks: bool,
    /// The dictionaries acknowledged packed pushes left, by id.
    dictionaries: HashMap<Vec<u8>, Vec<u8>>,
    /// The packed push of this number (from 1) that names a dictionary
    /// finds the hub has forgotten them all, as after a restart.
    forget_at: Option<usize>,
    /// Packed pushes received, those naming a dictionary, and those refused
    /// for naming one not held.
    packed: usize,
    with_dictionary: usize,
    unknown_dictionary: usize,
    /// Every push packed against a dictionary came out smaller than its
    /// events packed alone.
    dictionary_saved: bool,
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

impl StandInHub {
    /// The events of `push`, unpacked when packed, with the dictionary it
    /// leaves.
    fn unpack(&self, push: PushRequest) -> Result<(Vec<Event>, Option<Vec<u8>>), Status> {
        if push.packed.is_empty() {
            return Ok((push.events, None));
        }
        self.with(|s| {
            s.packed += 1;
            let dictionary = if push.dictionary.is_empty() {
                None
            } else {
                if s.forget_at == Some(s.packed) {
                    s.dictionaries.clear();
                }
                let Some(dictionary) = s.dictionaries.get(&push.dictionary).cloned() else {
                    s.unknown_dictionary += 1;
                    return Err(Status::failed_precondition(format!(
                        "{}: forgotten by the test",
                        station_proto::packed::UNKNOWN_DICTIONARY
                    )));
                };
                s.with_dictionary += 1;
                Some(dictionary)
            };
            let unpacked = match &dictionary {
                Some(d) => zstd::bulk::Decompressor::with_dictionary(d)
                    .unwrap()
                    .decompress(&push.packed, 1 << 24)
                    .unwrap(),
                None => zstd::bulk::decompress(&push.packed, 1 << 24).unwrap(),
            };
            if dictionary.is_some() {
                let alone = zstd::bulk::compress(&unpacked, 3).unwrap();
                s.dictionary_saved &= push.packed.len() < alone.len();
            }
            let inner = <PushRequest as prost::Message>::decode(unpacked.as_slice()).unwrap();
            let left = station_proto::packed::next_dictionary(dictionary.as_deref(), &unpacked);
            Ok((inner.events, Some(left)))
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
                packed_pushes: s.unpacks,
                ..HelloResponse::default()
            }))
        })
    }

    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let (events, left) = self.unpack(request.into_inner())?;
        // Like the hub, a push that overtook the one before it waits for it.
        let first = events[0].origin_seq;
        let origin = events[0].origin_id.clone();
        let mut changes = self.changed.subscribe();
        loop {
            let held = {
                let s = self.state.lock().unwrap();
                s.push_after_failed_pull && s.pulls_failed == 0
            };
            if !held || changes.changed().await.is_err() {
                break;
            }
        }
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
            if let Some(left) = left {
                let id = station_proto::packed::dictionary_id(&left).to_vec();
                s.dictionaries.insert(id, left);
            }
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
        let failed = self.with(|s| {
            s.pulls_after.push(pull.after);
            let failed = s.fail_pulls;
            s.pulls_failed += usize::from(failed.is_some());
            failed
        });
        if let Some(code) = failed {
            return Err(Status::new(
                code,
                "the station's stream is refused by the test",
            ));
        }
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
        let page = waited.unwrap_or_else(|_| page());
        let next_cursor = page.next_cursor;
        let mut response = Response::new(page);
        if self.state.lock().unwrap().announce {
            response
                .metadata_mut()
                .insert(station_proto::PULL_NEXT_CURSOR_HEADER, next_cursor.into());
        }
        Ok(response)
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

/// Records activity `n` on a blocking thread, as an app's entry screen
/// would beside a running daemon.
async fn record_off_thread(agent: &Arc<Agent>, n: i32) {
    let recorder = Arc::clone(agent);
    tokio::task::spawn_blocking(move || recorder.record(activity(n)).unwrap())
        .await
        .unwrap();
}

/// Stops a daemon and waits for it to end cleanly.
async fn stop_daemon(
    stop: oneshot::Sender<()>,
    daemon: tokio::task::JoinHandle<Result<(), SyncError>>,
) {
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), daemon)
        .await
        .expect("the daemon stops")
        .unwrap()
        .unwrap();
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
async fn a_failed_pull_does_not_take_the_pushes_beside_it() {
    let hub = StandInHub::new();
    colleague_events(&hub, 3);
    hub.with(|s| {
        s.fail_pulls = Some(tonic::Code::PermissionDenied);
        s.push_after_failed_pull = true;
    });
    let served = serve(Arc::clone(&hub), None).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = device(dir.path());
    for n in 1..=4 {
        agent.record(activity(n)).unwrap();
    }
    // Refused, not retried: no later Hello tells the device what the hub
    // holds, so only the push's own answer can.
    let error = sync_once(Arc::clone(&agent), &options(&served.url))
        .await
        .expect_err("a refused pull ends the round");
    assert!(error.to_string().contains("refused by the test"), "{error}");
    let origin = agent.identity().origin_id;
    assert_eq!(hub.held_seqs(origin.as_bytes()), vec![1, 2, 3, 4]);
    assert_eq!(
        agent.status().unwrap().durable_through,
        4,
        "the push answered after the pull failed is taken, not dropped"
    );
    let (pushes, pulls_failed) = hub.with(|s| (s.pushes, s.pulls_failed));
    assert_eq!(pushes, 1, "the events went up once");
    assert_eq!(pulls_failed, 1);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_are_packed_against_the_last_acknowledged_and_sent_alone_when_the_hub_forgot() {
    let hub = StandInHub::new();
    hub.with(|s| {
        s.unpacks = true;
        s.forget_at = Some(4);
        s.dictionary_saved = true;
    });
    let served = serve(Arc::clone(&hub), None).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = device(dir.path());
    for n in 1..=120 {
        agent.record(activity(n)).unwrap();
    }
    let mut o = options(&served.url);
    o.batch_bytes = 1_500;
    // One batch at a time: each is packed against the one before it.
    o.push_window = 1;
    let report = sync_once(Arc::clone(&agent), &o).await.unwrap();
    assert_eq!(report.durable_through, 120);
    let origin = agent.identity().origin_id;
    assert_eq!(
        hub.held_seqs(origin.as_bytes()),
        (1..=120).collect::<Vec<_>>(),
        "each event once, in order"
    );
    let (packed, with_dictionary, unknown, saved) = hub.with(|s| {
        (
            s.packed,
            s.with_dictionary,
            s.unknown_dictionary,
            s.dictionary_saved,
        )
    });
    assert!(report.batches >= 6, "{report:?}");
    assert_eq!(unknown, 1, "the forgotten dictionary is named once");
    assert_eq!(report.retries, 1, "{report:?}");
    assert_eq!(
        packed as u64,
        report.batches + 1,
        "every push packed, one refused"
    );
    assert_eq!(
        with_dictionary as u64,
        report.batches - 2,
        "all but the first and the one sent again after the refusal name a dictionary"
    );
    assert!(saved, "a dictionary makes each batch smaller than alone");
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
    // The hub answers DataLoss as retriable: a short budget ends the round.
    let mut o = options(&served.url);
    o.retry_budget = Duration::from_millis(300);
    let error = sync_once(Arc::clone(&agent), &o).await.unwrap_err();
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
    record_off_thread(&agent, 2).await;
    hub.until(|s| s.durable.get(&origin) == Some(&2)).await;

    // A colleague's event reaches the idle device through the long poll: its
    // next poll starts after it, so it was stored with its cursor.
    colleague_events(&hub, 1);
    hub.until(|s| s.pulls_after.last() == Some(&3)).await;
    let pulled = agent.log().pulled_events(0, 10).unwrap();
    assert_eq!(pulled.len(), 1);
    assert_eq!(pulled[0].0, 3);

    // Shutdown ends it, long poll in flight or not.
    stop_daemon(stop, daemon).await;
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_takes_a_relay_found_while_it_runs_and_leaves_it_when_gone() {
    let hub = StandInHub::new();
    let served = serve(Arc::clone(&hub), None).await;
    let relay = StandInHub::new();
    let relay_served = serve(Arc::clone(&relay), None).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = device(dir.path());
    agent.record(activity(1)).unwrap();
    let origin = agent.identity().origin_id.as_bytes().to_vec();

    // What the LAN shows: nothing at first.
    let found: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let hub_url = served.url.clone();
    let seen = Arc::clone(&found);
    let rediscovery = sync::Rediscovery {
        addresses: Arc::new(move || {
            let mut addresses = seen.lock().unwrap().clone();
            addresses.push(hub_url.clone());
            addresses
        }),
        every: Duration::from_millis(20),
    };
    let mut o = options(&served.url);
    // Only an entry or a change of addresses can start a round.
    o.interval = Duration::from_secs(3_600);
    let (stop, stopped) = oneshot::channel::<()>();
    let daemon = tokio::spawn(sync::run_rediscovering(
        Arc::clone(&agent),
        o,
        Some(rediscovery),
        async {
            let _ = stopped.await;
        },
    ));
    hub.until(|s| s.durable.get(&origin) == Some(&1)).await;

    // The relay appears: a round starts through it at once, and the next
    // entry goes to it, not to the hub.
    found.lock().unwrap().push(relay_served.url.clone());
    relay.until(|s| s.durable.get(&origin) == Some(&1)).await;
    record_off_thread(&agent, 2).await;
    relay.until(|s| s.durable.get(&origin) == Some(&2)).await;
    assert_eq!(hub.with(|s| s.durable.get(&origin).copied()), Some(1));

    // The relay is gone: the hub again.
    found.lock().unwrap().clear();
    hub.until(|s| s.durable.get(&origin) == Some(&2)).await;
    record_off_thread(&agent, 3).await;
    hub.until(|s| s.durable.get(&origin) == Some(&3)).await;
    assert_eq!(relay.with(|s| s.durable.get(&origin).copied()), Some(2));

    stop_daemon(stop, daemon).await;
    served.stop().await;
    relay_served.stop().await;
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

/// Pull calls as a hub with a slow downlink serves them, seen from the
/// hub's side: each answer's headers go at once, its page is held until the
/// next pull arrives (or it reaches the station's head). A device that waits
/// for a page before asking for the next one never gets it.
#[derive(Clone)]
struct HoldPages<S> {
    inner: S,
    gate: Arc<PullGate>,
}

struct PullGate {
    /// The station's head: a page reaching it is not held.
    head: u64,
    /// Pulls arrived so far.
    arrived: watch::Sender<usize>,
    /// Pulls arrived whose page has not been released yet, and the most
    /// there ever were.
    open: Mutex<(usize, usize)>,
}

impl<S> tonic::server::NamedService for HoldPages<S> {
    const NAME: &'static str = "station.v1.Sync";
}

impl<S> tonic::codegen::Service<tonic::codegen::http::Request<tonic::body::Body>> for HoldPages<S>
where
    S: tonic::codegen::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: tonic::codegen::http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != "/station.v1.Sync/Pull" {
            return Box::pin(self.inner.call(request));
        }
        let gate = Arc::clone(&self.gate);
        let mut index = 0;
        gate.arrived.send_modify(|n| {
            index = *n;
            *n += 1;
        });
        {
            let mut open = gate.open.lock().unwrap();
            open.0 += 1;
            open.1 = open.1.max(open.0);
        }
        let answer = self.inner.call(request);
        Box::pin(async move {
            use http_body_util::BodyExt as _;
            let response = answer.await?;
            let reaches_head = response
                .headers()
                .get(station_proto::PULL_NEXT_CURSOR_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|cursor| cursor >= gate.head);
            let (parts, body) = response.into_parts();
            let (mut sender, held) =
                http_body_util::channel::Channel::<tonic::codegen::Bytes, tonic::Status>::new(2);
            let mut arrived = gate.arrived.subscribe();
            tokio::spawn(async move {
                if !reaches_head {
                    let _ = arrived.wait_for(|n| *n > index + 1).await;
                }
                gate.open.lock().unwrap().0 -= 1;
                let Ok(collected) = body.collect().await else {
                    return;
                };
                let trailers = collected.trailers().cloned();
                let _ = sender.send_data(collected.to_bytes()).await;
                if let Some(trailers) = trailers {
                    let _ = sender.send_trailers(trailers).await;
                }
            });
            Ok(tonic::codegen::http::Response::from_parts(
                parts,
                tonic::body::Body::new(held),
            ))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_page_is_asked_for_while_the_last_comes_down_two_at_most() {
    let hub = StandInHub::new();
    colleague_events(&hub, 30);
    hub.with(|s| s.announce = true);
    let gate = Arc::new(PullGate {
        head: 30,
        arrived: watch::Sender::new(0),
        open: Mutex::new((0, 0)),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let service = HoldPages {
        inner: SyncServer::from_arc(Arc::clone(&hub))
            .accept_compressed(CompressionEncoding::Zstd)
            .send_compressed(CompressionEncoding::Zstd),
        gate: Arc::clone(&gate),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    let dir = tempfile::tempdir().unwrap();
    let agent = device(dir.path());
    let mut o = options(&url);
    o.pull_events = 4;
    let round = tokio::time::timeout(Duration::from_secs(60), sync_once(Arc::clone(&agent), &o))
        .await
        .expect("a page held until the next is asked for stalls a device that waits for it");
    let report = round.unwrap();
    assert_eq!((report.pulled, report.pull_cursor), (30, 30));
    assert_eq!(report.retries, 0);
    let pulls = hub.with(|s| s.pulls_after.clone());
    assert_eq!(
        pulls,
        (0..30).step_by(4).collect::<Vec<u64>>(),
        "each page asked for once, from where the last ends"
    );
    let most = gate.open.lock().unwrap().1;
    assert_eq!(most, 2, "the next page is asked for, no more");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_that_does_not_announce_is_pulled_page_after_page() {
    let hub = StandInHub::new();
    colleague_events(&hub, 30);
    let served = serve(Arc::clone(&hub), None).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = device(dir.path());
    let mut o = options(&served.url);
    o.pull_events = 4;
    let report = sync_once(Arc::clone(&agent), &o).await.unwrap();
    assert_eq!((report.pulled, report.pull_cursor), (30, 30));
    let pulls = hub.with(|s| s.pulls_after.clone());
    assert_eq!(pulls, (0..30).step_by(4).collect::<Vec<u64>>());
    served.stop().await;
}
