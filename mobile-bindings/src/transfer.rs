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

#[uniffi::export]
impl FieldStore {
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
