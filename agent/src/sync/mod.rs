//! Sync with the hub over weak links: push the own log, pull the station's
//! stream, in small acknowledged unary calls.
//!
//! # Layout
//!
//! - [`machine`]: the sans-IO core, a pure state machine deciding batch
//!   sizes, deadlines, retries, parking and resumption; tested
//!   deterministically with no network and no clock.
//! - [`airtime`]: the measured link rates and the sizes and deadlines derived
//!   from them.
//! - [`backoff`]: capped exponential backoff with full jitter from a seeded
//!   generator.
//! - [`options`]: what a round is told ([`SyncOptions`]) and what it
//!   reports ([`SyncReport`], [`SyncError`]).
//! - [`classify`]: which `tonic::Code` is worth retrying ([`is_retriable`])
//!   and the machine's [`machine::Fault`] for a failed call ([`fault`]).
//! - [`compress`]: pushed batches compressed at a higher zstd level than
//!   tonic's, as standard gRPC message compression.
//! - [`edge`]: the tonic edge: connections (TLS, zstd, keepalive only while
//!   a call is open), the calls themselves, the store; [`sync_once`] for one
//!   round.
//! - [`daemon`]: [`run`], rounds on a schedule with a long poll between.
//! - [`discover`]: the station relay found on the LAN with mDNS, put before
//!   the configured addresses.
//!
//! Imports point one way: `airtime`, `backoff` ← `machine` ← `classify` ←
//! `options`, `compress` ← `edge` ← `daemon`. The machine knows nothing of tonic, the
//! options or the edge: they drive it.
//!
//! Invariants kept across the modules: push resumes from the hub's
//! `durable_through`, so a batch lost with a dropped link is sent again and
//! ignored by the hub; only events durable on the device are pushed; pulled
//! events and their cursor are stored in one atomic write; a batch the hub
//! refuses for good is parked with its reason and never blocks pulling;
//! every `tonic::Code` the hub answers is classified by [`is_retriable`].

pub mod airtime;
pub mod backoff;
pub mod classify;
pub mod compress;
pub mod daemon;
pub mod discover;
pub mod edge;
pub mod machine;
pub mod options;

pub use classify::{fault, is_retriable};
pub use daemon::{Rediscovery, run, run_rediscovering};
pub use edge::{connect, endpoint, sync_once};
pub use options::{SyncError, SyncOptions, SyncReport, Wiped};
