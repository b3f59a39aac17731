//! Integration tests of station-sim, one module per suite: the weak-link
//! simulator on real loopback sockets, and the demo end to end (its library
//! and the `station-demo` binary).

#![allow(clippy::unwrap_used, missing_docs)]

mod demo;
mod weaklink;
