//! Decisions fed by the tracker: a fixed set of candidate models whose live
//! metrics are read straight from their windows, with no lists passed in.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::candidates::{
    live_totals_with_fallback, score_candidates, sort_by_score, CandidateInput, LiveMetrics,
};
use crate::errors::ZetaError;
use crate::scoring::{AdaptiveScorer, ScoreBreakdown};
use crate::tracker::{PerformanceTracker, TrackedKey};
use crate::window::{Totals, LATENCY_UNIT_MS};

/// One capable model for one task, with the windows that feed it.
struct Entry {
    model: usize,
    capability: f64,
    /// The (model, any replica, task) windows.
    leaves: Box<[Arc<TrackedKey>]>,
    /// Every window of the model, the fallback view; empty when it would
    /// be the same windows as `leaves`.
    fallback: Box<[Arc<TrackedKey>]>,
}

/// Which windows feed each candidate, resolved once per tracker generation.
struct Resolution {
    generation: u64,
    /// `[task]`: the capable models, in pool order.
    by_task: Vec<Vec<Entry>>,
}

/// Candidate models with a capability per task, scored from live metrics.
pub struct CandidatePool {
    tracker: Arc<PerformanceTracker>,
    scorer: AdaptiveScorer,
    models: Vec<Arc<str>>,
    tasks: Vec<Arc<str>>,
    /// `[task][model]`: capability, or `None` when the model does not serve the task.
    capability: Vec<Vec<Option<f64>>>,
    resolution: ArcSwap<Resolution>,
    /// The relative latency rule's factor (0: off), as the router's.
    relative_latency_factor: f64,
}

impl CandidatePool {
    /// A pool over `models`, each with `(task, capability)` pairs.
    pub fn new(
        tracker: Arc<PerformanceTracker>,
        scorer: AdaptiveScorer,
        models: Vec<(String, Vec<(String, f64)>)>,
    ) -> Result<Self, ZetaError> {
        if models.is_empty() {
            return Err(ZetaError::NoCandidates {
                operation: "CandidatePool()",
            });
        }
        let mut tasks: Vec<Arc<str>> = Vec::new();
        for (_, capabilities) in &models {
            for (task, _) in capabilities {
                if !tasks.iter().any(|known| **known == **task) {
                    tasks.push(task.as_str().into());
                }
            }
        }
        let mut capability = vec![vec![None; models.len()]; tasks.len()];
        let mut names = Vec::with_capacity(models.len());
        for (model_index, (model, capabilities)) in models.iter().enumerate() {
            if model.is_empty() || names.iter().any(|known: &Arc<str>| **known == **model) {
                return Err(ZetaError::InvalidName {
                    field: "model",
                    problem: "must be a unique, non-empty string",
                    value: model.clone(),
                });
            }
            names.push(model.as_str().into());
            for (task, value) in capabilities {
                if !(0.0..=100.0).contains(value) {
                    return Err(ZetaError::InvalidConfig {
                        field: "capability",
                        expected: "in [0, 100]",
                        value: crate::errors::float_repr(*value),
                    });
                }
                let task_index = tasks
                    .iter()
                    .position(|known| **known == **task)
                    .unwrap_or(0);
                if let Some(slot) = capability
                    .get_mut(task_index)
                    .and_then(|row| row.get_mut(model_index))
                {
                    *slot = Some(*value);
                }
            }
        }
        let pool = Self {
            tracker,
            scorer,
            models: names,
            tasks,
            capability,
            resolution: ArcSwap::from_pointee(Resolution {
                generation: u64::MAX,
                by_task: Vec::new(),
            }),
            relative_latency_factor: 0.0,
        };
        pool.refresh();
        Ok(pool)
    }

    /// Applies the relative latency rule (see
    /// [`crate::penalties::relatively_slow`]) with `factor` (0: off), as a
    /// router with the same setting does.
    pub fn with_relative_latency(mut self, factor: f64) -> Result<Self, ZetaError> {
        if !(factor == 0.0 || (factor.is_finite() && factor > 1.0)) {
            return Err(ZetaError::InvalidConfig {
                field: "relative_latency_factor",
                expected: "0 (off) or > 1",
                value: crate::errors::float_repr(factor),
            });
        }
        self.relative_latency_factor = factor;
        Ok(self)
    }

    /// Model ids, in pool order.
    pub fn models(&self) -> &[Arc<str>] {
        &self.models
    }

    /// Task types some model has a capability for.
    pub fn tasks(&self) -> &[Arc<str>] {
        &self.tasks
    }

    /// The tracker feeding the pool.
    pub fn tracker(&self) -> &Arc<PerformanceTracker> {
        &self.tracker
    }

    /// The scorer applied.
    pub fn scorer(&self) -> &AdaptiveScorer {
        &self.scorer
    }

    /// The index of a task, or an error naming the known ones.
    pub fn task_index(&self, task: &str) -> Result<usize, ZetaError> {
        self.tasks
            .iter()
            .position(|known| **known == *task)
            .ok_or_else(|| ZetaError::InvalidName {
                field: "task",
                problem: "has no capable model in this pool",
                value: task.to_owned(),
            })
    }

    fn refresh(&self) {
        // One read of both: the generation the keys are stamped with counts
        // no key they lack, so the resolution never misses a key for good.
        let (generation, keys) = self.tracker.keys_at_generation();
        let by_model: Vec<Vec<Arc<TrackedKey>>> = self
            .models
            .iter()
            .map(|model| {
                keys.iter()
                    .filter(|k| k.name.model == *model)
                    .cloned()
                    .collect()
            })
            .collect();
        let by_task = self
            .tasks
            .iter()
            .zip(&self.capability)
            .map(|(task, capabilities)| {
                capabilities
                    .iter()
                    .zip(&by_model)
                    .enumerate()
                    .filter_map(|(model, (capability, all))| {
                        let capability = (*capability)?;
                        let leaves: Box<[_]> = all
                            .iter()
                            .filter(|k| k.name.task == *task)
                            .cloned()
                            .collect();
                        let fallback = if leaves.len() == all.len() {
                            Box::default()
                        } else {
                            all.clone().into_boxed_slice()
                        };
                        Some(Entry {
                            model,
                            capability,
                            leaves,
                            fallback,
                        })
                    })
                    .collect()
            })
            .collect();
        self.resolution.store(Arc::new(Resolution {
            generation,
            by_task,
        }));
    }

    /// The resolution for the tracker's current generation.
    #[inline]
    fn resolution(&self) -> arc_swap::Guard<Arc<Resolution>> {
        let resolution = self.resolution.load();
        if resolution.generation == self.tracker.generation() {
            return resolution;
        }
        self.refresh();
        self.resolution.load()
    }

    /// The live totals that feed a candidate: per (model, task) over its
    /// replicas, falling back to the whole model when that has too few requests.
    #[inline(always)]
    fn totals_of(entry: &Entry, now_ms: u64, minimum: u64) -> Totals {
        live_totals_with_fallback(&entry.leaves, &entry.fallback, now_ms, minimum)
    }

    /// The index (in pool order) of the best model for `task`; ties go to
    /// the model listed first.
    pub fn best(&self, task: usize) -> Result<usize, ZetaError> {
        let resolution = self.resolution();
        let entries = resolution
            .by_task
            .get(task)
            .ok_or(ZetaError::NoCandidates {
                operation: "best()",
            })?;
        let now = self.tracker.clock().now_ms();
        let minimum = self.scorer.config().min_requests_for_performance;
        if self.relative_latency_factor > 0.0 {
            // A rule over the whole set: the explained pass, then the top.
            let mut scored = self.score_entries(entries, now, minimum)?;
            sort_by_score(&mut scored);
            return scored
                .first()
                .map(|(m, _)| *m)
                .ok_or(ZetaError::NoCandidates {
                    operation: "best()",
                });
        }
        // Stack buffers sized to the pool: zeroing 64-wide buffers for an
        // 8-model pool cost more than the decision's arithmetic.
        match entries.len() {
            0..=8 => self.best_in::<8>(entries, now, minimum),
            9..=16 => self.best_in::<16>(entries, now, minimum),
            17..=STACK => self.best_in::<STACK>(entries, now, minimum),
            _ => self.best_slow(entries, now, minimum),
        }
    }

    #[inline(always)]
    fn best_in<const N: usize>(
        &self,
        entries: &[Entry],
        now: u64,
        minimum: u64,
    ) -> Result<usize, ZetaError> {
        let mut capability = [0.0_f64; N];
        let mut requests = [0_u64; N];
        // Gathered as sums, turned in place into rates and means below.
        let mut success_rate = [0.0_f64; N];
        let mut latency = [0.0_f64; N];
        let mut divisor = [0.0_f64; N];
        let n = entries.len();
        let rows = entries
            .iter()
            .zip(capability.iter_mut())
            .zip(requests.iter_mut())
            .zip(success_rate.iter_mut())
            .zip(latency.iter_mut())
            .zip(divisor.iter_mut());
        for (((((entry, cap), req), succ), units), lat_req) in rows {
            let totals = Self::totals_of(entry, now, minimum);
            *cap = entry.capability;
            *req = totals.requests;
            // Via i64: x86 converts i64 to f64 in one instruction, u64 in
            // several; counts never reach 2^63.
            *succ = totals.successes as i64 as f64;
            *units = totals.latency_units as i64 as f64;
            *lat_req = totals.latency_requests as i64 as f64;
        }
        to_rates_and_means(&requests, &mut success_rate, &mut latency, &divisor);
        let (chosen, _) = self.scorer.best(
            capability.get(..n).unwrap_or_default(),
            success_rate.get(..n).unwrap_or_default(),
            latency.get(..n).unwrap_or_default(),
            requests.get(..n).unwrap_or_default(),
        )?;
        entries
            .get(chosen)
            .map(|entry| entry.model)
            .ok_or(ZetaError::NoCandidates {
                operation: "best()",
            })
    }

    #[cold]
    fn best_slow(&self, entries: &[Entry], now: u64, minimum: u64) -> Result<usize, ZetaError> {
        let metrics: Vec<LiveMetrics> = entries
            .iter()
            .map(|e| LiveMetrics::from_totals(&Self::totals_of(e, now, minimum)))
            .collect();
        let capability: Vec<f64> = entries.iter().map(|e| e.capability).collect();
        let success: Vec<f64> = metrics.iter().map(|m| m.success_rate).collect();
        let latency: Vec<f64> = metrics.iter().map(|m| m.avg_latency_ms).collect();
        let requests: Vec<u64> = metrics.iter().map(|m| m.requests).collect();
        let (chosen, _) = self
            .scorer
            .best(&capability, &success, &latency, &requests)?;
        entries
            .get(chosen)
            .map(|entry| entry.model)
            .ok_or(ZetaError::NoCandidates {
                operation: "best()",
            })
    }

    /// Every capable model's score for `task`, explained, in pool order.
    pub fn score(&self, task: usize) -> Result<Vec<(usize, ScoreBreakdown)>, ZetaError> {
        let resolution = self.resolution();
        let Some(entries) = resolution.by_task.get(task) else {
            return Ok(Vec::new());
        };
        let now = self.tracker.clock().now_ms();
        let minimum = self.scorer.config().min_requests_for_performance;
        self.score_entries(entries, now, minimum)
    }

    /// The scoring pass the router runs too, over these entries.
    fn score_entries(
        &self,
        entries: &[Entry],
        now: u64,
        minimum: u64,
    ) -> Result<Vec<(usize, ScoreBreakdown)>, ZetaError> {
        let inputs = entries.iter().map(|entry| CandidateInput {
            index: entry.model,
            capability: entry.capability,
            live: LiveMetrics::from_totals(&Self::totals_of(entry, now, minimum)),
        });
        score_candidates(&self.scorer, self.relative_latency_factor, inputs)
    }
}

/// Candidates gathered on the stack per decision; larger pools take a
/// heap-allocating path.
const STACK: usize = 64;

/// Sums to rates and means in one branch-free pass the compiler vectorises
/// (with AVX2 when the CPU has it: four divisions per instruction, not two).
/// Without requests both come out 0, a valid input the score then ignores
/// (it uses the capability alone). Rates are clamped: a window's live words
/// can be a record apart under concurrent writes.
fn to_rates_and_means<const N: usize>(
    requests: &[u64; N],
    successes_to_rates: &mut [f64; N],
    units_to_means: &mut [f64; N],
    latency_requests: &[f64; N],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe {
            rates_and_means_avx2(
                requests,
                successes_to_rates,
                units_to_means,
                latency_requests,
            )
        };
        return;
    }
    rates_and_means(
        requests,
        successes_to_rates,
        units_to_means,
        latency_requests,
    );
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rates_and_means_avx2<const N: usize>(
    requests: &[u64; N],
    successes_to_rates: &mut [f64; N],
    units_to_means: &mut [f64; N],
    latency_requests: &[f64; N],
) {
    rates_and_means(
        requests,
        successes_to_rates,
        units_to_means,
        latency_requests,
    );
}

#[inline(always)]
fn rates_and_means<const N: usize>(
    requests: &[u64; N],
    successes_to_rates: &mut [f64; N],
    units_to_means: &mut [f64; N],
    latency_requests: &[f64; N],
) {
    for (((rate, mean), &req), &lat_req) in successes_to_rates
        .iter_mut()
        .zip(units_to_means.iter_mut())
        .zip(requests)
        .zip(latency_requests)
    {
        let req = (req as i64 as f64).max(1.0);
        *rate = (*rate / req).min(1.0);
        *mean = *mean * LATENCY_UNIT_MS / lat_req.max(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::AdaptiveConfig;
    use crate::window::WindowConfig;
    use std::sync::atomic::Ordering;

    fn setup() -> (Arc<PerformanceTracker>, CandidatePool, Clock) {
        let clock = Clock::manual(1_000_000_000);
        let tracker =
            Arc::new(PerformanceTracker::new(WindowConfig::default(), clock.clone()).unwrap());
        let pool = CandidatePool::new(
            Arc::clone(&tracker),
            AdaptiveScorer::new(AdaptiveConfig::default()).unwrap(),
            vec![
                (
                    "big".into(),
                    vec![("code".into(), 92.0), ("chat".into(), 80.0)],
                ),
                ("small".into(), vec![("code".into(), 88.0)]),
            ],
        )
        .unwrap();
        (tracker, pool, clock)
    }

    fn advance(clock: &Clock, ms: u64) {
        if let Clock::Manual(now) = clock {
            now.fetch_add(ms, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_failing_model_loses_the_top_rank_and_regains_it_after_expiry() {
        let (tracker, pool, clock) = setup();
        let code = pool.task_index("code").unwrap();
        assert_eq!(pool.best(code).unwrap(), 0, "capability alone: big wins");
        for _ in 0..20 {
            tracker.record("small", "r1", "code", true, 100.0).unwrap();
        }
        // big at 60 % success: after 10 outcomes it is scored, and halved.
        for i in 0..9 {
            tracker
                .record("big", "r1", "code", i % 5 < 3, 100.0)
                .unwrap();
            assert_eq!(
                pool.best(code).unwrap(),
                0,
                "fewer than 10 outcomes: capability only"
            );
        }
        tracker.record("big", "r1", "code", false, 100.0).unwrap();
        assert_eq!(
            pool.best(code).unwrap(),
            1,
            "10 outcomes at 60 %: small wins"
        );
        // The bad buckets expire: big is back to capability only, and wins.
        advance(&clock, 300_000);
        assert_eq!(pool.best(code).unwrap(), 0);
    }

    #[test]
    fn per_model_data_stands_in_when_the_task_has_too_little() {
        let (tracker, pool, _) = setup();
        for _ in 0..10 {
            tracker.record("big", "r1", "chat", false, 100.0).unwrap();
        }
        let code = pool.task_index("code").unwrap();
        let scores = pool.score(code).unwrap();
        let (_, big) = scores[0];
        assert!(big.has_performance_data, "big's chat outcomes speak for it");
        assert_eq!(big.success_rate, 0.0);
    }

    #[test]
    fn replicas_are_aggregated() {
        let (tracker, pool, _) = setup();
        for i in 0..10 {
            let replica = if i % 2 == 0 { "r1" } else { "r2" };
            tracker
                .record("small", replica, "code", true, (i * 10) as f64)
                .unwrap();
        }
        let code = pool.task_index("code").unwrap();
        let (_, small) = pool.score(code).unwrap()[1];
        assert_eq!(small.requests, 10.0);
        assert!((small.avg_latency_ms - 45.0).abs() < 1e-9);
    }

    #[test]
    fn unknown_tasks_and_duplicate_models_are_errors() {
        let (tracker, pool, _) = setup();
        assert!(pool.task_index("nope").is_err());
        let duplicate = CandidatePool::new(
            tracker,
            AdaptiveScorer::new(AdaptiveConfig::default()).unwrap(),
            vec![("a".into(), vec![]), ("a".into(), vec![])],
        );
        assert!(duplicate.is_err());
    }
}
