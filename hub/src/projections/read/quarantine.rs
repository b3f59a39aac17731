//! Quarantined events of stations: acknowledged, not accepted, with the
//! reason; never their content.

use crate::projections::Projections;
use crate::projections::answer::{QuarantineList, QuarantinedEvent};
use crate::projections::error::ProjectionError;

impl Projections {
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
            .store()
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
}
