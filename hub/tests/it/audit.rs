//! The read audit on a real hub: the records that dashboard, JSON, gRPC and
//! report reads leave, who may read them (`/api/audit`, `station-hub
//! audit`), a record edited on disk reported as a broken chain, and a read
//! refused when its record cannot be written.

use serde_json::Value;
use station_hub::audit::{self, Channel, Filter};
use station_proto::v1::{GetCaseTimelineRequest, GetOverdueRequest};

use crate::events::*;
use crate::fixtures::{authorized, hub_cli, stdout_of};
use crate::http::{filled, request};

fn token_id(bearer: &str) -> &str {
    bearer.split('.').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_naming_persons_is_recorded_with_who_what_and_where() {
    let (hub, s, tokens) = filled().await;
    let case2 = s.case2.to_string();

    // Reads that name no person leave no record.
    assert_eq!(
        hub.get_as("/api/caseload", &tokens.bureau).await.status,
        200
    );
    assert_eq!(
        hub.get_as("/reports/district/2025-03.csv", &tokens.bureau)
            .await
            .status,
        200
    );
    assert_eq!(audit::read(hub.dir(), &Filter::default()).unwrap().total, 0);

    // The dashboard, after a login.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let login = request(
        hub.http,
        "POST",
        "/login",
        &form,
        format!("token={}", tokens.bureau).as_bytes(),
    )
    .await;
    let session = login
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let page = hub.get("/?as_of=2025-04-20", &[("Cookie", &session)]).await;
    assert_eq!(page.status, 200);
    // JSON: a timeline, by a device of the case's station, and the overdue list.
    let timeline = hub
        .get_as(&format!("/api/cases/{case2}/timeline"), &tokens.a)
        .await;
    assert_eq!(timeline.status, 200);
    let overdue = hub
        .get_as("/api/overdue?as_of=2025-04-20", &tokens.bureau)
        .await;
    assert_eq!(overdue.status, 200);
    // Another station's case is refused, and not recorded as read.
    let refused = hub
        .get_as(&format!("/api/cases/{case2}/timeline"), &tokens.c)
        .await;
    assert_eq!(refused.status, 404);
    // gRPC.
    let mut query = hub.query();
    query
        .get_case_timeline(authorized(
            GetCaseTimelineRequest {
                case_id: s.case2.as_bytes().to_vec(),
                ..Default::default()
            },
            &tokens.bureau,
        ))
        .await
        .unwrap();
    query
        .get_overdue(authorized(
            GetOverdueRequest {
                as_of: "2025-04-20".into(),
                stations: vec![ZEDANG.into()],
                limit: 5,
            },
            &tokens.bureau,
        ))
        .await
        .unwrap();
    // Reports with names.
    for file in ["overdue.csv", "overdue.xlsx"] {
        let report = hub
            .get_as(
                &format!("/reports/{ZEDANG}/{file}?as_of=2025-04-20"),
                &tokens.a,
            )
            .await;
        assert_eq!(report.status, 200, "{}", report.text());
    }

    let reading = audit::read(hub.dir(), &Filter::default()).unwrap();
    assert_eq!(reading.broken, None);
    let seen: Vec<(Channel, &str)> = reading
        .records
        .iter()
        .map(|r| (r.via, r.read.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (Channel::Dashboard, "dashboard"),
            (Channel::Json, "case_timeline"),
            (Channel::Json, "overdue"),
            (Channel::Grpc, "case_timeline"),
            (Channel::Grpc, "overdue"),
            (Channel::Report, "overdue.csv"),
            (Channel::Report, "overdue.xlsx"),
        ]
    );
    let seqs: Vec<u64> = reading.records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5, 6, 7]);
    for record in &reading.records {
        let from = record.from.as_deref().unwrap_or_default();
        assert!(from.starts_with("127.0.0.1:"), "{record:?}");
        assert!(record.cases.contains(&case2), "{record:?}");
        assert!(!record.revealed);
    }
    let dashboard = &reading.records[0];
    assert_eq!(dashboard.token_id, token_id(&tokens.bureau));
    assert_eq!(dashboard.label, "山南市民政局");
    assert_eq!(dashboard.role, "bureau");
    let by_device = &reading.records[1];
    assert_eq!(by_device.token_id, token_id(&tokens.a));
    assert_eq!(by_device.role, "device");
    assert_eq!(by_device.label, format!("泽当-1 @ {ZEDANG}"));
    assert_eq!(by_device.params.get("case_id"), Some(&case2));
    let report = &reading.records[5];
    assert_eq!(
        report.params.get("station").map(String::as_str),
        Some(ZEDANG)
    );
    assert_eq!(
        report.params.get("as_of").map(String::as_str),
        Some("2025-04-20")
    );

    // Ids, never names or ID numbers, are on disk.
    for entry in std::fs::read_dir(hub.dir().join(audit::FOLDER)).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for name in ["扎西", "次仁卓玛", "尼玛"] {
            assert!(!text.contains(name), "{name} in the audit log");
        }
        for serial in 1..=4 {
            assert!(!text.contains(&id_number("19500101", serial, true)));
        }
    }

    // The bureau reads it, filtered; a device token may not.
    let all = hub.get_as("/api/audit", &tokens.bureau).await;
    assert_eq!(all.status, 200, "{}", all.text());
    let json: Value = all.json();
    assert_eq!(json["total"], 7);
    assert_eq!(json["broken"], Value::Null);
    let newest: Value = hub
        .get_as("/api/audit?limit=2", &tokens.bureau)
        .await
        .json();
    let seqs: Vec<_> = newest["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [6, 7], "the newest two, oldest first");
    assert_eq!(newest["admitted"], 7);
    let too_many = hub.get_as("/api/audit?limit=10001", &tokens.bureau).await;
    assert_eq!(too_many.status, 400);
    assert!(too_many.text().contains("limit"), "{}", too_many.text());
    let of_case2 = hub
        .get_as(
            &format!("/api/audit?case={case2}&since=2025-01-01"),
            &tokens.bureau,
        )
        .await
        .json();
    assert_eq!(of_case2["records"].as_array().unwrap().len(), 7);
    let of_case1 = hub
        .get_as(&format!("/api/audit?case={}", s.case1), &tokens.bureau)
        .await
        .json();
    assert_eq!(
        of_case1["records"].as_array().unwrap().len(),
        0,
        "not overdue, never read"
    );
    assert_eq!(of_case1["total"], 7);
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%d");
    let none = hub
        .get_as(&format!("/api/audit?since={tomorrow}"), &tokens.bureau)
        .await
        .json();
    assert_eq!(none["records"].as_array().unwrap().len(), 0);
    assert_eq!(hub.get_as("/api/audit", &tokens.a).await.status, 403);
    assert_eq!(hub.get("/api/audit", &[]).await.status, 401);
    let bad = hub
        .get_as("/api/audit?since=2025-13-01", &tokens.bureau)
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("since"), "{}", bad.text());
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_edited_on_disk_breaks_the_chain() {
    let (mut hub, s, tokens) = filled().await;
    for round in 0..3 {
        if round == 2 {
            // A restarted hub continues the chain.
            hub = hub.restart().await;
        }
        let timeline = hub
            .get_as(&format!("/api/cases/{}/timeline", s.case1), &tokens.bureau)
            .await;
        assert_eq!(timeline.status, 200, "{}", timeline.text());
    }
    let dir = hub.stop().await;
    let data = dir.path();

    let listed = hub_cli(data, &["audit", "--case", &s.case1.to_string()]);
    let lines = stdout_of(&listed);
    assert_eq!(lines.lines().count(), 3);
    let first: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["read"], "case_timeline");
    assert_eq!(first["token_id"], token_id(&tokens.bureau));
    assert!(String::from_utf8_lossy(&listed.stderr).contains("chain intact"));

    // Record 2 now names another case: its bytes no longer match its link.
    let segment = std::fs::read_dir(data.join(audit::FOLDER))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let text = std::fs::read_to_string(&segment).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[2] = lines[2].replace(&s.case1.to_string(), &s.case2.to_string());
    std::fs::write(&segment, lines.join("\n") + "\n").unwrap();

    let checked = hub_cli(data, &["audit"]);
    assert!(!checked.status.success());
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(
        stderr.contains("BROKEN") && stderr.contains("line 3"),
        "{stderr}"
    );
    let reading = audit::read(data, &Filter::default()).unwrap();
    assert_eq!(reading.broken.unwrap().line, 3);

    let bad = hub_cli(data, &["audit", "--since", "yesterday"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--since"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_cannot_be_recorded_is_refused() {
    let (hub, s, tokens) = filled().await;
    // A file where the audit's folder should be: no record can be written.
    std::fs::write(hub.dir().join(audit::FOLDER), b"in the way").unwrap();

    let timeline = hub
        .get_as(&format!("/api/cases/{}/timeline", s.case1), &tokens.bureau)
        .await;
    assert_eq!(timeline.status, 503, "{}", timeline.text());
    let error = timeline.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("read audit") && error.contains("refused"),
        "{error}"
    );
    assert!(!timeline.text().contains("次仁卓玛"));
    let report = hub
        .get_as(&format!("/reports/{ZEDANG}/overdue.csv"), &tokens.bureau)
        .await;
    assert_eq!(report.status, 503);
    let grpc = hub
        .query()
        .get_case_timeline(authorized(
            GetCaseTimelineRequest {
                case_id: s.case1.as_bytes().to_vec(),
                ..Default::default()
            },
            &tokens.bureau,
        ))
        .await
        .unwrap_err();
    assert_eq!(grpc.code(), tonic::Code::Unavailable);
    // Reads that name no person are still answered.
    assert_eq!(
        hub.get_as("/api/caseload", &tokens.bureau).await.status,
        200
    );
    hub.stop().await;
}
