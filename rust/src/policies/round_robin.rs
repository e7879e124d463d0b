//! `round_robin`: the replicas in turn, skipping those that cannot take the
//! request. Even spreading when replicas are alike and requests short;
//! blind to load, so `least_loaded` suits mixed request sizes better.

use super::{ReplicaPolicy, Replicas};
use crate::sync::{AtomicU64, Ordering};

/// The next replica after the last one chosen that can take a request.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicU64,
}

impl ReplicaPolicy for RoundRobin {
    fn name(&self) -> &'static str {
        "round_robin"
    }

    fn choose(&self, replicas: &Replicas<'_>) -> Option<usize> {
        let n = replicas.len();
        if n == 0 {
            return None;
        }
        // One shared turn counter: concurrent callers get different turns.
        let start = (self.next.fetch_add(1, Ordering::Relaxed) % n as u64) as usize;
        (0..n)
            .map(|offset| (start + offset) % n)
            .find(|&replica| replicas.load(replica).is_some())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn replicas_take_turns_whatever_their_load() {
        let policy = RoundRobin::default();
        let load = |r: usize| Some(r as f64);
        let picks: Vec<_> = (0..6)
            .filter_map(|_| policy.choose(&Replicas::new(3, &load)))
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn a_replica_that_cannot_take_it_passes_its_turn_on() {
        let policy = RoundRobin::default();
        let load = |r: usize| (r != 1).then_some(0.0);
        let picks: Vec<_> = (0..4)
            .filter_map(|_| policy.choose(&Replicas::new(3, &load)))
            .collect();
        assert_eq!(picks, vec![0, 2, 2, 0]);
        let none = |_: usize| None;
        assert_eq!(policy.choose(&Replicas::new(3, &none)), None);
    }
}
