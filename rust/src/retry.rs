//! Retry policy as pure state: a budget that bounds retries (or hedges) to a
//! share of the traffic, and the backoff schedule between attempts.
//!
//! A budget keeps retries from multiplying an outage: every first attempt
//! deposits `ratio` of a token, every retry spends a whole one, and a small
//! allowance refills with time so a quiet router can still retry. With a
//! ratio of 0.2 no more than ~20 % extra load can come from retries, however
//! bad things get (the approach of Finagle's and gRPC's retry budgets).
//! Lock-free: concurrent spends, deposits and refills never pass the cap,
//! and every millisecond of refill is credited exactly once
//! (`rust/tests/loom_retry.rs`).

use crate::errors::{float_repr, ZetaError};
use crate::sync::{AtomicU64, Ordering};

/// Tokens are counted in thousandths so the ratio needs no floats on the
/// hot path.
const MILLI: u64 = 1_000;

/// How many retries a budget allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Tokens deposited per first attempt (0..=1).
    pub ratio: f64,
    /// Tokens added per second whatever the traffic.
    pub min_per_second: f64,
    /// The most tokens that can be saved up.
    pub max_tokens: f64,
}

impl BudgetConfig {
    /// Validates every field.
    pub fn new(ratio: f64, min_per_second: f64, max_tokens: f64) -> Result<Self, ZetaError> {
        let checks: [(&'static str, f64, &'static str, bool); 3] = [
            ("ratio", ratio, "in [0, 1]", (0.0..=1.0).contains(&ratio)),
            (
                "min_per_second",
                min_per_second,
                "finite and in [0, 1e6]",
                (0.0..=1e6).contains(&min_per_second),
            ),
            (
                "max_tokens",
                max_tokens,
                "finite and in [1, 1e9]",
                (1.0..=1e9).contains(&max_tokens),
            ),
        ];
        for (field, value, expected, ok) in checks {
            if !ok {
                return Err(ZetaError::InvalidConfig {
                    field,
                    expected,
                    value: float_repr(value),
                });
            }
        }
        Ok(Self {
            ratio,
            min_per_second,
            max_tokens,
        })
    }
}

/// A lock-free token budget.
pub struct RetryBudget {
    deposit_milli: u64,
    refill_milli_per_s: u64,
    max_milli: u64,
    tokens_milli: AtomicU64,
    last_refill_ms: AtomicU64,
}

impl RetryBudget {
    /// A budget that starts full, so the first failures can be retried.
    pub fn new(config: BudgetConfig, now_ms: u64) -> Self {
        let max_milli = (config.max_tokens * MILLI as f64) as u64;
        Self {
            deposit_milli: (config.ratio * MILLI as f64).round() as u64,
            refill_milli_per_s: (config.min_per_second * MILLI as f64).round() as u64,
            max_milli,
            tokens_milli: AtomicU64::new(max_milli),
            last_refill_ms: AtomicU64::new(now_ms),
        }
    }

    fn add(&self, milli: u64) {
        if milli == 0 {
            return;
        }
        let _ = self
            .tokens_milli
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tokens| {
                Some(tokens.saturating_add(milli).min(self.max_milli))
            });
    }

    /// Counts a first attempt.
    pub fn deposit(&self) {
        self.add(self.deposit_milli);
    }

    /// Thousandths of a token the refill has earned from time 0 to `ms`.
    /// Crediting the difference of two such marks loses no fraction however
    /// often refills run: the differences add up to the whole.
    fn earned_by(&self, ms: u64) -> u64 {
        let earned = u128::from(ms) * u128::from(self.refill_milli_per_s) / 1_000;
        u64::try_from(earned).unwrap_or(u64::MAX)
    }

    fn refill(&self, now_ms: u64) {
        if self.refill_milli_per_s == 0 {
            return;
        }
        let mut last = self.last_refill_ms.load(Ordering::Acquire);
        // Each interval is credited by the one thread that moves the mark
        // across it; a thread that loses the race credits what is left up
        // to its own time, so no refill is lost or paid twice.
        while now_ms > last {
            let earned = self.earned_by(now_ms).saturating_sub(self.earned_by(last));
            if earned == 0 {
                // Not a thousandth yet: the mark stays, so the time accrues.
                return;
            }
            match self.last_refill_ms.compare_exchange(
                last,
                now_ms,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.add(earned);
                    return;
                }
                Err(seen) => last = seen,
            }
        }
    }

    /// Spends one token for a retry; false when the budget is spent.
    pub fn try_withdraw(&self, now_ms: u64) -> bool {
        self.refill(now_ms);
        self.tokens_milli
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tokens| {
                tokens.checked_sub(MILLI)
            })
            .is_ok()
    }

    /// Whole tokens left now.
    pub fn tokens(&self) -> f64 {
        self.tokens_milli.load(Ordering::Acquire) as f64 / MILLI as f64
    }
}

/// The backoff schedule: exponential with "full jitter" (a uniform draw in
/// [0, min(max, base * 2^retry)]), so retrying clients spread out instead of
/// striking together; a server's `Retry-After` is a floor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base_ms: f64,
    pub max_ms: f64,
}

impl Backoff {
    /// Validates both bounds.
    pub fn new(base_ms: f64, max_ms: f64) -> Result<Self, ZetaError> {
        if !(base_ms.is_finite() && base_ms >= 0.0) {
            return Err(ZetaError::InvalidConfig {
                field: "backoff_base_ms",
                expected: "finite and >= 0",
                value: float_repr(base_ms),
            });
        }
        if !(max_ms.is_finite() && max_ms >= base_ms) {
            return Err(ZetaError::InvalidConfig {
                field: "backoff_max_ms",
                expected: "finite and >= backoff_base_ms",
                value: float_repr(max_ms),
            });
        }
        Ok(Self { base_ms, max_ms })
    }

    /// The wait before retry number `retry` (1 = the first retry), given a
    /// uniform `draw` in [0, 1) and the server's `Retry-After` in ms, if any.
    pub fn delay_ms(&self, retry: u32, draw: f64, retry_after_ms: Option<f64>) -> f64 {
        let exponent = retry.saturating_sub(1).min(52) as i32;
        let ceiling = (self.base_ms * 2f64.powi(exponent)).min(self.max_ms);
        let jittered = ceiling * draw.clamp(0.0, 1.0);
        match retry_after_ms {
            Some(after) if after.is_finite() && after > jittered => after,
            _ => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_bounds_retries_to_the_ratio() {
        let budget = RetryBudget::new(BudgetConfig::new(0.2, 0.0, 2.0).unwrap(), 0);
        assert!(
            budget.try_withdraw(0) && budget.try_withdraw(0),
            "starts full"
        );
        assert!(!budget.try_withdraw(0), "spent");
        let mut allowed = 0;
        for _ in 0..100 {
            budget.deposit();
            if budget.try_withdraw(0) {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 20);
    }

    #[test]
    fn budget_refills_with_time() {
        let budget = RetryBudget::new(BudgetConfig::new(0.0, 10.0, 5.0).unwrap(), 0);
        for _ in 0..5 {
            assert!(budget.try_withdraw(0));
        }
        assert!(!budget.try_withdraw(50));
        assert!(budget.try_withdraw(100), "10/s refills one token in 100 ms");
        assert!(!budget.try_withdraw(100));
        assert!(budget.try_withdraw(10_000));
        assert!((budget.tokens() - 4.0).abs() < 1e-9, "capped at max_tokens");
    }

    #[test]
    fn frequent_refills_keep_the_fractions_of_a_thousandth() {
        // 0.3 tokens/s refilled every 5 ms earns 1.5 thousandths each time.
        let budget = RetryBudget::new(BudgetConfig::new(0.0, 0.3, 1.0).unwrap(), 0);
        assert!(budget.try_withdraw(0));
        for now_ms in (5..=1_000).step_by(5) {
            assert!(!budget.try_withdraw(now_ms));
        }
        assert_eq!(budget.tokens(), 0.3, "0.3 tokens/s for 1 s");
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let backoff = Backoff::new(50.0, 400.0).unwrap();
        assert_eq!(backoff.delay_ms(1, 0.999_999, None).round(), 50.0);
        assert_eq!(backoff.delay_ms(3, 0.999_999, None).round(), 200.0);
        assert_eq!(backoff.delay_ms(30, 0.999_999, None).round(), 400.0);
        assert_eq!(backoff.delay_ms(2, 0.5, None), 50.0);
        assert_eq!(backoff.delay_ms(1, 0.5, Some(1_000.0)), 1_000.0);
        assert_eq!(backoff.delay_ms(1, 0.5, Some(1.0)), 25.0);
        assert_eq!(backoff.delay_ms(u32::MAX, 1.0, None), 400.0);
    }

    #[test]
    fn configs_are_validated() {
        assert!(BudgetConfig::new(1.5, 0.0, 1.0).is_err());
        assert!(BudgetConfig::new(0.1, f64::NAN, 1.0).is_err());
        assert!(BudgetConfig::new(0.1, 1.0, 0.5).is_err());
        assert!(Backoff::new(-1.0, 1.0).is_err());
        assert!(Backoff::new(10.0, 5.0).is_err());
        let err = Backoff::new(f64::NAN, 1.0).unwrap_err().to_string();
        assert!(
            err.contains("backoff_base_ms") && err.contains("nan"),
            "{err}"
        );
    }
}
