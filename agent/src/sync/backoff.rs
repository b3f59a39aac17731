//! Capped exponential backoff with full jitter, drawn from a small seeded
//! random source so that tests replay the exact same delays.
//!
//! Invariants:
//! - the n-th delay since the last [`Backoff::reset`] (counting from 0) is drawn
//!   uniformly from `0 ..= min(cap, base × 2ⁿ)` ("full jitter": devices that
//!   lost the link together do not come back together);
//! - no delay ever exceeds `cap`, however many failures in a row;
//! - the same seed gives the same sequence of delays.

use std::time::Duration;

/// SplitMix64: a tiny, fast, seedable generator. Jitter needs spread, not
/// secrecy, and a fixed algorithm keeps seeded tests stable across crate
/// upgrades.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    /// The generator's whole state.
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0 ..= max`, near-uniform (the modulo bias is below
    /// 2⁻³² for the millisecond ranges used here).
    pub fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }
}

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The ceiling of the first delay after a success.
    base: Duration,
    /// No delay is longer than this.
    cap: Duration,
    /// Failures since the last reset: the exponent of the next ceiling.
    failures: u32,
    /// Draws the jitter.
    rng: SplitMix64,
}

impl Backoff {
    /// A backoff whose first ceiling is `base`, doubling up to `cap`.
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Self {
        Self {
            base,
            cap: cap.max(base),
            failures: 0,
            rng: SplitMix64::new(seed),
        }
    }

    /// The ceiling the next delay is drawn under: `min(cap, base × 2ⁿ)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Counts one more failure and draws how long to wait before trying again.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(self.rng.up_to(ceiling_ms))
    }

    /// Failures since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets the failures: called after progress (an acknowledged push, a
    /// stored pull page), not after a mere Hello, so that a link that answers
    /// Hello but drops every batch still backs off.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}
