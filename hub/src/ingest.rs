//! The ingest decision: what becomes of each event of a pushed batch, decided
//! from the pushing origins' states, the event ids the log already holds and
//! the validation context, without touching storage. The store reads those
//! inputs, calls [`decide`], and applies its verdicts in one atomic batch.
//!
//! Rules, in the order they apply to each event:
//! 1. an event whose `origin_id` is not 16 bytes refuses the whole batch
//!    ([`Refusal::Malformed`]);
//! 2. a seq at or below the origin's `durable_through` (counting the events
//!    before it in the batch) is already held: [`Verdict::AlreadyHeld`] when
//!    the event is the one held at that seq (same `event_id`; for a seq the
//!    hub verified signed, the same canonical bytes), else the whole batch is
//!    refused ([`Refusal::Conflict`]): the event first held there stays, and
//!    a different one is never acknowledged as a duplicate;
//! 3. a seq above `durable_through + 1` refuses the whole batch
//!    ([`Refusal::Gap`]): nothing of it is stored;
//! 4. otherwise the seq is taken (`durable_through` moves to it) and the
//!    event is either accepted or quarantined: an event the validator refuses,
//!    of a station outside the roster, or whose `event_id` the log holds (or
//!    an earlier event of the batch carries) goes to quarantine with the
//!    reason; the rest is [`Verdict::Accept`]ed, validated (text in NFC).
//!    An entry naming a case of another station is refused unless its
//!    station took the case over by an accepted transfer; an answer to a
//!    transfer request (`CaseTransferAccepted`, `CaseTransferDeclined`) is
//!    refused unless the request it names is one of the log's (or of the
//!    batch), about the same case, and addressed to the answer's station
//!    ([`TransferLookup`]; without one, answers pass unjudged).
//!
//! 5. every seq taken extends the origin's hash chain by the event's
//!    canonical bytes as received ([`station_proto::chain`]), and for an
//!    origin whose device key is bound, an event the validator would store
//!    other than as received (text not in NFC, say) goes to quarantine as
//!    received, so that what the log holds is what the device signed.
//!
//! Then [`verify_heads`] checks the push's signed heads against the chains
//! the decision computed: an origin with a bound key and new seqs must carry
//! a head for its last new seq whose signature verifies, else the whole
//! batch is refused ([`Refusal::Unsigned`], [`Refusal::Forged`]).
//!
//! Invariant of a [`Decision`]: for each origin of the batch, the verdicts
//! other than `AlreadyHeld` cover exactly the seqs from its `durable_through`
//! before the batch (exclusive) to the one after it (inclusive), in order,
//! and its `chain_head` is the chain through its new `durable_through`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use station_proto::Event;
use station_proto::chain::{self, Chain, Digest};
use station_proto::ids::Uuid;
use station_proto::v1::SignedHead;
use station_proto::validate::{self, Context};

/// What the hub knows of one device log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OriginState {
    /// Seqs `1..=durable_through` are held (logged or quarantined) on disk.
    pub durable_through: u64,
    /// The station of the origin's events.
    pub station_code: String,
    /// The device's own head, as it last said in `Hello`.
    pub reported_head: u64,
    /// Hub wall clock of the last contact, ms.
    pub last_contact_ms: i64,
    /// Device clock minus hub clock at the last `Hello`, ms.
    pub clock_skew_ms: i64,
    /// Events of this origin kept in quarantine.
    pub quarantined: u64,
    /// Pushes refused because they carried, at a seq the hub holds, another
    /// event than the one held (a conflict): shown to the bureau.
    #[serde(default)]
    pub conflicts: u64,
    /// `chain_{durable_through}` of the origin (32 bytes, see
    /// [`station_proto::chain`]); absent only in a state written before the
    /// hub kept chains, until the store computes it when it opens.
    #[serde(
        default,
        with = "optional_hex",
        skip_serializing_if = "Option::is_none"
    )]
    pub chain_head: Option<Vec<u8>>,
    /// The first seq the hub verified under the device's signature on
    /// arrival; the seqs before it predate the device's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_from: Option<u64>,
    /// The newest signed head the hub verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_head: Option<StoredHead>,
    /// The path of the last push that brought new seqs of the origin: the
    /// id of the relay token that carried it, `None` when the device pushed
    /// them itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via_relay: Option<String>,
    /// How many of the origin's seqs relays carried to the hub.
    #[serde(default)]
    pub relayed_events: u64,
    /// Hub wall clock of the last push a relay carried for it, ms; 0 when none.
    #[serde(default)]
    pub last_relayed_ms: i64,
}

/// A signed head as the hub keeps it: the seq and the device's signature
/// over `(origin, last_seq, chain_{last_seq})`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredHead {
    /// The seq the signature covers.
    pub last_seq: u64,
    /// The Ed25519 signature, 64 bytes.
    #[serde(with = "hex_bytes")]
    pub signature: Vec<u8>,
}

impl OriginState {
    /// The chain through `durable_through`, when known.
    pub fn chain(&self, origin: Uuid) -> Option<Chain> {
        if self.durable_through == 0 {
            return Some(Chain::start(origin));
        }
        let head = <Digest>::try_from(self.chain_head.as_deref()?).ok()?;
        Some(Chain::resume(origin, self.durable_through, head))
    }
}

/// An event acknowledged but not accepted into the log, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// The origin's seq of the event.
    pub origin_seq: u64,
    /// The station the event claimed.
    pub station_code: String,
    /// Why it was not accepted.
    pub reason: String,
    /// Hub wall clock when received, ms.
    pub received_at_ms: i64,
    /// The encoded event as received.
    #[serde(with = "hex_bytes")]
    pub event: Vec<u8>,
}

/// Bytes as a lowercase hex string in JSON.
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        (0..s.len())
            .step_by(2)
            .map(|i| {
                s.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("bad hex"))
            })
            .collect()
    }
}

/// Optional bytes as a lowercase hex string in JSON.
pub(crate) mod optional_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => super::hex_bytes::serialize(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let hex = Option::<String>::deserialize(d)?;
        hex.map(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| serde::de::Error::custom("bad hex"))
                })
                .collect()
        })
        .transpose()
    }
}

/// What the decision needs besides the batch and the origins' states.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// The hub's today, for the validator's date rules.
    pub today: chrono::NaiveDate,
    /// Stations events may belong to; `None` accepts every well-formed code.
    pub roster: Option<&'a BTreeSet<String>>,
    /// Hub wall clock of the push, ms: the origins' last contact and the
    /// quarantined events' receive time.
    pub now_ms: i64,
    /// How far, in ms, an event's `recorded_at_ms`, `hlc` and event id may
    /// run ahead of `now_ms`; an event beyond it goes to quarantine.
    pub max_clock_skew_ms: i64,
    /// The origins of the batch whose device key is bound.
    pub signed: Option<&'a BTreeSet<Uuid>>,
    /// What the log knows of transfers, for entries naming a case opened at
    /// another station; `None` judges them by the opening's station alone
    /// and passes transfer answers unjudged.
    pub transfers: Option<&'a dyn TransferLookup>,
}

/// What the log holds of transfers, as the foreign-case rule reads it.
pub trait TransferLookup: std::fmt::Debug + Sync {
    /// The case and the addressed station of the transfer request whose
    /// event id is `request`, when the log holds it.
    fn request(&self, request: Uuid) -> Option<(Uuid, String)>;
    /// Whether `station` took `case` over by an acceptance the log holds.
    fn took_over(&self, case: Uuid, station: &str) -> bool;
}

/// A [`TransferLookup`] over what a store read before deciding: the
/// requests the batch's answers name, and the stations that took the
/// batch's cases over.
#[derive(Debug, Default)]
pub struct KnownTransfers {
    /// Request id → (case, addressed station).
    pub requests: BTreeMap<Uuid, (Uuid, String)>,
    /// (case, station) pairs of accepted transfers.
    pub taken_over: BTreeSet<(Uuid, String)>,
}

impl KnownTransfers {
    /// Learns what `event`, held by the log, says of transfers: a request
    /// by its id, an acceptance as its station taking the case over. Every
    /// other event teaches nothing.
    pub fn learn(&mut self, event: &Event) {
        let Some(body) = event.body.as_ref() else {
            return;
        };
        if let (Some(request), Some(id)) = (
            requested_transfer(body),
            station_proto::ids::from_bytes(&event.event_id),
        ) {
            self.requests.insert(id, request);
        }
        if let (station_proto::Body::CaseTransferAccepted(_), Some((case, _))) =
            (body, answered_request(body))
        {
            self.taken_over.insert((case, event.station_code.clone()));
        }
    }
}

impl TransferLookup for KnownTransfers {
    fn request(&self, request: Uuid) -> Option<(Uuid, String)> {
        self.requests.get(&request).cloned()
    }

    fn took_over(&self, case: Uuid, station: &str) -> bool {
        self.taken_over.contains(&(case, station.to_owned()))
    }
}

/// The request a transfer answer names and the answer's case, for the
/// bodies that answer one; `None` for every other body.
pub fn answered_request(body: &station_proto::Body) -> Option<(Uuid, Uuid)> {
    station_proto::transfer::answer_of(body)
}

/// The (case, addressed station) of a transfer request's body.
pub fn requested_transfer(body: &station_proto::Body) -> Option<(Uuid, String)> {
    if let station_proto::Body::CaseTransferRequested(m) = body {
        Some((
            Uuid::from_slice(&m.case_id).ok()?,
            m.to_station_code.clone(),
        ))
    } else {
        None
    }
}

/// An event accepted into the log: as validated (text in NFC), and encoded
/// as the log stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The event as validated.
    pub event: Event,
    /// `event`, encoded.
    pub encoded: Vec<u8>,
}

/// What becomes of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Into the log at the next hub position, as validated (text in NFC).
    Accept(Box<Accepted>),
    /// At or below the origin's `durable_through`: held already, ignored.
    AlreadyHeld,
    /// Acknowledged but kept out of the log, with the reason.
    Quarantine(Quarantined),
}

/// One event's verdict, with the seq it concerns.
#[derive(Debug, Clone, PartialEq)]
pub struct EventVerdict {
    /// The event's origin.
    pub origin: Uuid,
    /// The event's seq in its origin.
    pub origin_seq: u64,
    /// What becomes of it.
    pub verdict: Verdict,
}

/// Why a whole batch is refused: nothing of it may be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A push skips seqs of an origin.
    #[error("origin {origin}: expected origin_seq {expected}, got {got}")]
    Gap {
        /// The origin.
        origin: Uuid,
        /// The next seq the hub can accept.
        expected: u64,
        /// The seq found.
        got: u64,
    },
    /// A seq the hub holds is resent with another event.
    #[error(
        "origin {origin}: seq {seq} is held with another event: the device's log conflicts with what it pushed before"
    )]
    Conflict {
        /// The origin.
        origin: Uuid,
        /// The seq held with another event.
        seq: u64,
    },
    /// An origin whose device key is bound pushed new seqs without a
    /// signed head for its last one.
    #[error(
        "origin {origin} signs its log: the push must carry its signed head through seq {last_seq}"
    )]
    Unsigned {
        /// The origin.
        origin: Uuid,
        /// The last new seq of the origin in the batch.
        last_seq: u64,
    },
    /// A signed head that does not verify against the chain the hub
    /// computed: the batch is not what the device signed.
    #[error("refused: {0}; nothing of the batch is stored")]
    Forged(chain::ChainError),
    /// The hub lacks the chain of an origin it holds events of.
    #[error("origin {0}: the hub has no chain for it yet")]
    NoChain(Uuid),
    /// An event cannot be attributed to an origin.
    #[error("event {index} of the batch: {reason}")]
    Malformed {
        /// Position in the batch.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The verdicts of a batch and the states of its origins after it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    /// One per event of the batch, in batch order.
    pub verdicts: Vec<EventVerdict>,
    /// Every origin of the batch, as it stands after it (last contact set).
    pub origins: BTreeMap<Uuid, OriginState>,
    /// The first and last seq each origin takes in this batch.
    pub new_seqs: BTreeMap<Uuid, (u64, u64)>,
}

impl Decision {
    /// How many events are accepted into the log.
    pub fn accepted(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Accept(_)))
    }

    /// How many events go to quarantine.
    pub fn quarantined(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Quarantine(_)))
    }

    /// How many events were held already.
    pub fn already_held(&self) -> usize {
        self.count(|v| matches!(v, Verdict::AlreadyHeld))
    }

    fn count(&self, which: impl Fn(&Verdict) -> bool) -> usize {
        self.verdicts.iter().filter(|v| which(&v.verdict)).count()
    }
}

/// The origin of each event of the batch, in order: the states [`decide`]
/// needs are those of these origins.
///
/// # Errors
/// [`Refusal::Malformed`] for an `origin_id` that is not 16 bytes.
pub fn origins_of(events: &[Event]) -> Result<Vec<Uuid>, Refusal> {
    events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            Uuid::from_slice(&event.origin_id).map_err(|_| Refusal::Malformed {
                index,
                reason: "origin_id must be 16 bytes".into(),
            })
        })
        .collect()
}

/// A pushed batch with what [`decide`] needs of each event that depends on
/// the event and the validation context alone: its canonical bytes as
/// received, and the event as the validator would store it (encoded) or why
/// it refuses it. [`check`] computes it without the store, so that a store
/// can do this work before it takes its writer.
#[derive(Debug)]
pub struct Checked {
    /// The events as received, in batch order.
    pub events: Vec<Event>,
    checks: Vec<Check>,
}

#[derive(Debug)]
struct Check {
    /// The event's canonical bytes as received: its chain link, and what
    /// quarantine keeps.
    raw: Vec<u8>,
    /// As validated and encoded, or the validator's reason.
    validated: Result<Accepted, String>,
}

/// The validation context of a push received at `now_ms` on the hub's
/// `today`, clocks allowed `max_clock_skew_ms` ahead (see [`Policy`]).
pub fn context(today: chrono::NaiveDate, now_ms: i64, max_clock_skew_ms: i64) -> Context {
    Context {
        today,
        latest_ms: Some(now_ms.saturating_add(max_clock_skew_ms)),
    }
}

/// Checks each event of `events` on its own under `ctx` (see [`Checked`]).
pub fn check(events: Vec<Event>, ctx: &Context) -> Checked {
    let checks = events
        .iter()
        .map(|event| {
            let raw = chain::canonical_bytes(event);
            let mut checked = event.clone();
            let validated = match validate::event(&mut checked, ctx) {
                Ok(()) => Ok(Accepted {
                    // Most events arrive as the validator leaves them: their
                    // encoding is the one received.
                    encoded: if checked == *event {
                        raw.clone()
                    } else {
                        prost::Message::encode_to_vec(&checked)
                    },
                    event: checked,
                }),
                Err(invalid) => Err(invalid.to_string()),
            };
            Check { raw, validated }
        })
        .collect();
    Checked { events, checks }
}

/// Decides every event of `events` (see the module's rules). `origins` holds
/// the stored state of the batch's origins (an origin missing is new);
/// `held` says whether the log holds an event id; `stored` gives the event
/// held at an origin's seq at or below its `durable_through` (in the log or
/// in quarantine, as received), as far as the caller found it by the resent
/// event's id: `None` means another event is held there; `case_station`
/// names the station of the case a case id opened, when the log holds its
/// opening (a case opened earlier in the same batch is known without it).
///
/// # Errors
/// A [`Refusal`] of the whole batch.
pub fn decide(
    events: Vec<Event>,
    origins: BTreeMap<Uuid, OriginState>,
    held: impl Fn(&[u8]) -> bool,
    stored: impl Fn(Uuid, u64) -> Option<Event>,
    case_station: impl Fn(Uuid) -> Option<String>,
    policy: &Policy<'_>,
) -> Result<Decision, Refusal> {
    let ctx = context(policy.today, policy.now_ms, policy.max_clock_skew_ms);
    let checked = check(events, &ctx);
    decide_checked(checked, origins, held, stored, case_station, policy)
}

/// [`decide`] of a batch already [`check`]ed under `policy`'s context.
///
/// # Errors
/// As [`decide`].
pub fn decide_checked(
    checked: Checked,
    mut origins: BTreeMap<Uuid, OriginState>,
    held: impl Fn(&[u8]) -> bool,
    stored: impl Fn(Uuid, u64) -> Option<Event>,
    case_station: impl Fn(Uuid) -> Option<String>,
    policy: &Policy<'_>,
) -> Result<Decision, Refusal> {
    let Checked { events, checks } = checked;
    let ids = origins_of(&events)?;
    let mut opened_here: BTreeMap<Uuid, String> = BTreeMap::new();
    let mut transfers_here = KnownTransfers::default();
    let mut batch_ids = BTreeSet::new();
    // The event id each seq taken by this batch carries, for a seq resent
    // within the batch.
    let mut taken: BTreeMap<(Uuid, u64), Vec<u8>> = BTreeMap::new();
    let mut verdicts = Vec::with_capacity(events.len());
    let mut chains: BTreeMap<Uuid, Option<Chain>> = BTreeMap::new();
    let mut new_seqs: BTreeMap<Uuid, (u64, u64)> = BTreeMap::new();
    for ((event, check), origin) in events.into_iter().zip(checks).zip(ids) {
        let state = origins.entry(origin).or_default();
        let signed = policy.signed.is_some_and(|s| s.contains(&origin));
        let origin_seq = event.origin_seq;
        if origin_seq <= state.durable_through {
            let same = match taken.get(&(origin, origin_seq)) {
                Some(event_id) => *event_id == event.event_id,
                None => same_as_held(&event, stored(origin, origin_seq).as_ref(), signed),
            };
            if !same {
                return Err(Refusal::Conflict {
                    origin,
                    seq: origin_seq,
                });
            }
            verdicts.push(EventVerdict {
                origin,
                origin_seq,
                verdict: Verdict::AlreadyHeld,
            });
            continue;
        }
        if origin_seq != state.durable_through + 1 {
            return Err(Refusal::Gap {
                origin,
                expected: state.durable_through + 1,
                got: origin_seq,
            });
        }
        let chain = chains.entry(origin).or_insert_with(|| state.chain(origin));
        state.durable_through = origin_seq;
        new_seqs
            .entry(origin)
            .and_modify(|(_, last)| *last = origin_seq)
            .or_insert((origin_seq, origin_seq));
        taken.insert((origin, origin_seq), event.event_id.clone());
        if state.station_code.is_empty() {
            state.station_code = event.station_code.clone();
        }
        let Check { raw, validated } = check;
        // The seq follows the chain's, so a link is refused only by a chain
        // that does not match the state: it is then unknown from here on.
        if chain
            .as_mut()
            .is_some_and(|c| c.push_bytes(origin_seq, &raw).is_err())
        {
            *chain = None;
        }
        let refused = match &validated {
            Err(invalid) => Some(invalid.clone()),
            Ok(accepted)
                if policy
                    .roster
                    .is_some_and(|roster| !roster.contains(&accepted.event.station_code)) =>
            {
                Some(format!(
                    "station_code: station {} is not in the hub's roster",
                    accepted.event.station_code
                ))
            }
            Ok(accepted)
                if !batch_ids.insert(accepted.event.event_id.clone())
                    || held(&accepted.event.event_id) =>
            {
                Some("event_id: already stored for another origin".to_string())
            }
            Ok(accepted) if signed && accepted.encoded != raw => Some(
                "a signed event must arrive as it is stored (text trimmed and in NFC)".to_string(),
            ),
            Ok(accepted) => foreign_case(
                &accepted.event,
                &opened_here,
                &case_station,
                &transfers_here,
                policy.transfers,
            ),
        };
        let verdict = match (refused, validated) {
            (None, Ok(accepted)) => {
                let checked = &accepted.event;
                if let Some(station_proto::Body::CaseOpened(_)) = checked.body
                    && let Some(case) = station_proto::ids::from_bytes(&checked.event_id)
                {
                    opened_here.insert(case, checked.station_code.clone());
                }
                if let Some(body) = &checked.body {
                    if let (Some(request), Some(id)) = (
                        requested_transfer(body),
                        station_proto::ids::from_bytes(&checked.event_id),
                    ) {
                        transfers_here.requests.insert(id, request);
                    }
                    if let (station_proto::Body::CaseTransferAccepted(_), Some((case, _))) =
                        (body, answered_request(body))
                    {
                        transfers_here
                            .taken_over
                            .insert((case, checked.station_code.clone()));
                    }
                }
                Verdict::Accept(Box::new(accepted))
            }
            (refused, validated) => {
                state.quarantined += 1;
                let station_code = match validated {
                    Ok(accepted) => accepted.event.station_code,
                    Err(_) => event.station_code,
                };
                Verdict::Quarantine(Quarantined {
                    origin_seq,
                    station_code,
                    reason: refused.unwrap_or_default(),
                    received_at_ms: policy.now_ms,
                    event: raw,
                })
            }
        };
        verdicts.push(EventVerdict {
            origin,
            origin_seq,
            verdict,
        });
    }
    for (origin, chain) in chains {
        if let Some(state) = origins.get_mut(&origin) {
            state.chain_head = chain.map(|c| c.head().to_vec());
        }
    }
    for state in origins.values_mut() {
        state.last_contact_ms = policy.now_ms;
    }
    Ok(Decision {
        verdicts,
        origins,
        new_seqs,
    })
}

/// Why `event` may not be stored: it names a case of another station. A case
/// is written to only by its own station's devices and by those of the
/// stations that took it over; an entry of another station naming it would
/// show in a file it does not belong to. A case the hub does not hold yet
/// (opened on a colleague's phone still offline) cannot be judged and
/// passes. An answer to a transfer request is judged by the request.
fn foreign_case(
    event: &Event,
    opened_here: &BTreeMap<Uuid, String>,
    case_station: impl Fn(Uuid) -> Option<String>,
    transfers_here: &KnownTransfers,
    transfers: Option<&dyn TransferLookup>,
) -> Option<String> {
    let body = event.body.as_ref()?;
    if let Some((case, request)) = answered_request(body) {
        let transfers = transfers?;
        let known = transfers_here
            .request(request)
            .or_else(|| transfers.request(request));
        return match known {
            None => Some("request_id: the hub holds no transfer request of that id".to_string()),
            Some((of, _)) if of != case => {
                Some("request_id: the transfer request is about another case".to_string())
            }
            Some((_, to)) if to != event.station_code => Some(format!(
                "request_id: the transfer request is addressed to station {to}, not to the event's station {}",
                event.station_code
            )),
            Some(_) => None,
        };
    }
    let case = station_proto::case::case_of(body)?;
    let owner = opened_here
        .get(&case)
        .cloned()
        .or_else(|| case_station(case))?;
    let taken_over = |station: &str| {
        transfers_here.took_over(case, station)
            || transfers.is_some_and(|t| t.took_over(case, station))
    };
    (owner != event.station_code && !taken_over(&event.station_code)).then(|| {
        format!(
            "case_id: the case belongs to station {owner}, not to the event's station {}",
            event.station_code
        )
    })
}

/// Checks the signed heads of a push against `decision`: each origin that
/// takes new seqs and whose device key `key_of` gives must carry a head for
/// its last new seq that verifies over the chain the decision computed;
/// then the origin's `signed_head` (and, the first time, `signed_from`) is
/// set. Heads of origins without new seqs, or without a key, are not
/// looked at (nothing of theirs is stored under a signature).
///
/// # Errors
/// [`Refusal::Malformed`] for a head whose origin id is not 16 bytes;
/// [`Refusal::Unsigned`], [`Refusal::NoChain`], [`Refusal::Forged`].
pub fn verify_heads(
    decision: &mut Decision,
    heads: &[SignedHead],
    key_of: impl Fn(Uuid) -> Option<Vec<u8>>,
) -> Result<(), Refusal> {
    let mut by_origin = BTreeMap::new();
    for (index, head) in heads.iter().enumerate() {
        let origin = Uuid::from_slice(&head.origin_id).map_err(|_| Refusal::Malformed {
            index,
            reason: "heads: origin_id must be 16 bytes".into(),
        })?;
        by_origin.insert(origin, head);
    }
    for (origin, (first, last)) in &decision.new_seqs {
        let Some(key) = key_of(*origin) else {
            continue;
        };
        let Some(head) = by_origin.get(origin).filter(|h| h.last_seq == *last) else {
            return Err(Refusal::Unsigned {
                origin: *origin,
                last_seq: *last,
            });
        };
        let state = decision
            .origins
            .get_mut(origin)
            .ok_or(Refusal::NoChain(*origin))?;
        let chain = state.chain(*origin).ok_or(Refusal::NoChain(*origin))?;
        chain::verify_head(&key, *origin, *last, &chain.head(), &head.signature)
            .map_err(Refusal::Forged)?;
        state.signed_from.get_or_insert(*first);
        state.signed_head = Some(StoredHead {
            last_seq: *last,
            signature: head.signature.clone(),
        });
    }
    Ok(())
}

/// Whether a resent `event` is the one held at its seq: the same event id,
/// and for an origin whose key is bound the same event in full (what the
/// log holds of such an origin is what the device signed, so equal events
/// are equal canonical bytes); of an unsigned origin the log holds events as
/// validated, which may differ from the bytes sent in text normalisation
/// only, so the id decides there.
fn same_as_held(event: &Event, held: Option<&Event>, signed: bool) -> bool {
    held.is_some_and(|held| held.event_id == event.event_id && (!signed || held == event))
}

/// Which seqs of a batch the store must look up for [`decide`]'s `stored`:
/// each event's origin, seq and event id when its seq is at or below its
/// origin's `durable_through` in `origins`.
pub fn resent<'a>(
    events: &'a [Event],
    origins: &'a BTreeMap<Uuid, OriginState>,
) -> impl Iterator<Item = (Uuid, u64, &'a [u8])> + 'a {
    events.iter().filter_map(|event| {
        let origin = Uuid::from_slice(&event.origin_id).ok()?;
        let state = origins.get(&origin)?;
        (event.origin_seq <= state.durable_through).then_some((
            origin,
            event.origin_seq,
            event.event_id.as_slice(),
        ))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use prost::Message as _;
    use station_proto::Body;
    use station_proto::v1::{TrainingHeld, TrainingKind};

    use super::*;

    const ZEDANG: &str = "540502001";

    const MAX_SKEW: i64 = station_proto::validate::MAX_CLOCK_SKEW_MS;

    fn today() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2025, 6, 30).unwrap()
    }

    fn policy(roster: Option<&BTreeSet<String>>) -> Policy<'_> {
        Policy {
            today: today(),
            roster,
            now_ms: 1_750_000_000_000,
            max_clock_skew_ms: station_proto::validate::MAX_CLOCK_SKEW_MS,
            signed: None,
            transfers: None,
        }
    }

    /// A version 7 id from the device's clock, `recorded_at_ms`.
    fn id_at(ms: u64) -> Vec<u8> {
        station_proto::ids::v7_at(ms).as_bytes().to_vec()
    }

    fn event(origin: Uuid, seq: u64, station: &str, held_on: &str) -> Event {
        Event {
            event_id: id_at(1_740_000_000_000),
            origin_id: origin.as_bytes().to_vec(),
            origin_seq: seq,
            station_code: station.into(),
            author: "worker".into(),
            recorded_at_ms: 1_740_000_000_000,
            hlc: seq,
            body: Some(Body::TrainingHeld(TrainingHeld {
                held_on: held_on.into(),
                kind: TrainingKind::Supervision as i32,
                title: "督导".into(),
                trainees: 2,
                minutes: 60,
            })),
        }
    }

    fn state(durable_through: u64) -> OriginState {
        OriginState {
            durable_through,
            station_code: ZEDANG.into(),
            ..OriginState::default()
        }
    }

    fn nothing_held(_: &[u8]) -> bool {
        false
    }

    fn nothing_stored(_: Uuid, _: u64) -> Option<Event> {
        None
    }

    fn no_case(_: Uuid) -> Option<String> {
        None
    }

    /// [`decide`] over a log that holds nothing the batch names.
    fn decide_plain(
        events: Vec<Event>,
        origins: BTreeMap<Uuid, OriginState>,
        policy: &Policy<'_>,
    ) -> Result<Decision, Refusal> {
        decide(
            events,
            origins,
            nothing_held,
            nothing_stored,
            no_case,
            policy,
        )
    }

    #[test]
    fn clocks_beyond_the_skew_are_quarantined_and_do_not_block_the_origin() {
        let now = 1_750_000_000_000_u64;
        let beyond = now + 25 * 3_600_000;
        let within = now + 23 * 3_600_000;
        let origin = Uuid::now_v7();
        let mut batch: Vec<Event> = (1..=6)
            .map(|seq| event(origin, seq, ZEDANG, "2025-03-01"))
            .collect();
        batch[0].hlc = u64::MAX;
        batch[1].recorded_at_ms = i64::try_from(beyond).unwrap();
        batch[2].event_id = id_at(beyond);
        batch[3].recorded_at_ms = i64::MIN;
        batch[4].hlc = within << station_proto::validate::HLC_LOGICAL_BITS;
        batch[4].recorded_at_ms = i64::try_from(within).unwrap();
        let decision = decide_plain(batch, BTreeMap::new(), &policy(None)).unwrap();
        assert!(quarantine_reason(&decision, 0).starts_with("hlc: "));
        assert!(quarantine_reason(&decision, 1).starts_with("recorded_at_ms: is 1 h beyond"));
        assert!(quarantine_reason(&decision, 2).starts_with("event_id: "));
        assert_eq!(
            quarantine_reason(&decision, 3),
            "recorded_at_ms: must not be before 1970"
        );
        assert!(matches!(decision.verdicts[4].verdict, Verdict::Accept(_)));
        assert!(matches!(decision.verdicts[5].verdict, Verdict::Accept(_)));
        assert_eq!(decision.origins[&origin].durable_through, 6);
        assert_eq!(decision.quarantined(), 4);
    }

    fn note_on(case: Uuid, origin: Uuid, seq: u64, station: &str) -> Event {
        let mut note = event(origin, seq, station, "2025-03-01");
        note.body = Some(Body::CaseNoteAdded(station_proto::v1::CaseNoteAdded {
            case_id: case.as_bytes().to_vec(),
            kind: station_proto::v1::NoteKind::Review as i32,
            text: "记录".into(),
            noted_on: "2025-03-01".into(),
        }));
        note
    }

    #[test]
    fn an_entry_naming_another_stations_case_is_quarantined() {
        const CHANGZHU: &str = "540502101";
        let held_case = Uuid::now_v7();
        let owner = |case: Uuid| (case == held_case).then(|| ZEDANG.to_string());
        let stranger = Uuid::now_v7();
        let unknown_case = Uuid::now_v7();
        let batch = vec![
            note_on(held_case, stranger, 1, CHANGZHU),
            note_on(unknown_case, stranger, 2, CHANGZHU),
        ];
        let decide_with_owner = |batch| {
            decide(
                batch,
                BTreeMap::new(),
                nothing_held,
                nothing_stored,
                owner,
                &policy(None),
            )
            .unwrap()
        };
        let decision = decide_with_owner(batch);
        assert_eq!(
            quarantine_reason(&decision, 0),
            "case_id: the case belongs to station 540502001, not to the event's station 540502101"
        );
        assert!(
            matches!(decision.verdicts[1].verdict, Verdict::Accept(_)),
            "not known: passes"
        );
        let decision = decide_with_owner(vec![note_on(held_case, Uuid::now_v7(), 1, ZEDANG)]);
        assert!(matches!(decision.verdicts[0].verdict, Verdict::Accept(_)));
    }

    #[test]
    fn the_next_seqs_of_valid_events_are_accepted_and_move_durable_through() {
        let origin = Uuid::now_v7();
        let batch = vec![
            event(origin, 1, ZEDANG, "2025-03-01"),
            event(origin, 2, ZEDANG, "2025-03-02"),
        ];
        let decision = decide_plain(batch, BTreeMap::new(), &policy(None)).unwrap();
        assert_eq!(decision.accepted(), 2);
        assert!(
            decision
                .verdicts
                .iter()
                .zip(1..)
                .all(|(v, seq)| v.origin == origin && v.origin_seq == seq)
        );
        let after = &decision.origins[&origin];
        assert_eq!(after.durable_through, 2);
        assert_eq!(after.station_code, ZEDANG);
        assert_eq!(after.last_contact_ms, policy(None).now_ms);
    }

    #[test]
    fn seqs_at_or_below_durable_through_are_already_held() {
        let origin = Uuid::now_v7();
        let batch = vec![
            event(origin, 2, ZEDANG, "2025-03-01"),
            event(origin, 3, ZEDANG, "2025-03-02"),
            event(origin, 4, ZEDANG, "2025-03-03"),
        ];
        let origins = BTreeMap::from([(origin, state(3))]);
        let held_events = batch.clone();
        let stored = |o: Uuid, seq: u64| {
            held_events
                .iter()
                .find(|e| o.as_bytes() == e.origin_id.as_slice() && e.origin_seq == seq)
                .cloned()
        };
        let decision =
            decide(batch, origins, nothing_held, stored, no_case, &policy(None)).unwrap();
        let verdicts: Vec<_> = decision.verdicts.iter().map(|v| &v.verdict).collect();
        assert!(matches!(
            verdicts[..],
            [
                Verdict::AlreadyHeld,
                Verdict::AlreadyHeld,
                Verdict::Accept(_)
            ]
        ));
        assert_eq!(decision.origins[&origin].durable_through, 4);
        // A resend within the batch is held too.
        let first = event(origin, 1, ZEDANG, "2025-03-01");
        let again = vec![first.clone(), first];
        let decision = decide_plain(again, BTreeMap::new(), &policy(None)).unwrap();
        assert_eq!((decision.accepted(), decision.already_held()), (1, 1));
    }

    #[test]
    fn another_event_at_a_held_seq_is_a_conflict() {
        let origin = Uuid::now_v7();
        let held = event(origin, 2, ZEDANG, "2025-03-01");
        let origins = BTreeMap::from([(origin, state(2))]);
        let stored = |_: Uuid, seq: u64| (seq == 2).then(|| held.clone());
        let other = event(origin, 2, ZEDANG, "2025-03-01");
        assert_eq!(
            decide(
                vec![other],
                origins.clone(),
                nothing_held,
                stored,
                no_case,
                &policy(None)
            ),
            Err(Refusal::Conflict { origin, seq: 2 })
        );
        // Nothing found at the seq by the resent id: another event is there.
        let unknown = event(origin, 1, ZEDANG, "2025-03-01");
        assert_eq!(
            decide(
                vec![unknown],
                origins.clone(),
                nothing_held,
                stored,
                no_case,
                &policy(None)
            ),
            Err(Refusal::Conflict { origin, seq: 1 })
        );
        // Within one batch as well.
        let first = event(origin, 3, ZEDANG, "2025-03-01");
        let twin = event(origin, 3, ZEDANG, "2025-03-02");
        assert_eq!(
            decide(
                vec![first, twin],
                origins,
                nothing_held,
                stored,
                no_case,
                &policy(None)
            ),
            Err(Refusal::Conflict { origin, seq: 3 })
        );
    }

    #[test]
    fn a_gap_refuses_the_whole_batch() {
        let origin = Uuid::now_v7();
        let batch = vec![
            event(origin, 3, ZEDANG, "2025-03-01"),
            event(origin, 5, ZEDANG, "2025-03-02"),
        ];
        let origins = BTreeMap::from([(origin, state(2))]);
        assert_eq!(
            decide_plain(batch, origins, &policy(None)),
            Err(Refusal::Gap {
                origin,
                expected: 4,
                got: 5
            })
        );
    }

    #[test]
    fn an_origin_id_of_the_wrong_length_refuses_the_batch() {
        let mut bad = event(Uuid::now_v7(), 1, ZEDANG, "2025-03-01");
        bad.origin_id.pop();
        let batch = vec![event(Uuid::now_v7(), 1, ZEDANG, "2025-03-01"), bad];
        assert!(matches!(
            decide_plain(batch, BTreeMap::new(), &policy(None)),
            Err(Refusal::Malformed { index: 1, .. })
        ));
    }

    fn quarantine_reason(decision: &Decision, index: usize) -> &str {
        match &decision.verdicts[index].verdict {
            Verdict::Quarantine(q) => &q.reason,
            other => panic!("expected quarantine, got {other:?}"),
        }
    }

    #[test]
    fn an_invalid_event_takes_its_seq_into_quarantine_as_received() {
        let origin = Uuid::now_v7();
        let invalid = event(origin, 1, ZEDANG, "2025-02-30");
        let raw = invalid.encode_to_vec();
        let batch = vec![invalid, event(origin, 2, ZEDANG, "2025-03-02")];
        let decision = decide_plain(batch, BTreeMap::new(), &policy(None)).unwrap();
        assert!(quarantine_reason(&decision, 0).contains("held_on"));
        match &decision.verdicts[0].verdict {
            Verdict::Quarantine(q) => {
                assert_eq!((q.origin_seq, q.event.as_slice()), (1, raw.as_slice()));
                assert_eq!(q.received_at_ms, policy(None).now_ms);
            }
            other => panic!("expected quarantine, got {other:?}"),
        }
        assert!(matches!(decision.verdicts[1].verdict, Verdict::Accept(_)));
        let after = &decision.origins[&origin];
        assert_eq!((after.durable_through, after.quarantined), (2, 1));
    }

    #[test]
    fn a_station_outside_the_roster_is_quarantined() {
        let roster = BTreeSet::from([ZEDANG.to_string()]);
        let batch = vec![event(Uuid::now_v7(), 1, "540502201", "2025-03-01")];
        let decision = decide_plain(batch, BTreeMap::new(), &policy(Some(&roster))).unwrap();
        assert!(quarantine_reason(&decision, 0).contains("roster"));
    }

    #[test]
    fn an_event_id_held_or_earlier_in_the_batch_is_quarantined() {
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        let held = event(first, 1, ZEDANG, "2025-03-01");
        let mut copy = event(second, 1, ZEDANG, "2025-03-01");
        copy.event_id = held.event_id.clone();
        let id = held.event_id.clone();
        let decision = decide(
            vec![copy.clone()],
            BTreeMap::new(),
            |e| e == id.as_slice(),
            nothing_stored,
            no_case,
            &policy(None),
        )
        .unwrap();
        assert!(quarantine_reason(&decision, 0).contains("event_id"));
        let decision = decide_plain(vec![held, copy], BTreeMap::new(), &policy(None)).unwrap();
        assert!(matches!(decision.verdicts[0].verdict, Verdict::Accept(_)));
        assert!(quarantine_reason(&decision, 1).contains("event_id"));
    }

    #[test]
    fn an_accepted_event_is_stored_as_validated_and_its_encoding_is_of_that_form() {
        let origin = Uuid::now_v7();
        let mut decomposed = event(origin, 1, ZEDANG, "2025-03-01");
        if let Some(Body::TrainingHeld(t)) = &mut decomposed.body {
            t.title = " e\u{301} ".into();
        }
        let mut second = event(origin, 2, ZEDANG, "2025-02-30");
        second.event_id = id_at(1_740_000_000_001);
        let ctx = context(today(), policy(None).now_ms, MAX_SKEW);
        let checked = check(vec![decomposed.clone(), second.clone()], &ctx);
        assert_eq!(checked.events, vec![decomposed.clone(), second]);
        let decision = decide_checked(
            checked,
            BTreeMap::new(),
            nothing_held,
            nothing_stored,
            no_case,
            &policy(None),
        )
        .unwrap();
        let Verdict::Accept(accepted) = &decision.verdicts[0].verdict else {
            panic!("expected an accepted event");
        };
        assert_ne!(accepted.event, decomposed);
        assert_eq!(accepted.encoded, accepted.event.encode_to_vec());
        assert!(quarantine_reason(&decision, 1).contains("held_on"));
        let Verdict::Quarantine(q) = &decision.verdicts[1].verdict else {
            unreachable!()
        };
        assert_eq!(Event::decode(q.event.as_slice()).unwrap().origin_seq, 2);
        assert_eq!(decision.origins[&origin].durable_through, 2);
    }

    #[test]
    fn accepted_text_is_normalised() {
        let mut decomposed = event(Uuid::now_v7(), 1, ZEDANG, "2025-03-01");
        if let Some(Body::TrainingHeld(t)) = &mut decomposed.body {
            t.title = "e\u{301}".into();
        }
        let decision = decide_plain(vec![decomposed], BTreeMap::new(), &policy(None)).unwrap();
        let Verdict::Accept(accepted) = &decision.verdicts[0].verdict else {
            panic!("expected an accepted event");
        };
        let Some(Body::TrainingHeld(t)) = &accepted.event.body else {
            panic!("expected a training");
        };
        assert_eq!(t.title, "\u{e9}");
    }
}
