//! The facade called directly from Rust: entries validated and recorded,
//! refusals mapped to the public error with no personal data in it, stores
//! opened, reopened and refused, sync errors classified.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{Days, NaiveDate};
use station_agent::sync::SyncError;
use station_agent::{AgentError, StoreError};
use station_mobile::{AbsenceReason, VisitAttempt};
use station_mobile::{
    ActivityKind, Assessment, CallOutcome, CaseClosing, CaseMerging, CaseNote, CaseOpening,
    CaseReopening, CaseSource, CaseStatus, Category, CommunityActivity, DuplicateDismissal,
    EntryKind, FieldError, FieldStore, Gender, GroupSession, GuardianCall, NoteKind, Resource,
    ResourceKind, ReviewDecision, ReviewRequest, ReviewState, ReviewSubject, StoreOptions, Tier,
    Training, TrainingKind, Verification, Visit, VisitKind, Voiding, new_entry_id,
};
use station_mobile::{KeyProvider, KeyProviderError};

const STATION: &str = "540502001";
const COMMUNITY: &str = "540502001003";
const NAME: &str = "བསོད་ནམས་སྒྲོལ་མ";
const ADDRESS: &str = "泽当街道 རྩེད་ཐང 5组";
const PHONE: &str = "13908931234";

/// A GB 11643 ID number of 乃东区 born on `birth`, female, with its check character.
fn id_number(birth: NaiveDate) -> String {
    let body = format!("540502{}024", birth.format("%Y%m%d"));
    station_proto::id_number::with_check_character(&body).expect("17 digits")
}

fn today() -> NaiveDate {
    station_agent::engine::today()
}

fn date(days_from_today: i64) -> String {
    let today = today();
    let day = if days_from_today >= 0 {
        today.checked_add_days(Days::new(days_from_today.unsigned_abs()))
    } else {
        today.checked_sub_days(Days::new(days_from_today.unsigned_abs()))
    };
    day.unwrap().format("%Y-%m-%d").to_string()
}

fn birth() -> NaiveDate {
    NaiveDate::from_ymd_opt(1948, 2, 29).unwrap()
}

fn opening() -> CaseOpening {
    CaseOpening {
        name: NAME.into(),
        id_number: id_number(birth()),
        gender: Gender::Female,
        birth_date: birth().format("%Y-%m-%d").to_string(),
        community_code: COMMUNITY.into(),
        address: ADDRESS.into(),
        phone: PHONE.into(),
        language: "bo".into(),
        categories: vec![Category::Elderly, Category::Tekun],
        tier: Tier::HighRisk,
        source: CaseSource::Referral,
        opened_on: date(-10),
        entry_id: None,
    }
}

fn visit(case_id: &str, days_from_today: i64) -> Visit {
    Visit {
        case_id: case_id.into(),
        visit_date: date(days_from_today),
        kind: VisitKind::Home,
        duration_minutes: 40,
        notes: format!("{NAME} 老人腿脚不便"),
        needs_found: vec!["助行器".into()],
        entry_id: None,
    }
}

/// Stands in for the platform's key store: wraps with a fixed mask (an app
/// uses the Android Keystore or the iOS Keychain).
#[derive(Debug)]
struct TestKeys;

impl KeyProvider for TestKeys {
    fn wrap(&self, data_key: Vec<u8>) -> Result<Vec<u8>, KeyProviderError> {
        Ok(data_key.iter().map(|b| b ^ 0x5a).collect())
    }

    fn unwrap(&self, wrapped: Vec<u8>) -> Result<Vec<u8>, KeyProviderError> {
        Ok(wrapped.iter().map(|b| b ^ 0x5a).collect())
    }
}

fn keys() -> std::sync::Arc<dyn KeyProvider> {
    std::sync::Arc::new(TestKeys)
}

fn open(dir: &tempfile::TempDir) -> std::sync::Arc<FieldStore> {
    FieldStore::open(
        dir.path().display().to_string(),
        STATION.into(),
        "zd-01".into(),
        keys(),
    )
    .unwrap()
}

/// Every piece of personal data the tests enter.
fn personal_data() -> Vec<String> {
    let id = id_number(birth());
    vec![
        NAME.into(),
        ADDRESS.into(),
        PHONE.into(),
        id.clone(),
        id[..17].into(),
        id[6..14].into(),
        "老人腿脚不便".into(),
    ]
}

#[track_caller]
fn assert_no_personal_data(error: &FieldError) {
    let shown = format!("{error} {error:?}");
    for value in personal_data() {
        assert!(!shown.contains(&value), "{value:?} leaked into {shown}");
    }
}

#[track_caller]
fn assert_invalid(result: Result<impl std::fmt::Debug, FieldError>, expected_field: &str) {
    match result {
        Err(error @ FieldError::InvalidInput { .. }) => {
            assert_no_personal_data(&error);
            let FieldError::InvalidInput { field, .. } = error else {
                unreachable!()
            };
            assert_eq!(field, expected_field);
        }
        other => panic!("expected InvalidInput on {expected_field}, got {other:?}"),
    }
}

#[test]
fn the_store_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<FieldStore>();
}

#[test]
fn every_entry_form_is_recorded_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let case_id = store.open_case(opening()).unwrap().event_id;
    store.record_visit(visit(&case_id, -2)).unwrap();
    store
        .assess_case(Assessment {
            case_id: case_id.clone(),
            tier: Tier::Key,
            reason: "情况稳定".into(),
            assessed_on: date(0),
            last_seen_event_id: Some(store.case(case_id.clone()).unwrap().last_event_id),
            entry_id: None,
        })
        .unwrap();
    store
        .add_note(CaseNote {
            case_id: case_id.clone(),
            kind: NoteKind::Intervention,
            text: "链接助行器".into(),
            noted_on: date(0),
            entry_id: None,
        })
        .unwrap();
    store
        .record_guardian_call(GuardianCall {
            case_id: case_id.clone(),
            called_on: date(0),
            outcome: CallOutcome::Reached,
            duration_minutes: 6,
            notes: "女儿在拉萨，每周回来".into(),
            entry_id: None,
        })
        .unwrap();
    store
        .verify_beneficiary(Verification {
            case_id: case_id.clone(),
            verified_on: date(0),
            categories: vec![Category::Tekun],
            still_eligible: true,
            notes: String::new(),
            entry_id: None,
        })
        .unwrap();
    let resource = store
        .link_resource(Resource {
            case_id: Some(case_id.clone()),
            linked_on: date(0),
            kind: ResourceKind::InKind,
            source: "山南市慈善总会".into(),
            cash_fen: 0,
            in_kind_fen: 35_000,
            description: "助行器一台".into(),
            entry_id: None,
        })
        .unwrap();
    store
        .close_case(CaseClosing {
            case_id: case_id.clone(),
            reason: "入住敬老院".into(),
            closed_on: date(0),
            entry_id: None,
        })
        .unwrap();
    store
        .reopen_case(CaseReopening {
            case_id: case_id.clone(),
            reason: "返家居住".into(),
            reopened_on: date(0),
            tier: None,
            entry_id: None,
        })
        .unwrap();
    store
        .void_entry(Voiding {
            event_id: resource.event_id.clone(),
            reason: "重复登记".into(),
            entry_id: None,
        })
        .unwrap();
    store
        .record_activity(CommunityActivity {
            held_on: date(0),
            community_code: COMMUNITY.into(),
            kind: ActivityKind::Clinic,
            title: "义诊 སྨན་བཅོས".into(),
            participants: 50,
            person_times: 50,
            volunteers: 4,
            volunteer_minutes: 960,
            entry_id: None,
        })
        .unwrap();
    store
        .record_group_session(GroupSession {
            group_name: "老年互助小组".into(),
            session_number: 1,
            held_on: date(0),
            community_code: COMMUNITY.into(),
            participants: 8,
            topic: String::new(),
            entry_id: None,
        })
        .unwrap();
    let last = store
        .record_training(Training {
            held_on: date(0),
            kind: TrainingKind::CoLearning,
            title: "共学：个案记录".into(),
            trainees: 2,
            minutes: 90,
            entry_id: None,
        })
        .unwrap();
    assert_eq!(last.origin_seq, 13);

    let case = store.case(case_id.clone()).unwrap();
    assert_eq!(case.name, NAME);
    assert_eq!(case.tier, Some(Tier::Key));
    assert_eq!(case.status, CaseStatus::Open);
    assert_eq!(case.categories, vec![Category::Tekun]);
    assert_eq!(case.next_due, Some(date(30)));
    let kinds: Vec<EntryKind> = store
        .case_timeline(case_id)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EntryKind::CaseOpened,
            EntryKind::Visit,
            EntryKind::CaseAssessed,
            EntryKind::NoteAdded,
            EntryKind::GuardianCall,
            EntryKind::Verification,
            EntryKind::CaseClosed,
            EntryKind::CaseReopened,
        ]
    );
    let recent = store.recent_entries(3).unwrap();
    assert_eq!(
        recent.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [
            EntryKind::Training,
            EntryKind::GroupSession,
            EntryKind::Activity
        ]
    );
    assert_eq!(store.unacknowledged_count().unwrap(), 13);
}

#[test]
fn a_visit_that_found_nobody_is_shown_and_leaves_the_follow_up_due() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let case_id = store.open_case(opening()).unwrap().event_id;
    let attempt = |attempted_on: String| VisitAttempt {
        case_id: case_id.clone(),
        attempted_on,
        reason: AbsenceReason::NobodyHome,
        notes: format!("{NAME} 家中无人"),
        entry_id: None,
    };
    let recorded = store.record_visit_attempt(attempt(date(-1))).unwrap();
    assert_eq!(recorded.origin_seq, 2);
    let head = store.status().unwrap().head_seq;
    let refused = store.record_visit_attempt(attempt(date(2))).unwrap_err();
    assert_no_personal_data(&refused);
    assert_invalid(Err::<(), _>(refused), "visit_attempted.attempted_on");
    assert_eq!(
        store
            .record_visit_attempt(VisitAttempt {
                case_id: new_entry_id(),
                ..attempt(date(0))
            })
            .unwrap_err(),
        FieldError::UnknownCase {
            field: "visit_attempted.case_id".into()
        }
    );
    assert_eq!(store.status().unwrap().head_seq, head);

    // Nobody was seen: the high-risk case opened ten days ago is still overdue.
    let case = store.case(case_id.clone()).unwrap();
    assert_eq!(case.next_due, Some(date(-3)));
    assert_eq!(case.last_visit, None);
    let timeline = store.case_timeline(case_id).unwrap();
    let line = timeline.last().unwrap();
    assert_eq!(line.kind, EntryKind::VisitAttempt);
    assert_eq!(line.date, date(-1));
    assert_eq!(line.event_id, recorded.event_id);
}

#[test]
fn refused_entries_name_field_and_rule_and_record_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let case_id = store.open_case(opening()).unwrap().event_id;
    let head = store.status().unwrap().head_seq;

    let mut bad_check = opening();
    let good = bad_check.id_number.clone();
    let wrong = if good.ends_with('0') { '1' } else { '0' };
    bad_check.id_number = format!("{}{wrong}", &good[..17]);
    let error = store.open_case(bad_check).unwrap_err();
    match &error {
        FieldError::InvalidInput { field, rule } => {
            assert_eq!(field, "case_opened.id_number");
            assert_eq!(
                rule,
                "check character does not match the first 17 characters"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_no_personal_data(&error);

    let mut long_name = opening();
    long_name.name = NAME.repeat(4);
    assert_invalid(store.open_case(long_name), "case_opened.name");
    let mut male = opening();
    male.gender = Gender::Male;
    assert_invalid(store.open_case(male), "case_opened.gender");
    let mut elsewhere = opening();
    elsewhere.community_code = "540502101001".into();
    assert_invalid(store.open_case(elsewhere), "case_opened.community_code");
    let mut control = opening();
    control.address = format!("{ADDRESS}\u{7}");
    assert_invalid(store.open_case(control), "case_opened.address");
    let mut phone = opening();
    phone.phone = format!("{PHONE}#");
    assert_invalid(store.open_case(phone), "case_opened.phone");
    assert_invalid(
        store.record_visit(visit(&case_id, 2)),
        "visit_recorded.visit_date",
    );
    let mut long_visit = visit(&case_id, 0);
    long_visit.duration_minutes = -5;
    assert_invalid(
        store.record_visit(long_visit),
        "visit_recorded.duration_minutes",
    );
    assert_invalid(store.record_visit(visit("", 0)), "visit_recorded.case_id");
    assert_invalid(
        store.link_resource(Resource {
            case_id: None,
            linked_on: date(0),
            kind: ResourceKind::Cash,
            source: "乃东区民政局".into(),
            cash_fen: -1,
            in_kind_fen: 0,
            description: ADDRESS.into(),
            entry_id: None,
        }),
        "resource_linked.cash_fen",
    );
    assert_invalid(
        store.record_activity(CommunityActivity {
            held_on: date(0),
            community_code: COMMUNITY.into(),
            kind: ActivityKind::Other,
            title: "活动".into(),
            participants: 10,
            person_times: 5,
            volunteers: 0,
            volunteer_minutes: 0,
            entry_id: None,
        }),
        "activity_held.person_times",
    );
    let mut keyed = visit(&case_id, 0);
    keyed.entry_id = Some(station_proto::ids::Uuid::new_v4().hyphenated().to_string());
    assert_invalid(store.record_visit(keyed), "entry_id");

    let unknown = store.record_visit(visit(&new_entry_id(), 0)).unwrap_err();
    assert_eq!(
        unknown,
        FieldError::UnknownCase {
            field: "visit_recorded.case_id".into()
        }
    );
    assert_eq!(
        store
            .void_entry(Voiding {
                event_id: new_entry_id(),
                reason: "x".into(),
                entry_id: None
            })
            .unwrap_err(),
        FieldError::UnknownEntry {
            field: "event_voided.voided_event_id".into()
        }
    );
    assert_eq!(
        store.case(new_entry_id()).unwrap_err(),
        FieldError::UnknownCase {
            field: "case_id".into()
        }
    );
    assert!(matches!(
        store.case_timeline(new_entry_id()),
        Err(FieldError::UnknownCase { .. })
    ));
    assert_eq!(store.status().unwrap().head_seq, head);
    assert_eq!(store.case(case_id).unwrap().visits, 0);
}

#[test]
fn case_state_errors_map_to_their_variants() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let case_id = store.open_case(opening()).unwrap().event_id;
    let second = store.open_case(opening()).unwrap_err();
    assert_eq!(
        second,
        FieldError::PersonHasOpenFile {
            field: "case_opened.id_number".into(),
            case_id: case_id.clone(),
        }
    );
    assert_no_personal_data(&second);
    let reopening = || CaseReopening {
        case_id: case_id.clone(),
        reason: "x".into(),
        reopened_on: date(0),
        tier: Some(Tier::General),
        entry_id: None,
    };
    assert_eq!(
        store.reopen_case(reopening()).unwrap_err(),
        FieldError::CaseAlreadyOpen {
            field: "case_reopened.case_id".into()
        }
    );
    store
        .close_case(CaseClosing {
            case_id: case_id.clone(),
            reason: "x".into(),
            closed_on: date(0),
            entry_id: None,
        })
        .unwrap();
    assert_eq!(
        store.record_visit(visit(&case_id, 0)).unwrap_err(),
        FieldError::CaseClosed {
            field: "visit_recorded.case_id".into()
        }
    );
    let reopened = store.reopen_case(reopening()).unwrap();
    assert_eq!(
        store.case(case_id.clone()).unwrap().tier,
        Some(Tier::General)
    );
    let void = |event_id: &str| Voiding {
        event_id: event_id.into(),
        reason: "错误".into(),
        entry_id: None,
    };
    let voiding = store.void_entry(void(&reopened.event_id)).unwrap();
    assert!(matches!(
        store.void_entry(void(&reopened.event_id)),
        Err(FieldError::InvalidInput { rule, .. }) if rule == "the entry is voided already"
    ));
    assert!(matches!(
        store.void_entry(void(&voiding.event_id)),
        Err(FieldError::InvalidInput { field, .. }) if field == "event_voided.voided_event_id"
    ));
    assert_eq!(
        store.case(case_id).unwrap().status,
        CaseStatus::Closed,
        "the voided reopening no longer counts"
    );
}

#[test]
fn a_case_is_named_by_its_id_or_a_prefix_no_other_case_shares() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let case_id = store.open_case(opening()).unwrap().event_id;
    let mut other = opening();
    other.id_number = id_number(NaiveDate::from_ymd_opt(1950, 3, 1).unwrap());
    other.birth_date = "1950-03-01".into();
    let other_id = store.open_case(other).unwrap().event_id;

    // By its 档案编号, as written on the paper file.
    let number = store.case(case_id.clone()).unwrap().file_number;
    assert!(
        number.starts_with("泽当-") && number.ends_with("-0001"),
        "{number}"
    );
    assert_eq!(store.case(number).unwrap().case_id, case_id);
    let unique = case_id.replace('-', "")[..31].to_uppercase();
    store.record_visit(visit(&unique, 0)).unwrap();
    assert_eq!(store.case(unique.clone()).unwrap().case_id, case_id);
    assert_eq!(store.case_timeline(unique).unwrap().len(), 2);

    let shared = &case_id[..4];
    assert_eq!(
        shared,
        &other_id[..4],
        "ids made moments apart share their first digits"
    );
    match store.record_visit(visit(shared, 0)).unwrap_err() {
        FieldError::InvalidInput { field, rule } => {
            assert_eq!(field, "visit_recorded.case_id");
            assert_eq!(rule, "names several cases: give the whole case id");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.record_visit(visit("ffff", 0)).unwrap_err(),
        FieldError::UnknownCase {
            field: "visit_recorded.case_id".into()
        }
    );
    assert_eq!(store.status().unwrap().head_seq, 3);
}

#[test]
fn open_initialises_once_and_refuses_another_identity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store").display().to_string();
    let store = FieldStore::open(path.clone(), STATION.into(), " zd-01 ".into(), keys()).unwrap();
    let origin = store.status().unwrap().origin_id;
    let case_id = store.open_case(opening()).unwrap().event_id;
    assert!(matches!(
        FieldStore::open(path.clone(), STATION.into(), "zd-01".into(), keys()),
        Err(FieldError::Storage { reason }) if reason.contains("already open")
    ));
    drop(store);

    let store = FieldStore::open(path.clone(), STATION.into(), "zd-01".into(), keys()).unwrap();
    assert_eq!(store.status().unwrap().origin_id, origin);
    assert_eq!(store.case(case_id).unwrap().name, NAME);
    drop(store);

    let station =
        FieldStore::open(path.clone(), "540502200".into(), "zd-01".into(), keys()).unwrap_err();
    assert!(matches!(&station, FieldError::WrongStore { reason } if reason.contains(STATION)));
    let worker = FieldStore::open(path.clone(), STATION.into(), "卓玛".into(), keys()).unwrap_err();
    assert!(
        matches!(&worker, FieldError::WrongStore { reason } if !reason.contains("zd-01") && !reason.contains("卓玛"))
    );
    assert!(matches!(
        FieldStore::open(path, "5405020".into(), "zd-01".into(), keys()),
        Err(FieldError::InvalidInput { field, .. }) if field == "station_code"
    ));
}

#[test]
fn sync_needs_configuration_and_returns_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = FieldStore::open_with_options(
        dir.path().display().to_string(),
        STATION.into(),
        "zd-01".into(),
        keys(),
        StoreOptions {
            sync_timeout_secs: 2,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    assert_eq!(store.sync_now().unwrap_err(), FieldError::NotConfigured);
    assert!(matches!(
        store.configure("hub:7400".into(), "t".into()),
        Err(FieldError::InvalidInput { field, .. }) if field == "hub_url"
    ));
    assert!(matches!(
        store.configure("http://127.0.0.1:9".into(), "a b".into()),
        Err(FieldError::InvalidInput { field, .. }) if field == "token"
    ));
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    store
        .configure(format!("http://127.0.0.1:{closed_port}"), "sst-x".into())
        .unwrap();
    store.open_case(opening()).unwrap();
    let started = std::time::Instant::now();
    let error = store.sync_now().unwrap_err();
    assert!(matches!(error, FieldError::Network { .. }), "{error:?}");
    // A guard against hanging, not a performance figure: the bound is 2 s.
    assert!(started.elapsed() < Duration::from_secs(30));
    let status = store.status().unwrap();
    assert_eq!((status.backlog, status.durable_through), (1, 0));
    assert!(status.last_error.unwrap().starts_with("network error"));
}

#[test]
fn sync_errors_map_to_what_the_app_should_do() {
    let rpc = |code| SyncError::Rpc {
        call: "Push",
        code,
        message: "hub said so".into(),
    };
    assert!(matches!(
        FieldError::from(rpc(tonic::Code::Unauthenticated)),
        FieldError::Auth { .. }
    ));
    assert!(matches!(
        FieldError::from(rpc(tonic::Code::PermissionDenied)),
        FieldError::Auth { .. }
    ));
    assert!(matches!(
        FieldError::from(rpc(tonic::Code::Unavailable)),
        FieldError::Network { .. }
    ));
    assert!(matches!(
        FieldError::from(rpc(tonic::Code::InvalidArgument)),
        FieldError::Refused { .. }
    ));
    assert_eq!(
        FieldError::from(SyncError::NoHub),
        FieldError::NotConfigured
    );
    assert!(matches!(
        FieldError::from(SyncError::Connect("refused".into())),
        FieldError::Network { .. }
    ));
    assert!(matches!(
        FieldError::from(SyncError::BadAddress("ftp://x".into())),
        FieldError::InvalidInput { field, .. } if field == "hub_url"
    ));

    // A relayed validation rule loses the expected check character.
    let relayed = FieldError::from(SyncError::Rpc {
        call: "Push",
        code: tonic::Code::InvalidArgument,
        message: "case_opened.id_number: check character should be X".into(),
    });
    assert!(!relayed.to_string().contains("be X"), "{relayed}");

    // Store details that may quote stored bytes are never relayed.
    let corrupt = FieldError::from(SyncError::Agent(AgentError::Store(StoreError::Corrupt(
        format!("case view: invalid type: string \"{NAME}\""),
    ))));
    assert_no_personal_data(&corrupt);
    assert!(matches!(corrupt, FieldError::Storage { .. }));
}

#[test]
fn two_files_of_one_person_are_merged_and_a_flag_is_dismissed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let earlier = store.open_case(opening()).unwrap().event_id;
    store.record_visit(visit(&earlier, -9)).unwrap();
    store
        .close_case(CaseClosing {
            case_id: earlier.clone(),
            reason: "迁出".into(),
            closed_on: date(-8),
            entry_id: None,
        })
        .unwrap();
    let later = store
        .open_case(CaseOpening {
            opened_on: date(-5),
            ..opening()
        })
        .unwrap()
        .event_id;
    let merging = |survivor: &str, absorbed: &str| CaseMerging {
        survivor_case_id: survivor.into(),
        absorbed_case_id: absorbed.into(),
        reason: "同一人两份档案".into(),
        merged_on: date(0),
        entry_id: None,
    };
    store.merge_cases(merging(&later, &earlier)).unwrap();
    let absorbed = store.case(earlier.clone()).unwrap();
    assert_eq!(absorbed.merged_into.as_deref(), Some(later.as_str()));
    assert_eq!(absorbed.status, CaseStatus::Closed);
    let survivor = store.case(later.clone()).unwrap();
    assert_eq!((survivor.status, survivor.visits), (CaseStatus::Open, 1));
    let timeline = store.case_timeline(later.clone()).unwrap();
    assert!(
        timeline.iter().any(|e| e.kind == EntryKind::CasesMerged),
        "{timeline:?}"
    );
    assert!(timeline.iter().any(|e| e.kind == EntryKind::Visit));
    // A merged file cannot survive another merge.
    assert_invalid(
        store.merge_cases(merging(&earlier, &later)),
        "cases_merged.survivor_case_id",
    );
    store
        .dismiss_duplicate(DuplicateDismissal {
            case_id: later.clone(),
            duplicate_of_case_id: earlier.clone(),
            reason: "不是同一人".into(),
            dismissed_on: date(0),
            entry_id: None,
        })
        .unwrap();
    assert_invalid(
        store.dismiss_duplicate(DuplicateDismissal {
            case_id: later.clone(),
            duplicate_of_case_id: later,
            reason: "x".into(),
            dismissed_on: date(0),
            entry_id: None,
        }),
        "duplicate_dismissed.duplicate_of_case_id",
    );
}

#[test]
fn a_closure_is_asked_for_review_returned_and_resubmitted_on_the_phone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let case_id = store.open_case(opening()).unwrap().event_id;
    let nothing = store
        .request_review(ReviewRequest {
            case_id: case_id.clone(),
            subject: ReviewSubject::Closure,
            subject_event_id: None,
            note: String::new(),
            requested_on: date(0),
            entry_id: None,
        })
        .unwrap_err();
    assert!(
        matches!(&nothing, FieldError::InvalidInput { field, .. } if field == "review_requested.subject_event_id"),
        "{nothing:?}"
    );
    store
        .close_case(CaseClosing {
            case_id: case_id.clone(),
            reason: "入住敬老院".into(),
            closed_on: date(0),
            entry_id: None,
        })
        .unwrap();
    let request = store
        .request_review(ReviewRequest {
            case_id: case_id.clone(),
            subject: ReviewSubject::Closure,
            subject_event_id: None,
            note: "请审核".into(),
            requested_on: date(0),
            entry_id: None,
        })
        .unwrap()
        .event_id;
    let waiting = store.reviews(false).unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].state, ReviewState::Pending);
    assert_eq!(waiting[0].subject, Some(ReviewSubject::Closure));
    let refused = store
        .decide_review(ReviewDecision {
            request_id: request.clone(),
            approve: false,
            comment: String::new(),
            decided_on: date(0),
            last_seen_event_id: None,
            entry_id: None,
        })
        .unwrap_err();
    assert!(
        matches!(&refused, FieldError::InvalidInput { field, .. } if field == "review_returned.comment"),
        "{refused:?}"
    );
    store
        .decide_review(ReviewDecision {
            request_id: request.clone(),
            approve: false,
            comment: "请补充入住证明".into(),
            decided_on: date(0),
            last_seen_event_id: Some(waiting[0].case_last_event_id.clone()),
            entry_id: None,
        })
        .unwrap();
    let returned = store.reviews(false).unwrap();
    assert_eq!(returned[0].state, ReviewState::Returned);
    assert_eq!(returned[0].comment, "请补充入住证明");
    assert!(!returned[0].stale);
    let timeline = store.case_timeline(case_id.clone()).unwrap();
    assert_eq!(
        timeline.last().map(|e| e.kind),
        Some(EntryKind::ReviewReturned)
    );
    store
        .request_review(ReviewRequest {
            case_id,
            subject: ReviewSubject::Closure,
            subject_event_id: None,
            note: String::new(),
            requested_on: date(0),
            entry_id: None,
        })
        .unwrap();
    let now = store.reviews(false).unwrap();
    assert_eq!(now.len(), 1, "the returned one is resubmitted");
    assert_eq!(now[0].state, ReviewState::Pending);
    assert_eq!(store.reviews(true).unwrap().len(), 2);
}
