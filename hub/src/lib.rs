//! station-hub: the city hub. It stores every station's events once and builds
//! the city-wide projections the civil-affairs bureau reads.
//!
//! # Layout
//!
//! The hub is the root node of the sync tree: it reuses the agent's storage
//! code and serves the `station.v1` services generated in `station-proto`.
//! Ingest, projections and the bureau's read side are built on this crate.

/// The version of the hub, reported to devices and in logs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The `station.v1` services the hub serves.
pub const SERVICES: &[&str] = &["station.v1.Sync"];
