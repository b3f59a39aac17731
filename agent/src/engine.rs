//! The agent engine: one device's identity, its durable log and its views,
//! with the checks that need the device's state (unknown case, closed case,
//! void of a missing event, a second open file for one person, a merge whose
//! files cannot be merged) on top of the pure validation of `station-proto`.
//!
//! Who may merge: a worker of the station holding both files (a device knows
//! only its station's files, so a file of another station is an unknown
//! case); the survivor must be open and merged into nothing, the absorbed
//! file merged into nothing and the survivor of no merge.
//!
//! Supervision: [`Agent::record_reviewed`] records an entry and, when the
//! district's review policy (as the hub last told it, kept in the store)
//! names its kind, the `ReviewRequested` for it; the command line and the
//! mobile library record through it.
//!
//! Invariants: an entry is validated completely before anything is written; a
//! rejected entry changes nothing; [`Agent::record`] returns only once the
//! event is durable; no error names a person or an ID number (a refused
//! second file names the existing case); a station holds one open file per
//! ID number, as far as this device knows its station's events (its own and
//! those pulled from colleagues).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{Local, NaiveDate};
use station_proto::file_number;
use station_proto::ids::Uuid;
use station_proto::kinds::Recording;
use station_proto::review;
use station_proto::v1::Tier;
use station_proto::validate::{self, Context, Invalid};
use station_proto::{Body, Event};

use crate::store::{
    Appended, DeviceIdentity, EventLog, NewEvent, OpenOptions, PullApplied, StoreError,
};
use crate::views::{self, CaseStatus, CaseView, DueFollowUp, TierIntervals};

/// Errors of the agent engine.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The entry breaks a rule; nothing was recorded.
    #[error("invalid entry: {0}")]
    Invalid(#[from] Invalid),
    /// The entry refers to a case this device does not know.
    #[error("{field}: unknown case {case_id}")]
    UnknownCase {
        /// The field holding the case id.
        field: String,
        /// The id given.
        case_id: Uuid,
    },
    /// The entry needs an open case, and the case is closed.
    #[error("{field}: case {case_id} is closed")]
    CaseClosed {
        /// The field holding the case id.
        field: String,
        /// The id given.
        case_id: Uuid,
    },
    /// Reopening a case that is open.
    #[error("case_reopened.case_id: case {0} is already open")]
    CaseAlreadyOpen(Uuid),
    /// Opening (or reopening) a file for a person the station already holds
    /// an open file for: one person, one file (一人一档). The message names
    /// the existing case, never the person or the ID number.
    #[error(
        "{field}: this person already has an open file at this station, case {case_id}; \
         add to that file instead of opening another"
    )]
    PersonHasOpenFile {
        /// The field the refusal is about (`case_opened.id_number`,
        /// `case_reopened.case_id`).
        field: String,
        /// The open case the person already has.
        case_id: Uuid,
    },
    /// Opening a file for a person whom the district directory says has an
    /// open file at another station: the worker confirms with a reason
    /// (`duplicate_reason`), or asks that station for a transfer. The
    /// message names the stations, never the person or the ID number.
    #[error(
        "{field}: the district directory says this person has an open file at {}; \
         to open another file here, confirm with a reason, or ask that station for a transfer",
        .stations.join(", ")
    )]
    HeldAtAnotherStation {
        /// The field the warning is about (`case_opened.id_number`).
        field: String,
        /// The names of the stations holding the person's open file.
        stations: Vec<String>,
    },
    /// No case this device knows has an id starting with the prefix given.
    #[error("{field}: no case of this station has an id starting with {given}")]
    NoCaseWithPrefix {
        /// The field holding the case id.
        field: String,
        /// The prefix given (hexadecimal digits only).
        given: String,
    },
    /// Several cases have an id starting with the prefix given, or share
    /// the file number given.
    #[error(
        "{field}: {given} names {} cases: {}; give more of the id",
        .candidates.len(),
        list_ids(.candidates)
    )]
    AmbiguousCase {
        /// The field holding the case id.
        field: String,
        /// The prefix (hexadecimal digits only) or file number given.
        given: String,
        /// The ids of the cases it names, ascending.
        candidates: Vec<Uuid>,
    },
    /// A merge this device refuses: the file named is merged into another
    /// already, or has files merged into it. The rule names no person.
    #[error("{field}: case {case_id} {rule}")]
    MergeRefused {
        /// The field holding the case id.
        field: String,
        /// The case named.
        case_id: Uuid,
        /// Why, as a short English sentence.
        rule: &'static str,
    },
    /// A void of an event this device does not hold.
    #[error("event_voided.voided_event_id: unknown event {0}")]
    UnknownEvent(Uuid),
    /// A void of an event voided already.
    #[error("event_voided.voided_event_id: event {0} is already voided")]
    AlreadyVoided(Uuid),
    /// A void of a void.
    #[error(
        "event_voided.voided_event_id: a void cannot be voided; record the event again instead"
    )]
    VoidOfVoid,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The refusal of a review request naming no change of its kind.
fn nothing_to_review(case_id: Uuid, subject: i32) -> AgentError {
    Invalid::new(
        "review_requested.subject_event_id",
        format!(
            "case {case_id} has no {} to review",
            review::subject_name(subject)
        ),
    )
    .into()
}

/// Ids, comma separated, for a message.
fn list_ids(ids: &[Uuid]) -> String {
    ids.iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fewest hexadecimal digits a case id's prefix is taken from.
pub const CASE_PREFIX_MIN: usize = 4;

/// What `init` needs to create a device identity.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// 9-digit station code.
    pub station_code: String,
    /// The social worker's id.
    pub worker_id: String,
    /// Hub address, when known.
    pub hub_url: Option<String>,
    /// Device token, when enrolled.
    pub token: Option<String>,
}

/// The outcome of recording an entry.
pub type Recorded = Appended;

/// An entry recorded with the review the district asks for it
/// ([`Agent::record_reviewed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedEntry {
    /// The entry.
    pub entry: Recorded,
    /// The `ReviewRequested` recorded for it, when the district's review
    /// policy names its kind (and no earlier request names it).
    pub review: Option<Recorded>,
}

/// A device's summary for `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// This device's origin id.
    pub origin_id: Uuid,
    /// The station.
    pub station: String,
    /// The social worker.
    pub worker_id: String,
    /// The hub, when configured.
    pub hub_url: Option<String>,
    /// Highest own seq.
    pub head_seq: u64,
    /// Received by the city: the city hub's `durable_through` for this
    /// origin, as the hub (or a station relay passing it on) last said.
    pub durable_through: u64,
    /// Saved at the station: how much of this origin the hub or a station
    /// relay holds on disk (at least `durable_through`).
    pub saved_through: u64,
    /// Own entries neither the hub nor a station relay has acknowledged yet.
    pub pending: u64,
    /// Own entries the city hub has not acknowledged yet (some may be saved
    /// at the station).
    pub awaiting_city: u64,
    /// Hub position of the last pulled station event.
    pub pull_cursor: u64,
    /// Cases known, open.
    pub open_cases: usize,
    /// Cases known, closed.
    pub closed_cases: usize,
}

/// One device's engine.
#[derive(Debug)]
pub struct Agent {
    /// The durable log and views.
    log: EventLog,
    /// Who this device is; immutable after `init`.
    identity: DeviceIdentity,
    /// Follow-up intervals for due dates.
    intervals: TierIntervals,
    /// The own head seq, bumped by every new entry, so the sync daemon can
    /// push right after an entry instead of polling the log.
    recorded: tokio::sync::watch::Sender<u64>,
    /// Held from the one-file check of an opening or reopening to its
    /// append, so that two saves at once (a double tap, two threads of an
    /// app) cannot both pass the check for one person.
    openings: std::sync::Mutex<()>,
}

/// Milliseconds since the Unix epoch on this device's clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Today's date on this device's clock (local time zone).
pub fn today() -> NaiveDate {
    Local::now().date_naive()
}

impl Agent {
    /// Creates a device identity in a new store at `dir`.
    ///
    /// # Errors
    /// Invalid station code or worker id; [`StoreError::AlreadyInitialised`]
    /// when the store already has an identity; storage errors.
    pub fn init(dir: &Path, options: InitOptions, open: OpenOptions) -> Result<Self, AgentError> {
        validate::station_code("station", &options.station_code)?;
        let mut worker_id = options.worker_id;
        validate::text("worker", &mut worker_id, 64, true)?;
        let log = EventLog::open(dir, open)?;
        let identity = DeviceIdentity {
            origin_id: Uuid::new_v4(),
            station_code: options.station_code,
            worker_id,
            hub_url: options.hub_url,
            token: options.token,
            created_at_ms: log.now_ms(),
        };
        log.init_identity(&identity)?;
        let recorded = tokio::sync::watch::Sender::new(log.head_seq());
        Ok(Self {
            log,
            identity,
            intervals: TierIntervals::default(),
            recorded,
            openings: std::sync::Mutex::new(()),
        })
    }

    /// Opens an initialised store.
    ///
    /// # Errors
    /// [`StoreError::NotInitialised`] when `init` was never run;
    /// [`crate::seal::SealError::Wiped`] for a store the hub had wiped;
    /// storage errors.
    pub fn open(dir: &Path, open: OpenOptions) -> Result<Self, AgentError> {
        if crate::seal::Vault::wiped_at(dir)
            .map_err(StoreError::from)?
            .is_some()
        {
            // The open removes what a crash during the wipe left, and refuses.
            EventLog::open(dir, open)?;
            return Err(StoreError::Seal(crate::seal::SealError::Wiped).into());
        }
        if !dir.join("db").exists() {
            return Err(StoreError::NotInitialised.into());
        }
        let log = EventLog::open(dir, open)?;
        let identity = log.identity()?.ok_or(StoreError::NotInitialised)?;
        let recorded = tokio::sync::watch::Sender::new(log.head_seq());
        Ok(Self {
            log,
            identity,
            intervals: TierIntervals::default(),
            recorded,
            openings: std::sync::Mutex::new(()),
        })
    }

    /// Uses other follow-up intervals for due dates.
    pub fn with_intervals(mut self, intervals: TierIntervals) -> Self {
        self.intervals = intervals;
        self
    }

    /// The device identity.
    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }

    /// The follow-up intervals in use.
    pub fn intervals(&self) -> &TierIntervals {
        &self.intervals
    }

    /// The underlying log, for sync.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Records an entry made now by this device's worker.
    ///
    /// # Errors
    /// See [`Agent::record_with`].
    pub fn record(&self, body: Body) -> Result<Recorded, AgentError> {
        let now = self.log.now_ms();
        let today = chrono::DateTime::from_timestamp_millis(now)
            .map_or_else(today, |at| at.with_timezone(&Local).date_naive());
        self.record_with(None, body, today, now)
    }

    /// Validates `body` against the rules and this device's state, and
    /// appends it durably. `event_id` makes the call idempotent: recording the
    /// same id again returns the original seq and writes nothing.
    ///
    /// # Errors
    /// [`AgentError::Invalid`] and the state errors (unknown or closed case,
    /// bad void) leave the log unchanged; storage errors mean the entry was
    /// not saved.
    pub fn record_with(
        &self,
        event_id: Option<Uuid>,
        mut body: Body,
        today: NaiveDate,
        recorded_at_ms: i64,
    ) -> Result<Recorded, AgentError> {
        if let Some(id) = event_id
            && let Some(existing) = self.log.event(id)?
            && existing.origin_id == self.identity.origin_id.as_bytes()
        {
            return Ok(self.log.append(NewEvent {
                event_id: Some(id),
                author: self.identity.worker_id.clone(),
                recorded_at_ms,
                body,
            })?);
        }
        self.fill_review(&mut body)?;
        self.fill_transfer_answer(&mut body)?;
        let ctx = Context::on(today);
        validate::body(&mut body, &self.identity.station_code, &ctx)?;
        let opens_a_file = matches!(
            body.kind().recording(),
            Recording::Opening | Recording::Reopening { .. }
        );
        // The guard holds no state: a panic while it was held leaves nothing
        // to repair.
        let _opening = opens_a_file.then(|| {
            self.openings
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        });
        if let Body::CaseOpened(m) = &mut body
            && m.file_number.is_empty()
        {
            m.file_number = self.next_file_number(&m.opened_on)?;
        }
        self.check_against_state(&mut body)?;
        let appended = self.log.append(NewEvent {
            event_id,
            author: self.identity.worker_id.clone(),
            recorded_at_ms,
            body,
        })?;
        if !appended.duplicate {
            self.recorded.send_if_modified(|head| {
                let grew = appended.origin_seq > *head;
                *head = (*head).max(appended.origin_seq);
                grew
            });
        }
        Ok(appended)
    }

    /// Records an entry as [`Agent::record_with`] does and, when the
    /// district's review policy (as the hub last told it,
    /// [`EventLog::review_policy`]) says entries of its kind need a
    /// supervisor's review, asks for it: a `ReviewRequested` naming the
    /// entry, recorded right after it, the way a worker would with
    /// `review request`. An entry saved again (same `event_id`) asks only if
    /// no request names it yet, so a crash between the two saves is mended
    /// by saving the entry again.
    ///
    /// # Errors
    /// As [`Agent::record_with`]; an error of the request leaves the entry
    /// recorded (it is durable before the request is made) and is returned.
    pub fn record_reviewed(
        &self,
        event_id: Option<Uuid>,
        body: Body,
        today: NaiveDate,
        recorded_at_ms: i64,
    ) -> Result<RecordedEntry, AgentError> {
        let subject = self.log.review_policy()?.review_of(&body);
        let entry = self.record_with(event_id, body, today, recorded_at_ms)?;
        let Some(subject) = subject else {
            return Ok(RecordedEntry {
                entry,
                review: None,
            });
        };
        let case_id = self
            .log
            .event(entry.event_id)?
            .and_then(|event| station_proto::case::case_of(event.body.as_ref()?))
            .ok_or_else(|| StoreError::Corrupt("a recorded entry without its case".into()))?;
        if entry.duplicate
            && self
                .reviews(case_id)?
                .iter()
                .any(|item| item.subject_event_id == Some(entry.event_id))
        {
            return Ok(RecordedEntry {
                entry,
                review: None,
            });
        }
        let request = Body::ReviewRequested(station_proto::v1::ReviewRequested {
            case_id: case_id.as_bytes().to_vec(),
            subject: subject as i32,
            subject_event_id: entry.event_id.as_bytes().to_vec(),
            requested_on: today.format("%Y-%m-%d").to_string(),
            ..station_proto::v1::ReviewRequested::default()
        });
        let review = self.record_with(None, request, today, recorded_at_ms)?;
        Ok(RecordedEntry {
            entry,
            review: Some(review),
        })
    }

    /// [`Agent::record_reviewed`] for an entry made now by this device's
    /// worker.
    ///
    /// # Errors
    /// As [`Agent::record_reviewed`].
    pub fn record_now_reviewed(&self, body: Body) -> Result<RecordedEntry, AgentError> {
        let now = self.log.now_ms();
        let today = chrono::DateTime::from_timestamp_millis(now)
            .map_or_else(today, |at| at.with_timezone(&Local).date_naive());
        self.record_reviewed(None, body, today, now)
    }

    /// The next 档案编号 this device gives to a file opened on `opened_on`
    /// (a validated date): one past the highest serial of its own numbers
    /// of that year among the files it holds (see [`station_proto::file_number`]).
    /// Called under the opening lock, so two openings never take one number.
    fn next_file_number(&self, opened_on: &str) -> Result<String, AgentError> {
        let year =
            station_proto::case::parse_date(opened_on).map_or(0, |d| chrono::Datelike::year(&d));
        let prefix =
            file_number::prefix(&self.identity.station_code, year, self.identity.origin_id);
        let last = self
            .log
            .cases()?
            .iter()
            .filter_map(|case| file_number::serial(&case.file_number, &prefix))
            .max()
            .unwrap_or(0);
        Ok(file_number::number(&prefix, last.saturating_add(1)))
    }

    /// A receiver whose value is the own head seq; it changes after every
    /// new entry is durable. The sync daemon waits on it.
    pub fn subscribe_recorded(&self) -> tokio::sync::watch::Receiver<u64> {
        self.recorded.subscribe()
    }

    /// Fills what an entry may leave out: for a review request, the event
    /// under review (the case's latest of its subject's kind); for a
    /// decision that names only its request, the request's case; and for
    /// every kind that carries it, the last case event its author saw (the
    /// latest this device holds).
    fn fill_review(&self, body: &mut Body) -> Result<(), AgentError> {
        if let Body::ReviewRequested(m) = body {
            let named = station_proto::v1::ReviewSubject::try_from(m.subject)
                .is_ok_and(|s| s != station_proto::v1::ReviewSubject::Unspecified);
            if m.subject_event_id.is_empty() && named {
                let case = self.known_case("review_requested.case_id", &m.case_id)?;
                let events = self.log.case_events(case.case_id)?;
                let latest = events
                    .iter()
                    .rev()
                    .find(|e| review::is_subject_event(m.subject, e))
                    .ok_or_else(|| nothing_to_review(case.case_id, m.subject))?;
                m.subject_event_id.clone_from(&latest.event_id);
            }
        }
        if let Body::ReviewApproved(m) = body {
            self.fill_case_of_request("review_approved", &mut m.case_id, &m.request_id)?;
        }
        if let Body::ReviewReturned(m) = body {
            self.fill_case_of_request("review_returned", &mut m.case_id, &m.request_id)?;
        }
        if let Some(seen) = body.kind_mut().last_seen()
            && seen.last_seen_event_id.is_empty()
        {
            let case = self.known_case(seen.field, seen.case_id)?;
            *seen.last_seen_event_id = case.last_event_id.as_bytes().to_vec();
        }
        Ok(())
    }

    /// A decision that names no case is about its request's case.
    /// Fills the case of a transfer answer that names only its request.
    fn fill_transfer_answer(&self, body: &mut Body) -> Result<(), AgentError> {
        let (prefix, case_id, request_id) = if let Body::CaseTransferAccepted(m) = body {
            ("case_transfer_accepted", &mut m.case_id, &m.request_id)
        } else if let Body::CaseTransferDeclined(m) = body {
            ("case_transfer_declined", &mut m.case_id, &m.request_id)
        } else {
            return Ok(());
        };
        if !case_id.is_empty() {
            return Ok(());
        }
        let field = format!("{prefix}.request_id");
        let request = validate::uuid16(&field, request_id)?;
        match self.log.event(request)?.and_then(|e| e.body) {
            Some(Body::CaseTransferRequested(m)) => {
                *case_id = m.case_id;
                Ok(())
            }
            _ => Err(Invalid::new(
                field,
                format!("this device holds no transfer request {request}"),
            )
            .into()),
        }
    }

    /// Refuses a transfer request unless this station holds the open file.
    fn check_transfer_request(&self, case_id: &[u8]) -> Result<(), AgentError> {
        const FIELD: &str = "case_transfer_requested.case_id";
        let case = self.open_case(FIELD, case_id)?;
        let events = self.log.case_events(case.case_id)?;
        let holder = station_proto::transfer::chain_of(case.case_id, &events)
            .map(|chain| chain.holder().to_owned());
        match holder {
            Some(holder) if holder != self.identity.station_code => Err(Invalid::new(
                FIELD,
                format!(
                    "the file is held by station {holder}; only its station may ask to transfer it"
                ),
            )
            .into()),
            _ => Ok(()),
        }
    }

    /// Refuses an answer to a transfer request unless the request is one
    /// this device holds, about the named case, addressed to this station,
    /// and still waiting for an answer.
    fn check_transfer_answer(
        &self,
        prefix: &str,
        case_id: &[u8],
        request_id: &[u8],
    ) -> Result<(), AgentError> {
        let case = validate::uuid16(&format!("{prefix}.case_id"), case_id)?;
        let field = format!("{prefix}.request_id");
        let request = validate::uuid16(&field, request_id)?;
        let refused = |rule: String| -> AgentError { Invalid::new(field.clone(), rule).into() };
        let Some(Body::CaseTransferRequested(m)) = self.log.event(request)?.and_then(|e| e.body)
        else {
            return Err(refused(format!(
                "this device holds no transfer request {request}"
            )));
        };
        if m.case_id != case.as_bytes() || self.log.is_voided(request)? {
            return Err(refused(format!(
                "no transfer request {request} of case {case}"
            )));
        }
        if m.to_station_code != self.identity.station_code {
            return Err(refused(format!(
                "the transfer request is addressed to station {}, not to this station",
                m.to_station_code
            )));
        }
        let events = self.log.case_events(case)?;
        if let Some(chain) = station_proto::transfer::chain_of(case, &events)
            && !chain.pending().any(|r| r.id == request)
        {
            return Err(refused(format!(
                "the transfer request {request} is answered already"
            )));
        }
        let answered = events.iter().any(|e| {
            e.body
                .as_ref()
                .and_then(station_proto::transfer::answer_of)
                .is_some_and(|(_, r)| r == request)
        });
        if answered {
            return Err(refused(format!(
                "the transfer request {request} is answered already"
            )));
        }
        Ok(())
    }

    fn fill_case_of_request(
        &self,
        prefix: &str,
        case_id: &mut Vec<u8>,
        request_id: &[u8],
    ) -> Result<(), AgentError> {
        if !case_id.is_empty() {
            return Ok(());
        }
        let field = format!("{prefix}.request_id");
        let request = validate::uuid16(&field, request_id)?;
        match self.log.event(request)? {
            Some(Event {
                body: Some(Body::ReviewRequested(m)),
                ..
            }) => {
                *case_id = m.case_id;
                Ok(())
            }
            _ => Err(Invalid::new(
                field,
                format!("this device holds no review request {request}"),
            )
            .into()),
        }
    }

    /// Checks a review decision against this device's state: the request
    /// it decides is a review request of the case it names.
    fn check_decision(
        &self,
        prefix: &str,
        case_id: &[u8],
        request_id: &[u8],
    ) -> Result<(), AgentError> {
        let case = self.known_case(&format!("{prefix}.case_id"), case_id)?;
        let field = format!("{prefix}.request_id");
        let request = validate::uuid16(&field, request_id)?;
        match self.log.event(request)? {
            Some(Event {
                body: Some(Body::ReviewRequested(m)),
                ..
            }) if m.case_id == case.case_id.as_bytes() && !self.log.is_voided(request)? => Ok(()),
            _ => Err(Invalid::new(
                field,
                format!("no review request {request} of case {}", case.case_id),
            )
            .into()),
        }
    }

    /// The review requests of one case and where each stands.
    ///
    /// # Errors
    /// Storage errors.
    pub fn reviews(&self, case_id: Uuid) -> Result<Vec<review::ReviewItem>, AgentError> {
        let events = self.log.case_events(case_id)?;
        Ok(review::fold_reviews(events.iter().filter_map(|event| {
            let step = station_proto::case::CaseStep::of(event.body.as_ref()?)?;
            Some((Uuid::from_slice(&event.event_id).ok(), step))
        })))
    }

    /// Every review request of the station's cases this device knows, with
    /// its case, cases in the order of [`Agent::cases`], requests in the
    /// order they were made.
    ///
    /// # Errors
    /// Storage errors.
    pub fn review_items(&self) -> Result<Vec<(CaseView, review::ReviewItem)>, AgentError> {
        let mut items = Vec::new();
        for case in self.cases()? {
            for item in self.reviews(case.case_id)? {
                items.push((case.clone(), item));
            }
        }
        Ok(items)
    }

    fn known_case(&self, field: &str, case_id: &[u8]) -> Result<CaseView, AgentError> {
        let id = validate::uuid16(field, case_id)?;
        self.log.case(id)?.ok_or_else(|| AgentError::UnknownCase {
            field: field.to_string(),
            case_id: id,
        })
    }

    fn open_case(&self, field: &str, case_id: &[u8]) -> Result<CaseView, AgentError> {
        let case = self.known_case(field, case_id)?;
        if case.status != CaseStatus::Open {
            return Err(AgentError::CaseClosed {
                field: field.to_string(),
                case_id: case.case_id,
            });
        }
        Ok(case)
    }

    /// Refuses a file for a person who has an open file at this station
    /// other than `except`.
    fn check_one_open_file(
        &self,
        field: &str,
        id_number: &str,
        except: Option<Uuid>,
    ) -> Result<(), AgentError> {
        let open = self.log.open_cases_of_person(id_number)?;
        match open.into_iter().find(|case_id| Some(*case_id) != except) {
            Some(case_id) => Err(AgentError::PersonHasOpenFile {
                field: field.to_string(),
                case_id,
            }),
            None => Ok(()),
        }
    }

    /// Warns of a file the district directory says another station holds
    /// for the person: refused without a reason; with one, the stations it
    /// names are recorded in the opening.
    fn check_directory(&self, m: &mut station_proto::v1::CaseOpened) -> Result<(), AgentError> {
        if m.id_number.is_empty() {
            // Not comparable by number: only the weak check, which warns
            // and never refuses, applies ([`Agent::possible_duplicates`]).
            return Ok(());
        }
        let own = &self.identity().station_code;
        let holders: Vec<_> = self
            .log
            .directory_holders(&m.id_number)?
            .unwrap_or_default()
            .into_iter()
            .filter(|h| h.station_code != *own)
            .collect();
        if holders.is_empty() {
            return Ok(());
        }
        if m.duplicate_reason.trim().is_empty() {
            return Err(AgentError::HeldAtAnotherStation {
                field: "case_opened.id_number".into(),
                stations: holders.into_iter().map(|h| h.station_name).collect(),
            });
        }
        let mut codes: Vec<String> = holders.into_iter().map(|h| h.station_code).collect();
        codes.sort();
        codes.dedup();
        m.duplicate_of_stations = codes;
        Ok(())
    }

    /// The stations other than this one that the district directory says
    /// hold an open file for the person of `id_number` (names as the hub
    /// gave them); empty when none does, or the device holds no directory.
    ///
    /// # Errors
    /// Storage errors.
    pub fn held_elsewhere(
        &self,
        id_number: &str,
    ) -> Result<Vec<crate::store::DirectoryHolder>, AgentError> {
        let own = &self.identity().station_code;
        Ok(self
            .log
            .directory_holders(id_number)?
            .unwrap_or_default()
            .into_iter()
            .filter(|h| h.station_code != *own)
            .collect())
    }

    /// The stations, this one included, that hold an open file for a
    /// person of the opening's name (as
    /// [`station_proto::person::normalise_name`] compares it), birth date
    /// and gender: a *possible* duplicate, with or without ID numbers on
    /// either side. This station is named when one of its open files this
    /// device holds matches, or when the directory says so; other stations
    /// as the district directory the device last pulled says. Names as the
    /// hub gave them, ascending by code; empty when none matches. Run it
    /// before recording the opening: the warning never refuses it, and an
    /// ID number's match keeps its stronger rules on record.
    ///
    /// # Errors
    /// Storage errors.
    pub fn possible_duplicates(
        &self,
        opened: &station_proto::v1::CaseOpened,
    ) -> Result<Vec<crate::store::DirectoryHolder>, AgentError> {
        let own = &self.identity().station_code;
        let (name, birth_date, gender) = (&opened.name, &opened.birth_date, opened.gender);
        let mut holders: BTreeMap<String, crate::store::DirectoryHolder> = self
            .log
            .directory_holders_like(name, birth_date, gender)?
            .unwrap_or_default()
            .into_iter()
            .map(|h| (h.station_code.clone(), h))
            .collect();
        if !holders.contains_key(own)
            && !self
                .log
                .open_cases_like(name, birth_date, gender)?
                .is_empty()
        {
            holders.insert(
                own.clone(),
                crate::store::DirectoryHolder {
                    station_code: own.clone(),
                    station_name: self.log.directory_station_name(own)?,
                },
            );
        }
        Ok(holders.into_values().collect())
    }

    /// Checks an entry against what this device holds, as its kind's
    /// [`Recording`] says.
    fn check_against_state(&self, body: &mut Body) -> Result<(), AgentError> {
        match body.kind().recording() {
            Recording::Free => {}
            Recording::KnownCase { field, case_id } => {
                self.known_case(field, case_id)?;
            }
            Recording::OpenCase { field, case_id } => {
                self.open_case(field, case_id)?;
            }
            Recording::Opening => {
                if let Body::CaseOpened(m) = body {
                    self.check_one_open_file("case_opened.id_number", &m.id_number, None)?;
                    self.check_directory(m)?;
                }
            }
            Recording::Reopening { case_id } => {
                let case = self.known_case("case_reopened.case_id", case_id)?;
                if case.status == CaseStatus::Open {
                    return Err(AgentError::CaseAlreadyOpen(case.case_id));
                }
                if let Some(Body::CaseOpened(opened)) =
                    self.log.event(case.case_id)?.and_then(|e| e.body)
                {
                    self.check_one_open_file(
                        "case_reopened.case_id",
                        &opened.id_number,
                        Some(case.case_id),
                    )?;
                }
            }
            Recording::Merge { survivor, absorbed } => self.check_merge(survivor, absorbed)?,
            Recording::Dismissal { case_id, of } => {
                self.known_case("duplicate_dismissed.case_id", case_id)?;
                self.known_case("duplicate_dismissed.duplicate_of_case_id", of)?;
            }
            Recording::ReviewRequest {
                case_id,
                subject,
                subject_event_id,
            } => {
                let case = self.known_case("review_requested.case_id", case_id)?;
                let field = "review_requested.subject_event_id";
                let under = validate::uuid16(field, subject_event_id)?;
                let under_review = self.log.event(under)?.filter(|event| {
                    event.body.as_ref().and_then(station_proto::case::case_of) == Some(case.case_id)
                        && review::is_subject_event(subject, event)
                });
                if under_review.is_none() || self.log.is_voided(under)? {
                    return Err(nothing_to_review(case.case_id, subject));
                }
            }
            Recording::ReviewDecision {
                prefix,
                case_id,
                request_id,
            } => self.check_decision(prefix, case_id, request_id)?,
            Recording::TransferRequest { case_id } => self.check_transfer_request(case_id)?,
            Recording::TransferAnswer {
                prefix,
                case_id,
                request_id,
            } => self.check_transfer_answer(prefix, case_id, request_id)?,
            Recording::Void { voided_event_id } => {
                let target = validate::uuid16("event_voided.voided_event_id", voided_event_id)?;
                let event = self
                    .log
                    .event(target)?
                    .ok_or(AgentError::UnknownEvent(target))?;
                if matches!(event.body, Some(Body::EventVoided(_))) {
                    return Err(AgentError::VoidOfVoid);
                }
                if self.log.is_voided(target)? {
                    return Err(AgentError::AlreadyVoided(target));
                }
            }
        }
        Ok(())
    }

    /// Refuses a merge unless both files are known, the survivor is open,
    /// and neither is part of another merge in a way that would chain them.
    fn check_merge(&self, survivor_id: &[u8], absorbed_id: &[u8]) -> Result<(), AgentError> {
        const SURVIVOR: &str = "cases_merged.survivor_case_id";
        const ABSORBED: &str = "cases_merged.absorbed_case_id";
        let survivor = self.known_case(SURVIVOR, survivor_id)?;
        if survivor.merged_into.is_some() {
            return Err(AgentError::MergeRefused {
                field: SURVIVOR.to_string(),
                case_id: survivor.case_id,
                rule: "is merged into another file; merge into that file instead",
            });
        }
        self.open_case(SURVIVOR, survivor_id)?;
        let absorbed = self.known_case(ABSORBED, absorbed_id)?;
        if absorbed.merged_into.is_some() {
            return Err(AgentError::MergeRefused {
                field: ABSORBED.to_string(),
                case_id: absorbed.case_id,
                rule: "is merged into another file already",
            });
        }
        if !self.log.merged_into(absorbed.case_id)?.is_empty() {
            return Err(AgentError::MergeRefused {
                field: ABSORBED.to_string(),
                case_id: absorbed.case_id,
                rule: "has files merged into it; keep it as the survivor instead",
            });
        }
        Ok(())
    }

    /// Every case this device knows, sorted by community then name.
    ///
    /// # Errors
    /// Storage errors.
    pub fn cases(&self) -> Result<Vec<CaseView>, AgentError> {
        let mut cases = self.log.cases()?;
        cases.sort_by(|a, b| {
            a.community_code
                .cmp(&b.community_code)
                .then_with(|| a.name.cmp(&b.name))
                .then(a.case_id.cmp(&b.case_id))
        });
        Ok(cases)
    }

    /// The case a worker names in `field`: by its whole id, by its 档案编号
    /// (letter case ignored), or by a prefix of its id that no other case of
    /// the station shares (at least
    /// [`CASE_PREFIX_MIN`] hexadecimal digits; dashes and letter case do not
    /// matter). A whole id is returned as it is, known or not: recording an
    /// entry then says whether the case is known.
    ///
    /// # Errors
    /// [`AgentError::Invalid`] for text that is neither; a prefix of no
    /// case, [`AgentError::NoCaseWithPrefix`]; of several,
    /// [`AgentError::AmbiguousCase`] naming them; storage errors.
    pub fn resolve_case(&self, field: &str, given: &str) -> Result<Uuid, AgentError> {
        let given = given.trim();
        if let Ok(id) = Uuid::parse_str(given) {
            return Ok(id);
        }
        let cases = self.log.cases()?;
        let mut numbered: Vec<Uuid> = cases
            .iter()
            .filter(|case| !case.file_number.is_empty())
            .filter(|case| case.file_number.eq_ignore_ascii_case(given))
            .map(|case| case.case_id)
            .collect();
        numbered.sort_unstable();
        match numbered.as_slice() {
            [] => {}
            [one] => return Ok(*one),
            _ => {
                return Err(AgentError::AmbiguousCase {
                    field: field.to_string(),
                    given: given.to_string(),
                    candidates: numbered,
                });
            }
        }
        let prefix = given.replace('-', "").to_ascii_lowercase();
        if prefix.len() < CASE_PREFIX_MIN
            || prefix.len() > 32
            || !prefix.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(Invalid::new(
                field,
                format!(
                    "must be a case id, or at least {CASE_PREFIX_MIN} of its first hexadecimal digits"
                ),
            )
            .into());
        }
        let mut candidates: Vec<Uuid> = cases
            .into_iter()
            .map(|case| case.case_id)
            .filter(|id| id.simple().to_string().starts_with(&prefix))
            .collect();
        candidates.sort_unstable();
        match candidates.as_slice() {
            [one] => Ok(*one),
            [] => Err(AgentError::NoCaseWithPrefix {
                field: field.to_string(),
                given: prefix,
            }),
            _ => Err(AgentError::AmbiguousCase {
                field: field.to_string(),
                given: prefix,
                candidates,
            }),
        }
    }

    /// One case.
    ///
    /// # Errors
    /// Storage errors.
    pub fn case(&self, case_id: Uuid) -> Result<Option<CaseView>, AgentError> {
        Ok(self.log.case(case_id)?)
    }

    /// A case's events, not voided, in display order.
    ///
    /// # Errors
    /// Storage errors.
    pub fn case_timeline(&self, case_id: Uuid) -> Result<Vec<Event>, AgentError> {
        Ok(self.log.case_events(case_id)?)
    }

    /// Open cases due for a follow-up by `today + horizon_days`, most overdue first.
    ///
    /// # Errors
    /// Storage errors.
    pub fn due_follow_ups(
        &self,
        today: NaiveDate,
        horizon_days: u32,
    ) -> Result<Vec<DueFollowUp>, AgentError> {
        Ok(views::due_follow_ups(
            self.log.cases()?,
            &self.intervals,
            today,
            horizon_days,
        ))
    }

    /// Own entries the hub has not acknowledged, oldest first.
    ///
    /// # Errors
    /// Storage errors.
    pub fn unacknowledged(&self, limit: usize) -> Result<Vec<Event>, AgentError> {
        Ok(self.log.own_events(self.log.acked()?, limit)?)
    }

    /// Own events after `since`, for the `log` command.
    ///
    /// # Errors
    /// Storage errors.
    pub fn own_events(&self, since: u64, limit: usize) -> Result<Vec<Event>, AgentError> {
        Ok(self.log.own_events(since, limit)?)
    }

    /// Stores pulled station events with their cursor (see [`EventLog::apply_pulled`]).
    ///
    /// # Errors
    /// Storage errors or an event of another station.
    pub fn apply_pulled(
        &self,
        events: Vec<(u64, Event)>,
        next_cursor: u64,
    ) -> Result<PullApplied, AgentError> {
        Ok(self.log.apply_pulled(events, next_cursor)?)
    }

    /// The device summary.
    ///
    /// # Errors
    /// Storage errors.
    pub fn status(&self) -> Result<Status, AgentError> {
        let head_seq = self.log.head_seq();
        let saved_through = self.log.acked()?;
        let durable_through = self.log.city_acked()?;
        let cases = self.log.cases()?;
        let open_cases = cases
            .iter()
            .filter(|c| c.status == CaseStatus::Open)
            .count();
        Ok(Status {
            origin_id: self.identity.origin_id,
            station: self.identity.station_code.clone(),
            worker_id: self.identity.worker_id.clone(),
            hub_url: self.identity.hub_url.clone(),
            head_seq,
            durable_through,
            saved_through,
            pending: head_seq.saturating_sub(saved_through),
            awaiting_city: head_seq.saturating_sub(durable_through),
            pull_cursor: self.log.pull_cursor()?,
            open_cases,
            closed_cases: cases.len() - open_cases,
        })
    }

    /// Recomputes every view from the log; returns the events replayed.
    ///
    /// # Errors
    /// Storage errors.
    pub fn rebuild_views(&self) -> Result<usize, AgentError> {
        Ok(self.log.rebuild_views()?)
    }
}

/// The tier numbered 1–3, as the CLI and forms give it.
pub fn tier_from_number(n: u8) -> Option<Tier> {
    match n {
        1 => Some(Tier::HighRisk),
        2 => Some(Tier::Key),
        3 => Some(Tier::General),
        _ => None,
    }
}
