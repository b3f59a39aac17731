//! The device's copy of the district directory ([`station_proto::directory`]):
//! which stations hold an open file for a person, by the directory tag of
//! the person's ID number, so that opening a file can warn of a file held
//! elsewhere, offline; and, by the weak tag of the person's name, birth
//! date and gender, of a *possible* duplicate, for people with or without an
//! ID number (the lines do not say their kind: the two kinds of tag are
//! domain-separated, see [`station_proto::directory`]).
//!
//! # Key spaces (in the store's one tree)
//!
//! | key | value |
//! | --- | --- |
//! | `m:directory_key` | *sealed*: the district's directory key (32 bytes), as the hub's last `Hello` gave it |
//! | `m:directory_feed` | the feed's epoch (16 bytes, or none) then `u64` the cursor: what the lines below hold |
//! | `m:directory_stations` | *sealed*: JSON map of station code to name, for the stations the lines name |
//! | `y:` bucket | *sealed*: the lines whose tag begins with `bucket` (`u16`, the first 12 bits of the tag), each the 6-byte tag, a length byte and the station code, sorted |
//!
//! Lines are kept in 4,096 buckets, so no key holds a tag: a key tells
//! only which of 4,096 buckets a line falls in, and a value opens only with
//! the store's data key, like the people's files. A bucket of a district's
//! 100,000 open files holds about 25 lines, some 400 bytes: a check on open
//! reads and opens one.
//!
//! Invariants: a page of the feed (its lines, its epoch and the new
//! cursor) is written in one batch and reported once durable, so a device
//! resumes exactly after the last page it stored; a page that resets the
//! feed drops every line in that same batch; a page with a malformed line
//! changes nothing. The directory key changes only by a `Hello` that names
//! another one, and then the lines, made under the old key, are dropped in
//! the same batch.

use std::collections::{BTreeMap, BTreeSet};

use station_proto::directory::{self, DIRECTORY_TAG_BYTES, DirectoryTag};
use station_proto::person::TagKey;
use station_proto::v1::DirectoryPage;
use station_proto::validate;

use super::{EventLog, StoreError, get_open, key, read_u64};

/// The directory key, sealed.
pub(super) const M_DIRECTORY_KEY: &[u8] = b"m:directory_key";
/// The feed's epoch and cursor.
const M_DIRECTORY_FEED: &[u8] = b"m:directory_feed";
/// Station names, sealed.
pub(super) const M_DIRECTORY_STATIONS: &[u8] = b"m:directory_stations";
/// Buckets of lines, sealed.
pub(super) const DIRECTORY: &[u8] = b"y:";

/// A station that holds an open file for a person, as the directory says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryHolder {
    /// The station's code.
    pub station_code: String,
    /// The station's name, as the hub named it (the code when it did not).
    pub station_name: String,
}

/// What storing a page of the directory did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectoryApplied {
    /// Lines of the page.
    pub lines: usize,
    /// The copy was dropped first (the hub's feed is of another epoch).
    pub reset: bool,
    /// The cursor stored.
    pub cursor: u64,
    /// Caught up with the hub's feed as of this page.
    pub caught_up: bool,
}

/// What the device holds of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirectoryStatus {
    /// The hub gave this device the directory key.
    pub has_key: bool,
    /// Lines held (person and station pairs with an open file).
    pub lines: usize,
    /// Bytes of the sled values holding them (sealed buckets).
    pub bytes: usize,
    /// The cursor in the hub's feed.
    pub cursor: u64,
}

/// The bucket of a tag: its first 12 bits.
fn bucket(tag: &DirectoryTag) -> [u8; 2] {
    (u16::from_be_bytes([tag[0], tag[1]]) >> 4).to_be_bytes()
}

/// The lines of a bucket, sorted.
type Lines = BTreeSet<(DirectoryTag, String)>;

fn encode_lines(lines: &Lines) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len() * (DIRECTORY_TAG_BYTES + 10));
    for (tag, station) in lines {
        out.extend_from_slice(tag);
        // Station codes are validated to 9 digits before they get here.
        out.push(u8::try_from(station.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(station.as_bytes());
    }
    out
}

fn decode_lines(mut bytes: &[u8]) -> Result<Lines, StoreError> {
    let corrupt = || StoreError::Corrupt("a bucket of the district directory".into());
    let mut lines = Lines::new();
    while !bytes.is_empty() {
        let (tag, rest) = bytes
            .split_first_chunk::<DIRECTORY_TAG_BYTES>()
            .ok_or_else(corrupt)?;
        let (len, rest) = rest.split_first().ok_or_else(corrupt)?;
        let len = usize::from(*len);
        let station = rest.get(..len).ok_or_else(corrupt)?;
        let station = std::str::from_utf8(station).map_err(|_| corrupt())?;
        lines.insert((*tag, station.to_string()));
        bytes = &rest[len..];
    }
    Ok(lines)
}

impl EventLog {
    /// The directory key the hub gave, when it gave one.
    fn directory_key(&self) -> Result<Option<TagKey>, StoreError> {
        let Some(bytes) = get_open(&self.tree, &self.values, M_DIRECTORY_KEY)? else {
            return Ok(None);
        };
        let bytes = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| StoreError::Corrupt("the directory key is not 32 bytes".into()))?;
        Ok(Some(TagKey::from_bytes(bytes)))
    }

    /// Keeps the directory key a `Hello` answered (32 bytes; empty: the hub
    /// keeps no directory, and what the device holds stays). Another key
    /// than the one held drops the lines made under it, with the cursor, in
    /// the same durable write.
    ///
    /// # Errors
    /// [`StoreError::BadDirectory`] for a key that is not 32 bytes (nothing
    /// changes); storage errors.
    pub fn set_directory_key(&self, key_bytes: &[u8]) -> Result<bool, StoreError> {
        if key_bytes.is_empty() {
            return Ok(false);
        }
        let new = <[u8; 32]>::try_from(key_bytes).map_err(|_| {
            StoreError::BadDirectory(format!(
                "the directory key has {} bytes, not 32",
                key_bytes.len()
            ))
        })?;
        let _writer = self.lock_writer();
        if self.directory_key()? == Some(TagKey::from_bytes(new)) {
            return Ok(false);
        }
        let mut batch = sled::Batch::default();
        for item in self.tree.scan_prefix(DIRECTORY) {
            batch.remove(item?.0);
        }
        batch.remove(M_DIRECTORY_FEED);
        batch.insert(
            M_DIRECTORY_KEY,
            self.values.seal(M_DIRECTORY_KEY, new.to_vec())?,
        );
        self.tree.apply_batch(batch)?;
        self.group.wait_durable(self.group.written(None))?;
        Ok(true)
    }

    /// The epoch and cursor of the directory's feed the device holds.
    ///
    /// # Errors
    /// Storage errors; a corrupt record.
    pub fn directory_cursor(&self) -> Result<(Vec<u8>, u64), StoreError> {
        let Some(v) = self.tree.get(M_DIRECTORY_FEED)? else {
            return Ok((Vec::new(), 0));
        };
        let at = v
            .len()
            .checked_sub(8)
            .ok_or_else(|| StoreError::Corrupt("directory feed record".into()))?;
        Ok((v[..at].to_vec(), read_u64(&v[at..])?))
    }

    /// Whether the hub gave this device the directory key: it then asks for
    /// the directory with each pull.
    ///
    /// # Errors
    /// Storage errors.
    pub fn keeps_directory(&self) -> Result<bool, StoreError> {
        Ok(self.tree.contains_key(M_DIRECTORY_KEY)?)
    }

    /// Stores a page of the directory's feed, its epoch and cursor in one
    /// atomic write, returning once durable.
    ///
    /// # Errors
    /// [`StoreError::BadDirectory`] for a line without a 6-byte tag or a
    /// valid station code, or a page without a key held (nothing is stored
    /// then); storage or sync errors.
    pub fn apply_directory(&self, page: &DirectoryPage) -> Result<DirectoryApplied, StoreError> {
        let mut changes: BTreeMap<[u8; 2], Vec<(DirectoryTag, &str, bool)>> = BTreeMap::new();
        for line in &page.lines {
            let tag = directory::tag_from_slice(&line.tag).ok_or_else(|| {
                StoreError::BadDirectory(format!(
                    "a line's tag has {} bytes, not {DIRECTORY_TAG_BYTES}",
                    line.tag.len()
                ))
            })?;
            validate::station_code("station_code", &line.station_code)
                .map_err(|e| StoreError::BadDirectory(e.to_string()))?;
            changes.entry(bucket(&tag)).or_default().push((
                tag,
                line.station_code.as_str(),
                line.present,
            ));
        }
        let _writer = self.lock_writer();
        if !self.tree.contains_key(M_DIRECTORY_KEY)? {
            return Err(StoreError::BadDirectory(
                "a page of the directory before its key".into(),
            ));
        }
        let mut batch = sled::Batch::default();
        let mut dropped = BTreeSet::new();
        if page.reset {
            for item in self.tree.scan_prefix(DIRECTORY) {
                let k = item?.0;
                dropped.insert(k.to_vec());
                batch.remove(k);
            }
        }
        for (bucket, lines) in changes {
            let k = key(DIRECTORY, &bucket);
            let mut held = match get_open(&self.tree, &self.values, &k)? {
                Some(bytes) if !dropped.contains(&k) => decode_lines(&bytes)?,
                _ => Lines::new(),
            };
            for (tag, station, present) in lines {
                let line = (tag, station.to_string());
                if present {
                    held.insert(line);
                } else {
                    held.remove(&line);
                }
            }
            if held.is_empty() {
                batch.remove(k);
            } else {
                batch.insert(k.clone(), self.values.seal(&k, encode_lines(&held))?);
            }
        }
        if !page.stations.is_empty() {
            let mut names: BTreeMap<String, String> =
                match get_open(&self.tree, &self.values, M_DIRECTORY_STATIONS)? {
                    Some(bytes) => serde_json::from_slice(&bytes)
                        .map_err(|e| StoreError::Corrupt(format!("directory stations: {e}")))?,
                    None => BTreeMap::new(),
                };
            let before = names.clone();
            for station in &page.stations {
                if validate::station_code("station_code", &station.station_code).is_ok()
                    && !station.name.is_empty()
                {
                    names.insert(station.station_code.clone(), station.name.clone());
                }
            }
            if names != before {
                let json = serde_json::to_vec(&names)
                    .map_err(|e| StoreError::Corrupt(format!("directory stations: {e}")))?;
                batch.insert(
                    M_DIRECTORY_STATIONS,
                    self.values.seal(M_DIRECTORY_STATIONS, json)?,
                );
            }
        }
        let mut feed = page.epoch.clone();
        feed.extend_from_slice(&page.next_cursor.to_be_bytes());
        batch.insert(M_DIRECTORY_FEED, feed);
        self.tree.apply_batch(batch)?;
        self.group.wait_durable(self.group.written(None))?;
        Ok(DirectoryApplied {
            lines: page.lines.len(),
            reset: page.reset,
            cursor: page.next_cursor,
            caught_up: page.next_cursor >= page.head,
        })
    }

    /// The stations the directory says hold an open file for the person of
    /// `id_number` (this device's own station among them, when it does);
    /// `None` when the device holds no directory key yet.
    ///
    /// # Errors
    /// Storage errors; a corrupt record.
    pub fn directory_holders(
        &self,
        id_number: &str,
    ) -> Result<Option<Vec<DirectoryHolder>>, StoreError> {
        let Some(dkey) = self.directory_key()? else {
            return Ok(None);
        };
        if id_number.trim().is_empty() {
            // A person without an ID number is not comparable by number.
            return Ok(Some(Vec::new()));
        }
        self.holders_of_tag(&directory::tag(&dkey, id_number))
            .map(Some)
    }

    /// The stations the directory says hold an open file for a person of
    /// this name, birth date and gender ([`directory::weak_tag`]), with or
    /// without an ID number: possible duplicates (this device's own station
    /// among them, when it holds one); `None` when the device holds no
    /// directory key yet.
    ///
    /// # Errors
    /// Storage errors; a corrupt record.
    pub fn directory_holders_like(
        &self,
        name: &str,
        birth_date: &str,
        gender: i32,
    ) -> Result<Option<Vec<DirectoryHolder>>, StoreError> {
        let Some(dkey) = self.directory_key()? else {
            return Ok(None);
        };
        self.holders_of_tag(&directory::weak_tag(&dkey, name, birth_date, gender))
            .map(Some)
    }

    /// The name the directory gives a station: the hub's, or its code.
    ///
    /// # Errors
    /// Storage errors; a corrupt record.
    pub fn directory_station_name(&self, station_code: &str) -> Result<String, StoreError> {
        let names: BTreeMap<String, String> =
            match get_open(&self.tree, &self.values, M_DIRECTORY_STATIONS)? {
                Some(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("directory stations: {e}")))?,
                None => BTreeMap::new(),
            };
        Ok(names
            .get(station_code)
            .cloned()
            .unwrap_or_else(|| station_code.to_string()))
    }

    /// The stations whose lines have `tag`.
    fn holders_of_tag(&self, tag: &DirectoryTag) -> Result<Vec<DirectoryHolder>, StoreError> {
        let tag = *tag;
        let k = key(DIRECTORY, &bucket(&tag));
        let Some(bytes) = get_open(&self.tree, &self.values, &k)? else {
            return Ok(Vec::new());
        };
        let codes: Vec<String> = decode_lines(&bytes)?
            .into_iter()
            .filter(|(t, _)| *t == tag)
            .map(|(_, station)| station)
            .collect();
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let names: BTreeMap<String, String> =
            match get_open(&self.tree, &self.values, M_DIRECTORY_STATIONS)? {
                Some(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("directory stations: {e}")))?,
                None => BTreeMap::new(),
            };
        Ok(codes
            .into_iter()
            .map(|code| DirectoryHolder {
                station_name: names.get(&code).cloned().unwrap_or_else(|| code.clone()),
                station_code: code,
            })
            .collect())
    }

    /// What the device holds of the directory: lines, bytes, cursor.
    ///
    /// # Errors
    /// Storage errors; a corrupt record.
    pub fn directory_status(&self) -> Result<DirectoryStatus, StoreError> {
        let mut status = DirectoryStatus {
            has_key: self.keeps_directory()?,
            cursor: self.directory_cursor()?.1,
            ..DirectoryStatus::default()
        };
        for item in self.tree.scan_prefix(DIRECTORY) {
            let (k, v) = item?;
            status.bytes += k.len() + v.len();
            status.lines += decode_lines(&self.values.open(&k, &v)?)?.len();
        }
        Ok(status)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_a_bucket_is_twelve_bits() {
        let mut lines = Lines::new();
        lines.insert(([1, 2, 3, 4, 5, 6], "540502001".into()));
        lines.insert(([1, 2, 9, 9, 9, 9], "540502101".into()));
        assert_eq!(decode_lines(&encode_lines(&lines)).unwrap(), lines);
        assert!(decode_lines(&[1, 2, 3]).is_err());
        assert_eq!(bucket(&[0xff, 0xff, 0, 0, 0, 0]), [0x0f, 0xff]);
        assert_eq!(bucket(&[0x12, 0x34, 0, 0, 0, 0]), [0x01, 0x23]);
    }
}
