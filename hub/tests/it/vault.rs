//! Encryption at rest of the hub's store, through the `station-hub` binary:
//! after a device syncs a case, no file of the hub's store or the device's
//! holds the person's name, ID number, phone, address or the device token;
//! a key file others may read and a wrong key are refused; `rekey` rewraps
//! the data key; a store in clear is encrypted in place at its first open
//! with a key.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use station_agent::seal::{KeySource, WrappingKey};
use station_agent::sync::{SyncOptions, sync_once};
use station_agent::{Agent, InitOptions, OpenOptions};
use station_hub::store::{HubStore, MigrationOptions, StoreKey};
use station_proto::Body;
use station_proto::v1::{CaseOpened, CaseSource, Category, Gender, Tier};

use crate::fixtures::{hub_cli, stdout_of};

pub const STATION: &str = "540502001";
pub const NAME: &str = "次仁卓玛";
pub const PHONE: &str = "13908930123";
pub const ADDRESS: &str = "格桑路十二号";

pub fn id_number() -> String {
    crate::events::id_number("19500101", 7, true)
}

pub fn opening() -> Body {
    Body::CaseOpened(CaseOpened {
        name: NAME.into(),
        id_number: id_number(),
        gender: Gender::Female as i32,
        birth_date: "1950-01-01".into(),
        community_code: format!("{STATION}001"),
        address: ADDRESS.into(),
        phone: PHONE.into(),
        language: "bo".into(),
        categories: vec![Category::Elderly as i32],
        tier: Tier::HighRisk as i32,
        source: CaseSource::Outreach as i32,
        opened_on: "2026-11-01".into(),
        file_number: String::new(),
        duplicate_reason: String::new(),
        duplicate_of_stations: Vec::new(),
    })
}

/// Every file under `dir` that holds `needle`'s bytes.
pub fn files_holding(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let needle = needle.as_bytes();
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                let bytes = std::fs::read(entry.path()).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(entry.path());
                }
            }
        }
    }
    found
}

/// `station-hub serve` over `data`, until dropped (SIGTERM, then waited for).
pub struct Serving {
    child: Child,
    pub addr: SocketAddr,
}

impl Serving {
    pub fn start(data: &Path) -> Serving {
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
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the hub exited before serving")
                .unwrap();
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.parse().unwrap();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Serving { child, addr }
    }

    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let term = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(term.success());
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sync_no_file_of_either_store_holds_personal_data() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("hub");
    let token = stdout_of(&hub_cli(
        &data,
        &["enroll", "--station", STATION, "--device", "phone-1"],
    ))
    .trim()
    .to_string();
    let key_file = root.path().join("hub.key");
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&data), 0o700);
    assert!(data.join("seal.json").exists());

    let hub = Serving::start(&data);
    let url = format!("http://{}", hub.addr);
    let phone = root.path().join("phone");
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
                key: Some(KeySource::Key(WrappingKey::generate().unwrap())),
                ..OpenOptions::default()
            },
        )
        .unwrap(),
    );
    agent.record(opening()).unwrap();
    sync_once(
        Arc::clone(&agent),
        &SyncOptions::new(url, Some(token.clone())),
    )
    .await
    .unwrap();
    assert_eq!(agent.log().acked().unwrap(), 1);
    drop(agent);
    hub.stop();

    let id_number = id_number();
    for needle in [NAME, id_number.as_str(), PHONE, ADDRESS, token.as_str()] {
        let found = files_holding(root.path(), needle);
        assert!(found.is_empty(), "{needle:?} found in {found:?}");
    }
    for path in [&data, &phone] {
        assert_eq!(mode(path), 0o700);
    }
    let verified = stdout_of(&hub_cli(&data, &["verify"]));
    assert!(verified.contains("verified through seq 1"), "{verified}");
}

#[test]
fn a_lax_key_file_a_wrong_key_and_a_rekey() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("hub");
    stdout_of(&hub_cli(&data, &["enroll", "--bureau", "山南市民政局"]));
    let key_file = root.path().join("hub.key");

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = hub_cli(&data, &["tokens"]);
    assert!(!refused.status.success());
    let reason = String::from_utf8_lossy(&refused.stderr);
    assert!(
        reason.contains("0644") && reason.contains("owner only"),
        "{reason}"
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let header = std::fs::read(data.join("seal.json")).unwrap();

    let other = root.path().join("other.key");
    WrappingKey::create_key_file(&other).unwrap();
    let mut wrong = crate::fixtures::hub_command(&["tokens"]);
    let refused = wrong
        .arg("--data")
        .arg(&data)
        .arg("--key-file")
        .arg(&other)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let reason = String::from_utf8_lossy(&refused.stderr);
    assert!(reason.contains("wrong key"), "{reason}");
    assert_eq!(std::fs::read(data.join("seal.json")).unwrap(), header);

    let new = root.path().join("new.key");
    let rekeyed = hub_cli(&data, &["rekey", "--new-key-file", new.to_str().unwrap()]);
    stdout_of(&rekeyed);
    assert_eq!(mode(&new), 0o600);
    let old_refused = hub_cli(&data, &["tokens"]);
    assert!(!old_refused.status.success());
    let listed = crate::fixtures::hub_command(&["tokens"])
        .arg("--data")
        .arg(&data)
        .arg("--key-file")
        .arg(&new)
        .output()
        .unwrap();
    assert!(stdout_of(&listed).contains("山南市民政局"));
}

#[test]
fn a_hub_store_in_clear_is_encrypted_in_place_and_reads_the_same() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("hub");
    let (_, events) = crate::fixtures::recorded(&root.path().join("phone"), STATION, 30);
    let now = chrono::Utc::now();
    let before = {
        let store = HubStore::open(&data, 1 << 20).unwrap();
        let outcome = store
            .push(events, now.date_naive(), now.timestamp_millis())
            .unwrap();
        assert_eq!(outcome.quarantined, 0);
        store.events_after(0, usize::MAX).unwrap()
    };
    assert_eq!(before.len(), 30);
    let key = KeySource::Key(WrappingKey::generate().unwrap());
    let open = |key: Option<KeySource>| {
        HubStore::open_keyed(
            &data,
            1 << 20,
            MigrationOptions::default(),
            StoreKey {
                key,
                ..StoreKey::default()
            },
        )
    };
    let store = open(Some(key.clone())).unwrap();
    let after = store.events_after(0, usize::MAX).unwrap();
    assert_eq!(
        after.iter().map(|e| &e.event).collect::<Vec<_>>(),
        before.iter().map(|e| &e.event).collect::<Vec<_>>()
    );
    let page = store.pull(STATION, 0, 100, 1 << 20).unwrap();
    assert_eq!(page.events.len(), 30);
    drop(store);
    let refused = open(None).unwrap_err().to_string();
    assert!(refused.contains("encrypted"), "{refused}");
    let wrong = open(Some(KeySource::Key(WrappingKey::generate().unwrap())))
        .unwrap_err()
        .to_string();
    assert!(wrong.contains("wrong key"), "{wrong}");
    assert_eq!(open(Some(key)).unwrap().event_count(), 30);
}
