//! The issued tokens: [`TokenStore`] over the `tokens` tree of the hub's
//! sled database, sharing the log's group commit.
//!
//! Tree `tokens`:
//!
//! | key | value |
//! | --- | --- |
//! | token_id (ASCII) | JSON [`TokenRecord`]: scope, SHA-256 of the secret, bound origin, revocation |
//!
//! Invariants, kept by one token writer:
//! - a token's secret is never stored, only its SHA-256;
//! - a device token's `bound_origin` goes from none to one origin once and
//!   never changes after (the rules are in [`crate::auth`]); a revoked token
//!   stays revoked;
//! - a token write returns only once flushed and fsynced.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use station_agent::durable::GroupCommit;
use station_proto::ids::Uuid;

use super::HubError;
use crate::ingest::hex_bytes;

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
}

impl TokenStore {
    /// The token store over `tree`, made durable through `group`.
    pub(crate) fn new(tree: sled::Tree, group: Arc<GroupCommit>) -> Self {
        Self {
            tree,
            writer: Mutex::new(()),
            group,
        }
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
        let stored = {
            let _writer = self.lock_writer();
            self.tree
                .compare_and_swap(record.token_id.as_bytes(), None::<&[u8]>, Some(json))?
                .is_ok()
        };
        if stored {
            self.group.wait_durable(self.group.written(None))?;
        }
        Ok(stored)
    }

    /// The token record with this id, if any.
    ///
    /// # Errors
    /// Storage errors.
    pub fn get(&self, token_id: &str) -> Result<Option<TokenRecord>, HubError> {
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
        self.tree.iter().map(|item| from_json(&item?.1)).collect()
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
                (record, self.group.written(None))
            } else {
                // The record may have been written by another thread still
                // waiting for its sync: report it only once it is durable.
                (record, self.group.current())
            }
        };
        self.group.wait_durable(ticket)?;
        Ok(record)
    }
}
