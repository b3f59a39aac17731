//! The sync-health answer reads "now" from the clock the server was given
//! ([`ServerOptions::clock`]), the one it stamps receipts and last contact
//! with: a simulated district's devices, which synced a moment ago on its
//! clock, show as just heard from over Query, JSON and the dashboard.

use std::sync::Arc;

use station_agent::clock::{Clock, SharedClock};
use station_agent::sync::{SyncOptions, sync_once};
use station_agent::{Agent, InitOptions, OpenOptions};
use station_hub::server::ServerOptions;
use station_proto::v1::GetSyncHealthRequest;

use crate::fixtures::{Hub, activity, authorized};

const STATION: &str = "540502001";

/// A clock that stands still at a time of its own.
#[derive(Debug)]
struct StillClock(i64);

impl Clock for StillClock {
    fn now_ms(&self) -> i64 {
        self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_contact_and_lag_are_measured_against_the_servers_clock() {
    // Ten days behind the machine's clock, as a simulation's evening is.
    let then = chrono::Utc::now().timestamp_millis() - 10 * 86_400_000;
    let clock: SharedClock = Arc::new(StillClock(then));
    let hub = Hub::start_in(
        tempfile::tempdir().unwrap(),
        ServerOptions {
            clock: Arc::clone(&clock),
            ..ServerOptions::default()
        },
    )
    .await;
    let token = hub.device_token(STATION, "泽当-1");
    let bureau = hub.bureau_token("山南市民政局");
    let dir = tempfile::tempdir().unwrap();
    let agent = Arc::new(
        Agent::init(
            dir.path(),
            InitOptions {
                station_code: STATION.into(),
                worker_id: "sw-01".into(),
                hub_url: None,
                token: None,
            },
            OpenOptions {
                clock: Arc::clone(&clock),
                ..OpenOptions::default()
            },
        )
        .unwrap(),
    );
    agent.record(activity(STATION, 1)).unwrap();
    let report = sync_once(
        Arc::clone(&agent),
        &SyncOptions::new(hub.url(), Some(token)),
    )
    .await
    .unwrap();
    assert_eq!(report.pushed, 1);
    hub.projected().await;

    let health = hub
        .query()
        .get_sync_health(authorized(GetSyncHealthRequest::default(), &bureau))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.hub_clock_ms, then,
        "the server's clock, not the machine's"
    );
    let device = &health.devices[0];
    assert_eq!(device.last_contact_ms, then);
    assert_eq!(device.backlog, 0);

    let json = hub.get_as("/api/sync-health", &bureau).await.json();
    assert_eq!(json["hub_clock_ms"], then, "{json}");
    assert_eq!(json["devices"][0]["last_contact_ms"], then, "{json}");
    assert_eq!(json["devices"][0]["mean_lag_ms"], 0, "{json}");

    // On the dashboard the device was just heard from: its last contact is
    // not marked silent (it would be, ten days on the machine's clock).
    let page = hub.get_as("/", &bureau).await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    let row = html
        .split("<tr data-origin=\"")
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_else(|| panic!("no device row in {html}"))
        .to_string();
    assert!(row.contains("<td class=\"\">"), "{row}");
    assert!(!row.contains("class=\"warn\""), "{row}");
    hub.stop().await;
}
