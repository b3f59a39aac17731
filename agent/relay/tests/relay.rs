//! The station relay end to end: a real `station-relay` process between
//! phones (agents with their own logs, syncing as the CLI and the app do)
//! and a real hub on an ephemeral port, its uplink through a switch that
//! the test turns off and on. With the uplink down the phones save at the
//! station and see each other's entries; with it back every entry reaches
//! the city once and every phone shows it received by the city; a relay
//! killed with SIGKILL while phones push and while it forwards loses and
//! duplicates nothing; a phone moving between the relay and the hub
//! mid-backlog neither loses nor duplicates. A relay advertised on the LAN
//! with mDNS is found by a phone's browser and tried before the hub (this
//! needs multicast on the machine's interfaces, which the loopback-only
//! sandboxes of some CI runners lack).

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "mdns")]
use station_agent::sync::discover::{Browse as _, MdnsBrowser};
use station_agent::sync::{SyncOptions, SyncReport, sync_once};
use station_agent::{Agent, InitOptions, OpenOptions};
use station_hub::auth;
use station_hub::server::ServerOptions;
use station_hub::store::HubStore;
use station_proto::v1::sync_client::SyncClient;
use station_proto::v1::{
    ActivityHeld, ActivityKind, HelloRequest, HelloResponse, PullRequest, PullResponse,
    PushRequest, PushResponse, SignedHead,
};
use station_proto::{Body, Event};
use tokio::sync::watch;

const ZEDANG: &str = "540502001";
const CHANGZHU: &str = "540502101";

/// A hub serving on `127.0.0.1:0` over a fresh store.
struct Hub {
    addr: SocketAddr,
    store: Arc<HubStore>,
    _dir: tempfile::TempDir,
}

async fn start_hub() -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(HubStore::open(dir.path(), 16 * 1024 * 1024).unwrap());
    let hub = station_hub::Hub::with_store(Arc::clone(&store), ServerOptions::default())
        .await
        .unwrap();
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = grpc.local_addr().unwrap();
    tokio::spawn(hub.serve(
        station_hub::Listeners::grpc(grpc),
        std::future::pending::<()>(),
    ));
    Hub {
        addr,
        store,
        _dir: dir,
    }
}

impl Hub {
    /// Waits until the hub's log holds `events` events.
    async fn holds(&self, events: u64) {
        let mut grown = self.store.subscribe();
        tokio::time::timeout(Duration::from_secs(60), async {
            while self.store.event_count() < events {
                grown.changed().await.unwrap();
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the hub holds {} events, not {events}",
                self.store.event_count()
            )
        });
    }
}

/// The relay's uplink: a TCP switch in front of the hub. Off, it refuses
/// new connections and cuts open ones.
struct Switch {
    addr: SocketAddr,
    up: watch::Sender<bool>,
}

async fn switch_to(target: SocketAddr) -> Switch {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (up, _) = watch::channel(false);
    let watch = up.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let mut up = watch.subscribe();
            if !*up.borrow_and_update() {
                continue;
            }
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = up.wait_for(|up| !*up) => {}
                }
            });
        }
    });
    Switch { addr, up }
}

impl Switch {
    fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// A `station-relay` process.
struct RelayProcess {
    child: Child,
    url: String,
    /// What it prints after its address: one line each time the hub's list
    /// of the station's devices changes what it serves.
    said: std::io::BufReader<std::process::ChildStdout>,
}

/// A relay process; only the tests of discovery let it advertise itself on
/// the LAN, so that tests running at once do not see each other's relays.
fn start_relay(
    data: &Path,
    listen: &str,
    hub: SocketAddr,
    token_file: &Path,
    extra: &[&str],
) -> RelayProcess {
    let advertise = extra.contains(&"--name");
    let mut child = Command::new(env!("CARGO_BIN_EXE_station-relay"))
        .args(["--data", data.to_str().unwrap()])
        .args(["--station", ZEDANG, "--listen", listen])
        .args(["--hub", &format!("http://{hub}")])
        .args(["--token-file", token_file.to_str().unwrap()])
        .args(["--interval-ms", "100", "--disk-reserve-mb", "0"])
        .args(extra)
        .args((!advertise).then_some("--no-advertise"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut said = std::io::BufReader::new(child.stdout.take().unwrap());
    said.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("relay listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    RelayProcess {
        child,
        url: format!("http://{addr}"),
        said,
    }
}

impl RelayProcess {
    /// Where the relay listens, for a relay chained behind it.
    fn addr(&self) -> SocketAddr {
        self.url.strip_prefix("http://").unwrap().parse().unwrap()
    }

    /// Waits until the relay says it serves exactly `devices` device tokens
    /// of its station, as the hub listed them.
    fn serves(&mut self, devices: usize) {
        tokio::task::block_in_place(|| {
            loop {
                let mut line = String::new();
                assert!(
                    self.said.read_line(&mut line).unwrap() > 0,
                    "the relay ended before serving {devices} devices"
                );
                if let Some(count) = line
                    .trim()
                    .strip_prefix("relay serves ")
                    .and_then(|rest| rest.strip_suffix(" devices of its station"))
                {
                    assert_eq!(count, devices.to_string(), "devices the relay serves");
                    return;
                }
            }
        });
    }

    /// Waits until the relay says it is advertised on the LAN; returns the
    /// advertised name.
    #[cfg(feature = "mdns")]
    fn advertised(&mut self) -> String {
        let mut line = String::new();
        assert!(
            self.said.read_line(&mut line).unwrap() > 0,
            "the relay ended"
        );
        line.trim()
            .strip_prefix("relay advertised on the LAN as ")
            .unwrap_or_else(|| panic!("the relay is not advertised: {line:?}"))
            .to_string()
    }

    /// SIGTERM, and wait for the process to end on its own.
    #[cfg(feature = "mdns")]
    fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        assert!(self.child.wait().unwrap().success(), "the relay's exit");
    }

    /// SIGKILL, and wait for the process to be gone.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A phone of Zedang: its own log, its device token.
struct Phone {
    agent: Arc<Agent>,
    token: String,
    _dir: tempfile::TempDir,
}

fn phone(hub: &Hub, name: &str) -> Phone {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::init(
        dir.path(),
        InitOptions {
            station_code: ZEDANG.into(),
            worker_id: name.into(),
            hub_url: None,
            token: None,
        },
        OpenOptions::default(),
    )
    .unwrap();
    Phone {
        agent: Arc::new(agent),
        token: auth::enroll_device(&hub.store, ZEDANG, name)
            .unwrap()
            .bearer,
        _dir: dir,
    }
}

fn activity(n: usize) -> Body {
    Body::ActivityHeld(ActivityHeld {
        held_on: "2026-11-20".into(),
        community_code: format!("{ZEDANG}001"),
        kind: ActivityKind::PartyPublicWelfare as i32,
        title: format!("党建+公益 {n} བོད"),
        participants: 3,
        person_times: 3,
        volunteers: 0,
        volunteer_minutes: 0,
    })
}

impl Phone {
    fn record(&self, count: usize) {
        for n in 0..count {
            self.agent.record(activity(n)).unwrap();
        }
    }

    fn head(&self) -> u64 {
        self.agent.log().head_seq()
    }

    fn options(&self, url: &str) -> SyncOptions {
        let mut options = SyncOptions::new(url, Some(self.token.clone()));
        options.retry_budget = Duration::from_secs(20);
        options.backoff_base = Duration::from_millis(50);
        options.backoff_cap = Duration::from_millis(500);
        options.batch_bytes = 4_096;
        options
    }

    async fn sync(&self, url: &str) -> SyncReport {
        sync_once(Arc::clone(&self.agent), &self.options(url))
            .await
            .unwrap()
    }

    /// Syncs with `url` until it says the city holds every entry.
    async fn until_received_by_city(&self, url: &str) -> SyncReport {
        for _ in 0..200 {
            let report = self.sync(url).await;
            if report.city_durable_through == self.head() {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the city never received every entry of the phone");
    }

    /// Entries of colleagues this phone holds.
    fn colleagues_entries(&self) -> usize {
        let own = self.agent.identity().origin_id;
        self.agent
            .log()
            .pulled_events(0, usize::MAX)
            .unwrap()
            .iter()
            .filter(|(_, e)| e.origin_id != own.as_bytes())
            .count()
    }
}

struct Station {
    hub: Hub,
    switch: Switch,
    token_file: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

async fn station() -> Station {
    let hub = start_hub().await;
    let switch = switch_to(hub.addr).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("relay.token");
    let token = auth::enroll_relay(&hub.store, ZEDANG, "泽当站PC")
        .unwrap()
        .bearer;
    std::fs::write(&token_file, token).unwrap();
    let data = dir.path().join("relay-data");
    Station {
        hub,
        switch,
        token_file,
        data,
        _dir: dir,
    }
}

impl Station {
    fn relay(&self, listen: &str) -> RelayProcess {
        start_relay(&self.data, listen, self.switch.addr, &self.token_file, &[])
    }

    /// Lets the relay reach the hub until it serves the station's
    /// `devices` enrolled devices, then cuts its uplink again.
    fn learn(&self, relay: &mut RelayProcess, devices: usize) {
        self.switch.set(true);
        relay.serves(devices);
        self.switch.set(false);
    }

    /// A relay token of the station named `name` for a relay chained
    /// behind another: its token file and its data folder.
    fn enroll_chained(&self, name: &str) -> (PathBuf, PathBuf) {
        let token = auth::enroll_relay(&self.hub.store, ZEDANG, name)
            .unwrap()
            .bearer;
        let token_file = self.data.with_file_name(format!("{name}.token"));
        std::fs::write(&token_file, token).unwrap();
        (token_file, self.data.with_file_name(format!("{name}-data")))
    }

    /// The id of the station relay's token, as the hub's device rows name
    /// the relay an origin came by.
    fn relay_token_id(&self) -> String {
        let token = std::fs::read_to_string(&self.token_file).unwrap();
        token.split('.').next().unwrap().to_string()
    }

    /// Every phone's entries are on the hub once each.
    fn city_holds_each_once(&self, phones: &[&Phone]) {
        let total: u64 = phones.iter().map(|p| p.head()).sum();
        assert_eq!(self.hub.store.event_count(), total, "each entry once");
        for phone in phones {
            let state = self
                .hub
                .store
                .origin(phone.agent.identity().origin_id)
                .unwrap();
            assert_eq!(state.durable_through, phone.head());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_share_entries_through_the_relay_and_the_city_gets_each_once() {
    let station = station().await;
    let phones: Vec<Phone> = ["zd-1", "zd-2", "zd-3"]
        .iter()
        .map(|name| phone(&station.hub, name))
        .collect();
    let mut relay = station.relay("127.0.0.1:0");
    station.learn(&mut relay, 3);
    for (i, phone) in phones.iter().enumerate() {
        phone.record(20 + 10 * i);
        let report = phone.sync(&relay.url).await;
        assert_eq!(report.durable_through, phone.head(), "saved at the station");
        assert_eq!(report.city_durable_through, 0, "the uplink is down");
        let status = phone.agent.status().unwrap();
        assert_eq!(status.saved_through, phone.head());
        assert_eq!(status.awaiting_city, phone.head());
        assert_eq!(status.pending, 0);
    }
    // With the uplink still down, each sees the others' entries.
    let total: u64 = phones.iter().map(Phone::head).sum();
    for phone in &phones {
        phone.sync(&relay.url).await;
        assert_eq!(
            phone.colleagues_entries() as u64,
            total - phone.head(),
            "colleagues' entries through the relay"
        );
    }
    assert_eq!(station.hub.store.event_count(), 0);

    station.switch.set(true);
    station.hub.holds(total).await;
    for phone in &phones {
        let report = phone.until_received_by_city(&relay.url).await;
        assert_eq!(report.city_durable_through, phone.head());
        assert_eq!(phone.agent.status().unwrap().durable_through, phone.head());
    }
    let refs: Vec<&Phone> = phones.iter().collect();
    station.city_holds_each_once(&refs);
    let state = station
        .hub
        .store
        .origin(phones[0].agent.identity().origin_id)
        .unwrap();
    assert!(state.via_relay.is_some());
    assert_eq!(state.relayed_events, phones[0].head());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_receive_and_mid_forward_loses_and_duplicates_nothing() {
    let station = station().await;
    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let phones: Vec<Phone> = ["zd-1", "zd-2"]
        .iter()
        .map(|name| phone(&station.hub, name))
        .collect();
    for phone in &phones {
        phone.record(400);
    }
    // Mid-receive: killed while both phones push their backlogs.
    let mut relay = station.relay(&listen);
    station.learn(&mut relay, 2);
    let url = relay.url.clone();
    let pushing: Vec<_> = phones
        .iter()
        .map(|p| {
            let (agent, options) = (Arc::clone(&p.agent), p.options(&url));
            tokio::spawn(async move { sync_once(agent, &options).await })
        })
        .collect();
    // Killed once the relay has acknowledged a first batch, well before the
    // 800 entries are all in.
    while phones.iter().all(|p| p.agent.log().acked().unwrap() == 0) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    relay.kill();
    let saved: u64 = phones.iter().map(|p| p.agent.log().acked().unwrap()).sum();
    assert!(saved < 800, "killed mid-receive ({saved} saved)");
    for task in pushing {
        let _ = task.await.unwrap();
    }
    let relay = station.relay(&listen);
    for phone in &phones {
        let report = phone.sync(&relay.url).await;
        assert_eq!(report.durable_through, phone.head());
    }
    // Mid-forward: killed while it sends the backlog to the hub.
    station.switch.set(true);
    let mut grown = station.hub.store.subscribe();
    grown.changed().await.unwrap();
    relay.kill();
    let total: u64 = phones.iter().map(Phone::head).sum();
    assert!(
        station.hub.store.event_count() < total,
        "killed mid-forward"
    );
    let relay = station.relay(&listen);
    station.hub.holds(total).await;
    for phone in &phones {
        phone.until_received_by_city(&relay.url).await;
    }
    let refs: Vec<&Phone> = phones.iter().collect();
    station.city_holds_each_once(&refs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_moving_between_relay_and_hub_neither_loses_nor_duplicates() {
    let station = station().await;
    let hub_url = format!("http://{}", station.hub.addr);
    let moving = phone(&station.hub, "zd-moving");
    let colleague = phone(&station.hub, "zd-colleague");
    let mut relay = station.relay("127.0.0.1:0");
    station.learn(&mut relay, 2);
    colleague.record(15);
    colleague.sync(&relay.url).await;

    moving.record(30);
    moving.sync(&relay.url).await;
    // Now within reach of the hub, with more entries; the relay's uplink
    // is still down.
    moving.record(10);
    let report = moving.sync(&hub_url).await;
    assert_eq!(report.durable_through, 40);
    assert_eq!(report.city_durable_through, 40);
    // Back at the station: more entries, through the relay.
    moving.record(5);
    let report = moving.sync(&relay.url).await;
    assert_eq!(report.durable_through, 45);
    assert!(moving.colleagues_entries() >= 15);

    station.switch.set(true);
    station.hub.holds(45 + 15).await;
    moving.until_received_by_city(&relay.url).await;
    colleague.until_received_by_city(&relay.url).await;
    station.city_holds_each_once(&[&moving, &colleague]);
    // And at the hub again: nothing more to send, the colleague's entries
    // held once.
    let report = moving.sync(&hub_url).await;
    assert_eq!(report.pushed, 0);
    assert_eq!(moving.colleagues_entries(), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_listing_the_relay_and_the_hub_uses_whichever_answers() {
    let station = station().await;
    let phone = phone(&station.hub, "zd-1");
    let mut relay = station.relay("127.0.0.1:0");
    station.learn(&mut relay, 1);
    let both = format!("{},http://{}", relay.url, station.hub.addr);
    phone.record(12);
    let report = phone.sync(&both).await;
    assert_eq!(report.durable_through, 12, "saved at the station");
    assert_eq!(report.city_durable_through, 0, "the relay's uplink is down");
    assert_eq!(station.hub.store.event_count(), 0);

    // Away from the station: the relay is out of reach, the hub answers.
    relay.kill();
    phone.record(3);
    let report = phone.sync(&both).await;
    assert_eq!(report.city_durable_through, 15, "received by the city");
    // The dead relay refused one connection and was passed over at once.
    assert_eq!((report.connects, report.retries), (2, 0), "{report:?}");
    let status = phone.agent.status().unwrap();
    assert_eq!((status.durable_through, status.saved_through), (15, 15));
    station.city_holds_each_once(&[&phone]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_the_relay_serves_its_phones_tls_only() {
    let station = station().await;
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = station.data.with_file_name("relay.crt");
    let key = station.data.with_file_name("relay.pem");
    std::fs::write(&cert, issued.cert.pem()).unwrap();
    std::fs::write(&key, issued.signing_key.serialize_pem()).unwrap();
    let phone = phone(&station.hub, "zd-1");
    let mut relay = start_relay(
        &station.data,
        "127.0.0.1:0",
        station.switch.addr,
        &station.token_file,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    station.learn(&mut relay, 1);
    phone.record(4);
    let mut plain = phone.options(&relay.url);
    plain.retry_budget = Duration::from_millis(300);
    assert!(sync_once(Arc::clone(&phone.agent), &plain).await.is_err());
    let mut options = phone.options(&relay.url);
    options.tls_ca_pem = Some(issued.cert.pem().into_bytes());
    options.tls_domain = Some("localhost".into());
    let report = sync_once(Arc::clone(&phone.agent), &options).await.unwrap();
    assert_eq!(report.durable_through, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_serves_only_the_devices_the_hub_listed_and_drops_revoked_ones() {
    let station = station().await;
    let known = phone(&station.hub, "zd-1");
    let mut relay = station.relay("127.0.0.1:0");
    station.learn(&mut relay, 1);
    let refused = |report: Result<SyncReport, station_agent::sync::SyncError>| match report {
        Err(station_agent::sync::SyncError::Rpc { code, message, .. }) => {
            assert_eq!(code, tonic::Code::Unauthenticated, "{message}");
        }
        other => panic!("expected the relay to refuse the token: {other:?}"),
    };

    // A device on the station's network with a token of the right form that
    // the hub never issued is refused, and nothing of it is kept.
    let stranger = phone(&station.hub, "zd-stranger");
    stranger.record(3);
    let forged = format!("{}.{}", "ab".repeat(8), "cd".repeat(32));
    let mut options = SyncOptions::new(relay.url.clone(), Some(forged));
    options.retry_budget = Duration::from_millis(300);
    refused(sync_once(Arc::clone(&stranger.agent), &options).await);
    assert_eq!(stranger.agent.log().acked().unwrap(), 0);

    // A phone enrolled since the relay last reached the hub is refused by
    // the relay; listing the hub after it, it syncs with the hub directly.
    let newcomer = phone(&station.hub, "zd-2");
    newcomer.record(4);
    refused(sync_once(Arc::clone(&newcomer.agent), &newcomer.options(&relay.url)).await);
    let both = format!("{},http://{}", relay.url, station.hub.addr);
    let report = newcomer.sync(&both).await;
    assert_eq!(
        report.city_durable_through, 4,
        "received by the city directly"
    );

    // The known phone works through the relay until the hub revokes its
    // token and the relay hears of it.
    known.record(2);
    assert_eq!(known.sync(&relay.url).await.durable_through, 2);
    let token_id = known.token.split('.').next().unwrap().to_string();
    auth::revoke(&station.hub.store, &token_id).unwrap();
    // zd-1 revoked; zd-2 and the stranger's own phone enrolled meanwhile.
    station.learn(&mut relay, 2);
    known.record(1);
    let mut options = known.options(&relay.url);
    options.retry_budget = Duration::from_millis(300);
    let report = sync_once(Arc::clone(&known.agent), &options).await;
    assert!(
        matches!(
            report,
            Err(station_agent::sync::SyncError::Rpc {
                code: tonic::Code::Unauthenticated,
                ..
            })
        ),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_uplink_is_down_from_the_first_day_converges_once_it_is_up() {
    let station = station().await;
    let phones: Vec<Phone> = ["zd-1", "zd-2", "zd-3"]
        .iter()
        .map(|name| phone(&station.hub, name))
        .collect();
    let mut relay = station.relay("127.0.0.1:0");
    station.learn(&mut relay, 3);
    let both = format!("{},http://{}", relay.url, station.hub.addr);
    // Four days with the uplink down: each phone records and syncs every
    // evening, through the relay it lists first.
    for day in 0..4 {
        for (i, phone) in phones.iter().enumerate() {
            phone.record(5 + 3 * i + day);
            let report = phone.sync(&both).await;
            assert_eq!(report.durable_through, phone.head(), "saved at the station");
            assert_eq!(report.city_durable_through, 0, "the uplink is down");
        }
    }
    assert_eq!(station.hub.store.event_count(), 0);
    let total: u64 = phones.iter().map(Phone::head).sum();

    station.switch.set(true);
    station.hub.holds(total).await;
    for phone in &phones {
        let report = phone.until_received_by_city(&both).await;
        assert_eq!(report.durable_through, phone.head());
        assert_eq!(phone.agent.status().unwrap().durable_through, phone.head());
        assert_eq!(
            phone.colleagues_entries() as u64,
            total - phone.head(),
            "colleagues' entries, each once"
        );
    }
    let refs: Vec<&Phone> = phones.iter().collect();
    station.city_holds_each_once(&refs);
}

/// A `Sync` client of `url` sending `token` with each call.
struct Client {
    client: SyncClient<tonic::transport::Channel>,
    token: String,
}

async fn client(url: &str, token: &str) -> Client {
    Client {
        client: SyncClient::new(
            tonic::transport::Endpoint::from_shared(url.to_string())
                .unwrap()
                .connect()
                .await
                .unwrap(),
        ),
        token: token.trim().to_string(),
    }
}

impl Client {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        let bearer = format!("Bearer {}", self.token).parse().unwrap();
        request.metadata_mut().insert("authorization", bearer);
        request
    }

    async fn hello(&mut self) -> Result<HelloResponse, tonic::Status> {
        let hello = HelloRequest {
            origin_id: station_proto::ids::Uuid::new_v4().as_bytes().to_vec(),
            station_code: ZEDANG.into(),
            ..HelloRequest::default()
        };
        let request = self.request(hello);
        self.client
            .hello(request)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn push(
        &mut self,
        events: Vec<Event>,
        heads: Vec<SignedHead>,
    ) -> Result<PushResponse, tonic::Status> {
        let request = self.request(PushRequest {
            events,
            heads,
            ..PushRequest::default()
        });
        self.client
            .push(request)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn pull(&mut self) -> Result<PullResponse, tonic::Status> {
        let pull = PullRequest {
            station_code: ZEDANG.into(),
            max_events: 1_000,
            ..PullRequest::default()
        };
        let request = self.request(pull);
        self.client
            .pull(request)
            .await
            .map(tonic::Response::into_inner)
    }
}

fn unauthenticated<T: std::fmt::Debug>(answer: Result<T, tonic::Status>) {
    match answer {
        Err(status) => assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}"),
        Ok(answer) => panic!("expected the relay to refuse the token: {answer:?}"),
    }
}

/// The outpost's phone records and syncs with the outpost's relay, whose
/// only link is the station relay, while the station relay's uplink is
/// down; then it comes up. Every entry reaches the hub once, verified as
/// the phone signed it, and the phone is told "received by the city" only
/// as far as the hub acknowledged, never for what the station relay holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_behind_the_station_relay_forwards_through_it_and_the_city_figure_is_the_hubs() {
    let station = station().await;
    let village = phone(&station.hub, "village-1");
    let colleague = phone(&station.hub, "zd-1");
    let (outpost_token, outpost_data) = station.enroll_chained("outpost");
    let mut upstream = station.relay("127.0.0.1:0");
    station.learn(&mut upstream, 2);
    let mut outpost = start_relay(
        &outpost_data,
        "127.0.0.1:0",
        upstream.addr(),
        &outpost_token,
        &[],
    );
    // The outpost learns the station's phones from the station relay.
    outpost.serves(2);

    village.record(12);
    let report = village.sync(&outpost.url).await;
    assert_eq!(report.durable_through, 12, "saved at the outpost");
    assert_eq!(report.city_durable_through, 0, "the uplink is down");
    // The station relay holds them: its own phone sees them.
    colleague.record(3);
    for _ in 0..200 {
        colleague.sync(&upstream.url).await;
        if colleague.colleagues_entries() == 12 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        colleague.colleagues_entries(),
        12,
        "forwarded to the station relay"
    );
    // The station relay acknowledged them, but the city holds none.
    let report = village.sync(&outpost.url).await;
    assert_eq!(report.city_durable_through, 0, "not at the city yet");
    assert_eq!(station.hub.store.event_count(), 0);

    station.switch.set(true);
    station.hub.holds(15).await;
    let origin = village.agent.identity().origin_id;
    let mut reached = false;
    for _ in 0..200 {
        let report = village.sync(&outpost.url).await;
        let at_city = station.hub.store.origin(origin).unwrap().durable_through;
        assert!(
            report.city_durable_through <= at_city,
            "told {} received by the city, which holds {at_city}",
            report.city_durable_through
        );
        if report.city_durable_through == village.head() {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reached, "the city's figure reached the outpost's phone");
    station.city_holds_each_once(&[&village, &colleague]);
    // The hub names the relay that reached it.
    let state = station.hub.store.origin(origin).unwrap();
    assert_eq!(state.via_relay, Some(station.relay_token_id()));
    assert_eq!(state.relayed_events, 12);
    // And the outpost's phone gets its colleague's entries through the chain.
    for _ in 0..200 {
        village.sync(&outpost.url).await;
        if village.colleagues_entries() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(village.colleagues_entries(), 3);
}

/// The station relay serves the relay tokens of its station the hub listed,
/// live: another station's relay token, one revoked at the hub, and a
/// phone's device token acting as a relay are refused, and nothing they
/// send is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_serves_only_live_relay_tokens_of_its_own_station() {
    let station = station().await;
    let colleague = phone(&station.hub, "zd-1");
    let (outpost_token, _) = station.enroll_chained("outpost");
    let outpost_token = std::fs::read_to_string(outpost_token).unwrap();
    let other = auth::enroll_relay(&station.hub.store, CHANGZHU, "昌珠站PC")
        .unwrap()
        .bearer;
    let mut upstream = station.relay("127.0.0.1:0");
    station.learn(&mut upstream, 1);
    colleague.sync(&upstream.url).await;

    let mut outpost = client(&upstream.url, &outpost_token).await;
    let answer = outpost.hello().await.unwrap();
    assert_eq!(
        answer.station_devices.len(),
        1,
        "the station's phones, as hashes"
    );
    assert_eq!(answer.city_durable_through, Some(0), "a relay's answer");

    // Another station's relay token: never listed, refused.
    let stranger = phone(&station.hub, "zd-stranger");
    stranger.record(2);
    let (events, mut head) = (
        stranger.agent.own_events(0, usize::MAX).unwrap(),
        stranger.agent.log().signed_head(2).unwrap(),
    );
    head.public_key = stranger.agent.log().public_key().unwrap().to_vec();
    let mut other = client(&upstream.url, &other).await;
    unauthenticated(other.hello().await);
    unauthenticated(other.push(events.clone(), vec![head.clone()]).await);
    unauthenticated(other.pull().await);

    // A phone's device token carrying a colleague's signed entries, as a
    // relay would: refused, it pushes its own origin only.
    let mut device = client(&upstream.url, &colleague.token).await;
    let status = device
        .push(events.clone(), vec![head.clone()])
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");

    // Revoked at the hub: refused once the station relay heard of it (a
    // phone enrolled meanwhile makes it say so).
    let token_id = outpost_token.split('.').next().unwrap();
    auth::revoke(&station.hub.store, token_id).unwrap();
    let _newcomer = phone(&station.hub, "zd-2");
    station.learn(&mut upstream, 3);
    unauthenticated(outpost.push(events, vec![head]).await);
    unauthenticated(outpost.hello().await);

    // Nothing of what they sent is on the station relay.
    colleague.sync(&upstream.url).await;
    assert_eq!(colleague.colleagues_entries(), 0);
}

/// A relay that alters an entry on its way from the outpost is refused by
/// the hub, and nothing is stored; the same entries unaltered, taken from
/// the outpost's station stream with the phone's signed head, verify at the
/// hub: the signature holds end to end through relays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_alters_an_entry_passed_on_by_another_relay_is_refused_by_the_hub() {
    let station = station().await;
    let village = phone(&station.hub, "village-1");
    let (outpost_token, outpost_data) = station.enroll_chained("outpost");
    let (middle_token, _) = station.enroll_chained("middle");
    let middle_token = std::fs::read_to_string(middle_token).unwrap();
    let mut upstream = station.relay("127.0.0.1:0");
    station.learn(&mut upstream, 1);
    let mut outpost = start_relay(
        &outpost_data,
        "127.0.0.1:0",
        upstream.addr(),
        &outpost_token,
        &[],
    );
    outpost.serves(1);
    village.record(5);
    assert_eq!(village.sync(&outpost.url).await.durable_through, 5);

    // The middle relay takes the entries from the outpost as any relay of
    // the station may, with the phone's signed head.
    let page = client(&outpost.url, &middle_token)
        .await
        .pull()
        .await
        .unwrap();
    let events: Vec<Event> = page.events.into_iter().filter_map(|p| p.event).collect();
    assert_eq!(events.len(), 5);
    let heads = page.heads;
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].last_seq, 5);
    assert!(!heads[0].public_key.is_empty());

    let hub_url = format!("http://{}", station.hub.addr);
    let mut middle = client(&hub_url, &middle_token).await;
    let mut altered = events.clone();
    altered[2].body = Some(activity(40));
    let status = middle.push(altered, heads.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("does not verify"), "{status}");
    assert_eq!(
        station.hub.store.event_count(),
        0,
        "nothing of it is stored"
    );

    let acks = middle.push(events, heads).await.unwrap().acks;
    assert_eq!(
        acks[0].durable_through, 5,
        "verified as the phone signed it"
    );
    station.city_holds_each_once(&[&village]);
}

/// The station relay in the middle of a chain, killed with SIGKILL while it
/// forwards the outpost's entries to the hub, loses and duplicates nothing:
/// started again, it forwards the rest, and the outpost's phones are told
/// "received by the city" for every entry, each on the hub once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_middle_relay_killed_mid_forward_loses_and_duplicates_nothing() {
    let station = station().await;
    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let phones: Vec<Phone> = ["village-1", "village-2"]
        .iter()
        .map(|name| phone(&station.hub, name))
        .collect();
    let (outpost_token, outpost_data) = station.enroll_chained("outpost");
    let mut upstream = station.relay(&listen);
    station.learn(&mut upstream, 2);
    let mut outpost = start_relay(
        &outpost_data,
        "127.0.0.1:0",
        upstream.addr(),
        &outpost_token,
        &[],
    );
    outpost.serves(2);
    for phone in &phones {
        phone.record(400);
        assert_eq!(phone.sync(&outpost.url).await.durable_through, 400);
    }

    station.switch.set(true);
    let mut grown = station.hub.store.subscribe();
    grown.changed().await.unwrap();
    upstream.kill();
    assert!(station.hub.store.event_count() < 800, "killed mid-forward");
    let _upstream = station.relay(&listen);
    station.hub.holds(800).await;
    for phone in &phones {
        phone.until_received_by_city(&outpost.url).await;
    }
    let refs: Vec<&Phone> = phones.iter().collect();
    station.city_holds_each_once(&refs);
}

#[cfg(feature = "mdns")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_finds_its_station_relay_on_the_lan_and_tries_it_before_the_hub() {
    let station = station().await;
    let phone = phone(&station.hub, "zd-1");
    let mut relay = start_relay(
        &station.data,
        "0.0.0.0:0",
        station.switch.addr,
        &station.token_file,
        &["--name", "泽当站 relay"],
    );
    let port = relay.url.rsplit(':').next().unwrap().to_string();
    assert_eq!(relay.advertised(), "泽当站 relay._station-sync._tcp.local.");
    station.learn(&mut relay, 1);

    let hub = format!("http://{}", station.hub.addr);
    let mut options = phone.options(&hub);
    let found = tokio::task::spawn_blocking(|| MdnsBrowser.browse(ZEDANG, Duration::from_secs(10)))
        .await
        .unwrap();
    let ours: Vec<_> = found.iter().filter(|r| r.station == ZEDANG).collect();
    assert_eq!(ours.len(), 1, "{found:?}");
    assert!(!ours[0].tls);
    assert!(
        ours[0]
            .addresses
            .iter()
            .all(|a| a.port().to_string() == port && a.is_ipv4()),
        "a relay on 0.0.0.0 advertises its IPv4 addresses only: {found:?}"
    );
    let added = options.with_discovered(&found, ZEDANG);
    assert!(added >= 1, "{found:?}");
    let addresses = options.addresses();
    assert!(addresses[0].ends_with(&format!(":{port}")), "{addresses:?}");
    assert_eq!(addresses.last(), Some(&hub), "the hub stays the fallback");

    // The round goes through the relay: saved at the station, and the
    // relay's uplink is down.
    phone.record(7);
    let report = sync_once(Arc::clone(&phone.agent), &options).await.unwrap();
    assert_eq!(report.durable_through, 7, "saved at the station");
    assert_eq!(report.city_durable_through, 0, "{report:?}");
    assert_eq!(station.hub.store.event_count(), 0);
}

/// A browser watching while the relay stops sees its advertisement
/// withdrawn at once (the goodbye packets), not minutes later when its
/// records would expire.
#[cfg(feature = "mdns")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_withdraws_its_advertisement_when_it_stops() {
    use mdns_sd::{ServiceDaemon, ServiceEvent};
    use station_agent::sync::discover::SERVICE_TYPE;

    let station = station().await;
    let mut relay = start_relay(
        &station.data,
        "0.0.0.0:0",
        station.switch.addr,
        &station.token_file,
        &["--name", "zedang-withdraw"],
    );
    let fullname = relay.advertised();
    let browser = ServiceDaemon::new().unwrap();
    let events = browser.browse(SERVICE_TYPE).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let wait_for = |removed: bool| {
        tokio::task::block_in_place(|| {
            loop {
                match events.recv_deadline(deadline).unwrap() {
                    ServiceEvent::ServiceResolved(s) if !removed && s.fullname == fullname => {
                        return;
                    }
                    ServiceEvent::ServiceRemoved(_, name) if removed && name == fullname => return,
                    _ => {}
                }
            }
        });
    };
    wait_for(false);
    relay.terminate();
    wait_for(true);
    let _ = browser.shutdown();
}
