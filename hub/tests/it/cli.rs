//! The `station-hub` token commands through the real binary: `enroll`,
//! `revoke`, `tokens`, and the tokens they issue used against a real hub.

use std::path::Path;

use crate::fixtures::{Hub, authorized, hello, hub_cli, stdout_of};
use station_hub::server::ServerOptions;
use station_proto::ids::Uuid;
use station_proto::v1::PullRequest;
use tonic::Code;

fn is_token(line: &str) -> bool {
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    line.split_once('.')
        .is_some_and(|(id, secret)| hex(id, 12) && hex(secret, 64))
}

/// The rows of `tokens`, without its header, split at tabs.
fn token_rows(data: &Path) -> Vec<Vec<String>> {
    let listing = stdout_of(&hub_cli(data, &["tokens"]));
    let mut lines = listing.lines();
    assert_eq!(
        lines.next().unwrap(),
        "id\tkind\tstation\tname\torigin\trevoked\tcreated\twipe"
    );
    lines
        .map(|line| line.split('\t').map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enroll_revoke_and_list_tokens_then_use_them() {
    let data = tempfile::tempdir().unwrap();
    let device = stdout_of(&hub_cli(
        data.path(),
        &[
            "enroll",
            "--station",
            "540502001",
            "--device",
            "泽当-1 ཚེ་རིང",
        ],
    ));
    let device = device.trim().to_string();
    assert!(is_token(&device), "{device}");
    let bureau = stdout_of(&hub_cli(
        data.path(),
        &["enroll", "--bureau", "山南市民政局"],
    ));
    let bureau = bureau.trim().to_string();
    assert!(is_token(&bureau), "{bureau}");
    let device_id = device.split_once('.').unwrap().0;
    let bureau_id = bureau.split_once('.').unwrap().0;

    // Refused enrolments issue nothing.
    for args in [
        &["enroll", "--station", "5405", "--device", "x"][..],
        &["enroll", "--station", "540502001", "--device", " "][..],
        &["enroll", "--station", "540502001"][..],
        &[
            "enroll",
            "--bureau",
            "b",
            "--station",
            "540502001",
            "--device",
            "x",
        ][..],
        &["enroll"][..],
    ] {
        let output = hub_cli(data.path(), args);
        assert!(!output.status.success(), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let off_roster = hub_cli(
        data.path(),
        &["enroll", "--station", "540502999", "--device", "x"],
    );
    assert!(!off_roster.status.success());
    assert!(off_roster.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&off_roster.stderr);
    assert!(
        stderr.contains("station 540502999 is not on the roster")
            && stderr.contains("540502001 泽当街道")
            && stderr.contains("--config"),
        "{stderr}"
    );
    // Another roster admits its own stations.
    let other_data = tempfile::tempdir().unwrap();
    let config = other_data.path().join("hub.toml");
    let builtin = station_hub::config::DEFAULT_TOML.replace("540502001", "540502999");
    std::fs::write(&config, builtin).unwrap();
    let other = stdout_of(&hub_cli(
        other_data.path(),
        &[
            "enroll",
            "--station",
            "540502999",
            "--device",
            "x",
            "--config",
            config.to_str().unwrap(),
        ],
    ));
    assert!(is_token(other.trim()), "{other}");
    let output = hub_cli(
        data.path(),
        &["enroll", "--station", "5405", "--device", "x"],
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("station: must be 9 digits"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The listing shows both, and never a secret.
    let listing = stdout_of(&hub_cli(data.path(), &["tokens"]));
    for token in [&device, &bureau] {
        assert!(!listing.contains(token.split_once('.').unwrap().1));
    }
    let mut rows = token_rows(data.path());
    rows.sort_by_key(|row| row[1].clone());
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[0][..6],
        [bureau_id, "bureau", "-", "山南市民政局", "-", "-"]
    );
    assert_eq!(
        rows[1][..6],
        [device_id, "device", "540502001", "泽当-1 ཚེ་རིང", "-", "-"]
    );

    // Revoke the bureau's; an unknown id is an error.
    stdout_of(&hub_cli(data.path(), &["revoke", "--token-id", bureau_id]));
    let output = hub_cli(data.path(), &["revoke", "--token-id", "ffffffffffff"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no token has the id ffffffffffff"));

    // A hub on that folder takes the device token and refuses the revoked one.
    let hub = Hub::start_in(data, ServerOptions::default()).await;
    let mut client = hub.client().await;
    let origin = Uuid::now_v7();
    client
        .hello(authorized(hello(origin, "540502001"), &device))
        .await
        .unwrap();
    let status = client
        .pull(authorized(
            PullRequest {
                station_code: "540502001".into(),
                ..PullRequest::default()
            },
            &bureau,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "token revoked");

    // While it serves, the commands are refused rather than racing it.
    let output = hub_cli(hub.dir(), &["tokens"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot open the hub store"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let data = hub.stop().await;

    // Afterwards the listing shows the binding and the revocation.
    let mut rows = token_rows(data.path());
    rows.sort_by_key(|row| row[1].clone());
    assert_ne!(rows[0][5], "-", "revoked at: {rows:?}");
    assert_eq!(rows[1][4], origin.to_string());
    assert_eq!(rows[1][5], "-");
}

#[test]
fn listings_end_quietly_when_their_reader_has_gone() {
    let data = tempfile::tempdir().unwrap();
    for n in 0..3 {
        stdout_of(&hub_cli(
            data.path(),
            &[
                "enroll",
                "--station",
                "540502001",
                "--device",
                &format!("d{n}"),
            ],
        ));
    }
    let listings: [&[&str]; 3] = [&["tokens"], &["quarantine"], &["config", "--print-default"]];
    for args in listings {
        let mut command = crate::fixtures::hub_command(&args[..1]);
        if args[0] != "config" {
            command.arg("--data").arg(data.path());
        }
        let mut child = command
            .args(&args[1..])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // `| head -0`: the reader is gone before the first line is written.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
