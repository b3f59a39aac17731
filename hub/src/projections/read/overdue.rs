//! Overdue follow-ups: open cases whose last visit is older than their
//! tier's interval, on a date; the most overdue first.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use chrono::NaiveDate;
use station_proto::case::{CaseView, TierIntervals};
use station_proto::ids::Uuid;

use station_proto::mask::DEIDENTIFIED;

use super::{deidentified, tier_count};
use crate::projections::Projections;
use crate::projections::answer::{OverdueCase, OverdueList, StationOverdue};
use crate::projections::codec;
use crate::projections::error::ProjectionError;
use crate::projections::fold::{self, Stations};
use crate::projections::layout;
use crate::projections::time::today_in_china;

impl Projections {
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
            intervals: self.config().intervals(),
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
            let deidentify = self.config().privacy.closed_retention_days.is_some();
            let mut interner = Stations::default();
            layout::for_each_case(&tree, &self.records, |case_id, bytes| {
                let facts = codec::decode_case(bytes, &mut interner)?;
                if let Some((station, view)) = fold::view_as_of(case_id, &facts, as_of)
                    && let Some(at) = stations.iter().position(|s| **s == *station)
                {
                    // Open then, it may have been closed since, and long enough
                    // ago to be de-identified.
                    let name = if deidentify
                        && deidentified(self.config(), fold::closed_on(case_id, &facts))
                    {
                        DEIDENTIFIED
                    } else {
                        &view.name
                    };
                    judge.case(at, &view, name, &view.community_code);
                }
                Ok(())
            })?;
        } else {
            for (at, station) in stations.iter().enumerate() {
                layout::for_each_open_case(&tree, &self.records, station, |bytes| {
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
                file_number: case.file_number.clone(),
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
            file_number: String::new(),
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
