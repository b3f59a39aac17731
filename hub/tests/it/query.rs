//! The `station.v1.Query` service on a real hub: answers computed by the
//! projector from pushes made over `Sync`, who may read what, and a restart
//! that answers from the checkpoint at once.

use crate::events::*;
use crate::fixtures::{Hub, authorized};
use station_proto::v1::sync_client::SyncClient;
use station_proto::v1::{
    GetCaseTimelineRequest, GetCaseloadRequest, GetConflictsRequest, GetIndicatorsRequest,
    GetIndicatorsResponse, GetOverdueRequest, GetQuarantineRequest, GetSyncHealthRequest,
    HelloRequest, VisitKind,
};
use tonic::Code;

impl Hub {
    async fn hello(&self, token: &str, device: &Device, head_seq: u64) {
        SyncClient::new(self.channel.clone())
            .hello(authorized(
                HelloRequest {
                    origin_id: device.origin.as_bytes().to_vec(),
                    station_code: device.station.clone(),
                    head_seq,
                    device_clock_ms: chrono::Utc::now().timestamp_millis(),
                    agent_version: "test".into(),
                    public_key: Vec::new(),
                    wiped: false,
                },
                token,
            ))
            .await
            .unwrap();
    }
}

fn raw(response: &GetIndicatorsResponse, station: &str, metric: &str) -> i64 {
    response
        .rows
        .iter()
        .find(|r| r.station_code == station)
        .unwrap()
        .values
        .iter()
        .find(|v| v.metric == metric)
        .unwrap()
        .raw
}

fn indicators(period: &str, stations: &[&str]) -> GetIndicatorsRequest {
    GetIndicatorsRequest {
        period: period.into(),
        stations: stations.iter().map(|s| s.to_string()).collect(),
    }
}

struct Tokens {
    bureau: String,
    a: String,
    b: String,
    c: String,
}

/// The scenario pushed through `Sync` by three devices: B's visit and void
/// before A's events, C's stream with one event quarantined; A and C report
/// no backlog, B a backlog of 5.
async fn filled() -> (Hub, Scenario, Tokens) {
    let hub = Hub::start().await;
    let enroll = |station: &str, name: &str| {
        station_hub::auth::enroll_device(&hub.store, station, name)
            .unwrap()
            .bearer
    };
    let tokens = Tokens {
        bureau: station_hub::auth::enroll_bureau(&hub.store, "山南市民政局")
            .unwrap()
            .bearer,
        a: enroll(ZEDANG, "泽当-1"),
        b: enroll(ZEDANG, "泽当-2"),
        c: enroll(CHANGZHU, "昌珠-1"),
    };
    let mut s = scenario();
    let mut c_stream = s.c.clone();
    let case = s.case1;
    c_stream.push(s.devices[2].record(visit(case, "2025-02-30", VisitKind::Home)));
    hub.push(&tokens.b, &s.b).await;
    hub.push(&tokens.c, &c_stream).await;
    hub.push(&tokens.a, &s.a).await;
    hub.hello(&tokens.a, &s.devices[0], s.a.len() as u64).await;
    hub.hello(&tokens.b, &s.devices[1], s.b.len() as u64 + 5)
        .await;
    hub.hello(&tokens.c, &s.devices[2], c_stream.len() as u64)
        .await;
    hub.projected().await;
    (hub, s, tokens)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bureau_reads_every_projection_of_every_station() {
    let (hub, s, tokens) = filled().await;
    let mut query = hub.query();
    let count = hub.store.event_count();
    macro_rules! bureau {
        ($m:expr) => {
            authorized($m, &tokens.bureau)
        };
    }

    let march = query
        .get_indicators(bureau!(indicators("2025-03", &[])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(march.computed_through_hub_seq, count);
    assert_eq!(march.rows.len(), 7, "every station of the roster");
    assert_eq!(
        (march.first_day.as_str(), march.last_day.as_str()),
        ("2025-03-01", "2025-03-31")
    );
    assert_eq!(raw(&march, ZEDANG, "home_visits"), 2);
    assert_eq!(raw(&march, ZEDANG, "households_visited"), 1);
    assert_eq!(raw(&march, ZEDANG, "cases_open"), 2);
    assert_eq!(raw(&march, ZEDANG, "activities"), 1);
    assert_eq!(raw(&march, ZEDANG, "resources_yuan"), 85_000);
    assert_eq!(raw(&march, CHANGZHU, "activities"), 1);
    let zedang = march
        .rows
        .iter()
        .find(|r| r.station_code == ZEDANG)
        .unwrap();
    assert_eq!(zedang.station_name_bo, "རྩེད་ཐང");
    // B still holds 5 events: Zedang is complete only through B's last
    // event the hub holds, early in 2025; Changzhu through its last contact.
    let b_last = s.b.last().unwrap().recorded_at_ms;
    assert_eq!(zedang.complete_through_ms, Some(b_last));
    assert!(!zedang.complete);
    let changzhu = march
        .rows
        .iter()
        .find(|r| r.station_code == CHANGZHU)
        .unwrap();
    assert!(changzhu.complete, "{changzhu:?}");

    let caseload = query
        .get_caseload(bureau!(GetCaseloadRequest { stations: vec![] }))
        .await
        .unwrap()
        .into_inner();
    let zd = caseload
        .stations
        .iter()
        .find(|s| s.station_code == ZEDANG)
        .unwrap();
    assert_eq!((zd.open_cases, zd.high_risk, zd.key), (2, 1, 1));
    assert_eq!(caseload.cells.len(), 3);

    let overdue = query
        .get_overdue(bureau!(GetOverdueRequest {
            as_of: "2025-04-20".into(),
            stations: vec![],
            limit: 0,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overdue.cases.len(), 1);
    assert_eq!(overdue.cases[0].case_id, s.case2.as_bytes().to_vec());
    assert_eq!(overdue.cases[0].days_overdue, 29);
    assert_eq!(overdue.cases[0].due_on, "2025-03-22");

    let conflicts = query
        .get_conflicts(bureau!(GetConflictsRequest { stations: vec![] }))
        .await
        .unwrap()
        .into_inner();
    assert!(conflicts.conflicts.is_empty());

    let health = query
        .get_sync_health(bureau!(GetSyncHealthRequest { stations: vec![] }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.devices.len(), 3);
    let b = health
        .devices
        .iter()
        .find(|d| d.origin_id == s.devices[1].origin.as_bytes())
        .unwrap();
    assert_eq!((b.backlog, b.device_name.as_str()), (5, "泽当-2"));
    assert!(b.mean_lag_ms > 0 && b.clock_skew_ms.abs() < 60_000, "{b:?}");
    let cz = health
        .stations
        .iter()
        .find(|s| s.station_code == CHANGZHU)
        .unwrap();
    assert_eq!(cz.quarantined, 1);
    let zd = health
        .stations
        .iter()
        .find(|s| s.station_code == ZEDANG)
        .unwrap();
    assert_eq!((zd.held_events, zd.voided_events), (1, 3));

    let quarantine = query
        .get_quarantine(bureau!(GetQuarantineRequest {
            stations: vec![],
            max_events: 0,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(quarantine.total, 1);
    assert!(
        quarantine.events[0].reason.contains("visit_date"),
        "{quarantine:?}"
    );

    let timeline = query
        .get_case_timeline(bureau!(GetCaseTimelineRequest {
            case_id: s.case2.as_bytes().to_vec(),
            reveal: false,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(timeline.station_code, ZEDANG);
    let voided: Vec<bool> = timeline.entries.iter().map(|e| e.voided).collect();
    assert_eq!(voided, [false, true, false]);

    // After a restart the answer comes from the checkpoint at once.
    let hub = hub.restart().await;
    assert_eq!(hub.projections.checkpoint(), count);
    let again = hub
        .query()
        .get_indicators(authorized(indicators("2025-03", &[]), &tokens.bureau))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.computed_through_hub_seq, count);
    assert_eq!(again.rows, march.rows);
    assert_eq!(hub.projections.applied_since_open(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_token_reads_its_own_station_only() {
    let (hub, s, tokens) = filled().await;
    let mut query = hub.query();
    let own = query
        .get_indicators(authorized(indicators("2025-03", &[]), &tokens.a))
        .await
        .unwrap()
        .into_inner();
    let stations: Vec<&str> = own.rows.iter().map(|r| r.station_code.as_str()).collect();
    assert_eq!(stations, [ZEDANG]);
    let refused = query
        .get_indicators(authorized(
            indicators("2025-03", &[ZEDANG, CHANGZHU]),
            &tokens.a,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = query
        .get_caseload(authorized(
            GetCaseloadRequest {
                stations: vec![CHANGZHU.into()],
            },
            &tokens.b,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let refused = query
        .get_sync_health(authorized(
            GetSyncHealthRequest {
                stations: vec![ZEDANG.into()],
            },
            &tokens.c,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    // A case of another station: refused; of its own: answered.
    let timeline = |case: station_proto::ids::Uuid| GetCaseTimelineRequest {
        case_id: case.as_bytes().to_vec(),
        reveal: false,
    };
    // Another station's case reads exactly as a case that does not exist.
    let refused = query
        .get_case_timeline(authorized(timeline(s.case1), &tokens.c))
        .await
        .unwrap_err();
    let unknown = station_proto::ids::Uuid::now_v7();
    let absent = query
        .get_case_timeline(authorized(timeline(unknown), &tokens.c))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    assert_eq!(absent.code(), Code::NotFound);
    assert_eq!(
        refused.message().replace(&s.case1.to_string(), "ID"),
        absent.message().replace(&unknown.to_string(), "ID")
    );
    query
        .get_case_timeline(authorized(timeline(s.case1), &tokens.b))
        .await
        .unwrap();
    let quarantine = query
        .get_quarantine(authorized(
            GetQuarantineRequest {
                stations: vec![],
                max_events: 0,
            },
            &tokens.a,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(quarantine.total, 0, "Changzhu's quarantine is not Zedang's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_a_token_or_with_bad_arguments_are_refused() {
    let (hub, _, tokens) = filled().await;
    let mut query = hub.query();
    let status = query
        .get_indicators(tonic::Request::new(indicators("2025-03", &[])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = query
        .get_case_timeline(tonic::Request::new(GetCaseTimelineRequest {
            case_id: vec![1; 16],
            reveal: false,
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = query
        .get_overdue(authorized(GetOverdueRequest::default(), "0123456789ab.00"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    for period in ["2025-13", "", "2025-Q5", "March"] {
        let status = query
            .get_indicators(authorized(indicators(period, &[]), &tokens.bureau))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{period:?}");
    }
    let status = query
        .get_indicators(authorized(indicators("2025", &["5405"]), &tokens.bureau))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = query
        .get_overdue(authorized(
            GetOverdueRequest {
                as_of: "2025-4-1".into(),
                stations: vec![],
                limit: 0,
            },
            &tokens.bureau,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = query
        .get_case_timeline(authorized(
            GetCaseTimelineRequest {
                case_id: vec![7; 16],
                reveal: false,
            },
            &tokens.bureau,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = query
        .get_case_timeline(authorized(
            GetCaseTimelineRequest {
                case_id: vec![7; 3],
                reveal: false,
            },
            &tokens.bureau,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}
