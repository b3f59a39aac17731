//! Crash tests of the agent's durable log: a real `crash-appender` process is
//! SIGKILLed at random moments while it appends, and the store is reopened
//! after every kill.
//!
//! What a user relies on, checked after every kill:
//! - every event the agent acknowledged (`record` returned `Ok`) is stored,
//!   at the same `origin_seq`, with the same `event_id`;
//! - every event seen after an earlier restart is still there, unchanged;
//! - own seqs are exactly `1..=head_seq`, no event_id appears twice, every
//!   own event carries this device's origin id;
//! - the views open, count the cases the log holds, and rebuilding them from
//!   the log gives the same bytes.
//!
//! The randomness is seeded; the seed is printed, and `CRASH_SEED=<n>`
//! replays a run.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::Rng as _;
use station_agent::Agent;
use station_proto::Body;
use station_proto::ids::Uuid;
use station_tests::parse_ack_line;

use crate::fixtures::{STATION, one_test_at_a_time, seeded_rng};

const SIGKILL: i32 = 9;

/// A running `crash-appender` and the ack lines it prints.
pub(crate) struct Appender {
    child: Child,
    started: Instant,
    /// Stdout lines, in order; closed once the process is gone.
    lines: Receiver<String>,
    reader: JoinHandle<()>,
}

impl Appender {
    pub(crate) fn spawn(dir: &Path, threads: usize) -> Self {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-appender"))
            .arg("--data")
            .arg(dir)
            .args(["--station", STATION, "--threads", &threads.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            started,
            lines,
            reader,
        }
    }

    /// Waits for `kill_after` acks, SIGKILLs the process, and returns every
    /// ack it printed before it died (at least `kill_after`).
    pub(crate) fn kill_after(self, kill_after: usize) -> Vec<(u64, Uuid)> {
        let mut acks = Vec::new();
        while acks.len() < kill_after {
            let Ok(line) = self.lines.recv() else {
                let mut child = self.child;
                let status = child.wait().unwrap();
                panic!(
                    "crash-appender ended by itself after {} acks: {status}",
                    acks.len()
                );
            };
            acks.push(parse(&line));
        }
        let (acks, status) = self.kill_and_drain(acks);
        assert_eq!(
            status.signal(),
            Some(SIGKILL),
            "crash-appender was not killed by SIGKILL: {status}"
        );
        acks
    }

    /// SIGKILLs the process `delay` after it was started (whatever it is
    /// doing then: loading, opening the store, appending), and returns every
    /// ack it printed before it died.
    pub(crate) fn kill_at(self, delay: Duration) -> Vec<(u64, Uuid)> {
        // The sleep picks the moment of the kill; it waits for no state.
        std::thread::sleep(delay.saturating_sub(self.started.elapsed()));
        let (acks, status) = self.kill_and_drain(Vec::new());
        // A process that failed by itself (say, it could not open the store)
        // is reported by the reopen that follows.
        if status.signal() != Some(SIGKILL) {
            eprintln!("crash-appender ended by itself before the kill: {status}");
        }
        acks
    }

    /// SIGKILLs the process, runs `cut` before waiting for it, and returns
    /// every ack it printed. `cut` must let a process blocked on its disk
    /// end, as a power cut does (see `powercut`).
    pub(crate) fn kill_then(self, cut: impl FnOnce()) -> Vec<(u64, Uuid)> {
        self.kill_then_drain(Vec::new(), cut).0
    }

    fn kill_and_drain(self, acks: Vec<(u64, Uuid)>) -> (Vec<(u64, Uuid)>, ExitStatus) {
        self.kill_then_drain(acks, || {})
    }

    fn kill_then_drain(
        mut self,
        mut acks: Vec<(u64, Uuid)>,
        cut: impl FnOnce(),
    ) -> (Vec<(u64, Uuid)>, ExitStatus) {
        self.child.kill().unwrap();
        cut();
        let status = self.child.wait().unwrap();
        // The pipe is closed now: drain what was printed before the kill.
        acks.extend(self.lines.iter().map(|line| parse(&line)));
        self.reader.join().unwrap();
        (acks, status)
    }
}

fn parse(line: &str) -> (u64, Uuid) {
    parse_ack_line(line).unwrap_or_else(|| panic!("not an ack line: {line:?}"))
}

/// Adds a run's acks to the events known durable, checking that no ack
/// reuses the seq of another known event.
pub(crate) fn merge_acks(known: &mut BTreeMap<u64, Uuid>, acks: &[(u64, Uuid)]) {
    for &(seq, event_id) in acks {
        if let Some(previous) = known.insert(seq, event_id) {
            assert_eq!(
                previous, event_id,
                "seq {seq} acknowledged as {event_id} but already held {previous}"
            );
        }
    }
}

/// What a reopened store holds.
pub(crate) struct Reopened {
    pub(crate) head_seq: u64,
    /// Every own event: seq → event_id.
    pub(crate) events: BTreeMap<u64, Uuid>,
    cases: usize,
}

/// Reopens the store and checks every invariant; `known` (acknowledged, or
/// seen after an earlier restart) must all be present unchanged.
pub(crate) fn reopen_and_check(dir: &Path, known: &BTreeMap<u64, Uuid>) -> Reopened {
    let agent = Agent::open(dir, crate::fixtures::open_options(dir)).unwrap_or_else(|e| {
        let mut files: Vec<_> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) => vec![format!("(the store's folder cannot be listed: {e})")],
        };
        files.sort();
        panic!("the store does not open after a kill: {e}; its files: {files:?}")
    });
    let origin = agent.identity().origin_id;
    let head_seq = agent.log().head_seq();
    let own = agent.own_events(0, usize::MAX).unwrap();

    let seqs: Vec<u64> = own.iter().map(|e| e.origin_seq).collect();
    assert!(
        seqs.iter().copied().eq(1..=head_seq),
        "own seqs are not exactly 1..={head_seq}: {} events, first gap after {:?}",
        seqs.len(),
        seqs.windows(2).find(|w| w[1] != w[0] + 1).map(|w| w[0])
    );

    let mut events = BTreeMap::new();
    let mut ids = HashSet::new();
    let mut opened = 0;
    for event in &own {
        assert_eq!(event.origin_id, origin.as_bytes(), "foreign origin_id");
        let event_id = Uuid::from_slice(&event.event_id).unwrap();
        assert!(
            ids.insert(event_id),
            "event_id {event_id} stored twice (again at seq {})",
            event.origin_seq
        );
        if matches!(event.body, Some(Body::CaseOpened(_))) {
            opened += 1;
        }
        events.insert(event.origin_seq, event_id);
    }

    let missing: Vec<_> = known
        .iter()
        .filter(|&(seq, id)| events.get(seq) != Some(id))
        .map(|(seq, id)| (*seq, *id, events.get(seq).copied()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged or previously seen events missing or changed (seq, expected, found), \
         head_seq {head_seq}: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );

    let cases = agent.cases().unwrap();
    assert_eq!(
        cases.len(),
        opened,
        "case views do not match CaseOpened events"
    );
    let before = agent.log().views_snapshot().unwrap();
    let replayed = agent.rebuild_views().unwrap();
    assert_eq!(replayed as u64, head_seq, "rebuild replayed another count");
    let after = agent.log().views_snapshot().unwrap();
    assert!(
        before == after,
        "views differ after rebuild ({} keys before, {} after)",
        before.len(),
        after.len()
    );
    // `agent` is dropped here: sled's file lock is released before the next
    // process opens the store.
    Reopened {
        head_seq,
        events,
        cases: cases.len(),
    }
}

/// Kills single- and multi-threaded appenders at random moments, 60 times on
/// one store: nothing acknowledged is ever lost.
#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_event() {
    const CYCLES: usize = 60;
    let _alone = one_test_at_a_time();
    let started = Instant::now();
    let mut rng = seeded_rng("sigkill_at_random_moments");
    let dir = tempfile::tempdir().unwrap();
    let mut known = BTreeMap::new();
    let (mut acked, mut seen) = (0, 0);
    for cycle in 0..CYCLES {
        let threads = if rng.random_bool(0.5) { 1 } else { 4 };
        let kill_after = rng.random_range(1..=40);
        let acks = Appender::spawn(dir.path(), threads).kill_after(kill_after);
        acked += acks.len();
        merge_acks(&mut known, &acks);
        let reopened = reopen_and_check(dir.path(), &known);
        seen = reopened.events.len();
        known = reopened.events;
        if cycle % 10 == 9 {
            eprintln!(
                "cycle {}: head_seq {}, {} cases",
                cycle + 1,
                reopened.head_seq,
                reopened.cases
            );
        }
    }
    eprintln!(
        "sigkill_at_random_moments: {CYCLES} kills, {acked} acks, {seen} events stored, {:.1?}",
        started.elapsed()
    );
}

/// Kills an eight-thread appender mid-append again and again, and reopens the
/// store twice after each kill: the number of acknowledged events present
/// equals the number acknowledged so far (so it never decreases), and
/// head_seq and what a restart saw never go back.
#[test]
fn concurrent_appends_killed_never_lose_acks_across_restarts() {
    const CYCLES: usize = 20;
    const THREADS: usize = 8;
    let _alone = one_test_at_a_time();
    let started = Instant::now();
    let mut rng = seeded_rng("concurrent_appends_killed");
    let dir = tempfile::tempdir().unwrap();
    let mut acked_ever: BTreeMap<u64, Uuid> = BTreeMap::new();
    let mut seen: BTreeMap<u64, Uuid> = BTreeMap::new();
    let (mut acked_present, mut head_seq) = (0, 0);
    for cycle in 0..CYCLES {
        let acks = Appender::spawn(dir.path(), THREADS).kill_after(rng.random_range(1..=40));
        merge_acks(&mut acked_ever, &acks);
        merge_acks(&mut seen, &acks);
        // A restart right after the kill, then one more with no writes between.
        for restart in 0..2 {
            let reopened = reopen_and_check(dir.path(), &seen);
            let present = acked_ever
                .iter()
                .filter(|&(seq, id)| reopened.events.get(seq) == Some(id))
                .count();
            assert_eq!(
                present,
                acked_ever.len(),
                "cycle {cycle}, restart {restart}"
            );
            assert!(
                present >= acked_present,
                "acked events present went from {acked_present} to {present}"
            );
            assert!(
                reopened.head_seq >= head_seq,
                "head_seq went back from {head_seq} to {}",
                reopened.head_seq
            );
            acked_present = present;
            head_seq = reopened.head_seq;
            seen = reopened.events;
        }
    }
    eprintln!(
        "concurrent_appends_killed: {CYCLES} kills of {THREADS} threads, {} acks, \
         {head_seq} events stored, {:.1?}",
        acked_ever.len(),
        started.elapsed()
    );
}

/// Kills the appender at random moments of its start-up (loading, opening
/// and recovering the store) and of its first appends, 150 times: the store
/// must open after every kill, with nothing acknowledged lost.
///
/// A kill inside sled's start-up snapshot leaves a `snap.*.generating`
/// file; the log removes it before opening (see `durable`).
#[test]
fn sigkill_during_startup_leaves_the_store_openable() {
    const CYCLES: usize = 150;
    let _alone = one_test_at_a_time();
    let started = Instant::now();
    let mut rng = seeded_rng("sigkill_during_startup");
    let dir = tempfile::tempdir().unwrap();
    // A store with an identity and some events, and how long the appender
    // takes from spawn to its first ack: the kills land inside that span.
    let first = Appender::spawn(dir.path(), 1);
    let mut known = BTreeMap::new();
    merge_acks(&mut known, &first.kill_after(40));
    known = reopen_and_check(dir.path(), &known).events;
    let calibrate = Appender::spawn(dir.path(), 1);
    let spawned = calibrate.started;
    let acks = calibrate.kill_after(1);
    let startup = spawned
        .elapsed()
        .clamp(Duration::from_millis(1), Duration::from_millis(200));
    eprintln!("sigkill_during_startup: first ack {startup:.1?} after spawn");
    merge_acks(&mut known, &acks);
    known = reopen_and_check(dir.path(), &known).events;
    let mut acked = known.len();
    for _ in 0..CYCLES {
        let threads = if rng.random_bool(0.5) { 1 } else { 4 };
        let delay = startup.mul_f64(rng.random_range(0.0..=1.0));
        let acks = Appender::spawn(dir.path(), threads).kill_at(delay);
        acked += acks.len();
        merge_acks(&mut known, &acks);
        known = reopen_and_check(dir.path(), &known).events;
    }
    eprintln!(
        "sigkill_during_startup: {CYCLES} kills, {acked} acks, {} events stored, {:.1?}",
        known.len(),
        started.elapsed()
    );
}
