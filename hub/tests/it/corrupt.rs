//! A hub whose store holds a record that no longer decodes (a flipped byte,
//! a torn write under it): a read that meets it is answered `DATA_LOSS`
//! naming where, permanently, and the rest of the hub keeps serving: the
//! bureau's figures, and pushes.

use std::sync::Arc;

use station_agent::sync::{SyncOptions, sync_once};
use station_hub::server::ServerOptions;
use station_proto::v1::{GetCaseloadRequest, query_client::QueryClient};

use crate::fixtures::{Hub, activity, authorized, device};

const ZEDANG: &str = "540502001";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_of_a_damaged_record_is_data_loss_naming_where() {
    let hub = Hub::start().await;
    let token = hub.device_token(ZEDANG, "zd-1");
    let colleague = hub.device_token(ZEDANG, "zd-2");
    let bureau = hub.bureau_token("山南市民政局");
    let phone_dir = tempfile::tempdir().unwrap();
    let phone = device(phone_dir.path(), ZEDANG, "worker-1");
    for n in 1..=3 {
        phone.record(activity(ZEDANG, n)).unwrap();
    }
    sync_once(
        Arc::clone(&phone),
        &SyncOptions::new(hub.url(), Some(token.clone())),
    )
    .await
    .unwrap();
    hub.projected().await;
    let dir = hub.stop().await;

    // The record of the three events loses its last bytes.
    {
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("hub").unwrap();
        let (key, value) = tree.scan_prefix(b"l:").next().unwrap().unwrap();
        tree.insert(key, &value[..value.len() - 3]).unwrap();
        db.flush().unwrap();
    }

    let hub = Hub::start_in(dir, ServerOptions::default()).await;
    let pull = || async { hub.pull_station(&colleague, ZEDANG).await.unwrap_err() };
    let status = pull().await;
    assert_eq!(status.code(), tonic::Code::DataLoss, "{status:?}");
    assert!(
        status
            .message()
            .contains("corrupt at the run of hub positions ending at 3"),
        "{status:?}"
    );
    assert!(status.message().contains("restore it from a backup"));
    assert_eq!(
        pull().await.code(),
        tonic::Code::DataLoss,
        "the same, again"
    );

    // The rest serves: the bureau's figures, and the phone's next entry.
    QueryClient::new(hub.channel().await)
        .get_caseload(authorized(GetCaseloadRequest::default(), &bureau))
        .await
        .unwrap();
    // A colleague's phone's entry is taken; its pull of the station's
    // stream from the start meets the damaged record and says so. (The
    // first phone pulled past it in its first round, with the district
    // directory: it pulls on from there.)
    let colleague_dir = tempfile::tempdir().unwrap();
    let colleague_phone = device(colleague_dir.path(), ZEDANG, "worker-2");
    colleague_phone.record(activity(ZEDANG, 4)).unwrap();
    let once = SyncOptions {
        retry_budget: std::time::Duration::ZERO,
        ..SyncOptions::new(hub.url(), Some(colleague))
    };
    let stopped = sync_once(Arc::clone(&colleague_phone), &once)
        .await
        .unwrap_err();
    assert!(
        stopped.to_string().contains("store is corrupt"),
        "{stopped}"
    );
    assert_eq!(hub.store.event_count(), 4);
}
