//! A weak-link simulator: a userspace TCP proxy that makes a loopback
//! connection behave like the 2G/3G link a social worker's phone syncs over.
//!
//! The kernel of the test machines has no `netem`, so end-to-end tests and the
//! benchmark put a [`WeakLink`] between the agent and the hub instead: the
//! agent connects to [`WeakLink::local_addr`], and every connection it opens
//! there is relayed to the real upstream address, throttled, delayed, stalled
//! and cut according to a [`LinkProfile`].
//!
//! # Model
//!
//! Each direction of a relayed connection is two stages joined by a queue:
//!
//! - *transmit* reads at most [`CHUNK_BYTES`] from the sender, waits until the
//!   link is not stalled, takes the chunk's bytes from the direction's token
//!   bucket (waiting if the bucket is in debt), and queues the chunk with the
//!   instant it is due at the far end: now + [`LinkProfile::one_way_latency`];
//! - *deliver* takes chunks in order, waits until each is due and the link is
//!   not stalled, writes it to the receiver and counts its bytes.
//!
//! Latency is therefore pipelined like on a real link (many chunks are in
//! flight at once) and does not cut throughput down to one chunk per round
//! trip. The token bucket of a direction is shared by all connections of the
//! link, as the radio link is: two connections each get about half the rate.
//!
//! # Invariants
//!
//! - Bytes are never altered, dropped from the middle, or reordered: the far
//!   end receives a prefix of what the near end sent, and all of it unless the
//!   connection is cut or fails.
//! - A chunk is never delivered before it is due, and no chunk is written while
//!   its connection is stalled (a write already under way finishes).
//! - The bytes taken from a bucket over any window of length `t` are at most
//!   `burst + rate * t`, with `burst` = max([`CHUNK_BYTES`], 20 ms of the rate).
//! - [`LinkCounters`] only grow, and count bytes written to the far end.
//! - The random schedule of a connection (when it is cut, when and for how long
//!   it stalls) depends only on [`LinkProfile::seed`] and the connection's
//!   index on the link (0 for the first accepted, 1 for the next, ...).
//! - All waits use `tokio::time`, so tests can run with paused time.
//! - Every task ends on [`WeakLink::shutdown`] (or when the [`WeakLink`] is
//!   dropped), and a connection's task ends when both of its directions have
//!   reached end of stream or either fails.
//!
//! A connection that ends normally propagates half-closes (end of stream from
//! one side becomes a `shutdown(Write)` towards the other, after the chunks in
//! flight are delivered). A *cut* instead resets both sockets (`SO_LINGER` 0),
//! discarding what is in flight, as a dropped radio link would.

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, sleep, sleep_until};

/// The most bytes read, charged to the bucket and delivered at once, so the
/// bandwidth cap stays smooth at 2G rates (1 KiB is 1/8 s at 64 kbit/s).
pub const CHUNK_BYTES: usize = 1024;

/// The most chunks in flight per direction of a connection. It bounds the
/// proxy's memory; it also caps throughput at `IN_FLIGHT_CHUNKS * CHUNK_BYTES`
/// per `one_way_latency`, far above any mobile profile.
const IN_FLIGHT_CHUNKS: usize = 1024;

/// How long the accept loop waits after a failed `accept` (out of file
/// descriptors, say) before trying again, so it does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// A rate meaning "no cap" in [`LinkProfile`].
pub const UNLIMITED_RATE: u64 = u64::MAX;

/// How a simulated link behaves. All durations are in `tokio::time`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkProfile {
    /// Cap on client → upstream bytes per second, shared by all connections
    /// of the link; [`UNLIMITED_RATE`] for none. Mobile uplinks are the
    /// narrow side, and sync pushes go this way.
    pub up_bytes_per_sec: u64,
    /// Cap on upstream → client bytes per second, shared by all connections
    /// of the link; [`UNLIMITED_RATE`] for none.
    pub down_bytes_per_sec: u64,
    /// Added to every chunk in each direction, so a round trip costs twice
    /// this. Opening a relayed connection also costs one round trip (the TCP
    /// handshake) before the upstream sees it.
    pub one_way_latency: Duration,
    /// When set, each connection is cut (reset on both sides) once, at a
    /// moment drawn uniformly from this range after it was accepted.
    pub cut_every: Option<(Duration, Duration)>,
    /// When set, each connection stalls repeatedly: it waits a time drawn
    /// from this range, stalls, and starts over when the stall ends. The lower
    /// bound must not be zero.
    pub stall_every: Option<(Duration, Duration)>,
    /// How long one stall lasts, drawn uniformly from this range for each
    /// stall. During a stall the connection stays open but forwards nothing,
    /// which is what makes retry timeouts fire on a real link.
    pub stall_for: (Duration, Duration),
    /// Seeds the random draws, so a run can be repeated exactly.
    pub seed: u64,
}

impl LinkProfile {
    /// A link that only relays: no cap, no latency, no cuts, no stalls.
    pub fn unlimited() -> Self {
        LinkProfile {
            up_bytes_per_sec: UNLIMITED_RATE,
            down_bytes_per_sec: UNLIMITED_RATE,
            one_way_latency: Duration::ZERO,
            cut_every: None,
            stall_every: None,
            stall_for: (Duration::ZERO, Duration::ZERO),
            seed: 0,
        }
    }

    /// A bad 2G link as met in the field: 64 kbit/s up, 256 kbit/s down,
    /// 150 ms one way, each connection cut 5–20 s after it opens, and stalls
    /// of 2–5 s every 10–40 s.
    pub fn mobile_2g() -> Self {
        LinkProfile {
            up_bytes_per_sec: 64_000 / 8,
            down_bytes_per_sec: 256_000 / 8,
            one_way_latency: Duration::from_millis(150),
            cut_every: Some((Duration::from_secs(5), Duration::from_secs(20))),
            stall_every: Some((Duration::from_secs(10), Duration::from_secs(40))),
            stall_for: (Duration::from_secs(2), Duration::from_secs(5)),
            seed: 0x5747_2047,
        }
    }

    /// Checks the profile can be simulated.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when a rate is zero, a range has its lower bound above
    /// its upper bound, or `stall_every` starts at zero (stalls back to back).
    pub fn validate(&self) -> io::Result<()> {
        let invalid = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, why.to_owned()));
        if self.up_bytes_per_sec == 0 || self.down_bytes_per_sec == 0 {
            return invalid("link rate must be above zero (use UNLIMITED_RATE for no cap)");
        }
        let ranges = [self.cut_every, self.stall_every, Some(self.stall_for)];
        if ranges.iter().flatten().any(|(low, high)| low > high) {
            return invalid("link duration range has its lower bound above its upper bound");
        }
        if matches!(self.stall_every, Some((low, _)) if low.is_zero()) {
            return invalid("stall_every must not start at zero");
        }
        Ok(())
    }
}

/// What a link has forwarded and done since it started, over all connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Client → upstream bytes written to the upstream.
    pub up_bytes: u64,
    /// Upstream → client bytes written to the client.
    pub down_bytes: u64,
    /// Client connections accepted while online (refused ones are not counted).
    pub connections: u64,
    /// Connections cut: by their random schedule, [`WeakLink::cut_all`] or
    /// [`WeakLink::set_online`]`(false)`.
    pub cuts: u64,
    /// Stalls begun.
    pub stalls: u64,
}

/// A running weak-link proxy on `127.0.0.1`. Dropping it stops it, like
/// [`WeakLink::shutdown`] without waiting.
#[derive(Debug)]
pub struct WeakLink {
    /// Where clients connect.
    local_addr: SocketAddr,
    /// State shared with the accept loop and the connection tasks.
    link: Arc<LinkState>,
    /// The accept loop, which owns the connection tasks; taken by `shutdown`
    /// to wait for all of them.
    accept_loop: Option<JoinHandle<()>>,
}

/// A handle on a running [`WeakLink`], for tasks that drive its outages.
#[derive(Debug, Clone)]
pub struct LinkControl {
    /// The link's shared state.
    link: Arc<LinkState>,
}

impl LinkControl {
    /// See [`WeakLink::set_online`].
    pub fn set_online(&self, online: bool) {
        self.link.online.send_if_modified(|current| {
            let changed = *current != online;
            *current = online;
            changed
        });
    }

    /// See [`WeakLink::cut_all`].
    pub fn cut_all(&self) {
        self.link.cut_epoch.send_modify(|epoch| *epoch += 1);
    }
}

impl WeakLink {
    /// Binds `127.0.0.1:0` and starts relaying the connections accepted there
    /// to `upstream` through a link behaving like `profile`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when the profile does not pass
    /// [`LinkProfile::validate`], or the error of binding the listener.
    pub async fn start(upstream: SocketAddr, profile: LinkProfile) -> io::Result<WeakLink> {
        profile.validate()?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let local_addr = listener.local_addr()?;
        let link = Arc::new(LinkState::new(upstream, profile));
        let accept_loop = tokio::spawn(accept_loop(listener, Arc::clone(&link)));
        Ok(WeakLink {
            local_addr,
            link,
            accept_loop: Some(accept_loop),
        })
    }

    /// The address clients connect to instead of the upstream.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The counters so far. Each field is read on its own, so a snapshot taken
    /// while bytes flow may mix slightly different moments.
    pub fn counters(&self) -> LinkCounters {
        let counters = &self.link.counters;
        LinkCounters {
            up_bytes: self.link.up.forwarded.load(Ordering::Relaxed),
            down_bytes: self.link.down.forwarded.load(Ordering::Relaxed),
            connections: counters.connections.load(Ordering::Relaxed),
            cuts: counters.cuts.load(Ordering::Relaxed),
            stalls: counters.stalls.load(Ordering::Relaxed),
        }
    }

    /// Takes the link down (`false`): connections accepted from now on are
    /// reset at once, and the open ones are cut. `true` brings it back; the
    /// connections cut stay closed, clients must reconnect.
    pub fn set_online(&self, online: bool) {
        self.control().set_online(online);
    }

    /// Cuts every connection open now, as a drop of the radio link would.
    /// New connections are accepted as before.
    pub fn cut_all(&self) {
        self.control().cut_all();
    }

    /// A handle that can cut or take down this link from another task.
    pub fn control(&self) -> LinkControl {
        LinkControl {
            link: Arc::clone(&self.link),
        }
    }

    /// Stops accepting, closes every connection and waits until all the
    /// link's tasks have ended.
    pub async fn shutdown(mut self) {
        self.link.shutdown.send_replace(true);
        if let Some(accept_loop) = self.accept_loop.take() {
            // A panic in the accept loop has nothing left to clean up.
            let _ = accept_loop.await;
        }
    }
}

impl Drop for WeakLink {
    fn drop(&mut self) {
        self.link.shutdown.send_replace(true);
    }
}

/// State of a link shared by its tasks.
#[derive(Debug)]
struct LinkState {
    /// The real server every connection is relayed to.
    upstream: SocketAddr,
    /// How the link behaves.
    profile: LinkProfile,
    /// Client → upstream.
    up: Direction,
    /// Upstream → client.
    down: Direction,
    /// Counters that are not per direction.
    counters: EventCounters,
    /// Whether new connections are accepted; going `false` cuts open ones.
    online: watch::Sender<bool>,
    /// Bumped by `cut_all`; every connection open at that moment is cut.
    cut_epoch: watch::Sender<u64>,
    /// Set once, when the link stops.
    shutdown: watch::Sender<bool>,
}

impl LinkState {
    fn new(upstream: SocketAddr, profile: LinkProfile) -> Self {
        let now = Instant::now();
        LinkState {
            upstream,
            up: Direction::new(profile.up_bytes_per_sec, now),
            down: Direction::new(profile.down_bytes_per_sec, now),
            profile,
            counters: EventCounters::default(),
            online: watch::Sender::new(true),
            cut_epoch: watch::Sender::new(0),
            shutdown: watch::Sender::new(false),
        }
    }
}

/// The counters of [`LinkCounters`] that are not byte counts.
#[derive(Debug, Default)]
struct EventCounters {
    connections: AtomicU64,
    cuts: AtomicU64,
    stalls: AtomicU64,
}

/// One direction of the link, shared by all its connections.
#[derive(Debug)]
struct Direction {
    /// The bandwidth cap; `None` when unlimited.
    bucket: Option<Mutex<TokenBucket>>,
    /// Bytes written to the far end, over all connections.
    forwarded: AtomicU64,
}

impl Direction {
    fn new(bytes_per_sec: u64, now: Instant) -> Self {
        Direction {
            bucket: (bytes_per_sec != UNLIMITED_RATE)
                .then(|| Mutex::new(TokenBucket::new(bytes_per_sec, now))),
            forwarded: AtomicU64::new(0),
        }
    }

    /// Waits until `bytes` may go onto the link.
    async fn transmit(&self, bytes: usize) {
        let Some(bucket) = &self.bucket else { return };
        let wait = bucket
            .lock()
            // The bucket is plain numbers, consistent even if a holder panicked.
            .unwrap_or_else(PoisonError::into_inner)
            .reserve(bytes, Instant::now());
        if !wait.is_zero() {
            sleep(wait).await;
        }
    }
}

/// A token bucket that lends: a reservation always succeeds and may leave the
/// bucket in debt, and its taker waits until the debt is repaid. Takers are
/// thus served in the order they reserved, and no lock is held while waiting.
#[derive(Debug)]
struct TokenBucket {
    /// Refill rate, bytes per second (above zero).
    bytes_per_sec: f64,
    /// The most tokens the bucket holds: what an idle link may send at once.
    burst: f64,
    /// Tokens now; negative when in debt.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    refilled_at: Instant,
}

impl TokenBucket {
    fn new(bytes_per_sec: u64, now: Instant) -> Self {
        // u64 → f64 rounds for huge rates, which is harmless for a rate.
        let bytes_per_sec = bytes_per_sec as f64;
        // At least one chunk, or a chunk could never be sent; and 20 ms of
        // rate, so timer granularity (1 ms) does not waste tokens at high rates.
        let burst = (bytes_per_sec / 50.0).max(CHUNK_BYTES as f64);
        TokenBucket {
            bytes_per_sec,
            burst,
            tokens: burst,
            refilled_at: now,
        }
    }

    /// Takes `bytes` tokens and says how long to wait before sending them.
    fn reserve(&mut self, bytes: usize, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.bytes_per_sec).min(self.burst);
        self.refilled_at = now;
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.bytes_per_sec)
        }
    }
}

/// Accepts clients until the link shuts down, then waits for the connection
/// tasks it spawned to end.
async fn accept_loop(listener: TcpListener, link: Arc<LinkState>) {
    let mut shutdown = link.shutdown.subscribe();
    let mut connections = JoinSet::new();
    let mut next_index = 0u64;
    loop {
        let accepted = tokio::select! {
            () = wait_until(&mut shutdown, |stopped| *stopped) => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        let client = match accepted {
            Ok((client, _peer)) => client,
            Err(_) => {
                sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        if !*link.online.borrow() {
            reset(&client);
            continue;
        }
        link.counters.connections.fetch_add(1, Ordering::Relaxed);
        let signals = ConnectionSignals {
            online: link.online.subscribe(),
            cut_epoch: link.cut_epoch.subscribe(),
            shutdown: link.shutdown.subscribe(),
        };
        connections.spawn(serve_connection(
            client,
            Arc::clone(&link),
            next_index,
            signals,
        ));
        next_index += 1;
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// The link-wide signals one connection listens to, subscribed when it is
/// accepted so that it reacts to every change from then on.
struct ConnectionSignals {
    online: watch::Receiver<bool>,
    cut_epoch: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
}

/// How a relayed connection ended.
enum Ending {
    /// Both directions reached end of stream: close normally.
    Finished,
    /// A socket failed (upstream refused, peer reset, ...): reset both.
    Failed,
    /// The link cut it: count it and reset both.
    Cut,
    /// The link stopped: close normally.
    Shutdown,
}

/// Relays one client connection until it ends, is cut, or the link stops.
async fn serve_connection(
    mut client: TcpStream,
    link: Arc<LinkState>,
    index: u64,
    mut signals: ConnectionSignals,
) {
    let profile = &link.profile;
    // Golden-ratio spacing keeps the seeds of neighbouring connections apart.
    let mut rng = StdRng::seed_from_u64(profile.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let cut_at = profile
        .cut_every
        .map(|range| Instant::now() + draw(&mut rng, range));
    let (stalled, stalled_rx) = watch::channel(false);
    let mut upstream = None;

    let ending = tokio::select! {
        relayed = relay(&mut client, &mut upstream, &link, stalled_rx) => match relayed {
            Ok(()) => Ending::Finished,
            Err(_) => Ending::Failed,
        },
        never = run_stalls(&stalled, &mut rng, profile, &link.counters.stalls) => match never {},
        () = sleep_until_some(cut_at) => Ending::Cut,
        _ = signals.cut_epoch.changed() => Ending::Cut,
        () = wait_until(&mut signals.online, |online| !*online) => Ending::Cut,
        () = wait_until(&mut signals.shutdown, |stopped| *stopped) => Ending::Shutdown,
    };

    match ending {
        Ending::Finished | Ending::Shutdown => {}
        Ending::Cut | Ending::Failed => {
            if matches!(ending, Ending::Cut) {
                link.counters.cuts.fetch_add(1, Ordering::Relaxed);
            }
            reset(&client);
            if let Some(upstream) = &upstream {
                reset(upstream);
            }
        }
    }
}

/// Connects to the upstream (into `upstream`, so the caller can reset it) and
/// pumps both directions until both reach end of stream.
async fn relay(
    client: &mut TcpStream,
    upstream: &mut Option<TcpStream>,
    link: &LinkState,
    stalled: watch::Receiver<bool>,
) -> io::Result<()> {
    let latency = link.profile.one_way_latency;
    // The client's handshake with the proxy is instant; charge its round trip
    // before the upstream sees the connection.
    if !latency.is_zero() {
        sleep(latency * 2).await;
    }
    let upstream = upstream.insert(TcpStream::connect(link.upstream).await?);
    // Chunks are already paced; Nagle would only add its own delays.
    client.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    let (client_read, client_write) = client.split();
    let (upstream_read, upstream_write) = upstream.split();
    tokio::try_join!(
        pump(
            client_read,
            upstream_write,
            &link.up,
            latency,
            stalled.clone()
        ),
        pump(upstream_read, client_write, &link.down, latency, stalled),
    )?;
    Ok(())
}

/// A chunk on its way through the link.
struct InFlight {
    /// When it reaches the far end.
    due: Instant,
    bytes: Vec<u8>,
}

/// Moves bytes from `source` to `sink` through `direction` (see the module
/// doc), then half-closes `sink` once `source` ends and the queue is drained.
async fn pump(
    mut source: ReadHalf<'_>,
    mut sink: WriteHalf<'_>,
    direction: &Direction,
    latency: Duration,
    stalled: watch::Receiver<bool>,
) -> io::Result<()> {
    let (in_flight, mut arriving) = mpsc::channel::<InFlight>(IN_FLIGHT_CHUNKS);
    let mut transmit_stalled = stalled.clone();
    let mut deliver_stalled = stalled;

    let transmit = async move {
        let mut buf = [0u8; CHUNK_BYTES];
        loop {
            let read = source.read(&mut buf).await?;
            if read == 0 {
                // Dropping `in_flight` lets deliver drain and half-close.
                return Ok::<(), io::Error>(());
            }
            wait_until(&mut transmit_stalled, |stalled| !*stalled).await;
            direction.transmit(read).await;
            let chunk = InFlight {
                due: Instant::now() + latency,
                bytes: buf[..read].to_vec(),
            };
            if in_flight.send(chunk).await.is_err() {
                // Deliver failed; its error ends the connection.
                return Ok(());
            }
        }
    };

    let deliver = async move {
        while let Some(chunk) = arriving.recv().await {
            if chunk.due > Instant::now() {
                sleep_until(chunk.due).await;
            }
            wait_until(&mut deliver_stalled, |stalled| !*stalled).await;
            sink.write_all(&chunk.bytes).await?;
            direction
                .forwarded
                .fetch_add(chunk.bytes.len() as u64, Ordering::Relaxed);
        }
        sink.shutdown().await
    };

    tokio::try_join!(transmit, deliver)?;
    Ok(())
}

/// Stalls the connection on its schedule, forever (the caller stops polling
/// when the connection ends).
async fn run_stalls(
    stalled: &watch::Sender<bool>,
    rng: &mut StdRng,
    profile: &LinkProfile,
    stalls: &AtomicU64,
) -> Infallible {
    let Some(every) = profile.stall_every else {
        return std::future::pending().await;
    };
    loop {
        sleep(draw(rng, every)).await;
        stalls.fetch_add(1, Ordering::Relaxed);
        stalled.send_replace(true);
        sleep(draw(rng, profile.stall_for)).await;
        stalled.send_replace(false);
    }
}

/// A duration drawn uniformly from `low..=high` (validated: `low <= high`).
fn draw(rng: &mut StdRng, (low, high): (Duration, Duration)) -> Duration {
    let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.random_range(nanos(low)..=nanos(high)))
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Waits until the watched value satisfies `ready`. Also returns if the
/// sender is gone, which only happens once the link is being torn down.
async fn wait_until<T>(watched: &mut watch::Receiver<T>, ready: impl FnMut(&T) -> bool) {
    let _ = watched.wait_for(ready).await;
}

/// Closes `stream` with a reset (RST) rather than a FIN when it is dropped.
fn reset(stream: &TcpStream) {
    // Failing to set SO_LINGER only turns the reset into a normal close.
    let _ = stream.set_zero_linger();
}
