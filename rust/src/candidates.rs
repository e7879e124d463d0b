//! The one scoring pass: from a candidate set's tracker windows to each
//! candidate's score. The router (route, reroute, its score table) and the
//! tracker-fed pool all score through [`score_candidates`], so they cannot
//! disagree; the per-candidate formula is [`AdaptiveScorer::score`] and the
//! rules over the whole set (the relative latency rule) live in
//! [`crate::penalties`].

use crate::errors::ZetaError;
use crate::penalties::{relatively_slow, Penalties};
use crate::scoring::{AdaptiveScorer, ScoreBreakdown};
use crate::window::Totals;

/// The live metrics a candidate is scored with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveMetrics {
    pub requests: u64,
    pub success_rate: f64,
    pub avg_latency_ms: f64,
}

impl LiveMetrics {
    pub fn from_totals(totals: &Totals) -> Self {
        // Without requests the score is the capability alone; these values
        // only need to be valid inputs.
        Self {
            requests: totals.requests,
            success_rate: totals.success_rate().unwrap_or(1.0),
            avg_latency_ms: totals.mean_latency_ms().unwrap_or(0.0),
        }
    }
}

/// One candidate going into the pass: its index (model), its capability
/// term for this request, and its live metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CandidateInput {
    pub index: usize,
    pub capability: f64,
    pub live: LiveMetrics,
}

/// Scores every candidate, then applies the set's rules: with
/// `relative_latency_factor` > 0, a candidate far slower than the others
/// gets the high-latency penalty (unless it already has it). Output order is
/// input order.
pub fn score_candidates(
    scorer: &AdaptiveScorer,
    relative_latency_factor: f64,
    inputs: impl IntoIterator<Item = CandidateInput>,
) -> Result<Vec<(usize, ScoreBreakdown)>, ZetaError> {
    let inputs = inputs.into_iter();
    // Sized for every candidate at once: growing the list (a reallocation
    // and a copy per doubling) cost more than scoring eight candidates.
    let (lower, upper) = inputs.size_hint();
    let mut scored = Vec::with_capacity(upper.unwrap_or(lower));
    for c in inputs {
        let breakdown = scorer.score(
            c.capability,
            c.live.success_rate,
            c.live.avg_latency_ms,
            c.live.requests,
        )?;
        scored.push((c.index, breakdown));
    }
    apply_relative_latency(scorer, relative_latency_factor, &mut scored);
    Ok(scored)
}

/// The relative latency rule over scored candidates, in place.
pub fn apply_relative_latency(
    scorer: &AdaptiveScorer,
    factor: f64,
    scored: &mut [(usize, ScoreBreakdown)],
) {
    if factor <= 0.0 {
        return;
    }
    let latencies: Vec<Option<f64>> = scored
        .iter()
        .map(|(_, b)| b.has_performance_data.then_some(b.avg_latency_ms))
        .collect();
    let penalty = scorer.config().high_latency_penalty;
    for ((_, b), slow) in scored.iter_mut().zip(relatively_slow(&latencies, factor)) {
        if slow && !b.penalties.contains(Penalties::HIGH_LATENCY) {
            b.add_penalty(Penalties::RELATIVE_LATENCY, penalty);
        }
    }
}

/// Best score first; ties in input (configuration) order. The order is
/// total (indices are unique), so the unstable sort gives the stable one's
/// result without its merge buffer.
pub fn sort_by_score(scored: &mut [(usize, ScoreBreakdown)]) {
    scored.sort_unstable_by(|a, b| {
        b.1.performance_score
            .total_cmp(&a.1.performance_score)
            .then(a.0.cmp(&b.0))
    });
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::config::AdaptiveConfig;

    fn input(index: usize, capability: f64, requests: u64, latency: f64) -> CandidateInput {
        CandidateInput {
            index,
            capability,
            live: LiveMetrics {
                requests,
                success_rate: 1.0,
                avg_latency_ms: latency,
            },
        }
    }

    #[test]
    fn each_candidate_gets_the_scorers_own_breakdown() -> Result<(), ZetaError> {
        let scorer = AdaptiveScorer::new(AdaptiveConfig::default())?;
        let inputs = [input(4, 90.0, 50, 100.0), input(2, 80.0, 3, 0.0)];
        let scored = score_candidates(&scorer, 0.0, inputs)?;
        assert_eq!(scored.len(), 2);
        for ((index, breakdown), c) in scored.iter().zip(&inputs) {
            assert_eq!(*index, c.index);
            let alone = scorer.score(
                c.capability,
                c.live.success_rate,
                c.live.avg_latency_ms,
                c.live.requests,
            )?;
            assert_eq!(*breakdown, alone);
        }
        Ok(())
    }

    #[test]
    fn the_relative_rule_penalises_the_slow_one_only_when_on() -> Result<(), ZetaError> {
        let scorer = AdaptiveScorer::new(AdaptiveConfig::default())?;
        let inputs = [
            input(0, 90.0, 50, 25.0),
            input(1, 90.0, 50, 30.0),
            input(2, 90.0, 50, 425.0),
            input(3, 90.0, 2, 900.0),
        ];
        let off = score_candidates(&scorer, 0.0, inputs)?;
        assert!(off.iter().all(|(_, b)| b.penalties.is_empty()));
        let on = score_candidates(&scorer, 3.0, inputs)?;
        let flagged: Vec<usize> = on
            .iter()
            .filter(|(_, b)| b.penalties.contains(Penalties::RELATIVE_LATENCY))
            .map(|(m, _)| *m)
            .collect();
        assert_eq!(flagged, vec![2], "candidate 3 has too little data to judge");
        let (slow_on, slow_off) = (on[2].1, off[2].1);
        let factor = scorer.config().high_latency_penalty;
        assert!((slow_on.performance_score - slow_off.performance_score * factor).abs() < 1e-9);
        Ok(())
    }

    #[test]
    fn invalid_inputs_are_errors_naming_the_field() -> Result<(), ZetaError> {
        let scorer = AdaptiveScorer::new(AdaptiveConfig::default())?;
        let bad = [input(0, f64::NAN, 0, 0.0)];
        let err = score_candidates(&scorer, 0.0, bad)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|m| m.contains("capability")));
        Ok(())
    }

    #[test]
    fn ties_keep_configuration_order() -> Result<(), ZetaError> {
        let scorer = AdaptiveScorer::new(AdaptiveConfig::default())?;
        let mut scored = score_candidates(
            &scorer,
            0.0,
            [
                input(0, 70.0, 0, 0.0),
                input(1, 80.0, 0, 0.0),
                input(2, 80.0, 0, 0.0),
            ],
        )?;
        sort_by_score(&mut scored);
        let order: Vec<usize> = scored.iter().map(|s| s.0).collect();
        assert_eq!(order, vec![1, 2, 0]);
        Ok(())
    }
}
