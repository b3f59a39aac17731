//! Transfers of a file between stations (转移) in the mobile library: the
//! holding station asks another station to take a file over, and the
//! station asked accepts (naming the community the person now lives in) or
//! declines with a reason.
//!
//! Invariants: each call records one entry through the engine, which
//! refuses a request for a file this station does not hold or that is
//! closed, and an answer to a request this device does not hold, that is
//! addressed to another station, or that is answered already; validation
//! stays in `station-proto`. Errors carry no personal data.
//!
//! The requests of other stations addressed to this one reach the phone
//! with its sync from the city hub (with the file's opening; once accepted,
//! the file's whole history): [`FieldStore::incoming_transfers`] lists
//! those waiting for an answer.

use station_proto::Body;
use station_proto::v1;

use crate::entries::parse_id;
use crate::error::FieldError;
use crate::store::{FieldStore, Recorded};

/// 转移申请: asks another station to take over a file this station holds.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TransferRequest {
    /// The file: its id, 档案编号, or a unique prefix of its id.
    pub case_id: String,
    /// The 9-digit code of the station asked.
    pub to_station_code: String,
    /// Why, up to 500 characters.
    pub reason: String,
    /// `YYYY-MM-DD`.
    pub requested_on: String,
    /// Idempotency key from [`crate::new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

/// 接收转移: this station takes over a file it was asked to.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TransferAcceptance {
    /// The request's entry id.
    pub request_id: String,
    /// The 12-digit community of this station the person now lives in.
    pub community_code: String,
    /// `YYYY-MM-DD`.
    pub accepted_on: String,
    /// Up to 500 characters; may be empty.
    pub note: String,
    /// Idempotency key from [`crate::new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

/// 拒绝转移: this station declines a file it was asked to take.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct TransferDecline {
    /// The request's entry id.
    pub request_id: String,
    /// Why, up to 500 characters.
    pub reason: String,
    /// `YYYY-MM-DD`.
    pub declined_on: String,
    /// Idempotency key from [`crate::new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

/// 待接收转移: another station's request that this station take a file
/// over, waiting for an answer.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct IncomingTransfer {
    /// The request's entry id: what [`TransferAcceptance::request_id`] and
    /// [`TransferDecline::request_id`] name.
    pub request_id: String,
    /// The file's id.
    pub case_id: String,
    /// 档案编号 of the file at the sending station (empty when it has none).
    pub file_number: String,
    /// The person's name.
    pub name: String,
    /// The 9-digit code of the station asking.
    pub from_station_code: String,
    /// Why it asks.
    pub reason: String,
    /// `YYYY-MM-DD`, empty when unknown.
    pub requested_on: String,
    /// Days from the request to today.
    pub age_days: i64,
}

#[uniffi::export]
impl FieldStore {
    /// 待接收转移: the requests of other stations that this station take
    /// a file over, not answered yet as far as this device knows (it
    /// learns them when it syncs with the city hub), oldest first.
    ///
    /// # Errors
    /// [`FieldError::Storage`].
    pub fn incoming_transfers(&self) -> Result<Vec<IncomingTransfer>, FieldError> {
        let today = station_agent::engine::today();
        Ok(self
            .agent()?
            .log()
            .incoming_transfers()?
            .into_iter()
            .map(|t| IncomingTransfer {
                request_id: t.request_id.to_string(),
                case_id: t.case_id.to_string(),
                file_number: t.file_number,
                name: t.name,
                from_station_code: t.from_station,
                reason: t.reason,
                requested_on: t
                    .requested_on
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
                age_days: t
                    .requested_on
                    .map_or(0, |on| (today - on).num_days().max(0)),
            })
            .collect())
    }

    /// 转移申请: asks the station `to_station_code` to take the file over.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`] (also for a file another station
    /// holds), [`FieldError::UnknownCase`], [`FieldError::CaseClosed`].
    pub fn request_transfer(&self, entry: TransferRequest) -> Result<Recorded, FieldError> {
        let case_id = self.resolve("case_transfer_requested.case_id", &entry.case_id)?;
        let body = Body::CaseTransferRequested(v1::CaseTransferRequested {
            case_id: parse_id("case_transfer_requested.case_id", &case_id)?
                .as_bytes()
                .to_vec(),
            to_station_code: entry.to_station_code,
            reason: entry.reason,
            requested_on: entry.requested_on,
        });
        self.record(entry.entry_id, body)
    }

    /// 接收转移: takes over the file of a request addressed to this station.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`]: a request this device does not hold,
    /// addressed to another station or answered already, or a community
    /// outside this station.
    pub fn accept_transfer(&self, entry: TransferAcceptance) -> Result<Recorded, FieldError> {
        let body = Body::CaseTransferAccepted(v1::CaseTransferAccepted {
            // The engine fills the case from the request.
            case_id: Vec::new(),
            request_id: parse_id("case_transfer_accepted.request_id", &entry.request_id)?
                .as_bytes()
                .to_vec(),
            community_code: entry.community_code,
            accepted_on: entry.accepted_on,
            note: entry.note,
        });
        self.record(entry.entry_id, body)
    }

    /// 拒绝转移: declines a request addressed to this station.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`]: a request this device does not hold,
    /// addressed to another station or answered already.
    pub fn decline_transfer(&self, entry: TransferDecline) -> Result<Recorded, FieldError> {
        let body = Body::CaseTransferDeclined(v1::CaseTransferDeclined {
            case_id: Vec::new(),
            request_id: parse_id("case_transfer_declined.request_id", &entry.request_id)?
                .as_bytes()
                .to_vec(),
            reason: entry.reason,
            declined_on: entry.declined_on,
        });
        self.record(entry.entry_id, body)
    }
}
