//! The proto3 JSON mapping of one event body, for scripted bulk entry and `log --format jsonl`.
//!
//! A line is a JSON object with exactly one key, the body's lowerCamelCase field name in the
//! proto3 JSON form of `station.v1.Event`, e.g.
//!
//! ```json
//! {"visitRecorded":{"caseId":"0192…","visitDate":"2026-11-01","kind":"VISIT_KIND_HOME","durationMinutes":30}}
//! ```
//!
//! Invariants:
//!
//! - **Only a body.** Envelope fields (`eventId`, `originSeq`, `stationCode`, …) are refused:
//!   the agent assigns them when it records the event.
//! - **Strict proto3 JSON.** Parsing goes through prost-reflect with the descriptors this
//!   crate was built from, so field names (lowerCamelCase or the proto names), enum values
//!   (the proto names like `"TIER_KEY"` or numbers), 64-bit integers (numbers or strings) and
//!   bytes (standard or URL-safe base64) follow the proto3 JSON rules, and unknown fields
//!   are rejected.
//! - **UUIDs as printed.** As a convenience, a string under a key ending in `Id` (or `_id`)
//!   that is a hyphenated UUID (36 characters) is taken as the UUID's 16 bytes, so case ids
//!   can be pasted as the CLI prints them. [`body_to_json`] renders 16-byte values under such
//!   keys the same way, so `body_from_json(&body_to_json(b).to_string())` gives `b` back.
//!   (No field of `station.v1` holds 27 bytes, the only length whose base64 has 36
//!   characters, so the conversion is unambiguous.)
//! - **Mapping, not validation.** A body that parses may still break a domain rule; callers
//!   pass it to [`crate::validate::body`].

use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, SerializeOptions};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{Body, Event};

/// Why a line could not be read as an event body.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The line is not JSON at all.
    #[error("not valid JSON at column {column}")]
    Syntax {
        /// 1-based column of the first offending character.
        column: usize,
        /// The parser's own description.
        #[source]
        source: serde_json::Error,
    },
    /// The line is JSON, but not an object.
    #[error("expected a JSON object such as {{\"visitRecorded\":{{…}}}}")]
    NotAnObject,
    /// The object sets an envelope field; only the body may be given.
    #[error("only an event body may be given; found {0}")]
    EnvelopeField(String),
    /// A key that names no field: a top-level key that is no body (`caseShut`), or a key
    /// inside a body, given as its path (`caseClosed.reson`).
    #[error("unknown field {0}")]
    UnknownField(String),
    /// Zero or several bodies were given.
    #[error("expected exactly one body, found {0}")]
    BodyCount(usize),
    /// The body does not follow the proto3 JSON mapping (wrong type, unknown enum name, bad
    /// base64 …).
    #[error("{body}: {source}")]
    Mapping {
        /// The body's JSON name, e.g. `visitRecorded`.
        body: String,
        /// prost-reflect's description, e.g. ``unknown field `foo`, expected one of …``.
        #[source]
        source: serde_json::Error,
    },
    /// The parsed message could not be converted to the generated type.
    #[error("{body}: could not convert to the wire type: {source}")]
    Encoding {
        /// The body's JSON name.
        body: String,
        /// prost's description.
        #[source]
        source: prost::DecodeError,
    },
}

/// The descriptor of `station.v1.Event`, decoded once from [`crate::FILE_DESCRIPTOR_SET`].
fn event_descriptor() -> &'static MessageDescriptor {
    static EVENT: OnceLock<MessageDescriptor> = OnceLock::new();
    EVENT.get_or_init(|| {
        // Both `expect`s depend only on the descriptor set build.rs compiled from this
        // crate's own .proto files, never on input; a failure is a build bug.
        let pool = DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET)
            .expect("FILE_DESCRIPTOR_SET is written by build.rs and always decodes");
        pool.get_message_by_name("station.v1.Event")
            .expect("event.proto defines station.v1.Event")
    })
}

/// Parses one line of proto3 JSON holding exactly one event body.
///
/// # Errors
///
/// [`JsonError::Syntax`] if the line is not JSON, [`JsonError::NotAnObject`],
/// [`JsonError::EnvelopeField`] if an envelope field is given, [`JsonError::UnknownField`] for
/// a key that names no field, [`JsonError::BodyCount`] unless exactly one body is
/// given, [`JsonError::Mapping`] if the body breaks the proto3 JSON mapping.
pub fn body_from_json(line: &str) -> Result<Body, JsonError> {
    let mut value: Value = serde_json::from_str(line).map_err(|source| JsonError::Syntax {
        column: source.column(),
        source,
    })?;
    let Value::Object(object) = &mut value else {
        return Err(JsonError::NotAnObject);
    };
    let desc = event_descriptor();
    let mut bodies = Vec::new();
    for key in object.keys() {
        let field = desc
            .get_field_by_json_name(key)
            .or_else(|| desc.get_field_by_name(key));
        match field {
            Some(f) if f.containing_oneof().is_some() => bodies.push(f.json_name().to_owned()),
            Some(_) => return Err(JsonError::EnvelopeField(key.clone())),
            None => return Err(JsonError::UnknownField(key.clone())),
        }
    }
    let [body_name] = bodies.as_slice() else {
        return Err(JsonError::BodyCount(bodies.len()));
    };
    let body_name = body_name.clone();
    known_fields(desc, object, "")?;
    uuids_to_base64(object);
    let message =
        DynamicMessage::deserialize(desc.clone(), value).map_err(|source| JsonError::Mapping {
            body: body_name.clone(),
            source,
        })?;
    let event: Event = message
        .transcode_to()
        .map_err(|source| JsonError::Encoding {
            body: body_name,
            source,
        })?;
    // `{"visitRecorded": null}` is proto3 JSON for "not set".
    event.body.ok_or(JsonError::BodyCount(0))
}

/// Renders one event body as proto3 JSON: `{"<bodyName>": {…}}`.
///
/// Default values are omitted, enums are written by name, 64-bit integers as strings, and
/// 16-byte values under keys ending in `Id` as hyphenated UUIDs. The result parses back to the
/// same body with [`body_from_json`].
pub fn body_to_json(body: &Body) -> Value {
    let event = Event {
        body: Some(body.clone()),
        ..Event::default()
    };
    let mut message = DynamicMessage::new(event_descriptor().clone());
    // The bytes come from prost encoding the very message this descriptor describes, and
    // unknown enum numbers are kept as numbers, so decoding them cannot fail.
    message
        .transcode_from(&event)
        .expect("an encoded Event decodes with its own descriptor");
    // Serialising to a `Value` fails only for maps with non-string keys; station.v1 has no
    // maps.
    let mut value = message
        .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .expect("station.v1.Event serialises to JSON");
    if let Value::Object(object) = &mut value {
        uuids_to_text(object);
    }
    value
}

/// Checks that every key names a field of `desc`, recursing into message fields, so an
/// unknown field is reported with its full path.
fn known_fields(
    desc: &MessageDescriptor,
    object: &Map<String, Value>,
    prefix: &str,
) -> Result<(), JsonError> {
    for (key, value) in object {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let Some(field) = desc
            .get_field_by_json_name(key)
            .or_else(|| desc.get_field_by_name(key))
        else {
            return Err(JsonError::UnknownField(path));
        };
        let Kind::Message(inner) = field.kind() else {
            continue;
        };
        match value {
            Value::Object(nested) => known_fields(&inner, nested, &path)?,
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Value::Object(nested) = item {
                        known_fields(&inner, nested, &format!("{path}[{i}]"))?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_id_key(key: &str) -> bool {
    key.ends_with("Id") || key.ends_with("_id")
}

/// Replaces hyphenated UUID strings under id keys with the base64 of their 16 bytes.
fn uuids_to_base64(object: &mut Map<String, Value>) {
    for (key, value) in object.iter_mut() {
        match value {
            Value::String(s) if is_id_key(key) && s.len() == 36 => {
                if let Ok(id) = Uuid::try_parse(s) {
                    *s = base64_encode(id.as_bytes());
                }
            }
            other => walk(other, uuids_to_base64),
        }
    }
}

/// Replaces base64 strings of 16 bytes under id keys with hyphenated UUIDs.
fn uuids_to_text(object: &mut Map<String, Value>) {
    for (key, value) in object.iter_mut() {
        match value {
            Value::String(s) if is_id_key(key) => {
                if let Some(id) = base64_decode(s).and_then(|b| Uuid::from_slice(&b).ok()) {
                    *s = id.hyphenated().to_string();
                }
            }
            other => walk(other, uuids_to_text),
        }
    }
}

/// Applies `f` to every object nested in `value`.
fn walk(value: &mut Value, f: fn(&mut Map<String, Value>)) {
    match value {
        Value::Object(object) => f(object),
        Value::Array(items) => items.iter_mut().for_each(|item| walk(item, f)),
        _ => {}
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as proto3 JSON writes bytes.
fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 with padding; `None` for anything else.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (index, chunk) in bytes.chunks(4).enumerate() {
        let last = index + 1 == bytes.len() / 4;
        let padding = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - padding] {
            let digit = BASE64.iter().position(|&d| d == c)?;
            n = n << 6 | digit as u32;
        }
        n <<= 6 * padding;
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{
        ActivityHeld, ActivityKind, BeneficiaryVerified, CaseAssessed, CaseClosed, CaseNoteAdded,
        CaseOpened, CaseReopened, CaseSource, Category, EventVoided, Gender, GroupSessionHeld,
        NoteKind, ResourceKind, ResourceLinked, ReviewApproved, ReviewRequested, ReviewReturned,
        ReviewSubject, Tier, TrainingHeld, TrainingKind, VisitKind, VisitRecorded,
    };

    const CASE: &str = "01928c5a-1e40-7abc-8def-000000000001";

    fn case_id() -> Vec<u8> {
        Uuid::parse_str(CASE)
            .expect("valid uuid")
            .as_bytes()
            .to_vec()
    }

    fn every_body() -> Vec<Body> {
        vec![
            Body::CaseOpened(CaseOpened {
                name: "次仁卓玛".into(),
                id_number: "540102199203040040".into(),
                gender: Gender::Female.into(),
                birth_date: "1992-03-04".into(),
                community_code: "540102002001".into(),
                address: "城关区 རྩེད་ཐང 3号".into(),
                phone: "0891-6321234".into(),
                language: "bo".into(),
                categories: vec![Category::Dibao.into(), Category::Disabled.into()],
                tier: Tier::Key.into(),
                source: CaseSource::Outreach.into(),
                opened_on: "2026-11-01".into(),
                file_number: String::new(),
                duplicate_reason: String::new(),
                duplicate_of_stations: Vec::new(),
            }),
            Body::CaseAssessed(CaseAssessed {
                case_id: case_id(),
                tier: Tier::HighRisk.into(),
                reason: "独居".into(),
                last_seen_event_id: vec![0xab; 16],
                assessed_on: "2026-11-02".into(),
            }),
            Body::CaseNoteAdded(CaseNoteAdded {
                case_id: case_id(),
                kind: NoteKind::Intervention.into(),
                text: "第一行\n第二行 བཀྲ་ཤིས".into(),
                noted_on: "2026-11-02".into(),
            }),
            Body::CaseClosed(CaseClosed {
                case_id: case_id(),
                reason: "迁出".into(),
                closed_on: "2026-11-02".into(),
            }),
            Body::CaseReopened(CaseReopened {
                case_id: case_id(),
                reason: "返乡".into(),
                reopened_on: "2026-11-02".into(),
                tier: 0,
            }),
            Body::VisitRecorded(VisitRecorded {
                case_id: case_id(),
                visit_date: "2026-11-01".into(),
                kind: VisitKind::Home.into(),
                duration_minutes: 30,
                notes: "家中取暖不足".into(),
                needs_found: vec!["冬季取暖".into(), "医疗报销".into()],
            }),
            Body::BeneficiaryVerified(BeneficiaryVerified {
                case_id: case_id(),
                verified_on: "2026-11-02".into(),
                categories: vec![Category::Elderly.into()],
                still_eligible: true,
                notes: String::new(),
            }),
            Body::ActivityHeld(ActivityHeld {
                held_on: "2026-11-01".into(),
                community_code: "540102002001".into(),
                kind: ActivityKind::PartyPublicWelfare.into(),
                title: "党建+公益 义诊".into(),
                participants: 40,
                person_times: 55,
                volunteers: 6,
                volunteer_minutes: 720,
            }),
            Body::GroupSessionHeld(GroupSessionHeld {
                group_name: "老年互助小组".into(),
                session_number: 3,
                held_on: "2026-11-01".into(),
                community_code: "540102002001".into(),
                participants: 8,
                topic: "防诈骗".into(),
            }),
            Body::ResourceLinked(ResourceLinked {
                case_id: case_id(),
                linked_on: "2026-11-01".into(),
                kind: ResourceKind::InKind.into(),
                source: "慈善总会".into(),
                cash_fen: 1_000_000_000_000,
                in_kind_fen: 12_345,
                description: "棉被两床".into(),
            }),
            Body::TrainingHeld(TrainingHeld {
                held_on: "2026-10-30".into(),
                kind: TrainingKind::Supervision.into(),
                title: "个案督导".into(),
                trainees: 12,
                minutes: 90,
            }),
            Body::EventVoided(EventVoided {
                voided_event_id: case_id(),
                reason: "录入错误".into(),
            }),
            Body::ReviewRequested(ReviewRequested {
                case_id: case_id(),
                subject: ReviewSubject::TierChange.into(),
                subject_event_id: case_id(),
                last_seen_event_id: case_id(),
                requested_on: "2026-11-02".into(),
                note: String::new(),
            }),
            Body::ReviewApproved(ReviewApproved {
                case_id: case_id(),
                request_id: case_id(),
                last_seen_event_id: case_id(),
                decided_on: "2026-11-02".into(),
                comment: "同意".into(),
            }),
            Body::ReviewReturned(ReviewReturned {
                case_id: case_id(),
                request_id: case_id(),
                last_seen_event_id: case_id(),
                decided_on: "2026-11-02".into(),
                comment: "请补充".into(),
            }),
        ]
    }

    #[test]
    fn every_body_round_trips() {
        let bodies = every_body();
        assert_eq!(bodies.len(), 15, "one sample per body kind");
        for body in bodies {
            let line = body_to_json(&body).to_string();
            let back = body_from_json(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(back, body, "{line}");
        }
    }

    #[test]
    fn empty_bodies_round_trip() {
        let body = Body::CaseClosed(CaseClosed::default());
        assert_eq!(body_to_json(&body), serde_json::json!({"caseClosed": {}}));
        assert_eq!(body_from_json(r#"{"caseClosed":{}}"#).ok(), Some(body));
    }

    #[test]
    fn ids_are_rendered_as_uuids_and_values_follow_proto3_json() {
        let json = body_to_json(&every_body()[9]);
        assert_eq!(json["resourceLinked"]["caseId"], CASE);
        assert_eq!(json["resourceLinked"]["kind"], "RESOURCE_KIND_IN_KIND");
        assert_eq!(json["resourceLinked"]["cashFen"], "1000000000000");
        let json = body_to_json(&every_body()[1]);
        assert_eq!(
            json["caseAssessed"]["lastSeenEventId"],
            "abababab-abab-abab-abab-abababababab"
        );
    }

    #[test]
    fn example_line_from_the_docs_parses() {
        let line = format!(
            r#"{{"visitRecorded":{{"caseId":"{CASE}","visitDate":"2026-11-01","kind":"VISIT_KIND_HOME","durationMinutes":30}}}}"#
        );
        let expected = Body::VisitRecorded(VisitRecorded {
            case_id: case_id(),
            visit_date: "2026-11-01".into(),
            kind: VisitKind::Home.into(),
            duration_minutes: 30,
            ..VisitRecorded::default()
        });
        assert_eq!(body_from_json(&line).ok(), Some(expected));
    }

    #[test]
    fn base64_ids_proto_names_and_enum_numbers_are_accepted() {
        let b64 = base64_encode(&case_id());
        let line = format!(
            r#"{{"case_assessed":{{"case_id":"{b64}","tier":2,"last_seen_event_id":"{CASE}"}}}}"#
        );
        let expected = Body::CaseAssessed(CaseAssessed {
            case_id: case_id(),
            tier: Tier::Key.into(),
            last_seen_event_id: case_id(),
            ..CaseAssessed::default()
        });
        assert_eq!(body_from_json(&line).ok(), Some(expected));
    }

    #[test]
    fn int64_accepts_numbers_and_strings() {
        let line = r#"{"resourceLinked":{"cashFen":100,"inKindFen":"250"}}"#;
        let Ok(Body::ResourceLinked(m)) = body_from_json(line) else {
            panic!("should parse");
        };
        assert_eq!((m.cash_fen, m.in_kind_fen), (100, 250));
    }

    #[test]
    fn not_json_names_the_column() {
        let e = body_from_json(r#"{"caseClosed":{"reason":}}"#).expect_err("not JSON");
        assert!(matches!(e, JsonError::Syntax { column: 25, .. }), "{e:?}");
        assert_eq!(e.to_string(), "not valid JSON at column 25");
    }

    #[test]
    fn structural_errors() {
        let msg = |line: &str| body_from_json(line).expect_err(line).to_string();
        assert_eq!(
            msg(r#"[1]"#),
            "expected a JSON object such as {\"visitRecorded\":{…}}"
        );
        assert_eq!(
            msg(r#"{"eventId":"AAAA","caseClosed":{}}"#),
            "only an event body may be given; found eventId"
        );
        assert_eq!(
            msg(r#"{"station_code":"540102002"}"#),
            "only an event body may be given; found station_code"
        );
        assert_eq!(msg("{}"), "expected exactly one body, found 0");
        assert_eq!(
            msg(r#"{"caseClosed":{},"caseReopened":{}}"#),
            "expected exactly one body, found 2"
        );
        assert_eq!(
            msg(r#"{"caseClosed":null}"#),
            "expected exactly one body, found 0"
        );
        assert_eq!(msg(r#"{"caseShut":{}}"#), "unknown field caseShut");
    }

    #[test]
    fn mapping_errors_name_the_body() {
        let e = body_from_json(r#"{"caseClosed":{"reson":"x"}}"#).expect_err("unknown field");
        assert_eq!(e.to_string(), "unknown field caseClosed.reson");
        let e = body_from_json(r#"{"visit_recorded":{"caseId":"","notes":"","x":1}}"#)
            .expect_err("unknown field");
        assert_eq!(e.to_string(), "unknown field visit_recorded.x");
        let e = body_from_json(r#"{"caseAssessed":{"tier":"TIER_URGENT"}}"#)
            .expect_err("unknown enum name");
        assert!(e.to_string().starts_with("caseAssessed: "), "{e}");
        let e =
            body_from_json(r#"{"caseClosed":{"caseId":"not base64!"}}"#).expect_err("bad bytes");
        assert!(matches!(e, JsonError::Mapping { .. }), "{e:?}");
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        for (raw, encoded) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (&[0xfb, 0xff, 0xfe][..], "+//+"),
        ] {
            assert_eq!(base64_encode(raw), encoded);
            assert_eq!(base64_decode(encoded).as_deref(), Some(raw));
        }
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9-", "Zm 9"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }
}
