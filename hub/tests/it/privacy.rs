//! Minimisation on a real hub: ID numbers, phones and addresses masked in
//! every answer unless the reader asks to reveal them (and the reveal is
//! audited as such); a case closed longer than the retention period shows
//! no person in any view or report, while every count stays the same.

use std::sync::Arc;

use serde_json::Value;
use station_hub::audit::{self, Filter};
use station_hub::config::HubConfig;
use station_hub::server::ServerOptions;
use station_proto::Body;
use station_proto::mask::DEIDENTIFIED;
use station_proto::v1::{Category, GetCaseTimelineRequest, Tier};

use crate::events::*;
use crate::fixtures::{Hub, authorized};
use crate::http::fill;

/// The `caseOpened` body of a JSON timeline.
fn opening(timeline: &Value) -> Value {
    timeline["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["body"].get("caseOpened").cloned())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_numbers_are_masked_unless_revealed_and_the_reveal_is_audited() {
    let (hub, s, tokens) = fill(Hub::start().await).await;
    let id = id_number("19500101", 1, true);
    let masked_id = format!("540502********{}", &id[14..]);

    let masked = hub
        .get_as(&format!("/api/cases/{}/timeline", s.case1), &tokens.bureau)
        .await
        .json();
    assert_eq!(masked["shown"], "masked");
    let opened = opening(&masked);
    assert_eq!(opened["idNumber"], masked_id.as_str());
    assert_eq!(opened["address"], "泽当镇 ****");
    assert_eq!(opened["name"], "次仁卓玛 ཚེ་རིང་སྒྲོལ་མ");
    let text = masked.to_string();
    assert!(!text.contains(&id), "the whole ID number");

    let revealed = hub
        .get_as(
            &format!("/api/cases/{}/timeline?reveal=true", s.case1),
            &tokens.bureau,
        )
        .await
        .json();
    assert_eq!(revealed["shown"], "revealed");
    assert_eq!(opening(&revealed)["idNumber"], id.as_str());
    assert_eq!(opening(&revealed)["address"], "泽当镇 རྩེད་ཐང");
    let bad = hub
        .get_as(
            &format!("/api/cases/{}/timeline?reveal=yes", s.case1),
            &tokens.bureau,
        )
        .await;
    assert_eq!(bad.status, 400);

    let mut query = hub.query();
    for reveal in [false, true] {
        let timeline = query
            .get_case_timeline(authorized(
                GetCaseTimelineRequest {
                    case_id: s.case1.as_bytes().to_vec(),
                    reveal,
                },
                &tokens.bureau,
            ))
            .await
            .unwrap()
            .into_inner();
        let opened = timeline
            .entries
            .iter()
            .find_map(|e| match e.event.as_ref().and_then(|e| e.body.as_ref()) {
                Some(Body::CaseOpened(o)) => Some(o.clone()),
                _ => None,
            })
            .unwrap();
        let expected = if reveal { &id } else { &masked_id };
        assert_eq!(&opened.id_number, expected);
        assert_eq!(timeline.shown, if reveal { "revealed" } else { "masked" });
    }

    let records = audit::read(hub.dir(), &Filter::default()).unwrap().records;
    let revealed: Vec<bool> = records.iter().map(|r| r.revealed).collect();
    assert_eq!(revealed, [false, true, false, true]);
    assert_eq!(
        records[1].params.get("reveal").map(String::as_str),
        Some("true")
    );
    hub.stop().await;
}

/// A hub whose closed cases are de-identified 30 days after closing.
async fn deidentifying() -> Hub {
    let mut config = HubConfig::builtin().unwrap();
    config.privacy.closed_retention_days = Some(30);
    config.validate().unwrap();
    let options = ServerOptions {
        config: Some(Arc::new(config)),
        ..ServerOptions::default()
    };
    Hub::start_in(tempfile::tempdir().unwrap(), options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_cases_are_deidentified_after_retention_and_every_count_stays() {
    let mut answers = Vec::new();
    for hub in [Hub::start().await, deidentifying().await] {
        let (hub, mut s, tokens) = fill(hub).await;
        // A high-risk case never visited, overdue on 2025-03-20, closed since.
        let device = &mut s.devices[0];
        let opened = device.record(opened(
            "格桑",
            9,
            C1,
            Tier::HighRisk,
            &[Category::Elderly],
            "2025-03-01",
        ));
        let case = id_of(&opened);
        let close = device.record(closed(case, "2025-04-15"));
        assert_eq!(hub.push(&tokens.a, &[opened, close]).await, 0);
        hub.projected().await;

        let mut got = Vec::new();
        for path in [
            "/api/indicators?period=2025-03".to_string(),
            "/api/indicators?period=2025-04".to_string(),
            "/api/caseload".to_string(),
            "/api/overdue?as_of=2025-03-20".to_string(),
            format!("/reports/{ZEDANG}/overdue.csv?as_of=2025-03-20"),
            format!("/api/cases/{case}/timeline?reveal=true"),
            format!("/api/cases/{}/timeline", s.case1),
        ] {
            let reply = hub.get_as(&path, &tokens.bureau).await;
            assert_eq!(reply.status, 200, "{path}: {}", reply.text());
            got.push(reply);
        }
        answers.push((got, case));
        hub.stop().await;
    }
    let [(kept, _), (gone, case)] = <[_; 2]>::try_from(answers).unwrap();
    let json = |replies: &[crate::http::Reply], i: usize| {
        let mut value = replies[i].json();
        value
            .as_object_mut()
            .unwrap()
            .remove("computed_through_hub_seq");
        value
    };
    // Every count is the same.
    for i in 0..2 {
        let values = |replies: &[crate::http::Reply]| -> Vec<Value> {
            json(replies, i)["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| row["values"].clone())
                .collect()
        };
        assert_eq!(values(&kept), values(&gone), "indicators {i}");
    }
    assert_eq!(json(&kept, 2), json(&gone, 2), "caseload");
    let (before, after) = (json(&kept, 3), json(&gone, 3));
    assert_eq!(before["total"], after["total"]);
    assert_eq!(before["stations"], after["stations"]);
    // The one overdue case of that day: the case closed since.
    let name_of = |list: &Value| {
        let cases = list["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 1, "{list}");
        cases[0]["name"].clone()
    };
    assert_eq!(after["cases"][0]["case_id"], case.to_string());
    assert_eq!(name_of(&before), "格桑");
    assert_eq!(name_of(&after), DEIDENTIFIED);
    // The report lists the case, by case id, without its name.
    let (csv_before, csv_after) = (kept[4].text(), gone[4].text());
    assert!(csv_before.contains("格桑"));
    assert!(!csv_after.contains("格桑") && csv_after.contains(DEIDENTIFIED));
    assert!(csv_after.contains(&case.to_string()));
    assert_eq!(csv_before.lines().count(), csv_after.lines().count());
    // Its timeline shows no person, even when asked to reveal.
    let timeline = json(&gone, 5);
    assert_eq!(timeline["shown"], "deidentified");
    let opened = opening(&timeline);
    assert_eq!(opened["name"], DEIDENTIFIED);
    assert!(opened.get("idNumber").is_none_or(|v| v == ""));
    assert!(opened.get("address").is_none_or(|v| v == ""));
    assert!(
        !timeline
            .to_string()
            .contains(&id_number("19500101", 9, true))
    );
    assert_eq!(json(&kept, 5)["shown"], "revealed");
    // An open case is not de-identified.
    assert_eq!(json(&gone, 6)["shown"], "masked");
    assert_eq!(opening(&json(&gone, 6))["name"], "次仁卓玛 ཚེ་རིང་སྒྲོལ་མ");
}
