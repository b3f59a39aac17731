//! Applying a run of logged events to the projections: an overlay of the
//! records the run touches, in memory, written back as one sled batch per
//! [`Overlay::flush`].
//!
//! Invariants:
//! - reads go through the overlay, so an event sees the effect of the
//!   events before it; nothing reaches the tree until a flush hands back the
//!   batch, and after it the overlay's records equal the tree's;
//! - a case touched since the last flush keeps the facts the tree holds
//!   (its base): at the flush its contribution derived from the base is
//!   taken back and the one derived from its facts now is added, so each
//!   case is derived once per flush, whatever number of its events came;
//! - a *complete* overlay holds every record the tree holds (it started on
//!   an empty tree and kept everything since), so a miss is an absent
//!   record and costs no read; an overlay over an empty tree packs its
//!   first flush into runs;
//! - a void finds what it voids in the log: the event it names was applied
//!   already exactly when the log holds it at a lower hub position;
//! - whether a file duplicates another depends on the person's other files
//!   at the station: a flush derives, with every touched case, every other
//!   file of its person (found through the `p:` and `t:` records), taking
//!   back what each contributed with the duplicate flags of before and
//!   adding it with those of now;
//! - likewise a merge links files: a flush derives, with every touched
//!   case, the files holding a merge naming it (`j:`) and the files its own
//!   merges name, however far the links go, each with its [`fold::Role`]
//!   then and now.

use std::collections::BTreeMap;

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt as _};
use station_agent::seal::SealedTree;
use station_proto::case::CaseStatus;
use station_proto::directory::DirectoryTag;
use station_proto::ids::Uuid;
use station_proto::person::PersonTag;

use super::codec::{self, VoidMark, decode_json, encode_json};
use super::error::ProjectionError;
use super::fold::{
    self, CaseDerived, CaseFact, Counter, FactBody, Item, MergeGraph, Prepared, Quality, Role,
    Standalone, Station, Stations, Sums, What,
};
use super::health::OriginStats;
use super::layout::{self, key};
use crate::store::HubStore;

/// Runs are cut at about this many bytes.
const RUN_BYTES: usize = 32 * 1024;

/// From this many touched cases on, a flush derives them on two threads.
#[cfg(not(test))]
const PARALLEL_FROM: usize = 10_000;
/// Small, so that tests derive on two threads.
#[cfg(test)]
const PARALLEL_FROM: usize = 20;

/// Facts an overlay keeps across flushes, at most: past it, the overlay
/// forgets everything after a flush and reads through the tree again.
#[cfg(not(test))]
pub(crate) const CACHE_FACTS: usize = 1_500_000;
/// Small, so that tests cross it.
#[cfg(test)]
pub(crate) const CACHE_FACTS: usize = 40;

/// A case file in the overlay.
struct CaseEntry {
    /// Its facts now, in (hlc, event_id) order.
    facts: Vec<CaseFact>,
    /// Its facts as the tree holds them, while touched since the last flush.
    base: Option<Vec<CaseFact>>,
}

/// The voids naming one event, in the overlay.
struct MarksEntry {
    marks: Vec<VoidMark>,
    dirty: bool,
}

/// The files of one person at one station, in the overlay.
struct PersonEntry {
    /// Case ids, ascending.
    cases: Vec<Uuid>,
    dirty: bool,
}

/// The files holding a merge that names one file, in the overlay.
struct MergeEntry {
    /// Case ids, ascending.
    survivors: Vec<Uuid>,
    dirty: bool,
}

/// A person at a station: the station and the keyed tag of the ID number.
type PersonKey = (Station, PersonTag);

/// One line of the district directory: a person's directory tag and a
/// station.
type DirectoryKey = (DirectoryTag, Station);

/// The person a case was opened for: at its station, by the tag of the ID
/// number (none for a person without one), and the directory tags (ID
/// number's, then the weak one).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PersonOf {
    station: Station,
    tag: Option<PersonTag>,
    directory: Vec<DirectoryTag>,
}

impl PersonOf {
    /// The person at the station, when comparable by ID number.
    fn key(&self) -> Option<PersonKey> {
        self.tag.map(|tag| (Station::clone(&self.station), tag))
    }
}

/// A line of the district directory, in the overlay.
#[derive(Debug, Clone, Copy, Default)]
struct DirectoryLine {
    /// The person's open files at the station (as the caseload counts them).
    open: u32,
    /// Whether the directory's feed lists it present.
    listed: bool,
    /// The feed position of its last listed change, if any.
    feed_seq: Option<u64>,
    /// Changed since the last flush.
    dirty: bool,
}

/// How a case counted as the tree holds it, and counts now.
#[derive(Debug, Clone, Default)]
struct RoleChange {
    was: Role,
    is: Role,
}

/// The files as the merge rule reads them, then (as the tree holds them)
/// or now.
struct Graph<'a> {
    cases: &'a HashMap<Uuid, CaseEntry>,
    merges: &'a HashMap<Uuid, MergeEntry>,
    /// The facts as the tree holds them of the cases touched; `None`: now.
    base: Option<&'a HashMap<Uuid, &'a [CaseFact]>>,
}

impl MergeGraph for Graph<'_> {
    fn facts(&self, case_id: Uuid) -> &[CaseFact] {
        if let Some(base) = self.base
            && let Some(facts) = base.get(&case_id)
        {
            return facts;
        }
        self.cases.get(&case_id).map_or(&[], |c| c.facts.as_slice())
    }

    fn claimants(&self, case_id: Uuid) -> &[Uuid] {
        self.merges
            .get(&case_id)
            .map_or(&[], |m| m.survivors.as_slice())
    }
}

/// What a touched case writes: its file, and its rows before and after.
struct CaseChange {
    case_id: Uuid,
    /// The encoded case file.
    record: Vec<u8>,
    /// The station it was open at, by the tree.
    was_open: Option<Station>,
    /// The station it is open at, and its encoded view.
    open: Option<(Station, Vec<u8>)>,
    /// The station its flagged conflict was at, by the tree.
    had_conflict: Option<Station>,
    /// The station and JSON of its flagged conflict.
    conflict: Option<(Station, Vec<u8>)>,
    /// The station its review rows were at, by the tree.
    had_reviews: Option<Station>,
    /// The station and JSON of its review rows, when it has any.
    reviews: Option<(Station, Vec<u8>)>,
}

/// Derives each case of `work` (case id, facts as the tree holds them) from
/// its facts then and now: the writes, and the counter changes. Many cases
/// are split between two threads.
fn derive_changes(
    cases: &HashMap<Uuid, CaseEntry>,
    work: &[(Uuid, Vec<CaseFact>)],
    roles: &HashMap<Uuid, RoleChange>,
) -> Result<(Vec<CaseChange>, Sums), ProjectionError> {
    let base: HashMap<Uuid, &[CaseFact]> = work
        .iter()
        .map(|(id, facts)| (*id, facts.as_slice()))
        .collect();
    let now = |id: &Uuid| cases.get(id).map_or(&[][..], |c| c.facts.as_slice());
    let then = |id: &Uuid| base.get(id).copied().unwrap_or_else(|| now(id));
    let derive = |work: &[(Uuid, Vec<CaseFact>)]| {
        let mut sums = Sums::default();
        let changes = work
            .iter()
            .filter_map(|(case_id, base)| {
                let facts = &cases.get(case_id)?.facts;
                let role = roles.get(case_id).cloned().unwrap_or_default();
                let joined_then: Vec<&[CaseFact]> = role.was.joined.iter().map(then).collect();
                let joined_now: Vec<&[CaseFact]> = role.is.joined.iter().map(now).collect();
                Some(derive_change(
                    *case_id,
                    (base, &joined_then),
                    (facts, &joined_now),
                    &role,
                    &mut sums,
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, ProjectionError>((changes, sums))
    };
    if work.len() < PARALLEL_FROM {
        return derive(work);
    }
    let (first, second) = work.split_at(work.len() / 2);
    std::thread::scope(|scope| {
        let other = std::thread::Builder::new()
            .name("projections-derive".into())
            .spawn_scoped(scope, || derive(second));
        let (mut changes, mut sums) = derive(first)?;
        let (more, more_sums) = match other {
            Ok(other) => other
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?,
            Err(_) => derive(second)?,
        };
        changes.extend(more);
        sums.merge(more_sums);
        Ok((changes, sums))
    })
}

/// The facts of a case and of the files joined to it.
type Joined<'a> = (&'a [CaseFact], &'a [&'a [CaseFact]]);

fn derive_change(
    case_id: Uuid,
    (base, joined_base): Joined<'_>,
    (facts, joined): Joined<'_>,
    role: &RoleChange,
    sums: &mut Sums,
) -> Result<CaseChange, ProjectionError> {
    // A duplicate file is not in the caseload: its person's file is.
    let open_at = |d: &CaseDerived, duplicate: bool| {
        d.view
            .as_ref()
            .filter(|v| v.status == CaseStatus::Open && !duplicate)
            .and(d.station.clone())
    };
    let conflict_at = |d: &CaseDerived| d.conflict.as_ref().and(d.station.clone());
    let reviews_at = |d: &CaseDerived| {
        if d.reviews.is_empty() {
            None
        } else {
            d.station.clone()
        }
    };
    let (was_open, had_conflict, had_reviews) = if base.is_empty() {
        (None, None, None)
    } else {
        let old = fold::derive_case(case_id, base, -1, &role.was, joined_base, sums);
        (
            open_at(&old, role.was.duplicate),
            conflict_at(&old),
            reviews_at(&old),
        )
    };
    let new = fold::derive_case(case_id, facts, 1, &role.is, joined, sums);
    let open = match (open_at(&new, role.is.duplicate), &new.view) {
        (Some(station), Some(view)) => Some((station, codec::encode_view(view))),
        _ => None,
    };
    let conflict = match (&new.station, &new.conflict) {
        (Some(station), Some(conflict)) => {
            Some((Station::clone(station), encode_json("conflict", conflict)?))
        }
        _ => None,
    };
    let reviews = match reviews_at(&new) {
        Some(station) => Some((station, encode_json("review rows", &new.reviews)?)),
        None => None,
    };
    Ok(CaseChange {
        case_id,
        record: codec::encode_case(facts),
        was_open,
        open,
        had_conflict,
        conflict,
        had_reviews,
        reviews,
    })
}

/// The records a run of events touches, over the tree.
pub(crate) struct Overlay {
    /// Every record the tree holds is here.
    complete: bool,
    /// The tree holds no record yet: the next flush packs runs.
    empty: bool,
    stations: Stations,
    cases: HashMap<Uuid, CaseEntry>,
    /// Cases touched since the last flush.
    touched: Vec<Uuid>,
    voids: HashMap<Uuid, MarksEntry>,
    /// Counter values as the tree holds them.
    counters: HashMap<Counter, i64>,
    /// Counter changes since the last flush.
    deltas: Sums,
    /// Device statistics, and whether changed since the last flush.
    origins: HashMap<Uuid, (OriginStats, bool)>,
    /// Facts held in `cases`.
    facts: usize,
    /// Seals and opens the case files and open-case views.
    records: Arc<SealedTree>,
    /// The files of each person, as far as loaded.
    persons: HashMap<PersonKey, PersonEntry>,
    /// The person of each case, and the person's directory tags, as far as
    /// loaded (`None`: no opening yet); the ids whose `t:` record is to be
    /// written.
    person_of: HashMap<Uuid, Option<PersonOf>>,
    person_of_dirty: Vec<Uuid>,
    /// The files holding a merge naming each file, as far as loaded.
    merges: HashMap<Uuid, MergeEntry>,
    /// The lines of the district directory, as far as loaded.
    directory: HashMap<DirectoryKey, DirectoryLine>,
    /// The directory feed's last position, once loaded.
    directory_head: Option<u64>,
}

impl Overlay {
    /// An overlay over a tree that holds the effect of `checkpoint` events:
    /// complete when it holds none.
    pub(crate) fn new(checkpoint: u64, records: Arc<SealedTree>) -> Self {
        Self {
            complete: checkpoint == 0,
            empty: checkpoint == 0,
            stations: Stations::default(),
            cases: HashMap::new(),
            touched: Vec::new(),
            voids: HashMap::new(),
            counters: HashMap::new(),
            deltas: Sums::default(),
            origins: HashMap::new(),
            facts: 0,
            records,
            persons: HashMap::new(),
            person_of: HashMap::new(),
            person_of_dirty: Vec::new(),
            merges: HashMap::new(),
            directory: HashMap::new(),
            directory_head: None,
        }
    }

    /// A line of the directory, loaded.
    fn directory_line(
        &mut self,
        tree: &sled::Tree,
        line: &DirectoryKey,
    ) -> Result<&mut DirectoryLine, ProjectionError> {
        if !self.directory.contains_key(line) {
            let stored = match self.complete {
                true => None,
                false => tree.get(key(layout::DIRECTORY, &[&line.0, line.1.as_bytes()]))?,
            };
            let loaded = match stored {
                Some(v) => codec::decode_directory_line(&v)?,
                None => (0, false, None),
            };
            self.directory.insert(
                line.clone(),
                DirectoryLine {
                    open: loaded.0,
                    listed: loaded.1,
                    feed_seq: loaded.2,
                    dirty: false,
                },
            );
        }
        self.directory
            .get_mut(line)
            .ok_or_else(|| ProjectionError::Corrupt("directory line".into()))
    }

    /// The directory feed's last position.
    fn directory_head(&mut self, tree: &sled::Tree) -> Result<u64, ProjectionError> {
        if let Some(head) = self.directory_head {
            return Ok(head);
        }
        let head = match self.complete {
            true => 0,
            false => match tree.get(layout::M_DIRECTORY_HEAD)? {
                Some(v) => <[u8; 8]>::try_from(v.as_ref())
                    .map(u64::from_be_bytes)
                    .map_err(|_| ProjectionError::Corrupt("directory head".into()))?,
                None => 0,
            },
        };
        self.directory_head = Some(head);
        Ok(head)
    }

    /// Counts the open files that `changes` moved between stations (or
    /// opened, or closed) in the directory, then writes every changed line
    /// to `batch`: a line whose presence changed goes to the end of the
    /// feed, its earlier place in the feed removed.
    fn update_directory(
        &mut self,
        tree: &sled::Tree,
        changes: &[CaseChange],
        batch: &mut sled::Batch,
    ) -> Result<(), ProjectionError> {
        for change in changes {
            let now = change.open.as_ref().map(|(station, _)| station);
            if change.was_open.as_ref() == now {
                continue;
            }
            for tag in self.directory_tags_of(tree, change.case_id)? {
                if let Some(was) = &change.was_open {
                    let line = self.directory_line(tree, &(tag, Station::clone(was)))?;
                    line.open = line.open.saturating_sub(1);
                    line.dirty = true;
                }
                if let Some(now) = now {
                    let line = self.directory_line(tree, &(tag, Station::clone(now)))?;
                    line.open = line.open.saturating_add(1);
                    line.dirty = true;
                }
            }
        }
        let mut dirty: Vec<DirectoryKey> = self
            .directory
            .iter()
            .filter(|(_, line)| line.dirty)
            .map(|(k, _)| k.clone())
            .collect();
        if dirty.is_empty() {
            return Ok(());
        }
        dirty.sort_unstable();
        let mut head = self.directory_head(tree)?;
        let first_head = head;
        for k in dirty {
            let line = self
                .directory
                .get_mut(&k)
                .ok_or_else(|| ProjectionError::Corrupt("directory line".into()))?;
            line.dirty = false;
            let present = line.open > 0;
            if present != line.listed {
                if let Some(old) = line.feed_seq {
                    batch.remove(key(layout::DIRECTORY_FEED, &[&old.to_be_bytes()]));
                }
                head += 1;
                line.listed = present;
                line.feed_seq = Some(head);
                batch.insert(
                    key(layout::DIRECTORY_FEED, &[&head.to_be_bytes()]),
                    codec::encode_directory_change(&k.0, &k.1, present),
                );
            }
            let line_key = key(layout::DIRECTORY, &[&k.0, k.1.as_bytes()]);
            if line.open == 0 && line.feed_seq.is_none() {
                batch.remove(line_key);
            } else {
                batch.insert(
                    line_key,
                    codec::encode_directory_line(line.open, line.listed, line.feed_seq),
                );
            }
        }
        if head != first_head {
            batch.insert(layout::M_DIRECTORY_HEAD, &head.to_be_bytes());
            self.directory_head = Some(head);
        }
        Ok(())
    }

    /// The directory tags of the person a case was opened for, when its
    /// opening was applied (none before).
    fn directory_tags_of(
        &mut self,
        tree: &sled::Tree,
        case_id: Uuid,
    ) -> Result<Vec<DirectoryTag>, ProjectionError> {
        self.load_person_of(tree, case_id)?;
        Ok(self
            .person_of
            .get(&case_id)
            .and_then(|p| p.as_ref().map(|p| p.directory.clone()))
            .unwrap_or_default())
    }

    /// The files holding a merge naming `case_id`, loaded.
    fn merge_entry(
        &mut self,
        tree: &sled::Tree,
        case_id: Uuid,
    ) -> Result<&mut MergeEntry, ProjectionError> {
        if !self.merges.contains_key(&case_id) {
            let survivors = match self.complete {
                true => Vec::new(),
                false => match tree.get(key(layout::MERGES, &[case_id.as_bytes()]))? {
                    Some(v) => codec::decode_ids(&v)?,
                    None => Vec::new(),
                },
            };
            self.merges.insert(
                case_id,
                MergeEntry {
                    survivors,
                    dirty: false,
                },
            );
        }
        self.merges
            .get_mut(&case_id)
            .ok_or_else(|| ProjectionError::Corrupt("merge entry".into()))
    }

    /// The person a case was opened for, by ID number, when its opening
    /// was applied and has one.
    fn person_of(
        &mut self,
        tree: &sled::Tree,
        case_id: Uuid,
    ) -> Result<Option<PersonKey>, ProjectionError> {
        Ok(self.load_person_of(tree, case_id)?.and_then(PersonOf::key))
    }

    /// The `t:` record of a case, loaded: `None` before its opening.
    fn load_person_of(
        &mut self,
        tree: &sled::Tree,
        case_id: Uuid,
    ) -> Result<Option<&PersonOf>, ProjectionError> {
        if !self.person_of.contains_key(&case_id) {
            let person = if self.complete {
                None
            } else {
                match tree.get(key(layout::PERSON_OF, &[case_id.as_bytes()]))? {
                    Some(v) => {
                        let (station, tag, directory) =
                            codec::decode_person(&v, &mut self.stations)?;
                        Some(PersonOf {
                            station,
                            tag,
                            directory,
                        })
                    }
                    None => None,
                }
            };
            self.person_of.insert(case_id, person);
        }
        Ok(self.person_of.get(&case_id).and_then(Option::as_ref))
    }

    /// The files of a person, ascending.
    fn person_files(
        &mut self,
        tree: &sled::Tree,
        person: &PersonKey,
    ) -> Result<&mut PersonEntry, ProjectionError> {
        if !self.persons.contains_key(person) {
            let stored = if self.complete {
                None
            } else {
                tree.get(key(layout::PERSONS, &[person.0.as_bytes(), &person.1]))?
            };
            let cases = match stored {
                Some(v) => codec::decode_ids(&v)?,
                None => Vec::new(),
            };
            self.persons.insert(
                person.clone(),
                PersonEntry {
                    cases,
                    dirty: false,
                },
            );
        }
        self.persons
            .get_mut(person)
            .ok_or_else(|| ProjectionError::Corrupt("person files".into()))
    }

    /// Records that `case_id` was opened at `station` for the person of
    /// `tags`: among the person's files when the opening has an ID number.
    fn note_person(
        &mut self,
        tree: &sled::Tree,
        case_id: Uuid,
        station: Station,
        tags: fold::OpeningTags,
    ) -> Result<(), ProjectionError> {
        let record = PersonOf {
            station,
            tag: tags.person,
            directory: tags.directory,
        };
        if let Some(person) = record.key() {
            let files = self.person_files(tree, &person)?;
            if let Err(at) = files.cases.binary_search(&case_id) {
                files.cases.insert(at, case_id);
                files.dirty = true;
            }
        }
        if self.load_person_of(tree, case_id)? != Some(&record) {
            self.person_of.insert(case_id, Some(record));
            self.person_of_dirty.push(case_id);
        }
        Ok(())
    }

    /// Touches every other file of the person of each touched case, and
    /// every file a merge links to it, so that a flush derives their roles
    /// again; loads the merge entry of each.
    fn touch_linked_files(&mut self, tree: &sled::Tree) -> Result<(), ProjectionError> {
        let mut at = 0;
        while let Some(&case_id) = self.touched.get(at) {
            at += 1;
            let mut linked = self.merge_entry(tree, case_id)?.survivors.clone();
            if let Some(entry) = self.cases.get(&case_id) {
                linked.extend(entry.facts.iter().filter_map(|f| match f.body {
                    FactBody::Merged { absorbed } => Some(absorbed),
                    _ => None,
                }));
            }
            if let Some(person) = self.person_of(tree, case_id)? {
                linked.extend(self.person_files(tree, &person)?.cases.iter().copied());
            }
            for file in linked {
                if file != case_id {
                    // Touching an untouched file appends it to `touched`.
                    self.touch_case(tree, file)?;
                }
            }
        }
        Ok(())
    }

    /// How each case of `work` counted with the facts the tree holds, and
    /// counts with the facts now: merged, joined, duplicate.
    fn roles(&self, work: &[(Uuid, Vec<CaseFact>)]) -> HashMap<Uuid, RoleChange> {
        let base: HashMap<Uuid, &[CaseFact]> = work
            .iter()
            .map(|(id, facts)| (*id, facts.as_slice()))
            .collect();
        let then = Graph {
            cases: &self.cases,
            merges: &self.merges,
            base: Some(&base),
        };
        let now = Graph {
            cases: &self.cases,
            merges: &self.merges,
            base: None,
        };
        let mut out = HashMap::new();
        for (case_id, _) in work {
            let files = match self
                .person_of
                .get(case_id)
                .and_then(Option::as_ref)
                .and_then(PersonOf::key)
            {
                Some(person) => self.persons.get(&person).map(|f| f.cases.as_slice()),
                _ => None,
            };
            let role = |graph: &Graph<'_>| {
                let merged_into = fold::survivor(graph, *case_id);
                if merged_into.is_some() {
                    return Role {
                        merged_into,
                        ..Role::default()
                    };
                }
                let duplicate = files.is_some_and(|files| {
                    files.len() >= 2
                        && fold::duplicate_of(
                            *case_id,
                            graph.facts(*case_id),
                            files
                                .iter()
                                .filter(|id| fold::survivor(graph, **id).is_none())
                                .map(|id| (*id, graph.facts(*id))),
                            true,
                        )
                        .is_some()
                });
                Role {
                    duplicate,
                    merged_into: None,
                    joined: fold::joined(graph, *case_id),
                }
            };
            let change = RoleChange {
                was: role(&then),
                is: role(&now),
            };
            if change.was != Role::default() || change.is != Role::default() {
                out.insert(*case_id, change);
            }
        }
        out
    }

    fn load_case(&mut self, tree: &sled::Tree, case_id: Uuid) -> Result<(), ProjectionError> {
        if self.complete || self.cases.contains_key(&case_id) {
            return Ok(());
        }
        let facts = match layout::case(tree, &self.records, &case_id)? {
            Some(bytes) => codec::decode_case(&bytes, &mut self.stations)?,
            None => return Ok(()),
        };
        self.facts += facts.len();
        self.cases.insert(case_id, CaseEntry { facts, base: None });
        Ok(())
    }

    /// The case's facts, to change: the base is kept first.
    fn touch_case(
        &mut self,
        tree: &sled::Tree,
        case_id: Uuid,
    ) -> Result<&mut Vec<CaseFact>, ProjectionError> {
        self.load_case(tree, case_id)?;
        let entry = self.cases.entry(case_id).or_insert_with(|| CaseEntry {
            facts: Vec::new(),
            base: None,
        });
        if entry.base.is_none() {
            entry.base = Some(entry.facts.clone());
            self.touched.push(case_id);
        }
        Ok(&mut entry.facts)
    }

    fn load_marks(&mut self, tree: &sled::Tree, event_id: Uuid) -> Result<(), ProjectionError> {
        if self.complete || self.voids.contains_key(&event_id) {
            return Ok(());
        }
        if let Some(bytes) = layout::voids(tree, &self.records, &event_id)? {
            let marks = codec::decode_marks(&bytes, &mut self.stations)?;
            self.voids.insert(
                event_id,
                MarksEntry {
                    marks,
                    dirty: false,
                },
            );
        }
        Ok(())
    }

    /// The smallest id of the voids of `station` naming `event_id`.
    fn voided_by(
        &mut self,
        tree: &sled::Tree,
        event_id: Uuid,
        station: &str,
    ) -> Result<Option<Uuid>, ProjectionError> {
        self.load_marks(tree, event_id)?;
        Ok(self.voids.get(&event_id).and_then(|entry| {
            entry
                .marks
                .iter()
                .filter(|m| &*m.station == station)
                .map(|m| m.by)
                .min()
        }))
    }

    fn observe_origin(
        &mut self,
        tree: &sled::Tree,
        event: &Prepared,
    ) -> Result<(), ProjectionError> {
        let Some((origin, seq)) = event.origin else {
            return Ok(());
        };
        if !self.complete && !self.origins.contains_key(&origin) {
            let stats = match tree.get(key(layout::ORIGINS, &[origin.as_bytes()]))? {
                Some(v) => decode_json("origin", &v)?,
                None => OriginStats::default(),
            };
            self.origins.insert(origin, (stats, false));
        }
        let (stats, changed) = self.origins.entry(origin).or_default();
        *changed = true;
        stats.observe(
            &event.station,
            seq,
            event.recorded_at_ms,
            event.received_at_ms,
        );
        Ok(())
    }

    /// The station codes the overlay's records share.
    pub(crate) fn stations(&mut self) -> &mut Stations {
        &mut self.stations
    }

    /// Applies one event of the log; every event before it in the log has
    /// been applied.
    pub(crate) fn apply(
        &mut self,
        tree: &sled::Tree,
        store: &HubStore,
        event: Prepared,
    ) -> Result<(), ProjectionError> {
        self.observe_origin(tree, &event)?;
        match event.what {
            What::Nothing => {}
            What::Void { id, target } => {
                self.void(tree, store, event.hub_seq, id, event.station, target)?;
            }
            What::Case {
                case_id,
                mut fact,
                person,
            } => {
                if let Some(tags) = person {
                    self.note_person(tree, case_id, Station::clone(&fact.station), tags)?;
                }
                if let FactBody::Merged { absorbed } = fact.body {
                    let entry = self.merge_entry(tree, absorbed)?;
                    if let Err(at) = entry.survivors.binary_search(&case_id) {
                        entry.survivors.insert(at, case_id);
                        entry.dirty = true;
                    }
                }
                fact.voided_by = self.voided_by(tree, fact.id, &fact.station)?;
                if fold::insert_fact(self.touch_case(tree, case_id)?, fact) {
                    self.facts += 1;
                }
            }
            What::Standalone { id, counts } => {
                if self.voided_by(tree, id, &event.station)?.is_none() {
                    counts.add_to(&mut self.deltas, &event.station, 1);
                }
            }
        }
        Ok(())
    }

    fn void(
        &mut self,
        tree: &sled::Tree,
        store: &HubStore,
        hub_seq: u64,
        void_id: Uuid,
        station: Station,
        target: Option<Uuid>,
    ) -> Result<(), ProjectionError> {
        self.deltas
            .add(&station, Item::Quality(Quality::VoidedEvents), 1);
        let Some(target) = target else {
            return Ok(());
        };
        if target == void_id {
            return Ok(());
        }
        self.load_marks(tree, target)?;
        let entry = self.voids.entry(target).or_insert_with(|| MarksEntry {
            marks: Vec::new(),
            dirty: false,
        });
        let voided_before = entry.marks.iter().any(|m| m.station == station);
        let mark = VoidMark {
            by: void_id,
            station: Station::clone(&station),
        };
        if let Err(at) = entry.marks.binary_search(&mark) {
            entry.marks.insert(at, mark);
            entry.dirty = true;
        }
        // The event voided, when applied already: it is then in the log
        // before this void.
        let Some(at) = store.position_of(target.as_bytes())? else {
            return Ok(());
        };
        if at >= hub_seq {
            return Ok(());
        }
        let Some(voided) = store.event_at(at)? else {
            return Err(ProjectionError::Corrupt(format!(
                "event {target} is indexed at {at} but not in the log"
            )));
        };
        if let Some(case_id) = fold::case_of(&voided) {
            self.load_case(tree, case_id)?;
            let applies = self
                .cases
                .get(&case_id)
                .and_then(|c| c.facts.iter().find(|f| f.id == target))
                .map(|f| f.station == station && f.voided_by.is_none_or(|by| void_id < by));
            match applies {
                None => {
                    return Err(ProjectionError::Corrupt(format!(
                        "event {target} of case {case_id} is not in its case file"
                    )));
                }
                Some(false) => {}
                Some(true) => {
                    let facts = self.touch_case(tree, case_id)?;
                    if let Some(fact) = facts.iter_mut().find(|f| f.id == target) {
                        fact.voided_by = Some(void_id);
                    }
                }
            }
        } else if !voided_before
            && *voided.station_code == *station
            && let Some(counts) = Standalone::of(&voided)
        {
            counts.add_to(&mut self.deltas, &station, -1);
        }
        Ok(())
    }

    /// Derives the touched cases and returns every change since the last
    /// flush as one batch, which the caller completes with the checkpoint
    /// and applies. The overlay must be dropped if the batch is not applied.
    pub(crate) fn flush(&mut self, tree: &sled::Tree) -> Result<sled::Batch, ProjectionError> {
        let pack = std::mem::replace(&mut self.empty, false);
        let mut batch = sled::Batch::default();
        let mut case_records = Vec::new();
        let mut open_records: BTreeMap<Station, Vec<(Uuid, Vec<u8>)>> = BTreeMap::new();
        self.touch_linked_files(tree)?;
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        let work: Vec<(Uuid, Vec<CaseFact>)> = touched
            .into_iter()
            .filter_map(|id| {
                let entry = self.cases.get_mut(&id)?;
                Some((id, entry.base.take().unwrap_or_default()))
            })
            .collect();
        let roles = self.roles(&work);
        let (changes, sums) = derive_changes(&self.cases, &work, &roles)?;
        drop(work);
        self.deltas.merge(sums);
        if pack {
            // A tree filled from nothing starts a new directory feed.
            batch.insert(layout::M_DIRECTORY_EPOCH, &rand::random::<[u8; 16]>());
        }
        self.update_directory(tree, &changes, &mut batch)?;
        for change in changes {
            let case_id = change.case_id;
            let case_key = key(layout::CASES, &[case_id.as_bytes()]);
            let record = self.records.seal(&case_key, change.record)?;
            if pack {
                case_records.push((case_id, record));
            } else {
                batch.insert(case_key, record);
            }
            if let Some(was) = &change.was_open
                && change.open.as_ref().map(|(s, _)| s) != Some(was)
            {
                let k = key(layout::OPEN_CASES, &[was.as_bytes(), case_id.as_bytes()]);
                if layout::open_in_run(tree, was, &case_id)? {
                    batch.insert(k, Vec::new());
                } else {
                    batch.remove(k);
                }
            }
            if let Some((station, view)) = change.open {
                let view = self.records.seal(
                    &key(
                        layout::OPEN_CASES,
                        &[station.as_bytes(), case_id.as_bytes()],
                    ),
                    view,
                )?;
                if pack {
                    open_records
                        .entry(station)
                        .or_default()
                        .push((case_id, view));
                } else {
                    batch.insert(
                        key(
                            layout::OPEN_CASES,
                            &[station.as_bytes(), case_id.as_bytes()],
                        ),
                        view,
                    );
                }
            }
            if let Some(had) = &change.had_conflict
                && change.conflict.as_ref().map(|(s, _)| s) != Some(had)
            {
                batch.remove(key(
                    layout::CONFLICTS,
                    &[had.as_bytes(), case_id.as_bytes()],
                ));
            }
            if let Some((station, conflict)) = change.conflict {
                batch.insert(
                    key(layout::CONFLICTS, &[station.as_bytes(), case_id.as_bytes()]),
                    conflict,
                );
            }
            if let Some(had) = &change.had_reviews
                && change.reviews.as_ref().map(|(s, _)| s) != Some(had)
            {
                batch.remove(key(layout::REVIEWS, &[had.as_bytes(), case_id.as_bytes()]));
            }
            if let Some((station, rows)) = change.reviews {
                let k = key(layout::REVIEWS, &[station.as_bytes(), case_id.as_bytes()]);
                let rows = self.records.seal(&k, rows)?;
                batch.insert(k, rows);
            }
        }
        let mut void_records = Vec::new();
        for (event_id, entry) in &mut self.voids {
            if std::mem::replace(&mut entry.dirty, false) {
                let record = codec::encode_marks(&entry.marks);
                if pack {
                    void_records.push((*event_id, record));
                } else {
                    batch.insert(key(layout::VOIDS, &[event_id.as_bytes()]), record);
                }
            }
        }
        if pack {
            void_records.sort_unstable_by_key(|(id, _)| *id);
            for (first, run) in codec::pack_runs(&case_records, RUN_BYTES) {
                batch.insert(key(layout::CASE_RUNS, &[first.as_bytes()]), run);
            }
            for (station, mut records) in open_records {
                records.sort_unstable_by_key(|(id, _)| *id);
                for (first, run) in codec::pack_runs(&records, RUN_BYTES) {
                    batch.insert(
                        key(layout::OPEN_RUNS, &[station.as_bytes(), first.as_bytes()]),
                        run,
                    );
                }
            }
            for (first, run) in codec::pack_runs(&void_records, RUN_BYTES) {
                batch.insert(key(layout::VOID_RUNS, &[first.as_bytes()]), run);
            }
        }
        for ((station, tag), entry) in &mut self.persons {
            if std::mem::replace(&mut entry.dirty, false) {
                batch.insert(
                    key(layout::PERSONS, &[station.as_bytes(), tag]),
                    codec::encode_ids(&entry.cases),
                );
            }
        }
        for (absorbed, entry) in &mut self.merges {
            if std::mem::replace(&mut entry.dirty, false) {
                batch.insert(
                    key(layout::MERGES, &[absorbed.as_bytes()]),
                    codec::encode_ids(&entry.survivors),
                );
            }
        }
        for case_id in std::mem::take(&mut self.person_of_dirty) {
            if let Some(Some(person)) = self.person_of.get(&case_id) {
                batch.insert(
                    key(layout::PERSON_OF, &[case_id.as_bytes()]),
                    codec::encode_person(&person.station, person.tag.as_ref(), &person.directory),
                );
            }
        }
        for (origin, (stats, changed)) in &mut self.origins {
            if std::mem::replace(changed, false) {
                batch.insert(
                    key(layout::ORIGINS, &[origin.as_bytes()]),
                    encode_json("origin", stats)?,
                );
            }
        }
        for (counter, delta) in self.deltas.drain() {
            if delta == 0 {
                continue;
            }
            let k = key(layout::COUNTERS, &[counter.to_string().as_bytes()]);
            let stored = match self.counters.get(&counter) {
                Some(v) => *v,
                None if self.complete => 0,
                None => match tree.get(&k)? {
                    Some(v) => <[u8; 8]>::try_from(v.as_ref())
                        .map(i64::from_be_bytes)
                        .map_err(|_| ProjectionError::Corrupt("counter".into()))?,
                    None => 0,
                },
            };
            let now = stored.wrapping_add(delta);
            if now == 0 {
                batch.remove(k);
            } else {
                batch.insert(k, &now.to_be_bytes());
            }
            self.counters.insert(counter, now);
        }
        if self.facts > CACHE_FACTS {
            self.forget();
        }
        Ok(batch)
    }

    /// Drops every record held, to read them from the tree again.
    fn forget(&mut self) {
        self.complete = false;
        self.cases.clear();
        self.voids.clear();
        self.counters.clear();
        self.origins.clear();
        self.persons.clear();
        self.person_of.clear();
        self.merges.clear();
        self.directory.clear();
        self.directory_head = None;
        self.facts = 0;
    }
}
