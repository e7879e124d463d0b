//! Assignment: from a profiled request to a model and a replica slot, and
//! from the outcome back into the windows that feed the next decision.
//!
//! The request path, in the order it runs:
//! 1. [`RouterCore::route`] scores the candidates in one pass
//!    ([`candidates`]: the capable models that can serve the request, each
//!    scored from its live windows by [`crate::candidates::score_candidates`]);
//!    those whose complexity range ([`ranges`]) holds the request come first.
//! 2. The model ordering ([`crate::policies::ModelOrdering`], `spread` by
//!    default) puts each group in the order it is tried; the learned
//!    router's [`exploration`] sends a bounded share elsewhere.
//! 3. The first model with a free slot gets the request: its replica policy
//!    ([`crate::policies::ReplicaPolicy`]) chooses, passing over replicas
//!    that are slow or failing beside their twins ([`replicas`]).
//! 4. A failed attempt goes to [`RouterCore::reroute`] (within the retry
//!    [`budgets`]); the outcome goes to [`RouterCore::record_outcome`]
//!    ([`outcomes`]), which frees the slot and feeds windows, breakers,
//!    replica health, ranges and the learned router, then tells the
//!    [`sinks`] (the trend detectors; the bindings append to the outcome log).
//!
//! Size: ~540 lines of code (the three entry points and their accessors)
//! and ~270 of tests, which exercise the modules below through them.

mod budgets;
mod candidates;
mod exploration;
mod models;
mod outcomes;
mod ranges;
mod replicas;
mod settings;
mod sinks;
#[cfg(all(test, not(loom)))]
mod test_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use models::{ModelInput, RoutedModel, TASKS};
pub use outcomes::Outcome;
pub use ranges::{RangeChange, Tuning};
pub use settings::Resilience;
pub use sinks::{EventKind, OutcomeEvent, OutcomeSink};

use self::budgets::Budgets;
pub use self::candidates::Target;
use crate::errors::ZetaError;
use crate::learned_capability::{category_of, CostKnob, Learning, RequestView};
use crate::outcome::{HistogramSnapshot, LatencyHistogram, OVERHEAD_BOUNDS_MS};
use crate::policies::ModelOrdering;
use crate::prefix::Routed;
use crate::request_kinds::feature_names;
use crate::rng::SharedRng;
use crate::scoring::{AdaptiveScorer, ScoreBreakdown};
use crate::tracker::PerformanceTracker;

/// One routing decision: which model and replica, and why.
#[derive(Debug, Clone)]
pub struct Decision {
    pub model: usize,
    pub replica: usize,
    pub task: usize,
    pub complexity: f64,
    pub context: usize,
    pub breakdown: ScoreBreakdown,
    /// The other candidates in the order they were considered, with scores.
    pub runners_up: Vec<(usize, f64)>,
    /// The request's learned features and token estimate, for learning
    /// from its outcome and for attempts after this one.
    pub request: RequestView,
    /// Sent to a random other candidate by the learned router's exploration.
    pub explored: bool,
    /// The caller named the model: attempts stay on it and its fallbacks.
    pub pinned: bool,
    /// What a prefix-aware replica policy expected the replica to hold
    /// of the prompt (nothing under other policies).
    pub cache: Routed,
}

/// The router's core: models, their replica slots, the tracker and scorer.
/// How long a structural check record holds without a new verdict: ten
/// minutes, the learned refusals' default too.
pub const DEFAULT_CHECK_TTL_MS: u64 = 600_000;

pub struct RouterCore {
    tracker: Arc<PerformanceTracker>,
    scorer: AdaptiveScorer,
    models: Vec<RoutedModel>,
    ordering: Box<dyn ModelOrdering>,
    resilience: Resilience,
    budgets: Budgets,
    /// Draws for exploration, replica probes and backoff jitter.
    rng: SharedRng,
    /// Time the caller spent deciding and relaying, as it reports it
    /// (a gateway's own share of each request), for metrics pages.
    overhead: LatencyHistogram,
    /// The learned capability term, when learning is on.
    learning: Option<Learning>,
    /// The cost/quality knob, when a willingness to pay is set.
    cost: Option<CostKnob>,
    /// What hears of every recorded outcome (trend detectors, outcome log).
    sinks: sinks::Sinks,
    /// Set by `close`: routing and recording are refused from then on.
    closed: AtomicBool,
    /// Verdicts on answers, per source and model (learned or not).
    verdicts: crate::verdicts::VerdictCounts,
    /// How long a model's structural check record holds with no new
    /// verdict (then it is trusted again for that kind of request).
    check_ttl_ms: u64,
}

impl RouterCore {
    /// Builds the router and registers every (model, replica, task) window.
    /// `replica_policy` names a [`crate::policies::ReplicaPolicy`].
    pub fn new(
        tracker: Arc<PerformanceTracker>,
        scorer: AdaptiveScorer,
        models: Vec<ModelInput>,
        replica_policy: &str,
        ordering: Box<dyn ModelOrdering>,
        resilience: Resilience,
    ) -> Result<Self, ZetaError> {
        let models = models::build(&tracker, models, replica_policy, &resilience)?;
        let verdicts = crate::verdicts::VerdictCounts::new(models.len());
        let now = tracker.clock().now_ms();
        Ok(Self {
            budgets: Budgets::new(&resilience, now),
            rng: SharedRng::new(now | 1),
            overhead: LatencyHistogram::new(&OVERHEAD_BOUNDS_MS),
            resilience,
            tracker,
            scorer,
            models,
            ordering,
            learning: None,
            cost: None,
            sinks: sinks::Sinks::default(),
            closed: AtomicBool::new(false),
            verdicts,
            check_ttl_ms: DEFAULT_CHECK_TTL_MS,
        })
    }

    /// Sets how long a structural check record holds without a new verdict.
    pub fn set_check_ttl_ms(&mut self, ttl_ms: u64) {
        self.check_ttl_ms = ttl_ms;
    }

    /// Verdicts counted so far: `(source, model, good, bad)` (indices).
    pub fn verdict_counts(&self) -> Vec<(usize, usize, u64, u64)> {
        self.verdicts.read()
    }

    /// Refuses every later route and record (`ZetaError::Closed`): a closed
    /// router's outcome log and alerts are stopped, so what it would record
    /// would be lost without a word.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// `Err(Closed)` once `close` was called.
    #[inline(always)]
    pub(crate) fn check_open(&self, operation: &'static str) -> Result<(), ZetaError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(ZetaError::Closed { operation });
        }
        Ok(())
    }

    /// Adds a sink that hears of every outcome recorded from now on.
    pub fn add_sink(&self, sink: Arc<dyn OutcomeSink>) {
        self.sinks.add(sink);
    }

    /// Removes a sink added by `add_sink`; false when it was not there.
    pub fn remove_sink(&self, sink: &Arc<dyn OutcomeSink>) -> bool {
        self.sinks.remove(sink)
    }

    /// Turns the learned capability term on (its predictor's rows must be
    /// this router's models, in order).
    pub fn set_learning(&mut self, learning: Learning) -> Result<(), ZetaError> {
        learning.validate()?;
        let ids: Vec<&str> = self.models.iter().map(|m| &*m.id).collect();
        if learning
            .predictor
            .models()
            .iter()
            .map(String::as_str)
            .ne(ids)
        {
            return Err(ZetaError::InvalidName {
                field: "learning",
                problem: "has a predictor whose models differ from the router's",
                value: learning.predictor.models().join(", "),
            });
        }
        self.learning = Some(learning);
        Ok(())
    }

    /// Sets the cost/quality knob (one price per model, in order).
    pub fn set_cost_knob(&mut self, knob: CostKnob) -> Result<(), ZetaError> {
        knob.validate()?;
        if knob.cost_per_1k_tokens.len() != self.models.len() {
            return Err(ZetaError::InvalidName {
                field: "cost_per_1k_tokens",
                problem: "needs one price per model",
                value: knob.cost_per_1k_tokens.len().to_string(),
            });
        }
        self.cost = Some(knob);
        Ok(())
    }

    /// The learned capability term's settings, when learning is on.
    pub fn learning(&self) -> Option<&Learning> {
        self.learning.as_ref()
    }

    /// The category a request of `task` and `complexity` is learned under.
    pub fn learned_category(task: usize, complexity: f64) -> String {
        category_of(TASKS.get(task).copied().unwrap_or("chat"), complexity)
    }

    /// The models, in configuration order.
    pub fn models(&self) -> &[RoutedModel] {
        &self.models
    }

    /// The index of the model `id`.
    pub fn model_index(&self, id: &str) -> Result<usize, ZetaError> {
        self.models
            .iter()
            .position(|m| &*m.id == id)
            .ok_or_else(|| ZetaError::UnknownName {
                field: "model",
                value: id.to_owned(),
                known: self.model_ids().join(", "),
            })
    }

    /// The model and replica indices of `replica` of model `id`.
    pub fn replica_index(&self, id: &str, replica: &str) -> Result<(usize, usize), ZetaError> {
        let m = self.model_index(id)?;
        let routed = self.models.get(m).ok_or(ZetaError::ForeignDecision)?;
        let r = routed
            .replica_ids
            .iter()
            .position(|r| &**r == replica)
            .ok_or_else(|| ZetaError::UnknownName {
                field: "replica",
                value: format!("{replica} of {id}"),
                known: routed
                    .replica_ids
                    .iter()
                    .map(|r| &**r)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        Ok((m, r))
    }

    fn model_ids(&self) -> Vec<&str> {
        self.models.iter().map(|m| &*m.id).collect()
    }

    /// The tracker outcomes are recorded in.
    pub fn tracker(&self) -> &Arc<PerformanceTracker> {
        &self.tracker
    }

    /// The block size (bytes) of the prefix-aware replica policy, when the
    /// models use one: then requests should carry an affinity.
    pub fn affinity_block_bytes(&self) -> Option<u32> {
        self.models
            .first()
            .and_then(|m| m.replicas.policy().wants_affinity())
    }

    /// The model ordering in use.
    pub fn ordering(&self) -> &dyn ModelOrdering {
        self.ordering.as_ref()
    }

    /// Routes a request of `task` (index into [`TASKS`]) and `complexity` in
    /// `context` (0 = none; else 1 + the context's index), taking a replica slot.
    pub fn route(
        &self,
        task: usize,
        complexity: f64,
        context: usize,
        view: RequestView,
    ) -> Result<Decision, ZetaError> {
        self.check_open("route()")?;
        let now = self.tracker.clock().now_ms();
        let target = Target {
            task,
            complexity,
            context,
        };
        let scored = self.candidates(target, now, &view)?;
        self.budgets.first_attempt();
        if let Some(position) = self.exploration_pick(&scored, &view) {
            if let Some(&(m, breakdown)) = scored.get(position) {
                if let Some(replica) = self
                    .models
                    .get(m)
                    .and_then(|model| self.pick(model, now, &[], true, view.affinity.as_deref()))
                {
                    let mut decision =
                        self.decision(&scored, position, m, replica, breakdown, target, view);
                    decision.explored = true;
                    return Ok(decision);
                }
            }
        }
        for (position, &(m, breakdown)) in scored.iter().enumerate() {
            let Some(model) = self.models.get(m) else {
                continue;
            };
            if let Some(replica) = self.pick(model, now, &[], true, view.affinity.as_deref()) {
                return Ok(self.decision(&scored, position, m, replica, breakdown, target, view));
            }
        }
        Err(ZetaError::Saturated {
            operation: "route()",
        })
    }

    /// Routes a request to one named model (a caller's explicit choice),
    /// taking a replica slot; scored as a candidate when it serves the task,
    /// with capability 0 when it does not. `prefer`: the replica to take when
    /// it can take the request (one holding the conversation's state), else
    /// the replica policy chooses.
    pub fn route_to(
        &self,
        model: usize,
        target: Target,
        view: RequestView,
        prefer: Option<usize>,
    ) -> Result<Decision, ZetaError> {
        self.check_open("route()")?;
        let now = self.tracker.clock().now_ms();
        let Some(routed) = self.models.get(model) else {
            return Err(ZetaError::UnknownName {
                field: "model",
                value: model.to_string(),
                known: self.model_ids().join(", "),
            });
        };
        if routed.unserved.blocks(view.needs, now) {
            return Err(ZetaError::Unsupported {
                who: format!("model {:?} cannot serve", &*routed.id),
                features: feature_names(routed.unserved.mask(now) & view.needs),
            });
        }
        let scored = self.candidates(target, now, &view).unwrap_or_default();
        self.budgets.first_attempt();
        let preferred = prefer
            .filter(|&r| routed.replicas.is_healthy(r) && routed.replicas.try_acquire_at(r, now));
        let mut chosen = preferred
            .or_else(|| self.pick(routed, now, &[], true, view.affinity.as_deref()))
            .map(|replica| (model, replica));
        // Its own replicas cannot take it: its configured fallbacks, in order
        // (never any other model: the caller chose this one).
        for &fallback in &routed.fallbacks {
            if chosen.is_some() {
                break;
            }
            let Some(other) = self.models.get(fallback) else {
                continue;
            };
            if !other.unserved.blocks(view.needs, now) {
                chosen = self
                    .pick(other, now, &[], true, view.affinity.as_deref())
                    .map(|replica| (fallback, replica));
            }
        }
        let (m, replica) = chosen.ok_or(ZetaError::Saturated {
            operation: "route() to the named model",
        })?;
        let position = scored.iter().position(|(c, _)| *c == m);
        let breakdown = match position.and_then(|p| scored.get(p)) {
            Some((_, b)) => *b,
            None => match self.score_uncapable(m, target.task, now) {
                Ok(b) => b,
                Err(err) => {
                    self.release_slot(m, replica);
                    return Err(err);
                }
            },
        };
        let position = position.unwrap_or(usize::MAX);
        let mut decision = self.decision(&scored, position, m, replica, breakdown, target, view);
        decision.pinned = true;
        Ok(decision)
    }

    /// Where to send a request again after `failed`: another replica of the
    /// same model first (none in `tried`, the (model, replica) pairs already
    /// used), then the model's fallback chain, then the other candidates by
    /// score. With `needs_longer_context` (the prompt did not fit) only
    /// models with a longer stated context window qualify.
    pub fn reroute(
        &self,
        failed: &Decision,
        tried: &[(usize, usize)],
        needs_longer_context: bool,
    ) -> Result<Decision, ZetaError> {
        let now = self.tracker.clock().now_ms();
        let target = Target {
            task: failed.task,
            complexity: failed.complexity,
            context: failed.context,
        };
        let scored = match self.candidates(target, now, &failed.request) {
            Ok(scored) => scored,
            // A named model's own chain needs no candidates to be tried.
            Err(_) if failed.pinned => Vec::new(),
            Err(err) => return Err(err),
        };
        let failed_window = self
            .models
            .get(failed.model)
            .map_or(0, |m| m.context_window);
        let mut order: Vec<usize> = Vec::with_capacity(scored.len() + 4);
        order.push(failed.model);
        if let Some(model) = self.models.get(failed.model) {
            order.extend(model.fallbacks.iter().copied());
        }
        // A named model is served by its own replicas and its configured
        // fallbacks only: the caller chose it, and nothing else answers in
        // its name.
        if !failed.pinned {
            order.extend(scored.iter().map(|(m, _)| *m));
        }
        let mut seen = Vec::with_capacity(order.len());
        for m in order {
            if seen.contains(&m) {
                continue;
            }
            seen.push(m);
            let Some(model) = self.models.get(m) else {
                continue;
            };
            if needs_longer_context && model.context_window <= failed_window {
                continue;
            }
            if model.unserved.blocks(failed.request.needs, now) {
                continue;
            }
            // Models that do not serve the task are not candidates at all,
            // except a named model and its own chain, which the caller chose.
            let position = scored.iter().position(|(c, _)| *c == m);
            if position.is_none() && !failed.pinned {
                continue;
            }
            let position = position.unwrap_or(usize::MAX);
            let excluded: Vec<usize> = tried
                .iter()
                .filter(|(tm, _)| *tm == m)
                .map(|(_, r)| *r)
                .collect();
            if let Some(replica) = self.pick(
                model,
                now,
                &excluded,
                false,
                failed.request.affinity.as_deref(),
            ) {
                let breakdown = scored.get(position).map_or(failed.breakdown, |s| s.1);
                let mut decision = self.decision(
                    &scored,
                    position,
                    m,
                    replica,
                    breakdown,
                    target,
                    failed.request.clone(),
                );
                decision.pinned = failed.pinned;
                return Ok(decision);
            }
        }
        Err(ZetaError::Saturated {
            operation: "reroute() (no untried replica of any candidate can take it)",
        })
    }

    fn release_slot(&self, model: usize, replica: usize) {
        if let Some(routed) = self.models.get(model) {
            routed.replicas.release(replica);
        }
    }

    /// Keeps a replica out of selection for `hold_ms` (a server's
    /// `Retry-After`): its breaker opens so that it probes when the time is up.
    pub fn hold_replica(&self, model: usize, replica: usize, hold_ms: u64) {
        if let Some(routed) = self.models.get(model) {
            routed
                .replicas
                .hold(replica, hold_ms, self.tracker.clock().now_ms());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn decision(
        &self,
        scored: &[(usize, ScoreBreakdown)],
        position: usize,
        model: usize,
        replica: usize,
        breakdown: ScoreBreakdown,
        target: Target,
        request: RequestView,
    ) -> Decision {
        // Sized once (a filtered collect grows by doubling: two
        // allocations and a copy for eight candidates).
        let mut runners_up = Vec::with_capacity(scored.len().saturating_sub(1));
        runners_up.extend(
            scored
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != position)
                .map(|(_, (other, b))| (*other, b.performance_score)),
        );
        // The slot is taken: a prefix-aware policy notes where the prefix
        // went (and what it expected there, to score against the engine).
        let index = self
            .models
            .get(model)
            .and_then(|m| m.replicas.policy().prefix_index());
        let cache = match (&request.affinity, index) {
            (Some(affinity), Some(index)) => {
                index.route(replica, affinity, self.tracker.clock().now_ms())
            }
            _ => Routed::default(),
        };
        Decision {
            model,
            replica,
            task: self
                .models
                .get(model)
                .map_or(target.task, |m| m.served_task(target.task)),
            complexity: target.complexity,
            context: target.context,
            breakdown,
            runners_up,
            request,
            explored: false,
            pinned: false,
            cache,
        }
    }

    /// Counts `ms` of a caller's own time on a request (a gateway's overhead).
    pub fn record_overhead(&self, ms: f64) -> Result<(), ZetaError> {
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(ZetaError::InvalidInput {
                field: "ms",
                position: crate::errors::Position::Scalar,
                expected: "finite and >= 0",
                value: crate::errors::float_repr(ms),
            });
        }
        self.overhead.observe(ms);
        Ok(())
    }

    /// The overhead histogram so far.
    pub fn overhead(&self) -> HistogramSnapshot {
        self.overhead.snapshot()
    }

    /// Spends a retry token; false when retries are over budget.
    pub fn try_retry(&self) -> bool {
        self.budgets.try_retry(self.tracker.clock().now_ms())
    }

    /// Spends a hedge token; false when hedges are over budget.
    pub fn try_hedge(&self) -> bool {
        self.budgets.try_hedge(self.tracker.clock().now_ms())
    }

    /// Retry and hedge tokens left.
    pub fn budget_tokens(&self) -> (f64, f64) {
        self.budgets.tokens()
    }

    /// The jittered wait before retry number `retry` (1 = first), at least
    /// the server's `Retry-After` when given.
    pub fn backoff_ms(&self, retry: u32, retry_after_ms: Option<f64>) -> f64 {
        self.budgets.backoff_ms(retry, retry_after_ms, &self.rng)
    }

    /// The dispatch policy the router was built with.
    pub fn resilience(&self) -> &Resilience {
        &self.resilience
    }

    /// The recent p95 latency of one replica over all its tasks, the delay
    /// after which a request to it is hedged; `None` without data.
    pub fn replica_p95_ms(&self, model: usize, replica: usize) -> Option<f64> {
        let keys = self.models.get(model)?.replica_leaves(replica);
        let stats = self.tracker.aggregate(&keys);
        (stats.window.requests >= self.scorer.config().min_requests_for_performance)
            .then_some(stats.p95_ms)
            .flatten()
    }

    /// The complexity range a model suits in a context (0: its own).
    pub fn range(&self, model: usize, context: usize) -> Option<(f64, f64)> {
        self.models.get(model)?.ranges.get(context)
    }

    /// Tunes every model's ranges from recorded outcomes (see
    /// [`ranges::ComplexityRanges::tune`]).
    pub fn tune_ranges(&self, tuning: Tuning) -> Result<Vec<RangeChange>, ZetaError> {
        if !(tuning.target_success_rate > 0.0 && tuning.target_success_rate <= 1.0) {
            return Err(ZetaError::InvalidConfig {
                field: "target_success_rate",
                expected: "in (0, 1]",
                value: crate::errors::float_repr(tuning.target_success_rate),
            });
        }
        if !(tuning.step > 0.0 && tuning.step <= 1.0) {
            return Err(ZetaError::InvalidConfig {
                field: "step",
                expected: "in (0, 1]",
                value: crate::errors::float_repr(tuning.step),
            });
        }
        Ok(self
            .models
            .iter()
            .enumerate()
            .flat_map(|(m, model)| model.ranges.tune(m, tuning))
            .collect())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::test_support::{model, Build, Harness, CHAT, CODE, EMBEDDING, REASONING};
    use super::*;
    use crate::retry::BudgetConfig;

    /// Routes `n` chat requests without giving their slots back: the
    /// models they went to, in order.
    fn hold(h: &Harness, n: usize) -> Result<Vec<usize>, ZetaError> {
        (0..n)
            .map(|_| h.route(CHAT, 0.5).map(|d| d.model))
            .collect()
    }

    #[test]
    fn the_most_capable_model_wins_until_it_has_enough_outcomes_to_be_judged(
    ) -> Result<(), ZetaError> {
        let h = Build::new(vec![
            model("a", &[("code", 90.0)], &[0]),
            model("b", &[("code", 80.0)], &[0]),
            model("c", &[("code", 70.0)], &[0]),
        ])
        .build()?;
        // Nine failures: one short of min_requests_for_performance (10).
        h.record_n(0, 0, CODE, 9, false, 100.0)?;
        let d = h.route(CODE, 0.5)?;
        assert_eq!(d.model, 0, "capability alone: 90 beats 80 and 70");
        assert!(!d.breakdown.has_performance_data);
        assert_eq!(d.breakdown.performance_score, 90.0);
        assert_eq!(d.runners_up, vec![(1, 80.0), (2, 70.0)]);
        h.core.release(&d);
        // The tenth: a is judged on 0 % success and loses to b.
        h.record_n(0, 0, CODE, 1, false, 100.0)?;
        let d = h.route(CODE, 0.5)?;
        assert_eq!(d.model, 1);
        Ok(())
    }

    #[test]
    fn a_model_that_does_not_serve_the_task_is_never_chosen() -> Result<(), ZetaError> {
        let h = Build::new(vec![
            model("chatty", &[("chat", 99.0)], &[0]),
            model("coder", &[("code", 40.0)], &[0]),
        ])
        .build()?;
        for _ in 0..20 {
            let d = h.route(CODE, 0.5)?;
            assert_eq!(d.model, 1, "only coder serves code, however weak");
            assert!(d.runners_up.is_empty(), "{:?}", d.runners_up);
            h.core.release(&d);
        }
        assert_eq!(h.route(CHAT, 0.5)?.model, 0);
        Ok(())
    }

    #[test]
    fn a_full_model_passes_the_request_on_and_a_full_router_is_saturated() -> Result<(), ZetaError>
    {
        let h = Build::new(vec![
            model("a", &[("chat", 90.0)], &[1, 1]),
            model("b", &[("chat", 80.0)], &[1]),
        ])
        .build()?;
        let first = h.route(CHAT, 0.5)?;
        let second = h.route(CHAT, 0.5)?;
        assert_eq!((first.model, second.model), (0, 0));
        assert_ne!(first.replica, second.replica, "one slot per replica");
        let third = h.route(CHAT, 0.5)?;
        assert_eq!(third.model, 1, "a is full: the next candidate serves");
        assert_eq!(third.runners_up, vec![(0, 90.0)]);
        assert!(matches!(
            h.route(CHAT, 0.5),
            Err(ZetaError::Saturated { .. })
        ));
        assert_eq!((h.in_flight(0), h.in_flight(1)), (vec![1, 1], vec![1]));
        // A freed slot is taken again, by the best model that has one.
        h.core.release(&second);
        assert_eq!(h.route(CHAT, 0.5)?.model, 0);
        Ok(())
    }

    #[test]
    fn a_task_no_model_can_serve_is_an_invalid_task() -> Result<(), ZetaError> {
        let h = Build::new(vec![
            model("a", &[("code", 90.0)], &[0]),
            model("b", &[("chat", 80.0)], &[0]),
        ])
        .build()?;
        for task in [EMBEDDING, 99] {
            let result = h.route(task, 0.5);
            assert!(
                matches!(result, Err(ZetaError::InvalidName { field: "task", .. })),
                "task {task}: {result:?}"
            );
        }
        assert_eq!(h.in_flight(0), vec![0], "no slot taken on an error");
        // A text task nobody declares is no error: every text model serves
        // it at its best text capability.
        let d = h.route(REASONING, 0.5)?;
        assert_eq!((d.model, d.breakdown.capability_score), (0, 90.0));
        Ok(())
    }

    #[test]
    fn spread_alternates_near_equal_models_and_by_score_fills_the_best_first(
    ) -> Result<(), ZetaError> {
        let models = || {
            vec![
                model("a", &[("chat", 80.0)], &[2, 2]),
                model("b", &[("chat", 78.0)], &[2, 2]),
                model("c", &[("chat", 60.0)], &[0]),
            ]
        };
        // 80 and 78 are within the margin of 5: least busy first (in-flight
        // per replica), ties in score order; c (60) is too far behind.
        let spread = Build::new(models()).ordering("spread", 5.0).build()?;
        assert_eq!(hold(&spread, 9)?, vec![0, 1, 0, 1, 0, 1, 0, 1, 2]);
        let by_score = Build::new(models()).ordering("by_score", 5.0).build()?;
        assert_eq!(by_score.core.ordering().name(), "by_score");
        assert_eq!(hold(&by_score, 9)?, vec![0, 0, 0, 0, 1, 1, 1, 1, 2]);
        // A margin too small for 2 points: spread sends to the best first too.
        let narrow = Build::new(models()).ordering("spread", 1.0).build()?;
        assert_eq!(hold(&narrow, 5)?, vec![0, 0, 0, 0, 1]);
        Ok(())
    }

    #[test]
    fn reroute_tries_the_same_model_then_its_fallback_then_the_rest() -> Result<(), ZetaError> {
        let h = Build::new(vec![
            ModelInput {
                fallbacks: vec!["c".into()],
                ..model("a", &[("chat", 90.0)], &[0, 0])
            },
            model("b", &[("chat", 85.0)], &[0]),
            model("c", &[("chat", 50.0)], &[0]),
        ])
        .build()?;
        let failed = h.route(CHAT, 0.5)?;
        assert_eq!(failed.model, 0);
        // a is judged badly now (b would win a new request), yet the retry
        // stays on a, on the replica not tried yet.
        h.record_n(0, failed.replica, CHAT, 10, false, 100.0)?;
        let probe = h.route(CHAT, 0.5)?;
        assert_eq!(probe.model, 1, "b is the best now");
        h.core.release(&probe);
        let mut tried = vec![(failed.model, failed.replica)];
        let second = h.core.reroute(&failed, &tried, false)?;
        assert_eq!(second.model, 0);
        assert_ne!(second.replica, failed.replica);
        assert!(!second.pinned);
        tried.push((second.model, second.replica));
        let third = h.core.reroute(&second, &tried, false)?;
        assert_eq!(third.model, 2, "a's fallback c comes before b");
        tried.push((third.model, third.replica));
        let fourth = h.core.reroute(&third, &tried, false)?;
        assert_eq!(fourth.model, 1, "then the other candidates");
        tried.push((fourth.model, fourth.replica));
        assert!(matches!(
            h.core.reroute(&fourth, &tried, false),
            Err(ZetaError::Saturated { .. })
        ));
        Ok(())
    }

    #[test]
    fn a_pinned_decision_never_leaves_its_model_and_fallbacks() -> Result<(), ZetaError> {
        let h = Build::new(vec![
            ModelInput {
                fallbacks: vec!["c".into()],
                ..model("a", &[("chat", 60.0)], &[0, 0])
            },
            model("b", &[("chat", 95.0)], &[0]),
            model("c", &[("chat", 50.0)], &[0]),
        ])
        .build()?;
        let target = Target {
            task: CHAT,
            complexity: 0.5,
            context: 0,
        };
        let first = h
            .core
            .route_to(0, target, RequestView::default(), Some(1))?;
        assert_eq!((first.model, first.replica, first.pinned), (0, 1, true));
        let mut tried = vec![(0, 1)];
        let second = h.core.reroute(&first, &tried, false)?;
        assert_eq!((second.model, second.replica, second.pinned), (0, 0, true));
        tried.push((0, 0));
        let third = h.core.reroute(&second, &tried, false)?;
        assert_eq!((third.model, third.pinned), (2, true), "its fallback c");
        tried.push((2, 0));
        assert!(
            matches!(
                h.core.reroute(&third, &tried, false),
                Err(ZetaError::Saturated { .. })
            ),
            "never b, the best model, which nobody named"
        );
        Ok(())
    }

    #[test]
    fn a_prompt_too_long_goes_only_to_models_with_a_longer_context_window() -> Result<(), ZetaError>
    {
        let h = Build::new(vec![
            ModelInput {
                context_window: 8_192,
                ..model("a", &[("chat", 90.0)], &[0, 0])
            },
            ModelInput {
                context_window: 8_192,
                ..model("b", &[("chat", 85.0)], &[0])
            },
            model("unstated", &[("chat", 80.0)], &[0]),
            ModelInput {
                context_window: 32_768,
                ..model("long", &[("chat", 40.0)], &[0])
            },
        ])
        .build()?;
        let failed = h.route(CHAT, 0.5)?;
        assert_eq!(failed.model, 0);
        let tried = [(0, failed.replica)];
        let longer = h.core.reroute(&failed, &tried, true)?;
        assert_eq!(
            longer.model, 3,
            "not a's twin replica, not b (same window), not an unstated window"
        );
        // Without the flag the same retry stays on a.
        assert_eq!(h.core.reroute(&failed, &tried, false)?.model, 0);
        let tried = [(0, failed.replica), (3, 0)];
        assert!(matches!(
            h.core.reroute(&longer, &tried, true),
            Err(ZetaError::Saturated { .. })
        ));
        Ok(())
    }

    #[test]
    fn retries_are_refused_once_the_budget_is_spent_and_first_attempts_earn_them_back(
    ) -> Result<(), ZetaError> {
        let h = Build::new(vec![model("a", &[("chat", 80.0)], &[0, 0])])
            .resilience(Resilience {
                retry_budget: BudgetConfig {
                    ratio: 0.5,
                    min_per_second: 0.0,
                    max_tokens: 1.0,
                },
                ..Resilience::default()
            })
            .build()?;
        assert!(h.core.try_retry(), "the budget starts full: one token");
        assert!(!h.core.try_retry());
        let d = h.route(CHAT, 0.5)?;
        h.core.release(&d);
        assert_eq!(h.core.budget_tokens().0, 0.5);
        assert!(!h.core.try_retry(), "half a token is not a retry");
        // A retry earns nothing, and neither does time (no floor per second).
        let again = h.core.reroute(&d, &[(d.model, d.replica)], false)?;
        h.core.release(&again);
        h.advance(60_000);
        assert!(!h.core.try_retry());
        let d = h.route(CHAT, 0.5)?;
        h.core.release(&d);
        assert!(h.core.try_retry(), "two first attempts at 0.5 earn one");
        assert!(!h.core.try_retry());
        assert_eq!(h.in_flight(0), vec![0, 0]);
        Ok(())
    }
}
