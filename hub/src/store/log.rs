//! The hub's log as a contract: [`HubLog`], what every implementation
//! promises, and the types its operations exchange. [`super::HubStore`] (sled,
//! the embedded default) and [`super::memory::MemoryLog`] (the reference, in
//! memory) implement it; a model-based test runs the same operations
//! against both and checks they agree.

use station_proto::Event;
use station_proto::ids::Uuid;

use super::HubError;
use crate::ingest::{OriginState, Quarantined};

/// The outcome of a push, per origin.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PushOutcome {
    /// `durable_through` of each origin in the batch, after it.
    pub acks: Vec<(Uuid, u64)>,
    /// Events stored in the log.
    pub stored: usize,
    /// Events put in quarantine.
    pub quarantined: usize,
    /// Events at or below `durable_through`, ignored.
    pub duplicates: usize,
}

/// One event of the log, with where and when the hub took it in.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedEvent {
    /// The event's hub position.
    pub hub_seq: u64,
    /// Hub wall clock when the push that carried it arrived, ms; `None` for
    /// events stored before the hub kept it.
    pub received_at_ms: Option<i64>,
    /// The event as stored (validated, text in NFC).
    pub event: Event,
}

/// A page of one station's stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PullPage {
    /// Events with their hub positions.
    pub events: Vec<(u64, Event)>,
    /// The cursor to pull after next.
    pub next_cursor: u64,
    /// The station's newest hub position.
    pub head: u64,
}

/// Positions one pull looks at, at most, so a long run of the caller's own
/// events is passed over in bounded steps.
pub const PULL_MAX_SCANNED: usize = 20_000;

/// The hub's log: every station's events, stored once, in hub order.
///
/// # Contract
///
/// - **Ordering.** Accepted events get hub positions `1, 2, 3, …` without
///   gaps, in the order their pushes were applied and, within a push, in
///   batch order. A position never changes or goes away.
/// - **Durability.** [`HubLog::push`] returns `Ok` only once everything the
///   push changed is durable (for sled: written, flushed and fdatasynced);
///   an acknowledged `durable_through` survives a crash. A push that returns
///   an error changed nothing that a reader or a restart can see.
/// - **Idempotence.** For each origin, seqs `1..=durable_through` are held,
///   each once, in the log or in quarantine, and nothing above. An event
///   whose seq is at or below `durable_through` is ignored (counted in
///   [`PushOutcome::duplicates`]), whatever it carries: the event first held
///   at that seq stays. An event id is held once: an event whose id the log
///   holds, pushed at a new seq, goes to quarantine.
/// - **Gap refusal.** A seq above `durable_through + 1` refuses the whole
///   push with [`HubError::Gap`]; an `origin_id` that is not 16 bytes with
///   [`HubError::Malformed`]. Nothing of a refused push is kept.
/// - **Quarantine.** A new seq whose event the validator refuses, whose
///   station is outside the roster, or whose event id is held takes its seq
///   (it is acknowledged) and is kept apart with the reason, as received.
/// - **Pull.** [`HubLog::pull_for`] returns the station's events with
///   positions above `after`, in hub order: at most `max_events`, at most
///   `max_bytes` of encoded events (at least one), looking at no more than
///   [`PULL_MAX_SCANNED`] positions; `next_cursor` is the last position
///   looked at (events of `skip_origin` are looked at, not returned), and
///   `head` the station's newest position.
pub trait HubLog {
    /// Decides and stores a pushed batch (see the contract and
    /// [`crate::ingest`]), stamping accepted events with `now_ms`; returns
    /// once durable.
    ///
    /// # Errors
    /// [`HubError::Gap`] or [`HubError::Malformed`] refuse the batch; other
    /// errors mean nothing was acknowledged.
    fn push(
        &self,
        events: Vec<Event>,
        today: chrono::NaiveDate,
        now_ms: i64,
    ) -> Result<PushOutcome, HubError>;

    /// Records a device's `Hello`: its head and clock.
    ///
    /// # Errors
    /// Storage errors.
    fn hello(
        &self,
        origin: Uuid,
        station_code: &str,
        head_seq: u64,
        device_clock_ms: i64,
        now_ms: i64,
    ) -> Result<OriginState, HubError>;

    /// The state of one origin (default when never seen).
    ///
    /// # Errors
    /// Storage errors.
    fn origin(&self, origin: Uuid) -> Result<OriginState, HubError>;

    /// Every origin the hub has heard of, by id.
    ///
    /// # Errors
    /// Storage errors.
    fn origins(&self) -> Result<Vec<(Uuid, OriginState)>, HubError>;

    /// A page of the station's stream after `after` (see the contract).
    ///
    /// # Errors
    /// Storage errors.
    fn pull_for(
        &self,
        station_code: &str,
        after: u64,
        max_events: usize,
        max_bytes: usize,
        skip_origin: Option<Uuid>,
    ) -> Result<PullPage, HubError>;

    /// The station's newest hub position, 0 when it has none.
    ///
    /// # Errors
    /// Storage errors.
    fn station_head(&self, station_code: &str) -> Result<u64, HubError>;

    /// How many events the log holds: the last position assigned.
    fn event_count(&self) -> u64;

    /// At most `limit` events after position `after`, in hub order, each
    /// with its receive time.
    ///
    /// # Errors
    /// Storage errors.
    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>, HubError>;

    /// The position of the event with this id, if the log holds it.
    ///
    /// # Errors
    /// Storage errors.
    fn position_of(&self, event_id: &[u8]) -> Result<Option<u64>, HubError>;

    /// Every quarantined event, by origin and seq.
    ///
    /// # Errors
    /// Storage errors.
    fn quarantine(&self) -> Result<Vec<(Uuid, Quarantined)>, HubError>;
}
