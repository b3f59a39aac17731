//! The gRPC status of each error the services meet, so the same failure
//! answers with the same code whichever call met it: a broken rule is the
//! caller's (`INVALID_ARGUMENT`, `FAILED_PRECONDITION`, `NOT_FOUND`), a
//! storage failure is `UNAVAILABLE` (retried), corruption is `INTERNAL`.

use tonic::Status;

use crate::params::BadParameter;
use crate::projections::ProjectionError;
use crate::store::HubError;

/// The gRPC status of a store error.
pub fn status_of(error: HubError) -> Status {
    match error {
        HubError::Gap { .. } => Status::failed_precondition(error.to_string()),
        HubError::Malformed { .. } => Status::invalid_argument(error.to_string()),
        HubError::Conflict { .. } => Status::already_exists(error.to_string()),
        HubError::Signature(_) => Status::permission_denied(error.to_string()),
        HubError::UnknownToken(_) => Status::not_found(error.to_string()),
        HubError::TokenRevoked(_) => Status::unauthenticated(error.to_string()),
        HubError::TokenBound { .. } | HubError::OriginTaken(_) | HubError::KeyMismatch(_) => {
            Status::permission_denied(error.to_string())
        }
        HubError::Sled(_) | HubError::Io(_) => Status::unavailable(error.to_string()),
        HubError::Corrupt(_) | HubError::UnsupportedFormat(_) => {
            Status::internal(error.to_string())
        }
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
            ProjectionError::Sled(_) => Status::unavailable(error.to_string()),
            ProjectionError::Corrupt(_) => Status::internal(error.to_string()),
            ProjectionError::BadRequest(_) => Status::invalid_argument(error.to_string()),
            ProjectionError::UnknownCase(_) => Status::not_found(error.to_string()),
        }
    }
}
