//! Routing policies, one per file: how a model's replica is chosen
//! ([`ReplicaPolicy`]) and in which order scored models are tried
//! ([`ModelOrdering`]). Each trait has one required method; a policy is
//! built from the configuration's name by [`replica_policy`] or
//! [`model_ordering`], which read the tables below. Adding a policy is one
//! file (ending in its own tests), its `mod` line and one table row.

mod by_score;
mod cache_aware;
mod least_loaded;
mod power_of_two;
mod round_robin;
mod spread;

pub use by_score::ByScore;
pub use cache_aware::CacheAware;
pub use least_loaded::LeastLoaded;
pub use power_of_two::PowerOfTwo;
pub use spread::Spread;

use crate::errors::ZetaError;
use crate::prefix::{Affinity, PrefixIndex, PrefixSettings};
use crate::scoring::ScoreBreakdown;

/// What a replica policy sees of a model's replicas: how many there are
/// and, for each, its load, or `None` when it cannot take a request now
/// (down, full, its breaker refuses, or the request already failed there).
pub struct Replicas<'a> {
    count: usize,
    load: &'a dyn Fn(usize) -> Option<f64>,
    requests: Option<&'a dyn Fn(usize) -> f64>,
    capacity: Option<&'a dyn Fn(usize) -> u32>,
    affinity: Option<&'a Affinity>,
    now_ms: u64,
}

impl<'a> Replicas<'a> {
    /// A view of `count` replicas whose loads `load` reads.
    pub fn new(count: usize, load: &'a dyn Fn(usize) -> Option<f64>) -> Self {
        Self {
            count,
            load,
            requests: None,
            capacity: None,
            affinity: None,
            now_ms: 0,
        }
    }

    /// With each replica's request count (running, on other instances and
    /// queued in the engine), for policies that bound loads in requests.
    pub fn with_requests(mut self, requests: &'a dyn Fn(usize) -> f64) -> Self {
        self.requests = Some(requests);
        self
    }

    /// With each replica's configured capacity (its slots; 0: unlimited).
    pub fn with_capacity(mut self, capacity: &'a dyn Fn(usize) -> u32) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// A replica's configured capacity (0: unlimited or not given).
    #[inline]
    pub fn capacity(&self, replica: usize) -> u32 {
        match self.capacity {
            Some(capacity) if replica < self.count => capacity(replica),
            _ => 0,
        }
    }

    /// With the request's prompt prefix and session, at `now_ms`.
    pub fn with_affinity(mut self, affinity: Option<&'a Affinity>, now_ms: u64) -> Self {
        self.affinity = affinity;
        self.now_ms = now_ms;
        self
    }

    /// The request's affinity, when the caller gave one.
    pub fn affinity(&self) -> Option<&'a Affinity> {
        self.affinity
    }

    /// The clock's time of the choice (ms).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// A replica's requests (its load when no counts were given).
    #[inline]
    pub fn requests(&self, replica: usize) -> f64 {
        match self.requests {
            Some(requests) if replica < self.count => requests(replica),
            _ => self.load(replica).unwrap_or(0.0),
        }
    }

    /// Number of replicas (those that cannot take a request included).
    pub fn len(&self) -> usize {
        self.count
    }

    /// True without replicas.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Running plus engine-queued requests over capacity, plus KV-cache use;
    /// `None` when the replica cannot take a request now.
    #[inline]
    pub fn load(&self, replica: usize) -> Option<f64> {
        if replica < self.count {
            (self.load)(replica)
        } else {
            None
        }
    }
}

/// Chooses one of a model's replicas for a request. The replica set then
/// takes a slot on it by compare-and-swap; when another thread took the last
/// slot first, it asks again, so `choose` need not be exact under races.
pub trait ReplicaPolicy: Send + Sync {
    /// The name the configuration uses (`replica_policy`).
    fn name(&self) -> &'static str;

    /// The replica to try, or `None` when none can take the request.
    fn choose(&self, replicas: &Replicas<'_>) -> Option<usize>;

    /// Called when a request on `replica` ended (`success`: it answered).
    /// A no-op unless the policy learns from outcomes.
    fn on_outcome(&self, _replica: usize, _success: bool) {}

    /// Whether replicas slow beside their twins are passed over before the
    /// policy chooses (true by default; see
    /// [`crate::replica_health::degraded_by`]).
    fn passes_over_slow_replicas(&self) -> bool {
        true
    }

    /// The block size (bytes) when the policy uses a request's prompt
    /// prefix ([`Affinity`]); `None`, the default, and none is computed.
    fn wants_affinity(&self) -> Option<u32> {
        None
    }

    /// The prefix index of a prefix-aware policy: the router notes each
    /// placement in it, scores it against the engines' reports, and shares it.
    fn prefix_index(&self) -> Option<&PrefixIndex> {
        None
    }
}

/// Orders the scored candidate models of a request: the first that can
/// take it gets it, the rest are the fallbacks in that order.
pub trait ModelOrdering: Send + Sync {
    /// The name the configuration uses (`model_ordering`).
    fn name(&self) -> &'static str;

    /// Reorders `scored`, which comes sorted best score first (ties in
    /// configuration order); `busy(model)` is the model's in-flight
    /// requests per replica.
    fn order(&self, scored: &mut [(usize, ScoreBreakdown)], busy: &dyn Fn(usize) -> f64);
}

/// Builds a policy for a model of this many replicas.
type ReplicaFactory = fn(usize, &PrefixSettings) -> Box<dyn ReplicaPolicy>;
type OrderingFactory = fn(f64) -> Box<dyn ModelOrdering>;

/// Every replica policy, by configuration name.
const REPLICA_POLICY_TABLE: [(&str, ReplicaFactory); 4] = [
    ("least_loaded", |_, _| Box::new(LeastLoaded)),
    ("power_of_two", |_, _| Box::new(PowerOfTwo::default())),
    ("round_robin", |_, _| {
        Box::new(round_robin::RoundRobin::default())
    }),
    ("cache_aware", |replicas, prefix| {
        Box::new(CacheAware::new(replicas, *prefix))
    }),
];

/// Every model ordering, by configuration name; the argument is the spread
/// margin (score points).
const MODEL_ORDERING_TABLE: [(&str, OrderingFactory); 2] = [
    ("spread", |margin| Box::new(Spread::new(margin))),
    ("by_score", |_| Box::new(ByScore)),
];

/// The replica policies' names, in table order.
pub fn replica_policy_names() -> Vec<&'static str> {
    REPLICA_POLICY_TABLE.iter().map(|(name, _)| *name).collect()
}

/// The model orderings' names, in table order.
pub fn model_ordering_names() -> Vec<&'static str> {
    MODEL_ORDERING_TABLE.iter().map(|(name, _)| *name).collect()
}

/// A fresh replica policy (one per model: some keep state) from its name,
/// for a model of `replicas` replicas; `prefix` configures `cache_aware`.
pub fn replica_policy(
    name: &str,
    replicas: usize,
    prefix: &PrefixSettings,
) -> Result<Box<dyn ReplicaPolicy>, ZetaError> {
    REPLICA_POLICY_TABLE
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, build)| build(replicas, prefix))
        .ok_or_else(|| ZetaError::UnknownSetting {
            field: "replica_policy",
            value: name.to_owned(),
            known: replica_policy_names().join(", "),
        })
}

/// A model ordering from its name and the spread margin (finite, >= 0).
pub fn model_ordering(name: &str, spread_margin: f64) -> Result<Box<dyn ModelOrdering>, ZetaError> {
    if !(spread_margin.is_finite() && spread_margin >= 0.0) {
        return Err(ZetaError::InvalidConfig {
            field: "spread_margin",
            expected: "finite and >= 0",
            value: crate::errors::float_repr(spread_margin),
        });
    }
    MODEL_ORDERING_TABLE
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, build)| build(spread_margin))
        .ok_or_else(|| ZetaError::UnknownSetting {
            field: "model_ordering",
            value: name.to_owned(),
            known: model_ordering_names().join(", "),
        })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn every_table_name_builds_the_policy_of_that_name() -> Result<(), ZetaError> {
        for name in replica_policy_names() {
            assert_eq!(
                replica_policy(name, 2, &PrefixSettings::default())?.name(),
                name
            );
        }
        for name in model_ordering_names() {
            assert_eq!(model_ordering(name, 5.0)?.name(), name);
        }
        Ok(())
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let Err(err) = replica_policy("fastest", 2, &PrefixSettings::default()) else {
            panic!("an unknown policy was built");
        };
        let message = err.to_string();
        assert!(message.contains("\"fastest\""), "{message}");
        assert!(message.contains("least_loaded, power_of_two"), "{message}");
        assert!(model_ordering("spread", f64::NAN).is_err());
        assert!(model_ordering("spread", -1.0).is_err());
        assert!(model_ordering("nope", 1.0).is_err());
    }

    #[test]
    fn a_view_past_its_end_has_no_load() {
        let load = |r: usize| Some(r as f64);
        let view = Replicas::new(2, &load);
        assert_eq!(view.load(1), Some(1.0));
        assert_eq!(view.load(2), None);
        assert_eq!(view.len(), 2);
        assert!(!view.is_empty());
    }
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests_support {
    use crate::penalties::Penalties;
    use crate::scoring::ScoreBreakdown;

    /// Candidates 0.. with these final scores, in the given order.
    pub fn scored(scores: &[f64]) -> Vec<(usize, ScoreBreakdown)> {
        scores
            .iter()
            .enumerate()
            .map(|(m, &score)| {
                (
                    m,
                    ScoreBreakdown {
                        capability_score: score,
                        latency_score: 100.0,
                        blended_score: score,
                        performance_score: score,
                        has_performance_data: false,
                        success_rate: 1.0,
                        avg_latency_ms: 0.0,
                        requests: 0.0,
                        penalties: Penalties::NONE,
                        penalty_factor: 1.0,
                    },
                )
            })
            .collect()
    }
}
