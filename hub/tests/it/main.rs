//! The hub's integration tests, one binary: real hubs on ephemeral ports over
//! temporary stores, and the `station-hub` binary, driven through the public
//! API: one module per surface, the projections (exact figures, every
//! interleaving, the fold against proto's), and the log as stored (the format-1
//! fixture's migration, a crash during it, the log against its model). What
//! they share is in [`fixtures`] (hubs, tokens, devices, clients, the binary)
//! and [`events`] (valid events built by hand).

#![allow(clippy::unwrap_used, missing_docs)]

mod events;
mod fixtures;

mod admin;
mod audit;
mod backup;
mod cli;
mod conflict;
mod corrupt;
mod directory;
mod diskfull;
mod duplicates_across;
mod health_clock;
mod hostile;
mod http;
mod privacy;
mod projection_equivalence;
mod projections;
mod query;
mod rebuild_cli;
mod refusals;
mod relay;
mod review;
mod services;
mod signatures;
mod store;
mod sync;
mod takeover;
mod transfers;
mod trust;
mod vault;
mod web;
mod wipe;
