//! Format 1 → format 2, on open, crash-safe.
//!
//! The migration rewrites the log in chunks of consecutive positions, from
//! the lowest not yet migrated. Each chunk is one atomic sled batch that
//! writes the chunk's events as format-2 runs and station records, removes
//! their format-1 keys (`e:`, `r:`, `s:`) and records progress in
//! `m:migrated`. The last batch removes `m:migrated` and sets `m:format` to 2.
//!
//! Invariant, at every point a kill can leave the store: each position
//! `1..=m:hub_seq` is held exactly once, either in format 2 (positions up to
//! `m:migrated`, 0 when absent) or in format 1 (the positions above), and
//! `m:format` says 1 until nothing is left in format 1. Reopening resumes
//! after `m:migrated`. The `i:`, `o:` and `q:` key spaces are the same in
//! both formats and are not touched.

use std::collections::BTreeMap;

use prost::Message as _;
use station_proto::Event;

use super::HubError;
use super::format::{
    FORMAT_VERSION, M_FORMAT, M_MIGRATED, Positions, RunWriter, V1_EVENTS, V1_RECEIVED,
    V1_STATIONS, key, read_i64, read_u64,
};

/// How the migration proceeds.
pub struct MigrationOptions {
    /// Events per atomic step.
    pub chunk_events: usize,
    /// Called after each step is applied, with the last position migrated
    /// (and once more, with the store's last position, when the format is
    /// switched).
    pub after_step: Option<Box<dyn FnMut(u64) + Send>>,
}

impl Default for MigrationOptions {
    fn default() -> Self {
        Self {
            chunk_events: 4096,
            after_step: None,
        }
    }
}

impl std::fmt::Debug for MigrationOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrationOptions")
            .field("chunk_events", &self.chunk_events)
            .finish_non_exhaustive()
    }
}

/// Migrates the format-1 `tree` to format 2, resuming a migration a crash
/// interrupted.
///
/// # Errors
/// Storage errors, or [`HubError::Corrupt`] for a format-1 store whose
/// positions do not follow on from each other or whose events do not decode.
pub(crate) fn from_format_1(
    tree: &sled::Tree,
    mut options: MigrationOptions,
) -> Result<(), HubError> {
    let mut done = tree.get(M_MIGRATED)?.map_or(Ok(0), |v| read_u64(&v))?;
    let chunk_events = options.chunk_events.max(1);
    loop {
        let start = key(V1_EVENTS, &[&(done + 1).to_be_bytes()]);
        let mut batch = sled::Batch::default();
        let mut run: Option<RunWriter> = None;
        let mut streams: BTreeMap<String, Positions> = BTreeMap::new();
        let mut last = done;
        for item in tree.range(start..).take(chunk_events) {
            let (k, raw) = item?;
            if !k.starts_with(V1_EVENTS) {
                break;
            }
            let pos = read_u64(&k[V1_EVENTS.len()..])?;
            if pos != last + 1 {
                return Err(HubError::Corrupt(format!(
                    "format-1 log: position {pos} after {last}"
                )));
            }
            let received_key = key(V1_RECEIVED, &[&pos.to_be_bytes()]);
            let received = tree.get(&received_key)?.map(|v| read_i64(&v)).transpose()?;
            let event = Event::decode(raw.as_ref())
                .map_err(|e| HubError::Corrupt(format!("event {pos}: {e}")))?;
            let fits = run
                .as_ref()
                .is_some_and(|r| r.received_at_ms() == received && !r.is_full_for(raw.len()));
            if !fits {
                if let Some(full) = run.take() {
                    super::write_run(&mut batch, full, std::mem::take(&mut streams));
                }
                run = Some(RunWriter::new(pos, received));
            }
            if let Some(current) = &mut run {
                current.push(&raw);
            }
            streams
                .entry(event.station_code.clone())
                .or_default()
                .push(pos);
            batch.remove(k);
            batch.remove(received_key);
            batch.remove(key(
                V1_STATIONS,
                &[event.station_code.as_bytes(), &pos.to_be_bytes()],
            ));
            last = pos;
        }
        let Some(run) = run else {
            break;
        };
        super::write_run(&mut batch, run, streams);
        batch.insert(M_MIGRATED, &last.to_be_bytes());
        tree.apply_batch(batch)?;
        done = last;
        if let Some(after_step) = &mut options.after_step {
            after_step(done);
        }
    }
    let mut batch = sled::Batch::default();
    batch.remove(M_MIGRATED);
    batch.insert(M_FORMAT, &FORMAT_VERSION.to_be_bytes());
    tree.apply_batch(batch)?;
    if let Some(after_step) = &mut options.after_step {
        after_step(done);
    }
    Ok(())
}
