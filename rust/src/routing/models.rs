//! The models a router serves, as it needs them: capabilities per task,
//! complexity ranges, replicas with their counters and health, fallbacks,
//! the kinds of request they cannot serve, and the tracker windows their
//! outcomes go to. Built once from [`ModelInput`]s.

use std::sync::Arc;

use super::ranges::ComplexityRanges;
use super::settings::Resilience;
use crate::balance::ReplicaSet;
use crate::errors::ZetaError;
use crate::outcome::ReplicaCounters;
use crate::policies::replica_policy;
use crate::profile::TEXT_TASKS;
use crate::replica_health::ReplicaHealth;
use crate::request_kinds::Unserved;
use crate::rollup::{totals_with_fallback, Rollup};
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

/// The model spec the router is built from.
#[derive(Debug, Clone, PartialEq)]
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

impl ModelInput {
    /// Checks what the router relies on: a non-empty id, capabilities in
    /// [0, 100] for known tasks, ranges within [0, 1] with low <= high, at
    /// least one replica, replica ids unique and non-empty.
    pub fn validate(&self) -> Result<(), ZetaError> {
        if self.id.is_empty() {
            return Err(ZetaError::InvalidName {
                field: "model id",
                problem: "must be non-empty",
                value: self.id.clone(),
            });
        }
        capabilities_of(&self.capabilities)?;
        if let Some((_, bad)) = self
            .capabilities
            .iter()
            .find(|(_, c)| !(c.is_finite() && (0.0..=100.0).contains(c)))
        {
            return Err(ZetaError::InvalidConfig {
                field: "capabilities",
                expected: "finite and in [0, 100]",
                value: crate::errors::float_repr(*bad),
            });
        }
        if let Some((low, high)) = self.ranges.iter().find(|(low, high)| {
            !(low.is_finite() && high.is_finite() && 0.0 <= *low && low <= high && *high <= 1.0)
        }) {
            return Err(ZetaError::InvalidConfig {
                field: "complexity range",
                expected: "[low, high] with 0 <= low <= high <= 1",
                value: format!(
                    "[{}, {}]",
                    crate::errors::float_repr(*low),
                    crate::errors::float_repr(*high)
                ),
            });
        }
        if self.ranges.is_empty() || self.replicas.is_empty() {
            return Err(ZetaError::InvalidName {
                field: "model",
                problem: "needs its own complexity range and at least one replica",
                value: self.id.clone(),
            });
        }
        for (index, (replica, _)) in self.replicas.iter().enumerate() {
            let repeated = self.replicas.iter().take(index).any(|(r, _)| r == replica);
            if replica.is_empty() || repeated {
                return Err(ZetaError::InvalidName {
                    field: "replica id",
                    problem: "must be non-empty and unique within its model",
                    value: replica.clone(),
                });
            }
        }
        Ok(())
    }
}

/// A model as the router needs it.
pub struct RoutedModel {
    pub id: Arc<str>,
    /// Capability per entry of [`TASKS`], `None` when it does not serve it.
    pub capabilities: [Option<f64>; 5],
    /// The complexity range it suits per context, tuned from outcomes.
    pub(super) ranges: ComplexityRanges,
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
    /// Its answers' recent structural checks per request kind.
    pub checks: crate::verdicts::KindChecks,
    /// `[task][replica]`: the tracker windows this model's outcomes go to.
    pub(super) leaves: Vec<Vec<Arc<TrackedKey>>>,
    /// `[task]`: the model's rollup for each task it serves (over every
    /// replica), which its scores read.
    task_rollups: Vec<Option<Arc<Rollup>>>,
    /// The model's rollup over every task, the fallback view.
    model_rollup: Arc<Rollup>,
}

impl RoutedModel {
    /// Its capability for `task`, `None` when it does not serve it.
    #[inline]
    pub fn capability(&self, task: usize) -> Option<f64> {
        self.capabilities.get(task).copied().flatten()
    }

    /// The text task it is best at (ties: the first in [`TASKS`]).
    pub fn best_text_task(&self) -> Option<usize> {
        (0..TEXT_TASKS.len())
            .filter_map(|t| self.capability(t).map(|cap| (t, cap)))
            .fold(None, |best: Option<(usize, f64)>, (t, cap)| match best {
                Some((_, top)) if top >= cap => best,
                _ => Some((t, cap)),
            })
            .map(|(t, _)| t)
    }

    /// The task its outcome for a `task` request is recorded under: the task
    /// itself when it serves it, else its best text task (an unclaimed text
    /// request, or a caller naming it for another task), so that no outcome
    /// falls outside its windows.
    pub fn served_task(&self, task: usize) -> usize {
        if self.capability(task).is_some() {
            return task;
        }
        if task < TEXT_TASKS.len() {
            if let Some(best) = self.best_text_task() {
                return best;
            }
        }
        self.capabilities
            .iter()
            .position(Option::is_some)
            .unwrap_or(task)
    }

    /// The live totals its score for `task` reads: the task's windows over
    /// its replicas, or all its windows while the task has too few requests.
    #[inline]
    pub(super) fn totals(&self, task: usize, now_ms: u64, minimum: u64) -> Totals {
        match self.task_rollups.get(task) {
            Some(Some(rollup)) => totals_with_fallback(rollup, &self.model_rollup, now_ms, minimum),
            _ => Totals::default(),
        }
    }

    /// Requests in flight per replica (a model's busyness, for ordering).
    pub fn busy(&self) -> f64 {
        f64::from(self.replicas.total_in_flight()) / self.replicas.len().max(1) as f64
    }

    /// The windows of one replica, over every task it serves.
    pub(super) fn replica_leaves(&self, replica: usize) -> Vec<Arc<TrackedKey>> {
        self.leaves
            .iter()
            .filter_map(|per_replica| per_replica.get(replica).cloned())
            .collect()
    }
}

/// Builds the routed models, registering every (model, replica, task)
/// window in the tracker and resolving fallbacks to indices.
pub(super) fn build(
    tracker: &PerformanceTracker,
    models: Vec<ModelInput>,
    replica_policy_name: &str,
    resilience: &Resilience,
) -> Result<Vec<RoutedModel>, ZetaError> {
    if models.is_empty() {
        return Err(ZetaError::NoCandidates {
            operation: "Router()",
        });
    }
    let now = tracker.clock().now_ms();
    let mut fallback_names = Vec::with_capacity(models.len());
    let mut routed = Vec::with_capacity(models.len());
    for model in models {
        model.validate()?;
        let capabilities = capabilities_of(&model.capabilities)?;
        let mut leaves = Vec::with_capacity(TASKS.len());
        let mut task_rollups = Vec::with_capacity(TASKS.len());
        for (task, capability) in TASKS.iter().zip(capabilities) {
            let mut per_replica = Vec::new();
            let mut rollup = None;
            if capability.is_some() {
                for (replica, _) in &model.replicas {
                    per_replica.push(tracker.key(&model.id, replica, task)?);
                }
                rollup = Some(tracker.rollup(&model.id, Some(task)));
            }
            leaves.push(per_replica);
            task_rollups.push(rollup);
        }
        let model_rollup = tracker.rollup(&model.id, None);
        let capacities: Vec<u32> = model.replicas.iter().map(|(_, c)| *c).collect();
        let mut replicas = ReplicaSet::with_breakers(
            &capacities,
            replica_policy(replica_policy_name, capacities.len(), &resilience.prefix)?,
            resilience.breaker,
            now,
        );
        replicas.set_engine_load_ttl_ms(resilience.engine_load_ttl_ms);
        fallback_names.push(model.fallbacks);
        let replica_count = model.replicas.len();
        routed.push(RoutedModel {
            id: model.id.as_str().into(),
            capabilities,
            ranges: ComplexityRanges::new(&model.ranges),
            replica_ids: model
                .replicas
                .iter()
                .map(|(id, _)| id.as_str().into())
                .collect(),
            replicas,
            counters: (0..replica_count)
                .map(|_| ReplicaCounters::default())
                .collect(),
            health: (0..replica_count)
                .map(|_| ReplicaHealth::default())
                .collect(),
            context_window: model.context_window,
            fallbacks: Vec::new(),
            unserved: Unserved::default(),
            checks: crate::verdicts::KindChecks::default(),
            leaves,
            task_rollups,
            model_rollup,
        });
    }
    for (index, names) in fallback_names.iter().enumerate() {
        let chain = fallback_chain(&routed, index, names)?;
        if let Some(model) = routed.get_mut(index) {
            model.fallbacks = chain;
        }
    }
    Ok(routed)
}

/// Capabilities by task name, as one slot per entry of [`TASKS`].
fn capabilities_of(named: &[(String, f64)]) -> Result<[Option<f64>; 5], ZetaError> {
    let mut capabilities = [None; 5];
    for (task, value) in named {
        let index = TASKS
            .iter()
            .position(|t| t == task)
            .ok_or_else(|| ZetaError::UnknownName {
                field: "task",
                value: task.clone(),
                known: TASKS.join(", "),
            })?;
        if let Some(slot) = capabilities.get_mut(index) {
            *slot = Some(*value);
        }
    }
    Ok(capabilities)
}

/// The indices of the models `names` (a model's fallbacks) name; a model
/// naming itself is left out.
fn fallback_chain(
    models: &[RoutedModel],
    index: usize,
    names: &[String],
) -> Result<Vec<usize>, ZetaError> {
    let mut chain = Vec::with_capacity(names.len());
    for name in names {
        let target = models
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
    Ok(chain)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::window::WindowConfig;

    fn tracker() -> Result<PerformanceTracker, ZetaError> {
        PerformanceTracker::new(WindowConfig::default(), Clock::manual(1_000))
    }

    fn input(id: &str, capabilities: &[(&str, f64)], fallbacks: &[&str]) -> ModelInput {
        ModelInput {
            id: id.into(),
            capabilities: capabilities
                .iter()
                .map(|(t, c)| ((*t).to_owned(), *c))
                .collect(),
            ranges: vec![(0.0, 1.0)],
            replicas: vec![("r0".into(), 0), ("r1".into(), 2)],
            context_window: 0,
            fallbacks: fallbacks.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    #[test]
    fn windows_are_registered_per_served_task_and_replica() -> Result<(), ZetaError> {
        let tracker = tracker()?;
        let models = build(
            &tracker,
            vec![input("a", &[("code", 90.0), ("chat", 70.0)], &[])],
            "least_loaded",
            &Resilience::default(),
        )?;
        let a = models.first().ok_or(ZetaError::ForeignDecision)?;
        assert_eq!(a.capability(0), Some(90.0));
        assert_eq!(a.capability(3), None);
        let served: Vec<usize> = a.leaves.iter().map(Vec::len).collect();
        assert_eq!(
            served,
            vec![2, 0, 2, 0, 0],
            "code and chat, two replicas each"
        );
        assert_eq!(a.replica_leaves(1).len(), 2);
        Ok(())
    }

    #[test]
    fn outcomes_of_unserved_tasks_go_to_the_best_text_task() -> Result<(), ZetaError> {
        let tracker = tracker()?;
        let models = build(
            &tracker,
            vec![input("a", &[("reasoning", 60.0), ("chat", 80.0)], &[])],
            "least_loaded",
            &Resilience::default(),
        )?;
        let a = models.first().ok_or(ZetaError::ForeignDecision)?;
        let chat = TASKS.iter().position(|t| *t == "chat").unwrap_or(0);
        assert_eq!(a.best_text_task(), Some(chat));
        assert_eq!(
            a.served_task(0),
            chat,
            "code is not served: chat is its best"
        );
        Ok(())
    }

    #[test]
    fn fallbacks_resolve_to_indices_and_unknown_names_are_errors() -> Result<(), ZetaError> {
        let tracker = tracker()?;
        let models = build(
            &tracker,
            vec![
                input("a", &[("chat", 80.0)], &["b", "a"]),
                input("b", &[("chat", 70.0)], &[]),
            ],
            "power_of_two",
            &Resilience::default(),
        )?;
        assert_eq!(models.first().map(|m| m.fallbacks.clone()), Some(vec![1]));
        let bad = build(
            &tracker,
            vec![input("c", &[("chat", 80.0)], &["ghost"])],
            "least_loaded",
            &Resilience::default(),
        );
        assert!(matches!(
            bad,
            Err(ZetaError::InvalidName {
                field: "fallbacks",
                ..
            })
        ));
        let unknown_task = build(
            &tracker,
            vec![input("d", &[("poetry", 80.0)], &[])],
            "least_loaded",
            &Resilience::default(),
        );
        assert!(matches!(
            unknown_task,
            Err(ZetaError::UnknownName { field: "task", .. })
        ));
        let unknown_policy = build(
            &tracker,
            vec![input("e", &[("chat", 80.0)], &[])],
            "fastest",
            &Resilience::default(),
        );
        assert!(matches!(
            unknown_policy,
            Err(ZetaError::UnknownSetting { .. })
        ));
        Ok(())
    }
}
