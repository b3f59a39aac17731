//! The one error the apps see, and how every internal error maps onto it.
//!
//! Invariants:
//! - a message never carries personal data: no name, ID number, phone,
//!   address or free text an entry held. Reasons are built from fixed
//!   sentences, field paths, codes and numbers; the only text taken from
//!   elsewhere is a validation rule (which `station-proto` keeps free of
//!   personal data, and [`scrub`] makes sure of the one rule that names a
//!   character of an ID number) and what the transport or the hub said about
//!   a call, which never carries an entry's content;
//! - the mapping is total: every [`AgentError`], [`StoreError`] and
//!   [`SyncError`] variant lands on one variant here, chosen for what the app
//!   should do about it (fix the form, pick another case, retry later,
//!   re-enroll the device).

use station_agent::seal::SealError;
use station_agent::sync::{SyncError, is_retriable};
use station_agent::{AgentError, StoreError};
use station_proto::validate::Invalid;

/// The longest reason carried across the boundary, in characters; a longer
/// one (a long transport error chain) is cut.
const REASON_MAX_CHARS: usize = 300;

/// What went wrong, as the Android and iOS apps see it. Messages never
/// contain personal data, so they may be logged and shown as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum FieldError {
    /// The entry breaks a rule; nothing was recorded. `field` is the proto
    /// field path (`visit_recorded.visit_date`, `case_opened.id_number`), or
    /// the argument name (`hub_url`, `token`, `station_code`).
    #[error("{field}: {rule}")]
    InvalidInput {
        /// The field that breaks the rule.
        field: String,
        /// The rule, as a short English sentence; never the value entered.
        rule: String,
    },
    /// The entry names a case this device does not know; nothing was recorded.
    #[error("{field}: unknown case")]
    UnknownCase {
        /// The field holding the case id.
        field: String,
    },
    /// The entry needs an open case, and the case is closed; nothing was recorded.
    #[error("{field}: the case is closed")]
    CaseClosed {
        /// The field holding the case id.
        field: String,
    },
    /// Reopening a case that is open; nothing was recorded.
    #[error("{field}: the case is already open")]
    CaseAlreadyOpen {
        /// The field holding the case id.
        field: String,
    },
    /// The person already has an open file at this station (一人一档):
    /// nothing was recorded; add to the file `case_id` instead.
    #[error("{field}: this person already has an open file at this station, case {case_id}")]
    PersonHasOpenFile {
        /// The field the refusal is about (`case_opened.id_number`, or
        /// `case_reopened.case_id` for a reopening).
        field: String,
        /// The case id of the open file, to show or open it.
        case_id: String,
    },
    /// The district directory says the person has an open file at another
    /// station: nothing was recorded; open the file with a reason
    /// (`open_case_despite_duplicate`), or ask that station for a transfer.
    #[error("{field}: this person has an open file at {}", .stations.join(", "))]
    HeldAtAnotherStation {
        /// The field the warning is about (`case_opened.id_number`).
        field: String,
        /// The names of the stations holding the file (never the person).
        stations: Vec<String>,
    },
    /// A void names an entry this device does not hold; nothing was recorded.
    #[error("{field}: unknown entry")]
    UnknownEntry {
        /// The field holding the entry id.
        field: String,
    },
    /// The store at this path was set up for another station or another
    /// social worker; it was left as it is.
    #[error("wrong store: {reason}")]
    WrongStore {
        /// Which identity differs (never the other worker's id).
        reason: String,
    },
    /// The device's storage failed, is full, is in use, or is corrupt.
    #[error("storage error: {reason}")]
    Storage {
        /// What failed.
        reason: String,
    },
    /// `sync_now` before `configure`: no hub address is known.
    #[error("no hub configured: call configure(hub_url, token) first")]
    NotConfigured,
    /// The hub could not be reached, the link dropped, or the hub was busy,
    /// for longer than the sync allows. Trying again later may succeed;
    /// everything acknowledged before stays acknowledged.
    #[error("network error: {reason}")]
    Network {
        /// What the link or the hub said.
        reason: String,
    },
    /// The hub refused the device token (unknown, revoked, or issued for
    /// another station or device). The device needs a new token.
    #[error("authentication failed: {reason}")]
    Auth {
        /// What the hub said.
        reason: String,
    },
    /// The hub refused a request for good, for a reason other than the token.
    #[error("the hub refused the request: {reason}")]
    Refused {
        /// What the hub said.
        reason: String,
    },
    /// A failure inside the library (a bug, not the user's or the link's).
    #[error("internal error: {reason}")]
    Internal {
        /// What failed.
        reason: String,
    },
    /// The store is locked ([`crate::FieldStore::lock`], or idle too long):
    /// call `unlock` once the user is authenticated.
    #[error("locked: {reason}")]
    Locked {
        /// What to do.
        reason: String,
    },
    /// The hub ordered this device wiped (it was reported lost), and it was,
    /// or is being: its entries went to the hub, then the store's keys were
    /// destroyed. Nothing of the store can be read or recorded; a device
    /// found again starts over with a new store and a new token.
    #[error("device wiped: {reason}")]
    Wiped {
        /// What happened.
        reason: String,
    },
}

impl FieldError {
    /// The [`FieldError::Wiped`] of a store whose keys were destroyed.
    pub fn wiped() -> Self {
        FieldError::Wiped {
            reason: "the hub ordered this device wiped (it was reported lost); its data key and \
                     signing key are destroyed, and nothing of the store can be read"
                .to_string(),
        }
    }

    /// An [`FieldError::InvalidInput`] for `field` breaking `rule`.
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        FieldError::InvalidInput {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

/// Removes from a rule or a relayed message the one piece of an ID number a
/// validation rule names (the expected check character), and cuts it to
/// 300 characters.
pub fn scrub(text: &str) -> String {
    const CHECK: &str = "check character should be ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(CHECK) {
        out.push_str(&rest[..at]);
        out.push_str("check character does not match the first 17 characters");
        rest = &rest[at + CHECK.len()..];
        // Skip the character named after the phrase.
        let mut chars = rest.chars();
        chars.next();
        rest = chars.as_str();
    }
    out.push_str(rest);
    match out.char_indices().nth(REASON_MAX_CHARS) {
        Some((cut, _)) => {
            out.truncate(cut);
            out.push('…');
            out
        }
        None => out,
    }
}

impl From<Invalid> for FieldError {
    fn from(invalid: Invalid) -> Self {
        FieldError::InvalidInput {
            field: invalid.field,
            rule: scrub(&invalid.rule),
        }
    }
}

/// A storage reason from an I/O error: its kind only, since its message may
/// name paths or carry an OS text we do not control.
fn io_reason(what: &str, io: &std::io::Error) -> String {
    match io.kind() {
        std::io::ErrorKind::WouldBlock => {
            "the store is already open (in this app or another process)".to_string()
        }
        std::io::ErrorKind::StorageFull => format!("{what}: the device storage is full"),
        kind => format!("{what}: {kind}"),
    }
}

impl From<StoreError> for FieldError {
    fn from(error: StoreError) -> Self {
        let reason = match error {
            // sled's own conversion keeps the I/O error it wraps, and gives
            // the rest a kind; only the kind is used.
            StoreError::Sled(sled) => io_reason("the database failed", &sled.into()),
            StoreError::Io(io) => io_reason("the write could not be made durable", &io),
            // The detail may quote bytes of the store, which can be anything.
            StoreError::Corrupt(_) => "the store is corrupt".to_string(),
            StoreError::UnsupportedFormat { found } => format!(
                "the store has format {found}, which this version of the app cannot read \
                 (it reads {})",
                station_agent::store::FORMAT_VERSION
            ),
            StoreError::NotInitialised => "the store is not initialised".to_string(),
            StoreError::AlreadyInitialised(_) => "the store is already initialised".to_string(),
            StoreError::NoRandomness(_) => {
                "the device key could not be made: the system gave no randomness".to_string()
            }
            StoreError::Seal(SealError::Wiped) => return FieldError::wiped(),
            StoreError::WipeOrdered => {
                return FieldError::Wiped {
                    reason: "the hub ordered this device wiped (it was reported lost): nothing \
                             more is recorded; the next sync uploads its entries and destroys \
                             its keys"
                        .to_string(),
                };
            }
            // Fixed sentences, and what the app's key provider said.
            StoreError::Seal(seal) => scrub(&seal.to_string()),
            // Byte counts and station codes only.
            StoreError::BadDirectory(detail) => {
                return FieldError::Refused {
                    reason: scrub(&format!(
                        "the hub sent a district directory this device refuses: {detail}"
                    )),
                };
            }
            // Only hub positions and station codes, never an event's content.
            StoreError::BadPulledEvent(detail) => {
                return FieldError::Refused {
                    reason: scrub(&format!(
                        "the hub sent an event this device refuses: {detail}"
                    )),
                };
            }
        };
        FieldError::Storage { reason }
    }
}

impl From<AgentError> for FieldError {
    fn from(error: AgentError) -> Self {
        const VOIDED: &str = "event_voided.voided_event_id";
        match error {
            AgentError::Invalid(invalid) => invalid.into(),
            AgentError::UnknownCase { field, .. } | AgentError::NoCaseWithPrefix { field, .. } => {
                FieldError::UnknownCase { field }
            }
            AgentError::AmbiguousCase { field, .. } => {
                FieldError::invalid(field, "names several cases: give the whole case id")
            }
            AgentError::CaseClosed { field, .. } => FieldError::CaseClosed { field },
            AgentError::CaseAlreadyOpen(_) => FieldError::CaseAlreadyOpen {
                field: "case_reopened.case_id".to_string(),
            },
            AgentError::PersonHasOpenFile { field, case_id } => FieldError::PersonHasOpenFile {
                field,
                case_id: case_id.to_string(),
            },
            AgentError::HeldAtAnotherStation { field, stations } => {
                FieldError::HeldAtAnotherStation { field, stations }
            }
            AgentError::MergeRefused { field, rule, .. } => FieldError::invalid(field, rule),
            AgentError::UnknownEvent(_) => FieldError::UnknownEntry {
                field: VOIDED.to_string(),
            },
            AgentError::AlreadyVoided(_) => {
                FieldError::invalid(VOIDED, "the entry is voided already")
            }
            AgentError::VoidOfVoid => FieldError::invalid(
                VOIDED,
                "a void cannot be voided; record the entry again instead",
            ),
            AgentError::Store(store) => store.into(),
        }
    }
}

impl From<SyncError> for FieldError {
    fn from(error: SyncError) -> Self {
        match error {
            SyncError::NoHub => FieldError::NotConfigured,
            SyncError::BadAddress(_) => FieldError::invalid(
                "hub_url",
                "must be an http:// or https:// address with a host",
            ),
            SyncError::BadToken => FieldError::Auth {
                reason: "the stored device token is not printable ASCII".to_string(),
            },
            SyncError::Connect(message) => FieldError::Network {
                reason: scrub(&format!("cannot reach the hub: {message}")),
            },
            SyncError::Link { call, message } => FieldError::Network {
                reason: scrub(&format!("the link failed during {call}: {message}")),
            },
            SyncError::Rpc {
                call,
                code,
                message,
            } => {
                let reason = scrub(&format!("{call}: {code:?}: {message}"));
                match code {
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                        FieldError::Auth { reason }
                    }
                    code if is_retriable(code) => FieldError::Network { reason },
                    _ => FieldError::Refused { reason },
                }
            }
            SyncError::Protocol(message) => FieldError::Network {
                reason: scrub(&format!("the hub's answer broke the protocol: {message}")),
            },
            SyncError::Agent(agent) => agent.into(),
            SyncError::Local(message) => FieldError::Internal {
                reason: scrub(&format!("a sync task failed: {message}")),
            },
            SyncError::Wiped => FieldError::wiped(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_the_expected_check_character() {
        let rule = scrub("check character should be 7");
        assert_eq!(
            rule,
            "check character does not match the first 17 characters"
        );
        let relayed = scrub(
            "Push: InvalidArgument: case_opened.id_number: check character should be X; more",
        );
        assert!(!relayed.contains("be X"), "{relayed}");
        assert!(relayed.ends_with("; more"), "{relayed}");
    }

    #[test]
    fn scrub_cuts_long_reasons_on_a_character_boundary() {
        let long = "链".repeat(1000);
        let cut = scrub(&long);
        assert_eq!(cut.chars().count(), REASON_MAX_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn corrupt_store_details_are_not_relayed() {
        let error = FieldError::from(StoreError::Corrupt(
            "case view: invalid type: string \"卓玛\", expected u32".into(),
        ));
        assert_eq!(
            error,
            FieldError::Storage {
                reason: "the store is corrupt".into()
            }
        );
    }

    #[test]
    fn io_errors_keep_their_kind_only() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "/data/卓玛/store");
        let error = FieldError::from(StoreError::Io(io));
        assert!(!error.to_string().contains("卓玛"), "{error}");
        assert!(error.to_string().contains("permission denied"), "{error}");
    }
}
