//! The benchmark harness: each figure beside its baseline or peer, measured
//! in the same run on the same data. Prints a markdown table and writes it
//! with a JSON copy under `target/bench/`.
//!
//! ```text
//! cargo run --release -p station-bench --bin bench -- [--quick] [--only NAME] [--out DIR]
//! ```
//!
//! Scenarios (one module each):
//! - `durable-append` ([`append`]): the agent log against SQLite (WAL,
//!   `synchronous=FULL`) and plain file append + `fdatasync`;
//! - `sync-backlog` ([`sync`]): a device's backlog through the weak-link
//!   simulator, against the link's limit and against PouchDB replication of
//!   the same records as JSON documents ([`pouchdb`]);
//! - `relay` ([`relay`]): 14 phones saving at a station relay with its
//!   uplink down, then the relay forwarding everything through the weak
//!   link, against the uplink's link limit;
//! - `hub-ingest` ([`ingest`]): devices pushing concurrently to a real hub
//!   on loopback, against raw sled batch inserts of the same bytes;
//! - `hub-log` ([`hub_log`]): the hub's log alone on JetStream, over one
//!   node (R1) and three (R3) on loopback, against the embedded sled store,
//!   the same devices' batches;
//! - `frontends` ([`frontends`]): the hub as served on JetStream R1 and R3
//!   against the same on sled, and a device's failover between front-ends;
//! - `projection-rebuild` and `query-latency` ([`projections`]): a generated
//!   hub log, rebuilt into projections and queried, against a raw scan and
//!   decode of the same log;
//! - `hostile-load` ([`hostile`]): a device's pushes and the bureau's
//!   indicator JSON while 1,000 idle and 200 slow-loris connections are held
//!   against the hub, against the same on a quiet network;
//! - `mobile` ([`mobile`]): the stripped mobile library and a phone process
//!   opening a store, against plain sled opening and scanning the same store;
//! - `directory` ([`directory`]): the district directory of 100,000 open
//!   files on a phone: its bytes, a day's delta on the wire, the check on
//!   open.
//!
//! `--quick` runs every scenario at a small size, as a smoke test of the
//! harness; its figures say nothing about speed.
//!
//! A row whose peer cannot run here (no Node.js, say) is kept, marked
//! skipped with the reason, so the table always shows what was not measured.

mod append;
mod directory;
mod frontends;
mod hostile;
mod hub_log;
mod ingest;
mod mobile;
mod pouchdb;
mod projections;
mod relay;
mod sync;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Benchmarks of station-sync against their baselines.
#[derive(Debug, Parser)]
struct Args {
    /// Small sizes, for a smoke run (every scenario in well under two minutes).
    #[arg(long)]
    quick: bool,
    /// Run only the scenario with this name (see `--list`).
    #[arg(long)]
    only: Option<String>,
    /// Leave out the PouchDB peer of sync-backlog (at full size it takes
    /// about 17 minutes of simulated 2G airtime); its rows are marked skipped.
    #[arg(long)]
    no_peer: bool,
    /// Print the scenario names and exit.
    #[arg(long)]
    list: bool,
    /// Where to write results.md and results.json (default: target/bench).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The scenarios, in the order they run.
const SCENARIOS: [&str; 11] = [
    "durable-append",
    "sync-backlog",
    "relay",
    "hub-ingest",
    "hub-log",
    "frontends",
    "projection-rebuild",
    "query-latency",
    "hostile-load",
    "mobile",
    "directory",
];

/// A project target a row is checked against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// ours / baseline must be at least this.
    RatioAtLeast(f64),
    /// ours / baseline must be at most this.
    RatioAtMost(f64),
    /// ours must be at most this, in the row's unit.
    AtMost(f64),
}

impl Goal {
    fn describe(self, unit: &str) -> String {
        match self {
            Goal::RatioAtLeast(r) => format!("ratio ≥ {r}"),
            Goal::RatioAtMost(r) => format!("ratio ≤ {r}"),
            Goal::AtMost(v) => format!("≤ {} {unit}", number(v)),
        }
    }

    fn met(self, ours: Option<f64>, ratio: Option<f64>) -> Option<bool> {
        match self {
            Goal::RatioAtLeast(r) => ratio.map(|x| x >= r),
            Goal::RatioAtMost(r) => ratio.map(|x| x <= r),
            Goal::AtMost(v) => ours.map(|x| x <= v),
        }
    }
}

/// Whether a row meets its target, as written to the JSON copy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Target {
    /// The rule, e.g. "ratio ≥ 0.5".
    pub rule: String,
    /// `None` when the row was not measured.
    pub met: Option<bool>,
}

/// One line of the results table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// The scenario's name, as `--only` takes it.
    pub scenario: &'static str,
    /// What is measured, with the size.
    pub metric: String,
    /// Our figure; `None` when skipped.
    pub ours: Option<f64>,
    /// What it is compared with.
    pub baseline_name: String,
    /// The baseline's figure, measured in the same run; `None` when skipped.
    pub baseline: Option<f64>,
    /// ours / baseline.
    pub ratio: Option<f64>,
    /// The unit of `ours` and `baseline`.
    pub unit: String,
    /// The project's target for this row, if it has one.
    pub target: Option<Target>,
    /// What the reader should know: why a row was skipped, how it was measured.
    pub note: Option<String>,
}

impl Row {
    /// A measured row.
    pub fn new(
        scenario: &'static str,
        metric: impl Into<String>,
        ours: f64,
        baseline_name: impl Into<String>,
        baseline: f64,
        unit: impl Into<String>,
    ) -> Self {
        Self {
            scenario,
            metric: metric.into(),
            ours: Some(ours),
            baseline_name: baseline_name.into(),
            baseline: Some(baseline),
            ratio: (baseline != 0.0).then(|| ours / baseline),
            unit: unit.into(),
            target: None,
            note: None,
        }
    }

    /// A row that could not be measured here, with the reason.
    pub fn skipped(
        scenario: &'static str,
        metric: impl Into<String>,
        baseline_name: impl Into<String>,
        unit: impl Into<String>,
        why: impl Into<String>,
    ) -> Self {
        Self {
            scenario,
            metric: metric.into(),
            ours: None,
            baseline_name: baseline_name.into(),
            baseline: None,
            ratio: None,
            unit: unit.into(),
            target: None,
            note: Some(format!("skipped: {}", why.into())),
        }
    }

    /// The row, checked against `goal`.
    #[must_use]
    pub fn goal(mut self, goal: Goal) -> Self {
        self.target = Some(Target {
            rule: goal.describe(&self.unit),
            met: goal.met(self.ours, self.ratio),
        });
        self
    }

    /// The row with a note.
    #[must_use]
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// A figure as the table prints it: three significant digits or so (two
/// below 0.1), with thousands separated.
pub fn number(x: f64) -> String {
    let a = x.abs();
    let text = if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 0.1 || a == 0.0 || !a.is_finite() {
        format!("{x:.2}")
    } else {
        // Two significant digits, however small.
        let decimals = (-a.log10()).ceil() as usize + 1;
        format!("{x:.decimals$}")
    };
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// The value at quantile `q` (0..=1) of sorted samples; 0 for none.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

/// Milliseconds of a duration, as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// The workspace's root directory (where `Cargo.toml` and `scripts/` are),
/// two levels above this crate's `tests/bench`.
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| manifest.clone(), PathBuf::from)
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `target/` of the workspace.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// Prints progress to standard error, so standard output is the table alone.
#[macro_export]
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("bench: {}", format!($($arg)*)) };
}

fn table(rows: &[Row]) -> String {
    let mut table = String::from(
        "| scenario | metric | ours | baseline | baseline value | ours / baseline | unit | target |\n\
         | --- | --- | ---: | --- | ---: | ---: | --- | --- |\n",
    );
    let cell = |v: Option<f64>| v.map_or_else(|| "–".to_string(), number);
    for r in rows {
        let mut target = match &r.target {
            Some(Target {
                rule,
                met: Some(true),
            }) => format!("{rule}: met"),
            Some(Target {
                rule,
                met: Some(false),
            }) => format!("{rule}: **missed**"),
            Some(Target { rule, met: None }) => format!("{rule}: not measured"),
            None => String::new(),
        };
        if let Some(note) = &r.note {
            if !target.is_empty() {
                target.push_str("; ");
            }
            target.push_str(note);
        }
        let ratio = r
            .ratio
            .map_or_else(|| "–".to_string(), |x| format!("{}×", number(x)));
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.metric,
            cell(r.ours),
            r.baseline_name,
            cell(r.baseline),
            ratio,
            r.unit,
            target.replace('|', "/")
        ));
    }
    table
}

fn main() -> anyhow::Result<()> {
    // The phone process of the `mobile` scenario is this binary, run again.
    let raw: Vec<String> = std::env::args().collect();
    if raw.get(1).map(String::as_str) == Some(mobile::CHILD_ARG) {
        return mobile::child(&raw[2..]);
    }
    let args = Args::parse();
    // RUST_LOG=station_agent=debug, say, shows each call of a sync scenario.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    if args.list {
        for name in SCENARIOS {
            println!("{name}");
        }
        return Ok(());
    }
    if let Some(only) = &args.only {
        anyhow::ensure!(
            SCENARIOS.contains(&only.as_str()),
            "no scenario is called {only:?}; the scenarios are {}",
            SCENARIOS.join(", ")
        );
    }
    let wanted = |name: &str| args.only.as_deref().is_none_or(|only| only == name);
    let runtime = tokio::runtime::Runtime::new()?;
    let mut rows = Vec::new();
    let quick = args.quick;
    if wanted("durable-append") {
        progress!("durable-append");
        append::run(quick, &mut rows)?;
    }
    if wanted("sync-backlog") {
        progress!("sync-backlog");
        runtime.block_on(sync::run(quick, !args.no_peer, &mut rows))?;
    }
    if wanted("relay") {
        progress!("relay");
        runtime.block_on(relay::run(quick, &mut rows))?;
    }
    if wanted("hub-ingest") {
        progress!("hub-ingest");
        runtime.block_on(ingest::run(quick, &mut rows))?;
    }
    if wanted("hub-log") {
        progress!("hub-log");
        hub_log::run(quick, &mut rows)?;
    }
    if wanted("frontends") {
        progress!("frontends");
        runtime.block_on(frontends::run(quick, &mut rows))?;
    }
    let rebuild = wanted("projection-rebuild");
    let queries = wanted("query-latency");
    if rebuild || queries {
        progress!("projection-rebuild / query-latency");
        runtime.block_on(projections::run(quick, rebuild, queries, &mut rows))?;
    }
    if wanted("hostile-load") {
        progress!("hostile-load");
        runtime.block_on(hostile::run(quick, &mut rows))?;
    }
    if wanted("mobile") {
        progress!("mobile");
        mobile::run(quick, &mut rows)?;
    }
    if wanted("directory") {
        progress!("directory");
        directory::run(quick, &mut rows)?;
    }
    let table = table(&rows);
    print!("{table}");
    let out = args.out.unwrap_or_else(|| target_dir().join("bench"));
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("results.md"), &table)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&rows)?,
    )?;
    progress!("wrote {}", out.join("results.{md,json}").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn figures_keep_their_significant_digits() {
        assert_eq!(number(1_234_567.0), "1,234,567");
        assert_eq!(number(-1_234.4), "-1,234");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(0.5), "0.50");
        assert_eq!(number(0.047), "0.047");
        assert_eq!(number(0.000_072), "0.000072");
        assert_eq!(number(0.0), "0.00");
    }
}
