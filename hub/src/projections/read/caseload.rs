//! Open cases by station × community × tier × category.

use std::collections::BTreeMap;

use super::tier_count;
use crate::projections::Projections;
use crate::projections::answer::{Caseload, CaseloadCell, StationCaseload};
use crate::projections::codec;
use crate::projections::error::ProjectionError;
use crate::projections::layout;

impl Projections {
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
                    .config()
                    .station(station)
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
                open_cases: 0,
                high_risk: 0,
                key: 0,
                general: 0,
            };
            layout::for_each_open_case(&tree, &self.records, station, |bytes| {
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
                        .config()
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
}
