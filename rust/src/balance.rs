//! Replica load balancing: lock-free in-flight counters with capacity limits;
//! the choice among the replicas that can take a request is the replica
//! policy's ([`crate::policies::ReplicaPolicy`]).
//!
//! A replica is taken by a compare-and-swap that only succeeds below its
//! capacity, so no interleaving of threads can ever run more requests on a
//! replica than it allows; a full set answers `None` at once, so a router
//! can pass the request to its next-best model instead of queueing it.

use crate::breaker::{Admission, BreakerConfig, BreakerState, CircuitBreaker};
use crate::policies::{ReplicaPolicy, Replicas};
use crate::prefix::Affinity;
use crate::sync::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Capacity assumed for an unlimited replica when its engine-reported queue
/// is weighed against running requests.
const NOMINAL_CAPACITY: f64 = 64.0;

/// How long an engine load scrape counts: an older one is ignored, so a
/// stale scrape can never pin a replica as busy.
pub const DEFAULT_ENGINE_LOAD_TTL_MS: u64 = 5_000;

struct Replica {
    in_flight: AtomicU32,
    /// Requests other router instances have running on it (shared state;
    /// 0 unless shared): counted in load comparisons, not against capacity.
    remote_in_flight: AtomicU32,
    /// 0 means unlimited.
    capacity: u32,
    healthy: AtomicBool,
    breaker: CircuitBreaker,
    /// Requests the engine itself reports queued (llama.cpp's
    /// `requests_deferred`, vLLM's `num_requests_waiting`): load from other
    /// clients this router cannot see in its own counts.
    engine_waiting: AtomicU32,
    /// KV-cache use in thousandths (vLLM), 0 when not reported.
    engine_kv_milli: AtomicU32,
    /// When the scrape was taken (clock ms); 0 = never.
    engine_at_ms: AtomicU64,
}

/// The replicas of one model.
pub struct ReplicaSet {
    replicas: Box<[Replica]>,
    policy: Box<dyn ReplicaPolicy>,
    breaker_config: BreakerConfig,
    engine_ttl_ms: u64,
}

impl ReplicaSet {
    /// One replica per capacity (0 = unlimited), all healthy.
    pub fn new(capacities: &[u32], policy: Box<dyn ReplicaPolicy>) -> Self {
        Self::with_breakers(capacities, policy, BreakerConfig::default(), 0)
    }

    /// One replica per capacity, each with a closed breaker; `now_ms` anchors
    /// the breakers' clocks.
    pub fn with_breakers(
        capacities: &[u32],
        policy: Box<dyn ReplicaPolicy>,
        breaker_config: BreakerConfig,
        now_ms: u64,
    ) -> Self {
        Self {
            replicas: capacities
                .iter()
                .map(|&capacity| Replica {
                    in_flight: AtomicU32::new(0),
                    remote_in_flight: AtomicU32::new(0),
                    capacity,
                    healthy: AtomicBool::new(true),
                    breaker: CircuitBreaker::new(now_ms),
                    engine_waiting: AtomicU32::new(0),
                    engine_kv_milli: AtomicU32::new(0),
                    engine_at_ms: AtomicU64::new(0),
                })
                .collect(),
            policy,
            breaker_config,
            engine_ttl_ms: DEFAULT_ENGINE_LOAD_TTL_MS,
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
        self.try_acquire_at(index, 0)
    }

    /// Takes a slot on `index` if it is healthy, below capacity and its
    /// breaker admits a request at `now_ms` (as the probe when half-open).
    pub fn try_acquire_at(&self, index: usize, now_ms: u64) -> bool {
        let Some(replica) = self.replicas.get(index) else {
            return false;
        };
        if !replica.healthy.load(Ordering::Relaxed) {
            return false;
        }
        if !self.take_slot(replica) {
            return false;
        }
        match replica.breaker.try_admit(&self.breaker_config, now_ms) {
            Admission::Allowed | Admission::Probe => true,
            Admission::Refused => {
                self.release(index);
                false
            }
        }
    }

    fn take_slot(&self, replica: &Replica) -> bool {
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

    /// Counts a request's outcome in the replica's breaker (and tells the
    /// replica policy); returns the state it leaves the breaker in.
    pub fn on_outcome(&self, index: usize, success: bool, now_ms: u64) -> Option<BreakerState> {
        let replica = self.replicas.get(index)?;
        self.policy.on_outcome(index, success);
        Some(
            replica
                .breaker
                .on_outcome(&self.breaker_config, success, now_ms),
        )
    }

    /// How long until the replica's breaker admits a request again (0: now).
    pub fn breaker_admits_in_ms(&self, index: usize, now_ms: u64) -> u64 {
        self.replicas
            .get(index)
            .map_or(0, |r| r.breaker.admits_in_ms(&self.breaker_config, now_ms))
    }

    pub fn breaker_state(&self, index: usize) -> Option<BreakerState> {
        self.replicas.get(index).map(|r| r.breaker.state())
    }

    /// Opens a replica's breaker so that no request goes to it for `hold_ms`.
    pub fn hold(&self, index: usize, hold_ms: u64, now_ms: u64) {
        if let Some(replica) = self.replicas.get(index) {
            replica.breaker.hold(&self.breaker_config, hold_ms, now_ms);
        }
    }

    /// Closes a replica's breaker.
    pub fn reset_breaker(&self, index: usize) {
        if let Some(replica) = self.replicas.get(index) {
            replica.breaker.reset();
        }
    }

    /// Stores the load the engine reported at `now_ms`: requests queued in it
    /// and KV-cache use (0..=1). Ignored once older than the TTL.
    pub fn set_engine_load(&self, index: usize, waiting: u32, kv_usage: f64, now_ms: u64) -> bool {
        let Some(replica) = self.replicas.get(index) else {
            return false;
        };
        let kv = if kv_usage.is_finite() {
            (kv_usage.clamp(0.0, 1.0) * 1_000.0) as u32
        } else {
            0
        };
        replica.engine_waiting.store(waiting, Ordering::Relaxed);
        replica.engine_kv_milli.store(kv, Ordering::Relaxed);
        // Stored last: a reader that sees the new time sees fresh values or
        // the previous scrape's, both real readings.
        replica.engine_at_ms.store(now_ms.max(1), Ordering::Release);
        true
    }

    /// The engine load counted for a replica at `now_ms`: (waiting, kv use),
    /// zeros when never scraped or the scrape is older than the TTL.
    pub fn engine_load(&self, index: usize, now_ms: u64) -> (u32, f64) {
        let Some(replica) = self.replicas.get(index) else {
            return (0, 0.0);
        };
        let at = replica.engine_at_ms.load(Ordering::Acquire);
        if at == 0 || now_ms.saturating_sub(at) > self.engine_ttl_ms {
            return (0, 0.0);
        }
        (
            replica.engine_waiting.load(Ordering::Relaxed),
            f64::from(replica.engine_kv_milli.load(Ordering::Relaxed)) / 1_000.0,
        )
    }

    /// Sets how long an engine load scrape counts.
    pub fn set_engine_load_ttl_ms(&mut self, ttl_ms: u64) {
        self.engine_ttl_ms = ttl_ms;
    }

    /// Sets what other router instances have running on each replica.
    pub fn set_remote_in_flight(&self, counts: &[u32]) {
        for (replica, count) in self.replicas.iter().zip(counts) {
            replica.remote_in_flight.store(*count, Ordering::Relaxed);
        }
    }

    /// What other router instances have running on each replica.
    pub fn remote_in_flight(&self) -> Vec<u32> {
        self.replicas
            .iter()
            .map(|r| r.remote_in_flight.load(Ordering::Relaxed))
            .collect()
    }

    /// Load of a replica for comparisons: running plus engine-queued requests
    /// over capacity, plus KV-cache use; `None` when it cannot take a request
    /// now (down, full, or its breaker refuses).
    fn load(&self, index: usize, now_ms: u64) -> Option<f64> {
        let replica = self.replicas.get(index)?;
        if !replica.healthy.load(Ordering::Relaxed) {
            return None;
        }
        let running = replica.in_flight.load(Ordering::Relaxed);
        if replica.capacity != 0 && running >= replica.capacity {
            return None;
        }
        if replica.breaker.admits(&self.breaker_config, now_ms) == Admission::Refused {
            return None;
        }
        let running = running.saturating_add(replica.remote_in_flight.load(Ordering::Relaxed));
        let (waiting, kv) = self.engine_load(index, now_ms);
        let denominator = if replica.capacity == 0 {
            NOMINAL_CAPACITY
        } else {
            f64::from(replica.capacity)
        };
        Some((f64::from(running) + f64::from(waiting)) / denominator + kv)
    }

    /// Requests on a replica for load bounds: running here and on other
    /// router instances, and queued in the engine.
    fn requests(&self, index: usize, now_ms: u64) -> f64 {
        let Some(replica) = self.replicas.get(index) else {
            return 0.0;
        };
        let running = replica
            .in_flight
            .load(Ordering::Relaxed)
            .saturating_add(replica.remote_in_flight.load(Ordering::Relaxed));
        f64::from(running) + f64::from(self.engine_load(index, now_ms).0)
    }

    /// The replica policy's choice among those that can take a request now
    /// and are not in `excluded`.
    fn candidate(
        &self,
        now_ms: u64,
        excluded: &[usize],
        affinity: Option<&Affinity>,
    ) -> Option<usize> {
        let load = |i: usize| {
            if excluded.contains(&i) {
                None
            } else {
                self.load(i, now_ms)
            }
        };
        let requests = |i: usize| self.requests(i, now_ms);
        let capacity = |i: usize| self.replicas.get(i).map_or(0, |r| r.capacity);
        self.policy.choose(
            &Replicas::new(self.replicas.len(), &load)
                .with_requests(&requests)
                .with_capacity(&capacity)
                .with_affinity(affinity, now_ms),
        )
    }

    /// The replica policy.
    pub fn policy(&self) -> &dyn ReplicaPolicy {
        self.policy.as_ref()
    }

    /// The replica policy's name.
    pub fn policy_name(&self) -> &'static str {
        self.policy.name()
    }

    /// Chooses a replica and takes a slot on it, or `None` when every
    /// replica is down or at capacity. Lock-free; retries only when another
    /// thread took the last slot of the chosen replica first.
    pub fn acquire(&self) -> Option<usize> {
        self.acquire_at(0, &[])
    }

    /// [`Self::acquire`] at `now_ms` (for the breakers and the engine load's
    /// age), never choosing a replica in `excluded` (those a request already
    /// failed on).
    pub fn acquire_at(&self, now_ms: u64, excluded: &[usize]) -> Option<usize> {
        self.acquire_for(now_ms, excluded, None)
    }

    /// [`Self::acquire_at`] for a request with this prompt prefix and
    /// session (which a prefix-aware policy weighs).
    pub fn acquire_for(
        &self,
        now_ms: u64,
        excluded: &[usize],
        affinity: Option<&Affinity>,
    ) -> Option<usize> {
        // Each failed attempt means another thread made progress; the set
        // has finitely many slots, so this ends.
        for _ in 0..=self.replicas.len() * 4 + 4 {
            let index = self.candidate(now_ms, excluded, affinity)?;
            if self.try_acquire_at(index, now_ms) {
                return Some(index);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::{LeastLoaded, PowerOfTwo};

    #[test]
    fn least_loaded_spreads_and_respects_capacity() {
        let set = ReplicaSet::new(&[2, 2, 2], Box::new(LeastLoaded));
        let picks: Vec<_> = (0..6).map(|_| set.acquire().unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(set.acquire(), None, "all at capacity");
        set.release(1);
        assert_eq!(set.acquire(), Some(1));
    }

    #[test]
    fn unhealthy_replicas_are_skipped() {
        let set = ReplicaSet::new(&[0, 0], Box::<PowerOfTwo>::default());
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
        let set = ReplicaSet::new(&[0; 8], Box::<PowerOfTwo>::default());
        for _ in 0..800 {
            set.acquire().unwrap();
        }
        let loads = set.in_flight();
        assert_eq!(loads.iter().sum::<u32>(), 800);
        assert!(loads.iter().all(|&n| n > 60), "{loads:?}");
    }

    #[test]
    fn release_never_wraps() {
        let set = ReplicaSet::new(&[1], Box::new(LeastLoaded));
        set.release(0);
        assert_eq!(set.in_flight(), vec![0]);
    }
}
