//! A hub store as the mirror of a shared log: what a hub front-end over a
//! NATS JetStream cluster keeps in its own data folder, so that its
//! projections, `Query`, the JSON and the dashboard read a local sled store
//! as a stand-alone hub's do.
//!
//! Invariants:
//! - [`HubStore::append_mirrored`] writes events only at the positions the
//!   shared log gave them, in order, each once: the store's last position is
//!   the checkpoint of the feed, written in the same atomic batch as the
//!   events, so a crash mid-way leaves the mirror at a position it holds
//!   whole and the feed resumes from there (exactly once per front-end);
//! - nothing is decided here: the shared log has decided, and the mirror
//!   copies (no validation, no quarantine, no signatures checked);
//! - origin states and quarantined events are copied as the shared log
//!   holds them, replacing the mirror's;
//! - a mirror takes the shared log's identity, and its district secret only
//!   while it holds no event.

use std::collections::BTreeMap;

use prost::Message as _;
use station_proto::ids::Uuid;

use super::format::{
    self, IDS, M_HUB_SEQ, M_LOG_ID, ORIGINS, Positions, QUARANTINE, RunWriter, TAKEN_OVER,
    event_place, key,
};
use super::{HubError, HubStore, LoggedEvent, OriginState, Quarantined, origin_json, write_run};
use crate::ingest;

impl HubStore {
    /// Appends events of the shared log at their positions, skipping those
    /// the mirror holds already; returns the mirror's last position. The
    /// events are written as given, in one atomic batch, then made durable,
    /// and long polls and the projector are woken.
    ///
    /// # Errors
    /// [`HubError::Corrupt`] when the events do not follow on from the
    /// mirror's last position (nothing is written then), storage errors.
    pub fn append_mirrored(&self, events: Vec<LoggedEvent>) -> Result<u64, HubError> {
        let mut writer = self.lock_writer();
        let held = *writer;
        let mut batch = sled::Batch::default();
        let mut hub_seq = held;
        let mut run: Option<RunWriter> = None;
        let mut streams: BTreeMap<String, Positions> = BTreeMap::new();
        for logged in events {
            if logged.hub_seq <= hub_seq {
                continue;
            }
            if logged.hub_seq != hub_seq + 1 {
                return Err(HubError::Corrupt(format!(
                    "the shared log skips from position {hub_seq} to {}",
                    logged.hub_seq
                )));
            }
            let event = logged.event;
            let raw = self
                .values
                .seal(&event_place(hub_seq + 1), event.encode_to_vec())?;
            let fits = run.as_ref().is_some_and(|run| {
                run.received_at_ms() == logged.received_at_ms && !run.is_full_for(raw.len())
            });
            if !fits {
                let fresh = RunWriter::new(hub_seq + 1, logged.received_at_ms);
                if let Some(full) = run.replace(fresh)
                    && !full.is_empty()
                {
                    write_run(&mut batch, full, std::mem::take(&mut streams));
                }
            }
            let Some(current) = run.as_mut() else {
                // Set just above whenever it was not.
                continue;
            };
            hub_seq = current.push(&raw);
            batch.insert(key(IDS, &[&event.event_id]), &hub_seq.to_be_bytes());
            if let Some(body @ station_proto::Body::CaseTransferAccepted(_)) = &event.body
                && let Some((case, _)) = ingest::answered_request(body)
            {
                batch.insert(
                    key(
                        TAKEN_OVER,
                        &[case.as_bytes(), event.station_code.as_bytes()],
                    ),
                    &[],
                );
            }
            streams.entry(event.station_code).or_default().push(hub_seq);
        }
        if hub_seq == held {
            return Ok(held);
        }
        if let Some(run) = run
            && !run.is_empty()
        {
            write_run(&mut batch, run, streams);
        }
        batch.insert(M_HUB_SEQ, &hub_seq.to_be_bytes());
        self.tree.apply_batch(batch)?;
        let ticket = self.group.written(None);
        *writer = hub_seq;
        drop(writer);
        self.group.wait_durable(ticket)?;
        self.grown.send_if_modified(|durable| {
            let higher = hub_seq > *durable;
            if higher {
                *durable = hub_seq;
            }
            higher
        });
        Ok(hub_seq)
    }

    /// Replaces the mirror's origin states and quarantined events with the
    /// shared log's; returns how many records changed.
    ///
    /// # Errors
    /// Storage errors.
    pub fn mirror_origins(
        &self,
        origins: &[(Uuid, OriginState)],
        quarantine: &[(Uuid, Quarantined)],
    ) -> Result<usize, HubError> {
        let mut batch = sled::Batch::default();
        let mut changed = 0;
        for (origin, state) in origins {
            let k = key(ORIGINS, &[origin.as_bytes()]);
            let json = origin_json(state)?;
            if self.tree.get(&k)?.as_deref() != Some(json.as_slice()) {
                batch.insert(k, json);
                changed += 1;
            }
        }
        for (origin, q) in quarantine {
            let k = key(
                QUARANTINE,
                &[origin.as_bytes(), &q.origin_seq.to_be_bytes()],
            );
            if self.tree.contains_key(&k)? {
                continue;
            }
            let json =
                serde_json::to_vec(q).map_err(|e| HubError::Corrupt(format!("quarantine: {e}")))?;
            batch.insert(k.clone(), self.values.seal(&k, json)?);
            changed += 1;
        }
        if changed > 0 {
            self.tree.apply_batch(batch)?;
            self.group.wait_durable(self.group.written(None))?;
        }
        Ok(changed)
    }

    /// Takes `id` as the log's identity (the shared log's), durably.
    ///
    /// # Errors
    /// Storage errors.
    pub fn adopt_log_id(&self, id: Uuid) -> Result<(), HubError> {
        if self.log_id() == id {
            return Ok(());
        }
        let _writer = self.lock_writer();
        self.tree.insert(M_LOG_ID, id.as_bytes())?;
        self.group.wait_durable(self.group.written(None))?;
        *self
            .log_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = id;
        Ok(())
    }

    /// The district secret's bytes, to share with the other front-ends.
    pub fn district_secret_bytes(&self) -> [u8; 32] {
        self.district_secret.secret_bytes()
    }

    /// Writes `secret` as the district secret, durably, for the store's next
    /// open; `Ok(false)` when the store has it already.
    ///
    /// # Errors
    /// [`HubError::Corrupt`] when the store holds events, whose projections
    /// were made under its own secret: a front-end's folder takes the
    /// deployment's secret only while empty.
    pub fn adopt_district_secret(&self, secret: [u8; 32]) -> Result<bool, HubError> {
        if self.district_secret_bytes() == secret {
            return Ok(false);
        }
        let writer = self.lock_writer();
        if *writer > 0 {
            return Err(HubError::Corrupt(
                "this data folder holds a hub made under another district secret than the \
                 cluster's: serve the front-end on an empty folder"
                    .into(),
            ));
        }
        self.tree.insert(format::M_DISTRICT_SECRET, &secret)?;
        self.group.wait_durable(self.group.written(None))?;
        Ok(true)
    }
}
