//! The candidates of one request: the models that serve its task and
//! features, scored in one pass from their windows (the pass the pool runs
//! too), in the order they are tried.

use super::models::{RoutedModel, TASKS};
use super::RouterCore;
use crate::candidates::{score_candidates, sort_by_score, CandidateInput, LiveMetrics};
use crate::errors::ZetaError;
use crate::learned_capability::RequestView;
use crate::profile::TEXT_TASKS;
use crate::request_kinds::feature_names;
use crate::scoring::{capability_term, ScoreBreakdown};

/// What a decision is for: the request's task, complexity and context
/// (0 = none; else 1 + the context's index).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub task: usize,
    pub complexity: f64,
    pub context: usize,
}

impl RouterCore {
    /// The capable models of a request, scored and in the order they are
    /// tried: those whose range holds the complexity first, then the rest,
    /// each group ordered by the model ordering.
    pub(super) fn candidates(
        &self,
        target: Target,
        now: u64,
        view: &RequestView,
    ) -> Result<Vec<(usize, ScoreBreakdown)>, ZetaError> {
        // Every model's learned capability for this request, in one pass.
        let learned = match (&self.learning, &view.learned) {
            (Some(learning), Some(request)) => learning.capabilities(request),
            _ => Vec::new(),
        };
        // A text request of a type nobody declares still deserves an answer:
        // then every text model is a candidate at its best text capability.
        let unclaimed = target.task < TEXT_TASKS.len()
            && self
                .models
                .iter()
                .all(|m| m.capability(target.task).is_none());
        let minimum = self.scorer.config().min_requests_for_performance;
        let kind = crate::verdicts::kind_of(view.needs);
        let inputs = self.models.iter().enumerate().filter_map(|(m, model)| {
            if model.unserved.blocks(view.needs, now) {
                return None;
            }
            let served = if unclaimed {
                model.best_text_task()?
            } else {
                target.task
            };
            let configured = model.capability(served)?;
            let cost = self
                .cost
                .as_ref()
                .map_or(0.0, |knob| knob.penalty(m, view.prompt_tokens));
            // A model whose recent answers of this kind failed their
            // structural checks (JSON that does not parse, broken tool
            // calls) is worth that much less for requests of the kind.
            let honoured = model.checks.factor(kind, now, self.check_ttl_ms);
            Some(CandidateInput {
                index: m,
                capability: honoured * capability_term(configured, learned.get(m).copied(), cost),
                live: LiveMetrics::from_totals(&model.totals(served, now, minimum)),
            })
        });
        let mut scored = score_candidates(
            &self.scorer,
            self.resilience.relative_latency_factor,
            inputs,
        )?;
        if scored.is_empty() {
            let unserved = self
                .models
                .iter()
                .any(|m| m.unserved.blocks(view.needs, now));
            return Err(if unserved {
                ZetaError::Unsupported {
                    who: "no model here serves".to_owned(),
                    features: feature_names(view.needs),
                }
            } else {
                ZetaError::InvalidName {
                    field: "task",
                    problem: "has no capable model in this router",
                    value: TASKS.get(target.task).copied().unwrap_or("?").to_owned(),
                }
            });
        }
        // Those whose range holds the request first, swapped to the front in
        // place (each group is sorted by score next, so order within does
        // not matter here).
        let mut suited = 0;
        for i in 0..scored.len() {
            let holds = scored
                .get(i)
                .and_then(|(m, _)| self.models.get(*m))
                .is_some_and(|model| model.ranges.holds(target.context, target.complexity));
            if holds {
                scored.swap(i, suited);
                suited += 1;
            }
        }
        let (head, tail) = scored.split_at_mut(suited);
        self.order(head);
        self.order(tail);
        Ok(scored)
    }

    /// Score order, then the model ordering's.
    fn order(&self, scored: &mut [(usize, ScoreBreakdown)]) {
        sort_by_score(scored);
        let busy = |m: usize| self.models.get(m).map_or(0.0, RoutedModel::busy);
        self.ordering.order(scored, &busy);
    }

    /// A named model that does not serve the task: scored at capability 0
    /// from the windows its outcome will be recorded in.
    pub(super) fn score_uncapable(
        &self,
        m: usize,
        task: usize,
        now: u64,
    ) -> Result<ScoreBreakdown, ZetaError> {
        let model = self.models.get(m).ok_or(ZetaError::ForeignDecision)?;
        let minimum = self.scorer.config().min_requests_for_performance;
        let live = LiveMetrics::from_totals(&model.totals(model.served_task(task), now, minimum));
        self.scorer
            .score(0.0, live.success_rate, live.avg_latency_ms, live.requests)
    }

    /// Every model's score now for every task it serves, as `route` would
    /// see it for a request without text (for metrics and dashboards):
    /// (model, task, breakdown), by model then task.
    pub fn scores(&self) -> Result<Vec<(usize, usize, ScoreBreakdown)>, ZetaError> {
        let now = self.tracker.clock().now_ms();
        let minimum = self.scorer.config().min_requests_for_performance;
        let mut out = Vec::new();
        for task in 0..TASKS.len() {
            let inputs = self.models.iter().enumerate().filter_map(|(m, model)| {
                model.capability(task).map(|capability| CandidateInput {
                    index: m,
                    capability,
                    live: LiveMetrics::from_totals(&model.totals(task, now, minimum)),
                })
            });
            let scored = score_candidates(
                &self.scorer,
                self.resilience.relative_latency_factor,
                inputs,
            )?;
            out.extend(scored.into_iter().map(|(m, b)| (m, task, b)));
        }
        out.sort_by_key(|(m, task, _)| (*m, *task));
        Ok(out)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::test_support::{model, Build, Harness, CHAT, CODE};
    use super::super::Resilience;
    use crate::candidates::LiveMetrics;
    use crate::errors::ZetaError;
    use crate::learned_capability::RequestView;
    use crate::penalties::Penalties;
    use crate::pool::CandidatePool;
    use crate::scoring::{AdaptiveScorer, ScoreBreakdown};

    use super::Target;

    const CHAT_TARGET: Target = Target {
        task: CHAT,
        complexity: 0.5,
        context: 0,
    };

    fn close(a: &ScoreBreakdown, b: &ScoreBreakdown) -> bool {
        let near = |x: f64, y: f64| (x - y).abs() < 1e-9;
        near(a.performance_score, b.performance_score)
            && near(a.blended_score, b.blended_score)
            && near(a.success_rate, b.success_rate)
            && near(a.avg_latency_ms, b.avg_latency_ms)
            && near(a.requests, b.requests)
            && a.penalties == b.penalties
            && a.has_performance_data == b.has_performance_data
    }

    fn score_of(
        scores: &[(usize, usize, ScoreBreakdown)],
        m: usize,
        task: usize,
    ) -> Result<ScoreBreakdown, ZetaError> {
        scores
            .iter()
            .find(|(sm, st, _)| (*sm, *st) == (m, task))
            .map(|s| s.2)
            .ok_or(ZetaError::ForeignDecision)
    }

    #[test]
    fn scores_are_the_scorers_own_on_each_models_live_metrics() -> Result<(), ZetaError> {
        let h = Build::new(vec![
            model("a", &[("code", 90.0), ("chat", 70.0)], &[0, 0]),
            model("b", &[("chat", 80.0)], &[0]),
        ])
        .build()?;
        // a/code: 12 outcomes over both replicas, 9 good, 100 ms each.
        h.record_n(0, 0, CODE, 8, true, 100.0)?;
        h.record_n(0, 1, CODE, 1, true, 100.0)?;
        h.record_n(0, 1, CODE, 3, false, 100.0)?;
        // a/chat: 3 outcomes, too few: the whole model's 15 stand in
        // (12 good, (12 x 100 + 3 x 40) / 15 = 88 ms).
        h.record_n(0, 0, CHAT, 3, true, 40.0)?;
        // b/chat: 20 outcomes, 19 good, 200 ms.
        h.record_n(1, 0, CHAT, 19, true, 200.0)?;
        h.record_n(1, 0, CHAT, 1, false, 200.0)?;
        let scorer = AdaptiveScorer::new(crate::config::AdaptiveConfig::default())?;
        let expected = [
            (0, CODE, scorer.score(90.0, 0.75, 100.0, 12)?),
            (0, CHAT, scorer.score(70.0, 0.8, 88.0, 15)?),
            (1, CHAT, scorer.score(80.0, 0.95, 200.0, 20)?),
        ];
        let scores = h.core.scores()?;
        let pairs: Vec<(usize, usize)> = scores.iter().map(|(m, t, _)| (*m, *t)).collect();
        assert_eq!(
            pairs,
            vec![(0, CODE), (0, CHAT), (1, CHAT)],
            "served pairs only"
        );
        for (m, task, want) in expected {
            let got = score_of(&scores, m, task)?;
            assert!(close(&got, &want), "({m}, {task}): {got:?} != {want:?}");
        }
        // The same as each model's totals through LiveMetrics, exactly.
        for (m, task, got) in &scores {
            let routed = h.core.models().get(*m).ok_or(ZetaError::ForeignDecision)?;
            let live = LiveMetrics::from_totals(&routed.totals(*task, h.clock.now_ms(), 10));
            let capability = routed.capability(*task).unwrap_or(f64::NAN);
            let own = scorer.score(
                capability,
                live.success_rate,
                live.avg_latency_ms,
                live.requests,
            )?;
            assert_eq!(*got, own, "({m}, {task})");
        }
        assert!(score_of(&scores, 0, CODE)?
            .penalties
            .contains(Penalties::LOW_SUCCESS_RATE));
        Ok(())
    }

    /// a (95) answers in 500 ms, b (80) and c (70) in 50 ms: 20 good outcomes each.
    fn slow_best(h: &Harness) -> Result<(), ZetaError> {
        h.record_n(0, 0, CHAT, 20, true, 500.0)?;
        h.record_n(1, 0, CHAT, 20, true, 50.0)?;
        h.record_n(2, 0, CHAT, 20, true, 50.0)?;
        Ok(())
    }

    fn three_chat_models() -> Vec<super::super::ModelInput> {
        vec![
            model("a", &[("chat", 95.0)], &[0]),
            model("b", &[("chat", 80.0)], &[0]),
            model("c", &[("chat", 70.0)], &[0]),
        ]
    }

    fn relative(factor: f64) -> Resilience {
        Resilience {
            relative_latency_factor: factor,
            ..Resilience::default()
        }
    }

    #[test]
    fn a_model_ten_times_slower_than_the_others_gets_the_relative_latency_penalty(
    ) -> Result<(), ZetaError> {
        let h = Build::new(three_chat_models())
            .resilience(relative(3.0))
            .build()?;
        slow_best(&h)?;
        let scores = h.core.scores()?;
        let slow = score_of(&scores, 0, CHAT)?;
        // 500 ms is not above the absolute threshold (500): only the
        // relative rule (> 3 x 50 ms and 10 ms more) flags it.
        assert!(slow.penalties.contains(Penalties::RELATIVE_LATENCY));
        assert!(!slow.penalties.contains(Penalties::HIGH_LATENCY));
        assert!((slow.penalty_factor - 0.8).abs() < 1e-12);
        for m in [1, 2] {
            assert!(score_of(&scores, m, CHAT)?.penalties.is_empty(), "{m}");
        }
        // Penalised (89.5 x 0.8 = 71.6) a falls behind b (87.25).
        let d = h.route(CHAT, 0.5)?;
        assert_eq!(d.model, 1);
        assert_eq!(d.breakdown, score_of(&scores, 1, CHAT)?);
        assert!(d
            .runners_up
            .iter()
            .any(|&(m, s)| m == 0 && (s - slow.performance_score).abs() < 1e-9));
        // Named, a carries the penalty in its own breakdown.
        let named = h
            .core
            .route_to(0, CHAT_TARGET, RequestView::default(), None)?;
        assert_eq!(named.breakdown, slow);
        // Without the rule a (89.5) stays the best.
        let off = Build::new(three_chat_models())
            .on_tracker(h.core.tracker().clone(), h.clock.clone())
            .build()?;
        let unpenalised = score_of(&off.core.scores()?, 0, CHAT)?;
        assert!(unpenalised.penalties.is_empty());
        assert_eq!(off.route(CHAT, 0.5)?.model, 0);
        Ok(())
    }

    #[test]
    fn the_pool_and_the_router_cannot_disagree() -> Result<(), ZetaError> {
        let inputs = vec![
            model("a", &[("code", 90.0), ("chat", 95.0)], &[0, 0]),
            model("b", &[("chat", 80.0)], &[0]),
            model("c", &[("chat", 70.0), ("code", 85.0)], &[0, 0]),
        ];
        for factor in [0.0, 3.0] {
            let h = Build::new(inputs.clone())
                .resilience(relative(factor))
                .build()?;
            let pool = CandidatePool::new(
                h.core.tracker().clone(),
                AdaptiveScorer::new(crate::config::AdaptiveConfig::default())?,
                inputs
                    .iter()
                    .map(|m| (m.id.clone(), m.capabilities.clone()))
                    .collect(),
            )?
            .with_relative_latency(factor)?;
            let compare = |stage: &str| -> Result<(), ZetaError> {
                let scores = h.core.scores()?;
                for (task, name) in [(CODE, "code"), (CHAT, "chat")] {
                    let d = h.route(task, 0.5)?;
                    h.core.release(&d);
                    let t = pool.task_index(name)?;
                    assert_eq!(pool.best(t)?, d.model, "{stage}, {name}, factor {factor}");
                    let from_pool = pool.score(t)?;
                    let from_router: Vec<(usize, ScoreBreakdown)> = scores
                        .iter()
                        .filter(|(_, st, _)| *st == task)
                        .map(|(m, _, b)| (*m, *b))
                        .collect();
                    assert_eq!(from_pool, from_router, "{stage}, {name}, factor {factor}");
                    let chosen = from_pool
                        .iter()
                        .find(|(m, _)| *m == d.model)
                        .map(|(_, b)| *b);
                    assert_eq!(chosen, Some(d.breakdown), "{stage}, {name}");
                }
                Ok(())
            };
            compare("no data")?;
            // a is the slow best at chat; c's code has too few outcomes of
            // its own, so its chat outcomes stand in.
            slow_best(&h)?;
            h.record_n(2, 1, CODE, 4, false, 50.0)?;
            h.record_n(0, 1, CODE, 12, true, 60.0)?;
            compare("slow a")?;
            // a fails at code: penalised, c takes code.
            h.record_n(0, 0, CODE, 8, false, 60.0)?;
            compare("failing a")?;
            // Everything expires: capability alone again.
            h.advance(301_000);
            compare("expired")?;
        }
        Ok(())
    }

    #[test]
    fn a_model_whose_range_holds_the_complexity_comes_before_a_more_capable_one(
    ) -> Result<(), ZetaError> {
        let h = Build::new(vec![
            super::super::ModelInput {
                ranges: vec![(0.0, 0.4), (0.0, 0.2)],
                ..model("strong", &[("chat", 90.0)], &[0])
            },
            super::super::ModelInput {
                ranges: vec![(0.3, 1.0)],
                ..model("suited", &[("chat", 70.0)], &[1])
            },
        ])
        .build()?;
        let route = |complexity: f64, context: usize| {
            h.core
                .route(CHAT, complexity, context, RequestView::default())
        };
        let d = route(0.8, 0)?;
        assert_eq!(d.model, 1, "0.8 is outside strong's range");
        assert_eq!(d.runners_up, vec![(0, 90.0)]);
        // Both hold 0.35: score decides; only strong holds 0.1.
        let both = route(0.35, 0)?;
        let low = route(0.1, 0)?;
        assert_eq!((both.model, low.model), (0, 0));
        // suited is full (capacity 1, held by d): strong still serves 0.8.
        assert_eq!(route(0.8, 0)?.model, 0);
        h.core.release(&d);
        // Strong's range in context 1 ends at 0.2: 0.3 goes to suited there.
        assert_eq!(route(0.3, 1)?.model, 1);
        Ok(())
    }
}
