//! The bureau's web side against an attacker: server-side sessions (a random
//! id in the cookie, ended at logout and when the token is revoked), the
//! security headers on every answer, failed logins and refused requests
//! rate-limited per address and per token, and a long poll that checks its
//! token again when it wakes.

use std::net::SocketAddr;

use crate::events::*;
use crate::fixtures::{Hub, authorized, hello, recorded};
use crate::http::{Reply, request};
use station_hub::auth;
use station_proto::ids::Uuid;
use station_proto::v1::sync_client::SyncClient;
use station_proto::v1::{PullRequest, PushRequest};
use tonic::Code;

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

async fn login(http: SocketAddr, token: &str) -> Reply {
    request(
        http,
        "POST",
        "/login",
        &[FORM],
        format!("token={token}").as_bytes(),
    )
    .await
}

/// The `name=value` of a `Set-Cookie`.
fn cookie_of(reply: &Reply) -> String {
    let cookie = reply.header("set-cookie").expect("a cookie");
    cookie.split(';').next().unwrap().to_string()
}

fn assert_secured(reply: &Reply, what: &str) {
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}");
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{what}");
    assert!(
        reply
            .header("content-security-policy")
            .is_some_and(|csp| csp.contains("frame-ancestors 'none'")),
        "{what}"
    );
    assert_eq!(
        reply.header("referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_live_on_the_hub_and_end_at_logout_and_revocation() {
    let hub = Hub::start().await;
    let bureau = hub.bureau_token("山南市民政局");

    let first = login(hub.http, &bureau).await;
    assert_eq!(first.status, 303, "{}", first.text());
    let set = first.header("set-cookie").unwrap().to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let session = cookie_of(&first);
    let (_, id) = session.split_once('=').unwrap();
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!set.contains(&bureau), "the token never leaves the hub");
    let second = cookie_of(&login(hub.http, &bureau).await);
    assert_ne!(session, second, "a new id per login");

    let page = hub_get(hub.http, "/", &session).await;
    assert_eq!(page.status, 200);
    // The token itself is no session.
    let forged = hub_get(hub.http, "/", &format!("station_hub_session={bureau}")).await;
    assert_eq!(forged.status, 303);

    // Logging out ends the session on the hub, not only in the browser.
    let origin = format!("http://{}", hub.http);
    let logout = request(
        hub.http,
        "POST",
        "/logout",
        &[("Cookie", &session), ("Origin", &origin)],
        b"",
    )
    .await;
    assert_eq!(logout.status, 303);
    assert_eq!(hub_get(hub.http, "/", &session).await.status, 303);
    let api = hub_get(hub.http, "/api/indicators", &session).await;
    assert_eq!(api.status, 401);

    // Revoking the token ends its other sessions at their next request.
    assert_eq!(hub_get(hub.http, "/", &second).await.status, 200);
    let token_id = bureau.split_once('.').unwrap().0;
    auth::revoke(&hub.store, token_id).unwrap();
    assert_eq!(hub_get(hub.http, "/", &second).await.status, 303);
    assert_eq!(
        hub_get(hub.http, "/api/indicators", &second).await.status,
        401
    );
    hub.stop().await;
}

async fn hub_get(http: SocketAddr, path: &str, cookie: &str) -> Reply {
    request(http, "GET", path, &[("Cookie", cookie)], b"").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_security_headers() {
    let hub = Hub::start().await;
    let bureau = hub.bureau_token("山南市民政局");
    let session = cookie_of(&login(hub.http, &bureau).await);
    let bearer = format!("Bearer {bureau}");
    for path in [
        "/",
        "/login",
        "/api/indicators",
        "/api/overdue",
        "/reports/540502001/overdue.csv",
        "/reports/district/2025-03.xlsx",
        "/no/such/page",
    ] {
        let with_cookie = hub_get(hub.http, path, &session).await;
        assert_secured(&with_cookie, path);
        let with_bearer = request(hub.http, "GET", path, &[("Authorization", &bearer)], b"").await;
        assert_secured(&with_bearer, path);
    }
    let anonymous = request(hub.http, "GET", "/api/caseload", &[], b"").await;
    assert_eq!(anonymous.status, 401);
    assert_secured(&anonymous, "a refusal");
    let refused_login = login(hub.http, "0123456789ab.00").await;
    assert_secured(&refused_login, "a refused login");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_rate_limited_per_address_and_per_token() {
    let hub = Hub::start().await;
    let bureau = hub.bureau_token("山南市民政局");
    let (token_id, _) = bureau.split_once('.').unwrap();

    // One address guessing: refused, then held (429) without being checked,
    // the right token included.
    let mut statuses = Vec::new();
    for n in 0..40 {
        let guess = format!("{:012x}.{:064x}", n, n);
        statuses.push(login(hub.http, &guess).await.status);
    }
    let refused = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        refused >= station_hub::guard::REFUSAL_BURST_ADDRESS as usize,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let held = login(hub.http, &bureau).await;
    assert_eq!(held.status, 429);
    assert!(held.header("retry-after").is_some());

    // Guesses at one token's secret from many addresses: that token is held.
    let mut statuses = Vec::new();
    for n in 0..(station_hub::guard::REFUSAL_BURST_TOKEN + 2) {
        let from: SocketAddr = format!("127.0.0.{}:0", 10 + n).parse().unwrap();
        let guess = format!("{token_id}.{:064x}", n);
        statuses.push(login_from(from, hub.http, &guess).await);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let fresh: SocketAddr = "127.0.0.99:0".parse().unwrap();
    assert_eq!(
        login_from(fresh, hub.http, &bureau).await,
        429,
        "the token is held"
    );
    // Another token from a fresh address is not.
    let other = hub.bureau_token("乃东区民政局");
    assert_eq!(login_from(fresh, hub.http, &other).await, 303);
    hub.stop().await;
}

/// The status of a login posted from the local address `from`.
async fn login_from(from: SocketAddr, http: SocketAddr, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(from).unwrap();
    let mut stream = socket.connect(http).await.unwrap();
    let body = format!("token={token}");
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_grpc_calls_are_held_after_a_burst() {
    let hub = Hub::start().await;
    let mut client = hub.client().await;
    let mut codes = Vec::new();
    for n in 0..40 {
        let origin = Uuid::now_v7();
        let guess = format!("{n:012x}.00");
        let refused = client
            .hello(authorized(hello(origin, ZEDANG), &guess))
            .await
            .unwrap_err();
        codes.push(refused.code());
    }
    let unauthenticated = codes
        .iter()
        .filter(|c| **c == Code::Unauthenticated)
        .count();
    assert!(
        unauthenticated >= station_hub::guard::REFUSAL_BURST_ADDRESS as usize,
        "{codes:?}"
    );
    assert_eq!(codes.last(), Some(&Code::ResourceExhausted), "{codes:?}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_checks_its_token_again_when_it_wakes() {
    let hub = Hub::start().await;
    let watcher = hub.device_token(ZEDANG, "zd-watch");
    let writer = hub.device_token(ZEDANG, "zd-write");
    let other = hub.device_token(ZEDANG, "zd-other");
    let watcher_id = watcher.split_once('.').unwrap().0.to_string();
    let dir = tempfile::tempdir().unwrap();
    let (_, events) = recorded(dir.path(), ZEDANG, 1);

    // The poll and a later call on one connection: once the later call is
    // answered, the poll has been let in and waits.
    let channel = hub.channel().await;
    let mut polling = SyncClient::new(channel.clone());
    let mut later = SyncClient::new(channel);
    let mut poll = std::pin::pin!(polling.pull(authorized(
        PullRequest {
            station_code: ZEDANG.into(),
            after: 0,
            max_events: 100,
            max_bytes: 0,
            wait_ms: 20_000,
            ..PullRequest::default()
        },
        &watcher,
    )));
    tokio::select! {
        biased;
        early = &mut poll => panic!("the poll answered before anything was pushed: {early:?}"),
        answered = later.hello(authorized(hello(Uuid::now_v7(), ZEDANG), &other)) => {
            answered.unwrap();
        }
    }
    // Revoked while it waits, then woken by another device's push.
    auth::revoke(&hub.store, &watcher_id).unwrap();
    hub.client()
        .await
        .push(authorized(
            PushRequest {
                events,
                heads: Vec::new(),
                ..PushRequest::default()
            },
            &writer,
        ))
        .await
        .unwrap();
    let status = poll
        .await
        .expect_err("nothing is delivered on a revoked token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_the_web_side_is_https_with_secure_cookies() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_rustls::rustls;

    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (issued.cert.pem(), issued.signing_key.serialize_pem());
    let options = station_hub::server::ServerOptions {
        tls: Some(
            station_hub::server::TlsIdentity::from_pem(cert.into_bytes(), key.into_bytes())
                .unwrap(),
        ),
        ..Default::default()
    };
    let hub = Hub::start_in(tempfile::tempdir().unwrap(), options).await;
    let bureau = hub.bureau_token("山南市民政局");

    // Plain HTTP gets no answer.
    assert!(
        crate::http::try_request(hub.http, "GET", "/login", &[], b"")
            .await
            .is_none()
    );

    let mut roots = rustls::RootCertStore::empty();
    roots.add(issued.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(hub.http).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let body = format!("token={bureau}");
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify; what was read counts.
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 303"), "{text}");
    let cookie = text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    hub.stop().await;
}

/// Behind a trusted reverse proxy, the per-address limit holds each client
/// the proxy names in `X-Forwarded-For`, not the proxy: one guessing client
/// does not lock the others out, and the session cookie is `Secure` (the
/// proxy speaks TLS). That another peer's header is not believed is
/// `client_addr`'s unit test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_each_forwarded_client_is_limited_alone() {
    let options = station_hub::server::ServerOptions {
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..Default::default()
    };
    let hub = Hub::start_in(tempfile::tempdir().unwrap(), options).await;
    let bureau = hub.bureau_token("山南市民政局");
    let login_as = |client: &'static str, token: String| {
        let http = hub.http;
        async move {
            request(
                http,
                "POST",
                "/login",
                &[FORM, ("X-Forwarded-For", client)],
                format!("token={token}").as_bytes(),
            )
            .await
        }
    };
    let mut statuses = Vec::new();
    for n in 0..40 {
        let guess = format!("{:012x}.{:064x}", n, n);
        statuses.push(login_as("203.0.113.7", guess).await.status);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert_eq!(login_as("203.0.113.7", bureau.clone()).await.status, 429);
    // Another client behind the same proxy logs in, with a Secure cookie.
    let other = login_as("203.0.113.8", bureau.clone()).await;
    assert_eq!(other.status, 303);
    assert!(
        other
            .header("set-cookie")
            .is_some_and(|c| c.contains("Secure")),
        "{:?}",
        other.header("set-cookie")
    );
    hub.stop().await;
}
