//! The JetStream log on a three-node cluster (R3) whose stream leader is
//! SIGKILLed mid-push: every acknowledged event is held once, pushes carry
//! on through the other nodes, and the killed node catches up when it
//! starts again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use station_hub::store::{HubLog, JetStreamLog};
use station_proto::Event;

use super::nats::Cluster;
use crate::events::{self, CHANGZHU, Device, ZEDANG};

/// Events per device.
const EVENTS: usize = 40;

fn today() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2025, 6, 30).unwrap()
}

/// Polls `done` until it holds, failing after `within`.
fn until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::yield_now();
    }
}

fn leader(log: &JetStreamLog) -> Option<String> {
    log.replicas()
        .ok()?
        .into_iter()
        .find(|r| r.leader)
        .map(|r| r.server)
}

#[test]
fn a_killed_node_loses_nothing_acknowledged_and_catches_up() {
    let Some(mut cluster) = Cluster::three() else {
        return;
    };
    let options = cluster.options("KILLED", 3);
    let log = cluster.open(&options);
    let mut devices = [
        Device::new(ZEDANG, "a"),
        Device::new(ZEDANG, "b"),
        Device::new(CHANGZHU, "c"),
    ];
    let streams: Vec<Vec<Event>> = devices
        .iter_mut()
        .map(|device| {
            (0..EVENTS)
                .map(|i| device.record(events::training(&format!("2025-03-{:02}", i % 28 + 1))))
                .collect()
        })
        .collect();

    let mut acked = [0u64; 3];
    let mut acks_after_kill = 0;
    let mut killed = None;
    let mut now_ms = 1_750_000_000_000;
    let deadline = Instant::now() + Duration::from_secs(90);
    while acked.iter().any(|&a| a < EVENTS as u64) {
        assert!(
            Instant::now() < deadline,
            "pushes did not carry on: {acked:?}"
        );
        for (d, events) in streams.iter().enumerate() {
            let from = usize::try_from(acked[d]).unwrap();
            if from >= EVENTS {
                continue;
            }
            let batch = events[from..(from + 3).min(EVENTS)].to_vec();
            now_ms += 1;
            // A push that fails was not acknowledged: the device sends
            // again from what the hub acknowledged.
            if let Ok(outcome) = log.push(batch, today(), now_ms) {
                let (_, durable_through) = outcome.acks[0];
                assert!(durable_through >= acked[d]);
                acked[d] = durable_through;
                if killed.is_some() {
                    acks_after_kill += 1;
                }
            }
        }
        if killed.is_none() && acked.iter().sum::<u64>() >= 30 {
            let name = leader(&log).expect("the stream has a leader");
            let node: usize = name.trim_start_matches('n').parse().unwrap();
            cluster.nodes[node].kill();
            killed = Some(node);
        }
    }
    let killed = killed.expect("a node was killed");
    assert!(
        acks_after_kill > 0,
        "no push was acknowledged after the kill"
    );

    let check = |log: &JetStreamLog| {
        let held = log.events_after(0, usize::MAX).unwrap();
        assert_eq!(held.len(), 3 * EVENTS, "every event once");
        let mut positions = BTreeMap::new();
        for (i, logged) in held.iter().enumerate() {
            assert_eq!(logged.hub_seq, i as u64 + 1, "positions without gaps");
            assert!(
                positions
                    .insert(logged.event.event_id.clone(), logged.hub_seq)
                    .is_none(),
                "an event held twice"
            );
        }
        for (device, events) in devices.iter().zip(&streams) {
            assert_eq!(
                log.origin(device.origin).unwrap().durable_through,
                EVENTS as u64
            );
            let mut last = 0;
            for event in events {
                let position = positions[&event.event_id];
                assert!(position > last, "an origin's events out of order");
                last = position;
            }
        }
    };
    check(&log);

    cluster.restart(killed);
    let name = format!("n{killed}");
    until(
        Duration::from_secs(30),
        "the restarted node catches up",
        || {
            log.replicas().is_ok_and(|r| {
                r.iter()
                    .any(|r| r.server == name && r.current && r.lag == 0)
            })
        },
    );
    // A front-end that connects anew reads the same log back.
    drop(log);
    check(&cluster.open(&options));
}

#[test]
fn a_sled_log_migrates_with_every_event_and_signature() {
    use station_hub::store::HubStore;
    use station_proto::chain::{self, Chain};
    use station_proto::v1::SignedHead;

    let Some(cluster) = Cluster::single() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = HubStore::open(dir.path(), 1 << 20).unwrap();
    let now_ms = 1_750_000_000_000;

    // A device that signs its log, and one with an event in quarantine.
    let secret = [7u8; 32];
    let mut signer = Device::new(ZEDANG, "a");
    let token = station_hub::auth::enroll_device(&store, ZEDANG, "a").unwrap();
    let public_key = chain::public_key(&secret);
    HubLog::bind_origin(&store, signer.origin, &token.token_id, Some(&public_key)).unwrap();
    let origin = signer.origin;
    let signed_push = |events: &[Event], chain: &mut Chain| {
        for event in events {
            chain.push(event).unwrap();
        }
        let last_seq = events.last().unwrap().origin_seq;
        SignedHead {
            origin_id: origin.as_bytes().to_vec(),
            last_seq,
            signature: chain::sign_head(&secret, origin, last_seq, &chain.head()).to_vec(),
            ..SignedHead::default()
        }
    };
    let mut chain = Chain::start(signer.origin);
    let first: Vec<Event> = (1..=5)
        .map(|day| signer.record(events::training(&format!("2025-03-{day:02}"))))
        .collect();
    let head = signed_push(&first, &mut chain);
    HubLog::push_signed(&store, first, &[head], today(), now_ms).unwrap();
    let mut other = Device::new(CHANGZHU, "c");
    let batch = vec![
        other.record(events::training("2025-03-01")),
        other.record(events::training("2025-02-30")),
        other.record(events::training("2025-03-02")),
    ];
    let outcome = HubLog::push(&store, batch, today(), now_ms + 1).unwrap();
    assert_eq!(outcome.quarantined, 1);
    HubLog::hello(&store, other.origin, CHANGZHU, 3, now_ms + 9, now_ms + 2).unwrap();

    let log = cluster.open(&cluster.options("MIGRATED", 1));
    let imported = log.import(&store).unwrap();
    assert_eq!(
        (
            imported.events,
            imported.origins,
            imported.bindings,
            imported.quarantined,
            imported.heads
        ),
        (7, 2, 1, 1, 1)
    );
    let same = |log: &JetStreamLog| {
        assert_eq!(
            log.events_after(0, usize::MAX).unwrap(),
            HubLog::events_after(&store, 0, usize::MAX).unwrap()
        );
        assert_eq!(log.origins().unwrap(), HubLog::origins(&store).unwrap());
        assert_eq!(
            log.quarantine().unwrap(),
            HubLog::quarantine(&store).unwrap()
        );
        for origin in [signer.origin, other.origin] {
            assert_eq!(
                log.signed_heads(origin).unwrap(),
                HubLog::signed_heads(&store, origin).unwrap()
            );
            assert_eq!(
                log.binding(origin).unwrap(),
                HubLog::binding(&store, origin).unwrap()
            );
        }
    };
    same(&log);
    // Run again, it finds everything in place and adds nothing.
    log.import(&store).unwrap();
    same(&log);

    // The migrated log goes on with the device's chain: an unsigned push of
    // its next event is refused, its signed push verifies.
    let next = vec![signer.record(events::training("2025-03-06"))];
    assert!(log.push(next.clone(), today(), now_ms + 3).is_err());
    let head = signed_push(&next, &mut chain);
    let outcome = log.push_signed(next, &[head], today(), now_ms + 4).unwrap();
    assert_eq!(outcome.acks, vec![(signer.origin, 6)]);
    assert_eq!(log.signed_heads(signer.origin).unwrap().len(), 2);
}

#[test]
fn station_hub_migrate_moves_a_stopped_hub_into_the_cluster_its_config_names() {
    use crate::fixtures::{hub_cli, stdout_of};
    use station_hub::store::HubStore;

    let Some(cluster) = Cluster::single() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let mut device = Device::new(ZEDANG, "a");
    let pushed: Vec<Event> = (1..=4)
        .map(|day| device.record(events::training(&format!("2025-03-{day:02}"))))
        .collect();
    {
        let store = HubStore::open(&data, 1 << 20).unwrap();
        HubLog::push(&store, pushed.clone(), today(), 1_750_000_000_000).unwrap();
    }
    let builtin = station_hub::config::DEFAULT_TOML;
    let log_section = format!(
        "[log]\nengine = \"jetstream\"\nservers = [\"{}\"]\nreplicas = 1\nstream = \"CLI\"\n",
        cluster.servers()[0]
    );
    let start = builtin.find("[log]\n").unwrap();
    let end = start + builtin[start..].find("\n\n").unwrap() + 1;
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        format!("{}{log_section}{}", &builtin[..start], &builtin[end..]),
    )
    .unwrap();

    let out = stdout_of(&hub_cli(
        &data,
        &["migrate", "--config", config.to_str().unwrap()],
    ));
    assert!(out.starts_with("migrated 4 events, 1 origins"), "{out}");
    let log = cluster.open(&cluster.options("CLI", 1));
    let held: Vec<Event> = log
        .events_after(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|logged| logged.event)
        .collect();
    assert_eq!(held, pushed);
    assert_eq!(log.origin(device.origin).unwrap().durable_through, 4);

    // A configuration still on sled is refused, naming why.
    let sled = dir.path().join("sled.toml");
    std::fs::write(&sled, builtin).unwrap();
    let refused = hub_cli(&data, &["migrate", "--config", sled.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("engine must be \"jetstream\""));
}
