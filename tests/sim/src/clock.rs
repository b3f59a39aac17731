//! The simulated clock: "now" for the demo's hub and devices, which follows
//! the simulated days instead of the machine's time while the district's
//! field work is played, so that receipt times, last contact, clock skew
//! and the entry-to-receipt lag read as they would in a real district.
//!
//! Invariants: until [`SimClock::set`] is first called, and again after
//! [`SimClock::release`], it reads the system clock; it is set only by the
//! program that made it (never from the wire), and never beyond the system
//! clock's reading, so that what a simulation stamps is never in the future
//! once it hands over to real time.

use std::sync::atomic::{AtomicI64, Ordering};

use station_agent::clock::{Clock, SystemClock};

/// The reading that means "follow the system clock".
const FOLLOW_SYSTEM: i64 = i64::MIN;

/// A clock the simulation sets; see the module's invariants.
#[derive(Debug)]
pub struct SimClock {
    at_ms: AtomicI64,
}

impl Default for SimClock {
    fn default() -> Self {
        Self {
            at_ms: AtomicI64::new(FOLLOW_SYSTEM),
        }
    }
}

impl SimClock {
    /// A clock that reads the system clock until set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the clock read `ms` (ms since the epoch), or the system
    /// clock's reading when that is earlier.
    pub fn set(&self, ms: i64) {
        let capped = ms.min(SystemClock.now_ms()).max(FOLLOW_SYSTEM + 1);
        self.at_ms.store(capped, Ordering::SeqCst);
    }

    /// Makes the clock follow the system clock again.
    pub fn release(&self) {
        self.at_ms.store(FOLLOW_SYSTEM, Ordering::SeqCst);
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        match self.at_ms.load(Ordering::SeqCst) {
            FOLLOW_SYSTEM => SystemClock.now_ms(),
            at => at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_is_set_to_never_beyond_the_system_clock() {
        let clock = SimClock::new();
        let before = SystemClock.now_ms();
        assert!(clock.now_ms() >= before);
        clock.set(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.set(i64::MAX);
        let now = clock.now_ms();
        assert!(now >= before && now <= SystemClock.now_ms());
        clock.release();
        assert!(clock.now_ms() >= now);
    }
}
