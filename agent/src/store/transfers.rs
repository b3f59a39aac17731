//! Files of other stations on this device: the events the city hub's
//! transfers feed hands out (a file asked to be transferred to this
//! station: its opening and transfer steps; a file this station took over:
//! its whole history; a file this station held: the answers to its
//! requests), and the transfer requests waiting for this station's answer.
//!
//! # Key spaces (in the store's one tree)
//!
//! | key | value |
//! | --- | --- |
//! | `f:` n | *sealed*: an encoded `Event` of another station, `n` counting up from 1 on this device |
//! | `m:transfer_cursor` | `u64`: the hub position the feed was read through (absent = 0) |
//!
//! Invariants: a page of the feed (its events, their index entries, the
//! views they change and the new cursor) is written in one batch and
//! reported once durable, so a device resumes exactly after the last page
//! it stored; an event already held (own, pulled or handed out before) is
//! skipped; a page with an event without a 16-byte id, or of this station,
//! changes nothing. A file this station never held gets no view (it is not
//! among the station's cases): [`EventLog::incoming_transfers`] lists the
//! requests to answer.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use prost::Message as _;
use station_proto::ids::Uuid;
use station_proto::transfer;
use station_proto::{Body, Event};

use super::{EventLog, Location, M_HLC, Overlay, StoreError, decode_event, get_open, read_u64};
use crate::views;

/// Events of other stations, sealed.
pub(super) const TRANSFERRED: &[u8] = b"f:";
/// The feed's cursor.
pub(super) const M_TRANSFER_CURSOR: &[u8] = b"m:transfer_cursor";

/// What storing a page of the transfers feed did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TransfersApplied {
    /// Events stored.
    pub stored: usize,
    /// Events skipped, already held.
    pub skipped: usize,
    /// The new cursor.
    pub cursor: u64,
}

/// A transfer request of another station waiting for this station's
/// answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingTransfer {
    /// The request's event id: what an acceptance or a decline names.
    pub request_id: Uuid,
    /// The file.
    pub case_id: Uuid,
    /// 档案编号 of the file at the sending station.
    pub file_number: String,
    /// The person's name.
    pub name: String,
    /// The station holding the file, which asks.
    pub from_station: String,
    /// Why it asks.
    pub reason: String,
    /// The day of the request.
    pub requested_on: Option<NaiveDate>,
}

impl EventLog {
    /// The hub position the transfers feed was read through (0 for none).
    ///
    /// # Errors
    /// Storage errors.
    pub fn transfer_cursor(&self) -> Result<u64, StoreError> {
        self.tree
            .get(M_TRANSFER_CURSOR)?
            .map_or(Ok(0), |v| read_u64(&v))
    }

    /// Stores a page of the transfers feed and its cursor in one atomic
    /// write, returning once durable. Events already held are skipped.
    ///
    /// # Errors
    /// [`StoreError::BadPulledEvent`] for an event without a 16-byte id or
    /// of this device's own station (nothing is stored then); storage or
    /// sync errors.
    pub fn apply_transferred(
        &self,
        events: Vec<Event>,
        next_cursor: u64,
    ) -> Result<TransfersApplied, StoreError> {
        let identity = self.identity()?.ok_or(StoreError::NotInitialised)?;
        let mut writer = self.lock_writer();
        let now_ms = self.now_ms();
        let mut overlay = Overlay::writing(&self.tree, &self.values, self.person_key()?);
        let mut affected = BTreeSet::new();
        let mut applied = TransfersApplied {
            cursor: next_cursor,
            ..TransfersApplied::default()
        };
        let mut next = match self.tree.scan_prefix(TRANSFERRED).next_back() {
            Some(last) => read_u64(&last?.0[TRANSFERRED.len()..])?.saturating_add(1),
            None => 1,
        };
        let mut hlc = writer.hlc;
        for event in events {
            if event.event_id.len() != 16 {
                return Err(StoreError::BadPulledEvent(
                    "an event of the transfers feed has no 16-byte event_id".into(),
                ));
            }
            if event.station_code == identity.station_code {
                return Err(StoreError::BadPulledEvent(
                    "the transfers feed handed out an event of this station".into(),
                ));
            }
            if overlay.location_of(&event.event_id)?.is_some() {
                applied.skipped += 1;
                continue;
            }
            hlc.observe(event.hlc, now_ms);
            let location = Location::Transferred(next);
            next = next.saturating_add(1);
            overlay.insert(location.key(), event.encode_to_vec());
            overlay.index(&event, location, &mut affected)?;
            applied.stored += 1;
        }
        overlay.refresh_cases(&affected)?;
        overlay.insert(
            M_TRANSFER_CURSOR.to_vec(),
            next_cursor.to_be_bytes().to_vec(),
        );
        overlay.insert(M_HLC.to_vec(), hlc.last().to_be_bytes().to_vec());
        self.tree.apply_batch(overlay.into_batch()?)?;
        writer.hlc = hlc;
        let ticket = self.group.written(None);
        drop(writer);
        self.group.wait_durable(ticket)?;
        Ok(applied)
    }

    /// The transfer requests of other stations addressed to this station
    /// and not answered yet (as far as this device knows), oldest first.
    ///
    /// # Errors
    /// Storage errors or an event that does not decode.
    pub fn incoming_transfers(&self) -> Result<Vec<IncomingTransfer>, StoreError> {
        let Some(identity) = self.identity()? else {
            return Ok(Vec::new());
        };
        let station = identity.station_code;
        let mut cases = BTreeSet::new();
        for item in self.tree.scan_prefix(TRANSFERRED) {
            let (k, _) = item?;
            let Some(bytes) = get_open(&self.tree, &self.values, &k)? else {
                continue;
            };
            let event = decode_event(&bytes)?;
            if let Some(Body::CaseTransferRequested(m)) = &event.body
                && m.to_station_code == station
                && let Ok(case) = Uuid::from_slice(&m.case_id)
            {
                cases.insert(case);
            }
        }
        let overlay = Overlay::new(&self.tree, &self.values);
        let mut incoming = Vec::new();
        for case_id in cases {
            let events = overlay.live_events(case_id)?;
            let Some(chain) = transfer::chain_of(case_id, &events) else {
                continue;
            };
            let mut folded = events.clone();
            let view = views::fold_case(case_id, &mut folded);
            for request in chain.pending().filter(|r| r.to == station) {
                let reason = events
                    .iter()
                    .find(|e| e.event_id == request.id.as_bytes())
                    .and_then(|e| match &e.body {
                        Some(Body::CaseTransferRequested(m)) => Some(m.reason.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                incoming.push(IncomingTransfer {
                    request_id: request.id,
                    case_id,
                    file_number: view
                        .as_ref()
                        .map(|v| v.file_number.clone())
                        .unwrap_or_default(),
                    name: view.as_ref().map(|v| v.name.clone()).unwrap_or_default(),
                    from_station: request.from.clone(),
                    reason,
                    requested_on: request.requested_on,
                });
            }
        }
        incoming.sort_by(|a, b| {
            a.requested_on
                .cmp(&b.requested_on)
                .then(a.request_id.cmp(&b.request_id))
        });
        Ok(incoming)
    }
}
