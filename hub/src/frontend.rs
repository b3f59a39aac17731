//! Hub front-ends over one NATS JetStream log (`[log] engine =
//! "jetstream"`): any number of `station-hub serve` processes, each with its
//! own data folder, interchangeable for devices and for the bureau.
//!
//! What is shared and what each front-end keeps:
//!
//! | what | where |
//! | --- | --- |
//! | the log, origin states, bindings, quarantine, signed heads | the JetStream log ([`JetStreamLog`]): `Sync` pushes, pulls, says hello and binds through it |
//! | token records | the log's `records` bucket, merged both ways with the front-end's token tree ([`Frontend::share_tokens`]) |
//! | the log's identity and the district secret | the log's `shared` bucket, taken by the front-end's store when it joins ([`Frontend::join`]) |
//! | a mirror of the log, its projections, the read audit | the front-end's data folder ([`crate::store::mirror`]) |
//!
//! Invariants:
//! - the mirror is fed in stream order from its own last position
//!   ([`Frontend::feed`]): each event once per front-end, its checkpoint
//!   written with it; deleting the folder rebuilds it from the stream;
//! - the feed wakes on every append the cluster announces and looks on its
//!   own every [`FEED_INTERVAL`] as well, so a missed announcement delays it
//!   by that at most; a cluster that cannot be reached pauses the feed,
//!   never the front-end's reads;
//! - a front-end's store takes the deployment's district secret only while
//!   it holds no event (see [`HubStore::adopt_district_secret`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::LogRules;
use crate::store::{HubError, HubLog, HubStore, JetStreamLog, JetStreamOptions};

/// How often the feed looks at the stream and the token records without
/// being woken.
pub const FEED_INTERVAL: Duration = Duration::from_secs(1);

/// How often the feed copies the origin states and quarantine (read one
/// key at a time): what the devices' health shows lags by this at most.
pub const ORIGINS_INTERVAL: Duration = Duration::from_secs(5);

/// Events copied into the mirror per step.
const FEED_PAGE: usize = 2048;

/// A front-end's link to the deployment's shared log.
#[derive(Debug)]
pub struct Frontend {
    log: Arc<JetStreamLog>,
}

impl Frontend {
    /// Connects to the cluster `rules` names (its credentials file relative
    /// to `folder`, the configuration's), admitting the stations of `roster`.
    /// Blocking: call it off the async workers.
    ///
    /// # Errors
    /// The cluster unreachable or refusing ([`HubError::Io`]), options it
    /// refuses ([`HubError::Corrupt`]).
    pub fn open(
        rules: &LogRules,
        folder: Option<&Path>,
        roster: impl IntoIterator<Item = String>,
    ) -> Result<Self, HubError> {
        let options = JetStreamOptions {
            servers: rules.servers.clone(),
            credentials: rules.credentials.as_ref().map(|c| match folder {
                Some(folder) => folder.join(c),
                None => c.clone(),
            }),
            replicas: rules.replicas,
            stream: rules.stream.clone(),
            ..JetStreamOptions::default()
        };
        let log = JetStreamLog::open(&options)?.with_roster(roster);
        Ok(Self { log: Arc::new(log) })
    }

    /// The shared log.
    pub fn log(&self) -> &Arc<JetStreamLog> {
        &self.log
    }

    /// Makes `store` a front-end's store of this deployment: it takes the
    /// log's identity, and the district secret when it holds no event yet
    /// (the first front-end's secret becomes the deployment's). Returns
    /// `true` when the store took a new district secret and must be opened
    /// again for it to apply. Blocking.
    ///
    /// # Errors
    /// [`HubError::Corrupt`] for a store holding events under another
    /// district secret; errors of the cluster or the store.
    pub fn join(&self, store: &HubStore) -> Result<bool, HubError> {
        let id = self.log.shared_value("log_id", store.log_id().as_bytes())?;
        let id = station_proto::ids::Uuid::from_slice(&id)
            .map_err(|_| HubError::Corrupt("the shared log id is not 16 bytes".into()))?;
        store.adopt_log_id(id)?;
        let secret = self
            .log
            .shared_value("district_secret", &store.district_secret_bytes())?;
        let secret = <[u8; 32]>::try_from(secret.as_slice())
            .map_err(|_| HubError::Corrupt("the shared district secret is not 32 bytes".into()))?;
        store.adopt_district_secret(secret)
    }

    /// One step of the feed: the stream's events past the mirror's last
    /// position (a page at most); returns the mirror's last position and
    /// whether more is left. Blocking.
    ///
    /// # Errors
    /// Errors of the cluster or the store; nothing is half written.
    pub fn feed_step(&self, store: &HubStore) -> Result<(u64, bool), HubError> {
        let held = store.event_count();
        let page = self.log.events_after(held, FEED_PAGE)?;
        let full = page.len() == FEED_PAGE;
        Ok((store.append_mirrored(page)?, full))
    }

    /// Copies the origin states and quarantined events of the shared log
    /// into the mirror. Blocking.
    ///
    /// # Errors
    /// Errors of the cluster or the store.
    pub fn mirror_origins(&self, store: &HubStore) -> Result<usize, HubError> {
        let origins = self.log.origins()?;
        let quarantine = self.log.quarantine()?;
        store.mirror_origins(&origins, &quarantine)
    }

    /// Merges the token records of the store and of the shared log both
    /// ways: a token issued or revoked through any front-end reaches every
    /// other. Returns how many records changed here or there. Blocking.
    ///
    /// # Errors
    /// Errors of the cluster or the store.
    pub fn share_tokens(&self, store: &HubStore) -> Result<usize, HubError> {
        let shared: BTreeMap<String, _> = self
            .log
            .token_records()?
            .into_iter()
            .map(|record| (record.token_id.clone(), record))
            .collect();
        let mut changed = 0;
        let mut local = BTreeMap::new();
        for record in store.tokens()? {
            let merged = match shared.get(&record.token_id) {
                Some(held) if *held == record => continue,
                _ => self.log.share_token_record(&record)?,
            };
            if shared.get(&record.token_id) != Some(&merged) {
                changed += 1;
            }
            if merged != record {
                store.update_token(&record.token_id, |now| {
                    *now = crate::store::jetstream::merge_token_records(now, &merged);
                    true
                })?;
                changed += 1;
            }
            local.insert(record.token_id.clone(), ());
        }
        for (token_id, record) in &shared {
            if local.contains_key(token_id) {
                continue;
            }
            match store.token(token_id)? {
                None => {
                    store.insert_token(record)?;
                    changed += 1;
                }
                Some(held) if held != *record => {
                    store.update_token(token_id, |now| {
                        *now = crate::store::jetstream::merge_token_records(now, record);
                        true
                    })?;
                    changed += 1;
                }
                Some(_) => {}
            }
        }
        Ok(changed)
    }

    /// Feeds `store` from the shared log until `stop` completes: events into
    /// the mirror (which wakes its projector and long polls), origin states,
    /// quarantine and token records: events on every append the cluster
    /// announces and every [`FEED_INTERVAL`], token records every
    /// [`FEED_INTERVAL`], origin states every [`ORIGINS_INTERVAL`]. Errors of the cluster are logged and
    /// retried; the feed never ends the front-end.
    pub async fn feed(self: Arc<Self>, store: Arc<HubStore>, stop: impl Future<Output = ()>) {
        let mut appends = match self.log.appends() {
            Ok(appends) => Some(appends),
            Err(error) => {
                tracing::warn!(%error, "no announcements of appends: the feed looks every second");
                None
            }
        };
        tokio::pin!(stop);
        let mut failing = false;
        // Token records and origin states are listed whole: at most once
        // per interval, however often appends wake the feed.
        let mut listed: Option<tokio::time::Instant> = None;
        let mut copied: Option<tokio::time::Instant> = None;
        loop {
            let frontend = Arc::clone(&self);
            let mirror = Arc::clone(&store);
            let due = |at: Option<tokio::time::Instant>, every| {
                at.is_none_or(|at: tokio::time::Instant| at.elapsed() >= every)
            };
            let tokens = due(listed, FEED_INTERVAL);
            let origins = due(copied, ORIGINS_INTERVAL);
            if tokens {
                listed = Some(tokio::time::Instant::now());
            }
            if origins {
                copied = Some(tokio::time::Instant::now());
            }
            let step = tokio::task::spawn_blocking(move || -> Result<bool, HubError> {
                let (_, more) = frontend.feed_step(&mirror)?;
                if tokens {
                    frontend.share_tokens(&mirror)?;
                }
                if origins {
                    frontend.mirror_origins(&mirror)?;
                }
                Ok(more)
            })
            .await;
            let more = match step {
                Ok(Ok(more)) => {
                    if failing {
                        tracing::info!("the shared log answers again: feed resumed");
                        failing = false;
                    }
                    more
                }
                Ok(Err(error)) => {
                    listed = None;
                    copied = None;
                    if !failing {
                        tracing::warn!(%error, "the shared log does not answer: feed paused");
                        failing = true;
                    }
                    false
                }
                Err(error) => {
                    tracing::warn!(%error, "a feed step did not finish");
                    false
                }
            };
            if more {
                continue;
            }
            let woken = async {
                match appends.as_mut() {
                    Some(appends) => {
                        if appends.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = &mut stop => return,
                () = woken => {}
                () = tokio::time::sleep(FEED_INTERVAL) => {}
            }
        }
    }
}
