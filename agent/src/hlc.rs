//! Hybrid logical clock: a 64-bit timestamp that is wall-clock milliseconds in
//! its upper 48 bits and a logical counter in its lower 16.
//!
//! Invariants: every value a clock issues is greater than every value it issued
//! or observed before, whatever the wall clock does; values compare as
//! integers. HLCs order events for display and break ties across devices; they
//! never decide what the hub acknowledges.

/// Bits of the logical counter.
const LOGICAL_BITS: u32 = 16;

/// One device's hybrid logical clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hlc {
    /// The greatest value issued or observed so far.
    last: u64,
}

impl Hlc {
    /// A clock that continues after `last` (as stored with the log).
    pub fn resume(last: u64) -> Self {
        Self { last }
    }

    /// The greatest value issued or observed so far.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Issues the timestamp of a new local event at wall time `now_ms`.
    pub fn tick(&mut self, now_ms: i64) -> u64 {
        let physical = u64::try_from(now_ms.max(0)).unwrap_or(0) << LOGICAL_BITS;
        self.last = if physical > self.last {
            physical
        } else {
            self.last.saturating_add(1)
        };
        self.last
    }

    /// Takes in a timestamp seen on another device's event.
    pub fn observe(&mut self, remote: u64) {
        self.last = self.last.max(remote);
    }

    /// The wall-clock milliseconds part of an HLC value.
    pub fn millis(value: u64) -> u64 {
        value >> LOGICAL_BITS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_grow_when_the_wall_clock_goes_back() {
        let mut clock = Hlc::default();
        let a = clock.tick(1_000);
        let b = clock.tick(900);
        let c = clock.tick(900);
        assert!(a < b && b < c);
        assert_eq!(Hlc::millis(c), 1_000);
    }

    #[test]
    fn observing_a_later_remote_value_moves_the_clock_past_it() {
        let mut clock = Hlc::default();
        clock.tick(1_000);
        let remote = 5_000 << LOGICAL_BITS;
        clock.observe(remote);
        assert!(clock.tick(1_001) > remote);
    }
}
