//! A hasher for keys that are hashes already (a block's chained hash, a
//! Python string's cached hash): the key itself, no second mixing.

use std::hash::{BuildHasherDefault, Hasher};

/// Passes a pre-mixed 64-bit key through.
#[derive(Default)]
pub struct Passthrough(u64);

impl Hasher for Passthrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are meant; fold anything else in anyway.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// The `BuildHasher` of maps keyed by hashes.
pub type BuildPassthrough = BuildHasherDefault<Passthrough>;
