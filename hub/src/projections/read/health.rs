//! Sync health and data quality of stations and their devices.
//!
//! Invariant: the answer's `hub_clock_ms`, against which last contact, lag
//! and staleness are read, is the projections' clock
//! ([`Projections::now_ms`]), the one the Sync service stamps receipts and
//! last contact with, never the system clock behind its back.

use std::collections::BTreeMap;

use station_proto::ids::Uuid;

use super::{counter, origin_stats};
use crate::projections::Projections;
use crate::projections::error::ProjectionError;
use crate::projections::fold::{self, Quality};
use crate::projections::health::{DeviceHealth, StationHealth, SyncHealth, WipeStatus};
use crate::store::TokenScope;

impl Projections {
    /// Sync health and data quality of `stations` and their devices.
    ///
    /// # Errors
    /// Storage errors.
    pub fn sync_health(&self, stations: &[String]) -> Result<SyncHealth, ProjectionError> {
        let origins = self.store().origins()?;
        let tokens = self.store().tokens()?;
        let wipes: BTreeMap<Uuid, WipeStatus> = tokens
            .iter()
            .filter_map(|t| match (&t.scope, &t.wipe) {
                (
                    TokenScope::Device {
                        bound_origin: Some(origin),
                        ..
                    },
                    Some(wipe),
                ) => Some((
                    *origin,
                    match wipe.wiped_at_ms {
                        Some(_) => WipeStatus::Wiped,
                        None => WipeStatus::Pending,
                    },
                )),
                _ => None,
            })
            .collect();
        let names: BTreeMap<Uuid, String> = tokens
            .iter()
            .filter_map(|t| match &t.scope {
                TokenScope::Device {
                    device: name,
                    bound_origin: Some(origin),
                    ..
                }
                | TokenScope::Relay {
                    relay: name,
                    bound_origin: Some(origin),
                    ..
                }
                | TokenScope::Supervisor {
                    supervisor: name,
                    bound_origin: Some(origin),
                    ..
                } => Some((*origin, name.clone())),
                _ => None,
            })
            .collect();
        let relays: BTreeMap<&str, &str> = tokens
            .iter()
            .filter_map(|t| match &t.scope {
                TokenScope::Relay { relay, .. } => Some((t.token_id.as_str(), relay.as_str())),
                _ => None,
            })
            .collect();
        let tree = self.read_gate();
        let checkpoint = self.checkpoint();
        let stats = origin_stats(&tree)?;
        let mut rows = Vec::new();
        let mut devices = Vec::new();
        for station in stations {
            let mut row = StationHealth {
                station_code: station.clone(),
                station_name: self
                    .config()
                    .station(station)
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                devices: 0,
                complete_through_ms: None,
                quarantined: 0,
                held_events: u64::try_from(counter(
                    &tree,
                    &fold::quality_key(station, Quality::HeldEvents),
                )?)
                .unwrap_or(0),
                voided_events: u64::try_from(counter(
                    &tree,
                    &fold::quality_key(station, Quality::VoidedEvents),
                )?)
                .unwrap_or(0),
                tier_conflicts: u64::try_from(counter(
                    &tree,
                    &fold::quality_key(station, Quality::TierConflicts),
                )?)
                .unwrap_or(0),
                duplicate_files: u64::try_from(counter(
                    &tree,
                    &fold::quality_key(station, Quality::DuplicateFiles),
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
                let lag = stat.lag_histogram();
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
                    conflicts: state.conflicts,
                    events_logged: stat.events,
                    last_recorded_at_ms: last_recorded,
                    mean_lag_ms: (lag_events > 0).then(|| stat.lag_sum_ms / lag_events),
                    max_lag_ms: (lag_events > 0).then_some(stat.lag_max_ms),
                    lag,
                    recorded_after_receipt: stat.recorded_after_receipt,
                    complete_through_ms: device_complete,
                    via_relay: state
                        .via_relay
                        .as_deref()
                        .map(|id| relays.get(id).copied().unwrap_or(id).to_string()),
                    relayed_events: state.relayed_events,
                    last_relayed_ms: (state.last_relayed_ms > 0).then_some(state.last_relayed_ms),
                    wipe: wipes.get(origin).copied(),
                });
            }
            row.complete_through_ms = complete.flatten();
            rows.push(row);
        }
        Ok(SyncHealth {
            computed_through_hub_seq: checkpoint,
            hub_clock_ms: self.now_ms(),
            stations: rows,
            devices,
        })
    }
}
