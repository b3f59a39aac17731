//! `station-hub backup` while a `station-hub serve` process takes pushes,
//! and `station-hub restore`: the backup is a consistent cut that `verify`
//! passes, and the hub restored from a quiet backup holds the same log,
//! tokens and projections, byte for byte, as the hub it was taken from.
//! A backup or restore never writes over a folder, and only a backup is
//! restored.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use station_agent::Agent;
use station_agent::sync::{SyncOptions, sync_once};
use station_hub::server::ServerOptions;
use station_hub::store::backup;
use station_proto::v1::query_client::QueryClient;
use station_proto::v1::{GetIndicatorsRequest, GetOverdueRequest};

use crate::admin::Served;
use crate::fixtures::{Hub, activity, authorized, device, hub_cli, hub_run, stdout_of};

const ZEDANG: &str = "540502001";

/// A sled tree's name and its entries, key and value.
type Tree = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

/// Every tree of the sled database in `dir`.
fn trees(dir: &Path) -> Vec<Tree> {
    let db = sled::Config::new().path(dir).open().unwrap();
    let mut names = db.tree_names();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let tree = db.open_tree(&name).unwrap();
            let entries = tree
                .iter()
                .map(|entry| {
                    let (k, v) = entry.unwrap();
                    (k.to_vec(), v.to_vec())
                })
                .collect();
            (name.to_vec(), entries)
        })
        .collect()
}

/// Runs `station-hub restore --from FROM --data TO`, with `--key-file KEY`
/// when given.
fn restore(from: &Path, to: &Path, key: Option<&str>) -> std::process::Output {
    let mut args = vec![
        "restore",
        "--from",
        from.to_str().unwrap(),
        "--data",
        to.to_str().unwrap(),
    ];
    if let Some(key) = key {
        args.extend(["--key-file", key]);
    }
    hub_run(&args)
}

fn refused(output: &std::process::Output) -> String {
    assert!(!output.status.success(), "expected a refusal");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_verifies_and_a_restored_hub_is_the_same_hub() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let hub = Served::start(&data);
    let enroll = |device: &str| {
        stdout_of(&hub_cli(
            &data,
            &["enroll", "--station", ZEDANG, "--device", device],
        ))
        .trim()
        .to_string()
    };
    let phones: Vec<_> = (1..=2)
        .map(|n| {
            let folder = dir.path().join(format!("phone-{n}"));
            let phone = device(&folder, ZEDANG, &format!("worker-{n}"));
            for k in 1..=300 {
                phone.record(activity(ZEDANG, k)).unwrap();
            }
            (phone, enroll(&format!("phone-{n}")))
        })
        .collect();

    // Both phones push in small batches while the backup is taken.
    let pushes: Vec<_> = phones
        .iter()
        .map(|(phone, token)| {
            let options = SyncOptions {
                batch_bytes: 2_048,
                ..SyncOptions::new(hub.url.clone(), Some(token.clone()))
            };
            let phone = Arc::clone(phone);
            tokio::spawn(async move { sync_once(phone, &options).await })
        })
        .collect();
    let under_load = dir.path().join("under-load");
    let taken = {
        let (data, to) = (data.clone(), under_load.clone());
        tokio::task::spawn_blocking(move || {
            hub_cli(&data, &["backup", "--to", to.to_str().unwrap()])
        })
        .await
        .unwrap()
    };
    let said = stdout_of(&taken);
    assert!(said.starts_with("backup of "), "{said}");
    let mode = |path: &Path| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&under_load), 0o700, "the backup is private");
    assert_eq!(mode(&under_load.join("db")), 0o600);
    for push in pushes {
        assert_eq!(push.await.unwrap().unwrap().durable_through, 300);
    }
    // A consistent cut: every origin's chain verifies in it.
    // The backup opens with the hub's key, and with nothing else.
    let key = dir.path().join("hub.key");
    let key = key.to_str().unwrap();
    let verified = stdout_of(&hub_run(&[
        "verify",
        "--data",
        under_load.to_str().unwrap(),
        "--key-file",
        key,
    ]));
    assert!(!verified.contains("broken"), "{verified}");

    // The folder exists: a second backup there is refused and changes
    // nothing.
    let before = trees(&under_load);
    let again = refused(&hub_cli(
        &data,
        &["backup", "--to", under_load.to_str().unwrap()],
    ));
    assert!(again.contains("exists already"), "{again}");
    assert_eq!(trees(&under_load), before);

    // A quiet backup; the hub stops. The restored hub holds the same log
    // and tokens, byte for byte (values stay sealed as they were), and
    // answers the same figures.
    let bureau = stdout_of(&hub_cli(&data, &["enroll", "--bureau", "山南市民政局"]))
        .trim()
        .to_string();
    let quiet = dir.path().join("quiet");
    stdout_of(&hub_cli(
        &data,
        &["backup", "--to", quiet.to_str().unwrap()],
    ));
    let figures = |url: String, bureau: String| async move {
        let channel = tonic::transport::Endpoint::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut answer = QueryClient::new(channel)
            .get_indicators(authorized(
                GetIndicatorsRequest {
                    period: "2026".into(),
                    stations: vec![ZEDANG.into()],
                },
                &bureau,
            ))
            .await
            .unwrap()
            .into_inner();
        for row in &mut answer.rows {
            row.complete_through_ms = None;
        }
        answer
    };
    assert!(hub.terminate().success());
    let restored = dir.path().join("restored");
    let wrong_key = refused(&restore(&quiet, &restored, None));
    assert!(!restored.exists(), "{wrong_key}");
    let said = stdout_of(&restore(&quiet, &restored, Some(key)));
    assert!(said.starts_with("restored 600 events"), "{said}");
    // The restored log is a new log (see the refill test below); the
    // projections are rebuilt, sealed anew.
    let log_and_tokens = |dir: &Path| {
        let mut trees = trees(dir);
        trees.retain(|(name, _)| name.as_slice() != b"projections");
        for (name, entries) in &mut trees {
            if name.as_slice() == b"hub" {
                entries.retain(|(k, _)| k.as_slice() != b"m:log_id");
            }
        }
        trees
    };
    let (restored_trees, original_trees) = (log_and_tokens(&restored), log_and_tokens(&data));
    assert!(
        restored_trees == original_trees,
        "the restored log or tokens differ: {} entries against {}",
        restored_trees.iter().map(|t| t.1.len()).sum::<usize>(),
        original_trees.iter().map(|t| t.1.len()).sum::<usize>()
    );
    std::fs::copy(dir.path().join("hub.key"), dir.path().join("restored.key")).unwrap();
    let (before, after) = {
        let original = Served::start(&data);
        let before = figures(original.url.clone(), bureau.clone()).await;
        let again = Served::start(&restored);
        (before, figures(again.url.clone(), bureau.clone()).await)
    };
    assert_eq!(after, before);

    // Only a backup is restored, and never over a folder.
    let not_a_backup = refused(&restore(&data, &dir.path().join("elsewhere"), None));
    assert!(
        not_a_backup.contains("is not a hub backup"),
        "{not_a_backup}"
    );
    assert!(!dir.path().join("elsewhere").exists());
    let over = refused(&restore(&quiet, &data, Some(key)));
    assert!(over.contains("exists already"), "{over}");
}

/// One sync round of `phone` with `token`, which must complete.
async fn synced(hub: &Hub, phone: &Arc<Agent>, token: &str) {
    sync_once(
        Arc::clone(phone),
        &SyncOptions::new(hub.url(), Some(token.to_string())),
    )
    .await
    .unwrap();
}

/// `phone` records `count` activities numbered from `from`.
fn records(phone: &Agent, from: i32, count: i32) {
    for n in from..from + count {
        phone.record(activity(ZEDANG, n)).unwrap();
    }
}

/// The ids of the colleague events `phone` holds, each once.
fn pulled_ids(phone: &Agent) -> BTreeSet<Vec<u8>> {
    let pulled = phone.log().pulled_events(0, usize::MAX).unwrap();
    let ids: BTreeSet<_> = pulled.iter().map(|(_, e)| e.event_id.clone()).collect();
    assert_eq!(ids.len(), pulled.len(), "every pulled event is held once");
    ids
}

fn own_ids(phone: &Agent) -> BTreeSet<Vec<u8>> {
    let own = phone.own_events(0, usize::MAX).unwrap();
    own.into_iter().map(|e| e.event_id).collect()
}

/// This year's figures of the station, without when its devices last
/// synced.
async fn this_year(hub: &Hub, bureau: &str) -> station_proto::v1::GetIndicatorsResponse {
    hub.projected().await;
    let mut answer = QueryClient::new(hub.channel().await)
        .get_indicators(authorized(
            GetIndicatorsRequest {
                period: "2026".into(),
                stations: vec![ZEDANG.into()],
            },
            bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    for row in &mut answer.rows {
        row.complete_through_ms = None;
    }
    answer
}

/// The hub dies after its last backup; restored from it, it is refilled by
/// its devices: each pushes again what the hub lacks of its log, each pulls
/// the station's stream again (the restored log is a new log), so every
/// event is back once, on the hub and on every phone, and the figures are
/// those of before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_restored_from_an_older_backup_is_refilled_by_its_devices() {
    let dir = tempfile::tempdir().unwrap();
    let hub = Hub::start().await;
    let bureau = hub.bureau_token("山南市民政局");
    let a = device(&dir.path().join("a"), ZEDANG, "worker-1");
    let b = device(&dir.path().join("b"), ZEDANG, "worker-2");
    let ta = hub.device_token(ZEDANG, "phone-a");
    let tb = hub.device_token(ZEDANG, "phone-b");
    records(&a, 1, 5);
    records(&b, 101, 5);
    synced(&hub, &a, &ta).await;
    synced(&hub, &b, &tb).await;
    synced(&hub, &a, &ta).await;
    // The bureau reads a named list: a record of the read audit.
    QueryClient::new(hub.channel().await)
        .get_overdue(authorized(GetOverdueRequest::default(), &bureau))
        .await
        .unwrap();
    let copy = dir.path().join("backup");
    assert_eq!(backup::backup(&hub.store, &copy).unwrap().events, 10);

    // After the backup: one entry of a, five of b (b pulls a's), then four
    // of a, which b has not pulled when the hub's disk dies.
    records(&a, 6, 1);
    synced(&hub, &a, &ta).await;
    records(&b, 106, 5);
    synced(&hub, &b, &tb).await;
    records(&a, 7, 4);
    synced(&hub, &a, &ta).await;
    assert_eq!(hub.store.event_count(), 20);
    let before = this_year(&hub, &bureau).await;
    drop(hub.stop().await);

    let restored = tempfile::tempdir().unwrap();
    std::fs::remove_dir(restored.path()).unwrap();
    backup::restore(
        &copy,
        restored.path(),
        16 * 1024 * 1024,
        station_hub::store::StoreKey::default(),
    )
    .unwrap();
    let audit = station_hub::audit::read(restored.path(), &Default::default()).unwrap();
    assert_eq!(
        (audit.total, audit.broken),
        (1, None),
        "the read audit came along"
    );
    let hub = Hub::start_in(restored, ServerOptions::default()).await;
    assert_eq!(hub.store.event_count(), 10);

    // a pushes its last five again, then b its own, and each pulls: a's
    // last five now sit at positions b had passed in the lost log.
    for _ in 0..2 {
        synced(&hub, &a, &ta).await;
        synced(&hub, &b, &tb).await;
    }
    assert_eq!(hub.store.event_count(), 20, "every event back, once");
    assert_eq!(pulled_ids(&b), own_ids(&a), "b holds all of a's entries");
    assert_eq!(pulled_ids(&a), own_ids(&b), "a holds all of b's entries");
    assert_eq!(this_year(&hub, &bureau).await, before);
}
