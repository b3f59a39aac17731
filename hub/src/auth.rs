//! Tokens, and who may do what with them.
//!
//! A token is `<token_id>.<secret>`: [`TOKEN_ID_BYTES`] random bytes in
//! lowercase hex naming its record, a dot, then [`SECRET_BYTES`] random bytes
//! in lowercase hex. It is sent as `authorization: Bearer <token>`.
//!
//! | token | Hello | Push | Pull | projections (`Query`, HTTP) | district reports, dashboard |
//! | --- | --- | --- | --- | --- | --- |
//! | device | its station, its origin | its station, its origin | its station, without its own origin | its station | refused |
//! | relay | its station: its own origin, and the phones' it carries | its station, any origin whose signed heads verify | its station, without its own origin | its station | refused |
//! | bureau | refused | refused | any station | any station | yes |
//! | supervisor | its stations, its origin | review decisions only, of its stations, its origin | its stations, without its own origin | its stations | refused |
//! | device ordered wiped | its station, its origin | its origin's backlog only | refused | its station | refused |
//!
//! A relay (a station PC forwarding its phones' logs) is trusted with its
//! station's events only as far as their signatures go: it may push an
//! origin bound to a live device or relay token of its station, or one the
//! hub has never seen, which is then bound to the key the relay's signed
//! head carries once that head verifies over the origin's first events
//! (and passes to the phone's own device token when the phone later says
//! `Hello` with that key). An origin without a device key, of another
//! station, or of a revoked token is refused to a relay. At each `Hello` a
//! relay is told the hashes of its station's device tokens and of its other
//! relay tokens ([`station_devices`], [`station_relays`]), so that it serves
//! the phones, and the relays chained behind it, while its uplink is down.
//!
//! Every rule of who may read or write what is a function of this module
//! (`authorize_*`, [`readable_stations`], [`pulled_without`]); the gRPC and
//! HTTP sides call them and hold no rule of their own.
//!
//! Invariants:
//! - the secret is shown once, when issued, and stored only as its SHA-256,
//!   which is compared in constant time;
//! - no `Sync` call reaches its handler without having passed
//!   [`Authenticator`], which puts the live token's [`Caller`] in the request's
//!   extensions; a handler that finds none refuses the call;
//! - a device token acts for one station, and from its first `Hello` or `Push`
//!   on for the one origin that presented it; an origin is spoken for by the
//!   one token that introduced it, of whatever station, for life (after the
//!   token's revocation, by none); that binding is durable before the call
//!   goes on, and never changes after;
//! - a refusal of an origin says nothing of that origin's state (neither
//!   whether it exists nor how much of it the hub holds);
//! - every check happens before anything of the call is written, so a refused
//!   call changes nothing;
//! - a device ordered wiped ([`order_wipe`]) is told so at each Hello; its
//!   token then pushes nothing past the head of its Hellos since the order and
//!   pulls nothing, and is revoked when the device says it is wiped
//!   ([`wipe_hello`]).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use station_proto::ids::Uuid;
use station_proto::validate::{self, Invalid};
use station_proto::{Event, chain};
use subtle::ConstantTimeEq as _;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::config::HubConfig;
use crate::guard::{Refusals, presented_token_id};
use crate::store::{HubError, HubLog, HubStore, TokenRecord, TokenScope, WipeOrder};

/// Random bytes of a token id (shown in hex, 12 digits).
pub const TOKEN_ID_BYTES: usize = 6;
/// Random bytes of a token secret (shown in hex, 64 digits).
pub const SECRET_BYTES: usize = 32;
/// Longest device or bureau name, in characters.
pub const NAME_MAX_CHARS: usize = 64;
/// Fresh token ids drawn before giving up on finding a free one.
const ID_ATTEMPTS: usize = 8;

/// Why a token was not issued, not accepted, or not allowed a call.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The call carries no `authorization` metadata.
    #[error("missing bearer token")]
    MissingToken,
    /// The `authorization` metadata is not `Bearer <token>`.
    #[error("authorization must be `Bearer <token>`")]
    MalformedHeader,
    /// No live token has this id and secret.
    #[error("invalid token")]
    InvalidToken,
    /// The token was revoked.
    #[error("token revoked")]
    Revoked,
    /// The token is valid but does not allow this call.
    #[error("{0}")]
    Denied(String),
    /// An input breaks a rule (station code, name, origin id).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No free token id was found.
    #[error("could not draw a free token id")]
    NoFreeId,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] HubError),
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::MissingToken
            | AuthError::MalformedHeader
            | AuthError::InvalidToken
            | AuthError::Revoked => Status::unauthenticated(error.to_string()),
            AuthError::Denied(_) => Status::permission_denied(error.to_string()),
            AuthError::Invalid(_) => Status::invalid_argument(error.to_string()),
            AuthError::NoFreeId => Status::internal(error.to_string()),
            AuthError::Store(HubError::UnknownToken(_)) => {
                Status::unauthenticated(AuthError::InvalidToken.to_string())
            }
            AuthError::Store(store) => Status::from(store),
        }
    }
}

/// A token as handed out once, at enrolment.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The public id, for `revoke` and listings.
    pub token_id: String,
    /// The whole token, `<token_id>.<secret>`, to send as a bearer token.
    pub bearer: String,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token_id", &self.token_id)
            .finish_non_exhaustive()
    }
}

/// Who is calling, as resolved from a live token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A device of one station.
    Device {
        /// The token's id, for binding and for messages.
        token_id: String,
        /// The station the token acts for.
        station_code: String,
        /// The origin the token is bound to, as read when the call arrived.
        bound_origin: Option<Uuid>,
        /// The device was ordered wiped (`station-hub revoke --wipe`): the
        /// token may do nothing but the wipe.
        wipe_ordered: bool,
    },
    /// The bureau.
    Bureau {
        /// The token's id.
        token_id: String,
        /// The bureau's name.
        bureau: String,
    },
    /// A station relay.
    Relay {
        /// The token's id, for binding and for messages.
        token_id: String,
        /// The station the relay serves.
        station_code: String,
        /// The relay's own origin, when it records, as read when the call arrived.
        bound_origin: Option<Uuid>,
    },
    /// A supervisor of some stations.
    Supervisor {
        /// The token's id.
        token_id: String,
        /// The stations supervised.
        stations: Vec<String>,
        /// The origin the token is bound to, as read when the call arrived.
        bound_origin: Option<Uuid>,
    },
}

impl Caller {
    /// Whether the caller is a device ordered wiped.
    pub fn wipe_ordered(&self) -> bool {
        matches!(
            self,
            Caller::Device {
                wipe_ordered: true,
                ..
            }
        )
    }

    /// The id of the caller's token.
    pub fn token_id(&self) -> &str {
        match self {
            Caller::Device { token_id, .. }
            | Caller::Bureau { token_id, .. }
            | Caller::Relay { token_id, .. }
            | Caller::Supervisor { token_id, .. } => token_id,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(s: &str, len: usize) -> Option<Vec<u8>> {
    if s.len() != len * 2 {
        return None;
    }
    (0..len)
        .map(|i| {
            s.get(2 * i..2 * i + 2)
                .filter(|pair| pair.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn checked_name(field: &str, name: &str) -> Result<String, AuthError> {
    let mut name = name.to_string();
    validate::text(field, &mut name, NAME_MAX_CHARS, true)?;
    if name.contains(['\n', '\t']) {
        return Err(Invalid::new(field, "must be one line without tabs").into());
    }
    Ok(name)
}

fn issue(store: &HubStore, scope: TokenScope) -> Result<IssuedToken, AuthError> {
    for _ in 0..ID_ATTEMPTS {
        let token_id = hex(&random_bytes(TOKEN_ID_BYTES));
        let secret = random_bytes(SECRET_BYTES);
        let record = TokenRecord {
            token_id: token_id.clone(),
            scope: scope.clone(),
            secret_sha256: Sha256::digest(&secret).to_vec(),
            created_at_ms: now_ms(),
            revoked_at_ms: None,
            wipe: None,
        };
        if store.insert_token(&record)? {
            let bearer = format!("{token_id}.{}", hex(&secret));
            return Ok(IssuedToken { token_id, bearer });
        }
    }
    Err(AuthError::NoFreeId)
}

/// Issues a device token for `station_code`, named `device` in listings. It
/// binds to the first origin that presents it.
///
/// # Errors
/// [`AuthError::Invalid`] for a bad station code or name; storage errors (then
/// no token was issued).
pub fn enroll_device(
    store: &HubStore,
    station_code: &str,
    device: &str,
) -> Result<IssuedToken, AuthError> {
    validate::station_code("station", station_code)?;
    let device = checked_name("device", device)?;
    issue(
        store,
        TokenScope::Device {
            station_code: station_code.to_string(),
            device,
            bound_origin: None,
        },
    )
}

/// Issues a relay token for `station_code`, named `relay` in listings and
/// on the device rows of the origins it carries.
///
/// # Errors
/// [`AuthError::Invalid`] for a bad station code or name; storage errors (then
/// no token was issued).
pub fn enroll_relay(
    store: &HubStore,
    station_code: &str,
    relay: &str,
) -> Result<IssuedToken, AuthError> {
    validate::station_code("station", station_code)?;
    let relay = checked_name("relay", relay)?;
    issue(
        store,
        TokenScope::Relay {
            station_code: station_code.to_string(),
            relay,
            bound_origin: None,
        },
    )
}

/// Issues a read-only bureau token named `bureau`.
///
/// # Errors
/// [`AuthError::Invalid`] for a bad name; storage errors.
pub fn enroll_bureau(store: &HubStore, bureau: &str) -> Result<IssuedToken, AuthError> {
    let bureau = checked_name("bureau", bureau)?;
    issue(store, TokenScope::Bureau { bureau })
}

/// Issues a supervisor token named `supervisor` for `stations` (duplicates
/// dropped, order kept): it reads those stations and, from the one device log
/// that first presents it, pushes review decisions on their cases.
///
/// # Errors
/// [`AuthError::Invalid`] for a bad name, no station or a bad station code;
/// storage errors.
pub fn enroll_supervisor(
    store: &HubStore,
    supervisor: &str,
    stations: &[String],
) -> Result<IssuedToken, AuthError> {
    let supervisor = checked_name("supervisor", supervisor)?;
    if stations.is_empty() {
        return Err(Invalid::new("stations", "must name at least one station").into());
    }
    let mut codes: Vec<String> = Vec::with_capacity(stations.len());
    for (i, code) in stations.iter().enumerate() {
        validate::station_code(&format!("stations[{i}]"), code)?;
        if !codes.contains(code) {
            codes.push(code.clone());
        }
    }
    issue(
        store,
        TokenScope::Supervisor {
            supervisor,
            stations: codes,
            bound_origin: None,
        },
    )
}

/// Whether `body` is a review decision, the only events a supervisor
/// token pushes: what its kind says of its writer.
fn is_review_decision(body: Option<&station_proto::Body>) -> bool {
    body.is_some_and(|body| body.kind().writer() == station_proto::kinds::Writer::Supervisor)
}

fn supervised(token_id: &str, stations: &[String], asked: &str) -> Result<(), AuthError> {
    if stations.iter().any(|s| s == asked) {
        Ok(())
    } else {
        Err(AuthError::Denied(format!(
            "token {token_id} supervises {}, not {asked}",
            stations.join(",")
        )))
    }
}

/// Revokes a token; revoking it again changes nothing. Returns its record.
///
/// # Errors
/// [`HubError::UnknownToken`] (inside [`AuthError::Store`]), storage errors.
pub fn revoke(store: &HubStore, token_id: &str) -> Result<TokenRecord, AuthError> {
    let now = now_ms();
    Ok(store.update_token(token_id, |record| {
        let first = record.revoked_at_ms.is_none();
        if first {
            record.revoked_at_ms = Some(now);
        }
        first
    })?)
}

/// The device tokens of a relay `caller`'s station, as the relay needs
/// them to authenticate its phones while its uplink is down: id, SHA-256 of
/// the secret, name, and whether it is revoked (or ordered wiped: such a
/// device is to reach the hub, which alone tells it to wipe). Empty for
/// every other caller: nobody else learns which tokens exist.
///
/// # Errors
/// Storage errors.
pub fn station_devices(
    store: &HubStore,
    caller: &Caller,
) -> Result<Vec<station_proto::v1::StationDevice>, AuthError> {
    station_tokens(store, caller, TokenKind::Device)
}

/// The relay tokens of a relay `caller`'s station but its own, in the same
/// shape as [`station_devices`]: a relay serves them as it serves phones, so
/// that a relay whose only link is another relay of its station (a village
/// outpost behind the station PC) forwards through it. Empty for every
/// other caller, and never another station's.
///
/// # Errors
/// Storage errors.
pub fn station_relays(
    store: &HubStore,
    caller: &Caller,
) -> Result<Vec<station_proto::v1::StationDevice>, AuthError> {
    station_tokens(store, caller, TokenKind::Relay)
}

/// For a relay `caller`, how much of each origin of its station `store`
/// holds (`durable_through`, when above 0), its own origin left out: what a
/// relay tells a relay chained behind it at each Hello, with the city's
/// figures beside. A relay token may push and pull every origin of its
/// station, so this tells it nothing it could not read; every other caller
/// gets nothing.
///
/// # Errors
/// Storage errors.
pub fn station_origins_held(
    store: &HubStore,
    caller: &Caller,
) -> Result<Vec<(Uuid, u64)>, AuthError> {
    let Caller::Relay {
        station_code,
        bound_origin,
        ..
    } = caller
    else {
        return Ok(Vec::new());
    };
    Ok(store
        .origins()?
        .into_iter()
        .filter(|(origin, state)| {
            state.station_code == *station_code
                && state.durable_through > 0
                && Some(*origin) != *bound_origin
        })
        .map(|(origin, state)| (origin, state.durable_through))
        .collect())
}

/// Which tokens [`station_tokens`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenKind {
    Device,
    Relay,
}

fn station_tokens(
    store: &HubStore,
    caller: &Caller,
    kind: TokenKind,
) -> Result<Vec<station_proto::v1::StationDevice>, AuthError> {
    let Caller::Relay {
        station_code,
        token_id: own,
        ..
    } = caller
    else {
        return Ok(Vec::new());
    };
    Ok(store
        .tokens()?
        .into_iter()
        .filter_map(|record| {
            let name = match (&record.scope, kind) {
                (
                    TokenScope::Device {
                        station_code: station,
                        device: name,
                        ..
                    },
                    TokenKind::Device,
                )
                | (
                    TokenScope::Relay {
                        station_code: station,
                        relay: name,
                        ..
                    },
                    TokenKind::Relay,
                ) if station == station_code && record.token_id != *own => name.clone(),
                (
                    TokenScope::Device { .. }
                    | TokenScope::Bureau { .. }
                    | TokenScope::Relay { .. }
                    | TokenScope::Supervisor { .. },
                    _,
                ) => return None,
            };
            Some(station_proto::v1::StationDevice {
                token_id: record.token_id.clone(),
                secret_sha256: record.secret_sha256.clone(),
                device: name,
                revoked: record.revoked_at_ms.is_some() || record.wipe.is_some(),
            })
        })
        .collect())
}

/// Orders the device holding the device token `token_id` wiped, as lost: at
/// its next Hello it is told to upload its backlog and destroy its keys
/// (see [`wipe_hello`]). Ordering it again changes nothing. Returns the
/// token's record.
///
/// # Errors
/// [`HubError::UnknownToken`] (inside [`AuthError::Store`]);
/// [`AuthError::Denied`] for a bureau token, or a token revoked already
/// (its device can no longer be told: a wipe is ordered instead of a plain
/// revocation); storage errors. A refusal changes nothing.
pub fn order_wipe(store: &HubStore, token_id: &str) -> Result<TokenRecord, AuthError> {
    let now = now_ms();
    let mut refusal = None;
    let record = store.update_token(token_id, |record| {
        if !matches!(record.scope, TokenScope::Device { .. }) {
            refusal = Some(format!(
                "token {token_id} is not a device's: only a device can be wiped"
            ));
            return false;
        }
        if record.wipe.is_some() {
            return false;
        }
        if record.revoked_at_ms.is_some() {
            refusal = Some(format!(
                "token {token_id} is revoked already: its device can no longer be told to wipe                  itself (order the wipe instead of revoking, before the device is next online)"
            ));
            return false;
        }
        record.wipe = Some(WipeOrder {
            ordered_at_ms: now,
            backlog_through: None,
            wiped_at_ms: None,
            not_uploaded: 0,
        });
        true
    })?;
    match refusal {
        Some(reason) => Err(AuthError::Denied(reason)),
        None => Ok(record),
    }
}

/// What a Hello of a device ordered wiped does: while the wipe is pending,
/// the device's `head_seq` extends its backlog (the events it may still
/// push); a Hello saying the device `wiped` itself records when, and how many
/// of its entries the hub lacks (`head_seq` past `durable_through`), and
/// revokes the token. Returns the record, once durable.
///
/// # Errors
/// [`AuthError::Denied`] when no wipe was ordered for the caller's token;
/// storage errors.
pub fn wipe_hello(
    store: &HubStore,
    caller: &Caller,
    head_seq: u64,
    wiped: bool,
    durable_through: u64,
) -> Result<TokenRecord, AuthError> {
    let token_id = caller.token_id();
    if !caller.wipe_ordered() {
        return Err(AuthError::Denied(format!(
            "no wipe was ordered for token {token_id}"
        )));
    }
    let now = now_ms();
    Ok(store.update_token(token_id, |record| {
        let revoked = record.revoked_at_ms.is_some();
        let Some(wipe) = record.wipe.as_mut() else {
            return false;
        };
        if wiped {
            if wipe.wiped_at_ms.is_some() {
                return false;
            }
            wipe.wiped_at_ms = Some(now);
            wipe.not_uploaded = head_seq.saturating_sub(durable_through);
            if !revoked {
                record.revoked_at_ms = Some(now);
            }
            true
        } else if wipe
            .backlog_through
            .is_none_or(|through| through < head_seq)
        {
            wipe.backlog_through = Some(head_seq);
            true
        } else {
            false
        }
    })?)
}

/// Whether a device ordered wiped may push `events`: only its own events up
/// to the end of its backlog, as its Hellos since the order gave it.
///
/// # Errors
/// [`AuthError::Denied`] for an event past the backlog, or before any Hello
/// since the order.
pub fn authorize_wipe_push(record: &TokenRecord, events: &[Event]) -> Result<(), AuthError> {
    let Some(wipe) = &record.wipe else {
        return Ok(());
    };
    let through = wipe.backlog_through.unwrap_or(0);
    match events.iter().find(|e| e.origin_seq > through) {
        Some(event) => Err(AuthError::Denied(format!(
            "token {} is of a device ordered wiped: it may push only its backlog, through seq              {through}, not seq {}",
            record.token_id, event.origin_seq
        ))),
        None => Ok(()),
    }
}

/// The token id and the SHA-256 of the secret of an `authorization` value
/// `Bearer <token_id>.<secret>`, checked for form only (a station relay
/// learns its phones' tokens this way, see the relay's gate).
///
/// # Errors
/// [`AuthError::MissingToken`], [`AuthError::MalformedHeader`],
/// [`AuthError::InvalidToken`] (not a token's form).
pub fn parse_bearer(authorization: Option<&str>) -> Result<(String, Vec<u8>), AuthError> {
    let header = authorization.ok_or(AuthError::MissingToken)?;
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or(AuthError::MalformedHeader)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MalformedHeader);
    }
    let (token_id, secret) = token
        .trim()
        .split_once('.')
        .ok_or(AuthError::InvalidToken)?;
    let secret = from_hex(secret, SECRET_BYTES).ok_or(AuthError::InvalidToken)?;
    if from_hex(token_id, TOKEN_ID_BYTES).is_none() {
        return Err(AuthError::InvalidToken);
    }
    Ok((token_id.to_string(), Sha256::digest(&secret).to_vec()))
}

/// Resolves the value of the `authorization` metadata to the live token's
/// [`Caller`].
///
/// # Errors
/// [`AuthError::MissingToken`], [`AuthError::MalformedHeader`],
/// [`AuthError::InvalidToken`] (unknown id or wrong secret, not told apart),
/// [`AuthError::Revoked`], storage errors.
pub fn authenticate(store: &HubStore, authorization: Option<&str>) -> Result<Caller, AuthError> {
    let (token_id, secret) = parse_bearer(authorization)?;
    let record = store.token(&token_id)?.ok_or(AuthError::InvalidToken)?;
    if !bool::from(secret.as_slice().ct_eq(&record.secret_sha256)) {
        return Err(AuthError::InvalidToken);
    }
    if record.revoked_at_ms.is_some() {
        return Err(AuthError::Revoked);
    }
    Ok(match record.scope {
        TokenScope::Device {
            station_code,
            bound_origin,
            ..
        } => Caller::Device {
            token_id: record.token_id,
            station_code,
            bound_origin,
            wipe_ordered: record.wipe.is_some(),
        },
        TokenScope::Bureau { bureau } => Caller::Bureau {
            token_id: record.token_id,
            bureau,
        },
        TokenScope::Relay {
            station_code,
            bound_origin,
            ..
        } => Caller::Relay {
            token_id: record.token_id,
            station_code,
            bound_origin,
        },
        TokenScope::Supervisor {
            stations,
            bound_origin,
            ..
        } => Caller::Supervisor {
            token_id: record.token_id,
            stations,
            bound_origin,
        },
    })
}

fn own_station(token_id: &str, own: &str, asked: &str) -> Result<(), AuthError> {
    if own == asked {
        Ok(())
    } else {
        Err(AuthError::Denied(format!(
            "token {token_id} is for station {own}, not {asked}"
        )))
    }
}

fn own_origin(token_id: &str, bound: Option<Uuid>, asked: Uuid) -> Result<(), AuthError> {
    match bound {
        Some(bound) if bound != asked => Err(AuthError::Denied(format!(
            "token {token_id} is bound to origin {bound}, not {asked}"
        ))),
        _ => Ok(()),
    }
}

/// Whether `caller` may read the timeline of `case_id`, a case of
/// `station_code`: the bureau reads every case, a device its own station's.
///
/// # Errors
/// [`AuthError::Denied`]: a device token of another station.
pub fn authorize_case(caller: &Caller, case_id: Uuid, station_code: &str) -> Result<(), AuthError> {
    match caller {
        Caller::Device {
            token_id,
            station_code: own,
            ..
        }
        | Caller::Relay {
            token_id,
            station_code: own,
            ..
        } if own != station_code => Err(AuthError::Denied(format!(
            "token {token_id} is for station {own}, and case {case_id} is not"
        ))),
        Caller::Supervisor {
            token_id, stations, ..
        } if !stations.iter().any(|s| s == station_code) => Err(AuthError::Denied(format!(
            "token {token_id} supervises {}, and case {case_id} is not of them",
            stations.join(",")
        ))),
        Caller::Device { .. }
        | Caller::Relay { .. }
        | Caller::Bureau { .. }
        | Caller::Supervisor { .. } => Ok(()),
    }
}

/// The stations a read by `caller` covers: those asked for (duplicates
/// dropped, order kept), or when none, the roster (a bureau) or the
/// caller's own station (a device). The rule of every read of the projections, by `Query` and
/// over HTTP.
///
/// # Errors
/// [`AuthError::Invalid`] for a code that is not 9 digits;
/// [`AuthError::Denied`] when a device token asks for another station.
pub fn readable_stations(
    caller: &Caller,
    asked: Vec<String>,
    config: &HubConfig,
) -> Result<Vec<String>, AuthError> {
    for (i, code) in asked.iter().enumerate() {
        validate::station_code(&format!("stations[{i}]"), code)?;
    }
    let mut stations: Vec<String> = Vec::with_capacity(asked.len());
    for code in asked {
        if !stations.contains(&code) {
            stations.push(code);
        }
    }
    match caller {
        Caller::Bureau { .. } if stations.is_empty() => Ok(config.station_codes()),
        Caller::Bureau { .. } => Ok(stations),
        Caller::Device { station_code, .. } | Caller::Relay { station_code, .. }
            if stations.is_empty() =>
        {
            Ok(vec![station_code.clone()])
        }
        Caller::Device {
            token_id,
            station_code,
            ..
        }
        | Caller::Relay {
            token_id,
            station_code,
            ..
        } => match stations.iter().find(|s| *s != station_code) {
            Some(other) => Err(AuthError::Denied(format!(
                "token {token_id} is for station {station_code}, not {other}"
            ))),
            None => Ok(stations),
        },
        Caller::Supervisor { stations: own, .. } if stations.is_empty() => Ok(own.clone()),
        Caller::Supervisor {
            token_id,
            stations: own,
            ..
        } => {
            for station in &stations {
                supervised(token_id, own, station)?;
            }
            Ok(stations)
        }
    }
}

/// Whether `caller` may read the whole district at once: the district's
/// reports and the dashboard are the bureau's.
///
/// # Errors
/// [`AuthError::Denied`]: a device token.
pub fn authorize_district(caller: &Caller) -> Result<(), AuthError> {
    match caller {
        Caller::Bureau { .. } => Ok(()),
        Caller::Device { token_id, .. } => Err(AuthError::Denied(format!(
            "token {token_id} is a device's: the district's reports and dashboard are for the bureau's token"
        ))),
        Caller::Relay { token_id, .. } => Err(AuthError::Denied(format!(
            "token {token_id} is a relay's: the district's reports and dashboard are for the bureau's token"
        ))),
        Caller::Supervisor { token_id, .. } => Err(AuthError::Denied(format!(
            "token {token_id} is a supervisor's: the district's reports and dashboard are for the bureau's token"
        ))),
    }
}

/// The origin whose events a `Pull` by `caller` leaves out: a device does
/// not download its own events again.
pub fn pulled_without(caller: &Caller) -> Option<Uuid> {
    match caller {
        Caller::Device { bound_origin, .. }
        | Caller::Relay { bound_origin, .. }
        | Caller::Supervisor { bound_origin, .. } => *bound_origin,
        Caller::Bureau { .. } => None,
    }
}

/// Whether `caller` may say `Hello` as `origin` of `station_code`. A device
/// (or relay) token not yet bound must still be bound with [`bind_origin`].
///
/// # Errors
/// [`AuthError::Denied`]: a bureau token, another station, another origin.
pub fn authorize_hello(caller: &Caller, origin: Uuid, station_code: &str) -> Result<(), AuthError> {
    match caller {
        Caller::Device {
            token_id,
            station_code: own,
            bound_origin,
            ..
        }
        | Caller::Relay {
            token_id,
            station_code: own,
            bound_origin,
            ..
        } => {
            own_station(token_id, own, station_code)?;
            own_origin(token_id, *bound_origin, origin)
        }
        Caller::Supervisor {
            token_id,
            stations,
            bound_origin,
        } => {
            supervised(token_id, stations, station_code)?;
            own_origin(token_id, *bound_origin, origin)
        }
        Caller::Bureau { .. } => Err(AuthError::Denied(
            "a bureau token has no device log to introduce: Hello is for device tokens".into(),
        )),
    }
}

/// Whether `caller` may pull the stream of `station_code`.
///
/// # Errors
/// [`AuthError::Denied`]: a device token of another station, or of a device
/// ordered wiped.
pub fn authorize_pull(caller: &Caller, station_code: &str) -> Result<(), AuthError> {
    match caller {
        Caller::Device {
            token_id,
            wipe_ordered: true,
            ..
        } => Err(AuthError::Denied(format!(
            "token {token_id} is of a device ordered wiped: it pulls nothing more"
        ))),
        Caller::Device {
            token_id,
            station_code: own,
            ..
        }
        | Caller::Relay {
            token_id,
            station_code: own,
            ..
        } => own_station(token_id, own, station_code),
        Caller::Supervisor {
            token_id, stations, ..
        } => supervised(token_id, stations, station_code),
        Caller::Bureau { .. } => Ok(()),
    }
}

/// Whether `caller` may push every event of `events`; returns the distinct
/// origins the batch carries, each to be bound with [`bind_origin`] (a
/// device's) or admitted with [`admit_relayed`] (a relay's) before the batch
/// is stored. One event it may not push refuses the whole batch.
///
/// # Errors
/// [`AuthError::Invalid`] for an event without a 16-byte origin id;
/// [`AuthError::Denied`]: a bureau token, an event of another station, for a
/// device token an event of another origin than the token's (or than the
/// batch's first, for a token not yet bound).
pub fn authorize_push(caller: &Caller, events: &[Event]) -> Result<Vec<Uuid>, AuthError> {
    let (token_id, own_stations, bound_origin, supervisor) = match caller {
        Caller::Device {
            token_id,
            station_code,
            bound_origin,
            ..
        } => (
            token_id,
            std::slice::from_ref(station_code),
            *bound_origin,
            false,
        ),
        Caller::Supervisor {
            token_id,
            stations,
            bound_origin,
        } => (token_id, stations.as_slice(), *bound_origin, true),
        Caller::Relay {
            token_id,
            station_code,
            ..
        } => return relayed_origins(token_id, station_code, events),
        Caller::Bureau { .. } => {
            return Err(AuthError::Denied("a bureau token cannot push".into()));
        }
    };
    let mut origins = BTreeSet::new();
    // The origin this batch may carry: the bound one, else the first seen.
    let mut allowed = bound_origin;
    for (index, event) in events.iter().enumerate() {
        let origin = validate::uuid16(&format!("events[{index}].origin_id"), &event.origin_id)?;
        if !own_stations.contains(&event.station_code) {
            return Err(AuthError::Denied(format!(
                "event {index} belongs to station {}, but token {token_id} is for station {}",
                event.station_code,
                own_stations.join(",")
            )));
        }
        if supervisor && !is_review_decision(event.body.as_ref()) {
            return Err(AuthError::Denied(format!(
                "event {index} is not a review decision, and token {token_id} is a supervisor's: it pushes review decisions only"
            )));
        }
        let expected = *allowed.get_or_insert(origin);
        if origin != expected {
            return Err(AuthError::Denied(format!(
                "event {index} is of origin {origin}, but token {token_id} acts for origin {expected}"
            )));
        }
        origins.insert(origin);
    }
    Ok(origins.into_iter().collect())
}

/// The distinct origins of a relay's push, every event of the relay's station.
fn relayed_origins(
    token_id: &str,
    own_station_code: &str,
    events: &[Event],
) -> Result<Vec<Uuid>, AuthError> {
    let mut origins = BTreeSet::new();
    for (index, event) in events.iter().enumerate() {
        let origin = validate::uuid16(&format!("events[{index}].origin_id"), &event.origin_id)?;
        if event.station_code != own_station_code {
            return Err(AuthError::Denied(format!(
                "event {index} belongs to station {}, but relay token {token_id} is for station {own_station_code}",
                event.station_code
            )));
        }
        origins.insert(origin);
    }
    Ok(origins.into_iter().collect())
}

/// Whether the relay `caller` may carry `origin`, whose events in this push
/// are `events` with the push's `heads`; durably binds an origin the hub has
/// never seen to the key its signed head carries, once that head verifies
/// over the origin's events from seq 1 (see the module doc). The relay's own
/// origin is bound as a device's. The rest of the batch's signatures are
/// checked when it is stored. Does nothing for other callers.
///
/// # Errors
/// [`AuthError::Denied`]: an origin bound to a token of another station, to
/// a revoked token, or without a device key; a new origin whose push carries
/// no signed head with a public key, or does not start at seq 1, or whose
/// head does not verify; [`AuthError::Invalid`] for a head's bad public key;
/// [`AuthError::Revoked`], storage errors. A refusal binds nothing.
pub fn admit_relayed(
    store: &HubStore,
    caller: &Caller,
    origin: Uuid,
    events: &[Event],
    heads: &[station_proto::v1::SignedHead],
) -> Result<(), AuthError> {
    let Caller::Relay {
        token_id,
        station_code,
        bound_origin,
    } = caller
    else {
        return Ok(());
    };
    if *bound_origin == Some(origin) {
        return bind_origin(store, caller, origin, None);
    }
    let refused = |why: String| {
        tracing::warn!(token_id, %origin, why, "origin refused to a relay");
        AuthError::Denied(format!(
            "relay token {token_id} cannot carry origin {origin}: {why}"
        ))
    };
    if let Some(binding) = store.binding(origin)? {
        if binding.token_id == *token_id {
            return Ok(());
        }
        let owner = store.token(&binding.token_id)?;
        let Some(owner) = owner else {
            return Err(refused("its token is unknown".into()));
        };
        if owner.scope.station_code() != Some(station_code.as_str()) {
            return Err(refused("it is not of this relay's station".into()));
        }
        if owner.revoked_at_ms.is_some() {
            return Err(refused("its device's token is revoked".into()));
        }
        if binding.public_key.is_none() {
            return Err(refused(
                "it does not sign its events: only its own device may push them".into(),
            ));
        }
        return Ok(());
    }
    let origin_bytes = origin.as_bytes();
    let Some(head) = heads
        .iter()
        .rev()
        .find(|h| h.origin_id == origin_bytes && !h.public_key.is_empty())
    else {
        return Err(refused(
            "the hub has not seen it, and its signed head carries no public key".into(),
        ));
    };
    chain::check_public_key(&head.public_key)
        .map_err(|e| Invalid::new("heads.public_key", e.to_string()))?;
    let mut chain = chain::Chain::start(origin);
    for event in events.iter().filter(|e| e.origin_id == origin_bytes) {
        if chain.seq() == head.last_seq {
            break;
        }
        chain.push(event).map_err(|_| {
            refused(format!(
                "the hub has not seen it, and the push does not hold its seqs from 1 (found seq {})",
                event.origin_seq
            ))
        })?;
    }
    if chain.seq() != head.last_seq || head.last_seq == 0 {
        return Err(refused(format!(
            "its signed head names seq {}, which the push does not hold from seq 1",
            head.last_seq
        )));
    }
    chain::verify_head(
        &head.public_key,
        origin,
        head.last_seq,
        &chain.head(),
        &head.signature,
    )
    .map_err(|e| refused(format!("its signed head does not verify ({e})")))?;
    match store
        .token_store()
        .bind_relayed(origin, token_id, &head.public_key)
    {
        Ok(_) => {
            tracing::info!(token_id, %origin, "origin introduced by a relay");
            Ok(())
        }
        Err(HubError::TokenRevoked(_)) => Err(AuthError::Revoked),
        Err(HubError::UnknownToken(_)) => Err(AuthError::InvalidToken),
        Err(error @ (HubError::OriginTaken(_) | HubError::KeyMismatch(_))) => {
            Err(refused(error.to_string()))
        }
        Err(error) => Err(error.into()),
    }
}

/// Binds a device token to `origin` for life if it is not bound yet, with
/// the device's `public_key` when given and none is bound yet, durably;
/// succeeds when the token and the origin are (now) bound to each other.
/// Does nothing for other callers. A refusal says nothing of the origin's
/// state: only that it is not the caller's.
///
/// # Errors
/// [`AuthError::Denied`] when the token is bound to another origin (another
/// call may have bound it first), when another token speaks for the origin
/// (any station's, revoked or not: a revoked device's origin is closed), or
/// when the origin has another device key; [`AuthError::Revoked`], storage
/// errors.
pub fn bind_origin(
    store: &(impl HubLog + ?Sized),
    caller: &Caller,
    origin: Uuid,
    public_key: Option<&[u8]>,
) -> Result<(), AuthError> {
    let (token_id, seen_bound) = match caller {
        Caller::Device {
            token_id,
            bound_origin,
            ..
        }
        | Caller::Relay {
            token_id,
            bound_origin,
            ..
        }
        | Caller::Supervisor {
            token_id,
            bound_origin,
            ..
        } => (token_id, bound_origin),
        Caller::Bureau { .. } => return Ok(()),
    };
    match store.bind_origin(origin, token_id, public_key) {
        Ok(_) => {
            if seen_bound.is_none() {
                tracing::info!(token_id, %origin, "device token bound to its origin");
            }
            Ok(())
        }
        Err(HubError::TokenRevoked(_)) => Err(AuthError::Revoked),
        Err(HubError::UnknownToken(_)) => Err(AuthError::InvalidToken),
        Err(
            error @ (HubError::TokenBound { .. }
            | HubError::OriginTaken(_)
            | HubError::KeyMismatch(_)),
        ) => {
            tracing::warn!(token_id, %origin, %error, "origin refused to a device token");
            Err(AuthError::Denied(error.to_string()))
        }
        Err(error) => Err(error.into()),
    }
}

/// The [`Caller`] the [`Authenticator`] put on the request.
///
/// # Errors
/// `UNAUTHENTICATED` when there is none: the service was served without its
/// interceptor, and refuses every call.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| AuthError::MissingToken.into())
}

/// The interceptor in front of the `Sync` service: resolves the bearer token
/// to a [`Caller`] or refuses the call with `UNAUTHENTICATED`. Refused calls
/// are rate-limited per address and per presented token id, and logged once
/// per interval with a count ([`Refusals`]); a caller over its limit is
/// answered `RESOURCE_EXHAUSTED` without its token being read. Clones share
/// their limits.
///
/// It reads one record of the small `tokens` tree, which sled keeps in its
/// page cache, on the calling task.
#[derive(Debug, Clone)]
pub struct Authenticator {
    /// Where the token records are.
    store: Arc<HubStore>,
    /// The limits on refused calls.
    refusals: Arc<Refusals>,
}

impl Authenticator {
    /// An interceptor checking tokens against `store`.
    pub fn new(store: Arc<HubStore>) -> Self {
        Self {
            store,
            refusals: Arc::new(Refusals::new("grpc")),
        }
    }
}

impl Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let address = request.remote_addr().map(|addr| addr.ip());
        let header = match request.metadata().get("authorization") {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| AuthError::MalformedHeader)?),
        };
        let token_id = header.and_then(presented_token_id);
        if let Err(wait) = self.refusals.admit(address, token_id) {
            return Err(Status::resource_exhausted(format!(
                "too many refused calls: try again in {} s",
                wait.as_secs().max(1)
            )));
        }
        let caller = authenticate(&self.store, header).map_err(|error| {
            self.refusals.refused(address, token_id, &error.to_string());
            Status::from(error)
        })?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_upper_case_and_odd_lengths() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(from_hex(&hex(&bytes), 4).as_deref(), Some(&bytes[..]));
        assert_eq!(from_hex("00AB", 2), None);
        assert_eq!(from_hex("0ab", 2), None);
        assert_eq!(from_hex("+1ab", 2), None);
        assert_eq!(from_hex("éé", 1), None);
    }

    #[test]
    fn names_are_one_line_and_bounded() {
        assert_eq!(checked_name("device", " 泽当-1 ").unwrap(), "泽当-1");
        assert!(checked_name("device", "").is_err());
        assert!(checked_name("device", "a\tb").is_err());
        assert!(checked_name("device", &"x".repeat(NAME_MAX_CHARS + 1)).is_err());
    }

    #[test]
    fn a_device_push_is_one_station_and_one_origin() {
        let a = Uuid::now_v7();
        let b = Uuid::now_v7();
        let event = |origin: Uuid, station: &str| Event {
            origin_id: origin.as_bytes().to_vec(),
            station_code: station.into(),
            ..Event::default()
        };
        let unbound = Caller::Device {
            token_id: "t".into(),
            station_code: "540502001".into(),
            bound_origin: None,
            wipe_ordered: false,
        };
        let ok = [event(a, "540502001"), event(a, "540502001")];
        assert_eq!(authorize_push(&unbound, &ok).unwrap(), vec![a]);
        let two = [event(a, "540502001"), event(b, "540502001")];
        assert!(matches!(
            authorize_push(&unbound, &two),
            Err(AuthError::Denied(_))
        ));
        let bound_b = Caller::Device {
            token_id: "t".into(),
            station_code: "540502001".into(),
            bound_origin: Some(b),
            wipe_ordered: false,
        };
        assert!(matches!(
            authorize_push(&bound_b, &ok),
            Err(AuthError::Denied(_))
        ));
        let other_station = [event(b, "540502101")];
        assert!(matches!(
            authorize_push(&bound_b, &other_station),
            Err(AuthError::Denied(_))
        ));
        let no_origin = [Event::default()];
        assert!(matches!(
            authorize_push(&bound_b, &no_origin),
            Err(AuthError::Invalid(_))
        ));
    }
}
