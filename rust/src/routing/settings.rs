//! The router's dispatch settings: breakers, retry and hedge budgets,
//! backoff, how long an engine's load scrape counts, replica adaptation and
//! the relative latency rule. Their defaults are written here only; the
//! bindings and the Python configuration read them from here.

use crate::balance::DEFAULT_ENGINE_LOAD_TTL_MS;
use crate::breaker::BreakerConfig;
use crate::prefix::PrefixSettings;
use crate::replica_health::ReplicaAdapt;
use crate::retry::{Backoff, BudgetConfig};

/// Dispatch policy: breakers, retry and hedge budgets, backoff, and how long
/// an engine's load scrape counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resilience {
    pub breaker: BreakerConfig,
    pub retry_budget: BudgetConfig,
    pub hedge_budget: BudgetConfig,
    pub backoff: Backoff,
    pub engine_load_ttl_ms: u64,
    pub replica_adapt: ReplicaAdapt,
    /// When > 0: a candidate whose mean latency is this many times the
    /// median of the other candidates' (and 10 ms more) gets the
    /// high-latency penalty too. 0: only the absolute threshold.
    pub relative_latency_factor: f64,
    /// The `cache_aware` replica policy's prefix index and load bound.
    pub prefix: PrefixSettings,
}

impl Default for Resilience {
    /// Breakers as [`BreakerConfig::default`]; retries up to 20 % of traffic
    /// plus 10 a second; hedges up to 5 % of traffic; backoff 25 ms doubling
    /// to 1 s; engine scrapes count for 5 s.
    fn default() -> Self {
        Self {
            breaker: BreakerConfig::default(),
            retry_budget: BudgetConfig {
                ratio: 0.2,
                min_per_second: 10.0,
                max_tokens: 100.0,
            },
            hedge_budget: BudgetConfig {
                ratio: 0.05,
                min_per_second: 0.0,
                max_tokens: 10.0,
            },
            backoff: Backoff {
                base_ms: 25.0,
                max_ms: 1_000.0,
            },
            engine_load_ttl_ms: DEFAULT_ENGINE_LOAD_TTL_MS,
            replica_adapt: ReplicaAdapt::default(),
            relative_latency_factor: 0.0,
            prefix: PrefixSettings::default(),
        }
    }
}
