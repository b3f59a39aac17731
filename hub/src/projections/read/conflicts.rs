//! Flagged tier conflicts: concurrent tier changes of one case.

use super::station_prefix;
use crate::projections::Projections;
use crate::projections::answer::Conflicts;
use crate::projections::codec;
use crate::projections::error::ProjectionError;
use crate::projections::layout;

impl Projections {
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
                conflicts.push(codec::decode_json("conflict", &v)?);
            }
        }
        Ok(Conflicts {
            computed_through_hub_seq: checkpoint,
            conflicts,
        })
    }
}
