//! The hub store's on-disk format, version 2: key spaces, and the encoding of
//! the records that hold the log's events.
//!
//! Tree `hub` (integers big-endian):
//!
//! | key | value | written |
//! | --- | --- | --- |
//! | `m:format` | `u32` format version (2) | once |
//! | `m:hub_seq` | `u64`, the last hub position assigned | per push |
//! | `m:log_id` | 16 random bytes naming this log; a new one when the log is replaced (restored from a backup) | at creation and restore |
//! | `l:` last_hub_seq | a [run](Run): events at consecutive hub positions received together, ending at `last_hub_seq`, with their receive time | per push (one per [`RUN_MAX_BYTES`]) |
//! | `t:` station(9) last_hub_seq | the station's positions in one run, as (first `u64`, count `u32`) ranges; `last_hub_seq` is the highest of them | per run and station |
//! | `i:` event_id | `u64` hub_seq: an event is stored once; a resent event is known by its origin's `durable_through`, and an event id held already sends a new seq to quarantine | per event |
//! | `o:` origin_id | JSON `OriginState`: `durable_through`, station, contact, `chain_{durable_through}`, the newest signed head, conflicts | per push and origin |
//! | `q:` origin_id origin_seq | JSON `Quarantined`: an event acked but not accepted | per quarantined event |
//! | `h:` origin_id last_seq | the 64-byte signature of a signed head the hub verified: the device's over (origin, last_seq, `chain_{last_seq}`) | per push of a signed origin |
//! | `m:migrated` | `u64`: while a format-1 store is migrated, events `1..=` it are in format 2 | during migration |
//! | `m:sealed` | present once every event and quarantined event is sealed | once |
//! | `m:sealing_runs`, `m:sealing` | while a store in clear is encrypted in place: the last run / key sealed | during encryption |
//! | `m:district_secret` | 32 random bytes: the district's secret, from which the keys of people's tags (`station_proto::person`) are derived; never sent, logged or shown | once, at the first open that lacks it |
//!
//! A run's value: `u64` first hub position, `u8` 1 when a receive time
//! follows (0 for events stored before the hub kept it), `i64` receive time
//! (ms, hub wall clock), then per event a `u32` length and the encoded
//! `Event` (validated, text in NFC).
//!
//! In an encrypted store (see [`station_agent::seal`]) each event of a run
//! is sealed on its own, bound to its place `l:` hub_seq, and each `q:`
//! value is sealed bound to its key; lengths, positions and receive times
//! stay in clear. Nothing else in this tree holds personal data.
//!
//! Reading: by position, the first `l:` key at or after it; in hub order,
//! the `l:` range; a station's stream, its `t:` range from the run holding
//! the cursor on, each position then read from its run; by id, `i:`.
//!
//! Format 1 wrote four keys per event (`e:` hub_seq → event, `s:` station
//! hub_seq → empty, `i:` as above, `r:` hub_seq → receive time); format 2
//! writes one (`i:`) and a few per push. See [`super::migrate`].

use prost::Message as _;
use station_agent::seal::SealedTree;
use station_proto::Event;

use super::HubError;

/// The format version this code writes.
pub const FORMAT_VERSION: u32 = 2;
/// The format this code migrates from on open.
pub const FORMAT_1: u32 = 1;

pub(crate) const TREE: &str = "hub";
pub(crate) const TOKENS_TREE: &str = "tokens";
pub(crate) const M_FORMAT: &[u8] = b"m:format";
pub(crate) const M_HUB_SEQ: &[u8] = b"m:hub_seq";
pub(crate) const M_MIGRATED: &[u8] = b"m:migrated";
pub(crate) const M_LOG_ID: &[u8] = b"m:log_id";
pub(crate) const M_DISTRICT_SECRET: &[u8] = b"m:district_secret";
pub(crate) const RUNS: &[u8] = b"l:";
pub(crate) const STREAMS: &[u8] = b"t:";
pub(crate) const IDS: &[u8] = b"i:";
pub(crate) const ORIGINS: &[u8] = b"o:";
pub(crate) const QUARANTINE: &[u8] = b"q:";
pub(crate) const HEADS: &[u8] = b"h:";
/// `x:` case id, station code → empty: the station took the case over by
/// an accepted transfer the log holds (no personal data).
pub(crate) const TAKEN_OVER: &[u8] = b"x:";
pub(crate) const M_SEALED: &[u8] = b"m:sealed";
pub(crate) const M_SEALING_RUNS: &[u8] = b"m:sealing_runs";
pub(crate) const M_SEALING: &[u8] = b"m:sealing";

/// The key spaces of tree `hub` sealed in an encrypted store: events (each
/// bound to [`event_place`]) and quarantine.
pub(crate) const SEALED_SPACES: &[&[u8]] = &[RUNS, QUARANTINE];

/// The place an event at `hub_seq` is sealed for.
pub(crate) fn event_place(hub_seq: u64) -> Vec<u8> {
    key(RUNS, &[&hub_seq.to_be_bytes()])
}

/// Format 1's event key space, read only by the migration.
pub(crate) const V1_EVENTS: &[u8] = b"e:";
/// Format 1's station streams.
pub(crate) const V1_STATIONS: &[u8] = b"s:";
/// Format 1's receive times.
pub(crate) const V1_RECEIVED: &[u8] = b"r:";

/// The encoded events a run holds at most (a run holds at least one event):
/// a push larger than this writes several runs.
pub const RUN_MAX_BYTES: usize = 64 * 1024;

const RUN_HEADER: usize = 8 + 1 + 8;

pub(crate) fn key(prefix: &[u8], rest: &[&[u8]]) -> Vec<u8> {
    let mut k = prefix.to_vec();
    for r in rest {
        k.extend_from_slice(r);
    }
    k
}

pub(crate) fn read_u64(bytes: &[u8]) -> Result<u64, HubError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| HubError::Corrupt("expected an 8-byte integer".into()))
}

pub(crate) fn read_i64(bytes: &[u8]) -> Result<i64, HubError> {
    <[u8; 8]>::try_from(bytes)
        .map(i64::from_be_bytes)
        .map_err(|_| HubError::Corrupt("expected an 8-byte integer".into()))
}

/// A run being written: events at consecutive positions from `first`.
#[derive(Debug)]
pub(crate) struct RunWriter {
    first: u64,
    received_at_ms: Option<i64>,
    count: u64,
    bytes: Vec<u8>,
}

impl RunWriter {
    /// An empty run whose first event will be at `first`.
    pub(crate) fn new(first: u64, received_at_ms: Option<i64>) -> Self {
        let mut bytes = Vec::with_capacity(RUN_HEADER + 4096);
        bytes.extend_from_slice(&first.to_be_bytes());
        bytes.push(u8::from(received_at_ms.is_some()));
        bytes.extend_from_slice(&received_at_ms.unwrap_or(0).to_be_bytes());
        Self {
            first,
            received_at_ms,
            count: 0,
            bytes,
        }
    }

    /// Whether an event of `len` more bytes would make the run too large.
    pub(crate) fn is_full_for(&self, len: usize) -> bool {
        self.count > 0 && self.bytes.len() + 4 + len > RUN_HEADER + RUN_MAX_BYTES
    }

    /// Appends an encoded event; returns its position.
    pub(crate) fn push(&mut self, encoded: &[u8]) -> u64 {
        // An encoded event is far below 4 GiB: gRPC messages are capped well below.
        let len = u32::try_from(encoded.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(encoded);
        self.count += 1;
        self.first + self.count - 1
    }

    /// The receive time of the run's events.
    pub(crate) fn received_at_ms(&self) -> Option<i64> {
        self.received_at_ms
    }

    /// Whether no event was appended.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The run's key (`l:` last position) and value.
    pub(crate) fn finish(self) -> (Vec<u8>, Vec<u8>) {
        let last = self.first + self.count - 1;
        (key(RUNS, &[&last.to_be_bytes()]), self.bytes)
    }
}

/// A run's first position and receive time, read from its value alone.
pub(crate) fn run_header(value: &[u8]) -> Result<(u64, Option<i64>), HubError> {
    let header = value
        .get(..RUN_HEADER)
        .ok_or_else(|| HubError::Corrupt("run record".into()))?;
    let received = match header[8] {
        0 => None,
        1 => Some(read_i64(&header[9..])?),
        _ => return Err(HubError::Corrupt("run record".into())),
    };
    Ok((read_u64(&header[..8])?, received))
}

/// A run as read: its first position, receive time, and events' bytes.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// Position of the run's first event.
    pub(crate) first: u64,
    /// Position of its last event.
    pub(crate) last: u64,
    /// Receive time, when kept.
    pub(crate) received_at_ms: Option<i64>,
    /// The stored value.
    value: sled::IVec,
    /// Byte offset of each event's length prefix.
    offsets: Vec<usize>,
}

impl Run {
    /// Decodes a run record.
    pub(crate) fn decode(key: &[u8], value: sled::IVec) -> Result<Self, HubError> {
        let last = key
            .get(RUNS.len()..)
            .and_then(|k| <[u8; 8]>::try_from(k).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| HubError::Corrupt("a run record's key".into()))?;
        let corrupt = || HubError::Corrupt(format!("the run of hub positions ending at {last}"));
        let (first, received_at_ms) = run_header(&value).map_err(|_| corrupt())?;
        let mut offsets = Vec::new();
        let mut at = RUN_HEADER;
        while at < value.len() {
            offsets.push(at);
            let len = value.get(at..at + 4).ok_or_else(corrupt)?;
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            at += 4 + len;
        }
        if at != value.len() || first + offsets.len() as u64 != last + 1 {
            return Err(corrupt());
        }
        Ok(Self {
            first,
            last,
            received_at_ms,
            value,
            offsets,
        })
    }

    /// Whether the run holds position `hub_seq`.
    pub(crate) fn holds(&self, hub_seq: u64) -> bool {
        (self.first..=self.last).contains(&hub_seq)
    }

    /// The encoded event at `hub_seq`, which the run holds.
    pub(crate) fn raw(&self, hub_seq: u64) -> Result<&[u8], HubError> {
        let index = usize::try_from(hub_seq.wrapping_sub(self.first))
            .ok()
            .and_then(|i| self.offsets.get(i))
            .ok_or_else(|| HubError::Corrupt(format!("missing event {hub_seq}")))?;
        let len = &self.value[*index..*index + 4];
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        Ok(&self.value[index + 4..index + 4 + len])
    }

    /// The encoded event at `hub_seq`, which the run holds, opened.
    pub(crate) fn opened(
        &self,
        hub_seq: u64,
        values: &SealedTree,
    ) -> Result<std::borrow::Cow<'_, [u8]>, HubError> {
        let stored = self.raw(hub_seq)?;
        if values.vault().is_none() {
            return Ok(std::borrow::Cow::Borrowed(stored));
        }
        Ok(std::borrow::Cow::Owned(
            values.open(&event_place(hub_seq), stored)?,
        ))
    }

    /// The event at `hub_seq`, which the run holds.
    pub(crate) fn event(&self, hub_seq: u64, values: &SealedTree) -> Result<Event, HubError> {
        Event::decode(self.opened(hub_seq, values)?.as_ref())
            .map_err(|e| HubError::Corrupt(format!("event {hub_seq}: {e}")))
    }

    /// The run with every event sealed under `values` (the store's
    /// encryption in place).
    pub(crate) fn sealed(&self, values: &SealedTree) -> Result<(Vec<u8>, Vec<u8>), HubError> {
        let mut writer = RunWriter::new(self.first, self.received_at_ms);
        for pos in self.first..=self.last {
            writer.push(&values.seal(&event_place(pos), self.raw(pos)?.to_vec())?);
        }
        Ok(writer.finish())
    }
}

/// A station's positions in one run, as written in a `t:` record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Positions {
    /// (first, count) ranges, increasing.
    ranges: Vec<(u64, u32)>,
}

impl Positions {
    /// Adds a position above every one held.
    pub(crate) fn push(&mut self, pos: u64) {
        if let Some((first, count)) = self.ranges.last_mut()
            && *first + u64::from(*count) == pos
        {
            *count += 1;
            return;
        }
        self.ranges.push((pos, 1));
    }

    /// The highest position held.
    pub(crate) fn last(&self) -> Option<u64> {
        self.ranges
            .last()
            .map(|(first, count)| first + u64::from(*count) - 1)
    }

    /// The record's value.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.ranges.len() * 12);
        for (first, count) in &self.ranges {
            bytes.extend_from_slice(&first.to_be_bytes());
            bytes.extend_from_slice(&count.to_be_bytes());
        }
        bytes
    }

    /// Decodes a record's value into its positions, in order.
    pub(crate) fn decode(value: &[u8]) -> Result<Vec<u64>, HubError> {
        if !value.len().is_multiple_of(12) {
            return Err(HubError::Corrupt("station stream record".into()));
        }
        let mut positions = Vec::new();
        for range in value.chunks_exact(12) {
            let first = read_u64(&range[..8])?;
            let count = u32::from_be_bytes([range[8], range[9], range[10], range[11]]);
            positions.extend((0..u64::from(count)).map(|i| first + i));
        }
        Ok(positions)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_run_reads_back_what_was_written() {
        let mut run = RunWriter::new(5, Some(-3));
        assert!(run.is_empty());
        assert_eq!(run.push(b"abc"), 5);
        assert_eq!(run.push(b""), 6);
        assert_eq!(run.push(b"xy"), 7);
        let (key, value) = run.finish();
        let run = Run::decode(&key, value.into()).unwrap();
        assert_eq!((run.first, run.last, run.received_at_ms), (5, 7, Some(-3)));
        assert_eq!(run.raw(5).unwrap(), b"abc");
        assert_eq!(run.raw(6).unwrap(), b"");
        assert_eq!(run.raw(7).unwrap(), b"xy");
        assert!(run.raw(8).is_err() && run.raw(4).is_err());
        let (key, value) = RunWriter::new(1, None).finish_one(b"z");
        assert_eq!(
            Run::decode(&key, value.into()).unwrap().received_at_ms,
            None
        );
    }

    #[test]
    fn a_run_fills_at_its_size_but_always_takes_one_event() {
        let mut run = RunWriter::new(1, None);
        assert!(!run.is_full_for(RUN_MAX_BYTES * 2));
        run.push(&vec![0; RUN_MAX_BYTES - 10]);
        assert!(!run.is_full_for(2));
        assert!(run.is_full_for(10));
    }

    #[test]
    fn positions_are_kept_as_ranges() {
        let mut positions = Positions::default();
        for pos in [3, 4, 5, 9, 11, 12] {
            positions.push(pos);
        }
        assert_eq!(positions.last(), Some(12));
        let value = positions.encode();
        assert_eq!(value.len(), 3 * 12);
        assert_eq!(Positions::decode(&value).unwrap(), vec![3, 4, 5, 9, 11, 12]);
        assert!(Positions::decode(&value[1..]).is_err());
    }

    impl RunWriter {
        fn finish_one(mut self, encoded: &[u8]) -> (Vec<u8>, Vec<u8>) {
            self.push(encoded);
            self.finish()
        }
    }
}
