//! Fixed log-scaled latency bins: a bin's upper edge is 4 % above its lower
//! edge, so reporting the geometric middle of a bin is within 2 % of any
//! latency in it.

use crate::errors::{float_repr, ZetaError};

/// Ratio between consecutive bin edges. With the geometric midpoint as the
/// reported value the relative error is at most `sqrt(GAMMA) - 1` = 1.98 %.
pub const GAMMA: f64 = 1.04;

/// Worst-case relative error of a reported percentile (for values inside the range).
pub fn max_relative_error() -> f64 {
    GAMMA.sqrt() - 1.0
}

/// The bin layout for one latency range: bin 0 holds everything below
/// `min_ms`, the last bin everything from `max_ms` up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyBins {
    min_ms: f64,
    max_ms: f64,
    ln_min: f64,
    inv_ln_gamma: f64,
    inner: usize,
}

impl LatencyBins {
    /// Bins covering `[min_ms, max_ms)` at 4 % steps, plus an underflow and an overflow bin.
    pub fn new(min_ms: f64, max_ms: f64) -> Result<Self, ZetaError> {
        if !(min_ms.is_finite() && min_ms > 0.0) {
            return Err(ZetaError::InvalidConfig {
                field: "latency_min_ms",
                expected: "finite and > 0",
                value: float_repr(min_ms),
            });
        }
        if !(max_ms.is_finite() && max_ms > min_ms) {
            return Err(ZetaError::InvalidConfig {
                field: "latency_max_ms",
                expected: "finite and > latency_min_ms",
                value: float_repr(max_ms),
            });
        }
        let inv_ln_gamma = 1.0 / GAMMA.ln();
        let inner = ((max_ms / min_ms).ln() * inv_ln_gamma).ceil() as usize;
        Ok(Self {
            min_ms,
            max_ms,
            ln_min: min_ms.ln(),
            inv_ln_gamma,
            inner,
        })
    }

    /// Total number of bins, underflow and overflow included.
    pub fn len(&self) -> usize {
        self.inner + 2
    }

    /// Never empty: there are always the underflow and overflow bins.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The bin a latency falls in. Callers pass finite, non-negative values.
    #[inline]
    pub fn index(&self, latency_ms: f64) -> usize {
        if latency_ms < self.min_ms {
            return 0;
        }
        if latency_ms >= self.max_ms {
            return self.inner + 1;
        }
        let position = ((latency_ms.ln() - self.ln_min) * self.inv_ln_gamma) as usize;
        // Rounding at an edge can land one past the last inner bin.
        1 + position.min(self.inner - 1)
    }

    /// The value reported for a bin: the geometric middle of its edges; the
    /// underflow bin reports `min_ms`, the overflow bin `max_ms`.
    pub fn representative(&self, index: usize) -> f64 {
        if index == 0 {
            return self.min_ms;
        }
        if index > self.inner {
            return self.max_ms;
        }
        let lower = self.min_ms * GAMMA.powi(index as i32 - 1);
        lower * GAMMA.sqrt()
    }

    /// The `quantile` (0..=1) of a histogram with these bins, by nearest rank;
    /// `None` when it is empty.
    pub fn quantile(&self, counts: &[u64], quantile: f64) -> Option<f64> {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        // Nearest rank: the smallest value with at least q * n values at or below it.
        let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, &count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(self.representative(index));
            }
        }
        Some(self.max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_in_range_is_reported_within_two_percent() {
        let bins = LatencyBins::new(0.1, 600_000.0).unwrap();
        let mut value = 0.1;
        while value < 600_000.0 {
            let reported = bins.representative(bins.index(value));
            let error = (reported - value).abs() / value;
            assert!(error <= 0.02, "{value} reported as {reported} ({error})");
            value *= 1.0007;
        }
    }

    #[test]
    fn out_of_range_values_go_to_the_edge_bins() {
        let bins = LatencyBins::new(1.0, 100.0).unwrap();
        assert_eq!(bins.index(0.0), 0);
        assert_eq!(bins.index(0.999), 0);
        assert_eq!(bins.index(100.0), bins.len() - 1);
        assert_eq!(bins.index(1e12), bins.len() - 1);
        assert_eq!(bins.representative(0), 1.0);
        assert_eq!(bins.representative(bins.len() - 1), 100.0);
    }

    #[test]
    fn indices_are_monotonic() {
        let bins = LatencyBins::new(0.1, 600_000.0).unwrap();
        let mut last = 0;
        let mut value = 0.05;
        while value < 700_000.0 {
            let index = bins.index(value);
            assert!(index >= last);
            last = index;
            value *= 1.003;
        }
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let bins = LatencyBins::new(1.0, 1000.0).unwrap();
        let mut counts = vec![0_u64; bins.len()];
        for value in 1..=100 {
            counts[bins.index(value as f64 * 5.0)] += 1;
        }
        let p50 = bins.quantile(&counts, 0.5).unwrap();
        let p99 = bins.quantile(&counts, 0.99).unwrap();
        assert!((p50 - 250.0).abs() / 250.0 <= 0.02, "{p50}");
        assert!((p99 - 495.0).abs() / 495.0 <= 0.02, "{p99}");
        assert_eq!(bins.quantile(&vec![0; bins.len()], 0.5), None);
    }

    #[test]
    fn bad_ranges_are_rejected() {
        assert!(LatencyBins::new(0.0, 1.0).is_err());
        assert!(LatencyBins::new(1.0, 1.0).is_err());
        assert!(LatencyBins::new(1.0, f64::INFINITY).is_err());
    }
}
