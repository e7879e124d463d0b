//! Assignment: from a profiled request to a model and a replica slot.
//!
//! Candidates are the models with a capability for the task whose
//! complexity range (in the request's context) holds the request's
//! complexity, or every capable model when none does. Each is scored from
//! its live metrics; among those within `spread_margin` points of the best,
//! the least busy (in-flight per replica) is tried first, so a batch spreads
//! over near-equal models instead of piling onto the top one. A model whose
//! replicas are all at capacity passes the request to the next candidate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::balance::{Policy, ReplicaSet, DEFAULT_ENGINE_LOAD_TTL_MS};
use crate::breaker::BreakerConfig;
use crate::errors::ZetaError;
use crate::learned_capability::{blend, category_of, CostKnob, Learning, RequestView};
use crate::outcome::{LatencyHistogram, OutcomeKind, ReplicaCounters, OVERHEAD_BOUNDS_MS};
use crate::penalties::Penalties;
use crate::pool::{live_totals_with_fallback, LiveMetrics};
use crate::profile::TEXT_TASKS;
use crate::replica_health::{degraded, ReplicaAdapt, ReplicaHealth};
use crate::request_kinds::{feature_names, Unserved};
use crate::retry::{Backoff, BudgetConfig, RetryBudget};
use crate::scoring::{AdaptiveScorer, ScoreBreakdown};
use crate::tracker::{PerformanceTracker, TrackedKey};
use crate::window::Totals;

/// Every task type a model can declare: the four text tasks, then embedding.
pub const TASKS: [&str; 5] = [
    TEXT_TASKS[0],
    TEXT_TASKS[1],
    TEXT_TASKS[2],
    TEXT_TASKS[3],
    crate::profile::EMBEDDING,
];

/// A model as the router needs it.
pub struct RoutedModel {
    pub id: Arc<str>,
    /// Capability per entry of [`TASKS`], `None` when it does not serve it.
    pub capabilities: [Option<f64>; 5],
    /// The complexity range it suits, per context (index 0: its own);
    /// tuning moves the upper edge, so the edges are atomics.
    ranges: Vec<RangeCell>,
    /// Per context, outcomes by complexity decile: (requests, successes).
    outcomes: Vec<[[AtomicU64; 2]; BINS]>,
    pub replica_ids: Vec<Arc<str>>,
    pub replicas: ReplicaSet,
    /// Outcome counters per replica (error kinds, tokens, time to first token).
    pub counters: Vec<ReplicaCounters>,
    /// Recent failure share and latency per replica, for choosing among them.
    pub health: Vec<ReplicaHealth>,
    /// Longest prompt + completion in tokens; 0 when not stated.
    pub context_window: u32,
    /// Models to fall back to, in order, when this one fails.
    pub fallbacks: Vec<usize>,
    /// Kinds of request it cannot serve (declared or learned from refusals).
    pub unserved: Unserved,
    /// `[task][replica]`: the tracker windows this model's outcomes go to.
    leaves: Vec<Vec<Arc<TrackedKey>>>,
    /// Every window of the model, the fallback view.
    all_leaves: Vec<Arc<TrackedKey>>,
}

/// What a decision is for: the request's task, complexity and context.
#[derive(Debug, Clone, Copy)]
struct Target {
    task: usize,
    complexity: f64,
    context: usize,
}

/// Complexity deciles the router keeps outcomes in, for tuning ranges.
const BINS: usize = 10;

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

/// One change made by [`RouterCore::tune_ranges`].
#[derive(Debug, Clone, PartialEq)]
pub struct RangeChange {
    pub model: usize,
    pub context: usize,
    pub old_high: f64,
    pub new_high: f64,
    pub requests: u64,
    pub success_rate: f64,
}

/// The model spec the router is built from.
pub struct ModelInput {
    pub id: String,
    pub capabilities: Vec<(String, f64)>,
    /// Own range first, then one per context (same order as the contexts).
    pub ranges: Vec<(f64, f64)>,
    pub replicas: Vec<(String, u32)>,
    /// Longest prompt + completion in tokens; 0 when not stated.
    pub context_window: u32,
    /// Ids of the models to fall back to, in order.
    pub fallbacks: Vec<String>,
}

/// Dispatch policy: breakers, retry and hedge budgets, backoff, and how long
/// an engine's load scrape counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resilience {
    pub breaker: BreakerConfig,
    pub retry_budget: BudgetConfig,
    pub hedge_budget: BudgetConfig,
    pub backoff: Backoff,
    pub engine_load_ttl_ms: u64,
    pub replica_adapt: ReplicaAdapt,
    /// When > 0: a candidate whose mean latency is this many times the
    /// median of the other candidates' (and 10 ms more) gets the
    /// high-latency penalty too. 0: only the absolute threshold.
    pub relative_latency_factor: f64,
}

impl Default for Resilience {
    /// Breakers as [`BreakerConfig::default`]; retries up to 20 % of traffic
    /// plus 10 a second; hedges up to 5 % of traffic; backoff 25 ms doubling
    /// to 1 s; engine scrapes count for 5 s.
    fn default() -> Self {
        Self {
            breaker: BreakerConfig::default(),
            retry_budget: BudgetConfig {
                ratio: 0.2,
                min_per_second: 10.0,
                max_tokens: 100.0,
            },
            hedge_budget: BudgetConfig {
                ratio: 0.05,
                min_per_second: 0.0,
                max_tokens: 10.0,
            },
            backoff: Backoff {
                base_ms: 25.0,
                max_ms: 1_000.0,
            },
            engine_load_ttl_ms: DEFAULT_ENGINE_LOAD_TTL_MS,
            replica_adapt: ReplicaAdapt::default(),
            relative_latency_factor: 0.0,
        }
    }
}

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
}

/// The router's core: models, their replica slots, the tracker and scorer.
pub struct RouterCore {
    tracker: Arc<PerformanceTracker>,
    scorer: AdaptiveScorer,
    models: Vec<RoutedModel>,
    spread_margin: f64,
    resilience: Resilience,
    retry_budget: RetryBudget,
    hedge_budget: RetryBudget,
    /// xorshift state for backoff jitter; races only make it more random.
    jitter_seed: AtomicU64,
    /// Time the caller spent deciding and relaying, as it reports it
    /// (a gateway's own share of each request), for metrics pages.
    overhead: LatencyHistogram,
    /// The learned capability term, when learning is on.
    learning: Option<Learning>,
    /// The cost/quality knob, when a willingness to pay is set.
    cost: Option<CostKnob>,
}

impl RouterCore {
    /// Builds the router and registers every (model, replica, task) window.
    pub fn new(
        tracker: Arc<PerformanceTracker>,
        scorer: AdaptiveScorer,
        models: Vec<ModelInput>,
        policy: Policy,
        spread_margin: f64,
        resilience: Resilience,
    ) -> Result<Self, ZetaError> {
        if models.is_empty() {
            return Err(ZetaError::NoCandidates {
                operation: "Router()",
            });
        }
        if !(spread_margin.is_finite() && spread_margin >= 0.0) {
            return Err(ZetaError::InvalidConfig {
                field: "spread_margin",
                expected: "finite and >= 0",
                value: crate::errors::float_repr(spread_margin),
            });
        }
        let now = tracker.clock().now_ms();
        let mut fallback_names = Vec::with_capacity(models.len());
        let mut routed = Vec::with_capacity(models.len());
        for model in models {
            let mut capabilities = [None; 5];
            for (task, value) in &model.capabilities {
                let index =
                    TASKS
                        .iter()
                        .position(|t| t == task)
                        .ok_or_else(|| ZetaError::InvalidName {
                            field: "task",
                            problem: "is not a known task type",
                            value: task.clone(),
                        })?;
                if let Some(slot) = capabilities.get_mut(index) {
                    *slot = Some(*value);
                }
            }
            let mut leaves = Vec::with_capacity(TASKS.len());
            let mut all_leaves = Vec::new();
            for (task, capability) in TASKS.iter().zip(capabilities) {
                let mut per_replica = Vec::new();
                if capability.is_some() {
                    for (replica, _) in &model.replicas {
                        let key = tracker.key(&model.id, replica, task)?;
                        all_leaves.push(Arc::clone(&key));
                        per_replica.push(key);
                    }
                }
                leaves.push(per_replica);
            }
            let capacities: Vec<u32> = model.replicas.iter().map(|(_, c)| *c).collect();
            let mut replicas =
                ReplicaSet::with_breakers(&capacities, policy, resilience.breaker, now);
            replicas.set_engine_load_ttl_ms(resilience.engine_load_ttl_ms);
            fallback_names.push(model.fallbacks.clone());
            routed.push(RoutedModel {
                id: model.id.as_str().into(),
                capabilities,
                outcomes: model
                    .ranges
                    .iter()
                    .map(|_| std::array::from_fn(|_| [AtomicU64::new(0), AtomicU64::new(0)]))
                    .collect(),
                ranges: model.ranges.iter().copied().map(RangeCell::new).collect(),
                replica_ids: model
                    .replicas
                    .iter()
                    .map(|(id, _)| id.as_str().into())
                    .collect(),
                replicas,
                counters: model
                    .replicas
                    .iter()
                    .map(|_| ReplicaCounters::default())
                    .collect(),
                health: model
                    .replicas
                    .iter()
                    .map(|_| ReplicaHealth::default())
                    .collect(),
                context_window: model.context_window,
                fallbacks: Vec::new(),
                unserved: Unserved::default(),
                leaves,
                all_leaves,
            });
        }
        for (index, names) in fallback_names.iter().enumerate() {
            let mut chain = Vec::with_capacity(names.len());
            for name in names {
                let target = routed
                    .iter()
                    .position(|m| &*m.id == name.as_str())
                    .ok_or_else(|| ZetaError::InvalidName {
                        field: "fallbacks",
                        problem: "names no model of this router",
                        value: name.clone(),
                    })?;
                if target != index {
                    chain.push(target);
                }
            }
            if let Some(model) = routed.get_mut(index) {
                model.fallbacks = chain;
            }
        }
        Ok(Self {
            retry_budget: RetryBudget::new(resilience.retry_budget, now),
            hedge_budget: RetryBudget::new(resilience.hedge_budget, now),
            jitter_seed: AtomicU64::new(now | 1),
            overhead: LatencyHistogram::new(&OVERHEAD_BOUNDS_MS),
            resilience,
            tracker,
            scorer,
            models: routed,
            spread_margin,
            learning: None,
            cost: None,
        })
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

    /// The capability term of model `m` for one request: learned when
    /// learning is on and the request's text is known, less its cost.
    fn request_capability(
        &self,
        m: usize,
        configured: f64,
        view: &RequestView,
        learned: &[(f64, f64)],
    ) -> f64 {
        let mut capability = learned
            .get(m)
            .map_or(configured, |&(cap, ramp)| blend(configured, cap, ramp));
        if let Some(knob) = &self.cost {
            capability = (capability - knob.penalty(m, view.prompt_tokens)).max(0.0);
        }
        capability
    }

    /// Learns one outcome of a decision's request (when learning is on and
    /// its text was known).
    pub fn learn(&self, decision: &Decision, success: bool) -> Result<bool, ZetaError> {
        let (Some(learning), Some(request)) = (&self.learning, &decision.request.learned) else {
            return Ok(false);
        };
        learning.predictor.update(
            &request.features,
            &[(decision.model, success)],
            Some(&request.category),
            None,
        )?;
        Ok(true)
    }

    /// The models, in configuration order.
    pub fn models(&self) -> &[RoutedModel] {
        &self.models
    }

    /// The tracker outcomes are recorded in.
    pub fn tracker(&self) -> &Arc<PerformanceTracker> {
        &self.tracker
    }

    fn totals(&self, model: &RoutedModel, task: usize, now_ms: u64) -> Totals {
        let minimum = self.scorer.config().min_requests_for_performance;
        let leaves = model
            .leaves
            .get(task)
            .map(Vec::as_slice)
            .unwrap_or_default();
        live_totals_with_fallback(leaves, &model.all_leaves, now_ms, minimum)
    }

    /// The capable models of a task, scored and in the order they are
    /// tried: those whose range holds the complexity first, then the rest.
    fn candidates(
        &self,
        task: usize,
        complexity: f64,
        context: usize,
        now: u64,
        view: &RequestView,
    ) -> Result<Vec<(usize, ScoreBreakdown)>, ZetaError> {
        let (mut suited, mut others) = (Vec::new(), Vec::new());
        // Every model's learned capability for this request, in one pass.
        let learned = match (&self.learning, &view.learned) {
            (Some(learning), Some(request)) => learning.capabilities(request),
            _ => Vec::new(),
        };
        // A text request of a type nobody declares still deserves an answer:
        // then every text model is a candidate at its best text capability.
        let unclaimed = task < TEXT_TASKS.len()
            && self
                .models
                .iter()
                .all(|model| capability(model, task).is_none());
        let mut unserved = false;
        for (m, model) in self.models.iter().enumerate() {
            if model.unserved.blocks(view.needs, now) {
                unserved = true;
                continue;
            }
            let served = if unclaimed {
                best_text_task(model)
            } else {
                Some(task)
            };
            let Some((served, cap)) = served.and_then(|t| capability(model, t).map(|cap| (t, cap)))
            else {
                continue;
            };
            let live = LiveMetrics::from_totals(&self.totals(model, served, now));
            let cap = self.request_capability(m, cap, view, &learned);
            let breakdown =
                self.scorer
                    .score(cap, live.success_rate, live.avg_latency_ms, live.requests)?;
            let (low, high) = model
                .ranges
                .get(context)
                .or_else(|| model.ranges.first())
                .map_or((0.0, 1.0), RangeCell::get);
            if (low..=high).contains(&complexity) {
                suited.push((m, breakdown));
            } else {
                others.push((m, breakdown));
            }
        }
        self.relative_latency(&mut suited, &mut others);
        if suited.is_empty() && others.is_empty() && unserved {
            return Err(ZetaError::Unsupported {
                who: "no model here serves".to_owned(),
                features: feature_names(view.needs),
            });
        }
        if suited.is_empty() && others.is_empty() {
            return Err(ZetaError::InvalidName {
                field: "task",
                problem: "has no capable model in this router",
                value: TASKS.get(task).copied().unwrap_or("?").to_owned(),
            });
        }
        self.order(&mut suited);
        self.order(&mut others);
        suited.extend(others);
        Ok(suited)
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
        let now = self.tracker.clock().now_ms();
        let scored = self.candidates(task, complexity, context, now, &view)?;
        // Every first attempt earns retries and hedges their share.
        self.retry_budget.deposit();
        self.hedge_budget.deposit();
        let target = Target {
            task,
            complexity,
            context,
        };
        // Exploration: a bounded share of the requests the learned router
        // sees go to a random other candidate, so that every model's
        // predictions keep meeting outcomes (bandit feedback).
        let explore = match (&self.learning, &view.learned) {
            (Some(learning), Some(_)) => learning.explore,
            _ => 0.0,
        };
        if explore > 0.0 && scored.len() > 1 && self.random_unit() < explore {
            let others = scored.len() - 1;
            let position = 1 + ((self.random_unit() * others as f64) as usize).min(others - 1);
            if let Some((m, breakdown)) = scored.get(position) {
                if let Some(replica) = self
                    .models
                    .get(*m)
                    .and_then(|model| self.pick(model, now, &[], true))
                {
                    let mut decision =
                        self.decision(&scored, position, *m, replica, *breakdown, target, view);
                    decision.explored = true;
                    return Ok(decision);
                }
            }
        }
        for (position, (m, breakdown)) in scored.iter().enumerate() {
            let Some(model) = self.models.get(*m) else {
                continue;
            };
            if let Some(replica) = self.pick(model, now, &[], true) {
                return Ok(self.decision(&scored, position, *m, replica, *breakdown, target, view));
            }
        }
        Err(ZetaError::NoCandidates {
            operation: "route() (every candidate's replicas are down or at capacity)",
        })
    }

    /// Routes a request to one named model (a caller's explicit choice),
    /// taking a replica slot; scored as a candidate when it serves the task,
    /// with capability 0 when it does not. `prefer`: the replica to take when
    /// it can take the request (one holding the conversation's state), else
    /// the replica policy chooses.
    #[allow(clippy::too_many_arguments)]
    pub fn route_to(
        &self,
        model: usize,
        task: usize,
        complexity: f64,
        context: usize,
        view: RequestView,
        prefer: Option<usize>,
    ) -> Result<Decision, ZetaError> {
        let now = self.tracker.clock().now_ms();
        let Some(routed) = self.models.get(model) else {
            return Err(ZetaError::NoCandidates {
                operation: "route() to an unknown model",
            });
        };
        if routed.unserved.blocks(view.needs, now) {
            return Err(ZetaError::Unsupported {
                who: format!("model {:?} cannot serve", &*routed.id),
                features: feature_names(routed.unserved.mask(now) & view.needs),
            });
        }
        let scored = self
            .candidates(task, complexity, context, now, &view)
            .unwrap_or_default();
        self.retry_budget.deposit();
        self.hedge_budget.deposit();
        let preferred = prefer
            .filter(|&r| routed.replicas.is_healthy(r) && routed.replicas.try_acquire_at(r, now));
        let mut chosen = preferred
            .or_else(|| self.pick(routed, now, &[], true))
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
                    .pick(other, now, &[], true)
                    .map(|replica| (fallback, replica));
            }
        }
        let (m, replica) = chosen.ok_or(ZetaError::NoCandidates {
            operation: "route() (the named model's replicas are down or at capacity)",
        })?;
        let position = scored.iter().position(|(c, _)| *c == m);
        let breakdown = match position.and_then(|p| scored.get(p)) {
            Some((_, b)) => *b,
            None => {
                // Not a candidate for the task: scored at capability 0.
                let named = self.models.get(m).unwrap_or(routed);
                let served = served_task(named, task);
                let live = LiveMetrics::from_totals(&self.totals(named, served, now));
                match self
                    .scorer
                    .score(0.0, live.success_rate, live.avg_latency_ms, live.requests)
                {
                    Ok(b) => b,
                    Err(err) => {
                        self.release_slot(m, replica);
                        return Err(err);
                    }
                }
            }
        };
        let target = Target {
            task,
            complexity,
            context,
        };
        let position = position.unwrap_or(usize::MAX);
        let mut decision = self.decision(&scored, position, m, replica, breakdown, target, view);
        decision.pinned = true;
        Ok(decision)
    }

    fn release_slot(&self, model: usize, replica: usize) {
        if let Some(routed) = self.models.get(model) {
            routed.replicas.release(replica);
        }
    }

    /// Takes a slot on one of `model`'s replicas (none in `excluded`):
    /// degraded replicas (see [`crate::replica_health`]) are passed over,
    /// except that `explore` of the requests probe one of them, so a healed
    /// replica is seen to be healed (first attempts only: a retry goes to a
    /// replica in good standing); when every replica is degraded, any.
    fn pick(
        &self,
        model: &RoutedModel,
        now: u64,
        excluded: &[usize],
        explore: bool,
    ) -> Option<usize> {
        let policy = &self.resilience.replica_adapt;
        let mut slow_or_failing = degraded(&model.health, policy);
        // A replica whose breaker is open or probing is the breaker's to
        // govern: it admits exactly the probes a recovery needs.
        slow_or_failing.retain(|&r| {
            model.replicas.breaker_state(r) == Some(crate::breaker::BreakerState::Closed)
        });
        if slow_or_failing.is_empty() {
            return model.replicas.acquire_at(now, excluded);
        }
        let draw = self.random_unit();
        if explore && draw < policy.explore {
            let start = (draw / policy.explore * slow_or_failing.len() as f64) as usize;
            for offset in 0..slow_or_failing.len() {
                let Some(&probe) = slow_or_failing.get((start + offset) % slow_or_failing.len())
                else {
                    continue;
                };
                if !excluded.contains(&probe) && model.replicas.try_acquire_at(probe, now) {
                    return Some(probe);
                }
            }
        }
        let mut passed_over = excluded.to_vec();
        passed_over.extend(slow_or_failing);
        model
            .replicas
            .acquire_at(now, &passed_over)
            .or_else(|| model.replicas.acquire_at(now, excluded))
    }

    /// A uniform draw in [0, 1) from the router's xorshift state (races
    /// between threads only make it more random).
    fn random_unit(&self) -> f64 {
        let mut x = self.jitter_seed.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_seed.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1_u64 << 53) as f64
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
        Target {
            task,
            complexity,
            context,
        }: Target,
        request: RequestView,
    ) -> Decision {
        let runners_up = scored
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != position)
            .map(|(_, (other, b))| (*other, b.performance_score))
            .collect();
        Decision {
            model,
            replica,
            task: self
                .models
                .get(model)
                .map_or(task, |m| served_task(m, task)),
            complexity,
            context,
            breakdown,
            runners_up,
            request,
            explored: false,
            pinned: false,
        }
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
        let scored = match self.candidates(
            failed.task,
            failed.complexity,
            failed.context,
            now,
            &failed.request,
        ) {
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
            if let Some(replica) = self.pick(model, now, &excluded, false) {
                let breakdown = scored.get(position).map_or(failed.breakdown, |s| s.1);
                let target = Target {
                    task: failed.task,
                    complexity: failed.complexity,
                    context: failed.context,
                };
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
        Err(ZetaError::NoCandidates {
            operation: "reroute() (no untried replica of any candidate can take it)",
        })
    }

    /// Counts `ms` of a caller's own time on a request (a gateway's overhead).
    pub fn record_overhead(&self, ms: f64) {
        self.overhead.observe(ms);
    }

    /// The overhead histogram so far.
    pub fn overhead(&self) -> crate::outcome::HistogramSnapshot {
        self.overhead.snapshot()
    }

    /// Every model's score now for every task it serves, as `route` would
    /// see it (for metrics and dashboards): (model, task, breakdown).
    pub fn scores(&self) -> Result<Vec<(usize, usize, ScoreBreakdown)>, ZetaError> {
        let now = self.tracker.clock().now_ms();
        let mut out = Vec::new();
        for task in 0..TASKS.len() {
            let mut scored = Vec::new();
            for (m, model) in self.models.iter().enumerate() {
                if let Some(cap) = capability(model, task) {
                    let live = LiveMetrics::from_totals(&self.totals(model, task, now));
                    let breakdown = self.scorer.score(
                        cap,
                        live.success_rate,
                        live.avg_latency_ms,
                        live.requests,
                    )?;
                    scored.push((m, breakdown));
                }
            }
            // The models serving a task are its candidates: the relative rule applies.
            self.relative_latency(&mut scored, &mut []);
            out.extend(scored.into_iter().map(|(m, b)| (m, task, b)));
        }
        out.sort_by_key(|(m, task, _)| (*m, *task));
        Ok(out)
    }

    /// Spends a retry token; false when retries are over budget.
    pub fn try_retry(&self) -> bool {
        self.retry_budget
            .try_withdraw(self.tracker.clock().now_ms())
    }

    /// Spends a hedge token; false when hedges are over budget.
    pub fn try_hedge(&self) -> bool {
        self.hedge_budget
            .try_withdraw(self.tracker.clock().now_ms())
    }

    /// Retry and hedge tokens left.
    pub fn budget_tokens(&self) -> (f64, f64) {
        (self.retry_budget.tokens(), self.hedge_budget.tokens())
    }

    /// The jittered wait before retry number `retry` (1 = first), at least
    /// the server's `Retry-After` when given.
    pub fn backoff_ms(&self, retry: u32, retry_after_ms: Option<f64>) -> f64 {
        let draw = self.random_unit();
        self.resilience
            .backoff
            .delay_ms(retry, draw, retry_after_ms)
    }

    /// The dispatch policy the router was built with.
    pub fn resilience(&self) -> &Resilience {
        &self.resilience
    }

    /// The recent p95 latency of one replica over all its tasks, the delay
    /// after which a request to it is hedged; `None` without data.
    pub fn replica_p95_ms(&self, model: usize, replica: usize) -> Option<f64> {
        let model = self.models.get(model)?;
        let keys: Vec<Arc<TrackedKey>> = model
            .leaves
            .iter()
            .filter_map(|per_replica| per_replica.get(replica).cloned())
            .collect();
        let stats = self.tracker.aggregate(&keys);
        (stats.window.requests >= self.scorer.config().min_requests_for_performance)
            .then_some(stats.p95_ms)
            .flatten()
    }

    /// The relative latency rule (see [`Resilience::relative_latency_factor`]):
    /// the seed's absolute threshold misses +400 ms on a 25 ms baseline.
    fn relative_latency(
        &self,
        suited: &mut [(usize, ScoreBreakdown)],
        others: &mut [(usize, ScoreBreakdown)],
    ) {
        let factor = self.resilience.relative_latency_factor;
        if factor <= 0.0 {
            return;
        }
        let latencies: Vec<f64> = suited
            .iter()
            .chain(others.iter())
            .filter(|(_, b)| b.has_performance_data)
            .map(|(_, b)| b.avg_latency_ms)
            .collect();
        if latencies.len() < 2 {
            return;
        }
        let penalty = self.scorer.config().high_latency_penalty;
        for (_, b) in suited.iter_mut().chain(others.iter_mut()) {
            if !b.has_performance_data || b.penalties.contains(Penalties::HIGH_LATENCY) {
                continue;
            }
            // The median of the others: with two candidates, the other one.
            let mut rest: Vec<f64> = latencies.clone();
            if let Some(own) = rest.iter().position(|l| *l == b.avg_latency_ms) {
                rest.swap_remove(own);
            }
            rest.sort_by(f64::total_cmp);
            let Some(&median) = rest.get(rest.len().saturating_sub(1) / 2) else {
                continue;
            };
            if b.avg_latency_ms > factor * median
                && b.avg_latency_ms > median + crate::replica_health::LATENCY_FLOOR_MS
            {
                b.performance_score *= penalty;
                b.penalty_factor *= penalty;
                b.penalties = b.penalties.with(Penalties::RELATIVE_LATENCY);
            }
        }
    }

    /// Best score first (ties: configuration order); then, among those within
    /// the spread margin of the best, the least busy (in flight per replica) first.
    fn order(&self, scored: &mut [(usize, ScoreBreakdown)]) {
        scored.sort_by(|a, b| {
            b.1.performance_score
                .total_cmp(&a.1.performance_score)
                .then(a.0.cmp(&b.0))
        });
        let best = scored.first().map(|s| s.1.performance_score).unwrap_or(0.0);
        let near = scored
            .iter()
            .take_while(|s| s.1.performance_score >= best - self.spread_margin)
            .count();
        if near < 2 {
            return;
        }
        let busy = |m: usize| {
            self.models.get(m).map_or(0.0, |model| {
                f64::from(model.replicas.total_in_flight()) / model.replicas.len().max(1) as f64
            })
        };
        if let Some(head) = scored.get_mut(..near) {
            // Busyness read once per model, not once per comparison.
            let mut keyed: Vec<(f64, (usize, ScoreBreakdown))> =
                head.iter().map(|entry| (busy(entry.0), *entry)).collect();
            keyed.sort_by(|a, b| {
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

    /// Records a decision's outcome and gives its replica slot back; true
    /// when the learned router learned it (`learn_from_outcomes`).
    pub fn record(
        &self,
        decision: &Decision,
        success: bool,
        latency_ms: f64,
        free_slot: bool,
    ) -> Result<bool, ZetaError> {
        let kind = if success {
            OutcomeKind::Success
        } else {
            OutcomeKind::Other
        };
        let learned = self
            .learning
            .as_ref()
            .is_some_and(|l| l.learn_from_outcomes)
            .then_some(success);
        self.record_inner(decision, kind, latency_ms, None, 0, 0, learned, free_slot)
    }

    /// Gives a decision's replica slot back without recording anything: for
    /// a request abandoned before it was sent, or one whose outcome is
    /// recorded later with `free_slot` off (once its cause is known).
    pub fn release(&self, decision: &Decision) {
        self.release_slot(decision.model, decision.replica);
    }

    /// Remembers that `model` refused requests with `feature` (one bit of
    /// [`crate::request_kinds::FEATURES`]) for `ttl_ms`: it is skipped for
    /// them meanwhile.
    pub fn learn_unserved(&self, model: usize, bit: u32, ttl_ms: u64) {
        if let Some(routed) = self.models.get(model) {
            let now = self.tracker.clock().now_ms();
            routed.unserved.learn(bit, now.saturating_add(ttl_ms));
        }
    }

    /// Records how a dispatched request ended: the tracker's window (for
    /// scoring) and the replica's breaker see replica faults and successes;
    /// client errors, context-length refusals and cancelled hedges only
    /// count in the replica's counters. Gives the replica slot back. True
    /// when the learned router learned it (`learn_from_outcomes`: a success
    /// as good, a context-length refusal as bad).
    #[allow(clippy::too_many_arguments)]
    pub fn record_outcome(
        &self,
        decision: &Decision,
        kind: OutcomeKind,
        latency_ms: f64,
        ttft_ms: Option<f64>,
        prompt_tokens: u64,
        completion_tokens: u64,
        free_slot: bool,
    ) -> Result<bool, ZetaError> {
        let learned = (self
            .learning
            .as_ref()
            .is_some_and(|l| l.learn_from_outcomes)
            && matches!(kind, OutcomeKind::Success | OutcomeKind::ContextLength))
        .then_some(kind == OutcomeKind::Success);
        self.record_inner(
            decision,
            kind,
            latency_ms,
            ttft_ms,
            prompt_tokens,
            completion_tokens,
            learned,
            free_slot,
        )
    }

    /// [`Self::record_outcome`], learning `learned` (success or not) when
    /// given; true when it was learned.
    #[allow(clippy::too_many_arguments)]
    fn record_inner(
        &self,
        decision: &Decision,
        kind: OutcomeKind,
        latency_ms: f64,
        ttft_ms: Option<f64>,
        prompt_tokens: u64,
        completion_tokens: u64,
        learned: Option<bool>,
        free_slot: bool,
    ) -> Result<bool, ZetaError> {
        crate::tracker::check_latency(latency_ms)?;
        if let Some(ttft) = ttft_ms.filter(|t| !(t.is_finite() && *t >= 0.0)) {
            return Err(ZetaError::InvalidInput {
                field: "ttft_ms",
                position: crate::errors::Position::Scalar,
                expected: "finite and >= 0",
                value: crate::errors::float_repr(ttft),
            });
        }
        let Some(model) = self.models.get(decision.model) else {
            return Err(ZetaError::NoCandidates {
                operation: "record()",
            });
        };
        let now = self.tracker.clock().now_ms();
        if free_slot {
            model.replicas.release(decision.replica);
        }
        if let Some(counters) = model.counters.get(decision.replica) {
            counters.count(kind, latency_ms, ttft_ms, prompt_tokens, completion_tokens);
        }
        let success = kind == OutcomeKind::Success;
        let taught = match learned {
            Some(outcome) => self.learn(decision, outcome)?,
            None => false,
        };
        // An answer's time is a measurement, not a verdict: always learned.
        if let (true, Some(learning), Some(request)) =
            (success, &self.learning, &decision.request.learned)
        {
            learning
                .predictor
                .update_latency(&request.features, decision.model, latency_ms)?;
        }
        if !success && !kind.is_replica_fault() {
            if !matches!(kind, OutcomeKind::Cancelled | OutcomeKind::Internal) {
                // It answered: as far as the breaker knows, the replica is up.
                model.replicas.on_outcome(decision.replica, true, now);
            }
            return Ok(taught);
        }
        // A replica that answers, but badly (5xx, cut streams), and is already
        // passed over for its record: its failed probes must not open the
        // breaker, whose cool-down would keep it out long after it could be
        // seen healed. Refused connections and timeouts (down, hung) still
        // do: the breaker is the better tool for a replica that is gone.
        let answers_badly = matches!(
            kind,
            OutcomeKind::ServerError
                | OutcomeKind::RateLimited
                | OutcomeKind::StreamCut
                | OutcomeKind::Other
        );
        let probe_of_degraded = answers_badly
            && degraded(&model.health, &self.resilience.replica_adapt).contains(&decision.replica);
        if !probe_of_degraded {
            model.replicas.on_outcome(decision.replica, success, now);
        }
        if let Some(health) = model.health.get(decision.replica) {
            let policy = &self.resilience.replica_adapt;
            // A success of a replica with a bad record (a probe, mostly)
            // counts double, so a healed replica is back after two.
            let alpha = if success && health.read().0 > policy.fail_margin {
                policy.alpha.max(0.5)
            } else {
                policy.alpha
            };
            health.observe(success, latency_ms, alpha);
        }
        if let Some(bin) = model
            .outcomes
            .get(decision.context)
            .and_then(|bins| bins.get(bin_of(decision.complexity)))
        {
            let [requests, successes] = bin;
            requests.fetch_add(1, Ordering::Relaxed);
            successes.fetch_add(u64::from(success), Ordering::Relaxed);
        }
        if let Some(key) = model
            .leaves
            .get(decision.task)
            .and_then(|l| l.get(decision.replica))
        {
            key.window.record(now, success, latency_ms);
        }
        Ok(taught)
    }
}

impl RouterCore {
    /// The complexity range a model suits in a context (0: its own).
    pub fn range(&self, model: usize, context: usize) -> Option<(f64, f64)> {
        let model = self.models.get(model)?;
        model
            .ranges
            .get(context)
            .or_else(|| model.ranges.first())
            .map(RangeCell::get)
    }

    /// Moves the upper edge of every range below 1 by `step` from recorded
    /// outcomes: up when the model kept succeeding (at least
    /// `target_success_rate`) on the hardest requests it was given (those in
    /// the deciles overlapping the last tenth under its edge, at least
    /// `min_requests` of them), down when it fell more than 10 points short.
    /// The evidence is spent on a change.
    pub fn tune_ranges(
        &self,
        min_requests: u64,
        target_success_rate: f64,
        step: f64,
    ) -> Vec<RangeChange> {
        let mut changes = Vec::new();
        for (m, model) in self.models.iter().enumerate() {
            for (context, (cell, bins)) in model.ranges.iter().zip(&model.outcomes).enumerate() {
                let (low, high) = cell.get();
                if high >= 1.0 || high <= 0.0 {
                    continue;
                }
                // The deciles overlapping the last tenth under the edge.
                let first = bin_of((high - 0.1).max(0.0));
                let last = bin_of((high - 1e-9).max(0.0));
                let edge = bins.get(first..=last).unwrap_or_default();
                let total: u64 = edge.iter().map(|[r, _]| r.load(Ordering::Relaxed)).sum();
                let succeeded: u64 = edge.iter().map(|[_, s]| s.load(Ordering::Relaxed)).sum();
                if total < min_requests {
                    continue;
                }
                let rate = succeeded as f64 / total as f64;
                let new_high = if rate >= target_success_rate {
                    (high + step).min(1.0)
                } else if rate < target_success_rate - 0.1 {
                    (high - step).max(low)
                } else {
                    continue;
                };
                cell.high.store(new_high.to_bits(), Ordering::Relaxed);
                for [requests, successes] in bins {
                    requests.store(0, Ordering::Relaxed);
                    successes.store(0, Ordering::Relaxed);
                }
                changes.push(RangeChange {
                    model: m,
                    context,
                    old_high: high,
                    new_high,
                    requests: total,
                    success_rate: rate,
                });
            }
        }
        changes
    }
}

fn capability(model: &RoutedModel, task: usize) -> Option<f64> {
    model.capabilities.get(task).copied().flatten()
}

/// The text task a model is best at (ties: the first in [`TASKS`]).
fn best_text_task(model: &RoutedModel) -> Option<usize> {
    (0..TEXT_TASKS.len())
        .filter_map(|t| capability(model, t).map(|cap| (t, cap)))
        .fold(None, |best: Option<(usize, f64)>, (t, cap)| match best {
            Some((_, top)) if top >= cap => best,
            _ => Some((t, cap)),
        })
        .map(|(t, _)| t)
}

/// The task a model's outcome for a `task` request is recorded under: the
/// task itself when the model serves it, else its best text task (an
/// unclaimed text request, or a caller naming a model for another task), so
/// that no outcome falls outside the model's windows.
fn served_task(model: &RoutedModel, task: usize) -> usize {
    if capability(model, task).is_some() {
        return task;
    }
    if task < TEXT_TASKS.len() {
        if let Some(best) = best_text_task(model) {
            return best;
        }
    }
    model
        .capabilities
        .iter()
        .position(Option::is_some)
        .unwrap_or(task)
}
