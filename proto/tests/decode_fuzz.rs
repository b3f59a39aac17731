//! No panic is reachable from input: arbitrary bytes and mutated golden fixtures go through
//! `Event::decode` and `validate::event`, arbitrary lines through `json::body_from_json`, and
//! whatever happens, nothing panics; any body that decodes survives the JSON round trip.
//! Also checks the GB 11643 check character over generated ID numbers.

use std::path::PathBuf;

use chrono::{Days, NaiveDate};
use proptest::prelude::*;
use prost::Message as _;
use station_proto::Event;
use station_proto::json::{body_from_json, body_to_json};
use station_proto::validate::{self, Context};

fn ctx() -> Context {
    Context::on(NaiveDate::from_ymd_opt(2026, 11, 2).expect("valid date"))
}

/// The golden fixtures, valid encodings of one event per body kind.
fn fixtures() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/fixtures exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "bin"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
        .iter()
        .map(|path| std::fs::read(path).expect("readable fixture"))
        .collect()
}

/// Decodes and, when that succeeds, validates; the outcome does not matter, only that
/// neither step panics.
fn decode_and_validate(bytes: &[u8]) {
    if let Ok(mut event) = Event::decode(bytes) {
        let _ = validate::event(&mut event, &ctx());
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the byte at (index mod len).
    Set(usize, u8),
    /// XOR one bit of the byte at (index mod len).
    Flip(usize, u8),
    /// Insert a byte at (index mod (len + 1)).
    Insert(usize, u8),
    /// Remove the byte at (index mod len).
    Remove(usize),
    /// Cut the message at (index mod (len + 1)).
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match *m {
        Mutation::Set(i, b) if len > 0 => bytes[i % len] = b,
        Mutation::Flip(i, bit) if len > 0 => bytes[i % len] ^= 1 << bit,
        Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
        Mutation::Remove(i) if len > 0 => {
            bytes.remove(i % len);
        }
        Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
        _ => {}
    }
}

/// An 18-character ID number with a correct GB 11643 check character.
fn with_check_char(first17: &str) -> String {
    station_proto::id_number::with_check_character(first17).expect("17 digits")
}

/// The first 17 characters of a plausible ID number: area, birth date between 1900-01-01
/// and today, sequence.
fn first17() -> impl Strategy<Value = String> {
    let earliest = NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid date");
    let span = (ctx().today - earliest).num_days();
    let span = u64::try_from(span).expect("today is after 1900");
    (0u32..1_000_000, 0..=span, 0u32..1000).prop_map(move |(area, days, seq)| {
        let birth = earliest + Days::new(days);
        format!("{area:06}{}{seq:03}", birth.format("%Y%m%d"))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_and_validate(&bytes);
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 1..8),
    ) {
        let fixtures = fixtures();
        let mut bytes = fixtures[which % fixtures.len()].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        decode_and_validate(&bytes);
    }

    #[test]
    fn decoded_bodies_survive_the_json_round_trip(
        which in any::<usize>(),
        mutations in proptest::collection::vec(mutation(), 0..4),
    ) {
        let fixtures = fixtures();
        let mut bytes = fixtures[which % fixtures.len()].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        if let Ok(Event { body: Some(body), .. }) = Event::decode(bytes.as_slice()) {
            let line = body_to_json(&body).to_string();
            prop_assert_eq!(body_from_json(&line).ok(), Some(body), "{}", line);
        }
    }

    #[test]
    fn arbitrary_json_lines_never_panic(line in ".{0,200}") {
        let _ = body_from_json(&line);
    }

    #[test]
    fn arbitrary_body_objects_never_panic(
        body in prop_oneof![
            prop::sample::select(vec![
                "caseOpened", "caseAssessed", "visitRecorded", "resourceLinked", "eventVoided",
            ]).prop_map(String::from),
            "[a-zA-Z_]{1,24}",
        ],
        key in prop_oneof![
            prop::sample::select(vec![
                "caseId", "tier", "categories", "cashFen", "needsFound", "visitDate",
                "durationMinutes", "voidedEventId", "id_number",
            ]).prop_map(String::from),
            "[a-zA-Z_]{1,24}",
        ],
        value in prop_oneof![
            Just("null".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            ".{0,40}".prop_map(|s| serde_json::Value::String(s).to_string()),
            Just("[1,\"a\",{}]".to_string()),
        ],
    ) {
        let _ = body_from_json(&format!("{{\"{body}\":{{\"{key}\":{value}}}}}"));
    }
}

proptest! {
    #[test]
    fn computed_check_character_always_passes(first17 in first17()) {
        let id = with_check_char(&first17);
        prop_assert_eq!(validate::id_number("id", &id, &ctx()), Ok(id.clone()));
    }

    #[test]
    fn any_other_check_character_fails(first17 in first17()) {
        let id = with_check_char(&first17);
        let correct = id.as_bytes()[17];
        for other in b"0123456789X".iter().copied().filter(|&c| c != correct) {
            let changed = format!("{first17}{}", char::from(other));
            let result = validate::id_number("id", &changed, &ctx());
            prop_assert_eq!(
                result.map_err(|e| e.rule),
                Err(format!("check character should be {}", char::from(correct)))
            );
        }
    }
}
