//! The sync daemon: rounds on a schedule and after each new entry, a long
//! poll in between, until shutdown.
//!
//! Invariants: one [`Edge`] (one machine, one connection) per address serves
//! every round, so backoff and the measured link rate carry over; each round
//! tries the addresses in order (a station relay, then the hub) and stays
//! with the first that answers, passing at once over one that refuses the
//! connection; a failed round is logged
//! and tried again at the next occasion, never in a tight loop; shutdown is
//! honoured at every await.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::edge::Edge;
use super::options::{SyncError, SyncOptions, SyncReport};
use crate::engine::Agent;

/// Runs the sync daemon until `shutdown` completes: a round at once, then one
/// every [`SyncOptions::interval`] and right after each new entry
/// ([`Agent::subscribe_recorded`]); between rounds, a long poll keeps the
/// station's stream flowing in. A failed round is logged and retried at the
/// next occasion; nothing spins.
///
/// # Errors
/// At start: settings that can never work (a bad address, TLS settings
/// or token), or a store whose sync state cannot be read. Later only
/// [`SyncError::Wiped`], once a round wiped the device on the hub's order:
/// the store is gone and the agent must stop.
pub async fn run(
    agent: Arc<Agent>,
    options: SyncOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SyncError> {
    let mut edges = Vec::new();
    for one in options.per_address() {
        edges.push(Edge::new(Arc::clone(&agent), &one).await?);
    }
    if edges.is_empty() {
        edges.push(Edge::new(Arc::clone(&agent), &options).await?);
    }
    let budgets: Vec<Duration> = options
        .per_address()
        .iter()
        .map(|o| o.retry_budget)
        .chain(std::iter::once(options.retry_budget))
        .collect();
    let mut current: usize;
    let mut recorded = agent.subscribe_recorded();
    let mut watching = true;
    tokio::pin!(shutdown);
    loop {
        recorded.borrow_and_update();
        let mut report = SyncReport::default();
        // Each round tries the addresses in order, staying with the first
        // that answers.
        current = 0;
        let result = loop {
            let pass_on = current + 1 < edges.len();
            let edge = &mut edges[current];
            let result = tokio::select! {
                () = &mut shutdown => return Ok(()),
                result = edge.round(&mut report, budgets[current], pass_on) => result,
            };
            match result {
                Err(error) if current + 1 < edges.len() && super::edge::unreachable(&error) => {
                    tracing::info!(%error, "unreachable: trying the next address");
                    current += 1;
                }
                done => break done,
            }
        };
        let edge = &mut edges[current];
        let completed = result.is_ok();
        match result {
            Ok(()) => tracing::info!(
                pushed = report.pushed,
                pulled = report.pulled,
                durable_through = report.durable_through,
                "sync round completed"
            ),
            Err(error) => tracing::warn!(%error, "sync round failed"),
        }
        if let Err(error) = edge.finish(completed, &mut report).await {
            tracing::warn!(%error, "cannot record the round");
        }
        if edge.wiped() {
            return Err(SyncError::Wiped);
        }
        let now = Instant::now();
        let next_round = now
            .checked_add(options.interval)
            .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        let mut retry_at = None;
        let mut stopped = false;
        loop {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep_until(next_round) => break,
                changed = recorded.changed(), if watching => {
                    if changed.is_ok() {
                        break;
                    }
                    // The sender lives in the agent, which this task holds;
                    // should it ever be gone, rounds follow the schedule only.
                    watching = false;
                }
                () = edge.idle(&mut retry_at, &mut stopped) => {}
            }
        }
    }
}
