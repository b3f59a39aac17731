//! What the agent's suites share: the station, the day they call today, a
//! device initialised on a temporary folder, and the `station-agent` binary
//! run as a user runs it.

use std::path::Path;
#[cfg(feature = "cli")]
use std::process::{Command, Output};

use chrono::NaiveDate;
use station_agent::{Agent, InitOptions, OpenOptions};

/// The station every suite's device belongs to (泽当街道).
pub const STATION: &str = "540502001";

/// The day the suites call today.
pub fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
}

/// A device of [`STATION`] initialised in `dir` for worker `worker`.
pub fn init_device(dir: &Path, worker: &str) -> Agent {
    Agent::init(
        dir,
        InitOptions {
            station_code: STATION.into(),
            worker_id: worker.into(),
            hub_url: None,
            token: None,
        },
        OpenOptions::default(),
    )
    .unwrap()
}

/// How a test opens a store the command line made: with the key file it
/// made beside the folder (`<data>.key`).
#[cfg(feature = "cli")]
pub fn cli_store_options(data: &Path) -> OpenOptions {
    let key_file = station_agent::seal::default_key_file(data).unwrap();
    OpenOptions {
        key: Some(station_agent::seal::KeySource::Key(
            station_agent::seal::WrappingKey::from_key_file(&key_file).unwrap(),
        )),
        ..OpenOptions::default()
    }
}

/// Every file under `dir`, with its bytes.
pub fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                out.push((entry.path(), std::fs::read(entry.path()).unwrap()));
            }
        }
    }
    out
}

/// The files under `dir` that hold `needle`'s bytes.
pub fn files_holding(dir: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    let needle = needle.as_bytes();
    files_under(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
        .map(|(path, _)| path)
        .collect()
}

/// The `station-agent` binary built for these tests.
#[cfg(feature = "cli")]
pub const BIN: &str = env!("CARGO_BIN_EXE_station-agent");

/// Runs `station-agent --data DATA ARGS…` to its end, without a TLS
/// authority or a token from the environment.
#[cfg(feature = "cli")]
pub fn agent(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("STATION_AGENT_TLS_CA")
        .env_remove("STATION_AGENT_TOKEN")
        .env_remove("STATION_AGENT_KEY_FILE")
        .env_remove("STATION_AGENT_PASSPHRASE")
        .output()
        .unwrap()
}

/// What a run printed on standard output.
#[cfg(feature = "cli")]
pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// What a run printed on standard error.
#[cfg(feature = "cli")]
pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// `station-agent status --format json`, which must succeed.
#[cfg(feature = "cli")]
pub fn status(data: &Path) -> serde_json::Value {
    let out = agent(data, &["status", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}
