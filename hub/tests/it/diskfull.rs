//! A hub whose disk fills up: pushes are refused retryably and health says
//! `NOT_SERVING` for `Sync` while reads go on; nothing acknowledged is lost;
//! once space is freed the same hub, not restarted, takes the device's
//! entries again and says `SERVING`. On a small tmpfs the test mounts (as
//! root; elsewhere it says `skipped: …` and why), with the real sync client.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use station_agent::sync::{SyncOptions, sync_once};
use station_hub::server::ServerOptions;
use station_proto::v1::{GetCaseloadRequest, query_client::QueryClient};
use tokio_stream::StreamExt as _;
use tonic_health::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::fixtures::{Hub, activity, authorized, device};

const ZEDANG: &str = "540502001";
const MIB: u64 = 1024 * 1024;
/// Size of the filesystem the hub's store lives on.
const DISK: u64 = 64 * MIB;
/// Free space the hub keeps.
const RESERVE: u64 = 16 * MIB;

/// A tmpfs of [`DISK`] bytes, unmounted on drop.
struct Tmpfs {
    at: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount_or_skip(test: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("disk");
        std::fs::create_dir(&at).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={DISK}"), "tmpfs"])
            .arg(&at)
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(Tmpfs { at, _dir: dir }),
            Ok(output) => {
                eprintln!(
                    "skipped: {test}: cannot mount a tmpfs (root is needed): {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                None
            }
            Err(error) => {
                eprintln!("skipped: {test}: cannot run mount: {error}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// Bytes free on the filesystem of `dir`.
fn free(dir: &Path) -> u64 {
    let stats = rustix::fs::statvfs(dir).unwrap();
    stats.f_bavail * stats.f_frsize
}

/// Writes a file that leaves about `left` bytes free on the filesystem of
/// `dir`.
fn fill(dir: &Path, left: u64) -> PathBuf {
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5a_u8; MIB as usize];
    for _ in 0..free(dir).saturating_sub(left) / MIB {
        file.write_all(&chunk).unwrap();
    }
    file.sync_all().unwrap();
    assert!(free(dir) < left + MIB);
    path
}

/// Waits for `Sync`'s health to reach `wanted`, following the hub's
/// `Watch` stream.
async fn health_reaches(hub: &Hub, wanted: ServingStatus) {
    let mut health = HealthClient::new(hub.channel().await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "station.v1.Sync".into(),
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(answer) = watch.next().await {
        if answer.unwrap().status == wanted as i32 {
            return;
        }
    }
    panic!("health stream ended before {wanted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_pushes_keeps_reads_and_recovers_without_restart() {
    let Some(disk) = Tmpfs::mount_or_skip("a_full_disk_refuses_pushes") else {
        return;
    };
    let options = ServerOptions {
        disk_reserve: RESERVE,
        ..ServerOptions::default()
    };
    let hub = Hub::start_in(tempfile::tempdir_in(&disk.at).unwrap(), options).await;
    let token = hub.device_token(ZEDANG, "zd-1");
    let bureau = hub.bureau_token("山南市民政局");
    let phone_dir = tempfile::tempdir().unwrap();
    let phone = device(phone_dir.path(), ZEDANG, "worker-1");
    let sync = SyncOptions::new(hub.url(), Some(token.clone()));
    for n in 1..=3 {
        phone.record(activity(ZEDANG, n)).unwrap();
    }
    let report = sync_once(Arc::clone(&phone), &sync).await.unwrap();
    assert_eq!(report.durable_through, 3);
    health_reaches(&hub, ServingStatus::Serving).await;

    // The disk fills up to a few MiB (the log's growth, a copy left behind).
    let colleague = hub.device_token(ZEDANG, "zd-2");
    let ballast = fill(&disk.at, RESERVE / 4);
    for n in 4..=6 {
        phone.record(activity(ZEDANG, n)).unwrap();
    }
    // One attempt, no retries: the daemon would retry with backoff.
    let once = SyncOptions {
        retry_budget: std::time::Duration::ZERO,
        ..sync.clone()
    };
    let refused = sync_once(Arc::clone(&phone), &once).await.unwrap_err();
    assert!(refused.is_retriable(), "{refused}");
    assert!(
        refused.to_string().contains("disk is nearly full"),
        "{refused}"
    );
    health_reaches(&hub, ServingStatus::NotServing).await;
    assert_eq!(
        hub.store.event_count(),
        3,
        "nothing of the refused push is kept"
    );

    // Reads go on: the station's stream, as a colleague's phone pulls it,
    // and the bureau's figures.
    let pulled = hub.pull_station(&colleague, ZEDANG).await.unwrap();
    assert_eq!(pulled.events.len(), 3, "what was acknowledged is all there");
    hub.projected().await;
    QueryClient::new(hub.channel().await)
        .get_caseload(authorized(GetCaseloadRequest::default(), &bureau))
        .await
        .unwrap();

    // Space returns: the same hub takes the entries again.
    std::fs::remove_file(ballast).unwrap();
    let report = sync_once(Arc::clone(&phone), &sync).await.unwrap();
    assert_eq!(report.durable_through, 6);
    health_reaches(&hub, ServingStatus::Serving).await;
    assert_eq!(hub.store.event_count(), 6);

    let dir = hub.stop().await;
    drop(dir);
}
