//! Supervision (督导审核): which changes of a case need a supervisor's review,
//! and the one fold that derives the state of each review request from the
//! case's events.
//!
//! A worker asks for a review of a tier change, a case plan or a closure with
//! a `ReviewRequested` naming the event under review; a supervisor approves
//! (`ReviewApproved`) or returns it with a comment (`ReviewReturned`), offline
//! if need be. Both decisions name the last case event their author saw.
//!
//! Which kinds need review is the hub's configuration (`[review]`); the hub
//! tells its devices at every `Hello` ([`ReviewPolicy::to_wire`]) and a
//! device asks for the review of each entry the policy names
//! ([`ReviewPolicy::review_of`]) as it records it.
//!
//! Pure: no I/O and no clock; the reference date of an age comes in as an
//! argument.
//!
//! Invariants:
//! - The state of every request is a function of the *set* of its case's
//!   events that are not voided, taken in (hlc, event_id) order, the order
//!   [`crate::case::fold_steps`] takes: arrival order cannot change it.
//! - The latest decision on a request in that order is the one that holds;
//!   a later request for the same subject of the same case supersedes the
//!   earlier one (a resubmission), which then leaves the queue and the
//!   worker's list of returned items.
//! - A decision is *stale* when an event of the case other than a review
//!   event lies, in that order, after the event its author last saw and
//!   before the decision, or when the event it names is not (or no longer) an
//!   event of the case: the case changed since the supervisor looked at it.
//!   A stale decision holds, and is flagged.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::case::CaseStep;
use crate::ids::Uuid;
use crate::v1::ReviewSubject;
use crate::{Body, Event};

/// Which changes need a supervisor's review in a deployment, and whether a
/// closure counts in the ledger before it is approved. Configuration, not
/// code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewPolicy {
    /// Tier changes (`CaseAssessed`) need review.
    pub tier_change: bool,
    /// Case plans (`CaseNoteAdded` of kind plan) need review.
    pub case_plan: bool,
    /// Closures (`CaseClosed`) need review.
    pub closure: bool,
    /// A closure counts in the ledger's `cases_closed` only once a review
    /// request naming it is approved.
    pub count_closures_when_approved: bool,
}

impl ReviewPolicy {
    /// Whether changes of `subject` (a `ReviewSubject` value) need review.
    pub fn requires(&self, subject: i32) -> bool {
        match ReviewSubject::try_from(subject) {
            Ok(ReviewSubject::TierChange) => self.tier_change,
            Ok(ReviewSubject::CasePlan) => self.case_plan,
            Ok(ReviewSubject::Closure) => self.closure,
            Ok(ReviewSubject::Unspecified) | Err(_) => false,
        }
    }

    /// The review an entry `body` needs under this policy: its subject when
    /// it is a change of a kind that needs review, `None` otherwise.
    pub fn review_of(&self, body: &Body) -> Option<ReviewSubject> {
        subject_of(body).filter(|subject| self.requires(*subject as i32))
    }

    /// The policy as a device learns it from the hub (`HelloResponse`):
    /// which kinds need review. Whether closures count only once approved is
    /// the hub's business and is not told.
    pub fn to_wire(&self) -> crate::v1::ReviewPolicy {
        crate::v1::ReviewPolicy {
            tier_change: self.tier_change,
            case_plan: self.case_plan,
            closure: self.closure,
        }
    }

    /// The policy a device keeps from what the hub told it.
    pub fn from_wire(wire: &crate::v1::ReviewPolicy) -> Self {
        Self {
            tier_change: wire.tier_change,
            case_plan: wire.case_plan,
            closure: wire.closure,
            count_closures_when_approved: false,
        }
    }
}

/// Where a review request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    /// Waiting for a supervisor.
    Pending,
    /// Approved by its latest decision.
    Approved,
    /// Returned to the worker by its latest decision.
    Returned,
}

impl ReviewState {
    /// The state's name in answers: `pending`, `approved`, `returned`.
    pub fn name(self) -> &'static str {
        match self {
            ReviewState::Pending => "pending",
            ReviewState::Approved => "approved",
            ReviewState::Returned => "returned",
        }
    }

    /// The Chinese label for tables.
    pub fn label(self) -> &'static str {
        match self {
            ReviewState::Pending => "待审核",
            ReviewState::Approved => "已通过",
            ReviewState::Returned => "已退回",
        }
    }
}

/// One review request of a case and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewItem {
    /// The `ReviewRequested` event's id.
    pub request_id: Uuid,
    /// What is under review (`ReviewSubject` value).
    pub subject: i32,
    /// The event under review, when well formed.
    pub subject_event_id: Option<Uuid>,
    /// The day the review was asked for, when it parses.
    pub requested_on: Option<NaiveDate>,
    /// Where it stands.
    pub state: ReviewState,
    /// The decision that holds, if any.
    pub decision_id: Option<Uuid>,
    /// The day of that decision, when it parses.
    pub decided_on: Option<NaiveDate>,
    /// The comment of that decision (a return's says what to change).
    pub comment: String,
    /// Whether that decision was taken on a case that had changed since its
    /// author last saw it.
    pub stale: bool,
    /// The later request for the same subject that resubmits this one.
    pub superseded_by: Option<Uuid>,
}

impl ReviewItem {
    /// Whether the request waits in a supervisor's queue: pending and not
    /// resubmitted.
    pub fn is_queued(&self) -> bool {
        self.state == ReviewState::Pending && self.superseded_by.is_none()
    }

    /// Whether the worker should see it as returned: returned and not
    /// resubmitted yet.
    pub fn is_returned(&self) -> bool {
        self.state == ReviewState::Returned && self.superseded_by.is_none()
    }

    /// Days since the request on `today` (0 when its day does not parse or
    /// lies ahead).
    pub fn age_days(&self, today: NaiveDate) -> i64 {
        self.requested_on
            .map_or(0, |on| (today - on).num_days().max(0))
    }
}

/// The review requests of one case, in (hlc, event_id) order: `steps` are
/// the case's events that are not voided, each with its id (`None` when not
/// well formed), already in that order (as [`crate::case::fold_steps`] takes
/// them).
pub fn fold_reviews<'a, I>(steps: I) -> Vec<ReviewItem>
where
    I: IntoIterator<Item = (Option<Uuid>, CaseStep<'a>)>,
{
    let steps: Vec<(Option<Uuid>, CaseStep<'a>)> = steps.into_iter().collect();
    let position: BTreeMap<Uuid, usize> = steps
        .iter()
        .enumerate()
        .filter_map(|(at, (id, _))| id.map(|id| (id, at)))
        .collect();
    // Positions of the events that change the case (not review events).
    let changes: BTreeSet<usize> = steps
        .iter()
        .enumerate()
        .filter(|(_, (_, step))| !step.is_review())
        .map(|(at, _)| at)
        .collect();
    let mut items: Vec<ReviewItem> = Vec::new();
    let mut by_request: BTreeMap<Uuid, usize> = BTreeMap::new();
    let mut latest_of_subject: BTreeMap<i32, usize> = BTreeMap::new();
    for (at, (id, step)) in steps.iter().enumerate() {
        match *step {
            CaseStep::ReviewRequested {
                subject,
                subject_event,
                requested_on,
            } => {
                let Some(id) = *id else { continue };
                let index = items.len();
                if let Some(earlier) = latest_of_subject.insert(subject, index) {
                    items[earlier].superseded_by = Some(id);
                }
                by_request.insert(id, index);
                items.push(ReviewItem {
                    request_id: id,
                    subject,
                    subject_event_id: subject_event,
                    requested_on,
                    state: ReviewState::Pending,
                    decision_id: None,
                    decided_on: None,
                    comment: String::new(),
                    stale: false,
                    superseded_by: None,
                });
            }
            CaseStep::ReviewDecided {
                request,
                approved,
                last_seen,
                decided_on,
                comment,
            } => {
                let Some(&index) = request.and_then(|r| by_request.get(&r)) else {
                    continue;
                };
                let stale = match last_seen.and_then(|seen| position.get(&seen)) {
                    Some(&seen) => changes.range(seen + 1..at).next().is_some(),
                    None => true,
                };
                let item = &mut items[index];
                item.state = if approved {
                    ReviewState::Approved
                } else {
                    ReviewState::Returned
                };
                item.decision_id = *id;
                item.decided_on = decided_on;
                item.comment = comment.to_owned();
                item.stale = stale;
            }
            CaseStep::Opened { .. }
            | CaseStep::Assessed { .. }
            | CaseStep::Closed
            | CaseStep::Reopened { .. }
            | CaseStep::Visited { .. }
            | CaseStep::Verified { .. }
            | CaseStep::Transferred { .. }
            | CaseStep::Recorded => {}
        }
    }
    items
}

/// Whether the closure `closed_event` is approved among `items`: some
/// request for a closure naming it is approved.
pub fn closure_approved(items: &[ReviewItem], closed_event: Uuid) -> bool {
    items.iter().any(|item| {
        item.subject == ReviewSubject::Closure as i32
            && item.subject_event_id == Some(closed_event)
            && item.state == ReviewState::Approved
    })
}

/// Whether `event` is a change of the kind `subject` (a `ReviewSubject`
/// value) reviews: a `CaseAssessed` for a tier change, a `CaseNoteAdded` of
/// kind plan for a case plan, a `CaseClosed` for a closure.
pub fn is_subject_event(subject: i32, event: &Event) -> bool {
    event
        .body
        .as_ref()
        .and_then(subject_of)
        .is_some_and(|of| of as i32 == subject)
}

/// The kind of change a review of `body` would be about: a tier change for
/// a `CaseAssessed`, a case plan for a `CaseNoteAdded` of kind plan, a
/// closure for a `CaseClosed`; `None` for an entry no review is about.
pub fn subject_of(body: &Body) -> Option<ReviewSubject> {
    body.kind().review_subject()
}

/// The Chinese label of a review subject, for tables.
pub fn subject_label(subject: i32) -> &'static str {
    match ReviewSubject::try_from(subject) {
        Ok(ReviewSubject::TierChange) => "分档调整",
        Ok(ReviewSubject::CasePlan) => "服务计划",
        Ok(ReviewSubject::Closure) => "结案",
        Ok(ReviewSubject::Unspecified) | Err(_) => "未定",
    }
}

/// The name of a review subject in answers, as the command line takes it
/// (`tier-change`, `case-plan`, `closure`; `unspecified` for any other value).
pub fn subject_name(subject: i32) -> &'static str {
    ReviewSubject::try_from(subject)
        .ok()
        .and_then(crate::names::short_name)
        .unwrap_or("unspecified")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(n: u128) -> Option<Uuid> {
        Some(Uuid::from_u128(n))
    }

    fn day(d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(2026, 11, d)
    }

    fn request(subject: ReviewSubject, of: u128) -> CaseStep<'static> {
        CaseStep::ReviewRequested {
            subject: subject as i32,
            subject_event: id(of),
            requested_on: day(1),
        }
    }

    fn decided(request: u128, approved: bool, seen: u128) -> CaseStep<'static> {
        CaseStep::ReviewDecided {
            request: id(request),
            approved,
            last_seen: id(seen),
            decided_on: day(3),
            comment: "请补充",
        }
    }

    #[test]
    fn a_policy_asks_a_review_of_the_kinds_it_names_and_travels_without_the_ledger_rule() {
        use crate::v1::{CaseAssessed, CaseClosed, CaseNoteAdded, NoteKind};
        let policy = ReviewPolicy {
            tier_change: false,
            case_plan: true,
            closure: true,
            count_closures_when_approved: true,
        };
        let plan = Body::CaseNoteAdded(CaseNoteAdded {
            kind: NoteKind::Plan as i32,
            ..CaseNoteAdded::default()
        });
        let note = Body::CaseNoteAdded(CaseNoteAdded {
            kind: NoteKind::Intervention as i32,
            ..CaseNoteAdded::default()
        });
        let assessed = Body::CaseAssessed(CaseAssessed::default());
        let closed = Body::CaseClosed(CaseClosed::default());
        assert_eq!(policy.review_of(&plan), Some(ReviewSubject::CasePlan));
        assert_eq!(policy.review_of(&closed), Some(ReviewSubject::Closure));
        assert_eq!(policy.review_of(&note), None);
        assert_eq!(policy.review_of(&assessed), None);
        assert_eq!(
            ReviewPolicy::default().review_of(&closed),
            None,
            "nothing needs review by default"
        );
        let told = ReviewPolicy::from_wire(&policy.to_wire());
        assert_eq!(
            told,
            ReviewPolicy {
                count_closures_when_approved: false,
                ..policy
            }
        );
    }

    #[test]
    fn a_returned_request_stays_returned_until_resubmitted() {
        let steps = vec![
            (id(1), CaseStep::Closed),
            (id(2), request(ReviewSubject::Closure, 1)),
            (id(3), decided(2, false, 2)),
        ];
        let items = fold_reviews(steps.clone());
        assert_eq!(items.len(), 1);
        assert!(items[0].is_returned());
        assert!(!items[0].stale);
        assert_eq!(items[0].comment, "请补充");
        let mut resubmitted = steps;
        resubmitted.push((id(4), request(ReviewSubject::Closure, 1)));
        let items = fold_reviews(resubmitted);
        assert_eq!(items[0].superseded_by, id(4));
        assert!(!items[0].is_returned());
        assert!(items[1].is_queued());
        assert_eq!(items[1].age_days(day(11).unwrap()), 10);
    }

    #[test]
    fn a_decision_on_a_changed_case_is_stale() {
        let steps = vec![
            (id(1), CaseStep::Closed),
            (id(2), request(ReviewSubject::Closure, 1)),
            (id(3), CaseStep::Visited { visit_date: day(2) }),
            (id(4), decided(2, true, 2)),
        ];
        let items = fold_reviews(steps);
        assert_eq!(items[0].state, ReviewState::Approved);
        assert!(items[0].stale);
        assert!(closure_approved(&items, Uuid::from_u128(1)));
        assert!(!closure_approved(&items, Uuid::from_u128(2)));
        // Seeing the visit, it is not.
        let steps = vec![
            (id(1), CaseStep::Closed),
            (id(2), request(ReviewSubject::Closure, 1)),
            (id(3), CaseStep::Visited { visit_date: day(2) }),
            (id(4), decided(2, true, 3)),
        ];
        assert!(!fold_reviews(steps)[0].stale);
        // Naming an event the case does not hold, it is.
        let steps = vec![
            (id(2), request(ReviewSubject::Closure, 1)),
            (id(4), decided(2, true, 9)),
        ];
        assert!(fold_reviews(steps)[0].stale);
    }

    #[test]
    fn the_latest_decision_holds_and_subjects_are_apart() {
        let steps = vec![
            (id(1), request(ReviewSubject::TierChange, 9)),
            (id(2), request(ReviewSubject::CasePlan, 8)),
            (id(3), decided(1, false, 2)),
            (id(4), decided(1, true, 3)),
            (id(5), decided(77, true, 3)),
        ];
        let items = fold_reviews(steps);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].state, ReviewState::Approved);
        assert_eq!(items[0].decision_id, id(4));
        assert!(items[1].is_queued());
        let policy = ReviewPolicy {
            closure: true,
            ..ReviewPolicy::default()
        };
        assert!(policy.requires(ReviewSubject::Closure as i32));
        assert!(!policy.requires(ReviewSubject::TierChange as i32));
        assert!(!policy.requires(42));
    }
}
