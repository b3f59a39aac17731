//! station-mobile: the facade the Android and iOS field-entry apps call.
//!
//! It exposes the agent engine ([`station_agent::Agent`]) through a small,
//! stable surface; the UniFFI bindings are generated from this crate.

pub use station_agent::Agent;

/// The error the apps see: a small enum whose messages carry no personal data.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    /// The entry breaks a rule; the message names the field and the rule.
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// Field and rule, never the value entered.
        reason: String,
    },
    /// The device's storage failed.
    #[error("storage error: {reason}")]
    Storage {
        /// What failed.
        reason: String,
    },
}
