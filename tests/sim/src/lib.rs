//! station-sim: station-sync's simulated district, the main job's library.
//!
//! # Layout
//! - [`clock`]: the simulated clock the demo's hub and devices read "now"
//!   from while the simulated days are played;
//! - [`weaklink`]: a userspace TCP proxy with bandwidth caps, latency, cuts
//!   and stalls, the 2G links of the townships;
//! - [`district`]: months of a district's field work drawn from a seed, with
//!   a ledger of what was entered, which the hub's indicators must equal;
//! - [`fieldwork`]: a simpler stream of one station's valid event bodies, for
//!   tests and benchmarks;
//! - [`demo`]: the whole system on a simulated district (a hub and its
//!   servers, one agent per device syncing through weak links), which the
//!   `station-demo` binary runs;
//! - [`relayed`]: the station relay of one township in the demo, whose
//!   uplink is down for a stretch of the days.
//!
//! Invariant: what the generators call valid is what `station_proto::validate`
//! accepts; this crate builds neither SQLite nor UniFFI, only the benchmark
//! (`station-bench`) does.

pub mod clock;
pub mod demo;
pub mod district;
pub mod fieldwork;
pub mod relayed;
pub mod weaklink;
