//! Packed pushes (`PushRequest.packed`): what a device and the hub must
//! agree on to name a dictionary. Compressing and decompressing are theirs
//! (zstd), so this crate stays free of it.
//!
//! A packed push is compressed against the end of an earlier acknowledged
//! push of the same token: the last [`DICTIONARY_BYTES`] of its decompressed
//! bytes, named by their SHA-256. Both ends cut and hash the same bytes with
//! [`dictionary_of`] and [`dictionary_id`].

use sha2::{Digest as _, Sha256};

/// The bytes of an earlier push kept as the dictionary of the next: its
/// last 64 KiB, a few hundred events of the same station, worker and kinds.
pub const DICTIONARY_BYTES: usize = 64 * 1024;

/// The most a packed push may hold decompressed, the hub's limit for any
/// message.
pub const MAX_PACKED_BYTES: usize = 4 * 1024 * 1024;

/// The status message (FAILED_PRECONDITION) with which a hub refuses a
/// packed push whose dictionary it does not hold.
pub const UNKNOWN_DICTIONARY: &str = "unknown dictionary";

/// The dictionary a push's decompressed bytes leave for the next: their
/// last [`DICTIONARY_BYTES`].
pub fn dictionary_of(unpacked: &[u8]) -> &[u8] {
    &unpacked[unpacked.len().saturating_sub(DICTIONARY_BYTES)..]
}

/// The name of `dictionary` in `PushRequest.dictionary`: its SHA-256.
pub fn dictionary_id(dictionary: &[u8]) -> [u8; 32] {
    Sha256::digest(dictionary).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_tail_of_what_was_pushed() {
        let short = vec![7u8; 10];
        assert_eq!(dictionary_of(&short), &short[..]);
        let long: Vec<u8> = (0..DICTIONARY_BYTES + 5).map(|i| i as u8).collect();
        assert_eq!(dictionary_of(&long), &long[5..]);
        assert_ne!(dictionary_id(&long), dictionary_id(dictionary_of(&long)));
    }
}
