//! The answers of the read API: plain structs, serialisable as JSON, that
//! the gRPC `Query` service maps to its messages and the HTTP layer returns
//! as they are. Sync health has its own module, [`super::health`].
//!
//! Invariants: every answer carries the checkpoint it was computed through;
//! aggregate answers never carry ID numbers (only the case timeline holds
//! whole events, read from the log, and minimises them with
//! [`CaseTimeline::minimised`] before a reader sees them).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use station_proto::Event;
use station_proto::ids::Uuid;
use station_proto::mask::{self, Shown};

use super::period::{Metric, Unit};

/// One indicator of one station in one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndicatorValue {
    /// Which indicator.
    pub metric: Metric,
    /// Its Chinese label.
    pub label: &'static str,
    /// The unit of `value` and `target`.
    pub unit: Unit,
    /// The value in `unit`.
    pub value: f64,
    /// The exact value in `raw_unit` (count, minute, fen).
    pub raw: i64,
    /// The unit of `raw`.
    pub raw_unit: &'static str,
    /// The station's target for this metric and kind of period, in `unit`.
    pub target: Option<i64>,
}

/// One station's indicators in one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndicatorRow {
    /// The station's code.
    pub station_code: String,
    /// Its Chinese name (empty when not on the roster).
    pub station_name: String,
    /// Its Tibetan name, when the roster has one.
    pub station_name_bo: Option<String>,
    /// `street`, `town` or `township` (empty when not on the roster).
    pub station_kind: &'static str,
    /// Every [`Metric`], in report order.
    pub values: Vec<IndicatorValue>,
    /// Through when the station's data is complete: see
    /// [`StationHealth::complete_through_ms`](super::health::StationHealth::complete_through_ms).
    pub complete_through_ms: Option<i64>,
    /// Whether `complete_through_ms` reaches the end of the period (China time).
    pub complete: bool,
}

/// Indicators of several stations in one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndicatorTable {
    /// The checkpoint the answer is computed through.
    pub computed_through_hub_seq: u64,
    /// The period: `2026-11`, `2026-Q4`, `2026`.
    pub period: String,
    /// Its first day.
    pub first_day: NaiveDate,
    /// Its last day.
    pub last_day: NaiveDate,
    /// One row per station asked for, in the order asked.
    pub rows: Vec<IndicatorRow>,
}

/// Open cases of one station × community × tier × category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaseloadCell {
    /// The station.
    pub station_code: String,
    /// The community.
    pub community_code: String,
    /// The community's name on the roster (empty when not listed).
    pub community_name: String,
    /// `Tier` value.
    pub tier: i32,
    /// `Category` value; a case of several categories counts in each.
    pub category: i32,
    /// Open cases of the cell.
    pub open_cases: u32,
}

/// One station's open cases, by tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StationCaseload {
    /// The station.
    pub station_code: String,
    /// Its name (empty when not on the roster).
    pub station_name: String,
    /// Distinct open cases.
    pub open_cases: u32,
    /// Of which tier 1.
    pub high_risk: u32,
    /// Of which tier 2.
    pub key: u32,
    /// Of which tier 3.
    pub general: u32,
}

/// Caseload of several stations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caseload {
    /// The checkpoint the answer is computed through.
    pub computed_through_hub_seq: u64,
    /// Per station, in the order asked.
    pub stations: Vec<StationCaseload>,
    /// Per cell, by station, community, tier, category.
    pub cells: Vec<CaseloadCell>,
}

/// An open case past its follow-up date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverdueCase {
    /// The station.
    pub station_code: String,
    /// The case.
    pub case_id: Uuid,
    /// 档案编号 of the case; empty for a file opened by an older client.
    pub file_number: String,
    /// The person's name, so the station knows whom to visit.
    pub name: String,
    /// The community.
    pub community_code: String,
    /// `Tier` value.
    pub tier: i32,
    /// The last visit, if any.
    pub last_visit: Option<NaiveDate>,
    /// The last visit, or the (re)opening when no visit came after it.
    pub follow_up_base: NaiveDate,
    /// When the follow-up was due.
    pub due_on: NaiveDate,
    /// Days past `due_on` on `as_of`, at least 1.
    pub days_overdue: i64,
    /// The tier's interval, days.
    pub interval_days: u32,
}

/// How many open cases of one station are overdue, by tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StationOverdue {
    /// The station.
    pub station_code: String,
    /// Every overdue case of the station.
    pub overdue: u32,
    /// Of which high-risk.
    pub high_risk: u32,
    /// Of which key.
    pub key: u32,
    /// Of which general.
    pub general: u32,
}

/// Overdue follow-ups on one date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverdueList {
    /// The checkpoint the answer is computed through.
    pub computed_through_hub_seq: u64,
    /// The date asked about.
    pub as_of: NaiveDate,
    /// Every overdue case of the stations asked about, whatever the limit.
    pub total: u64,
    /// Per station, in the order asked.
    pub stations: Vec<StationOverdue>,
    /// Most overdue first (ties by station, then case id); at most the
    /// limit asked for.
    pub cases: Vec<OverdueCase>,
}

/// One of the tier changes of a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcurrentAssessment {
    /// The `CaseAssessed` event.
    pub event_id: Uuid,
    /// The tier it set (`Tier` value).
    pub tier: i32,
    /// The social worker.
    pub author: String,
    /// Its hlc.
    pub hlc: u64,
    /// Its `assessed_on`.
    pub assessed_on: String,
    /// The case event its author had last seen.
    pub last_seen_event_id: Option<Uuid>,
}

/// Disagreeing tier changes of one case made without seeing each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierConflict {
    /// The station.
    pub station_code: String,
    /// The case.
    pub case_id: Uuid,
    /// Its community.
    pub community_code: String,
    /// The concurrent tier changes, in (hlc, event_id) order.
    pub assessments: Vec<ConcurrentAssessment>,
    /// The tier that won: the last of them in (hlc, event_id) order.
    pub resolved_tier: i32,
    /// The event that set it.
    pub resolved_by_event_id: Uuid,
}

/// Flagged tier conflicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflicts {
    /// The checkpoint the answer is computed through.
    pub computed_through_hub_seq: u64,
    /// By station and case.
    pub conflicts: Vec<TierConflict>,
}

/// How a flagged pair of files stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateResolution {
    /// Still flagged: the later file is not counted as a file of its own.
    Open,
    /// One of the two was merged into the other (`CasesMerged`).
    Merged,
    /// The station said they are not one person's (`DuplicateDismissed`).
    Dismissed,
}

impl DuplicateResolution {
    /// The dashboard's label.
    pub fn label(self) -> &'static str {
        match self {
            DuplicateResolution::Open => "待处理",
            DuplicateResolution::Merged => "已合并",
            DuplicateResolution::Dismissed => "非重复",
        }
    }
}

/// One review request of a case and where it stands, as the review queue
/// shows it. Never a name or an ID number: the case id and file number
/// lead to the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewRow {
    /// The station.
    pub station_code: String,
    /// The case.
    pub case_id: Uuid,
    /// Its 档案编号 (empty from older clients).
    pub file_number: String,
    /// Its community code.
    pub community_code: String,
    /// The `ReviewRequested` event.
    pub request_id: Uuid,
    /// `tier-change`, `case-plan` or `closure`.
    pub subject: String,
    /// The event under review.
    pub subject_event_id: Option<Uuid>,
    /// The day the review was asked for.
    pub requested_on: Option<NaiveDate>,
    /// The worker who asked.
    pub requested_by: String,
    /// `pending`, `approved` or `returned`.
    pub state: station_proto::review::ReviewState,
    /// The decision that holds, if any.
    pub decision_id: Option<Uuid>,
    /// Its day.
    pub decided_on: Option<NaiveDate>,
    /// The supervisor who took it.
    pub decided_by: String,
    /// Its comment (for a return, what to change).
    pub comment: String,
    /// The decision was taken on a case that had changed since its author
    /// last saw it.
    pub stale: bool,
    /// A later request for the same subject resubmits this one.
    pub superseded_by: Option<Uuid>,
    /// Days since the request, on the day the answer was computed (0 in
    /// the stored row).
    #[serde(default)]
    pub age_days: i64,
}

/// The review queue of some stations: requests waiting (with their age)
/// and returned ones not yet resubmitted, or with `all`, every request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewQueue {
    /// The checkpoint the answer is computed through.
    pub computed_through_hub_seq: u64,
    /// The day ages are counted to.
    pub as_of: NaiveDate,
    /// Requests waiting for a supervisor, per station in the order asked.
    pub pending: u64,
    /// Decisions flagged stale, among the rows.
    pub stale: u64,
    /// Which changes need review in this deployment (`[review]`).
    pub policy: station_proto::review::ReviewPolicy,
    /// By station, oldest request first.
    pub reviews: Vec<ReviewRow>,
}

impl ReviewRow {
    /// Whether it waits for a supervisor: pending and not resubmitted.
    pub fn is_pending(&self) -> bool {
        self.state == station_proto::review::ReviewState::Pending && self.superseded_by.is_none()
    }
}

/// A duplicate file: opened, by service date, while an earlier file of the
/// same person at the same station was open, still flagged or resolved.
/// Never the person's ID number or name: the case ids lead to the
/// timelines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateFile {
    /// The station.
    pub station_code: String,
    /// The duplicate file's case id.
    pub case_id: Uuid,
    /// Its 档案编号 (empty from older clients).
    pub file_number: String,
    /// Its community code.
    pub community_code: String,
    /// The day it was opened.
    pub opened_on: NaiveDate,
    /// The earlier file of the person, open when it was opened.
    pub duplicate_of: Uuid,
    /// That file's opening day.
    pub duplicate_of_opened_on: NaiveDate,
    /// That file's 档案编号 (empty from older clients).
    pub duplicate_of_file_number: String,
    /// The station holding that file: `station_code` for two files of one
    /// station, another for a pair the district directory finds across
    /// stations.
    pub duplicate_of_station_code: String,
    /// Still flagged, or how the pair was resolved.
    pub resolution: DuplicateResolution,
}

/// The bureau's list of duplicate files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateFiles {
    /// The checkpoint the answer is computed through.
    pub computed_through_hub_seq: u64,
    /// By station, then case id.
    pub files: Vec<DuplicateFile>,
}

impl DuplicateFiles {
    /// Every file the list names, each once, in the list's order.
    pub fn case_ids(&self) -> Vec<Uuid> {
        let mut ids = Vec::with_capacity(self.files.len() * 2);
        for file in &self.files {
            for id in [file.case_id, file.duplicate_of] {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        ids
    }
}

/// An event acknowledged but not accepted; never its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantinedEvent {
    /// Its origin.
    pub origin_id: Uuid,
    /// Its seq.
    pub origin_seq: u64,
    /// The station it claimed.
    pub station_code: String,
    /// Why it was not accepted.
    pub reason: String,
    /// Hub clock when received, ms.
    pub received_at_ms: i64,
}

/// Quarantined events of some stations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantineList {
    /// The checkpoint at the time of the answer.
    pub computed_through_hub_seq: u64,
    /// How many the stations have in all.
    pub total: u64,
    /// Newest first, at most as many as asked.
    pub events: Vec<QuarantinedEvent>,
}

/// One event of a case's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// Its hub position.
    pub hub_seq: u64,
    /// Hub clock when received, ms.
    pub received_at_ms: Option<i64>,
    /// Whether a void of its station names it.
    pub voided: bool,
    /// The void that did, the smallest id when several.
    pub voided_by: Option<Uuid>,
    /// The event's id.
    pub event_id: Uuid,
    /// The device that recorded it.
    pub origin_id: Option<Uuid>,
    /// Its seq there.
    pub origin_seq: u64,
    /// The social worker.
    pub author: String,
    /// Device clock at entry, ms.
    pub recorded_at_ms: i64,
    /// Its hlc.
    pub hlc: u64,
    /// The body in the proto3 JSON mapping.
    pub body: serde_json::Value,
    /// The whole event, for the gRPC answer.
    #[serde(skip)]
    pub event: Event,
}

/// Every event of one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseTimeline {
    /// The checkpoint the answer is computed through.
    pub computed_through_hub_seq: u64,
    /// The case.
    pub case_id: Uuid,
    /// Its station (of its `CaseOpened`, else of its first event).
    pub station_code: String,
    /// False while its `CaseOpened` is unknown or voided.
    pub opened: bool,
    /// Its events and the voids of them, in (hlc, event_id) order.
    pub entries: Vec<TimelineEntry>,
    /// Closed longer than the configured retention period: shown
    /// de-identified whatever the reader asks.
    pub deidentified: bool,
    /// How the person's fields are shown: `revealed` (whole, as read from
    /// the log), `masked` or `deidentified`; see [`CaseTimeline::minimised`].
    pub shown: &'static str,
}

impl CaseTimeline {
    /// The timeline as a reader is shown it ([`station_proto::mask`]): a
    /// de-identified case without its person, else ID numbers, phones and
    /// addresses masked unless `reveal`.
    #[must_use]
    pub fn minimised(mut self, reveal: bool) -> Self {
        let (shown, name) = if self.deidentified {
            (Shown::Deidentified, "deidentified")
        } else if reveal {
            (Shown::Revealed, "revealed")
        } else {
            (Shown::Masked, "masked")
        };
        if shown != Shown::Revealed {
            for entry in &mut self.entries {
                if let Some(body) = entry.event.body.as_mut() {
                    mask::body(body, shown);
                    entry.body = station_proto::json::body_to_json(body);
                }
            }
        }
        self.shown = name;
        self
    }
}
