//! The device key and the signed chain of the own log: made at `init`, kept
//! across reopening, given to a store that predates them when it opens, and
//! every signed head verifies over the chain recomputed from the own events.

use station_agent::{Agent, OpenOptions};
use station_proto::Body;
use station_proto::chain::{self, Chain};
use station_proto::v1::{ActivityHeld, ActivityKind};

fn activity(n: i32) -> Body {
    Body::ActivityHeld(ActivityHeld {
        held_on: "2026-11-29".into(),
        community_code: "540502001003".into(),
        kind: ActivityKind::ElderlyCare as i32,
        title: format!("为老服务 {n}"),
        participants: n,
        person_times: n,
        volunteers: 0,
        volunteer_minutes: 0,
    })
}

/// Every head of the own log verifies over the chain of the own events.
fn every_head_verifies(agent: &Agent) {
    let origin = agent.identity().origin_id;
    let key = agent.log().public_key().unwrap();
    let mut chain = Chain::start(origin);
    for event in agent.own_events(0, usize::MAX).unwrap() {
        chain.push(&event).unwrap();
        let head = agent.log().signed_head(event.origin_seq).unwrap();
        assert_eq!(head.origin_id, origin.as_bytes());
        chain::verify_head(&key, origin, head.last_seq, &chain.head(), &head.signature).unwrap();
    }
}

#[test]
fn every_own_event_is_chained_and_signed_with_the_key_made_at_init() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::fixtures::init_device(dir.path(), "w01");
    let key = agent.log().public_key().unwrap();
    for n in 1..=5 {
        agent.record(activity(n)).unwrap();
    }
    every_head_verifies(&agent);
    drop(agent);
    let reopened = Agent::open(dir.path(), OpenOptions::default()).unwrap();
    assert_eq!(
        reopened.log().public_key().unwrap(),
        key,
        "the key never changes"
    );
    reopened.record(activity(6)).unwrap();
    every_head_verifies(&reopened);
    // Another device has another key.
    let other_dir = tempfile::tempdir().unwrap();
    let other = crate::fixtures::init_device(other_dir.path(), "w02");
    assert_ne!(other.log().public_key().unwrap(), key);
}

#[test]
fn a_store_from_before_signatures_gets_its_key_and_chain_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let agent = crate::fixtures::init_device(dir.path(), "w01");
    for n in 1..=3 {
        agent.record(activity(n)).unwrap();
    }
    drop(agent);
    // What an agent of before left: no device key, no chain links.
    {
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("station").unwrap();
        assert!(tree.remove(b"m:device_key").unwrap().is_some());
        let links: Vec<_> = tree.scan_prefix(b"h:").keys().map(Result::unwrap).collect();
        assert_eq!(links.len(), 3);
        for link in links {
            tree.remove(link).unwrap();
        }
        db.flush().unwrap();
    }
    let upgraded = Agent::open(dir.path(), OpenOptions::default()).unwrap();
    every_head_verifies(&upgraded);
    upgraded.record(activity(4)).unwrap();
    every_head_verifies(&upgraded);
}
