//! Duplicate files: files opened while an earlier file of the same person
//! at the same station was open (two offline phones), found through the
//! person records (`p:`), without the ID number; still flagged, or resolved
//! by a merge (the files a merge links are found through `j:`) or a
//! dismissal.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use station_proto::ids::Uuid;

use super::{LinkedFiles, station_prefix};
use crate::audit::{Access, Channel};
use crate::auth::Caller;
use crate::projections::Projections;
use crate::projections::answer::{DuplicateFile, DuplicateFiles, DuplicateResolution};
use crate::projections::codec;
use crate::projections::error::ProjectionError;
use crate::projections::fold::{self, CaseFact, FactBody, MergeGraph as _, Stations};
use crate::projections::layout;

impl Projections {
    /// [`Projections::duplicates`] as `caller` reads it over `via` from
    /// `from`: the list names which files are one person's, so the read is
    /// recorded in the read audit, under every file listed, before it is
    /// answered. `stations` are those the caller may read.
    ///
    /// # Errors
    /// [`ProjectionError::Audit`] when the read cannot be recorded;
    /// storage errors.
    pub fn read_duplicates(
        &self,
        caller: Caller,
        stations: &[String],
        from: Option<SocketAddr>,
        via: Channel,
    ) -> Result<DuplicateFiles, ProjectionError> {
        let list = self.duplicates(stations)?;
        self.audit_read(Access {
            caller,
            from,
            via,
            read: "duplicates".into(),
            params: vec![("stations".into(), stations.join(","))],
            cases: list.case_ids(),
            revealed: false,
        })?;
        Ok(list)
    }

    /// The duplicate files of `stations`, by station then case id: each
    /// with the earlier file of the person it duplicates (see the fold's
    /// `duplicate_of`, dismissals and merges left aside), and whether the
    /// pair is still flagged, merged or dismissed.
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
                let linked = LinkedFiles::load(&tree, &self.records, &ids, &mut interner)?;
                let person: BTreeMap<Uuid, &[CaseFact]> =
                    ids.iter().map(|id| (*id, linked.facts(*id))).collect();
                for (case_id, facts) in &person {
                    let facts: &[CaseFact] = facts;
                    let Some(of) = fold::duplicate_of(
                        *case_id,
                        facts,
                        person.iter().map(|(id, f)| (*id, *f)),
                        false,
                    ) else {
                        continue;
                    };
                    let resolution = if fold::survivor(&linked, *case_id).is_some()
                        || fold::survivor(&linked, of).is_some()
                    {
                        DuplicateResolution::Merged
                    } else if facts.iter().any(|f| {
                        f.voided_by.is_none()
                            && matches!(f.body, FactBody::Dismissed { of: d } if d == of)
                    }) {
                        DuplicateResolution::Dismissed
                    } else {
                        DuplicateResolution::Open
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
                        resolution,
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
