//! Test helpers for the router core: a [`RouterCore`] over a manual clock,
//! built from short model specs, and outcomes fed in bulk, either straight
//! into the tracker's windows (scoring only) or through `record_outcome`
//! (windows, breakers, replica health and ranges, as in production).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Decision, ModelInput, Outcome, Resilience, RouterCore, TASKS};
use crate::clock::Clock;
use crate::config::AdaptiveConfig;
use crate::errors::ZetaError;
use crate::learned_capability::RequestView;
use crate::outcome::OutcomeKind;
use crate::policies::model_ordering;
use crate::scoring::AdaptiveScorer;
use crate::tracker::PerformanceTracker;
use crate::window::WindowConfig;

/// Task indices into [`TASKS`].
pub const CODE: usize = 0;
pub const REASONING: usize = 1;
pub const CHAT: usize = 2;
pub const EMBEDDING: usize = 4;

/// Where the manual clock starts (well past 0, so windows have history).
pub const START_MS: u64 = 1_000_000;

/// A model `id` with `(task, capability)` pairs and one replica per
/// capacity (0 = unlimited), named `{id}-{index}`; its range is the whole
/// of [0, 1], no context window, no fallbacks. Change fields with struct
/// update syntax.
pub fn model(id: &str, capabilities: &[(&str, f64)], capacities: &[u32]) -> ModelInput {
    ModelInput {
        id: id.to_owned(),
        capabilities: capabilities
            .iter()
            .map(|(task, value)| ((*task).to_owned(), *value))
            .collect(),
        ranges: vec![(0.0, 1.0)],
        replicas: capacities
            .iter()
            .enumerate()
            .map(|(r, capacity)| (format!("{id}-{r}"), *capacity))
            .collect(),
        context_window: 0,
        fallbacks: Vec::new(),
    }
}

/// An outcome of `kind` taking `latency_ms`, no tokens.
pub fn outcome(kind: OutcomeKind, latency_ms: f64) -> Outcome {
    Outcome {
        kind,
        latency_ms,
        ttft_ms: None,
        prompt_tokens: 0,
        completion_tokens: 0,
        cached_tokens: None,
    }
}

/// Builds a [`Harness`]: `least_loaded` replicas, `by_score` ordering,
/// default resilience and scorer, a fresh tracker, unless told otherwise.
pub struct Build {
    models: Vec<ModelInput>,
    replica_policy: String,
    ordering: String,
    spread_margin: f64,
    resilience: Resilience,
    scorer: AdaptiveConfig,
    tracker: Option<(Arc<PerformanceTracker>, Clock)>,
}

impl Build {
    pub fn new(models: Vec<ModelInput>) -> Self {
        Self {
            models,
            replica_policy: "least_loaded".to_owned(),
            ordering: "by_score".to_owned(),
            spread_margin: 0.0,
            resilience: Resilience::default(),
            scorer: AdaptiveConfig::default(),
            tracker: None,
        }
    }

    /// The replica policy, by configuration name.
    pub fn replica_policy(mut self, name: &str) -> Self {
        name.clone_into(&mut self.replica_policy);
        self
    }

    /// The model ordering, by configuration name, and the spread margin.
    pub fn ordering(mut self, name: &str, spread_margin: f64) -> Self {
        name.clone_into(&mut self.ordering);
        self.spread_margin = spread_margin;
        self
    }

    pub fn resilience(mut self, resilience: Resilience) -> Self {
        self.resilience = resilience;
        self
    }

    /// Builds over an existing tracker and its clock (two routers that
    /// read the same windows).
    pub fn on_tracker(mut self, tracker: Arc<PerformanceTracker>, clock: Clock) -> Self {
        self.tracker = Some((tracker, clock));
        self
    }

    pub fn build(self) -> Result<Harness, ZetaError> {
        let (tracker, clock) = match self.tracker {
            Some(shared) => shared,
            None => {
                let clock = Clock::manual(START_MS);
                let tracker = Arc::new(PerformanceTracker::new(
                    WindowConfig::default(),
                    clock.clone(),
                )?);
                (tracker, clock)
            }
        };
        let core = RouterCore::new(
            tracker,
            AdaptiveScorer::new(self.scorer)?,
            self.models,
            &self.replica_policy,
            model_ordering(&self.ordering, self.spread_margin)?,
            self.resilience,
        )?;
        Ok(Harness { core, clock })
    }
}

/// A router and the manual clock its tracker reads.
pub struct Harness {
    pub core: RouterCore,
    pub clock: Clock,
}

impl Harness {
    /// Moves the clock on by `ms`.
    pub fn advance(&self, ms: u64) {
        if let Clock::Manual(now) = &self.clock {
            now.fetch_add(ms, Ordering::Relaxed);
        }
    }

    /// A plain request (no features, no text) of `task` and `complexity`.
    pub fn route(&self, task: usize, complexity: f64) -> Result<Decision, ZetaError> {
        self.core.route(task, complexity, 0, RequestView::default())
    }

    /// The names a (model, replica, task) window is registered under.
    fn names(
        &self,
        model: usize,
        replica: usize,
        task: usize,
    ) -> Result<(Arc<str>, Arc<str>, &'static str), ZetaError> {
        let routed = self
            .core
            .models()
            .get(model)
            .ok_or(ZetaError::ForeignDecision)?;
        let replica = routed
            .replica_ids
            .get(replica)
            .ok_or(ZetaError::ForeignDecision)?;
        let task = TASKS.get(task).copied().ok_or(ZetaError::ForeignDecision)?;
        Ok((Arc::clone(&routed.id), Arc::clone(replica), task))
    }

    /// Records `n` outcomes (`success`, `latency_ms`) of `model`'s
    /// `replica` on `task` straight into the tracker: the windows scoring
    /// reads, nothing else (no breaker, no replica health).
    pub fn record_n(
        &self,
        model: usize,
        replica: usize,
        task: usize,
        n: usize,
        success: bool,
        latency_ms: f64,
    ) -> Result<(), ZetaError> {
        let (model, replica, task) = self.names(model, replica, task)?;
        for _ in 0..n {
            self.core
                .tracker()
                .record(&model, &replica, task, success, latency_ms)?;
        }
        Ok(())
    }

    /// A decision for `model`'s `replica` on `task`, as if routed there,
    /// holding no slot (for feeding outcomes with `free_slot` off).
    pub fn decision_for(
        &self,
        model: usize,
        replica: usize,
        task: usize,
    ) -> Result<Decision, ZetaError> {
        let now = self.core.tracker().clock().now_ms();
        Ok(Decision {
            model,
            replica,
            task,
            complexity: 0.5,
            context: 0,
            breakdown: self.core.score_uncapable(model, task, now)?,
            runners_up: Vec::new(),
            request: RequestView::default(),
            explored: false,
            pinned: false,
            cache: Default::default(),
        })
    }

    /// Feeds `n` outcomes of `kind` taking `latency_ms` on `model`'s
    /// `replica` for `task` through `record_outcome` (no slot taken or
    /// freed): windows, breaker, replica health and ranges all see them.
    pub fn feed(
        &self,
        model: usize,
        replica: usize,
        task: usize,
        kind: OutcomeKind,
        latency_ms: f64,
        n: usize,
    ) -> Result<(), ZetaError> {
        let decision = self.decision_for(model, replica, task)?;
        for _ in 0..n {
            self.core
                .record_outcome(&decision, outcome(kind, latency_ms), false)?;
        }
        Ok(())
    }

    /// Requests in flight on each of `model`'s replicas.
    pub fn in_flight(&self, model: usize) -> Vec<u32> {
        self.core
            .models()
            .get(model)
            .map(|m| m.replicas.in_flight())
            .unwrap_or_default()
    }
}
