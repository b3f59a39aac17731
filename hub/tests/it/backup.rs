//! `station-hub backup` while a `station-hub serve` process takes pushes,
//! and `station-hub restore`: the backup is a consistent cut that `verify`
//! passes, and the hub restored from a quiet backup holds the same log,
//! tokens and projections, byte for byte, as the hub it was taken from.
//! A backup or restore never writes over a folder, and only a backup is
//! restored.

use std::path::Path;
use std::sync::Arc;

use station_agent::sync::{SyncOptions, sync_once};

use crate::admin::Served;
use crate::fixtures::{activity, device, hub_cli, hub_run, stdout_of};

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
    for push in pushes {
        assert_eq!(push.await.unwrap().unwrap().durable_through, 300);
    }
    // A consistent cut: every origin's chain verifies in it.
    let verified = stdout_of(&hub_run(&[
        "verify",
        "--data",
        under_load.to_str().unwrap(),
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

    // A quiet backup, then the hub stops and its projections are rebuilt
    // from its log; the restored hub is the same, tree by tree.
    let quiet = dir.path().join("quiet");
    stdout_of(&hub_cli(
        &data,
        &["backup", "--to", quiet.to_str().unwrap()],
    ));
    assert!(hub.terminate().success());
    stdout_of(&hub_cli(&data, &["rebuild"]));
    let restored = dir.path().join("restored");
    let said = stdout_of(&hub_run(&[
        "restore",
        "--from",
        quiet.to_str().unwrap(),
        "--data",
        restored.to_str().unwrap(),
    ]));
    assert!(said.starts_with("restored 600 events"), "{said}");
    assert_eq!(trees(&restored), trees(&data));

    // Only a backup is restored, and never over a folder.
    let not_a_backup = refused(&hub_run(&[
        "restore",
        "--from",
        data.to_str().unwrap(),
        "--data",
        dir.path().join("elsewhere").to_str().unwrap(),
    ]));
    assert!(
        not_a_backup.contains("is not a hub backup"),
        "{not_a_backup}"
    );
    assert!(!dir.path().join("elsewhere").exists());
    let over = refused(&hub_run(&[
        "restore",
        "--from",
        quiet.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]));
    assert!(over.contains("exists already"), "{over}");
}
