//! The agent's integration tests, one binary: the durable log, the views,
//! the sans-IO sync machine, the sync client against a stand-in hub, and
//! (with the `cli` feature) the `station-agent` command line as a user runs it.

#![allow(clippy::unwrap_used, missing_docs)]

#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod cli_sync;
mod fixtures;
mod log;
mod signing;
mod sync_client;
mod sync_machine;
mod vault;
mod views;
