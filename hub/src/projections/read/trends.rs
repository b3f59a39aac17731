//! Trends: the last twelve months of each station's indicators against
//! their targets, and of its overdue follow-ups and open cases, month by
//! month; with the district's sums.

use chrono::{Datelike as _, Months, NaiveDate};
use serde::Serialize;

use crate::projections::Projections;
use crate::projections::error::ProjectionError;
use crate::projections::period::{Metric, Period};

/// How many months a trend covers.
pub const TREND_MONTHS: usize = 12;

/// One indicator month by month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricTrend {
    /// Which indicator.
    pub metric: Metric,
    /// Its Chinese label.
    pub label: &'static str,
    /// The value of each month (in the indicator's unit), oldest first.
    pub values: Vec<f64>,
    /// The exact value of each month in raw units (count, minute, fen).
    pub raw: Vec<i64>,
    /// The monthly target, in the indicator's unit (the sum of the
    /// stations' for the district), when set.
    pub target: Option<i64>,
}

/// One station's (or the district's) trends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StationTrend {
    /// The station, or `district` for the sums.
    pub station_code: String,
    /// Its name.
    pub station_name: String,
    /// Every indicator, in report order.
    pub metrics: Vec<MetricTrend>,
    /// Open cases overdue for a follow-up at the end of each month (or
    /// today, for the running month).
    pub overdue: Vec<u64>,
    /// Open cases at the end of each month (the caseload).
    pub open_cases: Vec<i64>,
}

/// The trends of some stations and of their sum.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trends {
    /// The checkpoint the answer is computed through.
    pub computed_through_hub_seq: u64,
    /// The months covered, `YYYY-MM`, oldest first.
    pub months: Vec<String>,
    /// Per station, in the order asked.
    pub stations: Vec<StationTrend>,
    /// The stations' sums.
    pub district: StationTrend,
}

impl Projections {
    /// The [`TREND_MONTHS`] months ending with the month of `through`, for
    /// `stations`: each indicator against its monthly target, overdue
    /// follow-ups and open cases at each month's end (`today` for the
    /// running month).
    ///
    /// # Errors
    /// Storage errors.
    pub fn trends(
        &self,
        stations: &[String],
        through: NaiveDate,
        today: NaiveDate,
    ) -> Result<Trends, ProjectionError> {
        let last = NaiveDate::from_ymd_opt(through.year(), through.month(), 1).unwrap_or(through);
        let firsts: Vec<NaiveDate> = (0..TREND_MONTHS)
            .rev()
            .filter_map(|back| last.checked_sub_months(Months::new(back as u32)))
            .collect();
        let empty = |code: &str, name: &str| StationTrend {
            station_code: code.to_string(),
            station_name: name.to_string(),
            metrics: Metric::ALL
                .into_iter()
                .map(|metric| MetricTrend {
                    metric,
                    label: metric.label(),
                    values: Vec::new(),
                    raw: Vec::new(),
                    target: None,
                })
                .collect(),
            overdue: Vec::new(),
            open_cases: Vec::new(),
        };
        let mut rows: Vec<StationTrend> = stations
            .iter()
            .map(|code| empty(code, self.config().station_name(code)))
            .collect();
        let mut district = empty("district", &self.config().district.name);
        let mut months = Vec::with_capacity(firsts.len());
        let mut checkpoint = self.checkpoint();
        for first in &firsts {
            let [month, ..] = Period::of_date(*first);
            months.push(month.key());
            let table = self.indicators(month, stations)?;
            checkpoint = checkpoint.min(table.computed_through_hub_seq);
            let as_of = month.last_day().min(today);
            let overdue = self.overdue(as_of, stations, Some(0))?;
            let mut sums = vec![(0f64, 0i64, None::<i64>); Metric::ALL.len()];
            for ((row, trend), count) in table.rows.iter().zip(&mut rows).zip(&overdue.stations) {
                for ((value, metric), sum) in
                    row.values.iter().zip(&mut trend.metrics).zip(&mut sums)
                {
                    metric.values.push(value.value);
                    metric.raw.push(value.raw);
                    metric.target = value.target;
                    sum.0 += value.value;
                    sum.1 += value.raw;
                    if let Some(target) = value.target {
                        sum.2 = Some(sum.2.unwrap_or(0) + target);
                    }
                    if value.metric == Metric::CasesOpen {
                        trend.open_cases.push(value.raw);
                    }
                }
                trend.overdue.push(u64::from(count.overdue));
            }
            for (metric, (value, raw, target)) in district.metrics.iter_mut().zip(sums) {
                metric.values.push(value);
                metric.raw.push(raw);
                metric.target = target;
                if metric.metric == Metric::CasesOpen {
                    district.open_cases.push(raw);
                }
            }
            district.overdue.push(overdue.total);
        }
        Ok(Trends {
            computed_through_hub_seq: checkpoint,
            months,
            stations: rows,
            district,
        })
    }
}
