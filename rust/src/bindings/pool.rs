//! `CandidatePool`: decisions whose live metrics come from the tracker.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use super::config::adaptive_config_arg;
use super::extract::{number, or_default, text, type_error, utf8};
use super::scorer::PyScoreBreakdown;
use super::tracker::PyPerformanceTracker;
use crate::errors::ZetaError;
use crate::pool::CandidatePool;
use crate::scoring::AdaptiveScorer;

/// Candidate models with a capability per task, scored from the tracker.
#[pyclass(name = "CandidatePool", module = "zeta_fast._core", frozen)]
pub struct PyCandidatePool {
    inner: CandidatePool,
    tracker: Py<PyPerformanceTracker>,
    /// Model ids as Python strings, returned by `best()` without allocating.
    model_names: Vec<Py<PyString>>,
    /// Task names as Python strings: most callers pass the very same objects,
    /// so an identity check finds them before any string comparison.
    task_names: Vec<Py<PyString>>,
}

impl PyCandidatePool {
    #[inline]
    fn task_index(&self, task: &Bound<'_, PyAny>) -> PyResult<usize> {
        for (index, known) in self.task_names.iter().enumerate() {
            if known.as_ptr() == task.as_ptr() {
                return Ok(index);
            }
        }
        let name = task
            .cast::<PyString>()
            .map_err(|_| type_error("task", "a str", task))?;
        Ok(self.inner.task_index(utf8(name, "task")?)?)
    }
}

#[pymethods]
impl PyCandidatePool {
    #[new]
    #[pyo3(
        signature = (tracker, candidates, config = None, *, relative_latency_factor = None),
        text_signature = "(tracker, candidates, config=None, *, relative_latency_factor=0.0)"
    )]
    fn new(
        py: Python<'_>,
        tracker: &Bound<'_, PyAny>,
        candidates: &Bound<'_, PyAny>,
        config: Option<&Bound<'_, PyAny>>,
        relative_latency_factor: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let relative_latency_factor = or_default(
            relative_latency_factor,
            0.0,
            "relative_latency_factor",
            number,
        )?;
        let tracker = tracker
            .cast::<PyPerformanceTracker>()
            .map_err(|_| type_error("tracker", "a PerformanceTracker", tracker))?;
        let config = adaptive_config_arg(config)?;
        let candidates = candidates.cast::<PyDict>().map_err(|_| {
            type_error(
                "candidates",
                "a dict of model id -> {task: capability}",
                candidates,
            )
        })?;
        let mut models = Vec::with_capacity(candidates.len());
        for (model, tasks) in candidates.iter() {
            let model = text(&model, "candidates key")?.to_owned();
            let tasks = tasks.cast::<PyDict>().map_err(|_| {
                type_error(
                    &format!("candidates[{model:?}]"),
                    "a dict of task -> capability",
                    &tasks,
                )
            })?;
            let mut capabilities = Vec::with_capacity(tasks.len());
            for (task, capability) in tasks.iter() {
                let task = text(&task, &format!("candidates[{model:?}] key"))?.to_owned();
                let value = number(&capability, &format!("candidates[{model:?}][{task:?}]"))?;
                capabilities.push((task, value));
            }
            models.push((model, capabilities));
        }
        let inner = CandidatePool::new(
            Arc::clone(&tracker.get().inner),
            AdaptiveScorer::new(config)?,
            models,
        )?
        .with_relative_latency(relative_latency_factor)?;
        let model_names = inner
            .models()
            .iter()
            .map(|m| PyString::intern(py, m).unbind())
            .collect();
        let task_names = inner
            .tasks()
            .iter()
            .map(|t| PyString::intern(py, t).unbind())
            .collect();
        Ok(Self {
            inner,
            tracker: tracker.clone().unbind(),
            model_names,
            task_names,
        })
    }

    /// The best model id for `task`, from live metrics in the tracker.
    fn best(&self, py: Python<'_>, task: &Bound<'_, PyAny>) -> PyResult<Py<PyString>> {
        let task = self.task_index(task)?;
        let index = self.inner.best(task)?;
        self.model_names
            .get(index)
            .map(|name| name.clone_ref(py))
            .ok_or_else(|| {
                ZetaError::IndexOutOfRange {
                    what: "model",
                    index,
                    len: self.model_names.len(),
                }
                .into()
            })
    }

    /// Every capable model's score for `task`, explained, in pool order.
    fn score(
        &self,
        py: Python<'_>,
        task: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<(Py<PyString>, PyScoreBreakdown)>> {
        let task = self.task_index(task)?;
        let mut out = Vec::new();
        for (model, breakdown) in self.inner.score(task)? {
            if let Some(name) = self.model_names.get(model) {
                out.push((name.clone_ref(py), PyScoreBreakdown::new(breakdown)));
            }
        }
        Ok(out)
    }

    /// Records an outcome in the pool's tracker: the feedback loop.
    fn record(
        &self,
        py: Python<'_>,
        model: &Bound<'_, PyAny>,
        replica: &Bound<'_, PyAny>,
        task: &Bound<'_, PyAny>,
        success: &Bound<'_, PyAny>,
        latency_ms: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.tracker
            .get()
            .record(model, replica, task, success, latency_ms)?;
        let _ = py;
        Ok(())
    }

    #[getter]
    fn models(&self, py: Python<'_>) -> Vec<Py<PyString>> {
        self.model_names.iter().map(|m| m.clone_ref(py)).collect()
    }

    #[getter]
    fn tasks(&self, py: Python<'_>) -> Vec<Py<PyString>> {
        self.task_names.iter().map(|t| t.clone_ref(py)).collect()
    }

    #[getter]
    fn tracker(&self, py: Python<'_>) -> Py<PyPerformanceTracker> {
        self.tracker.clone_ref(py)
    }
}
