//! The encodings of the projections' records: binary for case files,
//! open-case views, void marks and the runs that pack many records into one
//! value; JSON for tier conflicts and device statistics.
//!
//! Integers are LEB128 varints (signed ones zigzagged) unless said
//! otherwise; ids are their 16 bytes; text is a varint length and UTF-8; a
//! date is a varint, 0 for none, else 1 + zigzag(days from 0001-01-01 CE).
//! Encodings are a function of the record's value, so equal records are
//! equal bytes.
//!
//! Case file: stations (count, each text), facts (count, each: a header
//! byte, body kind in the low four bits and 0x10 when voided; id; hlc as 8
//! big-endian bytes; index of its station; the void's id when voided; the
//! body's fields, an opening's ending with its file number; an optional id is
//! a byte 0, or 1 and the id). An open case's view ends with the file number
//! too. Review rows of a case are JSON.
//!
//! A person's files: the case ids' 16 bytes, ascending. The person of a
//! case: its station (text), then the 16 bytes of the tag.
//!
//! Run: `u32` big-endian record count n, then n entries of 20 bytes (the
//! record's 16-byte id and the `u32` big-endian end offset of its bytes),
//! then the records' bytes, ids ascending.

use chrono::{Datelike as _, NaiveDate};
use station_proto::case::{CaseStatus, CaseView};
use station_proto::directory::{DIRECTORY_TAG_BYTES, DirectoryTag};
use station_proto::ids::Uuid;
use station_proto::person::{PersonTag, TAG_BYTES};

use super::error::ProjectionError;
use super::fold::{
    AssessedFact, CaseFact, Day, DecidedFact, FactBody, OpenedFact, RequestedFact, Station,
    Stations,
};
use super::period::Metric;

/// Reads a JSON record (tier conflicts, device statistics).
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, ProjectionError> {
    serde_json::from_slice(bytes).map_err(|e| ProjectionError::Corrupt(format!("{what}: {e}")))
}

/// Writes a JSON record.
pub(crate) fn encode_json<T: serde::Serialize>(
    what: &str,
    value: &T,
) -> Result<Vec<u8>, ProjectionError> {
    serde_json::to_vec(value).map_err(|e| ProjectionError::Corrupt(format!("{what}: {e}")))
}

fn corrupt(what: &str) -> ProjectionError {
    ProjectionError::Corrupt(format!("{what} does not decode"))
}

/// Appends encoded values.
#[derive(Debug, Default)]
pub(crate) struct Writer(pub Vec<u8>);

impl Writer {
    pub(crate) fn u(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    pub(crate) fn i(&mut self, v: i64) {
        self.u(((v << 1) ^ (v >> 63)) as u64);
    }

    pub(crate) fn id(&mut self, id: &Uuid) {
        self.0.extend_from_slice(id.as_bytes());
    }

    /// An optional id: a byte 0 for none, else 1 and the id.
    pub(crate) fn maybe_id(&mut self, id: Option<&Uuid>) {
        match id {
            Some(id) => {
                self.0.push(1);
                self.id(id);
            }
            None => self.0.push(0),
        }
    }

    pub(crate) fn text(&mut self, s: &str) {
        self.u(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
    }

    fn day(&mut self, day: Day) {
        match day {
            None => self.u(0),
            Some(d) => {
                let days = i64::from(d.num_days_from_ce());
                self.u((((days << 1) ^ (days >> 63)) as u64) + 1);
            }
        }
    }

    fn ints(&mut self, values: &[i32]) {
        self.u(values.len() as u64);
        for v in values {
            self.i(i64::from(*v));
        }
    }
}

/// Reads encoded values; every read fails cleanly past the end.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, what }
    }

    fn fail(&self) -> ProjectionError {
        corrupt(self.what)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProjectionError> {
        if self.bytes.len() < n {
            return Err(self.fail());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, ProjectionError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u(&mut self) -> Result<u64, ProjectionError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.fail())
    }

    pub(crate) fn i(&mut self) -> Result<i64, ProjectionError> {
        let v = self.u()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn i32(&mut self) -> Result<i32, ProjectionError> {
        i32::try_from(self.i()?).map_err(|_| self.fail())
    }

    fn len(&mut self) -> Result<usize, ProjectionError> {
        let n = usize::try_from(self.u()?).map_err(|_| self.fail())?;
        // A count can never exceed the bytes left: each item takes one at least.
        if n > self.bytes.len() {
            return Err(self.fail());
        }
        Ok(n)
    }

    pub(crate) fn id(&mut self) -> Result<Uuid, ProjectionError> {
        let bytes = self.take(16)?;
        Uuid::from_slice(bytes).map_err(|_| self.fail())
    }

    /// An optional id, as [`Writer::maybe_id`] writes it.
    pub(crate) fn maybe_id(&mut self) -> Result<Option<Uuid>, ProjectionError> {
        match self.byte()? {
            0 => Ok(None),
            _ => self.id().map(Some),
        }
    }

    pub(crate) fn text(&mut self) -> Result<String, ProjectionError> {
        self.text_ref().map(str::to_owned)
    }

    fn text_ref(&mut self) -> Result<&'a str, ProjectionError> {
        let n = self.len()?;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).map_err(|_| self.fail())
    }

    fn day(&mut self) -> Result<Day, ProjectionError> {
        match self.u()? {
            0 => Ok(None),
            v => {
                let v = v - 1;
                let days = ((v >> 1) as i64) ^ -((v & 1) as i64);
                let days = i32::try_from(days).map_err(|_| self.fail())?;
                NaiveDate::from_num_days_from_ce_opt(days)
                    .map(Some)
                    .ok_or_else(|| self.fail())
            }
        }
    }

    fn ints(&mut self) -> Result<Vec<i32>, ProjectionError> {
        let n = self.len()?;
        (0..n).map(|_| self.i32()).collect()
    }

    fn hlc(&mut self) -> Result<u64, ProjectionError> {
        let bytes = self.take(8)?;
        <[u8; 8]>::try_from(bytes)
            .map(u64::from_be_bytes)
            .map_err(|_| self.fail())
    }

    fn done(&self) -> Result<(), ProjectionError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.fail())
        }
    }
}

const OPENED: u8 = 0;
const ASSESSED: u8 = 1;
const NOTE: u8 = 2;
const CLOSED: u8 = 3;
const REOPENED: u8 = 4;
const VISIT: u8 = 5;
const VERIFIED: u8 = 6;
const RESOURCE: u8 = 7;
/// A `GuardianCalled` counted into guardian calls, as written before
/// [`COUNTED`] (read only).
const CALL: u8 = 8;
const MERGED: u8 = 9;
const DISMISSED: u8 = 10;
const REQUESTED: u8 = 11;
const DECIDED: u8 = 12;
const TRANSFER_REQUESTED: u8 = 13;
const TRANSFER_ACCEPTED: u8 = 14;
const TRANSFER_DECLINED: u8 = 15;
const VOIDED: u8 = 0x10;
/// A fact counted into one metric: its day, then the metric's name. Above
/// [`VOIDED`], since the tags below it are all taken.
const COUNTED: u8 = 0x20;

/// Encodes a case file: its facts in (hlc, event_id) order.
pub(crate) fn encode_case(facts: &[CaseFact]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(16 + facts.len() * 36));
    let mut stations: Vec<&Station> = Vec::new();
    for fact in facts {
        if !stations.contains(&&fact.station) {
            stations.push(&fact.station);
        }
    }
    w.u(stations.len() as u64);
    for station in &stations {
        w.text(station);
    }
    w.u(facts.len() as u64);
    for fact in facts {
        let kind = match &fact.body {
            FactBody::Opened(_) => OPENED,
            FactBody::Assessed(_) => ASSESSED,
            FactBody::Note => NOTE,
            FactBody::Closed { .. } => CLOSED,
            FactBody::Reopened { .. } => REOPENED,
            FactBody::Visit { .. } => VISIT,
            FactBody::Verified { .. } => VERIFIED,
            FactBody::Resource { .. } => RESOURCE,
            FactBody::Counted { .. } => COUNTED,
            FactBody::Merged { .. } => MERGED,
            FactBody::Dismissed { .. } => DISMISSED,
            FactBody::Requested(_) => REQUESTED,
            FactBody::Decided(_) => DECIDED,
            FactBody::TransferRequested { .. } => TRANSFER_REQUESTED,
            FactBody::TransferAccepted { .. } => TRANSFER_ACCEPTED,
            FactBody::TransferDeclined { .. } => TRANSFER_DECLINED,
        };
        w.0.push(kind | if fact.voided_by.is_some() { VOIDED } else { 0 });
        w.id(&fact.id);
        w.0.extend_from_slice(&fact.hlc.to_be_bytes());
        let station = stations
            .iter()
            .position(|s| **s == fact.station)
            .unwrap_or_default();
        w.u(station as u64);
        if let Some(by) = &fact.voided_by {
            w.id(by);
        }
        match &fact.body {
            FactBody::Opened(o) => {
                w.text(&o.name);
                w.text(&o.community);
                w.ints(&o.categories);
                w.i(i64::from(o.tier));
                w.day(o.on);
                w.text(&o.file_number);
            }
            FactBody::Assessed(a) => {
                w.i(i64::from(a.tier));
                match &a.last_seen {
                    Some(id) => {
                        w.0.push(1);
                        w.id(id);
                    }
                    None => w.0.push(0),
                }
                w.text(&a.author);
                w.text(&a.on);
            }
            FactBody::Note => {}
            FactBody::Closed { on } => w.day(*on),
            FactBody::Reopened { on, tier } => {
                w.day(*on);
                w.i(i64::from(*tier));
            }
            FactBody::Visit { on, kind } => {
                w.day(*on);
                w.i(i64::from(*kind));
            }
            FactBody::Verified { categories } => w.ints(categories),
            FactBody::Counted { on, metric } => {
                w.day(*on);
                w.text(metric.name());
            }
            FactBody::Resource { on, fen } => {
                w.day(*on);
                w.i(*fen);
            }
            FactBody::Merged { absorbed } => w.id(absorbed),
            FactBody::Dismissed { of } => w.id(of),
            FactBody::Requested(r) => {
                w.i(i64::from(r.subject));
                w.maybe_id(r.subject_event.as_ref());
                w.day(r.on);
                w.text(&r.author);
            }
            FactBody::Decided(d) => {
                w.maybe_id(d.request.as_ref());
                w.0.push(u8::from(d.approved));
                w.maybe_id(d.last_seen.as_ref());
                w.day(d.on);
                w.text(&d.author);
                w.text(&d.comment);
            }
            FactBody::TransferRequested { to, on } => {
                w.text(to);
                w.day(*on);
            }
            FactBody::TransferAccepted {
                request,
                community,
                on,
            } => {
                w.maybe_id(request.as_ref());
                w.text(community);
                w.day(*on);
            }
            FactBody::TransferDeclined { request, on } => {
                w.maybe_id(request.as_ref());
                w.day(*on);
            }
        }
    }
    w.0
}

/// Decodes a case file.
pub(crate) fn decode_case(
    bytes: &[u8],
    interner: &mut Stations,
) -> Result<Vec<CaseFact>, ProjectionError> {
    let mut r = Reader::new(bytes, "a case file");
    let n = r.len()?;
    let stations = (0..n)
        .map(|_| Ok(interner.get(&r.text()?)))
        .collect::<Result<Vec<Station>, ProjectionError>>()?;
    let n = r.len()?;
    let mut facts = Vec::with_capacity(n);
    for _ in 0..n {
        let header = r.byte()?;
        let id = r.id()?;
        let hlc = r.hlc()?;
        let station = usize::try_from(r.u()?)
            .ok()
            .and_then(|i| stations.get(i))
            .cloned()
            .ok_or_else(|| r.fail())?;
        let voided_by = if header & VOIDED != 0 {
            Some(r.id()?)
        } else {
            None
        };
        let body = match header & !VOIDED {
            OPENED => FactBody::Opened(Box::new(OpenedFact {
                name: r.text()?,
                community: r.text()?,
                categories: r.ints()?,
                tier: r.i32()?,
                on: r.day()?,
                file_number: r.text()?,
            })),
            ASSESSED => FactBody::Assessed(Box::new(AssessedFact {
                tier: r.i32()?,
                last_seen: match r.byte()? {
                    0 => None,
                    _ => Some(r.id()?),
                },
                author: r.text()?,
                on: r.text()?,
            })),
            NOTE => FactBody::Note,
            CLOSED => FactBody::Closed { on: r.day()? },
            REOPENED => FactBody::Reopened {
                on: r.day()?,
                tier: r.i32()?,
            },
            VISIT => FactBody::Visit {
                on: r.day()?,
                kind: r.i32()?,
            },
            VERIFIED => FactBody::Verified {
                categories: r.ints()?,
            },
            RESOURCE => FactBody::Resource {
                on: r.day()?,
                fen: r.i()?,
            },
            CALL => FactBody::Counted {
                on: r.day()?,
                metric: Metric::GuardianCalls,
            },
            COUNTED => {
                let on = r.day()?;
                let metric = Metric::from_name(&r.text()?).ok_or_else(|| r.fail())?;
                FactBody::Counted { on, metric }
            }
            MERGED => FactBody::Merged { absorbed: r.id()? },
            DISMISSED => FactBody::Dismissed { of: r.id()? },
            REQUESTED => FactBody::Requested(Box::new(RequestedFact {
                subject: r.i32()?,
                subject_event: r.maybe_id()?,
                on: r.day()?,
                author: r.text()?,
            })),
            DECIDED => FactBody::Decided(Box::new(DecidedFact {
                request: r.maybe_id()?,
                approved: r.byte()? != 0,
                last_seen: r.maybe_id()?,
                on: r.day()?,
                author: r.text()?,
                comment: r.text()?,
            })),
            TRANSFER_REQUESTED => FactBody::TransferRequested {
                to: r.text()?,
                on: r.day()?,
            },
            TRANSFER_ACCEPTED => FactBody::TransferAccepted {
                request: r.maybe_id()?,
                community: r.text()?,
                on: r.day()?,
            },
            TRANSFER_DECLINED => FactBody::TransferDeclined {
                request: r.maybe_id()?,
                on: r.day()?,
            },
            _ => return Err(r.fail()),
        };
        facts.push(CaseFact {
            id,
            hlc,
            station,
            voided_by,
            body,
        });
    }
    r.done()?;
    Ok(facts)
}

/// Encodes case ids: their 16 bytes each, in the order given.
pub(crate) fn encode_ids(ids: &[Uuid]) -> Vec<u8> {
    ids.iter().flat_map(|id| *id.as_bytes()).collect()
}

/// Decodes case ids written by [`encode_ids`].
pub(crate) fn decode_ids(bytes: &[u8]) -> Result<Vec<Uuid>, ProjectionError> {
    if !bytes.len().is_multiple_of(16) {
        return Err(corrupt("a person's files"));
    }
    bytes
        .chunks_exact(16)
        .map(|id| Uuid::from_slice(id).map_err(|_| corrupt("a person's files")))
        .collect()
}

/// Encodes the person a case was opened for: the station as text, a byte
/// 1 and the ID number's tag (or a byte 0 for a person without one), then
/// the directory tags, 6 bytes each.
pub(crate) fn encode_person(
    station: &str,
    tag: Option<&PersonTag>,
    directory: &[DirectoryTag],
) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(
        11 + TAG_BYTES + directory.len() * DIRECTORY_TAG_BYTES,
    ));
    w.text(station);
    match tag {
        Some(tag) => {
            w.0.push(1);
            w.0.extend_from_slice(tag);
        }
        None => w.0.push(0),
    }
    for line in directory {
        w.0.extend_from_slice(line);
    }
    w.0
}

/// The person of a case, as [`decode_person`] reads it: the station and
/// the tag of the ID number (none for a person without one), and the
/// directory tags.
pub(crate) type DecodedPerson = (Station, Option<PersonTag>, Vec<DirectoryTag>);

/// Decodes what [`encode_person`] wrote.
pub(crate) fn decode_person(
    bytes: &[u8],
    interner: &mut Stations,
) -> Result<DecodedPerson, ProjectionError> {
    let mut r = Reader::new(bytes, "the person of a case");
    let station = interner.get(&r.text()?);
    let tag = match r.byte()? {
        0 => None,
        1 => Some(PersonTag::try_from(r.take(TAG_BYTES)?).map_err(|_| r.fail())?),
        _ => return Err(r.fail()),
    };
    let mut directory = Vec::new();
    while !r.bytes.is_empty() {
        directory.push(DirectoryTag::try_from(r.take(DIRECTORY_TAG_BYTES)?).map_err(|_| r.fail())?);
    }
    Ok((station, tag, directory))
}

/// Encodes a line of the district directory: the person's open files at
/// the station, whether the feed lists it present, and its place in the
/// feed (0 for none; feed positions start at 1).
pub(crate) fn encode_directory_line(open: u32, listed: bool, feed_seq: Option<u64>) -> Vec<u8> {
    let mut v = Vec::with_capacity(13);
    v.extend_from_slice(&open.to_be_bytes());
    v.push(u8::from(listed));
    v.extend_from_slice(&feed_seq.unwrap_or(0).to_be_bytes());
    v
}

/// Decodes what [`encode_directory_line`] wrote.
pub(crate) fn decode_directory_line(
    bytes: &[u8],
) -> Result<(u32, bool, Option<u64>), ProjectionError> {
    let corrupt = || ProjectionError::Corrupt("a line of the district directory".into());
    let (open, rest) = bytes.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let (listed, rest) = rest.split_first().ok_or_else(corrupt)?;
    let seq = <[u8; 8]>::try_from(rest).map_err(|_| corrupt())?;
    let seq = u64::from_be_bytes(seq);
    Ok((
        u32::from_be_bytes(*open),
        *listed != 0,
        (seq != 0).then_some(seq),
    ))
}

/// Encodes a change of the directory's feed: the tag, whether the person
/// now has an open file at the station, and the station code.
pub(crate) fn encode_directory_change(tag: &DirectoryTag, station: &str, present: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(DIRECTORY_TAG_BYTES + 1 + station.len());
    v.extend_from_slice(tag);
    v.push(u8::from(present));
    v.extend_from_slice(station.as_bytes());
    v
}

/// Decodes what [`encode_directory_change`] wrote.
pub(crate) fn decode_directory_change(
    bytes: &[u8],
) -> Result<(DirectoryTag, bool, String), ProjectionError> {
    let corrupt = || ProjectionError::Corrupt("a change of the district directory".into());
    let (tag, rest) = bytes
        .split_first_chunk::<DIRECTORY_TAG_BYTES>()
        .ok_or_else(corrupt)?;
    let (present, station) = rest.split_first().ok_or_else(corrupt)?;
    let station = std::str::from_utf8(station).map_err(|_| corrupt())?;
    Ok((*tag, *present != 0, station.to_string()))
}

/// Encodes the view of an open case.
pub(crate) fn encode_view(view: &CaseView) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(96));
    w.id(&view.case_id);
    w.text(&view.name);
    w.text(&view.community_code);
    w.ints(&view.categories);
    w.i(i64::from(view.tier));
    w.0.push(match view.status {
        CaseStatus::Open => 0,
        CaseStatus::Closed => 1,
    });
    w.day(Some(view.opened_on));
    w.day(view.reopened_on);
    w.day(view.last_visit);
    w.u(u64::from(view.visits));
    w.id(&view.last_event_id);
    w.u(u64::from(view.events));
    w.text(&view.file_number);
    w.0
}

/// Decodes the view of an open case.
pub(crate) fn decode_view(bytes: &[u8]) -> Result<CaseView, ProjectionError> {
    let (mut view, name, community_code) = view_fields(bytes, true)?;
    view.name = name.to_owned();
    view.community_code = community_code.to_owned();
    Ok(view)
}

/// The view of an open case without its name, community and categories,
/// and the name and community as they lie in `bytes`: what a scan over
/// many cases needs before it keeps one, without allocating.
pub(crate) fn decode_view_ref(bytes: &[u8]) -> Result<(CaseView, &str, &str), ProjectionError> {
    view_fields(bytes, false)
}

fn view_fields(bytes: &[u8], categories: bool) -> Result<(CaseView, &str, &str), ProjectionError> {
    let mut r = Reader::new(bytes, "an open case");
    let case_id = r.id()?;
    let name = r.text_ref()?;
    let community_code = r.text_ref()?;
    let categories = if categories {
        r.ints()?
    } else {
        for _ in 0..r.len()? {
            r.i32()?;
        }
        Vec::new()
    };
    let view = CaseView {
        case_id,
        name: String::new(),
        community_code: String::new(),
        categories,
        tier: r.i32()?,
        status: match r.byte()? {
            0 => CaseStatus::Open,
            1 => CaseStatus::Closed,
            _ => return Err(r.fail()),
        },
        opened_on: r.day()?.ok_or_else(|| r.fail())?,
        reopened_on: r.day()?,
        last_visit: r.day()?,
        visits: u32::try_from(r.u()?).map_err(|_| r.fail())?,
        last_event_id: r.id()?,
        events: u32::try_from(r.u()?).map_err(|_| r.fail())?,
        file_number: r.text()?,
        // An open case is merged into nothing.
        merged_into: None,
        transferred_to: None,
    };
    r.done()?;
    Ok((view, name, community_code))
}

/// A void naming an event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct VoidMark {
    /// The `EventVoided`'s id.
    pub by: Uuid,
    /// Its station.
    pub station: Station,
}

/// Encodes the voids naming one event, in (id, station) order.
pub(crate) fn encode_marks(marks: &[VoidMark]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(1 + marks.len() * 27));
    w.u(marks.len() as u64);
    for mark in marks {
        w.id(&mark.by);
        w.text(&mark.station);
    }
    w.0
}

/// Decodes the voids naming one event.
pub(crate) fn decode_marks(
    bytes: &[u8],
    interner: &mut Stations,
) -> Result<Vec<VoidMark>, ProjectionError> {
    let mut r = Reader::new(bytes, "a list of voids");
    let n = r.len()?;
    let mut marks = Vec::with_capacity(n);
    for _ in 0..n {
        marks.push(VoidMark {
            by: r.id()?,
            station: interner.get(&r.text()?),
        });
    }
    r.done()?;
    Ok(marks)
}

/// Packs records, ids ascending, into runs of at most about `max_bytes`
/// bytes each (one record at least); returns each run's first id and bytes.
pub(crate) fn pack_runs(records: &[(Uuid, Vec<u8>)], max_bytes: usize) -> Vec<(Uuid, Vec<u8>)> {
    let mut runs = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let mut end = start;
        let mut size = 0;
        while end < records.len() && (end == start || size + records[end].1.len() + 20 <= max_bytes)
        {
            size += records[end].1.len() + 20;
            end += 1;
        }
        let chunk = &records[start..end];
        let mut bytes = Vec::with_capacity(4 + size);
        bytes.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        let mut offset = 0u32;
        for (id, record) in chunk {
            offset += record.len() as u32;
            bytes.extend_from_slice(id.as_bytes());
            bytes.extend_from_slice(&offset.to_be_bytes());
        }
        for (_, record) in chunk {
            bytes.extend_from_slice(record);
        }
        runs.push((chunk[0].0, bytes));
        start = end;
    }
    runs
}

/// A decoded view of one run's index.
pub(crate) struct Run<'a> {
    index: &'a [u8],
    records: &'a [u8],
    len: usize,
}

impl<'a> Run<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Result<Self, ProjectionError> {
        let fail = || corrupt("a run");
        let len = bytes
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
            .ok_or_else(fail)? as usize;
        let index_end = len
            .checked_mul(20)
            .and_then(|n| n.checked_add(4))
            .filter(|n| *n <= bytes.len())
            .ok_or_else(fail)?;
        Ok(Self {
            index: &bytes[4..index_end],
            records: &bytes[index_end..],
            len,
        })
    }

    fn id_at(&self, i: usize) -> &'a [u8] {
        &self.index[i * 20..i * 20 + 16]
    }

    fn end_at(&self, i: usize) -> usize {
        let b = &self.index[i * 20 + 16..i * 20 + 20];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
    }

    fn record(&self, i: usize) -> Result<&'a [u8], ProjectionError> {
        let start = if i == 0 { 0 } else { self.end_at(i - 1) };
        self.records
            .get(start..self.end_at(i))
            .ok_or_else(|| corrupt("a run"))
    }

    /// The record of `id`, if the run holds it.
    pub(crate) fn get(&self, id: &Uuid) -> Result<Option<&'a [u8]>, ProjectionError> {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.id_at(mid).cmp(id.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return self.record(mid).map(Some),
            }
        }
        Ok(None)
    }

    /// Every (id, record) of the run, ids ascending.
    pub(crate) fn entries(&self) -> Result<Vec<(Uuid, &'a [u8])>, ProjectionError> {
        (0..self.len)
            .map(|i| {
                let id = Uuid::from_slice(self.id_at(i)).map_err(|_| corrupt("a run"))?;
                Ok((id, self.record(i)?))
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn runs_find_every_record_and_nothing_else() {
        let records: Vec<(Uuid, Vec<u8>)> = (0..500u128)
            .map(|i| (Uuid::from_u128(i * 3), vec![i as u8; (i % 7) as usize + 1]))
            .collect();
        let runs = pack_runs(&records, 300);
        assert!(runs.len() > 10);
        let mut seen = Vec::new();
        for (first, bytes) in &runs {
            let run = Run::new(bytes).unwrap();
            let entries = run.entries().unwrap();
            assert_eq!(entries[0].0, *first);
            for (id, record) in entries {
                assert_eq!(run.get(&id).unwrap(), Some(record));
                assert_eq!(run.get(&Uuid::from_u128(id.as_u128() + 1)).unwrap(), None);
                seen.push((id, record.to_vec()));
            }
        }
        assert_eq!(seen, records);
        assert!(Run::new(&[0, 0, 0, 9, 1]).is_err());
    }

    #[test]
    fn a_counted_fact_round_trips_and_a_call_written_before_reads_as_one() {
        let mut stations = Stations::default();
        let station = stations.get("540502001");
        let on = NaiveDate::from_ymd_opt(2025, 3, 5);
        let fact =
            |id: u128, metric: Metric, voided_by: Option<Uuid>, body: Option<FactBody>| CaseFact {
                id: Uuid::from_u128(id),
                hlc: (id as u64) << 16,
                station: Arc::clone(&station),
                voided_by,
                body: body.unwrap_or(FactBody::Counted { on, metric }),
            };
        let facts = vec![
            fact(1, Metric::GuardianCalls, None, None),
            fact(2, Metric::VisitAttempts, Some(Uuid::from_u128(9)), None),
        ];
        assert_eq!(
            decode_case(&encode_case(&facts), &mut stations).unwrap(),
            facts
        );

        // A call as written before counted facts had their tag: tag 8, then
        // its day, laid out as a closing is.
        let closing = fact(
            1,
            Metric::GuardianCalls,
            None,
            Some(FactBody::Closed { on }),
        );
        let mut legacy = encode_case(std::slice::from_ref(&closing));
        let mut prefix = Writer::default();
        prefix.u(1);
        prefix.text(&station);
        prefix.u(1);
        assert_eq!(legacy[prefix.0.len()], CLOSED);
        legacy[prefix.0.len()] = CALL;
        assert_eq!(
            decode_case(&legacy, &mut stations).unwrap(),
            vec![fact(1, Metric::GuardianCalls, None, None)]
        );

        // A counted fact naming a metric this build does not know is refused.
        let mut unknown = encode_case(&facts[..1]);
        let name = Metric::GuardianCalls.name().as_bytes();
        let at = unknown.windows(name.len()).position(|w| w == name).unwrap();
        unknown[at] = b'x';
        assert!(decode_case(&unknown, &mut stations).is_err());
    }

    #[test]
    fn dates_and_integers_round_trip() {
        let mut w = Writer::default();
        let days = [
            None,
            NaiveDate::from_ymd_opt(1, 1, 1),
            NaiveDate::from_ymd_opt(2025, 12, 31),
            NaiveDate::MIN.into(),
            NaiveDate::MAX.into(),
        ];
        for d in days {
            w.day(d);
        }
        for v in [0, -1, 1, i64::MIN, i64::MAX] {
            w.i(v);
        }
        let mut r = Reader::new(&w.0, "test");
        for d in days {
            assert_eq!(r.day().unwrap(), d);
        }
        for v in [0, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(r.i().unwrap(), v);
        }
        r.done().unwrap();
        assert!(Reader::new(&[0x80], "test").u().is_err());
    }
}
