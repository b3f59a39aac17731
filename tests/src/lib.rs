//! station-tests: end-to-end tests of station-sync across real processes.
//!
//! The tests (`tests/it/`) run real agents and hubs, and the helper binaries
//! of this crate (`crash-appender`, `sync-agent`, `sync-hub`) as processes
//! they kill. This library holds what a binary and a test must agree on: the
//! ack line `crash-appender` prints once an event is durable.

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
