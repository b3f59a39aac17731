//! `mobile`: the library the Android and iOS apps link, and a phone process.
//!
//! - Size of `libstation_mobile.so` built with profile `mobile` and
//!   stripped, as `scripts/mobile-bindings.sh release` ships it. The full
//!   run builds it; `--quick` measures a library built before, if any, and
//!   otherwise says it was not measured. Target: ≤ 6 MB.
//! - A store of one social worker's field work (100,000 entries; `--quick`:
//!   2,000), filled through the agent from 16 threads; then a fresh process
//!   (this binary, run again) opens it through the `FieldStore` facade with
//!   its phone defaults and lists the due follow-ups, and reports its peak
//!   resident memory (`VmHWM`) and the times. Against: a process opening the
//!   same store with plain sled (same page cache) and reading every entry.
//!   Warm page cache; the median of three runs after a warm-up. Target:
//!   peak resident memory ≤ 40 MB.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use station_mobile::{FieldStore, StoreOptions};
use station_sim::fieldwork::FieldWork;

use crate::{Goal, Row, ms, progress, target_dir, workspace_root};

const SCENARIO: &str = "mobile";
const STATION: &str = "540502001";
const WORKER: &str = "bench-phone";
const THREADS: u64 = 16;
/// The first argument that makes this binary the phone process.
pub const CHILD_ARG: &str = "__phone-process";
const MIB: f64 = 1024.0 * 1024.0;

/// `VmHWM` of this process, in KiB (Linux; 0 elsewhere).
fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Stands in for the phone's key store (Android Keystore, iOS Keychain):
/// wraps the data key with a fixed mask, so that the store is encrypted as
/// an app opens it.
#[derive(Debug)]
struct BenchKeys;

impl station_mobile::KeyProvider for BenchKeys {
    fn wrap(&self, data_key: Vec<u8>) -> Result<Vec<u8>, station_mobile::KeyProviderError> {
        Ok(data_key.iter().map(|b| b ^ 0x5a).collect())
    }

    fn unwrap(&self, wrapped: Vec<u8>) -> Result<Vec<u8>, station_mobile::KeyProviderError> {
        Ok(wrapped.iter().map(|b| b ^ 0x5a).collect())
    }
}

fn keys() -> Arc<dyn station_mobile::KeyProvider> {
    Arc::new(BenchKeys)
}

/// The phone process: `__phone-process facade|sled DIR`. Prints one line of
/// JSON: open_ms, total_ms, items, and the peak resident memory once open
/// (open_hwm_kib) and at the end (hwm_kib).
pub fn child(args: &[String]) -> anyhow::Result<()> {
    let [kind, dir] = args else {
        anyhow::bail!("usage: bench {CHILD_ARG} facade|sled DIR");
    };
    let started = Instant::now();
    let (opened, open_hwm_kib, items) = match kind.as_str() {
        "facade" => {
            let store = FieldStore::open(dir.clone(), STATION.into(), WORKER.into(), keys())?;
            let opened = started.elapsed();
            let open_hwm_kib = vm_hwm_kib();
            let due = store.due_follow_ups(7)?;
            (opened, open_hwm_kib, due.len())
        }
        "sled" => {
            let config = sled::Config::new()
                .path(dir)
                .cache_capacity(StoreOptions::default().cache_bytes);
            let db = station_agent::durable::open_sled(&config)?;
            let opened = started.elapsed();
            let open_hwm_kib = vm_hwm_kib();
            let mut entries = 0;
            for name in db.tree_names() {
                for item in db.open_tree(name)?.iter() {
                    let (k, v) = item?;
                    std::hint::black_box((k, v));
                    entries += 1;
                }
            }
            (opened, open_hwm_kib, entries)
        }
        other => anyhow::bail!("unknown phone process kind {other:?}"),
    };
    let total = started.elapsed();
    println!(
        "{}",
        serde_json::json!({
            "open_ms": ms(opened),
            "total_ms": ms(total),
            "items": items,
            "open_hwm_kib": open_hwm_kib,
            "hwm_kib": vm_hwm_kib(),
        })
    );
    Ok(())
}

/// What one phone process reported.
#[derive(Debug, Clone, Copy)]
struct Phone {
    open_ms: f64,
    total_ms: f64,
    items: u64,
    open_hwm_kib: u64,
    hwm_kib: u64,
}

fn phone(kind: &str, dir: &Path) -> anyhow::Result<Phone> {
    let output = Command::new(std::env::current_exe()?)
        .arg(CHILD_ARG)
        .arg(kind)
        .arg(dir)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "phone process ({kind}) failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(Phone {
        open_ms: v["open_ms"].as_f64().context("open_ms")?,
        total_ms: v["total_ms"].as_f64().context("total_ms")?,
        items: v["items"].as_u64().context("items")?,
        open_hwm_kib: v["open_hwm_kib"].as_u64().context("open_hwm_kib")?,
        hwm_kib: v["hwm_kib"].as_u64().context("hwm_kib")?,
    })
}

/// The median of three runs, field by field.
fn median(kind: &str, dir: &Path) -> anyhow::Result<Phone> {
    let runs = [phone(kind, dir)?, phone(kind, dir)?, phone(kind, dir)?];
    let mid = |f: fn(&Phone) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[1]
    };
    Ok(Phone {
        open_ms: mid(|p| p.open_ms),
        total_ms: mid(|p| p.total_ms),
        items: runs[0].items,
        open_hwm_kib: mid(|p| p.open_hwm_kib as f64) as u64,
        hwm_kib: mid(|p| p.hwm_kib as f64) as u64,
    })
}

/// Records `events` entries of field work from [`THREADS`] threads, each
/// visiting the cases it opened.
fn fill(dir: &Path, events: u64) -> anyhow::Result<()> {
    let store = FieldStore::open(
        dir.to_string_lossy().into_owned(),
        STATION.into(),
        WORKER.into(),
        keys(),
    )?;
    let agent = store.agent()?;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let lanes: Vec<_> = (0..THREADS)
            .map(|lane| {
                let agent = Arc::clone(&agent);
                scope.spawn(move || -> anyhow::Result<()> {
                    let mut work = FieldWork::new(STATION, 1_000 + lane);
                    let count = events / THREADS + u64::from(lane < events % THREADS);
                    work.record_on(&agent, usize::try_from(count)?)?;
                    Ok(())
                })
            })
            .collect();
        for lane in lanes {
            lane.join()
                .map_err(|_| anyhow::anyhow!("a fill thread panicked"))??;
        }
        Ok(())
    })?;
    let head = store.status()?.head_seq;
    anyhow::ensure!(head == events, "the store holds {head} entries");
    Ok(())
}

/// The stripped library's size in bytes, and how it was obtained; `Err`
/// says why it was not measured.
fn library_size(quick: bool) -> Result<(u64, String), String> {
    let built = target_dir().join("mobile/libstation_mobile.so");
    let how = if quick {
        if !built.exists() {
            return Err(format!(
                "no library built before at {} (--quick does not build it; the full run does)",
                built.display()
            ));
        }
        "built before this run (--quick does not rebuild it)".to_string()
    } else {
        progress!("mobile: building libstation_mobile.so with profile mobile");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let started = Instant::now();
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "--quiet",
                "-p",
                "station-mobile",
                "--lib",
                "--profile",
                "mobile",
            ])
            .status()
            .map_err(|e| format!("cargo could not run: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build --profile mobile failed ({status})"));
        }
        format!(
            "built by this run (profile mobile, {:.0} s)",
            started.elapsed().as_secs_f64()
        )
    };
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let stripped: PathBuf = dir.path().join("libstation_mobile.so");
    std::fs::copy(&built, &stripped).map_err(|e| format!("copying {}: {e}", built.display()))?;
    let status = Command::new("strip")
        .arg("--strip-all")
        .arg(&stripped)
        .status()
        .map_err(|e| format!("strip (binutils) could not run: {e}"))?;
    if !status.success() {
        return Err(format!("strip failed ({status})"));
    }
    let bytes = std::fs::metadata(&stripped)
        .map_err(|e| e.to_string())?
        .len();
    Ok((bytes, how))
}

/// Runs the scenario, adding its rows.
pub fn run(quick: bool, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let size_metric = "libstation_mobile.so, profile mobile, stripped";
    let size_target = 6_000_000.0 / MIB;
    match library_size(quick) {
        Ok((bytes, how)) => rows.push(
            Row::new(
                SCENARIO,
                size_metric,
                bytes as f64 / MIB,
                "target 6 MB (no peer)",
                size_target,
                "MiB",
            )
            .goal(Goal::AtMost(size_target))
            .note(format!("{bytes} bytes, {how}")),
        ),
        Err(why) => {
            progress!("mobile: library size not measured: {why}");
            rows.push(
                Row::skipped(SCENARIO, size_metric, "target 6 MB (no peer)", "MiB", why)
                    .goal(Goal::AtMost(size_target)),
            );
        }
    }

    let events: u64 = if quick { 2_000 } else { 100_000 };
    let dir = tempfile::tempdir()?;
    progress!("mobile: filling a store with {events} entries");
    fill(dir.path(), events)?;
    progress!("mobile: phone processes");
    phone("facade", dir.path())?;
    let ours = median("facade", dir.path())?;
    let raw = median("sled", dir.path())?;
    let size = if events >= 1_000 {
        format!("{},000", events / 1_000)
    } else {
        events.to_string()
    };
    let ram_target = 40_000_000.0 / MIB;
    rows.push(
        Row::new(
            SCENARIO,
            format!(
                "phone process: open a {size}-entry store, list due follow-ups: \
                 peak resident memory (VmHWM)"
            ),
            ours.hwm_kib as f64 / 1024.0,
            "plain sled: open the same store (same 4 MiB cache)",
            raw.open_hwm_kib as f64 / 1024.0,
            "MiB",
        )
        .goal(Goal::AtMost(ram_target))
        .note(format!(
            "{} due within 7 days; {} MiB once open; plain sled reading all {} entries: {} MiB",
            ours.items,
            crate::number(ours.open_hwm_kib as f64 / 1024.0),
            raw.items,
            crate::number(raw.hwm_kib as f64 / 1024.0)
        )),
    );
    rows.push(Row::new(
        SCENARIO,
        format!("phone process: open time, {size}-entry store, warm"),
        ours.open_ms,
        "plain sled open",
        raw.open_ms,
        "ms",
    ));
    rows.push(Row::new(
        SCENARIO,
        format!("phone process: open + list due follow-ups, {size}-entry store, warm"),
        ours.total_ms,
        "plain sled open + read every entry",
        raw.total_ms,
        "ms",
    ));
    Ok(())
}
