//! The device's local views of its station's cases: tier, categories, last
//! visit, next due date, due and overdue follow-ups.
//!
//! The case model is the one both ends share, [`station_proto::case`]; this
//! module names it where the engine uses it. A case's view is the pure fold
//! of the case's events that are not voided, in (hlc, event_id) order, so it
//! does not depend on the order in which events of different devices
//! arrived. The store recomputes one case's view from its events whenever an
//! event of that case (or a void of one) is written, in the same atomic
//! batch; rebuilding every view from the log gives the same result.

pub use station_proto::case::{
    CaseStatus, CaseView, DueFollowUp, TierIntervals, case_key, case_of, category_label,
    due_follow_ups, fold_case, tier_label,
};
