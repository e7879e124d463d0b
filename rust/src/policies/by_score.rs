//! `by_score`: strictly best score first, whatever the load (models are
//! still passed over when their replicas are full). For deployments where
//! the best model should take everything it can.

use super::ModelOrdering;
use crate::scoring::ScoreBreakdown;

/// Keeps the score order the candidates come in.
#[derive(Debug, Default, Clone, Copy)]
pub struct ByScore;

impl ModelOrdering for ByScore {
    fn name(&self) -> &'static str {
        "by_score"
    }

    fn order(&self, _scored: &mut [(usize, ScoreBreakdown)], _busy: &dyn Fn(usize) -> f64) {}
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::policies::tests_support::scored;

    #[test]
    fn busyness_does_not_change_the_order() {
        let mut order = scored(&[90.0, 89.9, 10.0]);
        let busy = |m: usize| if m == 0 { 100.0 } else { 0.0 };
        ByScore.order(&mut order, &busy);
        let models: Vec<usize> = order.iter().map(|s| s.0).collect();
        assert_eq!(models, vec![0, 1, 2]);
    }
}
