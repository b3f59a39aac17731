//! The benchmark harness runs end to end at its quick size and writes its
//! table and JSON copy. A smoke test of the harness: it asserts that every
//! scenario produced its rows, never a speed.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

#[test]
fn the_quick_benchmark_writes_every_row() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("--quick")
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let table = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    for scenario in ["durable-append", "sync-backlog"] {
        assert!(
            rows.iter().any(|r| r["scenario"] == scenario),
            "{scenario} missing"
        );
        assert!(table.contains(scenario));
    }
    assert!(
        rows.iter()
            .all(|r| r["ours"].as_f64().unwrap() > 0.0 && r["baseline"].as_f64().unwrap() > 0.0)
    );
}
