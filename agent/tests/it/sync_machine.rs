//! The sans-IO sync core, driven deterministically: no network, no clock,
//! seeded jitter. Time is an `Instant` the test moves by hand.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use station_agent::sync::backoff::Backoff;
use station_agent::sync::machine::{
    Action, Batch, Call, Config, Fault, HelloAnswer, PullPage, PullProgress, SyncMachine,
};
use station_agent::sync::{fault, is_retriable};

const KIB: usize = 1024;

fn machine() -> SyncMachine {
    SyncMachine::new(Config::default(), 7)
}

/// A machine in session with a hub holding `durable_through` of a device
/// whose log reaches `head`.
fn in_session(durable_through: u64, head: u64, t: Instant) -> SyncMachine {
    let mut m = machine();
    m.begin_hello(t);
    let parked = m.on_hello(
        HelloAnswer {
            durable_through,
            station_pull_head: 0,
        },
        head,
        t + Duration::from_millis(300),
    );
    assert_eq!(parked, None);
    m
}

/// Pushes one batch filling the plan, acknowledged after `secs`; returns the
/// next plan's budget.
fn push_full_batch(m: &mut SyncMachine, t: &mut Instant, secs: f64) -> usize {
    let plan = m.next_push(u64::MAX / 2).unwrap();
    m.begin_push(
        Batch {
            after: plan.after,
            through: plan.after + 10,
            bytes: plan.max_bytes,
        },
        *t,
    );
    *t += Duration::from_secs_f64(secs);
    m.on_push_ack(plan.after + 10, *t).unwrap();
    m.next_push(u64::MAX / 2).unwrap().max_bytes
}

#[test]
fn the_first_batch_assumes_64_kbit_s_and_later_ones_follow_the_measured_rate() {
    let mut t = Instant::now();
    let mut m = in_session(0, 1_000_000, t);
    // 8,000 B/s × 4 s of airtime.
    let first = m.next_push(1_000_000).unwrap();
    assert_eq!((first.after, first.max_bytes), (0, 32_000));

    // A batch of 32,000 B acknowledged in 1 s: the link does 32 kB/s, and the
    // first measurement replaces the assumption.
    let next = push_full_batch(&mut m, &mut t, 1.0);
    assert_eq!(next, 128_000);

    // A fast link: the budget grows to the 1 MiB cap and stays there.
    for _ in 0..10 {
        push_full_batch(&mut m, &mut t, 0.1);
    }
    assert_eq!(m.next_push(u64::MAX / 2).unwrap().max_bytes, 1024 * KIB);

    // The link degrades to 1 kB/s: the budget follows it down, smoothly...
    let mut sizes = Vec::new();
    for _ in 0..40 {
        let plan = m.next_push(u64::MAX / 2).unwrap();
        let secs = plan.max_bytes as f64 / 1_000.0;
        sizes.push(push_full_batch(&mut m, &mut t, secs));
    }
    assert!(sizes.windows(2).all(|w| w[1] <= w[0]), "{sizes:?}");
    assert!(sizes[0] > 100 * KIB, "one slow sample does not collapse it");
    // ... to 4 s of 1 kB/s, never below the 2 KiB floor.
    let last = *sizes.last().unwrap();
    assert!((2 * KIB..=4_400).contains(&last), "{last}");
}

#[test]
fn a_small_tail_batch_teaches_nothing_about_the_rate() {
    let mut t = Instant::now();
    let mut m = in_session(0, 100, t);
    let plan = m.next_push(100).unwrap();
    // One 300-byte event that took a second: latency, not bandwidth.
    m.begin_push(
        Batch {
            after: 0,
            through: 1,
            bytes: 300,
        },
        t,
    );
    t += Duration::from_secs(1);
    m.on_push_ack(1, t).unwrap();
    assert!(!m.uplink_measured());
    assert_eq!(m.next_push(100).unwrap().max_bytes, plan.max_bytes);
}

#[test]
fn a_rate_measured_in_an_earlier_run_sizes_the_first_batch() {
    let t = Instant::now();
    let mut m = SyncMachine::new(Config::default(), 1).with_uplink(16_000);
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 0,
            station_pull_head: 0,
        },
        50,
        t,
    );
    assert!(m.uplink_measured());
    assert_eq!(m.next_push(50).unwrap().max_bytes, 64_000);
}

#[test]
fn a_cap_below_the_minimum_wins() {
    let t = Instant::now();
    let config = Config {
        max_batch_bytes: 1024,
        ..Config::default()
    };
    let mut m = SyncMachine::new(config, 1);
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 0,
            station_pull_head: 0,
        },
        10,
        t,
    );
    assert_eq!(m.next_push(10).unwrap().max_bytes, 1024);
}

#[test]
fn deadlines_grow_with_the_batch_and_the_slowness_of_the_link_and_are_capped() {
    let t = Instant::now();
    let m = in_session(0, 10, t);
    let small = m.push_deadline(2 * KIB);
    let medium = m.push_deadline(64 * KIB);
    let large = m.push_deadline(256 * KIB);
    assert!(
        small < medium && medium < large,
        "{small:?} {medium:?} {large:?}"
    );
    // The floor covers the round trip and the hub's fsync.
    assert!(small >= Duration::from_secs(5));
    // 64 KiB at 8,000 B/s is 8.2 s of airtime; three times that plus 5 s.
    let expected = 5.0 + 3.0 * 65_536.0 / 8_000.0;
    assert!((medium.as_secs_f64() - expected).abs() < 0.01, "{medium:?}");
    // 256 KiB would need 103 s: capped at 120 s overall.
    assert!(large <= Duration::from_secs(120));
    assert_eq!(m.push_deadline(10 * 1024 * KIB), Duration::from_secs(120));

    // The deadline of the batch actually built is sized from its bytes.
    let mut m = in_session(0, 10, t);
    let plan = m.next_push(10).unwrap();
    let actual = m.begin_push(
        Batch {
            after: 0,
            through: 3,
            bytes: 900,
        },
        t,
    );
    assert!(actual < plan.deadline);
    assert_eq!(actual, m.push_deadline(900));

    // A slower link gets more time for the same bytes.
    let mut slow = SyncMachine::new(Config::default(), 1).with_uplink(1_000);
    slow.begin_hello(t);
    assert!(slow.push_deadline(16 * KIB) > in_session(0, 1, t).push_deadline(16 * KIB));
}

#[test]
fn a_slow_hello_raises_the_deadline_floor() {
    let t = Instant::now();
    let mut m = machine();
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 0,
            station_pull_head: 0,
        },
        0,
        t + Duration::from_secs(4),
    );
    // Three round trips of 4 s.
    assert!(m.push_deadline(0) >= Duration::from_secs(12));
}

#[test]
fn backoff_is_capped_fully_jittered_and_replayable() {
    let base = Duration::from_millis(500);
    let cap = Duration::from_secs(60);
    let mut backoff = Backoff::new(base, cap, 42);
    let mut delays = Vec::new();
    for n in 0..40u32 {
        let ceiling = base.saturating_mul(1 << n.min(20)).min(cap);
        assert_eq!(backoff.ceiling(), ceiling);
        let delay = backoff.next_delay();
        assert!(delay <= ceiling, "attempt {n}: {delay:?} > {ceiling:?}");
        delays.push(delay);
    }
    // Full jitter: the capped delays spread over 0..=60 s, not all at the cap.
    let capped = &delays[10..];
    let distinct: std::collections::BTreeSet<_> = capped.iter().collect();
    assert!(distinct.len() > 20, "{capped:?}");
    assert!(capped.iter().any(|d| *d < cap / 2));
    assert!(capped.iter().any(|d| *d > cap / 2));

    // The same seed replays the same delays; another seed does not.
    let mut again = Backoff::new(base, cap, 42);
    let replay: Vec<_> = (0..40).map(|_| again.next_delay()).collect();
    assert_eq!(replay, delays);
    let mut other = Backoff::new(base, cap, 43);
    let different: Vec<_> = (0..40).map(|_| other.next_delay()).collect();
    assert_ne!(different, delays);

    backoff.reset();
    assert_eq!(backoff.ceiling(), base);
    assert_eq!(backoff.failures(), 0);
}

#[test]
fn retries_back_off_until_progress_resets_them() {
    let mut t = Instant::now();
    let mut m = in_session(0, 100, t);
    let mut last_ceiling = Duration::ZERO;
    for _ in 0..12 {
        let plan = m.next_push(100).unwrap();
        m.begin_push(
            Batch {
                after: plan.after,
                through: 100,
                bytes: 4_000,
            },
            t,
        );
        let ceiling = m.backoff_ceiling();
        assert!(ceiling >= last_ceiling);
        last_ceiling = ceiling;
        let Action::ReconnectAt(at) = m.on_error(Call::Push, Fault::Link("reset".into()), t) else {
            panic!("a cut link reconnects");
        };
        assert!(at >= t && at <= t + ceiling);
        t = at;
        // Hello succeeds again each time: that is not progress.
        assert!(m.needs_hello());
        m.begin_hello(t);
        m.on_hello(
            HelloAnswer {
                durable_through: 0,
                station_pull_head: 0,
            },
            100,
            t,
        );
    }
    assert_eq!(m.backoff_ceiling(), Duration::from_secs(60));
    // An acknowledged push is progress.
    m.next_push(100).unwrap();
    m.begin_push(
        Batch {
            after: 0,
            through: 100,
            bytes: 4_000,
        },
        t,
    );
    m.on_push_ack(100, t + Duration::from_secs(1)).unwrap();
    assert_eq!(m.backoff_ceiling(), Duration::from_millis(500));
    assert_eq!(m.failures(), 0);
}

#[test]
fn a_cut_push_halves_the_rate_so_the_next_batch_is_smaller() {
    let t = Instant::now();
    let mut m = in_session(0, 1_000, t);
    let plan = m.next_push(1_000).unwrap();
    m.begin_push(
        Batch {
            after: 0,
            through: 500,
            bytes: plan.max_bytes,
        },
        t,
    );
    m.on_error(Call::Push, Fault::Link("deadline".into()), t);
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 0,
            station_pull_head: 0,
        },
        1_000,
        t,
    );
    assert_eq!(m.next_push(1_000).unwrap().max_bytes, plan.max_bytes / 2);
}

#[test]
fn the_hubs_codes_are_classified_in_one_place() {
    use tonic::Code;
    for code in [
        Code::Unavailable,
        Code::DeadlineExceeded,
        Code::Aborted,
        Code::Cancelled,
        Code::ResourceExhausted,
        Code::Unknown,
        Code::Internal,
        Code::DataLoss,
        Code::FailedPrecondition,
    ] {
        assert!(is_retriable(code), "{code:?}");
        let status = tonic::Status::new(code, "x");
        assert!(matches!(fault(&status), Fault::Busy(_)), "{code:?}");
    }
    for code in [
        Code::InvalidArgument,
        Code::PermissionDenied,
        Code::NotFound,
        Code::AlreadyExists,
        Code::OutOfRange,
        Code::Unimplemented,
    ] {
        assert!(!is_retriable(code), "{code:?}");
        let status = tonic::Status::new(code, "x");
        assert!(matches!(fault(&status), Fault::Refused(_)), "{code:?}");
    }
    assert!(!is_retriable(Code::Unauthenticated));
    let revoked = tonic::Status::unauthenticated("revoked");
    assert!(matches!(fault(&revoked), Fault::Denied(_)));
    // A status tonic built from a broken connection is a link fault whatever
    // its code.
    for kind in [
        std::io::ErrorKind::UnexpectedEof,
        std::io::ErrorKind::BrokenPipe,
        std::io::ErrorKind::ConnectionReset,
    ] {
        let status = tonic::Status::from_error(Box::new(std::io::Error::new(kind, "cut")));
        assert!(
            matches!(fault(&status), Fault::Link(_)),
            "{kind:?}: {status:?}"
        );
    }
}

#[test]
fn a_busy_hub_is_retried_on_the_same_connection_from_a_fresh_hello() {
    let t = Instant::now();
    let mut m = in_session(3, 10, t);
    m.next_push(10).unwrap();
    m.begin_push(
        Batch {
            after: 3,
            through: 10,
            bytes: 800,
        },
        t,
    );
    let busy = tonic::Status::unavailable("disk");
    let Action::RetryAt(at) = m.on_error(Call::Push, fault(&busy), t) else {
        panic!("Unavailable is retried on the same connection");
    };
    assert!(at <= t + Duration::from_millis(500));
    assert!(m.needs_hello());
    m.begin_hello(at);
    m.on_hello(
        HelloAnswer {
            durable_through: 3,
            station_pull_head: 0,
        },
        10,
        at,
    );
    assert_eq!(m.next_push(10).unwrap().after, 3);
}

#[test]
fn a_gap_refusal_resumes_from_the_hubs_real_durable_through() {
    let t = Instant::now();
    let mut m = in_session(8, 20, t);
    m.next_push(20).unwrap();
    m.begin_push(
        Batch {
            after: 8,
            through: 20,
            bytes: 2_000,
        },
        t,
    );
    // The hub was restored from a backup mid-session: it now holds 1..=5.
    let gap = tonic::Status::failed_precondition("gap: expected origin_seq 6, got 9");
    let action = m.on_error(Call::Push, fault(&gap), t);
    assert!(matches!(action, Action::RetryAt(_)), "{action:?}");
    assert_eq!(m.parked(), None);
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 5,
            station_pull_head: 0,
        },
        20,
        t,
    );
    assert_eq!(m.next_push(20).unwrap().after, 5);
}

#[test]
fn a_refused_batch_is_parked_and_stops_pushing_while_pulling_goes_on() {
    let t = Instant::now();
    let mut m = machine();
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 4,
            station_pull_head: 90,
        },
        20,
        t,
    );
    m.next_push(20).unwrap();
    m.begin_push(
        Batch {
            after: 4,
            through: 12,
            bytes: 2_000,
        },
        t,
    );
    let status = tonic::Status::permission_denied("event 7 belongs to station 540502101");
    let Action::Park(parked) = m.on_error(Call::Push, fault(&status), t) else {
        panic!("a permanent refusal parks");
    };
    assert_eq!((parked.from_seq, parked.through_seq), (5, 12));
    assert!(
        parked.reason.contains("PermissionDenied"),
        "{}",
        parked.reason
    );
    assert!(parked.reason.contains("540502101"), "{}", parked.reason);
    assert_eq!(m.parked(), Some(&parked));

    // No more pushes, however many new events: no spinning on the refusal.
    assert_eq!(m.next_push(20), None);
    assert_eq!(m.next_push(500), None);
    // Pulling is not blocked.
    let pull = m.next_pull(0, t).unwrap();
    assert_eq!(pull.after, 0);
    let progress = m
        .on_pull(
            PullPage {
                next_cursor: 90,
                head: 90,
                events: 30,
                bytes: 9_000,
            },
            t + Duration::from_secs(1),
        )
        .unwrap();
    assert_eq!(progress, PullProgress::CaughtUp);

    // Parked survives a new round and a restart (the edge persists it) ...
    m.new_round();
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 4,
            station_pull_head: 90,
        },
        20,
        t,
    );
    assert_eq!(m.next_push(20), None);
    let mut restarted = SyncMachine::new(Config::default(), 9).with_parked(Some(parked));
    restarted.begin_hello(t);
    restarted.on_hello(
        HelloAnswer {
            durable_through: 4,
            station_pull_head: 90,
        },
        20,
        t,
    );
    assert_eq!(restarted.next_push(20), None);
    // ... until someone acts.
    restarted.clear_parked();
    assert_eq!(restarted.next_push(20).unwrap().after, 4);
}

#[test]
fn a_refused_caller_or_pull_stops_the_round_without_parking() {
    let t = Instant::now();
    let revoked = tonic::Status::unauthenticated("revoked token");
    let mut m = machine();
    m.begin_hello(t);
    let action = m.on_error(Call::Hello, fault(&revoked), t);
    assert!(
        matches!(action, Action::Stop(ref r) if r.contains("revoked")),
        "{action:?}"
    );
    assert_eq!(m.parked(), None);

    // A token revoked between Hello and Push: the batch is not at fault.
    let mut m = in_session(0, 5, t);
    m.next_push(5).unwrap();
    m.begin_push(
        Batch {
            after: 0,
            through: 5,
            bytes: 500,
        },
        t,
    );
    let action = m.on_error(Call::Push, fault(&revoked), t);
    assert!(matches!(action, Action::Stop(_)), "{action:?}");
    assert_eq!(m.parked(), None);

    let mut m = in_session(0, 5, t);
    m.next_pull(0, t);
    let other = tonic::Status::permission_denied("other station");
    let action = m.on_error(Call::Pull, fault(&other), t);
    assert!(matches!(action, Action::Stop(_)), "{action:?}");
    assert_eq!(m.parked(), None);
}

#[test]
fn push_resumes_from_what_the_hub_says_after_a_reconnect() {
    let t = Instant::now();
    let mut m = in_session(10, 50, t);
    assert_eq!(m.next_push(50).unwrap().after, 10);
    m.begin_push(
        Batch {
            after: 10,
            through: 30,
            bytes: 5_000,
        },
        t,
    );
    m.on_error(Call::Push, Fault::Link("cut".into()), t);
    assert!(m.needs_hello());
    assert_eq!(m.next_push(50), None, "nothing before Hello");

    // The hub lost its disk and came back from a backup: it holds less.
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 6,
            station_pull_head: 0,
        },
        50,
        t,
    );
    assert_eq!(m.next_push(50).unwrap().after, 6);

    // Or it holds more than this session knew (the lost batch was stored).
    m.new_round();
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 30,
            station_pull_head: 0,
        },
        50,
        t,
    );
    assert_eq!(m.next_push(50).unwrap().after, 30);
    m.new_round();
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 50,
            station_pull_head: 0,
        },
        50,
        t,
    );
    assert_eq!(m.next_push(50), None, "caught up");
}

#[test]
fn a_lost_ack_leads_to_a_resend_the_hub_ignores() {
    let mut t = Instant::now();
    let mut hub = ModelHub::default();
    let mut m = in_session(0, 40, t);
    let plan = m.next_push(40).unwrap();
    m.begin_push(
        Batch {
            after: 0,
            through: 20,
            bytes: 3_000,
        },
        t,
    );
    // The link drops while the hub is still committing 1..=20: the new
    // session's Hello is answered before that commit lands.
    let action = m.on_error(Call::Push, Fault::Link("connection reset".into()), t);
    let Action::ReconnectAt(at) = action else {
        panic!("{action:?}")
    };
    t = at;
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: hub.durable_through,
            station_pull_head: 0,
        },
        40,
        t,
    );
    hub.push(0, 20).unwrap();
    // So the same events go again, from the same place ...
    let again = m.next_push(40).unwrap();
    assert_eq!(again.after, plan.after);
    m.begin_push(
        Batch {
            after: 0,
            through: 20,
            bytes: 3_000,
        },
        t,
    );
    // ... and the hub ignores what it holds and answers its durable_through.
    let ack = hub.push(0, 20).unwrap();
    let acked = m.on_push_ack(ack, t + Duration::from_secs(1)).unwrap();
    assert_eq!((acked.durable_through, acked.newly_acked), (20, 20));
    assert_eq!(hub.stored, (1..=20).collect::<Vec<_>>(), "each event once");
    assert_eq!(m.next_push(40).unwrap().after, 20);

    // A resend whose smaller batch is acked past its end (the hub had
    // stored a larger lost batch) is fine too.
    hub.push(20, 40).unwrap();
    m.begin_push(
        Batch {
            after: 20,
            through: 25,
            bytes: 900,
        },
        t,
    );
    let ack = hub.push(20, 25).unwrap();
    let acked = m.on_push_ack(ack, t).unwrap();
    assert_eq!((acked.durable_through, acked.newly_acked), (40, 20));
    assert_eq!(m.next_push(40), None);
    assert_eq!(hub.stored, (1..=40).collect::<Vec<_>>());
}

#[test]
fn acks_that_break_the_protocol_reconnect_or_park() {
    let t = Instant::now();
    let mut m = in_session(10, 30, t);
    m.next_push(30).unwrap();
    m.begin_push(
        Batch {
            after: 10,
            through: 20,
            bytes: 1_000,
        },
        t,
    );
    let violation = m.on_push_ack(10, t).unwrap_err();
    assert!(matches!(violation.action, Action::ReconnectAt(_)));
    assert!(m.needs_hello());

    let mut m = in_session(10, 30, t);
    m.next_push(30).unwrap();
    m.begin_push(
        Batch {
            after: 10,
            through: 20,
            bytes: 1_000,
        },
        t,
    );
    let violation = m.on_push_ack(99, t).unwrap_err();
    assert!(matches!(violation.action, Action::Park(_)), "{violation:?}");
    assert_eq!(m.next_push(30), None);
}

#[test]
fn a_hub_holding_more_than_the_device_parks_the_push() {
    let t = Instant::now();
    let mut m = machine();
    m.begin_hello(t);
    let parked = m
        .on_hello(
            HelloAnswer {
                durable_through: 120,
                station_pull_head: 7,
            },
            80,
            t,
        )
        .unwrap();
    assert_eq!((parked.from_seq, parked.through_seq), (81, 120));
    assert_eq!(m.next_push(200), None);
    assert!(m.next_pull(0, t).is_some());
}

#[test]
fn pulls_page_until_the_head_and_long_polls_wait() {
    let mut t = Instant::now();
    let mut m = machine();
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 0,
            station_pull_head: 300,
        },
        0,
        t,
    );
    let plan = m.next_pull(0, t).unwrap();
    assert_eq!(plan.wait, Duration::ZERO);
    assert_eq!(plan.max_events, 5_000);
    assert_eq!(plan.max_bytes, 32_000);
    t += Duration::from_secs(1);
    let page = PullPage {
        next_cursor: 120,
        head: 310,
        events: 100,
        bytes: 32_000,
    };
    assert_eq!(m.on_pull(page, t).unwrap(), PullProgress::More);
    // 32 kB in a second: the next page is sized for it.
    assert_eq!(m.next_pull(120, t).unwrap().max_bytes, 128_000);
    let page = PullPage {
        next_cursor: 310,
        head: 310,
        events: 100,
        bytes: 30_000,
    };
    assert_eq!(m.on_pull(page, t).unwrap(), PullProgress::CaughtUp);
    assert_eq!(m.next_pull(310, t), None);

    let poll = m.long_poll(310, t).unwrap();
    assert_eq!(poll.wait, Duration::from_secs(25));
    assert!(poll.deadline > poll.wait);
}

#[test]
fn a_page_that_goes_backwards_is_refused_and_one_that_stalls_ends_pulling() {
    let t = Instant::now();
    let mut m = machine();
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 0,
            station_pull_head: 50,
        },
        0,
        t,
    );
    m.next_pull(20, t).unwrap();
    let page = PullPage {
        next_cursor: 10,
        head: 50,
        events: 3,
        bytes: 300,
    };
    let violation = m.on_pull(page, t).unwrap_err();
    assert!(matches!(violation.action, Action::ReconnectAt(_)));

    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 0,
            station_pull_head: 50,
        },
        0,
        t,
    );
    m.next_pull(20, t).unwrap();
    let empty = PullPage {
        next_cursor: 20,
        head: 50,
        events: 0,
        bytes: 10,
    };
    assert_eq!(m.on_pull(empty, t).unwrap(), PullProgress::CaughtUp);
    assert_eq!(
        m.next_pull(20, t),
        None,
        "no loop on a hub that gives nothing"
    );
    m.new_round();
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 0,
            station_pull_head: 50,
        },
        0,
        t,
    );
    assert!(m.next_pull(20, t).is_some(), "a new round tries again");
}

/// What the link does to one push.
#[derive(Debug, Clone, Copy)]
enum Weather {
    /// Delivered and acknowledged.
    Clear,
    /// Cut before the hub got it.
    LostRequest,
    /// The hub stored it; the ack was lost with the link.
    LostAck,
    /// The hub answered Unavailable without storing.
    Busy,
}

fn weather() -> impl Strategy<Value = Weather> {
    prop_oneof![
        3 => Just(Weather::Clear),
        1 => Just(Weather::LostRequest),
        1 => Just(Weather::LostAck),
        1 => Just(Weather::Busy),
    ]
}

/// The hub's rule for one origin: events at or below durable_through are
/// ignored, a gap is refused, the rest is stored.
#[derive(Default)]
struct ModelHub {
    durable_through: u64,
    stored: Vec<u64>,
}

impl ModelHub {
    fn push(&mut self, after: u64, through: u64) -> Result<u64, ()> {
        if after > self.durable_through {
            return Err(());
        }
        for seq in after + 1..=through {
            if seq > self.durable_through {
                self.stored.push(seq);
                self.durable_through = seq;
            }
        }
        Ok(self.durable_through)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the link does, the machine converges: the hub ends up holding
    /// every event exactly once, nothing is parked, and no wait exceeds the cap.
    #[test]
    fn pushes_converge_exactly_once_through_any_weather(
        head in 1u64..400,
        event_bytes in 100usize..2_000,
        seed in any::<u64>(),
        storms in proptest::collection::vec(weather(), 1..200),
    ) {
        let mut t = Instant::now();
        let mut m = SyncMachine::new(Config::default(), seed);
        let mut hub = ModelHub::default();
        let mut storms = storms.into_iter();
        let mut calls = 0;
        loop {
            calls += 1;
            prop_assert!(calls < 10_000, "no convergence");
            if m.needs_hello() {
                m.begin_hello(t);
                m.on_hello(
                    HelloAnswer { durable_through: hub.durable_through, station_pull_head: 0 },
                    head,
                    t,
                );
                continue;
            }
            let Some(plan) = m.next_push(head) else { break };
            let count = (plan.max_bytes / event_bytes).max(1) as u64;
            let through = (plan.after + count).min(head);
            let bytes = (through - plan.after) as usize * event_bytes;
            let deadline = m.begin_push(Batch { after: plan.after, through, bytes }, t);
            prop_assert!(deadline <= Duration::from_secs(120));
            let outcome = storms.next().unwrap_or(Weather::Clear);
            let action = match outcome {
                Weather::Clear => {
                    let ack = hub.push(plan.after, through).unwrap();
                    t += Duration::from_secs(1);
                    m.on_push_ack(ack, t).unwrap();
                    continue;
                }
                Weather::LostRequest => m.on_error(Call::Push, Fault::Link("cut".into()), t),
                Weather::LostAck => {
                    hub.push(plan.after, through).unwrap();
                    m.on_error(Call::Push, Fault::Link("cut".into()), t)
                }
                Weather::Busy => m.on_error(Call::Push, Fault::Busy("busy".into()), t),
            };
            match action {
                Action::RetryAt(at) | Action::ReconnectAt(at) => {
                    prop_assert!(at <= t + Duration::from_secs(60));
                    t = at;
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert_eq!(hub.durable_through, head);
        prop_assert_eq!(hub.stored, (1..=head).collect::<Vec<_>>());
        prop_assert_eq!(m.parked(), None);
    }
}

#[test]
fn entries_made_durable_while_a_batch_is_read_are_not_mistaken_for_the_hub_running_ahead() {
    let mut t = Instant::now();
    let mut m = in_session(210, 226, t);
    // The plan is made when seq 226 is the durable head; by the time the
    // batch is read from the log, 227 is durable too and goes with it.
    let plan = m.next_push(226).unwrap();
    m.begin_push(
        Batch {
            after: plan.after,
            through: 227,
            bytes: 2_000,
        },
        t,
    );
    t += Duration::from_secs(1);
    let acked = m.on_push_ack(227, t).unwrap();
    assert_eq!(acked.durable_through, 227);
    assert!(m.parked().is_none());
}

#[test]
fn a_second_batch_travels_while_the_first_is_acknowledged() {
    let t = Instant::now();
    let mut m = in_session(0, 100, t);
    let first = m.next_push(100).unwrap();
    assert_eq!(first.after, 0);
    m.begin_push(
        Batch {
            after: 0,
            through: 40,
            bytes: first.max_bytes,
        },
        t,
    );
    // The next batch starts where the one in flight ends.
    let second = m.next_push(100).unwrap();
    assert_eq!(second.after, 40);
    m.begin_push(
        Batch {
            after: 40,
            through: 80,
            bytes: second.max_bytes,
        },
        t + Duration::from_millis(10),
    );
    // Two in flight fill the window.
    assert_eq!(m.pushes_in_flight(), 2);
    assert_eq!(m.next_push(100), None);
    // Acks are taken oldest first; each frees a place in the window.
    let acked = m.on_push_ack(40, t + Duration::from_secs(4)).unwrap();
    assert_eq!((acked.durable_through, acked.newly_acked), (40, 40));
    assert_eq!(m.next_push(100).unwrap().after, 80);
    let acked = m.on_push_ack(80, t + Duration::from_secs(8)).unwrap();
    assert_eq!((acked.durable_through, acked.newly_acked), (80, 40));
    assert_eq!(m.next_push(100).unwrap().after, 80);
    assert_eq!(m.next_push(80), None);
}

#[test]
fn a_queued_batch_is_timed_from_the_ack_it_waited_behind() {
    let t = Instant::now();
    let mut m = in_session(0, 1_000_000, t);
    let plan = m.next_push(1_000_000).unwrap();
    assert_eq!(plan.max_bytes, 32_000);
    for (after, through) in [(0, 10), (10, 20)] {
        m.begin_push(
            Batch {
                after,
                through,
                bytes: 32_000,
            },
            t,
        );
    }
    // Each batch took 2 s of the link: 16,000 B/s, although the second was
    // sent 4 s before its ack.
    m.on_push_ack(10, t + Duration::from_secs(2)).unwrap();
    m.on_push_ack(20, t + Duration::from_secs(4)).unwrap();
    assert_eq!(m.next_push(1_000_000).unwrap().max_bytes, 64_000);
}

#[test]
fn a_failure_forgets_every_batch_in_flight() {
    let t = Instant::now();
    let mut m = in_session(0, 100, t);
    for (after, through) in [(0, 40), (40, 80)] {
        assert_eq!(m.next_push(100).unwrap().after, after);
        m.begin_push(
            Batch {
                after,
                through,
                bytes: 2_000,
            },
            t,
        );
    }
    m.on_push_ack(40, t + Duration::from_secs(1)).unwrap();
    // The second batch reached the hub before the first was stored.
    let gap = tonic::Status::failed_precondition("gap: expected origin_seq 41, got 81");
    let action = m.on_error(Call::Push, fault(&gap), t + Duration::from_secs(2));
    assert!(matches!(action, Action::RetryAt(_)), "{action:?}");
    assert_eq!((m.parked(), m.pushes_in_flight()), (None, 0));
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 40,
            station_pull_head: 0,
        },
        100,
        t,
    );
    assert_eq!(m.next_push(100).unwrap().after, 40);
}

#[test]
fn a_refusal_parks_the_batch_it_answers_not_the_one_before() {
    let t = Instant::now();
    let mut m = in_session(0, 100, t);
    for (after, through) in [(0, 40), (40, 80)] {
        m.next_push(100).unwrap();
        m.begin_push(
            Batch {
                after,
                through,
                bytes: 2_000,
            },
            t,
        );
    }
    m.on_push_ack(40, t + Duration::from_secs(1)).unwrap();
    let status = tonic::Status::invalid_argument("event 57 does not decode");
    let Action::Park(parked) = m.on_error(Call::Push, fault(&status), t) else {
        panic!("a permanent refusal parks");
    };
    assert_eq!((parked.from_seq, parked.through_seq), (41, 80));
}

#[test]
fn a_window_of_one_sends_one_batch_at_a_time() {
    let t = Instant::now();
    let mut m = SyncMachine::new(
        Config {
            push_window: 1,
            ..Config::default()
        },
        7,
    );
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 0,
            station_pull_head: 0,
        },
        100,
        t,
    );
    m.next_push(100).unwrap();
    m.begin_push(
        Batch {
            after: 0,
            through: 40,
            bytes: 2_000,
        },
        t,
    );
    assert_eq!(m.next_push(100), None);
}

/// A machine in session with a station stream whose head is `head`.
fn pulling(head: u64, t: Instant) -> SyncMachine {
    let mut m = machine();
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 0,
            station_pull_head: head,
        },
        0,
        t,
    );
    m
}

fn page(next_cursor: u64, head: u64, bytes: usize) -> PullPage {
    PullPage {
        next_cursor,
        head,
        events: 10,
        bytes,
    }
}

#[test]
fn the_next_page_is_asked_for_once_the_hub_announced_where_the_last_ends() {
    let t = Instant::now();
    let mut m = pulling(1_000, t);
    let first = m.next_pull(0, t).unwrap();
    assert_eq!(first.after, 0);
    assert_eq!(
        m.next_pull(0, t),
        None,
        "where the first page ends is not known yet"
    );
    m.on_pull_announced(400, t).unwrap();
    assert_eq!(
        m.next_pull(300, t),
        None,
        "only from where it was announced to end"
    );
    let second = m.next_pull(400, t).unwrap();
    assert_eq!(second.after, 400);
    assert!(
        second.deadline > first.deadline,
        "the second page comes down after the first"
    );
    assert_eq!(m.pulls_in_flight(), 2);
    m.on_pull_announced(800, t).unwrap();
    assert_eq!(m.next_pull(800, t), None, "two pages in flight at most");

    assert_eq!(
        m.on_pull(page(400, 1_000, 100), t).unwrap(),
        PullProgress::More
    );
    assert_eq!(m.pulls_in_flight(), 1);
    let third = m.next_pull(800, t).unwrap();
    assert_eq!(third.after, 800);
    assert_eq!(
        m.on_pull(page(800, 1_000, 100), t).unwrap(),
        PullProgress::More
    );
    assert_eq!(
        m.on_pull(page(1_000, 1_000, 100), t).unwrap(),
        PullProgress::CaughtUp
    );
    assert_eq!(m.pulls_in_flight(), 0);
    assert_eq!(m.next_pull(1_000, t), None);
}

#[test]
fn a_window_of_one_pulls_one_page_at_a_time() {
    let t = Instant::now();
    let mut m = SyncMachine::new(
        Config {
            pull_window: 1,
            ..Config::default()
        },
        7,
    );
    m.begin_hello(t);
    m.on_hello(
        HelloAnswer {
            durable_through: 0,
            station_pull_head: 1_000,
        },
        0,
        t,
    );
    m.next_pull(0, t).unwrap();
    m.on_pull_announced(400, t).unwrap();
    assert_eq!(m.next_pull(400, t), None);
    m.on_pull(page(400, 1_000, 100), t).unwrap();
    assert!(m.next_pull(400, t).is_some());
}

#[test]
fn a_page_that_ends_elsewhere_than_announced_is_refused_and_forgets_every_pull() {
    let t = Instant::now();
    let mut m = pulling(1_000, t);
    m.next_pull(0, t).unwrap();
    m.on_pull_announced(400, t).unwrap();
    m.next_pull(400, t).unwrap();
    let violation = m.on_pull(page(350, 1_000, 100), t).unwrap_err();
    assert!(matches!(violation.action, Action::ReconnectAt(_)));
    assert!(
        violation.reason.contains("announced cursor 400"),
        "{}",
        violation.reason
    );
    assert_eq!(m.pulls_in_flight(), 0);
    assert!(
        m.needs_hello(),
        "the next session starts from the device's cursor"
    );

    let mut m = pulling(1_000, t);
    m.next_pull(300, t).unwrap();
    let violation = m.on_pull_announced(200, t).unwrap_err();
    assert!(
        violation.reason.contains("after 300"),
        "{}",
        violation.reason
    );
    assert_eq!(m.pulls_in_flight(), 0);
    assert!(
        m.on_pull_announced(400, t).is_err(),
        "nothing awaits it now"
    );
}

#[test]
fn a_failed_pull_forgets_the_pages_in_flight_and_halves_the_downlink() {
    let t = Instant::now();
    let mut m = pulling(1_000, t);
    m.next_pull(0, t).unwrap();
    m.on_pull_announced(400, t).unwrap();
    m.next_pull(400, t).unwrap();
    let before = m.downlink_bytes_per_sec();
    let action = m.on_error(Call::Pull, Fault::Link("cut".into()), t);
    assert!(matches!(action, Action::ReconnectAt(_)));
    assert_eq!(m.pulls_in_flight(), 0);
    assert_eq!(m.downlink_bytes_per_sec(), before / 2.0);
}

#[test]
fn the_downlink_is_measured_over_pages_that_kept_it_busy_less_the_round_trip() {
    let mut t = Instant::now();
    let mut m = machine();
    m.begin_hello(t);
    // A 250 ms round trip.
    m.on_hello(
        HelloAnswer {
            durable_through: 0,
            station_pull_head: 100_000,
        },
        0,
        t + Duration::from_millis(250),
    );
    t += Duration::from_millis(250);
    let first = m.next_pull(0, t).unwrap();
    assert_eq!(first.max_bytes, 32_000);
    m.on_pull_announced(100, t + Duration::from_millis(250))
        .unwrap();
    let second = m.next_pull(100, t + Duration::from_millis(250)).unwrap();
    assert_eq!(second.max_bytes, 32_000, "nothing measured yet");
    // The first page took its round trip and 0.5 s: 64 kB/s.
    m.on_pull(page(100, 100_000, 32_000), t + Duration::from_millis(750))
        .unwrap();
    assert!((m.downlink_bytes_per_sec() - 64_000.0).abs() < 1e-6);
    // The second came down right behind it, the two in 1 s of airtime:
    // 64 kB/s again, though the second alone seemed to take 0.5 s.
    m.on_pull(page(200, 100_000, 32_000), t + Duration::from_millis(1_250))
        .unwrap();
    assert!((m.downlink_bytes_per_sec() - 64_000.0).abs() < 1e-6);
    let next = m.next_pull(200, t).unwrap().max_bytes;
    assert!(next.abs_diff(256_000) <= 1, "{next}");
}
