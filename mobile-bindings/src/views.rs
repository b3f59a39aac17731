//! What the phone's screens read: cases with their tier and next due date,
//! due and overdue follow-ups, a case's timeline, the device's sync status.
//!
//! Every record here is a copy made from the case model's views
//! (`station_proto::case`) and the events at the time of the call; dates are
//! `YYYY-MM-DD`, ids hyphenated UUIDs, times in milliseconds since the Unix
//! epoch.

use chrono::NaiveDate;
use station_proto::Event;
use station_proto::case::{CaseStatus as ModelCaseStatus, CaseView, DueFollowUp, TierIntervals};
use station_proto::ids::Uuid;

use station_proto::review::{ReviewItem, ReviewState as ModelReviewState};

use crate::entries::{Category, EntryKind, ReviewSubject, Tier, id_text};

/// Whether a case is being followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum CaseStatus {
    /// Opened or reopened, not closed since.
    Open,
    /// Closed.
    Closed,
}

/// One case file as this device knows it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CaseSummary {
    /// The case id (the id of its opening entry).
    pub case_id: String,
    /// 档案编号, such as `泽当-2026-AG-0042`: the number people say and write
    /// on paper; empty for a file opened by an older app. Wherever a case id
    /// is asked for, the number is taken too.
    pub file_number: String,
    /// The person's name, as entered.
    pub name: String,
    /// The 12-digit community code.
    pub community_code: String,
    /// Categories, as last opened or verified.
    pub categories: Vec<Category>,
    /// The current tier; `None` only for a tier a newer app recorded that this
    /// version does not know.
    pub tier: Option<Tier>,
    /// Open or closed.
    pub status: CaseStatus,
    /// The day the case was opened.
    pub opened_on: String,
    /// The day of the latest reopening, if any.
    pub reopened_on: Option<String>,
    /// The date of the latest visit, if any.
    pub last_visit: Option<String>,
    /// How many visits were recorded.
    pub visits: u32,
    /// The day the next follow-up is due; `None` for a closed case.
    pub next_due: Option<String>,
    /// The latest entry of the case; pass it as an assessment's
    /// `last_seen_event_id`.
    pub last_event_id: String,
    /// The file this one was merged into (合并档案): then it is closed, and
    /// its entries show in that file.
    pub merged_into: Option<String>,
    /// The 9-digit code of the station holding the file after a transfer
    /// (转移): when it is another station, the file is a closed stub here.
    pub transferred_to: Option<String>,
}

/// A case due for a follow-up soon, or overdue.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FollowUp {
    /// The case id.
    pub case_id: String,
    /// The person's name.
    pub name: String,
    /// The 12-digit community code.
    pub community_code: String,
    /// The tier that sets the interval.
    pub tier: Option<Tier>,
    /// The day the follow-up is due.
    pub due_on: String,
    /// Days past due today: positive when overdue, 0 when due today, negative
    /// when due later within the horizon.
    pub days_overdue: i64,
    /// Whether the due day has passed.
    pub overdue: bool,
    /// The date of the latest visit, if any.
    pub last_visit: Option<String>,
}

/// Where a review request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ReviewState {
    /// Waiting for a supervisor.
    Pending,
    /// Approved.
    Approved,
    /// Returned to the worker: see `comment`.
    Returned,
}

/// One review request, as the worker's and the supervisor's screens show it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ReviewSummary {
    /// The request's entry id: what a decision names.
    pub request_id: String,
    /// The case.
    pub case_id: String,
    /// The case's 档案编号.
    pub file_number: String,
    /// The person's name.
    pub name: String,
    /// What is under review; `None` for a subject a newer app recorded.
    pub subject: Option<ReviewSubject>,
    /// The day it was asked for.
    pub requested_on: Option<String>,
    /// Days since it was asked for.
    pub age_days: i64,
    /// Where it stands.
    pub state: ReviewState,
    /// The decision's comment: for a returned request, what to change
    /// (show it as "returned: …" until the request is resubmitted).
    pub comment: String,
    /// The decision was taken on a case that had changed since the
    /// supervisor last saw it.
    pub stale: bool,
    /// The latest entry of the case, to pass as a decision's
    /// `last_seen_event_id`.
    pub case_last_event_id: String,
}

impl ReviewSummary {
    /// The summary of `item`, a request of `case`, on `today`.
    pub fn new(case: &CaseView, item: &ReviewItem, today: NaiveDate) -> Self {
        Self {
            request_id: id_text(item.request_id),
            case_id: id_text(case.case_id),
            file_number: case.file_number.clone(),
            name: case.name.clone(),
            subject: ReviewSubject::from_proto(item.subject),
            requested_on: item.requested_on.map(date_text),
            age_days: item.age_days(today),
            state: match item.state {
                ModelReviewState::Pending => ReviewState::Pending,
                ModelReviewState::Approved => ReviewState::Approved,
                ModelReviewState::Returned => ReviewState::Returned,
            },
            comment: item.comment.clone(),
            stale: item.stale,
            case_last_event_id: id_text(case.last_event_id),
        }
    }
}

/// One entry, as a timeline shows it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TimelineEntry {
    /// The entry's id (for a void, or as a case id for an opening).
    pub event_id: String,
    /// What kind of entry.
    pub kind: EntryKind,
    /// `YYYY-MM-DD`: the day the service happened; for a void, the day it was
    /// recorded on this device's clock.
    pub date: String,
    /// The entry's own words: the name for an opening, the reason for an
    /// assessment, closing, reopening or void, the note, the visit or
    /// verification notes, the title of an activity or training, the group
    /// name, the resource's source.
    pub summary: String,
    /// The tier an assessment or reopening set.
    pub tier: Option<Tier>,
    /// The social worker who recorded it.
    pub author: String,
    /// The recording device's clock at entry.
    pub recorded_at_ms: i64,
    /// Whether a later entry voided it (a case timeline never lists those).
    pub voided: bool,
}

/// A batch of own entries the hub refused for good. Nothing after it is
/// pushed until an app update sends it differently; pulling goes on.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ParkedEntries {
    /// First own sequence number of the batch.
    pub from_seq: u64,
    /// Last own sequence number of the batch.
    pub through_seq: u64,
    /// What the hub said.
    pub reason: String,
}

impl From<station_agent::store::ParkedBatch> for ParkedEntries {
    fn from(parked: station_agent::store::ParkedBatch) -> Self {
        Self {
            from_seq: parked.from_seq,
            through_seq: parked.through_seq,
            reason: crate::error::scrub(&parked.reason),
        }
    }
}

/// The device as the sync screen shows it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct StoreStatus {
    /// This device's log id.
    pub origin_id: String,
    /// The station.
    pub station_code: String,
    /// The social worker.
    pub worker_id: String,
    /// The hub, once configured.
    pub hub_url: Option<String>,
    /// Whether a device token is stored.
    pub has_token: bool,
    /// The number of entries recorded on this device.
    pub head_seq: u64,
    /// Received by the city: how many of them the city hub holds durably,
    /// as the hub (or the station relay passing it on) last said.
    pub durable_through: u64,
    /// Saved at the station: how many of them the station relay or the hub
    /// holds durably (at least `durable_through`).
    pub saved_through: u64,
    /// Entries the city hub has not acknowledged yet (`head_seq - durable_through`).
    pub backlog: u64,
    /// The hub position of the last station entry pulled from colleagues.
    pub pull_cursor: u64,
    /// When a sync last completed, if ever.
    pub last_sync_ms: Option<i64>,
    /// A batch the hub refused for good, if any.
    pub parked: Option<ParkedEntries>,
    /// Why the last `sync_now` since the store was opened failed, if it did.
    pub last_error: Option<String>,
}

/// What one `sync_now` did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    /// Own entries the hub came to hold during the sync.
    pub pushed: u64,
    /// Colleagues' entries pulled and stored.
    pub pulled: u64,
    /// Received by the city: how many own entries the city hub holds
    /// durably, as the hub or the station relay said.
    pub durable_through: u64,
    /// Saved at the station: how many own entries the station relay (or
    /// the hub, when the sync reached it) holds durably.
    pub saved_through: u64,
    /// The number of entries recorded on this device.
    pub head_seq: u64,
    /// Entries still waiting for the city hub (recorded during the sync,
    /// parked, or saved at the station only).
    pub backlog: u64,
    /// Calls retried after the link or the hub failed.
    pub retries: u64,
    /// A batch the hub refused for good, if any.
    pub parked: Option<ParkedEntries>,
    /// How long the sync took, in milliseconds.
    pub elapsed_ms: u64,
    /// The hub had ordered this device wiped (it was reported lost), and
    /// the sync did: the entries went to the hub, then the store's keys were
    /// destroyed. Every later call on the store answers
    /// [`crate::FieldError::Wiped`]; show the user that the device was wiped.
    pub wiped: bool,
}

fn date_text(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

impl CaseSummary {
    /// The summary of a case view, with its next due date under `intervals`.
    pub fn new(case: &CaseView, intervals: &TierIntervals) -> Self {
        Self {
            case_id: id_text(case.case_id),
            file_number: case.file_number.clone(),
            name: case.name.clone(),
            community_code: case.community_code.clone(),
            categories: case
                .categories
                .iter()
                .filter_map(|&c| Category::from_proto(c))
                .collect(),
            tier: Tier::from_proto(case.tier),
            status: match case.status {
                ModelCaseStatus::Open => CaseStatus::Open,
                ModelCaseStatus::Closed => CaseStatus::Closed,
            },
            opened_on: date_text(case.opened_on),
            reopened_on: case.reopened_on.map(date_text),
            last_visit: case.last_visit.map(date_text),
            visits: case.visits,
            next_due: case.next_due(intervals).map(date_text),
            last_event_id: id_text(case.last_event_id),
            merged_into: case.merged_into.map(id_text),
            transferred_to: case.transferred_to.clone(),
        }
    }
}

impl From<&DueFollowUp> for FollowUp {
    fn from(due: &DueFollowUp) -> Self {
        Self {
            case_id: id_text(due.case.case_id),
            name: due.case.name.clone(),
            community_code: due.case.community_code.clone(),
            tier: Tier::from_proto(due.case.tier),
            due_on: date_text(due.due_on),
            days_overdue: due.days_overdue,
            overdue: due.is_overdue(),
            last_visit: due.case.last_visit.map(date_text),
        }
    }
}

/// The local date of a device clock reading, for entries without a service date.
fn recorded_date(recorded_at_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(recorded_at_ms).map_or_else(String::new, |t| {
        t.with_timezone(&chrono::Local)
            .format("%Y-%m-%d")
            .to_string()
    })
}

impl TimelineEntry {
    /// The timeline line of an event; `None` for an event without a body or
    /// a 16-byte id (which the store never holds).
    pub fn new(event: Event, voided: bool) -> Option<Self> {
        let event_id = id_text(Uuid::from_slice(&event.event_id).ok()?);
        let (kind, date, summary, tier) = EntryKind::line(event.body?);
        let date = date.unwrap_or_else(|| recorded_date(event.recorded_at_ms));
        Some(Self {
            event_id,
            kind,
            date,
            summary,
            tier,
            author: event.author,
            recorded_at_ms: event.recorded_at_ms,
            voided,
        })
    }
}
