//! The errors of the projections: of the log they read, of their own tree,
//! and of a question that is not well formed. Messages name no person.

use crate::store::HubError;

/// Errors of the projections.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The hub's store failed.
    #[error(transparent)]
    Store(#[from] HubError),
    /// sled failed on the projections tree.
    #[error("projection storage error: {0}")]
    Sled(#[from] sled::Error),
    /// Bytes of the projections tree do not decode.
    #[error("projections are corrupt: {0}; run `station-hub rebuild`")]
    Corrupt(String),
    /// The question is not well formed.
    #[error("{0}")]
    BadRequest(String),
    /// The read could not be recorded in the read audit, so it is refused.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// No case has this id.
    #[error("no case {0} is known")]
    UnknownCase(station_proto::ids::Uuid),
}

impl From<station_agent::seal::SealError> for ProjectionError {
    fn from(error: station_agent::seal::SealError) -> Self {
        ProjectionError::Store(HubError::Seal(error))
    }
}
