//! What the hub's tests share: a real hub on an ephemeral port over a
//! temporary store, tokens, devices with their own logs, raw clients, and
//! the `station-hub` binary.

use std::net::SocketAddr;
use std::sync::Arc;

use station_agent::{Agent, InitOptions, OpenOptions};
use station_hub::Listeners;
use station_hub::auth;
use station_hub::projections::Projections;
use station_hub::server::{ServeError, ServerOptions};
use station_hub::store::{HubStore, TokenRecord};
use station_proto::ids::Uuid;
use station_proto::v1::query_client::QueryClient;
use station_proto::v1::sync_client::SyncClient;
use station_proto::v1::{ActivityHeld, ActivityKind, PushRequest};
use station_proto::{Body, Event};
use tokio::sync::oneshot;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// A hub serving its gRPC and HTTP sides on `127.0.0.1:0` until stopped,
/// through the library's one entry ([`station_hub::Hub::serve`]).
pub struct Hub {
    /// The gRPC side's address.
    pub addr: SocketAddr,
    /// The HTTP side's address.
    pub http: SocketAddr,
    pub store: Arc<HubStore>,
    /// The projections its projector keeps up to date.
    pub projections: Arc<Projections>,
    /// A channel to the gRPC side, connected on first use.
    pub channel: Channel,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
    dir: tempfile::TempDir,
}

impl Hub {
    /// A hub over a fresh store, in plain text.
    pub async fn start() -> Hub {
        Hub::start_in(tempfile::tempdir().unwrap(), ServerOptions::default()).await
    }

    /// A hub over the store in `dir`.
    pub async fn start_in(dir: tempfile::TempDir, options: ServerOptions) -> Hub {
        let store = Arc::new(open_store(dir.path()));
        let hub = station_hub::Hub::with_store(store, options).await.unwrap();
        let (store, projections) = (Arc::clone(hub.store()), Arc::clone(hub.projections()));
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel();
        let listeners = Listeners {
            grpc,
            http: Some(http),
        };
        let task = tokio::spawn(hub.serve(listeners, async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        Hub {
            addr,
            http: http_addr,
            store,
            projections,
            channel,
            stop: Some(stop),
            task,
            dir,
        }
    }

    /// A `Query` client on the hub's channel.
    pub fn query(&self) -> QueryClient<Channel> {
        QueryClient::new(self.channel.clone())
    }

    /// Pushes `events` with `token`, which must be acknowledged; answers
    /// how many of them the hub quarantined.
    pub async fn push(&self, token: &str, events: &[Event]) -> u32 {
        SyncClient::new(self.channel.clone())
            .push(authorized(
                PushRequest {
                    events: events.to_vec(),
                    heads: Vec::new(),
                    ..PushRequest::default()
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner()
            .quarantined
    }

    /// `station`'s stream from its start, one page of at most 100 events,
    /// as the holder of `token` pulls it.
    pub async fn pull_station(
        &self,
        token: &str,
        station: &str,
    ) -> Result<station_proto::v1::PullResponse, tonic::Status> {
        SyncClient::new(self.channel.clone())
            .pull(authorized(
                station_proto::v1::PullRequest {
                    station_code: station.into(),
                    max_events: 100,
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Waits until the projector has applied every event of the log.
    pub async fn projected(&self) {
        self.projections
            .wait_through(self.store.event_count())
            .await;
    }

    /// The hub's data folder.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Asks the hub to stop, and returns once it has, with its store closed.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
        let Hub {
            store,
            projections,
            channel,
            dir,
            ..
        } = self;
        drop((store, projections, channel));
        dir
    }

    /// Stops the hub and starts it again over the same store.
    pub async fn restart(self) -> Hub {
        let dir = self.stop().await;
        Hub::start_in(dir, ServerOptions::default()).await
    }

    pub fn device_token(&self, station: &str, device: &str) -> String {
        auth::enroll_device(&self.store, station, device)
            .unwrap()
            .bearer
    }

    pub fn bureau_token(&self, bureau: &str) -> String {
        auth::enroll_bureau(&self.store, bureau).unwrap().bearer
    }

    /// A raw client, without compression, carrying no token of its own.
    pub async fn client(&self) -> SyncClient<Channel> {
        SyncClient::new(
            Channel::from_shared(self.url())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        )
    }

    /// A plain channel to the hub.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Everything a refused call must leave as it was.
    pub fn snapshot(&self) -> Snapshot {
        let mut durable_through: Vec<(Uuid, u64)> = self
            .store
            .origins()
            .unwrap()
            .into_iter()
            .map(|(origin, state)| (origin, state.durable_through))
            .collect();
        durable_through.sort();
        Snapshot {
            events: self.store.event_count(),
            durable_through,
            quarantined: self.store.quarantine().unwrap().len(),
            tokens: self.store.tokens().unwrap(),
        }
    }
}

/// The parts of a hub's state that calls can change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub events: u64,
    pub durable_through: Vec<(Uuid, u64)>,
    pub quarantined: usize,
    pub tokens: Vec<TokenRecord>,
}

/// `message` with `authorization: Bearer <token>`.
pub fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    request
}

/// The hub store in `dir`, opened with the key file `station-hub` made
/// beside it (`<dir>.key`) when there is one, else in clear.
pub fn open_store(dir: &std::path::Path) -> HubStore {
    let key = station_agent::seal::default_key_file(dir)
        .ok()
        .filter(|path| path.exists())
        .map(|path| {
            station_agent::seal::KeySource::Key(
                station_agent::seal::WrappingKey::from_key_file(&path).unwrap(),
            )
        });
    HubStore::open_keyed(
        dir,
        16 * 1024 * 1024,
        station_hub::store::MigrationOptions::default(),
        station_hub::store::StoreKey {
            key,
            ..Default::default()
        },
    )
    .unwrap()
}

/// A new device log of `station`.
pub fn device(dir: &std::path::Path, station: &str, worker: &str) -> Arc<Agent> {
    Arc::new(
        Agent::init(
            dir,
            InitOptions {
                station_code: station.into(),
                worker_id: worker.into(),
                hub_url: None,
                token: None,
            },
            OpenOptions::default(),
        )
        .unwrap(),
    )
}

/// An activity of `station`, made distinct by `n`.
pub fn activity(station: &str, n: i32) -> Body {
    Body::ActivityHeld(ActivityHeld {
        held_on: "2026-11-20".into(),
        community_code: format!("{station}001"),
        kind: ActivityKind::PartyPublicWelfare as i32,
        title: format!("党建+公益 {n} བོད"),
        participants: n,
        person_times: n,
        volunteers: 0,
        volunteer_minutes: 0,
    })
}

/// A device of `station` holding `count` recorded activities, and its events.
pub fn recorded(dir: &std::path::Path, station: &str, count: i32) -> (Arc<Agent>, Vec<Event>) {
    let agent = device(dir, station, "worker-1");
    for n in 1..=count {
        agent.record(activity(station, n)).unwrap();
    }
    let events = agent.own_events(0, usize::MAX).unwrap();
    (agent, events)
}

/// The event that would follow `last` in its origin's log, with a new id.
pub fn next_after(last: &Event) -> Event {
    let mut next = last.clone();
    next.origin_seq = last.origin_seq + 1;
    next.event_id = Uuid::now_v7().as_bytes().to_vec();
    next
}

/// Runs `station-hub <args>`, quiet but for warnings.
pub fn hub_run(args: &[&str]) -> std::process::Output {
    hub_command(args).output().unwrap()
}

/// Runs `station-hub <args[0]> --data <data> <args[1..]>`.
pub fn hub_cli(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut command = hub_command(&args[..1]);
    command.arg("--data").arg(data).args(&args[1..]);
    command.output().unwrap()
}

/// The `station-hub` command with `args`, logging warnings only.
pub fn hub_command(args: &[&str]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_station-hub"));
    command.args(args).env("RUST_LOG", "warn");
    command
}

/// The stdout of a command that must have succeeded.
pub fn stdout_of(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// A `Hello` of `origin` for `station`, from a device that holds nothing yet.
pub fn hello(origin: Uuid, station: &str) -> station_proto::v1::HelloRequest {
    station_proto::v1::HelloRequest {
        origin_id: origin.as_bytes().to_vec(),
        station_code: station.into(),
        head_seq: 0,
        device_clock_ms: 0,
        agent_version: "test".into(),
        public_key: Vec::new(),
        wiped: false,
    }
}
