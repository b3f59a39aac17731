//! The district's review policy as the hub last told it
//! ([`station_proto::review::ReviewPolicy`]): which entries of a case need a
//! supervisor's review, kept with the sync state so that a device asks for
//! the reviews its district wants while offline, and after a restart.
//!
//! # Key space (in the store's one tree)
//!
//! | key | value |
//! | --- | --- |
//! | `m:review_policy` | JSON [`ReviewPolicy`], as the hub's last `Hello` gave it (absent = never told: nothing needs review) |
//!
//! Not sealed: it holds three booleans of the district's configuration,
//! nothing of a person.
//!
//! Invariants: the policy changes only by a `Hello` answer that carries one
//! (an answer without, from a station relay, leaves it as it is); it is
//! written durably before the call reports it kept; like the rest of the
//! sync client's bookkeeping it never changes an event, a cursor or a view.

use station_proto::review::ReviewPolicy;

use super::{EventLog, StoreError};

/// The review policy.
const M_REVIEW_POLICY: &[u8] = b"m:review_policy";

impl EventLog {
    /// The review policy the hub last told this device; the default
    /// (nothing needs review) when it never told one.
    ///
    /// # Errors
    /// Storage errors; a record that does not decode.
    pub fn review_policy(&self) -> Result<ReviewPolicy, StoreError> {
        match self.tree.get(M_REVIEW_POLICY)? {
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("review policy: {e}"))),
            None => Ok(ReviewPolicy::default()),
        }
    }

    /// Keeps the review policy a `Hello` answered, durably; returns whether
    /// it differs from the one held.
    ///
    /// # Errors
    /// Storage or sync errors.
    pub fn set_review_policy(&self, policy: &ReviewPolicy) -> Result<bool, StoreError> {
        let json = serde_json::to_vec(policy)
            .map_err(|e| StoreError::Corrupt(format!("review policy: {e}")))?;
        let writer = self.lock_writer();
        if self.tree.get(M_REVIEW_POLICY)?.as_deref() == Some(json.as_slice()) {
            return Ok(false);
        }
        self.tree.insert(M_REVIEW_POLICY, json)?;
        let ticket = self.group.written(None);
        drop(writer);
        self.group.wait_durable(ticket)?;
        Ok(true)
    }
}
