//! Rebuild throughput of the projections, beside the rate of a plain read of
//! the same log (scan and protobuf decode, the reference it is measured
//! against), and latency of the indicator table, on a log generated straight
//! into a hub store.
//!
//! `cargo run --release -p station-hub --example projections_bench -- [EVENTS [BATCH]]`
//! (default 1,000,000 events, rebuilt in batches of `REBUILD_BATCH`). Prints the figures; asserts nothing.

use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use station_hub::config::HubConfig;
use station_hub::projections::Projections;
use station_hub::store::HubStore;
use station_proto::ids::Uuid;
use station_proto::v1::{
    ActivityHeld, ActivityKind, CaseOpened, CaseSource, Category, EventVoided, Gender, VisitKind,
    VisitRecorded,
};
use station_proto::{Body, Event};

const STATIONS: [&str; 7] = [
    "540502001",
    "540502101",
    "540502200",
    "540502201",
    "540502202",
    "540502203",
    "540502204",
];
const BASE_MS: i64 = 1_735_689_600_000;

fn id_number(serial: u32) -> String {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let first = format!("54050219600101{:03}", serial % 500 * 2);
    let sum: u32 = first
        .chars()
        .zip(WEIGHTS)
        .map(|(c, w)| c.to_digit(10).unwrap_or(0) * w)
        .sum();
    format!("{first}{}", b"10X98765432"[(sum % 11) as usize] as char)
}

struct Device {
    origin: Uuid,
    station: &'static str,
    seq: u64,
    cases: Vec<Uuid>,
    recent: Vec<Uuid>,
}

fn body(device: &mut Device, rng: &mut StdRng) -> Body {
    let date = format!(
        "2025-{:02}-{:02}",
        rng.random_range(1..=12),
        rng.random_range(1..=28)
    );
    let community = format!("{}{:03}", device.station, rng.random_range(1..=11));
    let roll = rng.random_range(0..100);
    if device.cases.is_empty() || roll < 10 {
        return Body::CaseOpened(CaseOpened {
            name: "次仁卓玛 ཚེ་རིང་སྒྲོལ་མ".into(),
            id_number: id_number(rng.random_range(0..500)),
            gender: Gender::Female as i32,
            birth_date: "1960-01-01".into(),
            community_code: community,
            address: String::new(),
            phone: String::new(),
            language: "bo".into(),
            categories: vec![Category::Elderly as i32],
            tier: rng.random_range(1..=3),
            source: CaseSource::Outreach as i32,
            opened_on: date,
        });
    }
    if roll < 70 {
        let case = device.cases[rng.random_range(0..device.cases.len())];
        return Body::VisitRecorded(VisitRecorded {
            case_id: case.as_bytes().to_vec(),
            visit_date: date,
            kind: VisitKind::Home as i32,
            duration_minutes: 30,
            notes: String::new(),
            needs_found: vec![],
        });
    }
    if roll < 72 && !device.recent.is_empty() {
        let target = device.recent[rng.random_range(0..device.recent.len())];
        return Body::EventVoided(EventVoided {
            voided_event_id: target.as_bytes().to_vec(),
            reason: "录入错误".into(),
        });
    }
    Body::ActivityHeld(ActivityHeld {
        held_on: date,
        community_code: community,
        kind: ActivityKind::PartyPublicWelfare as i32,
        title: "党建+公益".into(),
        participants: 20,
        person_times: 25,
        volunteers: 3,
        volunteer_minutes: 180,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let total: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    let store = Arc::new(HubStore::open(dir.path(), 512 * 1024 * 1024)?);
    let mut rng = StdRng::seed_from_u64(7);
    let mut devices: Vec<Device> = STATIONS
        .iter()
        .flat_map(|s| [s, s])
        .map(|station| Device {
            origin: Uuid::now_v7(),
            station,
            seq: 0,
            cases: Vec::new(),
            recent: Vec::new(),
        })
        .collect();
    let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
    let started = Instant::now();
    let mut written = 0u64;
    let mut hlc = (BASE_MS as u64) << 16;
    while written < total {
        let mut batch = Vec::with_capacity(5_000);
        for _ in 0..5_000.min(total - written) {
            let d = rng.random_range(0..devices.len());
            let device = &mut devices[d];
            let body = body(device, &mut rng);
            device.seq += 1;
            hlc += 1;
            let id = Uuid::now_v7();
            if matches!(body, Body::CaseOpened(_)) {
                device.cases.push(id);
            }
            device.recent.push(id);
            if device.recent.len() > 50 {
                device.recent.remove(0);
            }
            batch.push(Event {
                event_id: id.as_bytes().to_vec(),
                origin_id: device.origin.as_bytes().to_vec(),
                origin_seq: device.seq,
                station_code: device.station.into(),
                author: "worker".into(),
                recorded_at_ms: BASE_MS + (written as i64) * 1_000,
                hlc,
                body: Some(body),
            });
        }
        written += batch.len() as u64;
        let outcome = store.push(batch, today, BASE_MS + 400 * 86_400_000)?;
        anyhow::ensure!(
            outcome.quarantined == 0,
            "generated events were quarantined"
        );
    }
    let ingest = started.elapsed().as_secs_f64();
    println!(
        "ingest:  {written} events in {ingest:.1} s ({:.0} events/s, validated, fsynced per 5,000)",
        written as f64 / ingest
    );

    // The reference a rebuild is measured against: one sequential read of
    // the log, decoding every event (the faster of two reads).
    let mut secs = f64::MAX;
    let mut scanned = 0u64;
    for _ in 0..2 {
        let started = Instant::now();
        scanned = 0;
        for logged in store.scan_after(0) {
            scanned += u64::from(logged?.event.body.is_some());
        }
        secs = secs.min(started.elapsed().as_secs_f64());
    }
    println!(
        "scan:    {scanned} events in {secs:.2} s = {:.0} events/s (log read + prost decode)",
        scanned as f64 / secs
    );

    let config = Arc::new(HubConfig::builtin()?);
    let projections = Projections::open(Arc::clone(&store), config)?;
    let started = Instant::now();
    let batch: usize = std::env::args()
        .nth(2)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(station_hub::projections::REBUILD_BATCH);
    let rebuilt = projections.rebuild_in(batch)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "rebuild: {} events in {secs:.1} s = {:.0} events/s (batches of {batch})",
        rebuilt.applied,
        rebuilt.applied as f64 / secs
    );

    let stations: Vec<String> = STATIONS.iter().map(|s| s.to_string()).collect();
    for period in ["2025-06", "2025-Q2", "2025"] {
        let period = period.parse()?;
        let mut times = Vec::new();
        for _ in 0..1_000 {
            let started = Instant::now();
            let table = projections.indicators(period, &stations)?;
            times.push(started.elapsed().as_secs_f64() * 1_000.0);
            anyhow::ensure!(table.rows.len() == 7, "seven rows");
        }
        times.sort_by(f64::total_cmp);
        println!(
            "indicator table, 7 stations, {period}: p50 {:.3} ms, p99 {:.3} ms (1,000 queries)",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    Ok(())
}
