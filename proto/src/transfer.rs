//! Transfers of a case file between stations (转移): which station holds a
//! file, given its opening station and its transfer requests and answers,
//! and where each request stands.
//!
//! Pure: no I/O and no clock. Both ends apply the same rule ([`chain`]) to
//! the same set of live events, so the phone's views and the hub's
//! projections agree on who holds a file.
//!
//! Invariants:
//! - A file is held by its opening station until an accepted transfer moves
//!   it; it is held by one station at a time.
//! - A request counts only when recorded by the station holding the file at
//!   that point (in (hlc, event_id) order) and addressed to another station;
//!   an answer counts only when recorded by the station the request names,
//!   while the request is pending and its sender still holds the file.
//!   Everything else is without effect ([`TransferChain::effective`] says
//!   which), so a station can neither take a file it was not offered nor give
//!   away one it does not hold.
//! - Accepting one request supersedes the other requests pending for the
//!   file; declining one leaves the file where it is.
//! - The result is a function of the *set* of live transfer events taken in
//!   (hlc, event_id) order: arrival order cannot change it.

use chrono::NaiveDate;

use crate::ids::Uuid;
use crate::{Body, Event};

/// What one transfer event says, read from its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferStep<'a> {
    /// `CaseTransferRequested`.
    Requested {
        /// The station asked to take the file.
        to: &'a str,
        /// The day of the request.
        on: Option<NaiveDate>,
    },
    /// `CaseTransferAccepted`.
    Accepted {
        /// The request answered, when well formed.
        request: Option<Uuid>,
        /// The community of the receiving station.
        community_code: &'a str,
        /// The day the file was taken over.
        on: Option<NaiveDate>,
    },
    /// `CaseTransferDeclined`.
    Declined {
        /// The request answered, when well formed.
        request: Option<Uuid>,
        /// The day of the answer.
        on: Option<NaiveDate>,
    },
}

impl<'a> TransferStep<'a> {
    /// What `body` says of a transfer; `None` for every other body.
    pub fn of(body: &'a Body) -> Option<Self> {
        body.kind().transfer()
    }
}

/// The (case, request) an answer to a transfer request names, for
/// `CaseTransferAccepted` and `CaseTransferDeclined` with well-formed ids;
/// `None` for every other body.
pub fn answer_of(body: &Body) -> Option<(Uuid, Uuid)> {
    body.kind().transfer_answer()
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Not answered yet.
    Pending,
    /// Accepted by the addressed station (by the event `id`, on `on`).
    Accepted {
        /// The acceptance's event id.
        id: Uuid,
        /// The day of the acceptance.
        on: Option<NaiveDate>,
    },
    /// Declined by the addressed station.
    Declined {
        /// The answer's event id.
        id: Uuid,
        /// The day of the answer.
        on: Option<NaiveDate>,
    },
    /// Another request of the file was accepted first.
    Superseded,
}

/// A request that counts, with where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request's event id.
    pub id: Uuid,
    /// The station that asked (the holder then).
    pub from: String,
    /// The station asked.
    pub to: String,
    /// The day of the request.
    pub requested_on: Option<NaiveDate>,
    /// Where it stands.
    pub answer: Answer,
}

/// A station's time holding the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    /// The station.
    pub station: String,
    /// The acceptance that gave it the file; `None` for the opening station.
    pub accepted_by: Option<Uuid>,
    /// The day it took the file over; `None` for the opening station.
    pub since: Option<NaiveDate>,
    /// The community of the receiving station named by the acceptance.
    pub community_code: Option<String>,
}

/// Who held and holds a file, and its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferChain {
    /// The stations that held the file, in order; the last one holds it.
    pub holdings: Vec<Holding>,
    /// The requests that count, in (hlc, event_id) order.
    pub requests: Vec<Request>,
    /// The transfer events that took effect (requests that count and the
    /// answers that answered them).
    effective: Vec<Uuid>,
}

impl TransferChain {
    /// The station holding the file now.
    pub fn holder(&self) -> &str {
        // `chain` always starts with the opening station.
        self.holdings.last().map_or("", |h| h.station.as_str())
    }

    /// Whether `station` held the file at some point (its entries belong to
    /// the file's history).
    pub fn held_by(&self, station: &str) -> bool {
        self.holdings.iter().any(|h| h.station == station)
    }

    /// Whether the transfer event `id` took effect.
    pub fn effective(&self, id: Uuid) -> bool {
        self.effective.contains(&id)
    }

    /// The station the file was transferred to last, when it was.
    pub fn transferred_to(&self) -> Option<&str> {
        (self.holdings.len() > 1).then(|| self.holder())
    }

    /// The requests still waiting for an answer.
    pub fn pending(&self) -> impl Iterator<Item = &Request> {
        self.requests.iter().filter(|r| r.answer == Answer::Pending)
    }

    /// The community named by the last acceptance, when the file was
    /// transferred.
    pub fn community_code(&self) -> Option<&str> {
        self.holdings.last()?.community_code.as_deref()
    }
}

/// The one transfer rule: `opening_station` held the file first; `steps`
/// are the file's live transfer events (id, station, what it says), in
/// (hlc, event_id) order. See the module's invariants.
pub fn chain<'a>(
    opening_station: &str,
    steps: impl IntoIterator<Item = (Uuid, &'a str, TransferStep<'a>)>,
) -> TransferChain {
    let mut chain = TransferChain {
        holdings: vec![Holding {
            station: opening_station.to_owned(),
            accepted_by: None,
            since: None,
            community_code: None,
        }],
        requests: Vec::new(),
        effective: Vec::new(),
    };
    for (id, station, step) in steps {
        match step {
            TransferStep::Requested { to, on } => {
                if station == chain.holder() && to != station && !to.is_empty() {
                    chain.requests.push(Request {
                        id,
                        from: station.to_owned(),
                        to: to.to_owned(),
                        requested_on: on,
                        answer: Answer::Pending,
                    });
                    chain.effective.push(id);
                }
            }
            TransferStep::Accepted {
                request,
                community_code,
                on,
            } => {
                let holder = chain.holder().to_owned();
                let Some(index) = chain.requests.iter().position(|r| {
                    Some(r.id) == request
                        && r.answer == Answer::Pending
                        && r.to == station
                        && r.from == holder
                }) else {
                    continue;
                };
                for other in &mut chain.requests {
                    if other.answer == Answer::Pending {
                        other.answer = Answer::Superseded;
                    }
                }
                chain.requests[index].answer = Answer::Accepted { id, on };
                chain.holdings.push(Holding {
                    station: station.to_owned(),
                    accepted_by: Some(id),
                    since: on,
                    community_code: Some(community_code.to_owned()),
                });
                chain.effective.push(id);
            }
            TransferStep::Declined { request, on } => {
                let Some(r) = chain.requests.iter_mut().find(|r| {
                    Some(r.id) == request && r.answer == Answer::Pending && r.to == station
                }) else {
                    continue;
                };
                r.answer = Answer::Declined { id, on };
                chain.effective.push(id);
            }
        }
    }
    chain
}

/// [`chain`] over a case's live events (any order; sorted here by (hlc,
/// event_id)), the opening's station read from the event whose id is
/// `case_id`; `None` while that opening is not among them.
pub fn chain_of(case_id: Uuid, events: &[Event]) -> Option<TransferChain> {
    let opening = events.iter().find(|e| {
        e.event_id == case_id.as_bytes() && matches!(e.body, Some(Body::CaseOpened(_)))
    })?;
    let mut steps: Vec<(&Event, TransferStep<'_>)> = events
        .iter()
        .filter_map(|e| Some((e, TransferStep::of(e.body.as_ref()?)?)))
        .collect();
    steps.sort_by(|(a, _), (b, _)| a.hlc.cmp(&b.hlc).then_with(|| a.event_id.cmp(&b.event_id)));
    Some(chain(
        &opening.station_code,
        steps.into_iter().filter_map(|(e, step)| {
            Some((
                Uuid::from_slice(&e.event_id).ok()?,
                e.station_code.as_str(),
                step,
            ))
        }),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const A: &str = "540502101";
    const B: &str = "540502001";
    const C: &str = "540502200";

    fn req(to: &str) -> TransferStep<'_> {
        TransferStep::Requested { to, on: None }
    }

    fn accept(request: u128) -> TransferStep<'static> {
        TransferStep::Accepted {
            request: Some(Uuid::from_u128(request)),
            community_code: "540502001003",
            on: NaiveDate::from_ymd_opt(2026, 5, 2),
        }
    }

    #[test]
    fn an_accepted_request_moves_the_file_and_supersedes_the_others() {
        let id = Uuid::from_u128;
        let chain = chain(
            A,
            [
                (id(1), A, req(B)),
                (id(2), A, req(C)),
                (id(3), B, accept(1)),
                // C answers too late: the request was superseded.
                (id(4), C, accept(2)),
            ],
        );
        assert_eq!(chain.holder(), B);
        assert!(chain.held_by(A) && chain.held_by(B) && !chain.held_by(C));
        assert_eq!(chain.transferred_to(), Some(B));
        assert_eq!(chain.community_code(), Some("540502001003"));
        assert_eq!(chain.requests[1].answer, Answer::Superseded);
        assert!(chain.effective(id(3)) && !chain.effective(id(4)));
        assert_eq!(chain.pending().count(), 0);
    }

    #[test]
    fn only_the_holder_asks_and_only_the_addressee_answers() {
        let id = Uuid::from_u128;
        let chain = chain(
            A,
            [
                // B does not hold the file: no effect.
                (id(1), B, req(C)),
                (id(2), A, req(B)),
                // C is not asked: no effect.
                (id(3), C, accept(2)),
                (
                    id(4),
                    C,
                    TransferStep::Declined {
                        request: Some(id(2)),
                        on: None,
                    },
                ),
            ],
        );
        assert_eq!(chain.holder(), A);
        assert_eq!(chain.transferred_to(), None);
        assert_eq!(chain.requests.len(), 1);
        assert_eq!(chain.pending().count(), 1);
        assert!(!chain.effective(id(1)) && !chain.effective(id(3)) && !chain.effective(id(4)));
        let declined = super::chain(
            A,
            [
                (id(2), A, req(B)),
                (
                    id(5),
                    B,
                    TransferStep::Declined {
                        request: Some(id(2)),
                        on: None,
                    },
                ),
                (id(6), B, accept(2)),
            ],
        );
        assert_eq!(
            declined.holder(),
            A,
            "a declined request cannot be accepted"
        );
        assert!(matches!(
            declined.requests[0].answer,
            Answer::Declined { .. }
        ));
    }

    #[test]
    fn a_file_moves_on_again_from_its_new_holder() {
        let id = Uuid::from_u128;
        let chain = chain(
            A,
            [
                (id(1), A, req(B)),
                (id(2), B, accept(1)),
                // A no longer holds it.
                (id(3), A, req(C)),
                (id(4), B, req(C)),
                (id(5), C, accept(4)),
            ],
        );
        assert_eq!(chain.holder(), C);
        assert_eq!(chain.holdings.len(), 3);
        assert!(!chain.effective(id(3)));
    }
}
