//! [`MemoryLog`]: the reference implementation of [`HubLog`], in memory.
//! It keeps the contract in the plainest way (vectors and maps under one
//! lock), decides pushes with the same [`crate::ingest::decide`], and is
//! what the sled store is checked against. Everything it acknowledges is
//! "durable" for as long as the value lives. It keeps origin bindings but no
//! token records: revocation is the token store's, checked by the sled store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use prost::Message as _;
use station_proto::Event;
use station_proto::ids::Uuid;

use super::HubError;
use super::log::{
    HubLog, LoggedEvent, OriginBinding, PullPage, PushOutcome, held_station_stream, page_of,
};
use crate::ingest::{self, OriginState, Policy, Quarantined, Refusal, StoredHead, Verdict};
use station_proto::v1::SignedHead;

/// What the log holds.
#[derive(Debug, Default)]
struct Held {
    /// The log in hub order: position `i + 1` at index `i`, with its receive time.
    events: Vec<(Event, i64)>,
    /// Position of each event id.
    ids: BTreeMap<Vec<u8>, u64>,
    /// Origins by id.
    origins: BTreeMap<Uuid, OriginState>,
    /// Quarantine by origin and seq.
    quarantine: BTreeMap<(Uuid, u64), Quarantined>,
    /// The token that speaks for each origin, and its key.
    bindings: BTreeMap<Uuid, OriginBinding>,
    /// The origin each token speaks for.
    token_origins: BTreeMap<String, Uuid>,
    /// The signed heads verified, by origin, oldest first.
    heads: BTreeMap<Uuid, Vec<StoredHead>>,
}

impl Held {
    /// The event held at `origin`'s `seq`, in the log or in quarantine.
    fn at(&self, origin: Uuid, seq: u64) -> Option<Event> {
        if let Some(q) = self.quarantine.get(&(origin, seq)) {
            return Event::decode(q.event.as_slice()).ok();
        }
        self.events
            .iter()
            .rev()
            .map(|(event, _)| event)
            .find(|event| event.origin_id == origin.as_bytes() && event.origin_seq == seq)
            .cloned()
    }
}

/// The hub's log in memory.
#[derive(Debug, Default)]
pub struct MemoryLog {
    held: Mutex<Held>,
    roster: Option<BTreeSet<String>>,
}

impl MemoryLog {
    /// An empty log accepting every well-formed station.
    pub fn new() -> Self {
        Self::default()
    }

    /// The log, quarantining events of stations outside `stations`.
    #[must_use]
    pub fn with_roster(mut self, stations: impl IntoIterator<Item = String>) -> Self {
        self.roster = Some(stations.into_iter().collect());
        self
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        // `push` decides before it changes anything, and its changes cannot
        // fail midway: a poisoned lock still guards a consistent value.
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl HubLog for MemoryLog {
    fn push_signed(
        &self,
        events: Vec<Event>,
        heads: &[SignedHead],
        today: chrono::NaiveDate,
        now_ms: i64,
    ) -> Result<PushOutcome, HubError> {
        let mut held = self.held();
        let origins = ingest::origins_of(&events)?
            .into_iter()
            .map(|origin| {
                let state = held.origins.get(&origin).cloned().unwrap_or_default();
                (origin, state)
            })
            .collect();
        let keys: BTreeMap<Uuid, Vec<u8>> = held
            .bindings
            .iter()
            .filter_map(|(origin, b)| Some((*origin, b.public_key.clone()?)))
            .collect();
        let signed: BTreeSet<Uuid> = keys.keys().copied().collect();
        // What the log holds of transfers, read as the sled store reads it.
        let mut transfers = ingest::KnownTransfers::default();
        for (event, _) in &held.events {
            transfers.learn(event);
        }
        let policy = Policy {
            today,
            roster: self.roster.as_ref(),
            now_ms,
            max_clock_skew_ms: station_proto::validate::MAX_CLOCK_SKEW_MS,
            signed: Some(&signed),
            transfers: Some(&transfers),
        };
        let case_station = |case: Uuid| {
            let position = *held.ids.get(case.as_bytes().as_slice())?;
            let (event, _) = held
                .events
                .get(usize::try_from(position).ok()?.checked_sub(1)?)?;
            matches!(event.body, Some(station_proto::Body::CaseOpened(_)))
                .then(|| event.station_code.clone())
        };
        let decided = ingest::decide(
            events,
            origins,
            |id| held.ids.contains_key(id),
            |origin, seq| held.at(origin, seq),
            case_station,
            &policy,
        );
        let mut decision = match decided {
            Err(Refusal::Conflict { origin, seq }) => {
                held.origins.entry(origin).or_default().conflicts += 1;
                return Err(HubError::Conflict { origin, seq });
            }
            decided => decided?,
        };
        ingest::verify_heads(&mut decision, heads, |origin| keys.get(&origin).cloned())?;
        let mut outcome = PushOutcome::counting(&decision);
        for verdict in decision.verdicts {
            match verdict.verdict {
                Verdict::Accept(accepted) => {
                    let pos = held.events.len() as u64 + 1;
                    held.ids.insert(accepted.event.event_id.clone(), pos);
                    held.events.push((accepted.event, now_ms));
                }
                Verdict::Quarantine(q) => {
                    held.quarantine
                        .insert((verdict.origin, verdict.origin_seq), q);
                }
                Verdict::AlreadyHeld => {}
            }
        }
        for (origin, state) in decision.origins {
            outcome.acks.push((origin, state.durable_through));
            if let Some(head) = &state.signed_head
                && decision
                    .new_seqs
                    .get(&origin)
                    .is_some_and(|(_, last)| *last == head.last_seq)
            {
                held.heads.entry(origin).or_default().push(head.clone());
            }
            held.origins.insert(origin, state);
        }
        Ok(outcome)
    }

    fn hello(
        &self,
        origin: Uuid,
        station_code: &str,
        head_seq: u64,
        device_clock_ms: i64,
        now_ms: i64,
    ) -> Result<OriginState, HubError> {
        let mut held = self.held();
        let state = held.origins.entry(origin).or_default();
        if state.station_code.is_empty() {
            state.station_code = station_code.to_string();
        }
        state.reported_head = head_seq;
        state.last_contact_ms = now_ms;
        state.clock_skew_ms = device_clock_ms.saturating_sub(now_ms);
        Ok(state.clone())
    }

    fn bind_origin(
        &self,
        origin: Uuid,
        token_id: &str,
        public_key: Option<&[u8]>,
    ) -> Result<OriginBinding, HubError> {
        let mut held = self.held();
        if let Some(bound) = held.token_origins.get(token_id)
            && *bound != origin
        {
            return Err(HubError::TokenBound {
                token_id: token_id.to_string(),
                origin: *bound,
            });
        }
        let mut binding = match held.bindings.get(&origin) {
            Some(binding) if binding.token_id != token_id => {
                return Err(HubError::OriginTaken(origin));
            }
            Some(binding) => binding.clone(),
            None => OriginBinding {
                token_id: token_id.to_string(),
                public_key: None,
            },
        };
        match (&binding.public_key, public_key) {
            (Some(bound), Some(key)) if bound.as_slice() != key => {
                return Err(HubError::KeyMismatch(origin));
            }
            (None, Some(key)) => binding.public_key = Some(key.to_vec()),
            _ => {}
        }
        held.token_origins.insert(token_id.to_string(), origin);
        held.bindings.insert(origin, binding.clone());
        Ok(binding)
    }

    fn binding(&self, origin: Uuid) -> Result<Option<OriginBinding>, HubError> {
        Ok(self.held().bindings.get(&origin).cloned())
    }

    fn signed_heads(&self, origin: Uuid) -> Result<Vec<StoredHead>, HubError> {
        Ok(self.held().heads.get(&origin).cloned().unwrap_or_default())
    }

    fn origin(&self, origin: Uuid) -> Result<OriginState, HubError> {
        Ok(self
            .held()
            .origins
            .get(&origin)
            .cloned()
            .unwrap_or_default())
    }

    fn origins(&self) -> Result<Vec<(Uuid, OriginState)>, HubError> {
        Ok(self
            .held()
            .origins
            .iter()
            .map(|(id, state)| (*id, state.clone()))
            .collect())
    }

    fn pull_for(
        &self,
        station_code: &str,
        after: u64,
        max_events: usize,
        max_bytes: usize,
        skip_origin: Option<Uuid>,
    ) -> Result<PullPage, HubError> {
        let head = self.station_head(station_code)?;
        let held = self.held();
        let stream = held_station_stream(&held.events, station_code, after);
        Ok(page_of(
            stream,
            after,
            head,
            max_events,
            max_bytes,
            skip_origin,
        ))
    }

    fn station_head(&self, station_code: &str) -> Result<u64, HubError> {
        Ok(self
            .held()
            .events
            .iter()
            .rposition(|(event, _)| event.station_code == station_code)
            .map_or(0, |index| index as u64 + 1))
    }

    fn event_count(&self) -> u64 {
        self.held().events.len() as u64
    }

    fn events_after(&self, after: u64, limit: usize) -> Result<Vec<LoggedEvent>, HubError> {
        Ok(self
            .held()
            .events
            .iter()
            .zip(1u64..)
            .skip(usize::try_from(after).unwrap_or(usize::MAX))
            .take(limit)
            .map(|((event, received), hub_seq)| LoggedEvent {
                hub_seq,
                received_at_ms: Some(*received),
                event: event.clone(),
            })
            .collect())
    }

    fn position_of(&self, event_id: &[u8]) -> Result<Option<u64>, HubError> {
        Ok(self.held().ids.get(event_id).copied())
    }

    fn quarantine(&self) -> Result<Vec<(Uuid, Quarantined)>, HubError> {
        Ok(self
            .held()
            .quarantine
            .iter()
            .map(|((origin, _), q)| (*origin, q.clone()))
            .collect())
    }
}
