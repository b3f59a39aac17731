//! Golden fixtures pin the wire encoding of one sample event per body kind.
//!
//! Each sample is encoded and compared byte for byte with `tests/fixtures/<body>.bin`, and
//! each fixture is decoded and compared with the sample, so a change to the `.proto` files
//! that alters the encoding (a renumbered field, a changed type) fails here in both
//! directions. Run with `UPDATE_GOLDEN=1` to rewrite the fixtures after a deliberate,
//! compatible change, and review the diff.

use std::path::PathBuf;

use chrono::NaiveDate;
use prost::Message as _;
use station_proto::v1::{
    AbsenceReason, ActivityHeld, ActivityKind, BeneficiaryVerified, CallOutcome, CaseAssessed,
    CaseClosed, CaseNoteAdded, CaseOpened, CaseReopened, CaseSource, CaseTransferAccepted,
    CaseTransferDeclined, CaseTransferRequested, CasesMerged, Category, DuplicateDismissed,
    EventVoided, Gender, GroupSessionHeld, GuardianCalled, NoteKind, ResourceKind, ResourceLinked,
    ReviewApproved, ReviewRequested, ReviewReturned, ReviewSubject, Tier, TrainingHeld,
    TrainingKind, VisitAttempted, VisitKind, VisitRecorded,
};
use station_proto::validate::{self, Context};
use station_proto::{Body, Event};
use uuid::Uuid;

const STATION: &str = "540102002";
const COMMUNITY: &str = "540102002001";
/// The case every case-level sample refers to: the event id of the `case_opened` sample.
const CASE_ID: u128 = 0x0192_8c5a_1e40_7000_8000_0000_0000_0001;

fn id(n: u128) -> Vec<u8> {
    Uuid::from_u128(n).as_bytes().to_vec()
}

/// One sample per body kind, named after its fixture file.
fn samples() -> Vec<(&'static str, Event)> {
    let bodies: Vec<(&'static str, Body)> = vec![
        (
            "case_opened",
            Body::CaseOpened(CaseOpened {
                name: "次仁卓玛".into(),
                id_number: "540102199203040040".into(),
                gender: Gender::Female.into(),
                birth_date: "1992-03-04".into(),
                community_code: COMMUNITY.into(),
                address: "城关区 རྩེད་ཐང 3号".into(),
                phone: "0891-6321234".into(),
                language: "bo".into(),
                categories: vec![Category::Dibao.into(), Category::Disabled.into()],
                tier: Tier::Key.into(),
                source: CaseSource::Outreach.into(),
                opened_on: "2026-10-12".into(),
                file_number: String::new(),
                duplicate_reason: String::new(),
                duplicate_of_stations: Vec::new(),
            }),
        ),
        (
            "case_assessed",
            Body::CaseAssessed(CaseAssessed {
                case_id: id(CASE_ID),
                tier: Tier::HighRisk.into(),
                reason: "独居，冬季取暖困难 གྲང་ངར་ཆེ།".into(),
                last_seen_event_id: id(CASE_ID),
                assessed_on: "2026-10-15".into(),
            }),
        ),
        (
            "case_note_added",
            Body::CaseNoteAdded(CaseNoteAdded {
                case_id: id(CASE_ID),
                kind: NoteKind::Plan.into(),
                text: "服务计划：\n\t1. 每周入户一次\n\t2. 链接取暖物资\nབཀྲ་ཤིས་བདེ་ལེགས།".into(),
                noted_on: "2026-10-15".into(),
            }),
        ),
        (
            "case_closed",
            Body::CaseClosed(CaseClosed {
                case_id: id(CASE_ID),
                reason: "迁往日喀则".into(),
                closed_on: "2026-10-20".into(),
            }),
        ),
        (
            "case_reopened",
            Body::CaseReopened(CaseReopened {
                case_id: id(CASE_ID),
                reason: "返乡居住".into(),
                reopened_on: "2026-10-25".into(),
                tier: Tier::General.into(),
            }),
        ),
        (
            "visit_recorded",
            Body::VisitRecorded(VisitRecorded {
                case_id: id(CASE_ID),
                visit_date: "2026-10-26".into(),
                kind: VisitKind::Home.into(),
                duration_minutes: 45,
                notes: "家中炉子损坏 ཐབ་ཆག་འདུག".into(),
                needs_found: vec!["冬季取暖".into(), "医疗报销".into()],
            }),
        ),
        (
            "beneficiary_verified",
            Body::BeneficiaryVerified(BeneficiaryVerified {
                case_id: id(CASE_ID),
                verified_on: "2026-10-27".into(),
                categories: vec![Category::Dibao.into()],
                still_eligible: true,
                notes: "低保资格核实无误".into(),
            }),
        ),
        (
            "activity_held",
            Body::ActivityHeld(ActivityHeld {
                held_on: "2026-10-28".into(),
                community_code: COMMUNITY.into(),
                kind: ActivityKind::Clinic.into(),
                title: "义诊进社区 སྨན་བཅོས".into(),
                participants: 40,
                person_times: 55,
                volunteers: 6,
                volunteer_minutes: 720,
            }),
        ),
        (
            "group_session_held",
            Body::GroupSessionHeld(GroupSessionHeld {
                group_name: "老年互助小组".into(),
                session_number: 3,
                held_on: "2026-10-29".into(),
                community_code: COMMUNITY.into(),
                participants: 8,
                topic: "防范电信诈骗".into(),
            }),
        ),
        (
            "resource_linked",
            Body::ResourceLinked(ResourceLinked {
                case_id: id(CASE_ID),
                linked_on: "2026-10-30".into(),
                kind: ResourceKind::InKind.into(),
                source: "拉萨市慈善总会".into(),
                cash_fen: 50_000,
                in_kind_fen: 120_000,
                description: "棉被两床、取暖炉一台".into(),
            }),
        ),
        (
            "training_held",
            Body::TrainingHeld(TrainingHeld {
                held_on: "2026-10-31".into(),
                kind: TrainingKind::CoLearning.into(),
                title: "个案管理共学 ལས་དོན་སློབ་སྦྱོང".into(),
                trainees: 12,
                minutes: 90,
            }),
        ),
        (
            "event_voided",
            Body::EventVoided(EventVoided {
                voided_event_id: id(0x0192_8c5a_1e40_7000_8000_0000_0000_0008),
                reason: "参与人数录入错误".into(),
            }),
        ),
        (
            "guardian_called",
            Body::GuardianCalled(GuardianCalled {
                case_id: id(CASE_ID),
                called_on: "2026-11-01".into(),
                outcome: CallOutcome::Reached.into(),
                duration_minutes: 8,
                notes: "监护人在拉萨务工，孩子由奶奶照看".into(),
            }),
        ),
        (
            "cases_merged",
            Body::CasesMerged(CasesMerged {
                survivor_case_id: id(CASE_ID),
                absorbed_case_id: id(0x0192_8c5a_1e40_7000_8000_0000_0000_0009),
                reason: "两部手机离线时各建了一档".into(),
                merged_on: "2026-11-02".into(),
            }),
        ),
        (
            "duplicate_dismissed",
            Body::DuplicateDismissed(DuplicateDismissed {
                case_id: id(CASE_ID),
                duplicate_of_case_id: id(0x0192_8c5a_1e40_7000_8000_0000_0000_000a),
                reason: "身份证号录错，是两个人".into(),
                dismissed_on: "2026-11-02".into(),
            }),
        ),
        (
            "review_requested",
            Body::ReviewRequested(ReviewRequested {
                case_id: id(CASE_ID),
                subject: ReviewSubject::Closure.into(),
                subject_event_id: id(0x0192_8c5a_1e40_7000_8000_0000_0000_0004),
                last_seen_event_id: id(0x0192_8c5a_1e40_7000_8000_0000_0000_0004),
                requested_on: "2026-11-01".into(),
                note: "迁往日喀则，已办理转介".into(),
            }),
        ),
        (
            "review_approved",
            Body::ReviewApproved(ReviewApproved {
                case_id: id(CASE_ID),
                request_id: id(0x0192_8c5a_1e40_7000_8000_0000_0000_0010),
                last_seen_event_id: id(0x0192_8c5a_1e40_7000_8000_0000_0000_0010),
                decided_on: "2026-11-02".into(),
                comment: String::new(),
            }),
        ),
        (
            "review_returned",
            Body::ReviewReturned(ReviewReturned {
                case_id: id(CASE_ID),
                request_id: id(0x0192_8c5a_1e40_7000_8000_0000_0000_0010),
                last_seen_event_id: id(0x0192_8c5a_1e40_7000_8000_0000_0000_0010),
                decided_on: "2026-11-02".into(),
                comment: "请补充转介回执 ཡིག་ཆ".into(),
            }),
        ),
        (
            "case_transfer_requested",
            Body::CaseTransferRequested(CaseTransferRequested {
                case_id: id(CASE_ID),
                to_station_code: "540502001".into(),
                reason: "全家迁居泽当 རྩེད་ཐང".into(),
                requested_on: "2026-11-01".into(),
            }),
        ),
        (
            "case_transfer_accepted",
            Body::CaseTransferAccepted(CaseTransferAccepted {
                case_id: id(CASE_ID),
                // The request: the 19th sample.
                request_id: id(0x0192_8c5a_1e40_7000_8000_0000_0000_0013),
                community_code: COMMUNITY.into(),
                accepted_on: "2026-11-02".into(),
                note: "已入户核实".into(),
            }),
        ),
        (
            "case_transfer_declined",
            Body::CaseTransferDeclined(CaseTransferDeclined {
                case_id: id(CASE_ID),
                request_id: id(0x0192_8c5a_1e40_7000_8000_0000_0000_0013),
                reason: "地址不在本站辖区".into(),
                declined_on: "2026-11-02".into(),
            }),
        ),
        (
            "visit_attempted",
            Body::VisitAttempted(VisitAttempted {
                case_id: id(CASE_ID),
                attempted_on: "2026-11-01".into(),
                reason: AbsenceReason::Away.into(),
                notes: "邻居说老人去拉萨看病了".into(),
            }),
        ),
    ];
    bodies
        .into_iter()
        .zip(1u64..)
        .map(|((name, body), n)| {
            let event = Event {
                event_id: id(0x0192_8c5a_1e40_7000_8000_0000_0000_0000 | u128::from(n)),
                origin_id: id(0x5f1e_0000_0000_4000_8000_0000_0000_00aa),
                origin_seq: n,
                station_code: STATION.into(),
                author: "sw-次仁".into(),
                recorded_at_ms: 1_792_000_000_000 + i64::try_from(n).unwrap_or(0) * 60_000,
                hlc: (1_792_000_000_000u64 + n * 60_000) << 16 | n,
                body: Some(body),
            };
            (name, event)
        })
        .collect()
}

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.bin"))
}

fn update_requested() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

/// The snake_case name of a body; exhaustive, so a new body kind fails to compile here until
/// it gets a sample.
fn body_name(body: &Body) -> &'static str {
    match body {
        Body::CaseOpened(_) => "case_opened",
        Body::CaseAssessed(_) => "case_assessed",
        Body::CaseNoteAdded(_) => "case_note_added",
        Body::CaseClosed(_) => "case_closed",
        Body::CaseReopened(_) => "case_reopened",
        Body::VisitRecorded(_) => "visit_recorded",
        Body::BeneficiaryVerified(_) => "beneficiary_verified",
        Body::ActivityHeld(_) => "activity_held",
        Body::GroupSessionHeld(_) => "group_session_held",
        Body::ResourceLinked(_) => "resource_linked",
        Body::TrainingHeld(_) => "training_held",
        Body::EventVoided(_) => "event_voided",
        Body::GuardianCalled(_) => "guardian_called",
        Body::CasesMerged(_) => "cases_merged",
        Body::DuplicateDismissed(_) => "duplicate_dismissed",
        Body::CaseTransferRequested(_) => "case_transfer_requested",
        Body::CaseTransferAccepted(_) => "case_transfer_accepted",
        Body::CaseTransferDeclined(_) => "case_transfer_declined",
        Body::ReviewRequested(_) => "review_requested",
        Body::ReviewApproved(_) => "review_approved",
        Body::ReviewReturned(_) => "review_returned",
        Body::VisitAttempted(_) => "visit_attempted",
    }
}

#[test]
fn there_is_one_sample_per_body_kind() {
    let mut names = std::collections::BTreeSet::new();
    for (name, event) in samples() {
        assert_eq!(event.body.as_ref().map(body_name), Some(name));
        assert!(names.insert(name), "{name} twice");
    }
    assert_eq!(names.len(), 22);
}

#[test]
fn every_kind_is_named_after_its_field_of_the_body_oneof() {
    let pool = prost_reflect::DescriptorPool::decode(station_proto::FILE_DESCRIPTOR_SET)
        .expect("the crate's descriptors decode");
    let envelope = pool
        .get_message_by_name("station.v1.Event")
        .expect("Event is described");
    for (name, event) in samples() {
        let body = event.body.as_ref().expect("every sample has a body");
        assert_eq!(body.kind().name(), name);
        let decoded = prost_reflect::DynamicMessage::decode(
            envelope.clone(),
            event.encode_to_vec().as_slice(),
        )
        .expect("the sample decodes");
        let set: Vec<String> = envelope
            .oneofs()
            .flat_map(|oneof| oneof.fields().collect::<Vec<_>>())
            .filter(|field| decoded.has_field(field))
            .map(|field| field.name().to_string())
            .collect();
        assert_eq!(set, [body.kind().name()], "{name}");
    }
}

#[test]
fn samples_encode_to_the_fixtures() {
    let update = update_requested();
    for (name, event) in samples() {
        let path = fixture_path(name);
        let bytes = event.encode_to_vec();
        if update {
            std::fs::write(&path, &bytes).expect("write fixture");
            continue;
        }
        let fixture = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
        assert_eq!(
            bytes, fixture,
            "{name}: the encoding changed; if that is deliberate and wire-compatible, \
             run with UPDATE_GOLDEN=1 and review the diff"
        );
    }
}

#[test]
fn fixtures_decode_to_the_samples() {
    if update_requested() {
        return;
    }
    for (name, event) in samples() {
        let fixture = std::fs::read(fixture_path(name)).expect("fixture exists");
        let decoded = Event::decode(fixture.as_slice()).expect("fixture decodes");
        assert_eq!(decoded, event, "{name}");
    }
}

#[test]
fn samples_are_valid_and_already_normalised() {
    let ctx = Context::on(NaiveDate::from_ymd_opt(2026, 11, 2).expect("valid date"));
    for (name, event) in samples() {
        let mut checked = event.clone();
        assert_eq!(validate::event(&mut checked, &ctx), Ok(()), "{name}");
        assert_eq!(checked, event, "{name}: validation changed the sample");
    }
}
