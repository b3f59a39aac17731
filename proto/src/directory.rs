//! The district directory: which station holds an open file for a person,
//! told by a short keyed tag of the person's ID number, so that a phone can
//! see a duplicate across stations before it opens a file, offline, without
//! any ID number leaving the station that typed it.
//!
//! # The tag
//!
//! A directory tag is `HMAC-SHA256(directory key, normalised ID number)`
//! cut to [`DIRECTORY_TAG_BYTES`] (6 bytes, 48 bits). The directory key is
//! derived by the hub from its district secret ([`DIRECTORY_KEY_PURPOSE`])
//! and handed to the district's enrolled devices; it is unrelated to the
//! keys of the hub's and the phones' own person indexes.
//!
//! Why 48 bits. The ID numbers that can occur in the region are few: one
//! region code, a birth date within about a century (≈ 2¹⁵·² days), a
//! three-digit serial (≈ 2¹⁰); the check character follows. About 2²⁵
//! numbers in all.
//! - Without the key a stolen directory tells nothing: HMAC is a
//!   pseudo-random function, so a tag is indistinguishable from random bits
//!   to whoever lacks the 256-bit key; trying numbers is impossible without
//!   it, and guessing the key costs 2²⁵⁶.
//! - With the key (a stolen, unlocked phone) the directory can be reversed
//!   by enumeration: 2²⁵ HMACs take seconds, and a 48-bit tag leaves on
//!   average 2²⁵⁻⁴⁸ ≈ 10⁻⁷ wrong candidates per entry. No truncation could
//!   prevent that and still serve the check: to leave `k` candidates per
//!   tag the tag must be at most `25 − log₂ k` bits, and then a new person
//!   would falsely match one of 100,000 open files with a chance of about
//!   `k × 0.3 %` at every opening. The key is the protection (phones keep
//!   it in their sealed store, as they keep the people's files themselves,
//!   and a revoked device's wipe destroys it); the truncation only saves
//!   bytes.
//! - False matches: with `N` open files in the district, a person not among
//!   them matches one by chance with probability `N / 2⁴⁸`: for 100,000
//!   open files 3.6 × 10⁻¹⁰ per opening, about one false warning in three
//!   thousand years of a million openings a year. Any two of the 100,000
//!   files share a tag with a chance of 100,000² / 2⁴⁹ ≈ 1.8 × 10⁻⁵.
//!
//! # Possible duplicates: the weaker tag
//!
//! People without an ID number (children without a card, elders) are found
//! by a second kind of line: the same 6-byte truncation of
//! [`TagKey::weak_tag`] under the same directory key, of the person's
//! normalised name ([`crate::person::normalise_name`]), birth date and
//! gender. Every open file has one, with or without an ID number; a file
//! with an ID number has both. The weak message begins with a byte no ID
//! number has, so the two kinds are domain-separated: a line of one kind
//! matches a tag of the other only by chance, as any two random tags do,
//! and the lines need not say their kind. A weak match is shown as a
//! *possible* duplicate only: two people may share a name, a birth date and
//! a gender.
//!
//! Why 48 bits here too. Names are far more numerous than ID numbers, but
//! the names a district's people bear are fewer than it seems: say 2¹⁴
//! frequent names, a century of birth dates (2¹⁵·²), two genders — some
//! 2³⁰ candidates. Without the key the tag says nothing, as above. With the
//! key, enumeration recovers frequent names in minutes whatever the
//! truncation, and a 48-bit tag leaves about 2³⁰⁻⁴⁸ ≈ 4 × 10⁻⁶ wrong
//! candidates per line, so again the key is the protection and the
//! truncation only saves bytes; cutting to, say, 32 bits would leave a
//! handful of candidates per line and give a false *possible duplicate* at
//! one opening in 43,000 over 100,000 open files, for no real protection.
//! False weak matches by the tag itself are as rare as the ID tags' (`N /
//! 2⁴⁸` per opening); the true namesakes the check reports are the point.
//!
//! # The delta
//!
//! The hub keeps, for each (tag, station) that ever held an open file, its
//! state (present or not) and the position in the directory's feed of its
//! last change. A device holds a copy and a cursor; a pull hands it every
//! entry whose state changed after its cursor, each with its state now, so
//! applying a page is idempotent and a device that pulled everything holds
//! exactly the hub's directory. A feed belongs to one epoch of the hub's
//! projections: when they are rebuilt, the epoch changes and a device whose
//! epoch differs is told to drop its copy and pull it whole again.
//!
//! Invariants: pure (no I/O, no clock); the same key and number, however
//! typed, give the same tag ([`crate::person::TagKey::tag`] normalises).

use crate::person::{TAG_BYTES, TagKey};

/// Length of a directory tag.
pub const DIRECTORY_TAG_BYTES: usize = 6;

/// The purpose the directory key is derived for from the district secret.
pub const DIRECTORY_KEY_PURPOSE: &str = "station.v1 district directory";

/// A directory tag: the truncated keyed tag of an ID number.
pub type DirectoryTag = [u8; DIRECTORY_TAG_BYTES];

// A directory tag is a prefix of a person tag.
const _: () = assert!(DIRECTORY_TAG_BYTES <= TAG_BYTES);

/// The directory tag of `id_number` under the directory key `key`.
pub fn tag(key: &TagKey, id_number: &str) -> DirectoryTag {
    let full = key.tag(id_number);
    let mut tag = [0u8; DIRECTORY_TAG_BYTES];
    tag.copy_from_slice(&full[..DIRECTORY_TAG_BYTES]);
    tag
}

/// The weak directory tag of a person ([`TagKey::weak_tag`], truncated):
/// of the normalised name, the birth date (`YYYY-MM-DD`) and the gender
/// (the `station.v1.Gender` number).
pub fn weak_tag(key: &TagKey, name: &str, birth_date: &str, gender: i32) -> DirectoryTag {
    let full = key.weak_tag(name, birth_date, gender);
    let mut tag = [0u8; DIRECTORY_TAG_BYTES];
    tag.copy_from_slice(&full[..DIRECTORY_TAG_BYTES]);
    tag
}

/// The directory tags of a validated opening: of its ID number, when it
/// has one, then its weak tag.
pub fn tags_of(key: &TagKey, opened: &crate::v1::CaseOpened) -> Vec<DirectoryTag> {
    let mut tags = Vec::with_capacity(2);
    if !opened.id_number.trim().is_empty() {
        tags.push(tag(key, &opened.id_number));
    }
    tags.push(weak_tag(
        key,
        &opened.name,
        &opened.birth_date,
        opened.gender,
    ));
    tags
}

/// The directory key of a district, from its secret.
pub fn key_from_secret(secret: &TagKey) -> TagKey {
    secret.derive_key(DIRECTORY_KEY_PURPOSE)
}

/// A directory tag from the bytes of the wire, when they have its length.
pub fn tag_from_slice(bytes: &[u8]) -> Option<DirectoryTag> {
    DirectoryTag::try_from(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_typed_differently_has_one_directory_tag_under_one_key() {
        let secret = TagKey::from_bytes([7; 32]);
        let key = key_from_secret(&secret);
        let tag = tag(&key, "11010519491231002X");
        assert_eq!(tag, super::tag(&key, " 11010519491231002x"));
        assert_ne!(tag, super::tag(&key, "110105194912310038"));
        assert_ne!(
            tag,
            super::tag(&secret.derive_key("other"), "11010519491231002X")
        );
        assert_eq!(tag_from_slice(&tag), Some(tag));
        assert_eq!(tag_from_slice(&tag[..5]), None);
    }

    #[test]
    fn an_opening_has_a_weak_tag_and_an_id_tag_when_it_has_a_number() {
        let key = key_from_secret(&TagKey::from_bytes([7; 32]));
        let mut opened = crate::v1::CaseOpened {
            name: "卓玛".into(),
            id_number: "11010519491231002X".into(),
            gender: 2,
            birth_date: "1949-12-31".into(),
            ..Default::default()
        };
        let weak = weak_tag(&key, "卓 玛", "1949-12-31", 2);
        assert_eq!(
            tags_of(&key, &opened),
            vec![tag(&key, "11010519491231002X"), weak]
        );
        opened.id_number.clear();
        assert_eq!(tags_of(&key, &opened), vec![weak]);
        assert_ne!(weak, weak_tag(&key, "卓玛", "1949-12-30", 2));
    }
}
