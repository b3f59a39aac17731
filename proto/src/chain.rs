//! Signed logs: the canonical bytes of an event, each origin's hash chain,
//! and the signed head a device sends with each push. The agent, the hub and
//! any other holder of a station's events compute them with these functions
//! only; `proto/station/v1/sync.proto` states the same rules for clients in
//! other languages.
//!
//! - **Canonical bytes** of an event: its protobuf encoding as prost writes
//!   it: fields in field-number order, fields at their default value left
//!   out, no unknown fields (see [`canonical_bytes`]).
//! - **Chain**: `chain_0 = SHA-256("station.v1 chain 0" ‖ origin_id)` (the
//!   18 ASCII bytes, then the 16 bytes of the origin id), and
//!   `chain_n = SHA-256(chain_{n−1} ‖ canonical bytes of the event at
//!   origin_seq n)`: it covers every seq of the origin, from 1, without a gap.
//! - **Signed head**: an Ed25519 signature (RFC 8032, verified strictly) by
//!   the origin's device key over `"station.v1 head" ‖ origin_id (16 bytes)
//!   ‖ last_seq (8 bytes, big-endian) ‖ chain_last (32 bytes)`.
//!
//! Invariants: a [`Chain`] only moves forward one seq at a time, so the head
//! it holds is always `chain_seq` of the events it was given; nothing here
//! reads a clock or draws randomness (keys are made by the device).

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use prost::Message as _;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::Event;

/// A SHA-256 digest: a link of a chain.
pub type Digest = [u8; 32];

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_BYTES: usize = 32;
/// Length of an Ed25519 secret key (its seed).
pub const SECRET_KEY_BYTES: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;

/// What `chain_0` hashes before the origin id.
pub const CHAIN_0_PREFIX: &[u8] = b"station.v1 chain 0";
/// What a signed head's message starts with.
pub const HEAD_PREFIX: &[u8] = b"station.v1 head";

/// Why a chain or a signature does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// An event of another origin, or not the next seq.
    #[error(
        "origin {origin}: the chain is at seq {at}, and event {got_origin} seq {got} does not follow it"
    )]
    OutOfOrder {
        /// The chain's origin.
        origin: Uuid,
        /// The last seq the chain covers.
        at: u64,
        /// The event's origin.
        got_origin: String,
        /// The event's seq.
        got: u64,
    },
    /// A public key that is not 32 bytes of a valid Ed25519 point.
    #[error("the device key is not an Ed25519 public key")]
    BadKey,
    /// A signature that is not 64 bytes.
    #[error("a signature must be {SIGNATURE_BYTES} bytes, got {0}")]
    BadSignatureLength(usize),
    /// The signature does not verify: the events or the head are not what
    /// the device signed.
    #[error("origin {origin}: the signature through seq {last_seq} does not verify")]
    Forged {
        /// The origin.
        origin: Uuid,
        /// The seq the head claims.
        last_seq: u64,
    },
}

/// The canonical bytes of `event`: its protobuf encoding, fields in number
/// order, defaults left out, no unknown fields.
pub fn canonical_bytes(event: &Event) -> Vec<u8> {
    event.encode_to_vec()
}

/// `chain_0` of `origin`: `SHA-256("station.v1 chain 0" ‖ origin_id)`.
pub fn chain_0(origin: Uuid) -> Digest {
    let mut hash = Sha256::new();
    hash.update(CHAIN_0_PREFIX);
    hash.update(origin.as_bytes());
    hash.finalize().into()
}

/// `chain_n` from `chain_{n−1}` and the canonical bytes of event `n`.
pub fn link(previous: &Digest, canonical: &[u8]) -> Digest {
    let mut hash = Sha256::new();
    hash.update(previous);
    hash.update(canonical);
    hash.finalize().into()
}

/// One origin's chain, as far as it has been computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    /// The origin whose events it covers.
    origin: Uuid,
    /// The last seq covered, 0 at the start.
    seq: u64,
    /// `chain_seq`.
    head: Digest,
}

impl Chain {
    /// The chain of `origin` before its first event: `chain_0`.
    pub fn start(origin: Uuid) -> Self {
        Self {
            origin,
            seq: 0,
            head: chain_0(origin),
        }
    }

    /// The chain of `origin` resumed at `seq`, whose link is `head`.
    pub fn resume(origin: Uuid, seq: u64, head: Digest) -> Self {
        Self { origin, seq, head }
    }

    /// The origin.
    pub fn origin(&self) -> Uuid {
        self.origin
    }

    /// The last seq covered.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// `chain_seq`.
    pub fn head(&self) -> Digest {
        self.head
    }

    /// Extends the chain by the event at the next seq, given by its seq and
    /// canonical bytes (the caller vouches they are of this origin).
    ///
    /// # Errors
    /// [`ChainError::OutOfOrder`] when `seq` is not the next one.
    pub fn push_bytes(&mut self, seq: u64, canonical: &[u8]) -> Result<Digest, ChainError> {
        if seq != self.seq + 1 {
            return Err(ChainError::OutOfOrder {
                origin: self.origin,
                at: self.seq,
                got_origin: self.origin.to_string(),
                got: seq,
            });
        }
        self.head = link(&self.head, canonical);
        self.seq = seq;
        Ok(self.head)
    }

    /// Extends the chain by `event`, which must be of this origin at the
    /// next seq.
    ///
    /// # Errors
    /// [`ChainError::OutOfOrder`] otherwise.
    pub fn push(&mut self, event: &Event) -> Result<Digest, ChainError> {
        if event.origin_id != self.origin.as_bytes() {
            return Err(ChainError::OutOfOrder {
                origin: self.origin,
                at: self.seq,
                got_origin: Uuid::from_slice(&event.origin_id)
                    .map_or_else(|_| "(not a uuid)".to_string(), |u| u.to_string()),
                got: event.origin_seq,
            });
        }
        self.push_bytes(event.origin_seq, &canonical_bytes(event))
    }
}

/// The message a device signs for its head: `"station.v1 head" ‖ origin_id
/// ‖ last_seq (big-endian) ‖ chain_last`.
pub fn head_message(origin: Uuid, last_seq: u64, chain_last: &Digest) -> Vec<u8> {
    let mut message = Vec::with_capacity(HEAD_PREFIX.len() + 16 + 8 + 32);
    message.extend_from_slice(HEAD_PREFIX);
    message.extend_from_slice(origin.as_bytes());
    message.extend_from_slice(&last_seq.to_be_bytes());
    message.extend_from_slice(chain_last);
    message
}

/// The public key of the device key whose secret (seed) is `secret`.
pub fn public_key(secret: &[u8; SECRET_KEY_BYTES]) -> [u8; PUBLIC_KEY_BYTES] {
    SigningKey::from_bytes(secret).verifying_key().to_bytes()
}

/// The signature of the head `(origin, last_seq, chain_last)` by the device
/// key whose secret is `secret`.
pub fn sign_head(
    secret: &[u8; SECRET_KEY_BYTES],
    origin: Uuid,
    last_seq: u64,
    chain_last: &Digest,
) -> [u8; SIGNATURE_BYTES] {
    SigningKey::from_bytes(secret)
        .sign(&head_message(origin, last_seq, chain_last))
        .to_bytes()
}

/// Checks that `public_key` is an Ed25519 public key.
///
/// # Errors
/// [`ChainError::BadKey`].
pub fn check_public_key(public_key: &[u8]) -> Result<(), ChainError> {
    verifying_key(public_key).map(|_| ())
}

fn verifying_key(public_key: &[u8]) -> Result<VerifyingKey, ChainError> {
    let bytes = <[u8; PUBLIC_KEY_BYTES]>::try_from(public_key).map_err(|_| ChainError::BadKey)?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| ChainError::BadKey)?;
    if key.is_weak() {
        return Err(ChainError::BadKey);
    }
    Ok(key)
}

/// Verifies `signature` of the head `(origin, last_seq, chain_last)` under
/// `public_key`, strictly.
///
/// # Errors
/// [`ChainError::BadKey`], [`ChainError::BadSignatureLength`], or
/// [`ChainError::Forged`] when it does not verify.
pub fn verify_head(
    public_key: &[u8],
    origin: Uuid,
    last_seq: u64,
    chain_last: &Digest,
    signature: &[u8],
) -> Result<(), ChainError> {
    let key = verifying_key(public_key)?;
    let signature = <[u8; SIGNATURE_BYTES]>::try_from(signature)
        .map_err(|_| ChainError::BadSignatureLength(signature.len()))?;
    key.verify_strict(
        &head_message(origin, last_seq, chain_last),
        &Signature::from_bytes(&signature),
    )
    .map_err(|_| ChainError::Forged { origin, last_seq })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn event(origin: Uuid, seq: u64) -> Event {
        Event {
            event_id: Uuid::from_u128(u128::from(seq)).as_bytes().to_vec(),
            origin_id: origin.as_bytes().to_vec(),
            origin_seq: seq,
            station_code: "540502001".into(),
            ..Event::default()
        }
    }

    #[test]
    fn the_chain_is_the_documented_hash() {
        let origin = Uuid::from_u128(7);
        let mut expected = Sha256::new();
        expected.update(b"station.v1 chain 0");
        expected.update(origin.as_bytes());
        let chain_0: Digest = expected.finalize().into();
        assert_eq!(Chain::start(origin).head(), chain_0);
        let first = event(origin, 1);
        let mut chain = Chain::start(origin);
        let head = chain.push(&first).unwrap();
        let mut expected = Sha256::new();
        expected.update(chain_0);
        expected.update(first.encode_to_vec());
        assert_eq!(head, <Digest>::from(expected.finalize()));
        assert_eq!(chain.seq(), 1);
    }

    #[test]
    fn a_chain_refuses_a_gap_a_repeat_and_another_origin() {
        let origin = Uuid::from_u128(7);
        let mut chain = Chain::start(origin);
        assert!(chain.push(&event(origin, 2)).is_err());
        chain.push(&event(origin, 1)).unwrap();
        assert!(chain.push(&event(origin, 1)).is_err());
        assert!(chain.push(&event(Uuid::from_u128(8), 2)).is_err());
        assert_eq!(chain.seq(), 1);
    }

    #[test]
    fn a_signed_head_verifies_and_nothing_else_does() {
        let secret = [42u8; SECRET_KEY_BYTES];
        let key = public_key(&secret);
        let origin = Uuid::from_u128(7);
        let mut chain = Chain::start(origin);
        chain.push(&event(origin, 1)).unwrap();
        let head = chain.head();
        let signature = sign_head(&secret, origin, 1, &head);
        verify_head(&key, origin, 1, &head, &signature).unwrap();
        let forged = |r: Result<(), ChainError>| matches!(r, Err(ChainError::Forged { .. }));
        assert!(forged(verify_head(&key, origin, 2, &head, &signature)));
        assert!(forged(verify_head(
            &key,
            Uuid::from_u128(8),
            1,
            &head,
            &signature
        )));
        let mut other = head;
        other[0] ^= 1;
        assert!(forged(verify_head(&key, origin, 1, &other, &signature)));
        let other_key = public_key(&[1u8; SECRET_KEY_BYTES]);
        assert!(forged(verify_head(
            &other_key, origin, 1, &head, &signature
        )));
        assert_eq!(
            verify_head(&key, origin, 1, &head, &signature[1..]),
            Err(ChainError::BadSignatureLength(63))
        );
        assert_eq!(check_public_key(&key[1..]), Err(ChainError::BadKey));
    }
}
