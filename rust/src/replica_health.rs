//! How each replica has been doing lately, for choosing among replicas.
//!
//! The tracker's windows answer "how is this model doing" over minutes;
//! choosing a replica needs "is this one worse than its twins right now".
//! Each replica keeps two exponentially weighted averages, updated with a
//! CAS loop on every outcome that says something about it: its failure
//! share and its latency. No outcome is lost: an average starts unset (NaN)
//! and whichever outcome finds it unset sets it, the others blend in, so
//! however observes race each average ends as some serial order of the
//! outcomes would leave it (`rust/tests/loom_replica_health.rs`).
//!
//! A replica is *degraded* when its failure share is `fail_margin` above the
//! best replica's, or its latency `latency_factor` times the median
//! replica's (and at least `LATENCY_FLOOR_MS` more).
//! Degraded replicas get no traffic except `explore` of the requests,
//! probes that let a healed replica come back.

use crate::sync::{AtomicU64, Ordering};

use crate::penalties::relatively_slow;
pub use crate::penalties::LATENCY_FLOOR_MS;

/// Outcomes a replica needs before it can be judged.
pub const MIN_SAMPLES: u64 = 3;

/// The policy, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaAdapt {
    /// Off: replicas are chosen by load, breakers and health only.
    pub enabled: bool,
    /// Weight of the newest outcome in the averages.
    pub alpha: f64,
    /// How much above the best replica's failure share is degraded.
    pub fail_margin: f64,
    /// How many times the median replica's latency is degraded (0: never).
    pub latency_factor: f64,
    /// Share of requests that probe a degraded replica.
    pub explore: f64,
}

impl Default for ReplicaAdapt {
    fn default() -> Self {
        Self {
            enabled: true,
            alpha: 0.3,
            fail_margin: 0.4,
            latency_factor: 3.0,
            explore: 0.05,
        }
    }
}

impl ReplicaAdapt {
    /// Validates every field.
    pub fn new(
        enabled: bool,
        alpha: f64,
        fail_margin: f64,
        latency_factor: f64,
        explore: f64,
    ) -> Result<Self, crate::errors::ZetaError> {
        let check = |field: &'static str, value: f64, ok: bool, expected: &'static str| {
            if ok && value.is_finite() {
                Ok(())
            } else {
                Err(crate::errors::ZetaError::InvalidConfig {
                    field,
                    expected,
                    value: crate::errors::float_repr(value),
                })
            }
        };
        check("alpha", alpha, alpha > 0.0 && alpha <= 1.0, "in (0, 1]")?;
        check(
            "fail_margin",
            fail_margin,
            fail_margin > 0.0 && fail_margin <= 1.0,
            "in (0, 1]",
        )?;
        check(
            "latency_factor",
            latency_factor,
            latency_factor == 0.0 || latency_factor > 1.0,
            "0 (off) or > 1",
        )?;
        check(
            "explore",
            explore,
            (0.0..=0.5).contains(&explore),
            "in [0, 0.5]",
        )?;
        Ok(Self {
            enabled,
            alpha,
            fail_margin,
            latency_factor,
            explore,
        })
    }
}

/// One replica's recent failure share and latency.
pub struct ReplicaHealth {
    /// f64 bits; NaN until the first outcome.
    fail: AtomicU64,
    /// f64 bits; NaN until the first success.
    latency_ms: AtomicU64,
    samples: AtomicU64,
}

impl Default for ReplicaHealth {
    fn default() -> Self {
        Self {
            fail: AtomicU64::new(f64::NAN.to_bits()),
            latency_ms: AtomicU64::new(f64::NAN.to_bits()),
            samples: AtomicU64::new(0),
        }
    }
}

/// An average's value, 0 while unset.
fn known(cell: &AtomicU64) -> f64 {
    let value = f64::from_bits(cell.load(Ordering::Relaxed));
    if value.is_nan() {
        0.0
    } else {
        value
    }
}

fn blend(cell: &AtomicU64, update: impl Fn(f64) -> f64) {
    let mut current = cell.load(Ordering::Relaxed);
    loop {
        let next = update(f64::from_bits(current)).to_bits();
        match cell.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
    }
}

impl ReplicaHealth {
    /// Counts one outcome; the first to reach an average sets it. The
    /// "first" is read from the average itself, inside its CAS loop: a
    /// separate first-sample flag let the first outcome overwrite a racing
    /// second one's blend.
    pub fn observe(&self, success: bool, latency_ms: f64, alpha: f64) {
        self.samples.fetch_add(1, Ordering::Relaxed);
        let failure = if success { 0.0 } else { 1.0 };
        blend(&self.fail, |old| {
            if old.is_nan() {
                failure
            } else {
                old + alpha * (failure - old)
            }
        });
        if success && latency_ms.is_finite() && latency_ms >= 0.0 {
            // A fast answer pulls the average down at once (to at most twice
            // itself): a healed replica is believed after one good probe.
            blend(&self.latency_ms, |old| {
                if old.is_nan() || old == 0.0 {
                    latency_ms
                } else {
                    (old + alpha * (latency_ms - old)).min(2.0 * latency_ms)
                }
            });
        }
    }

    /// (failure share, latency ms, samples); 0 for an average not set yet.
    pub fn read(&self) -> (f64, f64, u64) {
        (
            known(&self.fail),
            known(&self.latency_ms),
            self.samples.load(Ordering::Relaxed),
        )
    }
}

/// A necessary condition for any replica to be degraded, checked in one
/// pass without allocating (routing asks on every request; almost always
/// every replica is fine). The median is at least the minimum, so a replica
/// not slow against the fastest is not slow against the median either.
fn maybe_degraded(health: &[ReplicaHealth], policy: &ReplicaAdapt) -> bool {
    let (mut min_fail, mut max_fail) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut min_latency, mut max_latency) = (f64::INFINITY, 0.0_f64);
    let mut untried = false;
    for h in health {
        let (fail, latency, samples) = h.read();
        if samples < MIN_SAMPLES {
            untried = true;
            continue;
        }
        min_fail = min_fail.min(fail);
        max_fail = max_fail.max(fail);
        if latency > 0.0 {
            min_latency = min_latency.min(latency);
            max_latency = max_latency.max(latency);
        }
    }
    if untried {
        min_fail = min_fail.min(0.0);
    }
    let failing = max_fail > min_fail + policy.fail_margin;
    let slow = policy.latency_factor > 0.0
        && max_latency > policy.latency_factor * min_latency
        && max_latency > min_latency + LATENCY_FLOOR_MS;
    failing || slow
}

/// Indices of the degraded replicas (empty when the policy is off or too
/// little is known).
pub fn degraded(health: &[ReplicaHealth], policy: &ReplicaAdapt) -> Vec<usize> {
    degraded_by(health, policy, true)
}

/// [`degraded`], with the latency rule only when `latency` is true: under
/// a prefix-aware policy replicas serve unlike work (one takes a new
/// conversation's whole prompt, another the next turn of a cached one), so
/// their latencies do not compare, and its load bound already moves work
/// off a replica that falls behind.
pub fn degraded_by(health: &[ReplicaHealth], policy: &ReplicaAdapt, latency: bool) -> Vec<usize> {
    if !policy.enabled || health.len() < 2 || !maybe_degraded(health, policy) {
        return Vec::new();
    }
    let known: Vec<(usize, f64, f64)> = health
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let (fail, latency, samples) = h.read();
            (samples >= MIN_SAMPLES).then_some((i, fail, latency))
        })
        .collect();
    if known.is_empty() {
        return Vec::new();
    }
    // A replica not yet tried is presumed healthy: with sequential traffic
    // and least-loaded choice its twins may have no record at all.
    let untried = known.len() < health.len();
    let best_fail = known
        .iter()
        .map(|k| k.1)
        .fold(if untried { 0.0 } else { f64::INFINITY }, f64::min);
    // Slow beside its twins: the candidates' relative rule, over replicas
    // (the median of the *others*, so one of two twins can be the slow one).
    let latencies: Vec<Option<f64>> = known.iter().map(|k| (k.2 > 0.0).then_some(k.2)).collect();
    let slow = if latency {
        relatively_slow(&latencies, policy.latency_factor)
    } else {
        vec![false; latencies.len()]
    };
    known
        .iter()
        .zip(slow)
        .filter(|((_, fail, _), slow)| *fail > best_fail + policy.fail_margin || *slow)
        .map(|(k, _)| k.0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize) -> Vec<ReplicaHealth> {
        (0..n).map(|_| ReplicaHealth::default()).collect()
    }

    #[test]
    fn failing_and_slow_replicas_are_degraded_and_come_back() {
        let policy = ReplicaAdapt::default();
        let health = set(3);
        for _ in 0..5 {
            for h in &health {
                h.observe(true, 25.0, policy.alpha);
            }
        }
        assert!(degraded(&health, &policy).is_empty());
        // Replica 1 fails twice: 0.3, then 0.51 > 0 + 0.4.
        health[1].observe(false, 3.0, policy.alpha);
        assert!(degraded(&health, &policy).is_empty());
        health[1].observe(false, 3.0, policy.alpha);
        assert_eq!(degraded(&health, &policy), vec![1]);
        // Replica 2 answers 400 ms late once: 25 -> 147.5 > 3 x 25.
        health[2].observe(true, 425.0, policy.alpha);
        assert_eq!(degraded(&health, &policy), vec![1, 2]);
        // One fast answer brings its latency back (min(2 x 25, ...)).
        health[2].observe(true, 25.0, policy.alpha);
        assert_eq!(degraded(&health, &policy), vec![1]);
        // Two successes bring replica 1 back: 0.51 -> 0.36 -> 0.25.
        health[1].observe(true, 25.0, policy.alpha);
        health[1].observe(true, 25.0, policy.alpha);
        assert!(degraded(&health, &policy).is_empty());
    }

    #[test]
    fn nothing_is_judged_without_data_or_when_off() {
        let policy = ReplicaAdapt::default();
        let health = set(2);
        for _ in 0..3 {
            health[0].observe(false, 1.0, policy.alpha);
        }
        // The twin has no record: presumed healthy, so the failing one is passed over.
        assert_eq!(degraded(&health, &policy), vec![0]);
        for _ in 0..3 {
            health[1].observe(true, 1.0, policy.alpha);
        }
        assert_eq!(degraded(&health, &policy), vec![0]);
        let lone = set(2);
        lone[0].observe(true, 1.0, policy.alpha);
        assert!(degraded(&lone, &policy).is_empty(), "too little known");
        let off = ReplicaAdapt {
            enabled: false,
            ..policy
        };
        assert!(degraded(&health, &off).is_empty());
        // Fast replicas a few ms apart are not slow.
        let fast = set(2);
        for _ in 0..3 {
            fast[0].observe(true, 0.5, policy.alpha);
            fast[1].observe(true, 4.0, policy.alpha);
        }
        assert!(degraded(&fast, &policy).is_empty());
    }

    #[test]
    fn config_is_validated() {
        assert!(ReplicaAdapt::new(true, 0.0, 0.25, 3.0, 0.05).is_err());
        assert!(ReplicaAdapt::new(true, 0.3, 0.25, 0.5, 0.05).is_err());
        assert!(ReplicaAdapt::new(true, 0.3, 0.25, 0.0, 0.05).is_ok());
        assert!(ReplicaAdapt::new(true, 0.3, 0.25, 3.0, 0.6).is_err());
        assert!(ReplicaAdapt::new(true, 0.3, f64::NAN, 3.0, 0.05).is_err());
    }
}
