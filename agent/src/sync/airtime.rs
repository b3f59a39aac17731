//! Link-rate estimates and the sizes and deadlines derived from them.
//!
//! Rates are in *encoded* (protobuf, before zstd) bytes per second: the unit
//! batches are measured in, so compression is accounted for by the
//! measurement itself.
//!
//! Invariants:
//! - an estimate stays within [`Throughput::FLOOR`] ..= [`Throughput::CEILING`]
//!   whatever it is fed (zero or absurd durations included);
//! - a batch size lies in `min ..= max`, except that `max` wins when the
//!   caller's cap is below the minimum;
//! - a deadline never exceeds its cap and grows with the bytes it covers.

use std::time::Duration;

/// An exponentially weighted moving average of a link's rate.
#[derive(Debug, Clone)]
pub struct Throughput {
    /// The current estimate.
    bytes_per_sec: f64,
    /// Weight of a new sample, in `0 < w ≤ 1`.
    weight: f64,
    /// Whether any sample was taken (the first one replaces the assumption).
    measured: bool,
}

impl Throughput {
    /// The lowest estimate kept: 100 B/s, GPRS at its worst.
    pub const FLOOR: f64 = 100.0;
    /// The highest estimate kept: 125 MB/s (1 Gbit/s).
    pub const CEILING: f64 = 125_000_000.0;

    /// An estimate starting from an assumed rate, not yet measured.
    pub fn assume(bytes_per_sec: f64, weight: f64) -> Self {
        Self {
            bytes_per_sec: clamp_rate(bytes_per_sec),
            weight: if weight.is_finite() {
                weight.clamp(0.01, 1.0)
            } else {
                0.3
            },
            measured: false,
        }
    }

    /// An estimate resumed from a rate measured earlier (say, before a restart).
    pub fn resume(bytes_per_sec: f64, weight: f64) -> Self {
        Self {
            measured: true,
            ..Self::assume(bytes_per_sec, weight)
        }
    }

    /// Folds in one transfer of `bytes` that took `elapsed`. The first sample
    /// replaces the assumed rate; later ones move the average by `weight`.
    pub fn observe(&mut self, bytes: u64, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(0.001);
        if bytes == 0 {
            return;
        }
        // u64 → f64 loses precision only above 2^53 bytes.
        let sample = clamp_rate(bytes as f64 / secs);
        self.bytes_per_sec = if self.measured {
            clamp_rate(self.weight * sample + (1.0 - self.weight) * self.bytes_per_sec)
        } else {
            sample
        };
        self.measured = true;
    }

    /// Halves the estimate after the link failed mid-transfer, so the next
    /// batch is smaller and more likely to fit between two cuts.
    pub fn penalise(&mut self) {
        self.bytes_per_sec = clamp_rate(self.bytes_per_sec / 2.0);
    }

    /// The estimate in bytes per second.
    pub fn bytes_per_sec(&self) -> f64 {
        self.bytes_per_sec
    }

    /// Whether the estimate comes from measurements rather than the assumption.
    pub fn is_measured(&self) -> bool {
        self.measured
    }
}

fn clamp_rate(bytes_per_sec: f64) -> f64 {
    if bytes_per_sec.is_nan() {
        Throughput::FLOOR
    } else {
        bytes_per_sec.clamp(Throughput::FLOOR, Throughput::CEILING)
    }
}

/// The bytes a link moves in `airtime` at `rate`, clamped to `min ..= max`
/// (`max` wins when it is below `min`).
pub fn batch_bytes(rate: &Throughput, airtime: Duration, min: usize, max: usize) -> usize {
    let bytes = rate.bytes_per_sec() * airtime.as_secs_f64();
    // The float is finite and non-negative; `as` saturates at usize::MAX.
    let bytes = bytes as usize;
    bytes.max(min).min(max)
}

/// The time to allow a call carrying `bytes` at `rate`: a fixed allowance
/// for the round trip and the hub's work, plus `safety` times the airtime,
/// capped.
pub fn deadline(
    bytes: usize,
    rate: &Throughput,
    allowance: Duration,
    safety: f64,
    cap: Duration,
) -> Duration {
    let airtime = bytes as f64 / rate.bytes_per_sec() * safety.max(1.0);
    let airtime = Duration::try_from_secs_f64(airtime).unwrap_or(cap);
    allowance.saturating_add(airtime).min(cap)
}
