//! Who may use the relay: the interceptor in front of its `Sync` service.
//!
//! A relay cannot ask the hub whether a phone's device token is valid
//! while its uplink is down, so the hub tells it beforehand: each answer to
//! the relay's own `Hello` lists the device tokens of its station (id, the
//! SHA-256 of the secret, name, revoked), which [`learn_tokens`] keeps in
//! the relay's store. A call reaches the service only with one of those
//! tokens, live, with its secret; an unknown token (a phone enrolled since
//! the relay last reached the hub, or none at all) is refused, and the phone
//! syncs with the hub directly. From there the hub's own rules apply
//! unchanged ([`station_hub::auth`]): the token binds to the first origin
//! that says `Hello` with it, with that device's public key, for life; no
//! other token speaks for that origin; every push must carry a signed head
//! that verifies over the origin's chain; every event must be of the
//! relay's station.
//!
//! The same answer lists the station's other relay tokens, kept the same
//! way: a relay chained behind this one (a village outpost's PC whose only
//! link is the station PC) is served as the hub serves a relay. It may then
//! push any origin of the station whose signed heads verify, and this relay
//! verifies them, binds the origins it has not seen to the keys their heads
//! carry, and forwards them signed as they came; a relay token of another
//! station is never listed, so it is refused like an unknown one.
//!
//! What a device on the station's LAN without an enrolled token can do:
//! nothing but be refused. What an enrolled phone can do: what it can do at
//! the hub, and fill the relay's disk up to its reserve. The relay never
//! holds a secret: a copy of its store gives the tokens' hashes, which do
//! not authenticate anyone. Keep the station's Wi-Fi or hotspot closed
//! (WPA2) and serve TLS all the same.
//!
//! Invariant: a call reaches the service only with a [`Caller`] that
//! [`auth::authenticate`] resolved from the relay's store.

use std::sync::Arc;

use station_hub::auth::{self, AuthError, Caller};
use station_hub::store::{HubError, HubStore, TokenRecord, TokenScope};
use station_proto::v1::StationDevice;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The relay's interceptor (see the module doc). Clones share the store.
#[derive(Debug, Clone)]
pub struct PhoneGate {
    /// The relay's store, whose `tokens` tree holds the tokens learnt.
    store: Arc<HubStore>,
    /// The relay's station: every token learnt acts for it alone.
    station_code: String,
}

impl PhoneGate {
    /// A gate over `store` for the phones of `station_code`.
    pub fn new(store: Arc<HubStore>, station_code: &str) -> Self {
        Self {
            store,
            station_code: station_code.to_string(),
        }
    }

    /// The caller of `authorization`: a live device or relay token of the
    /// station the hub listed.
    ///
    /// # Errors
    /// A malformed header, a token the relay does not know or with another
    /// secret, a revoked one, storage errors.
    pub fn caller(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let caller = auth::authenticate(&self.store, authorization)?;
        match &caller {
            Caller::Device { station_code, .. } | Caller::Relay { station_code, .. }
                if *station_code == self.station_code =>
            {
                Ok(caller)
            }
            Caller::Device { .. }
            | Caller::Relay { .. }
            | Caller::Bureau { .. }
            | Caller::Supervisor { .. } => Err(AuthError::InvalidToken),
        }
    }
}

/// Which kind of token a list in the hub's answer names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    /// `HelloResponse.station_devices`: phones.
    Devices,
    /// `HelloResponse.station_relays`: relays chained behind this one.
    Relays,
}

impl Listed {
    fn holds(self, scope: &TokenScope) -> bool {
        match (self, scope) {
            (Listed::Devices, TokenScope::Device { .. })
            | (Listed::Relays, TokenScope::Relay { .. }) => true,
            (
                Listed::Devices | Listed::Relays,
                TokenScope::Device { .. }
                | TokenScope::Relay { .. }
                | TokenScope::Bureau { .. }
                | TokenScope::Supervisor { .. },
            ) => false,
        }
    }

    fn scope(self, station_code: &str, name: &str) -> TokenScope {
        match self {
            Listed::Devices => TokenScope::Device {
                station_code: station_code.to_string(),
                device: name.to_string(),
                bound_origin: None,
            },
            Listed::Relays => TokenScope::Relay {
                station_code: station_code.to_string(),
                relay: name.to_string(),
                bound_origin: None,
            },
        }
    }
}

/// Keeps in the relay's `store` the tokens of `station_code` the hub
/// listed (`tokens`, of the kind `listed`): a token new to the relay is
/// added, one the hub says is revoked, or no longer lists, is revoked here;
/// a relay never adds a token of its own. Returns how many live tokens of
/// that kind the relay serves when anything changed, durably, and `None`
/// when nothing did.
///
/// # Errors
/// Storage errors; what was written before stays, and the next `Hello`
/// brings the rest.
pub fn learn_tokens(
    store: &HubStore,
    station_code: &str,
    listed: Listed,
    tokens: &[StationDevice],
) -> Result<Option<usize>, HubError> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut changed = false;
    for token in tokens {
        if token.secret_sha256.len() != 32 || token.token_id.is_empty() {
            continue;
        }
        match store.token(&token.token_id)? {
            None => {
                changed |= store.insert_token(&TokenRecord {
                    token_id: token.token_id.clone(),
                    scope: listed.scope(station_code, &token.device),
                    secret_sha256: token.secret_sha256.clone(),
                    created_at_ms: now,
                    revoked_at_ms: token.revoked.then_some(now),
                    wipe: None,
                })?;
            }
            Some(held) if token.revoked && held.revoked_at_ms.is_none() => {
                revoke(store, &token.token_id, now)?;
                changed = true;
            }
            Some(_) => {}
        }
    }
    for held in store.tokens()? {
        let still_listed = tokens.iter().any(|t| t.token_id == held.token_id);
        if !still_listed && held.revoked_at_ms.is_none() && listed.holds(&held.scope) {
            revoke(store, &held.token_id, now)?;
            changed = true;
        }
    }
    if !changed {
        return Ok(None);
    }
    let live = store
        .tokens()?
        .iter()
        .filter(|t| t.revoked_at_ms.is_none() && listed.holds(&t.scope))
        .count();
    Ok(Some(live))
}

fn revoke(store: &HubStore, token_id: &str, now: i64) -> Result<(), HubError> {
    store.update_token(token_id, |record| {
        if record.revoked_at_ms.is_some() {
            return false;
        }
        record.revoked_at_ms = Some(now);
        true
    })?;
    Ok(())
}

impl Interceptor for PhoneGate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = match request.metadata().get("authorization") {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| AuthError::MalformedHeader)?),
        };
        let caller = self.caller(header).map_err(|error| {
            tracing::debug!(%error, "caller refused");
            match error {
                AuthError::InvalidToken => Status::unauthenticated(
                    "this station relay does not know the token: it serves the devices and \
                     relays of its station the hub listed when it last reached the hub; sync \
                     with the hub directly",
                ),
                other => Status::from(other),
            }
        })?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}
