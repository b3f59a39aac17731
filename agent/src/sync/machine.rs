//! The sans-IO core of sync: every decision about one device's sessions with
//! the hub, as a pure state machine. It never touches a socket, a clock or the
//! disk; the tonic edge ([`super::edge`]) feeds it answers, failures and the
//! current [`Instant`], and does what it says.
//!
//! # How the edge drives it
//!
//! ```text
//! new_round ─► begin_hello ─► on_hello ─┬► next_push ─► begin_push ─► on_push_ack ─┐
//!                                       │      ▲   (up to push_window in flight)  │
//!                                       │      └──────────────────────────────────┘
//!                                       └► next_pull ─► on_pull_announced ─► on_pull ─┐
//!                                              ▲   (up to pull_window in flight)          │
//!                                              └──────────────────────────────────────────┘
//!                                                    (until both say caught up)
//! any call failing ─► on_error ─► Action: RetryAt | ReconnectAt | Park | Stop
//! ```
//!
//! # Invariants
//!
//! - Push always resumes from the hub's `durable_through` as last answered in
//!   this session (Hello or ack), never from a local guess: a batch lost with
//!   a dropped link is sent again, and the hub ignores what it already holds.
//!   After any failure the session is forgotten and Hello asks again.
//! - Up to [`Config::push_window`] batches are in flight at once, each
//!   starting where the one before it ends, so the uplink carries the next
//!   batch while the hub acknowledges the last. Acks are cumulative and taken
//!   in the order the batches were sent; a failure forgets every batch in
//!   flight, and the next session resumes from the hub's word.
//! - Up to [`Config::pull_window`] catch-up pulls are in flight at once. A
//!   pull is asked for only from where the last pull in flight is known to
//!   end, from the hub's headers ([`SyncMachine::on_pull_announced`]), which
//!   cross the link before the page: so the next page travels while the
//!   last comes down, and pages are taken, checked against what was
//!   announced, and stored in the order they were asked for. A failure, or
//!   a page that ends elsewhere than announced, forgets every pull in flight.
//! - The downlink rate is measured over a run of pulls that kept the link
//!   busy (pages in flight together share it), less the round trip it
//!   began with.
//! - Nothing is pushed while a batch is parked; pulling is never blocked by it.
//! - A batch is sized to [`Config::target_airtime`] of the measured uplink
//!   rate, within [`Config::min_batch_bytes`] ..= [`Config::max_batch_bytes`];
//!   its deadline grows with its size and never exceeds [`Config::deadline_cap`].
//! - The rate is learned only from acknowledged batches that filled at least
//!   half their budget (a lone event says more about latency than rate), each
//!   timed from when it was sent or, when it queued behind another batch,
//!   from that batch's ack; and halved when the link fails mid-push.
//! - Retry delays follow [`Backoff`]: capped, fully jittered, reset only after
//!   progress (an acknowledged push or an answered pull), so a link that
//!   answers Hello but drops every batch still backs off.
//! - Given the same seed and the same inputs, the same outputs: tests replay it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::airtime::{self, Throughput};
use super::backoff::Backoff;

/// The knobs of the state machine. Defaults suit a 2G/3G phone.
#[derive(Debug, Clone)]
pub struct Config {
    /// Rate assumed in both directions before anything is measured, in
    /// encoded bytes per second (8,000 B/s = 64 kbit/s).
    pub initial_bytes_per_sec: f64,
    /// Weight of a new rate sample in the moving average.
    pub ewma_weight: f64,
    /// The airtime a batch or pulled page should take at the measured rate.
    pub target_airtime: Duration,
    /// Pushed batches in flight at once, at least one. Two keep the uplink
    /// busy across the round trip of an acknowledgement.
    pub push_window: usize,
    /// The smallest batch budget, however slow the link looks.
    pub min_batch_bytes: usize,
    /// The largest batch budget, however fast the link looks; it also caps
    /// [`Self::min_batch_bytes`].
    pub max_batch_bytes: usize,
    /// Catch-up pulls in flight at once, at least one. With two, the next
    /// page is asked for as soon as the hub's headers say where the last
    /// one ends, so it is on its way while the last is still coming down.
    pub pull_window: usize,
    /// Events per pulled page, at most. The default is the hub's own cap,
    /// so pages are sized by airtime (bytes): a count cap below it made
    /// pages short on a fast downlink, and each page costs a round trip.
    pub pull_events: u32,
    /// A deadline allows this many times the airtime the bytes should take.
    pub deadline_safety: f64,
    /// The least any call is allowed, for the round trip and the hub's fsync,
    /// before the airtime is added (raised to 3 × the measured Hello time).
    pub deadline_floor: Duration,
    /// No call is allowed longer than this (a long poll adds its wait).
    pub deadline_cap: Duration,
    /// Ceiling of the first retry delay after progress.
    pub backoff_base: Duration,
    /// Ceiling of every retry delay.
    pub backoff_cap: Duration,
    /// How long an idle pull waits on the hub for new events.
    pub long_poll: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            initial_bytes_per_sec: 8_000.0,
            ewma_weight: 0.3,
            target_airtime: Duration::from_secs(4),
            push_window: 2,
            min_batch_bytes: 2 * 1024,
            max_batch_bytes: 1024 * 1024,
            pull_window: 2,
            pull_events: 5_000,
            deadline_safety: 3.0,
            deadline_floor: Duration::from_secs(5),
            deadline_cap: Duration::from_secs(120),
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(60),
            long_poll: Duration::from_secs(25),
        }
    }
}

/// The calls the edge makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Opening the connection (TCP, TLS, HTTP/2).
    Connect,
    /// `Hello`.
    Hello,
    /// `Push`.
    Push,
    /// `Pull`, catching up or long-polling.
    Pull,
}

/// How a call failed, as the edge classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The connection failed, stalled or was cut: nothing is known about the
    /// call, and the connection is not to be trusted.
    Link(String),
    /// The hub answered that it cannot do it now; trying again later may work.
    Busy(String),
    /// The hub refused the request for good: sent again it fails again.
    Refused(String),
    /// The hub refused the caller (its token), not the request.
    Denied(String),
}

impl Fault {
    /// The description carried by the fault.
    pub fn reason(&self) -> &str {
        match self {
            Fault::Link(r) | Fault::Busy(r) | Fault::Refused(r) | Fault::Denied(r) => r,
        }
    }
}

/// What the edge does after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Keep the connection; at this instant start again with Hello.
    RetryAt(Instant),
    /// Drop the connection; at this instant connect again and start with Hello.
    ReconnectAt(Instant),
    /// The batch is parked: persist it, stop pushing, go on pulling.
    Park(Parked),
    /// Stop this round with the error; only a later round tries again.
    Stop(String),
}

/// A range of own events the hub refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// First own seq of the refused range.
    pub from_seq: u64,
    /// Last own seq of the refused range.
    pub through_seq: u64,
    /// Why, in the hub's words.
    pub reason: String,
}

/// The hub's answer to Hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloAnswer {
    /// The hub holds this origin's events `1 ..= durable_through`.
    pub durable_through: u64,
    /// The station's newest hub position.
    pub station_pull_head: u64,
}

/// What the next push may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPlan {
    /// Send own events from `after + 1`: the hub's `durable_through`.
    pub after: u64,
    /// Encoded bytes the batch should not exceed (a single larger event
    /// still goes alone).
    pub max_bytes: usize,
    /// The deadline a batch of `max_bytes` would get.
    pub deadline: Duration,
}

/// The batch the edge actually built from a [`BatchPlan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// The plan's `after`.
    pub after: u64,
    /// The last own seq in the batch.
    pub through: u64,
    /// The encoded size of the request.
    pub bytes: usize,
}

/// An acknowledged push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushAcked {
    /// The hub's new `durable_through` for this origin.
    pub durable_through: u64,
    /// How many own events it acknowledged for the first time.
    pub newly_acked: u64,
}

/// What the next pull asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullPlan {
    /// The pull cursor: events after this hub position.
    pub after: u64,
    /// At most this many events.
    pub max_events: u32,
    /// At most about this many encoded bytes.
    pub max_bytes: u32,
    /// How long the hub may wait for new events (zero: answer at once).
    pub wait: Duration,
    /// The deadline of the call, the wait included.
    pub deadline: Duration,
}

/// A pulled page, as the edge received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullPage {
    /// The cursor to send next time.
    pub next_cursor: u64,
    /// The station's newest hub position.
    pub head: u64,
    /// Events in the page.
    pub events: usize,
    /// The encoded size of the response.
    pub bytes: usize,
}

/// Whether pulling is done for this round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullProgress {
    /// The hub has more after this page.
    More,
    /// The device holds everything up to the hub's head (or the hub has
    /// nothing it will give after this cursor).
    CaughtUp,
}

/// An answer that breaks the protocol, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// What the edge does next.
    pub action: Action,
    /// What was wrong with the answer.
    pub reason: String,
}

/// What is known about the hub within one session (one connection, one Hello).
#[derive(Debug, Clone, Copy)]
struct Session {
    /// The hub's `durable_through` for this origin, from Hello or the last ack.
    durable_through: u64,
    /// The station's newest hub position, as last answered.
    pull_head: u64,
}

/// The Hello in flight, kept to measure it. Pushes and pulls in flight are
/// kept apart, each in the order they were sent.
#[derive(Debug, Clone, Copy)]
enum InFlight {
    Hello { sent_at: Instant },
}

/// A pull sent and not yet answered.
#[derive(Debug, Clone, Copy)]
struct PullInFlight {
    /// What it asked for.
    plan: PullPlan,
    /// Where its page ends, as the hub's headers said ahead of the page; the
    /// page must agree, and the next pull may start there.
    announced: Option<u64>,
}

/// The sync state machine of one device. See the module docs.
#[derive(Debug, Clone)]
pub struct SyncMachine {
    /// The knobs.
    config: Config,
    /// Measured uplink rate: sizes batches and push deadlines.
    uplink: Throughput,
    /// Measured downlink rate: sizes pulled pages and pull deadlines.
    downlink: Throughput,
    /// Moving average of Hello's round trip, raising the deadline floor on
    /// slow links.
    rtt: Option<Duration>,
    /// Retry delays.
    backoff: Backoff,
    /// `None` until Hello is answered, and again after a reconnect.
    session: Option<Session>,
    /// The batch refused for good; while set nothing is pushed.
    parked: Option<Parked>,
    /// The Hello in flight.
    in_flight: Option<InFlight>,
    /// The pulls in flight, oldest first: a long poll alone, or up to
    /// [`Config::pull_window`] catch-up pulls, each starting where the one
    /// before it was announced to end.
    pulls: VecDeque<PullInFlight>,
    /// Since when the downlink has been kept busy by pulls following each
    /// other with no gap, and the bytes it carried since: the rate is
    /// measured over the whole run, since pages in flight together share
    /// the link and a page's own time says little.
    pull_run: Option<(Instant, u64)>,
    /// The batches in flight with when each was sent, oldest first.
    pushes: VecDeque<(Batch, Instant)>,
    /// When the last push was acknowledged: a batch sent before it queued
    /// behind the acknowledged one, and its airtime counts from here.
    last_push_ack: Option<Instant>,
    /// The budget of the last push plan, to tell full batches from tails.
    planned_push_bytes: usize,
    /// The highest own seq the edge said it holds.
    local_head: u64,
    /// A cursor at which the hub returned nothing although its head is
    /// further: no more pulling from it this round.
    pull_stalled_at: Option<u64>,
}

impl SyncMachine {
    /// A machine that has measured nothing yet; `seed` drives the jitter.
    pub fn new(config: Config, seed: u64) -> Self {
        let uplink = Throughput::assume(config.initial_bytes_per_sec, config.ewma_weight);
        let downlink = uplink.clone();
        let backoff = Backoff::new(config.backoff_base, config.backoff_cap, seed);
        Self {
            config,
            uplink,
            downlink,
            rtt: None,
            backoff,
            session: None,
            parked: None,
            in_flight: None,
            pulls: VecDeque::new(),
            pull_run: None,
            pushes: VecDeque::new(),
            last_push_ack: None,
            planned_push_bytes: 0,
            local_head: 0,
            pull_stalled_at: None,
        }
    }

    /// Resumes the uplink rate measured in an earlier run.
    pub fn with_uplink(mut self, bytes_per_sec: u64) -> Self {
        // u64 → f64 is exact below 2^53 B/s.
        self.uplink = Throughput::resume(bytes_per_sec as f64, self.config.ewma_weight);
        self
    }

    /// Resumes a batch parked in an earlier run: nothing is pushed until
    /// [`Self::clear_parked`].
    pub fn with_parked(mut self, parked: Option<Parked>) -> Self {
        self.parked = parked;
        self
    }

    /// The knobs in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts a round: the next call is Hello (on the same connection if it
    /// still stands). Rates and the backoff carry over.
    pub fn new_round(&mut self) {
        self.session = None;
        self.in_flight = None;
        self.forget_pushes();
        self.forget_pulls();
        self.pull_stalled_at = None;
    }

    /// Whether Hello must be answered before anything else.
    pub fn needs_hello(&self) -> bool {
        self.session.is_none()
    }

    /// Marks Hello as sent and returns its deadline.
    pub fn begin_hello(&mut self, now: Instant) -> Duration {
        self.in_flight = Some(InFlight::Hello { sent_at: now });
        self.deadline(256, &self.uplink)
    }

    /// Takes Hello's answer; `local_head` is the device's highest own seq.
    /// Returns a newly parked range when the hub holds more of this origin
    /// than the device has: the device's next entries would reuse seqs the hub
    /// already holds and be ignored, so pushing must stop until someone looks.
    pub fn on_hello(
        &mut self,
        answer: HelloAnswer,
        local_head: u64,
        now: Instant,
    ) -> Option<Parked> {
        if let Some(InFlight::Hello { sent_at }) = self.in_flight.take() {
            let sample = now.saturating_duration_since(sent_at);
            let w = self.config.ewma_weight.clamp(0.01, 1.0);
            self.rtt = Some(match self.rtt {
                Some(rtt) => rtt.mul_f64(1.0 - w) + sample.mul_f64(w),
                None => sample,
            });
        }
        self.local_head = local_head;
        self.session = Some(Session {
            durable_through: answer.durable_through,
            pull_head: answer.station_pull_head,
        });
        if answer.durable_through > local_head && self.parked.is_none() {
            let parked = Parked {
                from_seq: local_head.saturating_add(1),
                through_seq: answer.durable_through,
                reason: format!(
                    "the hub holds seq {} of this device, which only has {local_head}: \
                     this store is older than the hub's copy of it (restored from a backup?), \
                     and new entries would reuse seqs the hub already holds",
                    answer.durable_through
                ),
            };
            self.parked = Some(parked.clone());
            return Some(parked);
        }
        None
    }

    /// The next batch to push, given the highest own seq durable on the
    /// device: it starts after the hub's `durable_through` or, with batches
    /// in flight, after the last of them. `None` when caught up, parked,
    /// before Hello, or with [`Config::push_window`] batches in flight.
    pub fn next_push(&mut self, local_durable_seq: u64) -> Option<BatchPlan> {
        self.local_head = self.local_head.max(local_durable_seq);
        let session = self.session?;
        if self.parked.is_some() || self.pushes.len() >= self.config.push_window.max(1) {
            return None;
        }
        let after = self
            .pushes
            .back()
            .map_or(session.durable_through, |(batch, _)| batch.through)
            .max(session.durable_through);
        if after >= local_durable_seq {
            return None;
        }
        let max_bytes = airtime::batch_bytes(
            &self.uplink,
            self.config.target_airtime,
            self.config.min_batch_bytes,
            self.config.max_batch_bytes,
        );
        self.planned_push_bytes = max_bytes;
        Some(BatchPlan {
            after,
            max_bytes,
            deadline: self.deadline(max_bytes + self.bytes_in_flight(), &self.uplink),
        })
    }

    /// Marks a batch as sent and returns its deadline, sized from its bytes
    /// and those of the batches it queues behind.
    pub fn begin_push(&mut self, batch: Batch, now: Instant) -> Duration {
        // The batch is read after `next_push`; entries that became durable in
        // between may be in it, and the device holds all it sends.
        self.local_head = self.local_head.max(batch.through);
        self.pushes.push_back((batch, now));
        self.deadline(self.bytes_in_flight(), &self.uplink)
    }

    fn forget_pushes(&mut self) {
        self.pushes.clear();
    }

    /// Encoded bytes of the batches in flight.
    fn bytes_in_flight(&self) -> usize {
        self.pushes
            .iter()
            .fold(0usize, |sum, (batch, _)| sum.saturating_add(batch.bytes))
    }

    /// Batches sent and not yet acknowledged.
    pub fn pushes_in_flight(&self) -> usize {
        self.pushes.len()
    }

    /// Takes the hub's acknowledgement of the oldest batch in flight.
    ///
    /// # Errors
    /// A [`Violation`] when the ack does not advance past the batch's start
    /// (the hub went backwards: reconnect and ask again) or claims more than
    /// the device holds (park).
    pub fn on_push_ack(
        &mut self,
        durable_through: u64,
        now: Instant,
    ) -> Result<PushAcked, Violation> {
        let Some(session) = self.session else {
            return Err(self.violation("an ack outside a session".into(), now));
        };
        let in_flight = self.pushes.pop_front();
        let after = in_flight.map_or(session.durable_through, |(b, _)| b.after);
        if durable_through <= after {
            let reason =
                format!("the hub acknowledged durable_through {durable_through}, not past {after}");
            return Err(self.violation(reason, now));
        }
        if durable_through > self.local_head {
            let parked = Parked {
                from_seq: after.saturating_add(1),
                through_seq: durable_through,
                reason: format!(
                    "the hub acknowledged seq {durable_through} of this device, which only has {}",
                    self.local_head
                ),
            };
            self.parked = Some(parked.clone());
            return Err(Violation {
                reason: parked.reason.clone(),
                action: Action::Park(parked),
            });
        }
        if let Some((batch, sent_at)) = in_flight
            && batch.bytes.saturating_mul(2) >= self.planned_push_bytes
        {
            let started = self.last_push_ack.map_or(sent_at, |ack| ack.max(sent_at));
            self.uplink
                .observe(batch.bytes as u64, now.saturating_duration_since(started));
        }
        self.last_push_ack = Some(now);
        let newly_acked = durable_through.saturating_sub(session.durable_through);
        self.session = Some(Session {
            durable_through: durable_through.max(session.durable_through),
            ..session
        });
        self.backoff.reset();
        Ok(PushAcked {
            durable_through,
            newly_acked,
        })
    }

    /// The next catch-up pull from `cursor`, marked as sent; `None` before
    /// Hello, once caught up with the head last answered, with
    /// [`Config::pull_window`] pulls in flight, or when `cursor` is not where
    /// the last pull in flight was announced to end (its headers have not
    /// come yet: the next page cannot be asked for before it is known where
    /// the last one ends).
    pub fn next_pull(&mut self, cursor: u64, now: Instant) -> Option<PullPlan> {
        let session = self.session?;
        if cursor >= session.pull_head || self.pull_stalled_at == Some(cursor) {
            return None;
        }
        if self.pulls.len() >= self.config.pull_window.max(1) {
            return None;
        }
        if let Some(last) = self.pulls.back()
            && (!last.plan.wait.is_zero() || last.announced != Some(cursor))
        {
            return None;
        }
        Some(self.begin_pull(cursor, Duration::ZERO, now))
    }

    /// A pull from `cursor` that does not wait, marked as sent, even when
    /// caught up with the station's stream: for what else a pull carries
    /// (the district directory's next page); `None` before Hello or with a
    /// pull in flight.
    pub fn pull_now(&mut self, cursor: u64, now: Instant) -> Option<PullPlan> {
        self.session?;
        if !self.pulls.is_empty() {
            return None;
        }
        Some(self.begin_pull(cursor, Duration::ZERO, now))
    }

    /// A long poll from `cursor` for when the device is caught up, marked as
    /// sent; `None` before Hello or with a pull in flight.
    pub fn long_poll(&mut self, cursor: u64, now: Instant) -> Option<PullPlan> {
        self.session?;
        if !self.pulls.is_empty() {
            return None;
        }
        Some(self.begin_pull(cursor, self.config.long_poll, now))
    }

    fn begin_pull(&mut self, cursor: u64, wait: Duration, now: Instant) -> PullPlan {
        let max_bytes = airtime::batch_bytes(
            &self.downlink,
            self.config.target_airtime,
            self.config.min_batch_bytes,
            self.config.max_batch_bytes,
        );
        // A page asked for while others are coming down arrives after them.
        let queued = self.pulls.iter().fold(0usize, |sum, p| {
            sum.saturating_add(p.plan.max_bytes as usize)
        });
        let plan = PullPlan {
            after: cursor,
            max_events: self.config.pull_events.max(1),
            max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
            wait,
            deadline: self
                .deadline(max_bytes.saturating_add(queued), &self.downlink)
                .saturating_add(wait),
        };
        if self.pulls.is_empty() {
            self.pull_run = Some((now, 0));
        }
        self.pulls.push_back(PullInFlight {
            plan,
            announced: None,
        });
        plan
    }

    fn forget_pulls(&mut self) {
        self.pulls.clear();
        self.pull_run = None;
    }

    /// Pulls sent and not yet answered.
    pub fn pulls_in_flight(&self) -> usize {
        self.pulls.len()
    }

    /// Takes the hub's word, from the headers of the oldest pull in flight
    /// whose end is not known yet, that its page ends at `next_cursor`.
    ///
    /// # Errors
    /// A [`Violation`] when no pull awaits it, or the cursor lies before
    /// the pull's start: the edge must drop every pull in flight.
    pub fn on_pull_announced(&mut self, next_cursor: u64, now: Instant) -> Result<(), Violation> {
        let Some(pull) = self.pulls.iter_mut().find(|p| p.announced.is_none()) else {
            return Err(self.violation("a page announced that nobody asked for".into(), now));
        };
        if next_cursor < pull.plan.after {
            let reason = format!(
                "the hub announced cursor {next_cursor} for a pull after {}",
                pull.plan.after
            );
            return Err(self.violation(reason, now));
        }
        pull.announced = Some(next_cursor);
        Ok(())
    }

    /// Takes the page of the oldest pull in flight, before the edge stores
    /// it.
    ///
    /// # Errors
    /// A [`Violation`] when the page moves the cursor backwards, carries
    /// events without moving it, or ends elsewhere than its headers said:
    /// the edge must not store it, and drops every pull in flight.
    pub fn on_pull(&mut self, page: PullPage, now: Instant) -> Result<PullProgress, Violation> {
        let Some(session) = self.session else {
            return Err(self.violation("a page outside a session".into(), now));
        };
        let Some(PullInFlight {
            plan, announced, ..
        }) = self.pulls.pop_front()
        else {
            return Err(self.violation("a page nobody asked for".into(), now));
        };
        if page.next_cursor < plan.after || (page.events > 0 && page.next_cursor == plan.after) {
            let reason = format!(
                "the hub answered cursor {} with {} events to a pull after {}",
                page.next_cursor, page.events, plan.after
            );
            return Err(self.violation(reason, now));
        }
        if let Some(announced) = announced
            && announced != page.next_cursor
        {
            let reason = format!(
                "the hub announced cursor {announced} and sent a page ending at {}",
                page.next_cursor
            );
            return Err(self.violation(reason, now));
        }
        self.session = Some(Session {
            pull_head: page.head,
            ..session
        });
        if let Some((since, bytes)) = self.pull_run.as_mut() {
            *bytes = bytes.saturating_add(page.bytes as u64);
            if plan.wait.is_zero() && page.bytes.saturating_mul(2) >= plan.max_bytes as usize {
                // The run's time less the round trip it began with: what
                // the bytes themselves took.
                let elapsed = now.saturating_duration_since(*since);
                let rtt = self.rtt.unwrap_or_default();
                let airtime = elapsed.saturating_sub(rtt).max(elapsed / 2);
                self.downlink.observe(*bytes, airtime);
            }
        }
        if self.pulls.is_empty() {
            self.pull_run = None;
        }
        self.backoff.reset();
        if page.next_cursor >= page.head {
            return Ok(PullProgress::CaughtUp);
        }
        // A page may be empty yet move the cursor: the hub passes over the
        // device's own events. Only a page that moves nothing is a stall.
        if page.events == 0 && page.next_cursor == plan.after {
            self.pull_stalled_at = Some(page.next_cursor);
            return Ok(PullProgress::CaughtUp);
        }
        Ok(PullProgress::More)
    }

    /// Decides what follows a failed call.
    ///
    /// - [`Fault::Link`]: the session is forgotten; reconnect after a backoff
    ///   delay. A push or catch-up pull cut mid-transfer halves that
    ///   direction's rate.
    /// - [`Fault::Busy`]: same connection, after a backoff delay, starting
    ///   again with Hello so that a push resumes from the hub's word.
    /// - [`Fault::Refused`] on a push: the batch in flight is parked.
    ///   On anything else: stop the round.
    /// - [`Fault::Denied`]: stop the round; nothing is parked, since the
    ///   batch is not at fault.
    pub fn on_error(&mut self, call: Call, fault: Fault, now: Instant) -> Action {
        self.in_flight = None;
        let pushed = self.pushes.pop_front();
        self.forget_pushes();
        let pulled = self.pulls.pop_front();
        self.forget_pulls();
        match fault {
            Fault::Link(_) => {
                match (call, pulled) {
                    (Call::Push, _) if pushed.is_some() => self.uplink.penalise(),
                    (Call::Pull, Some(pull)) if pull.plan.wait.is_zero() => {
                        self.downlink.penalise();
                    }
                    _ => {}
                }
                self.session = None;
                Action::ReconnectAt(later(now, self.backoff.next_delay()))
            }
            Fault::Busy(_) => {
                self.session = None;
                Action::RetryAt(later(now, self.backoff.next_delay()))
            }
            Fault::Denied(reason) => Action::Stop(reason),
            Fault::Refused(reason) => match (call, pushed) {
                (Call::Push, Some((batch, _))) => {
                    self.park(batch.after.saturating_add(1), batch.through, reason)
                }
                (Call::Push, _) => {
                    let from = self
                        .session
                        .map_or(0, |s| s.durable_through)
                        .saturating_add(1);
                    self.park(from, self.local_head.max(from), reason)
                }
                _ => Action::Stop(reason),
            },
        }
    }

    fn park(&mut self, from_seq: u64, through_seq: u64, reason: String) -> Action {
        let parked = Parked {
            from_seq,
            through_seq,
            reason,
        };
        self.parked = Some(parked.clone());
        Action::Park(parked)
    }

    /// An answer that breaks the protocol is handled like a cut link, except
    /// that the rates are left alone: reconnect, ask Hello again, back off.
    fn violation(&mut self, reason: String, now: Instant) -> Violation {
        self.in_flight = None;
        self.forget_pushes();
        self.forget_pulls();
        self.session = None;
        Violation {
            action: Action::ReconnectAt(later(now, self.backoff.next_delay())),
            reason,
        }
    }

    /// Forgets the parked batch: the next round pushes it again.
    pub fn clear_parked(&mut self) {
        self.parked = None;
    }

    /// The parked batch, if any.
    pub fn parked(&self) -> Option<&Parked> {
        self.parked.as_ref()
    }

    /// The hub's `durable_through` in the current session.
    pub fn durable_through(&self) -> Option<u64> {
        self.session.map(|s| s.durable_through)
    }

    /// The station's newest hub position in the current session.
    pub fn pull_head(&self) -> Option<u64> {
        self.session.map(|s| s.pull_head)
    }

    /// The uplink rate estimate, in encoded bytes per second.
    pub fn uplink_bytes_per_sec(&self) -> f64 {
        self.uplink.bytes_per_sec()
    }

    /// Whether the uplink rate was measured (in this run or an earlier one).
    pub fn uplink_measured(&self) -> bool {
        self.uplink.is_measured()
    }

    /// The downlink rate estimate, in encoded bytes per second.
    pub fn downlink_bytes_per_sec(&self) -> f64 {
        self.downlink.bytes_per_sec()
    }

    /// Failures since the last progress.
    pub fn failures(&self) -> u32 {
        self.backoff.failures()
    }

    /// The ceiling the next retry delay is drawn under.
    pub fn backoff_ceiling(&self) -> Duration {
        self.backoff.ceiling()
    }

    /// The deadline for a call carrying `bytes` at the uplink rate.
    pub fn push_deadline(&self, bytes: usize) -> Duration {
        self.deadline(bytes, &self.uplink)
    }

    fn deadline(&self, bytes: usize, rate: &Throughput) -> Duration {
        let allowance = self
            .config
            .deadline_floor
            .max(self.rtt.unwrap_or_default().saturating_mul(3));
        airtime::deadline(
            bytes,
            rate,
            allowance,
            self.config.deadline_safety,
            self.config.deadline_cap,
        )
    }
}

/// `now + delay`, or `now` where the sum would not fit an [`Instant`].
fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay).unwrap_or(now)
}
