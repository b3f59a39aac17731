//! Duplicate files: files opened while an earlier file of the same person
//! at the same station was open (two offline phones), found through the
//! person records (`p:`), without the ID number.

use std::collections::BTreeMap;

use station_proto::ids::Uuid;

use super::station_prefix;
use crate::projections::Projections;
use crate::projections::answer::{DuplicateFile, DuplicateFiles};
use crate::projections::codec;
use crate::projections::error::ProjectionError;
use crate::projections::fold::{self, CaseFact, Stations};
use crate::projections::layout;

impl Projections {
    /// The duplicate files of `stations`, by station then case id: each
    /// with the earlier file of the person it duplicates (see
    /// the fold's `duplicate_of`).
    ///
    /// # Errors
    /// Storage errors.
    pub fn duplicates(&self, stations: &[String]) -> Result<DuplicateFiles, ProjectionError> {
        let tree = self.read_gate();
        let checkpoint = self.checkpoint();
        let mut interner = Stations::default();
        let mut files = Vec::new();
        for station in stations {
            let mut found = Vec::new();
            for item in tree.scan_prefix(station_prefix(layout::PERSONS, station)) {
                let (_, v) = item?;
                let ids = codec::decode_ids(&v)?;
                if ids.len() < 2 {
                    continue;
                }
                let mut person: BTreeMap<Uuid, Vec<CaseFact>> = BTreeMap::new();
                for id in ids {
                    if let Some(bytes) = layout::case(&tree, &self.records, &id)? {
                        person.insert(id, codec::decode_case(&bytes, &mut interner)?);
                    }
                }
                for (case_id, facts) in &person {
                    let Some(of) = fold::duplicate_of(
                        *case_id,
                        facts,
                        person.iter().map(|(id, f)| (*id, f.as_slice())),
                    ) else {
                        continue;
                    };
                    let opening = fold::live_opening(*case_id, facts);
                    let earlier = person.get(&of).and_then(|f| fold::live_opening(of, f));
                    let (Some((_, opened_on, _)), Some((_, earlier_on, _))) = (opening, earlier)
                    else {
                        continue;
                    };
                    let (community_code, file_number) =
                        fold::community_and_number_of(*case_id, facts).unwrap_or_default();
                    let duplicate_of_file_number = person
                        .get(&of)
                        .and_then(|f| fold::community_and_number_of(of, f))
                        .map(|(_, number)| number)
                        .unwrap_or_default();
                    found.push(DuplicateFile {
                        station_code: station.clone(),
                        case_id: *case_id,
                        file_number,
                        community_code,
                        opened_on,
                        duplicate_of: of,
                        duplicate_of_opened_on: earlier_on,
                        duplicate_of_file_number,
                    });
                }
            }
            found.sort_by_key(|f| f.case_id);
            files.extend(found);
        }
        Ok(DuplicateFiles {
            computed_through_hub_seq: checkpoint,
            files,
        })
    }
}
