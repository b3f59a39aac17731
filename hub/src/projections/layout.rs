//! Where the records of the projections tree are: each record either under
//! its own key or packed with others into a run, and how to find it.
//!
//! A record of a packed kind (case file, open case, voids of an event) is
//! looked up under its own key first (`c:`, `o:`, `v:`), then in the run
//! that covers its id (`C:`, `O:`, `V:`, keyed by the first id they hold):
//! a record under its own key replaces the run's copy, and an empty value
//! under its own key (a tombstone) says that an open case in a run is no
//! longer open. Runs are written only into a tree that holds no record yet,
//! by a bulk replay; records applied afterwards go under their own keys.
//!
//! In an encrypted store, case files and open-case views are sealed one by
//! one, each bound to its logical key (`c:` case_id, `o:` station case_id)
//! whether it sits under that key or in a run; tombstones stay empty. Reads
//! here open them: callers see records in clear.
//!
//! The *logical* content of the tree, what [`logical`] lists, is every
//! record under its own key as if no run existed, but for the records keyed
//! or valued by people's tags (`p:`, `t:`, and the directory's `y:`, `Y:`),
//! whose bytes depend on the store's secret, and the directory feed's
//! positions and epoch (`Y:`, `m:directory_…`), which depend on how events
//! were batched: it depends only on the events applied, not on how they
//! were batched nor on the store.

use std::collections::{BTreeMap, HashMap};

use station_agent::seal::SealedTree;
use station_proto::ids::Uuid;

use super::codec::Run;
use super::error::ProjectionError;

/// One raw key and value of the projections tree, as [`Projections::dump`] lists them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Case file of a case, by case id.
pub(crate) const CASES: &[u8] = b"c:";
/// Runs of case files.
pub(crate) const CASE_RUNS: &[u8] = b"C:";
/// View of an open case, by station and case id.
pub(crate) const OPEN_CASES: &[u8] = b"o:";
/// Runs of open-case views, by station.
pub(crate) const OPEN_RUNS: &[u8] = b"O:";
/// Voids naming an event, by the event's id.
pub(crate) const VOIDS: &[u8] = b"v:";
/// Runs of voids.
pub(crate) const VOID_RUNS: &[u8] = b"V:";
/// JSON tier conflict, by station and case id.
pub(crate) const CONFLICTS: &[u8] = b"k:";
/// JSON review rows of a case (sealed: comments), by station and case id.
pub(crate) const REVIEWS: &[u8] = b"r:";
/// Counters, by name.
pub(crate) const COUNTERS: &[u8] = b"n:";
/// JSON per-device statistics, by origin id.
pub(crate) const ORIGINS: &[u8] = b"g:";
/// The files of a person at a station, by station and tag.
pub(crate) const PERSONS: &[u8] = b"p:";
/// The person (station and tag) a case was opened for, by case id.
pub(crate) const PERSON_OF: &[u8] = b"t:";
/// The cases with a merge (voided or not) naming a case as absorbed, by
/// the absorbed case's id.
pub(crate) const MERGES: &[u8] = b"j:";

/// A line of the district directory (its open files, its place in the
/// feed), by directory tag and station.
pub(crate) const DIRECTORY: &[u8] = b"y:";
/// The district directory's feed: a line's last change, by feed position.
pub(crate) const DIRECTORY_FEED: &[u8] = b"Y:";
/// The directory feed's last position.
pub(crate) const M_DIRECTORY_HEAD: &[u8] = b"m:directory_head";
/// The directory feed's epoch: 16 random bytes written with the first
/// batch of a tree filled from nothing.
pub(crate) const M_DIRECTORY_EPOCH: &[u8] = b"m:directory_epoch";

/// The key spaces whose records are sealed in an encrypted store.
pub(crate) const SEALED_SPACES: &[&[u8]] = &[CASES, OPEN_CASES, REVIEWS];

/// A record as stored at (logical) key `k`, opened; a tombstone stays empty.
pub(crate) fn open_record(
    values: &SealedTree,
    k: &[u8],
    stored: &[u8],
) -> Result<Vec<u8>, ProjectionError> {
    if stored.is_empty() {
        return Ok(Vec::new());
    }
    Ok(values.open(k, stored)?)
}

pub(crate) fn key(prefix: &[u8], rest: &[&[u8]]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for r in rest {
        k.extend_from_slice(r);
    }
    k
}

/// The run of `runs` (a run prefix, with the station for open cases) that
/// would hold `id`, and the record it holds for `id`, as stored.
fn in_run(tree: &sled::Tree, runs: &[u8], id: &Uuid) -> Result<Option<Vec<u8>>, ProjectionError> {
    let last = key(runs, &[id.as_bytes()]);
    let Some(item) = tree.range(runs.to_vec()..=last).next_back() else {
        return Ok(None);
    };
    let (k, v) = item?;
    if k.len() != runs.len() + 16 {
        return Ok(None);
    }
    Ok(Run::new(&v)?.get(id)?.map(<[u8]>::to_vec))
}

/// A record of a packed kind: under its own key, else in its run. An empty
/// value is a tombstone.
fn record(
    tree: &sled::Tree,
    values: &SealedTree,
    own: &[u8],
    runs: &[u8],
    id: &Uuid,
) -> Result<Option<Vec<u8>>, ProjectionError> {
    let k = key(own, &[id.as_bytes()]);
    let stored = match tree.get(&k)? {
        Some(v) => Some(v.to_vec()),
        None => in_run(tree, runs, id)?,
    };
    stored.map(|v| open_record(values, &k, &v)).transpose()
}

/// The encoded case file of a case.
pub(crate) fn case(
    tree: &sled::Tree,
    values: &SealedTree,
    case_id: &Uuid,
) -> Result<Option<Vec<u8>>, ProjectionError> {
    record(tree, values, CASES, CASE_RUNS, case_id)
}

/// The encoded voids naming an event.
pub(crate) fn voids(
    tree: &sled::Tree,
    values: &SealedTree,
    event_id: &Uuid,
) -> Result<Option<Vec<u8>>, ProjectionError> {
    record(tree, values, VOIDS, VOID_RUNS, event_id)
}

/// Whether `station` holds `case_id` open: an open-case view of the
/// station (not a tombstone) names it.
pub(crate) fn is_open_at(
    tree: &sled::Tree,
    values: &SealedTree,
    station: &str,
    case_id: &Uuid,
) -> Result<bool, ProjectionError> {
    let view = record(
        tree,
        values,
        &key(OPEN_CASES, &[station.as_bytes()]),
        &key(OPEN_RUNS, &[station.as_bytes()]),
        case_id,
    )?;
    Ok(view.is_some_and(|v| !v.is_empty()))
}

/// Whether a run holds an open-case view of `station` for `case_id`: then
/// removing it takes a tombstone.
pub(crate) fn open_in_run(
    tree: &sled::Tree,
    station: &str,
    case_id: &Uuid,
) -> Result<bool, ProjectionError> {
    Ok(in_run(tree, &key(OPEN_RUNS, &[station.as_bytes()]), case_id)?.is_some())
}

/// Calls `visit` with the encoded view of each open case of `station`, in
/// no particular order, without copying the views out of the tree.
pub(crate) fn for_each_open_case(
    tree: &sled::Tree,
    values: &SealedTree,
    station: &str,
    mut visit: impl FnMut(&[u8]) -> Result<(), ProjectionError>,
) -> Result<(), ProjectionError> {
    for_each_record(
        tree,
        values,
        &key(OPEN_CASES, &[station.as_bytes()]),
        &key(OPEN_RUNS, &[station.as_bytes()]),
        |_, view| visit(view),
    )
}

/// Calls `visit` with the id and encoded file of every case, in no
/// particular order.
pub(crate) fn for_each_case(
    tree: &sled::Tree,
    values: &SealedTree,
    visit: impl FnMut(Uuid, &[u8]) -> Result<(), ProjectionError>,
) -> Result<(), ProjectionError> {
    for_each_record(tree, values, CASES, CASE_RUNS, visit)
}

/// Every record of a packed kind: those under their own keys (`own`
/// followed by the id) replace the runs' copies (`runs` followed by the
/// first id); after a bulk replay they are the few changed since. Empty
/// values are tombstones.
fn for_each_record(
    tree: &sled::Tree,
    values: &SealedTree,
    own: &[u8],
    runs: &[u8],
    mut visit: impl FnMut(Uuid, &[u8]) -> Result<(), ProjectionError>,
) -> Result<(), ProjectionError> {
    let mut replaced: HashMap<Uuid, sled::IVec> = HashMap::new();
    for item in tree.scan_prefix(own) {
        let (k, v) = item?;
        if let Ok(id) = Uuid::from_slice(&k[own.len()..]) {
            replaced.insert(id, v);
        }
    }
    let sealed = values.is_sealed(own);
    for item in tree.scan_prefix(runs) {
        let (k, v) = item?;
        if k.len() != runs.len() + 16 {
            continue;
        }
        for (id, record) in Run::new(&v)?.entries()? {
            if !replaced.contains_key(&id) {
                if sealed {
                    visit(
                        id,
                        &open_record(values, &key(own, &[id.as_bytes()]), record)?,
                    )?;
                } else {
                    visit(id, record)?;
                }
            }
        }
    }
    for (id, record) in &replaced {
        if !record.is_empty() {
            if sealed {
                visit(
                    *id,
                    &open_record(values, &key(own, &[id.as_bytes()]), record)?,
                )?;
            } else {
                visit(*id, record)?;
            }
        }
    }
    Ok(())
}

/// Every record of the tree under its own key, runs unpacked and
/// tombstones dropped, in key order.
pub(crate) fn logical(
    tree: &sled::Tree,
    values: &SealedTree,
) -> Result<Vec<KeyValue>, ProjectionError> {
    let mut packed: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut own: Vec<KeyValue> = Vec::new();
    for item in tree.iter() {
        let (k, v) = item?;
        if k.starts_with(PERSONS)
            || k.starts_with(PERSON_OF)
            || k.starts_with(DIRECTORY)
            || k.starts_with(DIRECTORY_FEED)
            || k.starts_with(b"m:directory_")
        {
            continue;
        }
        let logical_prefix = match k.get(..2) {
            Some(p) if p == CASE_RUNS => CASES,
            Some(p) if p == OPEN_RUNS => OPEN_CASES,
            Some(p) if p == VOID_RUNS => VOIDS,
            _ => {
                own.push((k.to_vec(), v.to_vec()));
                continue;
            }
        };
        let station = k.len().checked_sub(16).and_then(|end| k.get(2..end));
        let station = station.ok_or_else(|| ProjectionError::Corrupt("run key".into()))?;
        for (id, record) in Run::new(&v)?.entries()? {
            let k = key(logical_prefix, &[station, id.as_bytes()]);
            let record = open_record(values, &k, record)?;
            packed.insert(k, record);
        }
    }
    for (k, v) in own {
        if v.is_empty() {
            packed.remove(&k);
        } else {
            let v = open_record(values, &k, &v)?;
            packed.insert(k, v);
        }
    }
    Ok(packed.into_iter().collect())
}
