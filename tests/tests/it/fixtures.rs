//! Fixtures shared by the suites: the station of the single-station tests,
//! the replayable seed of a randomised test, the lock that keeps tests that
//! spawn processes apart, and a device recording generated field work.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use station_agent::{Agent, InitOptions, OpenOptions};
use station_sim::fieldwork::FieldWork;

/// The street station of Nedong, where the single-station tests work.
pub const STATION: &str = "540502001";

/// Tests that spawn processes and reopen stores run one at a time. sled locks
/// its `db` file with `flock`, and a child spawned by one test thread briefly
/// holds a copy of every descriptor the process has open (from fork until
/// exec closes them): if another test has a store open then, that store stays
/// locked after the test drops it, and its next open fails with `WouldBlock`.
static ONE_TEST_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Waits for the other process-spawning tests of this binary to finish.
pub fn one_test_at_a_time() -> MutexGuard<'static, ()> {
    // A test that failed poisons the lock; the others still run.
    ONE_TEST_AT_A_TIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// The seeded randomness of `test`: `CRASH_SEED` when set, else a fresh seed.
/// The seed is printed so a failure can be replayed.
pub fn seeded_rng(test: &str) -> StdRng {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("{test}: CRASH_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

/// How the tests reopen a device store: with the key file the command line
/// made beside it (`<dir>.key`) when there is one, else in clear, as the
/// helper binaries make their stores.
pub fn open_options(dir: &Path) -> OpenOptions {
    let key = station_agent::seal::default_key_file(dir)
        .ok()
        .filter(|path| path.exists())
        .map(|path| {
            station_agent::seal::KeySource::Key(
                station_agent::seal::WrappingKey::from_key_file(&path).unwrap(),
            )
        });
    OpenOptions {
        key,
        ..OpenOptions::default()
    }
}

/// A new device of `station` in `dir`, with no hub configured.
pub fn new_device(dir: &Path, station: &str, worker_id: &str) -> Agent {
    Agent::init(
        dir,
        InitOptions {
            station_code: station.into(),
            worker_id: worker_id.into(),
            hub_url: None,
            token: None,
        },
        OpenOptions::default(),
    )
    .unwrap()
}

/// Records the next `n` bodies of `work` on `agent`, telling the generator
/// the ids of the cases it opened.
pub fn record_field_work(agent: &Agent, work: &mut FieldWork, n: usize) {
    work.record_on(agent, n).unwrap();
}
