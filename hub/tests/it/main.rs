//! The hub's integration tests, one binary: real hubs on ephemeral ports over
//! temporary stores, and the `station-hub` binary, driven through the public
//! API. One module per surface; what they share is in [`fixtures`] (hubs,
//! tokens, devices, clients, the binary) and `events` (valid events built by
//! hand, shared with the projection tests).

#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../events/mod.rs"]
mod events;
mod fixtures;

mod admin;
mod cli;
mod http;
mod query;
mod rebuild_cli;
mod refusals;
mod services;
mod sync;
