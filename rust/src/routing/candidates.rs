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
        let mut unserved = false;
        let mut inputs = Vec::with_capacity(self.models.len());
        for (m, model) in self.models.iter().enumerate() {
            if model.unserved.blocks(view.needs, now) {
                unserved = true;
                continue;
            }
            let served = if unclaimed {
                model.best_text_task()
            } else {
                Some(target.task)
            };
            let Some((served, configured)) =
                served.and_then(|t| model.capability(t).map(|cap| (t, cap)))
            else {
                continue;
            };
            let cost = self
                .cost
                .as_ref()
                .map_or(0.0, |knob| knob.penalty(m, view.prompt_tokens));
            inputs.push(CandidateInput {
                index: m,
                capability: capability_term(configured, learned.get(m).copied(), cost),
                live: LiveMetrics::from_totals(&model.totals(served, now, minimum)),
            });
        }
        if inputs.is_empty() {
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
        let scored = score_candidates(
            &self.scorer,
            self.resilience.relative_latency_factor,
            &inputs,
        )?;
        let (mut suited, mut others): (Vec<_>, Vec<_>) = scored.into_iter().partition(|(m, _)| {
            self.models
                .get(*m)
                .is_some_and(|model| model.ranges.holds(target.context, target.complexity))
        });
        self.order(&mut suited);
        self.order(&mut others);
        suited.extend(others);
        Ok(suited)
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
            let inputs: Vec<CandidateInput> = self
                .models
                .iter()
                .enumerate()
                .filter_map(|(m, model)| {
                    model.capability(task).map(|capability| CandidateInput {
                        index: m,
                        capability,
                        live: LiveMetrics::from_totals(&model.totals(task, now, minimum)),
                    })
                })
                .collect();
            let scored = score_candidates(
                &self.scorer,
                self.resilience.relative_latency_factor,
                &inputs,
            )?;
            out.extend(scored.into_iter().map(|(m, b)| (m, task, b)));
        }
        out.sort_by_key(|(m, task, _)| (*m, *task));
        Ok(out)
    }
}
