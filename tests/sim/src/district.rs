//! A simulated district: months of a social worker's field work, drawn day
//! by day from a seed, with a ledger of what was entered.
//!
//! Each [`Worker`] is one device of one station. Day by day it opens case
//! files (Chinese and Tibetan names, valid ID numbers), visits each case on
//! its tier's schedule (high-risk weekly, key monthly, general quarterly),
//! loses track of a few (so follow-ups fall overdue), changes tiers, closes
//! cases and reopens a few of them weeks later, holds activities and group
//! sessions, links resources, attends trainings, corrects a few entries with
//! voids and makes a few typing slips that the agent must refuse. Now and
//! then a worker opens a new file for a person whose file was closed, dated
//! back to a day the old file was still open (so the hub flags the new file
//! as a duplicate), and then merges the old file into it (一人一档: the pair
//! is resolved, and counted as one file).
//!
//! Transfers between stations (转移) follow a district plan drawn from the
//! seed ([`plan_transfers`]): on the planned day the sending worker asks
//! another station to take over one of its open files, and leaves the file
//! alone from then on; a worker of the station asked accepts (or declines)
//! a few days later, visits the family the next workday after accepting,
//! and then follows the file as one of its own.
//! The ids of a request reach the receiving worker through a mailbox the
//! district's workers share, read when the answer's day is planned.
//!
//! Invariants:
//! - the entries depend only on the seed, the station, the device and the
//!   days: the event ids the log assigns are used as references, never as
//!   draws, so a replay gives the same entries;
//! - the driver answers every entry before asking for the next one:
//!   [`Worker::saved`] with the id the log gave it, or [`Worker::refused`];
//! - a worker refers only to cases it opened itself (each social worker
//!   keeps their own caseload) or took over by a planned transfer, so its
//!   entries never depend on sync timing; an entry that needs what sync
//!   brings from another station says so ([`Entry::from_elsewhere`]) and the
//!   driver syncs the device before it is entered;
//! - a planned answer is drawn only when its day is planned, after every
//!   worker entered the days before it (the driver plays the days in
//!   lockstep, asking with [`Worker::next_entry_through`]): the request it
//!   answers, made days earlier, is in the mailbox by then;
//! - whether an entry is valid is the validator's word, never the
//!   generator's: [`Entry::expect`] is what `station_proto::validate` says
//!   of the body in the [hub's context](Worker::receiver), so the generator
//!   cannot drift from the rules with the date;
//! - [`Ledger`] is an independent model of the bureau's indicators: what the
//!   hub computes from the same events must equal it.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{Datelike, Days, Months, NaiveDate, NaiveTime, Weekday};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use station_hub::projections::period::{Metric, Period};
use station_proto::Body;
use station_proto::ids::Uuid;
use station_proto::v1::{
    ActivityHeld, ActivityKind, BeneficiaryVerified, CallOutcome, CaseAssessed, CaseClosed,
    CaseNoteAdded, CaseOpened, CaseReopened, CaseSource, CaseTransferAccepted,
    CaseTransferDeclined, CaseTransferRequested, CasesMerged, Category, EventVoided, Gender,
    GroupSessionHeld, GuardianCalled, NoteKind, ResourceKind, ResourceLinked, ReviewRequested,
    ReviewSubject, Tier, TrainingHeld, TrainingKind, VisitKind, VisitRecorded,
};
use station_proto::validate::{self, Context, Invalid};

use crate::fieldwork::id_number;

/// The seven stations of Nedong district, street station first.
pub const NEDONG_STATIONS: [&str; 7] = [
    "540502001",
    "540502101",
    "540502200",
    "540502201",
    "540502202",
    "540502203",
    "540502204",
];

/// Hours between UTC and China time.
const CHINA_OFFSET_HOURS: i64 = 8;

/// Follow-up interval in days of a tier (1 high-risk, 2 key, 3 general).
pub fn interval_days(tier: i32) -> u64 {
    match tier {
        1 => 7,
        2 => 30,
        _ => 90,
    }
}

const NAMES: [&str; 16] = [
    "次仁卓玛 ཚེ་རིང་སྒྲོལ་མ",
    "扎西 བཀྲ་ཤིས",
    "尼玛 ཉི་མ",
    "达瓦 ཟླ་བ",
    "格桑 སྐལ་བཟང",
    "卓嘎 སྒྲོལ་དཀར",
    "白玛 པདྨ",
    "旺堆 དབང་འདུས",
    "央金 དབྱངས་ཅན",
    "平措 ཕུན་ཚོགས",
    "拉巴 ལྷག་པ",
    "边巴 སྤེན་པ",
    "普布 ཕུར་བུ",
    "德吉 བདེ་སྐྱིད",
    "王秀兰",
    "李建国",
];

const VISIT_NOTES: [&str; 6] = [
    "入户走访，了解生活情况 ཁྱིམ་ལ་བཅར་འདྲི",
    "老人身体状况稳定，已提醒按时服药",
    "孩子已返校，与班主任沟通学习情况",
    "家中取暖不足，需链接冬季物资",
    "协助办理低保年审材料",
    "电话回访，家属反映情况良好",
];

/// What an entry is, to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Meaning {
    Open {
        tier: i32,
        neglect_after: u32,
        opened_on: NaiveDate,
        dibao: bool,
        /// A new file for the person of this closed file, which is then
        /// merged into it.
        again: Option<usize>,
    },
    /// Station `to` is asked to take over the file `case` (planned
    /// transfer `plan`).
    TransferOut {
        case: usize,
        plan: usize,
        to: String,
        date: NaiveDate,
    },
    /// The answer to the planned transfer `plan`, whose request the mailbox
    /// holds.
    Answer {
        plan: usize,
        accept: bool,
        date: NaiveDate,
    },
    /// The file `absorbed` merged into `survivor`.
    Merge {
        survivor: usize,
        absorbed: usize,
    },
    Visit {
        case: usize,
        date: NaiveDate,
        phone: bool,
    },
    Assess {
        case: usize,
        tier: i32,
    },
    Close {
        case: usize,
        date: NaiveDate,
    },
    Reopen {
        case: usize,
        date: NaiveDate,
        tier: i32,
    },
    Note {
        case: usize,
    },
    /// A request for a supervisor's review of the case's closure, made
    /// right after it: the demo's review queue.
    RequestReview {
        case: usize,
    },
    /// A call to the case's guardian (电话联系监护人): counted apart from
    /// visits, not a follow-up.
    Call {
        case: usize,
        date: NaiveDate,
    },
    Verify {
        case: usize,
    },
    Activity {
        date: NaiveDate,
        person_times: i64,
        volunteers: i64,
        minutes: i64,
    },
    Group {
        date: NaiveDate,
        participants: i64,
    },
    Training {
        date: NaiveDate,
    },
    Resource {
        date: NaiveDate,
        fen: i64,
        case: Option<usize>,
    },
    Void {
        target: Uuid,
    },
    /// A typing slip the validator refuses, and what the slip is.
    Invalid {
        slip: &'static str,
    },
}

/// What the agent and the hub should do with an entry, as the validator
/// says (see [`Worker::verdict`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A valid entry: the agent saves it and the hub accepts it.
    Saved,
    /// An invalid entry: the agent refuses it. Names the slip made, or says
    /// that an entry meant as valid broke a rule (a bug of the generator,
    /// which the tests look for).
    Refused(&'static str),
}

/// One entry a social worker makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The day it is made (the device's date).
    pub day: NaiveDate,
    /// The device clock when it is made.
    pub recorded_at_ms: i64,
    /// What is entered.
    pub body: Body,
    /// Whether the agent and the hub must save or refuse it: the validator's verdict.
    pub expect: Expect,
    /// Whether the device can save it only once sync brought it what
    /// another station entered: an answer to a transfer request, work on a
    /// file taken over.
    pub from_elsewhere: bool,
}

#[derive(Debug, Clone)]
struct Draft {
    body: Body,
    meaning: Meaning,
}

#[derive(Debug, Clone)]
struct CaseFile {
    id: Uuid,
    tier: i32,
    opened_on: NaiveDate,
    last_visit: Option<NaiveDate>,
    closed: bool,
    closed_on: Option<NaiveDate>,
    reopened_on: Option<NaiveDate>,
    dibao: bool,
    /// After this many visits the worker loses track of the case.
    neglect_after: u32,
    visits: u32,
    /// The case's saved events that are not voided, its opening first, in
    /// the order entered (which is their hlc order on the device).
    events: Vec<Uuid>,
    /// The opening as entered, to open a new file for the same person.
    opening: CaseOpened,
    /// Merged into another file: closed for good.
    merged: bool,
    /// Other files were merged into it.
    joined: bool,
    /// Another station was asked to take it over: the worker leaves it alone.
    handed_over: bool,
    /// Taken over from another station: visited, never closed or reassessed.
    taken_over: bool,
}

impl CaseFile {
    /// The next follow-up: a tier's interval after the last visit, or
    /// after the (re)opening when no visit came since.
    fn due_on(&self) -> NaiveDate {
        let start = self.reopened_on.unwrap_or(self.opened_on);
        let base = self.last_visit.filter(|v| *v >= start).unwrap_or(start);
        base + Days::new(interval_days(self.tier))
    }
}

/// A fact the model keeps, by the event that recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fact {
    Opened {
        case: Uuid,
        date: NaiveDate,
        tier: i32,
    },
    Visit {
        case: Uuid,
        date: NaiveDate,
        phone: bool,
    },
    Assessed {
        case: Uuid,
        tier: i32,
    },
    Closed {
        case: Uuid,
        date: NaiveDate,
    },
    Reopened {
        case: Uuid,
        date: NaiveDate,
        tier: i32,
    },
    Activity {
        date: NaiveDate,
        person_times: i64,
        volunteers: i64,
        minutes: i64,
    },
    Group {
        date: NaiveDate,
        participants: i64,
    },
    Training {
        date: NaiveDate,
    },
    Call {
        date: NaiveDate,
    },
    Resource {
        date: NaiveDate,
        fen: i64,
    },
    Merged {
        survivor: Uuid,
        absorbed: Uuid,
    },
    /// The request (the fact's event) to station `to` to take over `case`.
    TransferRequested {
        case: Uuid,
        from: String,
        to: String,
        date: NaiveDate,
    },
    /// The file `case` taken over from station `from`, answering `request`,
    /// at tier `tier`.
    TakenOver {
        case: Uuid,
        request: Uuid,
        from: String,
        date: NaiveDate,
        tier: i32,
    },
    /// The request `request` declined.
    Declined {
        request: Uuid,
        date: NaiveDate,
    },
    /// The file `case` taken over by another station on `date`: no longer
    /// held here.
    TransferredOut {
        case: Uuid,
        date: NaiveDate,
    },
}

/// Where a transfer request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TransferAnswer {
    /// Not answered.
    Pending,
    /// Taken over on that day.
    Accepted(NaiveDate),
    /// Declined on that day.
    Declined(NaiveDate),
}

/// A transfer request the workers entered, and its answer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TransferRecord {
    /// The request's event id.
    pub request: Uuid,
    /// The file.
    pub case: Uuid,
    /// The station that asked.
    pub from: String,
    /// The station asked.
    pub to: String,
    /// The day of the request.
    pub requested_on: NaiveDate,
    /// Where it stands.
    pub answer: TransferAnswer,
}

/// What one or more workers entered and the agents saved, as the bureau's
/// indicators should count it.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    facts: Vec<(Uuid, Fact)>,
    voided: HashSet<Uuid>,
    /// Entries saved, voids included.
    pub saved: u64,
    /// Entries refused as expected.
    pub refused: u64,
}

impl Ledger {
    /// Adds another worker's ledger (of the same station) to this one.
    pub fn merge(&mut self, other: &Ledger) {
        self.facts.extend(other.facts.iter().cloned());
        self.voided.extend(other.voided.iter().copied());
        self.saved += other.saved;
        self.refused += other.refused;
    }

    fn live(&self) -> impl Iterator<Item = &Fact> {
        self.facts
            .iter()
            .filter(|(id, _)| !self.voided.contains(id))
            .map(|(_, fact)| fact)
    }

    /// The survivor of each file merged into another: such a file counts as
    /// no file, and its visits count with its survivor.
    fn merged(&self) -> BTreeMap<Uuid, Uuid> {
        self.live()
            .filter_map(|fact| match fact {
                Fact::Merged { survivor, absorbed } => Some((*absorbed, *survivor)),
                _ => None,
            })
            .collect()
    }

    /// How many files were merged into others.
    pub fn merges(&self) -> usize {
        self.merged().len()
    }

    /// Each metric in raw units (counts, minutes, fen) in `period`; metrics
    /// that count nothing are left out.
    pub fn indicators(&self, period: &Period) -> BTreeMap<Metric, i64> {
        let (first, last) = (period.first_day(), period.last_day());
        let within = |d: &NaiveDate| (first..=last).contains(d);
        let mut out = BTreeMap::new();
        let mut add = |metric, amount: i64| {
            if amount != 0 {
                *out.entry(metric).or_insert(0) += amount;
            }
        };
        let mut households = BTreeSet::new();
        let mut closed = BTreeSet::new();
        let mut open = BTreeMap::new();
        let merged = self.merged();
        for fact in self.live() {
            match fact {
                Fact::Opened { case, .. }
                | Fact::Closed { case, .. }
                | Fact::Reopened { case, .. }
                    if merged.contains_key(case) => {}
                Fact::Opened { case, date, .. } => {
                    if within(date) {
                        add(Metric::CasesNew, 1);
                    }
                    if *date <= last {
                        open.entry(*case).or_insert(true);
                    }
                }
                Fact::Visit { case, date, phone } if within(date) && !phone => {
                    add(Metric::HomeVisits, 1);
                    households.insert(*merged.get(case).unwrap_or(case));
                }
                Fact::Closed { case, date } => {
                    if within(date) {
                        closed.insert(*case);
                    }
                    if *date <= last {
                        open.insert(*case, false);
                    }
                }
                Fact::Reopened { case, date, .. } if *date <= last => {
                    open.insert(*case, true);
                }
                // A file taken over is held here from the day it was
                // taken over, and no longer at the station that asked.
                Fact::TakenOver { case, date, .. } if *date <= last => {
                    open.insert(*case, true);
                }
                Fact::TransferredOut { case, date } if *date <= last => {
                    open.insert(*case, false);
                }
                Fact::Activity {
                    date,
                    person_times,
                    volunteers,
                    minutes,
                } if within(date) => {
                    add(Metric::Activities, 1);
                    add(Metric::PersonTimes, *person_times);
                    add(Metric::Volunteers, *volunteers);
                    add(Metric::VolunteerHours, *minutes);
                }
                Fact::Group { date, participants } if within(date) => {
                    add(Metric::GroupSessions, 1);
                    add(Metric::PersonTimes, *participants);
                }
                Fact::Training { date } if within(date) => add(Metric::Trainings, 1),
                Fact::Call { date } if within(date) => add(Metric::GuardianCalls, 1),
                Fact::Resource { date, fen } if within(date) => add(Metric::ResourcesYuan, *fen),
                _ => {}
            }
        }
        add(Metric::HouseholdsVisited, households.len() as i64);
        add(Metric::CasesClosed, closed.len() as i64);
        add(
            Metric::CasesOpen,
            open.values().filter(|open| **open).count() as i64,
        );
        out
    }

    /// Open cases now, by tier: `[high-risk, key, general]`.
    pub fn open_by_tier(&self) -> [u32; 3] {
        let mut tier: BTreeMap<Uuid, i32> = BTreeMap::new();
        let mut closed: BTreeSet<Uuid> = self.merged().into_keys().collect();
        // Facts are in entry order per worker, and a worker's case is only
        // ever touched by that worker, so the last assessment wins.
        for fact in self.live() {
            match fact {
                Fact::Opened { case, tier: t, .. } | Fact::Assessed { case, tier: t } => {
                    tier.insert(*case, *t);
                }
                Fact::Closed { case, .. } => {
                    closed.insert(*case);
                }
                Fact::Reopened { case, tier: t, .. } if !self.merged().contains_key(case) => {
                    closed.remove(case);
                    tier.insert(*case, *t);
                }
                Fact::TakenOver { case, tier: t, .. } => {
                    tier.insert(*case, *t);
                }
                Fact::TransferredOut { case, .. } => {
                    closed.insert(*case);
                }
                _ => {}
            }
        }
        let mut out = [0; 3];
        for (case, t) in tier {
            if !closed.contains(&case)
                && let Some(slot) = usize::try_from(t - 1).ok().and_then(|i| out.get_mut(i))
            {
                *slot += 1;
            }
        }
        out
    }

    /// How many closed cases were reopened.
    pub fn reopened(&self) -> usize {
        self.live()
            .filter(|fact| matches!(fact, Fact::Reopened { .. }))
            .count()
    }

    /// The days on which anything counted happened, to find the periods the
    /// ledger spans.
    pub fn days(&self) -> BTreeSet<NaiveDate> {
        self.live()
            .filter_map(|fact| match fact {
                Fact::Opened { date, .. }
                | Fact::Visit { date, .. }
                | Fact::Closed { date, .. }
                | Fact::Reopened { date, .. }
                | Fact::Activity { date, .. }
                | Fact::Group { date, .. }
                | Fact::Training { date }
                | Fact::Call { date }
                | Fact::Resource { date, .. }
                | Fact::TransferRequested { date, .. }
                | Fact::TakenOver { date, .. }
                | Fact::Declined { date, .. }
                | Fact::TransferredOut { date, .. } => Some(*date),
                Fact::Assessed { .. } | Fact::Merged { .. } => None,
            })
            .collect()
    }

    /// The transfer requests entered, each with its answer as far as this
    /// ledger holds it (a district's ledger holds both ends), in request
    /// order.
    pub fn transfers(&self) -> Vec<TransferRecord> {
        let mut answers = BTreeMap::new();
        for fact in self.live() {
            match fact {
                Fact::TakenOver { request, date, .. } => {
                    answers.insert(*request, TransferAnswer::Accepted(*date));
                }
                Fact::Declined { request, date } => {
                    answers.insert(*request, TransferAnswer::Declined(*date));
                }
                _ => {}
            }
        }
        let mut out: Vec<TransferRecord> = self
            .facts
            .iter()
            .filter(|(id, _)| !self.voided.contains(id))
            .filter_map(|(id, fact)| match fact {
                Fact::TransferRequested {
                    case,
                    from,
                    to,
                    date,
                } => Some(TransferRecord {
                    request: *id,
                    case: *case,
                    from: from.clone(),
                    to: to.clone(),
                    requested_on: *date,
                    answer: answers.get(id).copied().unwrap_or(TransferAnswer::Pending),
                }),
                _ => None,
            })
            .collect();
        out.sort_by_key(|a| (a.requested_on, a.request));
        out
    }
}

/// The ledger of each station (in the order the workers name them): its
/// workers' ledgers merged, and the files other stations took over from it
/// as no longer held there.
pub fn station_ledgers<'a>(workers: impl IntoIterator<Item = &'a Worker>) -> Vec<(String, Ledger)> {
    let mut ledgers: Vec<(String, Ledger)> = Vec::new();
    for worker in workers {
        match ledgers.iter_mut().find(|(s, _)| s == worker.station()) {
            Some((_, ledger)) => ledger.merge(worker.ledger()),
            None => ledgers.push((worker.station().to_string(), worker.ledger().clone())),
        }
    }
    let taken: Vec<(Uuid, String, Uuid, NaiveDate)> = ledgers
        .iter()
        .flat_map(|(_, ledger)| ledger.facts.iter())
        .filter_map(|(id, fact)| match fact {
            Fact::TakenOver {
                case, from, date, ..
            } => Some((*id, from.clone(), *case, *date)),
            _ => None,
        })
        .collect();
    for (id, from, case, date) in taken {
        if let Some((_, ledger)) = ledgers.iter_mut().find(|(s, _)| *s == from) {
            ledger.facts.push((id, Fact::TransferredOut { case, date }));
        }
    }
    ledgers
}

/// A transfer the district plans: on `requested_on` the worker `from`
/// (an index into the district's workers) asks the station of worker `to`
/// to take over one of its open files; worker `to` answers on the day
/// `answer` names, accepting or not, or never.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTransfer {
    /// The sending worker.
    pub from: usize,
    /// The receiving worker.
    pub to: usize,
    /// The sending worker's station.
    pub from_station: String,
    /// The receiving worker's station, the one asked.
    pub to_station: String,
    /// The day of the request.
    pub requested_on: NaiveDate,
    /// The day of the answer and whether it accepts; `None`: left pending.
    pub answer: Option<(NaiveDate, bool)>,
}

/// What the sender of a planned transfer posts for its receiver once the
/// request is saved.
#[derive(Debug, Clone)]
struct Sent {
    case: Uuid,
    request: Uuid,
    from: String,
    tier: i32,
    opened_on: NaiveDate,
    dibao: bool,
    opening: CaseOpened,
}

/// The requests of planned transfers, by plan index, shared by the workers
/// of a district.
#[derive(Debug, Clone, Default)]
struct Mailbox(Arc<Mutex<BTreeMap<usize, Sent>>>);

impl Mailbox {
    fn post(&self, plan: usize, sent: Sent) {
        // The map holds no invariant a panic elsewhere could break.
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(plan, sent);
    }

    fn read(&self, plan: usize) -> Option<Sent> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&plan)
            .cloned()
    }
}

/// Plans the district's transfers and hands each to its two workers: three
/// requests, at 35%, 45% and 55% of the days, each from a worker to a
/// worker of another station, both drawn from the seed among the
/// `eligible` workers (the driver leaves out devices whose requests or
/// answers could not travel at once, such as a phone without a link); the
/// first is accepted and the second declined three days later (when that
/// day is still played), the third is left pending. Runs shorter than two
/// weeks, or with fewer than two stations eligible, plan none.
pub fn plan_transfers(
    workers: &mut [Worker],
    seed: u64,
    eligible: &[bool],
) -> Vec<PlannedTransfer> {
    let candidates: Vec<usize> = (0..workers.len())
        .filter(|i| eligible.get(*i).copied().unwrap_or(false))
        .collect();
    let Some(first) = workers.first() else {
        return Vec::new();
    };
    let (first_day, last_day) = (first.first_day, first.last_day);
    let span = u64::try_from((last_day - first_day).num_days() + 1).unwrap_or(0);
    if span < 14 {
        return Vec::new();
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7472_616e_7366_6572);
    let mailbox = Mailbox::default();
    let mut plan = Vec::new();
    for k in 0..3u64 {
        let Some(&from) = candidates.choose(&mut rng) else {
            break;
        };
        let others: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| workers[i].station != workers[from].station)
            .collect();
        let Some(&to) = others.choose(&mut rng) else {
            continue;
        };
        let requested_on = first_day + Days::new(span * (35 + 10 * k) / 100);
        let answer = match k {
            0 => Some((requested_on + Days::new(3), true)),
            1 => Some((requested_on + Days::new(3), false)),
            _ => None,
        }
        .filter(|(day, _)| *day <= last_day);
        let planned = PlannedTransfer {
            from,
            to,
            from_station: workers[from].station.clone(),
            to_station: workers[to].station.clone(),
            requested_on,
            answer,
        };
        let index = plan.len();
        for (worker, sends) in [(from, true), (to, false)] {
            workers[worker].mailbox = mailbox.clone();
            workers[worker]
                .transfers
                .push((index, planned.clone(), sends));
        }
        plan.push(planned);
    }
    plan
}

/// One device's social worker, entering field work day by day.
#[derive(Debug)]
pub struct Worker {
    station: String,
    /// Index of the device in the district, for disjoint ID serial numbers.
    global: u32,
    rng: StdRng,
    first_day: NaiveDate,
    last_day: NaiveDate,
    /// The day being entered; `None` before the first.
    day: Option<NaiveDate>,
    queue: VecDeque<Draft>,
    /// The entry handed out and not yet answered.
    waiting: Option<Draft>,
    cases: Vec<CaseFile>,
    /// Saved visits and activities a later void may correct.
    voidable: Vec<Uuid>,
    ids: HashSet<String>,
    serial: u32,
    group_session: i32,
    entries_today: u32,
    ledger: Ledger,
    /// The planned transfers this worker asks for (`true`) or answers, by
    /// plan index.
    transfers: Vec<(usize, PlannedTransfer, bool)>,
    /// The district's requests of planned transfers.
    mailbox: Mailbox,
}

impl Worker {
    /// The worker of device `device` (0-based) of `station`, entering
    /// `first_day ..= last_day`. `global` numbers the device in the district
    /// (0..), so ID numbers never repeat across devices.
    pub fn new(
        seed: u64,
        station: &str,
        device: u32,
        global: u32,
        first_day: NaiveDate,
        last_day: NaiveDate,
    ) -> Self {
        let station_seed: u64 = station.bytes().fold(0, |h, b| {
            h.wrapping_mul(0x100_0000_01b3).wrapping_add(u64::from(b))
        });
        Self {
            station: station.to_string(),
            global,
            rng: StdRng::seed_from_u64(
                seed ^ station_seed.rotate_left(17) ^ u64::from(device).wrapping_mul(0x9e37_79b9),
            ),
            first_day,
            last_day,
            day: None,
            queue: VecDeque::new(),
            waiting: None,
            cases: Vec::new(),
            voidable: Vec::new(),
            ids: HashSet::new(),
            serial: 0,
            group_session: 0,
            entries_today: 0,
            ledger: Ledger::default(),
            transfers: Vec::new(),
            mailbox: Mailbox::default(),
        }
    }

    /// The station.
    pub fn station(&self) -> &str {
        &self.station
    }

    /// What this worker has entered so far.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The day of the entries being handed out; `None` before the first.
    pub fn day(&self) -> Option<NaiveDate> {
        self.day
    }

    /// The next entry, or `None` once the last day is entered.
    ///
    /// # Panics
    /// When the previous entry was not answered with [`Worker::saved`] or
    /// [`Worker::refused`]: that is a bug in the driver.
    pub fn next_entry(&mut self) -> Option<Entry> {
        self.next_entry_through(self.last_day)
    }

    /// The next entry of a day up to `through`, or `None` once every day up
    /// to it is entered: no day after `through` is planned yet, so a driver
    /// that plays the district's days in lockstep has every worker's entries
    /// of the days before a day saved when that day is planned.
    ///
    /// # Panics
    /// As [`Worker::next_entry`].
    pub fn next_entry_through(&mut self, through: NaiveDate) -> Option<Entry> {
        assert!(
            self.waiting.is_none(),
            "answer each entry before asking for the next"
        );
        while self.queue.is_empty() {
            let next = match self.day {
                None if self.first_day <= through => self.first_day,
                Some(day) if day < self.last_day && day < through => day + Days::new(1),
                None | Some(_) => return None,
            };
            self.day = Some(next);
            self.entries_today = 0;
            self.plan_day(next);
        }
        let mut draft = self.queue.pop_front()?;
        let day = self.day?;
        // A tier change names the latest event of the case the device holds,
        // as the agent does: known only once the entries before it are answered.
        if let (Body::CaseAssessed(m), Meaning::Assess { case, .. }) =
            (&mut draft.body, &draft.meaning)
            && let Some(last) = self.cases[*case].events.last()
        {
            m.last_seen_event_id = last.as_bytes().to_vec();
        }
        // A review request names the closure just saved, the case's latest.
        if let (Body::ReviewRequested(m), Meaning::RequestReview { case }) =
            (&mut draft.body, &draft.meaning)
            && let Some(last) = self.cases[*case].events.last()
        {
            m.subject_event_id = last.as_bytes().to_vec();
            m.last_seen_event_id = last.as_bytes().to_vec();
        }
        let expect = match self.verdict(&draft.body) {
            Ok(()) => Expect::Saved,
            Err(_) => Expect::Refused(match draft.meaning {
                Meaning::Invalid { slip } => slip,
                _ => "an entry the generator meant as valid",
            }),
        };
        let minutes = 9 * 60 + 30 + i64::from(self.entries_today) * 7;
        self.entries_today += 1;
        let from_elsewhere = match &draft.meaning {
            Meaning::Answer { .. } => true,
            Meaning::Visit { case, .. }
            | Meaning::Note { case }
            | Meaning::Call { case, .. }
            | Meaning::Verify { case }
            | Meaning::Resource {
                case: Some(case), ..
            } => self.cases[*case].taken_over,
            _ => false,
        };
        let entry = Entry {
            day,
            recorded_at_ms: china_ms(day, minutes),
            body: draft.body.clone(),
            expect,
            from_elsewhere,
        };
        self.waiting = Some(draft);
        Some(entry)
    }

    /// The context the receiver of this field work validates it in: the
    /// hub's, on the district's last day, the earliest day it receives all
    /// of it. An entry is valid there exactly when it is valid on the device
    /// on its own day: valid entries date nothing after their day, and each
    /// slip breaks its rule on every day up to ten years after its own.
    pub fn receiver(&self) -> Context {
        Context::on(self.last_day)
    }

    /// What the validator says of `body`, entered at this worker's station,
    /// in the [receiver's context](Worker::receiver): the one opinion of
    /// what is valid.
    ///
    /// # Errors
    /// The first rule the body breaks.
    pub fn verdict(&self, body: &Body) -> Result<(), Invalid> {
        validate::body(&mut body.clone(), &self.station, &self.receiver())
    }

    /// The last entry was saved under `event_id`.
    pub fn saved(&mut self, event_id: Uuid) {
        let Some(draft) = self.waiting.take() else {
            return;
        };
        self.ledger.saved += 1;
        let fact = match draft.meaning {
            Meaning::Open {
                tier,
                neglect_after,
                opened_on,
                dibao,
                again,
            } => {
                let Body::CaseOpened(opening) = draft.body else {
                    return;
                };
                if let Some(earlier) = again {
                    let survivor = self.cases.len();
                    self.cases[earlier].merged = true;
                    self.queue.push_front(Draft {
                        body: Body::CasesMerged(CasesMerged {
                            survivor_case_id: event_id.as_bytes().to_vec(),
                            absorbed_case_id: self.cases[earlier].id.as_bytes().to_vec(),
                            reason: "同一人重复建档，合并 (one person, two files)".into(),
                            merged_on: self.day.unwrap_or(opened_on).to_string(),
                        }),
                        meaning: Meaning::Merge {
                            survivor,
                            absorbed: earlier,
                        },
                    });
                }
                self.cases.push(CaseFile {
                    id: event_id,
                    tier,
                    opened_on,
                    last_visit: None,
                    closed: false,
                    closed_on: None,
                    reopened_on: None,
                    dibao,
                    neglect_after,
                    visits: 0,
                    events: vec![event_id],
                    opening,
                    merged: false,
                    joined: again.is_some(),
                    handed_over: false,
                    taken_over: false,
                });
                Some(Fact::Opened {
                    case: event_id,
                    date: opened_on,
                    tier,
                })
            }
            Meaning::Visit { case, date, phone } => {
                let file = &mut self.cases[case];
                file.events.push(event_id);
                file.last_visit = Some(date);
                file.visits += 1;
                self.voidable.push(event_id);
                Some(Fact::Visit {
                    case: file.id,
                    date,
                    phone,
                })
            }
            Meaning::Assess { case, tier } => {
                self.cases[case].events.push(event_id);
                self.cases[case].tier = tier;
                Some(Fact::Assessed {
                    case: self.cases[case].id,
                    tier,
                })
            }
            Meaning::Close { case, date } => {
                self.cases[case].events.push(event_id);
                self.cases[case].closed = true;
                self.cases[case].closed_on = Some(date);
                Some(Fact::Closed {
                    case: self.cases[case].id,
                    date,
                })
            }
            Meaning::Reopen { case, date, tier } => {
                let file = &mut self.cases[case];
                file.events.push(event_id);
                file.closed = false;
                file.reopened_on = Some(date);
                file.tier = tier;
                // A reopened case is followed closely.
                file.neglect_after = u32::MAX;
                Some(Fact::Reopened {
                    case: file.id,
                    date,
                    tier,
                })
            }
            Meaning::Activity {
                date,
                person_times,
                volunteers,
                minutes,
            } => {
                self.voidable.push(event_id);
                Some(Fact::Activity {
                    date,
                    person_times,
                    volunteers,
                    minutes,
                })
            }
            Meaning::Group { date, participants } => Some(Fact::Group { date, participants }),
            Meaning::Training { date } => Some(Fact::Training { date }),
            Meaning::Resource { date, fen, case } => {
                if let Some(case) = case {
                    self.cases[case].events.push(event_id);
                }
                Some(Fact::Resource { date, fen })
            }
            Meaning::Void { target } => {
                for file in &mut self.cases {
                    file.events.retain(|id| *id != target);
                }
                self.ledger.voided.insert(target);
                None
            }
            Meaning::Note { case } | Meaning::Verify { case } | Meaning::RequestReview { case } => {
                self.cases[case].events.push(event_id);
                None
            }
            Meaning::Call { case, date } => {
                self.cases[case].events.push(event_id);
                self.voidable.push(event_id);
                Some(Fact::Call { date })
            }
            Meaning::Merge { survivor, absorbed } => {
                self.cases[survivor].events.push(event_id);
                Some(Fact::Merged {
                    survivor: self.cases[survivor].id,
                    absorbed: self.cases[absorbed].id,
                })
            }
            Meaning::TransferOut {
                case,
                plan,
                to,
                date,
            } => {
                let file = &mut self.cases[case];
                file.events.push(event_id);
                self.mailbox.post(
                    plan,
                    Sent {
                        case: file.id,
                        request: event_id,
                        from: self.station.clone(),
                        tier: file.tier,
                        opened_on: file.opened_on,
                        dibao: file.dibao,
                        opening: file.opening.clone(),
                    },
                );
                Some(Fact::TransferRequested {
                    case: file.id,
                    from: self.station.clone(),
                    to,
                    date,
                })
            }
            Meaning::Answer { plan, accept, date } => match self.mailbox.read(plan) {
                Some(sent) if accept => {
                    self.cases.push(CaseFile {
                        id: sent.case,
                        tier: sent.tier,
                        opened_on: sent.opened_on,
                        last_visit: None,
                        closed: false,
                        closed_on: None,
                        reopened_on: None,
                        dibao: sent.dibao,
                        neglect_after: u32::MAX,
                        visits: 0,
                        events: vec![event_id],
                        opening: sent.opening,
                        merged: false,
                        joined: false,
                        handed_over: false,
                        taken_over: true,
                    });
                    Some(Fact::TakenOver {
                        case: sent.case,
                        request: sent.request,
                        from: sent.from,
                        date,
                        tier: sent.tier,
                    })
                }
                Some(sent) => Some(Fact::Declined {
                    request: sent.request,
                    date,
                }),
                None => None,
            },
            Meaning::Invalid { .. } => None,
        };
        if let Some(fact) = fact {
            self.ledger.facts.push((event_id, fact));
        }
    }

    /// Up to `n` of the next valid entries, each answered as saved under the
    /// id `next_id` gives, the invalid ones answered as refused and left out:
    /// field work for code that builds events without an agent (benchmarks).
    pub fn take_valid(
        &mut self,
        n: usize,
        mut next_id: impl FnMut() -> Uuid,
    ) -> Vec<(Uuid, Entry)> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some(entry) = self.next_entry() else {
                break;
            };
            match entry.expect {
                Expect::Saved => {
                    let id = next_id();
                    self.saved(id);
                    out.push((id, entry));
                }
                Expect::Refused(_) => self.refused(),
            }
        }
        out
    }

    /// The last entry was refused.
    pub fn refused(&mut self) {
        if self.waiting.take().is_some() {
            self.ledger.refused += 1;
        }
    }

    /// A community of the station, as the roster codes them: the street
    /// station's eleven communities 001–011, a town's or township's three
    /// villages 201–203.
    fn community(&mut self) -> String {
        let (last, villages) = if self.station.ends_with("001") {
            (11, 0)
        } else {
            (3, 200)
        };
        format!(
            "{}{:03}",
            self.station,
            villages + self.rng.random_range(1..=last)
        )
    }

    fn push(&mut self, body: Body, meaning: Meaning) {
        self.queue.push_back(Draft { body, meaning });
    }

    /// Draws the day's entries.
    fn plan_day(&mut self, day: NaiveDate) {
        self.plan_transfers(day);
        let workday = !matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        let elapsed = (day - self.first_day).num_days();
        if workday {
            // The street station serves about as many people as all the
            // townships together: a larger caseload per worker.
            let street = self.station.ends_with("001");
            let new_cases = match (elapsed < 7, street) {
                (true, false) => self.rng.random_range(3..=5),
                (true, true) => self.rng.random_range(5..=8),
                (false, street) => u32::from(self.rng.random_bool(if street { 0.2 } else { 0.12 })),
            };
            for _ in 0..new_cases {
                self.open_case(day);
            }
            self.visits(day);
            // A file reopened today is not yet open in the worker's model
            // when the day's other entries are drafted: no one is filed
            // again on such a day, lest it be the reopened file's person.
            let reopened = self.rng.random_bool(0.04) && self.reopen(day);
            if elapsed % 30 == 25 && !reopened {
                self.open_again(day);
            }
            if self.rng.random_bool(0.05) {
                self.verify(day);
            }
            if self.rng.random_bool(0.05) {
                self.resource(day);
            }
            if self.rng.random_bool(0.03)
                && let Some(&target) = self.voidable.last()
            {
                self.voidable.pop();
                self.push(
                    Body::EventVoided(EventVoided {
                        voided_event_id: target.as_bytes().to_vec(),
                        reason: "重复录入，作废 (duplicate entry)".into(),
                    }),
                    Meaning::Void { target },
                );
            }
            if self.rng.random_bool(0.025) {
                self.invalid(day);
            }
            if day.weekday() == Weekday::Wed && day.iso_week().week().is_multiple_of(2) {
                self.group(day);
            }
            if elapsed % 21 == 10 {
                self.training(day);
            }
        }
        let activity = if workday { 0.08 } else { 0.2 };
        if self.rng.random_bool(activity) {
            self.activity(day);
        }
    }

    /// The day's requests and answers of planned transfers, first thing in
    /// the morning: a file asked to be taken over is left alone from then on.
    fn plan_transfers(&mut self, day: NaiveDate) {
        let today: Vec<(usize, PlannedTransfer, bool)> = self
            .transfers
            .iter()
            .filter(|(_, t, _)| t.requested_on == day || t.answer.is_some_and(|(on, _)| on == day))
            .cloned()
            .collect();
        for (plan, planned, sends) in today {
            if sends && planned.requested_on == day {
                // The earliest file open and left to this worker alone.
                let Some(case) = (0..self.cases.len()).find(|&i| {
                    let file = &self.cases[i];
                    !file.closed
                        && !file.merged
                        && !file.joined
                        && !file.handed_over
                        && !file.taken_over
                }) else {
                    continue;
                };
                let to = planned.to_station.clone();
                self.cases[case].handed_over = true;
                self.push(
                    Body::CaseTransferRequested(CaseTransferRequested {
                        case_id: self.cases[case].id.as_bytes().to_vec(),
                        to_station_code: to.clone(),
                        reason: "家庭搬迁至辖区外，申请转移 (the family moved)".into(),
                        requested_on: day.to_string(),
                    }),
                    Meaning::TransferOut {
                        case,
                        plan,
                        to,
                        date: day,
                    },
                );
            } else if let Some((on, accept)) = planned.answer
                && on == day
                && !sends
                && let Some(sent) = self.mailbox.read(plan)
            {
                let (case_id, request_id) = (
                    sent.case.as_bytes().to_vec(),
                    sent.request.as_bytes().to_vec(),
                );
                let body = if accept {
                    let village = if self.station.ends_with("001") {
                        1
                    } else {
                        201
                    };
                    Body::CaseTransferAccepted(CaseTransferAccepted {
                        case_id,
                        request_id,
                        community_code: format!("{}{village:03}", self.station),
                        accepted_on: day.to_string(),
                        note: "已接收档案，安排入户 (taken over)".into(),
                    })
                } else {
                    Body::CaseTransferDeclined(CaseTransferDeclined {
                        case_id,
                        request_id,
                        reason: "该户仍居住在原辖区 (the family still lives there)".into(),
                        declined_on: day.to_string(),
                    })
                };
                self.push(
                    body,
                    Meaning::Answer {
                        plan,
                        accept,
                        date: day,
                    },
                );
            }
        }
    }

    fn open_case(&mut self, day: NaiveDate) {
        let roll = self.rng.random_range(0..100);
        let (years, categories): (std::ops::Range<i32>, Vec<Category>) = if roll < 35 {
            (
                1932..1962,
                vec![
                    Category::Elderly,
                    *[Category::Dibao, Category::Tekun]
                        .choose(&mut self.rng)
                        .unwrap_or(&Category::Dibao),
                ],
            )
        } else if roll < 70 {
            (
                2010..2021,
                vec![
                    *[
                        Category::ChildInDifficulty,
                        Category::LeftBehindChild,
                        Category::DeFactoOrphan,
                    ]
                    .choose(&mut self.rng)
                    .unwrap_or(&Category::ChildInDifficulty),
                ],
            )
        } else if roll < 85 {
            (
                1965..2000,
                vec![Category::Disabled, Category::DibaoMarginal],
            )
        } else {
            (1970..1995, vec![Category::Dibao])
        };
        let female = self.rng.random_bool(0.5);
        let (number, birth_date) = loop {
            let year = self.rng.random_range(years.clone());
            let month = self.rng.random_range(1..=12u32);
            let dom = self.rng.random_range(1..=28u32);
            let birth = format!("{year}{month:02}{dom:02}");
            self.serial += 1;
            let serial = self.global * 35 + self.serial % 35;
            let number = id_number("540502", &birth, serial, female);
            if self.ids.insert(number.clone()) {
                break (number, format!("{year}-{month:02}-{dom:02}"));
            }
        };
        let tier = match self.rng.random_range(0..10) {
            0..=1 => Tier::HighRisk,
            2..=5 => Tier::Key,
            _ => Tier::General,
        } as i32;
        let neglect_after = if self.rng.random_bool(0.12) {
            self.rng.random_range(1..=3)
        } else {
            u32::MAX
        };
        let name = (*NAMES.choose(&mut self.rng).unwrap_or(&NAMES[0])).to_string();
        let community = self.community();
        let dibao = categories.contains(&Category::Dibao);
        let body = Body::CaseOpened(CaseOpened {
            name,
            id_number: number,
            gender: if female { Gender::Female } else { Gender::Male } as i32,
            birth_date,
            community_code: community,
            address: "乃东区 སྣེ་གདོང".into(),
            phone: String::new(),
            language: if self.rng.random_bool(0.7) {
                "bo"
            } else {
                "zh"
            }
            .into(),
            categories: categories.into_iter().map(|c| c as i32).collect(),
            tier,
            source: *[
                CaseSource::Outreach,
                CaseSource::Request,
                CaseSource::Referral,
            ]
            .choose(&mut self.rng)
            .unwrap_or(&CaseSource::Outreach) as i32,
            opened_on: day.to_string(),
            file_number: String::new(),
            duplicate_reason: String::new(),
            duplicate_of_stations: Vec::new(),
        });
        self.push(
            body,
            Meaning::Open {
                tier,
                neglect_after,
                opened_on: day,
                dibao,
                again: None,
            },
        );
    }

    /// A new file for the person of the earliest closed file (closed a week
    /// or more ago, open for two days or more, never reopened), dated back
    /// to the day before the old file was closed: the hub flags it as a
    /// duplicate until the old file is merged into it, which follows.
    fn open_again(&mut self, day: NaiveDate) {
        let Some(earlier) = (0..self.cases.len()).find(|&i| {
            let file = &self.cases[i];
            file.closed
                && !file.merged
                && file.reopened_on.is_none()
                && file.closed_on.is_some_and(|c| {
                    (day - c).num_days() >= 7 && (c - file.opened_on).num_days() >= 2
                })
        }) else {
            return;
        };
        let file = &self.cases[earlier];
        let Some(opened_on) = file.closed_on.map(|c| c - Days::new(1)) else {
            return;
        };
        let (tier, dibao) = (file.tier, file.dibao);
        let mut opening = file.opening.clone();
        opening.opened_on = opened_on.to_string();
        opening.file_number = String::new();
        opening.tier = tier;
        self.push(
            Body::CaseOpened(opening),
            Meaning::Open {
                tier,
                neglect_after: u32::MAX,
                opened_on,
                dibao,
                again: Some(earlier),
            },
        );
    }

    fn visits(&mut self, day: NaiveDate) {
        let mut made = 0;
        let most = if self.station.ends_with("001") { 9 } else { 6 };
        for case in 0..self.cases.len() {
            let file = &self.cases[case];
            let first = file.last_visit.is_none();
            // A file just taken over is visited the first workday after,
            // however busy the day.
            let welcome = first && file.taken_over;
            if file.closed
                || file.handed_over
                || file.visits >= file.neglect_after
                || (made >= most && !welcome)
            {
                continue;
            }
            let due = if first {
                file.opened_on + Days::new(2)
            } else {
                file.due_on() - Days::new(2)
            };
            if day < due || (!welcome && !self.rng.random_bool(0.5)) {
                continue;
            }
            made += 1;
            let (tier, opened_on, id, taken_over) =
                (file.tier, file.opened_on, file.id, file.taken_over);
            let kind = if first {
                VisitKind::Assessment
            } else {
                match self.rng.random_range(0..20) {
                    0..=13 => VisitKind::Home,
                    14..=16 => VisitKind::FollowUp,
                    _ => VisitKind::Phone,
                }
            };
            let notes = (*VISIT_NOTES.choose(&mut self.rng).unwrap_or(&VISIT_NOTES[0])).to_string();
            let duration_minutes = if kind == VisitKind::Phone {
                self.rng.random_range(5..20)
            } else {
                self.rng.random_range(20..120)
            };
            self.push(
                Body::VisitRecorded(VisitRecorded {
                    case_id: id.as_bytes().to_vec(),
                    visit_date: day.to_string(),
                    kind: kind as i32,
                    duration_minutes,
                    notes,
                    needs_found: vec![],
                }),
                Meaning::Visit {
                    case,
                    date: day,
                    phone: kind == VisitKind::Phone,
                },
            );
            if self.rng.random_bool(0.1) {
                let outcome = *[
                    CallOutcome::Reached,
                    CallOutcome::Reached,
                    CallOutcome::NoAnswer,
                    CallOutcome::Unreachable,
                ]
                .choose(&mut self.rng)
                .unwrap_or(&CallOutcome::Reached);
                let duration_minutes = if outcome == CallOutcome::Reached {
                    self.rng.random_range(3..15)
                } else {
                    0
                };
                self.push(
                    Body::GuardianCalled(GuardianCalled {
                        case_id: id.as_bytes().to_vec(),
                        called_on: day.to_string(),
                        outcome: outcome as i32,
                        duration_minutes,
                        notes: "告知监护人走访情况 གཟིགས་སྐྱོང་པ".into(),
                    }),
                    Meaning::Call { case, date: day },
                );
            }
            if self.rng.random_bool(0.2) {
                self.push(
                    Body::CaseNoteAdded(CaseNoteAdded {
                        case_id: id.as_bytes().to_vec(),
                        kind: NoteKind::Intervention as i32,
                        text: "制定服务计划：每周电话关怀，协调村医上门 ཞབས་ཞུའི་འཆར་གཞི".into(),
                        noted_on: day.to_string(),
                    }),
                    Meaning::Note { case },
                );
            }
            // A file taken over keeps the tier and the course the sending
            // station gave it.
            if taken_over {
                continue;
            }
            if !first && self.rng.random_bool(0.06) {
                let new_tier = match tier {
                    1 => 2,
                    3 => 2,
                    _ => *[1, 3].choose(&mut self.rng).unwrap_or(&3),
                };
                self.push(
                    Body::CaseAssessed(CaseAssessed {
                        case_id: id.as_bytes().to_vec(),
                        tier: new_tier,
                        reason: "复评：家庭情况变化 ཁྱིམ་ཚང་གི་གནས་སྟངས".into(),
                        last_seen_event_id: vec![],
                        assessed_on: day.to_string(),
                    }),
                    Meaning::Assess {
                        case,
                        tier: new_tier,
                    },
                );
            } else if !first
                && (day - opened_on).num_days() > 40
                && self.rng.random_bool(match tier {
                    3 => 0.25,
                    2 => 0.08,
                    _ => 0.0,
                })
            {
                self.push(
                    Body::CaseClosed(CaseClosed {
                        case_id: id.as_bytes().to_vec(),
                        reason: "服务目标达成，结案 དམིགས་ཡུལ་འགྲུབ".into(),
                        closed_on: day.to_string(),
                    }),
                    Meaning::Close { case, date: day },
                );
                self.push(
                    Body::ReviewRequested(ReviewRequested {
                        case_id: id.as_bytes().to_vec(),
                        subject: ReviewSubject::Closure as i32,
                        subject_event_id: vec![],
                        last_seen_event_id: vec![],
                        requested_on: day.to_string(),
                        note: "请督导审核结案".into(),
                    }),
                    Meaning::RequestReview { case },
                );
            }
        }
    }

    /// Reopens a case closed at least two weeks ago, once: the family's
    /// situation turned again. Returns whether it did.
    fn reopen(&mut self, day: NaiveDate) -> bool {
        let closed: Vec<usize> = (0..self.cases.len())
            .filter(|&i| {
                let file = &self.cases[i];
                file.closed
                    && !file.merged
                    && file.reopened_on.is_none()
                    && file.closed_on.is_some_and(|c| (day - c).num_days() >= 14)
            })
            .collect();
        let Some(&case) = closed.choose(&mut self.rng) else {
            return false;
        };
        let tier = *[Tier::HighRisk as i32, Tier::Key as i32]
            .choose(&mut self.rng)
            .unwrap_or(&(Tier::Key as i32));
        self.push(
            Body::CaseReopened(CaseReopened {
                case_id: self.cases[case].id.as_bytes().to_vec(),
                reason: "情况反复，重新开案 ཡང་བསྐྱར་ཁ་ཕྱེ".into(),
                reopened_on: day.to_string(),
                tier,
            }),
            Meaning::Reopen {
                case,
                date: day,
                tier,
            },
        );
        true
    }

    fn verify(&mut self, day: NaiveDate) {
        let dibao: Vec<usize> = (0..self.cases.len())
            .filter(|&i| {
                let file = &self.cases[i];
                file.dibao && !file.closed && !file.handed_over
            })
            .collect();
        if let Some(&case) = dibao.choose(&mut self.rng) {
            self.push(
                Body::BeneficiaryVerified(BeneficiaryVerified {
                    case_id: self.cases[case].id.as_bytes().to_vec(),
                    verified_on: day.to_string(),
                    categories: vec![Category::Dibao as i32],
                    still_eligible: true,
                    notes: "低保年度核查，收入情况属实".into(),
                }),
                Meaning::Verify { case },
            );
        }
    }

    fn resource(&mut self, day: NaiveDate) {
        let open: Vec<usize> = (0..self.cases.len())
            .filter(|&i| !self.cases[i].closed && !self.cases[i].handed_over)
            .collect();
        let case = if self.rng.random_bool(0.8) {
            open.choose(&mut self.rng).copied()
        } else {
            None
        };
        let cash = self.rng.random_bool(0.5);
        let fen = i64::from(self.rng.random_range(2..=20u32)) * 10_000;
        self.push(
            Body::ResourceLinked(ResourceLinked {
                case_id: case.map_or_else(Vec::new, |c| self.cases[c].id.as_bytes().to_vec()),
                linked_on: day.to_string(),
                kind: if cash {
                    ResourceKind::Cash
                } else {
                    ResourceKind::InKind
                } as i32,
                source: if cash {
                    "区慈善总会临时救助"
                } else {
                    "爱心企业捐赠冬衣、酥油"
                }
                .into(),
                cash_fen: if cash { fen } else { 0 },
                in_kind_fen: if cash { 0 } else { fen },
                description: String::new(),
            }),
            Meaning::Resource {
                date: day,
                fen,
                case,
            },
        );
    }

    fn activity(&mut self, day: NaiveDate) {
        let (kind, title) = *[
            (ActivityKind::ChildCare, "儿童关爱·周末课堂 བྱིས་པའི་སློབ་ཁྲིད"),
            (ActivityKind::Clinic, "老年人义诊 རྒན་པའི་སྨན་བཅོས"),
            (ActivityKind::PartyPublicWelfare, "党建+公益 志愿服务日"),
            (ActivityKind::ElderlyCare, "为老服务·理发与清洁"),
            (ActivityKind::PolicyPublicity, "惠民政策宣传 སྲིད་ཇུས་ཁྱབ་བསྒྲགས"),
        ]
        .choose(&mut self.rng)
        .unwrap_or(&(ActivityKind::Other, "社区活动"));
        let participants = self.rng.random_range(8..=60);
        let person_times = participants * self.rng.random_range(1..=2);
        let volunteers = self.rng.random_range(0..=8);
        let minutes = volunteers * self.rng.random_range(90..=240);
        let community = self.community();
        self.push(
            Body::ActivityHeld(ActivityHeld {
                held_on: day.to_string(),
                community_code: community,
                kind: kind as i32,
                title: title.into(),
                participants,
                person_times,
                volunteers,
                volunteer_minutes: minutes,
            }),
            Meaning::Activity {
                date: day,
                person_times: person_times.into(),
                volunteers: volunteers.into(),
                minutes: minutes.into(),
            },
        );
    }

    fn group(&mut self, day: NaiveDate) {
        self.group_session += 1;
        let participants = self.rng.random_range(6..=12);
        let community = self.community();
        let children = self.global.is_multiple_of(2);
        self.push(
            Body::GroupSessionHeld(GroupSessionHeld {
                group_name: if children {
                    "困境儿童成长小组"
                } else {
                    "老年人互助小组 རྒན་པའི་རོགས་རམ"
                }
                .into(),
                session_number: self.group_session,
                held_on: day.to_string(),
                community_code: community,
                participants,
                topic: format!("第{}节", self.group_session),
            }),
            Meaning::Group {
                date: day,
                participants: participants.into(),
            },
        );
    }

    fn training(&mut self, day: NaiveDate) {
        let (kind, title) = *[
            (TrainingKind::Training, "社会工作实务培训"),
            (TrainingKind::Supervision, "个案督导"),
            (TrainingKind::CoLearning, "社工站共学 ལྷན་དུ་སློབ་སྦྱོང"),
        ]
        .choose(&mut self.rng)
        .unwrap_or(&(TrainingKind::Training, "培训"));
        let trainees = self.rng.random_range(2..=15);
        let minutes = self.rng.random_range(60..=240);
        self.push(
            Body::TrainingHeld(TrainingHeld {
                held_on: day.to_string(),
                kind: kind as i32,
                title: title.into(),
                trainees,
                minutes,
            }),
            Meaning::Training { date: day },
        );
    }

    /// An entry the agent must refuse: a typing slip of the kinds seen in
    /// the field. Each breaks a rule on its own day and on every later day
    /// within ten years, so the device and the hub refuse it alike.
    fn invalid(&mut self, day: NaiveDate) {
        let community = self.community();
        let (slip, body) = match self.rng.random_range(0..4) {
            0 => (
                SLIP_FUTURE,
                Body::ActivityHeld(ActivityHeld {
                    held_on: day
                        .checked_add_months(Months::new(120))
                        .unwrap_or(NaiveDate::MAX)
                        .to_string(),
                    community_code: community,
                    kind: ActivityKind::Cultural as i32,
                    title: "年份录错 (the year typed ten years ahead)".into(),
                    participants: 20,
                    person_times: 20,
                    volunteers: 0,
                    volunteer_minutes: 0,
                }),
            ),
            1 => {
                let valid = id_number("540502", "19580312", self.global * 35, true);
                let mut wrong = valid.into_bytes();
                if let Some(last) = wrong.last_mut() {
                    *last = if *last == b'0' { b'1' } else { b'0' };
                }
                (
                    SLIP_CHECK_CHARACTER,
                    Body::CaseOpened(CaseOpened {
                        name: "央宗 དབྱངས་འཛོམས".into(),
                        id_number: String::from_utf8(wrong).unwrap_or_default(),
                        gender: Gender::Female as i32,
                        birth_date: "1958-03-12".into(),
                        community_code: community,
                        address: String::new(),
                        phone: String::new(),
                        language: "bo".into(),
                        categories: vec![Category::Elderly as i32],
                        tier: Tier::Key as i32,
                        source: CaseSource::Outreach as i32,
                        opened_on: day.to_string(),
                        file_number: String::new(),
                        duplicate_reason: String::new(),
                        duplicate_of_stations: Vec::new(),
                    }),
                )
            }
            2 => (
                SLIP_PERSON_TIMES,
                Body::ActivityHeld(ActivityHeld {
                    held_on: day.to_string(),
                    community_code: community,
                    kind: ActivityKind::ChildCare as i32,
                    title: "人次少于人数 (person-times below participants)".into(),
                    participants: 30,
                    person_times: 3,
                    volunteers: 1,
                    volunteer_minutes: 60,
                }),
            ),
            _ => (
                SLIP_NEGATIVE,
                Body::ResourceLinked(ResourceLinked {
                    case_id: vec![],
                    linked_on: day.to_string(),
                    kind: ResourceKind::Cash as i32,
                    source: "金额录成负数 (negative amount)".into(),
                    cash_fen: -50_000,
                    in_kind_fen: 0,
                    description: String::new(),
                }),
            ),
        };
        self.push(body, Meaning::Invalid { slip });
    }
}

// The slips a worker makes, as [`Expect::Refused`] names them.
/// A service date typed years ahead.
const SLIP_FUTURE: &str = "date in the future";
/// An ID number with one character mistyped.
const SLIP_CHECK_CHARACTER: &str = "ID number with a wrong check character";
/// Fewer person-times than participants.
const SLIP_PERSON_TIMES: &str = "person-times below participants";
/// A negative amount of money.
const SLIP_NEGATIVE: &str = "negative amount";

/// Milliseconds since the epoch of `minutes` after midnight of `day`, China
/// time.
pub fn china_ms(day: NaiveDate, minutes: i64) -> i64 {
    let midnight = day.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
    midnight + (minutes - CHINA_OFFSET_HOURS * 60) * 60_000
}

/// The workers of a district: `devices` per station, numbered station by
/// station, entering `days` days that end on `last_day`.
pub fn district(
    seed: u64,
    stations: &[&str],
    devices: u32,
    days: u32,
    last_day: NaiveDate,
) -> Vec<Worker> {
    let first_day = last_day - Days::new(u64::from(days.max(1)) - 1);
    let mut workers = Vec::new();
    for (s, station) in stations.iter().enumerate() {
        for d in 0..devices {
            let global = u32::try_from(s).unwrap_or(0) * devices + d;
            workers.push(Worker::new(seed, station, d, global, first_day, last_day));
        }
    }
    workers
}

#[cfg(test)]
mod tests {
    use super::*;
    use station_proto::Event;

    fn run(worker: &mut Worker) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut n = 0u64;
        while let Some(entry) = worker.next_entry() {
            match entry.expect {
                Expect::Saved => {
                    n += 1;
                    worker.saved(Uuid::from_u128(u128::from(n)));
                }
                Expect::Refused(_) => worker.refused(),
            }
            entries.push(entry);
        }
        entries
    }

    #[test]
    fn same_seed_same_entries_and_valid_ones_validate() {
        let last = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap_or_default();
        let mut a = Worker::new(7, "540502200", 1, 5, last - Days::new(119), last);
        let mut b = Worker::new(7, "540502200", 1, 5, last - Days::new(119), last);
        let (ea, eb) = (run(&mut a), run(&mut b));
        assert_eq!(ea, eb);
        assert!(ea.len() > 150, "{} entries", ea.len());
        for entry in &ea {
            let mut body = entry.body.clone();
            let result = validate::body(&mut body, "540502200", &Context::on(entry.day));
            match entry.expect {
                Expect::Saved => assert!(result.is_ok(), "{entry:?}: {result:?}"),
                Expect::Refused(why) => assert!(result.is_err(), "{why}: {entry:?}"),
            }
        }
        let c = run(&mut Worker::new(
            8,
            "540502200",
            1,
            5,
            last - Days::new(119),
            last,
        ));
        assert_ne!(ea, c);
        let mut ledger = Ledger::default();
        for mut worker in district(7, &NEDONG_STATIONS, 2, 120, last) {
            run(&mut worker);
            ledger.merge(worker.ledger());
        }
        assert!(ledger.refused >= 7, "{} refused", ledger.refused);
        assert!(ledger.voided.len() >= 7, "{} voided", ledger.voided.len());
        assert!(ledger.open_by_tier().iter().all(|n| *n > 10));
        assert!(ledger.reopened() >= 3, "{} reopened", ledger.reopened());
        assert!(ledger.merges() >= 3, "{} merged", ledger.merges());
    }

    /// Each entry of a district ending on `last`, as the hub receives it.
    fn events_of_district(last: NaiveDate, days: u32) -> Vec<(Event, Entry)> {
        let mut out = Vec::new();
        for (d, mut worker) in district(11, &NEDONG_STATIONS, 1, days, last)
            .into_iter()
            .enumerate()
        {
            let origin = Uuid::from_u128(d as u128 + 1);
            let mut seq = 0u64;
            while let Some(entry) = worker.next_entry() {
                seq += 1;
                let event_id = station_proto::ids::new_v7();
                let event = Event {
                    event_id: event_id.as_bytes().to_vec(),
                    origin_id: origin.as_bytes().to_vec(),
                    origin_seq: seq,
                    station_code: worker.station().into(),
                    author: format!("worker-{d}"),
                    recorded_at_ms: entry.recorded_at_ms,
                    hlc: (entry.recorded_at_ms as u64) << 16,
                    body: Some(entry.body.clone()),
                };
                match entry.expect {
                    Expect::Saved => worker.saved(event_id),
                    Expect::Refused(_) => worker.refused(),
                }
                out.push((event, entry));
            }
        }
        out
    }

    #[test]
    fn the_hub_and_the_device_accept_exactly_what_the_generator_calls_valid() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("a real date");
        let ends = [
            day(2026, 1, 31),
            day(2026, 2, 28),
            day(2026, 4, 30),
            day(2026, 12, 7),
            day(2026, 12, 31),
            day(2028, 2, 29),
            day(2028, 3, 1),
            station_hub::projections::today_in_china(),
        ];
        for last in ends {
            // The hub validates with its own date; it receives the work on
            // the last day at the earliest (the benchmark pushes it then).
            let hub = Context::on(last);
            let (mut saved, mut refused, mut assessed) = (0, 0, 0);
            for (event, entry) in events_of_district(last, 150) {
                let device = Context::on(entry.day);
                let mut at_hub = event.clone();
                let hub_says = validate::event(&mut at_hub, &hub);
                let mut on_device = entry.body.clone();
                let device_says =
                    validate::body(&mut on_device, event.station_code.as_str(), &device);
                match entry.expect {
                    Expect::Saved => {
                        saved += 1;
                        assert!(hub_says.is_ok(), "{last}: {hub_says:?} {entry:?}");
                        assert!(device_says.is_ok(), "{last}: {device_says:?} {entry:?}");
                        if let Body::CaseAssessed(m) = &entry.body {
                            assessed += 1;
                            assert_eq!(m.last_seen_event_id.len(), 16, "{entry:?}");
                        }
                    }
                    Expect::Refused(slip) => {
                        refused += 1;
                        assert!(
                            [
                                SLIP_FUTURE,
                                SLIP_CHECK_CHARACTER,
                                SLIP_PERSON_TIMES,
                                SLIP_NEGATIVE
                            ]
                            .contains(&slip),
                            "{last}: a meant-valid entry was refused: {entry:?}"
                        );
                        assert!(hub_says.is_err(), "{last}: {slip}: {entry:?}");
                        assert!(device_says.is_err(), "{last}: {slip}: {entry:?}");
                    }
                }
            }
            assert!(saved > 1000, "{last}: {saved} saved");
            assert!(refused > 0, "{last}: {refused} refused");
            assert!(assessed > 0, "{last}: {assessed} tier changes");
        }
    }

    #[test]
    fn the_benchmark_district_is_valid_at_the_hub_today() {
        // hub-ingest at full size: 500 entries per device over 530 days.
        let last = station_hub::projections::today_in_china();
        let hub = Context::on(last);
        let first = last - Days::new(530);
        for (d, station) in NEDONG_STATIONS.iter().enumerate() {
            let mut worker = Worker::new(7, station, 0, d as u32, first, last);
            let mut n = 0u128;
            for (_, entry) in worker.take_valid(500, || {
                n += 1;
                Uuid::from_u128(n)
            }) {
                let mut body = entry.body.clone();
                let verdict = validate::body(&mut body, station, &hub);
                assert!(verdict.is_ok(), "{verdict:?}: {entry:?}");
            }
        }
    }
}
