//! The `directory` scenario: the district directory on a phone — a copy
//! of 100,000 open files pulled in pages into an encrypted agent store,
//! then a day's delta, then the check an opening runs, offline.
//!
//! Every open file has two lines: its ID number's and its weak tag's (name,
//! birth date, gender), as the hub's feed makes them.
//!
//! Figures: bytes the directory takes in the store, against the same
//! entries in clear (ID numbers, names, birth dates, genders and station
//! codes); bytes of a day's delta
//! on the wire (zstd, as tonic sends it), against the whole directory on
//! the wire; the check on open (median of many ID numbers, half of them
//! held), against opening every bucket of the directory (a scan); the
//! weaker check on open (name, birth date and gender), likewise.
//!
//! The pages are made here as the hub's feed makes them (one line per
//! person and station, tags under one district key): the hub's own side is
//! measured by `projection-rebuild`.

use std::path::Path;
use std::time::Instant;

use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use station_agent::{Agent, InitOptions, OpenOptions};
use station_proto::directory;
use station_proto::person::TagKey;
use station_proto::v1::{CaseOpened, DirectoryLine, DirectoryPage, DirectoryStation};

use crate::{Goal, Row};

const SCENARIO: &str = "directory";

const STATIONS: [(&str, &str); 7] = [
    ("540502001", "泽当街道"),
    ("540502101", "昌珠镇"),
    ("540502200", "亚堆乡"),
    ("540502201", "索珠乡"),
    ("540502202", "多颇章乡"),
    ("540502203", "结巴乡"),
    ("540502204", "颇章乡"),
];

/// The `n`-th ID number of the district: a birth date and a serial.
fn id_number(rng: &mut StdRng) -> String {
    let day = chrono::NaiveDate::from_ymd_opt(1930, 1, 1)
        .and_then(|d| d.checked_add_days(chrono::Days::new(rng.random_range(0..32_000))))
        .unwrap_or_default();
    let first = format!(
        "540502{}{:03}",
        day.format("%Y%m%d"),
        rng.random_range(0..1000)
    );
    // Seventeen digits always have a check character.
    station_proto::id_number::with_check_character(&first).unwrap_or_default()
}

fn page(lines: Vec<DirectoryLine>, reset: bool, next_cursor: u64, head: u64) -> DirectoryPage {
    DirectoryPage {
        epoch: vec![7; 16],
        reset,
        lines,
        next_cursor,
        head,
        stations: STATIONS
            .iter()
            .map(|(code, name)| DirectoryStation {
                station_code: (*code).into(),
                name: (*name).into(),
            })
            .collect(),
    }
}

/// Names as the district's people bear them, Chinese and Tibetan.
const NAMES: [&str; 12] = [
    "次仁卓玛",
    "扎西·次仁",
    "格桑",
    "央金",
    "尼玛",
    "达瓦",
    "ཚེ་རིང་སྒྲོལ་མ",
    "བཀྲ་ཤིས",
    "拉姆",
    "旦增",
    "索朗",
    "普布",
];

/// The opening of the person of `id` named `name`: what the weak tag is of.
fn opening(id: &str, name: &str) -> CaseOpened {
    CaseOpened {
        name: name.into(),
        id_number: id.into(),
        gender: station_proto::id_number::gender(id).map_or(0, i32::from),
        birth_date: station_proto::id_number::birth_date(id)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        ..CaseOpened::default()
    }
}

/// The lines of one open file: its ID number's and its weak tag's.
fn lines(key: &TagKey, id: &str, name: &str, station: usize, present: bool) -> [DirectoryLine; 2] {
    let weak = opening(id, name);
    [
        line(key, id, station, present),
        DirectoryLine {
            tag: directory::weak_tag(key, &weak.name, &weak.birth_date, weak.gender).to_vec(),
            station_code: STATIONS[station % STATIONS.len()].0.into(),
            present,
        },
    ]
}

fn line(key: &TagKey, id: &str, station: usize, present: bool) -> DirectoryLine {
    DirectoryLine {
        tag: directory::tag(key, id).to_vec(),
        station_code: STATIONS[station % STATIONS.len()].0.into(),
        present,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs the scenario, adding its rows.
pub fn run(quick: bool, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let files: usize = if quick { 2_000 } else { 100_000 };
    let day_changes: usize = if quick { 20 } else { 200 };
    let dir = tempfile::tempdir()?;
    let agent = Agent::init(
        &dir.path().join("phone"),
        InitOptions {
            station_code: STATIONS[1].0.into(),
            worker_id: "bench".into(),
            hub_url: None,
            token: None,
        },
        OpenOptions {
            key: Some(station_agent::seal::KeySource::Key(
                station_agent::seal::WrappingKey::generate()?,
            )),
            ..OpenOptions::default()
        },
    )?;
    let key = TagKey::from_bytes([0x5a; 32]);
    agent.log().set_directory_key(&key.secret_bytes())?;
    let mut rng = StdRng::seed_from_u64(19);
    // Distinct people: a number drawn twice is drawn again.
    let mut seen = std::collections::HashSet::new();
    let mut ids: Vec<String> = Vec::with_capacity(files);
    while ids.len() < files {
        let id = id_number(&mut rng);
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    let names: Vec<&str> = (0..files)
        .map(|_| NAMES[rng.random_range(0..NAMES.len())])
        .collect();
    let all: Vec<DirectoryLine> = ids
        .iter()
        .zip(&names)
        .enumerate()
        .flat_map(|(i, (id, name))| lines(&key, id, name, i, true))
        .collect();
    let whole_wire = zstd::bulk::compress(&page(all.clone(), true, 1, 1).encode_to_vec(), 0)?.len();
    // In clear: ID number and station code; name, birth date, gender and
    // station code.
    let plain_bytes = files * (18 + 9)
        + names
            .iter()
            .map(|name| name.len() + 10 + 1 + 9)
            .sum::<usize>();
    // Pulled in pages of the hub's largest size.
    let per_page = station_hub::server::MAX_DIRECTORY_LINES;
    let pages = all.len().div_ceil(per_page);
    for (n, chunk) in all.chunks(per_page).enumerate() {
        let cursor = (n * per_page + chunk.len()) as u64;
        agent
            .log()
            .apply_directory(&page(chunk.to_vec(), n == 0, cursor, files as u64))?;
    }
    let status = agent.log().directory_status()?;
    // Two people may share a weak line (a name, a birth date, a gender).
    anyhow::ensure!(
        status.lines > files && status.lines <= 2 * files,
        "the phone holds {} lines",
        status.lines
    );
    // A day: some files opened, some closed.
    let head = files as u64;
    let delta: Vec<DirectoryLine> = (0..day_changes)
        .flat_map(|i| {
            let name = NAMES[i % NAMES.len()];
            if i % 2 == 0 {
                lines(&key, &id_number(&mut rng), name, i, true)
            } else {
                let n = rng.random_range(0..files);
                lines(&key, &ids[n], names[n], i, false)
            }
        })
        .collect();
    let day = page(
        delta,
        false,
        head + day_changes as u64,
        head + day_changes as u64,
    );
    let day_wire = zstd::bulk::compress(&day.encode_to_vec(), 0)?.len();
    agent.log().apply_directory(&day)?;
    // The check on open: half held, half not.
    let probes = if quick { 200 } else { 2_000 };
    let mut times = Vec::with_capacity(probes);
    let mut held = 0usize;
    for i in 0..probes {
        let id = if i % 2 == 0 {
            ids[rng.random_range(0..files)].clone()
        } else {
            id_number(&mut rng)
        };
        let start = Instant::now();
        let found = agent.held_elsewhere(&id)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        held += usize::from(!found.is_empty());
    }
    let check_ms = median(times);
    // The weaker check on open: half of the people held, half not (a birth
    // date and a name no file has).
    let mut times = Vec::with_capacity(probes);
    let mut possible = 0usize;
    for i in 0..probes {
        let probe = if i % 2 == 0 {
            let n = rng.random_range(0..files);
            opening(&ids[n], names[n])
        } else {
            opening(&id_number(&mut rng), "无此人")
        };
        let start = Instant::now();
        let found = agent.possible_duplicates(&probe)?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        possible += usize::from(!found.is_empty());
    }
    let weak_ms = median(times);
    let start = Instant::now();
    agent.log().directory_status()?;
    let scan_ms = start.elapsed().as_secs_f64() * 1e3;
    let on_disk = du(&dir.path().join("phone"));
    rows.push(
        Row::new(
            SCENARIO,
            format!(
                "directory on the phone, {files} open files, {} ID and weak lines (sealed buckets)",
                status.lines
            ),
            status.bytes as f64,
            "ID number, name, birth date, gender + station codes in clear",
            plain_bytes as f64,
            "bytes",
        )
        .note(format!(
            "pulled in {pages} pages; whole directory on the wire (zstd): {} bytes; store folder {} bytes",
            crate::number(whole_wire as f64),
            crate::number(on_disk as f64)
        )),
    );
    rows.push(
        Row::new(
            SCENARIO,
            format!(
                "a day's delta, {day_changes} files opened or closed ({} lines), on the wire (zstd)",
                2 * day_changes
            ),
            day_wire as f64,
            "whole directory on the wire (zstd)",
            whole_wire as f64,
            "bytes",
        )
        .goal(Goal::RatioAtMost(0.05)),
    );
    rows.push(
        Row::new(
            SCENARIO,
            format!("check on open, {files} open files (median of {probes})"),
            check_ms,
            "open every bucket",
            scan_ms,
            "ms",
        )
        .goal(Goal::AtMost(5.0))
        .note(format!(
            "{held} of {probes} ID numbers found held elsewhere"
        )),
    );
    rows.push(
        Row::new(
            SCENARIO,
            format!("weaker check on open (name, birth date, gender), {files} open files (median of {probes})"),
            weak_ms,
            "open every bucket",
            scan_ms,
            "ms",
        )
        .goal(Goal::AtMost(5.0))
        .note(format!(
            "{possible} of {probes} people found as possible duplicates"
        )),
    );
    Ok(())
}

/// Bytes of the files under `dir`.
fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
