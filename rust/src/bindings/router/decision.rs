//! `Decision`: one routing decision as Python sees it, with the names of
//! its model, replica and task interned once per router.

use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use super::super::learned::PyFeatures;
use super::super::profile::PyRequestProfile;
use super::super::scorer::put_score_fields;
use super::PyRouterCore;
use crate::errors::ZetaError;
use crate::outcome_log::{unix_ms, LogRow, LoggedOutcome};
use crate::routing::{Decision, RouterCore};

/// A router's model, replica and task names as Python strings, interned
/// once: `[model]`, `[model][replica]`, `[task]`.
pub struct Names {
    pub models: Vec<Py<PyString>>,
    pub replicas: Vec<Vec<Py<PyString>>>,
    pub tasks: Vec<Py<PyString>>,
}

/// One routing decision: which model and replica, and why. Its names are
/// read from the router's when asked: making one takes no reference and
/// builds no list (most are recorded without a field read).
#[pyclass(name = "Decision", module = "zeta_fast._core", frozen)]
pub struct PyDecision {
    pub(super) inner: Decision,
    pub(super) router: Arc<RouterCore>,
    names: Arc<Names>,
    pub(super) context: Option<String>,
    pub(super) profile: Option<Py<PyAny>>,
    pub(super) recorded: AtomicBool,
    /// Its slot was given back by `release` before its outcome was recorded.
    pub(super) released: AtomicBool,
    /// A bit per verdict source (`SOURCES` order) that gave this decision
    /// its verdict (`feedback`: once per source), and bit 31 once its
    /// answer's structural check was recorded.
    pub(super) judged: AtomicU32,
}

impl PyDecision {
    /// Its outcome as an outcome-log row: owned data, copied (no text is
    /// built here; the log's writer does that).
    pub(crate) fn log_row(&self, py: Python<'_>, outcome: LoggedOutcome) -> LogRow {
        let profile = self.profile.as_ref().and_then(|p| {
            p.bind(py)
                .cast::<PyRequestProfile>()
                .ok()
                .map(|p| p.get().inner.clone())
        });
        LogRow {
            ts_ms: unix_ms(),
            router: Arc::clone(&self.router),
            decision: self.inner.clone(),
            context: self.context.clone(),
            profile,
            outcome,
        }
    }
}

impl PyRouterCore {
    /// The Python decision for a core decision of this router.
    pub(super) fn wrap(
        &self,
        decision: Decision,
        context: Option<String>,
        profile: Option<Py<PyAny>>,
    ) -> PyResult<PyDecision> {
        // The core only returns indices of its own models, replicas and
        // tasks; checked once here, so the getters can rely on them.
        let names = &self.names;
        let known = names
            .replicas
            .get(decision.model)
            .is_some_and(|r| decision.replica < r.len())
            && decision.model < names.models.len()
            && decision.task < names.tasks.len()
            && decision
                .runners_up
                .iter()
                .all(|(m, _)| *m < names.models.len());
        if !known {
            return Err(ZetaError::ForeignDecision.into());
        }
        Ok(PyDecision {
            inner: decision,
            router: Arc::clone(&self.inner),
            names: Arc::clone(names),
            context,
            profile,
            recorded: AtomicBool::new(false),
            released: AtomicBool::new(false),
            judged: AtomicU32::new(0),
        })
    }
}

impl PyDecision {
    /// Its model's name, `None` only for an index `wrap` refused.
    fn name_of(&self, py: Python<'_>, model: usize) -> Option<Py<PyString>> {
        self.names.models.get(model).map(|n| n.clone_ref(py))
    }

    fn replica_name(&self) -> Option<&Py<PyString>> {
        self.names
            .replicas
            .get(self.inner.model)
            .and_then(|r| r.get(self.inner.replica))
    }
}

#[pymethods]
impl PyDecision {
    #[getter]
    fn model_id(&self, py: Python<'_>) -> Option<Py<PyString>> {
        self.name_of(py, self.inner.model)
    }
    #[getter]
    fn replica_id(&self, py: Python<'_>) -> Option<Py<PyString>> {
        self.replica_name().map(|n| n.clone_ref(py))
    }
    #[getter]
    fn task_type(&self, py: Python<'_>) -> Option<Py<PyString>> {
        self.names
            .tasks
            .get(self.inner.task)
            .map(|n| n.clone_ref(py))
    }
    #[getter]
    fn complexity(&self) -> f64 {
        self.inner.complexity
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
        self.inner
            .runners_up
            .iter()
            .filter_map(|(m, s)| self.name_of(py, *m).map(|n| (n, *s)))
            .collect()
    }

    /// The decision record as a JSON-serialisable dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let b = &self.inner.breakdown;
        let dict = PyDict::new(py);
        dict.set_item("model_id", self.model_id(py))?;
        dict.set_item("replica_id", self.replica_id(py))?;
        dict.set_item("task_type", self.task_type(py))?;
        dict.set_item("complexity", self.inner.complexity)?;
        dict.set_item("context", self.context.clone())?;
        put_score_fields(&dict, b)?;
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
            self.model_id(py)
                .map(|n| n.bind(py).to_string())
                .unwrap_or_default(),
            self.replica_id(py)
                .map(|n| n.bind(py).to_string())
                .unwrap_or_default(),
            self.task_type(py)
                .map(|n| n.bind(py).to_string())
                .unwrap_or_default(),
            crate::errors::float_repr(self.inner.breakdown.performance_score)
        )
    }
}
