//! Rate limits on refused calls, per address and per presented token id,
//! and their log: see [`Refusals`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::Throttle;

/// How many refused calls an address may make in a burst, and then one per
/// [`REFUSAL_PERIOD_ADDRESS`]; past that its calls are refused unread for a
/// while (429 on HTTP, `RESOURCE_EXHAUSTED` on gRPC).
pub const REFUSAL_BURST_ADDRESS: u32 = 20;
/// See [`REFUSAL_BURST_ADDRESS`].
pub const REFUSAL_PERIOD_ADDRESS: Duration = Duration::from_secs(1);
/// How many refused calls may name one token id in a burst (a wrong
/// secret, a revoked token), and then one per [`REFUSAL_PERIOD_TOKEN`].
pub const REFUSAL_BURST_TOKEN: u32 = 10;
/// See [`REFUSAL_BURST_TOKEN`].
pub const REFUSAL_PERIOD_TOKEN: Duration = Duration::from_secs(6);
/// Most addresses and token ids kept refused at once; past that the oldest
/// holds end first.
const MAX_HELD: usize = 16_384;

/// What a refused call is counted against: its address, and the token id it
/// presented, if it presented one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Refused {
    Address(IpAddr),
    Token(String),
}

/// Rate limits on refused calls (unauthenticated calls, failed logins), per
/// address and per presented token id, and their log: one line per
/// [`LOG_INTERVAL`](super::LOG_INTERVAL) with a count, never one per call.
///
/// Invariants: a caller over a limit is answered without its token being
/// read until its hold ends; holds are bounded in number ([`MAX_HELD`]), so
/// many addresses cannot grow the hub's memory without bound; a call that
/// authenticates is never counted.
pub struct Refusals {
    /// Which side, for the log: `grpc` or `http`.
    side: &'static str,
    /// Refusals per address.
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    /// Refusals per presented token id.
    by_token: DefaultKeyedRateLimiter<String>,
    /// Who is over a limit, and until when.
    held: Mutex<HashMap<Refused, Instant>>,
    /// The log of refusals.
    logged: Throttle,
    /// The log of holds.
    holds: Throttle,
}

impl std::fmt::Debug for Refusals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refusals")
            .field("side", &self.side)
            .finish_non_exhaustive()
    }
}

/// The token id a bearer credential presents (`Bearer <id>.<secret>`),
/// when it has the shape of one: 12 lower-case hex digits.
pub fn presented_token_id(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let (id, _) = token.trim().split_once('.')?;
    (id.len() == 12 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(id)
}

impl Refusals {
    /// The limits of [`REFUSAL_BURST_ADDRESS`] and [`REFUSAL_BURST_TOKEN`],
    /// logging as `side`.
    pub fn new(side: &'static str) -> Self {
        let quota = |burst: u32, period: Duration| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            Quota::with_period(period)
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                .allow_burst(burst)
        };
        Self {
            side,
            by_address: RateLimiter::keyed(quota(REFUSAL_BURST_ADDRESS, REFUSAL_PERIOD_ADDRESS)),
            by_token: RateLimiter::keyed(quota(REFUSAL_BURST_TOKEN, REFUSAL_PERIOD_TOKEN)),
            held: Mutex::new(HashMap::new()),
            logged: Throttle::default(),
            holds: Throttle::default(),
        }
    }

    /// Whether a call from `address` presenting `token_id` may be checked:
    /// `Err(wait)` while either is held for too many refusals.
    ///
    /// # Errors
    /// How long the hold still lasts.
    pub fn admit(&self, address: Option<IpAddr>, token_id: Option<&str>) -> Result<(), Duration> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let keys = address
            .map(Refused::Address)
            .into_iter()
            .chain(token_id.map(|id| Refused::Token(id.to_string())));
        let wait = keys
            .filter_map(|key| held.get(&key))
            .filter_map(|until| until.checked_duration_since(now))
            .max();
        match wait {
            Some(wait) if !wait.is_zero() => Err(wait),
            _ => Ok(()),
        }
    }

    /// Counts a refused call from `address` presenting `token_id`, refused
    /// because `reason`; holds either once over its limit, and logs once
    /// per interval.
    pub fn refused(&self, address: Option<IpAddr>, token_id: Option<&str>, reason: &str) {
        if let Some(count) = self.logged.note() {
            tracing::warn!(
                side = self.side,
                count,
                last_reason = reason,
                "calls refused: not authenticated (one line per interval)"
            );
        }
        let now = self.by_address_now();
        let mut holds = Vec::new();
        if let Some(address) = address
            && let Err(not_until) = self.by_address.check_key(&address)
        {
            holds.push((Refused::Address(address), not_until.wait_time_from(now)));
        }
        if let Some(id) = token_id.map(str::to_string)
            && let Err(not_until) = self.by_token.check_key(&id)
        {
            holds.push((Refused::Token(id), not_until.wait_time_from(now)));
        }
        if holds.is_empty() {
            return;
        }
        if let Some(count) = self.holds.note() {
            tracing::warn!(
                side = self.side,
                count,
                "too many refused calls: callers held (one line per interval)"
            );
        }
        let now = Instant::now();
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.len() >= MAX_HELD {
            held.retain(|_, until| *until > now);
            self.by_address.retain_recent();
            self.by_token.retain_recent();
        }
        for (key, wait) in holds {
            if held.len() < MAX_HELD {
                // Held at least one period, so a burst does not start over at once.
                held.insert(key, now + wait.max(REFUSAL_PERIOD_ADDRESS));
            }
        }
    }

    fn by_address_now(&self) -> governor::clock::QuantaInstant {
        governor::clock::Clock::now(self.by_address.clock())
    }
}
