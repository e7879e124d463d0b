//! Assignment: from a profiled request to a model and a replica slot.
//!
//! Candidates are the models with a capability for the task whose
//! complexity range (in the request's context) holds the request's
//! complexity, or every capable model when none does. Each is scored from
//! its live metrics; among those within `spread_margin` points of the best,
//! the least busy (in-flight per replica) is tried first, so a batch spreads
//! over near-equal models instead of piling onto the top one. A model whose
//! replicas are all at capacity passes the request to the next candidate.

use std::sync::Arc;

use crate::balance::{Policy, ReplicaSet};
use crate::errors::ZetaError;
use crate::pool::{sum_live, LiveMetrics};
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
    /// The complexity range it suits, per context (index 0: its own).
    pub ranges: Vec<(f64, f64)>,
    pub replica_ids: Vec<Arc<str>>,
    pub replicas: ReplicaSet,
    /// `[task][replica]`: the tracker windows this model's outcomes go to.
    leaves: Vec<Vec<Arc<TrackedKey>>>,
    /// Every window of the model, the fallback view.
    all_leaves: Vec<Arc<TrackedKey>>,
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
                ranges: model.ranges,
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
        let totals = sum_live(leaves, now_ms);
        if totals.requests < minimum {
            let whole = sum_live(&model.all_leaves, now_ms);
            if whole.requests >= minimum {
                return whole;
            }
        }
        totals
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
                    .copied()
                    .unwrap_or((0.0, 1.0));
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

fn capability(model: &RoutedModel, task: usize) -> Option<f64> {
    model.capabilities.get(task).copied().flatten()
}
