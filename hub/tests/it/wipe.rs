//! A lost device's wipe, end to end: `station-hub revoke --wipe` on a
//! serving hub, then the real sync client of an encrypted device: its
//! backlog reaches the hub before its keys go, nothing of its folder opens
//! or holds the person or the token afterwards, the hub shows the device
//! "wipe pending" then "wiped" (`tokens`, sync health) and its token is
//! revoked. A device ordered wiped that cannot upload its backlog keeps its
//! keys and records nothing more; its token pushes nothing past its backlog
//! and pulls nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use station_agent::seal::{KeySource, Vault, WrappingKey};
use station_agent::sync::{SyncOptions, sync_once};
use station_agent::{Agent, AgentError, InitOptions, OpenOptions, StoreError};
use station_hub::auth;
use station_hub::server::ServerOptions;
use station_proto::v1::query_client::QueryClient;
use station_proto::v1::sync_client::SyncClient;
use station_proto::v1::{GetSyncHealthRequest, PullRequest, PushRequest, VisitKind, WipeState};
use tonic::Code;

use crate::events::visit;
use crate::fixtures::{Hub, activity, authorized, device, hello, hub_cli, recorded, stdout_of};
use crate::vault::{ADDRESS, NAME, PHONE, STATION, Serving, files_holding, id_number, opening};

/// The `tokens` row of `token_id`, split at tabs.
fn token_row(data: &Path, token_id: &str) -> Vec<String> {
    stdout_of(&hub_cli(data, &["tokens"]))
        .lines()
        .find(|line| line.starts_with(token_id))
        .unwrap()
        .split('\t')
        .map(str::to_string)
        .collect()
}

async fn channel(url: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The wipe state and backlog of the one device of [`STATION`] in sync
/// health, as the bureau reads it.
async fn device_row(url: &str, bureau: &str) -> (WipeState, u64, u64) {
    let health = QueryClient::new(channel(url).await)
        .get_sync_health(authorized(
            GetSyncHealthRequest {
                stations: vec![STATION.into()],
            },
            bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    let [device] = &health.devices[..] else {
        panic!("one device: {:?}", health.devices);
    };
    (device.wipe(), device.durable_through, device.backlog)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_device_uploads_its_backlog_then_destroys_its_keys() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("hub");
    let token = stdout_of(&hub_cli(
        &data,
        &["enroll", "--station", STATION, "--device", "phone-1"],
    ))
    .trim()
    .to_string();
    let token_id = token.split_once('.').unwrap().0.to_string();
    let bureau = stdout_of(&hub_cli(&data, &["enroll", "--bureau", "山南市民政局"]))
        .trim()
        .to_string();
    let hub = Serving::start(&data);
    let url = format!("http://{}", hub.addr);

    let phone = root.path().join("phone");
    let key = KeySource::Key(WrappingKey::generate().unwrap());
    let agent = Arc::new(
        Agent::init(
            &phone,
            InitOptions {
                station_code: STATION.into(),
                worker_id: "zd-01".into(),
                hub_url: Some(url.clone()),
                token: Some(token.clone()),
            },
            OpenOptions {
                key: Some(key.clone()),
                ..OpenOptions::default()
            },
        )
        .unwrap(),
    );
    let case = agent.record(opening()).unwrap().event_id;
    let options = SyncOptions::new(url.clone(), Some(token.clone()));
    sync_once(Arc::clone(&agent), &options).await.unwrap();
    // Two visits the hub does not hold yet: the backlog.
    for day in ["2026-11-02", "2026-11-03"] {
        agent.record(visit(case, day, VisitKind::Home)).unwrap();
    }

    // The phone is reported lost.
    let ordered = stdout_of(&hub_cli(
        &data,
        &["revoke", "--token-id", &token_id, "--wipe"],
    ));
    assert!(ordered.ends_with("\twipe pending\n"), "{ordered}");
    let row = token_row(&data, &token_id);
    assert_eq!((row[5].as_str(), row[7].as_str()), ("-", "wipe pending"));
    assert_eq!(device_row(&url, &bureau).await, (WipeState::Pending, 1, 0));

    // Its next sync uploads the backlog, then destroys its keys.
    let report = sync_once(Arc::clone(&agent), &options).await.unwrap();
    let wiped = report.wiped.expect("the round wiped the device");
    assert!(wiped.confirmed);
    assert_eq!(wiped.not_uploaded, 0);
    assert_eq!(report.durable_through, 3);
    assert_eq!(report.pulled, 0);
    // The hub held all three entries when the device said it was wiped.
    assert_eq!(device_row(&url, &bureau).await, (WipeState::Wiped, 3, 0));
    let row = token_row(&data, &token_id);
    assert_ne!(row[5], "-", "the token is revoked: {row:?}");
    assert_eq!(row[7], "wiped");
    // The round is over for good: another is refused as wiped.
    let again = sync_once(Arc::clone(&agent), &options).await.unwrap_err();
    assert!(again.to_string().contains("wiped"), "{again}");
    drop(agent);

    // Nothing of the device's folder opens, or holds the person or the token.
    let id_number = id_number();
    for needle in [NAME, id_number.as_str(), PHONE, ADDRESS, token.as_str()] {
        let found = files_holding(&phone, needle);
        assert!(found.is_empty(), "{needle:?} found in {found:?}");
    }
    let mut left: Vec<String> = std::fs::read_dir(&phone)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["seal.json", "station.lock"]);
    assert!(Vault::wiped_at(&phone).unwrap().is_some());
    for key in [Some(key), None] {
        let open = OpenOptions {
            key,
            ..OpenOptions::default()
        };
        let refused = Agent::open(&phone, open).unwrap_err();
        assert!(
            matches!(
                refused,
                AgentError::Store(StoreError::Seal(station_agent::seal::SealError::Wiped))
            ),
            "{refused}"
        );
    }
    let still = std::fs::read_dir(&phone).unwrap().count();
    assert_eq!(still, 2, "a refused open makes no new store");

    // The token is dead.
    let mut client = SyncClient::new(channel(&url).await);
    let pull = client
        .pull(authorized(
            PullRequest {
                station_code: STATION.into(),
                max_events: 10,
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(pull.code(), Code::Unauthenticated);
    hub.stop();
    let verified = stdout_of(&hub_cli(&data, &["verify"]));
    assert!(verified.contains("verified through seq 3"), "{verified}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_cannot_upload_its_backlog_keeps_its_keys_and_records_nothing_more() {
    // A hub whose disk reserve refuses every push (retryably).
    let full = ServerOptions {
        disk_reserve: u64::MAX,
        ..ServerOptions::default()
    };
    let hub = Hub::start_in(tempfile::tempdir().unwrap(), full).await;
    let token = hub.device_token(STATION, "phone-1");
    let token_id = token.split_once('.').unwrap().0.to_string();
    let phone_dir = tempfile::tempdir().unwrap();
    let phone = device(phone_dir.path(), STATION, "worker-1");
    phone.record(opening()).unwrap();
    auth::order_wipe(&hub.store, &token_id).unwrap();

    let once = SyncOptions {
        retry_budget: Duration::ZERO,
        ..SyncOptions::new(hub.url(), Some(token.clone()))
    };
    let refused = sync_once(Arc::clone(&phone), &once).await.unwrap_err();
    assert!(refused.is_retriable(), "{refused}");
    // The keys stay while the hub lacks the backlog; nothing more is recorded.
    assert_eq!(Vault::wiped_at(phone_dir.path()).unwrap(), None);
    assert_eq!(phone.cases().unwrap().len(), 1);
    let more = phone.record(activity(STATION, 1)).unwrap_err();
    assert!(
        matches!(more, AgentError::Store(StoreError::WipeOrdered)),
        "{more}"
    );
    assert_eq!(phone.log().head_seq(), 1);

    // Room again: the next round uploads, then wipes.
    let dir = hub.stop().await;
    let hub = Hub::start_in(dir, ServerOptions::default()).await;
    let once = SyncOptions {
        hub_url: hub.url(),
        ..once
    };
    let report = sync_once(Arc::clone(&phone), &once).await.unwrap();
    assert_eq!(report.durable_through, 1);
    assert!(
        report
            .wiped
            .is_some_and(|w| w.confirmed && w.not_uploaded == 0)
    );
    assert!(Vault::wiped_at(phone_dir.path()).unwrap().is_some());
    let record = hub.store.token(&token_id).unwrap().unwrap();
    let wipe = record.wipe.unwrap();
    assert!(wipe.wiped_at_ms.is_some() && record.revoked_at_ms.is_some());
    assert_eq!(wipe.backlog_through, Some(1));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_ordered_wiped_pushes_only_its_backlog_and_pulls_nothing() {
    let hub = Hub::start().await;
    let token = hub.device_token(STATION, "phone-1");
    let token_id = token.split_once('.').unwrap().0.to_string();
    let other = hub.device_token(STATION, "phone-2");
    let bureau = hub.bureau_token("山南市民政局");
    let dir = tempfile::tempdir().unwrap();
    let (_agent, events) = recorded(dir.path(), STATION, 3);
    let origin = station_proto::ids::from_bytes(&events[0].origin_id).unwrap();
    let mut client = hub.client().await;
    client
        .hello(authorized(hello(origin, STATION), &token))
        .await
        .unwrap();

    // Only a device can be wiped, and only one whose token still works.
    let bureau_id = bureau.split_once('.').unwrap().0;
    assert!(matches!(
        auth::order_wipe(&hub.store, bureau_id),
        Err(auth::AuthError::Denied(_))
    ));
    let other_id = other.split_once('.').unwrap().0;
    auth::revoke(&hub.store, other_id).unwrap();
    let before = hub.snapshot();
    assert!(matches!(
        auth::order_wipe(&hub.store, other_id),
        Err(auth::AuthError::Denied(_))
    ));
    assert_eq!(hub.snapshot(), before, "a refused order changes nothing");

    let record = auth::order_wipe(&hub.store, &token_id).unwrap();
    assert_eq!(record.wipe.unwrap().wiped_at_ms, None);
    assert_eq!(
        auth::order_wipe(&hub.store, &token_id).unwrap(),
        record,
        "ordering it again changes nothing"
    );

    // Pull is refused; Hello tells the device; its head bounds the backlog.
    let pull = hub.pull_station(&token, STATION).await.unwrap_err();
    assert_eq!(pull.code(), Code::PermissionDenied);
    let mut at_two = hello(origin, STATION);
    at_two.head_seq = 2;
    let answer = client
        .hello(authorized(at_two, &token))
        .await
        .unwrap()
        .into_inner();
    assert!(answer.wipe);
    let pushed = client
        .push(authorized(
            PushRequest {
                events: events[..2].to_vec(),
                heads: Vec::new(),
                ..PushRequest::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pushed.acks[0].durable_through, 2);
    let before = hub.snapshot();
    let past = client
        .push(authorized(
            PushRequest {
                events: events[2..].to_vec(),
                heads: Vec::new(),
                ..PushRequest::default()
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(past.code(), Code::PermissionDenied, "{past:?}");
    assert_eq!(hub.snapshot(), before, "nothing past the backlog is taken");

    // A device not ordered wiped cannot say it is.
    let fresh = hub.device_token(STATION, "phone-3");
    let (_colleague, theirs) = recorded(&dir.path().join("c"), STATION, 1);
    let colleague = station_proto::ids::from_bytes(&theirs[0].origin_id).unwrap();
    let mut claim = hello(colleague, STATION);
    claim.wiped = true;
    let refused = client.hello(authorized(claim, &fresh)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // The device says it is wiped, with one entry the hub never took.
    let mut done = hello(origin, STATION);
    done.head_seq = 3;
    done.wiped = true;
    client.hello(authorized(done, &token)).await.unwrap();
    let record = hub.store.token(&token_id).unwrap().unwrap();
    let wipe = record.wipe.unwrap();
    assert!(wipe.wiped_at_ms.is_some() && record.revoked_at_ms.is_some());
    assert_eq!(wipe.not_uploaded, 1);
    let after = client
        .hello(authorized(hello(origin, STATION), &token))
        .await
        .unwrap_err();
    assert_eq!(after.code(), Code::Unauthenticated);
    hub.projected().await;
    let health = hub.projections.sync_health(&[STATION.to_string()]).unwrap();
    let device = health
        .devices
        .iter()
        .find(|d| d.origin_id == origin)
        .unwrap();
    assert_eq!(
        device.wipe,
        Some(station_hub::projections::WipeStatus::Wiped)
    );
    let json = hub.get_as("/api/sync-health", &bureau).await.json();
    let wiped = json["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["wipe"] == "wiped")
        .count();
    assert_eq!(wiped, 1, "{json}");
    hub.stop().await;
}
