//! `RouterCore` and `Decision`: assignment seen from Python (the facade is
//! `zeta_fast.Router`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString};

use super::balance::parse_policy;
use super::config::adaptive_config_arg;
use super::errors::InvalidInputError;
use super::extract::{number, type_error};
use super::learned::{params_arg, PyFeatures, PyOutcomePredictor};
use super::profile::{profile_keeping_buckets, profile_text, PyRequestProfile};
use super::scorer::PyScoreBreakdown;
use super::tracker::PyPerformanceTracker;
use crate::breaker::BreakerConfig;
use crate::learned::{features_with_words, OutcomePredictor};
use crate::learned_capability::{CostKnob, LearnedRequest, Learning, RequestView};
use crate::outcome::{HistogramSnapshot, OutcomeKind, OUTCOME_KINDS};
use crate::replica_health::{degraded, ReplicaAdapt};
use crate::request_kinds::{feature_bit, FEATURES};
use crate::retry::{Backoff, BudgetConfig};
use crate::router::{Decision, ModelInput, Resilience, RouterCore, TASKS};
use crate::scoring::AdaptiveScorer;

/// `(id, {task: capability}, [(low, high)], [(replica_id, max_concurrency)],
/// context_window, [fallback model ids])`.
type ModelTuple<'py> = (
    String,
    Bound<'py, PyDict>,
    Vec<(f64, f64)>,
    Vec<(String, u32)>,
    u32,
    Vec<String>,
);

/// The keys a `resilience=` mapping may hold.
const RESILIENCE_KEYS: [&str; 17] = [
    "failure_threshold",
    "cooldown_ms",
    "success_threshold",
    "retry_ratio",
    "retry_min_per_second",
    "retry_max_tokens",
    "hedge_ratio",
    "hedge_max_tokens",
    "backoff_base_ms",
    "backoff_max_ms",
    "engine_load_ttl_ms",
    "replica_adaptation",
    "replica_alpha",
    "replica_fail_margin",
    "replica_latency_factor",
    "replica_explore",
    "relative_latency_factor",
];

/// A whole number >= 0 for a `resilience=` field.
fn whole(item: &Bound<'_, PyAny>, field: &str) -> PyResult<u64> {
    let value = number(item, field)?;
    if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value < 2f64.powi(53) {
        Ok(value as u64)
    } else {
        Err(super::errors::ConfigError::new_err(format!(
            "{field} must be a whole number >= 0, got {}",
            crate::errors::float_repr(value)
        )))
    }
}

/// Reads a `resilience=` mapping over the defaults; the core's constructors
/// validate each part.
fn resilience_arg(value: Option<&Bound<'_, PyDict>>) -> PyResult<Resilience> {
    let mut out = Resilience::default();
    let Some(dict) = value else {
        return Ok(out);
    };
    let (mut breaker, mut retry, mut hedge, mut backoff, mut adapt) = (
        out.breaker,
        out.retry_budget,
        out.hedge_budget,
        out.backoff,
        out.replica_adapt,
    );
    for (key, item) in dict.iter() {
        let key: String = key.extract()?;
        let field = format!("resilience.{key}");
        let count = |item: &Bound<'_, PyAny>| -> PyResult<u32> {
            Ok(u32::try_from(whole(item, &field)?).unwrap_or(u32::MAX))
        };
        match key.as_str() {
            "failure_threshold" => breaker.failure_threshold = count(&item)?,
            "cooldown_ms" => breaker.cooldown_ms = whole(&item, &field)?,
            "success_threshold" => breaker.success_threshold = count(&item)?,
            "retry_ratio" => retry.ratio = number(&item, &field)?,
            "retry_min_per_second" => retry.min_per_second = number(&item, &field)?,
            "retry_max_tokens" => retry.max_tokens = number(&item, &field)?,
            "hedge_ratio" => hedge.ratio = number(&item, &field)?,
            "hedge_max_tokens" => hedge.max_tokens = number(&item, &field)?,
            "backoff_base_ms" => backoff.base_ms = number(&item, &field)?,
            "backoff_max_ms" => backoff.max_ms = number(&item, &field)?,
            "engine_load_ttl_ms" => out.engine_load_ttl_ms = whole(&item, &field)?,
            "replica_adaptation" => adapt.enabled = whole(&item, &field)? != 0,
            "replica_alpha" => adapt.alpha = number(&item, &field)?,
            "replica_fail_margin" => adapt.fail_margin = number(&item, &field)?,
            "replica_latency_factor" => adapt.latency_factor = number(&item, &field)?,
            "replica_explore" => adapt.explore = number(&item, &field)?,
            "relative_latency_factor" => {
                let factor = number(&item, &field)?;
                if !(factor == 0.0 || (factor.is_finite() && factor > 1.0)) {
                    return Err(super::errors::ConfigError::new_err(format!(
                        "{field} must be 0 (off) or > 1, got {}",
                        crate::errors::float_repr(factor)
                    )));
                }
                out.relative_latency_factor = factor;
            }
            _ => {
                return Err(super::errors::ConfigError::new_err(format!(
                    "resilience has no field {key:?}; fields: {}",
                    RESILIENCE_KEYS.join(", ")
                )))
            }
        }
    }
    let config_error = |prefix: &str, err: crate::errors::ZetaError| -> PyErr {
        super::errors::ConfigError::new_err(format!("resilience.{prefix}{err}"))
    };
    out.breaker = BreakerConfig::new(
        breaker.failure_threshold,
        breaker.cooldown_ms,
        breaker.success_threshold,
    )
    .map_err(|e| config_error("", e))?;
    out.retry_budget = BudgetConfig::new(retry.ratio, retry.min_per_second, retry.max_tokens)
        .map_err(|e| config_error("retry_", e))?;
    out.hedge_budget = BudgetConfig::new(hedge.ratio, hedge.min_per_second, hedge.max_tokens)
        .map_err(|e| config_error("hedge_", e))?;
    out.backoff = Backoff::new(backoff.base_ms, backoff.max_ms).map_err(|e| config_error("", e))?;
    out.replica_adapt = ReplicaAdapt::new(
        adapt.enabled,
        adapt.alpha,
        adapt.fail_margin,
        adapt.latency_factor,
        adapt.explore,
    )
    .map_err(|e| config_error("replica_", e))?;
    Ok(out)
}

/// The native router: models, replica slots, tracker and scorer.
#[pyclass(name = "RouterCore", module = "zeta_fast._core", frozen)]
pub struct PyRouterCore {
    inner: Arc<RouterCore>,
    /// Context names; a context's index in the core is 1 + its position.
    contexts: Vec<String>,
    model_names: Vec<Py<PyString>>,
    replica_names: Vec<Vec<Py<PyString>>>,
    task_names: Vec<Py<PyString>>,
}

/// One routing decision: which model and replica, and why.
#[pyclass(name = "Decision", module = "zeta_fast._core", frozen)]
pub struct PyDecision {
    inner: Decision,
    router: Arc<RouterCore>,
    model_id: Py<PyString>,
    replica_id: Py<PyString>,
    task_type: Py<PyString>,
    complexity: f64,
    context: Option<String>,
    profile: Option<Py<PyAny>>,
    runners_up: Vec<(Py<PyString>, f64)>,
    recorded: AtomicBool,
    /// Its slot was given back by `release` before its outcome was recorded.
    released: AtomicBool,
    /// Set once a quality verdict (`feedback`) was learned.
    judged: AtomicBool,
}

impl PyRouterCore {
    fn model_index(&self, model: &str) -> PyResult<usize> {
        self.inner
            .models()
            .iter()
            .position(|m| &*m.id == model)
            .ok_or_else(|| InvalidInputError::new_err(format!("unknown model {model:?}")))
    }

    fn locate(&self, model: &str, replica: &str) -> PyResult<(usize, usize)> {
        let m = self.model_index(model)?;
        let r = self
            .inner
            .models()
            .get(m)
            .and_then(|routed| routed.replica_ids.iter().position(|r| &**r == replica))
            .ok_or_else(|| {
                InvalidInputError::new_err(format!("unknown replica {replica:?} of {model:?}"))
            })?;
        Ok((m, r))
    }

    fn own_decision<'a>(&self, decision: &'a Bound<'_, PyAny>) -> PyResult<&'a PyDecision> {
        let decision = decision
            .cast::<PyDecision>()
            .map_err(|_| type_error("decision", "a Decision from route()", decision))?
            .get();
        if !Arc::ptr_eq(&decision.router, &self.inner) {
            return Err(InvalidInputError::new_err(
                "decision was made by another router",
            ));
        }
        Ok(decision)
    }

    /// Records a decision at most once: a rejected record (bad input) does
    /// not use it up.
    fn record_once(
        &self,
        decision: &Bound<'_, PyAny>,
        record: impl FnOnce(&RouterCore, &Decision, bool) -> Result<bool, crate::errors::ZetaError>,
    ) -> PyResult<bool> {
        let decision = self.own_decision(decision)?;
        if decision.recorded.swap(true, Ordering::AcqRel) {
            return Err(InvalidInputError::new_err(
                "decision was already recorded (its replica slot is free again)",
            ));
        }
        // A released decision's slot is free already: its outcome only counts.
        let free_slot = !decision.released.load(Ordering::Acquire);
        record(&self.inner, &decision.inner, free_slot).map_err(|err| {
            decision.recorded.store(false, Ordering::Release);
            err.into()
        })
    }

    fn wrap(
        &self,
        py: Python<'_>,
        decision: Decision,
        context: Option<String>,
        profile: Option<Py<PyAny>>,
    ) -> PyResult<PyDecision> {
        let name = |m: usize| self.model_names.get(m).map(|n| n.clone_ref(py));
        let model_id =
            name(decision.model).ok_or_else(|| InvalidInputError::new_err("model index"))?;
        let replica_id = self
            .replica_names
            .get(decision.model)
            .and_then(|r| r.get(decision.replica))
            .map(|n| n.clone_ref(py))
            .ok_or_else(|| InvalidInputError::new_err("replica index"))?;
        let task_type = self
            .task_names
            .get(decision.task)
            .map(|t| t.clone_ref(py))
            .ok_or_else(|| InvalidInputError::new_err("task index"))?;
        let runners_up = decision
            .runners_up
            .iter()
            .filter_map(|(m, score)| name(*m).map(|n| (n, *score)))
            .collect();
        let complexity = decision.complexity;
        Ok(PyDecision {
            inner: decision,
            router: Arc::clone(&self.inner),
            model_id,
            replica_id,
            task_type,
            complexity,
            context,
            profile,
            runners_up,
            recorded: AtomicBool::new(false),
            released: AtomicBool::new(false),
            judged: AtomicBool::new(false),
        })
    }
}

#[pymethods]
impl PyRouterCore {
    /// `models`: `(id, {task: capability}, [(low, high) own, then per context], [(replica_id, max_concurrency)])`.
    #[new]
    #[pyo3(signature = (tracker, models, contexts = Vec::new(), config = None, policy = "power_of_two", spread_margin = 10.0, resilience = None, learning = None, cost = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        tracker: &Bound<'_, PyAny>,
        models: &Bound<'_, PyList>,
        contexts: Vec<String>,
        config: Option<&Bound<'_, PyAny>>,
        policy: &str,
        spread_margin: f64,
        resilience: Option<&Bound<'_, PyDict>>,
        learning: Option<&Bound<'_, PyDict>>,
        cost: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let tracker = tracker
            .cast::<PyPerformanceTracker>()
            .map_err(|_| type_error("tracker", "a PerformanceTracker", tracker))?;
        let (policy, _) = parse_policy(policy)?;
        let mut inputs = Vec::with_capacity(models.len());
        for (index, item) in models.iter().enumerate() {
            let (id, capabilities, ranges, replicas, context_window, fallbacks): ModelTuple<'_> =
                item.extract().map_err(|_| {
                    type_error(
                        &format!("models[{index}]"),
                        "(id, capabilities, ranges, replicas, context_window, fallbacks)",
                        &item,
                    )
                })?;
            let mut caps = Vec::with_capacity(capabilities.len());
            for (task, value) in capabilities.iter() {
                let task: String = task.extract()?;
                let value = number(&value, &format!("models[{index}].capabilities.{task}"))?;
                caps.push((task, value));
            }
            inputs.push(ModelInput {
                id,
                capabilities: caps,
                ranges,
                replicas,
                context_window,
                fallbacks,
            });
        }
        let mut inner = RouterCore::new(
            Arc::clone(&tracker.get().inner),
            AdaptiveScorer::new(adaptive_config_arg(config)?)?,
            inputs,
            policy,
            spread_margin,
            resilience_arg(resilience)?,
        )?;
        let ids: Vec<String> = inner.models().iter().map(|m| m.id.to_string()).collect();
        if let Some(learning) = learning {
            inner.set_learning(learning_arg(learning, ids.clone())?)?;
        }
        if let Some(cost) = cost {
            inner.set_cost_knob(cost_arg(cost)?)?;
        }
        let model_names = inner
            .models()
            .iter()
            .map(|m| PyString::intern(py, &m.id).unbind())
            .collect();
        let replica_names = inner
            .models()
            .iter()
            .map(|m| {
                m.replica_ids
                    .iter()
                    .map(|r| PyString::intern(py, r).unbind())
                    .collect()
            })
            .collect();
        let task_names = TASKS
            .iter()
            .map(|t| PyString::intern(py, t).unbind())
            .collect();
        Ok(Self {
            inner: Arc::new(inner),
            contexts,
            model_names,
            replica_names,
            task_names,
        })
    }

    /// Routes a request (anything `zeta_fast.profile` takes) or a known
    /// profile, in an optional named context, and takes a replica slot that
    /// `record` gives back. Prompt strings are profiled without leaving Rust.
    /// With `model`, the request goes to that model (a caller's choice).
    /// `needs`: the request features it needs, as a bit mask (see
    /// ``zeta_fast.request_features``); models that cannot serve them are skipped.
    /// `replica` (with `model`): take that replica when it can take the
    /// request (it holds the conversation's state), else the policy chooses.
    #[pyo3(signature = (request = None, *, context = None, profile = None, model = None, needs = 0, replica = None))]
    #[allow(clippy::too_many_arguments)]
    fn route(
        &self,
        py: Python<'_>,
        request: Option<&Bound<'_, PyAny>>,
        context: Option<&str>,
        profile: Option<&Bound<'_, PyAny>>,
        model: Option<&str>,
        needs: u32,
        replica: Option<&str>,
    ) -> PyResult<PyDecision> {
        let context_index = match context {
            None => 0,
            Some(name) => match self.contexts.iter().position(|c| c == name) {
                Some(index) => index + 1,
                None => {
                    let known = if self.contexts.is_empty() {
                        "none".to_owned()
                    } else {
                        self.contexts.join(", ")
                    };
                    return Err(InvalidInputError::new_err(format!(
                        "context '{name}' is not configured; configured contexts: {known}"
                    )));
                }
            },
        };
        let learning = self.inner.learning().is_some();
        let mut learned = None;
        let profile: Bound<'_, PyRequestProfile> = match (profile, request) {
            (Some(given), _) => given
                .cast::<PyRequestProfile>()
                .map_err(|_| type_error("profile", "a RequestProfile", given))?
                .clone(),
            (None, Some(request)) => match request.cast::<PyString>() {
                Ok(given) if learning => {
                    let (profile, request) = profile_for_learning(given.to_str()?, 1, false)?;
                    learned = Some(request);
                    Bound::new(py, profile)?
                }
                Ok(given) => Bound::new(py, profile_text(given.to_str()?)?)?,
                // Learning needs the text itself: found in Python, profiled here.
                Err(_) if learning => {
                    let (found, turns, embedding): (String, usize, bool) = python_request_text(py)?
                        .bind(py)
                        .call1((request,))?
                        .extract()?;
                    let (profile, request) = profile_for_learning(&found, turns, embedding)?;
                    learned = Some(request);
                    Bound::new(py, profile)?
                }
                Err(_) => python_profile(py)?
                    .bind(py)
                    .call1((request,))?
                    .cast_into::<PyRequestProfile>()
                    .map_err(|_| {
                        InvalidInputError::new_err("profile() returned no RequestProfile")
                    })?,
            },
            (None, None) => {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "route() needs a request or a profile",
                ))
            }
        };
        let (task, complexity, prompt_tokens) = {
            let inner = &profile.get().inner;
            let task = inner.task.unwrap_or(4);
            (task, inner.complexity, inner.features.token_estimate as f64)
        };
        let view = RequestView {
            learned,
            prompt_tokens,
            needs,
        };
        let decision = match model {
            None => self.inner.route(task, complexity, context_index, view)?,
            Some(name) => {
                let (index, prefer) = match replica {
                    Some(replica) => {
                        let (m, r) = self.locate(name, replica)?;
                        (m, Some(r))
                    }
                    None => (self.model_index(name)?, None),
                };
                self.inner
                    .route_to(index, task, complexity, context_index, view, prefer)?
            }
        };
        self.wrap(
            py,
            decision,
            context.map(str::to_owned),
            Some(profile.into_any().unbind()),
        )
    }

    /// Where to send a request again after `decision` failed: another
    /// replica of its model first (none used by the decisions in `tried`),
    /// then its fallback chain, then the other candidates by score. With
    /// `needs_longer_context`, only models with a longer context window.
    #[pyo3(signature = (decision, tried = Vec::new(), needs_longer_context = false))]
    fn reroute(
        &self,
        py: Python<'_>,
        decision: &Bound<'_, PyAny>,
        tried: Vec<Bound<'_, PyAny>>,
        needs_longer_context: bool,
    ) -> PyResult<PyDecision> {
        let failed = self.own_decision(decision)?;
        let mut pairs = vec![(failed.inner.model, failed.inner.replica)];
        for (index, item) in tried.iter().enumerate() {
            let other = item
                .cast::<PyDecision>()
                .map_err(|_| type_error(&format!("tried[{index}]"), "a Decision", item))?
                .get();
            pairs.push((other.inner.model, other.inner.replica));
        }
        let next = self
            .inner
            .reroute(&failed.inner, &pairs, needs_longer_context)?;
        self.wrap(
            py,
            next,
            failed.context.clone(),
            failed.profile.as_ref().map(|p| p.clone_ref(py)),
        )
    }

    /// Records how a dispatched request ended (`kind`: "success", "timeout",
    /// "connect", "rate_limited", "server_error", "stream_cut",
    /// "context_length", "client_error", "cancelled" or "other"), with its
    /// time to first token and token counts; frees the replica slot. True
    /// when the learned router learned it.
    #[pyo3(signature = (decision, kind, latency_ms, *, ttft_ms = None, prompt_tokens = 0, completion_tokens = 0))]
    fn record_outcome(
        &self,
        decision: &Bound<'_, PyAny>,
        kind: &str,
        latency_ms: f64,
        ttft_ms: Option<f64>,
        prompt_tokens: u64,
        completion_tokens: u64,
    ) -> PyResult<bool> {
        let Some(kind) = OutcomeKind::parse(kind) else {
            let names: Vec<&str> = OUTCOME_KINDS.iter().map(|(_, n)| *n).collect();
            return Err(InvalidInputError::new_err(format!(
                "kind must be one of {}, got {kind:?}",
                names.join(", ")
            )));
        };
        self.record_once(decision, |inner, d, free_slot| {
            inner.record_outcome(
                d,
                kind,
                latency_ms,
                ttft_ms,
                prompt_tokens,
                completion_tokens,
                free_slot,
            )
        })
    }

    /// Counts `ms` of the caller's own time on one request (a gateway's
    /// overhead) in a lifetime histogram read by ``overhead()``.
    fn record_overhead(&self, ms: f64) -> PyResult<()> {
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(InvalidInputError::new_err(format!(
                "ms must be finite and >= 0, got {}",
                crate::errors::float_repr(ms)
            )));
        }
        self.inner.record_overhead(ms);
        Ok(())
    }

    /// The overhead histogram: ``{"buckets": [(le_ms, cumulative)], "sum_ms", "count"}``.
    fn overhead<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        histogram_dict(py, &self.inner.overhead())
    }

    /// Every model's score now for every task it serves, as routing sees
    /// it: ``[(model_id, task, ScoreBreakdown)]`` in configuration order.
    fn scores(
        &self,
        py: Python<'_>,
    ) -> PyResult<Vec<(Py<PyString>, &'static str, PyScoreBreakdown)>> {
        let scores = self.inner.scores().map_err(PyErr::from)?;
        Ok(scores
            .into_iter()
            .filter_map(|(m, task, breakdown)| {
                let id = self.model_names.get(m)?.clone_ref(py);
                Some((id, *TASKS.get(task)?, PyScoreBreakdown::new(breakdown)))
            })
            .collect())
    }

    /// Spends a retry token; False when retries are over budget.
    fn try_retry(&self) -> bool {
        self.inner.try_retry()
    }

    /// Spends a hedge token; False when hedges are over budget.
    fn try_hedge(&self) -> bool {
        self.inner.try_hedge()
    }

    /// (retry tokens, hedge tokens) left.
    fn budget_tokens(&self) -> (f64, f64) {
        self.inner.budget_tokens()
    }

    /// The jittered wait in ms before retry number `retry` (1 = first), at
    /// least `retry_after_ms` when the server sent one.
    #[pyo3(signature = (retry, retry_after_ms = None))]
    fn backoff_ms(&self, retry: u32, retry_after_ms: Option<f64>) -> f64 {
        self.inner.backoff_ms(retry, retry_after_ms)
    }

    /// The recent p95 latency of the decision's replica (None without
    /// enough data): how long to wait before hedging a request to it.
    fn replica_p95_ms(&self, decision: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        let decision = self.own_decision(decision)?;
        Ok(self
            .inner
            .replica_p95_ms(decision.inner.model, decision.inner.replica))
    }

    /// Stores an engine's own load report (queued requests, KV-cache use
    /// 0..1) for a replica, taken now; it stops counting after the TTL.
    fn set_engine_load(
        &self,
        model: &str,
        replica: &str,
        waiting: u32,
        kv_usage: f64,
    ) -> PyResult<()> {
        let (m, r) = self.locate(model, replica)?;
        if !(0.0..=1.0).contains(&kv_usage) {
            return Err(InvalidInputError::new_err(format!(
                "kv_usage must be in [0, 1], got {}",
                crate::errors::float_repr(kv_usage)
            )));
        }
        let now = self.inner.tracker().clock().now_ms();
        if let Some(model) = self.inner.models().get(m) {
            model.replicas.set_engine_load(r, waiting, kv_usage, now);
        }
        Ok(())
    }

    /// Keeps the decision's replica out of selection for `hold_ms` (a
    /// server's `Retry-After`); it is probed when the time is up.
    fn hold_replica(&self, decision: &Bound<'_, PyAny>, hold_ms: f64) -> PyResult<()> {
        let decision = self.own_decision(decision)?;
        if !(hold_ms.is_finite() && hold_ms >= 0.0) {
            return Err(InvalidInputError::new_err(format!(
                "hold_ms must be finite and >= 0, got {}",
                crate::errors::float_repr(hold_ms)
            )));
        }
        self.inner
            .hold_replica(decision.inner.model, decision.inner.replica, hold_ms as u64);
        Ok(())
    }

    /// Closes a replica's circuit breaker.
    fn reset_breaker(&self, model: &str, replica: &str) -> PyResult<()> {
        let (m, r) = self.locate(model, replica)?;
        if let Some(model) = self.inner.models().get(m) {
            model.replicas.reset_breaker(r);
        }
        Ok(())
    }

    /// Each replica of a model now: health, breaker, load, outcome counters.
    fn replica_status<'py>(
        &self,
        py: Python<'py>,
        model: &str,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let m = self.model_index(model)?;
        let Some(routed) = self.inner.models().get(m) else {
            return Ok(Vec::new());
        };
        let now = self.inner.tracker().clock().now_ms();
        let in_flight = routed.replicas.in_flight();
        let passed_over = degraded(&routed.health, &self.inner.resilience().replica_adapt);
        let mut out = Vec::with_capacity(routed.replica_ids.len());
        for (r, id) in routed.replica_ids.iter().enumerate() {
            let dict = PyDict::new(py);
            dict.set_item("replica_id", &**id)?;
            dict.set_item("healthy", routed.replicas.is_healthy(r))?;
            dict.set_item("in_flight", in_flight.get(r).copied().unwrap_or(0))?;
            dict.set_item(
                "breaker",
                routed.replicas.breaker_state(r).map(|b| b.name()),
            )?;
            let (waiting, kv) = routed.replicas.engine_load(r, now);
            dict.set_item(
                "breaker_admits_in_ms",
                routed.replicas.breaker_admits_in_ms(r, now),
            )?;
            dict.set_item("engine_waiting", waiting)?;
            dict.set_item("engine_kv_usage", kv)?;
            if let Some(counters) = routed.counters.get(r) {
                let snap = counters.snapshot();
                let kinds = PyDict::new(py);
                for ((_, name), count) in OUTCOME_KINDS.iter().zip(snap.by_kind) {
                    kinds.set_item(*name, count)?;
                }
                dict.set_item("outcomes", kinds)?;
                dict.set_item("prompt_tokens", snap.prompt_tokens)?;
                dict.set_item("completion_tokens", snap.completion_tokens)?;
                dict.set_item("mean_ttft_ms", snap.mean_ttft_ms)?;
                dict.set_item("latency", histogram_dict(py, &snap.latency)?)?;
            }
            if let Some(health) = routed.health.get(r) {
                let (fail, latency, samples) = health.read();
                dict.set_item("recent_failure_share", (samples > 0).then_some(fail))?;
                dict.set_item("recent_latency_ms", (latency > 0.0).then_some(latency))?;
            }
            dict.set_item("degraded", passed_over.contains(&r))?;
            out.push(dict);
        }
        Ok(out)
    }

    /// Records a decision's outcome in the tracker and frees its replica
    /// slot; a decision can be recorded once. True when the learned router
    /// learned it.
    fn record(
        &self,
        decision: &Bound<'_, PyAny>,
        success: bool,
        latency_ms: f64,
    ) -> PyResult<bool> {
        self.record_once(decision, |inner, d, free_slot| {
            inner.record(d, success, latency_ms, free_slot)
        })
    }

    /// Learns a quality verdict on a decision's answer (once per decision;
    /// whether or not it was recorded). True when it was learned: learning
    /// is on and the request's text was known.
    fn feedback(&self, decision: &Bound<'_, PyAny>, good: bool) -> PyResult<bool> {
        let decision = self.own_decision(decision)?;
        if decision.judged.swap(true, Ordering::AcqRel) {
            return Err(InvalidInputError::new_err(
                "decision already has a verdict (feedback() is taken once)",
            ));
        }
        Ok(self.inner.learn(&decision.inner, good)?)
    }

    /// What the learned router expects of each model for `request` (a
    /// prompt, messages or a body): success probability, category prior,
    /// learned capability and how far it replaces the configured one,
    /// expected latency (None until enough are learned).
    fn predict<'py>(
        &self,
        py: Python<'py>,
        request: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let Some(learning) = self.inner.learning() else {
            return Err(InvalidInputError::new_err(
                "predict() needs learning.enabled in the configuration",
            ));
        };
        let (found, turns, embedding): (String, usize, bool) = match request.cast::<PyString>() {
            Ok(text) => (text.to_str()?.to_owned(), 1, false),
            Err(_) => python_request_text(py)?
                .bind(py)
                .call1((request,))?
                .extract()?,
        };
        let (profile, learned) = profile_for_learning(&found, turns, embedding)?;
        let mut success = Vec::new();
        learning
            .predictor
            .predict_all(&learned.features, &mut success);
        let latency = learning.predictor.predict_latency_all(&learned.features);
        let capabilities = learning.capabilities(&learned);
        let models = PyList::empty(py);
        for (m, name) in self.model_names.iter().enumerate() {
            let entry = PyDict::new(py);
            entry.set_item("model_id", name.bind(py))?;
            entry.set_item("success", success.get(m).copied())?;
            entry.set_item(
                "prior",
                learning.predictor.prior_one(Some(&learned.category), m),
            )?;
            let (capability, ramp) = capabilities.get(m).copied().unwrap_or((0.0, 0.0));
            entry.set_item("learned_capability", capability)?;
            entry.set_item("ramp", ramp)?;
            entry.set_item("expected_latency_ms", latency.get(m).copied().flatten())?;
            models.append(entry)?;
        }
        let out = PyDict::new(py);
        out.set_item("category", &learned.category)?;
        out.set_item("prompt_tokens", profile.inner.features.token_estimate)?;
        out.set_item("models", models)?;
        Ok(out)
    }

    /// The learned router's predictor (None when learning is off).
    #[getter]
    fn predictor(&self) -> Option<PyOutcomePredictor> {
        self.inner.learning().map(|l| PyOutcomePredictor {
            inner: Arc::clone(&l.predictor),
        })
    }

    /// The complexity range a model suits in a context (None: its own).
    #[pyo3(signature = (model, context = None))]
    fn complexity_range(&self, model: &str, context: Option<&str>) -> PyResult<(f64, f64)> {
        let index = self
            .inner
            .models()
            .iter()
            .position(|m| &*m.id == model)
            .ok_or_else(|| InvalidInputError::new_err(format!("unknown model {model:?}")))?;
        let context = match context {
            None => 0,
            Some(name) => {
                self.contexts
                    .iter()
                    .position(|c| c == name)
                    .ok_or_else(|| {
                        InvalidInputError::new_err(format!("context '{name}' is not configured"))
                    })?
                    + 1
            }
        };
        self.inner
            .range(index, context)
            .ok_or_else(|| InvalidInputError::new_err("no range"))
    }

    /// Tunes complexity ranges from recorded outcomes; returns the changes as
    /// dicts (model_id, context, old_high, new_high, requests, success_rate).
    #[pyo3(signature = (min_requests = 20, target_success_rate = 0.95, step = 0.05))]
    fn tune_ranges<'py>(
        &self,
        py: Python<'py>,
        min_requests: u64,
        target_success_rate: f64,
        step: f64,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        if !(target_success_rate > 0.0 && target_success_rate <= 1.0) {
            return Err(super::errors::ConfigError::new_err(format!(
                "target_success_rate must be in (0, 1], got {}",
                crate::errors::float_repr(target_success_rate)
            )));
        }
        if !(step > 0.0 && step <= 1.0) {
            return Err(super::errors::ConfigError::new_err(format!(
                "step must be in (0, 1], got {}",
                crate::errors::float_repr(step)
            )));
        }
        let mut out = Vec::new();
        for change in self
            .inner
            .tune_ranges(min_requests.max(1), target_success_rate, step)
        {
            let dict = PyDict::new(py);
            dict.set_item(
                "model_id",
                self.model_names
                    .get(change.model)
                    .map(|n| n.bind(py).clone()),
            )?;
            dict.set_item(
                "context",
                change
                    .context
                    .checked_sub(1)
                    .and_then(|c| self.contexts.get(c).cloned()),
            )?;
            dict.set_item("old_high", change.old_high)?;
            dict.set_item("new_high", change.new_high)?;
            dict.set_item("requests", change.requests)?;
            dict.set_item("success_rate", change.success_rate)?;
            out.push(dict);
        }
        Ok(out)
    }

    /// Sets what other router instances have running on each replica of a
    /// model (shared state): counted when replicas' loads are compared.
    fn set_remote_in_flight(&self, model: &str, counts: Vec<u32>) -> PyResult<()> {
        let index = self.model_index(model)?;
        if let Some(routed) = self.inner.models().get(index) {
            if counts.len() != routed.replica_ids.len() {
                return Err(InvalidInputError::new_err(format!(
                    "set_remote_in_flight: {model:?} has {} replicas, got {} counts",
                    routed.replica_ids.len(),
                    counts.len()
                )));
            }
            routed.replicas.set_remote_in_flight(&counts);
        }
        Ok(())
    }

    /// What other router instances have running on each replica of a model.
    fn remote_in_flight(&self, model: &str) -> PyResult<Vec<u32>> {
        let index = self.model_index(model)?;
        Ok(self
            .inner
            .models()
            .get(index)
            .map(|m| m.replicas.remote_in_flight())
            .unwrap_or_default())
    }

    /// Gives a decision's replica slot back without recording an outcome
    /// (a request abandoned before it was sent, or one whose outcome is
    /// recorded later, once its cause is known). False when it was already
    /// recorded or released.
    fn release(&self, decision: &Bound<'_, PyAny>) -> PyResult<bool> {
        let decision = self.own_decision(decision)?;
        if decision.recorded.load(Ordering::Acquire)
            || decision.released.swap(true, Ordering::AcqRel)
        {
            return Ok(false);
        }
        self.inner.release(&decision.inner);
        Ok(true)
    }

    /// Declares the request features (``images``, ``audio``, ``tools``,
    /// ``json_schema``, ``embeddings``, ``responses``, ``messages``) a model
    /// cannot serve: it is never a candidate for requests needing them.
    fn set_unserved(&self, model: &str, features: Vec<String>) -> PyResult<()> {
        let m = self.model_index(model)?;
        let mut mask = 0;
        for name in &features {
            mask |= feature_bit(name)?;
        }
        if let Some(routed) = self.inner.models().get(m) {
            routed.unserved.declare(mask);
        }
        Ok(())
    }

    /// Remembers for `ttl_s` that a model refused requests with `feature`
    /// (its server said it cannot serve them): it is skipped for them meanwhile.
    fn learn_unserved(&self, model: &str, feature: &str, ttl_s: f64) -> PyResult<()> {
        let m = self.model_index(model)?;
        let bit = feature_bit(feature)?;
        if !(ttl_s.is_finite() && ttl_s >= 0.0) {
            return Err(InvalidInputError::new_err(format!(
                "ttl_s must be finite and >= 0, got {}",
                crate::errors::float_repr(ttl_s)
            )));
        }
        self.inner.learn_unserved(m, bit, (ttl_s * 1e3) as u64);
        Ok(())
    }

    /// The features a model cannot serve now (declared and learned).
    fn unserved(&self, model: &str) -> PyResult<Vec<&'static str>> {
        let m = self.model_index(model)?;
        let now = self.inner.tracker().clock().now_ms();
        let mask = self
            .inner
            .models()
            .get(m)
            .map_or(0, |routed| routed.unserved.mask(now));
        Ok(FEATURES
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, name)| *name)
            .collect())
    }

    /// Requests in flight on each replica of a model.
    fn in_flight(&self, model: &str) -> PyResult<Vec<u32>> {
        self.inner
            .models()
            .iter()
            .find(|m| &*m.id == model)
            .map(|m| m.replicas.in_flight())
            .ok_or_else(|| InvalidInputError::new_err(format!("unknown model {model:?}")))
    }

    /// Marks a replica healthy or not; unhealthy replicas are never chosen.
    fn set_healthy(&self, model: &str, replica: &str, healthy: bool) -> PyResult<()> {
        let found = self.inner.models().iter().find(|m| &*m.id == model);
        let Some(m) = found else {
            return Err(InvalidInputError::new_err(format!(
                "unknown model {model:?}"
            )));
        };
        let Some(index) = m.replica_ids.iter().position(|r| &**r == replica) else {
            return Err(InvalidInputError::new_err(format!(
                "unknown replica {replica:?} of {model:?}"
            )));
        };
        m.replicas.set_healthy(index, healthy);
        Ok(())
    }
}

#[pymethods]
impl PyDecision {
    #[getter]
    fn model_id(&self, py: Python<'_>) -> Py<PyString> {
        self.model_id.clone_ref(py)
    }
    #[getter]
    fn replica_id(&self, py: Python<'_>) -> Py<PyString> {
        self.replica_id.clone_ref(py)
    }
    #[getter]
    fn task_type(&self, py: Python<'_>) -> Py<PyString> {
        self.task_type.clone_ref(py)
    }
    #[getter]
    fn complexity(&self) -> f64 {
        self.complexity
    }
    #[getter]
    fn context(&self) -> Option<String> {
        self.context.clone()
    }
    #[getter]
    fn profile(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.profile.as_ref().map(|p| p.clone_ref(py))
    }
    #[getter]
    fn capability_score(&self) -> f64 {
        self.inner.breakdown.capability_score
    }
    /// Sent to a random other candidate by the learned router's exploration.
    /// The caller named the model: retries stay on its replicas and its
    /// configured fallbacks.
    #[getter]
    fn pinned(&self) -> bool {
        self.inner.pinned
    }

    /// The request features it needs, as a bit mask of ``zeta_fast.request_features``.
    #[getter]
    fn needs(&self) -> u32 {
        self.inner.request.needs
    }

    #[getter]
    fn explored(&self) -> bool {
        self.inner.explored
    }
    /// The category the learned router counts this request in (None when
    /// learning is off or the text was not known).
    #[getter]
    fn learned_category(&self) -> Option<String> {
        self.inner
            .request
            .learned
            .as_ref()
            .map(|r| r.category.clone())
    }
    /// The request's learned features (None when learning is off or the
    /// text was not known), e.g. for the outcome log.
    #[getter]
    fn learned_features(&self) -> Option<PyFeatures> {
        self.inner.request.learned.as_ref().map(|r| PyFeatures {
            inner: Arc::new(r.features.clone()),
        })
    }
    #[getter]
    fn performance_score(&self) -> f64 {
        self.inner.breakdown.performance_score
    }
    #[getter]
    fn performance_adjustment(&self) -> f64 {
        self.inner.breakdown.performance_adjustment()
    }
    #[getter]
    fn has_performance_data(&self) -> bool {
        self.inner.breakdown.has_performance_data
    }
    #[getter]
    fn success_rate(&self) -> f64 {
        self.inner.breakdown.success_rate
    }
    #[getter]
    fn avg_latency_ms(&self) -> f64 {
        self.inner.breakdown.avg_latency_ms
    }
    #[getter]
    fn penalties(&self) -> Vec<&'static str> {
        self.inner.breakdown.penalties.names()
    }
    /// The other candidates in the order they were considered, with scores.
    #[getter]
    fn runners_up(&self, py: Python<'_>) -> Vec<(Py<PyString>, f64)> {
        self.runners_up
            .iter()
            .map(|(m, s)| (m.clone_ref(py), *s))
            .collect()
    }

    /// The decision record as a JSON-serialisable dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let b = &self.inner.breakdown;
        let dict = PyDict::new(py);
        dict.set_item("model_id", self.model_id.bind(py))?;
        dict.set_item("replica_id", self.replica_id.bind(py))?;
        dict.set_item("task_type", self.task_type.bind(py))?;
        dict.set_item("complexity", self.complexity)?;
        dict.set_item("context", self.context.clone())?;
        dict.set_item("capability_score", b.capability_score)?;
        dict.set_item("performance_score", b.performance_score)?;
        dict.set_item("performance_adjustment", b.performance_adjustment())?;
        dict.set_item("has_performance_data", b.has_performance_data)?;
        dict.set_item("success_rate", b.success_rate)?;
        dict.set_item("avg_latency_ms", b.avg_latency_ms)?;
        dict.set_item("penalties", b.penalties.names())?;
        dict.set_item("explored", self.inner.explored)?;
        dict.set_item("learned_category", self.learned_category())?;
        let runners: Vec<(Py<PyString>, f64)> = self.runners_up(py);
        let runners_list = PyList::empty(py);
        for (model, score) in runners {
            let entry = PyDict::new(py);
            entry.set_item("model_id", model)?;
            entry.set_item("performance_score", score)?;
            runners_list.append(entry)?;
        }
        dict.set_item("runners_up", runners_list)?;
        if let Some(profile) = &self.profile {
            dict.set_item("profile", profile.bind(py).call_method0("to_dict")?)?;
        }
        Ok(dict)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Decision(model_id='{}', replica_id='{}', task_type='{}', performance_score={})",
            self.model_id.bind(py),
            self.replica_id.bind(py),
            self.task_type.bind(py),
            crate::errors::float_repr(self.inner.breakdown.performance_score)
        )
    }
}

fn histogram_dict<'py>(py: Python<'py>, snap: &HistogramSnapshot) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("buckets", snap.cumulative.clone())?;
    dict.set_item("sum_ms", snap.sum_ms)?;
    dict.set_item("count", snap.count)?;
    Ok(dict)
}

/// `zeta_fast.profiling.profile`, looked up once (it turns messages and
/// request dicts into text; an import on every route() cost ~0.5 us).
/// Profiles a text and builds its learned features in the same pass over
/// its words (the profiler's buckets are the word block).
fn profile_for_learning(
    text: &str,
    turns: usize,
    embedding: bool,
) -> PyResult<(PyRequestProfile, Arc<LearnedRequest>)> {
    let mut words = Vec::new();
    let profile = profile_keeping_buckets(text, turns, embedding, &mut words)?;
    let task = profile.inner.task.unwrap_or(4);
    let category = RouterCore::learned_category(task, profile.inner.complexity);
    let features = features_with_words(words, text, &[category.as_str()]);
    Ok((profile, Arc::new(LearnedRequest { features, category })))
}

fn python_request_text(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    static REQUEST_TEXT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    REQUEST_TEXT.get_or_try_init(py, || {
        Ok(py
            .import("zeta_fast.profiling")?
            .getattr("_request_text")?
            .unbind())
    })
}

/// `learning`: `{min_outcomes, explore, learn_from_outcomes, and the
/// predictor's learning_rate, l2, prior_weight, prior_strength}`.
fn learning_arg(learning: &Bound<'_, PyDict>, models: Vec<String>) -> PyResult<Learning> {
    let predictor_params = PyDict::new(learning.py());
    let mut min_outcomes = 50_u64;
    let mut explore = 0.02;
    let mut learn_from_outcomes = false;
    for (key, value) in learning.iter() {
        let name: String = key.extract()?;
        match name.as_str() {
            "min_outcomes" => {
                min_outcomes = value
                    .extract()
                    .map_err(|_| type_error("learning.min_outcomes", "an int >= 0", &value))?
            }
            "explore" => explore = number(&value, "learning.explore")?,
            "learn_from_outcomes" => {
                learn_from_outcomes = value
                    .extract()
                    .map_err(|_| type_error("learning.learn_from_outcomes", "a bool", &value))?
            }
            _ => predictor_params.set_item(key, value)?,
        }
    }
    let predictor = OutcomePredictor::new(models, params_arg(Some(&predictor_params))?)?;
    Ok(Learning {
        predictor: Arc::new(predictor),
        min_outcomes,
        explore,
        learn_from_outcomes,
    })
}

/// `cost`: `{cost_per_1k_tokens: [per model], willingness_to_pay, expected_completion_tokens}`.
fn cost_arg(cost: &Bound<'_, PyDict>) -> PyResult<CostKnob> {
    let item = |key: &str| -> PyResult<Bound<'_, PyAny>> {
        cost.get_item(key)?
            .ok_or_else(|| InvalidInputError::new_err(format!("cost needs {key:?}")))
    };
    let prices = item("cost_per_1k_tokens")?;
    Ok(CostKnob {
        cost_per_1k_tokens: prices
            .extract()
            .map_err(|_| type_error("cost_per_1k_tokens", "a list of numbers", &prices))?,
        willingness_to_pay: number(&item("willingness_to_pay")?, "willingness_to_pay")?,
        expected_completion_tokens: number(
            &item("expected_completion_tokens")?,
            "expected_completion_tokens",
        )?,
    })
}

fn python_profile(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    static PROFILE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    PROFILE.get_or_try_init(py, || {
        Ok(py
            .import("zeta_fast.profiling")?
            .getattr("profile")?
            .unbind())
    })
}
