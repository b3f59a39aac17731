//! `station-hub rebuild` and `station-hub config` through the real binary,
//! and `serve` refusing a bad configuration before it listens.

use std::path::Path;
use std::sync::Arc;

use crate::events::*;
use crate::fixtures::hub_run;
use station_hub::config::HubConfig;
use station_hub::projections::{KeyValue, Projections};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn projected(dir: &Path) -> (u64, Vec<KeyValue>) {
    let store = Arc::new(crate::fixtures::open_store(dir));
    let p = Projections::open(Arc::clone(&store), Arc::new(HubConfig::builtin().unwrap())).unwrap();
    p.catch_up().unwrap();
    let dump = p.dump().unwrap();
    let checkpoint = p.checkpoint();
    drop(p);
    store.sync().unwrap();
    (checkpoint, dump)
}

#[test]
fn rebuild_replays_the_log_into_the_same_projections() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = crate::fixtures::open_store(dir.path());
        let s = scenario();
        let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        for stream in [&s.b, &s.c, &s.a] {
            store
                .push(stream.clone(), today, EPOCH_MS + 86_400_000)
                .unwrap();
        }
        store.sync().unwrap();
    }
    let (checkpoint, incremental) = projected(dir.path());
    assert!(checkpoint > 20);
    let out = hub_run(&["rebuild", "--data", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("from {checkpoint} events")),
        "{stdout}"
    );
    let (again, rebuilt) = projected(dir.path());
    assert_eq!(again, checkpoint);
    assert_eq!(rebuilt, incremental);
}

#[test]
fn the_default_configuration_prints_and_bad_ones_are_refused_before_serving() {
    let out = hub_run(&["config", "--print-default"]);
    assert!(out.status.success());
    let printed = HubConfig::from_toml(&text(&out.stdout)).unwrap();
    assert_eq!(printed, HubConfig::builtin().unwrap());
    assert!(text(&out.stdout).contains("ILLUSTRATIVE"));

    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, text(&hub_run(&["config", "--print-default"]).stdout)).unwrap();
    let out = hub_run(&["config", "--check", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("7 stations"));

    let bad = dir.path().join("bad.toml");
    let edited = text(&hub_run(&["config", "--print-default"]).stdout)
        .replace("home_visits = 120", "home_visit = 120");
    std::fs::write(&bad, edited).unwrap();
    let out = hub_run(&["config", "--check", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("home_visit"),
        "{}",
        text(&out.stderr)
    );

    let data = dir.path().join("data");
    let out = hub_run(&[
        "serve",
        "--data",
        data.to_str().unwrap(),
        "--config",
        bad.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown metric"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("listening"));
}
