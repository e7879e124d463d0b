//! Kinds of request a model may be unable to serve, whatever its health:
//! images or audio sent to a text-only server, embeddings to a chat server,
//! tools or a JSON schema to a server without them, a route (Responses,
//! Messages) its server lacks.
//!
//! Such a refusal is the request's, not the replica's: it must never open a
//! breaker or mark a replica down. Instead the model is skipped for requests
//! of that kind: declared in the configuration, or learned from a refusal for
//! a while (a server may be redeployed with the feature, so a learned refusal
//! expires and the model is tried again).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::errors::ZetaError;

/// Every request feature, in bit order; names as configuration and Python
/// spell them.
pub const FEATURES: [&str; 7] = [
    "images",
    "audio",
    "tools",
    "json_schema",
    "embeddings",
    "responses",
    "messages",
];

/// The bits of the features the structural checks tell kinds apart by
/// (their positions in [`FEATURES`]; a test holds them to it).
pub const TOOLS: u32 = 1 << 2;
pub const JSON_SCHEMA: u32 = 1 << 3;

/// The bit of a feature name.
pub fn feature_bit(name: &str) -> Result<u32, ZetaError> {
    FEATURES
        .iter()
        .position(|f| *f == name)
        .map(|i| 1_u32 << i)
        .ok_or_else(|| ZetaError::InvalidName {
            field: "feature",
            problem: "is not a request feature (images, audio, tools, json_schema, embeddings, responses, messages)",
            value: name.to_owned(),
        })
}

/// The names of the features in `mask`, joined with ", ".
pub fn feature_names(mask: u32) -> String {
    FEATURES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one model cannot serve: declared, and learned until a deadline.
pub struct Unserved {
    declared: AtomicU32,
    /// Per feature, the clock reading (ms) until which a learned refusal
    /// holds; 0 when none was learned.
    learned_until_ms: [AtomicU64; FEATURES.len()],
}

impl Default for Unserved {
    fn default() -> Self {
        Self {
            declared: AtomicU32::new(0),
            learned_until_ms: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Unserved {
    /// Sets the features the configuration says the model cannot serve.
    pub fn declare(&self, mask: u32) {
        self.declared.store(mask, Ordering::Relaxed);
    }

    /// Remembers that the model refused `feature` until `until_ms`.
    pub fn learn(&self, bit: u32, until_ms: u64) {
        if let Some(cell) = self
            .learned_until_ms
            .get(bit.trailing_zeros() as usize)
            .filter(|_| bit.is_power_of_two())
        {
            cell.fetch_max(until_ms, Ordering::Relaxed);
        }
    }

    /// Forgets every learned refusal (an operator's word after a redeploy).
    pub fn forget(&self) {
        for cell in &self.learned_until_ms {
            cell.store(0, Ordering::Relaxed);
        }
    }

    /// The features it cannot serve at `now_ms`.
    pub fn mask(&self, now_ms: u64) -> u32 {
        let mut mask = self.declared.load(Ordering::Relaxed);
        for (i, cell) in self.learned_until_ms.iter().enumerate() {
            if cell.load(Ordering::Relaxed) > now_ms {
                mask |= 1 << i;
            }
        }
        mask
    }

    /// Whether a request needing `needs` must skip this model. Requests
    /// needing nothing special (the common case) cost one comparison.
    #[inline]
    pub fn blocks(&self, needs: u32, now_ms: u64) -> bool {
        needs != 0 && self.mask(now_ms) & needs != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_bits_are_the_features_positions() {
        assert_eq!(feature_bit("tools").unwrap(), TOOLS);
        assert_eq!(feature_bit("json_schema").unwrap(), JSON_SCHEMA);
    }

    #[test]
    fn names_and_bits_round_trip() {
        for (i, name) in FEATURES.iter().enumerate() {
            assert_eq!(feature_bit(name).unwrap(), 1 << i);
        }
        assert!(feature_bit("video").is_err());
        assert_eq!(feature_names(0b101), "images, tools");
        assert_eq!(feature_names(0), "");
    }

    #[test]
    fn declared_features_always_block() {
        let unserved = Unserved::default();
        unserved.declare(feature_bit("images").unwrap());
        assert!(unserved.blocks(feature_bit("images").unwrap(), 0));
        assert!(unserved.blocks(0b11, u64::MAX - 1));
        assert!(!unserved.blocks(feature_bit("tools").unwrap(), 0));
        assert!(!unserved.blocks(0, 0));
    }

    #[test]
    fn learned_refusals_expire() {
        let unserved = Unserved::default();
        let audio = feature_bit("audio").unwrap();
        unserved.learn(audio, 1_000);
        assert!(unserved.blocks(audio, 999));
        assert!(!unserved.blocks(audio, 1_000));
        // A later deadline extends, an earlier one never shortens.
        unserved.learn(audio, 5_000);
        unserved.learn(audio, 2_000);
        assert!(unserved.blocks(audio, 4_999));
        unserved.forget();
        assert!(!unserved.blocks(audio, 0));
        // Not one feature: ignored rather than guessed.
        unserved.learn(0b11, 10_000);
        assert_eq!(unserved.mask(0), 0);
    }
}
