//! The reliability and latency penalties: which apply, and the factor they give.

use crate::config::AdaptiveConfig;

/// The set of penalties that applied to one candidate, as bit flags so the
/// hot path can carry it in a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Penalties(u8);

impl Penalties {
    /// No penalty applied.
    pub const NONE: Self = Self(0);
    /// The success rate was below `min_acceptable_success_rate`.
    pub const LOW_SUCCESS_RATE: Self = Self(1);
    /// The mean latency was above `max_acceptable_latency_ms`.
    pub const HIGH_LATENCY: Self = Self(2);
    /// The mean latency was far above the other candidates' (the router's
    /// optional relative rule; same factor as `HIGH_LATENCY`).
    pub const RELATIVE_LATENCY: Self = Self(4);

    /// `self` with the penalties of `other` added.
    pub fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The penalties a candidate with these live metrics gets.
    #[inline(always)]
    pub fn for_metrics(config: &AdaptiveConfig, success_rate: f64, latency_ms: f64) -> Self {
        let mut bits = 0;
        if success_rate < config.min_acceptable_success_rate {
            bits |= Self::LOW_SUCCESS_RATE.0;
        }
        if latency_ms > config.max_acceptable_latency_ms {
            bits |= Self::HIGH_LATENCY.0;
        }
        Self(bits)
    }

    /// Whether every penalty in `other` is in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when no penalty applied.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Stable names, in a fixed order, as they appear in decision records.
    pub fn names(self) -> Vec<&'static str> {
        let mut names = Vec::with_capacity(3);
        if self.contains(Self::LOW_SUCCESS_RATE) {
            names.push("low_success_rate");
        }
        if self.contains(Self::HIGH_LATENCY) {
            names.push("high_latency");
        }
        if self.contains(Self::RELATIVE_LATENCY) {
            names.push("relative_latency");
        }
        names
    }
}

/// The factor the penalties multiply the blended score by: they compound, so
/// both together give `low_success_rate_penalty * high_latency_penalty`.
///
/// Written with selects rather than through [`Penalties`] so the batch loop
/// compiles to branch-free vector code; [`Penalties::for_metrics`] uses the
/// same two comparisons, and a test keeps them in step.
#[inline(always)]
pub fn penalty_factor(config: &AdaptiveConfig, success_rate: f64, latency_ms: f64) -> f64 {
    let reliability = if success_rate < config.min_acceptable_success_rate {
        config.low_success_rate_penalty
    } else {
        1.0
    };
    let latency = if latency_ms > config.max_acceptable_latency_ms {
        config.high_latency_penalty
    } else {
        1.0
    };
    reliability * latency
}

/// The least a candidate must be slower than the others, in milliseconds,
/// before the relative rule (and replica adaptation) calls it slow: on a
/// 2 ms baseline, 6 ms is noise, not a slow model.
pub const LATENCY_FLOOR_MS: f64 = 10.0;

/// The relative latency rule: which candidates are slow beside the others.
/// `latencies[i]` is candidate `i`'s mean latency, `None` without enough
/// data. A candidate is slow when it takes more than `factor` times the
/// median of the others' latencies and [`LATENCY_FLOOR_MS`] more (the median
/// of one other is that one). The absolute threshold misses +400 ms on a
/// 25 ms baseline; this does not. `factor <= 0` (off) or fewer than two
/// candidates with data: nobody is.
pub fn relatively_slow(latencies: &[Option<f64>], factor: f64) -> Vec<bool> {
    let mut slow = vec![false; latencies.len()];
    let mut known: Vec<f64> = latencies.iter().flatten().copied().collect();
    if factor <= 0.0 || known.len() < 2 {
        return slow;
    }
    // Sorted once: without one copy of its own value, the others' median
    // sits at `middle` of what is left, which is `known[middle]` when its
    // own value lies above that index, else the next one (a sort and a
    // copy per candidate before: 8 allocations and sorts per decision).
    known.sort_unstable_by(f64::total_cmp);
    let middle = (known.len() - 2) / 2;
    for (flag, own) in slow.iter_mut().zip(latencies) {
        let Some(own) = *own else {
            continue;
        };
        let at = known.partition_point(|l| l.total_cmp(&own).is_lt());
        let median = known.get(if middle < at { middle } else { middle + 1 });
        *flag = median.is_some_and(|&m| own > factor * m && own > m + LATENCY_FLOOR_MS);
    }
    slow
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    #[test]
    fn penalties_compound_to_product_of_factors() {
        let config = AdaptiveConfig::default();
        assert_eq!(penalty_factor(&config, 0.99, 100.0), 1.0);
        assert_eq!(penalty_factor(&config, 0.60, 100.0), 0.5);
        assert_eq!(penalty_factor(&config, 0.99, 600.0), 0.8);
        assert!((penalty_factor(&config, 0.60, 600.0) - 0.4).abs() < 1e-15);
    }

    #[test]
    fn thresholds_are_strict() {
        let config = AdaptiveConfig::default();
        // Exactly at the threshold is acceptable: the rule says "<" and ">".
        assert!(Penalties::for_metrics(&config, 0.90, 500.0).is_empty());
        assert_eq!(penalty_factor(&config, 0.90, 500.0), 1.0);
    }

    #[test]
    fn flags_and_factor_agree() {
        let config = AdaptiveConfig::default();
        for rate in [0.0, 0.5, 0.8999, 0.9, 0.95, 1.0] {
            for latency in [0.0, 499.0, 500.0, 500.1, 5000.0] {
                let flags = Penalties::for_metrics(&config, rate, latency);
                let mut expected = 1.0;
                if flags.contains(Penalties::LOW_SUCCESS_RATE) {
                    expected *= config.low_success_rate_penalty;
                }
                if flags.contains(Penalties::HIGH_LATENCY) {
                    expected *= config.high_latency_penalty;
                }
                assert_eq!(penalty_factor(&config, rate, latency), expected);
            }
        }
    }

    #[test]
    fn names_are_stable() {
        let both = Penalties(Penalties::LOW_SUCCESS_RATE.0 | Penalties::HIGH_LATENCY.0);
        assert_eq!(both.names(), vec!["low_success_rate", "high_latency"]);
        assert!(Penalties::NONE.names().is_empty());
    }

    #[test]
    fn relative_rule_flags_the_outlier_against_the_median_of_the_others() {
        let latencies = [Some(25.0), Some(30.0), Some(425.0), None];
        assert_eq!(
            relatively_slow(&latencies, 3.0),
            vec![false, false, true, false]
        );
        // Off, or too few with data: nobody.
        assert_eq!(relatively_slow(&latencies, 0.0), vec![false; 4]);
        assert_eq!(relatively_slow(&[Some(1.0), None], 3.0), vec![false; 2]);
    }

    #[test]
    fn relative_rule_needs_the_floor_too() {
        // 9 ms is four times 2 ms, but not 10 ms more: noise.
        assert_eq!(
            relatively_slow(&[Some(2.0), Some(9.0)], 3.0),
            vec![false, false]
        );
        assert_eq!(
            relatively_slow(&[Some(2.0), Some(13.0)], 3.0),
            vec![false, true]
        );
    }

    /// The rule as written: for each candidate, the median of the others
    /// from a sorted copy without its own value.
    fn relatively_slow_by_copies(latencies: &[Option<f64>], factor: f64) -> Vec<bool> {
        let known: Vec<f64> = latencies.iter().flatten().copied().collect();
        if factor <= 0.0 || known.len() < 2 {
            return vec![false; latencies.len()];
        }
        latencies
            .iter()
            .map(|own| {
                let Some(own) = *own else {
                    return false;
                };
                let mut rest = known.clone();
                if let Some(at) = rest.iter().position(|l| *l == own) {
                    rest.swap_remove(at);
                }
                rest.sort_by(f64::total_cmp);
                rest.get(rest.len().saturating_sub(1) / 2)
                    .is_some_and(|&median| own > factor * median && own > median + LATENCY_FLOOR_MS)
            })
            .collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]
        #[test]
        fn the_sorted_once_rule_equals_the_rule_as_written(
            latencies in proptest::collection::vec(
                proptest::option::weighted(0.8, proptest::prop_oneof![
                    0.0_f64..2_000.0,
                    (0_u32..6).prop_map(|step| f64::from(step) * 20.0),
                ]),
                0..12,
            ),
            factor in proptest::prop_oneof![proptest::strategy::Just(0.0), 1.0_f64..5.0],
        ) {
            proptest::prop_assert_eq!(
                relatively_slow(&latencies, factor),
                relatively_slow_by_copies(&latencies, factor)
            );
        }
    }
}
