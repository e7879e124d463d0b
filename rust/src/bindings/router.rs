//! `RouterCore` and `Decision`: assignment seen from Python (the facade is
//! `zeta_fast.Router`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use super::balance::parse_policy;
use super::config::adaptive_config_arg;
use super::errors::InvalidInputError;
use super::extract::{number, type_error};
use super::profile::{profile_text, PyRequestProfile};
use super::tracker::PyPerformanceTracker;
use crate::router::{Decision, ModelInput, RouterCore, TASKS};
use crate::scoring::AdaptiveScorer;

/// `(id, {task: capability}, [(low, high)], [(replica_id, max_concurrency)])`.
type ModelTuple<'py> = (
    String,
    Bound<'py, PyDict>,
    Vec<(f64, f64)>,
    Vec<(String, u32)>,
);

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
}

#[pymethods]
impl PyRouterCore {
    /// `models`: `(id, {task: capability}, [(low, high) own, then per context], [(replica_id, max_concurrency)])`.
    #[new]
    #[pyo3(signature = (tracker, models, contexts = Vec::new(), config = None, policy = "power_of_two", spread_margin = 10.0))]
    fn new(
        py: Python<'_>,
        tracker: &Bound<'_, PyAny>,
        models: &Bound<'_, PyList>,
        contexts: Vec<String>,
        config: Option<&Bound<'_, PyAny>>,
        policy: &str,
        spread_margin: f64,
    ) -> PyResult<Self> {
        let tracker = tracker
            .cast::<PyPerformanceTracker>()
            .map_err(|_| type_error("tracker", "a PerformanceTracker", tracker))?;
        let (policy, _) = parse_policy(policy)?;
        let mut inputs = Vec::with_capacity(models.len());
        for (index, item) in models.iter().enumerate() {
            let (id, capabilities, ranges, replicas): ModelTuple<'_> =
                item.extract().map_err(|_| {
                    type_error(
                        &format!("models[{index}]"),
                        "(id, capabilities, ranges, replicas)",
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
            });
        }
        let inner = RouterCore::new(
            Arc::clone(&tracker.get().inner),
            AdaptiveScorer::new(adaptive_config_arg(config)?)?,
            inputs,
            policy,
            spread_margin,
        )?;
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
    #[pyo3(signature = (request = None, *, context = None, profile = None))]
    fn route(
        &self,
        py: Python<'_>,
        request: Option<&Bound<'_, PyAny>>,
        context: Option<&str>,
        profile: Option<&Bound<'_, PyAny>>,
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
        let profile: Bound<'_, PyRequestProfile> = match (profile, request) {
            (Some(given), _) => given
                .cast::<PyRequestProfile>()
                .map_err(|_| type_error("profile", "a RequestProfile", given))?
                .clone(),
            (None, Some(request)) => match request.cast::<PyString>() {
                Ok(text) => Bound::new(py, profile_text(text.to_str()?)?)?,
                Err(_) => py
                    .import("zeta_fast.profiling")?
                    .call_method1("profile", (request,))?
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
        let (task, complexity) = {
            let inner = &profile.get().inner;
            let task = inner.task.unwrap_or(4);
            (task, inner.complexity)
        };
        let decision = self.inner.route(task, complexity, context_index)?;
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
            .get(task)
            .map(|t| t.clone_ref(py))
            .ok_or_else(|| InvalidInputError::new_err("task index"))?;
        let runners_up = decision
            .runners_up
            .iter()
            .filter_map(|(m, score)| name(*m).map(|n| (n, *score)))
            .collect();
        Ok(PyDecision {
            inner: decision,
            router: Arc::clone(&self.inner),
            model_id,
            replica_id,
            task_type,
            complexity,
            context: context.map(str::to_owned),
            profile: Some(profile.into_any().unbind()),
            runners_up,
            recorded: AtomicBool::new(false),
        })
    }

    /// Records a decision's outcome in the tracker and frees its replica
    /// slot; a decision can be recorded once.
    fn record(&self, decision: &Bound<'_, PyAny>, success: bool, latency_ms: f64) -> PyResult<()> {
        let decision = decision
            .cast::<PyDecision>()
            .map_err(|_| type_error("decision", "a Decision from route()", decision))?
            .get();
        if !Arc::ptr_eq(&decision.router, &self.inner) {
            return Err(InvalidInputError::new_err(
                "decision was made by another router",
            ));
        }
        if decision.recorded.swap(true, Ordering::AcqRel) {
            return Err(InvalidInputError::new_err(
                "decision was already recorded (its replica slot is free again)",
            ));
        }
        if let Err(err) = self.inner.record(&decision.inner, success, latency_ms) {
            decision.recorded.store(false, Ordering::Release);
            return Err(err.into());
        }
        Ok(())
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
