//! The sync daemon: rounds on a schedule and after each new entry, a long
//! poll in between, until shutdown.
//!
//! Invariants: one [`Edge`] (one machine, one connection) per address serves
//! every round, so backoff and the measured link rate carry over; each round
//! tries the addresses in order (a station relay, then the hub) and stays
//! with the first that answers, passing at once over one that refuses the
//! connection; a failed round is logged
//! and tried again at the next occasion, never in a tight loop; shutdown is
//! honoured at every await. With [`Rediscovery`], the addresses are looked
//! for again while it runs (a station relay switched on after the daemon
//! started, or the phone back at the station): when they change, the edges
//! of the addresses kept stay as they are, new ones are added, and a round
//! starts at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::edge::Edge;
use super::options::{SyncError, SyncOptions, SyncReport};
use crate::engine::Agent;

/// Where the daemon looks for the addresses to try while it runs.
pub struct Rediscovery {
    /// The addresses to try now, in order (blocking; a station relay found
    /// on the LAN before the configured ones, say). Called on a blocking
    /// thread every `every`.
    pub addresses: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
    /// How often.
    pub every: Duration,
}

impl std::fmt::Debug for Rediscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rediscovery")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

/// The edges of the addresses tried, in order, and each one's retry budget.
struct Edges {
    addresses: Vec<String>,
    edges: Vec<Edge>,
    budgets: Vec<Duration>,
}

impl Edges {
    async fn new(agent: &Arc<Agent>, options: &SyncOptions) -> Result<Self, SyncError> {
        let mut edges = Vec::new();
        for one in options.per_address() {
            edges.push(Edge::new(Arc::clone(agent), &one).await?);
        }
        if edges.is_empty() {
            edges.push(Edge::new(Arc::clone(agent), options).await?);
        }
        Ok(Self {
            addresses: options.addresses(),
            edges,
            budgets: budgets(options),
        })
    }

    /// Follows `options`' addresses: an address kept keeps its edge (its
    /// backoff and measured link), a new one gets a fresh edge; one whose
    /// settings cannot work is left out and logged. False when nothing
    /// changed (or nothing would be left).
    async fn follow(&mut self, agent: &Arc<Agent>, options: &SyncOptions) -> bool {
        let addresses = options.addresses();
        if addresses == self.addresses {
            return false;
        }
        let mut old: Vec<(String, Edge)> =
            self.addresses.drain(..).zip(self.edges.drain(..)).collect();
        let mut kept = Vec::new();
        for one in options.per_address() {
            let edge = match old.iter().position(|(a, _)| *a == one.hub_url) {
                Some(at) => old.swap_remove(at).1,
                None => match Edge::new(Arc::clone(agent), &one).await {
                    Ok(edge) => edge,
                    Err(error) => {
                        tracing::warn!(address = %one.hub_url, %error, "cannot sync with an address found");
                        continue;
                    }
                },
            };
            kept.push((one.hub_url, edge));
        }
        if kept.is_empty() {
            // Keep what worked so far rather than nothing.
            for (address, edge) in old {
                kept.push((address, edge));
            }
        }
        let (addresses, edges): (Vec<String>, Vec<Edge>) = kept.into_iter().unzip();
        tracing::info!(addresses = %addresses.join(","), "the addresses to try changed");
        let mut tried = options.clone();
        tried.hub_url = addresses.join(",");
        self.budgets = budgets(&tried);
        self.addresses = addresses;
        self.edges = edges;
        true
    }
}

fn budgets(options: &SyncOptions) -> Vec<Duration> {
    options
        .per_address()
        .iter()
        .map(|o| o.retry_budget)
        .chain(std::iter::once(options.retry_budget))
        .collect()
}

/// Calls `rediscovery` every `every` on a blocking thread, sending each
/// answer that differs from the last; stopped when dropped.
struct Looking {
    answers: tokio::sync::watch::Receiver<Option<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Looking {
    fn start(rediscovery: Rediscovery) -> Self {
        let (send, answers) = tokio::sync::watch::channel(None);
        let task = tokio::spawn(async move {
            loop {
                let find = Arc::clone(&rediscovery.addresses);
                if let Ok(found) = tokio::task::spawn_blocking(move || find()).await {
                    send.send_if_modified(|last| {
                        let changed = last.as_ref() != Some(&found);
                        if changed {
                            *last = Some(found);
                        }
                        changed
                    });
                }
                tokio::time::sleep(rediscovery.every).await;
            }
        });
        Self { answers, task }
    }

    /// The next answer that differs from the last; never, once the task is
    /// gone.
    async fn changed(looking: &mut Option<Looking>) -> Vec<String> {
        let Some(this) = looking else {
            return std::future::pending().await;
        };
        if this.answers.changed().await.is_err() {
            return std::future::pending().await;
        }
        this.answers.borrow_and_update().clone().unwrap_or_default()
    }
}

impl Drop for Looking {
    fn drop(&mut self) {
        self.task.abort();
    }
}

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
    run_rediscovering(agent, options, None, shutdown).await
}

/// [`run`], looking for the addresses to try again every
/// [`Rediscovery::every`] when given one.
///
/// # Errors
/// As [`run`].
pub async fn run_rediscovering(
    agent: Arc<Agent>,
    options: SyncOptions,
    rediscovery: Option<Rediscovery>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SyncError> {
    let mut all = Edges::new(&agent, &options).await?;
    let mut looking = rediscovery.map(Looking::start);
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
            let pass_on = current + 1 < all.edges.len();
            let budget = all.budgets[current];
            let edge = &mut all.edges[current];
            let result = tokio::select! {
                () = &mut shutdown => return Ok(()),
                result = edge.round(&mut report, budget, pass_on) => result,
            };
            match result {
                Err(error) if current + 1 < all.edges.len() && super::edge::unreachable(&error) => {
                    tracing::info!(%error, "unreachable: trying the next address");
                    current += 1;
                }
                done => break done,
            }
        };
        let edge = &mut all.edges[current];
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
            let edge = &mut all.edges[current];
            let found = tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep_until(next_round) => break,
                changed = recorded.changed(), if watching => {
                    if changed.is_ok() {
                        break;
                    }
                    // The sender lives in the agent, which this task holds;
                    // should it ever be gone, rounds follow the schedule only.
                    watching = false;
                    continue;
                }
                () = edge.idle(&mut retry_at, &mut stopped) => continue,
                found = Looking::changed(&mut looking) => found,
            };
            let mut next = options.clone();
            next.hub_url = found.join(",");
            if !found.is_empty() && all.follow(&agent, &next).await {
                break;
            }
        }
    }
}
