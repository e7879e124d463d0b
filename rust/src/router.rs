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

use crate::balance::{Policy, ReplicaSet};
use crate::errors::ZetaError;
use crate::pool::{live_totals_with_fallback, LiveMetrics};
use crate::profile::TEXT_TASKS;
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
    /// `[task][replica]`: the tracker windows this model's outcomes go to.
    leaves: Vec<Vec<Arc<TrackedKey>>>,
    /// Every window of the model, the fallback view.
    all_leaves: Vec<Arc<TrackedKey>>,
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
}

/// The router's core: models, their replica slots, the tracker and scorer.
pub struct RouterCore {
    tracker: Arc<PerformanceTracker>,
    scorer: AdaptiveScorer,
    models: Vec<RoutedModel>,
    spread_margin: f64,
}

impl RouterCore {
    /// Builds the router and registers every (model, replica, task) window.
    pub fn new(
        tracker: Arc<PerformanceTracker>,
        scorer: AdaptiveScorer,
        models: Vec<ModelInput>,
        policy: Policy,
        spread_margin: f64,
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
                replicas: ReplicaSet::new(&capacities, policy),
                leaves,
                all_leaves,
            });
        }
        Ok(Self {
            tracker,
            scorer,
            models: routed,
            spread_margin,
        })
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

    /// Routes a request of `task` (index into [`TASKS`]) and `complexity` in
    /// `context` (0 = none; else 1 + the context's index), taking a replica slot.
    pub fn route(
        &self,
        task: usize,
        complexity: f64,
        context: usize,
    ) -> Result<Decision, ZetaError> {
        let capable: Vec<usize> = (0..self.models.len())
            .filter(|&m| {
                self.models
                    .get(m)
                    .is_some_and(|model| capability(model, task).is_some())
            })
            .collect();
        if capable.is_empty() {
            return Err(ZetaError::InvalidName {
                field: "task",
                problem: "has no capable model in this router",
                value: TASKS.get(task).copied().unwrap_or("?").to_owned(),
            });
        }
        let suits = |m: usize| {
            self.models.get(m).is_some_and(|model| {
                let (low, high) = model
                    .ranges
                    .get(context)
                    .or_else(|| model.ranges.first())
                    .map_or((0.0, 1.0), RangeCell::get);
                (low..=high).contains(&complexity)
            })
        };
        let now = self.tracker.clock().now_ms();
        // Models whose range suits the request come first; the other capable
        // models follow as fallbacks when those are all at capacity.
        let (mut suited, mut others) = (Vec::new(), Vec::new());
        for &m in &capable {
            let Some(model) = self.models.get(m) else {
                continue;
            };
            let cap = capability(model, task).unwrap_or(0.0);
            let live = LiveMetrics::from_totals(&self.totals(model, task, now));
            let breakdown =
                self.scorer
                    .score(cap, live.success_rate, live.avg_latency_ms, live.requests)?;
            if suits(m) {
                suited.push((m, breakdown));
            } else {
                others.push((m, breakdown));
            }
        }
        self.order(&mut suited);
        self.order(&mut others);
        let scored: Vec<(usize, ScoreBreakdown)> = suited.into_iter().chain(others).collect();
        for (position, (m, breakdown)) in scored.iter().enumerate() {
            let Some(model) = self.models.get(*m) else {
                continue;
            };
            if let Some(replica) = model.replicas.acquire() {
                let runners_up = scored
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != position)
                    .map(|(_, (other, b))| (*other, b.performance_score))
                    .collect();
                return Ok(Decision {
                    model: *m,
                    replica,
                    task,
                    complexity,
                    context,
                    breakdown: *breakdown,
                    runners_up,
                });
            }
        }
        Err(ZetaError::NoCandidates {
            operation: "route() (every candidate's replicas are down or at capacity)",
        })
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

    /// Records a decision's outcome and gives its replica slot back.
    pub fn record(
        &self,
        decision: &Decision,
        success: bool,
        latency_ms: f64,
    ) -> Result<(), ZetaError> {
        crate::tracker::check_latency(latency_ms)?;
        let Some(model) = self.models.get(decision.model) else {
            return Err(ZetaError::NoCandidates {
                operation: "record()",
            });
        };
        model.replicas.release(decision.replica);
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
            key.window
                .record(self.tracker.clock().now_ms(), success, latency_ms);
        }
        Ok(())
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
