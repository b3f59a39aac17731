//! Packed pushes (`PushRequest.packed`, see `sync.proto`): unpacking them,
//! and the dictionaries they are packed against.
//!
//! Each token's last few acknowledged packed pushes leave a dictionary (the
//! end of what the token pushed, [`station_proto::packed`]) that its next
//! pushes may name. They are kept in memory only: a hub that restarted, or
//! dropped a token's dictionaries to stay within its bounds, refuses a push
//! that names one with FAILED_PRECONDITION, "unknown dictionary", and the
//! device sends the batch again without it. Nothing is stored from a push
//! that cannot be unpacked.
//!
//! Bounds: [`PER_TOKEN`] dictionaries per token, [`MAX_TOKENS`] tokens (the
//! one unused longest is dropped first), so at most 256 KiB × 4 × 128 =
//! 128 MiB ([`station_proto::packed::DICTIONARY_BYTES`]); a packed push decompresses to at most
//! [`MAX_PACKED_BYTES`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use prost::Message as _;
use station_proto::packed::{MAX_PACKED_BYTES, UNKNOWN_DICTIONARY, dictionary_id, next_dictionary};
use station_proto::v1::PushRequest;
use tonic::Status;

/// Dictionaries kept per token: more than the pushes a device has in flight,
/// so that the one it last saw acknowledged is still held when it names it.
pub const PER_TOKEN: usize = 4;
/// Tokens whose dictionaries are kept: more than the devices of a district
/// that push over a slow link at the same time.
pub const MAX_TOKENS: usize = 128;

/// One token's dictionaries, newest last.
#[derive(Debug, Default)]
struct Kept {
    dictionaries: VecDeque<([u8; 32], Arc<[u8]>)>,
    /// When they were last used or added, in [`Dictionaries::tick`]s.
    used: u64,
}

/// The dictionaries of packed pushes, per token.
#[derive(Debug, Default)]
pub struct Dictionaries {
    kept: Mutex<(u64, HashMap<String, Kept>)>,
}

impl Dictionaries {
    /// The dictionary `id` of `token`, if held.
    fn find(&self, token: &str, id: &[u8]) -> Option<Arc<[u8]>> {
        let mut guard = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let (tick, kept) = &mut *guard;
        *tick += 1;
        let entry = kept.get_mut(token)?;
        entry.used = *tick;
        entry
            .dictionaries
            .iter()
            .find(|(held, _)| held[..] == *id)
            .map(|(_, dictionary)| Arc::clone(dictionary))
    }

    /// Keeps `dictionary`, left by a push of `token` just acknowledged
    /// ([`Dictionaries::unpack`]), for its next pushes to name.
    pub fn remember(&self, token: &str, dictionary: Vec<u8>) {
        let dictionary: Arc<[u8]> = Arc::from(dictionary);
        let id = dictionary_id(&dictionary);
        let mut guard = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let (tick, kept) = &mut *guard;
        *tick += 1;
        if !kept.contains_key(token) && kept.len() >= MAX_TOKENS {
            let oldest = kept
                .iter()
                .min_by_key(|(_, entry)| entry.used)
                .map(|(token, _)| token.clone());
            if let Some(oldest) = oldest {
                kept.remove(&oldest);
            }
        }
        let entry = kept.entry(token.to_string()).or_default();
        entry.used = *tick;
        if entry.dictionaries.iter().any(|(held, _)| *held == id) {
            return;
        }
        if entry.dictionaries.len() >= PER_TOKEN {
            entry.dictionaries.pop_front();
        }
        entry.dictionaries.push_back((id, dictionary));
    }

    /// The push `packed` holds, decompressed with the dictionary `dictionary`
    /// names (none when empty), and the dictionary it leaves once
    /// acknowledged.
    ///
    /// # Errors
    /// FAILED_PRECONDITION for a dictionary not held; INVALID_ARGUMENT for
    /// bytes that do not decompress within [`MAX_PACKED_BYTES`], or to a
    /// push, or to one that is itself packed.
    pub fn unpack(
        &self,
        token: &str,
        packed: &[u8],
        dictionary: &[u8],
    ) -> Result<(PushRequest, Vec<u8>), Status> {
        let held = if dictionary.is_empty() {
            None
        } else {
            if dictionary.len() != 32 {
                return Err(Status::invalid_argument(format!(
                    "dictionary: a SHA-256 of 32 bytes, got {} bytes",
                    dictionary.len()
                )));
            }
            Some(self.find(token, dictionary).ok_or_else(|| {
                Status::failed_precondition(format!(
                    "{UNKNOWN_DICTIONARY}: this hub does not hold the dictionary the push was \
                     packed with (it restarted, or keeps only the last {PER_TOKEN} of a token); \
                     send the batch without one"
                ))
            })?)
        };
        let unpacked = decompress(packed, held.as_deref())?;
        let push = PushRequest::decode(unpacked.as_slice()).map_err(|e| {
            Status::invalid_argument(format!("packed: not a push once decompressed: {e}"))
        })?;
        if !push.packed.is_empty() || !push.dictionary.is_empty() {
            return Err(Status::invalid_argument(
                "packed: a packed push may not hold another packed push",
            ));
        }
        Ok((push, next_dictionary(held.as_deref(), &unpacked)))
    }
}

/// `packed` decompressed (with `dictionary`), refused past
/// [`MAX_PACKED_BYTES`].
fn decompress(packed: &[u8], dictionary: Option<&[u8]>) -> Result<Vec<u8>, Status> {
    let refused = |e: std::io::Error| {
        Status::invalid_argument(format!(
            "packed: not one zstd frame of at most {MAX_PACKED_BYTES} bytes \
             decompressed with the dictionary named: {e}"
        ))
    };
    let mut decompressor = match dictionary {
        Some(dictionary) => zstd::bulk::Decompressor::with_dictionary(dictionary),
        None => zstd::bulk::Decompressor::new(),
    }
    .map_err(refused)?;
    // The hub's own window limit, whatever the frame asks for.
    decompressor.window_log_max(24).map_err(refused)?;
    decompressor
        .decompress(packed, MAX_PACKED_BYTES)
        .map_err(refused)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pack(push: &PushRequest, dictionary: Option<&[u8]>) -> Vec<u8> {
        let raw = push.encode_to_vec();
        match dictionary {
            Some(d) => zstd::bulk::Compressor::with_dictionary(3, d)
                .unwrap()
                .compress(&raw)
                .unwrap(),
            None => zstd::bulk::compress(&raw, 3).unwrap(),
        }
    }

    fn push_of(n: usize) -> PushRequest {
        PushRequest {
            heads: vec![station_proto::v1::SignedHead {
                origin_id: vec![1; 16],
                last_seq: n as u64,
                signature: vec![n as u8; 64],
                public_key: Vec::new(),
            }],
            ..PushRequest::default()
        }
    }

    #[test]
    fn a_push_packed_against_an_acknowledged_one_unpacks() {
        let kept = Dictionaries::default();
        let first = push_of(1);
        let (unpacked, left) = kept.unpack("t1", &pack(&first, None), &[]).unwrap();
        assert_eq!(unpacked, first);
        assert_eq!(left, first.encode_to_vec());
        kept.remember("t1", left.clone());
        let second = push_of(2);
        let id = dictionary_id(&left);
        let packed = pack(&second, Some(&left));
        let (unpacked, next) = kept.unpack("t1", &packed, &id).unwrap();
        assert_eq!(unpacked, second);
        assert_eq!(next, [left.clone(), second.encode_to_vec()].concat());
        // Another token does not see it.
        let refused = kept.unpack("t2", &packed, &id).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert!(refused.message().starts_with(UNKNOWN_DICTIONARY));
    }

    #[test]
    fn a_token_keeps_its_last_few_and_the_hub_its_most_recent_tokens() {
        let kept = Dictionaries::default();
        let raws: Vec<Vec<u8>> = (0..=PER_TOKEN)
            .map(|n| push_of(n).encode_to_vec())
            .collect();
        for raw in &raws {
            kept.remember("t", raw.clone());
        }
        assert!(kept.find("t", &dictionary_id(&raws[0])).is_none());
        assert!(kept.find("t", &dictionary_id(&raws[1])).is_some());
        for n in 0..MAX_TOKENS {
            kept.remember(&format!("other-{n}"), raws[0].clone());
        }
        assert!(
            kept.find("t", &dictionary_id(&raws[1])).is_none(),
            "unused longest"
        );
        assert!(kept.find("other-1", &dictionary_id(&raws[0])).is_some());
    }

    #[test]
    fn what_does_not_unpack_is_refused_as_invalid() {
        let kept = Dictionaries::default();
        for (packed, dictionary) in [
            (b"not zstd".to_vec(), Vec::new()),
            (
                zstd::bulk::compress(b"\xff\xff\xff", 3).unwrap(),
                Vec::new(),
            ),
            (pack(&push_of(1), None), vec![1; 5]),
        ] {
            let refused = kept.unpack("t", &packed, &dictionary).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
        }
        // A bomb: more than the limit once decompressed.
        let bomb = zstd::bulk::compress(&vec![0u8; MAX_PACKED_BYTES + 1], 3).unwrap();
        assert!(bomb.len() < 4096);
        let refused = kept.unpack("t", &bomb, &[]).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        // Nested.
        let nested = PushRequest {
            packed: vec![1],
            ..PushRequest::default()
        };
        let refused = kept.unpack("t", &pack(&nested, None), &[]).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    }
}
