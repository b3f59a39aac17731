//! What the hub serves beside `Sync`, and how: health, reflection, TLS.

use crate::fixtures::{Hub, authorized, recorded};
use station_hub::admin::{self, AdminReply, AdminRequest};
use station_hub::server::{ServeError, ServerOptions, TlsIdentity};
use station_hub::{HubOptions, Listeners};
use station_proto::v1::sync_client::SyncClient;
use station_proto::v1::{HelloRequest, PullRequest, PushRequest};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const ZEDANG: &str = "540502001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_answer_without_a_token() {
    let hub = Hub::start().await;
    let mut health = HealthClient::new(hub.channel().await);
    for service in ["", "station.v1.Sync"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let mut reflection = ServerReflectionClient::new(hub.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"station.v1.Sync".to_string()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
    hub.stop().await;
}

/// A self-signed certificate for `localhost`, PEM: (certificate, key).
fn self_signed() -> (String, String) {
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (issued.cert.pem(), issued.signing_key.serialize_pem())
}

async fn tls_channel(hub: &Hub, ca_pem: Option<&str>) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().domain_name("localhost");
    if let Some(ca) = ca_pem {
        tls = tls.ca_certificate(Certificate::from_pem(ca));
    }
    Channel::from_shared(format!("https://{}", hub.addr))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_the_hub_speaks_tls_only() {
    let (cert, key) = self_signed();
    let options = ServerOptions {
        tls: Some(TlsIdentity::from_pem(cert.clone().into_bytes(), key.into_bytes()).unwrap()),
        ..ServerOptions::default()
    };
    let hub = Hub::start_in(tempfile::tempdir().unwrap(), options).await;
    let token = hub.device_token(ZEDANG, "zd-1");
    let dir = tempfile::tempdir().unwrap();
    let (agent, events) = recorded(dir.path(), ZEDANG, 5);

    // A client that trusts the certificate syncs.
    let mut client = SyncClient::new(tls_channel(&hub, Some(&cert)).await.unwrap());
    let hello = client
        .hello(authorized(
            HelloRequest {
                origin_id: agent.identity().origin_id.as_bytes().to_vec(),
                station_code: ZEDANG.into(),
                head_seq: 5,
                device_clock_ms: 0,
                agent_version: "test".into(),
                public_key: Vec::new(),
                wiped: false,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hello.durable_through, 0);
    let ack = client
        .push(authorized(
            PushRequest {
                events,
                heads: Vec::new(),
                ..PushRequest::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ack.acks[0].durable_through, 5);
    let page = client
        .pull(authorized(
            PullRequest {
                station_code: ZEDANG.into(),
                after: 0,
                max_events: 100,
                max_bytes: 0,
                wait_ms: 0,
                ..PullRequest::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    // The pusher's own events are passed over; the cursor reaches the head.
    assert_eq!(page.events.len(), 0);
    assert_eq!((page.next_cursor, page.head), (5, 5));

    // A plain-text client gets nowhere.
    let plain = async {
        let channel = Channel::from_shared(hub.url()).unwrap().connect().await?;
        let mut health = HealthClient::new(channel);
        health
            .check(HealthCheckRequest::default())
            .await
            .map_err(|status| status.to_string())
            .map(|_| ())
            .map_err(|e| -> Box<dyn std::error::Error> { e.into() })
    };
    assert!(plain.await.is_err());

    // Nor does a TLS client that does not trust the certificate.
    let untrusting = async {
        let mut health = HealthClient::new(tls_channel(&hub, None).await?);
        health
            .check(HealthCheckRequest::default())
            .await
            .map(|_| ())
            .map_err(|status| -> Box<dyn std::error::Error> { status.to_string().into() })
    };
    assert!(untrusting.await.is_err());
    assert_eq!(hub.store.event_count(), 5);
    hub.stop().await;
}

#[test]
fn a_certificate_rustls_cannot_use_is_refused_before_serving() {
    let (cert, _) = self_signed();
    let (_, other_key) = self_signed();
    for (cert, key) in [
        (b"not a certificate".to_vec(), b"not a key".to_vec()),
        (cert.clone().into_bytes(), Vec::new()),
        (cert.into_bytes(), other_key.into_bytes()),
    ] {
        let error = TlsIdentity::from_pem(cert, key).unwrap_err();
        assert!(matches!(error, ServeError::Tls(_)), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_every_part_of_the_hub_and_stops_them_together() {
    let data = tempfile::tempdir().unwrap();
    let hub = station_hub::Hub::open(HubOptions {
        data: data.path().to_path_buf(),
        cache_capacity: 16 * 1024 * 1024,
        server: ServerOptions::default(),
        key: Default::default(),
    })
    .await
    .unwrap();
    let socket = hub.admin_socket().unwrap().to_path_buf();
    assert!(socket.exists());
    // The store is the hub's: a second hub on the folder is refused.
    let second = station_hub::Hub::open(HubOptions {
        data: data.path().to_path_buf(),
        cache_capacity: 16 * 1024 * 1024,
        server: ServerOptions::default(),
        key: Default::default(),
    })
    .await;
    assert!(matches!(second, Err(ServeError::Store(_))), "{second:?}");

    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(hub.serve(
        Listeners {
            grpc,
            http: Some(http),
        },
        async {
            let _ = stopped.await;
        },
    ));

    // The administration socket issues a token that the gRPC side accepts.
    let issued = tokio::task::spawn_blocking({
        let data = data.path().to_path_buf();
        move || {
            admin::call(
                &data,
                &AdminRequest::EnrollDevice {
                    station: ZEDANG.into(),
                    device: "zd-1".into(),
                },
            )
        }
    })
    .await
    .unwrap()
    .unwrap()
    .unwrap();
    let AdminReply::Issued { bearer, .. } = issued else {
        panic!("not issued: {issued:?}");
    };
    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    SyncClient::new(channel)
        .pull(authorized(
            PullRequest {
                station_code: ZEDANG.into(),
                ..PullRequest::default()
            },
            &bearer,
        ))
        .await
        .unwrap();
    // The HTTP side answers on its own listener.
    let mut http = tokio::net::TcpStream::connect(http_addr).await.unwrap();
    http.write_all(b"GET /login HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    http.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    stop.send(()).unwrap();
    served.await.unwrap().unwrap();
    // Everything stopped: the socket is gone, the listeners are closed.
    assert!(!socket.exists());
    assert!(tokio::net::TcpStream::connect(grpc_addr).await.is_err());
    assert!(tokio::net::TcpStream::connect(http_addr).await.is_err());
}
