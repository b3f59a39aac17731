//! Who may use the relay: the interceptor in front of its `Sync` service.
//!
//! A relay cannot ask the hub whether a phone's device token is valid (it
//! serves precisely when the uplink is down), so it learns tokens on first
//! use: the first call with a well-formed `Bearer <id>.<secret>` records the
//! token id with the SHA-256 of its secret as a device token of the relay's
//! station in the relay's own store; every later call with that id must
//! carry the same secret. From there the hub's own rules apply unchanged
//! ([`station_hub::auth`]): the token binds to the first origin that says
//! `Hello` with it, with that device's public key, for life; no other token
//! speaks for that origin; every push must carry a signed head that
//! verifies over the origin's chain; every event must be of the relay's
//! station.
//!
//! What a hostile device on the station's LAN can therefore do: introduce
//! new origins of its own, signed with its own keys, which the relay
//! forwards and the hub takes as new devices of the station (shown on the
//! bureau's device rows as carried by this relay, without an enrolled
//! name); read the station's stream through the relay; fill the relay's
//! disk up to its reserve. What it cannot do: alter, replace or add to any
//! origin another token or key has introduced, or push for another station.
//! Keep the station's Wi-Fi or hotspot closed (WPA2) and serve TLS.
//!
//! Invariant: a call reaches the service only with a [`Caller`] that
//! [`auth::authenticate`] resolved from the relay's store.

use std::sync::Arc;

use station_hub::auth::{self, AuthError, Caller};
use station_hub::store::{HubStore, TokenRecord, TokenScope};
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

    /// The caller of `authorization`, recording its token on first use.
    ///
    /// # Errors
    /// A malformed header, a known token id with another secret, storage
    /// errors.
    pub fn caller(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let (token_id, secret_sha256) = auth::parse_bearer(authorization)?;
        if self.store.token(&token_id)?.is_none() {
            let record = TokenRecord {
                token_id: token_id.clone(),
                scope: TokenScope::Device {
                    station_code: self.station_code.clone(),
                    device: format!("phone {token_id}"),
                    bound_origin: None,
                },
                secret_sha256,
                created_at_ms: chrono::Utc::now().timestamp_millis(),
                revoked_at_ms: None,
                wipe: None,
            };
            if self.store.insert_token(&record)? {
                tracing::info!(token_id, "a phone's token seen for the first time");
            }
        }
        auth::authenticate(&self.store, authorization)
    }
}

impl Interceptor for PhoneGate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = match request.metadata().get("authorization") {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| AuthError::MalformedHeader)?),
        };
        let caller = self.caller(header).map_err(|error| {
            tracing::debug!(%error, "phone refused");
            Status::from(error)
        })?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}
