//! Retry and hedge budgets and the jittered backoff between attempts.
//!
//! Every first attempt deposits a share of a token in each budget; a retry
//! or a hedge spends a whole one, so retries stay a bounded share of
//! traffic (plus a floor per second) however badly replicas fail.

use super::settings::Resilience;
use crate::retry::{Backoff, RetryBudget};
use crate::rng::SharedRng;

/// The budgets of one router and its backoff.
pub struct Budgets {
    retry: RetryBudget,
    hedge: RetryBudget,
    backoff: Backoff,
}

impl Budgets {
    /// Full budgets at `now_ms`.
    pub fn new(resilience: &Resilience, now_ms: u64) -> Self {
        Self {
            retry: RetryBudget::new(resilience.retry_budget, now_ms),
            hedge: RetryBudget::new(resilience.hedge_budget, now_ms),
            backoff: resilience.backoff,
        }
    }

    /// A first attempt earns retries and hedges their share.
    #[inline]
    pub fn first_attempt(&self) {
        self.retry.deposit();
        self.hedge.deposit();
    }

    /// Spends a retry token; false when retries are over budget.
    pub fn try_retry(&self, now_ms: u64) -> bool {
        self.retry.try_withdraw(now_ms)
    }

    /// Spends a hedge token; false when hedges are over budget.
    pub fn try_hedge(&self, now_ms: u64) -> bool {
        self.hedge.try_withdraw(now_ms)
    }

    /// Retry and hedge tokens left.
    pub fn tokens(&self) -> (f64, f64) {
        (self.retry.tokens(), self.hedge.tokens())
    }

    /// The jittered wait before retry number `retry` (1 = first), at least
    /// the server's `Retry-After` when given.
    pub fn backoff_ms(&self, retry: u32, retry_after_ms: Option<f64>, rng: &SharedRng) -> f64 {
        self.backoff.delay_ms(retry, rng.unit(), retry_after_ms)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::retry::BudgetConfig;

    fn budgets(ratio: f64, max_tokens: f64) -> Budgets {
        let resilience = Resilience {
            retry_budget: BudgetConfig {
                ratio,
                min_per_second: 0.0,
                max_tokens,
            },
            hedge_budget: BudgetConfig {
                ratio: 0.0,
                min_per_second: 0.0,
                max_tokens: 0.0,
            },
            ..Resilience::default()
        };
        Budgets::new(&resilience, 0)
    }

    #[test]
    fn retries_are_a_share_of_first_attempts() {
        let budgets = budgets(0.25, 1.0);
        // Start empty: spend what there is.
        while budgets.try_retry(0) {}
        for _ in 0..4 {
            budgets.first_attempt();
        }
        assert!(budgets.try_retry(0), "four first attempts earn one retry");
        assert!(!budgets.try_retry(0));
        assert!(!budgets.try_hedge(0), "the hedge budget is 0");
    }

    #[test]
    fn backoff_is_jittered_within_its_bounds_and_honours_retry_after() {
        let budgets = budgets(0.2, 10.0);
        let rng = SharedRng::new(3);
        for retry in 1..6 {
            let wait = budgets.backoff_ms(retry, None, &rng);
            assert!((0.0..=1_000.0).contains(&wait), "{wait}");
        }
        assert!(budgets.backoff_ms(1, Some(2_500.0), &rng) >= 2_500.0);
    }
}
