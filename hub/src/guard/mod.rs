//! What keeps the hub serving under hostile load: the bounds on each
//! listener's connections ([`ConnectionLimits`]), the admission of
//! connections (`admit`), the process's open-file limit
//! ([`raise_file_limit`]), the rate limits on refused calls
//! ([`Refusals`]), the free space kept on the store's disk
//! ([`DiskReserve`]), and logging that speaks once per interval with a count
//! ([`Throttle`]) instead of once per event.
//!
//! Invariants: a listener never holds more than
//! [`ConnectionLimits::max_connections`] connections; one over the cap is
//! closed as soon as it is accepted, without touching what is open; a
//! connection that has not finished its TLS handshake, or (on gRPC) sent the
//! HTTP/2 preface, within [`ConnectionLimits::handshake_timeout`] is closed;
//! running out of file descriptors slows the accept loop down instead of
//! spinning it; each of these conditions is logged at most once per
//! [`LOG_INTERVAL`], with how many times it happened since.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

mod disk;
mod refusals;

pub use disk::{DEFAULT_DISK_RESERVE, DISK_CHECK_INTERVAL, DiskLow, DiskReserve};
pub use refusals::{
    REFUSAL_BURST_ADDRESS, REFUSAL_BURST_TOKEN, REFUSAL_PERIOD_ADDRESS, REFUSAL_PERIOD_TOKEN,
    Refusals, presented_token_id,
};

/// How often a repeated condition (refused connections, refused calls) is
/// logged at most.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// File descriptors the hub keeps for itself beyond its listeners'
/// connections: the store's files, the administration socket and its
/// clients, the log, the runtime.
pub const FILE_HEADROOM: u64 = 128;

/// Connections per listener when the open-file limit allows more.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4_096;

/// How many bytes a gRPC client sends first: the HTTP/2 client preface (24)
/// and the header of the SETTINGS frame that must follow it (9).
pub const HTTP2_OPENING_BYTES: usize = 24 + 9;

/// The bounds of each listener's connections.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Open connections one listener holds at most; one more is closed as
    /// soon as it is accepted.
    pub max_connections: usize,
    /// How long a connection has for its TLS handshake, and then for the
    /// HTTP/2 preface (gRPC) or a request's head (HTTP); on HTTP also how
    /// long a kept-alive connection waits for its next request.
    pub handshake_timeout: Duration,
    /// How long a gRPC connection lives before the hub asks its client to
    /// reconnect (HTTP/2 GOAWAY; calls in flight finish first): what bounds
    /// a connection that keeps answering pings but never calls.
    pub max_connection_age: Duration,
    /// How often an HTTP/2 connection is pinged; one that does not answer
    /// within [`Self::keepalive_timeout`] is closed.
    pub keepalive_interval: Duration,
    /// How long a ping's answer may take.
    pub keepalive_timeout: Duration,
    /// Calls one HTTP/2 connection may have open at once.
    pub max_streams: u32,
    /// The longest an HTTP request may take, its body included; a slower one
    /// is answered 408.
    pub request_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(30 * 60),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_streams: 64,
            request_timeout: Duration::from_secs(120),
        }
    }
}

impl ConnectionLimits {
    /// The default limits with [`Self::max_connections`] fitted to an
    /// open-file limit of `files` shared by `listeners` listeners, keeping
    /// [`FILE_HEADROOM`] for the rest of the hub.
    pub fn for_file_limit(files: u64, listeners: usize) -> Self {
        let shared = files.saturating_sub(FILE_HEADROOM) / listeners.max(1) as u64;
        let max_connections = usize::try_from(shared)
            .unwrap_or(usize::MAX)
            .clamp(1, DEFAULT_MAX_CONNECTIONS);
        Self {
            max_connections,
            ..Self::default()
        }
    }
}

/// Raises the process's soft limit of open files to its hard limit and
/// returns the limit now in force (`u64::MAX` when unlimited).
///
/// # Errors
/// The limit could not be raised; the old one stays in force.
#[cfg(unix)]
pub fn raise_file_limit() -> io::Result<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(limit.maximum.unwrap_or(u64::MAX))
}

/// A condition counted as it happens and reported at most once per
/// interval, with how many times it happened since the last report.
#[derive(Debug)]
pub struct Throttle {
    /// The shortest time between two reports.
    every: Duration,
    /// When the last report was made, and the count since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// A throttle reporting at most once per `every`.
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one occurrence; `Some(count)` when it is time to report the
    /// `count` occurrences since the last report (this one included).
    pub fn note(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.1 += 1;
        let due = state.0.is_none_or(|last| last.elapsed() >= self.every);
        due.then(|| {
            let count = state.1;
            *state = (Some(Instant::now()), 0);
            count
        })
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new(LOG_INTERVAL)
    }
}

/// The byte stream of an admitted connection: plain, or TLS over TCP.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An admitted connection: it holds one of its listener's slots until it is
/// dropped, and fails its reads once its handshake deadline passes before
/// the bytes it must send first have come.
pub struct Conn {
    /// The bytes.
    stream: Stream,
    /// The listener's slot, given back on drop.
    _slot: OwnedSemaphorePermit,
    /// Until the first bytes have come: when they must have.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Bytes still expected before the deadline.
    awaited: usize,
    /// The local address.
    local: Option<SocketAddr>,
    /// The peer's address.
    remote: SocketAddr,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("remote", &self.remote)
            .field("tls", &matches!(self.stream, Stream::Tls(_)))
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// The peer's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.local,
            remote_addr: Some(self.remote),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if let Some(deadline) = &mut this.deadline {
            match read {
                Poll::Ready(Ok(())) => {
                    let got = buf.filled().len() - before;
                    this.awaited = this.awaited.saturating_sub(got);
                    if this.awaited == 0 {
                        this.deadline = None;
                    }
                }
                Poll::Pending => {
                    if deadline.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client did not finish its handshake in time",
                        )));
                    }
                }
                Poll::Ready(Err(_)) => {}
            }
        }
        read
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// How a listener admits its connections.
#[derive(Clone)]
pub(crate) struct Admission {
    /// Which listener, for the log: `grpc` or `http`.
    pub name: &'static str,
    /// The bounds.
    pub limits: ConnectionLimits,
    /// TLS, when the listener serves it.
    pub tls: Option<TlsAcceptor>,
    /// Bytes a connection must send within the handshake timeout once its
    /// TLS handshake (if any) is done; 0 when the protocol above bounds it.
    pub preface: usize,
}

/// Whether an accept error means the process (or system) is out of file
/// descriptors or socket memory: waiting lets connections close.
fn out_of_resources(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Accepts connections on `listener` as `admission` says, until the
/// receiver is dropped (which closes the listener). Connections over the cap
/// are closed at once; TLS handshakes run beside the accept loop, each
/// bounded by the handshake timeout.
pub(crate) fn admit(listener: TcpListener, admission: Admission) -> mpsc::Receiver<Conn> {
    let (tx, rx) = mpsc::channel::<Conn>(64);
    let slots = Arc::new(Semaphore::new(admission.limits.max_connections));
    tokio::spawn(async move {
        let full = Throttle::default();
        let failed = Arc::new(Throttle::default());
        let name = admission.name;
        let cap = admission.limits.max_connections;
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    let exhausted = out_of_resources(&error);
                    if let Some(count) = failed.note() {
                        tracing::warn!(listener = name, %error, count,
                            "cannot accept connections");
                    }
                    if exhausted {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                drop(stream);
                if let Some(count) = full.note() {
                    tracing::warn!(
                        listener = name,
                        max_connections = cap,
                        count,
                        "connection limit reached: new connections closed at once"
                    );
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            let local = stream.local_addr().ok();
            let timeout = admission.limits.handshake_timeout;
            let preface = admission.preface;
            let conn = move |stream| Conn {
                stream,
                _slot: slot,
                deadline: (preface > 0).then(|| Box::pin(tokio::time::sleep(timeout))),
                awaited: preface,
                local,
                remote,
            };
            match &admission.tls {
                None => {
                    if tx.send(conn(Stream::Plain(stream))).await.is_err() {
                        break;
                    }
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    let tx = tx.clone();
                    let failed = Arc::clone(&failed);
                    tokio::spawn(async move {
                        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let _ = tx.send(conn(Stream::Tls(Box::new(tls)))).await;
                            }
                            Ok(Err(error)) => {
                                if let Some(count) = failed.note() {
                                    tracing::info!(listener = name, %error, count,
                                        "TLS handshake failed");
                                }
                            }
                            Err(_) => {
                                if let Some(count) = failed.note() {
                                    tracing::info!(
                                        listener = name,
                                        count,
                                        "TLS handshake timed out"
                                    );
                                }
                            }
                        }
                    });
                }
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_reports_the_first_then_counts() {
        let throttle = Throttle::new(Duration::from_secs(3600));
        assert_eq!(throttle.note(), Some(1));
        assert_eq!(throttle.note(), None);
        assert_eq!(throttle.note(), None);
        let now = Throttle::new(Duration::ZERO);
        assert_eq!(now.note(), Some(1));
        assert_eq!(now.note(), Some(1));
    }

    #[test]
    fn the_connection_cap_keeps_headroom() {
        assert_eq!(ConnectionLimits::for_file_limit(256, 2).max_connections, 64);
        assert_eq!(ConnectionLimits::for_file_limit(100, 2).max_connections, 1);
        assert_eq!(
            ConnectionLimits::for_file_limit(u64::MAX, 2).max_connections,
            DEFAULT_MAX_CONNECTIONS
        );
    }
}
