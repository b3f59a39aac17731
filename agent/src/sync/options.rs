//! What a sync round is told and what it reports: [`SyncOptions`], the
//! [`SyncReport`] of a round, and the [`SyncError`] that ends one.
//!
//! Invariants: every knob of the state machine comes from
//! [`SyncOptions::machine_config`], so the options and the machine cannot
//! disagree; whether an error is worth retrying is decided from
//! [`super::classify::is_retriable`] for the hub's answers.

use std::time::Duration;

use super::classify::is_retriable;
use super::machine::Config;
use crate::engine::AgentError;
use crate::store::ParkedBatch;

/// How the agent talks to the hub.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The hub's address, e.g. `http://127.0.0.1:7400` or `https://hub:7400`;
    /// or several, separated by commas, tried in order each round: a
    /// station relay first and the hub after it, say
    /// (`http://192.168.1.10:7401,https://hub:7400`). See
    /// [`SyncOptions::addresses`].
    pub hub_url: String,
    /// The device token, sent as `authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The most encoded bytes one pushed batch or pulled page may carry; the
    /// airtime sizing stays below it (a single larger event still goes alone).
    pub batch_bytes: usize,
    /// Events per pulled page, at most.
    pub pull_events: u32,
    /// Pushed batches in flight at once (at least one): with two, the next
    /// batch travels while the hub acknowledges the last.
    pub push_window: usize,
    /// Catch-up pulls in flight at once (at least one): with two, the next
    /// page is asked for as soon as the hub's headers say where the last one
    /// ends, and travels while the last is still coming down.
    pub pull_window: usize,
    /// The longest deadline of any call (a long poll adds its wait).
    pub call_timeout: Duration,
    /// A PEM CA certificate to trust for the hub's TLS certificate. Setting
    /// it turns TLS on (an `http://` address is upgraded to `https://`);
    /// without it an `https://` address is checked against the webpki roots.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// The name the hub's certificate must carry, when it differs from the
    /// address's host (say, a hub reached by IP address).
    pub tls_domain: Option<String>,
    /// How long one round keeps retrying what the link or the hub broke
    /// before it returns the error.
    pub retry_budget: Duration,
    /// The ceiling of the first retry delay after progress; it doubles per
    /// failure up to [`Self::backoff_cap`].
    pub backoff_base: Duration,
    /// The longest retry delay.
    pub backoff_cap: Duration,
    /// The daemon starts a round this often, and right after each new entry.
    pub interval: Duration,
    /// How long an idle daemon's pull waits on the hub for new events; zero
    /// turns long polling off (the station's stream then comes with each
    /// round), which spares the radio on a phone.
    pub long_poll: Duration,
    /// HTTP/2 keepalive ping interval (and timeout) while a call is open; no
    /// pings on an idle connection.
    pub keepalive: Duration,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// Seeds the retry jitter; `None` draws one from the origin and the clock.
    pub jitter_seed: Option<u64>,
}

/// How long a round keeps retrying an address that has another after it,
/// once connected (a stalled or cut stream); a connection that cannot be
/// opened at all passes the round on to the next address at once.
pub const ALTERNATE_RETRY_BUDGET: Duration = Duration::from_secs(10);

impl SyncOptions {
    /// Defaults for a 2G/3G phone: batches sized by measured airtime up to
    /// 1 MiB, a minute of retries per round, a round every minute.
    pub fn new(hub_url: impl Into<String>, token: Option<String>) -> Self {
        let machine = Config::default();
        Self {
            hub_url: hub_url.into(),
            token,
            batch_bytes: machine.max_batch_bytes,
            pull_events: machine.pull_events,
            push_window: machine.push_window,
            pull_window: machine.pull_window,
            call_timeout: machine.deadline_cap,
            tls_ca_pem: None,
            tls_domain: None,
            retry_budget: Duration::from_secs(60),
            backoff_base: machine.backoff_base,
            backoff_cap: machine.backoff_cap,
            interval: Duration::from_secs(60),
            long_poll: machine.long_poll,
            keepalive: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(20),
            jitter_seed: None,
        }
    }

    /// The addresses of [`Self::hub_url`], in order.
    pub fn addresses(&self) -> Vec<String> {
        self.hub_url
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// These options for each address in turn: every address but the last
    /// keeps retrying for at most [`ALTERNATE_RETRY_BUDGET`], so that an
    /// address whose link stalls does not hold up the next one for long (an
    /// address that refuses the connection, the station's relay away from
    /// the station say, holds it up not at all: see [`super::sync_once`]).
    pub fn per_address(&self) -> Vec<SyncOptions> {
        let addresses = self.addresses();
        let count = addresses.len();
        addresses
            .into_iter()
            .enumerate()
            .map(|(i, address)| {
                let mut one = self.clone();
                one.hub_url = address;
                if i + 1 < count {
                    one.retry_budget = one.retry_budget.min(ALTERNATE_RETRY_BUDGET);
                }
                one
            })
            .collect()
    }

    /// The state machine's knobs these options imply.
    pub fn machine_config(&self) -> Config {
        Config {
            max_batch_bytes: self.batch_bytes.max(1),
            pull_events: self.pull_events.max(1),
            push_window: self.push_window.max(1),
            pull_window: self.pull_window.max(1),
            deadline_cap: self.call_timeout,
            backoff_base: self.backoff_base,
            backoff_cap: self.backoff_cap,
            long_poll: self.long_poll,
            ..Config::default()
        }
    }
}

/// What a sync round did.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct SyncReport {
    /// Own events the hub came to hold during the round: acknowledged, or
    /// shown by a later Hello to have been stored when their ack was lost.
    pub pushed: u64,
    /// Batches acknowledged.
    pub batches: u64,
    /// The `durable_through` for this device after the round of the hub,
    /// or of the station relay when the round went through one ("saved at
    /// the station").
    pub durable_through: u64,
    /// How much of this device the city hub holds after the round, as the
    /// hub or the relay said ("received by the city"); equal to
    /// `durable_through` when the round reached the hub itself.
    pub city_durable_through: u64,
    /// Station events pulled and stored.
    pub pulled: u64,
    /// The pull cursor after the round.
    pub pull_cursor: u64,
    /// Lines of the district directory pulled and stored.
    pub directory_lines: u64,
    /// The cursor in the district directory's feed after the round (0 when
    /// the device keeps no directory).
    pub directory_cursor: u64,
    /// Events of other stations' files stored from the transfers feed (a
    /// request to this station, a file it took over, an answer to its
    /// request).
    pub transfers_pulled: u64,
    /// Calls retried after the link or the hub failed, across the addresses
    /// the round tried.
    pub retries: u64,
    /// Connections the round opened or tried to open, across its addresses:
    /// an address that refuses the connection (or cannot be reached) while
    /// another follows it costs one, and the round goes on to the next.
    pub connects: u64,
    /// The batch the hub refused for good, if any: nothing is pushed until
    /// `station-agent sync --retry-parked`.
    pub parked: Option<ParkedBatch>,
    /// The uplink rate estimate, in bits of encoded events per second.
    pub uplink_bps: u64,
    /// Set when the hub had ordered this device wiped and the round wiped
    /// it: the store is gone, and the agent must stop using it.
    pub wiped: Option<Wiped>,
}

/// How a round wiped the device on the hub's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Wiped {
    /// Device wall clock when the data key was destroyed, ms.
    pub at_ms: i64,
    /// Own entries the hub did not hold when the keys went: only a batch the
    /// hub refused for good (parked) is left out; otherwise 0.
    pub not_uploaded: u64,
    /// Whether the hub acknowledged the wipe. When the answer was lost the
    /// bureau keeps seeing the wipe as pending; the device is wiped all the
    /// same, and holds no token to say it again.
    pub confirmed: bool,
}

/// Why a sync round stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No hub address is configured.
    #[error("no hub configured: pass --hub or run init with --hub")]
    NoHub,
    /// The address or the TLS settings are unusable.
    #[error("bad hub address: {0}")]
    BadAddress(String),
    /// The token cannot be sent as gRPC metadata.
    #[error("the device token must be printable ASCII")]
    BadToken,
    /// The hub could not be reached.
    #[error("cannot reach the hub: {0}")]
    Connect(String),
    /// The link failed during a call: nothing is known about its outcome.
    #[error("the link failed during {call}: {message}")]
    Link {
        /// Which call.
        call: &'static str,
        /// What the transport said.
        message: String,
    },
    /// The hub answered with an error status.
    #[error("hub refused {call}: {code:?}: {message}")]
    Rpc {
        /// Which call.
        call: &'static str,
        /// The gRPC code.
        code: tonic::Code,
        /// The hub's message.
        message: String,
    },
    /// The hub's answer breaks the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The local store failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A local task died (a bug, not the link's fault).
    #[error("a local sync task failed: {0}")]
    Local(String),
    /// The hub ordered this device wiped and it was: its store is gone.
    #[error(
        "this device was wiped by order of the hub (it was reported lost): its data key and signing key are destroyed"
    )]
    Wiped,
}

impl SyncError {
    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            SyncError::Connect(_) | SyncError::Link { .. } | SyncError::Protocol(_) => true,
            SyncError::Rpc { code, .. } => is_retriable(*code),
            SyncError::NoHub
            | SyncError::BadAddress(_)
            | SyncError::BadToken
            | SyncError::Agent(_)
            | SyncError::Local(_)
            | SyncError::Wiped => false,
        }
    }
}
