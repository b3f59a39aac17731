//! Load figures for the phone: fills a store with a station's worth of
//! entries through the facade, then, in a fresh process, opens it and lists
//! the due follow-ups, printing the time taken and the peak resident memory.
//!
//! ```text
//! cargo run --profile mobile -p station-mobile --example field_load -- fill DIR 100000
//! cargo run --profile mobile -p station-mobile --example field_load -- open DIR
//! ```
//!
//! `fill` records from several threads at once, as group commit shares one
//! fsync between concurrent saves; every save is still durable on return.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use chrono::{Days, NaiveDate};
use station_mobile::{
    Assessment, CaseNote, CaseOpening, CaseSource, Category, FieldError, FieldStore, Gender,
    NoteKind, StoreOptions, Tier, Visit, VisitKind,
};

const STATION: &str = "540502001";
const WORKER: &str = "load-01";
/// Entries per case: one opening, then visits with an occasional note or tier change.
const ENTRIES_PER_CASE: u64 = 25;
const THREADS: u64 = 16;

const SURNAMES: [&str; 8] = [
    "བཀྲ་ཤིས་",
    "ཚེ་རིང་",
    "བསོད་ནམས་",
    "次仁",
    "扎西",
    "王",
    "李",
    "ཚེ་དབང་",
];
const GIVEN: [&str; 8] = [
    "སྒྲོལ་མ",
    "དབང་འདུས",
    "ཆོས་སྒྲོན",
    "卓玛",
    "顿珠",
    "秀英",
    "建国",
    "ལྷ་མོ",
];

/// A small deterministic generator (xorshift64*), so runs are comparable.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn id_number(birth: NaiveDate, serial: u64, male: bool) -> String {
    let digit = (serial % 500) * 2 + u64::from(male);
    let body = format!("540502{}{digit:03}", birth.format("%Y%m%d"));
    station_proto::id_number::with_check_character(&body).expect("17 digits")
}

fn days_ago(today: NaiveDate, days: u64) -> String {
    today
        .checked_sub_days(Days::new(days))
        .unwrap_or(today)
        .format("%Y-%m-%d")
        .to_string()
}

fn opening(case: u64, today: NaiveDate, draw: &mut Draw) -> CaseOpening {
    let male = draw.below(2) == 1;
    // The year follows the case number past its serial (`case % 500`), so
    // that no two cases are one person (the store refuses a second open
    // file for one ID number); the draw is kept so the rest stays the same.
    let _ = draw.below(75);
    let birth = NaiveDate::from_ymd_opt(
        1940 + ((case / 500) % 75) as i32,
        1 + draw.below(12) as u32,
        1 + draw.below(28) as u32,
    )
    .unwrap_or_default();
    let tier = match draw.below(10) {
        0 => Tier::HighRisk,
        1..=3 => Tier::Key,
        _ => Tier::General,
    };
    CaseOpening {
        name: format!(
            "{}{}",
            SURNAMES[draw.below(8) as usize],
            GIVEN[draw.below(8) as usize]
        ),
        id_number: id_number(birth, case, male),
        gender: if male { Gender::Male } else { Gender::Female },
        birth_date: birth.format("%Y-%m-%d").to_string(),
        community_code: format!("{STATION}{:03}", 1 + case % 11),
        address: format!("泽当街道 རྩེད་ཐང {}组", 1 + case % 30),
        phone: String::new(),
        language: "bo".into(),
        categories: vec![
            [
                Category::Dibao,
                Category::Elderly,
                Category::LeftBehindChild,
                Category::Disabled,
            ][draw.below(4) as usize],
        ],
        tier,
        source: CaseSource::Outreach,
        opened_on: days_ago(today, 400 + draw.below(300)),
        entry_id: None,
    }
}

/// Records the entries of every case `c` with `c % THREADS == lane`.
fn fill_lane(
    store: &FieldStore,
    lane: u64,
    cases: u64,
    today: NaiveDate,
    done: &AtomicU64,
) -> Result<(), FieldError> {
    let mut draw = Draw(0x9E37_79B9_7F4A_7C15 ^ (lane + 1));
    for case in (lane..cases).step_by(THREADS as usize) {
        let case_id = store.open_case(opening(case, today, &mut draw))?.event_id;
        for n in 1..ENTRIES_PER_CASE {
            let date = days_ago(today, (ENTRIES_PER_CASE - n) * 15 + draw.below(10));
            match n % 12 {
                5 => store.add_note(CaseNote {
                    case_id: case_id.clone(),
                    kind: NoteKind::Intervention,
                    text: "介入记录：链接低保复核 ཞིབ་བཤེར།".into(),
                    noted_on: date,
                    entry_id: None,
                })?,
                11 => store.assess_case(Assessment {
                    case_id: case_id.clone(),
                    tier: [Tier::HighRisk, Tier::Key, Tier::General][draw.below(3) as usize],
                    reason: "定期预估".into(),
                    assessed_on: date,
                    last_seen_event_id: None,
                    entry_id: None,
                })?,
                _ => store.record_visit(Visit {
                    case_id: case_id.clone(),
                    visit_date: date,
                    kind: VisitKind::Home,
                    duration_minutes: 20 + draw.below(60) as i32,
                    notes: "入户走访，老人身体尚可 ལུས་པོ་བདེ་ཐང་།".into(),
                    needs_found: vec![],
                    entry_id: None,
                })?,
            };
        }
        let total = done.fetch_add(ENTRIES_PER_CASE, Ordering::Relaxed) + ENTRIES_PER_CASE;
        if total % 10_000 < ENTRIES_PER_CASE {
            eprintln!("{total} entries");
        }
    }
    Ok(())
}

/// Stands in for the phone's key store (Android Keystore, iOS Keychain):
/// wraps the data key with a fixed mask, so that the store is encrypted as
/// an app opens it.
#[derive(Debug)]
struct ExampleKeys;

impl station_mobile::KeyProvider for ExampleKeys {
    fn wrap(&self, data_key: Vec<u8>) -> Result<Vec<u8>, station_mobile::KeyProviderError> {
        Ok(data_key.iter().map(|b| b ^ 0x5a).collect())
    }

    fn unwrap(&self, wrapped: Vec<u8>) -> Result<Vec<u8>, station_mobile::KeyProviderError> {
        Ok(wrapped.iter().map(|b| b ^ 0x5a).collect())
    }
}

fn keys() -> Arc<dyn station_mobile::KeyProvider> {
    Arc::new(ExampleKeys)
}

fn fill(dir: &str, events: u64) -> Result<(), FieldError> {
    let store = FieldStore::open(dir.into(), STATION.into(), WORKER.into(), keys())?;
    let today = station_agent::engine::today();
    let cases = events.div_ceil(ENTRIES_PER_CASE);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    std::thread::scope(|scope| {
        let lanes: Vec<_> = (0..THREADS)
            .map(|lane| {
                let store = &store;
                let done = &done;
                scope.spawn(move || fill_lane(store, lane, cases, today, done))
            })
            .collect();
        lanes.into_iter().try_for_each(|lane| {
            lane.join().unwrap_or_else(|_| {
                Err(FieldError::Internal {
                    reason: "a fill thread panicked".into(),
                })
            })
        })
    })?;
    let elapsed = started.elapsed();
    let recorded = store.status()?.head_seq;
    println!(
        "filled {dir}: {recorded} entries in {cases} cases in {:.1} s ({:.0} durable saves/s with {THREADS} threads)",
        elapsed.as_secs_f64(),
        recorded as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// `VmHWM`, `VmRSS` and `RssAnon` of this process, in KiB (Linux).
fn memory_kib() -> (u64, u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"), field("RssAnon:"))
}

fn open(dir: &str, cache_bytes: Option<u64>) -> Result<(), FieldError> {
    let options = StoreOptions {
        cache_bytes: cache_bytes.unwrap_or(StoreOptions::default().cache_bytes),
        ..StoreOptions::default()
    };
    let (_, before_rss, _) = memory_kib();
    let started = Instant::now();
    let store =
        FieldStore::open_with_options(dir.into(), STATION.into(), WORKER.into(), keys(), options)?;
    let opened = started.elapsed();
    let (_, opened_rss, _) = memory_kib();
    let due = store.due_follow_ups(7)?;
    let listed = started.elapsed();
    let overdue = due.iter().filter(|f| f.overdue).count();
    let head = store.status()?.head_seq;
    let (hwm, rss, anon) = memory_kib();
    println!(
        "opened {head} entries (cache {} KiB) in {:.0} ms; due follow-ups listed after {:.0} ms: \
         {} due within 7 days, {overdue} overdue; VmHWM {hwm} KiB, VmRSS {rss} KiB \
         (anonymous {anon} KiB; {before_rss} KiB before opening, {opened_rss} KiB once open)",
        options.cache_bytes / 1024,
        opened.as_secs_f64() * 1000.0,
        listed.as_secs_f64() * 1000.0,
        due.len(),
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["fill", dir, events] => match events.parse() {
            Ok(events) => fill(dir, events),
            Err(_) => Err(FieldError::invalid("events", "must be a number")),
        },
        ["open", dir] => open(dir, None),
        ["open", dir, cache] => match cache.parse() {
            Ok(cache) => open(dir, Some(cache)),
            Err(_) => Err(FieldError::invalid("cache_bytes", "must be a number")),
        },
        _ => {
            eprintln!("usage: field_load fill DIR EVENTS | field_load open DIR [CACHE_BYTES]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("field_load: {error}");
            ExitCode::FAILURE
        }
    }
}
