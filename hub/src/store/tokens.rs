//! The issued tokens: [`TokenStore`] over the `tokens` tree of the hub's
//! sled database, sharing the log's group commit.
//!
//! Tree `tokens`:
//!
//! | key | value |
//! | --- | --- |
//! | token_id (ASCII) | JSON [`TokenRecord`]: scope, SHA-256 of the secret, bound origin, revocation, wipe order |
//! | `o:` origin_id (16 bytes) | JSON [`OriginBinding`]: the one token that speaks for the origin, and its device key |
//!
//! Invariants, kept by one token writer:
//! - a token's secret is never stored, only its SHA-256;
//! - a device (relay or supervisor) token's `bound_origin` goes from none to
//!   one origin once and never changes after (the rules are in
//!   [`crate::auth`]); a revoked token stays revoked; a wipe order is never
//!   withdrawn, and a device said wiped stays wiped;
//! - an origin is bound to one token for life: its `o:` record and the
//!   token's `bound_origin` are written in one batch, and both agree; a
//!   revoked token's origin stays bound to it, so nothing more is accepted
//!   for that origin. One exception: an origin a relay introduced for a
//!   phone (bound to the relay's token with the key its signed head
//!   carried, without the relay's `bound_origin`) passes once to the device
//!   token of the relay's station that presents that same key;
//! - an origin's device key goes from none to one key once and never changes;
//! - a token write returns only once flushed and fsynced.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use station_agent::durable::GroupCommit;
use station_proto::ids::Uuid;

use super::HubError;
use super::log::OriginBinding;
use crate::ingest::hex_bytes;

/// Key space of the origin bindings in the `tokens` tree; a token id is
/// lowercase hex, so it never starts with it.
const BINDINGS: &[u8] = b"o:";

fn binding_key(origin: Uuid) -> Vec<u8> {
    let mut k = BINDINGS.to_vec();
    k.extend_from_slice(origin.as_bytes());
    k
}

fn binding_json(binding: &OriginBinding) -> Result<Vec<u8>, HubError> {
    serde_json::to_vec(binding).map_err(|e| HubError::Corrupt(format!("binding: {e}")))
}

/// What a token lets its holder do, and on whose behalf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenScope {
    /// One device of one station: pushes its own origin, pulls its station.
    Device {
        /// The station the device works for.
        station_code: String,
        /// The name given at enrolment, to tell devices apart in listings.
        device: String,
        /// The origin (device log) that first presented the token; it alone
        /// may use the token afterwards.
        bound_origin: Option<Uuid>,
    },
    /// The civil-affairs bureau: reads every station, writes nothing.
    Bureau {
        /// The name given at enrolment.
        bureau: String,
    },
    /// A station PC relaying its station's phones: pushes any origin of its
    /// station whose signed heads verify, and pulls its station.
    Relay {
        /// The station the relay serves.
        station_code: String,
        /// The name given at enrolment, shown on the device rows of the
        /// origins it carried.
        relay: String,
        /// The relay's own origin, when it records entries itself: the first
        /// origin that said `Hello` with the token.
        bound_origin: Option<Uuid>,
    },
    /// A supervisor (督导): reads its stations, and from its own device log
    /// pushes review decisions on their cases, nothing else.
    Supervisor {
        /// The name given at enrolment.
        supervisor: String,
        /// The stations supervised, at least one.
        stations: Vec<String>,
        /// The origin (the supervisor's device log) that first presented
        /// the token; it alone may use the token afterwards.
        bound_origin: Option<Uuid>,
    },
}

impl TokenScope {
    /// The station a device or relay token acts for; `None` for the bureau
    /// and a supervisor.
    pub fn station_code(&self) -> Option<&str> {
        match self {
            TokenScope::Device { station_code, .. } | TokenScope::Relay { station_code, .. } => {
                Some(station_code)
            }
            TokenScope::Bureau { .. } | TokenScope::Supervisor { .. } => None,
        }
    }

    pub(crate) fn bound_origin_mut(&mut self) -> Option<&mut Option<Uuid>> {
        match self {
            TokenScope::Device { bound_origin, .. }
            | TokenScope::Relay { bound_origin, .. }
            | TokenScope::Supervisor { bound_origin, .. } => Some(bound_origin),
            TokenScope::Bureau { .. } => None,
        }
    }
}

/// One issued token, as stored: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The public part of the token, its key in the `tokens` tree.
    pub token_id: String,
    /// Who the holder is and what it may do.
    #[serde(flatten)]
    pub scope: TokenScope,
    /// SHA-256 of the secret part, compared in constant time.
    #[serde(with = "hex_bytes")]
    pub secret_sha256: Vec<u8>,
    /// Hub wall clock when issued, ms.
    pub created_at_ms: i64,
    /// Hub wall clock when revoked, ms; a revoked token is refused.
    pub revoked_at_ms: Option<i64>,
    /// The wipe ordered for the device holding this token, if any
    /// (`station-hub revoke --wipe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wipe: Option<WipeOrder>,
}

/// A lost device's wipe, as its token's record keeps it. While it is pending
/// the token may do nothing but the wipe: Hello, and Push of the device's
/// own backlog; once the device says it is wiped, the token is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WipeOrder {
    /// Hub wall clock when the wipe was ordered, ms.
    pub ordered_at_ms: i64,
    /// The highest head the device gave in a Hello since the order: its
    /// backlog ends there, and nothing past it is taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_through: Option<u64>,
    /// Hub wall clock when the device said it destroyed its keys, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wiped_at_ms: Option<i64>,
    /// Own entries the device held that the hub did not when it wiped (a
    /// batch refused for good): lost with its keys.
    #[serde(default)]
    pub not_uploaded: u64,
}

impl WipeOrder {
    /// `"wiped"` or `"wipe pending"`, for listings.
    pub fn state(&self) -> &'static str {
        if self.wiped_at_ms.is_some() {
            "wiped"
        } else {
            "wipe pending"
        }
    }
}

fn token_json(record: &TokenRecord) -> Result<Vec<u8>, HubError> {
    serde_json::to_vec(record).map_err(|e| HubError::Corrupt(format!("token: {e}")))
}

fn from_json(bytes: &[u8]) -> Result<TokenRecord, HubError> {
    serde_json::from_slice(bytes).map_err(|e| HubError::Corrupt(format!("token: {e}")))
}

/// The token records, by id.
#[derive(Debug)]
pub struct TokenStore {
    /// The `tokens` tree.
    tree: sled::Tree,
    /// The single token writer: reads and writes of one record do not interleave.
    writer: Mutex<()>,
    /// Flush + fsync, shared with the log.
    group: Arc<GroupCommit>,
    /// The group-commit ticket of the latest write to `tree` in this
    /// process (0 for none): a read that changes nothing reports what it
    /// read once this ticket is durable, without waiting for the log's
    /// writes (what the process read at open was on disk already).
    last_write: AtomicU64,
}

impl TokenStore {
    /// The token store over `tree`, made durable through `group`.
    pub(crate) fn new(tree: sled::Tree, group: Arc<GroupCommit>) -> Self {
        Self {
            tree,
            writer: Mutex::new(()),
            group,
            last_write: AtomicU64::new(0),
        }
    }

    /// Takes the ticket of a write to `tree` just made, holding the writer.
    fn written(&self) -> u64 {
        let ticket = self.group.written(None);
        self.last_write.fetch_max(ticket, Ordering::AcqRel);
        ticket
    }

    /// The ticket that covers every write to `tree` made so far, holding
    /// the writer: what a read that changes nothing waits for, since the
    /// record it read may have been written by another thread still waiting
    /// for its sync.
    fn unchanged(&self) -> u64 {
        self.last_write.load(Ordering::Acquire)
    }

    /// Holds the token writer.
    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // It guards no data of its own: a panic while it was held left sled as it was.
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores a new token record unless its id is taken; returns whether it
    /// was stored. Returns once durable.
    ///
    /// # Errors
    /// Storage errors: the token must then not be handed out.
    pub fn insert(&self, record: &TokenRecord) -> Result<bool, HubError> {
        let json = token_json(record)?;
        let ticket = {
            let _writer = self.lock_writer();
            self.tree
                .compare_and_swap(record.token_id.as_bytes(), None::<&[u8]>, Some(json))?
                .is_ok()
                .then(|| self.written())
        };
        if let Some(ticket) = ticket {
            self.group.wait_durable(ticket)?;
        }
        Ok(ticket.is_some())
    }

    /// The token record with this id, if any.
    ///
    /// # Errors
    /// Storage errors.
    pub fn get(&self, token_id: &str) -> Result<Option<TokenRecord>, HubError> {
        if token_id.as_bytes().starts_with(BINDINGS) {
            return Ok(None);
        }
        self.tree
            .get(token_id.as_bytes())?
            .map(|v| from_json(&v))
            .transpose()
    }

    /// Every token record, by id.
    ///
    /// # Errors
    /// Storage errors.
    pub fn all(&self) -> Result<Vec<TokenRecord>, HubError> {
        self.tree
            .iter()
            .filter(|item| !item.as_ref().is_ok_and(|(k, _)| k.starts_with(BINDINGS)))
            .map(|item| from_json(&item?.1))
            .collect()
    }

    /// The binding of `origin`, if a token speaks for it.
    ///
    /// # Errors
    /// Storage errors.
    pub fn binding(&self, origin: Uuid) -> Result<Option<OriginBinding>, HubError> {
        self.tree
            .get(binding_key(origin))?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| HubError::Corrupt(format!("binding: {e}")))
            })
            .transpose()
    }

    /// Every origin binding, by origin.
    ///
    /// # Errors
    /// Storage errors.
    pub fn bindings(&self) -> Result<Vec<(Uuid, OriginBinding)>, HubError> {
        self.tree
            .scan_prefix(BINDINGS)
            .map(|item| {
                let (k, v) = item?;
                let origin = Uuid::from_slice(&k[BINDINGS.len()..])
                    .map_err(|_| HubError::Corrupt("binding key".into()))?;
                let binding = serde_json::from_slice(&v)
                    .map_err(|e| HubError::Corrupt(format!("binding: {e}")))?;
                Ok((origin, binding))
            })
            .collect()
    }

    /// Binds `origin` to the device (or relay) token `token_id` for life,
    /// with `public_key` when given and none is bound yet; the token's
    /// `bound_origin` and the origin's binding are written in one batch.
    /// Binding again as bound changes nothing. An origin a relay of the
    /// same station introduced (see [`TokenStore::bind_relayed`]) passes to
    /// the device token that presents its bound key. Returns the binding
    /// once durable.
    ///
    /// # Errors
    /// [`HubError::UnknownToken`], [`HubError::TokenRevoked`],
    /// [`HubError::TokenBound`] (the token speaks for another origin),
    /// [`HubError::OriginTaken`] (another token speaks for the origin),
    /// [`HubError::KeyMismatch`] (another key is bound), storage errors; a
    /// refused binding changes nothing.
    pub fn bind(
        &self,
        origin: Uuid,
        token_id: &str,
        public_key: Option<&[u8]>,
    ) -> Result<OriginBinding, HubError> {
        let (binding, ticket) = {
            let _writer = self.lock_writer();
            let mut record = self
                .get(token_id)?
                .ok_or_else(|| HubError::UnknownToken(token_id.to_string()))?;
            if record.revoked_at_ms.is_some() {
                return Err(HubError::TokenRevoked(token_id.to_string()));
            }
            let is_device = matches!(record.scope, TokenScope::Device { .. });
            let station = record.scope.station_code().map(str::to_string);
            let Some(bound_origin) = record.scope.bound_origin_mut() else {
                return Err(HubError::UnknownToken(token_id.to_string()));
            };
            if let Some(bound) = *bound_origin
                && bound != origin
            {
                return Err(HubError::TokenBound {
                    token_id: token_id.to_string(),
                    origin: bound,
                });
            }
            let existing = self.binding(origin)?;
            let mut binding = match existing.clone() {
                Some(binding) if binding.token_id != token_id => {
                    let relayed = is_device
                        && public_key.is_some()
                        && binding.public_key.as_deref() == public_key
                        && self.introduced_by_relay_of(&binding, origin, station.as_deref())?;
                    if !relayed {
                        return Err(HubError::OriginTaken(origin));
                    }
                    OriginBinding {
                        token_id: token_id.to_string(),
                        public_key: binding.public_key,
                    }
                }
                Some(binding) => binding,
                None => OriginBinding {
                    token_id: token_id.to_string(),
                    public_key: None,
                },
            };
            match (&binding.public_key, public_key) {
                (Some(bound), Some(key)) if bound.as_slice() != key => {
                    return Err(HubError::KeyMismatch(origin));
                }
                (None, Some(key)) => binding.public_key = Some(key.to_vec()),
                _ => {}
            }
            let token_changed = bound_origin.is_none();
            *bound_origin = Some(origin);
            if token_changed || existing.as_ref() != Some(&binding) {
                let mut batch = sled::Batch::default();
                batch.insert(token_id.as_bytes(), token_json(&record)?);
                batch.insert(binding_key(origin), binding_json(&binding)?);
                self.tree.apply_batch(batch)?;
                (binding, self.written())
            } else {
                (binding, self.unchanged())
            }
        };
        self.group.wait_durable(ticket)?;
        Ok(binding)
    }

    /// Whether `binding` was made by a relay token of `station` carrying
    /// `origin` for a phone (not the relay's own origin).
    fn introduced_by_relay_of(
        &self,
        binding: &OriginBinding,
        origin: Uuid,
        station: Option<&str>,
    ) -> Result<bool, HubError> {
        Ok(match self.get(&binding.token_id)?.map(|r| r.scope) {
            Some(TokenScope::Relay {
                station_code,
                bound_origin,
                ..
            }) => Some(station_code.as_str()) == station && bound_origin != Some(origin),
            _ => false,
        })
    }

    /// Binds `origin`, which no token speaks for yet, to the relay token
    /// `token_id` with the device key `public_key`, without binding the token
    /// to it (a relay carries many origins): the caller has verified that the
    /// origin's first events carry a signature by that key. Binding again as
    /// bound changes nothing. Returns the binding once durable.
    ///
    /// # Errors
    /// [`HubError::UnknownToken`] (also for a token that is not a relay's),
    /// [`HubError::TokenRevoked`], [`HubError::OriginTaken`] (another token
    /// speaks for the origin), [`HubError::KeyMismatch`], storage errors; a
    /// refused binding changes nothing.
    pub fn bind_relayed(
        &self,
        origin: Uuid,
        token_id: &str,
        public_key: &[u8],
    ) -> Result<OriginBinding, HubError> {
        let (binding, ticket) = {
            let _writer = self.lock_writer();
            let record = self
                .get(token_id)?
                .ok_or_else(|| HubError::UnknownToken(token_id.to_string()))?;
            if record.revoked_at_ms.is_some() {
                return Err(HubError::TokenRevoked(token_id.to_string()));
            }
            if !matches!(record.scope, TokenScope::Relay { .. }) {
                return Err(HubError::UnknownToken(token_id.to_string()));
            }
            match self.binding(origin)? {
                Some(binding) if binding.token_id != token_id => {
                    return Err(HubError::OriginTaken(origin));
                }
                Some(binding) if binding.public_key.as_deref() != Some(public_key) => {
                    return Err(HubError::KeyMismatch(origin));
                }
                Some(binding) => (binding, self.unchanged()),
                None => {
                    let binding = OriginBinding {
                        token_id: token_id.to_string(),
                        public_key: Some(public_key.to_vec()),
                    };
                    self.tree
                        .insert(binding_key(origin), binding_json(&binding)?)?;
                    (binding, self.written())
                }
            }
        };
        self.group.wait_durable(ticket)?;
        Ok(binding)
    }

    /// Writes the binding of every device token bound before bindings were
    /// kept apart (oldest token first: if two tokens named one origin, the
    /// first keeps it). Returns how many were written, once durable.
    ///
    /// # Errors
    /// Storage errors.
    pub(crate) fn bind_earlier_tokens(&self) -> Result<usize, HubError> {
        let writer = self.lock_writer();
        let mut records = self.all()?;
        records.sort_by_key(|r| r.created_at_ms);
        let mut written = std::collections::BTreeSet::new();
        let mut batch = sled::Batch::default();
        for record in records {
            let TokenScope::Device {
                bound_origin: Some(origin),
                ..
            } = record.scope
            else {
                continue;
            };
            if written.contains(&origin) || self.binding(origin)?.is_some() {
                continue;
            }
            let binding = OriginBinding {
                token_id: record.token_id,
                public_key: None,
            };
            batch.insert(binding_key(origin), binding_json(&binding)?);
            written.insert(origin);
        }
        if written.is_empty() {
            return Ok(0);
        }
        self.tree.apply_batch(batch)?;
        let ticket = self.written();
        drop(writer);
        self.group.wait_durable(ticket)?;
        Ok(written.len())
    }

    /// Reads a token record, lets `change` edit it, and stores it when
    /// `change` returns true; returns the record as it is afterwards, once
    /// durable. Changes of one record never interleave.
    ///
    /// # Errors
    /// [`HubError::UnknownToken`], or storage errors (then nothing changed).
    pub fn update(
        &self,
        token_id: &str,
        change: impl FnOnce(&mut TokenRecord) -> bool,
    ) -> Result<TokenRecord, HubError> {
        let (record, ticket) = {
            let _writer = self.lock_writer();
            let mut record = self
                .get(token_id)?
                .ok_or_else(|| HubError::UnknownToken(token_id.to_string()))?;
            if change(&mut record) {
                record.token_id = token_id.to_string();
                self.tree
                    .insert(token_id.as_bytes(), token_json(&record)?)?;
                (record, self.written())
            } else {
                (record, self.unchanged())
            }
        };
        self.group.wait_durable(ticket)?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::format::TOKENS_TREE;

    fn device_token(token_id: &str) -> TokenRecord {
        TokenRecord {
            token_id: token_id.to_string(),
            scope: TokenScope::Device {
                station_code: "540502001".to_string(),
                device: "phone".to_string(),
                bound_origin: None,
            },
            secret_sha256: vec![0; 32],
            created_at_ms: 1,
            revoked_at_ms: None,
            wipe: None,
        }
    }

    #[test]
    fn a_bind_that_changes_nothing_does_not_wait_for_the_logs_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let group = Arc::new(GroupCommit::open(db.clone(), dir.path(), 0).unwrap());
        let tokens = TokenStore::new(db.open_tree(TOKENS_TREE).unwrap(), group.clone());
        assert!(tokens.insert(&device_token("t1")).unwrap());
        let origin = Uuid::from_bytes([7; 16]);
        let first = tokens.bind(origin, "t1", Some(&[1; 32])).unwrap();
        assert!(
            group.durable() >= group.current(),
            "a new binding is durable"
        );

        // A write of the log, not yet synced: a push of another device.
        db.insert(b"event", b"bytes").unwrap();
        let pending = group.written(None);
        assert_eq!(tokens.bind(origin, "t1", Some(&[1; 32])).unwrap(), first);
        assert_eq!(tokens.update("t1", |_| false).unwrap().token_id, "t1");
        assert!(
            group.durable() < pending,
            "a bind or read that changes nothing waited for another write's sync"
        );

        // A change still waits for its own sync.
        let other = Uuid::from_bytes([8; 16]);
        assert!(tokens.insert(&device_token("t2")).unwrap());
        tokens.bind(other, "t2", None).unwrap();
        assert!(group.durable() >= pending);
    }
}
