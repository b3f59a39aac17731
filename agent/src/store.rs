//! The device's append-only event log, on sled, behind the project's own type.
//!
//! # On-disk format (format version 1)
//!
//! One sled tree, `station`, with these key spaces (integers big-endian, so
//! byte order is numeric order):
//!
//! | key | value |
//! | --- | --- |
//! | `m:format` | `u32` format version |
//! | `m:identity` | JSON [`DeviceIdentity`] |
//! | `m:head_seq` | `u64`, the highest own `origin_seq` (absent = 0) |
//! | `m:hlc` | `u64`, the greatest HLC issued or observed |
//! | `m:acked` | `u64`, the hub's `durable_through` for this origin, as last seen, or a station relay's ("saved at the station") |
//! | `m:city_acked` | `u64`, the city hub's `durable_through` for this origin ("received by the city"), as the hub or a relay last said (absent = `m:acked`: every ack came from the hub) |
//! | `m:pull_cursor` | `u64`, hub position of the last pulled station event |
//! | `m:hub_log` | the 16-byte id of the hub log the cursor and the `p:` positions are from (absent = not told yet) |
//! | `m:parked` | JSON [`ParkedBatch`]: own events the hub refused for good (absent = none) |
//! | `m:last_sync_ms` | `i64`, wall clock when a sync round last completed (absent = never) |
//! | `m:uplink_bps` | `u64`, measured uplink rate in encoded bytes per second (absent = not measured) |
//! | `m:device_key` | the 32-byte secret (seed) of this origin's Ed25519 device key |
//! | `o:` seq | encoded `Event`, own log |
//! | `h:` seq | 32 bytes, `chain_seq` of the own log (see [`station_proto::chain`]) |
//! | `p:` hub_seq | encoded `Event` pulled from another device of the station; from 2^63 on, one pulled from an earlier hub log |
//! | `i:` event_id | location: `b'o'` + seq, or `b'p'` + hub_seq |
//! | `k:` case_id hlc event_id | location of an event of that case |
//! | `v:` event_id | event_id of the `EventVoided` that voids it |
//! | `c:` case_id | JSON [`CaseView`] |
//! | `m:sealed` | present once every value below marked *sealed* is sealed |
//! | `m:sealing` | while a store in clear is encrypted in place: the last key sealed |
//! | `n:` tag case_id | empty: the case is open, and its `CaseOpened`'s ID number, or its name, birth date and gender (the weak tag), has the keyed tag `tag` (16 bytes, see below) |
//! | `m:person_index` | `u32` version of the `n:` key space, present once it is built |
//! | `j:` absorbed_id survivor_id | empty: an event of case `survivor_id` (voided or not) merges `absorbed_id` into it |
//! | `m:directory_key`, `m:directory_feed`, `m:directory_stations`, `y:` bucket | the device's copy of the district directory (see `directory.rs`) |
//! | `m:review_policy` | JSON: which entries need a supervisor's review, as the hub last said (see `review.rs`) |
//! | `f:` n | encoded `Event` of another station's stream, of a file transferred or asked to be transferred to this station (see `transfers.rs`); `n` counts up from 1 on this device |
//! | `m:transfer_cursor` | `u64`, the hub position the transfers feed was read through |
//!
//! Sealed (see [`crate::seal`]) when the store is encrypted: `m:identity`
//! (with the device token), `m:device_key`, `m:parked`, `o:`, `p:`, `c:`,
//! `m:directory_key`, `m:directory_stations`, `y:` and `f:`,
//! each bound to its key. No key holds personal data: the other key spaces
//! hold ids, HLCs, seqs, hashes and locations.
//!
//! The `n:` tags are [`station_proto::person`] tags under a key derived from
//! the device key (never the ID number itself, which no key of this tree
//! holds): `n:` answers "which open files of this station does this person
//! have" without a scan of every opening. Each open file has the weak tag
//! of its name, birth date and gender ([`TagKey::weak_tag`], domain-separated
//! from the ID tags), and the tag of its ID number when it has one: a person
//! without an ID number is never found by number, so two such people are
//! never taken for one; the weak tag finds possible duplicates only.
//!
//! Beside sled's files the directory holds `station.lock`, locked by the one
//! process that has the store open, and, when the store is encrypted,
//! [`crate::seal::HEADER_FILE`] with its wrapped data key.
//! A device the hub ordered wiped ([`EventLog::order_wipe`], then
//! [`EventLog::wipe`]) keeps only those two files, the header saying when it
//! was wiped and holding no key; such a store never opens again.
//!
//! Invariants, each kept by writing everything of one operation in one sled
//! batch under the single writer lock:
//! - own seqs are gap-free: `o:1 ..= o:head_seq` all exist and nothing else;
//!   an event, its seq, its chain link `h:` seq, its `i:` entry, the new
//!   `m:head_seq` and `m:hlc` and the views it changes are written together;
//!   `h:1 ..= h:head_seq` all exist once the store has been opened by this
//!   version (an older store gets them, and its device key, at open);
//! - the device key is made once, from the operating system's randomness,
//!   with the identity (or at the first open of an older store), and never
//!   changes; the secret never leaves this tree: only the public key and
//!   signatures are handed out, and no error, log line or status shows it;
//! - every stored event has exactly one `i:` entry; an event_id already present
//!   is never stored twice (re-appending returns the original seq);
//! - pulled events and `m:pull_cursor` are written together, and so are
//!   events of the transfers feed and `m:transfer_cursor`; a hub log that
//!   replaces another resets both cursors;
//! - `p:` keys below 2^63 are positions of the hub log `m:hub_log`; when the
//!   hub names another log, every pulled event moves, with its index entries,
//!   to a key from 2^63 on, and the cursor starts again at 0, in one batch:
//!   a position of the new log never lands on an event of the old one;
//! - a merged file's view is closed and names its survivor, and the
//!   survivor's view is its events joined with the absorbed file's, by the
//!   rule of [`station_proto::case::survivor_of`]; the `j:` entries let a
//!   write to either file refresh the other in the same batch;
//! - `c:`, `k:`, `v:`, `n:` and `j:` are derived: [`EventLog::rebuild_views`]
//!   recomputes them from `o:`, `p:` and `f:` and must give the same bytes; `n:`
//!   holds an entry exactly for each case whose view is open, written with
//!   the view; a store opened without `m:person_index` has its views
//!   rebuilt at open;
//! - an append or pull is reported only once durable (see [`crate::durable`]);
//!   events handed to sync never pass [`EventLog::durable_seq`];
//! - `m:parked`, `m:last_sync_ms`, `m:uplink_bps` and `m:review_policy` are
//!   the sync client's own bookkeeping: they never change an event, a
//!   cursor or a view;
//! - an encrypted store is sealed whole before anything else reads it: a
//!   store in clear opened with a key is sealed in place in atomic steps
//!   ([`crate::seal::SealedTree::seal_in_place`]), resumed after a crash, and
//!   `m:sealed` is set when the last step is done.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use prost::Message as _;
use serde::{Deserialize, Serialize};
use station_proto::case;
use station_proto::chain::{self, Chain, Digest};
use station_proto::ids::Uuid;
use station_proto::person::{PersonTag, TagKey};
use station_proto::v1::SignedHead;
use station_proto::{Body, Event};

use crate::clock::SharedClock;
use crate::durable::GroupCommit;
use crate::hlc::Hlc;
use crate::seal::{self, Algorithm, KeySource, SealError, SealedTree, SealingOptions};
use crate::views::{self, CaseView};

mod directory;
mod review;
mod transfers;

pub use directory::{DirectoryApplied, DirectoryHolder, DirectoryStatus};
pub use transfers::{IncomingTransfer, TransfersApplied};

/// A raw key and value of the store, as [`EventLog::views_snapshot`] lists them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// The format version this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The default sled page cache: small, for phones.
pub const DEFAULT_CACHE_CAPACITY: u64 = 4 * 1024 * 1024;

const TREE: &str = "station";
const M_IDENTITY: &[u8] = b"m:identity";
const M_HEAD_SEQ: &[u8] = b"m:head_seq";
const M_HLC: &[u8] = b"m:hlc";
const M_ACKED: &[u8] = b"m:acked";
const M_CITY_ACKED: &[u8] = b"m:city_acked";
const M_PULL_CURSOR: &[u8] = b"m:pull_cursor";
const M_PARKED: &[u8] = b"m:parked";
const M_LAST_SYNC_MS: &[u8] = b"m:last_sync_ms";
const M_UPLINK_BPS: &[u8] = b"m:uplink_bps";
const M_DEVICE_KEY: &[u8] = b"m:device_key";
const M_HUB_LOG: &[u8] = b"m:hub_log";
/// The first `p:` key of events pulled from an earlier hub log; hub
/// positions stay far below it.
const EARLIER_LOGS: u64 = 1 << 63;
const OWN: &[u8] = b"o:";
const CHAIN: &[u8] = b"h:";
const PULLED: &[u8] = b"p:";
const IDS: &[u8] = b"i:";
const CASE_INDEX: &[u8] = b"k:";
const VOIDED: &[u8] = b"v:";
const CASES: &[u8] = b"c:";
const M_SEALED: &[u8] = b"m:sealed";
const M_SEALING: &[u8] = b"m:sealing";

/// The key spaces whose values are sealed in an encrypted store.
const SEALED_SPACES: &[&[u8]] = &[
    M_IDENTITY,
    M_DEVICE_KEY,
    M_PARKED,
    OWN,
    PULLED,
    CASES,
    directory::M_DIRECTORY_KEY,
    directory::M_DIRECTORY_STATIONS,
    directory::DIRECTORY,
    transfers::TRANSFERRED,
];

/// The kind of store bound into every sealed value.
pub const STORE_KIND: &str = "agent";

const PERSONS: &[u8] = b"n:";
const M_PERSON_INDEX: &[u8] = b"m:person_index";
/// The version of the `n:` key space this code writes (2: with weak tags);
/// a store holding another is indexed again when it opens.
const PERSON_INDEX_VERSION: u32 = 2;
/// What the tag key of the `n:` index is derived for, from the device key.
const PERSON_INDEX_PURPOSE: &str = "station.v1 person index";
/// The derived key spaces, which [`EventLog::rebuild_views`] recomputes.
const MERGES: &[u8] = b"j:";
const DERIVED: [&[u8]; 5] = [CASES, CASE_INDEX, VOIDED, PERSONS, MERGES];

impl From<crate::durable::OpenError> for StoreError {
    fn from(error: crate::durable::OpenError) -> Self {
        use crate::durable::OpenError;
        match error {
            OpenError::Io(e) => StoreError::Io(e),
            OpenError::Sled(e) => StoreError::Sled(e),
            OpenError::BadMarker => StoreError::Corrupt("bad format marker".into()),
            OpenError::Unsupported(found) => StoreError::UnsupportedFormat { found },
        }
    }
}

/// Errors of the event log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed; the operation changed nothing that was reported.
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// The flush or fsync failed; the write may not be durable.
    #[error("could not make the write durable: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes on disk do not decode; the store was written by something else.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The store was written by a newer format.
    #[error("store format {found} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedFormat {
        /// The version found on disk.
        found: u32,
    },
    /// No identity yet: `init` has not been run on this store.
    #[error("this device is not initialised: run `station-agent init` first")]
    NotInitialised,
    /// `init` on a store that already has an identity.
    #[error("this device is already initialised as origin {0}")]
    AlreadyInitialised(Uuid),
    /// A pulled event is not a valid event of this station.
    #[error("pulled event rejected: {0}")]
    BadPulledEvent(String),
    /// The operating system gave no randomness for the device key.
    #[error("could not make the device key: no randomness from the operating system ({0})")]
    NoRandomness(String),
    /// The hub ordered this device wiped (it was reported lost): nothing more
    /// is recorded; its entries go to the hub, then its keys are destroyed.
    #[error(
        "this device was reported lost and is being wiped by order of the hub: nothing more can be recorded"
    )]
    WipeOrdered,
    /// The store's key is missing or wrong, or a sealed value does not open.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A page of the district directory (or its key) is malformed.
    #[error("district directory rejected: {0}")]
    BadDirectory(String),
}

impl From<seal::SealInPlaceError> for StoreError {
    fn from(error: seal::SealInPlaceError) -> Self {
        match error {
            seal::SealInPlaceError::Sled(e) => StoreError::Sled(e),
            seal::SealInPlaceError::Seal(e) => StoreError::Seal(e),
        }
    }
}

/// Removes everything in the store folder `dir` but the key header and the
/// lock file: sled's files, snapshots, blobs. The folder is fsynced.
fn remove_store_files(dir: &Path) -> Result<(), StoreError> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == seal::HEADER_FILE || name == "station.lock" {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// A fresh device key's secret, from the operating system.
fn new_device_secret() -> Result<[u8; chain::SECRET_KEY_BYTES], StoreError> {
    let mut secret = [0u8; chain::SECRET_KEY_BYTES];
    getrandom::fill(&mut secret).map_err(|e| StoreError::NoRandomness(e.to_string()))?;
    Ok(secret)
}

/// Who this device is. Created once by `init`, never changed afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIdentity {
    /// The id of this device's log: every event it records carries it.
    pub origin_id: Uuid,
    /// The 9-digit code of the station the device belongs to.
    pub station_code: String,
    /// The social worker recording on this device.
    pub worker_id: String,
    /// The hub to sync with, when known.
    pub hub_url: Option<String>,
    /// The device token issued by the hub, when enrolled.
    pub token: Option<String>,
    /// Wall-clock milliseconds when the identity was created.
    pub created_at_ms: i64,
}

/// Own events the hub refused for good. While one is recorded the sync client
/// pushes nothing (later events cannot pass a gap) but keeps pulling; it is
/// cleared by `station-agent sync --retry-parked` or by an agent of another
/// version, which may send the batch differently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedBatch {
    /// First own seq of the refused batch.
    pub from_seq: u64,
    /// Last own seq of the refused batch.
    pub through_seq: u64,
    /// Why the hub refused it (gRPC code and message), for `status`.
    pub reason: String,
    /// Wall-clock milliseconds when it was parked.
    pub parked_at_ms: i64,
    /// The agent version that parked it; another version tries again.
    pub agent_version: String,
}

/// What the sync client keeps between runs, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct SyncState {
    /// The batch the hub refused for good, if any.
    pub parked: Option<ParkedBatch>,
    /// Wall-clock milliseconds when a sync round last completed.
    pub last_sync_ms: Option<i64>,
    /// The measured uplink rate in encoded bytes per second, so that a
    /// restarted agent sizes its first batch from it.
    pub uplink_bytes_per_sec: Option<u64>,
}

/// Options for [`EventLog::open`].
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// sled's page cache in bytes.
    pub cache_capacity: u64,
    /// The key that wraps the store's data key. Every entry point of the
    /// product gives one (the CLI a key file or a passphrase, the mobile
    /// library the app's provider); `None` opens a store in clear and refuses
    /// an encrypted one.
    pub key: Option<KeySource>,
    /// The AEAD of a store encrypted by this open (an encrypted store keeps
    /// its own).
    pub algorithm: Algorithm,
    /// How a store in clear is encrypted in place when opened with a key.
    pub sealing: SealingOptions,
    /// Where "now" comes from for the log's hybrid clock and the device's
    /// sync: the system clock, unless a simulation gives its own.
    pub clock: SharedClock,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            key: None,
            algorithm: Algorithm::default(),
            sealing: SealingOptions::default(),
            clock: crate::clock::system(),
        }
    }
}

/// An event to append to the own log. Envelope fields the log assigns
/// (`origin_id`, `origin_seq`, `hlc`, `station_code`) are not part of it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// A caller-chosen id makes the append idempotent; `None` draws a UUIDv7.
    pub event_id: Option<Uuid>,
    /// The social worker's id.
    pub author: String,
    /// Device wall clock at entry.
    pub recorded_at_ms: i64,
    /// The fact itself, already validated.
    pub body: Body,
}

/// The outcome of an append, reported once durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The event's id.
    pub event_id: Uuid,
    /// Its place in the own log.
    pub origin_seq: u64,
    /// Its HLC.
    pub hlc: u64,
    /// True when the event_id was already stored and nothing was written.
    pub duplicate: bool,
}

/// The outcome of storing a pulled page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PullApplied {
    /// Events stored.
    pub stored: usize,
    /// Events skipped because they were already present (own or re-pulled).
    pub skipped: usize,
    /// The new cursor.
    pub cursor: u64,
}

/// What [`EventLog::follow_hub_log`] made of the hub log a `Hello` named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubLogChange {
    /// The log pulled from before.
    Same,
    /// The first log named: taken as the one pulled from.
    Adopted,
    /// Another log: the station's stream is pulled again from the start.
    Replaced {
        /// Pulled events moved out of the new log's positions.
        moved: usize,
    },
}

/// Where an event is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Own(u64),
    Pulled(u64),
    /// An event of another station, from the transfers feed.
    Transferred(u64),
}

impl Location {
    fn encode(self) -> [u8; 9] {
        let (tag, n) = match self {
            Location::Own(seq) => (b'o', seq),
            Location::Pulled(seq) => (b'p', seq),
            Location::Transferred(n) => (b'f', n),
        };
        let mut out = [0u8; 9];
        out[0] = tag;
        out[1..].copy_from_slice(&n.to_be_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let n = bytes
            .get(1..9)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| StoreError::Corrupt("bad location".into()))?;
        match bytes[0] {
            b'o' => Ok(Location::Own(n)),
            b'p' => Ok(Location::Pulled(n)),
            b'f' => Ok(Location::Transferred(n)),
            _ => Err(StoreError::Corrupt("bad location tag".into())),
        }
    }

    /// The position in a `p:` key.
    fn decode_pulled_key(k: &[u8]) -> Result<u64, StoreError> {
        k.get(PULLED.len()..)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| StoreError::Corrupt("bad pulled key".into()))
    }

    fn key(self) -> Vec<u8> {
        match self {
            Location::Own(seq) => key(OWN, &seq.to_be_bytes()),
            Location::Pulled(seq) => key(PULLED, &seq.to_be_bytes()),
            Location::Transferred(n) => key(transfers::TRANSFERRED, &n.to_be_bytes()),
        }
    }
}

fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

fn read_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt("expected an 8-byte integer".into()))
}

/// Reads and opens the value at `k`.
fn get_open(
    tree: &sled::Tree,
    values: &SealedTree,
    k: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(tree.get(k)?.map(|v| values.open(k, &v)).transpose()?)
}

fn decode_event(bytes: &[u8]) -> Result<Event, StoreError> {
    Event::decode(bytes).map_err(|e| StoreError::Corrupt(format!("event does not decode: {e}")))
}

/// State only the writer touches, loaded at open.
#[derive(Debug)]
struct Writer {
    /// The highest own seq written (maybe not yet durable).
    head_seq: u64,
    /// The clock stamping new events.
    hlc: Hlc,
    /// The hub ordered this device wiped: nothing more is appended, so the
    /// backlog pushed before the wipe is the whole log.
    wiping: bool,
}

/// Pending writes of one operation, read back before they reach sled so that
/// views computed in the same batch see them.
struct Overlay<'a> {
    tree: &'a sled::Tree,
    values: &'a SealedTree,
    writes: BTreeMap<Vec<u8>, Vec<u8>>,
    removes: BTreeSet<Vec<u8>>,
    /// The key of the `n:` tags; `None` on a store without a device key,
    /// which holds no event.
    person_key: Option<TagKey>,
}

impl<'a> Overlay<'a> {
    fn new(tree: &'a sled::Tree, values: &'a SealedTree) -> Self {
        Self {
            tree,
            values,
            writes: BTreeMap::new(),
            removes: BTreeSet::new(),
            person_key: None,
        }
    }

    /// An overlay that keeps the `n:` index with `person_key`.
    fn writing(tree: &'a sled::Tree, values: &'a SealedTree, person_key: Option<TagKey>) -> Self {
        Self {
            person_key,
            ..Self::new(tree, values)
        }
    }

    fn remove(&mut self, k: Vec<u8>) {
        self.writes.remove(&k);
        self.removes.insert(k);
    }

    fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.writes.get(k) {
            return Ok(Some(v.clone()));
        }
        if self.removes.contains(k) {
            return Ok(None);
        }
        get_open(self.tree, self.values, k)
    }

    fn insert(&mut self, k: Vec<u8>, v: Vec<u8>) {
        self.removes.remove(&k);
        self.writes.insert(k, v);
    }

    /// Keys with `prefix`, from sled and from this overlay, in order.
    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut keys = BTreeSet::new();
        for item in self.tree.scan_prefix(prefix) {
            let (k, _) = item?;
            if !self.removes.contains(k.as_ref()) {
                keys.insert(k.to_vec());
            }
        }
        for k in self.writes.range(prefix.to_vec()..) {
            if !k.0.starts_with(prefix) {
                break;
            }
            keys.insert(k.0.clone());
        }
        Ok(keys.into_iter().collect())
    }

    fn into_batch(self) -> Result<sled::Batch, StoreError> {
        let mut batch = sled::Batch::default();
        for k in self.removes {
            batch.remove(k);
        }
        for (k, v) in self.writes {
            let stored = self.values.seal(&k, v)?;
            batch.insert(k, stored);
        }
        Ok(batch)
    }

    fn load_event(&self, location: Location) -> Result<Event, StoreError> {
        let bytes = self
            .get(&location.key())?
            .ok_or_else(|| StoreError::Corrupt(format!("missing event at {location:?}")))?;
        decode_event(&bytes)
    }

    fn location_of(&self, event_id: &[u8]) -> Result<Option<Location>, StoreError> {
        self.get(&key(IDS, event_id))?
            .map(|b| Location::decode(&b))
            .transpose()
    }

    /// Indexes a new event: its id, its case, the voids it carries. Returns
    /// the cases whose views must be recomputed.
    fn index(
        &mut self,
        event: &Event,
        location: Location,
        affected: &mut BTreeSet<Uuid>,
    ) -> Result<(), StoreError> {
        self.insert(key(IDS, &event.event_id), location.encode().to_vec());
        if let Some(case_id) = views::case_key(event) {
            let mut k = key(CASE_INDEX, case_id.as_bytes());
            k.extend_from_slice(&event.hlc.to_be_bytes());
            k.extend_from_slice(&event.event_id);
            self.insert(k, location.encode().to_vec());
            affected.insert(case_id);
        }
        if let Some((survivor, absorbed)) = event.body.as_ref().and_then(case::merge_of) {
            self.insert(
                key(
                    MERGES,
                    &[&absorbed.as_bytes()[..], &survivor.as_bytes()[..]].concat(),
                ),
                Vec::new(),
            );
            affected.insert(absorbed);
        }
        if let Some(Body::EventVoided(void)) = &event.body {
            self.insert(key(VOIDED, &void.voided_event_id), event.event_id.clone());
            if let Some(target_at) = self.location_of(&void.voided_event_id)? {
                let target = self.load_event(target_at)?;
                if let Some(case_id) = views::case_key(&target) {
                    affected.insert(case_id);
                }
            }
        }
        Ok(())
    }

    /// The events of one case that are not voided, in (hlc, event_id) order.
    fn live_events(&self, case_id: Uuid) -> Result<Vec<Event>, StoreError> {
        let prefix = key(CASE_INDEX, case_id.as_bytes());
        let mut events = Vec::new();
        for k in self.keys_with_prefix(&prefix)? {
            let Some(loc) = self.get(&k)? else { continue };
            let event = self.load_event(Location::decode(&loc)?)?;
            if self.get(&key(VOIDED, &event.event_id))?.is_none() {
                events.push(event);
            }
        }
        Ok(events)
    }

    /// Whether a case's `CaseOpened` is held and not voided.
    fn opening_is_live(&self, case_id: Uuid) -> Result<bool, StoreError> {
        let Some(location) = self.location_of(case_id.as_bytes())? else {
            return Ok(false);
        };
        let opening = self.load_event(location)?;
        Ok(matches!(opening.body, Some(Body::CaseOpened(_)))
            && self.get(&key(VOIDED, case_id.as_bytes()))?.is_none())
    }

    /// The cases an event of which names `absorbed` in a merge (`j:`).
    fn claimants(&self, absorbed: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let prefix = key(MERGES, absorbed.as_bytes());
        self.keys_with_prefix(&prefix)?
            .iter()
            .map(|k| {
                Uuid::from_slice(&k[prefix.len()..])
                    .map_err(|_| StoreError::Corrupt("bad case id in the merge index".into()))
            })
            .collect()
    }

    /// The files a live merge of `case_id` names as absorbed.
    fn merges_of(&self, case_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        Ok(self
            .live_events(case_id)?
            .iter()
            .filter_map(|e| e.body.as_ref().and_then(case::merge_of))
            .filter(|(survivor, _)| *survivor == case_id)
            .map(|(_, absorbed)| absorbed)
            .collect())
    }

    /// The survivors of the live merges naming `absorbed`, both openings live.
    fn live_claims(&self, absorbed: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let mut claims = Vec::new();
        if !self.opening_is_live(absorbed)? {
            return Ok(claims);
        }
        for survivor in self.claimants(absorbed)? {
            if survivor != absorbed
                && self.opening_is_live(survivor)?
                && self.merges_of(survivor)?.contains(&absorbed)
            {
                claims.push(survivor);
            }
        }
        Ok(claims)
    }

    /// The file `case_id` is merged into, by [`case::survivor_of`].
    fn survivor_of(&self, case_id: Uuid) -> Result<Option<Uuid>, StoreError> {
        let claims = self.live_claims(case_id)?;
        if claims.is_empty() {
            return Ok(None);
        }
        let mut claimed = BTreeSet::new();
        for survivor in &claims {
            if !self.live_claims(*survivor)?.is_empty() {
                claimed.insert(*survivor);
            }
        }
        Ok(case::survivor_of(case_id, claims, |s| claimed.contains(&s)))
    }

    /// The files merged into `case_id` (by [`Self::survivor_of`]).
    fn absorbed_into(&self, case_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let mut absorbed = Vec::new();
        for file in self.merges_of(case_id)? {
            if self.survivor_of(file)? == Some(case_id) && !absorbed.contains(&file) {
                absorbed.push(file);
            }
        }
        absorbed.sort_unstable();
        Ok(absorbed)
    }

    /// The view of a case: closed and naming its survivor when merged into
    /// another file, else its events joined with those of the files merged
    /// into it.
    fn view_of(&self, case_id: Uuid) -> Result<Option<CaseView>, StoreError> {
        let own = self.live_events(case_id)?;
        if let Some(survivor) = self.survivor_of(case_id)? {
            let mut own = own;
            return Ok(views::fold_case(case_id, &mut own).map(|view| CaseView {
                status: views::CaseStatus::Closed,
                merged_into: Some(survivor),
                ..view
            }));
        }
        let mut absorbed = Vec::new();
        for file in self.absorbed_into(case_id)? {
            absorbed.extend(self.live_events(file)?);
        }
        let Some(view) = case::fold_joined(case_id, &own, &absorbed) else {
            return Ok(None);
        };
        // A file of another station this one was only asked to take (or
        // never held) is no file of this station: it is listed among the
        // incoming transfers, not among the cases.
        if let Some(station) = self.own_station()?
            && station_proto::transfer::chain_of(case_id, &own)
                .is_some_and(|chain| !chain.held_by(&station))
        {
            return Ok(None);
        }
        // A file transferred to another station is a closed stub here.
        if let Some(holder) = &view.transferred_to
            && self.own_station()?.is_some_and(|own| own != *holder)
        {
            return Ok(Some(CaseView {
                status: views::CaseStatus::Closed,
                ..view
            }));
        }
        Ok(Some(view))
    }

    /// The station of this device, when initialised.
    fn own_station(&self) -> Result<Option<String>, StoreError> {
        self.get(M_IDENTITY)?
            .map(|v| {
                serde_json::from_slice::<DeviceIdentity>(&v)
                    .map(|identity| identity.station_code)
                    .map_err(|e| StoreError::Corrupt(format!("identity does not decode: {e}")))
            })
            .transpose()
    }

    /// `affected` and every file a merge links to one of them, however far.
    fn with_merged_files(&self, affected: &BTreeSet<Uuid>) -> Result<BTreeSet<Uuid>, StoreError> {
        let mut all = affected.clone();
        let mut todo: Vec<Uuid> = affected.iter().copied().collect();
        while let Some(case_id) = todo.pop() {
            let mut linked = self.claimants(case_id)?;
            // Every merge of the case, voided or not: a voided one still
            // links the files it named, whose views it changed.
            for k in self.keys_with_prefix(&key(CASE_INDEX, case_id.as_bytes()))? {
                let Some(loc) = self.get(&k)? else { continue };
                let event = self.load_event(Location::decode(&loc)?)?;
                if let Some((_, absorbed)) = event.body.as_ref().and_then(case::merge_of) {
                    linked.push(absorbed);
                }
            }
            for file in linked {
                if all.insert(file) {
                    todo.push(file);
                }
            }
        }
        Ok(all)
    }

    /// Recomputes the view of each affected case, and of the files merges
    /// link to them, from their events.
    fn refresh_cases(&mut self, affected: &BTreeSet<Uuid>) -> Result<(), StoreError> {
        let affected = self.with_merged_files(affected)?;
        for case_id in &affected {
            let view_key = key(CASES, case_id.as_bytes());
            let view = self.view_of(*case_id)?;
            let open = view
                .as_ref()
                .is_some_and(|v| v.status == views::CaseStatus::Open);
            match view {
                Some(view) => {
                    let json = serde_json::to_vec(&view)
                        .map_err(|e| StoreError::Corrupt(format!("case view: {e}")))?;
                    self.insert(view_key, json);
                }
                None => self.remove(view_key),
            }
            for tag in self.person_tags_of(*case_id)? {
                let mut entry = key(PERSONS, &tag);
                entry.extend_from_slice(case_id.as_bytes());
                if open {
                    self.insert(entry, Vec::new());
                } else {
                    self.remove(entry);
                }
            }
        }
        Ok(())
    }

    /// The `n:` tags of the person a case was opened for, of its
    /// `CaseOpened` (voided or not), when the store holds it: the tag of
    /// its ID number, when it has one, and its weak tag.
    fn person_tags_of(&self, case_id: Uuid) -> Result<Vec<PersonTag>, StoreError> {
        let Some(location) = self.location_of(case_id.as_bytes())? else {
            return Ok(Vec::new());
        };
        let opening = self.load_event(location)?;
        let Some(Body::CaseOpened(opened)) = &opening.body else {
            return Ok(Vec::new());
        };
        match &self.person_key {
            Some(person_key) => Ok(person_tags(person_key, opened)),
            None => Err(StoreError::Corrupt(
                "a case is stored without a device key to index it".into(),
            )),
        }
    }
}

/// The `n:` tags of an opening under the index key: of its ID number when
/// it has one (a person without one is not comparable by number, so no
/// tag of the empty number ever groups such people), then its weak tag.
fn person_tags(person_key: &TagKey, opened: &station_proto::v1::CaseOpened) -> Vec<PersonTag> {
    let mut tags = Vec::with_capacity(2);
    if !opened.id_number.trim().is_empty() {
        tags.push(person_key.tag(&opened.id_number));
    }
    tags.push(person_key.weak_tag(&opened.name, &opened.birth_date, opened.gender));
    tags
}

/// The durable event log of one device.
#[derive(Debug)]
pub struct EventLog {
    /// The sled database; kept so the tree outlives no handle of it.
    _db: sled::Db,
    /// All key spaces of the format above.
    tree: sled::Tree,
    /// Flush + fsync shared by concurrent writers.
    group: GroupCommit,
    /// Seals and opens the values of the sealed key spaces.
    values: SealedTree,
    /// Serialises writers: seq assignment and view updates see one state.
    writer: Mutex<Writer>,
    /// Where the store lives, for messages.
    dir: PathBuf,
    /// The store's lock file, held while the log is open.
    _lock: std::fs::File,
    /// Where "now" comes from.
    clock: SharedClock,
}

impl EventLog {
    /// The clock this log was opened with: "now" for the device's entries
    /// and its sync.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Milliseconds since the Unix epoch by [`EventLog::clock`].
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Opens (creating when absent) the log stored in `dir`, with the key
    /// of [`OpenOptions::key`]: a new store is encrypted under a new data
    /// key, a store in clear is encrypted in place first.
    ///
    /// # Errors
    /// sled cannot open the directory, the format is unknown, or the initial
    /// sync fails; [`StoreError::Seal`] for a key that is missing or wrong
    /// (nothing is changed then).
    pub fn open(dir: &Path, options: OpenOptions) -> Result<Self, StoreError> {
        if seal::Vault::wiped_at(dir)?.is_some() {
            let _lock = crate::durable::lock_store(dir)?;
            remove_store_files(dir)?;
            return Err(SealError::Wiped.into());
        }
        let crate::durable::OpenedStore { lock, db, tree } = crate::durable::open_store(
            dir,
            sled::Config::new()
                .cache_capacity(options.cache_capacity)
                .mode(sled::Mode::LowSpace),
            TREE,
            FORMAT_VERSION,
        )?;
        let prepared = seal::prepare(
            dir,
            STORE_KIND,
            options.key.as_ref(),
            options.algorithm,
            tree.contains_key(M_SEALED)?,
        )?;
        let values = match prepared {
            seal::Prepared::Plain => SealedTree::new(None, TREE, SEALED_SPACES),
            seal::Prepared::Sealed(vault) => {
                SealedTree::new(Some(std::sync::Arc::new(vault)), TREE, SEALED_SPACES)
            }
            seal::Prepared::NeedsSealing(vault) => {
                let values = SealedTree::new(Some(std::sync::Arc::new(vault)), TREE, SEALED_SPACES);
                let sealed = values.seal_in_place(&tree, M_SEALING, &options.sealing)?;
                let mut done = sled::Batch::default();
                done.remove(M_SEALING);
                done.insert(M_SEALED, &[1u8]);
                tree.apply_batch(done)?;
                if sealed > 0 {
                    tracing::info!(sealed, "store encrypted in place");
                }
                values
            }
        };
        let head_seq = tree.get(M_HEAD_SEQ)?.map_or(Ok(0), |v| read_u64(&v))?;
        let hlc = tree.get(M_HLC)?.map_or(Ok(0), |v| read_u64(&v))?;
        let group = GroupCommit::open(db.clone(), dir, head_seq)?;
        let log = Self {
            _db: db,
            tree,
            group,
            values,
            writer: Mutex::new(Writer {
                head_seq,
                hlc: Hlc::resume(hlc, options.clock.now_ms()),
                wiping: false,
            }),
            dir: dir.to_path_buf(),
            _lock: lock,
            clock: options.clock,
        };
        log.upgrade_to_signed()?;
        let index_version = log
            .tree
            .get(M_PERSON_INDEX)?
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
            .map(u32::from_be_bytes);
        if log.identity()?.is_some() && index_version != Some(PERSON_INDEX_VERSION) {
            let replayed = log.rebuild_views()?;
            tracing::info!(replayed, "index of open files by person built");
        }
        Ok(log)
    }

    /// The key of the `n:` tags, derived from the device key; `None` before
    /// the device has one.
    fn person_key(&self) -> Result<Option<TagKey>, StoreError> {
        if !self.tree.contains_key(M_DEVICE_KEY)? {
            return Ok(None);
        }
        Ok(Some(TagKey::derive(
            &self.device_secret()?,
            PERSON_INDEX_PURPOSE,
        )))
    }

    /// The open cases of this station whose `CaseOpened` names the person
    /// with `id_number` (in any typed form), by case id.
    ///
    /// # Errors
    /// Storage errors.
    pub fn open_cases_of_person(&self, id_number: &str) -> Result<Vec<Uuid>, StoreError> {
        if id_number.trim().is_empty() {
            return Ok(Vec::new());
        }
        let Some(person_key) = self.person_key()? else {
            return Ok(Vec::new());
        };
        self.open_cases_of_tag(&person_key.tag(id_number))
    }

    /// The open cases of this station whose `CaseOpened` has the person's
    /// name (as [`station_proto::person::normalise_name`] compares it),
    /// birth date and gender, with or without an ID number, by case id:
    /// possible duplicates.
    ///
    /// # Errors
    /// Storage errors.
    pub fn open_cases_like(
        &self,
        name: &str,
        birth_date: &str,
        gender: i32,
    ) -> Result<Vec<Uuid>, StoreError> {
        let Some(person_key) = self.person_key()? else {
            return Ok(Vec::new());
        };
        self.open_cases_of_tag(&person_key.weak_tag(name, birth_date, gender))
    }

    fn open_cases_of_tag(&self, tag: &PersonTag) -> Result<Vec<Uuid>, StoreError> {
        let prefix = key(PERSONS, tag);
        self.tree
            .scan_prefix(&prefix)
            .map(|item| {
                let (k, _) = item?;
                Uuid::from_slice(&k[prefix.len()..])
                    .map_err(|_| StoreError::Corrupt("bad case id in the person index".into()))
            })
            .collect()
    }

    /// Gives a store written before signed logs its chain links and, when
    /// it has an identity, its device key, in one durable batch: its next
    /// push is signed. Does nothing to a store that has them.
    fn upgrade_to_signed(&self) -> Result<(), StoreError> {
        let writer = self.lock_writer();
        let mut batch = sled::Batch::default();
        let mut changed = false;
        let identity = self.identity()?;
        if identity.is_some() && !self.tree.contains_key(M_DEVICE_KEY)? {
            batch.insert(
                M_DEVICE_KEY,
                self.values
                    .seal(M_DEVICE_KEY, new_device_secret()?.to_vec())?,
            );
            changed = true;
            tracing::info!("device key made for a store that had none");
        }
        if let Some(identity) = identity
            && writer.head_seq > 0
            && !self
                .tree
                .contains_key(key(CHAIN, &writer.head_seq.to_be_bytes()))?
        {
            let mut links = Chain::start(identity.origin_id);
            for item in self.tree.scan_prefix(OWN) {
                let (k, v) = item?;
                let seq = read_u64(&k[OWN.len()..])?;
                let v = self.values.open(&k, &v)?;
                let link = links
                    .push_bytes(seq, &v)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                batch.insert(key(CHAIN, &seq.to_be_bytes()), link.to_vec());
            }
            changed = true;
            tracing::info!(head_seq = writer.head_seq, "chain of the own log computed");
        }
        if changed {
            self.tree.apply_batch(batch)?;
            let ticket = self.group.written(None);
            drop(writer);
            self.group.wait_durable(ticket)?;
        }
        Ok(())
    }

    /// `chain_seq` of the own log, 0 for `chain_0`.
    fn chain_at(&self, origin: Uuid, seq: u64) -> Result<Digest, StoreError> {
        if seq == 0 {
            return Ok(chain::chain_0(origin));
        }
        let link = self
            .tree
            .get(key(CHAIN, &seq.to_be_bytes()))?
            .ok_or_else(|| StoreError::Corrupt(format!("no chain link for own seq {seq}")))?;
        <Digest>::try_from(link.as_ref())
            .map_err(|_| StoreError::Corrupt(format!("chain link of own seq {seq}")))
    }

    fn device_secret(&self) -> Result<[u8; chain::SECRET_KEY_BYTES], StoreError> {
        let secret = zeroize::Zeroizing::new(
            get_open(&self.tree, &self.values, M_DEVICE_KEY)?.ok_or(StoreError::NotInitialised)?,
        );
        <[u8; chain::SECRET_KEY_BYTES]>::try_from(secret.as_ref())
            .map_err(|_| StoreError::Corrupt("device key".into()))
    }

    /// The device's Ed25519 public key, sent in `Hello`.
    ///
    /// # Errors
    /// [`StoreError::NotInitialised`]; storage errors.
    pub fn public_key(&self) -> Result<[u8; chain::PUBLIC_KEY_BYTES], StoreError> {
        Ok(chain::public_key(&self.device_secret()?))
    }

    /// The device's signature over its own log through `last_seq`: the
    /// signed head a push whose last event is `last_seq` carries.
    ///
    /// # Errors
    /// [`StoreError::NotInitialised`]; storage errors, or `last_seq` past
    /// the head.
    pub fn signed_head(&self, last_seq: u64) -> Result<SignedHead, StoreError> {
        let identity = self.identity()?.ok_or(StoreError::NotInitialised)?;
        let origin = identity.origin_id;
        let chain_last = self.chain_at(origin, last_seq)?;
        let signature = chain::sign_head(&self.device_secret()?, origin, last_seq, &chain_last);
        Ok(SignedHead {
            origin_id: origin.as_bytes().to_vec(),
            last_seq,
            signature: signature.to_vec(),
            public_key: Vec::new(),
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        // The writer state is only changed after a successful batch; a panic
        // elsewhere while holding the lock leaves it consistent.
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The device identity, when initialised.
    ///
    /// # Errors
    /// Storage errors, or an identity that does not decode.
    pub fn identity(&self) -> Result<Option<DeviceIdentity>, StoreError> {
        get_open(&self.tree, &self.values, M_IDENTITY)?
            .map(|v| {
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("identity does not decode: {e}")))
            })
            .transpose()
    }

    /// Stores the identity once, durably.
    ///
    /// # Errors
    /// [`StoreError::AlreadyInitialised`] when an identity exists; storage errors.
    pub fn init_identity(&self, identity: &DeviceIdentity) -> Result<(), StoreError> {
        let _writer = self.lock_writer();
        if let Some(existing) = self.identity()? {
            return Err(StoreError::AlreadyInitialised(existing.origin_id));
        }
        let json = serde_json::to_vec(identity)
            .map_err(|e| StoreError::Corrupt(format!("identity: {e}")))?;
        let mut batch = sled::Batch::default();
        batch.insert(M_IDENTITY, self.values.seal(M_IDENTITY, json)?);
        batch.insert(
            M_DEVICE_KEY,
            self.values
                .seal(M_DEVICE_KEY, new_device_secret()?.to_vec())?,
        );
        batch.insert(M_PERSON_INDEX, &PERSON_INDEX_VERSION.to_be_bytes());
        self.tree.apply_batch(batch)?;
        let ticket = self.group.written(None);
        self.group.wait_durable(ticket)?;
        Ok(())
    }

    /// Replaces the hub address and token of an initialised device.
    ///
    /// # Errors
    /// [`StoreError::NotInitialised`]; storage errors.
    pub fn set_hub(
        &self,
        hub_url: Option<String>,
        token: Option<String>,
    ) -> Result<(), StoreError> {
        let _writer = self.lock_writer();
        let mut identity = self.identity()?.ok_or(StoreError::NotInitialised)?;
        if hub_url.is_some() {
            identity.hub_url = hub_url;
        }
        if token.is_some() {
            identity.token = token;
        }
        let json = serde_json::to_vec(&identity)
            .map_err(|e| StoreError::Corrupt(format!("identity: {e}")))?;
        self.tree
            .insert(M_IDENTITY, self.values.seal(M_IDENTITY, json)?)?;
        let ticket = self.group.written(None);
        self.group.wait_durable(ticket)?;
        Ok(())
    }

    /// Appends one event to the own log and returns once it is durable.
    ///
    /// The body must already be validated. If `new.event_id` is already
    /// stored, nothing is written and the original seq is returned.
    ///
    /// # Errors
    /// [`StoreError::NotInitialised`]; storage or sync errors, in which case
    /// the event must not be reported as saved.
    pub fn append(&self, new: NewEvent) -> Result<Appended, StoreError> {
        let identity = self.identity()?.ok_or(StoreError::NotInitialised)?;
        let mut writer = self.lock_writer();
        if writer.wiping {
            return Err(StoreError::WipeOrdered);
        }
        if let Some(event_id) = new.event_id
            && let Some(existing) = self.existing(event_id)?
        {
            drop(writer);
            // The original write may still be waiting for its sync.
            self.group.wait_durable(self.group.current())?;
            return Ok(existing);
        }
        let event_id = new.event_id.unwrap_or_else(|| self.clock.new_v7());
        let origin_seq = writer.head_seq + 1;
        let mut hlc = writer.hlc;
        let stamp = hlc.tick(new.recorded_at_ms);
        let event = Event {
            event_id: event_id.as_bytes().to_vec(),
            origin_id: identity.origin_id.as_bytes().to_vec(),
            origin_seq,
            station_code: identity.station_code,
            author: new.author,
            recorded_at_ms: new.recorded_at_ms,
            hlc: stamp,
            body: Some(new.body),
        };
        let mut overlay = Overlay::writing(&self.tree, &self.values, self.person_key()?);
        let location = Location::Own(origin_seq);
        let canonical = chain::canonical_bytes(&event);
        let link = chain::link(
            &self.chain_at(identity.origin_id, origin_seq - 1)?,
            &canonical,
        );
        overlay.insert(key(CHAIN, &origin_seq.to_be_bytes()), link.to_vec());
        overlay.insert(location.key(), canonical);
        overlay.insert(M_HEAD_SEQ.to_vec(), origin_seq.to_be_bytes().to_vec());
        overlay.insert(M_HLC.to_vec(), stamp.to_be_bytes().to_vec());
        let mut affected = BTreeSet::new();
        overlay.index(&event, location, &mut affected)?;
        overlay.refresh_cases(&affected)?;
        self.tree.apply_batch(overlay.into_batch()?)?;
        writer.head_seq = origin_seq;
        writer.hlc = hlc;
        let ticket = self.group.written(Some(origin_seq));
        drop(writer);
        self.group.wait_durable(ticket)?;
        Ok(Appended {
            event_id,
            origin_seq,
            hlc: stamp,
            duplicate: false,
        })
    }

    fn existing(&self, event_id: Uuid) -> Result<Option<Appended>, StoreError> {
        let Some(loc) = self.tree.get(key(IDS, event_id.as_bytes()))? else {
            return Ok(None);
        };
        let location = Location::decode(&loc)?;
        let bytes = get_open(&self.tree, &self.values, &location.key())?
            .ok_or_else(|| StoreError::Corrupt("id points to a missing event".into()))?;
        let event = decode_event(&bytes)?;
        Ok(Some(Appended {
            event_id,
            origin_seq: event.origin_seq,
            hlc: event.hlc,
            duplicate: true,
        }))
    }

    /// Stops the log taking new entries, as the hub ordered this device
    /// wiped, and returns its head once every entry up to it is durable: the
    /// backlog to push before [`EventLog::wipe`]. Appends are then refused
    /// with [`StoreError::WipeOrdered`].
    ///
    /// # Errors
    /// The flush or fsync failed (the log still refuses new entries).
    pub fn order_wipe(&self) -> Result<u64, StoreError> {
        let head_seq = {
            let mut writer = self.lock_writer();
            writer.wiping = true;
            writer.head_seq
        };
        self.group.wait_durable(self.group.current())?;
        Ok(head_seq)
    }

    /// Whether [`EventLog::order_wipe`] was called on this log.
    pub fn wipe_ordered(&self) -> bool {
        self.lock_writer().wiping
    }

    /// Wipes the device: destroys the store's data key, and with it the
    /// signing key, the token and every sealed value (the header keeps only
    /// when the store was wiped, see [`seal::Vault::wipe`]), then removes
    /// sled's files from the folder. Once the header is replaced the store
    /// never opens again; files a crash leaves behind are removed by the
    /// next open, which then refuses with [`SealError::Wiped`]. Call it once
    /// the hub holds the backlog ([`EventLog::order_wipe`]); the log must
    /// not be used afterwards but to be dropped.
    ///
    /// # Errors
    /// The header cannot be replaced (nothing was destroyed then), or a file
    /// cannot be removed (the data key is destroyed all the same).
    pub fn wipe(&self, now_ms: i64) -> Result<(), StoreError> {
        let mut writer = self.lock_writer();
        writer.wiping = true;
        seal::Vault::wipe(&self.dir, STORE_KIND, now_ms)?;
        remove_store_files(&self.dir)?;
        Ok(())
    }

    /// The highest own seq written (it may still be waiting for its sync).
    pub fn head_seq(&self) -> u64 {
        self.lock_writer().head_seq
    }

    /// The highest own seq known to be on disk: sync never sends past it.
    pub fn durable_seq(&self) -> u64 {
        self.group.durable_seq()
    }

    /// Own events with seq in `after+1 ..`, at most `limit`, never past
    /// [`Self::durable_seq`].
    ///
    /// # Errors
    /// Storage errors or an event that does not decode.
    pub fn own_events(&self, after: u64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let through = self.durable_seq();
        if after >= through {
            return Ok(Vec::new());
        }
        let start = key(OWN, &(after + 1).to_be_bytes());
        let end = key(OWN, &through.to_be_bytes());
        self.tree
            .range(start..=end)
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                decode_event(&self.values.open(&k, &v)?)
            })
            .collect()
    }

    /// Events pulled from colleagues with hub position after `after`.
    ///
    /// # Errors
    /// Storage errors or an event that does not decode.
    pub fn pulled_events(&self, after: u64, limit: usize) -> Result<Vec<(u64, Event)>, StoreError> {
        let start = key(PULLED, &(after.saturating_add(1)).to_be_bytes());
        self.tree
            .range(start..)
            .take_while(|item| item.as_ref().map_or(true, |(k, _)| k.starts_with(PULLED)))
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                let event = decode_event(&self.values.open(&k, &v)?)?;
                Ok((read_u64(&k[PULLED.len()..])?, event))
            })
            .collect()
    }

    /// Any stored event (own or pulled) by id.
    ///
    /// # Errors
    /// Storage errors or an event that does not decode.
    pub fn event(&self, event_id: Uuid) -> Result<Option<Event>, StoreError> {
        let overlay = Overlay::new(&self.tree, &self.values);
        match overlay.location_of(event_id.as_bytes())? {
            Some(loc) => Ok(Some(overlay.load_event(loc)?)),
            None => Ok(None),
        }
    }

    /// Whether `event_id` has been voided by some stored `EventVoided`.
    ///
    /// # Errors
    /// Storage errors.
    pub fn is_voided(&self, event_id: Uuid) -> Result<bool, StoreError> {
        Ok(self.tree.contains_key(key(VOIDED, event_id.as_bytes()))?)
    }

    /// Stores a page of pulled station events and the new cursor in one
    /// atomic write, returning once durable. Events already present (this
    /// device's own, or pulled before) are skipped.
    ///
    /// # Errors
    /// [`StoreError::BadPulledEvent`] for an event without a 16-byte id or of
    /// another station (nothing is stored then); storage or sync errors.
    pub fn apply_pulled(
        &self,
        events: Vec<(u64, Event)>,
        next_cursor: u64,
    ) -> Result<PullApplied, StoreError> {
        let identity = self.identity()?.ok_or(StoreError::NotInitialised)?;
        let mut writer = self.lock_writer();
        let now_ms = self.now_ms();
        let mut overlay = Overlay::writing(&self.tree, &self.values, self.person_key()?);
        let mut affected = BTreeSet::new();
        let mut applied = PullApplied {
            cursor: next_cursor,
            ..PullApplied::default()
        };
        let mut hlc = writer.hlc;
        for (hub_seq, event) in events {
            if event.event_id.len() != 16 {
                return Err(StoreError::BadPulledEvent(format!(
                    "event at hub position {hub_seq} has no 16-byte event_id"
                )));
            }
            if event.station_code != identity.station_code {
                return Err(StoreError::BadPulledEvent(format!(
                    "event at hub position {hub_seq} belongs to station {}",
                    event.station_code
                )));
            }
            if overlay.location_of(&event.event_id)?.is_some() {
                applied.skipped += 1;
                continue;
            }
            hlc.observe(event.hlc, now_ms);
            let location = Location::Pulled(hub_seq);
            overlay.insert(location.key(), event.encode_to_vec());
            overlay.index(&event, location, &mut affected)?;
            applied.stored += 1;
        }
        overlay.refresh_cases(&affected)?;
        overlay.insert(M_PULL_CURSOR.to_vec(), next_cursor.to_be_bytes().to_vec());
        overlay.insert(M_HLC.to_vec(), hlc.last().to_be_bytes().to_vec());
        self.tree.apply_batch(overlay.into_batch()?)?;
        writer.hlc = hlc;
        let ticket = self.group.written(None);
        drop(writer);
        self.group.wait_durable(ticket)?;
        Ok(applied)
    }

    /// Takes note of the hub log a `Hello` named. The first one named is
    /// adopted. Another one means the hub's log was replaced (restored from
    /// a backup): its positions name other events than the ones pulled
    /// before, so the pulled events move out of the way of the new positions
    /// (to keys from 2^63 on, index entries with them) and the cursor starts
    /// again at 0, in one durable batch; events already held are skipped
    /// when pulled again.
    ///
    /// # Errors
    /// Storage or sync errors; nothing is changed then.
    pub fn follow_hub_log(&self, log_id: &[u8]) -> Result<HubLogChange, StoreError> {
        let _writer = self.lock_writer();
        let mut overlay = Overlay::new(&self.tree, &self.values);
        let change = match get_open(&self.tree, &self.values, M_HUB_LOG)? {
            Some(known) if known.as_slice() == log_id => return Ok(HubLogChange::Same),
            None => HubLogChange::Adopted,
            Some(_) => {
                let mut next = match self.tree.scan_prefix(PULLED).next_back() {
                    Some(last) => Location::decode_pulled_key(&last?.0)?
                        .max(EARLIER_LOGS - 1)
                        .saturating_add(1),
                    None => EARLIER_LOGS,
                };
                let mut affected = BTreeSet::new();
                let mut moved = 0usize;
                let from = key(PULLED, &0u64.to_be_bytes());
                let to = key(PULLED, &EARLIER_LOGS.to_be_bytes());
                for item in self.tree.range(from..to) {
                    let (k, stored) = item?;
                    let bytes = self.values.open(&k, &stored)?;
                    let event = decode_event(&bytes)?;
                    overlay.removes.insert(k.to_vec());
                    let location = Location::Pulled(next);
                    next = next.saturating_add(1);
                    overlay.insert(location.key(), bytes);
                    overlay.index(&event, location, &mut affected)?;
                    moved += 1;
                }
                overlay.refresh_cases(&affected)?;
                overlay.insert(M_PULL_CURSOR.to_vec(), 0u64.to_be_bytes().to_vec());
                // The transfers feed's cursor is a position of the old log
                // too; events held already are skipped when met again.
                overlay.remove(transfers::M_TRANSFER_CURSOR.to_vec());
                HubLogChange::Replaced { moved }
            }
        };
        overlay.insert(M_HUB_LOG.to_vec(), log_id.to_vec());
        self.tree.apply_batch(overlay.into_batch()?)?;
        self.group.wait_durable(self.group.written(None))?;
        Ok(change)
    }

    /// The hub position of the last pulled station event.
    ///
    /// # Errors
    /// Storage errors.
    pub fn pull_cursor(&self) -> Result<u64, StoreError> {
        self.tree
            .get(M_PULL_CURSOR)?
            .map_or(Ok(0), |v| read_u64(&v))
    }

    /// The hub's `durable_through` for this origin, as last seen.
    ///
    /// # Errors
    /// Storage errors.
    pub fn acked(&self) -> Result<u64, StoreError> {
        self.tree.get(M_ACKED)?.map_or(Ok(0), |v| read_u64(&v))
    }

    /// Records the hub's acknowledgement (it only ever grows).
    ///
    /// # Errors
    /// Storage errors.
    pub fn set_acked(&self, durable_through: u64) -> Result<(), StoreError> {
        let _writer = self.lock_writer();
        if durable_through > self.acked()? {
            self.tree.insert(M_ACKED, &durable_through.to_be_bytes())?;
            let ticket = self.group.written(None);
            self.group.wait_durable(ticket)?;
        }
        Ok(())
    }

    /// How much of this origin the city hub holds, as the hub (or a
    /// station relay, passing on the hub's word) last said; until a relay
    /// has answered, [`Self::acked`].
    ///
    /// # Errors
    /// Storage errors.
    pub fn city_acked(&self) -> Result<u64, StoreError> {
        match self.tree.get(M_CITY_ACKED)? {
            Some(v) => read_u64(&v),
            None => self.acked(),
        }
    }

    /// Records the city hub's acknowledgement; it only ever grows, and never
    /// past [`Self::acked`] (the city cannot hold more than was saved).
    ///
    /// # Errors
    /// Storage errors.
    pub fn set_city_acked(&self, durable_through: u64) -> Result<(), StoreError> {
        let acked = self.acked()?;
        self.set_acks(acked, durable_through)
    }

    /// Records an answer of the hub or of a station relay: `saved` (its
    /// `durable_through`, [`Self::acked`]) and `city` ([`Self::city_acked`]),
    /// each only ever growing, the city's never past what was saved, in one
    /// write and one sync.
    ///
    /// # Errors
    /// Storage errors.
    pub fn set_acks(&self, saved: u64, city: u64) -> Result<(), StoreError> {
        let _writer = self.lock_writer();
        let before = self.acked()?;
        let acked = before.max(saved);
        let stored = self
            .tree
            .get(M_CITY_ACKED)?
            .map(|v| read_u64(&v))
            .transpose()?;
        let city = city.min(acked);
        let mut batch = sled::Batch::default();
        let mut changed = false;
        if acked > before {
            batch.insert(M_ACKED, &acked.to_be_bytes());
            changed = true;
        }
        if stored.is_none_or(|stored| city > stored) {
            batch.insert(M_CITY_ACKED, &city.to_be_bytes());
            changed = true;
        }
        if changed {
            self.tree.apply_batch(batch)?;
            let ticket = self.group.written(None);
            self.group.wait_durable(ticket)?;
        }
        Ok(())
    }

    /// The sync client's bookkeeping: parked batch, last sync, uplink rate.
    ///
    /// # Errors
    /// Storage errors, or a record that does not decode.
    pub fn sync_state(&self) -> Result<SyncState, StoreError> {
        let parked = get_open(&self.tree, &self.values, M_PARKED)?
            .map(|v| {
                serde_json::from_slice(&v)
                    .map_err(|e| StoreError::Corrupt(format!("parked batch: {e}")))
            })
            .transpose()?;
        let last_sync_ms = self
            .tree
            .get(M_LAST_SYNC_MS)?
            .map(|v| read_u64(&v).map(|n| i64::from_be_bytes(n.to_be_bytes())))
            .transpose()?;
        let uplink_bytes_per_sec = self
            .tree
            .get(M_UPLINK_BPS)?
            .map(|v| read_u64(&v))
            .transpose()?;
        Ok(SyncState {
            parked,
            last_sync_ms,
            uplink_bytes_per_sec,
        })
    }

    /// Records (or, with `None`, clears) the parked batch, durably: a parked
    /// batch must stay parked across a restart so the agent does not spin.
    ///
    /// # Errors
    /// Storage or sync errors.
    pub fn set_parked(&self, parked: Option<&ParkedBatch>) -> Result<(), StoreError> {
        let writer = self.lock_writer();
        match parked {
            Some(parked) => {
                let json = serde_json::to_vec(parked)
                    .map_err(|e| StoreError::Corrupt(format!("parked batch: {e}")))?;
                self.tree
                    .insert(M_PARKED, self.values.seal(M_PARKED, json)?)?;
            }
            None => {
                self.tree.remove(M_PARKED)?;
            }
        }
        let ticket = self.group.written(None);
        drop(writer);
        self.group.wait_durable(ticket)?;
        Ok(())
    }

    /// Records, durably, when a sync round completed and the measured uplink
    /// rate; `None` leaves the stored value as it is.
    ///
    /// # Errors
    /// Storage or sync errors.
    pub fn record_sync(
        &self,
        completed_at_ms: Option<i64>,
        uplink_bytes_per_sec: Option<u64>,
    ) -> Result<(), StoreError> {
        if completed_at_ms.is_none() && uplink_bytes_per_sec.is_none() {
            return Ok(());
        }
        let writer = self.lock_writer();
        let mut batch = sled::Batch::default();
        if let Some(ms) = completed_at_ms {
            batch.insert(M_LAST_SYNC_MS, &ms.to_be_bytes());
        }
        if let Some(rate) = uplink_bytes_per_sec {
            batch.insert(M_UPLINK_BPS, &rate.to_be_bytes());
        }
        self.tree.apply_batch(batch)?;
        let ticket = self.group.written(None);
        drop(writer);
        self.group.wait_durable(ticket)?;
        Ok(())
    }

    /// One case's view.
    ///
    /// # Errors
    /// Storage errors or a view that does not decode.
    pub fn case(&self, case_id: Uuid) -> Result<Option<CaseView>, StoreError> {
        get_open(&self.tree, &self.values, &key(CASES, case_id.as_bytes()))?
            .map(|v| decode_view(&v))
            .transpose()
    }

    /// Every case of the station this device knows, open and closed.
    ///
    /// # Errors
    /// Storage errors or a view that does not decode.
    pub fn cases(&self) -> Result<Vec<CaseView>, StoreError> {
        self.tree
            .scan_prefix(CASES)
            .map(|item| {
                let (k, v) = item?;
                decode_view(&self.values.open(&k, &v)?)
            })
            .collect()
    }

    /// Every event of one case that is not voided, with those of the files
    /// merged into it, in (hlc, event_id) order.
    ///
    /// # Errors
    /// Storage errors or an event that does not decode.
    pub fn case_events(&self, case_id: Uuid) -> Result<Vec<Event>, StoreError> {
        let overlay = Overlay::new(&self.tree, &self.values);
        let mut out = overlay.live_events(case_id)?;
        let absorbed = overlay.absorbed_into(case_id)?;
        if absorbed.is_empty() {
            return Ok(out);
        }
        for file in absorbed {
            out.extend(overlay.live_events(file)?);
        }
        out.sort_by(|a, b| a.hlc.cmp(&b.hlc).then_with(|| a.event_id.cmp(&b.event_id)));
        Ok(out)
    }

    /// The files merged into `case_id`, ascending.
    ///
    /// # Errors
    /// Storage errors or an event that does not decode.
    pub fn merged_into(&self, case_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        Overlay::new(&self.tree, &self.values).absorbed_into(case_id)
    }

    /// Recomputes every derived key space (`c:`, `k:`, `v:`, `n:`) from the
    /// stored events, in one atomic write, and marks the `n:` index built.
    /// Returns the number of events replayed.
    ///
    /// # Errors
    /// Storage errors or an event that does not decode.
    pub fn rebuild_views(&self) -> Result<usize, StoreError> {
        let writer = self.lock_writer();
        let mut overlay = Overlay::writing(&self.tree, &self.values, self.person_key()?);
        for prefix in DERIVED {
            for item in self.tree.scan_prefix(prefix) {
                let (k, _) = item?;
                overlay.removes.insert(k.to_vec());
            }
        }
        let mut affected = BTreeSet::new();
        let mut replayed = 0;
        for prefix in [OWN, PULLED, transfers::TRANSFERRED] {
            for item in self.tree.scan_prefix(prefix) {
                let (k, v) = item?;
                let n = read_u64(&k[prefix.len()..])?;
                let location = if prefix == OWN {
                    Location::Own(n)
                } else if prefix == PULLED {
                    Location::Pulled(n)
                } else {
                    Location::Transferred(n)
                };
                let event = decode_event(&self.values.open(&k, &v)?)?;
                overlay.index(&event, location, &mut affected)?;
                replayed += 1;
            }
        }
        overlay.refresh_cases(&affected)?;
        overlay.insert(
            M_PERSON_INDEX.to_vec(),
            PERSON_INDEX_VERSION.to_be_bytes().to_vec(),
        );
        self.tree.apply_batch(overlay.into_batch()?)?;
        let ticket = self.group.written(None);
        drop(writer);
        self.group.wait_durable(ticket)?;
        Ok(replayed)
    }

    /// A digest of every derived key and value, to compare views across
    /// rebuilds.
    ///
    /// # Errors
    /// Storage errors.
    pub fn views_snapshot(&self) -> Result<Vec<KeyValue>, StoreError> {
        let mut out = Vec::new();
        for prefix in DERIVED {
            for item in self.tree.scan_prefix(prefix) {
                let (k, v) = item?;
                let v = self.values.open(&k, &v)?;
                out.push((k.to_vec(), v));
            }
        }
        Ok(out)
    }
}

fn decode_view(bytes: &[u8]) -> Result<CaseView, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("case view: {e}")))
}
