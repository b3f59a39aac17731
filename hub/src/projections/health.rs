//! Sync health and data quality: what the bureau reads of each device and
//! station (last contact, backlog, entry-to-receipt lag, clock skew,
//! quarantine), and the per-device statistics the projections keep for it.
//!
//! Invariants: every statistic is a sum or a maximum over the events the log
//! holds, so the order they arrived in does not change it; lag is measured
//! from the device clock at entry to the hub clock at receipt.

use serde::{Deserialize, Serialize};
use station_proto::ids::Uuid;

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

/// Per-device statistics of the events the log holds; every field is a sum
/// or a maximum, so arrival order does not change it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OriginStats {
    /// The device's station (of its events).
    pub station: String,
    /// Events of the device in the log.
    pub events: u64,
    /// The highest origin_seq in the log.
    pub last_seq: u64,
    /// recorded_at of the event at `last_seq`.
    pub last_recorded_at_ms: i64,
    /// Events with a receive time (those received before it was kept have none).
    pub lag_events: u64,
    /// Sum of (received − recorded) over them, ms.
    pub lag_sum_ms: i64,
    /// Largest lag, ms.
    pub lag_max_ms: i64,
    /// Events per lag bucket ([`LAG_BUCKETS_MS`], then the rest).
    pub lag_buckets: Vec<u64>,
    /// Events recorded (by the device clock) after the hub received them.
    pub recorded_after_receipt: u64,
}

impl OriginStats {
    /// Adds one event of the device: of `station`, at `seq`, recorded at
    /// `recorded_at_ms` by the device clock and received at `received_at_ms`
    /// by the hub's (`None` when not kept).
    pub(crate) fn observe(
        &mut self,
        station: &str,
        seq: u64,
        recorded_at_ms: i64,
        received_at_ms: Option<i64>,
    ) {
        if self.station.is_empty() {
            self.station = station.to_string();
        }
        self.events += 1;
        if seq > self.last_seq {
            self.last_seq = seq;
            self.last_recorded_at_ms = recorded_at_ms;
        }
        if let Some(received) = received_at_ms {
            let lag = received.saturating_sub(recorded_at_ms);
            self.lag_events += 1;
            self.lag_sum_ms = self.lag_sum_ms.saturating_add(lag);
            self.lag_max_ms = self.lag_max_ms.max(lag);
            if lag < 0 {
                self.recorded_after_receipt += 1;
            }
            self.lag_buckets.resize(LAG_BUCKETS_MS.len() + 1, 0);
            let bucket = LAG_BUCKETS_MS
                .iter()
                .position(|&up_to| lag <= up_to)
                .unwrap_or(LAG_BUCKETS_MS.len());
            self.lag_buckets[bucket] += 1;
        }
    }

    /// The lag histogram: one bucket per [`LAG_BUCKETS_MS`] bound, then the rest.
    pub(crate) fn lag_histogram(&self) -> Vec<LagBucket> {
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
        for (bucket, n) in lag.iter_mut().zip(&self.lag_buckets) {
            bucket.events = *n;
        }
        lag
    }
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
    /// Its pushes refused as conflicts: another event at a seq the hub holds.
    pub conflicts: u64,
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
    /// The name of the station relay that carried its last new entries;
    /// `None` when it pushed them itself (direct).
    pub via_relay: Option<String>,
    /// How many of its entries station relays carried.
    pub relayed_events: u64,
    /// Hub clock of the last push a relay carried for it, ms.
    pub last_relayed_ms: Option<i64>,
    /// Whether the device was ordered wiped (`station-hub revoke --wipe`),
    /// and whether it said it is; `None` when no wipe was ordered.
    pub wipe: Option<WipeStatus>,
}

/// A lost device's wipe, as the bureau sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WipeStatus {
    /// Ordered: the device uploads its backlog and destroys its keys at its
    /// next contact.
    Pending,
    /// The device said it destroyed its keys; its token is revoked.
    Wiped,
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
    /// Duplicate files: opened while the same person's earlier file at the
    /// station was open; not counted as files nor in the caseload.
    pub duplicate_files: u64,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_do_not_depend_on_the_order_events_arrive_in() {
        let events = [
            (3, 1_000, Some(31_000)),
            (1, 2_000, Some(2_000 + 700_000)),
            (2, 5_000, None),
            (4, 9_000, Some(8_000)),
            (5, 10_000, Some(10_000 + 40 * 86_400_000)),
        ];
        let mut forward = OriginStats::default();
        let mut backward = OriginStats::default();
        for (seq, recorded, received) in events {
            forward.observe("540502001", seq, recorded, received);
        }
        for (seq, recorded, received) in events.into_iter().rev() {
            backward.observe("540502001", seq, recorded, received);
        }
        assert_eq!(forward, backward);
        assert_eq!(forward.events, 5);
        assert_eq!((forward.last_seq, forward.last_recorded_at_ms), (5, 10_000));
        assert_eq!(forward.lag_events, 4);
        assert_eq!(forward.recorded_after_receipt, 1);
        assert_eq!(forward.lag_max_ms, 40 * 86_400_000);
        let histogram: Vec<u64> = forward.lag_histogram().iter().map(|b| b.events).collect();
        // -1 s and 30 s, 700 s, then one past 30 days.
        assert_eq!(histogram, [2, 0, 1, 0, 0, 0, 0, 1]);
        assert_eq!(
            forward.lag_histogram().last().map(|b| b.up_to_ms),
            Some(None)
        );
    }
}
