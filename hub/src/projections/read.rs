//! The read API over the projections: plain structs, serialisable as JSON,
//! that the gRPC `Query` service maps to its messages and an HTTP layer can
//! return as they are.
//!
//! Invariants: every answer is read under the projections' read gate and
//! carries the checkpoint it was computed through; aggregate answers never
//! carry ID numbers (the projections do not even keep them: only the case
//! timeline reads whole events from the log); station lists are taken as
//! given, so authorisation happens before these calls.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use station_proto::Event;
use station_proto::case::{CaseView, TierIntervals};
use station_proto::ids::Uuid;
use station_proto::v1::Tier;

use super::apply::{self, OriginStats};
use super::codec;
use super::fold::{self, CaseFact, Quality, Stations};
use super::layout;
use super::period::{Metric, Period, Unit};
use super::{ProjectionError, Projections};
use crate::store::TokenScope;

/// Upper bounds (inclusive, ms) of the entry-to-receipt lag buckets; a last
/// bucket holds the rest. 1 min, 10 min, 1 h, 6 h, 1 day, 7 days, 30 days.
pub const LAG_BUCKETS_MS: [i64; 7] = [
    60_000,
    600_000,
    3_600_000,
    21_600_000,
    86_400_000,
    604_800_000,
    2_592_000_000,
];

/// Offset of China Standard Time from UTC, seconds: period ends and the
/// default `as_of` are in the stations' local time.
pub const CHINA_UTC_OFFSET_SECS: i32 = 8 * 3600;

/// The hub's current date in China time.
pub fn today_in_china() -> NaiveDate {
    let now = chrono::Utc::now();
    chrono::FixedOffset::east_opt(CHINA_UTC_OFFSET_SECS).map_or_else(
        || now.date_naive(),
        |offset| now.with_timezone(&offset).date_naive(),
    )
}

/// The date an overdue list is asked for: `YYYY-MM-DD`, or today (China
/// time) when empty.
///
/// # Errors
/// The refusal, naming the field, for anything else.
pub fn parse_as_of(text: &str) -> Result<NaiveDate, &'static str> {
    if text.is_empty() {
        return Ok(today_in_china());
    }
    fold::parse_date(text)
        .filter(|_| text.len() == 10)
        .ok_or("as_of: must be a date written YYYY-MM-DD")
}

/// The first instant (ms since the epoch) after `day` ends, China time.
pub fn end_of_day_ms(day: NaiveDate) -> i64 {
    let next = day.succ_opt().unwrap_or(day);
    next.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis() - i64::from(CHINA_UTC_OFFSET_SECS) * 1000)
        .unwrap_or(i64::MAX)
}

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
    /// [`StationHealth::complete_through_ms`].
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

/// Events per lag bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LagBucket {
    /// Inclusive upper bound, ms; `None` for the last bucket.
    pub up_to_ms: Option<i64>,
    /// Events in it.
    pub events: u64,
}

/// One device's sync health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceHealth {
    /// The device log.
    pub origin_id: Uuid,
    /// Its station.
    pub station_code: String,
    /// The name its token was enrolled with, when known.
    pub device_name: Option<String>,
    /// The hub holds its seqs `1..=durable_through`.
    pub durable_through: u64,
    /// Its head at its last `Hello`.
    pub reported_head: u64,
    /// `reported_head − durable_through`, at least 0.
    pub backlog: u64,
    /// Hub clock at its last contact, ms.
    pub last_contact_ms: i64,
    /// Device clock minus hub clock at its last `Hello`, ms.
    pub clock_skew_ms: i64,
    /// Its events in quarantine.
    pub quarantined: u64,
    /// Its events in the log.
    pub events_logged: u64,
    /// recorded_at of its last event in the log, ms.
    pub last_recorded_at_ms: Option<i64>,
    /// Mean entry-to-receipt lag, ms.
    pub mean_lag_ms: Option<i64>,
    /// Largest entry-to-receipt lag, ms.
    pub max_lag_ms: Option<i64>,
    /// Lag histogram over [`LAG_BUCKETS_MS`].
    pub lag: Vec<LagBucket>,
    /// Events recorded after their receipt (device clock ahead).
    pub recorded_after_receipt: u64,
    /// Through when the hub holds all it recorded: its last contact when it
    /// had no backlog, else the recorded_at of its last event in the log.
    pub complete_through_ms: Option<i64>,
}

/// One station's data quality.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StationHealth {
    /// The station.
    pub station_code: String,
    /// Its name (empty when not on the roster).
    pub station_name: String,
    /// Devices that have contacted the hub.
    pub devices: u32,
    /// The earliest of its devices' `complete_through_ms`; `None` when it has
    /// no device or one has nothing to go by.
    pub complete_through_ms: Option<i64>,
    /// Events in quarantine.
    pub quarantined: u64,
    /// Case events waiting for their `CaseOpened`.
    pub held_events: u64,
    /// `EventVoided` events received.
    pub voided_events: u64,
    /// Cases with a flagged tier conflict.
    pub tier_conflicts: u64,
    /// Events in the log.
    pub events_logged: u64,
}

/// Sync health and data quality.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncHealth {
    /// The checkpoint the answer is computed through.
    pub computed_through_hub_seq: u64,
    /// Hub clock when answered, ms.
    pub hub_clock_ms: i64,
    /// Per station, in the order asked.
    pub stations: Vec<StationHealth>,
    /// Per device, by station and origin.
    pub devices: Vec<DeviceHealth>,
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
}

fn station_prefix(prefix: &[u8], station: &str) -> Vec<u8> {
    layout::key(prefix, &[station.as_bytes()])
}

impl Projections {
    fn counter(tree: &sled::Tree, name: &str) -> Result<i64, ProjectionError> {
        match tree.get(layout::key(layout::COUNTERS, &[name.as_bytes()]))? {
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(i64::from_be_bytes)
                .map_err(|_| ProjectionError::Corrupt("counter".into())),
            None => Ok(0),
        }
    }

    fn origin_stats(tree: &sled::Tree) -> Result<BTreeMap<Uuid, OriginStats>, ProjectionError> {
        tree.scan_prefix(layout::ORIGINS)
            .map(|item| {
                let (k, v) = item?;
                let id = Uuid::from_slice(&k[layout::ORIGINS.len()..])
                    .map_err(|_| ProjectionError::Corrupt("origin key".into()))?;
                Ok((id, apply::decode_json("origin", &v)?))
            })
            .collect()
    }

    /// Indicators of `stations` in `period`, by service date, with targets.
    ///
    /// # Errors
    /// Storage errors.
    pub fn indicators(
        &self,
        period: Period,
        stations: &[String],
    ) -> Result<IndicatorTable, ProjectionError> {
        let health = self.sync_health(stations)?;
        let tree = self.read_gate();
        let checkpoint = self.checkpoint();
        let period_end = end_of_day_ms(period.last_day());
        let mut rows = Vec::with_capacity(stations.len());
        for (station, health) in stations.iter().zip(&health.stations) {
            let prefix = layout::key(
                layout::COUNTERS,
                &[format!("i:{station}:{period}:").as_bytes()],
            );
            let mut raw: BTreeMap<String, i64> = BTreeMap::new();
            for item in tree.scan_prefix(&prefix) {
                let (k, v) = item?;
                let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
                let value = <[u8; 8]>::try_from(v.as_ref())
                    .map(i64::from_be_bytes)
                    .map_err(|_| ProjectionError::Corrupt("counter".into()))?;
                raw.insert(name, value);
            }
            let open_prefix = layout::key(layout::COUNTERS, &[format!("o:{station}:").as_bytes()]);
            let last = layout::key(&open_prefix, &[period.last_month().key().as_bytes()]);
            let mut open = 0i64;
            for item in tree.range(open_prefix.clone()..=last) {
                let (_, v) = item?;
                open += <[u8; 8]>::try_from(v.as_ref())
                    .map(i64::from_be_bytes)
                    .map_err(|_| ProjectionError::Corrupt("counter".into()))?;
            }
            raw.insert(Metric::CasesOpen.name().into(), open);
            let values = Metric::ALL
                .into_iter()
                .map(|metric| {
                    let unit = metric.unit();
                    let raw = raw.get(metric.name()).copied().unwrap_or(0);
                    IndicatorValue {
                        metric,
                        label: metric.label(),
                        unit,
                        value: raw as f64 / unit.raw_per_unit() as f64,
                        raw,
                        raw_unit: unit.raw_name(),
                        target: self.config.target(station, metric, period.kind()),
                    }
                })
                .collect();
            let roster = self.config.station(station);
            rows.push(IndicatorRow {
                station_code: station.clone(),
                station_name: roster.map(|s| s.name.clone()).unwrap_or_default(),
                station_name_bo: roster.and_then(|s| s.name_bo.clone()),
                station_kind: roster.map_or("", |s| s.kind.name()),
                values,
                complete_through_ms: health.complete_through_ms,
                complete: health
                    .complete_through_ms
                    .is_some_and(|through| through >= period_end),
            });
        }
        Ok(IndicatorTable {
            computed_through_hub_seq: checkpoint,
            period: period.key(),
            first_day: period.first_day(),
            last_day: period.last_day(),
            rows,
        })
    }

    /// Open cases of `stations` by community × tier × category.
    ///
    /// # Errors
    /// Storage errors.
    pub fn caseload(&self, stations: &[String]) -> Result<Caseload, ProjectionError> {
        let tree = self.read_gate();
        let checkpoint = self.checkpoint();
        let mut totals = Vec::new();
        let mut cells = Vec::new();
        for station in stations {
            let mut by_cell: BTreeMap<(String, i32, i32), u32> = BTreeMap::new();
            let mut total = StationCaseload {
                station_code: station.clone(),
                station_name: self
                    .config
                    .station(station)
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                open_cases: 0,
                high_risk: 0,
                key: 0,
                general: 0,
            };
            layout::for_each_open_case(&tree, station, |bytes| {
                let case = codec::decode_view(bytes)?;
                total.open_cases += 1;
                let by_tier = [&mut total.high_risk, &mut total.key, &mut total.general];
                if let Some(n) = tier_count(case.tier, by_tier) {
                    *n += 1;
                }
                for category in &case.categories {
                    *by_cell
                        .entry((case.community_code.clone(), case.tier, *category))
                        .or_insert(0) += 1;
                }
                Ok(())
            })?;
            totals.push(total);
            for ((community, tier, category), open_cases) in by_cell {
                cells.push(CaseloadCell {
                    station_code: station.clone(),
                    community_name: self
                        .config
                        .community(&community)
                        .map(|c| c.name.clone())
                        .unwrap_or_default(),
                    community_code: community,
                    tier,
                    category,
                    open_cases,
                });
            }
        }
        Ok(Caseload {
            computed_through_hub_seq: checkpoint,
            stations: totals,
            cells,
        })
    }

    /// Open cases of `stations` whose follow-up was due before `as_of`, by
    /// the configured tier intervals: the counts of every one, and the
    /// `limit` most overdue (every one for `None`).
    ///
    /// On a date before today (China time) each case is judged as it stood
    /// at the end of that date: by the entries dated no later, so a visit
    /// made afterwards does not hide it and a case closed since still counts.
    /// That reads every case file; today and later read the open cases'
    /// views alone.
    ///
    /// # Errors
    /// Storage errors.
    pub fn overdue(
        &self,
        as_of: NaiveDate,
        stations: &[String],
        limit: Option<usize>,
    ) -> Result<OverdueList, ProjectionError> {
        let tree = self.read_gate();
        let checkpoint = self.checkpoint();
        let mut judge = Overdue {
            as_of,
            intervals: self.config.intervals(),
            kept: Kept::new(limit),
            counts: stations
                .iter()
                .map(|station| StationOverdue {
                    station_code: station.clone(),
                    ..StationOverdue::default()
                })
                .collect(),
        };
        if as_of < today_in_china() {
            let mut interner = Stations::default();
            layout::for_each_case(&tree, |case_id, bytes| {
                let facts = codec::decode_case(bytes, &mut interner)?;
                if let Some((station, view)) = fold::view_as_of(case_id, &facts, as_of)
                    && let Some(at) = stations.iter().position(|s| **s == *station)
                {
                    judge.case(at, &view, &view.name, &view.community_code);
                }
                Ok(())
            })?;
        } else {
            for (at, station) in stations.iter().enumerate() {
                layout::for_each_open_case(&tree, station, |bytes| {
                    let (view, name, community_code) = codec::decode_view_ref(bytes)?;
                    judge.case(at, &view, name, community_code);
                    Ok(())
                })?;
            }
        }
        Ok(OverdueList {
            computed_through_hub_seq: checkpoint,
            as_of,
            total: judge.counts.iter().map(|c| u64::from(c.overdue)).sum(),
            stations: judge.counts,
            cases: judge.kept.into_sorted(),
        })
    }

    /// Flagged tier conflicts of `stations`.
    ///
    /// # Errors
    /// Storage errors.
    pub fn conflicts(&self, stations: &[String]) -> Result<Conflicts, ProjectionError> {
        let tree = self.read_gate();
        let checkpoint = self.checkpoint();
        let mut conflicts = Vec::new();
        for station in stations {
            for item in tree.scan_prefix(station_prefix(layout::CONFLICTS, station)) {
                let (_, v) = item?;
                conflicts.push(apply::decode_json("conflict", &v)?);
            }
        }
        Ok(Conflicts {
            computed_through_hub_seq: checkpoint,
            conflicts,
        })
    }

    /// Sync health and data quality of `stations` and their devices.
    ///
    /// # Errors
    /// Storage errors.
    pub fn sync_health(&self, stations: &[String]) -> Result<SyncHealth, ProjectionError> {
        let origins = self.store.origins()?;
        let names: BTreeMap<Uuid, String> = self
            .store
            .tokens()?
            .into_iter()
            .filter_map(|t| match t.scope {
                TokenScope::Device {
                    device,
                    bound_origin: Some(origin),
                    ..
                } => Some((origin, device)),
                _ => None,
            })
            .collect();
        let tree = self.read_gate();
        let checkpoint = self.checkpoint();
        let stats = Self::origin_stats(&tree)?;
        let mut rows = Vec::new();
        let mut devices = Vec::new();
        for station in stations {
            let mut row = StationHealth {
                station_code: station.clone(),
                station_name: self
                    .config
                    .station(station)
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                devices: 0,
                complete_through_ms: None,
                quarantined: 0,
                held_events: u64::try_from(Self::counter(
                    &tree,
                    &fold::quality_key(station, Quality::HeldEvents),
                )?)
                .unwrap_or(0),
                voided_events: u64::try_from(Self::counter(
                    &tree,
                    &fold::quality_key(station, Quality::VoidedEvents),
                )?)
                .unwrap_or(0),
                tier_conflicts: u64::try_from(Self::counter(
                    &tree,
                    &fold::quality_key(station, Quality::TierConflicts),
                )?)
                .unwrap_or(0),
                events_logged: 0,
            };
            let mut complete: Option<Option<i64>> = None;
            for (origin, state) in origins.iter().filter(|(_, s)| s.station_code == *station) {
                let stat = stats.get(origin).cloned().unwrap_or_default();
                let backlog = state.reported_head.saturating_sub(state.durable_through);
                let last_recorded = (stat.events > 0).then_some(stat.last_recorded_at_ms);
                let device_complete = if backlog == 0 && state.last_contact_ms > 0 {
                    Some(state.last_contact_ms)
                } else {
                    last_recorded
                };
                complete = Some(match (complete, device_complete) {
                    (None, d) => d,
                    (Some(Some(a)), Some(b)) => Some(a.min(b)),
                    _ => None,
                });
                row.devices += 1;
                row.quarantined += state.quarantined;
                row.events_logged += stat.events;
                let mut lag: Vec<LagBucket> = LAG_BUCKETS_MS
                    .iter()
                    .map(|&up_to| LagBucket {
                        up_to_ms: Some(up_to),
                        events: 0,
                    })
                    .chain([LagBucket {
                        up_to_ms: None,
                        events: 0,
                    }])
                    .collect();
                for (bucket, n) in lag.iter_mut().zip(&stat.lag_buckets) {
                    bucket.events = *n;
                }
                let lag_events = i64::try_from(stat.lag_events).unwrap_or(i64::MAX);
                devices.push(DeviceHealth {
                    origin_id: *origin,
                    station_code: station.clone(),
                    device_name: names.get(origin).cloned(),
                    durable_through: state.durable_through,
                    reported_head: state.reported_head,
                    backlog,
                    last_contact_ms: state.last_contact_ms,
                    clock_skew_ms: state.clock_skew_ms,
                    quarantined: state.quarantined,
                    events_logged: stat.events,
                    last_recorded_at_ms: last_recorded,
                    mean_lag_ms: (lag_events > 0).then(|| stat.lag_sum_ms / lag_events),
                    max_lag_ms: (lag_events > 0).then_some(stat.lag_max_ms),
                    lag,
                    recorded_after_receipt: stat.recorded_after_receipt,
                    complete_through_ms: device_complete,
                });
            }
            row.complete_through_ms = complete.flatten();
            rows.push(row);
        }
        Ok(SyncHealth {
            computed_through_hub_seq: checkpoint,
            hub_clock_ms: chrono::Utc::now().timestamp_millis(),
            stations: rows,
            devices,
        })
    }

    /// Quarantined events of `stations`, newest first, at most `max_events`.
    ///
    /// # Errors
    /// Storage errors.
    pub fn quarantine(
        &self,
        stations: &[String],
        max_events: usize,
    ) -> Result<QuarantineList, ProjectionError> {
        let checkpoint = self.checkpoint();
        let mut events: Vec<QuarantinedEvent> = self
            .store
            .quarantine()?
            .into_iter()
            .filter(|(_, q)| stations.contains(&q.station_code))
            .map(|(origin, q)| QuarantinedEvent {
                origin_id: origin,
                origin_seq: q.origin_seq,
                station_code: q.station_code,
                reason: q.reason,
                received_at_ms: q.received_at_ms,
            })
            .collect();
        let total = events.len() as u64;
        events.sort_by(|a, b| {
            b.received_at_ms
                .cmp(&a.received_at_ms)
                .then(a.origin_id.cmp(&b.origin_id))
                .then(b.origin_seq.cmp(&a.origin_seq))
        });
        events.truncate(max_events);
        Ok(QuarantineList {
            computed_through_hub_seq: checkpoint,
            total,
            events,
        })
    }

    /// The station of a case, if any event of it is known.
    ///
    /// # Errors
    /// Storage errors.
    pub fn case_station(&self, case_id: Uuid) -> Result<Option<String>, ProjectionError> {
        let tree = self.read_gate();
        Ok(Self::case_record(&tree, case_id, &mut Stations::default())?
            .map(|(station, _, _)| station))
    }

    /// A case's station (of its `CaseOpened`, else of its first event),
    /// whether it is opened, and its facts.
    fn case_record(
        tree: &sled::Tree,
        case_id: Uuid,
        stations: &mut Stations,
    ) -> Result<Option<(String, bool, Vec<CaseFact>)>, ProjectionError> {
        let Some(bytes) = layout::case(tree, &case_id)? else {
            return Ok(None);
        };
        let facts = codec::decode_case(&bytes, stations)?;
        let opened = fold::case_station(case_id, &facts);
        let station = opened
            .or_else(|| facts.first().map(|f| &f.station))
            .map(|s| s.to_string())
            .unwrap_or_default();
        Ok(Some((station, opened.is_some(), facts)))
    }

    /// Every event of one case and the voids of them, in (hlc, event_id)
    /// order, voided events flagged.
    ///
    /// # Errors
    /// [`ProjectionError::UnknownCase`] when no event of it is known; storage
    /// errors.
    pub fn case_timeline(&self, case_id: Uuid) -> Result<CaseTimeline, ProjectionError> {
        let tree = self.read_gate();
        let checkpoint = self.checkpoint();
        let mut stations = Stations::default();
        let (station, opened, facts) = Self::case_record(&tree, case_id, &mut stations)?
            .ok_or(ProjectionError::UnknownCase(case_id))?;
        let mut ids: Vec<(Uuid, Option<Uuid>)> = Vec::new();
        for fact in &facts {
            ids.push((fact.id, fact.voided_by));
            if fact.voided_by.is_some()
                && let Some(v) = layout::voids(&tree, &fact.id)?
            {
                let marks = codec::decode_marks(&v, &mut stations)?;
                ids.extend(
                    marks
                        .into_iter()
                        .filter(|m| m.station == fact.station)
                        .map(|m| (m.by, None)),
                );
            }
        }
        let mut entries = Vec::with_capacity(ids.len());
        for (id, voided_by) in ids {
            let Some(hub_seq) = self.store.position_of(id.as_bytes())? else {
                continue;
            };
            let Some(event) = self.store.event_at(hub_seq)? else {
                continue;
            };
            entries.push(TimelineEntry {
                hub_seq,
                received_at_ms: self.store.received_at(hub_seq)?,
                voided: voided_by.is_some(),
                voided_by,
                event_id: id,
                origin_id: Uuid::from_slice(&event.origin_id).ok(),
                origin_seq: event.origin_seq,
                author: event.author.clone(),
                recorded_at_ms: event.recorded_at_ms,
                hlc: event.hlc,
                body: event
                    .body
                    .as_ref()
                    .map(station_proto::json::body_to_json)
                    .unwrap_or_default(),
                event,
            });
        }
        entries.sort_by_key(|e| (e.hlc, e.event_id));
        entries.dedup_by_key(|e| e.event_id);
        Ok(CaseTimeline {
            computed_through_hub_seq: checkpoint,
            case_id,
            station_code: station,
            opened,
            entries,
        })
    }
}

/// The one of a station's high-risk, key and general counts that `tier`
/// adds to.
fn tier_count(tier: i32, [high_risk, key, general]: [&mut u32; 3]) -> Option<&mut u32> {
    match Tier::try_from(tier) {
        Ok(Tier::HighRisk) => Some(high_risk),
        Ok(Tier::Key) => Some(key),
        Ok(Tier::General) => Some(general),
        _ => None,
    }
}

/// An overdue list being drawn up: each case offered is counted and kept
/// when it is overdue.
struct Overdue {
    as_of: NaiveDate,
    intervals: TierIntervals,
    kept: Kept,
    /// Per station asked about, in the order asked.
    counts: Vec<StationOverdue>,
}

impl Overdue {
    /// Judges `case`, of the station at `at` in the counts, by its state.
    fn case(&mut self, at: usize, case: &CaseView, name: &str, community_code: &str) {
        let (Some(due_on), Some(interval_days)) = (
            case.next_due(&self.intervals),
            self.intervals.days(case.tier),
        ) else {
            return;
        };
        let days_overdue = (self.as_of - due_on).num_days();
        let Some(count) = self.counts.get_mut(at).filter(|_| days_overdue >= 1) else {
            return;
        };
        count.overdue += 1;
        let by_tier = [&mut count.high_risk, &mut count.key, &mut count.general];
        if let Some(n) = tier_count(case.tier, by_tier) {
            *n += 1;
        }
        let station = &count.station_code;
        self.kept
            .offer(days_overdue, station, case.case_id, || OverdueCase {
                station_code: station.clone(),
                case_id: case.case_id,
                follow_up_base: case.follow_up_base(),
                name: name.to_owned(),
                community_code: community_code.to_owned(),
                tier: case.tier,
                last_visit: case.last_visit,
                due_on,
                days_overdue,
                interval_days,
            });
    }
}

/// The place of an overdue case in the list: most overdue first, then by
/// station and case id.
type Rank<'a> = (Reverse<i64>, &'a str, Uuid);

fn rank(case: &OverdueCase) -> Rank<'_> {
    (Reverse(case.days_overdue), &case.station_code, case.case_id)
}

/// An overdue case kept by [`Kept`], ordered by its rank.
struct Ranked(OverdueCase);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        rank(&self.0) == rank(&other.0)
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        rank(&self.0).cmp(&rank(&other.0))
    }
}

/// The overdue cases kept while scanning: every one, or the `limit` first
/// by rank, whose place is known before the case is built.
struct Kept {
    limit: Option<usize>,
    /// With a limit: the cases kept so far, the last by rank on top.
    heap: BinaryHeap<Ranked>,
}

impl Kept {
    fn new(limit: Option<usize>) -> Self {
        Self {
            limit,
            heap: BinaryHeap::new(),
        }
    }

    /// Keeps the case that `build` makes if its rank earns it a place.
    fn offer(
        &mut self,
        days_overdue: i64,
        station: &str,
        case_id: Uuid,
        build: impl FnOnce() -> OverdueCase,
    ) {
        match self.limit {
            Some(0) => {}
            Some(limit) if self.heap.len() >= limit => {
                let earns_place = self
                    .heap
                    .peek()
                    .is_some_and(|last| (Reverse(days_overdue), station, case_id) < rank(&last.0));
                if earns_place {
                    self.heap.pop();
                    self.heap.push(Ranked(build()));
                }
            }
            _ => self.heap.push(Ranked(build())),
        }
    }

    /// The cases kept, first by rank first.
    fn into_sorted(self) -> Vec<OverdueCase> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| r.0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn case(days_overdue: i64, station: u8, id: u8) -> OverdueCase {
        let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
        OverdueCase {
            station_code: format!("54050200{station}"),
            case_id: Uuid::from_u128(u128::from(id)),
            name: String::new(),
            community_code: String::new(),
            tier: 1,
            last_visit: None,
            follow_up_base: day,
            due_on: day,
            days_overdue,
            interval_days: 7,
        }
    }

    proptest! {
        /// The cases kept under a limit are the first of the whole list
        /// sorted by rank, in that order.
        #[test]
        fn a_limit_keeps_the_first_cases_by_rank(
            cases in proptest::collection::vec((1i64..40, 0u8..3, 0u8..=255), 0..120),
            limit in 0usize..130,
        ) {
            let cases: Vec<OverdueCase> = cases.into_iter().map(|(d, s, i)| case(d, s, i)).collect();
            let mut all = Kept::new(None);
            let mut first = Kept::new(Some(limit));
            for c in &cases {
                all.offer(c.days_overdue, &c.station_code, c.case_id, || c.clone());
                first.offer(c.days_overdue, &c.station_code, c.case_id, || c.clone());
            }
            let mut expected = cases.clone();
            expected.sort_by(|a, b| rank(a).cmp(&rank(b)));
            prop_assert_eq!(all.into_sorted(), expected.clone());
            expected.truncate(limit);
            prop_assert_eq!(first.into_sorted(), expected);
        }
    }
}
