//! The migration from format 1 under SIGKILL: a child process (this test
//! binary, running [`migrate_in_child`]) migrates the committed fixture one
//! event per step and reports each step; the test kills it after a random
//! number of steps, possibly several times over the same folder, then opens
//! the store and checks it holds what the fixture's summary says: every
//! event once, at its position, with its receive time and station.
//!
//! The randomness is seeded; the seed is printed, and `MIGRATION_SEED=<n>`
//! replays a run.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use station_hub::store::{HubStore, MigrationOptions};

use super::fixture;

const CHILD_DIR: &str = "STATION_HUB_MIGRATION_CHILD_DIR";

/// Run by the child process only: migrates the store in `$CHILD_DIR` one
/// event per step, printing `migrated <position>` after each step and
/// `open` once the store is open.
#[test]
#[ignore = "run as a child process by the migration crash test"]
fn migrate_in_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(rand::random());
    let options = MigrationOptions {
        chunk_events: 1,
        after_step: Some(Box::new(move |through| {
            let mut out = std::io::stdout().lock();
            writeln!(out, "migrated {through}").unwrap();
            out.flush().unwrap();
            // Leaves the parent's kill a window between steps as well as within them.
            if rng.random_bool(0.5) {
                std::thread::sleep(std::time::Duration::from_micros(rng.random_range(0..2000)));
            }
        })),
    };
    let store = HubStore::open_with(std::path::Path::new(&dir), 1 << 20, options).unwrap();
    println!("open {}", store.event_count());
}

/// Runs the child over `dir` and SIGKILLs it after `kill_after` steps;
/// returns whether it finished first, and the steps it reported.
fn migrate_and_kill(dir: &std::path::Path, kill_after: usize) -> (bool, usize) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "store::migration::migrate_in_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut steps = 0;
    let mut finished = false;
    for line in stdout.lines() {
        let line = line.unwrap();
        if line.starts_with("migrated ") {
            steps += 1;
        } else if line.starts_with("open ") {
            finished = true;
        }
        if finished || steps >= kill_after {
            break;
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    (finished || status.success(), steps)
}

#[test]
fn a_migration_killed_at_any_point_opens_and_holds_every_event_once() {
    let seed = std::env::var("MIGRATION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("MIGRATION_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let expected = fixture::committed_summary();
    // One step per event, and the last one that switches the format.
    let steps = usize::try_from(expected.events).unwrap() + 1;
    let mut killed_midway = 0;
    for round in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        fixture::unpack_into(dir.path());
        let kills = 1 + round % 3;
        for _ in 0..kills {
            let (finished, seen) = migrate_and_kill(dir.path(), rng.random_range(0..=steps));
            if finished {
                break;
            }
            killed_midway += usize::from(seen > 0 && seen < steps);
        }
        let store = HubStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(fixture::summarise(&store), expected, "round {round}");
    }
    eprintln!("killed midway {killed_midway} times");
    assert!(killed_midway > 0, "no kill landed during the migration");
}
