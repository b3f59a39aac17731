//! Duplicate files: files opened while an earlier file of the same person
//! at the same station was open (two offline phones), found through the
//! person records (`p:`), without the ID number; still flagged, or resolved
//! by a merge (the files a merge links are found through `j:`) or a
//! dismissal.
//!
//! Possible duplicates across stations: a person the district directory
//! (`y:`) finds with open files at two or more stations (two stations'
//! phones that opened the person's file offline, before the directory
//! reached them). Each file open at another station than the person's
//! earliest open file (by opening day, then case id) is listed against that
//! file, found through the person of each case (`t:`), never the ID number
//! or name. Such a pair is not flagged in the counts (each station counts
//! its file) and is listed while both files are open: it leaves the list
//! when one is closed, transferred to the other's station or merged there;
//! a `DuplicateDismissed` of the later file naming the earlier shows it as
//! dismissed.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use chrono::NaiveDate;
use station_proto::directory::{DIRECTORY_TAG_BYTES, DirectoryTag};
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
    /// pair is still flagged, merged or dismissed; with the possible
    /// duplicates across stations whose later file a station of `stations`
    /// holds (see the module's doc).
    ///
    /// # Errors
    /// Storage errors.
    pub fn duplicates(&self, stations: &[String]) -> Result<DuplicateFiles, ProjectionError> {
        let tree = self.read_gate();
        let checkpoint = self.checkpoint();
        let mut interner = Stations::default();
        let mut across = across_stations(&tree, &self.records, &mut interner)?;
        let mut files = Vec::new();
        for station in stations {
            let mut found = across.remove(station.as_str()).unwrap_or_default();
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
                        duplicate_of_station_code: station.clone(),
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

/// The possible duplicates across stations (see the module's doc), by the
/// station of the later file.
fn across_stations(
    tree: &sled::Tree,
    records: &station_agent::seal::SealedTree,
    interner: &mut Stations,
) -> Result<BTreeMap<String, Vec<DuplicateFile>>, ProjectionError> {
    // The people with open files at two stations or more, by the lines of
    // the directory (a tag, then a station code, per key).
    let mut held: BTreeMap<DirectoryTag, Vec<String>> = BTreeMap::new();
    for item in tree.scan_prefix(layout::DIRECTORY) {
        let (k, v) = item?;
        let corrupt = || ProjectionError::Corrupt("a key of the district directory".into());
        let rest = k.get(layout::DIRECTORY.len()..).ok_or_else(corrupt)?;
        let (tag, station) = rest
            .split_first_chunk::<DIRECTORY_TAG_BYTES>()
            .ok_or_else(corrupt)?;
        let station = std::str::from_utf8(station).map_err(|_| corrupt())?;
        let (open, _, _) = codec::decode_directory_line(&v)?;
        if open > 0 {
            held.entry(*tag).or_default().push(station.to_string());
        }
    }
    held.retain(|_, stations| stations.len() > 1);
    let mut found: BTreeMap<String, Vec<DuplicateFile>> = BTreeMap::new();
    if held.is_empty() {
        return Ok(found);
    }
    // Their files, by the person each case was opened for.
    let mut files: BTreeMap<DirectoryTag, Vec<Uuid>> = BTreeMap::new();
    for item in tree.scan_prefix(layout::PERSON_OF) {
        let (k, v) = item?;
        let case_id = Uuid::from_slice(&k[layout::PERSON_OF.len()..])
            .map_err(|_| ProjectionError::Corrupt("the key of a case's person".into()))?;
        // The tag of the ID number only (the first, when there is one):
        // a weak match is a possible duplicate, not listed here.
        let (_, id_tag, directory) = codec::decode_person(&v, interner)?;
        if let (Some(_), Some(tag)) = (id_tag, directory.first())
            && held.contains_key(tag)
        {
            files.entry(*tag).or_default().push(case_id);
        }
    }
    for (tag, stations) in &held {
        let Some(ids) = files.get(tag) else {
            continue;
        };
        let linked = LinkedFiles::load(tree, records, ids, interner)?;
        // The person's open files: opening day, case id, holding station.
        let mut open: Vec<(NaiveDate, Uuid, &String)> = Vec::new();
        for id in ids {
            for station in stations {
                if !layout::is_open_at(tree, records, station, id)? {
                    continue;
                }
                if let Some((_, opened_on, _)) = fold::live_opening(*id, linked.facts(*id)) {
                    open.push((opened_on, *id, station));
                }
            }
        }
        open.sort();
        let Some(&(earlier_on, earlier, earlier_station)) = open.first() else {
            continue;
        };
        let earlier_number = fold::community_and_number_of(earlier, linked.facts(earlier))
            .map(|(_, number)| number)
            .unwrap_or_default();
        for &(opened_on, case_id, station) in &open[1..] {
            if station == earlier_station {
                continue;
            }
            let facts = linked.facts(case_id);
            let dismissed = facts.iter().any(|f| {
                f.voided_by.is_none()
                    && matches!(f.body, FactBody::Dismissed { of } if of == earlier)
            });
            let (community_code, file_number) =
                fold::community_and_number_of(case_id, facts).unwrap_or_default();
            found
                .entry(station.clone())
                .or_default()
                .push(DuplicateFile {
                    station_code: station.clone(),
                    case_id,
                    file_number,
                    community_code,
                    opened_on,
                    duplicate_of: earlier,
                    duplicate_of_opened_on: earlier_on,
                    duplicate_of_file_number: earlier_number.clone(),
                    duplicate_of_station_code: earlier_station.clone(),
                    resolution: if dismissed {
                        DuplicateResolution::Dismissed
                    } else {
                        DuplicateResolution::Open
                    },
                });
        }
    }
    Ok(found)
}
