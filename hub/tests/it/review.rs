//! Supervision end to end: a real hub on an ephemeral port configured to
//! count closures only once approved, a worker's phone and a supervisor's
//! phone with their own logs, syncing one round at a time. The supervisor
//! decides offline; a return reaches the worker's phone; a decision taken on
//! a case that changed since is flagged; the ledger counts the closure once
//! approved; a supervisor token pushes nothing but decisions.

use std::sync::Arc;

use station_agent::Agent;
use station_agent::sync::{SyncOptions, sync_once};
use station_hub::auth;
use station_hub::config::{DEFAULT_TOML, HubConfig};
use station_hub::projections::Projections;
use station_hub::projections::period::Metric;
use station_hub::server::ServerOptions;
use station_proto::Body;
use station_proto::ids::Uuid;
use station_proto::review::ReviewState;
use station_proto::v1::{
    CaseClosed, CaseNoteAdded, CaseOpened, CaseSource, Category, Gender, GetReviewsRequest,
    NoteKind, ReviewApproved, ReviewRequested, ReviewReturned, ReviewSubject, Tier,
};

use crate::fixtures::{Hub, activity, authorized, device, hub_cli, stdout_of};

const STATION: &str = "540502001";

fn day() -> String {
    station_hub::projections::today_in_china()
        .format("%Y-%m-%d")
        .to_string()
}

fn opening() -> Body {
    Body::CaseOpened(CaseOpened {
        name: "次仁 ཚེ་རིང".into(),
        id_number: "11010519491231002X".into(),
        gender: Gender::Female as i32,
        birth_date: "1949-12-31".into(),
        community_code: format!("{STATION}002"),
        language: "bo".into(),
        categories: vec![Category::Elderly as i32],
        tier: Tier::Key as i32,
        source: CaseSource::Outreach as i32,
        opened_on: day(),
        ..CaseOpened::default()
    })
}

fn closure_request(case_id: Uuid) -> Body {
    Body::ReviewRequested(ReviewRequested {
        case_id: case_id.as_bytes().to_vec(),
        subject: ReviewSubject::Closure as i32,
        requested_on: day(),
        note: "迁往拉萨".into(),
        ..ReviewRequested::default()
    })
}

async fn sync(hub: &Hub, agent: &Arc<Agent>, token: &str) -> station_agent::sync::SyncReport {
    sync_once(
        Arc::clone(agent),
        &SyncOptions::new(hub.url(), Some(token.to_string())),
    )
    .await
    .unwrap()
}

fn closed_this_month(projections: &Projections) -> i64 {
    let month = station_hub::params::period(
        &station_hub::projections::today_in_china()
            .format("%Y-%m")
            .to_string(),
    )
    .unwrap();
    let table = projections
        .indicators(month, &[STATION.to_string()])
        .unwrap();
    table.rows[0]
        .values
        .iter()
        .find(|v| v.metric == Metric::CasesClosed)
        .unwrap()
        .raw
}

fn queue(projections: &Projections, all: bool) -> station_hub::projections::ReviewQueue {
    projections
        .reviews(
            &[STATION.to_string()],
            station_hub::projections::today_in_china(),
            all,
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closure_is_returned_resubmitted_and_approved_offline_and_counts_once_approved() {
    let config = HubConfig::from_toml(&DEFAULT_TOML.replace(
        "closure = false\ncount_closures_when_approved = false",
        "closure = true\ncount_closures_when_approved = true",
    ))
    .unwrap();
    assert!(config.review.count_closures_when_approved);
    let hub = Hub::start_in(
        tempfile::tempdir().unwrap(),
        ServerOptions {
            config: Some(Arc::new(config)),
            ..ServerOptions::default()
        },
    )
    .await;
    let worker_token = hub.device_token(STATION, "泽当-1");
    let supervisor_token = auth::enroll_supervisor(&hub.store, "督导 卓玛", &[STATION.to_string()])
        .unwrap()
        .bearer;
    let (worker_dir, supervisor_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let worker = device(worker_dir.path(), STATION, "sw-01");
    let supervisor = device(supervisor_dir.path(), STATION, "sup-01");

    // The worker closes a case and asks for the closure to be reviewed.
    let case_id = worker.record(opening()).unwrap().event_id;
    let closed = worker
        .record(Body::CaseClosed(CaseClosed {
            case_id: case_id.as_bytes().to_vec(),
            reason: "迁出".into(),
            closed_on: day(),
        }))
        .unwrap()
        .event_id;
    let first_request = worker.record(closure_request(case_id)).unwrap().event_id;
    sync(&hub, &worker, &worker_token).await;
    hub.projected().await;
    let waiting = queue(&hub.projections, false);
    assert_eq!(waiting.pending, 1);
    assert_eq!(waiting.reviews[0].request_id, first_request);
    assert_eq!(waiting.reviews[0].subject_event_id, Some(closed));
    assert_eq!(waiting.reviews[0].requested_by, "sw-01");
    assert_eq!(
        closed_this_month(&hub.projections),
        0,
        "not counted before approval"
    );

    // The supervisor's phone pulls the station, then returns the request
    // offline: the hub knows nothing until it syncs.
    sync(&hub, &supervisor, &supervisor_token).await;
    supervisor
        .record(Body::ReviewReturned(ReviewReturned {
            request_id: first_request.as_bytes().to_vec(),
            decided_on: day(),
            comment: "请补充迁出证明".into(),
            ..ReviewReturned::default()
        }))
        .unwrap();
    hub.projected().await;
    assert_eq!(queue(&hub.projections, false).pending, 1);
    let report = sync(&hub, &supervisor, &supervisor_token).await;
    assert_eq!(report.pushed, 1);
    hub.projected().await;
    let returned = queue(&hub.projections, false);
    assert_eq!(returned.pending, 0);
    assert_eq!(returned.reviews.len(), 1);
    assert_eq!(returned.reviews[0].state, ReviewState::Returned);
    assert_eq!(returned.reviews[0].decided_by, "sup-01");
    assert!(!returned.reviews[0].stale);

    // The return reaches the worker's phone, with its comment.
    sync(&hub, &worker, &worker_token).await;
    let items = worker.review_items().unwrap();
    let shown: Vec<_> = items
        .iter()
        .filter(|(_, item)| item.is_returned())
        .collect();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].1.comment, "请补充迁出证明");
    assert_eq!(shown[0].0.case_id, case_id);

    // The worker resubmits; the returned item leaves the phone's list.
    let second_request = worker.record(closure_request(case_id)).unwrap().event_id;
    assert!(
        worker
            .review_items()
            .unwrap()
            .iter()
            .all(|(_, item)| !item.is_returned())
    );
    sync(&hub, &worker, &worker_token).await;
    sync(&hub, &supervisor, &supervisor_token).await;

    // The worker adds to the case after the supervisor last looked; the
    // supervisor, offline, approves what it saw: the decision is stale.
    worker
        .record(Body::CaseNoteAdded(CaseNoteAdded {
            case_id: case_id.as_bytes().to_vec(),
            kind: NoteKind::Intervention as i32,
            text: "已联系拉萨社工站".into(),
            noted_on: day(),
        }))
        .unwrap();
    sync(&hub, &worker, &worker_token).await;
    supervisor
        .record(Body::ReviewApproved(ReviewApproved {
            request_id: second_request.as_bytes().to_vec(),
            decided_on: day(),
            ..ReviewApproved::default()
        }))
        .unwrap();
    sync(&hub, &supervisor, &supervisor_token).await;
    hub.projected().await;
    let every = queue(&hub.projections, true);
    let approved = every
        .reviews
        .iter()
        .find(|r| r.request_id == second_request)
        .unwrap();
    assert_eq!(approved.state, ReviewState::Approved);
    assert!(approved.stale, "approved on a case that changed since");
    assert_eq!(every.stale, 1);
    let first = every
        .reviews
        .iter()
        .find(|r| r.request_id == first_request)
        .unwrap();
    assert_eq!(first.superseded_by, Some(second_request));
    assert_eq!(queue(&hub.projections, false).reviews.len(), 0);
    assert_eq!(
        closed_this_month(&hub.projections),
        1,
        "counted once approved"
    );

    // The same over Query, with the supervisor's token; another station's
    // reviews are not its to read.
    let mut query = hub.query();
    let answer = query
        .get_reviews(authorized(
            GetReviewsRequest {
                all: true,
                ..GetReviewsRequest::default()
            },
            &supervisor_token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.reviews.len(), 2);
    assert!(answer.closure_needs_review && answer.closures_count_when_approved);
    assert_eq!(answer.stale, 1);
    let refused = query
        .get_reviews(authorized(
            GetReviewsRequest {
                stations: vec!["540502101".into()],
                ..GetReviewsRequest::default()
            },
            &supervisor_token,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    // A supervisor token pushes review decisions only: anything else is
    // refused and parked on the phone, and the hub stores nothing of it.
    let before = hub.store.event_count();
    supervisor.record(activity(STATION, 3)).unwrap();
    let report = sync(&hub, &supervisor, &supervisor_token).await;
    let parked = report.parked.expect("refused for good");
    assert!(
        parked.reason.contains("review decisions only"),
        "{}",
        parked.reason
    );
    assert_eq!(hub.store.event_count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_closures_count_at_once() {
    let hub = Hub::start().await;
    let token = hub.device_token(STATION, "泽当-2");
    let dir = tempfile::tempdir().unwrap();
    let worker = device(dir.path(), STATION, "sw-02");
    let case_id = worker.record(opening()).unwrap().event_id;
    worker
        .record(Body::CaseClosed(CaseClosed {
            case_id: case_id.as_bytes().to_vec(),
            reason: "迁出".into(),
            closed_on: day(),
        }))
        .unwrap();
    worker.record(closure_request(case_id)).unwrap();
    sync(&hub, &worker, &token).await;
    hub.projected().await;
    assert_eq!(closed_this_month(&hub.projections), 1);
    assert_eq!(queue(&hub.projections, false).pending, 1);
    // A request naming no tier change of the case is refused on the phone.
    let refused = worker.record(Body::ReviewRequested(ReviewRequested {
        case_id: case_id.as_bytes().to_vec(),
        subject: ReviewSubject::TierChange as i32,
        requested_on: day(),
        ..ReviewRequested::default()
    }));
    let message = refused.unwrap_err().to_string();
    assert!(
        message.contains("has no tier-change to review"),
        "{message}"
    );
}

#[test]
fn a_supervisor_is_enrolled_for_stations_on_the_roster() {
    let data = tempfile::tempdir().unwrap();
    let token = stdout_of(&hub_cli(
        data.path(),
        &[
            "enroll",
            "--supervisor",
            "督导 卓玛",
            "--station",
            "540502001,540502101",
        ],
    ));
    let token_id = token.trim().split_once('.').unwrap().0.to_string();
    let listing = stdout_of(&hub_cli(data.path(), &["tokens"]));
    let row: Vec<&str> = listing
        .lines()
        .find(|line| line.starts_with(&token_id))
        .unwrap()
        .split('\t')
        .collect();
    assert_eq!(
        row[..5],
        [
            token_id.as_str(),
            "supervisor",
            "540502001,540502101",
            "督导 卓玛",
            "-"
        ]
    );
    for args in [
        &["enroll", "--supervisor", "x", "--station", "540502999"][..],
        &["enroll", "--supervisor", "x", "--station", "5405"][..],
        &["enroll", "--supervisor", "x"][..],
        &[
            "enroll",
            "--supervisor",
            "x",
            "--device",
            "y",
            "--station",
            "540502001",
        ][..],
    ] {
        let output = hub_cli(data.path(), args);
        assert!(!output.status.success(), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

/// A `station-hub serve` process over `data` with the configuration file
/// `config`, on ephemeral ports; killed when dropped.
struct ServedHub {
    child: std::process::Child,
    url: String,
}

impl ServedHub {
    fn start(data: &std::path::Path, config: &std::path::Path) -> ServedHub {
        use std::io::BufRead as _;
        let mut child = crate::fixtures::hub_command(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(data)
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("the hub exited before serving")
                .unwrap();
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.to_string();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        ServedHub {
            child,
            url: format!("http://{addr}"),
        }
    }

    async fn sync(&self, agent: &Arc<Agent>, token: &str) -> station_agent::sync::SyncReport {
        sync_once(
            Arc::clone(agent),
            &SyncOptions::new(self.url.clone(), Some(token.to_string())),
        )
        .await
        .unwrap()
    }

    /// The review queue (every row) and the closures counted this month,
    /// once the hub's projections hold its first `hub_seq` events.
    async fn read(
        &self,
        bureau: &str,
        hub_seq: u64,
    ) -> (station_proto::v1::GetReviewsResponse, i64) {
        use station_proto::v1::query_client::QueryClient;
        use station_proto::v1::{GetIndicatorsRequest, GetReviewsRequest};
        let channel = tonic::transport::Channel::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut query = QueryClient::new(channel);
        let month = station_hub::projections::today_in_china()
            .format("%Y-%m")
            .to_string();
        let started = std::time::Instant::now();
        loop {
            let reviews = query
                .get_reviews(authorized(
                    GetReviewsRequest {
                        all: true,
                        stations: vec![STATION.into()],
                        ..GetReviewsRequest::default()
                    },
                    bureau,
                ))
                .await
                .unwrap()
                .into_inner();
            let indicators = query
                .get_indicators(authorized(
                    GetIndicatorsRequest {
                        period: month.clone(),
                        stations: vec![STATION.into()],
                    },
                    bureau,
                ))
                .await
                .unwrap()
                .into_inner();
            if reviews.computed_through_hub_seq >= hub_seq
                && indicators.computed_through_hub_seq >= hub_seq
            {
                let closed = indicators.rows[0]
                    .values
                    .iter()
                    .find(|v| v.metric == "cases_closed")
                    .map_or(0, |v| v.raw);
                return (reviews, closed);
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "the hub's projections stay at {} of {hub_seq}",
                reviews.computed_through_hub_seq
            );
            // The projector runs in the hub's process: ask again.
            tokio::task::yield_now().await;
        }
    }
}

impl Drop for ServedHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The same round trips as above through a `station-hub serve` process,
/// its tokens issued by `station-hub enroll` and its configuration read from
/// a file: an offline supervisor decides, then syncs; the return reaches the
/// worker's phone until resubmitted; an approval of a case changed since is
/// flagged stale; the ledger counts the closure only once approved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_round_trips_through_a_served_hub() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let config = dir.path().join("hub.toml");
    std::fs::write(
        &config,
        DEFAULT_TOML.replace(
            "closure = false\ncount_closures_when_approved = false",
            "closure = true\ncount_closures_when_approved = true",
        ),
    )
    .unwrap();
    let issue = |args: &[&str]| stdout_of(&hub_cli(&data, args)).trim().to_string();
    let worker_token = issue(&["enroll", "--station", STATION, "--device", "泽当-1"]);
    let supervisor_token = issue(&["enroll", "--supervisor", "督导 卓玛", "--station", STATION]);
    let bureau = issue(&["enroll", "--bureau", "山南市民政局"]);
    let hub = ServedHub::start(&data, &config);
    let (worker_dir, supervisor_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let worker = device(worker_dir.path(), STATION, "sw-01");
    let supervisor = device(supervisor_dir.path(), STATION, "sup-01");

    // The worker closes a case and asks for review: waiting, not counted.
    let case_id = worker.record(opening()).unwrap().event_id;
    worker
        .record(Body::CaseClosed(CaseClosed {
            case_id: case_id.as_bytes().to_vec(),
            reason: "迁出".into(),
            closed_on: day(),
        }))
        .unwrap();
    let first_request = worker.record(closure_request(case_id)).unwrap().event_id;
    assert_eq!(hub.sync(&worker, &worker_token).await.pushed, 3);
    let (queue, closed) = hub.read(&bureau, 3).await;
    assert!(queue.closure_needs_review && queue.closures_count_when_approved);
    assert_eq!((queue.pending, closed), (1, 0));

    // The supervisor pulls, returns it offline, and syncs later.
    hub.sync(&supervisor, &supervisor_token).await;
    supervisor
        .record(Body::ReviewReturned(ReviewReturned {
            request_id: first_request.as_bytes().to_vec(),
            decided_on: day(),
            comment: "请补充迁出证明".into(),
            ..ReviewReturned::default()
        }))
        .unwrap();
    let (queue, _) = hub.read(&bureau, 3).await;
    assert_eq!(queue.pending, 1, "the hub knows nothing before it syncs");
    assert_eq!(hub.sync(&supervisor, &supervisor_token).await.pushed, 1);
    let (queue, closed) = hub.read(&bureau, 4).await;
    assert_eq!((queue.pending, closed), (0, 0));
    assert_eq!(queue.reviews[0].state, "returned");
    assert_eq!(queue.reviews[0].comment, "请补充迁出证明");
    assert_eq!(queue.reviews[0].decided_by, "sup-01");

    // The return shows on the worker's phone until resubmitted.
    hub.sync(&worker, &worker_token).await;
    let returned: Vec<_> = worker
        .review_items()
        .unwrap()
        .into_iter()
        .filter(|(_, item)| item.is_returned())
        .collect();
    assert_eq!(returned.len(), 1);
    assert_eq!(returned[0].1.comment, "请补充迁出证明");
    let second_request = worker.record(closure_request(case_id)).unwrap().event_id;
    assert!(
        worker
            .review_items()
            .unwrap()
            .iter()
            .all(|(_, item)| !item.is_returned())
    );
    hub.sync(&worker, &worker_token).await;
    hub.sync(&supervisor, &supervisor_token).await;

    // The case changes after the supervisor last saw it; the approval taken
    // offline is flagged stale, and the closure now counts.
    worker
        .record(Body::CaseNoteAdded(CaseNoteAdded {
            case_id: case_id.as_bytes().to_vec(),
            kind: NoteKind::Intervention as i32,
            text: "已联系拉萨社工站".into(),
            noted_on: day(),
        }))
        .unwrap();
    hub.sync(&worker, &worker_token).await;
    supervisor
        .record(Body::ReviewApproved(ReviewApproved {
            request_id: second_request.as_bytes().to_vec(),
            decided_on: day(),
            ..ReviewApproved::default()
        }))
        .unwrap();
    assert_eq!(hub.sync(&supervisor, &supervisor_token).await.pushed, 1);
    let (queue, closed) = hub.read(&bureau, 7).await;
    let approved = queue
        .reviews
        .iter()
        .find(|r| r.request_id == second_request.as_bytes())
        .unwrap();
    assert_eq!(approved.state, "approved");
    assert!(approved.stale, "approved on a case that changed since");
    assert_eq!((queue.pending, queue.stale, closed), (0, 1, 1));
}

/// The hub's `[review]` reaches its devices: a `station-hub serve` process
/// configured so that case plans and closures need review (tier changes do
/// not) tells a worker's phone at its first sync; the phone keeps it across
/// a restart and, offline, records each plan and closure with a review
/// request naming it, and nothing for a tier change; the supervisor's queue
/// on the hub then lists exactly those two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_review_policy_reaches_devices_which_ask_for_the_reviews_it_names() {
    use station_agent::OpenOptions;
    use station_proto::review::ReviewPolicy;
    use station_proto::v1::CaseAssessed;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("hub");
    let config = dir.path().join("hub.toml");
    let toml = DEFAULT_TOML.replace(
        "case_plan = false\nclosure = false",
        "case_plan = true\nclosure = true",
    );
    assert_ne!(toml, DEFAULT_TOML);
    std::fs::write(&config, toml).unwrap();
    let issue = |args: &[&str]| stdout_of(&hub_cli(&data, args)).trim().to_string();
    let worker_token = issue(&["enroll", "--station", STATION, "--device", "泽当-1"]);
    let bureau = issue(&["enroll", "--bureau", "山南市民政局"]);
    let hub = ServedHub::start(&data, &config);
    let worker_dir = tempfile::tempdir().unwrap();
    let worker = device(worker_dir.path(), STATION, "sw-01");

    // Before the hub said anything, nothing needs review.
    assert_eq!(
        worker.log().review_policy().unwrap(),
        ReviewPolicy::default()
    );
    let case_id = worker
        .record_now_reviewed(opening())
        .unwrap()
        .entry
        .event_id;
    let early_plan = worker
        .record_now_reviewed(Body::CaseNoteAdded(CaseNoteAdded {
            case_id: case_id.as_bytes().to_vec(),
            kind: NoteKind::Plan as i32,
            text: "每周探访".into(),
            noted_on: day(),
        }))
        .unwrap();
    assert_eq!(early_plan.review, None);
    assert_eq!(hub.sync(&worker, &worker_token).await.pushed, 2);
    let told = ReviewPolicy {
        case_plan: true,
        closure: true,
        ..ReviewPolicy::default()
    };
    assert_eq!(worker.log().review_policy().unwrap(), told);

    // The phone restarts offline: the policy was kept with its sync state.
    drop(worker);
    let worker = Arc::new(Agent::open(worker_dir.path(), OpenOptions::default()).unwrap());
    assert_eq!(worker.log().review_policy().unwrap(), told);
    let tier = worker
        .record_now_reviewed(Body::CaseAssessed(CaseAssessed {
            case_id: case_id.as_bytes().to_vec(),
            tier: Tier::HighRisk as i32,
            reason: "独居".into(),
            assessed_on: day(),
            ..CaseAssessed::default()
        }))
        .unwrap();
    assert_eq!(tier.review, None, "tier changes need no review here");
    let plan = worker
        .record_now_reviewed(Body::CaseNoteAdded(CaseNoteAdded {
            case_id: case_id.as_bytes().to_vec(),
            kind: NoteKind::Plan as i32,
            text: "每三天探访".into(),
            noted_on: day(),
        }))
        .unwrap();
    let closure = worker
        .record_now_reviewed(Body::CaseClosed(CaseClosed {
            case_id: case_id.as_bytes().to_vec(),
            reason: "迁出".into(),
            closed_on: day(),
        }))
        .unwrap();
    let (plan_review, closure_review) = (plan.review.unwrap(), closure.review.unwrap());
    let waiting: Vec<_> = worker
        .reviews(case_id)
        .unwrap()
        .into_iter()
        .filter(|item| item.is_queued())
        .map(|item| (item.request_id, item.subject, item.subject_event_id))
        .collect();
    assert_eq!(
        waiting,
        [
            (
                plan_review.event_id,
                ReviewSubject::CasePlan as i32,
                Some(plan.entry.event_id)
            ),
            (
                closure_review.event_id,
                ReviewSubject::Closure as i32,
                Some(closure.entry.event_id)
            ),
        ]
    );

    // Synced, the supervisors' queue on the hub holds exactly those two.
    assert_eq!(hub.sync(&worker, &worker_token).await.pushed, 5);
    let (queue, _) = hub.read(&bureau, 7).await;
    assert!(queue.closure_needs_review && !queue.closures_count_when_approved);
    assert_eq!(queue.pending, 2);
    let mut listed: Vec<_> = queue
        .reviews
        .iter()
        .map(|r| {
            (
                r.request_id.clone(),
                r.subject_event_id.clone(),
                r.state.clone(),
            )
        })
        .collect();
    listed.sort();
    let mut expected = vec![
        (
            plan_review.event_id.as_bytes().to_vec(),
            plan.entry.event_id.as_bytes().to_vec(),
            "pending".to_string(),
        ),
        (
            closure_review.event_id.as_bytes().to_vec(),
            closure.entry.event_id.as_bytes().to_vec(),
            "pending".to_string(),
        ),
    ];
    expected.sort();
    assert_eq!(listed, expected);
}
