//! The read audit: every read of a person-level record (a case timeline, a
//! list naming persons, a report with names), by whom, of what, when and
//! from where, appended to a hash-chained log in `DATA/audit/` before the
//! answer leaves the hub.
//!
//! # On-disk format
//!
//! `DATA/audit/` holds segments named by the sequence number of their first
//! record, `{first_seq:020}.log`, each a text file of lines:
//!
//! | line | content |
//! | --- | --- |
//! | first | `anchor <link> <first_seq> <opened_at_ms>`: the link of the record before this segment's first (64 zeros before the first record ever) |
//! | every other | `<link> <record>`: `record` is the JSON of an [`AuditRecord`], `link` the lowercase hex SHA-256 of the previous link's 32 bytes followed by the record's bytes |
//!
//! `audit.lock` is held (an advisory lock) by the one hub that appends. The
//! folder is its user's alone (0700), its files too (0600).
//!
//! # Invariants
//! - Append-only: a record is written once, at the end of the newest
//!   segment, and the read it describes is answered only after it is
//!   fsynced. Appends of concurrent reads share one fsync (group commit).
//! - Fail closed: when a record cannot be written or fsynced, the read is
//!   refused ([`AuditError`]) and so is every later read until the hub is
//!   restarted: a log with a hole is never continued.
//! - Chained: each link covers the previous link and the record's exact
//!   bytes, so editing, removing or reordering any record breaks every
//!   later link; [`read`] reports where.
//! - Retention: a new segment starts with each China day; a segment is
//!   removed only when the segment after it was opened before the
//!   retention period (at least [`MIN_RETENTION_DAYS`]), so every record of
//!   the period is kept. The first kept segment's anchor carries the link of
//!   the last removed record, and the chain stays verifiable from it.
//! - No personal data: a record holds token ids and labels, case ids,
//!   report names and their parameters, never a name, ID number, phone or
//!   address.
//! - A torn last line (a crash during its write, before its read was
//!   answered) is cut off when the log is next opened for appending.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use station_proto::ids::Uuid;

use crate::auth::Caller;
use crate::projections::{CHINA_UTC_OFFSET_SECS, end_of_day_ms};
use crate::store::{HubStore, TokenScope};

/// The shortest retention the hub accepts, in days (six months).
pub const MIN_RETENTION_DAYS: u32 = 180;
/// The folder of the audit log, under the hub's data folder.
pub const FOLDER: &str = "audit";
/// The link before the first record ever.
const GENESIS: [u8; 32] = [0; 32];

/// Why a read could not be audited (and so was refused), or the log could
/// not be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Writing or syncing the log failed.
    #[error("the read audit log cannot be written ({0}): the read is refused")]
    Unavailable(String),
    /// The log's files could not be read.
    #[error("the read audit log cannot be read: {0}")]
    Read(String),
}

/// How a read reached the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// `station.v1.Query` over gRPC.
    Grpc,
    /// The JSON API of the HTTP side.
    Json,
    /// The dashboard's page.
    Dashboard,
    /// A CSV or XLSX report.
    Report,
}

/// One audited read, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Its place in the log, from 1, without gaps.
    pub seq: u64,
    /// Hub clock when the read was answered, ms since the Unix epoch.
    pub at_ms: i64,
    /// The id of the reader's token.
    pub token_id: String,
    /// `bureau` or `device`.
    pub role: String,
    /// The token's label: the bureau's name, or the device's name and its
    /// station.
    pub label: String,
    /// The reader's address (IP and port) when known.
    pub from: Option<String>,
    /// How the read came.
    pub via: Channel,
    /// What was read: `case_timeline`, `overdue`, or a report's file name.
    pub read: String,
    /// Its parameters (stations, date, limit...), as asked.
    pub params: BTreeMap<String, String>,
    /// The cases whose person-level records the answer carried.
    pub cases: Vec<String>,
    /// Whether the reader asked for ID numbers, phones and addresses unmasked.
    pub revealed: bool,
}

/// A read to audit, as a service describes it: [`AuditLog::record`] adds
/// the sequence number, the time and the token's label.
#[derive(Debug, Clone)]
pub struct Access {
    /// Who reads.
    pub caller: Caller,
    /// From where.
    pub from: Option<SocketAddr>,
    /// How.
    pub via: Channel,
    /// What: `case_timeline`, `overdue`, a report's file name.
    pub read: String,
    /// The parameters asked with.
    pub params: Vec<(String, String)>,
    /// The cases the answer carries.
    pub cases: Vec<Uuid>,
    /// Whether it reveals ID numbers, phones and addresses.
    pub revealed: bool,
}

/// The open end of the log, while appending.
struct Tail {
    /// The advisory lock on `audit.lock`, held while this hub appends.
    lock: File,
    /// The newest segment, open for appending.
    segment: Arc<File>,
    /// The China day its first record (or its opening) falls on.
    segment_day: NaiveDate,
    /// The last record's sequence number (0 before the first).
    seq: u64,
    /// The last record's link.
    link: [u8; 32],
}

/// The state behind the append lock.
enum Appender {
    /// Not opened yet: the log is opened at the first read to audit.
    Closed,
    /// Open for appending.
    Open(Tail),
    /// A write or fsync failed: every read is refused until a restart.
    Failed(String),
}

/// The read audit log of one hub: [`AuditLog::record`] appends and makes
/// durable; [`read`] reads and checks a folder's log.
pub struct AuditLog {
    /// `DATA/audit`.
    dir: PathBuf,
    /// Days a record is kept at least.
    retention_days: u32,
    /// The appender; held while a record is written.
    appender: Mutex<Appender>,
    /// Held while fsyncing; `durable` is the last record known durable.
    durable: Mutex<u64>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("retention_days", &self.retention_days)
            .finish_non_exhaustive()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn link_of(previous: &[u8; 32], record: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(record);
    hasher.finalize().into()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The China day of a point in time.
fn china_day(ms: i64) -> NaiveDate {
    let shifted = ms + i64::from(CHINA_UTC_OFFSET_SECS) * 1000;
    chrono::DateTime::from_timestamp_millis(shifted)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.log")
}

/// The segments of `dir`, by first sequence number.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((first, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// A segment's first line.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    link: [u8; 32],
    first_seq: u64,
    opened_at_ms: i64,
}

fn parse_anchor(line: &str) -> Option<Anchor> {
    let mut parts = line.split(' ');
    (parts.next()? == "anchor").then_some(())?;
    let anchor = Anchor {
        link: from_hex32(parts.next()?)?,
        first_seq: parts.next()?.parse().ok()?,
        opened_at_ms: parts.next()?.parse().ok()?,
    };
    parts.next().is_none().then_some(anchor)
}

/// Options that create a file readable by the hub's user alone.
fn private_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Creates `dir` (and its parents) when absent, the last one for the hub's
/// user alone.
fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl AuditLog {
    /// The audit log of the hub whose data folder is `data`, keeping records
    /// `retention_days` days at least (raised to [`MIN_RETENTION_DAYS`]).
    /// Nothing is touched before the first read to audit.
    pub fn new(data: &Path, retention_days: u32) -> Self {
        Self {
            dir: data.join(FOLDER),
            retention_days: retention_days.max(MIN_RETENTION_DAYS),
            appender: Mutex::new(Appender::Closed),
            durable: Mutex::new(0),
        }
    }

    /// The folder of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock_appender(&self) -> MutexGuard<'_, Appender> {
        // The appender's state is replaced whole, never left half-changed.
        self.appender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends the record of `access`, read by a caller whose token is in
    /// `store`, and returns once it is durable; the read may be answered
    /// then.
    ///
    /// # Errors
    /// [`AuditError::Unavailable`] when it cannot be written or made
    /// durable, now or since an earlier failure: refuse the read.
    pub fn record(&self, store: &HubStore, access: Access) -> Result<u64, AuditError> {
        let (role, label) = match &access.caller {
            Caller::Bureau { bureau, .. } => ("bureau", bureau.clone()),
            Caller::Device { station_code, .. } | Caller::Relay { station_code, .. } => {
                let (role, device) = store
                    .token(access.caller.token_id())
                    .ok()
                    .flatten()
                    .and_then(|record| match record.scope {
                        TokenScope::Device { device, .. } => Some(("device", device)),
                        TokenScope::Relay { relay, .. } => Some(("relay", relay)),
                        TokenScope::Bureau { .. } | TokenScope::Supervisor { .. } => None,
                    })
                    .unwrap_or(("device", String::new()));
                (role, format!("{device} @ {station_code}"))
            }
            Caller::Supervisor { stations, .. } => {
                let supervisor = store
                    .token(access.caller.token_id())
                    .ok()
                    .flatten()
                    .and_then(|record| match record.scope {
                        TokenScope::Supervisor { supervisor, .. } => Some(supervisor),
                        TokenScope::Bureau { .. }
                        | TokenScope::Device { .. }
                        | TokenScope::Relay { .. } => None,
                    })
                    .unwrap_or_default();
                (
                    "supervisor",
                    format!("{supervisor} @ {}", stations.join(",")),
                )
            }
        };
        let mut record = AuditRecord {
            seq: 0,
            at_ms: now_ms(),
            token_id: access.caller.token_id().to_string(),
            role: role.to_string(),
            label,
            from: access.from.map(|a| a.to_string()),
            via: access.via,
            read: access.read,
            params: access.params.into_iter().collect(),
            cases: access.cases.iter().map(Uuid::to_string).collect(),
            revealed: access.revealed,
        };
        let (segment, seq) = self.append(&mut record)?;
        self.make_durable(&segment, seq)?;
        Ok(seq)
    }

    /// Writes `record` at the end of the log, numbered; not yet durable.
    fn append(&self, record: &mut AuditRecord) -> Result<(Arc<File>, u64), AuditError> {
        let mut appender = self.lock_appender();
        if let Appender::Closed = *appender {
            *appender = match self.open_tail() {
                Ok(tail) => Appender::Open(tail),
                Err(e) => Appender::Failed(e.to_string()),
            };
        }
        let tail = match &mut *appender {
            Appender::Open(tail) => tail,
            Appender::Failed(why) => return Err(AuditError::Unavailable(why.clone())),
            Appender::Closed => return Err(AuditError::Unavailable("not opened".into())),
        };
        let written = (|| -> io::Result<(Arc<File>, u64)> {
            if china_day(record.at_ms) != tail.segment_day {
                self.rotate(tail, record.at_ms)?;
            }
            record.seq = tail.seq + 1;
            let json = serde_json::to_vec(&*record).map_err(io::Error::other)?;
            let link = link_of(&tail.link, &json);
            let mut line = Vec::with_capacity(json.len() + 66);
            line.extend_from_slice(hex(&link).as_bytes());
            line.push(b' ');
            line.extend_from_slice(&json);
            line.push(b'\n');
            (&*tail.segment).write_all(&line)?;
            tail.seq = record.seq;
            tail.link = link;
            Ok((Arc::clone(&tail.segment), record.seq))
        })();
        written.map_err(|e| {
            let why = e.to_string();
            tracing::error!(error = %why, "read audit log failed: reads are refused");
            *appender = Appender::Failed(why.clone());
            AuditError::Unavailable(why)
        })
    }

    /// Makes the records through `seq`, written to `segment` (or an earlier
    /// segment, fsynced when the next was started), durable: one fsync for
    /// every record written when it starts.
    fn make_durable(&self, segment: &Arc<File>, seq: u64) -> Result<(), AuditError> {
        let mut durable = self
            .durable
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *durable >= seq {
            return Ok(());
        }
        let (current, through) = match &*self.lock_appender() {
            Appender::Open(tail) => (Arc::clone(&tail.segment), tail.seq),
            Appender::Failed(why) => return Err(AuditError::Unavailable(why.clone())),
            Appender::Closed => (Arc::clone(segment), seq),
        };
        if let Err(e) = current.sync_data() {
            let why = e.to_string();
            tracing::error!(error = %why, "read audit log fsync failed: reads are refused");
            *self.lock_appender() = Appender::Failed(why.clone());
            return Err(AuditError::Unavailable(why));
        }
        *durable = through.max(*durable);
        Ok(())
    }

    /// Opens the log for appending: takes its lock, cuts a torn last line,
    /// and finds the last record's number and link.
    fn open_tail(&self) -> io::Result<Tail> {
        create_private_dir(&self.dir)?;
        let lock = private_file()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("audit.lock"))?;
        lock.try_lock().map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                "another hub appends to this audit log",
            )
        })?;
        let mut found = segments(&self.dir)?;
        let (path, mut reader, mut line) = loop {
            let Some((_, path)) = found.pop() else {
                return self.start_segment(lock, 0, GENESIS, now_ms());
            };
            let file = OpenOptions::new().read(true).append(true).open(&path)?;
            let mut reader = BufReader::new(file);
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if !line.ends_with('\n') && reader.get_ref().metadata()?.len() == line.len() as u64 {
                // Torn while it was being started: no record is in it.
                tracing::warn!(segment = %path.display(), "read audit log: a torn new segment removed");
                drop(reader);
                std::fs::remove_file(&path)?;
                sync_dir(&self.dir)?;
                continue;
            }
            break (path, reader, line);
        };
        let anchor = parse_anchor(line.trim_end_matches('\n')).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: no anchor line", path.display()),
            )
        })?;
        let mut kept = line.len() as u64;
        let (mut seq, mut link) = (anchor.first_seq.saturating_sub(1), anchor.link);
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            let (hash, json) = line.trim_end_matches('\n').split_once(' ').ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "a record without its link")
            })?;
            let record: AuditRecord = serde_json::from_str(json)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            link = from_hex32(hash).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a link that is not 64 hex digits",
                )
            })?;
            seq = record.seq;
            kept += n as u64;
        }
        let file = reader.into_inner();
        if file.metadata()?.len() > kept {
            tracing::warn!(segment = %path.display(), "read audit log: a torn last line cut off");
            file.set_len(kept)?;
            file.sync_all()?;
        }
        let segment_day = china_day(anchor.opened_at_ms);
        Ok(Tail {
            lock,
            segment: Arc::new(file),
            segment_day,
            seq,
            link,
        })
    }

    /// Creates the segment whose first record is `last_seq + 1`, anchored
    /// on `link`.
    fn start_segment(
        &self,
        lock: File,
        last_seq: u64,
        link: [u8; 32],
        at_ms: i64,
    ) -> io::Result<Tail> {
        let path = self.dir.join(segment_name(last_seq + 1));
        let mut file = private_file()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        writeln!(file, "anchor {} {} {at_ms}", hex(&link), last_seq + 1)?;
        file.sync_all()?;
        sync_dir(&self.dir)?;
        Ok(Tail {
            lock,
            segment: Arc::new(file),
            segment_day: china_day(at_ms),
            seq: last_seq,
            link,
        })
    }

    /// Starts a new segment for the day of `at_ms` (the current one fsynced
    /// first), then removes the segments past retention.
    fn rotate(&self, tail: &mut Tail, at_ms: i64) -> io::Result<()> {
        tail.segment.sync_data()?;
        let lock = tail.lock.try_clone()?;
        let next = self.start_segment(lock, tail.seq, tail.link, at_ms)?;
        *tail = next;
        if let Err(error) = prune(&self.dir, self.retention_days, at_ms) {
            tracing::warn!(%error, "read audit log: old segments not removed");
        }
        Ok(())
    }
}

/// Removes the segments of `dir` all of whose records are older than
/// `retention_days` before `now_ms`: those followed by a segment opened
/// before then. Returns how many were removed.
///
/// # Errors
/// The folder or a segment could not be read or removed.
pub fn prune(dir: &Path, retention_days: u32, now_ms: i64) -> io::Result<usize> {
    let cutoff = now_ms - i64::from(retention_days.max(MIN_RETENTION_DAYS)) * 86_400_000;
    let found = segments(dir)?;
    let mut removed = 0;
    for pair in found.windows(2) {
        let [(_, old), (_, next)] = pair else {
            continue;
        };
        let mut first = String::new();
        BufReader::new(File::open(next)?).read_line(&mut first)?;
        match parse_anchor(first.trim_end_matches('\n')) {
            Some(anchor) if anchor.opened_at_ms < cutoff => {
                std::fs::remove_file(old)?;
                removed += 1;
            }
            _ => break,
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// Which records [`read`] returns; the whole chain is checked whatever the
/// filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Records of reads that carried this case.
    pub case: Option<Uuid>,
    /// Records of this China day and later.
    pub since: Option<NaiveDate>,
    /// At most this many records, the newest the filter admits; `None`
    /// for every one.
    pub limit: Option<usize>,
}

impl Filter {
    fn admits(&self, record: &AuditRecord) -> bool {
        let case = self.case.map(|c| c.to_string());
        case.is_none_or(|c| record.cases.contains(&c))
            && self.since.is_none_or(|day| {
                let start = day.pred_opt().map_or(i64::MIN, end_of_day_ms);
                record.at_ms >= start
            })
    }
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// The segment's file name.
    pub segment: String,
    /// The line, from 1.
    pub line: usize,
    /// What is wrong there.
    pub reason: String,
}

/// The records of a log and the state of its chain.
#[derive(Debug, Clone, Serialize)]
pub struct Reading {
    /// Records the filter admits, oldest first (those after a break too):
    /// the newest [`Filter::limit`] of them when it is set.
    pub records: Vec<AuditRecord>,
    /// Records the filter admits in all, returned or not.
    pub admitted: u64,
    /// Records in the log in all.
    pub total: u64,
    /// The first place the chain breaks; `None` when every link holds.
    pub broken: Option<Break>,
}

/// Reads the audit log of the hub whose data folder is `data`, checking
/// every link, and returns the records `filter` admits. A hub may be
/// appending meanwhile: a last line still being written is not read.
///
/// # Errors
/// [`AuditError::Read`] when a file cannot be read.
pub fn read(data: &Path, filter: &Filter) -> Result<Reading, AuditError> {
    let dir = data.join(FOLDER);
    let failed = |e: io::Error| AuditError::Read(e.to_string());
    let mut reading = Reading {
        records: Vec::new(),
        admitted: 0,
        total: 0,
        broken: None,
    };
    // The newest admitted records, at most `limit`: the answer's memory is
    // bounded whatever the log's length.
    let mut newest = VecDeque::new();
    let mut expected: Option<(u64, [u8; 32])> = None;
    for (first_seq, path) in segments(&dir).map_err(failed)? {
        let segment = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let broke = |line: usize, reason: String, reading: &mut Reading| {
            if reading.broken.is_none() {
                reading.broken = Some(Break {
                    segment: segment.clone(),
                    line,
                    reason,
                });
            }
        };
        let text = std::fs::read(&path).map_err(failed)?;
        let mut lines = text.split_inclusive(|b| *b == b'\n').enumerate();
        let anchor = lines
            .next()
            .and_then(|(_, l)| std::str::from_utf8(l).ok())
            .and_then(|l| parse_anchor(l.trim_end_matches('\n')));
        let Some(anchor) = anchor.filter(|a| a.first_seq == first_seq) else {
            broke(
                1,
                "the anchor line is missing or altered".into(),
                &mut reading,
            );
            continue;
        };
        let (mut seq, mut link) = match expected {
            Some((seq, link)) => {
                if anchor.first_seq != seq + 1 || anchor.link != link {
                    broke(
                        1,
                        "the anchor does not continue the previous segment".into(),
                        &mut reading,
                    );
                }
                (seq, link)
            }
            // The first kept segment's anchor is trusted.
            None => (anchor.first_seq.saturating_sub(1), anchor.link),
        };
        for (at, line) in lines {
            let Some(line) = line.strip_suffix(b"\n") else {
                // Being written, or torn by a crash before its read was answered.
                break;
            };
            let parsed = line
                .iter()
                .position(|b| *b == b' ')
                .and_then(|space| {
                    let hash = std::str::from_utf8(&line[..space]).ok()?;
                    Some((from_hex32(hash)?, &line[space + 1..]))
                })
                .and_then(|(hash, json)| {
                    Some((
                        hash,
                        json,
                        serde_json::from_slice::<AuditRecord>(json).ok()?,
                    ))
                });
            let Some((hash, json, record)) = parsed else {
                broke(at + 1, "the line is not a record".into(), &mut reading);
                seq += 1;
                continue;
            };
            if link_of(&link, json) != hash {
                broke(
                    at + 1,
                    format!("record {} does not match its link", record.seq),
                    &mut reading,
                );
            } else if record.seq != seq + 1 {
                broke(
                    at + 1,
                    format!("record {} follows record {seq}", record.seq),
                    &mut reading,
                );
            }
            link = hash;
            seq = record.seq;
            reading.total += 1;
            if filter.admits(&record) {
                reading.admitted += 1;
                if filter.limit.is_some_and(|limit| newest.len() >= limit) {
                    newest.pop_front();
                }
                if filter.limit != Some(0) {
                    newest.push_back(record);
                }
            }
        }
        expected = Some((seq, link));
    }
    reading.records = newest.into();
    Ok(reading)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bureau() -> Caller {
        Caller::Bureau {
            token_id: "0123456789ab".into(),
            bureau: "山南市民政局".into(),
        }
    }

    fn access(caller: &Caller, case: Uuid) -> Access {
        Access {
            caller: caller.clone(),
            from: "127.0.0.1:5000".parse().ok(),
            via: Channel::Json,
            read: "case_timeline".into(),
            params: vec![("case_id".into(), case.to_string())],
            cases: vec![case],
            revealed: false,
        }
    }

    #[test]
    fn records_chain_and_survive_a_reopen_and_a_torn_line() -> Result<(), Box<dyn std::error::Error>>
    {
        let data = tempfile::tempdir()?;
        let store = HubStore::open(&data.path().join("db"), 1 << 20)?;
        let caller = bureau();
        let case = Uuid::from_u128(7);
        let log = AuditLog::new(data.path(), 0);
        assert_eq!(log.record(&store, access(&caller, case))?, 1);
        assert_eq!(log.record(&store, access(&caller, case))?, 2);
        drop(log);
        let segment = segments(&data.path().join(FOLDER))?
            .pop()
            .map(|(_, p)| p)
            .ok_or("no segment")?;
        OpenOptions::new()
            .append(true)
            .open(&segment)?
            .write_all(b"abc {\"seq\":")?;
        let log = AuditLog::new(data.path(), 0);
        assert_eq!(log.record(&store, access(&caller, Uuid::from_u128(8)))?, 3);
        let all = read(data.path(), &Filter::default())?;
        assert_eq!(all.broken, None);
        assert_eq!(all.total, 3);
        let only = read(
            data.path(),
            &Filter {
                case: Some(case),
                ..Filter::default()
            },
        )?;
        assert_eq!(only.records.len(), 2);
        assert_eq!(only.records[0].label, "山南市民政局");
        let newest = read(
            data.path(),
            &Filter {
                limit: Some(2),
                ..Filter::default()
            },
        )?;
        assert_eq!(
            newest.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [2, 3],
            "the newest two, oldest first"
        );
        assert_eq!((newest.admitted, newest.total), (3, 3));
        let counted = read(
            data.path(),
            &Filter {
                limit: Some(0),
                ..Filter::default()
            },
        )?;
        assert!(counted.records.is_empty());
        assert_eq!(counted.admitted, 3);
        Ok(())
    }

    #[test]
    fn a_segment_torn_while_started_is_removed() -> Result<(), Box<dyn std::error::Error>> {
        let data = tempfile::tempdir()?;
        let store = HubStore::open(&data.path().join("db"), 1 << 20)?;
        let caller = bureau();
        let log = AuditLog::new(data.path(), 0);
        log.record(&store, access(&caller, Uuid::from_u128(1)))?;
        drop(log);
        let dir = data.path().join(FOLDER);
        std::fs::write(dir.join(segment_name(2)), "anchor 12")?;
        let log = AuditLog::new(data.path(), 0);
        assert_eq!(log.record(&store, access(&caller, Uuid::from_u128(2)))?, 2);
        let reading = read(data.path(), &Filter::default())?;
        assert_eq!((reading.total, reading.broken), (2, None));
        Ok(())
    }

    #[test]
    fn a_failed_write_refuses_every_later_read() -> Result<(), Box<dyn std::error::Error>> {
        let data = tempfile::tempdir()?;
        let store = HubStore::open(&data.path().join("db"), 1 << 20)?;
        let caller = bureau();
        let log = AuditLog::new(data.path(), 0);
        log.record(&store, access(&caller, Uuid::from_u128(1)))?;
        if let Appender::Open(tail) = &mut *log.lock_appender() {
            // A device that refuses every write, as a full disk does.
            tail.segment = Arc::new(OpenOptions::new().write(true).open("/dev/full")?);
        }
        let refused = log.record(&store, access(&caller, Uuid::from_u128(2)));
        assert!(matches!(refused, Err(AuditError::Unavailable(_))));
        let again = log.record(&store, access(&caller, Uuid::from_u128(3)));
        assert!(matches!(again, Err(AuditError::Unavailable(_))));
        assert_eq!(read(data.path(), &Filter::default())?.total, 1);
        Ok(())
    }

    #[test]
    fn pruning_keeps_the_period_and_the_chain() -> Result<(), Box<dyn std::error::Error>> {
        let data = tempfile::tempdir()?;
        let dir = data.path().join(FOLDER);
        std::fs::create_dir_all(&dir)?;
        let day = 86_400_000i64;
        let now = now_ms();
        // Three segments opened 400, 200 and 10 days ago, one record each.
        let mut link = GENESIS;
        for (i, age) in [400i64, 200, 10].into_iter().enumerate() {
            let seq = i as u64 + 1;
            let at = now - age * day;
            let record = AuditRecord {
                seq,
                at_ms: at,
                token_id: "t".into(),
                role: "bureau".into(),
                label: "b".into(),
                from: None,
                via: Channel::Grpc,
                read: "case_timeline".into(),
                params: BTreeMap::new(),
                cases: vec![],
                revealed: false,
            };
            let json = serde_json::to_vec(&record)?;
            let next = link_of(&link, &json);
            let mut text = format!("anchor {} {seq} {at}\n{} ", hex(&link), hex(&next));
            text.push_str(std::str::from_utf8(&json)?);
            text.push('\n');
            std::fs::write(dir.join(segment_name(seq)), text)?;
            link = next;
        }
        // The first segment ends before the second was opened (200 days
        // ago, past 180): it goes; the second holds records of the period.
        assert_eq!(prune(&dir, 180, now)?, 1);
        let left = read(data.path(), &Filter::default())?;
        assert_eq!(left.broken, None);
        assert_eq!(left.total, 2);
        assert_eq!(prune(&dir, 365, now)?, 0);
        Ok(())
    }
}
