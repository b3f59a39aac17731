//! The pure part of the projections: what one event contributes, and what a
//! case file derives from its events. No I/O.
//!
//! Invariants:
//! - a case's derived rows and counter contributions are a function of the
//!   *set* of its facts: facts are sorted by (hlc, event_id) and voided ones
//!   left out before anything is derived, so arrival order cannot matter;
//! - case events count only once their case's `CaseOpened` is known, not
//!   voided, and of the same station; until then they are *held*;
//! - a contribution never holds a zero entry, so a counter that returns to
//!   zero disappears, as if never written.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use station_agent::views::{self, CaseView};
use station_proto::ids::Uuid;
use station_proto::v1::{
    BeneficiaryVerified, CaseAssessed, CaseClosed, CaseOpened, CaseReopened, Tier, VisitKind,
    VisitRecorded,
};
use station_proto::{Body, Event};

use super::period::{Metric, Period};
use super::read::{ConcurrentAssessment, TierConflict};

/// Counter key → amount a contributor adds to it. Keys:
/// `i:{station}:{period}:{metric}` (indicators, raw units),
/// `o:{station}:{YYYY-MM}` (cases opened minus closed in that month, by
/// service date), `q:{station}:{name}` (data quality).
pub(crate) type Counts = BTreeMap<String, i64>;

/// Quality counter: case events waiting for their `CaseOpened`.
pub(crate) const HELD_EVENTS: &str = "held_events";
/// Quality counter: `EventVoided` events received.
pub(crate) const VOIDED_EVENTS: &str = "voided_events";
/// Quality counter: cases with a flagged tier conflict.
pub(crate) const TIER_CONFLICTS: &str = "tier_conflicts";

pub(crate) fn add(counts: &mut Counts, key: String, amount: i64) {
    use std::collections::btree_map::Entry;
    if amount == 0 {
        return;
    }
    match counts.entry(key) {
        Entry::Vacant(entry) => {
            entry.insert(amount);
        }
        Entry::Occupied(mut entry) => {
            *entry.get_mut() += amount;
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }
}

pub(crate) fn indicator_key(station: &str, period: &Period, metric: Metric) -> String {
    format!("i:{station}:{period}:{}", metric.name())
}

pub(crate) fn open_delta_key(station: &str, month: &Period) -> String {
    format!("o:{station}:{month}")
}

pub(crate) fn quality_key(station: &str, name: &str) -> String {
    format!("q:{station}:{name}")
}

fn add_by_date(counts: &mut Counts, station: &str, date: NaiveDate, metric: Metric, amount: i64) {
    for period in Period::of_date(date) {
        add(counts, indicator_key(station, &period, metric), amount);
    }
}

pub(crate) fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// What the projections keep of one case event: enough to fold the case,
/// nothing of the ID number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CaseFact {
    /// The event's id.
    pub id: Uuid,
    /// The event's hlc, the first sort key.
    pub hlc: u64,
    /// The station the event belongs to.
    pub station: String,
    /// The smallest id of the same-station voids of this event, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voided_by: Option<Uuid>,
    /// What it says.
    pub body: FactBody,
}

/// The part of a case event's body the folds read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(crate) enum FactBody {
    /// `CaseOpened`.
    Opened {
        name: String,
        community: String,
        categories: Vec<i32>,
        tier: i32,
        on: String,
    },
    /// `CaseAssessed`.
    Assessed {
        tier: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seen: Option<Uuid>,
        author: String,
        on: String,
    },
    /// `CaseNoteAdded`.
    Note,
    /// `CaseClosed`.
    Closed { on: String },
    /// `CaseReopened`.
    Reopened { on: String, tier: i32 },
    /// `VisitRecorded`.
    Visit { on: String, kind: i32 },
    /// `BeneficiaryVerified`.
    Verified { categories: Vec<i32> },
    /// `ResourceLinked` for a case.
    Resource { on: String, fen: i64 },
}

impl CaseFact {
    fn sort_key(&self) -> (u64, Uuid) {
        (self.hlc, self.id)
    }
}

/// Inserts `fact` into `facts` (sorted by (hlc, event_id)); false when an
/// event of that id is there already.
pub(crate) fn insert_fact(facts: &mut Vec<CaseFact>, fact: CaseFact) -> bool {
    match facts.binary_search_by_key(&fact.sort_key(), CaseFact::sort_key) {
        Ok(_) => false,
        Err(at) => {
            facts.insert(at, fact);
            true
        }
    }
}

/// The case an event belongs to and what it keeps of it, for case events
/// (its own id for `CaseOpened`); `None` for other events.
pub(crate) fn case_fact(event: &Event) -> Option<(Uuid, CaseFact)> {
    let body = event.body.as_ref()?;
    let id = Uuid::from_slice(&event.event_id).ok()?;
    let case_id = match body {
        Body::CaseOpened(_) => id,
        other => views::case_of(other)?,
    };
    let body = match body {
        Body::CaseOpened(m) => FactBody::Opened {
            name: m.name.clone(),
            community: m.community_code.clone(),
            categories: m.categories.clone(),
            tier: m.tier,
            on: m.opened_on.clone(),
        },
        Body::CaseAssessed(m) => FactBody::Assessed {
            tier: m.tier,
            last_seen: Uuid::from_slice(&m.last_seen_event_id).ok(),
            author: event.author.clone(),
            on: m.assessed_on.clone(),
        },
        Body::CaseNoteAdded(_) => FactBody::Note,
        Body::CaseClosed(m) => FactBody::Closed {
            on: m.closed_on.clone(),
        },
        Body::CaseReopened(m) => FactBody::Reopened {
            on: m.reopened_on.clone(),
            tier: m.tier,
        },
        Body::VisitRecorded(m) => FactBody::Visit {
            on: m.visit_date.clone(),
            kind: m.kind,
        },
        Body::BeneficiaryVerified(m) => FactBody::Verified {
            categories: m.categories.clone(),
        },
        Body::ResourceLinked(m) => FactBody::Resource {
            on: m.linked_on.clone(),
            fen: m.cash_fen.saturating_add(m.in_kind_fen),
        },
        _ => return None,
    };
    Some((
        case_id,
        CaseFact {
            id,
            hlc: event.hlc,
            station: event.station_code.clone(),
            voided_by: None,
            body,
        },
    ))
}

/// What an event that is not about a case adds to the counters, keyed to
/// its station; `None` for events that count nothing by themselves.
pub(crate) fn standalone_counts(event: &Event) -> Option<Counts> {
    let station = event.station_code.as_str();
    let mut counts = Counts::new();
    match event.body.as_ref()? {
        Body::ActivityHeld(m) => {
            let date = parse_date(&m.held_on)?;
            add_by_date(&mut counts, station, date, Metric::Activities, 1);
            add_by_date(
                &mut counts,
                station,
                date,
                Metric::PersonTimes,
                m.person_times.into(),
            );
            add_by_date(
                &mut counts,
                station,
                date,
                Metric::Volunteers,
                m.volunteers.into(),
            );
            add_by_date(
                &mut counts,
                station,
                date,
                Metric::VolunteerHours,
                m.volunteer_minutes.into(),
            );
        }
        Body::GroupSessionHeld(m) => {
            let date = parse_date(&m.held_on)?;
            add_by_date(&mut counts, station, date, Metric::GroupSessions, 1);
            add_by_date(
                &mut counts,
                station,
                date,
                Metric::PersonTimes,
                m.participants.into(),
            );
        }
        Body::TrainingHeld(m) => {
            let date = parse_date(&m.held_on)?;
            add_by_date(&mut counts, station, date, Metric::Trainings, 1);
        }
        Body::ResourceLinked(m) if m.case_id.is_empty() => {
            let date = parse_date(&m.linked_on)?;
            let fen = m.cash_fen.saturating_add(m.in_kind_fen);
            add_by_date(&mut counts, station, date, Metric::ResourcesYuan, fen);
        }
        _ => return None,
    }
    Some(counts)
}

/// What a case file derives from its facts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CaseDerived {
    /// The case's station: its `CaseOpened`'s, when known and not voided.
    pub station: Option<String>,
    /// The agent's view of the case, when opened.
    pub view: Option<CaseView>,
    /// The case's contribution to the counters.
    pub counts: Counts,
    /// The flagged tier conflict, if any.
    pub conflict: Option<TierConflict>,
}

/// The fact as the minimal event the agent's fold reads.
fn as_event(fact: &CaseFact, case_id: Uuid) -> Event {
    let case = case_id.as_bytes().to_vec();
    let body = match &fact.body {
        FactBody::Opened {
            name,
            community,
            categories,
            tier,
            on,
        } => Body::CaseOpened(CaseOpened {
            name: name.clone(),
            community_code: community.clone(),
            categories: categories.clone(),
            tier: *tier,
            opened_on: on.clone(),
            ..CaseOpened::default()
        }),
        FactBody::Assessed { tier, .. } => Body::CaseAssessed(CaseAssessed {
            case_id: case,
            tier: *tier,
            ..CaseAssessed::default()
        }),
        FactBody::Closed { on } => Body::CaseClosed(CaseClosed {
            case_id: case,
            closed_on: on.clone(),
            ..CaseClosed::default()
        }),
        FactBody::Reopened { on, tier } => Body::CaseReopened(CaseReopened {
            case_id: case,
            reopened_on: on.clone(),
            tier: *tier,
            ..CaseReopened::default()
        }),
        FactBody::Visit { on, kind } => Body::VisitRecorded(VisitRecorded {
            case_id: case,
            visit_date: on.clone(),
            kind: *kind,
            ..VisitRecorded::default()
        }),
        FactBody::Verified { categories } => Body::BeneficiaryVerified(BeneficiaryVerified {
            case_id: case,
            categories: categories.clone(),
            ..BeneficiaryVerified::default()
        }),
        FactBody::Note | FactBody::Resource { .. } => Body::CaseNoteAdded(Default::default()),
    };
    Event {
        event_id: fact.id.as_bytes().to_vec(),
        hlc: fact.hlc,
        body: Some(body),
        ..Event::default()
    }
}

/// Folds one case's facts (sorted, voided ones included) into its view,
/// counter contributions and tier conflict.
pub(crate) fn derive_case(case_id: Uuid, facts: &[CaseFact]) -> CaseDerived {
    let live: Vec<&CaseFact> = facts.iter().filter(|f| f.voided_by.is_none()).collect();
    let station = live.iter().find_map(|f| match f.body {
        FactBody::Opened { .. } if f.id == case_id => Some(f.station.clone()),
        _ => None,
    });
    let mut counts = Counts::new();
    let Some(station) = station else {
        for fact in &live {
            add(&mut counts, quality_key(&fact.station, HELD_EVENTS), 1);
        }
        return CaseDerived {
            station: None,
            view: None,
            counts,
            conflict: None,
        };
    };
    let (own, foreign): (Vec<&CaseFact>, Vec<&CaseFact>) =
        live.into_iter().partition(|f| f.station == station);
    for fact in &foreign {
        add(&mut counts, quality_key(&fact.station, HELD_EVENTS), 1);
    }
    let mut events: Vec<Event> = own.iter().map(|f| as_event(f, case_id)).collect();
    let view = views::fold_case(case_id, &mut events);
    let st = station.as_str();

    let mut households = BTreeSet::new();
    let mut closings = BTreeSet::new();
    let mut status_changes = Vec::new();
    for fact in &own {
        match &fact.body {
            FactBody::Opened { on, .. } => {
                if let Some(date) = parse_date(on) {
                    add_by_date(&mut counts, st, date, Metric::CasesNew, 1);
                    status_changes.push((date, fact.sort_key(), true));
                }
            }
            FactBody::Visit { on, kind } if *kind != VisitKind::Phone as i32 => {
                if let Some(date) = parse_date(on) {
                    add_by_date(&mut counts, st, date, Metric::HomeVisits, 1);
                    households.extend(Period::of_date(date));
                }
            }
            FactBody::Closed { on } => {
                if let Some(date) = parse_date(on) {
                    closings.extend(Period::of_date(date));
                    status_changes.push((date, fact.sort_key(), false));
                }
            }
            FactBody::Reopened { on, .. } => {
                if let Some(date) = parse_date(on) {
                    status_changes.push((date, fact.sort_key(), true));
                }
            }
            FactBody::Resource { on, fen } => {
                if let Some(date) = parse_date(on) {
                    add_by_date(&mut counts, st, date, Metric::ResourcesYuan, *fen);
                }
            }
            _ => {}
        }
    }
    for period in households {
        add(
            &mut counts,
            indicator_key(st, &period, Metric::HouseholdsVisited),
            1,
        );
    }
    for period in closings {
        add(
            &mut counts,
            indicator_key(st, &period, Metric::CasesClosed),
            1,
        );
    }
    // Open at a month's end, by service dates: +1 where the case opens or
    // reopens, -1 where it closes, in date order.
    status_changes.sort();
    let mut open = false;
    for (date, _, opens) in status_changes {
        if opens != open {
            open = opens;
            let [month, ..] = Period::of_date(date);
            add(
                &mut counts,
                open_delta_key(st, &month),
                if opens { 1 } else { -1 },
            );
        }
    }
    let conflict = view
        .as_ref()
        .and_then(|view| tier_conflict(case_id, st, &view.community_code, &own));
    if conflict.is_some() {
        add(&mut counts, quality_key(st, TIER_CONFLICTS), 1);
    }
    CaseDerived {
        station: Some(station),
        view,
        counts,
        conflict,
    }
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
    let position: HashMap<Uuid, usize> = own.iter().enumerate().map(|(i, f)| (f.id, i)).collect();
    let assessments: Vec<(usize, &CaseFact, i32, Option<Uuid>)> = own
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match &f.body {
            FactBody::Assessed {
                tier, last_seen, ..
            } => Some((i, *f, *tier, *last_seen)),
            _ => None,
        })
        .collect();
    let mut involved = BTreeSet::new();
    for (b_at, b) in assessments.iter().enumerate() {
        for a in &assessments[..b_at] {
            if a.2 == b.2 {
                continue;
            }
            let concurrent = match (a.3, b.3) {
                (Some(x), Some(y)) if x == y => true,
                (_, Some(y)) => position.get(&y).is_some_and(|&seen| seen < a.0),
                _ => false,
            };
            if concurrent {
                involved.insert(a.0);
                involved.insert(b.0);
            }
        }
    }
    let last = *involved.last()?;
    let winner = own[last];
    let resolved_tier = match &winner.body {
        FactBody::Assessed { tier, .. } => *tier,
        _ => Tier::Unspecified as i32,
    };
    let assessments = involved
        .into_iter()
        .filter_map(|i| match &own[i].body {
            FactBody::Assessed {
                tier,
                last_seen,
                author,
                on,
            } => Some(ConcurrentAssessment {
                event_id: own[i].id,
                tier: *tier,
                author: author.clone(),
                hlc: own[i].hlc,
                assessed_on: on.clone(),
                last_seen_event_id: *last_seen,
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
