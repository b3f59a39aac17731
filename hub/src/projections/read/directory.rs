//! The district directory's delta feed: the lines (directory tag, station)
//! whose presence changed after a device's cursor, each with its presence
//! now, in feed order.
//!
//! Invariants: read under the read gate, so a page ends at a whole batch or
//! inside the feed as one batch left it; a cursor of another epoch (or past
//! the feed's end, which no hub handed out) is answered from the feed's
//! start with `reset` set; a page holds at most the entries asked for, and
//! its `next_cursor` is the last position it lists, or the feed's head when
//! it lists everything after the cursor. No ID number is read or answered:
//! the lines hold keyed tags, and reading them is not a read of a person's
//! record (it is not audited; a device holds its district's directory).

use crate::projections::Projections;
use crate::projections::codec;
use crate::projections::error::ProjectionError;
use crate::projections::layout::{self, key};
use station_proto::directory::DirectoryTag;

/// One line of the directory as a delta lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryChange {
    /// The person's directory tag.
    pub tag: DirectoryTag,
    /// The station's code.
    pub station_code: String,
    /// Whether the person has an open file at the station now.
    pub present: bool,
}

/// A page of the directory's feed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirectoryDelta {
    /// The feed's epoch (16 bytes; empty while the projections hold
    /// nothing).
    pub epoch: Vec<u8>,
    /// The device's copy is of another epoch: drop it, then apply this
    /// page, which starts at the feed's beginning.
    pub reset: bool,
    /// The lines changed after the cursor, in feed order.
    pub changes: Vec<DirectoryChange>,
    /// The cursor to send next time.
    pub next_cursor: u64,
    /// The feed's last position: caught up when `next_cursor == head`.
    pub head: u64,
}

impl Projections {
    /// At most `max_changes` lines of the directory changed after `after`
    /// in the feed of `epoch` (see [`DirectoryDelta`]).
    ///
    /// # Errors
    /// Storage errors; a corrupt record.
    pub fn directory_delta(
        &self,
        epoch: &[u8],
        after: u64,
        max_changes: usize,
    ) -> Result<DirectoryDelta, ProjectionError> {
        let tree = self.read_gate();
        let current = tree
            .get(layout::M_DIRECTORY_EPOCH)?
            .map(|v| v.to_vec())
            .unwrap_or_default();
        let head = match tree.get(layout::M_DIRECTORY_HEAD)? {
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| ProjectionError::Corrupt("directory head".into()))?,
            None => 0,
        };
        let reset = current != epoch || after > head;
        let after = if reset { 0 } else { after };
        let max_changes = max_changes.max(1);
        let from = key(
            layout::DIRECTORY_FEED,
            &[&(after.saturating_add(1)).to_be_bytes()],
        );
        let mut changes = Vec::new();
        let mut next_cursor = head;
        for item in tree.range(from..) {
            let (k, v) = item?;
            let Some(position) = k.strip_prefix(layout::DIRECTORY_FEED) else {
                break;
            };
            if changes.len() == max_changes {
                break;
            }
            let position = <[u8; 8]>::try_from(position)
                .map(u64::from_be_bytes)
                .map_err(|_| ProjectionError::Corrupt("directory feed key".into()))?;
            let (tag, present, station_code) = codec::decode_directory_change(&v)?;
            changes.push(DirectoryChange {
                tag,
                station_code,
                present,
            });
            next_cursor = position;
        }
        if changes.len() < max_changes {
            next_cursor = head;
        }
        Ok(DirectoryDelta {
            epoch: current,
            reset,
            changes,
            next_cursor,
            head,
        })
    }
}
