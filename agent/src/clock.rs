//! Clocks: where a device's own times and the hub's receipt times come from.
//!
//! Every part that stamps a time with "now" — a device's log (its hybrid
//! clock, the times of its sync reports and of the clock it tells the hub),
//! the hub's Sync service (receipt times, last contact, clock skew) — reads
//! it from the [`Clock`] it was built with, the [`SystemClock`] unless the
//! program embedding it chooses another.
//!
//! Invariant: a clock is chosen by the program that builds the log or the
//! service, never by anything received over the wire; only a simulation
//! (the simulated district and its tests) gives one that is not the system
//! clock, so that receipt times follow its simulated days.

use std::sync::Arc;

use station_proto::ids::{self, Uuid};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// A new time-ordered (v7) id stamped with [`Clock::now_ms`], for an
    /// event drawn now.
    fn new_v7(&self) -> Uuid {
        ids::v7_at(u64::try_from(self.now_ms()).unwrap_or(0))
    }
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    /// Ordered within a millisecond too (the uuid crate's shared context).
    fn new_v7(&self) -> Uuid {
        Uuid::now_v7()
    }
}

/// A clock shared by the parts of one program.
pub type SharedClock = Arc<dyn Clock>;

/// The machine's clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_reads_the_machine_time() {
        let before = chrono::Utc::now().timestamp_millis();
        let now = system().now_ms();
        let after = chrono::Utc::now().timestamp_millis();
        assert!((before..=after).contains(&now), "{before} {now} {after}");
    }
}
