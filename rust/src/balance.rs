//! Replica load balancing: lock-free in-flight counters with capacity limits,
//! and the choice of a replica (least loaded, or power of two choices).
//!
//! A replica is taken by a compare-and-swap that only succeeds below its
//! capacity, so no interleaving of threads can ever run more requests on a
//! replica than it allows; a full set answers `None` at once, so a router
//! can pass the request to its next-best model instead of queueing it.

use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// How a replica is chosen among the healthy ones with room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The lowest in-flight / capacity ratio; ties to the lowest index.
    LeastLoaded,
    /// Two replicas at random, the less loaded of them: near least-loaded
    /// spreading without every router herding onto the same minimum.
    PowerOfTwo,
}

struct Replica {
    in_flight: AtomicU32,
    /// 0 means unlimited.
    capacity: u32,
    healthy: AtomicBool,
}

/// The replicas of one model.
pub struct ReplicaSet {
    replicas: Box<[Replica]>,
    policy: Policy,
    /// xorshift state for power-of-two choices; races only make it more random.
    seed: AtomicU64,
}

impl ReplicaSet {
    /// One replica per capacity (0 = unlimited), all healthy.
    pub fn new(capacities: &[u32], policy: Policy) -> Self {
        Self {
            replicas: capacities
                .iter()
                .map(|&capacity| Replica {
                    in_flight: AtomicU32::new(0),
                    capacity,
                    healthy: AtomicBool::new(true),
                })
                .collect(),
            policy,
            seed: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// Number of replicas.
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// True without replicas.
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// Requests running on each replica now.
    pub fn in_flight(&self) -> Vec<u32> {
        self.replicas
            .iter()
            .map(|r| r.in_flight.load(Ordering::Relaxed))
            .collect()
    }

    /// Requests running on all replicas together, without allocating.
    pub fn total_in_flight(&self) -> u32 {
        self.replicas
            .iter()
            .map(|r| r.in_flight.load(Ordering::Relaxed))
            .sum()
    }

    /// Marks a replica healthy or not; unhealthy ones are never chosen.
    pub fn set_healthy(&self, index: usize, healthy: bool) -> bool {
        match self.replicas.get(index) {
            Some(replica) => {
                replica.healthy.store(healthy, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Whether a replica is marked healthy.
    pub fn is_healthy(&self, index: usize) -> bool {
        self.replicas
            .get(index)
            .is_some_and(|r| r.healthy.load(Ordering::Relaxed))
    }

    /// Takes a slot on `index` if it is healthy and below capacity.
    pub fn try_acquire(&self, index: usize) -> bool {
        let Some(replica) = self.replicas.get(index) else {
            return false;
        };
        if !replica.healthy.load(Ordering::Relaxed) {
            return false;
        }
        let mut current = replica.in_flight.load(Ordering::Relaxed);
        loop {
            if replica.capacity != 0 && current >= replica.capacity {
                return false;
            }
            // AcqRel on success: the slot is taken before the request starts.
            match replica.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    /// Gives back a slot taken by `try_acquire` or `acquire`.
    pub fn release(&self, index: usize) {
        if let Some(replica) = self.replicas.get(index) {
            // Saturating: a stray release must not wrap the counter around.
            let _ = replica
                .in_flight
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// Load of a replica for comparisons: in-flight over capacity (capacity
    /// 0 counts as large), `None` when it cannot take a request now.
    fn load(&self, index: usize) -> Option<f64> {
        let replica = self.replicas.get(index)?;
        if !replica.healthy.load(Ordering::Relaxed) {
            return None;
        }
        let running = replica.in_flight.load(Ordering::Relaxed);
        if replica.capacity == 0 {
            return Some(f64::from(running) / f64::from(u32::MAX));
        }
        (running < replica.capacity).then(|| f64::from(running) / f64::from(replica.capacity))
    }

    fn random(&self) -> u64 {
        let mut x = self.seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.seed.store(x, Ordering::Relaxed);
        x
    }

    fn least_loaded(&self) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for index in 0..self.replicas.len() {
            if let Some(load) = self.load(index) {
                if best.is_none_or(|(_, b)| load < b) {
                    best = Some((index, load));
                }
            }
        }
        best.map(|(index, _)| index)
    }

    fn candidate(&self) -> Option<usize> {
        let n = self.replicas.len();
        match self.policy {
            Policy::LeastLoaded => self.least_loaded(),
            Policy::PowerOfTwo if n >= 2 => {
                let r = self.random();
                let a = (r % n as u64) as usize;
                let b = (a + 1 + ((r >> 32) % (n as u64 - 1)) as usize) % n;
                match (self.load(a), self.load(b)) {
                    (Some(la), Some(lb)) => Some(if lb < la { b } else { a }),
                    (Some(_), None) => Some(a),
                    (None, Some(_)) => Some(b),
                    // Both full or down: look at all of them.
                    (None, None) => self.least_loaded(),
                }
            }
            Policy::PowerOfTwo => self.least_loaded(),
        }
    }

    /// Chooses a replica and takes a slot on it, or `None` when every
    /// replica is down or at capacity. Lock-free; retries only when another
    /// thread took the last slot of the chosen replica first.
    pub fn acquire(&self) -> Option<usize> {
        // Each failed attempt means another thread made progress; the set
        // has finitely many slots, so this ends.
        for _ in 0..=self.replicas.len() * 4 + 4 {
            let index = self.candidate()?;
            if self.try_acquire(index) {
                return Some(index);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_loaded_spreads_and_respects_capacity() {
        let set = ReplicaSet::new(&[2, 2, 2], Policy::LeastLoaded);
        let picks: Vec<_> = (0..6).map(|_| set.acquire().unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(set.acquire(), None, "all at capacity");
        set.release(1);
        assert_eq!(set.acquire(), Some(1));
    }

    #[test]
    fn unhealthy_replicas_are_skipped() {
        let set = ReplicaSet::new(&[0, 0], Policy::PowerOfTwo);
        set.set_healthy(0, false);
        for _ in 0..20 {
            assert_eq!(set.acquire(), Some(1));
        }
        set.set_healthy(1, false);
        assert_eq!(set.acquire(), None);
        assert!(!set.try_acquire(5));
    }

    #[test]
    fn power_of_two_uses_every_replica() {
        let set = ReplicaSet::new(&[0; 8], Policy::PowerOfTwo);
        for _ in 0..800 {
            set.acquire().unwrap();
        }
        let loads = set.in_flight();
        assert_eq!(loads.iter().sum::<u32>(), 800);
        assert!(loads.iter().all(|&n| n > 60), "{loads:?}");
    }

    #[test]
    fn release_never_wraps() {
        let set = ReplicaSet::new(&[1], Policy::LeastLoaded);
        set.release(0);
        assert_eq!(set.in_flight(), vec![0]);
    }
}
