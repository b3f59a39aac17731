//! The review queue: each station's review requests and where they stand,
//! with the age of each on the day asked about.

use chrono::NaiveDate;
use station_proto::review::ReviewState;

use super::station_prefix;
use crate::projections::Projections;
use crate::projections::answer::{ReviewQueue, ReviewRow};
use crate::projections::codec;
use crate::projections::error::ProjectionError;
use crate::projections::layout;

impl Projections {
    /// The review requests of `stations` as of `as_of`: those waiting for a
    /// supervisor and those returned and not yet resubmitted, or with `all`
    /// every request; by station in the order given, oldest request first.
    ///
    /// # Errors
    /// Storage errors.
    pub fn reviews(
        &self,
        stations: &[String],
        as_of: NaiveDate,
        all: bool,
    ) -> Result<ReviewQueue, ProjectionError> {
        let tree = self.read_gate();
        let checkpoint = self.checkpoint();
        let mut reviews = Vec::new();
        let (mut pending, mut stale) = (0u64, 0u64);
        for station in stations {
            let mut rows: Vec<ReviewRow> = Vec::new();
            for item in tree.scan_prefix(station_prefix(layout::REVIEWS, station)) {
                let (k, v) = item?;
                let v = layout::open_record(&self.records, &k, &v)?;
                let case_rows: Vec<ReviewRow> = codec::decode_json("review rows", &v)?;
                for mut row in case_rows {
                    let live = row.superseded_by.is_none() && row.state != ReviewState::Approved;
                    if !(all || live) {
                        continue;
                    }
                    if row.is_pending() {
                        pending += 1;
                    }
                    if row.stale {
                        stale += 1;
                    }
                    row.age_days = row
                        .requested_on
                        .map_or(0, |on| (as_of - on).num_days().max(0));
                    rows.push(row);
                }
            }
            rows.sort_by(|a, b| {
                a.requested_on
                    .cmp(&b.requested_on)
                    .then(a.request_id.cmp(&b.request_id))
            });
            reviews.extend(rows);
        }
        Ok(ReviewQueue {
            computed_through_hub_seq: checkpoint,
            as_of,
            pending,
            stale,
            policy: self.config().review,
            reviews,
        })
    }
}
