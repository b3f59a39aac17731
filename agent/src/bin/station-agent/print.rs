//! What the command line prints: tables for people, JSON for scripts.
//!
//! Invariants: tables pad by terminal columns (Chinese characters take two,
//! Tibetan combining marks none), so columns line up in both scripts; JSON
//! output is the engine's own types serialised, so scripts see the same
//! field names as the library.

use std::io::Write;

use station_agent::engine::{self, RecordedEntry};
use station_agent::store::{IncomingTransfer, SyncState};
use station_agent::views::{
    CaseStatus, CaseView, DueFollowUp, TierIntervals, category_label, tier_label,
};
use station_proto::Event;
use station_proto::ids::Uuid;
use station_proto::json;
use station_proto::review::{self, ReviewItem, ReviewState};

use crate::args::{Format, LogFormat};

/// Pads `s` with spaces to `width` terminal columns: Chinese characters take
/// two columns, Tibetan combining marks none.
/// Columns of a file number such as `泽当-2026-AG-0042`.
const FILE_NUMBER_WIDTH: usize = 18;

/// A case's 档案编号, or `-` for a file opened by an older client.
fn file_number(case: &CaseView) -> &str {
    if case.file_number.is_empty() {
        "-"
    } else {
        &case.file_number
    }
}

fn pad(s: &str, width: usize) -> String {
    let used = unicode_width::UnicodeWidthStr::width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(used)))
}

/// One recorded entry: its ids, for a case opening the case id and the
/// file number of `opened`, the case's view, and the id of the review the
/// district's policy asked for it (`review_request_id=`).
///
/// # Errors
/// `out` cannot be written.
pub fn recorded(
    out: &mut impl Write,
    opened: Option<&CaseView>,
    recorded: &RecordedEntry,
) -> std::io::Result<()> {
    let r = &recorded.entry;
    if let Some(case) = opened {
        write!(out, "case_id={} ", r.event_id)?;
        if !case.file_number.is_empty() {
            write!(out, "file_number={} ", case.file_number)?;
        }
    }
    write!(out, "event_id={} origin_seq={}", r.event_id, r.origin_seq)?;
    if r.duplicate {
        write!(out, " (already recorded)")?;
    }
    if let Some(review) = &recorded.review {
        write!(out, " review_request_id={}", review.event_id)?;
    }
    writeln!(out)
}

/// The warning of a possible duplicate ([`station_agent::Agent::possible_duplicates`]):
/// the stations, never the person.
pub fn possible_duplicate(holders: &[station_agent::store::DirectoryHolder]) -> String {
    let names: Vec<&str> = holders.iter().map(|h| h.station_name.as_str()).collect();
    format!(
        "possible duplicate: a person of the same name, birth date and gender has an open file \
         at {}; if it is this person, add to that file (or ask for a transfer) and close this one",
        names.join(", ")
    )
}

/// The cases due for a follow-up, overdue first.
///
/// # Errors
/// `out` cannot be written.
pub fn due(out: &mut impl Write, due: &[DueFollowUp], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&due)?)?,
        Format::Table => {
            writeln!(
                out,
                "{:<36}  {}  {:<12}  {:<6}  {:<10}  {:>7}  name",
                "case_id",
                pad("file_number", FILE_NUMBER_WIDTH),
                "community",
                "tier",
                "due_on",
                "overdue"
            )?;
            for d in due {
                writeln!(
                    out,
                    "{:<36}  {}  {:<12}  {}  {:<10}  {:>7}  {}",
                    d.case.case_id,
                    pad(file_number(&d.case), FILE_NUMBER_WIDTH),
                    d.case.community_code,
                    pad(tier_label(d.case.tier), 6),
                    d.due_on,
                    if d.is_overdue() {
                        format!("{}d", d.days_overdue)
                    } else {
                        "-".into()
                    },
                    d.case.name
                )?;
            }
            writeln!(
                out,
                "{} due, {} overdue",
                due.len(),
                due.iter().filter(|d| d.is_overdue()).count()
            )?;
        }
    }
    Ok(())
}

/// The station's cases with their last visit and next due date.
///
/// # Errors
/// `out` cannot be written.
pub fn cases(
    out: &mut impl Write,
    cases: &[CaseView],
    intervals: &TierIntervals,
    format: Format,
) -> anyhow::Result<()> {
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&cases)?)?,
        Format::Table => {
            writeln!(
                out,
                "{:<36}  {}  {:<12}  {:<6}  {:<6}  {:<10}  {:<10}  {:<24}  name",
                "case_id",
                pad("file_number", FILE_NUMBER_WIDTH),
                "community",
                "status",
                "tier",
                "last_visit",
                "next_due",
                "categories"
            )?;
            for c in cases {
                let categories: Vec<&str> =
                    c.categories.iter().map(|&k| category_label(k)).collect();
                writeln!(
                    out,
                    "{:<36}  {}  {:<12}  {:<6}  {}  {:<10}  {:<10}  {}  {}",
                    c.case_id,
                    pad(file_number(c), FILE_NUMBER_WIDTH),
                    c.community_code,
                    match (c.status, c.merged_into, &c.transferred_to) {
                        (_, Some(_), _) => "merged",
                        (CaseStatus::Open, None, _) => "open",
                        // Transferred to another station: a closed stub here.
                        (CaseStatus::Closed, None, Some(_)) => "moved",
                        (CaseStatus::Closed, None, None) => "closed",
                    },
                    pad(tier_label(c.tier), 6),
                    c.last_visit.map_or("-".into(), |d| d.to_string()),
                    c.next_due(intervals).map_or("-".into(), |d| d.to_string()),
                    pad(&categories.join(","), 24),
                    c.name
                )?;
            }
            writeln!(out, "{} cases", cases.len())?;
        }
    }
    Ok(())
}

/// Transfer requests of other stations waiting for this station's
/// answer, oldest first, with their age in days on `today`.
///
/// # Errors
/// `out` cannot be written.
pub fn incoming_transfers(
    out: &mut impl Write,
    incoming: &[IncomingTransfer],
    today: chrono::NaiveDate,
    format: Format,
) -> anyhow::Result<()> {
    let age = |t: &IncomingTransfer| t.requested_on.map(|on| (today - on).num_days().max(0));
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = incoming
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "request_id": t.request_id,
                        "case_id": t.case_id,
                        "file_number": t.file_number,
                        "name": t.name,
                        "from_station": t.from_station,
                        "requested_on": t.requested_on,
                        "age_days": age(t),
                        "reason": t.reason,
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        }
        Format::Table => {
            writeln!(
                out,
                "{:<36}  {}  {:<9}  {:>4}  {}  reason",
                "request_id",
                pad("file_number", FILE_NUMBER_WIDTH),
                "from",
                "days",
                pad("name", 16),
            )?;
            for t in incoming {
                writeln!(
                    out,
                    "{:<36}  {}  {:<9}  {:>4}  {}  {}",
                    t.request_id,
                    pad(
                        if t.file_number.is_empty() {
                            "-"
                        } else {
                            &t.file_number
                        },
                        FILE_NUMBER_WIDTH
                    ),
                    t.from_station,
                    age(t).map_or("-".into(), |d| d.to_string()),
                    pad(&t.name, 16),
                    t.reason
                )?;
            }
            writeln!(out, "{} transfer requests to answer", incoming.len())?;
        }
    }
    Ok(())
}

/// Review requests with their case: state, age, and for a returned one
/// the supervisor's comment (`returned: …`), so the worker sees what to
/// change.
///
/// # Errors
/// `out` cannot be written.
pub fn reviews(
    out: &mut impl Write,
    items: &[(CaseView, ReviewItem)],
    today: chrono::NaiveDate,
    format: Format,
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = items
                .iter()
                .map(|(case, item)| {
                    serde_json::json!({
                        "case_id": case.case_id,
                        "file_number": case.file_number,
                        "request_id": item.request_id,
                        "subject": review::subject_name(item.subject),
                        "subject_event_id": item.subject_event_id,
                        "requested_on": item.requested_on,
                        "age_days": item.age_days(today),
                        "state": item.state,
                        "decided_on": item.decided_on,
                        "comment": item.comment,
                        "stale": item.stale,
                        "superseded_by": item.superseded_by,
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        }
        Format::Table => {
            writeln!(
                out,
                "{:<36}  {}  {:<11}  {:>4}  {:<8}  status",
                "request_id",
                pad("file_number", FILE_NUMBER_WIDTH),
                "subject",
                "days",
                "state",
            )?;
            for (case, item) in items {
                let status = match item.state {
                    ReviewState::Returned => format!("returned: {}", item.comment),
                    ReviewState::Pending | ReviewState::Approved => {
                        if item.comment.is_empty() {
                            String::new()
                        } else {
                            item.comment.clone()
                        }
                    }
                };
                let mut flags = Vec::new();
                if item.stale {
                    flags.push("stale decision");
                }
                if item.superseded_by.is_some() {
                    flags.push("resubmitted");
                }
                let flags = if flags.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", flags.join(", "))
                };
                writeln!(
                    out,
                    "{:<36}  {}  {:<11}  {:>4}  {:<8}  {status}{flags}",
                    item.request_id,
                    pad(file_number(case), FILE_NUMBER_WIDTH),
                    review::subject_name(item.subject),
                    item.age_days(today),
                    item.state.name(),
                )?;
            }
            writeln!(out, "{} review requests", items.len())?;
        }
    }
    Ok(())
}

/// This device's own events, a line each.
///
/// # Errors
/// `out` cannot be written.
pub fn log(out: &mut impl Write, events: &[Event], format: LogFormat) -> anyhow::Result<()> {
    for event in events {
        let id = Uuid::from_slice(&event.event_id).map_or_else(|_| "?".into(), |u| u.to_string());
        let body = event
            .body
            .as_ref()
            .map(json::body_to_json)
            .unwrap_or_default();
        match format {
            LogFormat::Jsonl => {
                let line = serde_json::json!({
                    "event_id": id,
                    "origin_seq": event.origin_seq,
                    "station_code": event.station_code,
                    "author": event.author,
                    "recorded_at_ms": event.recorded_at_ms,
                    "hlc": event.hlc.to_string(),
                    "body": body,
                });
                writeln!(out, "{line}")?;
            }
            LogFormat::Table => {
                writeln!(out, "{:>6}  {}  {}", event.origin_seq, id, body)?;
            }
        }
    }
    Ok(())
}

/// `status --format json`: the engine's summary plus the sync client's state.
#[derive(Debug, serde::Serialize)]
struct StatusReport {
    #[serde(flatten)]
    status: engine::Status,
    /// The batch the hub refused for good, or null.
    parked: Option<station_agent::store::ParkedBatch>,
    /// Wall-clock milliseconds of the last completed sync round, or null.
    last_sync_ms: Option<i64>,
    /// Measured uplink rate in bits of encoded events per second, or null.
    throughput_bps: Option<u64>,
}

/// The status of a device the hub ordered wiped, and that was.
///
/// # Errors
/// `out` cannot be written.
pub fn wiped(out: &mut impl Write, wiped_at_ms: i64, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "wiped": true,
                "wiped_at_ms": wiped_at_ms,
            }))?
        )?,
        Format::Table => {
            let at = chrono::DateTime::from_timestamp_millis(wiped_at_ms)
                .map_or(wiped_at_ms.to_string(), |t| t.to_rfc3339());
            writeln!(out, "wiped            {at}")?;
            writeln!(
                out,
                "                 by order of the hub (reported lost): its data key and signing \
                 key are destroyed and nothing of this store can be read or recorded"
            )?;
        }
    }
    Ok(())
}

/// This device's identity, sync position and case counts.
///
/// # Errors
/// `out` cannot be written.
pub fn status(
    out: &mut impl Write,
    status: engine::Status,
    sync: SyncState,
    format: Format,
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let report = StatusReport {
                throughput_bps: sync.uplink_bytes_per_sec.map(|b| b.saturating_mul(8)),
                parked: sync.parked,
                last_sync_ms: sync.last_sync_ms,
                status,
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        }
        Format::Table => {
            writeln!(out, "origin_id        {}", status.origin_id)?;
            writeln!(out, "station          {}", status.station)?;
            writeln!(out, "worker           {}", status.worker_id)?;
            writeln!(
                out,
                "hub              {}",
                status.hub_url.as_deref().unwrap_or("-")
            )?;
            writeln!(out, "head_seq         {}", status.head_seq)?;
            writeln!(
                out,
                "durable_through  {}  (received by the city)",
                status.durable_through
            )?;
            writeln!(
                out,
                "saved_through    {}  (saved at the station or the city)",
                status.saved_through
            )?;
            writeln!(out, "pending          {}", status.pending)?;
            match &sync.parked {
                Some(p) => writeln!(
                    out,
                    "parked           seqs {}..={}: {}",
                    p.from_seq, p.through_seq, p.reason
                )?,
                None => writeln!(out, "parked           -")?,
            }
            let last_sync = sync.last_sync_ms.map_or("never".into(), |ms| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .map_or(ms.to_string(), |t| t.to_rfc3339())
            });
            writeln!(out, "last sync        {last_sync}")?;
            let rate = sync
                .uplink_bytes_per_sec
                .map_or("-".into(), |b| format!("{} bit/s", b.saturating_mul(8)));
            writeln!(out, "uplink           {rate}")?;
            writeln!(out, "open cases       {}", status.open_cases)?;
            writeln!(out, "closed cases     {}", status.closed_cases)?;
        }
    }
    Ok(())
}
