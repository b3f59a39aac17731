//! The benchmark harness runs end to end at its quick size and writes its
//! table and JSON copy. A smoke test of the harness: it asserts that every
//! scenario produced its rows, never a speed.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

const SCENARIOS: [&str; 8] = [
    "durable-append",
    "sync-backlog",
    "relay",
    "hub-ingest",
    "hub-log",
    "projection-rebuild",
    "query-latency",
    "mobile",
];

#[test]
fn the_quick_benchmark_writes_every_row() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("--quick")
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let table = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), table);
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    for scenario in SCENARIOS {
        assert!(
            rows.iter().any(|r| r["scenario"] == scenario),
            "{scenario} missing"
        );
        assert!(table.contains(&format!("| {scenario} |")), "{scenario}");
    }
    for row in &rows {
        // A row is measured, with positive figures, or says why it was skipped.
        match (row["ours"].as_f64(), row["baseline"].as_f64()) {
            (Some(ours), Some(baseline)) => {
                assert!(ours > 0.0 && baseline > 0.0, "{row}");
                assert!(row["ratio"].as_f64().unwrap() > 0.0, "{row}");
            }
            _ => assert!(
                row["note"].as_str().unwrap().starts_with("skipped: "),
                "{row}"
            ),
        }
        if !row["target"].is_null() {
            assert!(row["target"]["rule"].is_string(), "{row}");
        }
    }
    // Rows that always have a target say whether it is met.
    for scenario in ["durable-append", "hub-ingest", "projection-rebuild"] {
        assert!(
            rows.iter()
                .any(|r| r["scenario"] == scenario && r["target"]["met"].is_boolean()),
            "{scenario} has no target verdict"
        );
    }
    assert!(
        Command::new(env!("CARGO_BIN_EXE_bench"))
            .args(["--only", "no-such-scenario"])
            .output()
            .unwrap()
            .status
            .code()
            != Some(0)
    );
}
