//! station-mobile: the facade the Android and iOS field-entry apps call.
//!
//! A thin layer over the agent engine ([`station_agent::Agent`]): typed
//! records and enums for every entry form, the views the phone's screens
//! show, and sync with the hub, exported through UniFFI proc macros. The
//! Kotlin, Swift and Python bindings are generated from the built library by
//! this crate's own `uniffi-bindgen` binary (see `scripts/mobile-bindings.sh`).
//!
//! Nothing crosses the boundary as JSON: entries are records, choices are
//! enums, ids are hyphenated UUID strings, dates `YYYY-MM-DD` strings.
//! Failures are one small enum, [`FieldError`], whose messages carry no
//! personal data.
//!
//! # Layout
//!
//! - [`store`]: [`FieldStore`], the `Send + Sync` object the app holds:
//!   opening (or creating) a store on a path, one blocking method per entry
//!   form, the views.
//! - [`entries`]: the entry forms and their enums, their conversion into
//!   event bodies, and what each kind of event shows in a timeline
//!   ([`EntryKind`]); validation itself stays in `station-proto`.
//! - [`views`]: the records the views and the sync calls return.
//! - [`sync`]: `configure` and `sync_now`, one bounded round of the agent's
//!   sync client on a runtime the library owns.
//! - [`keys`]: [`KeyProvider`], the app's key store that wraps each store's
//!   data key (the store is encrypted at rest under it).
//! - [`error`]: [`FieldError`] and the mapping from the agent's errors.
//! - [`transfer`]: transfers of a file between stations: the request, and
//!   the answer of the station asked.
//! - [`review`]: the district's review policy as the hub told it; entries
//!   it names are recorded with their review request.

uniffi::setup_scaffolding!();

pub mod directory;
pub mod entries;
pub mod error;
pub mod keys;
pub mod review;
pub mod store;
pub mod sync;
pub mod transfer;
pub mod views;

pub use directory::DirectoryState;
pub use entries::{
    AbsenceReason, ActivityKind, Assessment, CallOutcome, CaseClosing, CaseMerging, CaseNote,
    CaseOpening, CaseReopening, CaseSource, Category, CommunityActivity, DuplicateDismissal,
    EntryKind, Gender, GroupSession, GuardianCall, NoteKind, Resource, ResourceKind,
    ReviewDecision, ReviewRequest, ReviewSubject, Tier, Training, TrainingKind, Verification,
    Visit, VisitAttempt, VisitKind, Voiding, new_entry_id,
};
pub use error::FieldError;
pub use keys::{KeyProvider, KeyProviderError};
pub use review::ReviewPolicy;
pub use store::{FieldStore, Recorded, StoreOptions};
pub use transfer::{TransferAcceptance, TransferDecline, TransferRequest};
pub use views::{
    CaseStatus, CaseSummary, FollowUp, ParkedEntries, ReviewState, ReviewSummary, StoreStatus,
    SyncReport, TimelineEntry,
};
