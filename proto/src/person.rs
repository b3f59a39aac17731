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

/// The name of a person as the weaker check compares it: Unicode NFKC
/// (full-width letters and compatibility forms as their plain ones), every
/// whitespace character removed, lower-cased (Unicode's default case
/// mapping), and the separators people write between the parts of a name
/// or leave out removed: middle dots (`·` U+00B7, `・` U+30FB, `‧` U+2027,
/// `•` U+2022, `∙` U+2219, `⋅` U+22C5, and `.` as typed for them), hyphens
/// (`-`, `‐` U+2010, `‑` U+2011) and the Tibetan syllable marks (tsheg `་`
/// U+0F0B, non-breaking tsheg `༌` U+0F0C, shad `།` U+0F0D, `༎` U+0F0E). So
/// `扎西·次仁`, `扎西 次仁` and `扎西.次仁` are one name, as are
/// `བཀྲ་ཤིས་` and `བཀྲ་ཤིས`, and `Tashi Tsering` and `tashi-tsering`.
pub fn normalise_name(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    const SEPARATORS: &[char] = &[
        '\u{00B7}', '\u{30FB}', '\u{2027}', '\u{2022}', '\u{2219}', '\u{22C5}', '.', '-',
        '\u{2010}', '\u{2011}', '\u{0F0B}', '\u{0F0C}', '\u{0F0D}', '\u{0F0E}',
    ];
    name.nfkc()
        .filter(|c| !c.is_whitespace() && !SEPARATORS.contains(c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// What the weaker check compares, as the message of its tag: a prefix no
/// ID number begins with (`0x00`, then the purpose), then the normalised
/// name, the birth date and the gender's number, each ended by `0x00`.
/// The tag of an ID number is the MAC of 18 ASCII digits or `X`, so under
/// one key the two kinds of tag are MACs of messages that never coincide:
/// domain-separated, and a tag of one kind never matches one of the other
/// except as two random values do.
fn weak_message(name: &str, birth_date: &str, gender: i32) -> Vec<u8> {
    let mut message = b"\x00station.v1 name birth gender\x00".to_vec();
    message.extend_from_slice(normalise_name(name).as_bytes());
    message.push(0);
    message.extend_from_slice(birth_date.trim().as_bytes());
    message.push(0);
    message.extend_from_slice(gender.to_string().as_bytes());
    message.push(0);
    message
}

impl TagKey {
    /// The weaker tag of a person: of the [`normalise_name`] of `name`, the
    /// birth date (`YYYY-MM-DD`) and the gender (the `station.v1.Gender`
    /// number), for people with or without an ID number. Two people with
    /// one name, birth date and gender share it: it tells a *possible*
    /// duplicate, never the same person for sure.
    pub fn weak_tag(&self, name: &str, birth_date: &str, gender: i32) -> PersonTag {
        let full = hmac(&self.0, &weak_message(name, birth_date, gender));
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

    #[test]
    fn names_written_differently_have_one_weak_tag_and_other_fields_tell_apart() {
        let key = TagKey::derive(b"secret of one district", "directory");
        let tag = key.weak_tag("扎西·次仁", "2019-06-01", 1);
        for same in ["扎西 次仁", "扎西.次仁", " 扎西・次仁 ", "扎西\u{3000}次仁"]
        {
            assert_eq!(key.weak_tag(same, "2019-06-01", 1), tag, "{same}");
        }
        assert_ne!(key.weak_tag("扎西次仁", "2019-06-02", 1), tag);
        assert_ne!(key.weak_tag("扎西次仁", "2019-06-01", 2), tag);
        assert_ne!(key.weak_tag("扎西次", "2019-06-01", 1), tag);
        assert_eq!(
            key.weak_tag("བཀྲ་ཤིས་", "2019-06-01", 1),
            key.weak_tag("བཀྲ་ཤིས", "2019-06-01", 1)
        );
        assert_eq!(
            key.weak_tag("Ｔａｓｈｉ Tsering", "1950-01-01", 1),
            key.weak_tag("tashi-tsering", "1950-01-01", 1)
        );
        assert_eq!(normalise_name("ＡＢ·c d"), "abcd");
        // Domain separation: no ID number's tag is a weak tag.
        assert_ne!(key.weak_tag("", "", 0), key.tag(""));
    }
}
