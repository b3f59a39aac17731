//! The `Query` answers as the wire carries them: each projection answer
//! converted to its `station.v1` message.

use station_proto::ids::Uuid;
use station_proto::v1;

use crate::projections;

fn uuid_bytes(id: Option<Uuid>) -> Vec<u8> {
    id.map(|id| id.as_bytes().to_vec()).unwrap_or_default()
}

fn day(date: Option<chrono::NaiveDate>) -> String {
    date.map(|d| d.to_string()).unwrap_or_default()
}

impl From<projections::IndicatorTable> for v1::GetIndicatorsResponse {
    fn from(table: projections::IndicatorTable) -> Self {
        use station_proto::v1::{IndicatorRow, IndicatorValue};
        Self {
            computed_through_hub_seq: table.computed_through_hub_seq,
            period: table.period,
            first_day: table.first_day.to_string(),
            last_day: table.last_day.to_string(),
            rows: table
                .rows
                .into_iter()
                .map(|row| IndicatorRow {
                    station_code: row.station_code,
                    station_name: row.station_name,
                    station_name_bo: row.station_name_bo.unwrap_or_default(),
                    station_kind: row.station_kind.to_string(),
                    values: row
                        .values
                        .into_iter()
                        .map(|v| IndicatorValue {
                            metric: v.metric.name().to_string(),
                            label: v.label.to_string(),
                            unit: v.unit.name().to_string(),
                            value: v.value,
                            raw: v.raw,
                            raw_unit: v.raw_unit.to_string(),
                            target: v.target,
                        })
                        .collect(),
                    complete_through_ms: row.complete_through_ms,
                    complete: row.complete,
                })
                .collect(),
        }
    }
}

impl From<projections::Caseload> for v1::GetCaseloadResponse {
    fn from(caseload: projections::Caseload) -> Self {
        use station_proto::v1::{CaseloadCell, StationCaseload};
        Self {
            computed_through_hub_seq: caseload.computed_through_hub_seq,
            stations: caseload
                .stations
                .into_iter()
                .map(|s| StationCaseload {
                    station_code: s.station_code,
                    station_name: s.station_name,
                    open_cases: s.open_cases,
                    high_risk: s.high_risk,
                    key: s.key,
                    general: s.general,
                })
                .collect(),
            cells: caseload
                .cells
                .into_iter()
                .map(|c| CaseloadCell {
                    station_code: c.station_code,
                    community_code: c.community_code,
                    community_name: c.community_name,
                    tier: c.tier,
                    category: c.category,
                    open_cases: c.open_cases,
                })
                .collect(),
        }
    }
}

impl From<projections::OverdueList> for v1::GetOverdueResponse {
    fn from(list: projections::OverdueList) -> Self {
        use station_proto::v1::{OverdueCase, StationOverdue};
        Self {
            computed_through_hub_seq: list.computed_through_hub_seq,
            as_of: list.as_of.to_string(),
            total: list.total,
            stations: list
                .stations
                .into_iter()
                .map(|s| StationOverdue {
                    station_code: s.station_code,
                    overdue: s.overdue,
                    high_risk: s.high_risk,
                    key: s.key,
                    general: s.general,
                })
                .collect(),
            cases: list
                .cases
                .into_iter()
                .map(|c| OverdueCase {
                    station_code: c.station_code,
                    case_id: c.case_id.as_bytes().to_vec(),
                    name: c.name,
                    community_code: c.community_code,
                    tier: c.tier,
                    last_visit: day(c.last_visit),
                    follow_up_base: c.follow_up_base.to_string(),
                    due_on: c.due_on.to_string(),
                    days_overdue: c.days_overdue,
                    file_number: c.file_number,
                    interval_days: c.interval_days,
                })
                .collect(),
        }
    }
}

impl From<projections::DuplicateFiles> for v1::GetDuplicatesResponse {
    fn from(found: projections::DuplicateFiles) -> Self {
        Self {
            computed_through_hub_seq: found.computed_through_hub_seq,
            files: found
                .files
                .into_iter()
                .map(|f| v1::DuplicateFile {
                    station_code: f.station_code,
                    case_id: f.case_id.as_bytes().to_vec(),
                    community_code: f.community_code,
                    opened_on: f.opened_on.to_string(),
                    duplicate_of: f.duplicate_of.as_bytes().to_vec(),
                    duplicate_of_opened_on: f.duplicate_of_opened_on.to_string(),
                    file_number: f.file_number,
                    duplicate_of_file_number: f.duplicate_of_file_number,
                    duplicate_of_station_code: f.duplicate_of_station_code,
                    resolution: match f.resolution {
                        projections::DuplicateResolution::Open => v1::DuplicateResolution::Open,
                        projections::DuplicateResolution::Merged => v1::DuplicateResolution::Merged,
                        projections::DuplicateResolution::Dismissed => {
                            v1::DuplicateResolution::Dismissed
                        }
                    } as i32,
                })
                .collect(),
        }
    }
}

impl From<projections::Conflicts> for v1::GetConflictsResponse {
    fn from(found: projections::Conflicts) -> Self {
        use station_proto::v1::{ConcurrentAssessment, TierConflict};
        Self {
            computed_through_hub_seq: found.computed_through_hub_seq,
            conflicts: found
                .conflicts
                .into_iter()
                .map(|c| TierConflict {
                    station_code: c.station_code,
                    case_id: c.case_id.as_bytes().to_vec(),
                    community_code: c.community_code,
                    assessments: c
                        .assessments
                        .into_iter()
                        .map(|a| ConcurrentAssessment {
                            event_id: a.event_id.as_bytes().to_vec(),
                            tier: a.tier,
                            author: a.author,
                            hlc: a.hlc,
                            assessed_on: a.assessed_on,
                            last_seen_event_id: uuid_bytes(a.last_seen_event_id),
                        })
                        .collect(),
                    resolved_tier: c.resolved_tier,
                    resolved_by_event_id: c.resolved_by_event_id.as_bytes().to_vec(),
                })
                .collect(),
        }
    }
}

impl From<projections::SyncHealth> for v1::GetSyncHealthResponse {
    fn from(health: projections::SyncHealth) -> Self {
        use station_proto::v1::{DeviceHealth, LagBucket, StationHealth};
        Self {
            computed_through_hub_seq: health.computed_through_hub_seq,
            hub_clock_ms: health.hub_clock_ms,
            stations: health
                .stations
                .into_iter()
                .map(|s| StationHealth {
                    station_code: s.station_code,
                    station_name: s.station_name,
                    devices: s.devices,
                    complete_through_ms: s.complete_through_ms,
                    quarantined: s.quarantined,
                    held_events: s.held_events,
                    voided_events: s.voided_events,
                    tier_conflicts: s.tier_conflicts,
                    events_logged: s.events_logged,
                    duplicate_files: s.duplicate_files,
                })
                .collect(),
            devices: health
                .devices
                .into_iter()
                .map(|d| DeviceHealth {
                    origin_id: d.origin_id.as_bytes().to_vec(),
                    station_code: d.station_code,
                    device_name: d.device_name.unwrap_or_default(),
                    durable_through: d.durable_through,
                    reported_head: d.reported_head,
                    backlog: d.backlog,
                    last_contact_ms: d.last_contact_ms,
                    clock_skew_ms: d.clock_skew_ms,
                    quarantined: d.quarantined,
                    conflicts: d.conflicts,
                    events_logged: d.events_logged,
                    last_recorded_at_ms: d.last_recorded_at_ms.unwrap_or_default(),
                    mean_lag_ms: d.mean_lag_ms.unwrap_or_default(),
                    max_lag_ms: d.max_lag_ms.unwrap_or_default(),
                    lag: d
                        .lag
                        .into_iter()
                        .map(|b| LagBucket {
                            up_to_ms: b.up_to_ms.unwrap_or_default(),
                            events: b.events,
                        })
                        .collect(),
                    recorded_after_receipt: d.recorded_after_receipt,
                    complete_through_ms: d.complete_through_ms,
                    via_relay: d.via_relay.unwrap_or_default(),
                    relayed_events: d.relayed_events,
                    last_relayed_ms: d.last_relayed_ms.unwrap_or_default(),
                    wipe: match d.wipe {
                        None => v1::WipeState::None,
                        Some(projections::WipeStatus::Pending) => v1::WipeState::Pending,
                        Some(projections::WipeStatus::Wiped) => v1::WipeState::Wiped,
                    } as i32,
                })
                .collect(),
        }
    }
}

impl From<projections::QuarantineList> for v1::GetQuarantineResponse {
    fn from(list: projections::QuarantineList) -> Self {
        use station_proto::v1::QuarantinedEvent;
        Self {
            computed_through_hub_seq: list.computed_through_hub_seq,
            total: list.total,
            events: list
                .events
                .into_iter()
                .map(|q| QuarantinedEvent {
                    origin_id: q.origin_id.as_bytes().to_vec(),
                    origin_seq: q.origin_seq,
                    station_code: q.station_code,
                    reason: q.reason,
                    received_at_ms: q.received_at_ms,
                })
                .collect(),
        }
    }
}

impl From<projections::CaseTimeline> for v1::GetCaseTimelineResponse {
    fn from(timeline: projections::CaseTimeline) -> Self {
        use station_proto::v1::TimelineEntry;
        Self {
            computed_through_hub_seq: timeline.computed_through_hub_seq,
            case_id: timeline.case_id.as_bytes().to_vec(),
            station_code: timeline.station_code,
            opened: timeline.opened,
            shown: timeline.shown.to_string(),
            entries: timeline
                .entries
                .into_iter()
                .map(|e| TimelineEntry {
                    hub_seq: e.hub_seq,
                    received_at_ms: e.received_at_ms.unwrap_or_default(),
                    voided: e.voided,
                    voided_by_event_id: uuid_bytes(e.voided_by),
                    event: Some(e.event),
                })
                .collect(),
        }
    }
}

impl From<projections::ReviewQueue> for v1::GetReviewsResponse {
    fn from(queue: projections::ReviewQueue) -> Self {
        use station_proto::names;
        use station_proto::v1::{ReviewRequestRow, ReviewSubject};
        Self {
            computed_through_hub_seq: queue.computed_through_hub_seq,
            as_of: queue.as_of.to_string(),
            pending: queue.pending,
            stale: queue.stale,
            reviews: queue
                .reviews
                .into_iter()
                .map(|r| ReviewRequestRow {
                    station_code: r.station_code,
                    case_id: r.case_id.as_bytes().to_vec(),
                    file_number: r.file_number,
                    community_code: r.community_code,
                    request_id: r.request_id.as_bytes().to_vec(),
                    subject: names::parse::<ReviewSubject>(&r.subject)
                        .unwrap_or(ReviewSubject::Unspecified)
                        .into(),
                    subject_event_id: uuid_bytes(r.subject_event_id),
                    requested_on: day(r.requested_on),
                    requested_by: r.requested_by,
                    state: r.state.name().to_string(),
                    decision_id: uuid_bytes(r.decision_id),
                    decided_on: day(r.decided_on),
                    decided_by: r.decided_by,
                    comment: r.comment,
                    stale: r.stale,
                    superseded_by: uuid_bytes(r.superseded_by),
                    age_days: r.age_days,
                })
                .collect(),
            tier_change_needs_review: queue.policy.tier_change,
            case_plan_needs_review: queue.policy.case_plan,
            closure_needs_review: queue.policy.closure,
            closures_count_when_approved: queue.policy.count_closures_when_approved,
        }
    }
}
