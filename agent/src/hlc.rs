//! Hybrid logical clock: a 64-bit timestamp that is wall-clock milliseconds in
//! its upper 48 bits and a logical counter in its lower 16.
//!
//! Invariants: every value a clock issues is greater than every value it issued
//! or observed before, whatever the wall clock does; values compare as
//! integers. HLCs order events for display and break ties across devices; they
//! never decide what the hub acknowledges.
//!
//! A clock never runs more than [`MAX_CLOCK_SKEW_MS`] ahead of the device's
//! wall clock because of others: a value seen on another device's event is
//! taken in only up to that bound, and a stored value beyond it (left by a
//! build that had no bound) is not resumed from. So one event with a clock far
//! in the future cannot drag the station's clocks to the end of the range,
//! where every later event would tie.

use station_proto::validate::{HLC_LOGICAL_BITS as LOGICAL_BITS, MAX_CLOCK_SKEW_MS};

/// One device's hybrid logical clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hlc {
    /// The greatest value issued or observed so far.
    last: u64,
}

impl Hlc {
    /// A clock that continues after `last` (as stored with the log), or from
    /// the wall time `now_ms` when `last` runs beyond the skew bound.
    pub fn resume(last: u64, now_ms: i64) -> Self {
        if last > Self::bound(now_ms) {
            return Self {
                last: Self::physical(now_ms),
            };
        }
        Self { last }
    }

    /// The greatest value issued or observed so far.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Issues the timestamp of a new local event at wall time `now_ms`.
    pub fn tick(&mut self, now_ms: i64) -> u64 {
        let physical = Self::physical(now_ms);
        self.last = if physical > self.last {
            physical
        } else {
            self.last.saturating_add(1)
        };
        self.last
    }

    /// Takes in a timestamp seen on another device's event at wall time
    /// `now_ms`, up to [`MAX_CLOCK_SKEW_MS`] ahead of it.
    pub fn observe(&mut self, remote: u64, now_ms: i64) {
        self.last = self.last.max(remote.min(Self::bound(now_ms)));
    }

    /// The first value of wall time `now_ms`.
    fn physical(now_ms: i64) -> u64 {
        u64::try_from(now_ms.max(0)).unwrap_or(0) << LOGICAL_BITS
    }

    /// The greatest value a clock may reach at wall time `now_ms`.
    fn bound(now_ms: i64) -> u64 {
        let ms = u64::try_from(now_ms.saturating_add(MAX_CLOCK_SKEW_MS).max(0)).unwrap_or(0);
        ms.checked_shl(LOGICAL_BITS)
            .filter(|v| v >> LOGICAL_BITS == ms)
            .map_or(u64::MAX, |v| v | ((1 << LOGICAL_BITS) - 1))
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
        clock.observe(remote, 1_000);
        assert!(clock.tick(1_001) > remote);
    }

    #[test]
    fn a_remote_value_beyond_the_skew_moves_the_clock_only_to_the_bound() {
        let now = 1_750_000_000_000;
        let mut clock = Hlc::default();
        clock.observe(u64::MAX, now);
        let bound = (now + MAX_CLOCK_SKEW_MS) as u64;
        assert_eq!(Hlc::millis(clock.last()), bound);
        let a = clock.tick(now);
        let b = clock.tick(now);
        assert!(
            a < b && b < u64::MAX,
            "the clock keeps counting, it never saturates"
        );
    }

    #[test]
    fn a_stored_value_beyond_the_skew_is_not_resumed_from() {
        let now = 1_750_000_000_000;
        assert_eq!(
            Hlc::resume(u64::MAX, now).last(),
            (now as u64) << LOGICAL_BITS
        );
        let near = ((now + 1_000) as u64) << LOGICAL_BITS;
        assert_eq!(Hlc::resume(near, now).last(), near);
    }
}
