//! The entry forms, as typed records and enums, and their conversion into
//! event bodies.
//!
//! Invariants:
//! - the enums have no "unspecified" value: a form cannot leave a required
//!   choice empty, and a value from the store this version does not know
//!   comes back as `None`, never as a wrong value;
//! - a conversion checks only what the types cannot say (an id written as a
//!   UUID); every domain rule is left to `station-proto`'s validation, which
//!   the agent runs, so there is one place for each rule;
//! - field names in errors are the proto field paths the validation uses
//!   (`visit_recorded.case_id`), so the app maps every error to a form field
//!   the same way.

use station_proto::Body;
use station_proto::ids::Uuid;
use station_proto::v1;

use crate::error::FieldError;
use crate::store::{FieldStore, Recorded};

/// Follow-up tier (分档跟进); each has its visit interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Tier {
    /// 高风险: visited at least every 7 days.
    HighRisk,
    /// 重点: every 30 days.
    Key,
    /// 一般: every 90 days.
    General,
}

/// Beneficiary category; a person may hold several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Category {
    /// 低保
    Dibao,
    /// 低保边缘
    DibaoMarginal,
    /// 特困
    Tekun,
    /// 孤儿
    Orphan,
    /// 事实无人抚养儿童
    DeFactoOrphan,
    /// 困境儿童
    ChildInDifficulty,
    /// 留守儿童
    LeftBehindChild,
    /// 残疾人
    Disabled,
    /// 高龄/空巢/失能老人
    Elderly,
    /// 其他
    Other,
}

/// Gender, as the ID number's 17th digit must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Gender {
    /// Male (odd 17th digit).
    Male,
    /// Female (even 17th digit).
    Female,
}

/// How the case came to the station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum CaseSource {
    /// 求助: the person asked.
    Request,
    /// 外展: found by outreach.
    Outreach,
    /// 转介: referred by another body.
    Referral,
}

/// The kind of a case note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum NoteKind {
    /// 服务计划
    Plan,
    /// 介入记录
    Intervention,
    /// 评估回顾
    Review,
    /// 督导
    Supervision,
}

/// The kind of a visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum VisitKind {
    /// 入户走访
    Home,
    /// 预估
    Assessment,
    /// 核实
    Verification,
    /// 跟进
    FollowUp,
    /// 电话回访
    Phone,
}

/// Why a worker who went to a home did not see the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum AbsenceReason {
    /// 家中无人
    NobodyHome,
    /// 外出(务工、就医、走亲)
    Away,
    /// 已搬离
    Moved,
    /// 其他
    Other,
}

/// How a call to a guardian ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum CallOutcome {
    /// 已接通
    Reached,
    /// 无人接听
    NoAnswer,
    /// 停机、空号或关机
    Unreachable,
}

/// The kind of a community activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ActivityKind {
    /// 党建+公益
    PartyPublicWelfare,
    /// 义诊
    Clinic,
    /// 儿童关爱
    ChildCare,
    /// 为老服务
    ElderlyCare,
    /// 助残
    DisabilitySupport,
    /// 政策宣传
    PolicyPublicity,
    /// 文体活动
    Cultural,
    /// 其他
    Other,
}

/// The kind of a linked resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ResourceKind {
    /// 资金
    Cash,
    /// 物资
    InKind,
    /// 服务
    Service,
    /// 政策对接
    Policy,
}

/// The kind of a training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum TrainingKind {
    /// 培训
    Training,
    /// 督导
    Supervision,
    /// 共学
    CoLearning,
}

/// What a supervisor's review is asked for (督导审核).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ReviewSubject {
    /// 分档调整: a tier change.
    TierChange,
    /// 服务计划: a case plan (a note of kind plan).
    CasePlan,
    /// 结案: a closure.
    Closure,
}

/// Maps a facade enum to its proto value and back; `None` back for a value
/// this version does not know (or the unspecified one).
macro_rules! proto_enum {
    ($facade:ident, $proto:path, { $($variant:ident),+ $(,)? }) => {
        impl From<$facade> for $proto {
            fn from(value: $facade) -> Self {
                match value {
                    $($facade::$variant => <$proto>::$variant,)+
                }
            }
        }

        impl $facade {
            /// The value stored in an event, if this version knows it.
            pub fn from_proto(value: i32) -> Option<Self> {
                match <$proto>::try_from(value).ok()? {
                    $(<$proto>::$variant => Some($facade::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

proto_enum!(Tier, v1::Tier, { HighRisk, Key, General });
proto_enum!(Category, v1::Category, {
    Dibao, DibaoMarginal, Tekun, Orphan, DeFactoOrphan, ChildInDifficulty,
    LeftBehindChild, Disabled, Elderly, Other,
});
proto_enum!(Gender, v1::Gender, { Male, Female });
proto_enum!(CaseSource, v1::CaseSource, { Request, Outreach, Referral });
proto_enum!(NoteKind, v1::NoteKind, { Plan, Intervention, Review, Supervision });
proto_enum!(VisitKind, v1::VisitKind, { Home, Assessment, Verification, FollowUp, Phone });
proto_enum!(CallOutcome, v1::CallOutcome, { Reached, NoAnswer, Unreachable });
proto_enum!(AbsenceReason, v1::AbsenceReason, { NobodyHome, Away, Moved, Other });
proto_enum!(ActivityKind, v1::ActivityKind, {
    PartyPublicWelfare, Clinic, ChildCare, ElderlyCare, DisabilitySupport,
    PolicyPublicity, Cultural, Other,
});
proto_enum!(ResourceKind, v1::ResourceKind, { Cash, InKind, Service, Policy });
proto_enum!(TrainingKind, v1::TrainingKind, { Training, Supervision, CoLearning });
proto_enum!(ReviewSubject, v1::ReviewSubject, { TierChange, CasePlan, Closure });

/// What kind of entry a timeline line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum EntryKind {
    /// A case was opened.
    CaseOpened,
    /// The tier was changed (预估).
    CaseAssessed,
    /// A note was added.
    NoteAdded,
    /// The case was closed.
    CaseClosed,
    /// The case was reopened.
    CaseReopened,
    /// A visit.
    Visit,
    /// A phone call to the guardian.
    GuardianCall,
    /// A visit that found nobody at home (上门未遇).
    VisitAttempt,
    /// A verification (信息核实).
    Verification,
    /// A community activity.
    Activity,
    /// A group session.
    GroupSession,
    /// A linked resource.
    Resource,
    /// A training.
    Training,
    /// A void of an earlier entry.
    Void,
    /// Another file was merged into this one (合并档案).
    CasesMerged,
    /// The file was found not to duplicate another (非重复).
    DuplicateDismissed,
    /// Its station asked another station to take the file over (转移申请).
    TransferRequested,
    /// The station asked took the file over (接收转移).
    TransferAccepted,
    /// The station asked declined to take the file (拒绝转移).
    TransferDeclined,
    /// A review was asked for (提请审核).
    ReviewRequested,
    /// A supervisor approved a review (审核通过).
    ReviewApproved,
    /// A supervisor returned a review (退回修改).
    ReviewReturned,
}

impl EntryKind {
    /// What `body` shows as a line of a case's timeline: its kind, its day
    /// (`None` for a void, which shows the day it was recorded), the text
    /// that sums it up, and the tier it names. Every body is matched without
    /// a wildcard: a new kind of event is shown as what it is, or does not
    /// build.
    pub(crate) fn line(body: Body) -> (EntryKind, Option<String>, String, Option<Tier>) {
        match body {
            Body::CaseOpened(m) => (EntryKind::CaseOpened, Some(m.opened_on), m.name, None),
            Body::CaseAssessed(m) => (
                EntryKind::CaseAssessed,
                Some(m.assessed_on),
                m.reason,
                Tier::from_proto(m.tier),
            ),
            Body::CaseNoteAdded(m) => (EntryKind::NoteAdded, Some(m.noted_on), m.text, None),
            Body::CaseClosed(m) => (EntryKind::CaseClosed, Some(m.closed_on), m.reason, None),
            Body::CaseReopened(m) => (
                EntryKind::CaseReopened,
                Some(m.reopened_on),
                m.reason,
                Tier::from_proto(m.tier),
            ),
            Body::VisitRecorded(m) => (EntryKind::Visit, Some(m.visit_date), m.notes, None),
            Body::GuardianCalled(m) => (EntryKind::GuardianCall, Some(m.called_on), m.notes, None),
            Body::VisitAttempted(m) => {
                (EntryKind::VisitAttempt, Some(m.attempted_on), m.notes, None)
            }
            Body::BeneficiaryVerified(m) => {
                (EntryKind::Verification, Some(m.verified_on), m.notes, None)
            }
            Body::ActivityHeld(m) => (EntryKind::Activity, Some(m.held_on), m.title, None),
            Body::GroupSessionHeld(m) => {
                (EntryKind::GroupSession, Some(m.held_on), m.group_name, None)
            }
            Body::ResourceLinked(m) => (EntryKind::Resource, Some(m.linked_on), m.source, None),
            Body::TrainingHeld(m) => (EntryKind::Training, Some(m.held_on), m.title, None),
            Body::CasesMerged(m) => (EntryKind::CasesMerged, Some(m.merged_on), m.reason, None),
            Body::DuplicateDismissed(m) => (
                EntryKind::DuplicateDismissed,
                Some(m.dismissed_on),
                m.reason,
                None,
            ),
            Body::CaseTransferRequested(m) => (
                EntryKind::TransferRequested,
                Some(m.requested_on),
                m.reason,
                None,
            ),
            Body::CaseTransferAccepted(m) => (
                EntryKind::TransferAccepted,
                Some(m.accepted_on),
                m.note,
                None,
            ),
            Body::CaseTransferDeclined(m) => (
                EntryKind::TransferDeclined,
                Some(m.declined_on),
                m.reason,
                None,
            ),
            Body::EventVoided(m) => (EntryKind::Void, None, m.reason, None),
            Body::ReviewRequested(m) => (
                EntryKind::ReviewRequested,
                Some(m.requested_on),
                m.note,
                None,
            ),
            Body::ReviewApproved(m) => (
                EntryKind::ReviewApproved,
                Some(m.decided_on),
                m.comment,
                None,
            ),
            Body::ReviewReturned(m) => (
                EntryKind::ReviewReturned,
                Some(m.decided_on),
                m.comment,
                None,
            ),
        }
    }
}

fn proto<T: Into<P>, P: Into<i32>>(value: T) -> i32 {
    value.into().into()
}

fn categories(values: &[Category]) -> Vec<i32> {
    values
        .iter()
        .map(|&c| proto::<_, v1::Category>(c))
        .collect()
}

/// 上门未遇: the worker went to the home of a case and did not find the
/// person. Counted apart from visits; it does not move the case's next due
/// follow-up.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct VisitAttempt {
    /// The case (or a prefix of its id no other case shares); it must be open.
    pub case_id: String,
    /// `YYYY-MM-DD`: the day of the attempt.
    pub attempted_on: String,
    /// Why the person was not seen.
    pub reason: AbsenceReason,
    /// Up to 4,000 characters; may be empty.
    pub notes: String,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl VisitAttempt {
    /// The event body.
    ///
    /// # Errors
    /// An id that is not a UUID.
    pub fn into_body(self) -> Result<Body, FieldError> {
        Ok(Body::VisitAttempted(v1::VisitAttempted {
            case_id: case_bytes("visit_attempted.case_id", &self.case_id)?,
            attempted_on: self.attempted_on,
            reason: proto::<_, v1::AbsenceReason>(self.reason),
            notes: self.notes,
        }))
    }
}

#[uniffi::export]
impl FieldStore {
    /// 上门未遇: records a visit to an open case that found nobody at home.
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`], [`FieldError::UnknownCase`],
    /// [`FieldError::CaseClosed`].
    pub fn record_visit_attempt(&self, mut entry: VisitAttempt) -> Result<Recorded, FieldError> {
        entry.case_id = self.resolve("visit_attempted.case_id", &entry.case_id)?;
        let entry_id = entry.entry_id.clone();
        self.record(entry_id, entry.into_body()?)
    }
}

/// Reads an id written as a hyphenated UUID (`8-4-4-4-12` hex digits).
///
/// # Errors
/// [`FieldError::InvalidInput`] naming `field`.
pub fn parse_id(field: &str, text: &str) -> Result<Uuid, FieldError> {
    let text = text.trim();
    if text.len() != 36 {
        return Err(FieldError::invalid(
            field,
            "must be a UUID written 8-4-4-4-12 (36 characters)",
        ));
    }
    Uuid::try_parse(text).map_err(|_| {
        FieldError::invalid(field, "must be a UUID written 8-4-4-4-12 (36 characters)")
    })
}

/// An id as the apps see it: hyphenated, lower case.
pub fn id_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

/// Reads the optional idempotency key of an entry: a version 7 UUID.
///
/// # Errors
/// [`FieldError::InvalidInput`] on `entry_id`.
pub fn parse_entry_id(entry_id: Option<&str>) -> Result<Option<Uuid>, FieldError> {
    let Some(text) = entry_id else {
        return Ok(None);
    };
    let id = parse_id("entry_id", text)?;
    if id.get_version_num() != 7 || id.get_variant() != uuid::Variant::RFC4122 {
        return Err(FieldError::invalid(
            "entry_id",
            "must be a version 7 UUID, as new_entry_id() returns",
        ));
    }
    Ok(Some(id))
}

/// A new entry id: a version 7 UUID, hyphenated.
///
/// An app that draws one when a form opens and passes it as the entry's
/// `entry_id` can save the form again (a double tap, a retry after the app
/// was killed) without recording it twice.
#[uniffi::export]
pub fn new_entry_id() -> String {
    id_text(Uuid::now_v7())
}

/// 一人一档: opens the one case file of one person.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CaseOpening {
    /// The person's name, as written (Chinese or Tibetan), up to 50 characters.
    pub name: String,
    /// The 18-character resident ID number (GB 11643); a lower-case `x` is
    /// accepted. Empty for a person without one (a child without a card, an
    /// elder): the file is then known by name, gender and birth date, and
    /// only [`FieldStore::possible_duplicates`](crate::store::FieldStore::possible_duplicates)
    /// compares it with others.
    pub id_number: String,
    /// Must agree with the ID number; required.
    pub gender: Gender,
    /// `YYYY-MM-DD`; must equal the birth date inside the ID number; without
    /// one, not in the future nor after `opened_on`.
    pub birth_date: String,
    /// The 12-digit community (village) code, inside the station.
    pub community_code: String,
    /// The address, up to 200 characters; may be empty.
    pub address: String,
    /// Empty, or 5 to 20 characters of digits, `+`, `-` and spaces.
    pub phone: String,
    /// Preferred language, e.g. `zh` or `bo`; may be empty.
    pub language: String,
    /// At least one, none repeated.
    pub categories: Vec<Category>,
    /// The tier the case is followed at.
    pub tier: Tier,
    /// How the case came to the station.
    pub source: CaseSource,
    /// `YYYY-MM-DD`: the day the case was opened.
    pub opened_on: String,
    /// Idempotency key from [`new_entry_id`]; the case id when given.
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl CaseOpening {
    /// The event body.
    pub fn into_body(self) -> Body {
        Body::CaseOpened(v1::CaseOpened {
            name: self.name,
            id_number: self.id_number,
            gender: proto::<_, v1::Gender>(self.gender),
            birth_date: self.birth_date,
            community_code: self.community_code,
            address: self.address,
            phone: self.phone,
            language: self.language,
            categories: categories(&self.categories),
            tier: proto::<_, v1::Tier>(self.tier),
            source: proto::<_, v1::CaseSource>(self.source),
            opened_on: self.opened_on,
            file_number: String::new(),
            duplicate_reason: String::new(),
            duplicate_of_stations: Vec::new(),
        })
    }
}

/// 预估: a change of tier, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Assessment {
    /// The case.
    pub case_id: String,
    /// The new tier.
    pub tier: Tier,
    /// Why, up to 500 characters.
    pub reason: String,
    /// `YYYY-MM-DD`.
    pub assessed_on: String,
    /// The case's `last_event_id` as the worker saw it when deciding, so a
    /// concurrent change on another phone is detected; `None` takes the
    /// latest event this device holds.
    #[uniffi(default = None)]
    pub last_seen_event_id: Option<String>,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl Assessment {
    /// The event body.
    ///
    /// # Errors
    /// An id that is not a UUID.
    pub fn into_body(self) -> Result<Body, FieldError> {
        let last_seen = match &self.last_seen_event_id {
            Some(id) => parse_id("case_assessed.last_seen_event_id", id)?
                .as_bytes()
                .to_vec(),
            None => Vec::new(),
        };
        Ok(Body::CaseAssessed(v1::CaseAssessed {
            case_id: case_bytes("case_assessed.case_id", &self.case_id)?,
            tier: proto::<_, v1::Tier>(self.tier),
            reason: self.reason,
            last_seen_event_id: last_seen,
            assessed_on: self.assessed_on,
        }))
    }
}

/// A case note: plan, intervention, review or supervision.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CaseNote {
    /// The case.
    pub case_id: String,
    /// What kind of note.
    pub kind: NoteKind,
    /// The note, up to 4,000 characters.
    pub text: String,
    /// `YYYY-MM-DD`.
    pub noted_on: String,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl CaseNote {
    /// The event body.
    ///
    /// # Errors
    /// An id that is not a UUID.
    pub fn into_body(self) -> Result<Body, FieldError> {
        Ok(Body::CaseNoteAdded(v1::CaseNoteAdded {
            case_id: case_bytes("case_note_added.case_id", &self.case_id)?,
            kind: proto::<_, v1::NoteKind>(self.kind),
            text: self.text,
            noted_on: self.noted_on,
        }))
    }
}

/// 入户走访: a visit to a case.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Visit {
    /// The case; it must be open.
    pub case_id: String,
    /// `YYYY-MM-DD`: the day the visit happened.
    pub visit_date: String,
    /// What kind of visit.
    pub kind: VisitKind,
    /// 0 to 1,440.
    pub duration_minutes: i32,
    /// Up to 4,000 characters; may be empty.
    pub notes: String,
    /// Needs found, at most 20, each up to 200 characters.
    pub needs_found: Vec<String>,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl Visit {
    /// The event body.
    ///
    /// # Errors
    /// An id that is not a UUID.
    pub fn into_body(self) -> Result<Body, FieldError> {
        Ok(Body::VisitRecorded(v1::VisitRecorded {
            case_id: case_bytes("visit_recorded.case_id", &self.case_id)?,
            visit_date: self.visit_date,
            kind: proto::<_, v1::VisitKind>(self.kind),
            duration_minutes: self.duration_minutes,
            notes: self.notes,
            needs_found: self.needs_found,
        }))
    }
}

/// 电话联系监护人: a phone call to a case's guardian. Counted apart from
/// visits; it does not move the case's next due follow-up.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GuardianCall {
    /// The case; it must be open.
    pub case_id: String,
    /// `YYYY-MM-DD`: the day of the call.
    pub called_on: String,
    /// How the call ended.
    pub outcome: CallOutcome,
    /// 0 to 1,440; 0 unless the guardian was reached.
    pub duration_minutes: i32,
    /// Up to 4,000 characters; may be empty.
    pub notes: String,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl GuardianCall {
    /// The event body.
    ///
    /// # Errors
    /// An id that is not a UUID.
    pub fn into_body(self) -> Result<Body, FieldError> {
        Ok(Body::GuardianCalled(v1::GuardianCalled {
            case_id: case_bytes("guardian_called.case_id", &self.case_id)?,
            called_on: self.called_on,
            outcome: proto::<_, v1::CallOutcome>(self.outcome),
            duration_minutes: self.duration_minutes,
            notes: self.notes,
        }))
    }
}

/// 信息核实: a verification of the beneficiary's situation.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Verification {
    /// The case.
    pub case_id: String,
    /// `YYYY-MM-DD`.
    pub verified_on: String,
    /// The categories confirmed; at least one while still eligible.
    pub categories: Vec<Category>,
    /// Whether the person is still eligible.
    pub still_eligible: bool,
    /// Up to 4,000 characters; may be empty.
    pub notes: String,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl Verification {
    /// The event body.
    ///
    /// # Errors
    /// An id that is not a UUID.
    pub fn into_body(self) -> Result<Body, FieldError> {
        Ok(Body::BeneficiaryVerified(v1::BeneficiaryVerified {
            case_id: case_bytes("beneficiary_verified.case_id", &self.case_id)?,
            verified_on: self.verified_on,
            categories: categories(&self.categories),
            still_eligible: self.still_eligible,
            notes: self.notes,
        }))
    }
}

/// Closes a case.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CaseClosing {
    /// The case; it must be open.
    pub case_id: String,
    /// Why, up to 500 characters.
    pub reason: String,
    /// `YYYY-MM-DD`.
    pub closed_on: String,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl CaseClosing {
    /// The event body.
    ///
    /// # Errors
    /// An id that is not a UUID.
    pub fn into_body(self) -> Result<Body, FieldError> {
        Ok(Body::CaseClosed(v1::CaseClosed {
            case_id: case_bytes("case_closed.case_id", &self.case_id)?,
            reason: self.reason,
            closed_on: self.closed_on,
        }))
    }
}

/// 合并档案: merges two files of one person; undone by voiding it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CaseMerging {
    /// The file that stays; it must be open and not merged into another.
    pub survivor_case_id: String,
    /// The file absorbed into it: its entries join the survivor's, and it
    /// is no longer counted as a file.
    pub absorbed_case_id: String,
    /// Why, up to 500 characters.
    pub reason: String,
    /// `YYYY-MM-DD`.
    pub merged_on: String,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl CaseMerging {
    /// The event body.
    ///
    /// # Errors
    /// An id that is not a UUID.
    pub fn into_body(self) -> Result<Body, FieldError> {
        Ok(Body::CasesMerged(v1::CasesMerged {
            survivor_case_id: case_bytes("cases_merged.survivor_case_id", &self.survivor_case_id)?,
            absorbed_case_id: case_bytes("cases_merged.absorbed_case_id", &self.absorbed_case_id)?,
            reason: self.reason,
            merged_on: self.merged_on,
        }))
    }
}

/// 非重复: a file the bureau's list flags as a duplicate of another is not
/// one; it counts as a file of its own again.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DuplicateDismissal {
    /// The flagged file.
    pub case_id: String,
    /// The file it was flagged as a duplicate of.
    pub duplicate_of_case_id: String,
    /// Why, up to 500 characters.
    pub reason: String,
    /// `YYYY-MM-DD`.
    pub dismissed_on: String,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl DuplicateDismissal {
    /// The event body.
    ///
    /// # Errors
    /// An id that is not a UUID.
    pub fn into_body(self) -> Result<Body, FieldError> {
        Ok(Body::DuplicateDismissed(v1::DuplicateDismissed {
            case_id: case_bytes("duplicate_dismissed.case_id", &self.case_id)?,
            duplicate_of_case_id: case_bytes(
                "duplicate_dismissed.duplicate_of_case_id",
                &self.duplicate_of_case_id,
            )?,
            reason: self.reason,
            dismissed_on: self.dismissed_on,
        }))
    }
}

/// Reopens a closed case.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CaseReopening {
    /// The case; it must be closed.
    pub case_id: String,
    /// Why, up to 500 characters.
    pub reason: String,
    /// `YYYY-MM-DD`: follow-ups are counted from it.
    pub reopened_on: String,
    /// The tier to follow the case at; `None` keeps the last one.
    #[uniffi(default = None)]
    pub tier: Option<Tier>,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl CaseReopening {
    /// The event body.
    ///
    /// # Errors
    /// An id that is not a UUID.
    pub fn into_body(self) -> Result<Body, FieldError> {
        Ok(Body::CaseReopened(v1::CaseReopened {
            case_id: case_bytes("case_reopened.case_id", &self.case_id)?,
            reason: self.reason,
            reopened_on: self.reopened_on,
            tier: self
                .tier
                .map_or(v1::Tier::Unspecified as i32, proto::<_, v1::Tier>),
        }))
    }
}

/// 社区活动: a community activity.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CommunityActivity {
    /// `YYYY-MM-DD`.
    pub held_on: String,
    /// The 12-digit community code, inside the station.
    pub community_code: String,
    /// What kind of activity.
    pub kind: ActivityKind,
    /// Up to 200 characters.
    pub title: String,
    /// Distinct people, 0 to 100,000.
    pub participants: i32,
    /// Person-times (人次), at least `participants`.
    pub person_times: i32,
    /// Volunteers, 0 to 100,000.
    pub volunteers: i32,
    /// Volunteer service time in minutes.
    pub volunteer_minutes: i32,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl CommunityActivity {
    /// The event body.
    pub fn into_body(self) -> Body {
        Body::ActivityHeld(v1::ActivityHeld {
            held_on: self.held_on,
            community_code: self.community_code,
            kind: proto::<_, v1::ActivityKind>(self.kind),
            title: self.title,
            participants: self.participants,
            person_times: self.person_times,
            volunteers: self.volunteers,
            volunteer_minutes: self.volunteer_minutes,
        })
    }
}

/// 小组工作: one session of a group.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GroupSession {
    /// Up to 100 characters.
    pub group_name: String,
    /// 1, 2, 3 …
    pub session_number: i32,
    /// `YYYY-MM-DD`.
    pub held_on: String,
    /// The 12-digit community code, inside the station.
    pub community_code: String,
    /// 0 to 100,000.
    pub participants: i32,
    /// Up to 200 characters; may be empty.
    pub topic: String,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl GroupSession {
    /// The event body.
    pub fn into_body(self) -> Body {
        Body::GroupSessionHeld(v1::GroupSessionHeld {
            group_name: self.group_name,
            session_number: self.session_number,
            held_on: self.held_on,
            community_code: self.community_code,
            participants: self.participants,
            topic: self.topic,
        })
    }
}

/// 链接资源: a resource linked for a case or a community. Amounts in fen (0.01 yuan).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Resource {
    /// The case it was linked for; `None` for a community-level resource.
    pub case_id: Option<String>,
    /// `YYYY-MM-DD`.
    pub linked_on: String,
    /// What kind of resource.
    pub kind: ResourceKind,
    /// Where it came from (department, charity, company …), up to 200 characters.
    pub source: String,
    /// Cash, in fen; not negative.
    pub cash_fen: i64,
    /// Value in kind, in fen; not negative. Cash plus in kind must be more
    /// than 0 for cash and in-kind resources.
    pub in_kind_fen: i64,
    /// Up to 500 characters; may be empty.
    pub description: String,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl Resource {
    /// The event body.
    ///
    /// # Errors
    /// An id that is not a UUID.
    pub fn into_body(self) -> Result<Body, FieldError> {
        let case_id = match &self.case_id {
            Some(id) => case_bytes("resource_linked.case_id", id)?,
            None => Vec::new(),
        };
        Ok(Body::ResourceLinked(v1::ResourceLinked {
            case_id,
            linked_on: self.linked_on,
            kind: proto::<_, v1::ResourceKind>(self.kind),
            source: self.source,
            cash_fen: self.cash_fen,
            in_kind_fen: self.in_kind_fen,
            description: self.description,
        }))
    }
}

/// 培训/督导/共学: a training the station held or attended.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Training {
    /// `YYYY-MM-DD`.
    pub held_on: String,
    /// What kind of training.
    pub kind: TrainingKind,
    /// Up to 200 characters.
    pub title: String,
    /// 0 to 100,000.
    pub trainees: i32,
    /// Duration in minutes, 1 to 100,000.
    pub minutes: i32,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl Training {
    /// The event body.
    pub fn into_body(self) -> Body {
        Body::TrainingHeld(v1::TrainingHeld {
            held_on: self.held_on,
            kind: proto::<_, v1::TrainingKind>(self.kind),
            title: self.title,
            trainees: self.trainees,
            minutes: self.minutes,
        })
    }
}

/// Voids an earlier entry recorded by mistake: views then read as if it had
/// never been recorded. Record the corrected entry afterwards if needed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Voiding {
    /// The id of the entry to void (as [`crate::Recorded::event_id`] gave it).
    pub event_id: String,
    /// Why, up to 500 characters.
    pub reason: String,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl Voiding {
    /// The event body.
    ///
    /// # Errors
    /// An id that is not a UUID.
    pub fn into_body(self) -> Result<Body, FieldError> {
        Ok(Body::EventVoided(v1::EventVoided {
            voided_event_id: parse_id("event_voided.voided_event_id", &self.event_id)?
                .as_bytes()
                .to_vec(),
            reason: self.reason,
        }))
    }
}

/// 提请审核: asks a supervisor to review a tier change, a case plan or a
/// closure. Asking again for the same subject resubmits it (after a return).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ReviewRequest {
    /// The case.
    pub case_id: String,
    /// What is to be reviewed.
    pub subject: ReviewSubject,
    /// The entry under review; `None` takes the case's latest entry of that
    /// kind.
    #[uniffi(default = None)]
    pub subject_event_id: Option<String>,
    /// Up to 500 characters for the supervisor.
    #[uniffi(default = "")]
    pub note: String,
    /// `YYYY-MM-DD`.
    pub requested_on: String,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl ReviewRequest {
    /// The event body; the last entry seen is the device's latest of the case.
    ///
    /// # Errors
    /// An id that is not a UUID.
    pub fn into_body(self) -> Result<Body, FieldError> {
        Ok(Body::ReviewRequested(v1::ReviewRequested {
            case_id: case_bytes("review_requested.case_id", &self.case_id)?,
            subject: proto::<_, v1::ReviewSubject>(self.subject),
            subject_event_id: match &self.subject_event_id {
                Some(id) => parse_id("review_requested.subject_event_id", id)?
                    .as_bytes()
                    .to_vec(),
                None => Vec::new(),
            },
            last_seen_event_id: Vec::new(),
            requested_on: self.requested_on,
            note: self.note,
        }))
    }
}

/// A supervisor's decision on a review request: approved, or returned to
/// the worker with what to change.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ReviewDecision {
    /// The request's entry id (as [`crate::ReviewSummary::request_id`] gives it).
    pub request_id: String,
    /// Approve (审核通过), else return (退回修改).
    pub approve: bool,
    /// Up to 500 characters; required to return.
    #[uniffi(default = "")]
    pub comment: String,
    /// `YYYY-MM-DD`.
    pub decided_on: String,
    /// The latest entry of the case the supervisor saw (the case's
    /// `last_event_id` on the screen the decision was taken from); `None`
    /// takes the device's latest. A case changed since is flagged stale.
    #[uniffi(default = None)]
    pub last_seen_event_id: Option<String>,
    /// Idempotency key from [`new_entry_id`].
    #[uniffi(default = None)]
    pub entry_id: Option<String>,
}

impl ReviewDecision {
    /// The event body; the case is the request's.
    ///
    /// # Errors
    /// An id that is not a UUID.
    pub fn into_body(self) -> Result<Body, FieldError> {
        let prefix = if self.approve {
            "review_approved"
        } else {
            "review_returned"
        };
        let request_id = parse_id(&format!("{prefix}.request_id"), &self.request_id)?
            .as_bytes()
            .to_vec();
        let last_seen_event_id = match &self.last_seen_event_id {
            Some(id) => parse_id(&format!("{prefix}.last_seen_event_id"), id)?
                .as_bytes()
                .to_vec(),
            None => Vec::new(),
        };
        Ok(if self.approve {
            Body::ReviewApproved(v1::ReviewApproved {
                case_id: Vec::new(),
                request_id,
                last_seen_event_id,
                decided_on: self.decided_on,
                comment: self.comment,
            })
        } else {
            Body::ReviewReturned(v1::ReviewReturned {
                case_id: Vec::new(),
                request_id,
                last_seen_event_id,
                decided_on: self.decided_on,
                comment: self.comment,
            })
        })
    }
}

fn case_bytes(field: &str, case_id: &str) -> Result<Vec<u8>, FieldError> {
    Ok(parse_id(field, case_id)?.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_enum_value_round_trips_through_its_proto_value() {
        for tier in [Tier::HighRisk, Tier::Key, Tier::General] {
            assert_eq!(Tier::from_proto(proto::<_, v1::Tier>(tier)), Some(tier));
        }
        assert_eq!(Tier::from_proto(0), None);
        assert_eq!(Tier::from_proto(99), None);
        assert_eq!(Category::from_proto(10), Some(Category::Other));
        assert_eq!(Category::from_proto(11), None);
    }

    #[test]
    fn ids_must_be_hyphenated_uuids() {
        let id = Uuid::now_v7();
        assert_eq!(parse_id("f", &id_text(id)).ok(), Some(id));
        assert_eq!(parse_id("f", &format!(" {} ", id_text(id))).ok(), Some(id));
        for bad in ["", "x", &id.simple().to_string(), &format!("{{{id}}}")] {
            assert!(
                matches!(parse_id("f", bad), Err(FieldError::InvalidInput { field, .. }) if field == "f"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn entry_ids_must_be_version_7() {
        let v7 = new_entry_id();
        assert!(parse_entry_id(Some(&v7)).is_ok());
        assert_eq!(parse_entry_id(None).ok(), Some(None));
        let v4 = id_text(Uuid::new_v4());
        assert!(matches!(
            parse_entry_id(Some(&v4)),
            Err(FieldError::InvalidInput { field, .. }) if field == "entry_id"
        ));
    }
}
