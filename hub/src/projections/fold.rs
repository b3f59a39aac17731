//! The pure part of the projections: what one event contributes, and what a
//! case file derives from its events. No I/O.
//!
//! Invariants:
//! - a case's derived rows and counter contributions are a function of the
//!   *set* of its facts: facts are sorted by (hlc, event_id) and voided ones
//!   left out before anything is derived, so arrival order cannot matter;
//! - case events count only once their case's `CaseOpened` is known, not
//!   voided, and of the same station; until then they are *held*;
//! - contributions are emitted as (counter, amount) pairs that the caller
//!   adds up: what a case or an event adds can be taken back exactly by
//!   emitting it again with the opposite sign;
//! - a *duplicate file* (a case opened, by service date, while an earlier
//!   file of the same person at the same station was open: two offline
//!   phones) is a function of the facts of the person's files
//!   ([`duplicate_of`]); it is kept and folded, its services count, but it
//!   adds nothing to the counts of files (new, closed, open) nor to the
//!   households visited, and it is flagged in data quality; a live
//!   `DuplicateDismissed` of the pair lifts the flag;
//! - a file *merged* into another ([`survivor`], the case model's rule over
//!   the live merges, read through a [`MergeGraph`]) adds nothing by
//!   itself and is never a duplicate: its live facts are folded and counted
//!   with its survivor's ([`Role::joined`]), its services as services (at
//!   the station that gave them, a station that held it before a transfer
//!   included), its opening, closings, reopenings and tier changes as
//!   entries only; a merge counts only when its station holds both files,
//!   opened there or taken over by a transfer.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use chrono::NaiveDate;
use foldhash::{HashMapExt as _, HashSetExt as _};
use station_proto::case::{self, CaseStep, CaseView};
use station_proto::directory::DirectoryTag;
use station_proto::ids::Uuid;
use station_proto::person::{PersonTag, TagKey};
use station_proto::transfer::{self, TransferChain, TransferStep};
use station_proto::v1::{Tier, VisitKind};
use station_proto::{Body, Event};

use super::answer::{ConcurrentAssessment, ReviewRow, TierConflict};
use super::period::{Metric, Period};

/// A station code, shared by every fact and counter that names it.
pub(crate) type Station = Arc<str>;

/// One `Arc` per distinct station code.
#[derive(Debug)]
pub(crate) struct Stations(foldhash::HashSet<Station>);

impl Default for Stations {
    fn default() -> Self {
        Self(foldhash::HashSet::new())
    }
}

impl Stations {
    pub(crate) fn get(&mut self, code: &str) -> Station {
        if let Some(station) = self.0.get(code) {
            return Arc::clone(station);
        }
        let station: Station = Arc::from(code);
        self.0.insert(Arc::clone(&station));
        station
    }
}

/// A data-quality counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Quality {
    /// Case events waiting for their `CaseOpened`.
    HeldEvents,
    /// `EventVoided` events received.
    VoidedEvents,
    /// Cases with a flagged tier conflict.
    TierConflicts,
    /// Duplicate files: opened while the same person's earlier file at the
    /// station was open.
    DuplicateFiles,
}

impl Quality {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Quality::HeldEvents => "held_events",
            Quality::VoidedEvents => "voided_events",
            Quality::TierConflicts => "tier_conflicts",
            Quality::DuplicateFiles => "duplicate_files",
        }
    }
}

/// What a counter counts, for one station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Item {
    /// An indicator in a period, in raw units.
    Indicator(Period, Metric),
    /// Cases opened minus closed in a month, by service date.
    OpenDelta(Period),
    /// A data-quality count.
    Quality(Quality),
    /// Closures (as counted in `cases_closed`) approved by a review, in a
    /// period by closing date.
    ApprovedClosings(Period),
}

/// A counter: a station's sum of contributions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Counter {
    pub station: Station,
    pub item: Item,
}

impl fmt::Display for Counter {
    /// The counter's name in the tree: `i:{station}:{period}:{metric}`,
    /// `o:{station}:{YYYY-MM}` or `q:{station}:{name}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let station = &self.station;
        match self.item {
            Item::Indicator(period, metric) => write!(f, "i:{station}:{period}:{}", metric.name()),
            Item::OpenDelta(month) => write!(f, "o:{station}:{month}"),
            Item::Quality(q) => write!(f, "q:{station}:{}", q.name()),
            Item::ApprovedClosings(period) => {
                write!(f, "i:{station}:{period}:{APPROVED_CLOSINGS}")
            }
        }
    }
}

/// The name, among a period's indicators, of the count of closures approved
/// by a review (`i:{station}:{period}:cases_closed_approved`).
pub(crate) const APPROVED_CLOSINGS: &str = "cases_closed_approved";

/// The name of a quality counter, as [`Counter`] writes it.
pub(crate) fn quality_key(station: &str, quality: Quality) -> String {
    format!("q:{station}:{}", quality.name())
}

/// Where contributions go: (counter, signed amount) pairs are added up.
/// Indicators that add up over time are kept by month, and added to their
/// quarter and year when drained: one entry per contribution instead of three.
#[derive(Debug)]
pub(crate) struct Sums {
    /// Amounts per [`Metric`] (in [`Metric::ALL`] order) by station and month.
    months: foldhash::HashMap<(Station, Period), [i64; Metric::ALL.len()]>,
    /// Every other counter.
    counters: foldhash::HashMap<Counter, i64>,
}

impl Default for Sums {
    fn default() -> Self {
        Self {
            months: foldhash::HashMap::new(),
            counters: foldhash::HashMap::new(),
        }
    }
}

impl Sums {
    /// Adds `amount` to a counter.
    pub(crate) fn add(&mut self, station: &Station, item: Item, amount: i64) {
        if amount != 0 {
            let counter = Counter {
                station: Arc::clone(station),
                item,
            };
            let sum = self.counters.entry(counter).or_insert(0);
            // Wrapping, so that sums do not depend on the order they are made in.
            *sum = sum.wrapping_add(amount);
        }
    }

    /// Adds `amount` to an indicator in the month, quarter and year of `date`.
    pub(crate) fn add_by_date(
        &mut self,
        station: &Station,
        date: NaiveDate,
        metric: Metric,
        amount: i64,
    ) {
        if amount != 0 {
            let [month, ..] = Period::of_date(date);
            let sums = self
                .months
                .entry((Arc::clone(station), month))
                .or_insert([0; Metric::ALL.len()]);
            let sum = &mut sums[metric as usize];
            *sum = sum.wrapping_add(amount);
        }
    }

    /// Adds `other` to these sums.
    pub(crate) fn merge(&mut self, other: Sums) {
        for (key, amounts) in other.months {
            let sums = self.months.entry(key).or_insert([0; Metric::ALL.len()]);
            for (sum, amount) in sums.iter_mut().zip(amounts) {
                *sum = sum.wrapping_add(amount);
            }
        }
        for (counter, amount) in other.counters {
            let sum = self.counters.entry(counter).or_insert(0);
            *sum = sum.wrapping_add(amount);
        }
    }

    /// Every counter changed and by how much, emptying the sums.
    pub(crate) fn drain(&mut self) -> foldhash::HashMap<Counter, i64> {
        let mut counters = std::mem::take(&mut self.counters);
        for ((station, month), sums) in self.months.drain() {
            let periods = Period::of_date(month.first_day());
            for (metric, amount) in Metric::ALL.into_iter().zip(sums) {
                if amount == 0 {
                    continue;
                }
                for period in periods {
                    let counter = Counter {
                        station: Arc::clone(&station),
                        item: Item::Indicator(period, metric),
                    };
                    let sum = counters.entry(counter).or_insert(0);
                    *sum = sum.wrapping_add(amount);
                }
            }
        }
        counters
    }
}

pub(crate) use station_proto::case::parse_date;

/// A service date as the folds read it: `None` when it does not parse.
pub(crate) type Day = Option<NaiveDate>;

/// What the projections keep of one case event: enough to fold the case,
/// nothing of the ID number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CaseFact {
    /// The event's id.
    pub id: Uuid,
    /// The event's hlc, the first sort key.
    pub hlc: u64,
    /// The station the event belongs to.
    pub station: Station,
    /// The smallest id of the same-station voids of this event, if any.
    pub voided_by: Option<Uuid>,
    /// What it says.
    pub body: FactBody,
}

/// What the folds read of a `CaseOpened`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpenedFact {
    pub name: String,
    pub community: String,
    pub categories: Vec<i32>,
    pub tier: i32,
    pub on: Day,
    /// 档案编号, as given (empty from older clients).
    pub file_number: String,
}

/// What the folds read of a `CaseAssessed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AssessedFact {
    pub tier: i32,
    pub last_seen: Option<Uuid>,
    pub author: String,
    /// As written: a conflict reports it.
    pub on: String,
}

/// What the folds read of a `ReviewRequested`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestedFact {
    pub subject: i32,
    pub subject_event: Option<Uuid>,
    pub on: Day,
    /// The worker who asked, for the queue.
    pub author: String,
}

/// What the folds read of a `ReviewApproved` or `ReviewReturned`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecidedFact {
    pub request: Option<Uuid>,
    pub approved: bool,
    pub last_seen: Option<Uuid>,
    pub on: Day,
    /// The supervisor who decided, for the queue.
    pub author: String,
    /// What to change, for a return.
    pub comment: String,
}

/// The part of a case event's body the folds read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FactBody {
    /// `CaseOpened`.
    Opened(Box<OpenedFact>),
    /// `CaseAssessed`.
    Assessed(Box<AssessedFact>),
    /// `CaseNoteAdded`.
    Note,
    /// `CaseClosed`.
    Closed { on: Day },
    /// `CaseReopened`.
    Reopened { on: Day, tier: i32 },
    /// `VisitRecorded`.
    Visit { on: Day, kind: i32 },
    /// `BeneficiaryVerified`.
    Verified { categories: Vec<i32> },
    /// `ResourceLinked` for a case.
    Resource { on: Day, fen: i64 },
    /// A case event that adds one to `metric` on its day and says nothing
    /// else to the case (`GuardianCalled`): a kind that only feeds a counter
    /// needs no fact of its own.
    Counted { on: Day, metric: Metric },
    /// `CasesMerged`: this file absorbs `absorbed`.
    Merged { absorbed: Uuid },
    /// `DuplicateDismissed`: this file is not a duplicate of `of`.
    Dismissed { of: Uuid },
    /// `ReviewRequested`.
    Requested(Box<RequestedFact>),
    /// `ReviewApproved` or `ReviewReturned`.
    Decided(Box<DecidedFact>),
    /// `CaseTransferRequested`: the file asked to move to station `to`.
    TransferRequested { to: String, on: Day },
    /// `CaseTransferAccepted`: the request taken over, into `community`.
    TransferAccepted {
        request: Option<Uuid>,
        community: String,
        on: Day,
    },
    /// `CaseTransferDeclined`.
    TransferDeclined { request: Option<Uuid>, on: Day },
}

impl FactBody {
    /// What the fact says to the fold of its case's view.
    pub(crate) fn step(&self) -> CaseStep<'_> {
        match self {
            FactBody::Opened(o) => CaseStep::Opened {
                name: &o.name,
                community_code: &o.community,
                categories: &o.categories,
                tier: o.tier,
                opened_on: o.on,
                file_number: &o.file_number,
            },
            FactBody::Assessed(a) => CaseStep::Assessed { tier: a.tier },
            FactBody::Note
            | FactBody::Resource { .. }
            | FactBody::Counted { .. }
            | FactBody::Merged { .. }
            | FactBody::Dismissed { .. }
            | FactBody::TransferRequested { .. }
            | FactBody::TransferAccepted { .. }
            | FactBody::TransferDeclined { .. } => CaseStep::Recorded,
            FactBody::Closed { .. } => CaseStep::Closed,
            FactBody::Reopened { on, tier } => CaseStep::Reopened {
                reopened_on: *on,
                tier: *tier,
            },
            FactBody::Visit { on, .. } => CaseStep::Visited { visit_date: *on },
            FactBody::Verified { categories } => CaseStep::Verified { categories },
            FactBody::Requested(r) => CaseStep::ReviewRequested {
                subject: r.subject,
                subject_event: r.subject_event,
                requested_on: r.on,
            },
            FactBody::Decided(d) => CaseStep::ReviewDecided {
                request: d.request,
                approved: d.approved,
                last_seen: d.last_seen,
                decided_on: d.on,
                comment: &d.comment,
            },
        }
    }
}

impl FactBody {
    /// What the fact says of a transfer; `None` for other facts.
    pub(crate) fn transfer(&self) -> Option<TransferStep<'_>> {
        match self {
            FactBody::TransferRequested { to, on } => Some(TransferStep::Requested { to, on: *on }),
            FactBody::TransferAccepted {
                request,
                community,
                on,
            } => Some(TransferStep::Accepted {
                request: *request,
                community_code: community,
                on: *on,
            }),
            FactBody::TransferDeclined { request, on } => Some(TransferStep::Declined {
                request: *request,
                on: *on,
            }),
            FactBody::Opened(_)
            | FactBody::Assessed(_)
            | FactBody::Note
            | FactBody::Closed { .. }
            | FactBody::Reopened { .. }
            | FactBody::Visit { .. }
            | FactBody::Verified { .. }
            | FactBody::Resource { .. }
            | FactBody::Counted { .. }
            | FactBody::Merged { .. }
            | FactBody::Dismissed { .. }
            | FactBody::Requested(_)
            | FactBody::Decided(_) => None,
        }
    }
}

impl CaseFact {
    pub(crate) fn sort_key(&self) -> (u64, Uuid) {
        (self.hlc, self.id)
    }

    /// What the fact says to the fold of its case's view, given the case's
    /// transfer chain: an acceptance that took effect moves the file's
    /// community.
    pub(crate) fn step_in(&self, chain: Option<&TransferChain>) -> CaseStep<'_> {
        match &self.body {
            FactBody::TransferAccepted { community, .. }
                if chain.is_some_and(|c| c.effective(self.id)) =>
            {
                CaseStep::Transferred {
                    community_code: community,
                }
            }
            body => body.step(),
        }
    }
}

/// Whether a live fact belongs to its case's history under `chain`: an entry
/// of a station that held the file at some point, or a transfer event that
/// took effect (an answer of the station asked).
pub(crate) fn belongs(chain: &TransferChain, fact: &CaseFact) -> bool {
    chain.held_by(&fact.station) || chain.effective(fact.id)
}

/// Inserts `fact` into `facts` (sorted by (hlc, event_id)); false when an
/// event of that id is there already.
pub(crate) fn insert_fact(facts: &mut Vec<CaseFact>, fact: CaseFact) -> bool {
    if facts
        .last()
        .is_none_or(|last| last.sort_key() < fact.sort_key())
    {
        facts.push(fact);
        return true;
    }
    match facts.binary_search_by_key(&fact.sort_key(), CaseFact::sort_key) {
        Ok(_) => false,
        Err(at) => {
            facts.insert(at, fact);
            true
        }
    }
}

/// The case a case event belongs to (its own id for `CaseOpened`), without
/// reading the rest of it; `None` for other events.
pub(crate) fn case_of(event: &Event) -> Option<Uuid> {
    case::case_key(event)
}

/// The case an event belongs to and what it keeps of it, for case events
/// (its own id for `CaseOpened`); `None` for other events.
pub(crate) fn case_fact(event: Event, stations: &mut Stations) -> Option<(Uuid, CaseFact)> {
    let Event {
        event_id,
        station_code,
        author,
        hlc,
        body,
        ..
    } = event;
    let body = body?;
    let id = Uuid::from_slice(&event_id).ok()?;
    // An opening's case is its own id; every other kind names its case, or
    // is about none.
    let case_id = if matches!(body, Body::CaseOpened(_)) {
        id
    } else {
        case::case_of(&body)?
    };
    let body = match body {
        Body::CaseOpened(m) => FactBody::Opened(Box::new(OpenedFact {
            name: m.name,
            community: m.community_code,
            categories: m.categories,
            tier: m.tier,
            on: parse_date(&m.opened_on),
            file_number: m.file_number,
        })),
        Body::CaseAssessed(m) => FactBody::Assessed(Box::new(AssessedFact {
            tier: m.tier,
            last_seen: Uuid::from_slice(&m.last_seen_event_id).ok(),
            author,
            on: m.assessed_on,
        })),
        Body::CaseNoteAdded(_) => FactBody::Note,
        Body::CaseClosed(m) => FactBody::Closed {
            on: parse_date(&m.closed_on),
        },
        Body::CaseReopened(m) => FactBody::Reopened {
            on: parse_date(&m.reopened_on),
            tier: m.tier,
        },
        Body::VisitRecorded(m) => FactBody::Visit {
            on: parse_date(&m.visit_date),
            kind: m.kind,
        },
        Body::BeneficiaryVerified(m) => FactBody::Verified {
            categories: m.categories,
        },
        Body::ResourceLinked(m) => FactBody::Resource {
            on: parse_date(&m.linked_on),
            fen: m.cash_fen.saturating_add(m.in_kind_fen),
        },
        Body::GuardianCalled(m) => FactBody::Counted {
            on: parse_date(&m.called_on),
            metric: Metric::GuardianCalls,
        },
        Body::VisitAttempted(m) => FactBody::Counted {
            on: parse_date(&m.attempted_on),
            metric: Metric::VisitAttempts,
        },
        Body::CasesMerged(m) => match Uuid::from_slice(&m.absorbed_case_id) {
            Ok(absorbed) => FactBody::Merged { absorbed },
            Err(_) => FactBody::Note,
        },
        Body::DuplicateDismissed(m) => match Uuid::from_slice(&m.duplicate_of_case_id) {
            Ok(of) => FactBody::Dismissed { of },
            Err(_) => FactBody::Note,
        },
        Body::ReviewRequested(m) => FactBody::Requested(Box::new(RequestedFact {
            subject: m.subject,
            subject_event: Uuid::from_slice(&m.subject_event_id).ok(),
            on: parse_date(&m.requested_on),
            author,
        })),
        Body::ReviewApproved(m) => FactBody::Decided(Box::new(DecidedFact {
            request: Uuid::from_slice(&m.request_id).ok(),
            approved: true,
            last_seen: Uuid::from_slice(&m.last_seen_event_id).ok(),
            on: parse_date(&m.decided_on),
            author,
            comment: m.comment,
        })),
        Body::ReviewReturned(m) => FactBody::Decided(Box::new(DecidedFact {
            request: Uuid::from_slice(&m.request_id).ok(),
            approved: false,
            last_seen: Uuid::from_slice(&m.last_seen_event_id).ok(),
            on: parse_date(&m.decided_on),
            author,
            comment: m.comment,
        })),
        Body::CaseTransferRequested(m) => FactBody::TransferRequested {
            to: m.to_station_code,
            on: parse_date(&m.requested_on),
        },
        Body::CaseTransferAccepted(m) => FactBody::TransferAccepted {
            request: Uuid::from_slice(&m.request_id).ok(),
            community: m.community_code,
            on: parse_date(&m.accepted_on),
        },
        Body::CaseTransferDeclined(m) => FactBody::TransferDeclined {
            request: Uuid::from_slice(&m.request_id).ok(),
            on: parse_date(&m.declined_on),
        },
        Body::ActivityHeld(_)
        | Body::GroupSessionHeld(_)
        | Body::TrainingHeld(_)
        | Body::EventVoided(_) => return None,
    };
    Some((
        case_id,
        CaseFact {
            id,
            hlc,
            station: stations.get(&station_code),
            voided_by: None,
            body,
        },
    ))
}

/// What an event that is not about a case adds to its station's counters:
/// amounts of indicators on one service date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Standalone {
    date: NaiveDate,
    amounts: [(Metric, i64); 4],
}

impl Standalone {
    /// What `event` adds by itself; `None` for events that count nothing by
    /// themselves (case events, voids, a date that does not parse, nothing
    /// but zeros).
    pub(crate) fn of(event: &Event) -> Option<Self> {
        const NONE: (Metric, i64) = (Metric::Activities, 0);
        let (date, amounts) = match event.body.as_ref()? {
            Body::ActivityHeld(m) => (
                &m.held_on,
                [
                    (Metric::Activities, 1),
                    (Metric::PersonTimes, m.person_times.into()),
                    (Metric::Volunteers, m.volunteers.into()),
                    (Metric::VolunteerHours, m.volunteer_minutes.into()),
                ],
            ),
            Body::GroupSessionHeld(m) => (
                &m.held_on,
                [
                    (Metric::GroupSessions, 1),
                    (Metric::PersonTimes, m.participants.into()),
                    NONE,
                    NONE,
                ],
            ),
            Body::TrainingHeld(m) => (&m.held_on, [(Metric::Trainings, 1), NONE, NONE, NONE]),
            Body::ResourceLinked(m) => {
                if !m.case_id.is_empty() {
                    // Counted with its case.
                    return None;
                }
                (
                    &m.linked_on,
                    [
                        (
                            Metric::ResourcesYuan,
                            m.cash_fen.saturating_add(m.in_kind_fen),
                        ),
                        NONE,
                        NONE,
                        NONE,
                    ],
                )
            }
            Body::CaseOpened(_)
            | Body::CaseAssessed(_)
            | Body::CaseNoteAdded(_)
            | Body::CaseClosed(_)
            | Body::CaseReopened(_)
            | Body::VisitRecorded(_)
            | Body::BeneficiaryVerified(_)
            | Body::GuardianCalled(_)
            | Body::VisitAttempted(_)
            | Body::CasesMerged(_)
            | Body::DuplicateDismissed(_)
            | Body::CaseTransferRequested(_)
            | Body::CaseTransferAccepted(_)
            | Body::CaseTransferDeclined(_)
            | Body::ReviewRequested(_)
            | Body::ReviewApproved(_)
            | Body::ReviewReturned(_)
            | Body::EventVoided(_) => return None,
        };
        let date = parse_date(date)?;
        amounts
            .iter()
            .any(|(_, amount)| *amount != 0)
            .then_some(Self { date, amounts })
    }

    /// Adds it, times `sign`, to `station`'s counters.
    pub(crate) fn add_to(&self, sums: &mut Sums, station: &Station, sign: i64) {
        for (metric, amount) in self.amounts {
            sums.add_by_date(station, self.date, metric, sign.wrapping_mul(amount));
        }
    }
}

/// What the fold takes of one logged event: enough to apply it, read
/// without the tree, so that it can be made on another thread.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// Its hub position.
    pub hub_seq: u64,
    /// Its station.
    pub station: Station,
    /// Its device and seq there, when the origin id is well formed.
    pub origin: Option<(Uuid, u64)>,
    /// Device clock at entry, ms.
    pub recorded_at_ms: i64,
    /// Hub clock at receipt, ms.
    pub received_at_ms: Option<i64>,
    /// What it does to the projections.
    pub what: What,
}

/// What an event does to the projections.
#[derive(Debug)]
pub(crate) enum What {
    /// Nothing (its id is not well formed, or it counts nothing).
    Nothing,
    /// Voids the event of id `target` (`None` when not well formed).
    Void { id: Uuid, target: Option<Uuid> },
    /// Adds a fact to a case; an opening carries the tags of its person
    /// (the ID number and name themselves are not kept).
    Case {
        case_id: Uuid,
        fact: CaseFact,
        person: Option<OpeningTags>,
    },
    /// Counts by itself, unless voided first.
    Standalone { id: Uuid, counts: Standalone },
}

/// The tags of the person a file was opened for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpeningTags {
    /// The keyed tag of the ID number, for the person index (`p:`, `t:`);
    /// `None` for a person without one, who is not comparable by number:
    /// never a duplicate of another file, never merged with one by the
    /// projections.
    pub person: Option<PersonTag>,
    /// The directory tags ([`station_proto::directory::tags_of`]): of the
    /// ID number when there is one, then the weak tag of name, birth date
    /// and gender.
    pub directory: Vec<DirectoryTag>,
}

/// One event of the log as the fold takes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogEntry {
    /// Its hub position.
    pub hub_seq: u64,
    /// Hub clock at receipt, ms; `None` for events received before it was kept.
    pub received_at_ms: Option<i64>,
    /// The event.
    pub event: Event,
}

/// The keys people's tags are made under.
#[derive(Debug, Clone)]
pub(crate) struct Tags {
    /// The key of the projections' person index (`p:`, `t:`).
    pub person: TagKey,
    /// The district directory's key ([`station_proto::directory`]).
    pub directory: TagKey,
}

/// Takes what the fold needs of an event of the log; an opening's person is
/// tagged under `tags`.
pub(crate) fn prepare(logged: LogEntry, stations: &mut Stations, tags: &Tags) -> Prepared {
    let LogEntry {
        hub_seq,
        received_at_ms,
        event,
    } = logged;
    let station = stations.get(&event.station_code);
    let origin = Uuid::from_slice(&event.origin_id)
        .ok()
        .map(|origin| (origin, event.origin_seq));
    let recorded_at_ms = event.recorded_at_ms;
    let what = match Uuid::from_slice(&event.event_id) {
        Err(_) => What::Nothing,
        Ok(id) => match &event.body {
            None => What::Nothing,
            Some(Body::EventVoided(void)) => What::Void {
                id,
                target: Uuid::from_slice(&void.voided_event_id).ok(),
            },
            Some(_) => match Standalone::of(&event) {
                Some(counts) => What::Standalone { id, counts },
                None => {
                    let person = if let Some(Body::CaseOpened(m)) = &event.body {
                        Some(OpeningTags {
                            person: (!m.id_number.is_empty())
                                .then(|| tags.person.tag(&m.id_number)),
                            directory: station_proto::directory::tags_of(&tags.directory, m),
                        })
                    } else {
                        None
                    };
                    match case_fact(event, stations) {
                        Some((case_id, fact)) => What::Case {
                            case_id,
                            fact,
                            person,
                        },
                        None => What::Nothing,
                    }
                }
            },
        },
    };
    Prepared {
        hub_seq,
        station,
        origin,
        recorded_at_ms,
        received_at_ms,
        what,
    }
}

/// What a case file derives from its facts, besides its counter
/// contributions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CaseDerived {
    /// The case's station: its `CaseOpened`'s, when known and not voided.
    pub station: Option<Station>,
    /// The case's view, when opened (with a `CaseOpened` date that parses).
    pub view: Option<CaseView>,
    /// The flagged tier conflict, if any.
    pub conflict: Option<TierConflict>,
    /// The case's review requests and where they stand.
    pub reviews: Vec<ReviewRow>,
}

/// The station that opened a case: its live `CaseOpened`'s.
pub(crate) fn opening_station(case_id: Uuid, facts: &[CaseFact]) -> Option<&Station> {
    facts.iter().find_map(|f| match f.body {
        FactBody::Opened(_) if f.id == case_id && f.voided_by.is_none() => Some(&f.station),
        _ => None,
    })
}

/// The case's transfer chain ([`transfer::chain`]) over its live facts;
/// `None` while its opening is unknown or voided.
pub(crate) fn transfers(case_id: Uuid, facts: &[CaseFact]) -> Option<TransferChain> {
    let opening = opening_station(case_id, facts)?;
    Some(transfer::chain(
        opening,
        facts
            .iter()
            .filter(|f| f.voided_by.is_none())
            .filter_map(|f| Some((f.id, &*f.station, f.body.transfer()?))),
    ))
}

/// The fact's station `station` names, shared with the facts (every
/// station of a chain recorded a fact of the case).
fn station_named(station: &str, facts: &[CaseFact]) -> Option<Station> {
    facts
        .iter()
        .find(|f| *f.station == *station)
        .map(|f| Arc::clone(&f.station))
}

/// The station a case belongs to: the one holding it ([`transfers`]), its
/// opening's station unless an accepted transfer moved it.
pub(crate) fn case_station(case_id: Uuid, facts: &[CaseFact]) -> Option<Station> {
    let chain = transfers(case_id, facts)?;
    station_named(chain.holder(), facts)
}

/// The day a case was closed, when it is closed now: the latest service
/// date of the live closings of its history's stations.
pub(crate) fn closed_on(case_id: Uuid, facts: &[CaseFact]) -> Option<NaiveDate> {
    let chain = transfers(case_id, facts)?;
    let own: Vec<&CaseFact> = facts
        .iter()
        .filter(|f| f.voided_by.is_none() && belongs(&chain, f))
        .collect();
    let view = fold_view(case_id, &own, Some(&chain))?;
    if view.status != station_proto::case::CaseStatus::Closed {
        return None;
    }
    own.iter()
        .filter_map(|f| match f.body {
            FactBody::Closed { on } => on,
            FactBody::Opened(_)
            | FactBody::Assessed(_)
            | FactBody::Reopened { .. }
            | FactBody::Visit { .. }
            | FactBody::Counted { .. }
            | FactBody::Resource { .. }
            | FactBody::Note
            | FactBody::Verified { .. }
            | FactBody::Merged { .. }
            | FactBody::Dismissed { .. }
            | FactBody::Requested(_)
            | FactBody::Decided(_)
            | FactBody::TransferRequested { .. }
            | FactBody::TransferAccepted { .. }
            | FactBody::TransferDeclined { .. } => None,
        })
        .max()
}

/// The view of a case: the case model's one fold ([`case::fold_steps`])
/// over the live facts of its history, in (hlc, event_id) order.
fn fold_view(case_id: Uuid, own: &[&CaseFact], chain: Option<&TransferChain>) -> Option<CaseView> {
    case::fold_steps(case_id, own.iter().map(|f| (Some(f.id), f.step_in(chain))))
}

/// The view of a survivor: [`fold_view`] over its facts and those of the
/// files merged into it (marked `true`, each step [`CaseStep::absorbed`]).
fn fold_joined_view(
    case_id: Uuid,
    own: &[(&CaseFact, bool)],
    chain: &TransferChain,
) -> Option<CaseView> {
    case::fold_steps(
        case_id,
        own.iter().map(|(f, absorbed)| {
            let step = f.step_in(Some(chain));
            (Some(f.id), if *absorbed { step.absorbed() } else { step })
        }),
    )
}

/// What the merge rule reads: each file's facts, and the files holding a
/// merge (voided or not) that names it as absorbed. A file it does not hold
/// has no facts and no claimants.
pub(crate) trait MergeGraph {
    /// The facts of a file, sorted, voided ones included.
    fn facts(&self, case_id: Uuid) -> &[CaseFact];
    /// The files holding a merge naming `case_id` as absorbed.
    fn claimants(&self, case_id: Uuid) -> &[Uuid];
}

/// The survivors of the live merges naming `absorbed`: merges of the
/// survivor's own station, both files' openings live, and both files of
/// that station: opened there, or held there now after a transfer took
/// one (or both) over. A merge of a station that does not hold both files
/// claims nothing.
fn live_claims(graph: &impl MergeGraph, absorbed: Uuid) -> Vec<Uuid> {
    let absorbed_facts = graph.facts(absorbed);
    let Some((station, ..)) = live_opening(absorbed, absorbed_facts) else {
        return Vec::new();
    };
    let absorbed_holder = case_station(absorbed, absorbed_facts);
    graph
        .claimants(absorbed)
        .iter()
        .copied()
        .filter(|survivor| {
            if *survivor == absorbed {
                return false;
            }
            let facts = graph.facts(*survivor);
            let Some((opened_at, ..)) = live_opening(*survivor, facts) else {
                return false;
            };
            let holder = case_station(*survivor, facts);
            facts.iter().any(|f| {
                let of_both = (opened_at == station && f.station == *station)
                    || (holder.as_ref() == Some(&f.station)
                        && absorbed_holder.as_ref() == Some(&f.station));
                f.voided_by.is_none()
                    && of_both
                    && matches!(f.body, FactBody::Merged { absorbed: a } if a == absorbed)
            })
        })
        .collect()
}

/// The file `case_id` is merged into: [`case::survivor_of`] over the live
/// merges naming it.
pub(crate) fn survivor(graph: &impl MergeGraph, case_id: Uuid) -> Option<Uuid> {
    let claims = live_claims(graph, case_id);
    if claims.is_empty() {
        return None;
    }
    case::survivor_of(case_id, claims, |s| !live_claims(graph, s).is_empty())
}

/// The files merged into `case_id`, ascending.
pub(crate) fn joined(graph: &impl MergeGraph, case_id: Uuid) -> Vec<Uuid> {
    let mut files: Vec<Uuid> = graph
        .facts(case_id)
        .iter()
        .filter(|f| f.voided_by.is_none())
        .filter_map(|f| match f.body {
            FactBody::Merged { absorbed } => Some(absorbed),
            _ => None,
        })
        .filter(|absorbed| survivor(graph, *absorbed) == Some(case_id))
        .collect();
    files.sort_unstable();
    files.dedup();
    files
}

/// How a file counts among its person's and its merges' files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Role {
    /// A duplicate file ([`duplicate_of`]), not resolved.
    pub duplicate: bool,
    /// The file it is merged into ([`survivor`]).
    pub merged_into: Option<Uuid>,
    /// The files merged into it ([`joined`]).
    pub joined: Vec<Uuid>,
}

/// The station and view of a case as they stood at the end of `day`: its
/// own station's live facts dated (by service date) no later than `day`,
/// folded as [`derive_case`] folds them all. Facts without a date (notes,
/// verifications) count whenever they were entered; a voided fact never
/// counts, since a void corrects an entry that should not have been.
pub(crate) fn view_as_of(
    case_id: Uuid,
    facts: &[CaseFact],
    day: NaiveDate,
) -> Option<(Station, CaseView)> {
    let by_then = |on: Day| on.is_some_and(|on| on <= day);
    let chain = transfers(case_id, facts)?;
    // The holder then: the last station that took the file over by `day`.
    let holder = chain
        .holdings
        .iter()
        .rev()
        .find(|h| h.accepted_by.is_none() || by_then(h.since))
        .map_or(chain.holder(), |h| h.station.as_str());
    let station = station_named(holder, facts)?;
    let own: Vec<&CaseFact> = facts
        .iter()
        .filter(|f| f.voided_by.is_none() && belongs(&chain, f))
        .filter(|f| match &f.body {
            FactBody::Opened(o) => by_then(o.on),
            FactBody::Assessed(a) => by_then(parse_date(&a.on)),
            FactBody::Closed { on }
            | FactBody::Reopened { on, .. }
            | FactBody::Visit { on, .. }
            | FactBody::Counted { on, .. }
            | FactBody::Resource { on, .. } => by_then(*on),
            FactBody::Requested(r) => by_then(r.on),
            FactBody::Decided(d) => by_then(d.on),
            FactBody::TransferRequested { on, .. }
            | FactBody::TransferAccepted { on, .. }
            | FactBody::TransferDeclined { on, .. } => by_then(*on),
            FactBody::Note
            | FactBody::Verified { .. }
            | FactBody::Merged { .. }
            | FactBody::Dismissed { .. } => true,
        })
        .collect();
    fold_view(case_id, &own, Some(&chain)).map(|view| (station, view))
}

/// The live opening of a case: its station, its opening day (when it
/// parses) and its (hlc, event_id).
pub(crate) fn live_opening(
    case_id: Uuid,
    facts: &[CaseFact],
) -> Option<(&Station, NaiveDate, (u64, Uuid))> {
    facts.iter().find_map(|f| match &f.body {
        FactBody::Opened(o) if f.id == case_id && f.voided_by.is_none() => {
            Some((&f.station, o.on?, f.sort_key()))
        }
        _ => None,
    })
}

/// The community and the file number of a case's live opening.
pub(crate) fn community_and_number_of(
    case_id: Uuid,
    facts: &[CaseFact],
) -> Option<(String, String)> {
    facts.iter().find_map(|f| match &f.body {
        FactBody::Opened(o) if f.id == case_id && f.voided_by.is_none() => {
            Some((o.community.clone(), o.file_number.clone()))
        }
        _ => None,
    })
}

/// The file a case duplicates, if any: among `files` (the person's files
/// at the station, each with its facts, the case itself among them or
/// not), the smallest id of those opened before it — by opening day, then
/// (hlc, event_id) — at the same station and still open, by service dates,
/// on the day it was opened. A file whose opening is voided, or whose day
/// does not parse, duplicates nothing and is duplicated by nothing. With
/// `heed_dismissals`, a file the case's live `DuplicateDismissed` names is
/// passed over.
pub(crate) fn duplicate_of<'a>(
    case_id: Uuid,
    facts: &[CaseFact],
    files: impl IntoIterator<Item = (Uuid, &'a [CaseFact])>,
    heed_dismissals: bool,
) -> Option<Uuid> {
    let (station, opened_on, order) = live_opening(case_id, facts)?;
    let dismissed = |other: Uuid| {
        heed_dismissals
            && facts.iter().any(|f| {
                f.voided_by.is_none()
                    && f.station == *station
                    && matches!(f.body, FactBody::Dismissed { of } if of == other)
            })
    };
    files
        .into_iter()
        .filter(|(other, _)| *other != case_id && !dismissed(*other))
        .filter_map(|(other, other_facts)| {
            let (other_station, other_on, other_order) = live_opening(other, other_facts)?;
            if other_station != station || (other_on, other_order) >= (opened_on, order) {
                return None;
            }
            let (_, view) = view_as_of(other, other_facts, opened_on)?;
            (view.status == case::CaseStatus::Open).then_some(other)
        })
        .min()
}

/// Folds one case's facts (sorted, voided ones included) into its view and
/// tier conflict, and adds its counter contributions times `sign` to `sums`.
/// A duplicate file (see [`duplicate_of`]) adds its services but no
/// count of files, and one to the station's duplicate files. A file merged
/// into another adds nothing, and its view is closed naming its survivor;
/// a survivor folds and counts the `joined` files' live facts of its
/// station with its own ([`Role`]).
pub(crate) fn derive_case(
    case_id: Uuid,
    facts: &[CaseFact],
    sign: i64,
    role: &Role,
    joined: &[&[CaseFact]],
    sums: &mut Sums,
) -> CaseDerived {
    let duplicate = role.duplicate;
    let live = facts.iter().filter(|f| f.voided_by.is_none());
    let chain = transfers(case_id, facts);
    if let Some(survivor) = role.merged_into {
        let station = case_station(case_id, facts);
        let view = chain.as_ref().and_then(|chain| {
            let own: Vec<&CaseFact> = live.filter(|f| belongs(chain, f)).collect();
            fold_view(case_id, &own, Some(chain)).map(|view| CaseView {
                status: case::CaseStatus::Closed,
                merged_into: Some(survivor),
                ..view
            })
        });
        return CaseDerived {
            station,
            view,
            conflict: None,
            reviews: Vec::new(),
        };
    }
    let (Some(chain), Some(station)) = (chain, case_station(case_id, facts)) else {
        for fact in live {
            sums.add(&fact.station, Item::Quality(Quality::HeldEvents), sign);
        }
        return CaseDerived {
            station: None,
            view: None,
            conflict: None,
            reviews: Vec::new(),
        };
    };
    let mut own: Vec<&CaseFact> = Vec::with_capacity(facts.len());
    for fact in live {
        if belongs(&chain, fact) {
            own.push(fact);
        } else {
            sums.add(&fact.station, Item::Quality(Quality::HeldEvents), sign);
        }
    }
    let mut all: Vec<(&CaseFact, bool)> = own.iter().map(|f| (*f, false)).collect();
    for file in joined {
        // The joined file's facts of the stations that held it (or the
        // survivor): a file taken over before its merge brings the
        // services its first station gave.
        let own_chain = file
            .iter()
            .find_map(|f| matches!(f.body, FactBody::Opened(_)).then_some(f.id))
            .and_then(|id| transfers(id, file));
        all.extend(
            file.iter()
                .filter(|f| {
                    f.voided_by.is_none()
                        && (chain.held_by(&f.station)
                            || own_chain.as_ref().is_some_and(|c| belongs(c, f)))
                })
                .map(|f| (f, true)),
        );
    }
    if !joined.is_empty() {
        all.sort_by_key(|(f, _)| f.sort_key());
    }
    let view = fold_joined_view(case_id, &all, &chain);
    let reviews = station_proto::review::fold_reviews(
        own.iter().map(|f| (Some(f.id), f.step_in(Some(&chain)))),
    );

    // Services count at the station that gave them (the fact's own);
    // households, closings and files at the station of the entry too.
    let mut households: Vec<(Station, Period)> = Vec::new();
    let mut closings: Vec<(Station, Period)> = Vec::new();
    let mut approved_closings: Vec<(Station, Period)> = Vec::new();
    let mut status_changes: Vec<(NaiveDate, (u64, Uuid), StatusChange)> = Vec::new();
    for (fact, absorbed) in all {
        let at = &fact.station;
        match &fact.body {
            // The absorbed file's own status and tier are not the survivor's.
            FactBody::Opened(_)
            | FactBody::Closed { .. }
            | FactBody::Reopened { .. }
            | FactBody::Assessed(_)
                if absorbed => {}
            FactBody::Opened(o) => {
                if let Some(date) = o.on
                    && !duplicate
                {
                    sums.add_by_date(at, date, Metric::CasesNew, sign);
                    status_changes.push((date, fact.sort_key(), StatusChange::Opens));
                }
            }
            FactBody::Visit {
                on: Some(date),
                kind,
            } if *kind != VisitKind::Phone as i32 => {
                sums.add_by_date(at, *date, Metric::HomeVisits, sign);
                if !duplicate {
                    households.extend(Period::of_date(*date).map(|p| (Arc::clone(at), p)));
                }
            }
            FactBody::Counted {
                on: Some(date),
                metric,
            } => {
                sums.add_by_date(at, *date, *metric, sign);
            }
            FactBody::Closed { on: Some(date) } => {
                if !duplicate {
                    closings.extend(Period::of_date(*date).map(|p| (Arc::clone(at), p)));
                    if station_proto::review::closure_approved(&reviews, fact.id) {
                        approved_closings
                            .extend(Period::of_date(*date).map(|p| (Arc::clone(at), p)));
                    }
                    status_changes.push((*date, fact.sort_key(), StatusChange::Closes));
                }
            }
            FactBody::Reopened { on: Some(date), .. } => {
                if !duplicate {
                    status_changes.push((*date, fact.sort_key(), StatusChange::Opens));
                }
            }
            FactBody::Resource {
                on: Some(date),
                fen,
            } => {
                sums.add_by_date(at, *date, Metric::ResourcesYuan, sign.wrapping_mul(*fen));
            }
            FactBody::TransferAccepted { on: Some(date), .. }
                if !absorbed && !duplicate && chain.effective(fact.id) =>
            {
                status_changes.push((
                    *date,
                    fact.sort_key(),
                    StatusChange::MovesTo(Arc::clone(at)),
                ));
            }
            // Counted by the view and the tier conflict alone, or dated by
            // nothing that parses.
            FactBody::Assessed(_)
            | FactBody::Note
            | FactBody::Verified { .. }
            | FactBody::Merged { .. }
            | FactBody::Dismissed { .. }
            | FactBody::Requested(_)
            | FactBody::Decided(_)
            | FactBody::TransferRequested { .. }
            | FactBody::TransferAccepted { .. }
            | FactBody::TransferDeclined { .. }
            | FactBody::Visit { .. }
            | FactBody::Counted { on: None, .. }
            | FactBody::Closed { on: None }
            | FactBody::Reopened { on: None, .. }
            | FactBody::Resource { on: None, .. } => {}
        }
    }
    for (periods, metric) in [
        (&mut households, Metric::HouseholdsVisited),
        (&mut closings, Metric::CasesClosed),
    ] {
        periods.sort_unstable();
        periods.dedup();
        for (at, period) in periods.iter() {
            sums.add(at, Item::Indicator(*period, metric), sign);
        }
    }
    approved_closings.sort_unstable();
    approved_closings.dedup();
    for (at, period) in approved_closings {
        sums.add(&at, Item::ApprovedClosings(period), sign);
    }
    // Open at a month's end, by service dates: +1 where the case opens or
    // reopens, -1 where it closes, in date order, at the station holding
    // it then; a transfer of an open file moves it from one station to the
    // other on the day it was taken over.
    status_changes.sort();
    let mut open = false;
    let mut holder: Station = opening_station(case_id, facts)
        .cloned()
        .unwrap_or_else(|| Arc::clone(&station));
    for (date, _, change) in status_changes {
        let [month, ..] = Period::of_date(date);
        match change {
            StatusChange::Opens | StatusChange::Closes => {
                let opens = change == StatusChange::Opens;
                if opens != open {
                    open = opens;
                    sums.add(
                        &holder,
                        Item::OpenDelta(month),
                        if opens { sign } else { -sign },
                    );
                }
            }
            StatusChange::MovesTo(to) => {
                if open {
                    sums.add(&holder, Item::OpenDelta(month), -sign);
                    sums.add(&to, Item::OpenDelta(month), sign);
                }
                holder = to;
            }
        }
    }
    let conflict = view
        .as_ref()
        .and_then(|view| tier_conflict(case_id, &station, &view.community_code, &own));
    if conflict.is_some() {
        sums.add(&station, Item::Quality(Quality::TierConflicts), sign);
    }
    if duplicate {
        sums.add(&station, Item::Quality(Quality::DuplicateFiles), sign);
    }
    let reviews = match &view {
        Some(view) => review_rows(&station, view, &own, reviews),
        None => Vec::new(),
    };
    CaseDerived {
        station: Some(station),
        view,
        conflict,
        reviews,
    }
}

/// A change of where and whether a file is open, in service-date order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum StatusChange {
    /// Opened or reopened.
    Opens,
    /// Closed.
    Closes,
    /// Taken over by this station.
    MovesTo(Station),
}

/// The queue's rows of a case's review items, with who asked and decided.
fn review_rows(
    station: &str,
    view: &CaseView,
    own: &[&CaseFact],
    items: Vec<station_proto::review::ReviewItem>,
) -> Vec<ReviewRow> {
    let author = |id: Option<Uuid>| -> String {
        own.iter()
            .find(|f| Some(f.id) == id)
            .map(|f| match &f.body {
                FactBody::Requested(r) => r.author.clone(),
                FactBody::Decided(d) => d.author.clone(),
                FactBody::Opened(_)
                | FactBody::Assessed(_)
                | FactBody::Note
                | FactBody::Closed { .. }
                | FactBody::Reopened { .. }
                | FactBody::Visit { .. }
                | FactBody::Verified { .. }
                | FactBody::Resource { .. }
                | FactBody::Counted { .. }
                | FactBody::Merged { .. }
                | FactBody::Dismissed { .. }
                | FactBody::TransferRequested { .. }
                | FactBody::TransferAccepted { .. }
                | FactBody::TransferDeclined { .. } => String::new(),
            })
            .unwrap_or_default()
    };
    items
        .into_iter()
        .map(|item| ReviewRow {
            station_code: station.to_string(),
            case_id: view.case_id,
            file_number: view.file_number.clone(),
            community_code: view.community_code.clone(),
            request_id: item.request_id,
            subject: station_proto::review::subject_name(item.subject).to_string(),
            subject_event_id: item.subject_event_id,
            requested_on: item.requested_on,
            requested_by: author(Some(item.request_id)),
            state: item.state,
            decision_id: item.decision_id,
            decided_on: item.decided_on,
            decided_by: author(item.decision_id),
            comment: item.comment,
            stale: item.stale,
            superseded_by: item.superseded_by,
            age_days: 0,
        })
        .collect()
}

/// Tier changes made without seeing each other that disagree: B, later in
/// (hlc, event_id) order than A, did not see A when its `last_seen_event_id`
/// is A's own `last_seen_event_id` or an event before A. The last of them in
/// that order wins, as in the fold.
fn tier_conflict(
    case_id: Uuid,
    station: &str,
    community: &str,
    own: &[&CaseFact],
) -> Option<TierConflict> {
    let assessments: Vec<(usize, &AssessedFact)> = own
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match &f.body {
            FactBody::Assessed(a) => Some((i, a.as_ref())),
            _ => None,
        })
        .collect();
    if assessments.len() < 2 {
        return None;
    }
    let position: HashMap<Uuid, usize> = own.iter().enumerate().map(|(i, f)| (f.id, i)).collect();
    let mut involved = std::collections::BTreeSet::new();
    for (b_at, (b_pos, b)) in assessments.iter().enumerate() {
        for (a_pos, a) in &assessments[..b_at] {
            if a.tier == b.tier {
                continue;
            }
            let concurrent = match (a.last_seen, b.last_seen) {
                (Some(x), Some(y)) if x == y => true,
                (_, Some(y)) => position.get(&y).is_some_and(|&seen| seen < *a_pos),
                _ => false,
            };
            if concurrent {
                involved.insert(*a_pos);
                involved.insert(*b_pos);
            }
        }
    }
    let last = *involved.last()?;
    let winner = own[last];
    let resolved_tier = match &winner.body {
        FactBody::Assessed(a) => a.tier,
        _ => Tier::Unspecified as i32,
    };
    let assessments = involved
        .into_iter()
        .filter_map(|i| match &own[i].body {
            FactBody::Assessed(a) => Some(ConcurrentAssessment {
                event_id: own[i].id,
                tier: a.tier,
                author: a.author.clone(),
                hlc: own[i].hlc,
                assessed_on: a.on.clone(),
                last_seen_event_id: a.last_seen,
            }),
            _ => None,
        })
        .collect();
    Some(TierConflict {
        station_code: station.to_string(),
        case_id,
        community_code: community.to_string(),
        assessments,
        resolved_tier,
        resolved_by_event_id: winner.id,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use station_proto::v1::{
        BeneficiaryVerified, CaseAssessed, CaseClosed, CaseNoteAdded, CaseOpened, CaseReopened,
        ResourceLinked, VisitRecorded,
    };

    use super::*;

    fn date_text(rng: &mut StdRng) -> String {
        if rng.random_bool(0.05) {
            "2025-02-30".into()
        } else {
            format!(
                "2025-{:02}-{:02}",
                rng.random_range(1..=12),
                rng.random_range(1..=28)
            )
        }
    }

    /// A random case event of `case` (its opening when `id == case`).
    fn event(rng: &mut StdRng, case: Uuid, id: Uuid, hlc: u64, seen: &[Uuid]) -> Event {
        let case_bytes = case.as_bytes().to_vec();
        let on = date_text(rng);
        let tier = rng.random_range(0..=3);
        let body = if id == case {
            Body::CaseOpened(CaseOpened {
                name: "卓玛".into(),
                community_code: "540502001001".into(),
                categories: vec![rng.random_range(1..=10), rng.random_range(1..=10)],
                tier,
                opened_on: on,
                ..CaseOpened::default()
            })
        } else {
            match rng.random_range(0..7) {
                0 => Body::CaseAssessed(CaseAssessed {
                    case_id: case_bytes,
                    tier,
                    last_seen_event_id: seen[rng.random_range(0..seen.len())].as_bytes().to_vec(),
                    assessed_on: on,
                    ..CaseAssessed::default()
                }),
                1 => Body::CaseClosed(CaseClosed {
                    case_id: case_bytes,
                    closed_on: on,
                    ..CaseClosed::default()
                }),
                2 => Body::CaseReopened(CaseReopened {
                    case_id: case_bytes,
                    reopened_on: on,
                    tier,
                    ..CaseReopened::default()
                }),
                3 => Body::BeneficiaryVerified(BeneficiaryVerified {
                    case_id: case_bytes,
                    categories: (0..rng.random_range(0..3)).map(|c| c + 2).collect(),
                    ..BeneficiaryVerified::default()
                }),
                4 => Body::CaseNoteAdded(CaseNoteAdded {
                    case_id: case_bytes,
                    ..CaseNoteAdded::default()
                }),
                5 => Body::ResourceLinked(ResourceLinked {
                    case_id: case_bytes,
                    linked_on: on,
                    cash_fen: 100,
                    ..ResourceLinked::default()
                }),
                _ => Body::VisitRecorded(VisitRecorded {
                    case_id: case_bytes,
                    visit_date: on,
                    kind: rng.random_range(1..=5),
                    ..VisitRecorded::default()
                }),
            }
        };
        Event {
            event_id: id.as_bytes().to_vec(),
            station_code: "540502001".into(),
            hlc,
            body: Some(body),
            ..Event::default()
        }
    }

    #[test]
    fn the_view_of_the_facts_is_the_case_models_fold_of_the_events() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut stations = Stations::default();
        for _ in 0..2_000 {
            let case = Uuid::from_u128(rng.random());
            let mut ids = vec![case];
            let mut events = Vec::new();
            let n = rng.random_range(0..12);
            let opened_at = rng.random_range(0..=n);
            for i in 0..=n {
                let id = if i == opened_at {
                    case
                } else {
                    Uuid::from_u128(rng.random())
                };
                ids.push(id);
                let hlc = rng.random_range(0..8);
                events.push(event(&mut rng, case, id, hlc, &ids));
            }
            let mut facts = Vec::new();
            for e in &events {
                let (of, fact) = case_fact(e.clone(), &mut stations).unwrap();
                assert_eq!(of, case);
                insert_fact(&mut facts, fact);
            }
            let own: Vec<&CaseFact> = facts.iter().collect();
            let mut shuffled = events.clone();
            shuffled.reverse();
            assert_eq!(
                fold_view(case, &own, None),
                case::fold_case(case, &mut shuffled)
            );
        }
    }

    #[test]
    fn a_contribution_taken_back_leaves_nothing() {
        let mut stations = Stations::default();
        let station = stations.get("540502001");
        let mut rng = StdRng::seed_from_u64(5);
        let case = Uuid::from_u128(rng.random());
        let mut facts = Vec::new();
        let mut ids = vec![case];
        for i in 0..30 {
            let id = if i == 0 {
                case
            } else {
                Uuid::from_u128(rng.random())
            };
            ids.push(id);
            let (_, fact) = case_fact(event(&mut rng, case, id, i, &ids), &mut stations).unwrap();
            insert_fact(&mut facts, fact);
        }
        let mut sums = Sums::default();
        for duplicate in [false, true] {
            let role = Role {
                duplicate,
                ..Role::default()
            };
            derive_case(case, &facts, 1, &role, &[], &mut sums);
            let added = sums.drain();
            assert!(added.values().any(|v| *v != 0));
            assert!(added.keys().all(|c| c.station == station));
            derive_case(case, &facts, 1, &role, &[], &mut sums);
            derive_case(case, &facts, -1, &role, &[], &mut sums);
            assert!(sums.drain().values().all(|v| *v == 0));
        }
    }
}
