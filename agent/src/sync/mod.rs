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
//! - [`client`]: the tonic edge: connections (TLS, zstd, keepalive only while
//!   a call is open), the calls themselves, the store; [`sync_once`] for one
//!   round and [`run`] for the daemon.
//!
//! Invariants kept across the modules: push resumes from the hub's
//! `durable_through`, so a batch lost with a dropped link is sent again and
//! ignored by the hub; only events durable on the device are pushed; pulled
//! events and their cursor are stored in one atomic write; a batch the hub
//! refuses for good is parked with its reason and never blocks pulling;
//! every `tonic::Code` the hub answers is classified by [`is_retriable`].

pub mod airtime;
pub mod backoff;
pub mod client;
pub mod machine;

pub use client::{
    SyncError, SyncOptions, SyncReport, connect, endpoint, fault, is_retriable, run, sync_once,
};
