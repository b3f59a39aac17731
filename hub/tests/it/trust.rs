//! What one enrolled device may not do to the records of others, through a
//! real hub: pin a case with a clock from the far future, or write into a
//! case file of another station. Both reach quarantine, with the reason, and
//! the case reads as its own station's devices left it.

use crate::events::*;
use crate::fixtures::{Hub, authorized};
use station_proto::Body;
use station_proto::v1::{GetCaseTimelineRequest, GetCaseloadRequest, GetQuarantineRequest, Tier};

async fn quarantine_reasons(hub: &Hub, bureau: &str) -> Vec<String> {
    let answer = hub
        .query()
        .get_quarantine(authorized(
            GetQuarantineRequest {
                stations: vec![],
                max_events: 0,
            },
            bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    answer.events.into_iter().map(|q| q.reason).collect()
}

/// The tiers of the open cases of `station`, from the caseload.
async fn open_tiers(hub: &Hub, bureau: &str, station: &str) -> Vec<Tier> {
    let caseload = hub
        .query()
        .get_caseload(authorized(
            GetCaseloadRequest {
                stations: vec![station.into()],
            },
            bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    caseload
        .cells
        .iter()
        .filter(|c| c.open_cases > 0)
        .map(|c| c.tier())
        .collect()
}

#[tokio::test]
async fn an_event_from_the_far_future_does_not_pin_a_case() {
    let hub = Hub::start().await;
    let bureau = hub.bureau_token("民政局");
    let (real_token, other_token) = (
        hub.device_token(ZEDANG, "phone-1"),
        hub.device_token(ZEDANG, "phone-2"),
    );
    let mut real = Device::new(ZEDANG, "worker-1");
    let open = real.record(opened(
        "卓玛",
        1,
        "540502001001",
        Tier::Key,
        &[station_proto::v1::Category::Elderly],
        "2025-02-01",
    ));
    let case = id_of(&open);
    assert_eq!(hub.push(&real_token, std::slice::from_ref(&open)).await, 0);

    let mut other = Device::new(ZEDANG, "worker-2");
    let mut pinned = other.record(assessed(case, Tier::General, case, "2025-02-02"));
    pinned.hlc = u64::MAX;
    let mut late = other.record(assessed(case, Tier::General, case, "2025-02-02"));
    late.recorded_at_ms = i64::MIN;
    assert_eq!(hub.push(&other_token, &[pinned, late]).await, 2);

    let raised = real.record_after(open.hlc, assessed(case, Tier::HighRisk, case, "2025-02-03"));
    assert_eq!(hub.push(&real_token, &[raised]).await, 0);
    hub.projected().await;

    assert_eq!(open_tiers(&hub, &bureau, ZEDANG).await, [Tier::HighRisk]);
    let mut reasons = quarantine_reasons(&hub, &bureau).await;
    reasons.sort();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].starts_with("hlc: is "), "{reasons:?}");
    assert_eq!(reasons[1], "recorded_at_ms: must not be before 1970");
}

#[tokio::test]
async fn another_station_cannot_write_into_a_case_file() {
    let hub = Hub::start().await;
    let bureau = hub.bureau_token("民政局");
    let own_token = hub.device_token(ZEDANG, "phone-1");
    let stranger_token = hub.device_token(CHANGZHU, "phone-9");
    let mut own = Device::new(ZEDANG, "worker-1");
    let open = own.record(opened(
        "次仁",
        2,
        "540502001001",
        Tier::Key,
        &[station_proto::v1::Category::Disabled],
        "2025-02-01",
    ));
    let case = id_of(&open);
    // An entry of another station that reaches the hub before the opening of
    // the case it names cannot be judged then: it is stored, but it never
    // shows in the case's file.
    let mut stranger = Device::new(CHANGZHU, "worker-9");
    let early = stranger.record(visit(
        case,
        "2025-02-03",
        station_proto::v1::VisitKind::Home,
    ));
    assert_eq!(hub.push(&stranger_token, &[early]).await, 0);
    let visit_by_own = own.record(visit(
        case,
        "2025-02-04",
        station_proto::v1::VisitKind::Home,
    ));
    assert_eq!(hub.push(&own_token, &[open, visit_by_own]).await, 0);

    let note = stranger.record(Body::CaseNoteAdded(station_proto::v1::CaseNoteAdded {
        case_id: case.as_bytes().to_vec(),
        kind: station_proto::v1::NoteKind::Review as i32,
        text: "不属于本站".into(),
        noted_on: "2025-02-05".into(),
    }));
    let close = stranger.record(closed(case, "2025-02-05"));
    assert_eq!(hub.push(&stranger_token, &[note, close]).await, 2);
    hub.projected().await;

    let timeline = hub
        .query()
        .get_case_timeline(authorized(
            GetCaseTimelineRequest {
                case_id: case.as_bytes().to_vec(),
                reveal: false,
            },
            &bureau,
        ))
        .await
        .unwrap()
        .into_inner();
    let stations: Vec<&str> = timeline
        .entries
        .iter()
        .map(|e| e.event.as_ref().unwrap().station_code.as_str())
        .collect();
    assert_eq!(
        stations,
        [ZEDANG, ZEDANG],
        "only the case's own station writes in it"
    );
    assert_eq!(
        open_tiers(&hub, &bureau, ZEDANG).await,
        [Tier::Key],
        "still open"
    );
    let reasons = quarantine_reasons(&hub, &bureau).await;
    assert_eq!(
        reasons,
        ["case_id: the case belongs to station 540502001, not to the event's station 540502101"; 2]
    );
}
