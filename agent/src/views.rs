//! The device's local views of its station's cases: tier, categories, last
//! visit, next due date, due and overdue follow-ups.
//!
//! A case's view is a pure fold over the case's events that are not voided, in
//! (hlc, event_id) order, so it does not depend on the order in which events of
//! different devices arrived. The store recomputes one case's view from its
//! events whenever an event of that case (or a void of one) is written, in the
//! same atomic batch; rebuilding every view from the log gives the same result.

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};
use station_proto::ids::Uuid;
use station_proto::v1::{Category, Tier};
use station_proto::{Body, Event};

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

/// One case file as this device knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseView {
    /// The case id: the `event_id` of its `CaseOpened`.
    pub case_id: Uuid,
    /// The person's name, as entered (NFC).
    pub name: String,
    /// The 12-digit community code.
    pub community_code: String,
    /// Beneficiary categories (`Category` values), as last opened or verified.
    pub categories: Vec<i32>,
    /// Current tier (`Tier` value).
    pub tier: i32,
    /// Open or closed.
    pub status: CaseStatus,
    /// The day the case was opened.
    pub opened_on: NaiveDate,
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

/// The case an event is about, if any.
pub fn case_of(body: &Body) -> Option<Uuid> {
    let bytes = match body {
        Body::CaseAssessed(m) => &m.case_id,
        Body::CaseNoteAdded(m) => &m.case_id,
        Body::CaseClosed(m) => &m.case_id,
        Body::CaseReopened(m) => &m.case_id,
        Body::VisitRecorded(m) => &m.case_id,
        Body::BeneficiaryVerified(m) => &m.case_id,
        Body::ResourceLinked(m) if !m.case_id.is_empty() => &m.case_id,
        _ => return None,
    };
    Uuid::from_slice(bytes).ok()
}

/// The case id of an event: its own id for `CaseOpened`, else [`case_of`].
pub fn case_key(event: &Event) -> Option<Uuid> {
    match event.body.as_ref()? {
        Body::CaseOpened(_) => Uuid::from_slice(&event.event_id).ok(),
        body => case_of(body),
    }
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Folds the events of one case, none of them voided, into its view.
///
/// `events` may come in any order; they are sorted by (hlc, event_id) here.
/// Returns `None` while the case's `CaseOpened` is unknown (or voided): events
/// that arrive before it are kept and counted once it arrives.
pub fn fold_case(case_id: Uuid, events: &mut [Event]) -> Option<CaseView> {
    events.sort_by(|a, b| a.hlc.cmp(&b.hlc).then_with(|| a.event_id.cmp(&b.event_id)));
    let opened = events.iter().find_map(|e| match &e.body {
        Some(Body::CaseOpened(m)) if e.event_id == case_id.as_bytes() => Some(m),
        _ => None,
    })?;
    let mut view = CaseView {
        case_id,
        name: opened.name.clone(),
        community_code: opened.community_code.clone(),
        categories: opened.categories.clone(),
        tier: opened.tier,
        status: CaseStatus::Open,
        opened_on: parse_date(&opened.opened_on)?,
        reopened_on: None,
        last_visit: None,
        visits: 0,
        last_event_id: case_id,
        events: 0,
    };
    for event in events.iter() {
        let Some(body) = &event.body else { continue };
        view.events += 1;
        if let Ok(id) = Uuid::from_slice(&event.event_id) {
            view.last_event_id = id;
        }
        match body {
            Body::CaseAssessed(m) => view.tier = m.tier,
            Body::CaseClosed(_) => view.status = CaseStatus::Closed,
            Body::CaseReopened(m) => {
                view.status = CaseStatus::Open;
                view.reopened_on = parse_date(&m.reopened_on).or(view.reopened_on);
                if m.tier != Tier::Unspecified as i32 {
                    view.tier = m.tier;
                }
            }
            Body::VisitRecorded(m) => {
                view.visits += 1;
                if let Some(date) = parse_date(&m.visit_date) {
                    view.last_visit = Some(view.last_visit.map_or(date, |d| d.max(date)));
                }
            }
            Body::BeneficiaryVerified(m) if !m.categories.is_empty() => {
                view.categories = m.categories.clone();
            }
            _ => {}
        }
    }
    view.categories.sort_unstable();
    Some(view)
}

/// The Chinese label of a tier, for tables.
pub fn tier_label(tier: i32) -> &'static str {
    match Tier::try_from(tier) {
        Ok(Tier::HighRisk) => "高风险",
        Ok(Tier::Key) => "重点",
        Ok(Tier::General) => "一般",
        _ => "未定",
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
        _ => "未定",
    }
}
