//! The read API over the projections, one module per answer: indicators,
//! caseload, overdue follow-ups, tier conflicts, duplicate files, sync
//! health, quarantine, the review queue and case timelines. Each reads the tree under the projections' read gate and
//! joins in the configuration and the log; the answers are in
//! [`super::answer`] and [`super::health`].
//!
//! Invariants: every answer is read under the read gate and carries the
//! checkpoint it was computed through; aggregate answers never carry ID
//! numbers (the projections do not even keep them: only the case timeline
//! reads whole events from the log); station lists are taken as given, so
//! authorisation happens before these calls; a case closed longer than
//! `[privacy] closed_retention_days` is named [`station_proto::mask::DEIDENTIFIED`]
//! in every list, and its timeline says it is de-identified.

mod caseload;
mod conflicts;
mod directory;
mod duplicates;
mod health;
mod indicators;
mod overdue;
mod quarantine;
mod reviews;
mod timeline;
mod transfers;
mod trends;

pub use directory::{DirectoryChange, DirectoryDelta};
pub use transfers::{PendingTransfer, PendingTransfers};
pub use trends::{MetricTrend, StationTrend, TREND_MONTHS, Trends};

use std::collections::BTreeMap;

use chrono::NaiveDate;
use station_proto::ids::Uuid;
use station_proto::v1::Tier;

use super::codec;
use super::error::ProjectionError;
use super::fold::{self, CaseFact, Stations};
use super::health::OriginStats;
use super::layout;
use super::time::today_in_china;
use crate::config::HubConfig;

/// Files as the merge rule reads them ([`fold::MergeGraph`]): some files,
/// the files holding merges naming them, and those holding merges naming
/// these, read from the tree.
#[derive(Default)]
struct LinkedFiles {
    facts: BTreeMap<Uuid, Vec<CaseFact>>,
    claimants: BTreeMap<Uuid, Vec<Uuid>>,
}

impl LinkedFiles {
    /// Reads `ids` and the files merges link to them, two links deep (as
    /// far as [`fold::survivor`] of one of them reads).
    fn load(
        tree: &sled::Tree,
        records: &station_agent::seal::SealedTree,
        ids: &[Uuid],
        interner: &mut Stations,
    ) -> Result<Self, ProjectionError> {
        let mut linked = Self::default();
        let mut todo: Vec<(Uuid, u8)> = ids.iter().map(|id| (*id, 0)).collect();
        while let Some((id, depth)) = todo.pop() {
            if linked.facts.contains_key(&id) {
                continue;
            }
            let facts = match layout::case(tree, records, &id)? {
                Some(bytes) => codec::decode_case(&bytes, interner)?,
                None => Vec::new(),
            };
            let claimants = match tree.get(layout::key(layout::MERGES, &[id.as_bytes()]))? {
                Some(v) => codec::decode_ids(&v)?,
                None => Vec::new(),
            };
            if depth < 2 {
                todo.extend(claimants.iter().map(|c| (*c, depth + 1)));
            }
            linked.facts.insert(id, facts);
            linked.claimants.insert(id, claimants);
        }
        Ok(linked)
    }
}

impl fold::MergeGraph for LinkedFiles {
    fn facts(&self, case_id: Uuid) -> &[CaseFact] {
        self.facts.get(&case_id).map_or(&[], Vec::as_slice)
    }

    fn claimants(&self, case_id: Uuid) -> &[Uuid] {
        self.claimants.get(&case_id).map_or(&[], Vec::as_slice)
    }
}

/// Whether a case closed on `closed_on` (`None`: open) is de-identified
/// today: closed at least `[privacy] closed_retention_days` days ago.
fn deidentified(config: &HubConfig, closed_on: Option<NaiveDate>) -> bool {
    match (config.privacy.closed_retention_days, closed_on) {
        (Some(days), Some(on)) => (today_in_china() - on).num_days() >= i64::from(days),
        _ => false,
    }
}

fn station_prefix(prefix: &[u8], station: &str) -> Vec<u8> {
    layout::key(prefix, &[station.as_bytes()])
}

/// The value of the counter `name`; 0 when absent.
fn counter(tree: &sled::Tree, name: &str) -> Result<i64, ProjectionError> {
    match tree.get(layout::key(layout::COUNTERS, &[name.as_bytes()]))? {
        Some(v) => <[u8; 8]>::try_from(v.as_ref())
            .map(i64::from_be_bytes)
            .map_err(|_| ProjectionError::Corrupt("counter".into())),
        None => Ok(0),
    }
}

/// The statistics of every device, by origin.
fn origin_stats(tree: &sled::Tree) -> Result<BTreeMap<Uuid, OriginStats>, ProjectionError> {
    tree.scan_prefix(layout::ORIGINS)
        .map(|item| {
            let (k, v) = item?;
            let id = Uuid::from_slice(&k[layout::ORIGINS.len()..])
                .map_err(|_| ProjectionError::Corrupt("origin key".into()))?;
            Ok((id, codec::decode_json("origin", &v)?))
        })
        .collect()
}

/// A case's station (holding it: of its `CaseOpened` unless transferred,
/// else of its first event),
/// whether it is opened, and its facts.
fn case_record(
    tree: &sled::Tree,
    records: &station_agent::seal::SealedTree,
    case_id: Uuid,
    stations: &mut Stations,
) -> Result<Option<(String, bool, Vec<CaseFact>)>, ProjectionError> {
    let Some(bytes) = layout::case(tree, records, &case_id)? else {
        return Ok(None);
    };
    let facts = codec::decode_case(&bytes, stations)?;
    let opened = fold::case_station(case_id, &facts);
    let station = opened
        .as_ref()
        .or_else(|| facts.first().map(|f| &f.station))
        .map(|s| s.to_string())
        .unwrap_or_default();
    Ok(Some((station, opened.is_some(), facts)))
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
