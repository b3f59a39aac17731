//! Sync with the hub from the apps: `configure` stores the hub address and
//! device token, `sync_now` runs one round of the agent's sync client on a
//! runtime the library owns.
//!
//! Invariants:
//! - `sync_now` returns within the store's sync bound: the round's retries
//!   get half of it, every call's deadline is capped by it, and the whole
//!   round is cut at the bound (cutting is safe: every store write of a round
//!   is atomic and everything sent is idempotent on the hub);
//! - rounds never overlap: the runtime's lock is held for the whole round;
//! - the runtime (one worker thread) starts at the first `sync_now`, so a
//!   store that only records entries starts no thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use station_agent::AgentError;
use station_agent::seal::Vault;
use station_agent::sync::{SyncOptions, endpoint, sync_once};

use crate::error::FieldError;
use crate::store::{FieldStore, lock};
use crate::views::SyncReport;

/// The longest device token accepted, in characters.
const TOKEN_MAX: usize = 512;

/// The longest retry delay within a round: a phone user waits on the round.
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// The agent's sync options for one bounded round from a phone.
fn round_options(hub_url: String, token: Option<String>, bound: Duration) -> SyncOptions {
    let mut options = SyncOptions::new(hub_url, token);
    let half = bound / 2;
    options.retry_budget = half;
    options.call_timeout = half;
    options.connect_timeout = (bound / 4).clamp(Duration::from_secs(1), Duration::from_secs(15));
    options.backoff_cap = BACKOFF_CAP.min(half);
    options.backoff_base = options.backoff_base.min(options.backoff_cap);
    // One round pulls what there is and returns; no waiting on the hub.
    options.long_poll = Duration::ZERO;
    options
}

fn start_runtime() -> Result<tokio::runtime::Runtime, FieldError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .thread_name("station-sync")
        .enable_all()
        .build()
        .map_err(|e| FieldError::Internal {
            reason: format!("cannot start the sync runtime: {}", e.kind()),
        })
}

#[uniffi::export]
impl FieldStore {
    /// Stores the hub address and this device's token (from
    /// `station-hub enroll`), durably; later syncs use them. `hub_url` may
    /// list several addresses separated by commas, tried in order each
    /// sync: the station relay's first, then the hub's
    /// (`http://192.168.1.10:7401,https://hub.example:7400`).
    ///
    /// # Errors
    /// [`FieldError::InvalidInput`] on `hub_url` (an address that is not an
    /// `http://` or `https://` address with a host) or `token` (empty, too
    /// long, or not printable ASCII); [`FieldError::Storage`].
    pub fn configure(&self, hub_url: String, token: String) -> Result<(), FieldError> {
        const URL_RULE: &str =
            "must be http:// or https:// addresses with a host, separated by commas";
        let addresses = SyncOptions::new(hub_url.clone(), None).addresses();
        if addresses.is_empty() {
            return Err(FieldError::invalid("hub_url", URL_RULE));
        }
        for address in &addresses {
            if !(address.starts_with("http://") || address.starts_with("https://")) {
                return Err(FieldError::invalid("hub_url", URL_RULE));
            }
            let endpoint = endpoint(&SyncOptions::new(address.clone(), None))
                .map_err(|_| FieldError::invalid("hub_url", URL_RULE))?;
            if endpoint.uri().host().is_none_or(str::is_empty) {
                return Err(FieldError::invalid("hub_url", URL_RULE));
            }
        }
        let hub_url = addresses.join(",");
        let token = token.trim();
        if token.is_empty()
            || token.len() > TOKEN_MAX
            || !token.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(FieldError::invalid(
                "token",
                format!(
                    "must be the token station-hub enroll printed: 1 to {TOKEN_MAX} \
                     printable ASCII characters without spaces"
                ),
            ));
        }
        self.agent()?
            .log()
            .set_hub(Some(hub_url), Some(token.to_string()))
            .map_err(AgentError::from)?;
        Ok(())
    }

    /// Runs one sync round with the configured hub: pushes this device's
    /// entries the hub does not hold, then pulls colleagues' entries of the
    /// station. Returns within the store's sync bound.
    ///
    /// # Errors
    /// [`FieldError::NotConfigured`] before `configure`;
    /// [`FieldError::Auth`] when the hub refuses the token;
    /// [`FieldError::Network`] when the hub cannot be reached or the link
    /// fails for longer than the bound allows; [`FieldError::Refused`];
    /// [`FieldError::Storage`]. Whatever the hub acknowledged before the
    /// failure stays acknowledged (see [`FieldStore::status`]).
    pub fn sync_now(&self) -> Result<SyncReport, FieldError> {
        let started = Instant::now();
        let result = self.sync_round();
        *lock(&self.last_error) = result.as_ref().err().map(ToString::to_string);
        let mut report = result?;
        report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }
}

impl FieldStore {
    fn sync_round(&self) -> Result<SyncReport, FieldError> {
        let mut runtime = lock(&self.runtime);
        let agent = self.agent()?;
        let identity = agent
            .log()
            .identity()
            .map_err(AgentError::from)?
            .ok_or(FieldError::NotConfigured)?;
        let hub_url = identity.hub_url.ok_or(FieldError::NotConfigured)?;
        let options = round_options(hub_url, identity.token, self.sync_timeout);
        let runtime = match &mut *runtime {
            Some(runtime) => runtime,
            slot @ None => slot.insert(start_runtime()?),
        };
        let bound = self.sync_timeout;
        let engine = Arc::clone(&agent);
        let outcome = runtime
            .block_on(async move { tokio::time::timeout(bound, sync_once(agent, &options)).await });
        // A round cut after the keys went still leaves the store wiped.
        let wiped = matches!(Vault::wiped_at(engine.log().dir()), Ok(Some(_)));
        let head_seq = engine.log().head_seq();
        if wiped {
            drop(engine);
            self.forget_wiped();
        }
        let report = match outcome {
            Ok(Ok(report)) => report,
            _ if wiped => return Err(FieldError::wiped()),
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => {
                return Err(FieldError::Network {
                    reason: format!(
                        "the sync did not finish within {} s; what the hub acknowledged \
                         stays acknowledged",
                        bound.as_secs()
                    ),
                });
            }
        };
        Ok(SyncReport {
            pushed: report.pushed,
            pulled: report.pulled,
            durable_through: report.city_durable_through,
            saved_through: report.durable_through,
            head_seq,
            backlog: head_seq.saturating_sub(report.city_durable_through),
            retries: report.retries,
            parked: report.parked.map(Into::into),
            elapsed_ms: 0,
            wiped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_stays_within_its_bound() {
        let bound = Duration::from_secs(60);
        let options = round_options("http://127.0.0.1:7400".into(), None, bound);
        assert!(options.retry_budget + options.call_timeout <= bound);
        assert!(options.connect_timeout <= options.call_timeout);
        assert!(options.backoff_cap <= options.retry_budget);
        assert!(options.long_poll.is_zero());
    }
}
