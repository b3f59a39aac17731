//! The stored logs against the reference: the same random operations (push,
//! resend, gap, mixed batches, hello, reopen, pull) run on a [`HubStore`]
//! (and, with the `jetstream` feature, on a `JetStreamLog` over a real
//! `nats-server`) and on a [`MemoryLog`], and every answer of the [`HubLog`]
//! contract must agree, after each operation and across reopenings of the
//! stored log.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use station_hub::store::{HubLog, HubStore, MemoryLog};
use station_proto::Event;

use crate::events::{self, CHANGZHU, Device, ZEDANG};

fn today() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2025, 6, 30).unwrap()
}

/// Events per device.
const EVENTS: usize = 10;

#[derive(Debug, Clone)]
enum Op {
    /// The device's next `count` events.
    Push { device: usize, count: usize },
    /// Events from `back` seqs below the next one on.
    Resend {
        device: usize,
        back: u64,
        count: usize,
    },
    /// Events from one seq above the next one on: refused.
    Gap { device: usize },
    /// The next event of two devices in one batch.
    Mixed { first: usize, second: usize },
    /// A `Hello`.
    Hello { device: usize, head: u64 },
    /// The stored log is closed and opened again.
    Reopen,
    /// A page of a station.
    Pull {
        station: usize,
        after: u64,
        max_events: usize,
        max_bytes: usize,
        skip: Option<usize>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 1..4usize).prop_map(|(device, count)| Op::Push { device, count }),
        2 => (0..3usize, 0..4u64, 1..4usize)
            .prop_map(|(device, back, count)| Op::Resend { device, back, count }),
        1 => (0..3usize).prop_map(|device| Op::Gap { device }),
        1 => (0..3usize, 0..3usize).prop_map(|(first, second)| Op::Mixed { first, second }),
        1 => (0..3usize, 0..20u64).prop_map(|(device, head)| Op::Hello { device, head }),
        1 => Just(Op::Reopen),
        3 => (0..2usize, 0..30u64, 1..6usize, 1..2000usize, proptest::option::of(0..3usize))
            .prop_map(|(station, after, max_events, max_bytes, skip)| Op::Pull {
                station,
                after,
                max_events,
                max_bytes,
                skip,
            }),
    ]
}

/// Each device's events, seqs `1..=EVENTS`: some invalid, one carrying an
/// event id another device holds, titles of varied length.
fn streams(invalid: &[bool], copy_at: usize) -> Vec<(Device, Vec<Event>)> {
    let devices = [
        Device::new(ZEDANG, "a"),
        Device::new(ZEDANG, "b"),
        Device::new(CHANGZHU, "c"),
    ];
    let mut streams: Vec<(Device, Vec<Event>)> = devices
        .into_iter()
        .enumerate()
        .map(|(d, mut device)| {
            let events = (0..EVENTS)
                .map(|i| {
                    let day = if invalid[(d * EVENTS + i) % invalid.len()] {
                        "2025-02-30".to_string()
                    } else {
                        format!("2025-03-{:02}", i + 1)
                    };
                    let mut event = device.record(events::training(&day));
                    event.author = "x".repeat(1 + (i * 37 + d * 11) % 300);
                    event
                })
                .collect();
            (device, events)
        })
        .collect();
    let copied = streams[0].1[copy_at].event_id.clone();
    streams[2].1[copy_at].event_id = copied;
    streams
}

/// Opens the stored log under test, again on the same data at each call.
type Open<'a> = &'a dyn Fn() -> Box<dyn HubLog>;

struct Pair<'a> {
    open: Open<'a>,
    stored: Option<Box<dyn HubLog>>,
    memory: MemoryLog,
    now_ms: i64,
}

impl Pair<'_> {
    fn stored(&self) -> &dyn HubLog {
        self.stored.as_deref().unwrap()
    }

    fn push(&mut self, batch: Vec<Event>) {
        self.now_ms += 1000;
        let stored = HubLog::push(self.stored(), batch.clone(), today(), self.now_ms);
        let memory = self.memory.push(batch, today(), self.now_ms);
        match (stored, memory) {
            (Ok(s), Ok(m)) => assert_eq!(s, m),
            (Err(s), Err(m)) => assert_eq!(s.to_string(), m.to_string()),
            (s, m) => panic!("stored {s:?}, memory {m:?}"),
        }
    }

    /// Every answer that does not depend on arguments agrees.
    fn agree(&self, streams: &[(Device, Vec<Event>)]) {
        let (stored, memory) = (self.stored(), &self.memory);
        assert_eq!(HubLog::event_count(stored), memory.event_count());
        assert_eq!(
            HubLog::events_after(stored, 0, usize::MAX).unwrap(),
            memory.events_after(0, usize::MAX).unwrap()
        );
        assert_eq!(HubLog::origins(stored).unwrap(), memory.origins().unwrap());
        assert_eq!(
            HubLog::quarantine(stored).unwrap(),
            memory.quarantine().unwrap()
        );
        for station in [ZEDANG, CHANGZHU] {
            assert_eq!(
                HubLog::station_head(stored, station).unwrap(),
                memory.station_head(station).unwrap()
            );
        }
        for (device, events) in streams {
            assert_eq!(
                HubLog::origin(stored, device.origin).unwrap(),
                memory.origin(device.origin).unwrap()
            );
            for event in events {
                assert_eq!(
                    HubLog::position_of(stored, &event.event_id).unwrap(),
                    memory.position_of(&event.event_id).unwrap()
                );
            }
        }
    }
}

fn next_seq(pair: &Pair<'_>, device: &Device) -> u64 {
    pair.memory.origin(device.origin).unwrap().durable_through + 1
}

fn from_seq(events: &[Event], seq: u64, count: usize) -> Vec<Event> {
    events
        .iter()
        .skip(usize::try_from(seq.max(1) - 1).unwrap())
        .take(count)
        .cloned()
        .collect()
}

/// Runs `ops` on the stored log `open` gives and on the reference.
fn run_case(
    open: Open<'_>,
    ops: Vec<Op>,
    invalid: &[bool],
    copy_at: usize,
) -> Result<(), TestCaseError> {
    let streams = streams(invalid, copy_at);
    let mut pair = Pair {
        open,
        stored: Some(open()),
        memory: MemoryLog::new(),
        now_ms: 1_750_000_000_000,
    };
    for op in ops {
        match op {
            Op::Push { device, count } => {
                let (d, events) = &streams[device];
                let batch = from_seq(events, next_seq(&pair, d), count);
                pair.push(batch);
            }
            Op::Resend {
                device,
                back,
                count,
            } => {
                let (d, events) = &streams[device];
                let from = next_seq(&pair, d).saturating_sub(back);
                pair.push(from_seq(events, from, count));
            }
            Op::Gap { device } => {
                let (d, events) = &streams[device];
                pair.push(from_seq(events, next_seq(&pair, d) + 1, 2));
            }
            Op::Mixed { first, second } => {
                let mut batch = Vec::new();
                for device in [first, second] {
                    let (d, events) = &streams[device];
                    batch.extend(from_seq(events, next_seq(&pair, d), 1));
                }
                pair.push(batch);
            }
            Op::Hello { device, head } => {
                let d = &streams[device].0;
                pair.now_ms += 1000;
                let now = pair.now_ms;
                let s = pair
                    .stored()
                    .hello(d.origin, &d.station, head, now + 5, now)
                    .unwrap();
                let m = pair
                    .memory
                    .hello(d.origin, &d.station, head, now + 5, now)
                    .unwrap();
                prop_assert_eq!(s, m);
            }
            Op::Reopen => {
                drop(pair.stored.take());
                pair.stored = Some((pair.open)());
            }
            Op::Pull {
                station,
                after,
                max_events,
                max_bytes,
                skip,
            } => {
                let station = [ZEDANG, CHANGZHU][station];
                let skip = skip.map(|d| streams[d].0.origin);
                let s = pair
                    .stored()
                    .pull_for(station, after, max_events, max_bytes, skip)
                    .unwrap();
                let m = pair
                    .memory
                    .pull_for(station, after, max_events, max_bytes, skip)
                    .unwrap();
                prop_assert_eq!(s, m);
            }
        }
        pair.agree(&streams);
    }
    Ok(())
}

fn case() -> impl Strategy<Value = (Vec<Op>, Vec<bool>, usize)> {
    (
        proptest::collection::vec(op(), 1..40),
        proptest::collection::vec(proptest::bool::weighted(0.15), 30),
        0..EVENTS,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sled_agrees_with_the_reference((ops, invalid, copy_at) in case()) {
        let dir = tempfile::tempdir().unwrap();
        let open = || Box::new(HubStore::open(dir.path(), 1 << 20).unwrap()) as Box<dyn HubLog>;
        run_case(&open, ops, &invalid, copy_at)?;
    }
}

/// The same operations on a `JetStreamLog` over one real node (R1), each
/// case on a stream of its own; reopening connects again and reads the
/// stream back.
#[cfg(feature = "jetstream")]
#[test]
fn jetstream_agrees_with_the_reference() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let Some(cluster) = super::nats::Cluster::single() else {
        return;
    };
    let cases = AtomicUsize::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    });
    runner
        .run(&case(), |(ops, invalid, copy_at)| {
            let stream = format!("MODEL{}", cases.fetch_add(1, Ordering::Relaxed));
            let options = cluster.options(&stream, 1);
            let open = || Box::new(cluster.open(&options)) as Box<dyn HubLog>;
            run_case(&open, ops, &invalid, copy_at)
        })
        .unwrap();
}
