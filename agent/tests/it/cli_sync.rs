//! The sync side of the `station-agent` command line: what `status` reports
//! and how `sync` fails and clears a parked batch, as a user runs it.

use std::path::Path;
use std::process::Command;

use station_agent::store::{EventLog, ParkedBatch};

use crate::fixtures::{BIN, agent, status, stderr};

fn init(data: &Path) {
    let out = agent(data, &["init", "--station", "540502001", "--worker", "w01"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn status_reports_the_sync_position_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    init(&data);
    let out = agent(
        &data,
        &[
            "activity",
            "--kind",
            "clinic",
            "--community",
            "540502001001",
            "--participants",
            "12",
            "--person-times",
            "12",
            "--date",
            "2026-01-05",
            "--title",
            "义诊 སྨན་བཅོས",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let s = status(&data);
    assert_eq!(s["head_seq"], 1);
    assert_eq!(s["durable_through"], 0);
    assert_eq!(s["pending"], 1);
    for field in ["parked", "last_sync_ms", "throughput_bps"] {
        assert!(s.get(field).is_some(), "{field} missing: {s}");
        assert!(s[field].is_null(), "{field}: {s}");
    }

    // What the sync client records shows up, parked batch included.
    {
        let log = EventLog::open(&data, crate::fixtures::cli_store_options(&data)).unwrap();
        log.set_parked(Some(&ParkedBatch {
            from_seq: 1,
            through_seq: 1,
            reason: "InvalidArgument: event 1 does not decode".into(),
            parked_at_ms: 1_767_000_000_000,
            agent_version: env!("CARGO_PKG_VERSION").into(),
        }))
        .unwrap();
        log.record_sync(Some(1_767_000_001_000), Some(6_000))
            .unwrap();
    }
    let s = status(&data);
    assert_eq!(s["parked"]["from_seq"], 1);
    assert_eq!(s["parked"]["through_seq"], 1);
    assert!(
        s["parked"]["reason"]
            .as_str()
            .unwrap()
            .contains("InvalidArgument"),
        "{s}"
    );
    assert_eq!(s["last_sync_ms"], 1_767_000_001_000_i64);
    assert_eq!(s["throughput_bps"], 48_000);

    let table = agent(&data, &["status"]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("parked           seqs 1..=1"), "{table}");
    assert!(table.contains("48000 bit/s"), "{table}");

    // `sync --retry-parked` clears it before trying, even when the hub is
    // out of reach.
    let out = agent(
        &data,
        &[
            "sync",
            "--hub",
            "http://127.0.0.1:1",
            "--retry-parked",
            "--retry-secs",
            "0",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot reach the hub"),
        "{}",
        stderr(&out)
    );
    assert!(status(&data)["parked"].is_null());
}

#[test]
fn sync_without_a_hub_or_with_a_bad_one_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    init(&data);
    let out = agent(&data, &["sync"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no hub configured"),
        "{}",
        stderr(&out)
    );

    let out = agent(&data, &["sync", "--hub", "not a url"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("bad hub address"), "{}", stderr(&out));

    let out = agent(
        &data,
        &[
            "run",
            "--hub",
            "http://127.0.0.1:1",
            "--tls-ca",
            "/nonexistent.pem",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("CA certificate"), "{}", stderr(&out));
}

#[cfg(unix)]
#[test]
fn run_syncs_until_sigterm() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    init(&data);
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["run", "--hub", "http://127.0.0.1:1", "--interval-secs", "5"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("syncing with http://127.0.0.1:1"),
        "{line}"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (done, exited) = std::sync::mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output().unwrap()));
    let out = exited
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the daemon stops on SIGTERM");
    assert!(out.status.success(), "{:?} {}", out.status, stderr(&out));
}

#[test]
fn sync_discover_without_a_relay_on_the_lan_falls_back_to_the_configured_hub() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("phone");
    // A station no relay of the tests serves.
    let out = agent(
        &data,
        &["init", "--station", "540502003", "--worker", "w01"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent(
        &data,
        &[
            "sync",
            "--discover",
            "--hub",
            "http://127.0.0.1:1",
            "--retry-secs",
            "0",
        ],
    );
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(
        said.contains("no relay of station 540502003 found on the LAN"),
        "{said}"
    );
    assert!(said.contains("cannot reach the hub"), "{said}");
}
