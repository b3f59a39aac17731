//! A case's station, and its timeline: every event of the case, and of the
//! files merged into it, and the voids of them, read whole from the log.

use std::net::SocketAddr;

use station_proto::ids::Uuid;

use super::{LinkedFiles, case_record, deidentified};
use crate::audit::{Access, Channel};
use crate::auth::{self, Caller};
use crate::projections::Projections;
use crate::projections::answer::{CaseTimeline, TimelineEntry};
use crate::projections::codec;
use crate::projections::error::ProjectionError;
use crate::projections::fold::{self, CaseFact, Stations};
use crate::projections::layout;

impl Projections {
    /// A case's timeline as `caller` may read it, over `via` from `from`:
    /// minimised unless `reveal`, another station's case answered as no
    /// case at all (a device token cannot learn which case ids exist
    /// elsewhere), and the read recorded in the read audit before it is
    /// answered.
    ///
    /// # Errors
    /// [`ProjectionError::UnknownCase`] for a case unknown or not the
    /// caller's; [`ProjectionError::Audit`] when the read cannot be
    /// recorded; storage errors.
    pub fn read_case_timeline(
        &self,
        caller: Caller,
        case_id: Uuid,
        reveal: bool,
        from: Option<SocketAddr>,
        via: Channel,
    ) -> Result<CaseTimeline, ProjectionError> {
        let timeline = self.case_timeline(case_id)?.minimised(reveal);
        auth::authorize_case(&caller, case_id, &timeline.station_code)
            .map_err(|_| ProjectionError::UnknownCase(case_id))?;
        // The case, and each file merged into it whose entries are shown.
        let mut cases = vec![case_id];
        for entry in &timeline.entries {
            if let Some(file) = station_proto::case::case_key(&entry.event)
                && !cases.contains(&file)
            {
                cases.push(file);
            }
        }
        self.audit_read(Access {
            caller,
            from,
            via,
            read: "case_timeline".into(),
            params: vec![
                ("case_id".into(), case_id.to_string()),
                ("reveal".into(), reveal.to_string()),
            ],
            cases,
            revealed: timeline.shown == "revealed",
        })?;
        Ok(timeline)
    }

    /// The station of a case, if any event of it is known.
    ///
    /// # Errors
    /// Storage errors.
    pub fn case_station(&self, case_id: Uuid) -> Result<Option<String>, ProjectionError> {
        let tree = self.read_gate();
        Ok(
            case_record(&tree, &self.records, case_id, &mut Stations::default())?
                .map(|(station, _, _)| station),
        )
    }

    /// Every event of one case and of the files merged into it, and the
    /// voids of them, in (hlc, event_id) order, voided events flagged, whole as read from the log: a reader is
    /// shown [`CaseTimeline::minimised`].
    ///
    /// # Errors
    /// [`ProjectionError::UnknownCase`] when no event of it is known; storage
    /// errors.
    pub fn case_timeline(&self, case_id: Uuid) -> Result<CaseTimeline, ProjectionError> {
        let tree = self.read_gate();
        let checkpoint = self.checkpoint();
        let mut stations = Stations::default();
        let (station, opened, facts) = case_record(&tree, &self.records, case_id, &mut stations)?
            .ok_or(ProjectionError::UnknownCase(case_id))?;
        let mut ids: Vec<(Uuid, Option<Uuid>)> = Vec::new();
        // The files merged into it, as the projections count them.
        let named: Vec<Uuid> = facts
            .iter()
            .filter_map(|f| match f.body {
                fold::FactBody::Merged { absorbed } => Some(absorbed),
                _ => None,
            })
            .collect();
        let mut joined: Vec<CaseFact> = Vec::new();
        if !named.is_empty() {
            let mut linked_ids = named;
            linked_ids.push(case_id);
            let linked = LinkedFiles::load(&tree, &self.records, &linked_ids, &mut stations)?;
            for file in fold::joined(&linked, case_id) {
                joined.extend(fold::MergeGraph::facts(&linked, file).iter().cloned());
            }
        }
        // Once the case is opened, only the entries of the stations that held
        // it (and the transfer answers that took effect) belong to it: one of
        // another station that reached the log before the opening (and so
        // could not be quarantined) is left out.
        let chain = fold::transfers(case_id, &facts);
        for fact in facts
            .iter()
            .chain(&joined)
            .filter(|f| !opened || chain.as_ref().is_none_or(|chain| fold::belongs(chain, f)))
        {
            ids.push((fact.id, fact.voided_by));
            if fact.voided_by.is_some()
                && let Some(v) = layout::voids(&tree, &self.records, &fact.id)?
            {
                let marks = codec::decode_marks(&v, &mut stations)?;
                ids.extend(
                    marks
                        .into_iter()
                        .filter(|m| m.station == fact.station)
                        .map(|m| (m.by, None)),
                );
            }
        }
        let mut entries = Vec::with_capacity(ids.len());
        for (id, voided_by) in ids {
            let Some(hub_seq) = self.store().position_of(id.as_bytes())? else {
                continue;
            };
            let Some(event) = self.store().event_at(hub_seq)? else {
                continue;
            };
            entries.push(TimelineEntry {
                hub_seq,
                received_at_ms: self.store().received_at(hub_seq)?,
                voided: voided_by.is_some(),
                voided_by,
                event_id: id,
                origin_id: Uuid::from_slice(&event.origin_id).ok(),
                origin_seq: event.origin_seq,
                author: event.author.clone(),
                recorded_at_ms: event.recorded_at_ms,
                hlc: event.hlc,
                body: event
                    .body
                    .as_ref()
                    .map(station_proto::json::body_to_json)
                    .unwrap_or_default(),
                event,
            });
        }
        entries.sort_by_key(|e| (e.hlc, e.event_id));
        entries.dedup_by_key(|e| e.event_id);
        Ok(CaseTimeline {
            computed_through_hub_seq: checkpoint,
            case_id,
            station_code: station,
            opened,
            entries,
            deidentified: deidentified(self.config(), fold::closed_on(case_id, &facts)),
            shown: "revealed",
        })
    }
}
