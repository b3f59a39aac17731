//! station-tests: end-to-end tests of station-sync across real processes.
//!
//! Helpers shared by the tests in `tests/tests/`: locating the workspace's
//! binaries built by cargo, and the ack line `crash-appender` prints.

#[path = "../sim/src/demo.rs"]
pub mod demo;
pub mod district;
pub mod fieldwork;
pub mod weaklink;

use std::path::PathBuf;

/// The path of a binary of this workspace built in the same profile as the
/// running test (`target/debug/station-agent`, say).
pub fn workspace_binary(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("."));
    // current_exe is target/<profile>/deps/<test>-<hash>.
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

/// The line `crash-appender` prints once an event is durable: `ack <origin_seq> <event_id>`.
pub fn ack_line(origin_seq: u64, event_id: station_proto::ids::Uuid) -> String {
    format!("ack {origin_seq} {event_id}")
}

/// Reads a line printed by `crash-appender` (see [`ack_line`]); `None` when it
/// is not a well-formed ack.
pub fn parse_ack_line(line: &str) -> Option<(u64, station_proto::ids::Uuid)> {
    let mut words = line.split_ascii_whitespace();
    if words.next()? != "ack" {
        return None;
    }
    let origin_seq = words.next()?.parse().ok()?;
    let event_id = words.next()?.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    Some((origin_seq, event_id))
}
