//! The bureau's HTTP side, on its own listener: JSON endpoints mirroring
//! `station.v1.Query`, the monthly and quarterly ledgers (台账) and the
//! overdue lists as CSV and XLSX, and a server-rendered dashboard behind a bureau-token login.
//!
//! Invariants: every route but the login page resolves a [`Caller`] with
//! [`auth::authenticate`] (a bearer header, else the session cookie) before it
//! reads anything, and narrows the stations with [`auth::readable_stations`], the
//! rule `Query` follows; projection reads run off the async workers; every
//! refusal is a JSON `{"error": ...}` (HTML pages redirect to the login
//! instead); no aggregate page carries an ID number; every answer that
//! names persons (a timeline, an overdue list, the dashboard, an overdue
//! report) is recorded in the read audit before it is sent, and refused
//! (503) when it cannot be.

mod api;
mod dashboard;
mod reports;
pub mod session;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::guard::{self, Admission, ConnectionLimits, Refusals};
use session::Sessions;

use crate::auth::{self, AuthError, Caller};
use crate::params::BadParameter;
use crate::projections::{ProjectionError, Projections};

/// The cookie the login sets: it holds a random session id (see
/// [`session`]); the bureau token stays on the hub, and is checked again on
/// every request, so a revoked token ends its sessions at once.
pub const SESSION_COOKIE: &str = "station_hub_session";

/// What every handler shares.
#[derive(Debug, Clone)]
struct AppState {
    /// The projections read, and through them the store holding the tokens.
    projections: Arc<Projections>,
    /// The dashboard's login sessions.
    sessions: Arc<Sessions>,
    /// Whether the session cookie is `Secure` (the side is served over TLS).
    secure: bool,
    /// The limits on refused requests, which the login also counts against
    /// the token id it was given.
    refusals: Arc<Refusals>,
}

/// The routes of the HTTP side over `projections`, with the security headers
/// of [`secured`], the refused calls rate-limited per address and token.
pub fn router(projections: Arc<Projections>) -> Router {
    app(projections, Arc::new(Sessions::default()), false)
}

/// [`router`] with `sessions`, and session cookies `Secure` when `secure`.
fn app(projections: Arc<Projections>, sessions: Arc<Sessions>, secure: bool) -> Router {
    let refusals = Arc::new(Refusals::new("http"));
    let routes = Router::new()
        .route("/api/indicators", get(api::indicators))
        .route("/api/caseload", get(api::caseload))
        .route("/api/overdue", get(api::overdue))
        .route("/api/conflicts", get(api::conflicts))
        .route("/api/reviews", get(api::reviews))
        .route("/api/trends", get(api::trends))
        .route("/api/transfers", get(api::transfers))
        .route("/api/duplicates", get(api::duplicates))
        .route("/api/sync-health", get(api::sync_health))
        .route("/api/quarantine", get(api::quarantine))
        .route("/api/cases/{id}/timeline", get(api::case_timeline))
        .route("/api/audit", get(api::audit))
        .route("/reports/{station}/{file}", get(reports::report))
        .route("/", get(dashboard::page))
        .route("/login", get(dashboard::login_page).post(dashboard::login))
        .route("/logout", post(dashboard::logout))
        .fallback(|| async { HttpError::NotFound("no such page".into()) })
        .with_state(AppState {
            projections,
            sessions,
            secure,
            refusals: Arc::clone(&refusals),
        })
        .layer(axum::middleware::from_fn_with_state(
            refusals,
            limit_refusals,
        ));
    secured(routes)
}

/// `routes` with the headers every answer carries: nothing stored by
/// browsers or proxies (pages and reports carry names and ID numbers), no
/// content-type guessing, never framed by another page, no referrer sent
/// on.
fn secured(routes: Router) -> Router {
    let set =
        |name, value| SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value));
    routes
        .layer(set(header::CACHE_CONTROL, "no-store"))
        .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(set(header::X_FRAME_OPTIONS, "DENY"))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        ))
        .layer(set(header::REFERRER_POLICY, "no-referrer"))
}

/// The rate limits of [`Refusals`] in front of every route: a caller held
/// for too many refused requests (401: no valid token, a failed login) is
/// answered 429 without its token being read; each 401 is counted against
/// its address and the token id it presented.
async fn limit_refusals(
    State(refusals): State<Arc<Refusals>>,
    request: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> Response {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let token_id = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(guard::presented_token_id)
        .map(str::to_string);
    if let Err(wait) = refusals.admit(address, token_id.as_deref()) {
        let retry = wait.as_secs().max(1).to_string();
        let mut answer = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(serde_json::json!({ "error": "too many refused requests: try again later" })),
        )
            .into_response();
        if let Ok(retry) = HeaderValue::from_str(&retry) {
            answer.headers_mut().insert(header::RETRY_AFTER, retry);
        }
        return answer;
    }
    let answer = next.run(request).await;
    if answer.status() == StatusCode::UNAUTHORIZED {
        refusals.refused(address, token_id.as_deref(), "no valid token");
    }
    answer
}

/// Serves [`router`] on `listener` over HTTP/1.1 (in TLS with `tls`, and the
/// session cookie then `Secure`) until `shutdown` completes,
/// then lets the requests in flight finish. Connections are admitted under
/// `limits` (see [`crate::guard`]): at most `max_connections` open, a
/// request's head (and a kept-alive connection's next one) read within
/// `handshake_timeout`, a whole request answered within `request_timeout`
/// (else 408).
///
/// # Errors
/// None at present: accept failures are logged and waited out.
pub async fn serve_http(
    listener: TcpListener,
    projections: Arc<Projections>,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    trusted_proxies: Arc<[IpAddr]>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = ?listener.local_addr().ok(), tls = tls.is_some(),
        max_connections = limits.max_connections, trusted_proxies = trusted_proxies.len(),
        "http listening");
    // Behind a reverse proxy the browser's connection is TLS to the proxy.
    let secure = tls.is_some() || !trusted_proxies.is_empty();
    let app = app(projections, Arc::new(Sessions::default()), secure).layer(
        TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limits.request_timeout),
    );
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_HEAD_BYTES);
    let mut incoming = guard::admit(
        listener,
        Admission {
            name: "http",
            limits,
            tls,
            preface: 0,
        },
    );
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let conn = tokio::select! {
            () = &mut shutdown => break,
            conn = incoming.recv() => match conn {
                Some(conn) => conn,
                None => break,
            },
        };
        let remote = conn.remote_addr();
        let trusted = Arc::clone(&trusted_proxies);
        let service = app
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                let client = client_addr(remote, request.headers(), &trusted);
                request.extensions_mut().insert(ConnectInfo(client));
                request
            });
        let connection =
            builder.serve_connection(TokioIo::new(conn), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "http connection ended");
            }
        });
    }
    drop(incoming);
    graceful.shutdown().await;
    Ok(())
}

/// The address a request comes from: the connection's peer, unless the
/// peer is one of the `trusted` reverse proxies; then the nearest address in
/// `X-Forwarded-For` (read from the right, every header line in order) that
/// is not itself a trusted proxy. A header that does not parse there leaves
/// the proxy's own address: an address a client wrote is never believed
/// unless every hop after it is trusted. The port of a forwarded address is
/// 0.
pub fn client_addr(remote: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> SocketAddr {
    let is_trusted = |ip: IpAddr| trusted.contains(&ip.to_canonical());
    if !is_trusted(remote.ip()) {
        return remote;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("?").split(','))
        .collect();
    for hop in hops.iter().rev() {
        let hop = hop.trim();
        let parsed = hop
            .parse::<IpAddr>()
            .ok()
            .or_else(|| hop.parse::<SocketAddr>().ok().map(|addr| addr.ip()));
        match parsed {
            Some(ip) if is_trusted(ip) => {}
            Some(ip) => return SocketAddr::new(ip.to_canonical(), 0),
            None => return remote,
        }
    }
    remote
}

/// The most a request's head may take in the read buffer, in bytes.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A refusal or failure, answered as JSON `{"error": "..."}`.
#[derive(Debug)]
enum HttpError {
    /// No token, or one that is unknown or revoked.
    Unauthorized(String),
    /// The token may not read this.
    Forbidden(String),
    /// The request is not well formed.
    BadRequest(String),
    /// Nothing is known under this name.
    NotFound(String),
    /// The hub cannot answer now (the read audit cannot be written).
    Unavailable(String),
    /// The hub failed.
    Internal(String),
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            HttpError::Unauthorized(t) => (StatusCode::UNAUTHORIZED, t),
            HttpError::Forbidden(t) => (StatusCode::FORBIDDEN, t),
            HttpError::BadRequest(t) => (StatusCode::BAD_REQUEST, t),
            HttpError::NotFound(t) => (StatusCode::NOT_FOUND, t),
            HttpError::Unavailable(t) => {
                tracing::warn!(error = %t, "http read refused");
                (StatusCode::SERVICE_UNAVAILABLE, t)
            }
            HttpError::Internal(t) => {
                tracing::warn!(error = %t, "http request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, t)
            }
        };
        (status, Json(serde_json::json!({ "error": text }))).into_response()
    }
}

impl From<AuthError> for HttpError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::MissingToken
            | AuthError::MalformedHeader
            | AuthError::InvalidToken
            | AuthError::Revoked => HttpError::Unauthorized(error.to_string()),
            AuthError::Store(crate::store::HubError::UnknownToken(_)) => {
                HttpError::Unauthorized(AuthError::InvalidToken.to_string())
            }
            AuthError::Denied(_) => HttpError::Forbidden(error.to_string()),
            AuthError::Invalid(_) => HttpError::BadRequest(error.to_string()),
            AuthError::NoFreeId | AuthError::Store(_) => HttpError::Internal(error.to_string()),
        }
    }
}

impl From<BadParameter> for HttpError {
    fn from(error: BadParameter) -> Self {
        HttpError::BadRequest(error.0)
    }
}

impl From<ProjectionError> for HttpError {
    fn from(error: ProjectionError) -> Self {
        match error {
            ProjectionError::BadRequest(_) => HttpError::BadRequest(error.to_string()),
            ProjectionError::UnknownCase(_) => HttpError::NotFound(error.to_string()),
            ProjectionError::Audit(_) => HttpError::Unavailable(error.to_string()),
            _ => HttpError::Internal(error.to_string()),
        }
    }
}

/// The address a request came from, as the listener put it on the request
/// (absent when the router is driven without a listener).
type Peer = Option<axum::Extension<ConnectInfo<SocketAddr>>>;

fn peer_addr(peer: Peer) -> Option<SocketAddr> {
    peer.map(|axum::Extension(ConnectInfo(addr))| addr)
}

/// The session id the request's cookie carries, if any.
fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, token)| token.to_string())
        .filter(|token| !token.is_empty())
}

impl AppState {
    /// The caller of a request: its `Authorization` header, else the token
    /// of its live session. A session whose token is refused ends.
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, HttpError> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let header = value
                .to_str()
                .map_err(|_| HttpError::from(AuthError::MalformedHeader))?;
            return Ok(auth::authenticate(self.projections.store(), Some(header))?);
        }
        let Some(id) = session_token(headers) else {
            return Err(AuthError::MissingToken.into());
        };
        let Some(token) = self.sessions.token(&id) else {
            return Err(HttpError::Unauthorized(
                "the session has ended: log in again".into(),
            ));
        };
        let header = format!("Bearer {token}");
        auth::authenticate(self.projections.store(), Some(&header)).map_err(|error| {
            self.sessions.end(&id);
            error.into()
        })
    }

    /// The stations `caller` reads when asking for `asked`.
    fn stations(&self, caller: &Caller, asked: Vec<String>) -> Result<Vec<String>, HttpError> {
        Ok(auth::readable_stations(
            caller,
            asked,
            self.projections.config(),
        )?)
    }

    /// Runs a projection read off the async workers.
    async fn read<T, F>(&self, read: F) -> Result<T, HttpError>
    where
        T: Send + 'static,
        F: FnOnce(&Projections) -> Result<T, ProjectionError> + Send + 'static,
    {
        let projections = Arc::clone(&self.projections);
        tokio::task::spawn_blocking(move || read(&projections))
            .await
            .map_err(|e| HttpError::Internal(format!("read task failed: {e}")))?
            .map_err(HttpError::from)
    }
}

/// `text` with the characters HTML gives meaning to escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A point in time as the bureau reads it: China time, to the minute.
fn china_time(ms: Option<i64>) -> String {
    let offset = chrono::FixedOffset::east_opt(8 * 3600);
    match (ms.and_then(chrono::DateTime::from_timestamp_millis), offset) {
        (Some(at), Some(offset)) => at
            .with_timezone(&offset)
            .format("%Y-%m-%d %H:%M")
            .to_string(),
        _ => "无数据".to_string(),
    }
}

/// Progress against a target, as a percentage, when there is a target.
fn completion(value: f64, target: Option<i64>) -> Option<f64> {
    target.filter(|t| *t > 0).map(|t| value / t as f64 * 100.0)
}

/// The unit of an indicator, in Chinese.
/// A figure as shown: whole numbers as they are, others to one decimal
/// (hours of volunteer service, say).
fn shown(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    format!("{rounded}")
}

/// A tier's name as the stations say it.
fn tier_zh(tier: i32) -> &'static str {
    match station_proto::v1::Tier::try_from(tier) {
        Ok(station_proto::v1::Tier::HighRisk) => "高风险",
        Ok(station_proto::v1::Tier::Key) => "重点",
        Ok(station_proto::v1::Tier::General) => "一般",
        _ => "未定",
    }
}

fn unit_zh(unit: crate::projections::period::Unit) -> &'static str {
    use crate::projections::period::Unit;
    match unit {
        Unit::Count => "个",
        Unit::Hour => "小时",
        Unit::Yuan => "元",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_forwarded_address() {
        let proxy: SocketAddr = "10.0.0.2:40000".parse().unwrap_or_else(|_| unreachable!());
        let trusted: Vec<IpAddr> = ["10.0.0.2", "10.0.0.3"]
            .iter()
            .map(|ip| ip.parse().unwrap_or_else(|_| unreachable!()))
            .collect();
        let forwarded = |lines: &[&str]| {
            let mut headers = HeaderMap::new();
            for line in lines {
                headers.append(
                    "x-forwarded-for",
                    line.parse().unwrap_or_else(|_| unreachable!()),
                );
            }
            client_addr(proxy, &headers, &trusted).to_string()
        };
        // A client's own claim on the left is passed over; trusted hops on
        // the right are skipped; several header lines read as one list.
        assert_eq!(forwarded(&["1.2.3.4, 203.0.113.7"]), "203.0.113.7:0");
        assert_eq!(forwarded(&["203.0.113.7, 10.0.0.3"]), "203.0.113.7:0");
        assert_eq!(forwarded(&["198.51.100.1", "203.0.113.7"]), "203.0.113.7:0");
        assert_eq!(forwarded(&["[2001:db8::1]:443"]), "[2001:db8::1]:0");
        // Nothing usable: the proxy's own address.
        assert_eq!(forwarded(&[]), "10.0.0.2:40000");
        assert_eq!(forwarded(&["10.0.0.3"]), "10.0.0.2:40000");
        assert_eq!(forwarded(&["203.0.113.7, not-an-ip"]), "10.0.0.2:40000");
        // From a peer that is not trusted, the header is not read.
        let stranger: SocketAddr = "192.0.2.9:5000".parse().unwrap_or_else(|_| unreachable!());
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "203.0.113.7".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(client_addr(stranger, &headers, &trusted), stranger);
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; station_hub_session=abc.def; b=2"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(session_token(&headers).as_deref(), Some("abc.def"));
    }
}
