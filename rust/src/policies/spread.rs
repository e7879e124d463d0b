//! `spread` (the default): among the models within `spread_margin` score
//! points of the best, the least busy first, so a batch spreads over
//! near-equal models instead of piling onto the top one.

use super::ModelOrdering;
use crate::scoring::ScoreBreakdown;

/// Best score first, except that the near-best are tried least busy first.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    margin: f64,
}

impl Spread {
    /// Near-best means within `margin` points (finite, >= 0) of the best.
    pub fn new(margin: f64) -> Self {
        Self { margin }
    }
}

impl ModelOrdering for Spread {
    fn name(&self) -> &'static str {
        "spread"
    }

    fn order(&self, scored: &mut [(usize, ScoreBreakdown)], busy: &dyn Fn(usize) -> f64) {
        let best = scored.first().map_or(0.0, |s| s.1.performance_score);
        let near = scored
            .iter()
            .take_while(|s| s.1.performance_score >= best - self.margin)
            .count();
        if near < 2 {
            return;
        }
        let Some(head) = scored.get_mut(..near) else {
            return;
        };
        // Busyness read once per model, not once per comparison.
        let mut keyed: Vec<(f64, (usize, ScoreBreakdown))> =
            head.iter().map(|entry| (busy(entry.0), *entry)).collect();
        // Total (model indices are unique): unstable gives the stable order.
        keyed.sort_unstable_by(|a, b| {
            a.0.total_cmp(&b.0)
                .then(
                    b.1 .1
                        .performance_score
                        .total_cmp(&a.1 .1.performance_score),
                )
                .then(a.1 .0.cmp(&b.1 .0))
        });
        for (slot, (_, entry)) in head.iter_mut().zip(keyed) {
            *slot = entry;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::policies::tests_support::scored;

    #[test]
    fn near_best_models_go_least_busy_first_and_the_rest_keep_score_order() {
        // Scores 90, 85, 60; margin 10: models 0 and 1 are near-best.
        let mut order = scored(&[90.0, 85.0, 60.0]);
        let busy = |m: usize| [3.0, 1.0, 0.0].get(m).copied().unwrap_or(0.0);
        Spread::new(10.0).order(&mut order, &busy);
        let models: Vec<usize> = order.iter().map(|s| s.0).collect();
        assert_eq!(models, vec![1, 0, 2], "model 2 is idle but too far behind");
    }

    #[test]
    fn equally_busy_near_best_models_keep_score_order() {
        let mut order = scored(&[80.0, 90.0, 85.0]);
        order.sort_by(|a, b| b.1.performance_score.total_cmp(&a.1.performance_score));
        let busy = |_: usize| 1.0;
        Spread::new(10.0).order(&mut order, &busy);
        let models: Vec<usize> = order.iter().map(|s| s.0).collect();
        assert_eq!(models, vec![1, 2, 0]);
    }

    #[test]
    fn a_zero_margin_only_reorders_exact_ties() {
        let mut order = scored(&[90.0, 90.0, 89.0]);
        let busy = |m: usize| if m == 0 { 5.0 } else { 0.0 };
        Spread::new(0.0).order(&mut order, &busy);
        let models: Vec<usize> = order.iter().map(|s| s.0).collect();
        assert_eq!(models, vec![1, 0, 2]);
    }
}
