//! Indicators of stations in a period, against their targets, each row
//! saying through when its station's data is complete.

use std::collections::BTreeMap;

use crate::projections::Projections;
use crate::projections::answer::{IndicatorRow, IndicatorTable, IndicatorValue};
use crate::projections::error::ProjectionError;
use crate::projections::layout;
use crate::projections::period::{Metric, Period};
use crate::projections::time::end_of_day_ms;

impl Projections {
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
            // Closures count once a review approved them, when so configured.
            let approved = raw
                .remove(crate::projections::fold::APPROVED_CLOSINGS)
                .unwrap_or(0);
            if self.config().review.count_closures_when_approved {
                raw.insert(Metric::CasesClosed.name().into(), approved);
            }
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
                        target: self.config().target(station, metric, period.kind()),
                    }
                })
                .collect();
            let roster = self.config().station(station);
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
}
