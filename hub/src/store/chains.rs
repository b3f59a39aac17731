//! Every origin's hash chain recomputed from what the store holds, in one
//! scan of the log: for `station-hub verify` (every chain and every signed
//! head checked offline) and for a store written before the hub kept chains
//! (each origin's `chain_{durable_through}` filled in when it opens).
//!
//! An origin's seqs are held in the log (in hub order, which is seq order
//! within an origin) or in quarantine (as received); the walk merges both,
//! so a chain covers every seq from 1. Invariant: nothing here writes,
//! except [`fill_missing`], which only sets a chain head that is absent.

use std::collections::BTreeMap;

use station_proto::chain::{self, Chain, Digest};
use station_proto::ids::Uuid;

use super::{HubError, HubStore, OriginBinding, OriginState, StoredHead};

/// One origin's chain as recomputed, with the links at its signed heads.
#[derive(Debug, Clone)]
pub struct Walk {
    /// The chain through the last seq seen, unless broken.
    chain: Chain,
    /// The first seq at which the held events stop following each other.
    broken: Option<(u64, String)>,
    /// `chain_seq` at each seq a stored head names.
    at_heads: BTreeMap<u64, Digest>,
}

impl Walk {
    fn new(origin: Uuid, heads: &[StoredHead]) -> Self {
        Self {
            chain: Chain::start(origin),
            broken: None,
            at_heads: heads.iter().map(|h| (h.last_seq, [0; 32])).collect(),
        }
    }

    fn push(&mut self, seq: u64, canonical: &[u8]) {
        if self.broken.is_some() {
            return;
        }
        match self.chain.push_bytes(seq, canonical) {
            Ok(link) => {
                if let Some(slot) = self.at_heads.get_mut(&seq) {
                    *slot = link;
                }
            }
            Err(_) => {
                let expected = self.chain.seq() + 1;
                self.broken = Some((
                    expected,
                    format!("seq {expected} is missing or held twice (found seq {seq})"),
                ));
            }
        }
    }
}

/// What `verify` found for one origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every seq `1..=through` is held, the chain matches the stored head,
    /// and every signed head verifies; `signed_from` is the first seq
    /// verified signed on arrival (`None`: an origin without a device key).
    Verified {
        /// The last seq held.
        through: u64,
        /// The first seq signed, when any.
        signed_from: Option<u64>,
        /// The last seq a verified signature covers, when any.
        signed_through: Option<u64>,
    },
    /// The first break: seqs up to `verified_through` check, the break is
    /// at or before `at`.
    Broken {
        /// The last seq covered by a signature (or chain) that checks.
        verified_through: u64,
        /// The seq at which the check fails.
        at: u64,
        /// What is wrong.
        reason: String,
    },
}

/// The chain of every origin the store holds events of, recomputed from
/// its log and quarantine.
///
/// # Errors
/// Storage errors, or an event that does not decode.
pub fn walk(
    store: &HubStore,
    origins: &[(Uuid, OriginState)],
) -> Result<BTreeMap<Uuid, Walk>, HubError> {
    let mut walks: BTreeMap<Uuid, Walk> = BTreeMap::new();
    for (origin, _) in origins {
        walks.insert(*origin, Walk::new(*origin, &store.signed_heads(*origin)?));
    }
    let mut quarantined: BTreeMap<Uuid, std::collections::VecDeque<(u64, Vec<u8>)>> =
        BTreeMap::new();
    for (origin, q) in store.quarantine()? {
        quarantined
            .entry(origin)
            .or_default()
            .push_back((q.origin_seq, q.event));
    }
    for logged in store.scan_after(0) {
        let logged = logged?;
        let origin = Uuid::from_slice(&logged.event.origin_id)
            .map_err(|_| HubError::Corrupt(format!("event {}: origin id", logged.hub_seq)))?;
        let seq = logged.event.origin_seq;
        let walk = walks
            .entry(origin)
            .or_insert_with(|| Walk::new(origin, &[]));
        if let Some(queue) = quarantined.get_mut(&origin) {
            while queue.front().is_some_and(|(q, _)| *q < seq) {
                if let Some((q, raw)) = queue.pop_front() {
                    walk.push(q, &raw);
                }
            }
        }
        walk.push(seq, &chain::canonical_bytes(&logged.event));
    }
    for (origin, queue) in quarantined {
        let walk = walks
            .entry(origin)
            .or_insert_with(|| Walk::new(origin, &[]));
        for (seq, raw) in queue {
            walk.push(seq, &raw);
        }
    }
    Ok(walks)
}

/// Checks one origin: its walk against its state, its binding's key and its
/// signed heads.
pub fn judge(
    origin: Uuid,
    state: &OriginState,
    binding: Option<&OriginBinding>,
    heads: &[StoredHead],
    walk: &Walk,
) -> Verdict {
    let mut verified_through = 0;
    let key = binding.and_then(|b| b.public_key.as_deref());
    for head in heads {
        if walk
            .broken
            .as_ref()
            .is_some_and(|(at, _)| *at <= head.last_seq)
        {
            break;
        }
        let Some(link) = walk.at_heads.get(&head.last_seq) else {
            break;
        };
        let Some(key) = key else {
            return Verdict::Broken {
                verified_through,
                at: head.last_seq,
                reason: "a signed head is stored, but no device key is bound".into(),
            };
        };
        if let Err(error) = chain::verify_head(key, origin, head.last_seq, link, &head.signature) {
            return Verdict::Broken {
                verified_through,
                at: verified_through + 1,
                reason: format!(
                    "an event among seqs {}..={} is not what the device signed ({error})",
                    verified_through + 1,
                    head.last_seq
                ),
            };
        }
        verified_through = head.last_seq;
    }
    if let Some((at, reason)) = &walk.broken {
        return Verdict::Broken {
            verified_through,
            at: *at,
            reason: reason.clone(),
        };
    }
    let through = walk.chain.seq();
    if through != state.durable_through {
        return Verdict::Broken {
            verified_through,
            at: through + 1,
            reason: format!(
                "the log holds seqs through {through}, but durable_through is {}",
                state.durable_through
            ),
        };
    }
    if let Some(head) = &state.chain_head
        && head.as_slice() != walk.chain.head()
    {
        return Verdict::Broken {
            verified_through,
            at: verified_through + 1,
            reason: "the events held differ from those the chain was computed over on arrival"
                .into(),
        };
    }
    if heads.last().map(|h| h.last_seq) != state.signed_head.as_ref().map(|h| h.last_seq) {
        return Verdict::Broken {
            verified_through,
            at: verified_through + 1,
            reason: "the newest signed head is not among the stored heads".into(),
        };
    }
    Verdict::Verified {
        through,
        signed_from: state.signed_from,
        signed_through: (verified_through > 0).then_some(verified_through),
    }
}

/// Sets the chain head of every origin whose state has none, from its
/// recomputed chain; returns how many were set.
///
/// # Errors
/// Storage errors.
pub(crate) fn fill_missing(store: &HubStore) -> Result<usize, HubError> {
    let origins = store.origins()?;
    let missing: Vec<_> = origins
        .iter()
        .filter(|(_, state)| state.chain_head.is_none() && state.durable_through > 0)
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(0);
    }
    let walks = walk(store, &missing)?;
    let mut heads = Vec::new();
    for (origin, state) in &missing {
        match walks.get(origin) {
            Some(walk) if walk.broken.is_none() && walk.chain.seq() == state.durable_through => {
                heads.push((*origin, walk.chain.head()));
            }
            _ => {
                tracing::warn!(%origin, "origin's held seqs do not form a chain: left without one")
            }
        }
    }
    store.set_chain_heads(&heads)?;
    Ok(heads.len())
}

/// Checks every origin of the store: its held seqs form its chain, the
/// chain matches the head computed on arrival, and every signed head the
/// hub kept verifies under the origin's device key. One verdict per origin,
/// by origin id.
///
/// # Errors
/// Storage errors, or an event that does not decode.
pub fn verify(store: &HubStore) -> Result<Vec<(Uuid, Verdict)>, HubError> {
    let origins = store.origins()?;
    let walks = walk(store, &origins)?;
    let states: BTreeMap<Uuid, OriginState> = origins.into_iter().collect();
    let mut verdicts = Vec::with_capacity(walks.len());
    for (origin, walk) in &walks {
        let state = states.get(origin).cloned().unwrap_or_default();
        let binding = store.token_store().binding(*origin)?;
        let heads = store.signed_heads(*origin)?;
        verdicts.push((
            *origin,
            judge(*origin, &state, binding.as_ref(), &heads, walk),
        ));
    }
    Ok(verdicts)
}
