//! The demo end to end: a short simulated district through weak links (one
//! device offline for a stretch) must leave the hub with exactly what the
//! generator entered — every indicator of every period equal to the
//! generator's own ledger, each event once, every device holding its
//! station's stream — and a second run on the same folder adds nothing.
//! The `station-demo` binary runs, serves, and stops cleanly on SIGINT.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use station_hub::admin::{self, AdminReply, AdminRequest};
use station_hub::projections::period::{Metric, Period};
use station_sim::demo::{Demo, DemoOptions, DemoReport, demo_link};
use station_sim::district::{Ledger, TransferAnswer, TransferRecord};

fn options(dir: &std::path::Path) -> DemoOptions {
    let mut options = DemoOptions::new(dir);
    options.seed = 11;
    options.days = 21;
    options.speed = 0.0;
    options.listen = "127.0.0.1:0".into();
    options.http = "127.0.0.1:0".into();
    let mut link = demo_link();
    link.one_way_latency = Duration::from_millis(20);
    link.cut_every = Some((Duration::from_millis(500), Duration::from_secs(4)));
    link.stall_every = Some((Duration::from_secs(1), Duration::from_secs(3)));
    link.stall_for = (Duration::from_millis(100), Duration::from_millis(400));
    options.link = link;
    options
}

/// Checks the hub against the ledgers: every indicator of every period the
/// field work touched, and open cases by tier.
fn assert_hub_matches(demo: &Demo, report: &DemoReport) {
    let projections = demo.projections();
    for (station, ledger) in &report.ledgers {
        let periods: BTreeSet<Period> = ledger
            .days()
            .into_iter()
            .flat_map(Period::of_date)
            .collect();
        assert!(periods.len() >= 3, "{station}: {periods:?}");
        for period in periods {
            let table = projections
                .indicators(period, std::slice::from_ref(station))
                .unwrap();
            let hub: BTreeMap<Metric, i64> = table.rows[0]
                .values
                .iter()
                .filter(|v| v.raw != 0)
                .map(|v| (v.metric, v.raw))
                .collect();
            assert_eq!(hub, ledger.indicators(&period), "{station} {period:?}");
        }
        // The trends, month by month, are the ledger's months.
        let today = station_hub::projections::today_in_china();
        let trends = projections
            .trends(std::slice::from_ref(station), today, today)
            .unwrap();
        assert_eq!(trends.months.len(), 12);
        for (i, month) in trends.months.iter().enumerate() {
            let period = station_hub::params::period(month).unwrap();
            let hub: BTreeMap<Metric, i64> = trends.stations[0]
                .metrics
                .iter()
                .filter(|m| m.raw[i] != 0)
                .map(|m| (m.metric, m.raw[i]))
                .collect();
            assert_eq!(hub, ledger.indicators(&period), "{station} trend {month}");
        }
        // Every closure the generator entered asks for a review; none is
        // decided in the demo, so each closed case waits in the queue.
        let closed: i64 = trends.stations[0]
            .metrics
            .iter()
            .filter(|m| m.metric == Metric::CasesClosed)
            .flat_map(|m| m.raw.iter())
            .sum();
        let queue = projections
            .reviews(std::slice::from_ref(station), today, false)
            .unwrap();
        assert_eq!(queue.pending > 0, closed > 0, "{station}");
        assert!(queue.reviews.iter().all(|r| r.subject == "closure"));
        let caseload = projections.caseload(std::slice::from_ref(station)).unwrap();
        let load = &caseload.stations[0];
        assert_eq!(
            [load.high_risk, load.key, load.general],
            ledger.open_by_tier(),
            "{station}"
        );
    }
}

const DAY_MS: i64 = 86_400_000;

/// What the dashboard's device rows show: every device's clock agrees with
/// the hub's, as both follow the simulated day; a device that synced every
/// evening shows entry-to-receipt lags under a day; the phone whose link
/// was down shows, as lag, the days it could not sync, `offline_days` (the
/// lag of its first entry offline, received the evening its link is back);
/// the phones of the station relay show its path, and as lag the days its
/// uplink was down, `relayed_days`.
fn assert_lags_follow_the_simulated_days(
    demo: &Demo,
    offline: Option<(&str, i64)>,
    relayed_days: Option<i64>,
) {
    let health = demo.projections().sync_health(demo.stations()).unwrap();
    let (devices, relays): (Vec<_>, Vec<_>) = health
        .devices
        .iter()
        .partition(|device| device.events_logged > 0);
    assert_eq!(devices.len(), demo.devices().count());
    // The station relay has a row of its own: it says Hello to the hub and
    // enters nothing.
    assert_eq!(
        relays.len(),
        usize::from(relayed_days.is_some()),
        "{relays:?}"
    );
    let relayed = devices
        .iter()
        .filter(|device| device.via_relay.is_some())
        .count();
    assert_eq!(relayed, if relayed_days.is_some() { 2 } else { 0 });
    for device in devices {
        let name = device.device_name.as_deref().unwrap_or_default();
        let (mean, max) = (device.mean_lag_ms.unwrap(), device.max_lag_ms.unwrap());
        assert!(device.clock_skew_ms.abs() < 1_000, "{name}: {device:?}");
        assert_eq!(device.backlog, 0, "{name}");
        if let (Some(_), Some(days)) = (&device.via_relay, relayed_days) {
            // Its entries wait at the station while the uplink is down:
            // more than a day, at most the days it was down (a weekend
            // without entries may begin them).
            assert!(device.relayed_events > 0, "{name}: {device:?}");
            assert!(max > DAY_MS, "{name}: max lag {max} ms");
            assert!(max < (days + 1) * DAY_MS, "{name}: max lag {max} ms");
            continue;
        }
        match offline {
            Some((offline, days)) if offline == name => {
                assert!(mean > DAY_MS, "{name}: mean lag {mean} ms");
                assert!(max > days * DAY_MS, "{name}: max lag {max} ms");
                assert!(max < (days + 1) * DAY_MS, "{name}: max lag {max} ms");
            }
            _ => {
                assert!((0..DAY_MS).contains(&mean), "{name}: mean lag {mean} ms");
                assert!(max < DAY_MS, "{name}: max lag {max} ms");
            }
        }
    }
}

/// Checks the hub's transfers against the generator's: one accepted, one
/// declined and one left pending, each file held where its answer put it,
/// the pending request listed for the bureau, and the file taken over held
/// with its whole history on the receiving station's phones.
fn assert_transfers_match(demo: &Demo) -> Vec<TransferRecord> {
    let transfers = demo.transfers();
    assert_eq!(transfers.len(), 3, "{transfers:?}");
    assert!(
        matches!(transfers[0].answer, TransferAnswer::Accepted(_)),
        "{transfers:?}"
    );
    assert!(
        matches!(transfers[1].answer, TransferAnswer::Declined(_)),
        "{transfers:?}"
    );
    assert_eq!(transfers[2].answer, TransferAnswer::Pending);
    let projections = demo.projections();
    for transfer in &transfers {
        assert_ne!(transfer.from, transfer.to);
        let holder = match transfer.answer {
            TransferAnswer::Accepted(_) => &transfer.to,
            TransferAnswer::Declined(_) | TransferAnswer::Pending => &transfer.from,
        };
        assert_eq!(
            projections.case_station(transfer.case).unwrap().as_ref(),
            Some(holder),
            "{transfer:?}"
        );
    }
    let pending = projections
        .pending_transfers(demo.stations(), demo.last_day())
        .unwrap();
    let listed: Vec<_> = pending.transfers.iter().map(|p| p.request_id).collect();
    let expected: Vec<_> = transfers
        .iter()
        .filter(|t| t.answer == TransferAnswer::Pending)
        .map(|t| t.request)
        .collect();
    assert_eq!(listed, expected);
    let taken = &transfers[0];
    // The receiving station visits the family once it holds the file.
    let timeline = projections.case_timeline(taken.case).unwrap();
    assert!(
        timeline
            .entries
            .iter()
            .any(|e| e.event.station_code == taken.to
                && matches!(e.event.body, Some(station_proto::Body::VisitRecorded(_)))),
        "{timeline:?}"
    );
    for (name, agent) in demo.devices() {
        if agent.identity().station_code != taken.to {
            continue;
        }
        let case = agent
            .case(taken.case)
            .unwrap()
            .expect("the file taken over");
        assert_eq!(case.status, station_proto::case::CaseStatus::Open, "{name}");
        let history = agent.case_timeline(taken.case).unwrap();
        assert!(
            history.iter().any(|e| e.station_code == taken.from),
            "{name}: {history:?}"
        );
        assert!(
            history.iter().any(|e| e.event_id == taken.case.as_bytes()),
            "{name}: the opening"
        );
    }
    let summary = demo.summary().unwrap();
    assert!(
        summary.contains("transfers between stations (转移): 1 accepted, 1 declined, 1 pending"),
        "{summary}"
    );
    transfers
}

fn total(report: &DemoReport, f: impl Fn(&Ledger) -> u64) -> u64 {
    report.ledgers.iter().map(|(_, l)| f(l)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hub_holds_what_the_generator_entered_and_a_second_run_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Demo::start(options(dir.path())).await.unwrap();
    let report = demo.simulate(std::future::pending()).await.unwrap();
    assert!(report.finished);
    assert_eq!(report.ledgers.len(), 7);
    let saved = total(&report, |l| l.saved);
    assert_eq!(report.saved_now, saved);
    assert_eq!(report.replayed, 0);
    assert!(saved > 300, "{saved} entries");
    assert!(
        total(&report, |l| l.refused) > 0,
        "no invalid entry was tried"
    );
    assert_eq!(report.refused_now, total(&report, |l| l.refused));

    // Nothing lost, nothing twice: the hub holds each device's log once.
    assert_eq!(report.device_heads.iter().sum::<u64>(), saved);
    assert_eq!(report.hub_events, saved);
    let logged = demo.store().events_after(0, usize::MAX).unwrap();
    let ids: BTreeSet<Vec<u8>> = logged.iter().map(|e| e.event.event_id.clone()).collect();
    assert_eq!(ids.len() as u64, saved);
    assert_hub_matches(&demo, &report);
    let transfers = assert_transfers_match(&demo);
    let overdue = demo
        .projections()
        .overdue(demo.last_day(), demo.stations(), None)
        .unwrap();
    assert!(!overdue.cases.is_empty(), "some follow-ups are missed");
    assert_eq!(overdue.total, overdue.cases.len() as u64);
    // The second phone of the third station has no link from day 8 to day
    // 16 of the 21 (40% to 85% of the days): 9 days.
    let offline = format!("{}-2", demo.stations()[2]);
    // The second station's relay has no uplink from day 3 to day 6 (15% to
    // 35% of the days): its phones' entries of those days reach the hub on
    // the evening of day 7.
    assert_lags_follow_the_simulated_days(&demo, Some((&offline, 9)), Some(4));

    // Each device holds its colleagues' events after the last round.
    for (name, agent) in demo.devices() {
        let station = &agent.identity().station_code;
        let own = agent.identity().origin_id;
        let colleagues = logged
            .iter()
            .filter(|e| &e.event.station_code == station && e.event.origin_id != own.as_bytes())
            .count();
        let pulled = agent.log().pulled_events(0, usize::MAX).unwrap();
        assert_eq!(pulled.len(), colleagues, "{name}");
    }
    let first_indicators = demo.projections().dump().unwrap();
    demo.stop().await.unwrap();

    // Again on the same folder: everything is found, nothing is entered.
    let mut demo = Demo::start(options(dir.path())).await.unwrap();
    let again = demo.simulate(std::future::pending()).await.unwrap();
    assert!(again.finished);
    assert_eq!(again.saved_now, 0);
    assert_eq!(again.replayed, saved);
    assert_eq!(again.hub_events, saved);
    assert_eq!(again.device_heads, report.device_heads);
    assert_eq!(total(&again, |l| l.saved), saved);
    assert_hub_matches(&demo, &again);
    assert_eq!(assert_transfers_match(&demo), transfers);
    assert_eq!(demo.projections().dump().unwrap(), first_indicators);
    demo.stop().await.unwrap();

    // Other parameters on the same folder are refused, and change nothing.
    let mut other = options(dir.path());
    other.seed = 12;
    let error = Demo::start(other).await.unwrap_err().to_string();
    assert!(error.contains("--seed 11 --days 21"), "{error}");
}

/// A longer run of two stations, long enough for cases to be closed and
/// reopened weeks later: the hub counts them as the ledger does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reopened_cases_count_as_the_generator_entered_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = options(dir.path());
    options.days = 110;
    // A seed and last day whose run closes cases and reopens some weeks
    // later, and opens a second file for a person.
    options.seed = 14;
    options.last_day = chrono::NaiveDate::from_ymd_opt(2026, 12, 7);
    options.stations = station_sim::district::NEDONG_STATIONS[..2]
        .iter()
        .map(|s| s.to_string())
        .collect();
    options.offline_device = false;
    let mut demo = Demo::start(options).await.unwrap();
    let report = demo.simulate(std::future::pending()).await.unwrap();
    assert!(report.finished);
    let reopened = total(&report, |l| l.reopened() as u64);
    assert!(reopened > 0, "no case was reopened");
    assert_eq!(report.hub_events, total(&report, |l| l.saved));
    assert_hub_matches(&demo, &report);
    // Files opened again for a person, dated back while the old file was
    // open, are listed as duplicates resolved by a merge, and counted once.
    let merges = total(&report, |l| l.merges() as u64);
    assert!(merges > 0, "no file was merged");
    let listed = demo.projections().duplicates(demo.stations()).unwrap();
    assert_eq!(listed.files.len() as u64, merges, "{listed:?}");
    assert!(
        listed
            .files
            .iter()
            .all(|f| f.resolution == station_hub::projections::DuplicateResolution::Merged),
        "{listed:?}"
    );
    let health = demo.projections().sync_health(demo.stations()).unwrap();
    assert!(health.stations.iter().all(|s| s.duplicate_files == 0));
    assert_duplicates_flagged_until_merged(&demo);
    demo.stop().await.unwrap();
}

/// The same log given to a fresh hub in two parts: each device's entries up
/// to its first merge, then the rest. After the first part the bureau's
/// list shows the files opened again as duplicates still flagged, and data
/// quality counts them; after the rest each is resolved by its merge.
fn assert_duplicates_flagged_until_merged(demo: &Demo) {
    use station_hub::projections::{DuplicateResolution, Projections};
    use station_hub::store::HubStore;
    use std::sync::Arc;

    let logged = demo.store().events_after(0, usize::MAX).unwrap();
    let mut by_origin: BTreeMap<Vec<u8>, Vec<station_proto::Event>> = BTreeMap::new();
    for e in logged {
        by_origin
            .entry(e.event.origin_id.clone())
            .or_default()
            .push(e.event);
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(HubStore::open(dir.path(), 16 << 20).unwrap());
    let config = Arc::new(station_hub::config::HubConfig::builtin().unwrap());
    let projections = Projections::open(Arc::clone(&store), config).unwrap();
    let today = station_hub::projections::today_in_china();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut rest = Vec::new();
    for events in by_origin.into_values() {
        let mut events = events;
        events.sort_by_key(|e| e.origin_seq);
        let first_merge = events
            .iter()
            .position(|e| matches!(e.body, Some(station_proto::Body::CasesMerged(_))))
            .unwrap_or(events.len());
        rest.push(events.split_off(first_merge));
        store.push(events, today, now_ms).unwrap();
    }
    projections.catch_up().unwrap();
    let flagged = projections.duplicates(demo.stations()).unwrap();
    assert!(!flagged.files.is_empty(), "no duplicate before its merge");
    assert!(
        flagged
            .files
            .iter()
            .all(|f| f.resolution == DuplicateResolution::Open),
        "{flagged:?}"
    );
    let health = projections.sync_health(demo.stations()).unwrap();
    let counted: u64 = health.stations.iter().map(|s| s.duplicate_files).sum();
    assert_eq!(counted, flagged.files.len() as u64);
    for events in rest {
        store.push(events, today, now_ms).unwrap();
    }
    projections.catch_up().unwrap();
    let resolved = projections.duplicates(demo.stations()).unwrap();
    assert!(
        resolved
            .files
            .iter()
            .all(|f| f.resolution == DuplicateResolution::Merged),
        "{resolved:?}"
    );
    for file in &flagged.files {
        assert!(
            resolved.files.iter().any(|r| r.case_id == file.case_id),
            "{file:?}"
        );
    }
}

#[test]
fn the_binary_prints_the_table_serves_and_stops_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_station-demo"))
        .args(["--data"])
        .arg(dir.path())
        .args([
            "--days",
            "4",
            "--speed",
            "0",
            "--stations",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let serving = line == "serving until Ctrl-C";
        seen.push(line);
        if serving {
            break;
        }
    }
    let text = seen.join("\n");
    assert!(
        text.contains("泽当街道") && text.contains("昌珠镇"),
        "{text}"
    );
    assert!(text.contains("dashboard: http://127.0.0.1:"), "{text}");
    assert!(text.contains("bureau token (read-only): "), "{text}");
    // While it serves, a new phone is enrolled through the hub's
    // administration socket, beside the demo's 2 × 2 devices and bureau (a
    // run of 4 days has no station relay).
    let hub = dir.path().join("hub");
    let enroll = AdminRequest::EnrollDevice {
        station: "540502001".into(),
        device: "a-new-phone".into(),
    };
    let issued = admin::call(&hub, &enroll).unwrap().unwrap();
    assert!(matches!(issued, AdminReply::Issued { .. }), "{issued:?}");
    match admin::call(&hub, &AdminRequest::Tokens).unwrap().unwrap() {
        AdminReply::Tokens(tokens) => assert_eq!(tokens.len(), 6, "{tokens:?}"),
        other => panic!("{other:?}"),
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert_eq!(rest, ["shutting down"]);
    assert!(child.wait().unwrap().success());
}
