//! The learned router's exploration: a bounded share (`learning.explore`)
//! of the requests it sees go to a random other candidate, so that every
//! model's predictions keep meeting outcomes (bandit feedback); without it
//! a model that once looked bad is never tried again.

use super::RouterCore;
use crate::learned_capability::RequestView;
use crate::scoring::ScoreBreakdown;

/// The candidate `draw` (in [0, 1)) explores among `others` candidates
/// after the first: positions 1..=others, spread evenly.
pub(super) fn explored_position(draw: f64, others: usize) -> usize {
    1 + ((draw * others as f64) as usize).min(others.saturating_sub(1))
}

impl RouterCore {
    /// The position among `scored` to explore for this request, when it is
    /// one of the explored share (learning on, its text known, more than one
    /// candidate); `None` otherwise.
    pub(super) fn exploration_pick(
        &self,
        scored: &[(usize, ScoreBreakdown)],
        view: &RequestView,
    ) -> Option<usize> {
        let explore = match (&self.learning, &view.learned) {
            (Some(learning), Some(_)) => learning.explore,
            _ => return None,
        };
        if explore <= 0.0 || scored.len() < 2 || self.rng.unit() >= explore {
            return None;
        }
        Some(explored_position(self.rng.unit(), scored.len() - 1))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn explored_positions_skip_the_best_and_cover_the_others() {
        let positions: Vec<usize> = [0.0, 0.3, 0.5, 0.99]
            .iter()
            .map(|&d| explored_position(d, 3))
            .collect();
        assert_eq!(positions, vec![1, 1, 2, 3]);
        assert_eq!(explored_position(0.999_999, 1), 1);
    }
}
