//! Transfers through the facade the apps call: a station asks another to
//! take a file over, and answers this station may not give are refused
//! with the public error, naming the field, with no personal data.

#![allow(clippy::unwrap_used)]

use chrono::{Days, NaiveDate};
use station_mobile::{
    CaseOpening, CaseSource, CaseStatus, Category, FieldError, FieldStore, Gender, KeyProvider,
    KeyProviderError, Tier, TransferAcceptance, TransferDecline, TransferRequest,
};

const STATION: &str = "540502001";
const NAME: &str = "བསོད་ནམས་སྒྲོལ་མ";

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

#[track_caller]
fn assert_invalid(result: Result<impl std::fmt::Debug, FieldError>, expected_field: &str) {
    match result {
        Err(FieldError::InvalidInput { field, rule }) => {
            assert_eq!(field, expected_field, "{rule}");
            assert!(!rule.contains(NAME), "{rule}");
        }
        other => panic!("expected InvalidInput on {expected_field}, got {other:?}"),
    }
}

#[test]
fn a_transfer_is_asked_for_and_answers_this_station_may_not_give_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = FieldStore::open(
        dir.path().display().to_string(),
        STATION.into(),
        "zd-01".into(),
        std::sync::Arc::new(TestKeys),
    )
    .unwrap();
    let birth = NaiveDate::from_ymd_opt(1948, 2, 29).unwrap();
    let id_number = station_proto::id_number::with_check_character(&format!(
        "540502{}024",
        birth.format("%Y%m%d")
    ))
    .unwrap();
    let case = store
        .open_case(CaseOpening {
            name: NAME.into(),
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
    let asking = |to: &str| TransferRequest {
        case_id: case.clone(),
        to_station_code: to.into(),
        reason: "全家迁居昌珠".into(),
        requested_on: date(1),
        entry_id: None,
    };
    assert_invalid(
        store.request_transfer(asking(STATION)),
        "case_transfer_requested.to_station_code",
    );
    let request = store
        .request_transfer(asking("540502101"))
        .unwrap()
        .event_id;

    // This station was not asked: it may neither decline nor accept.
    assert_invalid(
        store.decline_transfer(TransferDecline {
            request_id: request.clone(),
            reason: "x".into(),
            declined_on: date(0),
            entry_id: None,
        }),
        "case_transfer_declined.request_id",
    );
    assert_invalid(
        store.accept_transfer(TransferAcceptance {
            request_id: case.clone(),
            community_code: "540502001003".into(),
            accepted_on: date(0),
            note: String::new(),
            entry_id: None,
        }),
        "case_transfer_accepted.request_id",
    );
    let kinds: Vec<_> = store
        .case_timeline(case.clone())
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.contains(&station_mobile::EntryKind::TransferRequested),
        "{kinds:?}"
    );
    // Until the station asked takes it over, the file stays open here.
    let summary = store.case(case).unwrap();
    assert_eq!(summary.status, CaseStatus::Open);
    assert_eq!(summary.transferred_to, None);
}
