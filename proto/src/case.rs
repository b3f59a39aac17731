//! The case model both ends share: a case file's view (tier, status,
//! categories, last visit), the follow-up intervals of the tiers, which case
//! an event is about, and the one fold that derives a view from a case's
//! events.
//!
//! Pure: no I/O and no clock; the reference date of a follow-up question
//! comes in as an argument.
//!
//! Invariants:
//! - A case's view is a function of the *set* of its events that are not
//!   voided, taken in (hlc, event_id) order: arrival order cannot change it.
//! - There is one fold, [`fold_steps`]. The phone folds events
//!   ([`fold_case`]); the hub folds the compact facts it keeps of them; both
//!   hand the fold the same [`CaseStep`]s, so their views are equal.
//! - Every match over an event body here names every variant: a new body
//!   is a compile error until it is routed to its case (or to none).
//! - A merge ([`crate::v1::CasesMerged`]) belongs to its survivor. An
//!   absorbed file's events join the survivor's view as entries
//!   ([`CaseStep::absorbed`]): its services, notes and verifications count
//!   there; its opening, tier changes, closings and reopenings do not change
//!   the survivor's status or tier. Which merge holds is one rule,
//!   [`survivor_of`], that both ends apply to the set of live merges.

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::ids::Uuid;
use crate::v1::{Category, Tier};
use crate::{Body, Event};

/// Follow-up intervals per tier, in days. Configuration, not code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierIntervals {
    /// Tier 1, high risk (高风险).
    pub high_risk_days: u32,
    /// Tier 2, key (重点).
    pub key_days: u32,
    /// Tier 3, general (一般).
    pub general_days: u32,
}

impl Default for TierIntervals {
    fn default() -> Self {
        Self {
            high_risk_days: 7,
            key_days: 30,
            general_days: 90,
        }
    }
}

impl TierIntervals {
    /// The interval of `tier`, or `None` for a tier outside 1–3.
    pub fn days(&self, tier: i32) -> Option<u32> {
        match Tier::try_from(tier).ok()? {
            Tier::HighRisk => Some(self.high_risk_days),
            Tier::Key => Some(self.key_days),
            Tier::General => Some(self.general_days),
            Tier::Unspecified => None,
        }
    }
}

/// Whether a case is being followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Opened or reopened, not closed since.
    Open,
    /// Closed by its latest open/close event.
    Closed,
}

/// One case file as its events (not voided) describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseView {
    /// The case id: the `event_id` of its `CaseOpened`.
    pub case_id: Uuid,
    /// The person's name, as entered (NFC).
    pub name: String,
    /// The 12-digit community code.
    pub community_code: String,
    /// Beneficiary categories (`Category` values), as last opened or
    /// verified, in ascending order.
    pub categories: Vec<i32>,
    /// Current tier (`Tier` value).
    pub tier: i32,
    /// Open or closed.
    pub status: CaseStatus,
    /// The day the case was opened.
    pub opened_on: NaiveDate,
    /// 档案编号 (see [`crate::file_number`]); empty for a file opened by an
    /// older client.
    #[serde(default)]
    pub file_number: String,
    /// The day of the latest reopening, when reopened; follow-ups restart from it.
    pub reopened_on: Option<NaiveDate>,
    /// The date of the most recent visit, by service date.
    pub last_visit: Option<NaiveDate>,
    /// Number of visits recorded for the case.
    pub visits: u32,
    /// The latest event of the case in (hlc, event_id) order; a tier change
    /// carries it as `last_seen_event_id`.
    pub last_event_id: Uuid,
    /// How many events (not voided) the case has.
    pub events: u32,
    /// The file this one was merged into ([`survivor_of`]): then it is
    /// closed, and its events are counted in that file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<Uuid>,
    /// The station holding the file after an accepted transfer
    /// ([`crate::transfer`]); `None` while its opening station holds it. A
    /// device of another station shows it as a closed stub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transferred_to: Option<String>,
}

impl CaseView {
    /// The date from which the next follow-up is counted: the last visit, or
    /// the (re)opening when no visit came after it.
    pub fn follow_up_base(&self) -> NaiveDate {
        let start = self.reopened_on.unwrap_or(self.opened_on);
        match self.last_visit {
            Some(visit) if visit >= start => visit,
            _ => start,
        }
    }

    /// The date by which the case should be visited next, when open.
    pub fn next_due(&self, intervals: &TierIntervals) -> Option<NaiveDate> {
        if self.status != CaseStatus::Open {
            return None;
        }
        let days = intervals.days(self.tier)?;
        self.follow_up_base()
            .checked_add_days(Days::new(u64::from(days)))
    }
}

/// A case that should be visited soon or should have been visited already.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DueFollowUp {
    /// The case.
    pub case: CaseView,
    /// The day the follow-up is due.
    pub due_on: NaiveDate,
    /// Days past due on the reference date (0 or negative when not yet overdue).
    pub days_overdue: i64,
}

impl DueFollowUp {
    /// Whether the due date has passed.
    pub fn is_overdue(&self) -> bool {
        self.days_overdue > 0
    }
}

/// The open cases due on or before `today + horizon_days`, most overdue first.
pub fn due_follow_ups(
    cases: impl IntoIterator<Item = CaseView>,
    intervals: &TierIntervals,
    today: NaiveDate,
    horizon_days: u32,
) -> Vec<DueFollowUp> {
    let limit = today
        .checked_add_days(Days::new(u64::from(horizon_days)))
        .unwrap_or(today);
    let mut due: Vec<DueFollowUp> = cases
        .into_iter()
        .filter_map(|case| {
            let due_on = case.next_due(intervals)?;
            (due_on <= limit).then(|| DueFollowUp {
                days_overdue: (today - due_on).num_days(),
                due_on,
                case,
            })
        })
        .collect();
    due.sort_by(|a, b| {
        a.due_on
            .cmp(&b.due_on)
            .then(a.case.tier.cmp(&b.case.tier))
            .then(a.case.case_id.cmp(&b.case.case_id))
    });
    due
}

/// The case an event body is about, if any: `None` for bodies that are not
/// about an existing case (an opening names no case yet; see [`case_key`]),
/// and for a case id that is not 16 bytes.
pub fn case_of(body: &Body) -> Option<Uuid> {
    Uuid::from_slice(body.kind().case_id()?).ok()
}

/// The (survivor, absorbed) files of a `CasesMerged` whose ids are 16
/// bytes each; `None` for any other body.
pub fn merge_of(body: &Body) -> Option<(Uuid, Uuid)> {
    body.kind().merge()
}

/// The one rule of which merge holds: the file `absorbed` belongs to the
/// smallest of `claims` that is not `absorbed` itself and not `claimed`.
///
/// `claims` are the survivors of the live (not voided) merges naming
/// `absorbed`, as far as the caller holds both files' live openings (and,
/// at the hub, at one station); `claimed(s)` says whether a live merge names
/// `s` as absorbed. So a file absorbed by one merge cannot be the survivor of
/// another (the device refuses such a merge; one that arrives anyway is
/// without effect until the other is voided), two merges of one file resolve
/// to the same survivor everywhere, and voiding a merge restores both files.
pub fn survivor_of(
    absorbed: Uuid,
    claims: impl IntoIterator<Item = Uuid>,
    claimed: impl Fn(Uuid) -> bool,
) -> Option<Uuid> {
    claims
        .into_iter()
        .filter(|s| *s != absorbed && !claimed(*s))
        .min()
}

/// The case id of an event: its own id for `CaseOpened`, else [`case_of`].
pub fn case_key(event: &Event) -> Option<Uuid> {
    match event.body.as_ref()? {
        Body::CaseOpened(_) => Uuid::from_slice(&event.event_id).ok(),
        body => case_of(body),
    }
}

/// A date written `YYYY-MM-DD`, read exactly as chrono's `%Y-%m-%d` reads
/// it; `None` when it does not parse.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    // The form validation lets through, read directly; anything else as
    // chrono reads it.
    let b = s.as_bytes();
    if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
        let digits = |r: std::ops::Range<usize>| {
            b[r].iter().try_fold(0u32, |n, &c| {
                c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
            })
        };
        if let (Some(year), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) {
            // Four digits: at most 9999, well inside i32.
            return NaiveDate::from_ymd_opt(year as i32, month, day);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// What one case event says to the fold of its case's view: the part of its
/// body the view reads, dates already parsed (`None` when they do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseStep<'a> {
    /// `CaseOpened`: the file's first state.
    Opened {
        /// The person's name.
        name: &'a str,
        /// The community code.
        community_code: &'a str,
        /// Beneficiary categories.
        categories: &'a [i32],
        /// The tier at opening.
        tier: i32,
        /// The opening day; a file whose opening day does not parse has no view.
        opened_on: Option<NaiveDate>,
        /// 档案编号, as given (empty from older clients).
        file_number: &'a str,
    },
    /// `CaseAssessed`: a tier change.
    Assessed {
        /// The new tier.
        tier: i32,
    },
    /// `CaseClosed`.
    Closed,
    /// `CaseReopened`, with the tier it names (unspecified keeps the tier).
    Reopened {
        /// The reopening day.
        reopened_on: Option<NaiveDate>,
        /// The tier, or `Tier::Unspecified`.
        tier: i32,
    },
    /// `VisitRecorded`.
    Visited {
        /// The day of the visit.
        visit_date: Option<NaiveDate>,
    },
    /// `BeneficiaryVerified`: categories replace the file's when not empty.
    Verified {
        /// The verified categories.
        categories: &'a [i32],
    },
    /// An event of the case that changes nothing of the view but its count
    /// (`CaseNoteAdded`, `ResourceLinked` for the case, `GuardianCalled`: a
    /// call is not a follow-up visit; `CasesMerged` and `DuplicateDismissed`,
    /// whose effect is on which files count, not on the view).
    Recorded,
    /// An acceptance that took effect ([`crate::transfer::chain`]): the
    /// file moves to the receiving station's community. A transfer event
    /// read alone ([`CaseStep::of`]) is [`CaseStep::Recorded`]; only the
    /// caller, who knows the file's chain, makes this step of it.
    Transferred {
        /// The community of the receiving station.
        community_code: &'a str,
    },
    /// `ReviewRequested`: counts as an event of the case; its state is
    /// [`crate::review::fold_reviews`]'s.
    ReviewRequested {
        /// What is under review (`ReviewSubject` value).
        subject: i32,
        /// The event under review, when well formed.
        subject_event: Option<Uuid>,
        /// The day of the request.
        requested_on: Option<NaiveDate>,
    },
    /// `ReviewApproved` or `ReviewReturned`.
    ReviewDecided {
        /// The request decided, when well formed.
        request: Option<Uuid>,
        /// Approved (else returned).
        approved: bool,
        /// The last case event the decision's author saw, when well formed.
        last_seen: Option<Uuid>,
        /// The day of the decision.
        decided_on: Option<NaiveDate>,
        /// The decision's comment.
        comment: &'a str,
    },
}

impl CaseStep<'_> {
    /// Whether the step is a review event (a request or a decision), which
    /// does not change the case a decision is about.
    pub fn is_review(&self) -> bool {
        match self {
            CaseStep::ReviewRequested { .. } | CaseStep::ReviewDecided { .. } => true,
            CaseStep::Opened { .. }
            | CaseStep::Assessed { .. }
            | CaseStep::Closed
            | CaseStep::Reopened { .. }
            | CaseStep::Visited { .. }
            | CaseStep::Verified { .. }
            | CaseStep::Transferred { .. }
            | CaseStep::Recorded => false,
        }
    }
}

impl CaseStep<'_> {
    /// What a step of an absorbed file says to its survivor's view: visits,
    /// verifications and entries count as they are; the absorbed file's
    /// opening, tier changes, closings and reopenings are its own and are
    /// entries of the joined timeline only, and so are its review requests
    /// and decisions.
    pub fn absorbed(self) -> Self {
        match self {
            CaseStep::Opened { .. }
            | CaseStep::Assessed { .. }
            | CaseStep::Closed
            | CaseStep::Reopened { .. }
            | CaseStep::ReviewRequested { .. }
            | CaseStep::ReviewDecided { .. }
            | CaseStep::Transferred { .. } => CaseStep::Recorded,
            CaseStep::Visited { .. } | CaseStep::Verified { .. } | CaseStep::Recorded => self,
        }
    }
}

impl<'a> CaseStep<'a> {
    /// What `body` says to its case's view; `None` for bodies that are not
    /// about a case.
    pub fn of(body: &'a Body) -> Option<Self> {
        body.kind().step()
    }
}

/// The one fold of a case's view: `steps` are the case's events that are not
/// voided, each with its id (`None` when not well formed), already in
/// (hlc, event_id) order.
///
/// Returns `None` while the case's own `CaseOpened` (the step whose id is
/// `case_id`) is missing or its opening day does not parse. Steps before the
/// opening in that order count as well: a tier change ordered before the
/// opening is overridden by nothing the opening says.
pub fn fold_steps<'a, I>(case_id: Uuid, steps: I) -> Option<CaseView>
where
    I: IntoIterator<Item = (Option<Uuid>, CaseStep<'a>)>,
    I::IntoIter: Clone,
{
    let steps = steps.into_iter();
    let (name, community_code, categories, tier, opened_on, file_number) =
        steps.clone().find_map(|(id, step)| match step {
            CaseStep::Opened {
                name,
                community_code,
                categories,
                tier,
                opened_on,
                file_number,
            } if id == Some(case_id) => Some((
                name,
                community_code,
                categories,
                tier,
                opened_on,
                file_number,
            )),
            CaseStep::Opened { .. }
            | CaseStep::Assessed { .. }
            | CaseStep::Closed
            | CaseStep::Reopened { .. }
            | CaseStep::Visited { .. }
            | CaseStep::Verified { .. }
            | CaseStep::Recorded
            | CaseStep::Transferred { .. }
            | CaseStep::ReviewRequested { .. }
            | CaseStep::ReviewDecided { .. } => None,
        })?;
    let mut view = CaseView {
        case_id,
        name: name.to_owned(),
        community_code: community_code.to_owned(),
        categories: categories.to_vec(),
        tier,
        status: CaseStatus::Open,
        opened_on: opened_on?,
        file_number: file_number.to_owned(),
        reopened_on: None,
        last_visit: None,
        visits: 0,
        last_event_id: case_id,
        events: 0,
        merged_into: None,
        transferred_to: None,
    };
    for (id, step) in steps {
        view.events += 1;
        if let Some(id) = id {
            view.last_event_id = id;
        }
        match step {
            CaseStep::Opened { .. }
            | CaseStep::Recorded
            | CaseStep::ReviewRequested { .. }
            | CaseStep::ReviewDecided { .. } => {}
            CaseStep::Assessed { tier } => view.tier = tier,
            CaseStep::Transferred { community_code } => {
                view.community_code = community_code.to_owned();
            }
            CaseStep::Closed => view.status = CaseStatus::Closed,
            CaseStep::Reopened { reopened_on, tier } => {
                view.status = CaseStatus::Open;
                view.reopened_on = reopened_on.or(view.reopened_on);
                if tier != Tier::Unspecified as i32 {
                    view.tier = tier;
                }
            }
            CaseStep::Visited { visit_date } => {
                view.visits += 1;
                if let Some(date) = visit_date {
                    view.last_visit = Some(view.last_visit.map_or(date, |d| d.max(date)));
                }
            }
            CaseStep::Verified { categories } => {
                if !categories.is_empty() {
                    view.categories = categories.to_vec();
                }
            }
        }
    }
    view.categories.sort_unstable();
    Some(view)
}

/// Folds the events of one case, none of them voided, into its view
/// ([`fold_steps`] over their bodies).
///
/// `events` may come in any order; they are sorted by (hlc, event_id) here.
/// Returns `None` while the case's `CaseOpened` is unknown (or voided): events
/// that arrive before it are kept and counted once it arrives. Events without
/// a body, or not about a case, count nothing.
///
/// Transfers ([`crate::transfer::chain`]) hold: the entries of stations that
/// never held the file count nothing, an acceptance that took effect moves
/// the file's community, and the view names the station holding the file
/// after a transfer (`transferred_to`).
pub fn fold_case(case_id: Uuid, events: &mut [Event]) -> Option<CaseView> {
    events.sort_by(|a, b| a.hlc.cmp(&b.hlc).then_with(|| a.event_id.cmp(&b.event_id)));
    fold_joined(case_id, events, &[])
}

/// The step of `event` in its case's history under `chain`; `None` for an
/// event that is not a case event or not of the history (an entry of a
/// station that never held the file).
fn step_in<'a>(
    event: &'a Event,
    chain: Option<&crate::transfer::TransferChain>,
) -> Option<(Option<Uuid>, CaseStep<'a>)> {
    let body = event.body.as_ref()?;
    let id = Uuid::from_slice(&event.event_id).ok();
    let step = match (chain, body) {
        (Some(chain), Body::CaseTransferAccepted(m))
            if id.is_some_and(|id| chain.effective(id)) =>
        {
            CaseStep::Transferred {
                community_code: &m.community_code,
            }
        }
        (Some(chain), _)
            if !chain.held_by(&event.station_code) && !id.is_some_and(|id| chain.effective(id)) =>
        {
            return None;
        }
        _ => CaseStep::of(body)?,
    };
    Some((id, step))
}

/// Folds a survivor's own events with the events of the files merged into
/// it (`absorbed`, each [`CaseStep::absorbed`]), none of them voided, in
/// (hlc, event_id) order: the survivor's joined view. With no absorbed
/// events it is [`fold_case`].
pub fn fold_joined(case_id: Uuid, own: &[Event], absorbed: &[Event]) -> Option<CaseView> {
    let chain = crate::transfer::chain_of(case_id, own);
    let mut all: Vec<(&Event, bool)> = own
        .iter()
        .map(|e| (e, false))
        .chain(absorbed.iter().map(|e| (e, true)))
        .collect();
    all.sort_by(|(a, _), (b, _)| a.hlc.cmp(&b.hlc).then_with(|| a.event_id.cmp(&b.event_id)));
    let view = fold_steps(
        case_id,
        all.iter().filter_map(|(event, absorbed)| {
            let (id, step) = step_in(event, chain.as_ref())?;
            Some((id, if *absorbed { step.absorbed() } else { step }))
        }),
    )?;
    Some(CaseView {
        transferred_to: chain
            .as_ref()
            .and_then(|c| c.transferred_to())
            .map(str::to_owned),
        ..view
    })
}

/// The Chinese label of a tier, for tables.
pub fn tier_label(tier: i32) -> &'static str {
    match Tier::try_from(tier) {
        Ok(Tier::HighRisk) => "高风险",
        Ok(Tier::Key) => "重点",
        Ok(Tier::General) => "一般",
        Ok(Tier::Unspecified) | Err(_) => "未定",
    }
}

/// The Chinese label of a beneficiary category, for tables.
pub fn category_label(category: i32) -> &'static str {
    match Category::try_from(category) {
        Ok(Category::Dibao) => "低保",
        Ok(Category::DibaoMarginal) => "低保边缘",
        Ok(Category::Tekun) => "特困",
        Ok(Category::Orphan) => "孤儿",
        Ok(Category::DeFactoOrphan) => "事实无人抚养儿童",
        Ok(Category::ChildInDifficulty) => "困境儿童",
        Ok(Category::LeftBehindChild) => "留守儿童",
        Ok(Category::Disabled) => "残疾人",
        Ok(Category::Elderly) => "高龄/空巢/失能老人",
        Ok(Category::Other) => "其他",
        Ok(Category::Unspecified) | Err(_) => "未定",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::v1::{CaseAssessed, CaseOpened, VisitRecorded};

    fn event(id: u128, hlc: u64, body: Body) -> Event {
        Event {
            event_id: Uuid::from_u128(id).as_bytes().to_vec(),
            hlc,
            body: Some(body),
            ..Event::default()
        }
    }

    #[test]
    fn dates_read_as_chrono_reads_them() {
        let mut cases: Vec<String> = [
            "2025-02-29",
            "2024-02-29",
            "0000-01-01",
            "9999-12-31",
            "2025-13-01",
            "2025-00-10",
            "2025-1-01",
            "2025-01-1",
            "+2025-01-01",
            "2025-01-01 ",
            "２０２５-01-01",
            "2025/01/01",
            "",
            "-001-01-01",
            "2025-01-0a",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // A deterministic sweep of years, months and days, valid or not.
        for i in 0u32..20_000 {
            let n = i.wrapping_mul(2_654_435_761);
            cases.push(format!(
                "{:04}-{:02}-{:02}",
                n % 10_000,
                (n / 10_000) % 14,
                (n / 140_000) % 33
            ));
        }
        for s in cases {
            assert_eq!(
                parse_date(&s),
                NaiveDate::parse_from_str(&s, "%Y-%m-%d").ok(),
                "{s}"
            );
        }
    }

    #[test]
    fn a_case_is_folded_in_hlc_order_whatever_the_arrival_order() {
        let case = Uuid::from_u128(10);
        let case_bytes = case.as_bytes().to_vec();
        let opened = event(
            10,
            5,
            Body::CaseOpened(CaseOpened {
                name: "卓嘎".into(),
                community_code: "540502001001".into(),
                categories: vec![Category::Orphan as i32, Category::Dibao as i32],
                tier: Tier::General as i32,
                opened_on: "2026-03-01".into(),
                ..CaseOpened::default()
            }),
        );
        let early_tier = event(
            7,
            1,
            Body::CaseAssessed(CaseAssessed {
                case_id: case_bytes.clone(),
                tier: Tier::HighRisk as i32,
                ..CaseAssessed::default()
            }),
        );
        let visit = event(
            3,
            9,
            Body::VisitRecorded(VisitRecorded {
                case_id: case_bytes,
                visit_date: "2026-03-04".into(),
                ..VisitRecorded::default()
            }),
        );
        let mut one = vec![visit.clone(), opened.clone(), early_tier.clone()];
        let mut other = vec![early_tier, visit, opened];
        let view = fold_case(case, &mut one).unwrap();
        assert_eq!(fold_case(case, &mut other), Some(view.clone()));
        assert_eq!(
            view.tier,
            Tier::HighRisk as i32,
            "ordered before the opening"
        );
        assert_eq!(
            view.categories,
            [Category::Dibao as i32, Category::Orphan as i32]
        );
        assert_eq!(view.events, 3);
        assert_eq!(view.visits, 1);
        assert_eq!(view.last_event_id, Uuid::from_u128(3));
        assert_eq!(view.last_visit, NaiveDate::from_ymd_opt(2026, 3, 4));
        let mut without_opening = vec![one[0].clone(), one[2].clone()];
        without_opening.retain(|e| e.event_id != case.as_bytes());
        assert_eq!(fold_case(case, &mut without_opening), None);
    }

    #[test]
    fn a_survivor_folds_the_absorbed_files_services_but_not_its_status() {
        let survivor = Uuid::from_u128(10);
        let absorbed = Uuid::from_u128(20);
        let opening = |id: u128, hlc: u64, tier: Tier| {
            event(
                id,
                hlc,
                Body::CaseOpened(CaseOpened {
                    name: "次仁".into(),
                    community_code: "540502001001".into(),
                    tier: tier as i32,
                    opened_on: "2026-03-01".into(),
                    ..CaseOpened::default()
                }),
            )
        };
        let own = vec![opening(10, 1, Tier::Key)];
        let absorbed_events = vec![
            opening(20, 2, Tier::HighRisk),
            event(
                21,
                3,
                Body::VisitRecorded(VisitRecorded {
                    case_id: absorbed.as_bytes().to_vec(),
                    visit_date: "2026-03-09".into(),
                    ..VisitRecorded::default()
                }),
            ),
            event(
                22,
                4,
                Body::CaseClosed(crate::v1::CaseClosed {
                    case_id: absorbed.as_bytes().to_vec(),
                    closed_on: "2026-03-10".into(),
                    ..Default::default()
                }),
            ),
        ];
        let view = fold_joined(survivor, &own, &absorbed_events).unwrap();
        assert_eq!(view.status, CaseStatus::Open);
        assert_eq!(view.tier, Tier::Key as i32);
        assert_eq!(view.visits, 1);
        assert_eq!(view.last_visit, NaiveDate::from_ymd_opt(2026, 3, 9));
        assert_eq!(view.events, 4);
        assert_eq!(view.last_event_id, Uuid::from_u128(22));
        assert_eq!(
            fold_joined(survivor, &own, &[]),
            fold_case(survivor, &mut own.clone())
        );
        // The smallest survivor not itself absorbed holds the file.
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        assert_eq!(survivor_of(c, [b, a], |s| s == a), Some(b));
        assert_eq!(survivor_of(c, [c], |_| false), None);
        assert_eq!(survivor_of(c, [a], |_| true), None);
    }

    #[test]
    fn a_follow_up_is_due_from_the_last_visit_after_the_reopening() {
        let view = CaseView {
            case_id: Uuid::from_u128(1),
            name: String::new(),
            community_code: String::new(),
            categories: Vec::new(),
            tier: Tier::Key as i32,
            status: CaseStatus::Open,
            opened_on: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            file_number: String::new(),
            reopened_on: NaiveDate::from_ymd_opt(2026, 6, 1),
            last_visit: NaiveDate::from_ymd_opt(2026, 5, 1),
            visits: 1,
            last_event_id: Uuid::from_u128(1),
            events: 3,
            merged_into: None,
            transferred_to: None,
        };
        let intervals = TierIntervals::default();
        assert_eq!(
            view.next_due(&intervals),
            NaiveDate::from_ymd_opt(2026, 7, 1)
        );
        let today = NaiveDate::from_ymd_opt(2026, 7, 3).unwrap();
        let due = due_follow_ups([view.clone()], &intervals, today, 0);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].days_overdue, 2);
        assert!(due[0].is_overdue());
        let closed = CaseView {
            status: CaseStatus::Closed,
            ..view
        };
        assert!(due_follow_ups([closed], &intervals, today, 30).is_empty());
    }
}
