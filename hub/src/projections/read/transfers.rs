//! The bureau's list of pending transfers: each request between stations
//! not answered yet, with its age, by file number and stations only (no
//! name, no ID number).
//!
//! Invariants: a request is listed exactly while the transfer rule
//! ([`station_proto::transfer::chain`]) over the case's live facts says it
//! is pending; the list is read from the case files as the projections
//! hold them, so it follows every void and answer once applied.

use chrono::NaiveDate;
use serde::Serialize;
use station_proto::ids::Uuid;

use crate::projections::error::ProjectionError;
use crate::projections::fold::{self, Stations};
use crate::projections::{Projections, codec, layout};

/// One request waiting for the station asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingTransfer {
    /// The request's event id.
    pub request_id: Uuid,
    /// The case.
    pub case_id: Uuid,
    /// 档案编号 of the case at the sending station.
    pub file_number: String,
    /// The station holding the file, which asked.
    pub from_station: String,
    /// The station asked to take the file.
    pub to_station: String,
    /// The day of the request.
    pub requested_on: Option<NaiveDate>,
    /// Days from the request to the day asked about.
    pub age_days: i64,
}

/// The pending transfers from or to some stations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingTransfers {
    /// The checkpoint the answer is computed through.
    pub computed_through_hub_seq: u64,
    /// The day ages are counted to.
    pub as_of: NaiveDate,
    /// Oldest request first.
    pub transfers: Vec<PendingTransfer>,
}

impl PendingTransfers {
    /// The cases the list names.
    pub fn case_ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.transfers.iter().map(|t| t.case_id)
    }
}

impl Projections {
    /// The transfer requests not answered yet whose sending or receiving
    /// station is one of `stations`, with their age on `as_of`.
    ///
    /// # Errors
    /// Storage errors.
    pub fn pending_transfers(
        &self,
        stations: &[String],
        as_of: NaiveDate,
    ) -> Result<PendingTransfers, ProjectionError> {
        let tree = self.read_gate();
        let checkpoint = self.checkpoint();
        let mut interner = Stations::default();
        let mut transfers = Vec::new();
        layout::for_each_case(&tree, &self.records, |case_id, bytes| {
            let facts = codec::decode_case(bytes, &mut interner)?;
            if !facts.iter().any(|f| f.body.transfer().is_some()) {
                return Ok(());
            }
            let Some(chain) = fold::transfers(case_id, &facts) else {
                return Ok(());
            };
            let file_number = fold::community_and_number_of(case_id, &facts)
                .map(|(_, number)| number)
                .unwrap_or_default();
            for request in chain.pending() {
                if !stations
                    .iter()
                    .any(|s| *s == request.from || *s == request.to)
                {
                    continue;
                }
                transfers.push(PendingTransfer {
                    request_id: request.id,
                    case_id,
                    file_number: file_number.clone(),
                    from_station: request.from.clone(),
                    to_station: request.to.clone(),
                    requested_on: request.requested_on,
                    age_days: request
                        .requested_on
                        .map_or(0, |on| (as_of - on).num_days().max(0)),
                });
            }
            Ok(())
        })?;
        transfers.sort_by(|a, b| {
            a.requested_on
                .cmp(&b.requested_on)
                .then(a.request_id.cmp(&b.request_id))
        });
        Ok(PendingTransfers {
            computed_through_hub_seq: checkpoint,
            as_of,
            transfers,
        })
    }
}
