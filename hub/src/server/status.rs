//! The gRPC status of each error the services meet, so the same failure
//! answers with the same code whichever call met it: a broken rule is the
//! caller's (`INVALID_ARGUMENT`, `FAILED_PRECONDITION`, `NOT_FOUND`), a
//! storage failure is `UNAVAILABLE` (retried), a store of a format the hub
//! does not know is `INTERNAL`, and a record the hub cannot decode or a
//! store page that fails its checksum is `DATA_LOSS`, naming where:
//! permanent, never retried as if the disk might heal, and logged (at most
//! once per interval) for the operator.

use tonic::Status;

use crate::guard::Throttle;
use crate::params::BadParameter;
use crate::projections::ProjectionError;
use crate::store::HubError;

/// The answer to a read that met a store page failing its checksum: a
/// permanent error naming the page's position in the store's files.
fn corrupt_page(at: Option<sled::DiskPtr>) -> Status {
    let at = at.map_or_else(|| "an unknown position".to_string(), |at| format!("{at:?}"));
    corrupt(&at)
}

/// A permanent error naming where the store is corrupt, logged for the
/// operator at most once per interval.
fn corrupt(at: &str) -> Status {
    static LOGGED: std::sync::LazyLock<Throttle> = std::sync::LazyLock::new(Throttle::default);
    if let Some(times) = LOGGED.note() {
        tracing::error!(
            at,
            times,
            "the hub's store is corrupt: restore it from a backup (station-hub restore)"
        );
    }
    Status::data_loss(format!(
        "the hub's store is corrupt at {at}: restore it from a backup; retrying will not help"
    ))
}

/// The gRPC status of a store error.
pub fn status_of(error: HubError) -> Status {
    match error {
        HubError::Gap { .. } => Status::failed_precondition(error.to_string()),
        HubError::Malformed { .. } => Status::invalid_argument(error.to_string()),
        HubError::Conflict { .. } => Status::already_exists(error.to_string()),
        HubError::Signature(_) => Status::permission_denied(error.to_string()),
        HubError::UnknownToken(_) => Status::not_found(error.to_string()),
        HubError::Sled(sled::Error::Corruption { at, .. }) => corrupt_page(at),
        HubError::TokenRevoked(_) => Status::unauthenticated(error.to_string()),
        HubError::TokenBound { .. } | HubError::OriginTaken(_) | HubError::KeyMismatch(_) => {
            Status::permission_denied(error.to_string())
        }
        HubError::Sled(_) | HubError::Io(_) => Status::unavailable(error.to_string()),
        HubError::Corrupt(what) => corrupt(&what),
        HubError::UnsupportedFormat(_) | HubError::Seal(_) => Status::internal(error.to_string()),
    }
}

impl From<BadParameter> for Status {
    fn from(error: BadParameter) -> Self {
        Status::invalid_argument(error.0)
    }
}

impl From<HubError> for Status {
    fn from(error: HubError) -> Self {
        status_of(error)
    }
}

impl From<ProjectionError> for Status {
    fn from(error: ProjectionError) -> Self {
        match error {
            ProjectionError::Store(store) => status_of(store),
            ProjectionError::Sled(sled::Error::Corruption { at, .. }) => corrupt_page(at),
            ProjectionError::Sled(_) => Status::unavailable(error.to_string()),
            ProjectionError::Corrupt(_) => Status::internal(error.to_string()),
            ProjectionError::BadRequest(_) => Status::invalid_argument(error.to_string()),
            ProjectionError::UnknownCase(_) => Status::not_found(error.to_string()),
            ProjectionError::Audit(_) => Status::unavailable(error.to_string()),
        }
    }
}
