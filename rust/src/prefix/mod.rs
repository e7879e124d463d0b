//! Where a request's prompt prefix is likely cached: the inputs of the
//! `cache_aware` replica policy ([`crate::policies::CacheAware`]).
//!
//! An engine (llama.cpp slots with `cache_prompt`, vLLM's prefix cache)
//! skips prompt processing for a prefix it already holds, so turn N+1 of a
//! conversation is cheapest on the replica that served turn N. The router
//! cannot see the engines' caches; it remembers where it sent each prefix:
//! the rendered prompt is cut into blocks of `block_bytes`, each block's
//! hash chained to the one before it (so a block's hash names the whole
//! prefix up to its end, as vLLM's block hashes do), and the policy's
//! [`index::PrefixIndex`] keeps, per model, which replica was sent which
//! block and when. The engines' own reports (`timings.cache_n` from
//! llama.cpp, `cached_tokens` from vLLM) correct how far back that memory
//! is trusted ([`index::PrefixIndex::report`]).
//!
//! Only whole blocks are hashed: a prompt shorter than one block has no
//! prefix to match and is placed by load (and its session) alone.

mod generations;
pub mod index;
pub mod sessions;

use std::hash::BuildHasher;

use crate::errors::{float_repr, ZetaError};

pub use index::{PrefixIndex, PrefixStats, Routed};

/// The hash chain's seed: fixed, so every router instance (and every
/// process sharing state through Redis) hashes a prefix to the same values.
const CHAIN_SEED: u64 = 0x7A65_7461_5F66_6173; // "zeta_fas"

/// The `cache_aware` policy's settings; defaults written here only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrefixSettings {
    /// Bytes of rendered prompt per hashed block (about a quarter as many
    /// tokens for English text).
    pub block_bytes: u32,
    /// (block, replica) entries a model's index keeps; older ones are
    /// forgotten first. Each costs about 20 bytes.
    pub max_entries: u64,
    /// No replica takes a request while its requests would exceed this
    /// many times the mean over the model's replicas (rounded up; bounded
    /// loads, as in consistent hashing with bounded loads).
    pub load_factor: f64,
    /// Requests a replica may run beyond that bound (0 by default: with
    /// a few slots per replica, conversations past the slots evict each
    /// other's caches, which costs more than a move).
    pub load_slack: u32,
    /// Blocks a replica must hold for the prefix to decide (fewer: load
    /// decides).
    pub min_match_blocks: u32,
    /// How long a session stays bound to its replica after its last request.
    pub session_ttl_ms: u64,
    /// Sessions remembered per model; older ones are forgotten first.
    pub max_sessions: u64,
}

impl Default for PrefixSettings {
    /// 128-byte blocks, a million entries per model (~20-40 MB at most),
    /// loads bounded at 1.25 times the mean, one block to match, sessions
    /// kept 10 minutes, 100,000 of them.
    fn default() -> Self {
        Self {
            block_bytes: 128,
            max_entries: 1_000_000,
            load_factor: 1.25,
            load_slack: 0,
            min_match_blocks: 1,
            session_ttl_ms: 600_000,
            max_sessions: 100_000,
        }
    }
}

impl PrefixSettings {
    /// Checks every field's bounds.
    pub fn validated(self) -> Result<Self, ZetaError> {
        let whole = |field: &'static str, value: u64, low: u64, high: u64| {
            if (low..=high).contains(&value) {
                Ok(())
            } else {
                Err(ZetaError::InvalidConfig {
                    field,
                    expected: "within its bounds (see the docs)",
                    value: value.to_string(),
                })
            }
        };
        whole(
            "prefix_block_bytes",
            u64::from(self.block_bytes),
            16,
            65_536,
        )?;
        whole("prefix_max_entries", self.max_entries, 2, 1 << 32)?;
        whole(
            "prefix_min_match_blocks",
            u64::from(self.min_match_blocks),
            1,
            1 << 20,
        )?;
        whole("session_ttl_ms", self.session_ttl_ms, 0, 7 * 86_400_000)?;
        whole("prefix_load_slack", u64::from(self.load_slack), 0, 1 << 20)?;
        whole("max_sessions", self.max_sessions, 2, 1 << 32)?;
        if !(self.load_factor.is_finite() && (1.0..=100.0).contains(&self.load_factor)) {
            return Err(ZetaError::InvalidConfig {
                field: "prefix_load_factor",
                expected: "finite, from 1 to 100",
                value: float_repr(self.load_factor),
            });
        }
        Ok(self)
    }
}

/// What a request brings to replica choice: its prompt's chained block
/// hashes and its session, if the caller named one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Affinity {
    /// One hash per whole block of the rendered prompt, each naming the
    /// prefix up to that block's end.
    pub blocks: Box<[u64]>,
    /// The session's hash (`x-session-id`, the `user` field; else the
    /// conversation's opening).
    pub session: Option<u64>,
    /// Bytes of the rendered prompt (whole blocks and the rest).
    pub prompt_bytes: u64,
}

impl Affinity {
    /// The affinity of `prompt` (the rendered prompt's bytes) in `session`.
    /// Without a named session, a conversation is its own: the prompt's
    /// first `conversation_end` bytes (its messages up to the first user
    /// turn) name it, the same at every later turn.
    pub fn new(
        prompt: &[u8],
        session: Option<&[u8]>,
        conversation_end: Option<usize>,
        block_bytes: u32,
    ) -> Self {
        let conversation = || {
            let opening = prompt.get(..conversation_end?)?;
            Some(hasher().hash_one((u64::MAX - 1, opening)))
        };
        Self {
            blocks: block_hashes(prompt, block_bytes).into_boxed_slice(),
            session: session.map(hash_session).or_else(conversation),
            prompt_bytes: prompt.len() as u64,
        }
    }

    /// The share of the prompt that `blocks` whole blocks cover.
    pub fn share_of(&self, blocks: u32, block_bytes: u32) -> f64 {
        if self.prompt_bytes == 0 {
            return 0.0;
        }
        (f64::from(blocks) * f64::from(block_bytes) / self.prompt_bytes as f64).min(1.0)
    }
}

fn hasher() -> foldhash::quality::FixedState {
    foldhash::quality::FixedState::with_seed(CHAIN_SEED)
}

/// The chained hashes of `prompt`'s whole blocks: block i's hash covers
/// the previous hash and block i's bytes, so equal hashes mean (up to
/// collisions) equal prefixes.
pub fn block_hashes(prompt: &[u8], block_bytes: u32) -> Vec<u64> {
    let size = (block_bytes as usize).max(1);
    let state = hasher();
    let mut previous = 0_u64;
    prompt
        .chunks_exact(size)
        .map(|block| {
            previous = state.hash_one((previous, block));
            previous
        })
        .collect()
}

/// A session name's hash (in its own domain: never equal to a block's by
/// construction of the input, and only compared with other sessions').
pub fn hash_session(session: &[u8]) -> u64 {
    hasher().hash_one((u64::MAX, b"session", session))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn equal_prefixes_share_their_block_hashes_and_only_those() {
        let a = b"system: you are helpful.".repeat(20);
        let mut b = a.clone();
        b.extend_from_slice(&b"user: and then?".repeat(20));
        let mut c = a.clone();
        // One byte differs in the third block: from there on, all differ.
        if let Some(byte) = c.get_mut(2 * 32 + 5) {
            *byte ^= 1;
        }
        let (ha, hb, hc) = (
            block_hashes(&a, 32),
            block_hashes(&b, 32),
            block_hashes(&c, 32),
        );
        assert_eq!(ha.len(), a.len() / 32);
        assert_eq!(hb.get(..ha.len()), Some(&ha[..]));
        assert_eq!(hc.get(..2), ha.get(..2));
        for (x, y) in hc.iter().zip(&ha).skip(2) {
            assert_ne!(x, y);
        }
    }

    #[test]
    fn a_block_hash_names_its_whole_prefix_not_its_bytes_alone() {
        // The same second block after different first blocks.
        let one = [b"A".repeat(16), b"same".repeat(4)].concat();
        let two = [b"B".repeat(16), b"same".repeat(4)].concat();
        assert_ne!(block_hashes(&one, 16).get(1), block_hashes(&two, 16).get(1));
    }

    #[test]
    fn short_prompts_have_no_blocks_and_shares_are_bounded() {
        let affinity = Affinity::new(b"hi", Some(b"s1"), Some(2), 128);
        assert!(affinity.blocks.is_empty());
        assert_eq!(affinity.session, Some(hash_session(b"s1")));
        assert_ne!(affinity.session, Some(hash_session(b"s2")));
        assert_eq!(affinity.share_of(3, 128), 1.0);
        assert_eq!(Affinity::default().share_of(3, 128), 0.0);
        let long = Affinity::new(&[b'x'; 1000], None, None, 100);
        assert_eq!(long.session, None);
        // A conversation names itself by its opening, whatever follows.
        let turn1 = Affinity::new(b"system: s; user: hi", None, Some(19), 16);
        let turn2 = Affinity::new(
            b"system: s; user: hi; assistant: yo; user: ok",
            None,
            Some(19),
            16,
        );
        let other = Affinity::new(b"system: s; user: ho", None, Some(19), 16);
        assert!(turn1.session.is_some());
        assert_eq!(turn1.session, turn2.session);
        assert_ne!(turn1.session, other.session);
        // A named session wins over the conversation's own.
        let named = Affinity::new(b"system: s; user: hi", Some(b"s1"), Some(19), 16);
        assert_eq!(named.session, Some(hash_session(b"s1")));
        assert!((long.share_of(5, 100) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn settings_out_of_bounds_are_refused_by_name() {
        assert!(PrefixSettings::default().validated().is_ok());
        for (bad, name) in [
            (
                PrefixSettings {
                    block_bytes: 4,
                    ..PrefixSettings::default()
                },
                "prefix_block_bytes",
            ),
            (
                PrefixSettings {
                    load_factor: 0.5,
                    ..PrefixSettings::default()
                },
                "prefix_load_factor",
            ),
            (
                PrefixSettings {
                    load_factor: f64::NAN,
                    ..PrefixSettings::default()
                },
                "prefix_load_factor",
            ),
            (
                PrefixSettings {
                    max_entries: 1,
                    ..PrefixSettings::default()
                },
                "prefix_max_entries",
            ),
        ] {
            let Err(err) = bad.validated() else {
                panic!("{name} accepted");
            };
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
