//! Complexity ranges: the complexity band each model suits, per context,
//! and the tuning that moves a band's upper edge from recorded outcomes.
//!
//! A model's outcomes are counted by complexity decile; a model that keeps
//! succeeding on the hardest requests it is given has its edge raised, one
//! that falls short has it lowered. The edges are atomics, so tuning runs
//! beside routing without a lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Complexity deciles outcomes are counted in.
const BINS: usize = 10;

/// One change made by [`super::RouterCore::tune_ranges`].
#[derive(Debug, Clone, PartialEq)]
pub struct RangeChange {
    pub model: usize,
    pub context: usize,
    pub old_high: f64,
    pub new_high: f64,
    pub requests: u64,
    pub success_rate: f64,
}

/// How [`ComplexityRanges::tune`] decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// Outcomes needed at the edge before it moves.
    pub min_requests: u64,
    /// At least this success rate at the edge raises it; 10 points less lowers it.
    pub target_success_rate: f64,
    /// How far the edge moves.
    pub step: f64,
}

struct RangeCell {
    low: AtomicU64,
    high: AtomicU64,
}

impl RangeCell {
    fn new((low, high): (f64, f64)) -> Self {
        Self {
            low: AtomicU64::new(low.to_bits()),
            high: AtomicU64::new(high.to_bits()),
        }
    }

    fn get(&self) -> (f64, f64) {
        (
            f64::from_bits(self.low.load(Ordering::Relaxed)),
            f64::from_bits(self.high.load(Ordering::Relaxed)),
        )
    }
}

fn bin_of(complexity: f64) -> usize {
    ((complexity * BINS as f64) as usize).min(BINS - 1)
}

/// One model's ranges (index 0: its own; then one per context) and the
/// outcomes counted per context and decile: (requests, successes).
pub struct ComplexityRanges {
    cells: Vec<RangeCell>,
    outcomes: Vec<[[AtomicU64; 2]; BINS]>,
}

impl ComplexityRanges {
    /// Ranges as configured: own first, then one per context.
    pub fn new(ranges: &[(f64, f64)]) -> Self {
        Self {
            cells: ranges.iter().copied().map(RangeCell::new).collect(),
            outcomes: ranges
                .iter()
                .map(|_| std::array::from_fn(|_| [AtomicU64::new(0), AtomicU64::new(0)]))
                .collect(),
        }
    }

    /// The range in `context` (its own when the context has none).
    pub fn get(&self, context: usize) -> Option<(f64, f64)> {
        self.cells
            .get(context)
            .or_else(|| self.cells.first())
            .map(RangeCell::get)
    }

    /// Whether `complexity` lies in the range of `context` (no range: yes).
    #[inline]
    pub fn holds(&self, context: usize, complexity: f64) -> bool {
        let (low, high) = self.get(context).unwrap_or((0.0, 1.0));
        (low..=high).contains(&complexity)
    }

    /// Counts one outcome of a request of `complexity` in `context`.
    pub fn count(&self, context: usize, complexity: f64, success: bool) {
        if let Some([requests, successes]) = self
            .outcomes
            .get(context)
            .and_then(|bins| bins.get(bin_of(complexity)))
        {
            requests.fetch_add(1, Ordering::Relaxed);
            successes.fetch_add(u64::from(success), Ordering::Relaxed);
        }
    }

    /// Moves the upper edge of every range below 1 by `step`: up when the
    /// model kept succeeding (at least `target_success_rate`) on the
    /// hardest requests it was given (those in the deciles overlapping the
    /// last tenth under its edge, at least `min_requests` of them), down
    /// when it fell more than 10 points short. The evidence is spent on a
    /// change. `model` only labels the changes.
    pub fn tune(&self, model: usize, tuning: Tuning) -> Vec<RangeChange> {
        let mut changes = Vec::new();
        for (context, (cell, bins)) in self.cells.iter().zip(&self.outcomes).enumerate() {
            let (low, high) = cell.get();
            if high >= 1.0 || high <= 0.0 {
                continue;
            }
            let first = bin_of((high - 0.1).max(0.0));
            let last = bin_of((high - 1e-9).max(0.0));
            let edge = bins.get(first..=last).unwrap_or_default();
            let total: u64 = edge.iter().map(|[r, _]| r.load(Ordering::Relaxed)).sum();
            let succeeded: u64 = edge.iter().map(|[_, s]| s.load(Ordering::Relaxed)).sum();
            if total < tuning.min_requests {
                continue;
            }
            let rate = succeeded as f64 / total as f64;
            let new_high = if rate >= tuning.target_success_rate {
                (high + tuning.step).min(1.0)
            } else if rate < tuning.target_success_rate - 0.1 {
                (high - tuning.step).max(low)
            } else {
                continue;
            };
            cell.high.store(new_high.to_bits(), Ordering::Relaxed);
            for [requests, successes] in bins {
                requests.store(0, Ordering::Relaxed);
                successes.store(0, Ordering::Relaxed);
            }
            changes.push(RangeChange {
                model,
                context,
                old_high: high,
                new_high,
                requests: total,
                success_rate: rate,
            });
        }
        changes
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const TUNING: Tuning = Tuning {
        min_requests: 10,
        target_success_rate: 0.9,
        step: 0.05,
    };

    #[test]
    fn a_context_without_a_range_uses_the_models_own() {
        let ranges = ComplexityRanges::new(&[(0.0, 0.4)]);
        assert_eq!(ranges.get(3), Some((0.0, 0.4)));
        assert!(ranges.holds(0, 0.4));
        assert!(!ranges.holds(2, 0.41));
    }

    #[test]
    fn success_at_the_edge_raises_it_and_spends_the_evidence() {
        let ranges = ComplexityRanges::new(&[(0.0, 0.5)]);
        for _ in 0..10 {
            ranges.count(0, 0.45, true);
        }
        ranges.count(0, 0.1, false);
        let changes = ranges.tune(7, TUNING);
        assert_eq!(changes.len(), 1);
        let change = changes.first().cloned();
        assert_eq!(
            change.as_ref().map(|c| (c.model, c.requests)),
            Some((7, 10))
        );
        assert_eq!(ranges.get(0), Some((0.0, 0.55)));
        assert!(ranges.tune(7, TUNING).is_empty(), "the evidence was spent");
    }

    #[test]
    fn failure_at_the_edge_lowers_it_but_never_below_the_low_edge() {
        let ranges = ComplexityRanges::new(&[(0.48, 0.5)]);
        for _ in 0..10 {
            ranges.count(0, 0.49, false);
        }
        ranges.tune(0, TUNING);
        assert_eq!(ranges.get(0), Some((0.48, 0.48)));
    }

    #[test]
    fn too_little_evidence_or_a_full_range_changes_nothing() {
        let ranges = ComplexityRanges::new(&[(0.0, 0.5), (0.0, 1.0)]);
        for _ in 0..9 {
            ranges.count(0, 0.45, true);
        }
        for _ in 0..50 {
            ranges.count(1, 0.95, true);
        }
        assert!(ranges.tune(0, TUNING).is_empty());
        // Middling success (within 10 points under the target): no move.
        let middling = ComplexityRanges::new(&[(0.0, 0.5)]);
        for i in 0..20 {
            middling.count(0, 0.45, i % 20 >= 3);
        }
        assert!(middling.tune(0, TUNING).is_empty(), "17 of 20 at the edge");
        assert_eq!(middling.get(0), Some((0.0, 0.5)));
    }
}
