//! The bureau's HTTP side, on its own listener: JSON endpoints mirroring
//! `station.v1.Query`, the monthly and quarterly ledgers (台账) and the
//! overdue lists as CSV and XLSX, and a server-rendered dashboard behind a bureau-token login.
//!
//! Invariants: every route but the login page resolves a [`Caller`] with
//! [`auth::authenticate`] (a bearer header, else the session cookie) before it
//! reads anything, and narrows the stations with [`auth::readable_stations`], the
//! rule `Query` follows; projection reads run off the async workers; every
//! refusal is a JSON `{"error": ...}` (HTML pages redirect to the login
//! instead); no aggregate page carries an ID number.

mod api;
mod dashboard;
mod reports;

use std::future::Future;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::auth::{self, AuthError, Caller};
use crate::params::BadParameter;
use crate::projections::{ProjectionError, Projections};

/// The cookie the login sets: it holds the bureau's bearer token, so a
/// revoked token ends its sessions at once.
pub const SESSION_COOKIE: &str = "station_hub_session";

/// What every handler shares.
#[derive(Debug, Clone)]
struct AppState {
    /// The projections read, and through them the store holding the tokens.
    projections: Arc<Projections>,
}

/// The routes of the HTTP side over `projections`.
pub fn router(projections: Arc<Projections>) -> Router {
    Router::new()
        .route("/api/indicators", get(api::indicators))
        .route("/api/caseload", get(api::caseload))
        .route("/api/overdue", get(api::overdue))
        .route("/api/conflicts", get(api::conflicts))
        .route("/api/sync-health", get(api::sync_health))
        .route("/api/quarantine", get(api::quarantine))
        .route("/api/cases/{id}/timeline", get(api::case_timeline))
        .route("/reports/{station}/{file}", get(reports::report))
        .route("/", get(dashboard::page))
        .route("/login", get(dashboard::login_page).post(dashboard::login))
        .route("/logout", post(dashboard::logout))
        .fallback(|| async { HttpError::NotFound("no such page".into()) })
        .with_state(AppState { projections })
}

/// Serves [`router`] on `listener` until `shutdown` completes, then lets the
/// requests in flight finish.
///
/// # Errors
/// The listener's I/O errors.
pub async fn serve_http(
    listener: TcpListener,
    projections: Arc<Projections>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = ?listener.local_addr().ok(), "http listening");
    axum::serve(listener, router(projections))
        .with_graceful_shutdown(shutdown)
        .await
}

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
            _ => HttpError::Internal(error.to_string()),
        }
    }
}

/// The session token the request's cookie carries, if any.
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
    /// The caller of a request: its `Authorization` header, else its
    /// session cookie.
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, HttpError> {
        let header = match headers.get(header::AUTHORIZATION) {
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| HttpError::from(AuthError::MalformedHeader))?
                    .to_string(),
            ),
            None => session_token(headers).map(|token| format!("Bearer {token}")),
        };
        Ok(auth::authenticate(
            self.projections.store(),
            header.as_deref(),
        )?)
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
