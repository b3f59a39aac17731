//! Keyed tags of people's ID numbers: how an index finds the files of a
//! person without holding the person's ID number.
//!
//! A tag is `HMAC-SHA256(key, normalised ID number)` cut to [`TAG_BYTES`]
//! bytes. Without the key a tag says nothing about the number: ID numbers
//! are few enough (a region, a birth date, a serial: well under 2⁴⁰ for a
//! district) that an unkeyed hash could be reversed by trying them all, so
//! the key, not the hash, is what protects them. The 16 bytes kept make two
//! different numbers share a tag with a chance of about 2⁻¹²⁸ per pair,
//! which no station or district comes near.
//!
//! Invariants: pure (no I/O, no clock, no randomness: keys come in as
//! arguments); the same key and the same number, however it was typed
//! (spaces around it, a lower-case `x`), give the same tag; a key's bytes
//! never show in `Debug` output.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::id_number;

/// Length of a tag.
pub const TAG_BYTES: usize = 16;

/// A keyed tag of an ID number.
pub type PersonTag = [u8; TAG_BYTES];

/// The secret key tags are made under.
#[derive(Clone, PartialEq, Eq)]
pub struct TagKey([u8; 32]);

impl std::fmt::Debug for TagKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TagKey(..)")
    }
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

impl TagKey {
    /// A key of these bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key for one `purpose`, derived from a longer-lived secret:
    /// `HMAC-SHA256(secret, purpose)`, so that the secret itself is never
    /// used as a tag key and keys of different purposes are unrelated.
    pub fn derive(secret: &[u8], purpose: &str) -> Self {
        Self(hmac(secret, purpose.as_bytes()))
    }

    /// A key for one `purpose`, derived from this one as [`TagKey::derive`]
    /// derives it from a secret.
    pub fn derive_key(&self, purpose: &str) -> Self {
        Self::derive(&self.0, purpose)
    }

    /// The key's bytes, to hand the key to who may hold it (a device of
    /// the district, over an authenticated channel): a secret, never to be
    /// logged or shown.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0
    }

    /// The tag of `id_number` under this key, of its normalised form.
    pub fn tag(&self, id_number: &str) -> PersonTag {
        let full = hmac(&self.0, id_number::normalise(id_number).as_bytes());
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&full[..TAG_BYTES]);
        tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_typed_differently_has_one_tag_and_keys_make_tags_differ() {
        let key = TagKey::derive(b"secret of one store", "person index");
        let other = TagKey::derive(b"secret of one store", "district directory");
        let tag = key.tag("11010519491231002X");
        assert_eq!(tag, key.tag(" 11010519491231002x "));
        assert_ne!(tag, key.tag("110105194912310038"));
        assert_ne!(tag, other.tag("11010519491231002X"));
        assert_eq!(format!("{key:?}"), "TagKey(..)");
    }
}
