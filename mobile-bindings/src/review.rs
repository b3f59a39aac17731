//! Supervision on the phone: the district's review policy as the hub last
//! told it, so that the app can say, before a worker saves a tier change, a
//! case plan or a closure, that a supervisor will review it.
//!
//! The requests themselves need no call of their own: an entry of a kind
//! the policy names is recorded with its `ReviewRequested`
//! ([`crate::Recorded::review_request_id`]), offline, by the engine's
//! [`station_agent::Agent::record_reviewed`].
//!
//! Invariants: the policy is read from the store (kept there durably by
//! the last sync whose hub told one); before any sync told one, nothing
//! needs review.

use crate::entries::ReviewSubject;
use crate::error::FieldError;
use crate::store::FieldStore;

/// Which entries need a supervisor's review in the district (督导审核).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, uniffi::Record)]
pub struct ReviewPolicy {
    /// Tier changes (分档调整).
    pub tier_change: bool,
    /// Case plans (服务计划: notes of kind plan).
    pub case_plan: bool,
    /// Closures (结案).
    pub closure: bool,
}

impl ReviewPolicy {
    /// Whether entries of `subject` need review.
    pub fn requires(&self, subject: ReviewSubject) -> bool {
        match subject {
            ReviewSubject::TierChange => self.tier_change,
            ReviewSubject::CasePlan => self.case_plan,
            ReviewSubject::Closure => self.closure,
        }
    }
}

#[uniffi::export]
impl FieldStore {
    /// The district's review policy as the hub last told this phone (at the
    /// start of a sync): which entries are recorded with a request for a
    /// supervisor's review. Nothing needs review before the first sync.
    ///
    /// # Errors
    /// [`FieldError::Storage`]; [`FieldError::Locked`], [`FieldError::Wiped`].
    pub fn review_policy(&self) -> Result<ReviewPolicy, FieldError> {
        let policy = self
            .agent()?
            .log()
            .review_policy()
            .map_err(station_agent::AgentError::from)?;
        Ok(ReviewPolicy {
            tier_change: policy.tier_change,
            case_plan: policy.case_plan,
            closure: policy.closure,
        })
    }

    /// Whether an entry of `subject` made now would be recorded with a
    /// request for a supervisor's review: the app's prompt before saving.
    ///
    /// # Errors
    /// As [`FieldStore::review_policy`].
    pub fn needs_review(&self, subject: ReviewSubject) -> Result<bool, FieldError> {
        Ok(self.review_policy()?.requires(subject))
    }
}
