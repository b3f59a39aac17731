//! The transfers feed of the `Sync` service: what a station's devices may
//! read of files held at other stations, handed out with each `Pull` of a
//! device token of the city hub (`PullRequest.transfers_after`,
//! `PullResponse.transfers`).
//!
//! The feed is a look through the district's log in hub order, from the
//! device's cursor up to the projections' checkpoint (so every file is
//! judged by what the projections hold of it through that point). For the
//! station `S` asking:
//!
//! - a file with a transfer request addressed to `S` (live, or voided after
//!   it may have reached `S`) is **asked**: `S` may read its opening and its
//!   transfer steps (requests, answers, and the voids of them), enough for a
//!   worker to see who is to be taken over and to answer offline, and to
//!   learn that a request was withdrawn or answered elsewhere;
//! - a file `S` holds or held by an accepted transfer ([`transfer::chain`])
//!   is **held**: `S` may read its whole history as the case's timeline
//!   holds it, up to the acceptance that moved it on from `S` (later entries
//!   of the next holders are not `S`'s; transfer steps always are);
//! - nothing of any other file.
//!
//! Invariants: the page holds only events `S` may read by the rule above,
//! never an event of `S`'s own stream (the device pulls those with the
//! station stream); a request to `S` or an acceptance by `S` met in the log
//! hands out everything `S` may read of its file at once, and every later
//! event `S` may read is met later in the log, so a device that applied
//! every page up to the head holds all it may read; the cursor only moves
//! over positions whose events were handed out or are not `S`'s to read.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use station_proto::case::case_key;
use station_proto::ids::Uuid;
use station_proto::transfer::{self, TransferStep};
use station_proto::v1::TransferPage;
use station_proto::{Body, Event};

use crate::projections::{ProjectionError, Projections};
use crate::store::HubError;

/// Positions of the log one page looks at, at most: a device far behind
/// catches up in bounded steps.
pub const MAX_SCANNED: usize = 5_000;

/// How long a pull waits, at most, for the projections to apply the
/// asking station's stream as the log holds it before the page is read:
/// then a device's acceptance pushed in the same round brings the file's
/// history in that round.
pub const PROJECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Errors of the feed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The log could not be read.
    #[error(transparent)]
    Store(#[from] HubError),
    /// The projections could not be read.
    #[error(transparent)]
    Projections(#[from] ProjectionError),
}

/// What `station` may read of one file.
#[derive(Debug, Default)]
struct Grant {
    /// The events it may read, of other stations, in (hlc, event_id) order.
    readable: Vec<Event>,
    /// Their ids.
    ids: BTreeSet<Vec<u8>>,
    /// The events that hand out `readable` whole when met: requests to the
    /// station and its acceptances.
    triggers: BTreeSet<Vec<u8>>,
}

/// Whether `body` is a step of a transfer.
fn is_transfer(body: Option<&Body>) -> bool {
    body.and_then(TransferStep::of).is_some()
}

/// What `station` may read of `case`, by the module's rule; `None` when
/// nothing.
fn grant_of(
    projections: &Projections,
    case: Uuid,
    station: &str,
) -> Result<Option<Grant>, FeedError> {
    let timeline = match projections.case_timeline(case) {
        Ok(timeline) => timeline,
        Err(ProjectionError::UnknownCase(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let own: Vec<Event> = timeline
        .entries
        .iter()
        .filter(|e| !e.voided && case_key(&e.event) == Some(case))
        .map(|e| e.event.clone())
        .collect();
    let Some(chain) = transfer::chain_of(case, &own) else {
        return Ok(None);
    };
    let mut triggers: BTreeSet<Vec<u8>> = chain
        .requests
        .iter()
        .filter(|r| r.to == station)
        .map(|r| r.id.as_bytes().to_vec())
        .collect();
    let mut transfer_ids: BTreeSet<Vec<u8>> = BTreeSet::new();
    for entry in &timeline.entries {
        if is_transfer(entry.event.body.as_ref()) {
            transfer_ids.insert(entry.event.event_id.clone());
            // A request to the station voided since: the station may hold
            // it, and must learn it was withdrawn.
            if entry.voided
                && let Some(Body::CaseTransferRequested(m)) = &entry.event.body
                && m.to_station_code == station
            {
                triggers.insert(entry.event.event_id.clone());
            }
        }
    }
    let step = |e: &Event| {
        is_transfer(e.body.as_ref())
            || matches!(&e.body, Some(Body::EventVoided(v)) if transfer_ids.contains(&v.voided_event_id))
    };
    let held = chain.holdings.iter().rposition(|h| h.station == station);
    let readable: Vec<Event> = match held {
        Some(index) => {
            for holding in chain.holdings.iter().filter(|h| h.station == station) {
                if let Some(id) = holding.accepted_by {
                    triggers.insert(id.as_bytes().to_vec());
                }
            }
            // The acceptance that moved the file on from the station, when
            // it did: later entries are the next holders'.
            let until = chain
                .holdings
                .get(index + 1)
                .and_then(|h| h.accepted_by)
                .and_then(|id| own.iter().find(|e| e.event_id == id.as_bytes()))
                .map(|e| (e.hlc, e.event_id.clone()));
            timeline
                .entries
                .iter()
                .map(|e| &e.event)
                .filter(|e| {
                    step(e)
                        || until
                            .as_ref()
                            .is_none_or(|(hlc, id)| (e.hlc, &e.event_id) <= (*hlc, id))
                })
                .cloned()
                .collect()
        }
        None if !triggers.is_empty() => timeline
            .entries
            .iter()
            .map(|e| &e.event)
            .filter(|e| e.event_id == case.as_bytes() || step(e))
            .cloned()
            .collect(),
        None => return Ok(None),
    };
    let readable: Vec<Event> = readable
        .into_iter()
        .filter(|e| e.station_code != station)
        .collect();
    Ok(Some(Grant {
        ids: readable.iter().map(|e| e.event_id.clone()).collect(),
        readable,
        triggers,
    }))
}

/// The file an event of the log is about: its case, or for a void, the
/// case of the event it voids (when the log holds it).
fn file_of(projections: &Projections, event: &Event) -> Result<Option<Uuid>, FeedError> {
    if let Some(case) = case_key(event) {
        return Ok(Some(case));
    }
    let Some(Body::EventVoided(void)) = &event.body else {
        return Ok(None);
    };
    let store = projections.store();
    let Some(position) = store.position_of(&void.voided_event_id)? else {
        return Ok(None);
    };
    Ok(store.event_at(position)?.as_ref().and_then(case_key))
}

/// Whether `station` may have something to read of `case`, as `event` (of
/// that file) shows: cheap, read before the file's grant is worked out.
fn may_concern(
    projections: &Projections,
    case: Uuid,
    event: &Event,
    station: &str,
) -> Result<bool, FeedError> {
    if is_transfer(event.body.as_ref()) {
        return Ok(true);
    }
    let store = projections.store();
    // A void of a transfer step is one; a void of anything else counts like
    // an entry of the file.
    if let Some(Body::EventVoided(void)) = &event.body
        && let Some(position) = store.position_of(&void.voided_event_id)?
        && store
            .event_at(position)?
            .is_some_and(|target| is_transfer(target.body.as_ref()))
    {
        return Ok(true);
    }
    Ok(store.took_over(case, station)?)
}

/// The page of the transfers feed of `station` after hub position `after`:
/// at most `max_events` events and about `max_bytes` of them (a file handed
/// out whole is never cut), looking at no more than [`MAX_SCANNED`]
/// positions, up to the projections' checkpoint.
///
/// # Errors
/// Storage errors of the log or the projections.
pub fn page(
    projections: &Projections,
    station: &str,
    after: u64,
    max_events: usize,
    max_bytes: usize,
) -> Result<TransferPage, FeedError> {
    use prost::Message as _;
    let head = projections
        .checkpoint()
        .min(projections.store().durable_head());
    let mut page = TransferPage {
        events: Vec::new(),
        next_cursor: after,
        head,
    };
    if after >= head {
        return Ok(page);
    }
    let mut grants: BTreeMap<Uuid, Option<Grant>> = BTreeMap::new();
    let mut sent: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut bytes = 0usize;
    for logged in projections
        .store()
        .scan_events_after(after)
        .take(MAX_SCANNED)
    {
        let logged = logged?;
        if logged.hub_seq > head || page.events.len() >= max_events || bytes >= max_bytes {
            break;
        }
        let event = logged.event;
        page.next_cursor = logged.hub_seq;
        let Some(case) = file_of(projections, &event)? else {
            continue;
        };
        let grant = match grants.entry(case) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => {
                if !may_concern(projections, case, &event, station)? {
                    continue;
                }
                new.insert(grant_of(projections, case, station)?)
            }
        };
        let Some(grant) = grant else {
            continue;
        };
        let handed: Vec<&Event> = if grant.triggers.contains(&event.event_id) {
            grant.readable.iter().collect()
        } else if grant.ids.contains(&event.event_id) {
            grant
                .readable
                .iter()
                .filter(|e| e.event_id == event.event_id)
                .collect()
        } else {
            Vec::new()
        };
        for e in handed {
            if sent.insert(e.event_id.clone()) {
                bytes += e.encoded_len();
                page.events.push(e.clone());
            }
        }
    }
    Ok(page)
}
