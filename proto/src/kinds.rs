//! One place per event kind: what every part of the system asks of a body,
//! answered once for each body type.
//!
//! [`Kind`] is implemented once per message of the `Event.body` oneof. Its
//! required methods answer what each concern asks of a body (its name, its
//! validation, the case it is about, what it says to the case's view, how it
//! is masked, what a review could be about, who writes it, what a device
//! checks before recording it), so each concern calls the trait instead of
//! keeping its own list of kinds; the provided methods answer for the few
//! kinds that carry a merge or a transfer.
//!
//! Invariants:
//! - The list of kinds in `each_kind!`, expanded by [`Body::kind`] and
//!   [`Body::kind_mut`], is the only exhaustive match over [`Body`] that
//!   classifies: adding a variant to `event.proto` makes the compiler point
//!   at it, then at the missing `impl Kind`, then at the consumers that
//!   genuinely derive something per kind (the hub's fold, the mobile
//!   timeline), which match exhaustively on purpose.
//! - The provided methods answer only for what one or two kinds are (a
//!   merge, a transfer); every other method has no default, so a new kind
//!   decides each answer (it cannot be masked, routed, authorised or checked
//!   by omission).
//!
//! Adding an event kind: its message and oneof field in `event.proto`; its
//! `impl Kind` here (with the names of any enum of its own, through
//! `named!`); its arm in `each_kind!`; then what the compiler asks for
//! elsewhere, and the entry forms (CLI command, mobile record) that record
//! it.

use uuid::Uuid;

use crate::Body;
use crate::case::{CaseStep, parse_date};
use crate::mask::{self, Shown};
use crate::names::named;
use crate::transfer::TransferStep;
use crate::v1::{
    AbsenceReason, ActivityHeld, BeneficiaryVerified, CallOutcome, CaseAssessed, CaseClosed,
    CaseNoteAdded, CaseOpened, CaseReopened, CaseTransferAccepted, CaseTransferDeclined,
    CaseTransferRequested, CasesMerged, DuplicateDismissed, EventVoided, GroupSessionHeld,
    GuardianCalled, NoteKind, ResourceLinked, ReviewApproved, ReviewRequested, ReviewReturned,
    ReviewSubject, TrainingHeld, VisitAttempted, VisitRecorded,
};
use crate::validate::{self, Context, Invalid};

/// Who may write an event of a kind, as the hub checks a token's pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// A social worker's device (or a relay forwarding it).
    Worker,
    /// A supervisor: review decisions are the only events a supervisor's
    /// token pushes.
    Supervisor,
}

/// What the recording device checks against what it holds before it
/// records an entry of a kind (after validation, which needs no state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recording<'a> {
    /// About no case (station activities, trainings, a resource for the
    /// community): nothing to check.
    Free,
    /// About a case the device must know, open or not (notes,
    /// verifications, resources linked for a case).
    KnownCase {
        /// The field that names the case, for the error.
        field: &'static str,
        /// The case id as carried.
        case_id: &'a [u8],
    },
    /// A service or decision on a case that must be open.
    OpenCase {
        /// The field that names the case, for the error.
        field: &'static str,
        /// The case id as carried.
        case_id: &'a [u8],
    },
    /// A file opened: one open file per person, and the district directory.
    Opening,
    /// A closed file reopened: it must be closed, and its person have no
    /// other open file.
    Reopening {
        /// The case id as carried.
        case_id: &'a [u8],
    },
    /// Two files merged: neither may be part of another merge.
    Merge {
        /// The file that stays.
        survivor: &'a [u8],
        /// The file absorbed into it.
        absorbed: &'a [u8],
    },
    /// A duplicate flag lifted: both files must be known.
    Dismissal {
        /// The flagged file.
        case_id: &'a [u8],
        /// The file it was flagged as a duplicate of.
        of: &'a [u8],
    },
    /// A review asked for: the event under review must be a live event of
    /// the case, of the subject's kind.
    ReviewRequest {
        /// The case id as carried.
        case_id: &'a [u8],
        /// The subject, as carried.
        subject: i32,
        /// The event under review, as carried.
        subject_event_id: &'a [u8],
    },
    /// A review decided: the request must be pending at this device.
    ReviewDecision {
        /// The body's name, prefixing the fields of errors.
        prefix: &'static str,
        /// The case id as carried.
        case_id: &'a [u8],
        /// The request decided, as carried.
        request_id: &'a [u8],
    },
    /// A transfer asked for: the file must be held here and not already
    /// asked for.
    TransferRequest {
        /// The case id as carried.
        case_id: &'a [u8],
    },
    /// A transfer answered: the request must be pending and addressed here.
    TransferAnswer {
        /// The body's name, prefixing the fields of errors.
        prefix: &'static str,
        /// The case id as carried.
        case_id: &'a [u8],
        /// The request answered, as carried.
        request_id: &'a [u8],
    },
    /// An earlier event voided: it must exist, not be a void, and not be
    /// voided already.
    Void {
        /// The voided event's id, as carried.
        voided_event_id: &'a [u8],
    },
}

/// The id of the latest case event an entry's author saw, which a device
/// fills in when the entry leaves it empty.
#[derive(Debug)]
pub struct LastSeen<'a> {
    /// The field that names the case, for the error.
    pub field: &'static str,
    /// The case id as carried (empty while a decision names only its
    /// request).
    pub case_id: &'a [u8],
    /// The id, empty until filled.
    pub last_seen_event_id: &'a mut Vec<u8>,
}

/// The facts of one kind of event body. Implemented once per body message.
pub trait Kind {
    /// The body's snake_case name, as its field of the `Event.body` oneof is
    /// named: the prefix of its validation errors.
    fn name(&self) -> &'static str;

    /// Checks the body's own rules, normalising its text in place; see
    /// [`crate::validate`] for the rules every body keeps.
    ///
    /// # Errors
    /// The first broken rule, as `<name>.<field>`.
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid>;

    /// The case the body is about, as carried: `None` for a body about no
    /// existing case (an opening names no case yet: its own id is the case's).
    fn case_id(&self) -> Option<&[u8]>;

    /// What the body says to its case's view (an opening included); `None`
    /// for a body about no case.
    fn step(&self) -> Option<CaseStep<'_>>;

    /// Applies `shown` (never [`Shown::Revealed`]) to the personal fields
    /// the body carries: masked or cleared.
    fn mask(&mut self, shown: Shown);

    /// Who may write the body.
    fn writer(&self) -> Writer;

    /// What a review of this body would be about; `None` for a body no
    /// review is about.
    fn review_subject(&self) -> Option<ReviewSubject>;

    /// What the recording device checks before recording it.
    fn recording(&self) -> Recording<'_>;

    /// The last case event the author saw, for the bodies that carry it.
    fn last_seen(&mut self) -> Option<LastSeen<'_>>;

    /// The (survivor, absorbed) files of a merge whose ids are 16 bytes
    /// each; `None` for a body that merges nothing.
    fn merge(&self) -> Option<(Uuid, Uuid)> {
        None
    }

    /// What the body says of a transfer; `None` for a body that is not a
    /// transfer request or answer.
    fn transfer(&self) -> Option<TransferStep<'_>> {
        None
    }

    /// The (case, request) of a transfer answer, each 16 bytes; `None` for
    /// a body that answers no transfer.
    fn transfer_answer(&self) -> Option<(Uuid, Uuid)> {
        None
    }
}

/// The one list of kinds: expands `$on` once per variant of [`Body`], with
/// `$m` bound to its message.
macro_rules! each_kind {
    ($body:expr, $m:ident => $on:expr) => {
        match $body {
            Body::CaseOpened($m) => $on,
            Body::CaseAssessed($m) => $on,
            Body::CaseNoteAdded($m) => $on,
            Body::CaseClosed($m) => $on,
            Body::CaseReopened($m) => $on,
            Body::VisitRecorded($m) => $on,
            Body::BeneficiaryVerified($m) => $on,
            Body::ActivityHeld($m) => $on,
            Body::GroupSessionHeld($m) => $on,
            Body::ResourceLinked($m) => $on,
            Body::TrainingHeld($m) => $on,
            Body::EventVoided($m) => $on,
            Body::GuardianCalled($m) => $on,
            Body::CasesMerged($m) => $on,
            Body::DuplicateDismissed($m) => $on,
            Body::CaseTransferRequested($m) => $on,
            Body::CaseTransferAccepted($m) => $on,
            Body::CaseTransferDeclined($m) => $on,
            Body::ReviewRequested($m) => $on,
            Body::ReviewApproved($m) => $on,
            Body::ReviewReturned($m) => $on,
            Body::VisitAttempted($m) => $on,
        }
    };
}

impl Body {
    /// The facts of this body's kind.
    pub fn kind(&self) -> &dyn Kind {
        each_kind!(self, m => m)
    }

    /// The facts of this body's kind, for the questions that change it.
    pub fn kind_mut(&mut self) -> &mut dyn Kind {
        each_kind!(self, m => m)
    }
}

/// `Some(bytes)` unless `bytes` is empty (an optional case id left out).
fn present(bytes: &[u8]) -> Option<&[u8]> {
    (!bytes.is_empty()).then_some(bytes)
}

// ---------------------------------------------------------------------------------------------
// The kinds
// ---------------------------------------------------------------------------------------------

impl Kind for CaseOpened {
    fn name(&self) -> &'static str {
        "case_opened"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::case_opened(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        None
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        Some(CaseStep::Opened {
            name: &self.name,
            community_code: &self.community_code,
            categories: &self.categories,
            tier: self.tier,
            opened_on: parse_date(&self.opened_on),
            file_number: &self.file_number,
        })
    }
    fn mask(&mut self, shown: Shown) {
        self.name = mask::name(&self.name, shown);
        if shown == Shown::Deidentified {
            self.id_number.clear();
            self.phone.clear();
            self.address.clear();
        } else {
            self.id_number = mask::id_number(&self.id_number);
            self.phone = mask::phone(&self.phone);
            self.address = mask::address(&self.address);
        }
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::Opening
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
}

impl Kind for CaseAssessed {
    fn name(&self) -> &'static str {
        "case_assessed"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::case_assessed(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        Some(&self.case_id)
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        Some(CaseStep::Assessed { tier: self.tier })
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.reason, shown);
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        Some(ReviewSubject::TierChange)
    }
    fn recording(&self) -> Recording<'_> {
        Recording::OpenCase {
            field: "case_assessed.case_id",
            case_id: &self.case_id,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        Some(LastSeen {
            field: "case_assessed.case_id",
            case_id: &self.case_id,
            last_seen_event_id: &mut self.last_seen_event_id,
        })
    }
}

impl Kind for CaseNoteAdded {
    fn name(&self) -> &'static str {
        "case_note_added"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::case_note_added(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        Some(&self.case_id)
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        Some(CaseStep::Recorded)
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.text, shown);
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        (self.kind == NoteKind::Plan as i32).then_some(ReviewSubject::CasePlan)
    }
    fn recording(&self) -> Recording<'_> {
        Recording::KnownCase {
            field: "case_note_added.case_id",
            case_id: &self.case_id,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
}

impl Kind for CaseClosed {
    fn name(&self) -> &'static str {
        "case_closed"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::case_closed(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        Some(&self.case_id)
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        Some(CaseStep::Closed)
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.reason, shown);
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        Some(ReviewSubject::Closure)
    }
    fn recording(&self) -> Recording<'_> {
        Recording::OpenCase {
            field: "case_closed.case_id",
            case_id: &self.case_id,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
}

impl Kind for CaseReopened {
    fn name(&self) -> &'static str {
        "case_reopened"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::case_reopened(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        Some(&self.case_id)
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        Some(CaseStep::Reopened {
            reopened_on: parse_date(&self.reopened_on),
            tier: self.tier,
        })
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.reason, shown);
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::Reopening {
            case_id: &self.case_id,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
}

impl Kind for VisitRecorded {
    fn name(&self) -> &'static str {
        "visit_recorded"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::visit_recorded(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        Some(&self.case_id)
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        Some(CaseStep::Visited {
            visit_date: parse_date(&self.visit_date),
        })
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.notes, shown);
        if shown == Shown::Deidentified {
            self.needs_found.clear();
        }
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::OpenCase {
            field: "visit_recorded.case_id",
            case_id: &self.case_id,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
}

named!(CallOutcome {
    Reached => "reached",
    NoAnswer => "no-answer",
    Unreachable => "unreachable",
});

impl Kind for GuardianCalled {
    fn name(&self) -> &'static str {
        "guardian_called"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::guardian_called(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        Some(&self.case_id)
    }
    /// A call is not a follow-up visit: it leaves the next due day alone.
    fn step(&self) -> Option<CaseStep<'_>> {
        Some(CaseStep::Recorded)
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.notes, shown);
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::OpenCase {
            field: "guardian_called.case_id",
            case_id: &self.case_id,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
}

named!(AbsenceReason {
    NobodyHome => "nobody-home",
    Away => "away",
    Moved => "moved",
    Other => "other",
} aliases {
    "家中无人" => NobodyHome,
    "外出" => Away,
    "已搬离" => Moved,
    "其他" => Other,
});

/// 上门未遇: counted apart from visits, and never standing for one.
impl Kind for VisitAttempted {
    fn name(&self) -> &'static str {
        "visit_attempted"
    }
    /// `case_id` 16 bytes; `attempted_on` a [`validate::date`]; `reason`
    /// specified; `notes` at most [`validate::NOTE_MAX`] characters.
    fn validate(&mut self, _station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::uuid16("visit_attempted.case_id", &self.case_id)?;
        validate::date("visit_attempted.attempted_on", &self.attempted_on, ctx)?;
        validate::required_enum::<AbsenceReason>("visit_attempted.reason", self.reason)?;
        validate::text(
            "visit_attempted.notes",
            &mut self.notes,
            validate::NOTE_MAX,
            false,
        )
    }
    fn case_id(&self) -> Option<&[u8]> {
        Some(&self.case_id)
    }
    /// Nobody was seen: the case is still due its follow-up.
    fn step(&self) -> Option<CaseStep<'_>> {
        Some(CaseStep::Recorded)
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.notes, shown);
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::OpenCase {
            field: "visit_attempted.case_id",
            case_id: &self.case_id,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
}

impl Kind for BeneficiaryVerified {
    fn name(&self) -> &'static str {
        "beneficiary_verified"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::beneficiary_verified(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        Some(&self.case_id)
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        Some(CaseStep::Verified {
            categories: &self.categories,
        })
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.notes, shown);
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::KnownCase {
            field: "beneficiary_verified.case_id",
            case_id: &self.case_id,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
}

impl Kind for ActivityHeld {
    fn name(&self) -> &'static str {
        "activity_held"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::activity_held(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        None
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        None
    }
    /// About a community, not one person.
    fn mask(&mut self, _shown: Shown) {}
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::Free
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
}

impl Kind for GroupSessionHeld {
    fn name(&self) -> &'static str {
        "group_session_held"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::group_session_held(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        None
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        None
    }
    /// About a group, not one person.
    fn mask(&mut self, _shown: Shown) {}
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::Free
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
}

impl Kind for ResourceLinked {
    fn name(&self) -> &'static str {
        "resource_linked"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::resource_linked(self, station_code, ctx)
    }
    /// A resource linked for the community names no case.
    fn case_id(&self) -> Option<&[u8]> {
        present(&self.case_id)
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        present(&self.case_id).map(|_| CaseStep::Recorded)
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.description, shown);
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        match present(&self.case_id) {
            Some(case_id) => Recording::KnownCase {
                field: "resource_linked.case_id",
                case_id,
            },
            None => Recording::Free,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
}

impl Kind for TrainingHeld {
    fn name(&self) -> &'static str {
        "training_held"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::training_held(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        None
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        None
    }
    /// About the station's workers, not one person served.
    fn mask(&mut self, _shown: Shown) {}
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::Free
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
}

impl Kind for EventVoided {
    fn name(&self) -> &'static str {
        "event_voided"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::event_voided(self, station_code, ctx)
    }
    /// A void is about the event it voids, whatever that is about.
    fn case_id(&self) -> Option<&[u8]> {
        None
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        None
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.reason, shown);
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::Void {
            voided_event_id: &self.voided_event_id,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
}

impl Kind for CasesMerged {
    fn name(&self) -> &'static str {
        "cases_merged"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::cases_merged(self, station_code, ctx)
    }
    /// A merge belongs to the survivor.
    fn case_id(&self) -> Option<&[u8]> {
        Some(&self.survivor_case_id)
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        Some(CaseStep::Recorded)
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.reason, shown);
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::Merge {
            survivor: &self.survivor_case_id,
            absorbed: &self.absorbed_case_id,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
    fn merge(&self) -> Option<(Uuid, Uuid)> {
        Some((
            Uuid::from_slice(&self.survivor_case_id).ok()?,
            Uuid::from_slice(&self.absorbed_case_id).ok()?,
        ))
    }
}

impl Kind for DuplicateDismissed {
    fn name(&self) -> &'static str {
        "duplicate_dismissed"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::duplicate_dismissed(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        Some(&self.case_id)
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        Some(CaseStep::Recorded)
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.reason, shown);
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::Dismissal {
            case_id: &self.case_id,
            of: &self.duplicate_of_case_id,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
}

impl Kind for CaseTransferRequested {
    fn name(&self) -> &'static str {
        "case_transfer_requested"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::case_transfer_requested(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        Some(&self.case_id)
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        Some(CaseStep::Recorded)
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.reason, shown);
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::TransferRequest {
            case_id: &self.case_id,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
    fn transfer(&self) -> Option<TransferStep<'_>> {
        Some(TransferStep::Requested {
            to: &self.to_station_code,
            on: parse_date(&self.requested_on),
        })
    }
}

impl Kind for CaseTransferAccepted {
    fn name(&self) -> &'static str {
        "case_transfer_accepted"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::case_transfer_accepted(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        Some(&self.case_id)
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        Some(CaseStep::Recorded)
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.note, shown);
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::TransferAnswer {
            prefix: "case_transfer_accepted",
            case_id: &self.case_id,
            request_id: &self.request_id,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
    fn transfer(&self) -> Option<TransferStep<'_>> {
        Some(TransferStep::Accepted {
            request: Uuid::from_slice(&self.request_id).ok(),
            community_code: &self.community_code,
            on: parse_date(&self.accepted_on),
        })
    }
    fn transfer_answer(&self) -> Option<(Uuid, Uuid)> {
        Some((
            Uuid::from_slice(&self.case_id).ok()?,
            Uuid::from_slice(&self.request_id).ok()?,
        ))
    }
}

impl Kind for CaseTransferDeclined {
    fn name(&self) -> &'static str {
        "case_transfer_declined"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::case_transfer_declined(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        Some(&self.case_id)
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        Some(CaseStep::Recorded)
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.reason, shown);
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::TransferAnswer {
            prefix: "case_transfer_declined",
            case_id: &self.case_id,
            request_id: &self.request_id,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        None
    }
    fn transfer(&self) -> Option<TransferStep<'_>> {
        Some(TransferStep::Declined {
            request: Uuid::from_slice(&self.request_id).ok(),
            on: parse_date(&self.declined_on),
        })
    }
    fn transfer_answer(&self) -> Option<(Uuid, Uuid)> {
        Some((
            Uuid::from_slice(&self.case_id).ok()?,
            Uuid::from_slice(&self.request_id).ok()?,
        ))
    }
}

impl Kind for ReviewRequested {
    fn name(&self) -> &'static str {
        "review_requested"
    }
    fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
        validate::review_requested(self, station_code, ctx)
    }
    fn case_id(&self) -> Option<&[u8]> {
        Some(&self.case_id)
    }
    fn step(&self) -> Option<CaseStep<'_>> {
        Some(CaseStep::ReviewRequested {
            subject: self.subject,
            subject_event: Uuid::from_slice(&self.subject_event_id).ok(),
            requested_on: parse_date(&self.requested_on),
        })
    }
    fn mask(&mut self, shown: Shown) {
        mask::free_text(&mut self.note, shown);
    }
    fn writer(&self) -> Writer {
        Writer::Worker
    }
    fn review_subject(&self) -> Option<ReviewSubject> {
        None
    }
    fn recording(&self) -> Recording<'_> {
        Recording::ReviewRequest {
            case_id: &self.case_id,
            subject: self.subject,
            subject_event_id: &self.subject_event_id,
        }
    }
    fn last_seen(&mut self) -> Option<LastSeen<'_>> {
        Some(LastSeen {
            field: "review_requested.case_id",
            case_id: &self.case_id,
            last_seen_event_id: &mut self.last_seen_event_id,
        })
    }
}

/// A supervisor's decision on a review request: approved and returned carry
/// the same fields and answer alike, but for what the decision is and how
/// each is validated (a return must say what to change).
macro_rules! review_decision {
    ($message:ty, $name:literal, $approved:literal, $validate:path) => {
        impl Kind for $message {
            fn name(&self) -> &'static str {
                $name
            }
            fn validate(&mut self, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
                $validate(self, station_code, ctx)
            }
            fn case_id(&self) -> Option<&[u8]> {
                Some(&self.case_id)
            }
            fn step(&self) -> Option<CaseStep<'_>> {
                Some(CaseStep::ReviewDecided {
                    request: Uuid::from_slice(&self.request_id).ok(),
                    approved: $approved,
                    last_seen: Uuid::from_slice(&self.last_seen_event_id).ok(),
                    decided_on: parse_date(&self.decided_on),
                    comment: &self.comment,
                })
            }
            fn mask(&mut self, shown: Shown) {
                mask::free_text(&mut self.comment, shown);
            }
            fn writer(&self) -> Writer {
                Writer::Supervisor
            }
            fn review_subject(&self) -> Option<ReviewSubject> {
                None
            }
            fn recording(&self) -> Recording<'_> {
                Recording::ReviewDecision {
                    prefix: $name,
                    case_id: &self.case_id,
                    request_id: &self.request_id,
                }
            }
            fn last_seen(&mut self) -> Option<LastSeen<'_>> {
                Some(LastSeen {
                    field: concat!($name, ".case_id"),
                    case_id: &self.case_id,
                    last_seen_event_id: &mut self.last_seen_event_id,
                })
            }
        }
    };
}

review_decision!(
    ReviewApproved,
    "review_approved",
    true,
    validate::review_approved
);
review_decision!(
    ReviewReturned,
    "review_returned",
    false,
    validate::review_returned
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names;

    /// One body of every kind, each with its defaults.
    fn every_kind() -> Vec<Body> {
        vec![
            Body::CaseOpened(CaseOpened::default()),
            Body::CaseAssessed(CaseAssessed::default()),
            Body::CaseNoteAdded(CaseNoteAdded::default()),
            Body::CaseClosed(CaseClosed::default()),
            Body::CaseReopened(CaseReopened::default()),
            Body::VisitRecorded(VisitRecorded::default()),
            Body::BeneficiaryVerified(BeneficiaryVerified::default()),
            Body::ActivityHeld(ActivityHeld::default()),
            Body::GroupSessionHeld(GroupSessionHeld::default()),
            Body::ResourceLinked(ResourceLinked::default()),
            Body::TrainingHeld(TrainingHeld::default()),
            Body::EventVoided(EventVoided::default()),
            Body::GuardianCalled(GuardianCalled::default()),
            Body::CasesMerged(CasesMerged::default()),
            Body::DuplicateDismissed(DuplicateDismissed::default()),
            Body::CaseTransferRequested(CaseTransferRequested::default()),
            Body::CaseTransferAccepted(CaseTransferAccepted::default()),
            Body::CaseTransferDeclined(CaseTransferDeclined::default()),
            Body::ReviewRequested(ReviewRequested::default()),
            Body::ReviewApproved(ReviewApproved::default()),
            Body::ReviewReturned(ReviewReturned::default()),
            Body::VisitAttempted(VisitAttempted::default()),
        ]
    }

    #[test]
    fn an_empty_body_is_refused_under_its_own_name() {
        let ctx = Context::on(chrono::NaiveDate::from_ymd_opt(2026, 11, 2).expect("a date"));
        for mut body in every_kind() {
            let name = body.kind().name();
            let refused = body.kind_mut().validate("540502001", &ctx).expect_err(name);
            assert!(
                refused.field.starts_with(&format!("{name}.")),
                "{name}: {refused}"
            );
        }
    }

    #[test]
    fn only_review_decisions_are_a_supervisors_to_write() {
        for body in every_kind() {
            let decision = matches!(body, Body::ReviewApproved(_) | Body::ReviewReturned(_));
            assert_eq!(
                body.kind().writer() == Writer::Supervisor,
                decision,
                "{}",
                body.kind().name()
            );
        }
    }

    #[test]
    fn a_case_event_names_its_case_and_steps_its_view() {
        let case = Uuid::now_v7();
        let mut call = Body::GuardianCalled(GuardianCalled {
            case_id: case.as_bytes().to_vec(),
            notes: "孩子由奶奶照看".into(),
            ..GuardianCalled::default()
        });
        assert_eq!(crate::case::case_of(&call), Some(case));
        // A call is not a visit: it leaves the next due day alone.
        assert_eq!(call.kind().step(), Some(CaseStep::Recorded));
        crate::mask::body(&mut call, Shown::Masked);
        let Body::GuardianCalled(shown) = &call else {
            unreachable!()
        };
        assert_eq!(shown.notes, "孩子由奶奶照看");
        crate::mask::body(&mut call, Shown::Deidentified);
        let Body::GuardianCalled(shown) = &call else {
            unreachable!()
        };
        assert!(shown.notes.is_empty());
        let community = Body::ResourceLinked(ResourceLinked::default());
        assert_eq!(community.kind().case_id(), None);
        assert_eq!(community.kind().step(), None);
        assert_eq!(community.kind().recording(), Recording::Free);
    }

    #[test]
    fn call_outcomes_are_named() {
        assert_eq!(names::parse("no-answer"), Some(CallOutcome::NoAnswer));
        assert_eq!(
            names::parse("CALL_OUTCOME_UNREACHABLE"),
            Some(CallOutcome::Unreachable)
        );
        assert_eq!(
            names::parse::<CallOutcome>("CALL_OUTCOME_UNSPECIFIED"),
            None
        );
        assert_eq!(
            names::short_names::<CallOutcome>().collect::<Vec<_>>(),
            ["reached", "no-answer", "unreachable"]
        );
    }

    fn attempt(on: &str, reason: AbsenceReason, notes: &str) -> VisitAttempted {
        VisitAttempted {
            case_id: Uuid::now_v7().as_bytes().to_vec(),
            attempted_on: on.into(),
            reason: reason.into(),
            notes: notes.into(),
        }
    }

    #[test]
    fn a_visit_attempt_keeps_the_rules_of_a_service() {
        let ctx = Context::on(chrono::NaiveDate::from_ymd_opt(2026, 11, 2).expect("a date"));
        let check = |m: VisitAttempted| -> Result<VisitAttempted, Invalid> {
            let mut body = Body::VisitAttempted(m);
            validate::body(&mut body, "540502001", &ctx)?;
            let Body::VisitAttempted(m) = body else {
                unreachable!()
            };
            Ok(m)
        };
        let done =
            check(attempt("2026-11-02", AbsenceReason::NobodyHome, " 门锁着 ")).expect("valid");
        assert_eq!(done.notes, "门锁着");
        let refused = |m: VisitAttempted| check(m).expect_err("refused").field;
        assert_eq!(
            refused(attempt("2026-11-04", AbsenceReason::Away, "")),
            "visit_attempted.attempted_on"
        );
        assert_eq!(
            refused(attempt("2026-11-02", AbsenceReason::Unspecified, "")),
            "visit_attempted.reason"
        );
        let mut unknown = attempt("2026-11-02", AbsenceReason::Moved, "");
        unknown.reason = 99;
        assert_eq!(refused(unknown), "visit_attempted.reason");
        assert_eq!(
            refused(attempt(
                "2026-11-02",
                AbsenceReason::Other,
                &"无".repeat(validate::NOTE_MAX + 1)
            )),
            "visit_attempted.notes"
        );
        let mut no_case = attempt("2026-11-02", AbsenceReason::Other, "");
        no_case.case_id.clear();
        assert_eq!(refused(no_case), "visit_attempted.case_id");
    }

    #[test]
    fn a_visit_attempt_is_no_visit_and_its_notes_are_personal() {
        let mut body =
            Body::VisitAttempted(attempt("2026-11-02", AbsenceReason::Away, "老人去拉萨看病"));
        assert!(crate::case::case_of(&body).is_some());
        // Nobody was seen: the follow-up is still due.
        assert_eq!(body.kind().step(), Some(CaseStep::Recorded));
        assert!(matches!(
            body.kind().recording(),
            Recording::OpenCase { .. }
        ));
        assert_eq!(crate::review::subject_of(&body), None);
        crate::mask::body(&mut body, Shown::Deidentified);
        let Body::VisitAttempted(shown) = &body else {
            unreachable!()
        };
        assert!(shown.notes.is_empty());
    }

    #[test]
    fn absence_reasons_are_named_in_both_languages() {
        assert_eq!(names::parse("nobody-home"), Some(AbsenceReason::NobodyHome));
        assert_eq!(names::parse("外出"), Some(AbsenceReason::Away));
        assert_eq!(names::parse("已搬离"), Some(AbsenceReason::Moved));
        assert_eq!(
            names::parse("ABSENCE_REASON_OTHER"),
            Some(AbsenceReason::Other)
        );
        assert_eq!(
            names::parse::<AbsenceReason>("ABSENCE_REASON_UNSPECIFIED"),
            None
        );
        assert_eq!(
            names::short_names::<AbsenceReason>().collect::<Vec<_>>(),
            ["nobody-home", "away", "moved", "other"]
        );
    }
}
