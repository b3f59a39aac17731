//! Applying a run of logged events to the projections: an overlay of the
//! records the run touches, written back as one sled batch.
//!
//! Invariants: reads go through the overlay, so an event sees the effect of
//! the events before it in the run; nothing reaches the tree until
//! [`Pending::finish`] hands back the batch; cases touched by the run are
//! derived once, at the end, from their whole fact set.

use std::collections::{BTreeSet, HashMap};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use station_proto::Body;
use station_proto::ids::Uuid;

use super::ProjectionError;
use super::fold::{self, CaseFact, Counts};
use super::read::LAG_BUCKETS_MS;
use crate::store::LoggedEvent;

pub(crate) const CASES: &[u8] = b"c:";
pub(crate) const MEMBERS: &[u8] = b"f:";
pub(crate) const STANDALONE: &[u8] = b"x:";
pub(crate) const VOIDS: &[u8] = b"v:";
pub(crate) const COUNTERS: &[u8] = b"n:";
pub(crate) const OPEN_CASES: &[u8] = b"o:";
pub(crate) const CONFLICTS: &[u8] = b"k:";
pub(crate) const ORIGINS: &[u8] = b"g:";

pub(crate) fn key(prefix: &[u8], rest: &[&[u8]]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for r in rest {
        k.extend_from_slice(r);
    }
    k
}

pub(crate) fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, ProjectionError> {
    serde_json::from_slice(bytes).map_err(|e| ProjectionError::Corrupt(format!("{what}: {e}")))
}

fn encode<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, ProjectionError> {
    serde_json::to_vec(value).map_err(|e| ProjectionError::Corrupt(format!("{what}: {e}")))
}

/// One case file: every fact of its events, and what it adds to the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CaseRecord {
    /// The station of its `CaseOpened` when last derived; `None` while held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    /// Facts in (hlc, event_id) order, voided ones flagged.
    pub facts: Vec<CaseFact>,
    /// The contribution last added to the counters.
    #[serde(default, skip_serializing_if = "Counts::is_empty")]
    pub counts: Counts,
}

/// What an event that counts by itself added, to take back on a void.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Contribution {
    /// The event's station: only a void of the same station applies.
    pub station: String,
    /// What it added.
    pub counts: Counts,
}

/// A void naming an event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct VoidMark {
    /// The `EventVoided`'s id.
    pub by: Uuid,
    /// Its station.
    pub station: String,
}

/// Per-device statistics of the events the log holds; every field is a sum
/// or a maximum, so arrival order does not change it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OriginStats {
    /// The device's station (of its events).
    pub station: String,
    /// Events of the device in the log.
    pub events: u64,
    /// The highest origin_seq in the log.
    pub last_seq: u64,
    /// recorded_at of the event at `last_seq`.
    pub last_recorded_at_ms: i64,
    /// Events with a receive time (those received before it was kept have none).
    pub lag_events: u64,
    /// Sum of (received − recorded) over them, ms.
    pub lag_sum_ms: i64,
    /// Largest lag, ms.
    pub lag_max_ms: i64,
    /// Events per lag bucket ([`LAG_BUCKETS_MS`], then the rest).
    pub lag_buckets: Vec<u64>,
    /// Events recorded (by the device clock) after the hub received them.
    pub recorded_after_receipt: u64,
}

/// The records a run of events touches, over the tree.
pub(crate) struct Pending<'a> {
    /// The projections tree, read on a miss.
    tree: &'a sled::Tree,
    /// Case records read or changed.
    cases: HashMap<Uuid, CaseRecord>,
    /// Cases to derive again at the end.
    dirty: BTreeSet<Uuid>,
    /// Case membership of case events: read or added.
    members: HashMap<Uuid, Option<Uuid>>,
    /// Contributions of events that count by themselves: read, added, removed.
    standalone: HashMap<Uuid, Option<Contribution>>,
    /// Voids per target: read or changed.
    voids: HashMap<Uuid, Vec<VoidMark>>,
    /// Counter changes.
    counters: HashMap<String, i64>,
    /// Device statistics read or changed.
    origins: HashMap<Uuid, OriginStats>,
    /// Writes of derived rows (`o:`, `k:`): key → value or removal.
    rows: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Keys whose overlay entry changed and must be written.
    changed: BTreeSet<Vec<u8>>,
}

impl<'a> Pending<'a> {
    pub(crate) fn new(tree: &'a sled::Tree) -> Self {
        Self {
            tree,
            cases: HashMap::new(),
            dirty: BTreeSet::new(),
            members: HashMap::new(),
            standalone: HashMap::new(),
            voids: HashMap::new(),
            counters: HashMap::new(),
            origins: HashMap::new(),
            rows: HashMap::new(),
            changed: BTreeSet::new(),
        }
    }

    fn case(&mut self, case_id: Uuid) -> Result<&mut CaseRecord, ProjectionError> {
        if !self.cases.contains_key(&case_id) {
            let record = match self.tree.get(key(CASES, &[case_id.as_bytes()]))? {
                Some(v) => decode("case", &v)?,
                None => CaseRecord::default(),
            };
            self.cases.insert(case_id, record);
        }
        self.changed.insert(key(CASES, &[case_id.as_bytes()]));
        // Inserted just above when absent.
        self.cases
            .get_mut(&case_id)
            .ok_or_else(|| ProjectionError::Corrupt("case overlay".into()))
    }

    fn member(&mut self, event_id: Uuid) -> Result<Option<Uuid>, ProjectionError> {
        if let Some(case) = self.members.get(&event_id) {
            return Ok(*case);
        }
        let case = self
            .tree
            .get(key(MEMBERS, &[event_id.as_bytes()]))?
            .map(|v| Uuid::from_slice(&v).map_err(|_| ProjectionError::Corrupt("member".into())))
            .transpose()?;
        self.members.insert(event_id, case);
        Ok(case)
    }

    fn standalone(&mut self, event_id: Uuid) -> Result<Option<Contribution>, ProjectionError> {
        if let Some(c) = self.standalone.get(&event_id) {
            return Ok(c.clone());
        }
        let c = self
            .tree
            .get(key(STANDALONE, &[event_id.as_bytes()]))?
            .map(|v| decode("contribution", &v))
            .transpose()?;
        self.standalone.insert(event_id, c.clone());
        Ok(c)
    }

    fn voids(&mut self, target: Uuid) -> Result<&mut Vec<VoidMark>, ProjectionError> {
        if !self.voids.contains_key(&target) {
            let marks = match self.tree.get(key(VOIDS, &[target.as_bytes()]))? {
                Some(v) => decode("voids", &v)?,
                None => Vec::new(),
            };
            self.voids.insert(target, marks);
        }
        self.voids
            .get_mut(&target)
            .ok_or_else(|| ProjectionError::Corrupt("void overlay".into()))
    }

    fn voided_by(
        &mut self,
        event_id: Uuid,
        station: &str,
    ) -> Result<Option<Uuid>, ProjectionError> {
        Ok(self
            .voids(event_id)?
            .iter()
            .filter(|m| m.station == station)
            .map(|m| m.by)
            .min())
    }

    fn count(&mut self, counts: &Counts, sign: i64) {
        for (k, v) in counts {
            *self.counters.entry(k.clone()).or_insert(0) += sign * v;
        }
    }

    fn origin(&mut self, origin: Uuid) -> Result<&mut OriginStats, ProjectionError> {
        if !self.origins.contains_key(&origin) {
            let stats = match self.tree.get(key(ORIGINS, &[origin.as_bytes()]))? {
                Some(v) => decode("origin", &v)?,
                None => OriginStats::default(),
            };
            self.origins.insert(origin, stats);
        }
        self.origins
            .get_mut(&origin)
            .ok_or_else(|| ProjectionError::Corrupt("origin overlay".into()))
    }

    fn observe_origin(&mut self, logged: &LoggedEvent) -> Result<(), ProjectionError> {
        let event = &logged.event;
        let Ok(origin) = Uuid::from_slice(&event.origin_id) else {
            return Ok(());
        };
        let stats = self.origin(origin)?;
        if stats.station.is_empty() {
            stats.station = event.station_code.clone();
        }
        stats.events += 1;
        if event.origin_seq > stats.last_seq {
            stats.last_seq = event.origin_seq;
            stats.last_recorded_at_ms = event.recorded_at_ms;
        }
        if let Some(received) = logged.received_at_ms {
            let lag = received.saturating_sub(event.recorded_at_ms);
            stats.lag_events += 1;
            stats.lag_sum_ms = stats.lag_sum_ms.saturating_add(lag);
            stats.lag_max_ms = stats.lag_max_ms.max(lag);
            if lag < 0 {
                stats.recorded_after_receipt += 1;
            }
            stats.lag_buckets.resize(LAG_BUCKETS_MS.len() + 1, 0);
            let bucket = LAG_BUCKETS_MS
                .iter()
                .position(|&up_to| lag <= up_to)
                .unwrap_or(LAG_BUCKETS_MS.len());
            stats.lag_buckets[bucket] += 1;
        }
        Ok(())
    }

    /// Applies one event of the log.
    pub(crate) fn apply(&mut self, logged: &LoggedEvent) -> Result<(), ProjectionError> {
        self.observe_origin(logged)?;
        let event = &logged.event;
        let Ok(id) = Uuid::from_slice(&event.event_id) else {
            return Ok(());
        };
        if let Some(Body::EventVoided(void)) = &event.body {
            return self.void(id, &event.station_code, &void.voided_event_id);
        }
        if let Some((case_id, mut fact)) = fold::case_fact(event) {
            fact.voided_by = self.voided_by(id, &fact.station)?;
            if fold::insert_fact(&mut self.case(case_id)?.facts, fact) {
                self.members.insert(id, Some(case_id));
                self.changed.insert(key(MEMBERS, &[id.as_bytes()]));
                self.dirty.insert(case_id);
            }
        } else if let Some(counts) = fold::standalone_counts(event)
            && !counts.is_empty()
            && self.voided_by(id, &event.station_code)?.is_none()
        {
            self.count(&counts, 1);
            self.standalone.insert(
                id,
                Some(Contribution {
                    station: event.station_code.clone(),
                    counts,
                }),
            );
            self.changed.insert(key(STANDALONE, &[id.as_bytes()]));
        }
        Ok(())
    }

    fn void(&mut self, void_id: Uuid, station: &str, target: &[u8]) -> Result<(), ProjectionError> {
        let mut one = Counts::new();
        fold::add(&mut one, fold::quality_key(station, fold::VOIDED_EVENTS), 1);
        self.count(&one, 1);
        let Ok(target) = Uuid::from_slice(target) else {
            return Ok(());
        };
        if target == void_id {
            return Ok(());
        }
        let mark = VoidMark {
            by: void_id,
            station: station.to_string(),
        };
        let marks = self.voids(target)?;
        if let Err(at) = marks.binary_search(&mark) {
            marks.insert(at, mark);
            self.changed.insert(key(VOIDS, &[target.as_bytes()]));
        }
        if let Some(case_id) = self.member(target)? {
            let record = self.case(case_id)?;
            let Some(fact) = record.facts.iter_mut().find(|f| f.id == target) else {
                return Err(ProjectionError::Corrupt(format!(
                    "event {target} is indexed under case {case_id} but not in it"
                )));
            };
            if fact.station == station && fact.voided_by.is_none_or(|by| void_id < by) {
                fact.voided_by = Some(void_id);
                self.dirty.insert(case_id);
            }
        } else if let Some(contribution) = self.standalone(target)?
            && contribution.station == station
        {
            self.count(&contribution.counts, -1);
            self.standalone.insert(target, None);
            self.changed.insert(key(STANDALONE, &[target.as_bytes()]));
        }
        Ok(())
    }

    /// Derives the touched cases and returns every change as one batch.
    pub(crate) fn finish(mut self) -> Result<sled::Batch, ProjectionError> {
        for case_id in std::mem::take(&mut self.dirty) {
            let record = self.case(case_id)?;
            let derived = fold::derive_case(case_id, &record.facts);
            let old_station = record.station.take();
            let old_counts = std::mem::replace(&mut record.counts, derived.counts.clone());
            record.station.clone_from(&derived.station);
            self.count(&old_counts, -1);
            self.count(&derived.counts, 1);
            if let Some(old) = old_station {
                let at = [old.as_bytes(), case_id.as_bytes()];
                self.rows.insert(key(OPEN_CASES, &at), None);
                self.rows.insert(key(CONFLICTS, &at), None);
            }
            if let Some(station) = &derived.station {
                let at = [station.as_bytes(), case_id.as_bytes()];
                if let Some(view) = derived
                    .view
                    .as_ref()
                    .filter(|v| v.status == station_agent::views::CaseStatus::Open)
                {
                    self.rows
                        .insert(key(OPEN_CASES, &at), Some(encode("open case", view)?));
                }
                if let Some(conflict) = &derived.conflict {
                    self.rows
                        .insert(key(CONFLICTS, &at), Some(encode("conflict", conflict)?));
                }
            }
        }
        let mut batch = sled::Batch::default();
        for k in &self.changed {
            let (prefix, rest) = k.split_at(2);
            let id = Uuid::from_slice(rest).map_err(|_| ProjectionError::Corrupt("key".into()))?;
            let value = match prefix {
                CASES => self.cases.get(&id).map(|r| encode("case", r)).transpose()?,
                MEMBERS => self
                    .members
                    .get(&id)
                    .copied()
                    .flatten()
                    .map(|c| c.as_bytes().to_vec()),
                STANDALONE => self
                    .standalone
                    .get(&id)
                    .cloned()
                    .flatten()
                    .map(|c| encode("contribution", &c))
                    .transpose()?,
                VOIDS => self
                    .voids
                    .get(&id)
                    .filter(|m| !m.is_empty())
                    .map(|m| encode("voids", m))
                    .transpose()?,
                _ => None,
            };
            match value {
                Some(v) => batch.insert(k.as_slice(), v),
                None => batch.remove(k.as_slice()),
            }
        }
        for (origin, stats) in &self.origins {
            batch.insert(key(ORIGINS, &[origin.as_bytes()]), encode("origin", stats)?);
        }
        for (k, v) in self.rows {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        for (name, delta) in self.counters {
            if delta == 0 {
                continue;
            }
            let k = key(COUNTERS, &[name.as_bytes()]);
            let current = match self.tree.get(&k)? {
                Some(v) => <[u8; 8]>::try_from(v.as_ref())
                    .map(i64::from_be_bytes)
                    .map_err(|_| ProjectionError::Corrupt("counter".into()))?,
                None => 0,
            };
            let now = current.saturating_add(delta);
            if now == 0 {
                batch.remove(k);
            } else {
                batch.insert(k, &now.to_be_bytes());
            }
        }
        Ok(batch)
    }
}
