//! `power_of_two`: two replicas drawn at random, the less loaded of them.
//! Near least-loaded spreading without every router instance herding onto
//! the same minimum (Mitzenmacher's "power of two choices").

use super::least_loaded::least_loaded;
use super::{ReplicaPolicy, Replicas};
use crate::rng::SharedRng;

/// Two random replicas, the less loaded; all of them when both are full.
#[derive(Debug)]
pub struct PowerOfTwo {
    rng: SharedRng,
}

impl Default for PowerOfTwo {
    fn default() -> Self {
        Self {
            rng: SharedRng::new(0x9E37_79B9_7F4A_7C15),
        }
    }
}

impl ReplicaPolicy for PowerOfTwo {
    fn name(&self) -> &'static str {
        "power_of_two"
    }

    fn choose(&self, replicas: &Replicas<'_>) -> Option<usize> {
        let n = replicas.len();
        if n < 2 {
            return least_loaded(replicas);
        }
        let r = self.rng.next_u64();
        let a = (r % n as u64) as usize;
        // A second, different replica.
        let b = (a + 1 + ((r >> 32) % (n as u64 - 1)) as usize) % n;
        match (replicas.load(a), replicas.load(b)) {
            (Some(la), Some(lb)) => Some(if lb < la { b } else { a }),
            (Some(_), None) => Some(a),
            (None, Some(_)) => Some(b),
            // Both full, down or excluded: look at all of them.
            (None, None) => least_loaded(replicas),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_less_loaded_of_two_wins_so_the_busiest_is_never_chosen() {
        let policy = PowerOfTwo::default();
        let loads = [0.0, 0.5, 0.9];
        let load = |r: usize| loads.get(r).copied();
        let mut counts = [0_u32; 3];
        for _ in 0..3_000 {
            let chosen = policy.choose(&Replicas::new(3, &load));
            if let Some(slot) = chosen.and_then(|c| counts.get_mut(c)) {
                *slot += 1;
            }
        }
        assert_eq!(counts[2], 0, "{counts:?}");
        assert!(counts[0] > counts[1], "{counts:?}");
        assert!(counts[1] > 0, "{counts:?}");
    }

    #[test]
    fn both_draws_full_falls_back_to_every_replica() {
        let policy = PowerOfTwo::default();
        let load = |r: usize| (r == 4).then_some(0.1);
        for _ in 0..50 {
            assert_eq!(policy.choose(&Replicas::new(5, &load)), Some(4));
        }
    }
}
