//! The one source of cheap randomness on the hot path: an xorshift64 state
//! in an atomic, shared by the threads that draw from it. Two threads that
//! race on it may draw the same number, which only makes the sequence less
//! predictable; nothing here needs more than "roughly uniform".

use crate::sync::{AtomicU64, Ordering};

/// An xorshift64 generator that any thread may draw from.
#[derive(Debug)]
pub struct SharedRng {
    state: AtomicU64,
}

impl SharedRng {
    /// A generator seeded with `seed` (0 is replaced: xorshift stays at 0).
    pub fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            }),
        }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&self) -> u64 {
        let mut x = self.state.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.store(x, Ordering::Relaxed);
        x
    }

    /// A uniform draw in [0, 1).
    #[inline]
    pub fn unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn draws_are_in_the_unit_interval_and_spread() {
        let rng = SharedRng::new(7);
        let draws: Vec<f64> = (0..10_000).map(|_| rng.unit()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let below_half = draws.iter().filter(|d| **d < 0.5).count();
        assert!((4_500..5_500).contains(&below_half), "{below_half}");
    }

    #[test]
    fn a_zero_seed_still_moves() {
        let rng = SharedRng::new(0);
        assert_ne!(rng.next_u64(), rng.next_u64());
    }
}
