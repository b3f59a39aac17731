//! The weak-link simulator, on real loopback sockets: it relays bytes
//! unchanged, paces them, delays them without serialising them, stalls, and
//! cuts connections on demand and on schedule.
//!
//! Timing tests run with paused tokio time, which advances only when every
//! task waits on a timer; assertions on durations are on that clock, never on
//! the wall clock.

use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngCore as _, SeedableRng as _};
use station_sim::weaklink::{LinkCounters, LinkProfile, WeakLink};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Starts a server that echoes every connection back until its client
/// half-closes, then half-closes in turn.
async fn echo_server() -> SocketAddr {
    serve(|mut stream| async move {
        let (mut read, mut write) = stream.split();
        let _ = tokio::io::copy(&mut read, &mut write).await;
        let _ = write.shutdown().await;
    })
    .await
}

/// Starts a server that reads each connection to its end and answers with the
/// number of bytes it read (`u64`, big endian).
async fn sink_server() -> SocketAddr {
    serve(|mut stream| async move {
        let mut received = Vec::new();
        if stream.read_to_end(&mut received).await.is_ok() {
            let _ = stream
                .write_all(&(received.len() as u64).to_be_bytes())
                .await;
            let _ = stream.shutdown().await;
        }
    })
    .await
}

/// Starts a server that sends `len` bytes on each connection, then closes it.
async fn source_server(len: usize) -> SocketAddr {
    serve(move |mut stream| async move {
        let _ = stream.write_all(&vec![0x5a; len]).await;
        let _ = stream.shutdown().await;
    })
    .await
}

async fn serve<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    });
    addr
}

/// Sends `message` through an echo connection and checks it comes back.
async fn round_trip(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    let mut echoed = vec![0; message.len()];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(echoed, message);
}

/// Whether the next read sees the connection closed (end of stream or reset)
/// rather than data.
async fn sees_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0; 64];
    match stream.read(&mut buf).await {
        Ok(0) | Err(_) => true,
        Ok(_) => false,
    }
}

#[tokio::test]
async fn relays_bytes_unchanged_both_ways_and_counts_them() {
    let link = WeakLink::start(echo_server().await, LinkProfile::unlimited())
        .await
        .unwrap();
    let mut payload = vec![0; 200 * 1024];
    StdRng::seed_from_u64(7).fill_bytes(&mut payload);

    let mut client = TcpStream::connect(link.local_addr()).await.unwrap();
    let (mut read, mut write) = client.split();
    let send = async {
        write.write_all(&payload).await.unwrap();
        write.shutdown().await.unwrap();
    };
    let mut echoed = Vec::new();
    let receive = read.read_to_end(&mut echoed);
    let ((), received) = tokio::join!(send, receive);
    received.unwrap();

    assert!(echoed == payload, "echoed bytes differ from the ones sent");
    assert_eq!(
        link.counters(),
        LinkCounters {
            up_bytes: payload.len() as u64,
            down_bytes: payload.len() as u64,
            connections: 1,
            cuts: 0,
            stalls: 0,
        }
    );
    link.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn upload_is_paced_by_the_up_rate() {
    let profile = LinkProfile {
        up_bytes_per_sec: 8_000,
        ..LinkProfile::unlimited()
    };
    let link = WeakLink::start(sink_server().await, profile).await.unwrap();
    let started = Instant::now();

    let mut client = TcpStream::connect(link.local_addr()).await.unwrap();
    client.write_all(&[1; 32 * 1024]).await.unwrap();
    client.shutdown().await.unwrap();
    let mut count = [0; 8];
    client.read_exact(&mut count).await.unwrap();

    assert_eq!(u64::from_be_bytes(count), 32 * 1024);
    // 32 KiB at 8000 B/s, less the one-chunk burst an idle link allows.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(3_900), "took {elapsed:?}");
    assert_eq!(link.counters().up_bytes, 32 * 1024);
    link.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn latency_delays_bytes_without_serialising_them() {
    let profile = LinkProfile {
        down_bytes_per_sec: 32_000,
        one_way_latency: Duration::from_millis(150),
        ..LinkProfile::unlimited()
    };
    let link = WeakLink::start(source_server(32 * 1024).await, profile)
        .await
        .unwrap();
    let started = Instant::now();

    let mut client = TcpStream::connect(link.local_addr()).await.unwrap();
    let mut first = [0; 1];
    client.read_exact(&mut first).await.unwrap();
    let first_byte = started.elapsed();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    let all_bytes = started.elapsed();

    assert_eq!(1 + rest.len(), 32 * 1024);
    // A handshake round trip, then one way for the first chunk.
    assert!(first_byte >= Duration::from_millis(450), "{first_byte:?}");
    // ~1 s of transmission plus 450 ms of latency. Waiting a round trip per
    // 1 KiB chunk would take over 9 s.
    assert!(all_bytes >= Duration::from_millis(1_400), "{all_bytes:?}");
    assert!(all_bytes < Duration::from_millis(2_500), "{all_bytes:?}");
    link.shutdown().await;
}

#[tokio::test]
async fn cut_all_resets_open_connections_and_new_ones_work() {
    let link = WeakLink::start(echo_server().await, LinkProfile::unlimited())
        .await
        .unwrap();
    let mut before = TcpStream::connect(link.local_addr()).await.unwrap();
    round_trip(&mut before, b"before the cut").await;

    link.cut_all();

    assert!(sees_closed(&mut before).await);
    assert_eq!(link.counters().cuts, 1);
    let mut after = TcpStream::connect(link.local_addr()).await.unwrap();
    round_trip(&mut after, b"after the cut").await;
    assert_eq!(link.counters().connections, 2);
    assert_eq!(link.counters().cuts, 1);
    link.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn each_connection_is_cut_within_its_cut_range() {
    let profile = LinkProfile {
        cut_every: Some((Duration::from_secs(2), Duration::from_secs(3))),
        ..LinkProfile::unlimited()
    };
    let link = WeakLink::start(echo_server().await, profile).await.unwrap();

    for connection in 1..=3 {
        let opened = Instant::now();
        let mut client = TcpStream::connect(link.local_addr()).await.unwrap();
        round_trip(&mut client, b"ping").await;
        assert!(sees_closed(&mut client).await);
        let lived = opened.elapsed();
        assert!(
            (Duration::from_secs(2)..=Duration::from_secs(3)).contains(&lived),
            "connection {connection} lived {lived:?}"
        );
        assert_eq!(link.counters().cuts, connection);
    }
    link.shutdown().await;
}

#[tokio::test]
async fn offline_link_refuses_and_cuts_until_back_online() {
    let link = WeakLink::start(echo_server().await, LinkProfile::unlimited())
        .await
        .unwrap();
    let mut open = TcpStream::connect(link.local_addr()).await.unwrap();
    round_trip(&mut open, b"online").await;

    link.set_online(false);

    assert!(sees_closed(&mut open).await);
    // The kernel may complete the handshake; the proxy resets it at once.
    if let Ok(mut refused) = TcpStream::connect(link.local_addr()).await {
        assert!(sees_closed(&mut refused).await);
    }
    assert_eq!(link.counters().cuts, 1);
    assert_eq!(link.counters().connections, 1);

    link.set_online(true);

    let mut back = TcpStream::connect(link.local_addr()).await.unwrap();
    round_trip(&mut back, b"online again").await;
    assert_eq!(link.counters().connections, 2);
    link.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_stall_forwards_nothing_until_it_ends() {
    // Each connection stalls 1 s after it opens, for 5 s.
    let profile = LinkProfile {
        stall_every: Some((Duration::from_secs(1), Duration::from_secs(1))),
        stall_for: (Duration::from_secs(5), Duration::from_secs(5)),
        ..LinkProfile::unlimited()
    };
    let link = WeakLink::start(echo_server().await, profile).await.unwrap();
    let opened = Instant::now();
    let mut client = TcpStream::connect(link.local_addr()).await.unwrap();
    round_trip(&mut client, b"before the stall").await;

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(link.counters().stalls, 1);
    let before = link.counters();
    client.write_all(b"during the stall").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert_eq!(link.counters(), before, "bytes moved during the stall");
    let mut buf = [0; 64];
    assert_eq!(
        client.try_read(&mut buf).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock)
    );
    let mut echoed = [0; 16];
    client.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"during the stall");
    assert!(opened.elapsed() >= Duration::from_secs(6));
    assert_eq!(link.counters().up_bytes, before.up_bytes + 16);
    link.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_open_connections() {
    let link = WeakLink::start(echo_server().await, LinkProfile::unlimited())
        .await
        .unwrap();
    let mut client = TcpStream::connect(link.local_addr()).await.unwrap();
    round_trip(&mut client, b"hello").await;
    let addr = link.local_addr();

    link.shutdown().await;

    assert!(sees_closed(&mut client).await);
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn invalid_profiles_are_rejected_before_binding() {
    let upstream = echo_server().await;
    let zero_rate = LinkProfile {
        up_bytes_per_sec: 0,
        ..LinkProfile::unlimited()
    };
    let inverted = LinkProfile {
        cut_every: Some((Duration::from_secs(2), Duration::from_secs(1))),
        ..LinkProfile::unlimited()
    };
    for profile in [zero_rate, inverted] {
        let error = WeakLink::start(upstream, profile).await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    }
    assert!(LinkProfile::mobile_2g().validate().is_ok());
}
