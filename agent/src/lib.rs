//! station-agent: the node engine every station phone and PC runs.
//!
//! A social worker's entries are validated, appended to a durable,
//! append-only event log on sled, and folded into local views (the station's
//! cases, their tier and next due follow-up) that work with no signal at all.
//!
//! # Layout
//!
//! - [`store`]: the on-disk format and [`store::EventLog`], the only code that
//!   touches sled: gap-free own seqs, idempotent appends, pulled events stored
//!   with their cursor, derived views written in the same atomic batch.
//! - [`seal`]: encryption at rest: each store's data key, wrapped by a key
//!   from outside it, and the AEAD that seals every value that can hold
//!   personal data, bound to its key; used by this store and the hub's.
//! - `prompt` (feature `prompt`, on with `cli`): the passphrase asked on the
//!   terminal when a command line has no other key for an encrypted store.
//! - [`durable`]: group commit — sled flush plus fsync, shared by concurrent
//!   writers, so "saved" means on disk after power loss.
//! - [`clock`]: where "now" comes from: the system clock, or the one a
//!   simulation gives.
//! - [`hlc`]: the hybrid logical clock that stamps events.
//! - [`views`]: pure folds from a case's events to its view; due follow-ups.
//! - [`engine`]: [`engine::Agent`], identity + log + views + state checks;
//!   what the CLI and the mobile bindings call.
//! - [`sync`]: sync with the hub: a sans-IO state machine (batches sized by
//!   measured airtime, deadlines, backoff, parking) and its tonic edge, one
//!   round ([`sync::sync_once`]) or the daemon ([`sync::run`]).
//! - `src/bin/station-agent/`: the `station-agent` command line (arguments,
//!   entry building, printing), built with the default `cli` feature; without
//!   it the crate is the engine alone, with none of the CLI's dependencies.

pub mod clock;
pub mod durable;
pub mod engine;
pub mod hlc;
#[cfg(feature = "prompt")]
pub mod prompt;
pub mod seal;
pub mod store;
pub mod sync;
pub mod views;

pub use engine::{Agent, AgentError, InitOptions, Status};
pub use store::{DeviceIdentity, EventLog, HubLogChange, OpenOptions, StoreError};
