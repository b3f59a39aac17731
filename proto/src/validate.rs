//! Domain validation of events: the rules of `station.v1` (the envelope's, each body's, and
//! the field rules they are built from), reached through [`body`] and each kind's
//! [`crate::kinds::Kind::validate`].
//!
//! The agent validates before it writes an event, the hub validates again when it receives
//! one; neither re-implements a rule. Every function here keeps these invariants:
//!
//! - **One error, named precisely.** The first broken rule is returned as an [`Invalid`]
//!   whose `field` is the proto field path (`station_code`, `case_opened.id_number`,
//!   `visit_recorded.needs_found[2]`) and whose `rule` is a short English sentence.
//! - **No personal data in errors.** A rule never echoes a name, an address, a phone number,
//!   free text or the digits of an ID number. It may name a length, a limit, an enum value,
//!   a station or community code, or a fixed date such as `1900-01-01`.
//! - **Text is normalised in place.** Every free-text field passes through [`text`]: Unicode
//!   NFC, surrounding whitespace trimmed, no control characters except `\n` and `\t`, length
//!   counted in characters (so Chinese and Tibetan text is measured as people see it).
//!   ID numbers are normalised to an upper-case check character. Validating an already
//!   valid event leaves it unchanged, so validation is idempotent.
//! - **Unknown enum values are rejected.** proto3 lets any `i32` arrive in an enum field;
//!   a value this build does not know is reported as `unknown value N`, and the
//!   `*_UNSPECIFIED` value counts as missing wherever a value is required.
//! - **Time comes from the caller.** Dates are checked against [`Context::today`], the
//!   validating device's date, never the clock, so results are reproducible. A service date
//!   may be at most one day ahead of it (devices in neighbouring time zones and wrong
//!   clocks), and no date is before 1900-01-01.
//! - **Clocks are bounded.** When the context names a [`Context::latest_ms`] (the receiver's
//!   clock plus the allowed skew), an envelope whose `recorded_at_ms`, `hlc` or UUIDv7
//!   timestamp lies after it is refused, so one event with a clock in the far future cannot
//!   win every later tie-break; `recorded_at_ms` before 1970 is always refused.
//! - **No panic is reachable from input.** Any decoded [`Event`] can be passed in.

use chrono::NaiveDate;
use unicode_normalization::UnicodeNormalization as _;
use uuid::Uuid;

use crate::id_number as gb11643;
use crate::v1::{
    ActivityHeld, ActivityKind, BeneficiaryVerified, CallOutcome, CaseAssessed, CaseClosed,
    CaseNoteAdded, CaseOpened, CaseReopened, CaseSource, CaseTransferAccepted,
    CaseTransferDeclined, CaseTransferRequested, CasesMerged, Category, DuplicateDismissed,
    EventVoided, Gender, GroupSessionHeld, GuardianCalled, NoteKind, ResourceKind, ResourceLinked,
    ReviewApproved, ReviewRequested, ReviewReturned, ReviewSubject, Tier, TrainingHeld,
    TrainingKind, VisitKind, VisitRecorded,
};
use crate::{Body, Event};

/// Longest `author` (the social worker's id), in characters.
pub const AUTHOR_MAX: usize = 64;
/// Longest person name, in characters.
pub const NAME_MAX: usize = 50;
/// Longest address, in characters.
pub const ADDRESS_MAX: usize = 200;
/// Longest language tag, in characters.
pub const LANGUAGE_MAX: usize = 16;
/// Longest reason (assessment, closing, reopening, voiding), in characters.
pub const REASON_MAX: usize = 500;
/// Longest free-text note, in characters.
pub const NOTE_MAX: usize = 4000;
/// Longest single entry of `visit_recorded.needs_found`, in characters.
pub const NEED_MAX: usize = 200;
/// Most entries in `visit_recorded.needs_found`.
pub const NEEDS_MAX_COUNT: usize = 20;
/// Longest title (activity, training), resource source or group topic, in characters.
pub const TITLE_MAX: usize = 200;
/// Longest group name, in characters.
pub const GROUP_NAME_MAX: usize = 100;
/// Longest resource description, in characters.
pub const DESCRIPTION_MAX: usize = 500;
/// Largest head count (participants, person-times, volunteers, trainees, session number).
pub const COUNT_MAX: i64 = 100_000;
/// Longest visit, in minutes (one day).
pub const VISIT_MINUTES_MAX: i64 = 1440;
/// Most volunteer minutes one activity may report.
pub const VOLUNTEER_MINUTES_MAX: i64 = 10_000_000;
/// Longest training, in minutes.
pub const TRAINING_MINUTES_MAX: i64 = 100_000;
/// Largest amount in fen (ten billion yuan).
pub const FEN_MAX: i64 = 1_000_000_000_000;

/// The earliest date any field may carry.
const EARLIEST: NaiveDate = match NaiveDate::from_ymd_opt(1900, 1, 1) {
    Some(d) => d,
    None => panic!("1900-01-01 is a valid date"),
};

/// A broken rule: which field, and what the rule is. Carries no personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct Invalid {
    /// Proto field path, e.g. `case_opened.id_number` or `station_code`.
    pub field: String,
    /// The rule that was broken, as a short English sentence, e.g.
    /// `must be at most 200 characters`.
    pub rule: String,
}

impl Invalid {
    /// An error for `field` breaking `rule`.
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

/// The default bound on how far an event's clocks may run ahead of the receiver's: 24 hours.
pub const MAX_CLOCK_SKEW_MS: i64 = 24 * 60 * 60 * 1000;

/// Bits of a hybrid logical clock value below its milliseconds (its logical counter).
pub const HLC_LOGICAL_BITS: u32 = 16;

/// What validation needs to know about the device doing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// The validating device's current date; dates more than one day after it are rejected.
    /// Passed in rather than read from the clock so that validation is deterministic.
    pub today: NaiveDate,
    /// The latest wall-clock time, in Unix milliseconds, an envelope's `recorded_at_ms`, `hlc`
    /// and event id may carry: the receiver's clock plus the allowed skew. `None` leaves the
    /// envelope's clocks unchecked (replaying history whose receive time is not known).
    pub latest_ms: Option<i64>,
}

impl Context {
    /// A context for a receiver whose clock reads `now_ms`, accepting envelopes whose clocks
    /// are at most `max_skew_ms` ahead of it.
    pub fn at(now_ms: i64, max_skew_ms: i64) -> Self {
        let today = chrono::DateTime::from_timestamp_millis(now_ms).map_or(NaiveDate::MIN, |t| {
            t.with_timezone(&chrono::Local).date_naive()
        });
        Self {
            today,
            latest_ms: Some(now_ms.saturating_add(max_skew_ms.max(0))),
        }
    }

    /// A context whose `today` is the local date of this device's clock, with the default
    /// bound on clocks ([`MAX_CLOCK_SKEW_MS`]).
    pub fn from_local_clock() -> Self {
        Self::at(chrono::Utc::now().timestamp_millis(), MAX_CLOCK_SKEW_MS)
    }

    /// A context that checks dates against `today` and leaves the envelope's clocks unchecked.
    pub fn on(today: NaiveDate) -> Self {
        Self {
            today,
            latest_ms: None,
        }
    }
}

/// The milliseconds of a hybrid logical clock value.
pub fn hlc_millis(hlc: u64) -> u64 {
    hlc >> HLC_LOGICAL_BITS
}

/// The envelope's three clocks against `ctx`: `recorded_at_ms` not before 1970, and none of
/// `recorded_at_ms`, the milliseconds of `hlc` and the UUIDv7 timestamp of `event_id` after
/// [`Context::latest_ms`].
///
/// # Errors
///
/// The first clock out of bounds, naming the field and the bound (never the event's content).
pub fn clocks(event: &Event, event_id: Uuid, ctx: &Context) -> Result<(), Invalid> {
    if event.recorded_at_ms < 0 {
        return Err(Invalid::new("recorded_at_ms", "must not be before 1970"));
    }
    let Some(latest) = ctx.latest_ms else {
        return Ok(());
    };
    let ahead = |field: &str, ms: i128| -> Result<(), Invalid> {
        if ms > i128::from(latest) {
            let hours = (ms - i128::from(latest)) / 3_600_000;
            return Err(Invalid::new(
                field,
                format!(
                    "is {hours} h beyond the receiver's clock plus its allowed skew; \
                     check the device's date and time"
                ),
            ));
        }
        Ok(())
    };
    ahead("recorded_at_ms", i128::from(event.recorded_at_ms))?;
    ahead("hlc", i128::from(hlc_millis(event.hlc)))?;
    let (seconds, nanos) = event_id.get_timestamp().map_or((0, 0), |t| t.to_unix());
    ahead(
        "event_id",
        i128::from(seconds) * 1000 + i128::from(nanos / 1_000_000),
    )
}

fn path(prefix: &str, name: &str) -> String {
    format!("{prefix}.{name}")
}

// ---------------------------------------------------------------------------------------------
// Envelope and dispatch
// ---------------------------------------------------------------------------------------------

/// Validates a whole event: the envelope, then its body with [`body`].
///
/// Envelope rules: `event_id` is a 16-byte version 7 UUID, `origin_id` is 16 bytes,
/// `origin_seq` is at least 1, `station_code` is 9 ASCII digits, the clocks keep to
/// [`clocks`], `author` is 1 to
/// [`AUTHOR_MAX`] characters, and a body is present. Text fields are normalised in place.
///
/// # Errors
///
/// The first broken rule, naming the field.
pub fn event(event: &mut Event, ctx: &Context) -> Result<(), Invalid> {
    let event_id = uuid16("event_id", &event.event_id)?;
    if event_id.get_version_num() != 7 {
        return Err(Invalid::new(
            "event_id",
            format!(
                "must be a version 7 UUID, found version {}",
                event_id.get_version_num()
            ),
        ));
    }
    if event_id.get_variant() != uuid::Variant::RFC4122 {
        return Err(Invalid::new(
            "event_id",
            "must be a version 7 UUID of the RFC 9562 variant",
        ));
    }
    uuid16("origin_id", &event.origin_id)?;
    if event.origin_seq == 0 {
        return Err(Invalid::new("origin_seq", "must be at least 1"));
    }
    station_code("station_code", &event.station_code)?;
    clocks(event, event_id, ctx)?;
    text("author", &mut event.author, AUTHOR_MAX, true)?;
    let Some(b) = event.body.as_mut() else {
        return Err(Invalid::new("body", "must be present"));
    };
    body(b, &event.station_code, ctx)
}

/// Validates one event body with its kind's rules ([`crate::kinds::Kind::validate`]): the
/// function of this module named after the body, or, for a kind whose rules are few, the
/// rules written beside its other facts in [`crate::kinds`], from the field rules here.
///
/// `station_code` is the code of the station the event belongs to; community codes in the
/// body must lie inside it.
///
/// # Errors
///
/// The first broken rule; the field is prefixed with the body's snake_case name, e.g.
/// `visit_recorded.kind`.
pub fn body(body: &mut Body, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
    body.kind_mut().validate(station_code, ctx)
}

// ---------------------------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------------------------

/// Validates a [`CaseOpened`] (一人一档).
///
/// `name` 1 to [`NAME_MAX`] characters; `id_number` per [`id_number`] (normalised in place);
/// `gender` specified and agreeing with the ID number's 17th digit (odd is male);
/// `birth_date` a [`date`] equal to the birth date inside the ID number. A person
/// without an ID number (a child without a card, an elder) has `id_number` empty
/// (blank is cleared): then `gender` and `birth_date` are required, the birth date
/// not in the future nor after `opened_on`. Nothing else changes for such a file:
/// it is sealed on the device and at the hub as every file is, and no index keyed
/// by ID number takes it (see [`crate::person`]). `community_code`
/// inside the station; `address` at most [`ADDRESS_MAX`] characters; `phone` empty or 5 to
/// 20 characters of digits, `+`, `-` and spaces; `language` at most [`LANGUAGE_MAX`]
/// characters; at least one category, none repeated; `tier` and `source` specified;
/// `opened_on` a [`date`]; `file_number` at most [`FILE_NUMBER_MAX`] characters (empty
/// from older clients); `duplicate_reason` at most [`REASON_MAX`] characters, required
/// when `duplicate_of_stations` (at most [`DUPLICATE_STATIONS_MAX`] station codes) is
/// not empty.
///
/// # Errors
///
/// The first broken rule, as `case_opened.<field>`.
pub fn case_opened(m: &mut CaseOpened, station_code: &str, ctx: &Context) -> Result<(), Invalid> {
    const P: &str = "case_opened";
    text(&path(P, "name"), &mut m.name, NAME_MAX, true)?;
    if m.id_number.trim().is_empty() {
        // A person without an ID number (a child without a card, an elder):
        // the name, gender and birth date are what the file is known by.
        m.id_number.clear();
        person_without_id_number(m, ctx)?;
    } else {
        m.id_number = id_number(&path(P, "id_number"), &m.id_number, ctx)?;
        let gender: Gender = required_enum(&path(P, "gender"), m.gender)?;
        if Some(gender) != gb11643::gender(&m.id_number) {
            return Err(Invalid::new(
                path(P, "gender"),
                "must agree with the ID number (17th digit: odd is male, even is female)",
            ));
        }
        let field = path(P, "birth_date");
        let birth_date = date(&field, &m.birth_date, ctx)?;
        if Some(birth_date) != gb11643::birth_date(&m.id_number) {
            return Err(Invalid::new(
                field,
                "must equal the birth date inside the ID number",
            ));
        }
    }
    community_code(&path(P, "community_code"), &m.community_code, station_code)?;
    text(&path(P, "address"), &mut m.address, ADDRESS_MAX, false)?;
    phone(&path(P, "phone"), &mut m.phone)?;
    text(&path(P, "language"), &mut m.language, LANGUAGE_MAX, false)?;
    categories(&path(P, "categories"), &m.categories, true)?;
    required_enum::<Tier>(&path(P, "tier"), m.tier)?;
    required_enum::<CaseSource>(&path(P, "source"), m.source)?;
    date(&path(P, "opened_on"), &m.opened_on, ctx)?;
    text(
        &path(P, "file_number"),
        &mut m.file_number,
        FILE_NUMBER_MAX,
        false,
    )?;
    text(
        &path(P, "duplicate_reason"),
        &mut m.duplicate_reason,
        REASON_MAX,
        false,
    )?;
    let field = path(P, "duplicate_of_stations");
    if m.duplicate_of_stations.len() > DUPLICATE_STATIONS_MAX {
        return Err(Invalid::new(
            field,
            format!("names at most {DUPLICATE_STATIONS_MAX} stations"),
        ));
    }
    for code in &m.duplicate_of_stations {
        crate::validate::station_code(&field, code)?;
    }
    if !m.duplicate_of_stations.is_empty() && m.duplicate_reason.is_empty() {
        return Err(Invalid::new(
            path(P, "duplicate_reason"),
            "is required when duplicate_of_stations names a station",
        ));
    }
    Ok(())
}

/// The rules of a [`CaseOpened`] without an ID number: `gender` and
/// `birth_date` are required (they are all that tells the person apart,
/// with the name), the birth date a real date not before 1900 and not after
/// `ctx.today` (nobody is born tomorrow; the one day of slack service dates
/// get is not given) nor after the day the file is opened.
fn person_without_id_number(m: &CaseOpened, ctx: &Context) -> Result<(), Invalid> {
    const P: &str = "case_opened";
    let field = path(P, "gender");
    if m.gender == i32::from(Gender::Unspecified) {
        return Err(Invalid::new(
            field,
            "is required when there is no ID number",
        ));
    }
    required_enum::<Gender>(&field, m.gender)?;
    let field = path(P, "birth_date");
    if m.birth_date.is_empty() {
        return Err(Invalid::new(
            field,
            "is required when there is no ID number",
        ));
    }
    let birth_date = date(&field, &m.birth_date, ctx)?;
    if birth_date > ctx.today {
        return Err(Invalid::new(field, "must not be in the future"));
    }
    if let Some(opened_on) = crate::case::parse_date(&m.opened_on)
        && birth_date > opened_on
    {
        return Err(Invalid::new(
            field,
            "must not be after the day the file is opened",
        ));
    }
    Ok(())
}

/// The most stations a [`CaseOpened`] may name as holding the person's file.
pub const DUPLICATE_STATIONS_MAX: usize = 16;

/// The longest file number, in characters.
pub const FILE_NUMBER_MAX: usize = 40;

/// Validates a [`CaseAssessed`] (预估).
///
/// `case_id` and `last_seen_event_id` 16 bytes; `tier` specified; `reason` 1 to
/// [`REASON_MAX`] characters; `assessed_on` a [`date`].
///
/// # Errors
///
/// The first broken rule, as `case_assessed.<field>`.
pub fn case_assessed(
    m: &mut CaseAssessed,
    _station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "case_assessed";
    uuid16(&path(P, "case_id"), &m.case_id)?;
    required_enum::<Tier>(&path(P, "tier"), m.tier)?;
    text(&path(P, "reason"), &mut m.reason, REASON_MAX, true)?;
    uuid16(&path(P, "last_seen_event_id"), &m.last_seen_event_id)?;
    date(&path(P, "assessed_on"), &m.assessed_on, ctx)?;
    Ok(())
}

/// Validates a [`CaseNoteAdded`].
///
/// `case_id` 16 bytes; `kind` specified; `text` 1 to [`NOTE_MAX`] characters; `noted_on` a
/// [`date`].
///
/// # Errors
///
/// The first broken rule, as `case_note_added.<field>`.
pub fn case_note_added(
    m: &mut CaseNoteAdded,
    _station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "case_note_added";
    uuid16(&path(P, "case_id"), &m.case_id)?;
    required_enum::<NoteKind>(&path(P, "kind"), m.kind)?;
    text(&path(P, "text"), &mut m.text, NOTE_MAX, true)?;
    date(&path(P, "noted_on"), &m.noted_on, ctx)?;
    Ok(())
}

/// Validates a [`CaseClosed`].
///
/// `case_id` 16 bytes; `reason` 1 to [`REASON_MAX`] characters; `closed_on` a [`date`].
///
/// # Errors
///
/// The first broken rule, as `case_closed.<field>`.
pub fn case_closed(m: &mut CaseClosed, _station_code: &str, ctx: &Context) -> Result<(), Invalid> {
    const P: &str = "case_closed";
    uuid16(&path(P, "case_id"), &m.case_id)?;
    text(&path(P, "reason"), &mut m.reason, REASON_MAX, true)?;
    date(&path(P, "closed_on"), &m.closed_on, ctx)?;
    Ok(())
}

/// Validates a [`CasesMerged`] (合并档案).
///
/// `survivor_case_id` and `absorbed_case_id` 16 bytes each and different; `reason` 1 to
/// [`REASON_MAX`] characters; `merged_on` a [`date`].
///
/// # Errors
///
/// The first broken rule, as `cases_merged.<field>`.
pub fn cases_merged(
    m: &mut CasesMerged,
    _station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "cases_merged";
    let survivor = uuid16(&path(P, "survivor_case_id"), &m.survivor_case_id)?;
    let absorbed = uuid16(&path(P, "absorbed_case_id"), &m.absorbed_case_id)?;
    if survivor == absorbed {
        return Err(Invalid::new(
            path(P, "absorbed_case_id"),
            "must name another file than the survivor",
        ));
    }
    text(&path(P, "reason"), &mut m.reason, REASON_MAX, true)?;
    date(&path(P, "merged_on"), &m.merged_on, ctx)?;
    Ok(())
}

/// Validates a [`DuplicateDismissed`] (非重复).
///
/// `case_id` and `duplicate_of_case_id` 16 bytes each and different; `reason` 1 to
/// [`REASON_MAX`] characters; `dismissed_on` a [`date`].
///
/// # Errors
///
/// The first broken rule, as `duplicate_dismissed.<field>`.
pub fn duplicate_dismissed(
    m: &mut DuplicateDismissed,
    _station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "duplicate_dismissed";
    let case = uuid16(&path(P, "case_id"), &m.case_id)?;
    let of = uuid16(&path(P, "duplicate_of_case_id"), &m.duplicate_of_case_id)?;
    if case == of {
        return Err(Invalid::new(
            path(P, "duplicate_of_case_id"),
            "must name another file than case_id",
        ));
    }
    text(&path(P, "reason"), &mut m.reason, REASON_MAX, true)?;
    date(&path(P, "dismissed_on"), &m.dismissed_on, ctx)?;
    Ok(())
}

/// Validates a [`CaseReopened`].
///
/// `case_id` 16 bytes; `reason` 1 to [`REASON_MAX`] characters; `reopened_on` a [`date`];
/// `tier` a known value, where `TIER_UNSPECIFIED` is allowed and means "keep the last tier"
/// (as documented in `event.proto`).
///
/// # Errors
///
/// The first broken rule, as `case_reopened.<field>`.
pub fn case_reopened(
    m: &mut CaseReopened,
    _station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "case_reopened";
    uuid16(&path(P, "case_id"), &m.case_id)?;
    text(&path(P, "reason"), &mut m.reason, REASON_MAX, true)?;
    date(&path(P, "reopened_on"), &m.reopened_on, ctx)?;
    known_enum::<Tier>(&path(P, "tier"), m.tier)?;
    Ok(())
}

/// Validates a [`VisitRecorded`] (入户走访).
///
/// `case_id` 16 bytes; `visit_date` a [`date`]; `kind` specified; `duration_minutes` 0 to
/// [`VISIT_MINUTES_MAX`]; `notes` at most [`NOTE_MAX`] characters; at most
/// [`NEEDS_MAX_COUNT`] `needs_found`, each 1 to [`NEED_MAX`] characters.
///
/// # Errors
///
/// The first broken rule, as `visit_recorded.<field>`.
pub fn visit_recorded(
    m: &mut VisitRecorded,
    _station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "visit_recorded";
    uuid16(&path(P, "case_id"), &m.case_id)?;
    date(&path(P, "visit_date"), &m.visit_date, ctx)?;
    required_enum::<VisitKind>(&path(P, "kind"), m.kind)?;
    range(
        &path(P, "duration_minutes"),
        m.duration_minutes.into(),
        0,
        VISIT_MINUTES_MAX,
    )?;
    text(&path(P, "notes"), &mut m.notes, NOTE_MAX, false)?;
    if m.needs_found.len() > NEEDS_MAX_COUNT {
        return Err(Invalid::new(
            path(P, "needs_found"),
            format!(
                "must have at most {NEEDS_MAX_COUNT} entries, found {}",
                m.needs_found.len()
            ),
        ));
    }
    for (i, need) in m.needs_found.iter_mut().enumerate() {
        text(&format!("{P}.needs_found[{i}]"), need, NEED_MAX, true)?;
    }
    Ok(())
}

/// Validates a [`GuardianCalled`] (电话联系监护人).
///
/// `case_id` 16 bytes; `called_on` a [`date`]; `outcome` specified; `duration_minutes` 0 to
/// [`VISIT_MINUTES_MAX`], and 0 unless the guardian was reached; `notes` at most
/// [`NOTE_MAX`] characters.
///
/// # Errors
///
/// The first broken rule, as `guardian_called.<field>`.
pub fn guardian_called(
    m: &mut GuardianCalled,
    _station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "guardian_called";
    uuid16(&path(P, "case_id"), &m.case_id)?;
    date(&path(P, "called_on"), &m.called_on, ctx)?;
    required_enum::<CallOutcome>(&path(P, "outcome"), m.outcome)?;
    range(
        &path(P, "duration_minutes"),
        m.duration_minutes.into(),
        0,
        VISIT_MINUTES_MAX,
    )?;
    if m.duration_minutes > 0 && m.outcome != CallOutcome::Reached as i32 {
        return Err(Invalid::new(
            path(P, "duration_minutes"),
            "must be 0 when the guardian was not reached",
        ));
    }
    text(&path(P, "notes"), &mut m.notes, NOTE_MAX, false)?;
    Ok(())
}

/// Validates a [`BeneficiaryVerified`] (信息核实).
///
/// `case_id` 16 bytes; `verified_on` a [`date`]; categories known and not repeated, and at
/// least one when `still_eligible` (a person found no longer eligible may have none
/// confirmed); `notes` at most [`NOTE_MAX`] characters.
///
/// # Errors
///
/// The first broken rule, as `beneficiary_verified.<field>`.
pub fn beneficiary_verified(
    m: &mut BeneficiaryVerified,
    _station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "beneficiary_verified";
    uuid16(&path(P, "case_id"), &m.case_id)?;
    date(&path(P, "verified_on"), &m.verified_on, ctx)?;
    categories(&path(P, "categories"), &m.categories, m.still_eligible)?;
    text(&path(P, "notes"), &mut m.notes, NOTE_MAX, false)?;
    Ok(())
}

/// Validates an [`ActivityHeld`] (社区活动).
///
/// `held_on` a [`date`]; `community_code` inside the station; `kind` specified; `title` 1
/// to [`TITLE_MAX`] characters; `participants`, `person_times`, `volunteers` 0 to
/// [`COUNT_MAX`] with `person_times` at least `participants`; `volunteer_minutes` 0 to
/// [`VOLUNTEER_MINUTES_MAX`].
///
/// # Errors
///
/// The first broken rule, as `activity_held.<field>`.
pub fn activity_held(
    m: &mut ActivityHeld,
    station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "activity_held";
    date(&path(P, "held_on"), &m.held_on, ctx)?;
    community_code(&path(P, "community_code"), &m.community_code, station_code)?;
    required_enum::<ActivityKind>(&path(P, "kind"), m.kind)?;
    text(&path(P, "title"), &mut m.title, TITLE_MAX, true)?;
    range(
        &path(P, "participants"),
        m.participants.into(),
        0,
        COUNT_MAX,
    )?;
    range(
        &path(P, "person_times"),
        m.person_times.into(),
        0,
        COUNT_MAX,
    )?;
    if m.person_times < m.participants {
        return Err(Invalid::new(
            path(P, "person_times"),
            format!(
                "must be at least participants ({}), found {}",
                m.participants, m.person_times
            ),
        ));
    }
    range(&path(P, "volunteers"), m.volunteers.into(), 0, COUNT_MAX)?;
    range(
        &path(P, "volunteer_minutes"),
        m.volunteer_minutes.into(),
        0,
        VOLUNTEER_MINUTES_MAX,
    )?;
    Ok(())
}

/// Validates a [`GroupSessionHeld`] (小组工作).
///
/// `group_name` 1 to [`GROUP_NAME_MAX`] characters; `session_number` 1 to [`COUNT_MAX`];
/// `held_on` a [`date`]; `community_code` inside the station; `participants` 0 to
/// [`COUNT_MAX`]; `topic` at most [`TITLE_MAX`] characters.
///
/// # Errors
///
/// The first broken rule, as `group_session_held.<field>`.
pub fn group_session_held(
    m: &mut GroupSessionHeld,
    station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "group_session_held";
    text(
        &path(P, "group_name"),
        &mut m.group_name,
        GROUP_NAME_MAX,
        true,
    )?;
    range(
        &path(P, "session_number"),
        m.session_number.into(),
        1,
        COUNT_MAX,
    )?;
    date(&path(P, "held_on"), &m.held_on, ctx)?;
    community_code(&path(P, "community_code"), &m.community_code, station_code)?;
    range(
        &path(P, "participants"),
        m.participants.into(),
        0,
        COUNT_MAX,
    )?;
    text(&path(P, "topic"), &mut m.topic, TITLE_MAX, false)?;
    Ok(())
}

/// Validates a [`ResourceLinked`] (链接资源).
///
/// `case_id` empty (a community-level resource) or 16 bytes; `linked_on` a [`date`]; `kind`
/// specified; `source` 1 to [`TITLE_MAX`] characters; `cash_fen` and `in_kind_fen` 0 to
/// [`FEN_MAX`], and together more than 0 unless the kind is service or policy;
/// `description` at most [`DESCRIPTION_MAX`] characters.
///
/// # Errors
///
/// The first broken rule, as `resource_linked.<field>`.
pub fn resource_linked(
    m: &mut ResourceLinked,
    _station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "resource_linked";
    if !m.case_id.is_empty() {
        uuid16(&path(P, "case_id"), &m.case_id)?;
    }
    date(&path(P, "linked_on"), &m.linked_on, ctx)?;
    let kind: ResourceKind = required_enum(&path(P, "kind"), m.kind)?;
    text(&path(P, "source"), &mut m.source, TITLE_MAX, true)?;
    range(&path(P, "cash_fen"), m.cash_fen, 0, FEN_MAX)?;
    range(&path(P, "in_kind_fen"), m.in_kind_fen, 0, FEN_MAX)?;
    let valued = !matches!(kind, ResourceKind::Service | ResourceKind::Policy);
    // Both amounts are in 0..=FEN_MAX here, so the sum cannot overflow.
    if valued && m.cash_fen + m.in_kind_fen == 0 {
        return Err(Invalid::new(
            path(P, "cash_fen"),
            format!(
                "cash_fen plus in_kind_fen must be more than 0 for a {} resource",
                kind.as_str_name()
            ),
        ));
    }
    text(
        &path(P, "description"),
        &mut m.description,
        DESCRIPTION_MAX,
        false,
    )?;
    Ok(())
}

/// Validates a [`TrainingHeld`] (培训/督导/共学).
///
/// `held_on` a [`date`]; `kind` specified; `title` 1 to [`TITLE_MAX`] characters;
/// `trainees` 0 to [`COUNT_MAX`]; `minutes` 1 to [`TRAINING_MINUTES_MAX`].
///
/// # Errors
///
/// The first broken rule, as `training_held.<field>`.
pub fn training_held(
    m: &mut TrainingHeld,
    _station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "training_held";
    date(&path(P, "held_on"), &m.held_on, ctx)?;
    required_enum::<TrainingKind>(&path(P, "kind"), m.kind)?;
    text(&path(P, "title"), &mut m.title, TITLE_MAX, true)?;
    range(&path(P, "trainees"), m.trainees.into(), 0, COUNT_MAX)?;
    range(
        &path(P, "minutes"),
        m.minutes.into(),
        1,
        TRAINING_MINUTES_MAX,
    )?;
    Ok(())
}

/// Validates an [`EventVoided`].
///
/// `voided_event_id` 16 bytes; `reason` 1 to [`REASON_MAX`] characters.
///
/// # Errors
///
/// The first broken rule, as `event_voided.<field>`.
pub fn event_voided(
    m: &mut EventVoided,
    _station_code: &str,
    _ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "event_voided";
    uuid16(&path(P, "voided_event_id"), &m.voided_event_id)?;
    text(&path(P, "reason"), &mut m.reason, REASON_MAX, true)?;
    Ok(())
}

/// Validates a [`CaseTransferRequested`] (转移申请).
///
/// `case_id` 16 bytes; `to_station_code` 9 digits and not the event's own station;
/// `reason` 1 to [`REASON_MAX`] characters; `requested_on` a [`date`]. Whether the event's
/// station holds the file is for the receiver to judge, with the file's history.
///
/// # Errors
///
/// The first broken rule, as `case_transfer_requested.<field>`.
pub fn case_transfer_requested(
    m: &mut CaseTransferRequested,
    station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "case_transfer_requested";
    uuid16(&path(P, "case_id"), &m.case_id)?;
    let field = path(P, "to_station_code");
    self::station_code(&field, &m.to_station_code)?;
    if m.to_station_code == station_code {
        return Err(Invalid::new(
            field,
            "must name another station than the event's own",
        ));
    }
    text(&path(P, "reason"), &mut m.reason, REASON_MAX, true)?;
    date(&path(P, "requested_on"), &m.requested_on, ctx)?;
    Ok(())
}

/// Validates a [`CaseTransferAccepted`] (接收转移).
///
/// `case_id` and `request_id` 16 bytes; `community_code` a community of the event's
/// station (the receiving one); `accepted_on` a [`date`]; `note` at most [`REASON_MAX`]
/// characters.
///
/// # Errors
///
/// The first broken rule, as `case_transfer_accepted.<field>`.
pub fn case_transfer_accepted(
    m: &mut CaseTransferAccepted,
    station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "case_transfer_accepted";
    uuid16(&path(P, "case_id"), &m.case_id)?;
    uuid16(&path(P, "request_id"), &m.request_id)?;
    community_code(&path(P, "community_code"), &m.community_code, station_code)?;
    date(&path(P, "accepted_on"), &m.accepted_on, ctx)?;
    text(&path(P, "note"), &mut m.note, REASON_MAX, false)?;
    Ok(())
}

/// Validates a [`CaseTransferDeclined`] (拒绝转移).
///
/// `case_id` and `request_id` 16 bytes; `reason` 1 to [`REASON_MAX`] characters;
/// `declined_on` a [`date`].
///
/// # Errors
///
/// The first broken rule, as `case_transfer_declined.<field>`.
pub fn case_transfer_declined(
    m: &mut CaseTransferDeclined,
    _station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "case_transfer_declined";
    uuid16(&path(P, "case_id"), &m.case_id)?;
    uuid16(&path(P, "request_id"), &m.request_id)?;
    text(&path(P, "reason"), &mut m.reason, REASON_MAX, true)?;
    date(&path(P, "declined_on"), &m.declined_on, ctx)?;
    Ok(())
}

/// Validates a [`ReviewRequested`] (提请审核).
///
/// `case_id`, `subject_event_id` and `last_seen_event_id` 16 bytes; `subject` specified;
/// `requested_on` a [`date`]; `note` at most [`REASON_MAX`] characters.
///
/// # Errors
///
/// The first broken rule, as `review_requested.<field>`.
pub fn review_requested(
    m: &mut ReviewRequested,
    _station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "review_requested";
    uuid16(&path(P, "case_id"), &m.case_id)?;
    required_enum::<ReviewSubject>(&path(P, "subject"), m.subject)?;
    uuid16(&path(P, "subject_event_id"), &m.subject_event_id)?;
    uuid16(&path(P, "last_seen_event_id"), &m.last_seen_event_id)?;
    date(&path(P, "requested_on"), &m.requested_on, ctx)?;
    text(&path(P, "note"), &mut m.note, REASON_MAX, false)?;
    Ok(())
}

/// Validates a [`ReviewApproved`] (审核通过).
///
/// `case_id`, `request_id` and `last_seen_event_id` 16 bytes; `decided_on` a [`date`];
/// `comment` at most [`REASON_MAX`] characters.
///
/// # Errors
///
/// The first broken rule, as `review_approved.<field>`.
pub fn review_approved(
    m: &mut ReviewApproved,
    _station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "review_approved";
    uuid16(&path(P, "case_id"), &m.case_id)?;
    uuid16(&path(P, "request_id"), &m.request_id)?;
    uuid16(&path(P, "last_seen_event_id"), &m.last_seen_event_id)?;
    date(&path(P, "decided_on"), &m.decided_on, ctx)?;
    text(&path(P, "comment"), &mut m.comment, REASON_MAX, false)?;
    Ok(())
}

/// Validates a [`ReviewReturned`] (退回修改).
///
/// `case_id`, `request_id` and `last_seen_event_id` 16 bytes; `decided_on` a [`date`];
/// `comment` 1 to [`REASON_MAX`] characters (a return says what to change).
///
/// # Errors
///
/// The first broken rule, as `review_returned.<field>`.
pub fn review_returned(
    m: &mut ReviewReturned,
    _station_code: &str,
    ctx: &Context,
) -> Result<(), Invalid> {
    const P: &str = "review_returned";
    uuid16(&path(P, "case_id"), &m.case_id)?;
    uuid16(&path(P, "request_id"), &m.request_id)?;
    uuid16(&path(P, "last_seen_event_id"), &m.last_seen_event_id)?;
    date(&path(P, "decided_on"), &m.decided_on, ctx)?;
    text(&path(P, "comment"), &mut m.comment, REASON_MAX, true)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Field helpers
// ---------------------------------------------------------------------------------------------

/// Checks an 18-character resident ID number (GB 11643) and returns it normalised.
///
/// Surrounding whitespace is ignored. The first 17 characters are ASCII digits; the 18th is
/// their [`check_character`](crate::id_number::check_character) (a lower-case `x` is
/// accepted and returned as `X`);
/// characters 7 to 14 (YYYYMMDD) are a real date, not before 1900 and not after
/// `ctx.today`.
///
/// # Errors
///
/// The first broken rule. The rule never contains the number's digits, except the expected
/// check character.
pub fn id_number(field: &str, s: &str, ctx: &Context) -> Result<String, Invalid> {
    let s = s.trim();
    if s.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    let len = s.chars().count();
    if len != 18 {
        return Err(Invalid::new(
            field,
            format!("must be 18 characters, found {len}"),
        ));
    }
    // `get` is `None` off a character boundary, i.e. for non-ASCII text: not digits either.
    let Some(expected) = s.get(..17).and_then(gb11643::check_character) else {
        return Err(Invalid::new(
            field,
            "the first 17 characters must be digits",
        ));
    };
    // The first 17 characters are ASCII digits, so the 18th starts at byte 17.
    let given = s[17..].chars().next().map(|c| c.to_ascii_uppercase());
    let Some(given) = given.filter(|c| c.is_ascii_digit() || *c == 'X') else {
        return Err(Invalid::new(
            field,
            "the check character must be a digit or X",
        ));
    };
    if given != expected {
        return Err(Invalid::new(
            field,
            format!("check character should be {expected}"),
        ));
    }
    let normalised = format!("{}{given}", &s[..17]);
    let Some(birth) = gb11643::birth_date(&normalised) else {
        return Err(Invalid::new(
            field,
            "the birth date inside the number is not a real date",
        ));
    };
    if birth < EARLIEST {
        return Err(Invalid::new(
            field,
            "the birth date inside the number must not be before 1900",
        ));
    }
    if birth > ctx.today {
        return Err(Invalid::new(
            field,
            "the birth date inside the number must not be in the future",
        ));
    }
    Ok(normalised)
}

/// Parses a date written strictly as `YYYY-MM-DD` and checks it lies between 1900-01-01 and
/// one day after `ctx.today`.
///
/// # Errors
///
/// `must not be empty`, `must be a date written YYYY-MM-DD`, `must be a real date`,
/// `must not be before 1900-01-01` or `must not be more than one day in the future`.
pub fn date(field: &str, s: &str, ctx: &Context) -> Result<NaiveDate, Invalid> {
    if s.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    let b = s.as_bytes();
    let well_formed = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !well_formed {
        return Err(Invalid::new(field, "must be a date written YYYY-MM-DD"));
    }
    // Well-formed means ASCII digits at every other position, so these parses succeed.
    let (Ok(year), Ok(month), Ok(day)) = (s[..4].parse(), s[5..7].parse(), s[8..].parse()) else {
        return Err(Invalid::new(field, "must be a date written YYYY-MM-DD"));
    };
    let Some(d) = NaiveDate::from_ymd_opt(year, month, day) else {
        return Err(Invalid::new(field, "must be a real date"));
    };
    if d < EARLIEST {
        return Err(Invalid::new(field, "must not be before 1900-01-01"));
    }
    let latest = ctx.today.succ_opt().unwrap_or(ctx.today);
    if d > latest {
        return Err(Invalid::new(
            field,
            "must not be more than one day in the future",
        ));
    }
    Ok(d)
}

/// Checks a station code: exactly 9 ASCII digits (a township-level division code).
///
/// # Errors
///
/// `must be 9 digits`.
pub fn station_code(field: &str, s: &str) -> Result<(), Invalid> {
    if s.len() == 9 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(Invalid::new(field, "must be 9 digits"))
    }
}

/// Checks a community (village) code: exactly 12 ASCII digits, beginning with the 9-digit
/// `station_code` of the station the community belongs to.
///
/// # Errors
///
/// `must be 12 digits` or `must start with the station code NNNNNNNNN`.
pub fn community_code(field: &str, s: &str, station_code: &str) -> Result<(), Invalid> {
    if !(s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())) {
        return Err(Invalid::new(field, "must be 12 digits"));
    }
    if station_code.len() != 9 || !s.starts_with(station_code) {
        return Err(Invalid::new(
            field,
            format!("must start with the station code {station_code}"),
        ));
    }
    Ok(())
}

/// Normalises a text field in place and checks it.
///
/// The text is put in Unicode NFC and surrounding whitespace is trimmed; then it must not
/// contain control characters other than `\n` and `\t`, must not be empty when `required`,
/// and must be at most `max_chars` characters (Unicode scalar values). On error `s` is left
/// unchanged.
///
/// # Errors
///
/// `must not contain control character U+XXXX`, `must not be empty` or
/// `must be at most N characters`.
pub fn text(field: &str, s: &mut String, max_chars: usize, required: bool) -> Result<(), Invalid> {
    let normalised: String = s.nfc().collect();
    let trimmed = normalised.trim();
    if let Some(c) = trimmed
        .chars()
        .find(|&c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(Invalid::new(
            field,
            format!("must not contain control character U+{:04X}", u32::from(c)),
        ));
    }
    if required && trimmed.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if trimmed.chars().count() > max_chars {
        return Err(Invalid::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if trimmed != s.as_str() {
        *s = trimmed.to_owned();
    }
    Ok(())
}

/// Reads a 16-byte id as a [`Uuid`].
///
/// # Errors
///
/// `must be 16 bytes, found N`.
pub fn uuid16(field: &str, bytes: &[u8]) -> Result<Uuid, Invalid> {
    Uuid::from_slice(bytes)
        .map_err(|_| Invalid::new(field, format!("must be 16 bytes, found {}", bytes.len())))
}

/// An optional phone number: empty, or 5 to 20 characters of digits, `+`, `-` and spaces.
fn phone(field: &str, s: &mut String) -> Result<(), Invalid> {
    const RULE: &str = "must be 5 to 20 characters of digits, '+', '-' and spaces";
    text(field, s, 20, false).map_err(|_| Invalid::new(field, RULE))?;
    if s.is_empty() {
        return Ok(());
    }
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_digit() || c == '+' || c == '-' || c == ' ');
    if s.chars().count() < 5 || !ok_chars {
        return Err(Invalid::new(field, RULE));
    }
    Ok(())
}

/// A number within `min..=max`.
///
/// # Errors
/// `must not be negative`, `must be at least …` or `must be at most …`.
pub fn range(field: &str, value: i64, min: i64, max: i64) -> Result<(), Invalid> {
    if value < 0 && min == 0 {
        Err(Invalid::new(field, "must not be negative"))
    } else if value < min {
        Err(Invalid::new(field, format!("must be at least {min}")))
    } else if value > max {
        Err(Invalid::new(field, format!("must be at most {max}")))
    } else {
        Ok(())
    }
}

/// An enum value this build knows (the unspecified value included).
///
/// # Errors
/// `unknown value N` for a value this build does not know.
pub fn known_enum<E: TryFrom<i32>>(field: &str, raw: i32) -> Result<E, Invalid> {
    E::try_from(raw).map_err(|_| Invalid::new(field, format!("unknown value {raw}")))
}

/// A known enum value other than the unspecified one (0 in every `station.v1` enum).
///
/// # Errors
/// As [`known_enum`], and `must be specified` for the unspecified value.
pub fn required_enum<E: TryFrom<i32>>(field: &str, raw: i32) -> Result<E, Invalid> {
    let value = known_enum(field, raw)?;
    if raw == 0 {
        return Err(Invalid::new(field, "must be specified"));
    }
    Ok(value)
}

/// Known categories, none unspecified, none repeated, at least one when `required`.
fn categories(field: &str, raw: &[i32], required: bool) -> Result<(), Invalid> {
    if required && raw.is_empty() {
        return Err(Invalid::new(field, "must have at least one category"));
    }
    let mut seen: Vec<Category> = Vec::with_capacity(raw.len());
    for &value in raw {
        let category: Category = known_enum(field, value)?;
        if category == Category::Unspecified {
            return Err(Invalid::new(field, "must not contain CATEGORY_UNSPECIFIED"));
        }
        if seen.contains(&category) {
            return Err(Invalid::new(
                field,
                format!("must not repeat {}", category.as_str_name()),
            ));
        }
        seen.push(category);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use unicode_normalization::is_nfc;

    const STATION: &str = "540102002";
    const COMMUNITY: &str = "540102002001";
    const CASE_ID: [u8; 16] = [7; 16];

    fn ctx() -> Context {
        Context::on(NaiveDate::from_ymd_opt(2026, 11, 2).expect("valid date"))
    }

    fn err(field: &str, rule: &str) -> Result<(), Invalid> {
        Err(Invalid::new(field, rule))
    }

    fn v7() -> Vec<u8> {
        Uuid::from_u128(0x0192_8c5a_1e40_7abc_8def_0000_0000_0001)
            .as_bytes()
            .to_vec()
    }

    fn case_opened_ok() -> CaseOpened {
        CaseOpened {
            name: "次仁卓玛".into(),
            id_number: "540102199203040040".into(),
            gender: Gender::Female.into(),
            birth_date: "1992-03-04".into(),
            community_code: COMMUNITY.into(),
            address: "城关区 རྩེད་ཐང 3号".into(),
            phone: "+86 891-1234567".into(),
            language: "bo".into(),
            categories: vec![Category::Dibao.into(), Category::Disabled.into()],
            tier: Tier::Key.into(),
            source: CaseSource::Outreach.into(),
            opened_on: "2026-11-01".into(),
            file_number: String::new(),
            duplicate_reason: String::new(),
            duplicate_of_stations: Vec::new(),
        }
    }

    fn event_ok() -> Event {
        Event {
            event_id: v7(),
            origin_id: vec![1; 16],
            origin_seq: 1,
            station_code: STATION.into(),
            author: "sw-007".into(),
            recorded_at_ms: 0,
            hlc: 0,
            body: Some(Body::CaseOpened(case_opened_ok())),
        }
    }

    fn opened(f: impl FnOnce(&mut CaseOpened)) -> Result<(), Invalid> {
        let mut m = case_opened_ok();
        f(&mut m);
        case_opened(&mut m, STATION, &ctx())
    }

    // --- ID numbers (GB 11643) ---

    #[test]
    fn gb11643_example_is_valid() {
        assert_eq!(
            id_number("f", "11010519491231002X", &ctx()).as_deref(),
            Ok("11010519491231002X")
        );
    }

    #[test]
    fn wrong_check_character_names_the_expected_one() {
        assert_eq!(
            id_number("f", "110105194912310021", &ctx()),
            Err(Invalid::new("f", "check character should be X"))
        );
        assert_eq!(
            id_number("f", "540102198805121231", &ctx()),
            Err(Invalid::new("f", "check character should be 0"))
        );
    }

    #[test]
    fn lowercase_x_is_normalised() {
        assert_eq!(
            id_number("f", "11010519491231002x", &ctx()).as_deref(),
            Ok("11010519491231002X")
        );
        assert_eq!(
            id_number("f", " 11010519491231002x\n", &ctx()).as_deref(),
            Ok("11010519491231002X")
        );
    }

    #[test]
    fn id_number_shape_rules() {
        let c = ctx();
        let rule = |s: &str| id_number("f", s, &c).map_err(|e| e.rule);
        assert_eq!(rule(""), Err("must not be empty".into()));
        assert_eq!(
            rule("1101051949123100"),
            Err("must be 18 characters, found 16".into())
        );
        assert_eq!(
            rule("1101051949123100２X"),
            Err("the first 17 characters must be digits".into())
        );
        assert_eq!(
            rule("11010519491231002Y"),
            Err("the check character must be a digit or X".into())
        );
        assert_eq!(
            rule("11010519491231002*"),
            Err("the check character must be a digit or X".into())
        );
    }

    #[test]
    fn id_number_birth_date_rules() {
        let c = ctx();
        let rule = |s: &str| id_number("f", s, &c).map_err(|e| e.rule);
        assert_eq!(
            rule("110105198002300015"),
            Err("the birth date inside the number is not a real date".into())
        );
        assert_eq!(
            rule("110105189912310015"),
            Err("the birth date inside the number must not be before 1900".into())
        );
        assert_eq!(
            rule("540102202611030014"),
            Err("the birth date inside the number must not be in the future".into())
        );
        assert!(rule("540102202611020019").is_ok(), "born today is fine");
    }

    #[test]
    fn id_number_errors_do_not_echo_digits() {
        let c = ctx();
        for bad in [
            "110105198002300015",
            "110105189912310015",
            "540102202611030014",
            "1101051949123100",
        ] {
            let e = id_number("case_opened.id_number", bad, &c).expect_err("invalid");
            assert!(!e.to_string().contains("110105"), "{e}");
            assert!(!e.to_string().contains("540102"), "{e}");
        }
    }

    // --- dates ---

    #[test]
    fn date_rules() {
        let c = ctx();
        let rule = |s: &str| date("d", s, &c).map_err(|e| e.rule);
        assert_eq!(
            date("d", "2026-11-02", &c),
            Ok(NaiveDate::from_ymd_opt(2026, 11, 2).expect("valid"))
        );
        assert!(rule("2026-11-03").is_ok(), "one day ahead is tolerated");
        assert!(rule("1900-01-01").is_ok());
        assert_eq!(
            rule("2026-11-04"),
            Err("must not be more than one day in the future".into())
        );
        assert_eq!(
            rule("1899-12-31"),
            Err("must not be before 1900-01-01".into())
        );
        assert_eq!(rule("2026-02-29"), Err("must be a real date".into()));
        assert!(rule("2024-02-29").is_ok());
        assert_eq!(rule(""), Err("must not be empty".into()));
        for bad in [
            "2026-1-02",
            "2026/11/02",
            "20261102",
            " 2026-11-02",
            "2026-11-02T00:00",
            "+026-11-02",
            "２026-11-02",
        ] {
            assert_eq!(
                rule(bad),
                Err("must be a date written YYYY-MM-DD".into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn date_at_the_end_of_time_does_not_panic() {
        let c = Context::on(NaiveDate::MAX);
        assert!(date("d", "2026-11-02", &c).is_ok());
    }

    // --- codes ---

    #[test]
    fn station_and_community_codes() {
        assert_eq!(station_code("s", "540102002"), Ok(()));
        for bad in ["54010200", "5401020021", "54010200a", "５40102002", ""] {
            assert_eq!(station_code("s", bad), err("s", "must be 9 digits"));
        }
        assert_eq!(community_code("c", COMMUNITY, STATION), Ok(()));
        assert_eq!(
            community_code("c", "54010200200", STATION),
            err("c", "must be 12 digits")
        );
        assert_eq!(
            community_code("c", "110105002001", STATION),
            err("c", "must start with the station code 540102002")
        );
    }

    // --- text ---

    #[test]
    fn text_trims_and_enforces_length_in_chars() {
        let mut s = "  社区活动\n ".to_string();
        assert_eq!(text("t", &mut s, 4, true), Ok(()));
        assert_eq!(s, "社区活动");
        let mut s = "社区活动室".to_string();
        assert_eq!(
            text("t", &mut s, 4, true),
            err("t", "must be at most 4 characters")
        );
        assert_eq!(s, "社区活动室", "unchanged on error");
        let mut s = " \t ".to_string();
        assert_eq!(text("t", &mut s, 4, true), err("t", "must not be empty"));
        assert_eq!(text("t", &mut s, 4, false), Ok(()));
        assert_eq!(s, "");
    }

    #[test]
    fn text_rejects_control_characters_but_keeps_newline_and_tab() {
        let mut s = "第一行\n\t第二行".to_string();
        assert_eq!(text("t", &mut s, 100, true), Ok(()));
        assert_eq!(s, "第一行\n\t第二行");
        for (bad, code) in [("a\u{7}b", "0007"), ("a\rb", "000D"), ("a\u{85}b", "0085")] {
            let mut s = bad.to_string();
            assert_eq!(
                text("t", &mut s, 100, true),
                err("t", &format!("must not contain control character U+{code}"))
            );
        }
    }

    #[test]
    fn tibetan_and_chinese_round_trip_unchanged() {
        for original in [
            "རྩེད་ཐང",
            "བཀྲ་ཤིས་བདེ་ལེགས།",
            "拉萨市城关区社会工作站",
            "次仁 རྩེད་ཐང 卓玛",
        ] {
            assert!(is_nfc(original), "{original} is already NFC");
            let mut s = original.to_string();
            assert_eq!(text("t", &mut s, 100, true), Ok(()));
            assert_eq!(s, original);
        }
    }

    #[test]
    fn decomposed_latin_is_composed() {
        let mut s = "Jose\u{301} Mu\u{308}ller".to_string();
        assert_eq!(text("t", &mut s, 100, true), Ok(()));
        assert_eq!(s, "Jos\u{e9} M\u{fc}ller");
        // Length is counted after composition: 4 characters, not 5.
        let mut s = "Jose\u{301}".to_string();
        assert_eq!(text("t", &mut s, 4, true), Ok(()));
    }

    // --- ids and envelope ---

    #[test]
    fn uuid16_requires_sixteen_bytes() {
        assert!(uuid16("i", &[0; 16]).is_ok());
        assert_eq!(
            uuid16("i", &[0; 15]),
            Err(Invalid::new("i", "must be 16 bytes, found 15"))
        );
        assert_eq!(
            uuid16("i", &[]),
            Err(Invalid::new("i", "must be 16 bytes, found 0"))
        );
    }

    #[test]
    fn valid_event_passes_and_is_unchanged() {
        let mut e = event_ok();
        assert_eq!(event(&mut e, &ctx()), Ok(()));
        assert_eq!(e, event_ok());
    }

    #[test]
    fn clocks_ahead_of_the_receiver_by_more_than_the_skew_are_refused() {
        let now: i64 = 1_800_000_000_000;
        let hour = 3_600_000;
        let c = Context::at(now, MAX_CLOCK_SKEW_MS);
        let at = |ms: i64| {
            let mut e = event_ok();
            e.event_id = crate::ids::v7_at(ms as u64).as_bytes().to_vec();
            e.recorded_at_ms = ms;
            e.hlc = (ms as u64) << HLC_LOGICAL_BITS;
            e
        };
        assert_eq!(event(&mut at(now + 24 * hour), &c), Ok(()));
        let beyond = "is 1 h beyond the receiver's clock plus its allowed skew; \
                      check the device's date and time";
        let mut e = at(now);
        e.recorded_at_ms = now + 25 * hour;
        assert_eq!(event(&mut e, &c), err("recorded_at_ms", beyond));
        let mut e = at(now);
        e.hlc = u64::MAX;
        assert!(
            event(&mut e, &c)
                .expect_err("an hlc at the end of the range")
                .to_string()
                .starts_with("hlc: is ")
        );
        let mut e = at(now);
        e.event_id = crate::ids::v7_at((now + 25 * hour) as u64)
            .as_bytes()
            .to_vec();
        assert_eq!(event(&mut e, &c), err("event_id", beyond));
        let mut e = at(now);
        e.recorded_at_ms = i64::MIN;
        assert_eq!(
            event(&mut e, &ctx()),
            err("recorded_at_ms", "must not be before 1970"),
            "refused even where clocks are not bounded"
        );
        assert_eq!(
            event(&mut at(i64::MAX / 2), &ctx()),
            Ok(()),
            "unbounded context"
        );
    }

    #[test]
    fn envelope_rules() {
        let check = |f: fn(&mut Event)| {
            let mut e = event_ok();
            f(&mut e);
            event(&mut e, &ctx())
        };
        assert_eq!(
            check(|e| e.event_id.truncate(8)),
            err("event_id", "must be 16 bytes, found 8")
        );
        assert_eq!(
            check(
                |e| e.event_id = Uuid::from_u128(0x936d_a01f_9abd_4d9d_80c7_02af_85c8_22a8)
                    .as_bytes()
                    .to_vec()
            ),
            err("event_id", "must be a version 7 UUID, found version 4")
        );
        assert_eq!(
            check(|e| e.event_id[8] = 0x00),
            err(
                "event_id",
                "must be a version 7 UUID of the RFC 9562 variant"
            )
        );
        assert_eq!(
            check(|e| e.origin_id.clear()),
            err("origin_id", "must be 16 bytes, found 0")
        );
        assert_eq!(
            check(|e| e.origin_seq = 0),
            err("origin_seq", "must be at least 1")
        );
        assert_eq!(
            check(|e| e.station_code = "5401020".into()),
            err("station_code", "must be 9 digits")
        );
        assert_eq!(
            check(|e| e.author = "  ".into()),
            err("author", "must not be empty")
        );
        assert_eq!(
            check(|e| e.author = "a".repeat(65)),
            err("author", "must be at most 64 characters")
        );
        assert_eq!(check(|e| e.body = None), err("body", "must be present"));
    }

    #[test]
    fn community_must_belong_to_the_event_station() {
        let mut e = event_ok();
        e.station_code = "540102003".into();
        assert_eq!(
            event(&mut e, &ctx()),
            err(
                "case_opened.community_code",
                "must start with the station code 540102003"
            )
        );
    }

    // --- CaseOpened ---

    #[test]
    fn case_opened_normalises_id_number() {
        let mut m = case_opened_ok();
        m.id_number = "11010519491231002x".into();
        m.birth_date = "1949-12-31".into();
        assert_eq!(case_opened(&mut m, STATION, &ctx()), Ok(()));
        assert_eq!(m.id_number, "11010519491231002X");
    }

    #[test]
    fn case_opened_rules() {
        let f = "case_opened";
        assert_eq!(
            opened(|m| m.name = " ".into()),
            err(&format!("{f}.name"), "must not be empty")
        );
        assert_eq!(
            opened(|m| m.name = "名".repeat(51)),
            err(&format!("{f}.name"), "must be at most 50 characters")
        );
        assert_eq!(
            opened(|m| m.id_number = "540102199203040041".into()),
            err(&format!("{f}.id_number"), "check character should be 0")
        );
        assert_eq!(
            opened(|m| m.gender = Gender::Unspecified.into()),
            err(&format!("{f}.gender"), "must be specified")
        );
        assert_eq!(
            opened(|m| m.gender = 9),
            err(&format!("{f}.gender"), "unknown value 9")
        );
        assert_eq!(
            opened(|m| m.gender = Gender::Male.into()),
            err(
                &format!("{f}.gender"),
                "must agree with the ID number (17th digit: odd is male, even is female)"
            )
        );
        assert_eq!(
            opened(|m| {
                m.id_number = "540102198805121230".into();
                m.birth_date = "1988-05-12".into();
                m.gender = Gender::Male.into();
            }),
            Ok(())
        );
        assert_eq!(
            opened(|m| m.birth_date = "1992-03-05".into()),
            err(
                &format!("{f}.birth_date"),
                "must equal the birth date inside the ID number"
            )
        );
        assert_eq!(
            opened(|m| m.birth_date = String::new()),
            err(&format!("{f}.birth_date"), "must not be empty")
        );
        assert_eq!(
            opened(|m| m.address = "路".repeat(201)),
            err(&format!("{f}.address"), "must be at most 200 characters")
        );
        assert_eq!(opened(|m| m.address.clear()), Ok(()));
        assert_eq!(
            opened(|m| m.language = "x".repeat(17)),
            err(&format!("{f}.language"), "must be at most 16 characters")
        );
        assert_eq!(
            opened(|m| m.source = CaseSource::Unspecified.into()),
            err(&format!("{f}.source"), "must be specified")
        );
        assert_eq!(
            opened(|m| m.tier = 4),
            err(&format!("{f}.tier"), "unknown value 4")
        );
        assert_eq!(
            opened(|m| m.tier = 0),
            err(&format!("{f}.tier"), "must be specified")
        );
        assert_eq!(
            opened(|m| m.opened_on = "2026-11-05".into()),
            err(
                &format!("{f}.opened_on"),
                "must not be more than one day in the future"
            )
        );
    }

    #[test]
    fn case_opened_without_id_number_needs_gender_and_a_past_birth_date() {
        let f = "case_opened";
        let without = |g: fn(&mut CaseOpened)| {
            opened(|m| {
                m.id_number.clear();
                m.birth_date = "2019-06-01".into();
                g(m);
            })
        };
        assert_eq!(without(|_| {}), Ok(()));
        let mut m = case_opened_ok();
        m.id_number = " \t".into();
        assert_eq!(case_opened(&mut m, STATION, &ctx()), Ok(()));
        assert_eq!(m.id_number, "", "a blank ID number is cleared");
        // No ID number: the birth date and gender need not agree with any.
        assert_eq!(without(|m| m.gender = Gender::Male.into()), Ok(()));
        assert_eq!(
            without(|m| m.gender = Gender::Unspecified.into()),
            err(
                &format!("{f}.gender"),
                "is required when there is no ID number"
            )
        );
        assert_eq!(
            without(|m| m.gender = 7),
            err(&format!("{f}.gender"), "unknown value 7")
        );
        assert_eq!(
            without(|m| m.birth_date.clear()),
            err(
                &format!("{f}.birth_date"),
                "is required when there is no ID number"
            )
        );
        assert_eq!(
            without(|m| m.birth_date = "2026-11-03".into()),
            err(&format!("{f}.birth_date"), "must not be in the future")
        );
        assert_eq!(
            without(|m| m.birth_date = "1899-12-31".into()),
            err(&format!("{f}.birth_date"), "must not be before 1900-01-01")
        );
        assert_eq!(
            without(|m| m.birth_date = "2019-02-30".into()),
            err(&format!("{f}.birth_date"), "must be a real date")
        );
        assert_eq!(
            without(|m| m.birth_date = "2026-11-02".into()),
            err(
                &format!("{f}.birth_date"),
                "must not be after the day the file is opened"
            )
        );
        assert_eq!(
            without(|m| m.name.clear()),
            err(&format!("{f}.name"), "must not be empty")
        );
        // With an ID number the rules stay: a bad one is refused, not
        // taken as absent.
        assert_eq!(
            opened(|m| m.id_number = "5401021992".into()),
            err(&format!("{f}.id_number"), "must be 18 characters, found 10")
        );
    }

    #[test]
    fn phone_rules() {
        let rule = "must be 5 to 20 characters of digits, '+', '-' and spaces";
        let field = "case_opened.phone";
        assert_eq!(opened(|m| m.phone.clear()), Ok(()));
        assert_eq!(opened(|m| m.phone = "0891-6321234".into()), Ok(()));
        assert_eq!(opened(|m| m.phone = " 12345 ".into()), Ok(()));
        assert_eq!(opened(|m| m.phone = "1234".into()), err(field, rule));
        assert_eq!(opened(|m| m.phone = "1".repeat(21)), err(field, rule));
        assert_eq!(
            opened(|m| m.phone = "139 0000 000a".into()),
            err(field, rule)
        );
        assert_eq!(
            opened(|m| m.phone = "139\u{7}00000".into()),
            err(field, rule)
        );
    }

    #[test]
    fn category_rules() {
        let field = "case_opened.categories";
        assert_eq!(
            opened(|m| m.categories.clear()),
            err(field, "must have at least one category")
        );
        assert_eq!(
            opened(|m| m.categories.push(0)),
            err(field, "must not contain CATEGORY_UNSPECIFIED")
        );
        assert_eq!(
            opened(|m| m.categories.push(Category::Dibao.into())),
            err(field, "must not repeat CATEGORY_DIBAO")
        );
        assert_eq!(
            opened(|m| m.categories.push(42)),
            err(field, "unknown value 42")
        );
    }

    #[test]
    fn personal_data_is_never_echoed() {
        let secret_name = "次仁卓玛".repeat(20);
        let e = opened(|m| m.name = secret_name.clone()).expect_err("too long");
        assert!(!e.to_string().contains("次仁"), "{e}");
        let e = opened(|m| m.gender = Gender::Male.into()).expect_err("mismatch");
        assert!(!e.to_string().contains("540102199203040040"), "{e}");
        let e = opened(|m| m.birth_date = "1992-03-05".into()).expect_err("mismatch");
        assert!(!e.to_string().contains("1992"), "{e}");
        let e = opened(|m| m.phone = "139 0000 000a".into()).expect_err("bad phone");
        assert!(!e.to_string().contains("139"), "{e}");
    }

    // --- case events ---

    #[test]
    fn case_event_rules() {
        let c = ctx();
        let mut m = CaseAssessed {
            case_id: CASE_ID.to_vec(),
            tier: Tier::HighRisk.into(),
            reason: "独居且行动不便".into(),
            last_seen_event_id: v7(),
            assessed_on: "2026-11-02".into(),
        };
        assert_eq!(case_assessed(&mut m, STATION, &c), Ok(()));
        m.last_seen_event_id.clear();
        assert_eq!(
            case_assessed(&mut m, STATION, &c),
            err(
                "case_assessed.last_seen_event_id",
                "must be 16 bytes, found 0"
            )
        );
        m.last_seen_event_id = v7();
        m.reason = "因".repeat(501);
        assert_eq!(
            case_assessed(&mut m, STATION, &c),
            err("case_assessed.reason", "must be at most 500 characters")
        );

        let mut m = CaseNoteAdded {
            case_id: CASE_ID.to_vec(),
            kind: NoteKind::Plan.into(),
            text: "计划".into(),
            noted_on: "2026-11-02".into(),
        };
        assert_eq!(case_note_added(&mut m, STATION, &c), Ok(()));
        m.text = "字".repeat(4001);
        assert_eq!(
            case_note_added(&mut m, STATION, &c),
            err("case_note_added.text", "must be at most 4000 characters")
        );
        m.text.clear();
        assert_eq!(
            case_note_added(&mut m, STATION, &c),
            err("case_note_added.text", "must not be empty")
        );

        let mut m = CaseClosed {
            case_id: vec![1; 17],
            reason: "迁出".into(),
            closed_on: "2026-11-02".into(),
        };
        assert_eq!(
            case_closed(&mut m, STATION, &c),
            err("case_closed.case_id", "must be 16 bytes, found 17")
        );

        let mut m = CaseReopened {
            case_id: CASE_ID.to_vec(),
            reason: "返乡".into(),
            reopened_on: "2026-11-02".into(),
            tier: Tier::Unspecified.into(),
        };
        assert_eq!(
            case_reopened(&mut m, STATION, &c),
            Ok(()),
            "keeps last tier"
        );
        m.tier = 7;
        assert_eq!(
            case_reopened(&mut m, STATION, &c),
            err("case_reopened.tier", "unknown value 7")
        );

        let mut m = EventVoided {
            voided_event_id: v7(),
            reason: String::new(),
        };
        assert_eq!(
            event_voided(&mut m, STATION, &c),
            err("event_voided.reason", "must not be empty")
        );
        m.voided_event_id.clear();
        assert_eq!(
            event_voided(&mut m, STATION, &c),
            err("event_voided.voided_event_id", "must be 16 bytes, found 0")
        );
    }

    #[test]
    fn visit_rules() {
        let c = ctx();
        let ok = VisitRecorded {
            case_id: CASE_ID.to_vec(),
            visit_date: "2026-11-01".into(),
            kind: VisitKind::Home.into(),
            duration_minutes: 30,
            notes: String::new(),
            needs_found: vec!["冬季取暖".into(), "  医疗报销 ".into()],
        };
        let check = |f: &dyn Fn(&mut VisitRecorded)| {
            let mut m = ok.clone();
            f(&mut m);
            visit_recorded(&mut m, STATION, &c)
        };
        let mut m = ok.clone();
        assert_eq!(visit_recorded(&mut m, STATION, &c), Ok(()));
        assert_eq!(m.needs_found[1], "医疗报销");
        assert_eq!(
            check(&|m| m.kind = 42),
            err("visit_recorded.kind", "unknown value 42")
        );
        assert_eq!(
            check(&|m| m.kind = 0),
            err("visit_recorded.kind", "must be specified")
        );
        assert_eq!(
            check(&|m| m.duration_minutes = -1),
            err("visit_recorded.duration_minutes", "must not be negative")
        );
        assert_eq!(
            check(&|m| m.duration_minutes = 1441),
            err("visit_recorded.duration_minutes", "must be at most 1440")
        );
        assert_eq!(check(&|m| m.duration_minutes = 1440), Ok(()));
        assert_eq!(
            check(&|m| m.needs_found = vec!["x".into(); 21]),
            err(
                "visit_recorded.needs_found",
                "must have at most 20 entries, found 21"
            )
        );
        assert_eq!(
            check(&|m| m.needs_found[1] = " ".into()),
            err("visit_recorded.needs_found[1]", "must not be empty")
        );
        assert_eq!(
            check(&|m| m.needs_found[0] = "需".repeat(201)),
            err(
                "visit_recorded.needs_found[0]",
                "must be at most 200 characters"
            )
        );
        assert_eq!(
            check(&|m| m.visit_date = "2026-13-01".into()),
            err("visit_recorded.visit_date", "must be a real date")
        );
    }

    #[test]
    fn merge_and_dismissal_rules() {
        let c = ctx();
        let other = [9u8; 16];
        let ok = CasesMerged {
            survivor_case_id: CASE_ID.to_vec(),
            absorbed_case_id: other.to_vec(),
            reason: " 两部手机离线各建一档 ".into(),
            merged_on: "2026-11-01".into(),
        };
        let mut m = ok.clone();
        assert_eq!(cases_merged(&mut m, STATION, &c), Ok(()));
        assert_eq!(m.reason, "两部手机离线各建一档");
        let check = |f: &dyn Fn(&mut CasesMerged)| {
            let mut m = ok.clone();
            f(&mut m);
            cases_merged(&mut m, STATION, &c)
        };
        assert_eq!(
            check(&|m| m.absorbed_case_id = CASE_ID.to_vec()),
            err(
                "cases_merged.absorbed_case_id",
                "must name another file than the survivor"
            )
        );
        assert_eq!(
            check(&|m| m.survivor_case_id = vec![1; 3]),
            err("cases_merged.survivor_case_id", "must be 16 bytes, found 3")
        );
        assert_eq!(
            check(&|m| m.reason = " ".into()),
            err("cases_merged.reason", "must not be empty")
        );
        assert_eq!(
            check(&|m| m.merged_on = "2026-02-30".into()),
            err("cases_merged.merged_on", "must be a real date")
        );
        let ok = DuplicateDismissed {
            case_id: CASE_ID.to_vec(),
            duplicate_of_case_id: other.to_vec(),
            reason: "身份证号录错，是两个人".into(),
            dismissed_on: "2026-11-01".into(),
        };
        let check = |f: &dyn Fn(&mut DuplicateDismissed)| {
            let mut m = ok.clone();
            f(&mut m);
            duplicate_dismissed(&mut m, STATION, &c)
        };
        assert_eq!(check(&|_| {}), Ok(()));
        assert_eq!(
            check(&|m| m.duplicate_of_case_id = CASE_ID.to_vec()),
            err(
                "duplicate_dismissed.duplicate_of_case_id",
                "must name another file than case_id"
            )
        );
        assert_eq!(
            check(&|m| m.reason.clear()),
            err("duplicate_dismissed.reason", "must not be empty")
        );
    }

    #[test]
    fn review_rules() {
        let c = ctx();
        let request = ReviewRequested {
            case_id: CASE_ID.to_vec(),
            subject: ReviewSubject::Closure.into(),
            subject_event_id: CASE_ID.to_vec(),
            last_seen_event_id: CASE_ID.to_vec(),
            requested_on: "2026-11-01".into(),
            note: " 迁出 ".into(),
        };
        let mut m = request.clone();
        assert_eq!(review_requested(&mut m, STATION, &c), Ok(()));
        assert_eq!(m.note, "迁出");
        let mut m = ReviewRequested {
            subject: 0,
            ..request.clone()
        };
        assert_eq!(
            review_requested(&mut m, STATION, &c),
            err("review_requested.subject", "must be specified")
        );
        let mut m = ReviewRequested {
            subject_event_id: vec![1; 3],
            ..request
        };
        assert!(review_requested(&mut m, STATION, &c).is_err());
        let returned = ReviewReturned {
            case_id: CASE_ID.to_vec(),
            request_id: CASE_ID.to_vec(),
            last_seen_event_id: CASE_ID.to_vec(),
            decided_on: "2026-11-02".into(),
            comment: "请补充家访记录".into(),
        };
        let mut m = returned.clone();
        assert_eq!(review_returned(&mut m, STATION, &c), Ok(()));
        let mut m = ReviewReturned {
            comment: " ".into(),
            ..returned.clone()
        };
        assert_eq!(
            review_returned(&mut m, STATION, &c),
            err("review_returned.comment", "must not be empty")
        );
        let mut m = ReviewApproved {
            case_id: returned.case_id,
            request_id: returned.request_id,
            last_seen_event_id: returned.last_seen_event_id,
            decided_on: returned.decided_on,
            comment: String::new(),
        };
        assert_eq!(review_approved(&mut m, STATION, &c), Ok(()));
        m.decided_on = "2026-12-30".into();
        assert!(review_approved(&mut m, STATION, &c).is_err());
    }

    #[test]
    fn guardian_call_rules() {
        let c = ctx();
        let ok = GuardianCalled {
            case_id: CASE_ID.to_vec(),
            called_on: "2026-11-01".into(),
            outcome: CallOutcome::Reached.into(),
            duration_minutes: 12,
            notes: "  监护人在拉萨务工 ".into(),
        };
        let check = |f: &dyn Fn(&mut GuardianCalled)| {
            let mut m = ok.clone();
            f(&mut m);
            guardian_called(&mut m, STATION, &c)
        };
        let mut m = ok.clone();
        assert_eq!(guardian_called(&mut m, STATION, &c), Ok(()));
        assert_eq!(m.notes, "监护人在拉萨务工");
        assert_eq!(
            check(&|m| m.outcome = 0),
            err("guardian_called.outcome", "must be specified")
        );
        assert_eq!(
            check(&|m| m.outcome = 9),
            err("guardian_called.outcome", "unknown value 9")
        );
        assert_eq!(
            check(&|m| m.duration_minutes = -5),
            err("guardian_called.duration_minutes", "must not be negative")
        );
        assert_eq!(
            check(&|m| m.outcome = CallOutcome::NoAnswer.into()),
            err(
                "guardian_called.duration_minutes",
                "must be 0 when the guardian was not reached"
            )
        );
        assert_eq!(
            check(&|m| {
                m.outcome = CallOutcome::Unreachable.into();
                m.duration_minutes = 0;
            }),
            Ok(())
        );
        assert_eq!(
            check(&|m| m.case_id = vec![1; 3]),
            err("guardian_called.case_id", "must be 16 bytes, found 3")
        );
        assert_eq!(
            check(&|m| m.called_on = "2026-02-30".into()),
            err("guardian_called.called_on", "must be a real date")
        );
    }

    #[test]
    fn verification_rules() {
        let c = ctx();
        let mut m = BeneficiaryVerified {
            case_id: CASE_ID.to_vec(),
            verified_on: "2026-11-02".into(),
            categories: vec![Category::Elderly.into()],
            still_eligible: true,
            notes: String::new(),
        };
        assert_eq!(beneficiary_verified(&mut m, STATION, &c), Ok(()));
        m.categories.clear();
        assert_eq!(
            beneficiary_verified(&mut m, STATION, &c),
            err(
                "beneficiary_verified.categories",
                "must have at least one category"
            )
        );
        m.still_eligible = false;
        assert_eq!(beneficiary_verified(&mut m, STATION, &c), Ok(()));
        m.categories = vec![Category::Orphan.into(), Category::Orphan.into()];
        assert_eq!(
            beneficiary_verified(&mut m, STATION, &c),
            err(
                "beneficiary_verified.categories",
                "must not repeat CATEGORY_ORPHAN"
            )
        );
    }

    #[test]
    fn activity_count_rules() {
        let c = ctx();
        let ok = ActivityHeld {
            held_on: "2026-11-01".into(),
            community_code: COMMUNITY.into(),
            kind: ActivityKind::Clinic.into(),
            title: "义诊进社区".into(),
            participants: 40,
            person_times: 55,
            volunteers: 6,
            volunteer_minutes: 720,
        };
        let check = |f: &dyn Fn(&mut ActivityHeld)| {
            let mut m = ok.clone();
            f(&mut m);
            activity_held(&mut m, STATION, &c)
        };
        assert_eq!(check(&|_| {}), Ok(()));
        assert_eq!(
            check(&|m| m.participants = -1),
            err("activity_held.participants", "must not be negative")
        );
        assert_eq!(
            check(&|m| m.person_times = 39),
            err(
                "activity_held.person_times",
                "must be at least participants (40), found 39"
            )
        );
        assert_eq!(
            check(&|m| m.volunteers = 100_001),
            err("activity_held.volunteers", "must be at most 100000")
        );
        assert_eq!(
            check(&|m| m.volunteer_minutes = 10_000_001),
            err(
                "activity_held.volunteer_minutes",
                "must be at most 10000000"
            )
        );
        assert_eq!(
            check(&|m| m.title.clear()),
            err("activity_held.title", "must not be empty")
        );
        assert_eq!(
            check(&|m| m.community_code = "540102001001".into()),
            err(
                "activity_held.community_code",
                "must start with the station code 540102002"
            )
        );
    }

    #[test]
    fn group_session_rules() {
        let c = ctx();
        let ok = GroupSessionHeld {
            group_name: "老年互助小组".into(),
            session_number: 1,
            held_on: "2026-11-01".into(),
            community_code: COMMUNITY.into(),
            participants: 8,
            topic: String::new(),
        };
        let check = |f: &dyn Fn(&mut GroupSessionHeld)| {
            let mut m = ok.clone();
            f(&mut m);
            group_session_held(&mut m, STATION, &c)
        };
        assert_eq!(check(&|_| {}), Ok(()));
        assert_eq!(
            check(&|m| m.session_number = 0),
            err("group_session_held.session_number", "must be at least 1")
        );
        assert_eq!(
            check(&|m| m.group_name = "组".repeat(101)),
            err(
                "group_session_held.group_name",
                "must be at most 100 characters"
            )
        );
    }

    #[test]
    fn resource_amount_rules() {
        let c = ctx();
        let ok = ResourceLinked {
            case_id: Vec::new(),
            linked_on: "2026-11-01".into(),
            kind: ResourceKind::Cash.into(),
            source: "慈善总会".into(),
            cash_fen: 50_000,
            in_kind_fen: 0,
            description: String::new(),
        };
        let check = |f: &dyn Fn(&mut ResourceLinked)| {
            let mut m = ok.clone();
            f(&mut m);
            resource_linked(&mut m, STATION, &c)
        };
        assert_eq!(check(&|_| {}), Ok(()));
        assert_eq!(check(&|m| m.case_id = CASE_ID.to_vec()), Ok(()));
        assert_eq!(
            check(&|m| m.case_id = vec![1; 3]),
            err("resource_linked.case_id", "must be 16 bytes, found 3")
        );
        assert_eq!(
            check(&|m| m.cash_fen = -1),
            err("resource_linked.cash_fen", "must not be negative")
        );
        assert_eq!(
            check(&|m| m.in_kind_fen = i64::MIN),
            err("resource_linked.in_kind_fen", "must not be negative")
        );
        assert_eq!(
            check(&|m| m.cash_fen = FEN_MAX + 1),
            err("resource_linked.cash_fen", "must be at most 1000000000000")
        );
        assert_eq!(
            check(&|m| {
                m.cash_fen = FEN_MAX;
                m.in_kind_fen = FEN_MAX;
            }),
            Ok(())
        );
        assert_eq!(
            check(&|m| m.cash_fen = 0),
            err(
                "resource_linked.cash_fen",
                "cash_fen plus in_kind_fen must be more than 0 for a RESOURCE_KIND_CASH resource"
            )
        );
        assert_eq!(
            check(&|m| {
                m.cash_fen = 0;
                m.kind = ResourceKind::Service.into();
            }),
            Ok(())
        );
        assert_eq!(
            check(&|m| {
                m.cash_fen = 0;
                m.kind = ResourceKind::Policy.into();
            }),
            Ok(())
        );
        assert_eq!(
            check(&|m| m.source.clear()),
            err("resource_linked.source", "must not be empty")
        );
    }

    #[test]
    fn training_rules() {
        let c = ctx();
        let ok = TrainingHeld {
            held_on: "2026-10-30".into(),
            kind: TrainingKind::CoLearning.into(),
            title: "个案管理共学".into(),
            trainees: 12,
            minutes: 90,
        };
        let check = |f: &dyn Fn(&mut TrainingHeld)| {
            let mut m = ok.clone();
            f(&mut m);
            training_held(&mut m, STATION, &c)
        };
        assert_eq!(check(&|_| {}), Ok(()));
        assert_eq!(
            check(&|m| m.minutes = 0),
            err("training_held.minutes", "must be at least 1")
        );
        assert_eq!(
            check(&|m| m.minutes = 100_001),
            err("training_held.minutes", "must be at most 100000")
        );
        assert_eq!(
            check(&|m| m.trainees = -3),
            err("training_held.trainees", "must not be negative")
        );
        assert_eq!(
            check(&|m| m.kind = -1),
            err("training_held.kind", "unknown value -1")
        );
    }

    #[test]
    fn body_dispatch_prefixes_the_body_name() {
        let mut b = Body::TrainingHeld(TrainingHeld::default());
        let e = body(&mut b, STATION, &ctx()).expect_err("empty body");
        assert_eq!(e.field, "training_held.held_on");
        assert_eq!(e.to_string(), "training_held.held_on: must not be empty");
    }
}
