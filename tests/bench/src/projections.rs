//! `projection-rebuild` and `query-latency`: a hub log of the seven Nedong
//! stations (two devices each: case openings, visits, activities, voids)
//! generated straight into a hub store through its ingest rules, then
//! rebuilt into projections and queried.
//!
//! - Rebuild: events/s of [`Projections::rebuild`], against a raw scan of
//!   the same log's event entries with a prost decode of each (the floor any
//!   replay pays). Target: at least half the raw rate.
//! - Queries: p50 and p99 of the indicator table (7 stations; a month, a
//!   quarter and a year in turn) and of the overdue list, in process through
//!   the projections' read API and over gRPC (`station.v1.Query`, bureau
//!   token, loopback), once the rebuild is on disk and after a few warm-up
//!   queries. Against: the raw scan and decode of the log, the least an
//!   answer computed without projections would cost. Target: indicator table
//!   p99 ≤ 1 ms in process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use station_hub::config::HubConfig;
use station_hub::projections::Projections;
use station_hub::projections::period::Period;
use station_hub::store::HubStore;
use station_proto::ids::Uuid;
use station_proto::v1::query_client::QueryClient;
use station_proto::v1::{
    ActivityHeld, ActivityKind, CaseOpened, CaseSource, Category, EventVoided, Gender,
    GetIndicatorsRequest, GetOverdueRequest, VisitKind, VisitRecorded,
};
use station_proto::{Body, Event};
use station_sim::district::NEDONG_STATIONS as STATIONS;
use station_sim::fieldwork::id_number;

use crate::ingest::with_token;
use crate::{Goal, Row, ms, percentile, progress};

/// The hub's default page cache (`station-hub serve|rebuild --cache-capacity`).
const CACHE: u64 = 256 * 1024 * 1024;
/// 2025-01-01T00:00:00Z: the generated log covers 2025.
const BASE_MS: i64 = 1_735_689_600_000;
/// A past day the overdue list is also asked for: each case judged as it
/// stood then, from every case file (today's list reads the open cases).
const PAST: (i32, u32, u32) = (2025, 10, 1);
const PERIODS: [&str; 3] = ["2025-06", "2025-Q2", "2025"];

struct Device {
    origin: Uuid,
    station: &'static str,
    seq: u64,
    cases: Vec<Uuid>,
    recent: Vec<Uuid>,
}

/// The ID number of the `n`th person of the district: serial `n % 500`, born
/// on a day counted from 1930-01-01 by `n / 500` (28 days a month), so that
/// every file is of another person (a station holds one file per person).
fn person(n: u32) -> (String, String) {
    let day = n / 500;
    let (year, month, dom) = (1930 + day / 336 % 80, 1 + day / 28 % 12, 1 + day % 28);
    (
        id_number("540502", &format!("{year}{month:02}{dom:02}"), n, true),
        format!("{year}-{month:02}-{dom:02}"),
    )
}

/// The next body of `device`: 10% case openings (each of the next person
/// of `people`), 60% visits, 2% voids of a recent entry, the rest
/// activities, dated in 2025.
fn body(device: &mut Device, rng: &mut StdRng, people: &mut u32) -> Body {
    let date = format!(
        "2025-{:02}-{:02}",
        rng.random_range(1..=12),
        rng.random_range(1..=28)
    );
    let community = format!("{}{:03}", device.station, rng.random_range(1..=11));
    let roll = rng.random_range(0..100);
    if device.cases.is_empty() || roll < 10 {
        // The draw that chose the person before people had to differ, kept
        // so that the rest of the log is drawn as before.
        let _ = rng.random_range(0..500);
        let (id_number, birth_date) = person(*people);
        *people += 1;
        return Body::CaseOpened(CaseOpened {
            name: "次仁卓玛 ཚེ་རིང་སྒྲོལ་མ".into(),
            id_number,
            gender: Gender::Female as i32,
            birth_date,
            community_code: community,
            address: String::new(),
            phone: String::new(),
            language: "bo".into(),
            categories: vec![Category::Elderly as i32],
            tier: rng.random_range(1..=3),
            source: CaseSource::Outreach as i32,
            opened_on: date,
            file_number: String::new(),
            duplicate_reason: String::new(),
            duplicate_of_stations: Vec::new(),
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

/// Writes `total` events into the store through its ingest rules (validated,
/// indexed, fsynced per 5,000).
fn generate(store: &HubStore, total: u64) -> anyhow::Result<()> {
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
    let mut written = 0u64;
    let mut hlc = (BASE_MS as u64) << 16;
    let mut people = 0u32;
    while written < total {
        let mut batch = Vec::with_capacity(5_000);
        for _ in 0..5_000.min(total - written) {
            let d = rng.random_range(0..devices.len());
            let device = &mut devices[d];
            let body = body(device, &mut rng, &mut people);
            device.seq += 1;
            hlc += 1;
            let recorded_at_ms = BASE_MS + (written as i64) * 1_000;
            let id = station_proto::ids::v7_at(recorded_at_ms as u64);
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
                recorded_at_ms,
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
    Ok(())
}

/// Scans the log's event entries of the closed store in `dir` with plain
/// sled, decoding each; returns how many and how long it took.
fn raw_scan(dir: &std::path::Path) -> anyhow::Result<(u64, Duration)> {
    let db =
        station_agent::durable::open_sled(&sled::Config::new().path(dir).cache_capacity(CACHE))?;
    let tree = db.open_tree("hub")?;
    let started = Instant::now();
    let mut count = 0u64;
    // Hub log format 2: each `l:` record holds a run of events, after a
    // 17-byte header (first position, receive-time flag and time), each as a
    // big-endian u32 length and the encoded event.
    for item in tree.scan_prefix(b"l:") {
        let (_, run) = item?;
        let mut at = 17;
        while at < run.len() {
            let len = run
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
                .ok_or_else(|| anyhow::anyhow!("a run record ends inside a length"))?;
            let end = at + 4 + len as usize;
            let raw = run
                .get(at + 4..end)
                .ok_or_else(|| anyhow::anyhow!("a run record ends inside an event"))?;
            let event = Event::decode(raw)?;
            anyhow::ensure!(event.body.is_some(), "an event without a body");
            count += 1;
            at = end;
        }
    }
    Ok((count, started.elapsed()))
}

/// Latencies in ms of `runs` calls of `f`, sorted.
fn timed(runs: usize, mut f: impl FnMut(usize) -> anyhow::Result<()>) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let started = Instant::now();
        f(i)?;
        times.push(ms(started.elapsed()));
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

async fn timed_async<F, Fut>(runs: usize, mut f: F) -> anyhow::Result<Vec<f64>>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let started = Instant::now();
        f(i).await?;
        times.push(ms(started.elapsed()));
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// Query latencies: (what, in process, over gRPC), each sorted.
struct QueryTimes {
    indicators: (Vec<f64>, Vec<f64>),
    /// The whole list in process; the dashboard's page of it over gRPC.
    overdue: (Vec<f64>, Vec<f64>),
    /// The dashboard's page of it in process.
    overdue_page: Vec<f64>,
    /// The dashboard's page on a past day, in process.
    overdue_past: Vec<f64>,
    overdue_cases: usize,
}

/// The most overdue cases the dashboard lists.
const OVERDUE_PAGE: usize = 100;

async fn queries(projections: Arc<Projections>, quick: bool) -> anyhow::Result<QueryTimes> {
    let stations: Vec<String> = STATIONS.iter().map(|s| s.to_string()).collect();
    let periods: Vec<Period> = PERIODS
        .iter()
        .map(|p| p.parse())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("period: {e:?}"))?;
    let as_of = station_hub::projections::today_in_china();
    let past = chrono::NaiveDate::from_ymd_opt(PAST.0, PAST.1, PAST.2)
        .ok_or_else(|| anyhow::anyhow!("past date"))?;
    let (indicator_runs, overdue_runs) = if quick { (300, 20) } else { (3_000, 50) };

    let p = Arc::clone(&projections);
    let st = stations.clone();
    let (local_indicators, local_overdue, local_page, local_past, overdue_cases) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            // A hub serving queries, not one still writing out a rebuild:
            // what the rebuild left in sled's buffers goes to disk first,
            // and a few queries warm the page cache.
            p.store().sync()?;
            timed(indicator_runs / 10, |i| {
                p.indicators(periods[i % periods.len()], &st)?;
                Ok(())
            })?;
            let indicators = timed(indicator_runs, |i| {
                let table = p.indicators(periods[i % periods.len()], &st)?;
                anyhow::ensure!(table.rows.len() == st.len(), "a row per station");
                Ok(())
            })?;
            let cases = p.overdue(as_of, &st, None)?.cases.len();
            let overdue = timed(overdue_runs, |_| {
                p.overdue(as_of, &st, None)?;
                Ok(())
            })?;
            let page = timed(overdue_runs, |_| {
                let list = p.overdue(as_of, &st, Some(OVERDUE_PAGE))?;
                anyhow::ensure!(list.total as usize == cases, "the same overdue count");
                Ok(())
            })?;
            let on_past_day = timed(overdue_runs.div_ceil(5), |_| {
                p.overdue(past, &st, Some(OVERDUE_PAGE))?;
                Ok(())
            })?;
            Ok((indicators, overdue, page, on_past_day, cases))
        })
        .await??;

    // The same questions over gRPC, as the bureau's tools ask them.
    let bearer = station_hub::auth::enroll_bureau(projections.store(), "bench")?.bearer;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(station_hub::serve::serve_projections(
        listener,
        Arc::clone(&projections),
        station_hub::server::ServerOptions::default(),
        async {
            let _ = stopped.await;
        },
    ));
    drop(projections);
    let channel = tonic::transport::Endpoint::from_shared(url)?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let client = QueryClient::new(channel)
        .max_decoding_message_size(256 * 1024 * 1024)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd);
    let remote_indicators = timed_async(indicator_runs, |i| {
        let mut client = client.clone();
        let request = with_token(
            GetIndicatorsRequest {
                period: PERIODS[i % PERIODS.len()].into(),
                stations: stations.clone(),
            },
            &bearer,
        );
        async move {
            let rows = client.get_indicators(request?).await?.into_inner().rows;
            anyhow::ensure!(rows.len() == STATIONS.len(), "a row per station");
            Ok(())
        }
    })
    .await?;
    let as_of_text = as_of.format("%Y-%m-%d").to_string();
    let remote_overdue = timed_async(overdue_runs, |_| {
        let request = with_token(
            GetOverdueRequest {
                as_of: as_of_text.clone(),
                stations: stations.clone(),
                limit: OVERDUE_PAGE as u32,
            },
            &bearer,
        );
        let mut client = client.clone();
        async move {
            let list = client.get_overdue(request?).await?.into_inner();
            anyhow::ensure!(
                list.total as usize == overdue_cases,
                "the same overdue count"
            );
            anyhow::ensure!(
                list.cases.len() == overdue_cases.min(OVERDUE_PAGE),
                "a page of the overdue list"
            );
            Ok(())
        }
    })
    .await?;
    drop(client);
    let _ = stop.send(());
    server.await??;
    Ok(QueryTimes {
        indicators: (local_indicators, remote_indicators),
        overdue: (local_overdue, remote_overdue),
        overdue_page: local_page,
        overdue_past: local_past,
        overdue_cases,
    })
}

/// Runs the scenarios asked for, adding their rows.
pub async fn run(
    quick: bool,
    rebuild: bool,
    query: bool,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let total: u64 = if quick { 10_000 } else { 1_000_000 };
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_path_buf();
    progress!("projections: generating a log of {total} events");
    let started = Instant::now();
    tokio::task::spawn_blocking({
        let path = path.clone();
        move || -> anyhow::Result<()> {
            let store = HubStore::open(&path, CACHE)?;
            generate(&store, total)
        }
    })
    .await??;
    progress!(
        "projections: generated in {:.0} s; raw scan + decode",
        started.elapsed().as_secs_f64()
    );
    let (scanned, scan_time) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || raw_scan(&path)
    })
    .await??;
    anyhow::ensure!(scanned == total, "scanned {scanned} events of {total}");
    let raw_rate = total as f64 / scan_time.as_secs_f64().max(1e-9);

    progress!("projections: rebuild");
    let (projections, applied, rebuild_time) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || -> anyhow::Result<_> {
            let store = Arc::new(HubStore::open(&path, CACHE)?);
            let config = Arc::new(HubConfig::builtin()?);
            let projections = Projections::open(store, config)?;
            let started = Instant::now();
            let rebuilt = projections.rebuild()?;
            Ok((Arc::new(projections), rebuilt.applied, started.elapsed()))
        }
    })
    .await??;
    anyhow::ensure!(applied == total, "rebuilt {applied} events of {total}");
    let metric_size = if total >= 1_000_000 {
        format!("{},000,000 events", total / 1_000_000)
    } else {
        format!("{total} events")
    };
    if rebuild {
        rows.push(
            Row::new(
                "projection-rebuild",
                format!("rebuild of {metric_size}"),
                total as f64 / rebuild_time.as_secs_f64().max(1e-9),
                "raw sled scan + prost decode of the same log",
                raw_rate,
                "events/s",
            )
            .goal(Goal::RatioAtLeast(0.5))
            .note(format!(
                "rebuild {:.1} s, scan {:.1} s",
                rebuild_time.as_secs_f64(),
                scan_time.as_secs_f64()
            )),
        );
    }
    if query {
        progress!("projections: queries");
        let times = queries(projections, quick).await?;
        let floor = "scan + decode of the log (an answer without projections)";
        let scan_ms = ms(scan_time);
        let (indicators_local, indicators_remote) = &times.indicators;
        let (overdue_local, overdue_remote) = &times.overdue;
        let samples = |n: usize| format!("{n} queries");
        rows.push(
            Row::new(
                "query-latency",
                format!("indicator table, 7 stations, at {metric_size}: p50, in process"),
                percentile(indicators_local, 0.5),
                floor,
                scan_ms,
                "ms",
            )
            .note(samples(indicators_local.len())),
        );
        rows.push(
            Row::new(
                "query-latency",
                format!("indicator table, 7 stations, at {metric_size}: p99, in process"),
                percentile(indicators_local, 0.99),
                floor,
                scan_ms,
                "ms",
            )
            .goal(Goal::AtMost(1.0))
            .note("month, quarter and year in turn"),
        );
        rows.push(
            Row::new(
                "query-latency",
                "indicator table over gRPC (Query, loopback): p99",
                percentile(indicators_remote, 0.99),
                floor,
                scan_ms,
                "ms",
            )
            .note(format!(
                "p50 {} ms",
                crate::number(percentile(indicators_remote, 0.5))
            )),
        );
        let overdue_metric = format!(
            "overdue list ({} cases), 7 stations, at {metric_size}",
            times.overdue_cases
        );
        rows.push(
            Row::new(
                "query-latency",
                format!("{overdue_metric}: p50, in process"),
                percentile(overdue_local, 0.5),
                floor,
                scan_ms,
                "ms",
            )
            .note(samples(overdue_local.len())),
        );
        rows.push(Row::new(
            "query-latency",
            format!("{overdue_metric}: p99, in process"),
            percentile(overdue_local, 0.99),
            floor,
            scan_ms,
            "ms",
        ));
        rows.push(
            Row::new(
                "query-latency",
                format!("{overdue_metric}, the {OVERDUE_PAGE} most overdue: p99, in process"),
                percentile(&times.overdue_page, 0.99),
                floor,
                scan_ms,
                "ms",
            )
            .note(format!(
                "p50 {} ms; what the dashboard asks for",
                crate::number(percentile(&times.overdue_page, 0.5))
            )),
        );
        rows.push(
            Row::new(
                "query-latency",
                format!(
                    "overdue list on a past day ({}-{:02}-{:02}), the {OVERDUE_PAGE} most overdue: p50, in process",
                    PAST.0, PAST.1, PAST.2
                ),
                percentile(&times.overdue_past, 0.5),
                floor,
                scan_ms,
                "ms",
            )
            .note(format!(
                "{} queries; every case file folded as it stood that day",
                times.overdue_past.len()
            )),
        );
        rows.push(
            Row::new(
                "query-latency",
                format!("overdue list, the {OVERDUE_PAGE} most overdue, over gRPC (Query, loopback): p99"),
                percentile(overdue_remote, 0.99),
                floor,
                scan_ms,
                "ms",
            )
            .note(format!(
                "p50 {} ms",
                crate::number(percentile(overdue_remote, 0.5))
            )),
        );
    }
    Ok(())
}
