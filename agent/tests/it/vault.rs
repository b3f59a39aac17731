//! Encryption at rest and permissions of the device's store: what a phone
//! thief or another local user finds in its files, wrong and missing keys,
//! key files others may read, rekeying, and a store in clear encrypted in
//! place while the process is killed in the middle.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use station_agent::seal::{KeySource, SealingOptions, WrappingKey};
use station_agent::{Agent, InitOptions, OpenOptions};
use station_proto::Body;
use station_proto::v1::{CaseOpened, CaseSource, Category, Gender, Tier};

use crate::fixtures::{STATION, files_holding, files_under};

const NAME: &str = "次仁卓玛";
const ID_NUMBER: &str = "11010519491231002X";
const PHONE: &str = "13908930123";
const ADDRESS: &str = "格桑路十二号";
const TOKEN: &str = "dt_secret-device-token-0123456789";

fn keyed(key: &KeySource) -> OpenOptions {
    OpenOptions {
        key: Some(key.clone()),
        ..OpenOptions::default()
    }
}

/// A case opening; `n` only tells the calls apart.
/// The opening of a file for person `n`: the first is [`ID_NUMBER`]'s, the
/// others are people of their own (one open file per person).
fn opening(n: usize) -> Body {
    let id_number = match n {
        0 => ID_NUMBER.to_string(),
        n => station_proto::id_number::with_check_character(&format!(
            "11010519491231{:03}",
            100 + 2 * n
        ))
        .unwrap(),
    };
    Body::CaseOpened(CaseOpened {
        name: NAME.into(),
        id_number,
        gender: Gender::Female as i32,
        birth_date: "1949-12-31".into(),
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

fn init(dir: &Path, open: OpenOptions) -> Agent {
    Agent::init(
        dir,
        InitOptions {
            station_code: STATION.into(),
            worker_id: "w01".into(),
            hub_url: Some("http://127.0.0.1:1".into()),
            token: Some(TOKEN.into()),
        },
        open,
    )
    .unwrap()
}

fn assert_holds_nothing_personal(dir: &Path) {
    for needle in [NAME, ID_NUMBER, PHONE, ADDRESS, TOKEN] {
        let found = files_holding(dir, needle);
        assert!(found.is_empty(), "{needle:?} found in {found:?}");
    }
}

#[test]
fn an_encrypted_store_holds_no_personal_data_in_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    let key = KeySource::Key(WrappingKey::generate().unwrap());
    let agent = init(&data, keyed(&key));
    let case = agent.record(opening(0)).unwrap();
    let pulled = station_proto::Event {
        event_id: station_proto::ids::Uuid::now_v7().as_bytes().to_vec(),
        origin_id: station_proto::ids::Uuid::new_v4().as_bytes().to_vec(),
        origin_seq: 1,
        station_code: STATION.into(),
        author: "w02".into(),
        recorded_at_ms: 1,
        hlc: 1 << 16,
        body: Some(opening(1)),
    };
    agent.log().apply_pulled(vec![(1, pulled)], 1).unwrap();
    assert_eq!(agent.cases().unwrap().len(), 2);
    drop(agent);
    assert_holds_nothing_personal(&data);

    let agent = Agent::open(&data, keyed(&key)).unwrap();
    let view = agent.case(case.event_id).unwrap().unwrap();
    assert_eq!(view.name, NAME);
    assert_eq!(agent.identity().token.as_deref(), Some(TOKEN));
    assert_eq!(agent.rebuild_views().unwrap(), 2);
    drop(agent);
    assert_holds_nothing_personal(&data);
}

#[test]
fn a_wrong_or_missing_key_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    let key = KeySource::Key(WrappingKey::generate().unwrap());
    let agent = init(&data, keyed(&key));
    agent.record(opening(0)).unwrap();
    drop(agent);
    let header = std::fs::read(data.join("seal.json")).unwrap();

    let wrong = KeySource::Key(WrappingKey::generate().unwrap());
    let refused = Agent::open(&data, keyed(&wrong)).unwrap_err().to_string();
    assert!(refused.contains("wrong key"), "{refused}");
    let refused = Agent::open(&data, OpenOptions::default())
        .unwrap_err()
        .to_string();
    assert!(refused.contains("encrypted"), "{refused}");
    let passphrase = KeySource::Passphrase("a guess".to_string().into());
    let refused = Agent::open(&data, keyed(&passphrase))
        .unwrap_err()
        .to_string();
    assert!(refused.contains("a key file"), "{refused}");

    assert_eq!(std::fs::read(data.join("seal.json")).unwrap(), header);
    let agent = Agent::open(&data, keyed(&key)).unwrap();
    assert_eq!(agent.log().head_seq(), 1);
    assert_eq!(agent.cases().unwrap().len(), 1);
}

#[test]
fn sm4_gcm_is_chosen_at_creation_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    let key = KeySource::Key(WrappingKey::generate().unwrap());
    let open = OpenOptions {
        algorithm: station_agent::seal::Algorithm::Sm4Gcm,
        ..keyed(&key)
    };
    let agent = init(&data, open);
    agent.record(opening(0)).unwrap();
    drop(agent);
    let header = std::fs::read_to_string(data.join("seal.json")).unwrap();
    assert!(header.contains("sm4-gcm"), "{header}");
    assert_holds_nothing_personal(&data);
    let agent = Agent::open(&data, keyed(&key)).unwrap();
    assert_eq!(agent.cases().unwrap().len(), 1);
}

#[test]
fn a_store_is_private_whatever_the_umask_and_refused_when_others_may_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    // A folder made under umask 022 is 0755: it is made private at open.
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = KeySource::Key(WrappingKey::generate().unwrap());
    let agent = init(&data, keyed(&key));
    agent.record(opening(0)).unwrap();
    drop(agent);
    // Files sled made under a lax umask are made private at the next open.
    std::fs::set_permissions(data.join("conf"), std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(Agent::open(&data, keyed(&key)).unwrap());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for (path, _) in files_under(&data) {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }

    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o775)).unwrap();
    let refused = Agent::open(&data, keyed(&key)).unwrap_err().to_string();
    assert!(refused.contains("writable by its group"), "{refused}");
    assert!(refused.contains("0775"), "{refused}");
    assert_eq!(mode(&data), 0o775, "a refused open changes nothing");
}

const CHILD_DIR: &str = "STATION_AGENT_SEALING_CHILD_DIR";
const CHILD_KEY: &str = "STATION_AGENT_SEALING_CHILD_KEY";

fn key_of(hex: &str) -> KeySource {
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    KeySource::Key(WrappingKey::from_bytes(bytes))
}

/// Run by the child process only: opens the store in `$CHILD_DIR` with the
/// key in `$CHILD_KEY`, sealing one value per step and printing `step N`
/// after each.
#[test]
#[ignore = "run as a child process by the in-place encryption crash test"]
fn seal_in_child() {
    let (Some(dir), Ok(hex)) = (std::env::var_os(CHILD_DIR), std::env::var(CHILD_KEY)) else {
        return;
    };
    let open = OpenOptions {
        sealing: SealingOptions {
            chunk_values: 1,
            after_step: Some(Arc::new(|step| println!("step {step}"))),
        },
        ..keyed(&key_of(&hex))
    };
    let agent = Agent::open(Path::new(&dir), open).unwrap();
    println!("open {}", agent.log().head_seq());
}

/// What one run of the child did before it was killed or ended.
struct ChildRun {
    /// It opened the store: the encryption was complete.
    opened: bool,
    /// The steps it reported.
    steps: usize,
    /// Its last lines and how it ended, for a failure's message.
    said: String,
}

/// Runs the child and SIGKILLs it once it reported `kill_after` steps.
fn seal_and_kill(dir: &Path, hex: &str, kill_after: usize) -> ChildRun {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "vault::seal_in_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_KEY, hex)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut run = ChildRun {
        opened: false,
        steps: 0,
        said: String::new(),
    };
    let mut last = std::collections::VecDeque::new();
    for line in stdout.lines() {
        // The test harness prints "test vault::seal_in_child ... " without
        // a line end, so the child's first line follows it on the same line.
        let line = line.unwrap();
        let said = line.rsplit("... ").next().unwrap_or_default();
        if said.starts_with("step ") {
            run.steps += 1;
        } else if said.starts_with("open ") {
            run.opened = true;
        }
        last.push_back(line);
        if last.len() > 5 {
            last.pop_front();
        }
        if run.opened || run.steps >= kill_after {
            break;
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    run.said = format!("{status}; last lines: {last:?}");
    run
}

#[test]
fn a_store_in_clear_is_encrypted_in_place_across_kills() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    let agent = init(&data, OpenOptions::default());
    let mut cases = Vec::new();
    for n in 0..6 {
        cases.push(agent.record(opening(n)).unwrap().event_id);
    }
    let before = agent.log().views_snapshot().unwrap();
    drop(agent);

    let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let mut kills = 0;
    loop {
        let run = seal_and_kill(&data, hex, 3 + kills);
        if run.opened {
            break;
        }
        assert!(
            run.steps > 0,
            "the child ended without sealing a value: {}",
            run.said
        );
        kills += 1;
        assert!(kills < 100, "the encryption never finished: {}", run.said);
    }
    assert!(kills >= 2, "the child was never killed in the middle");
    let refused = Agent::open(&data, OpenOptions::default())
        .unwrap_err()
        .to_string();
    assert!(refused.contains("encrypted"), "{refused}");
    let agent = Agent::open(&data, keyed(&key_of(hex))).unwrap();
    assert_eq!(agent.log().head_seq(), 6);
    assert_eq!(agent.log().views_snapshot().unwrap(), before);
    assert_eq!(agent.identity().token.as_deref(), Some(TOKEN));
    for case in cases {
        assert!(agent.case(case).unwrap().is_some());
    }
    assert_eq!(agent.log().own_events(0, 100).unwrap().len(), 6);
    let next = agent.record(opening(7)).unwrap();
    assert_eq!(next.origin_seq, 7);
}

#[cfg(feature = "cli")]
#[test]
fn the_command_line_makes_a_private_key_file_refuses_a_lax_one_and_rekeys() {
    use crate::fixtures::{agent, stderr};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    let key_file = dir.path().join("phone.key");
    let out = agent(&data, &["init", "--station", STATION, "--worker", "w01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("created the key file {}", key_file.display())),
        "{}",
        stderr(&out)
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&data), 0o700);

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = agent(&data, &["status"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("mode 0644"),
        "{}",
        stderr(&refused)
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(agent(&data, &["status"]).status.success());

    let new = dir.path().join("new.key");
    let out = agent(&data, &["rekey", "--new-key-file", new.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let refused = agent(&data, &["status"]);
    assert!(
        stderr(&refused).contains("wrong key"),
        "{}",
        stderr(&refused)
    );
    let out = agent(&data, &["--key-file", new.to_str().unwrap(), "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_wiped_store_keeps_no_data_file_and_never_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeySource::Key(WrappingKey::generate().unwrap());
    for (name, open) in [("sealed", keyed(&key)), ("clear", OpenOptions::default())] {
        let data = dir.path().join(name);
        let agent = init(&data, open.clone());
        agent.record(opening(0)).unwrap();
        agent.log().wipe(1_700_000_000_000).unwrap();
        drop(agent);
        assert_holds_nothing_personal(&data);
        let mut left: Vec<String> = std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["seal.json", "station.lock"], "{name}");
        assert_eq!(
            station_agent::seal::Vault::wiped_at(&data).unwrap(),
            Some(1_700_000_000_000)
        );
        for open in [open, keyed(&key), OpenOptions::default()] {
            let refused = Agent::open(&data, open).unwrap_err();
            assert!(refused.to_string().contains("wiped"), "{name}: {refused}");
        }
        // A file left by a crash during the wipe goes at the next open.
        std::fs::write(data.join("db"), NAME).unwrap();
        assert!(Agent::open(&data, keyed(&key)).is_err());
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 2, "{name}");
    }
}
