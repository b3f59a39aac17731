//! The district's review policy through the facade the apps call: before a
//! hub told one nothing needs review; once the store holds the hub's policy
//! (as a sync leaves it) the phone says which entries need review, and
//! records a plan and a closure with their review requests, offline, each
//! saved again without a second request.

#![allow(clippy::unwrap_used)]

use chrono::{Days, NaiveDate};
use station_mobile::{
    Assessment, CaseClosing, CaseNote, CaseOpening, CaseSource, Category, FieldStore, Gender,
    KeyProvider, KeyProviderError, NoteKind, ReviewPolicy, ReviewState, ReviewSubject, Tier,
    new_entry_id,
};

const STATION: &str = "540502001";

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

fn date(days_ago: u64) -> String {
    station_agent::engine::today()
        .checked_sub_days(Days::new(days_ago))
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

#[test]
fn entries_the_districts_policy_names_are_recorded_with_their_review_request() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        FieldStore::open(
            dir.path().display().to_string(),
            STATION.into(),
            "zd-01".into(),
            std::sync::Arc::new(TestKeys),
        )
        .unwrap()
    };
    let store = open();
    assert_eq!(store.review_policy().unwrap(), ReviewPolicy::default());
    assert!(!store.needs_review(ReviewSubject::Closure).unwrap());
    let birth = NaiveDate::from_ymd_opt(1948, 2, 29).unwrap();
    let id_number = station_proto::id_number::with_check_character(&format!(
        "540502{}024",
        birth.format("%Y%m%d")
    ))
    .unwrap();
    let case_id = store
        .open_case(CaseOpening {
            name: "次仁".into(),
            id_number,
            gender: Gender::Female,
            birth_date: birth.format("%Y-%m-%d").to_string(),
            community_code: "540502001003".into(),
            address: String::new(),
            phone: String::new(),
            language: "bo".into(),
            categories: vec![Category::Elderly],
            tier: Tier::Key,
            source: CaseSource::Referral,
            opened_on: date(10),
            entry_id: None,
        })
        .unwrap()
        .event_id;
    let plan = |entry_id: Option<String>| {
        store.add_note(CaseNote {
            case_id: case_id.clone(),
            kind: NoteKind::Plan,
            text: "每周探访".into(),
            noted_on: date(1),
            entry_id,
        })
    };
    assert_eq!(plan(None).unwrap().review_request_id, None);

    // The hub's policy, as the last sync's Hello left it in the store.
    store
        .agent()
        .unwrap()
        .log()
        .set_review_policy(&station_proto::review::ReviewPolicy {
            case_plan: true,
            closure: true,
            ..Default::default()
        })
        .unwrap();
    drop(store);
    let store = open();
    assert_eq!(
        store.review_policy().unwrap(),
        ReviewPolicy {
            tier_change: false,
            case_plan: true,
            closure: true,
        }
    );
    assert!(store.needs_review(ReviewSubject::CasePlan).unwrap());
    assert!(!store.needs_review(ReviewSubject::TierChange).unwrap());

    let tier = store
        .assess_case(Assessment {
            case_id: case_id.clone(),
            tier: Tier::HighRisk,
            reason: "独居".into(),
            assessed_on: date(0),
            last_seen_event_id: None,
            entry_id: None,
        })
        .unwrap();
    assert_eq!(tier.review_request_id, None);
    let plan_entry = Some(new_entry_id());
    let plan = |entry_id: Option<String>| {
        store.add_note(CaseNote {
            case_id: case_id.clone(),
            kind: NoteKind::Plan,
            text: "每三天探访".into(),
            noted_on: date(0),
            entry_id,
        })
    };
    let first = plan(plan_entry.clone()).unwrap();
    let plan_review = first.review_request_id.clone().unwrap();
    let again = plan(plan_entry).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.review_request_id, None, "asked once only");
    let closure = store
        .close_case(CaseClosing {
            case_id: case_id.clone(),
            reason: "迁出".into(),
            closed_on: date(0),
            entry_id: None,
        })
        .unwrap();
    let closure_review = closure.review_request_id.unwrap();

    let mut waiting: Vec<_> = store
        .reviews(false)
        .unwrap()
        .into_iter()
        .map(|r| (r.request_id, r.subject, r.state))
        .collect();
    waiting.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![
        (
            plan_review,
            Some(ReviewSubject::CasePlan),
            ReviewState::Pending,
        ),
        (
            closure_review,
            Some(ReviewSubject::Closure),
            ReviewState::Pending,
        ),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(waiting, expected);
}
