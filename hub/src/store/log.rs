//! The hub's log as a contract: [`HubLog`], what every implementation
//! promises, and the types its operations exchange. [`super::HubStore`] (sled,
//! the embedded default) and [`super::memory::MemoryLog`] (the reference, in
//! memory) implement it; a model-based test runs the same operations
//! against both and checks they agree.

use serde::{Deserialize, Serialize};
use station_proto::Event;
use station_proto::ids::Uuid;

use super::HubError;
use crate::ingest::{Decision, OriginState, Quarantined, StoredHead};
use station_proto::v1::SignedHead;

/// Who speaks for an origin: the one device token bound to it for life, and
/// the device's public key once the device has sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginBinding {
    /// The id of the token that first introduced the origin.
    pub token_id: String,
    /// The device's Ed25519 public key (32 bytes), when bound: from then on
    /// every push of the origin must carry its signed head.
    #[serde(
        default,
        with = "crate::ingest::optional_hex",
        skip_serializing_if = "Option::is_none"
    )]
    pub public_key: Option<Vec<u8>>,
}

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

impl PushOutcome {
    /// The counts of `decision`, before its acknowledgements are known.
    pub(crate) fn counting(decision: &Decision) -> Self {
        Self {
            acks: Vec::new(),
            stored: decision.accepted(),
            quarantined: decision.quarantined(),
            duplicates: decision.already_held(),
        }
    }
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

/// The events of `station_code` after position `after` in a log held in
/// memory as (event, what the log keeps beside it) in position order from
/// 1, with their positions: the stream [`page_of`] pages.
pub(crate) fn held_station_stream<'a, T>(
    events: &'a [(Event, T)],
    station_code: &'a str,
    after: u64,
) -> impl Iterator<Item = (u64, &'a Event)> {
    events
        .iter()
        .zip(1u64..)
        .skip(usize::try_from(after).unwrap_or(usize::MAX))
        .filter(move |((event, _), _)| event.station_code == station_code)
        .map(|((event, _), pos)| (pos, event))
}

/// A page of `stream` (one station's events after the cursor `after`, with
/// their hub positions, in hub order) within the bounds of the contract:
/// at most `max_events` events and `max_bytes` encoded bytes (one event
/// at least), [`PULL_MAX_SCANNED`] positions looked at, `skip_origin`'s
/// events passed over but moving the cursor.
pub(crate) fn page_of<'a>(
    stream: impl Iterator<Item = (u64, &'a Event)>,
    after: u64,
    head: u64,
    max_events: usize,
    max_bytes: usize,
    skip_origin: Option<Uuid>,
) -> PullPage {
    use prost::Message as _;
    let mut page = PullPage {
        next_cursor: after,
        head,
        ..PullPage::default()
    };
    let mut bytes = 0usize;
    for (scanned, (pos, event)) in stream.enumerate() {
        if page.events.len() >= max_events || scanned >= PULL_MAX_SCANNED {
            break;
        }
        let len = event.encoded_len();
        if !page.events.is_empty() && bytes + len > max_bytes {
            break;
        }
        page.next_cursor = pos;
        if skip_origin.is_some_and(|origin| event.origin_id == origin.as_bytes()) {
            continue;
        }
        bytes += len;
        page.events.push((pos, event.clone()));
    }
    page
}

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
/// - **Bindings.** [`HubLog::bind_origin`] binds an origin to one device
///   token for life, together with the token's own binding (a token speaks
///   for one origin), and a device key at most once; a refused binding
///   changes nothing. A revoked token's origin stays bound to it.
/// - **Signed logs.** Each origin's state holds `chain_{durable_through}`.
///   A push whose origin has a device key bound and takes new seqs is
///   stored only if it carries a signed head for its last new seq that
///   verifies over the chain (see [`crate::ingest::verify_heads`]), else it
///   is refused whole ([`HubError::Signature`]) and changes nothing. Every
///   verified head is kept ([`HubLog::signed_heads`]) and the newest is in
///   the origin's state, with the first seq verified signed.
/// - **Conflicts.** A seq at or below `durable_through` resent with another
///   event refuses the push ([`HubError::Conflict`]); only the origin's
///   `conflicts` count changes.
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
    ) -> Result<PushOutcome, HubError> {
        self.push_signed(events, &[], today, now_ms)
    }

    /// [`HubLog::push`] with the push's signed heads, checked before
    /// anything is stored.
    ///
    /// # Errors
    /// As [`HubLog::push`], and [`HubError::Signature`] or
    /// [`HubError::Conflict`] refuse the batch.
    fn push_signed(
        &self,
        events: Vec<Event>,
        heads: &[SignedHead],
        today: chrono::NaiveDate,
        now_ms: i64,
    ) -> Result<PushOutcome, HubError>;

    /// Every signed head the hub verified for `origin`, oldest first.
    ///
    /// # Errors
    /// Storage errors.
    fn signed_heads(&self, origin: Uuid) -> Result<Vec<StoredHead>, HubError>;

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

    /// Binds `origin` to the device token `token_id` (see the contract),
    /// with `public_key` when none is bound yet; returns the binding once
    /// durable.
    ///
    /// # Errors
    /// [`HubError::TokenBound`], [`HubError::OriginTaken`],
    /// [`HubError::KeyMismatch`], [`HubError::TokenRevoked`],
    /// [`HubError::UnknownToken`], storage errors.
    fn bind_origin(
        &self,
        origin: Uuid,
        token_id: &str,
        public_key: Option<&[u8]>,
    ) -> Result<OriginBinding, HubError>;

    /// The binding of `origin`, if a token speaks for it.
    ///
    /// # Errors
    /// Storage errors.
    fn binding(&self, origin: Uuid) -> Result<Option<OriginBinding>, HubError>;

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
