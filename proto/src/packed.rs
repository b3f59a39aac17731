//! Packed pushes (`PushRequest.packed`): what a device and the hub must
//! agree on to name a dictionary. Compressing and decompressing are theirs
//! (zstd), so this crate stays free of it.
//!
//! A packed push is compressed against the last [`DICTIONARY_BYTES`] its
//! token pushed before it, as far as acknowledged: the dictionary a push
//! leaves is the end of the dictionary it was packed with followed by its
//! own decompressed bytes ([`next_dictionary`]), named by its SHA-256
//! ([`dictionary_id`]). Both ends derive it from the same bytes, so a device
//! that names the dictionary its last acknowledged push left names one the
//! hub derived too.

use sha2::{Digest as _, Sha256};

/// The length of a dictionary: the last 256 KiB pushed, a few thousand
/// events of the same station, worker and kinds (and the cases they are
/// about), however small the batches.
pub const DICTIONARY_BYTES: usize = 256 * 1024;

/// The most a packed push may hold decompressed, the hub's limit for any
/// message.
pub const MAX_PACKED_BYTES: usize = 4 * 1024 * 1024;

/// The status message (FAILED_PRECONDITION) with which a hub refuses a
/// packed push whose dictionary it does not hold.
pub const UNKNOWN_DICTIONARY: &str = "unknown dictionary";

/// The dictionary a push leaves for the next: the last [`DICTIONARY_BYTES`]
/// of the `dictionary` it was packed with (none: nothing) followed by its
/// decompressed bytes.
pub fn next_dictionary(dictionary: Option<&[u8]>, unpacked: &[u8]) -> Vec<u8> {
    let own = &unpacked[unpacked.len().saturating_sub(DICTIONARY_BYTES)..];
    let before = dictionary.unwrap_or_default();
    let kept = &before[before.len().saturating_sub(DICTIONARY_BYTES - own.len())..];
    let mut next = Vec::with_capacity(kept.len() + own.len());
    next.extend_from_slice(kept);
    next.extend_from_slice(own);
    next
}

/// The name of `dictionary` in `PushRequest.dictionary`: its SHA-256.
pub fn dictionary_id(dictionary: &[u8]) -> [u8; 32] {
    Sha256::digest(dictionary).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dictionary_is_the_end_of_what_was_pushed_before() {
        assert_eq!(next_dictionary(None, b"abc"), b"abc");
        assert_eq!(next_dictionary(Some(b"xyz"), b"abc"), b"xyzabc");
        let long: Vec<u8> = (0..DICTIONARY_BYTES + 5).map(|i| i as u8).collect();
        assert_eq!(next_dictionary(Some(b"xyz"), &long), &long[5..]);
        let next = next_dictionary(Some(&long), b"abc");
        assert_eq!(next.len(), DICTIONARY_BYTES);
        assert_eq!(&next[..DICTIONARY_BYTES - 3], &long[8..]);
        assert_eq!(&next[DICTIONARY_BYTES - 3..], b"abc");
        assert_ne!(dictionary_id(&long), dictionary_id(&next));
    }
}
