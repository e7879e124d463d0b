//! `Change`, `SuccessDetector`, `LatencyDetector` and `TrendWatch`: the
//! trend detectors seen from Python (the logic is in `crate::trends`). A
//! router's watch comes from `RouterCore.watch_trends`, which makes the
//! core feed it; one built here is fed by `observe` alone.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::errors::ZetaError;
use crate::routing::TASKS;
use crate::tracker::check_latency;
use crate::trends::{
    Change, ChangeKind, Common, LatencyDetector, LatencyParams, Metric, SuccessDetector,
    SuccessParams, TrendWatch, WINDOW_EXPECTED,
};

/// A detected change: ``metric`` is "success" or "latency", ``kind``
/// "sudden" or "drift"; ``value`` the recent level (failure share, or
/// latency ms) and ``baseline`` the level before (same unit).
#[pyclass(name = "Change", module = "zeta_fast._core", frozen, eq)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PyChange {
    inner: Change,
}

#[pymethods]
impl PyChange {
    #[new]
    fn new(metric: &str, kind: &str, value: f64, baseline: f64) -> PyResult<Self> {
        let unknown = |field, value: &str, known: [&str; 2]| ZetaError::UnknownName {
            field,
            value: value.to_owned(),
            known: known.join(", "),
        };
        Ok(Self {
            inner: Change {
                metric: Metric::parse(metric)
                    .ok_or_else(|| unknown("metric", metric, ["success", "latency"]))?,
                kind: ChangeKind::parse(kind)
                    .ok_or_else(|| unknown("kind", kind, ["sudden", "drift"]))?,
                value,
                baseline,
            },
        })
    }

    #[getter]
    fn metric(&self) -> &'static str {
        self.inner.metric.name()
    }

    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind.name()
    }

    #[getter]
    fn value(&self) -> f64 {
        self.inner.value
    }

    #[getter]
    fn baseline(&self) -> f64 {
        self.inner.baseline
    }

    fn __repr__(&self) -> String {
        format!(
            "Change(metric='{}', kind='{}', value={}, baseline={})",
            self.metric(),
            self.kind(),
            crate::errors::float_repr(self.inner.value),
            crate::errors::float_repr(self.inner.baseline),
        )
    }
}

fn change(found: Option<Change>) -> Option<PyChange> {
    found.map(|inner| PyChange { inner })
}

fn common(
    window: i64,
    warmup: i64,
    alpha: f64,
    delta: f64,
    threshold: f64,
) -> Result<Common, ZetaError> {
    let invalid = |field, expected, value: i64| ZetaError::InvalidConfig {
        field,
        expected,
        value: value.to_string(),
    };
    Ok(Common {
        window: usize::try_from(window).map_err(|_| invalid("window", WINDOW_EXPECTED, window))?,
        warmup: u64::try_from(warmup).map_err(|_| invalid("warmup", ">= 1", warmup))?,
        alpha,
        delta,
        threshold,
    })
}

/// Failures of one stream: a sudden jump or a slow rise in their share.
#[pyclass(name = "SuccessDetector", module = "zeta_fast._core")]
pub struct PySuccessDetector {
    inner: SuccessDetector,
}

#[pymethods]
impl PySuccessDetector {
    #[new]
    #[pyo3(signature = (*, window = 20, warmup = 50, alpha = 0.002, sudden_margin = 0.25, delta = 0.05, threshold = 8.0))]
    fn new(
        window: i64,
        warmup: i64,
        alpha: f64,
        sudden_margin: f64,
        delta: f64,
        threshold: f64,
    ) -> PyResult<Self> {
        let params = SuccessParams {
            common: common(window, warmup, alpha, delta, threshold)?,
            sudden_margin,
        };
        Ok(Self {
            inner: SuccessDetector::new(params)?,
        })
    }

    /// One outcome: the change it completes, if any.
    fn observe(&mut self, success: bool) -> Option<PyChange> {
        change(self.inner.observe(success))
    }

    /// Observations so far.
    #[getter]
    fn seen(&self) -> u64 {
        self.inner.seen()
    }
}

/// Latency of one stream, on a log scale: a sudden jump of the recent
/// median, or a slow rise.
#[pyclass(name = "LatencyDetector", module = "zeta_fast._core")]
pub struct PyLatencyDetector {
    inner: LatencyDetector,
}

#[pymethods]
impl PyLatencyDetector {
    #[new]
    #[pyo3(signature = (*, window = 20, warmup = 50, alpha = 0.002, sudden_sigmas = 4.0, sudden_ratio = 1.5, delta = 0.5, threshold = 25.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        window: i64,
        warmup: i64,
        alpha: f64,
        sudden_sigmas: f64,
        sudden_ratio: f64,
        delta: f64,
        threshold: f64,
    ) -> PyResult<Self> {
        let params = LatencyParams {
            common: common(window, warmup, alpha, delta, threshold)?,
            sudden_sigmas,
            sudden_ratio,
        };
        Ok(Self {
            inner: LatencyDetector::new(params)?,
        })
    }

    /// One successful request's latency: the change it completes, if any.
    fn observe(&mut self, latency_ms: f64) -> PyResult<Option<PyChange>> {
        check_latency(latency_ms)?;
        Ok(change(self.inner.observe(latency_ms)))
    }

    /// Observations so far.
    #[getter]
    fn seen(&self) -> u64 {
        self.inner.seen()
    }
}

/// The success and latency detectors of every model (and, ``per_task``,
/// of every model x task type), and the changes they detected.
#[pyclass(name = "TrendWatch", module = "zeta_fast._core", frozen)]
pub struct PyTrendWatch {
    inner: Arc<TrendWatch>,
    /// The model ids, in the core's order (as `str` and as Python strings).
    ids: Vec<Box<str>>,
    names: Vec<Py<PyString>>,
}

impl PyTrendWatch {
    /// A watch over the models `names` (in the core's order) for `inner`.
    pub(super) fn wrap(py: Python<'_>, inner: Arc<TrendWatch>, names: &[Py<PyString>]) -> Self {
        Self {
            inner,
            ids: names
                .iter()
                .map(|n| n.bind(py).to_string().into())
                .collect(),
            names: names.iter().map(|n| n.clone_ref(py)).collect(),
        }
    }

    fn model_index(&self, id: &str) -> Result<usize, ZetaError> {
        self.ids
            .iter()
            .position(|known| &**known == id)
            .ok_or_else(|| ZetaError::UnknownName {
                field: "model",
                value: id.to_owned(),
                known: self.ids.join(", "),
            })
    }
}

fn task_index(task: &str) -> Result<usize, ZetaError> {
    TASKS
        .iter()
        .position(|t| *t == task)
        .ok_or_else(|| ZetaError::UnknownName {
            field: "task",
            value: task.to_owned(),
            known: TASKS.join(", "),
        })
}

#[pymethods]
impl PyTrendWatch {
    /// A watch fed by ``observe`` only (a router's comes from
    /// ``RouterCore.watch_trends``, which the core feeds).
    // `capacity`'s default is written out (a constant's name would reach
    // the text signature stubtest reads as `...`): it is DEFAULT_CAPACITY,
    // which a router's watch has too (tests/test_alerts.py checks).
    #[new]
    #[pyo3(signature = (models, *, per_task = true, capacity = 1024))]
    fn new(py: Python<'_>, models: Vec<String>, per_task: bool, capacity: usize) -> PyResult<Self> {
        for (i, id) in models.iter().enumerate() {
            if models.get(..i).is_some_and(|before| before.contains(id)) {
                return Err(ZetaError::InvalidName {
                    field: "models",
                    problem: "names a model twice",
                    value: id.clone(),
                }
                .into());
            }
        }
        let inner = Arc::new(TrendWatch::new(models.len(), per_task, capacity)?);
        let names: Vec<Py<PyString>> = models
            .iter()
            .map(|id| PyString::intern(py, id).unbind())
            .collect();
        Ok(Self::wrap(py, inner, &names))
    }

    /// Observes one outcome of ``model_id`` that is about the replica (a
    /// success, or the replica's fault) of a request of ``task`` type.
    #[pyo3(signature = (model_id, success, latency_ms, task = None))]
    fn observe(
        &self,
        model_id: &str,
        success: bool,
        latency_ms: f64,
        task: Option<&str>,
    ) -> PyResult<()> {
        check_latency(latency_ms)?;
        let model = self.model_index(model_id)?;
        let task = task.map(task_index).transpose()?;
        self.inner.observe(model, task, success, latency_ms);
        Ok(())
    }

    /// The changes detected since the last call, oldest first: (model id,
    /// task type or None for the model as a whole, change, the model's
    /// outcomes observed when it was detected).
    fn take_changes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let taken = self.inner.take_changes();
        let items = taken
            .into_iter()
            .map(|noticed| {
                let model = self
                    .names
                    .get(noticed.model)
                    .ok_or_else(|| ZetaError::Internal {
                        what: "a change of a model the watch does not have".to_owned(),
                    })?
                    .bind(py)
                    .clone()
                    .into_any();
                let task = match noticed.task.and_then(|t| TASKS.get(t)) {
                    Some(name) => PyString::new(py, name).into_any(),
                    None => py.None().into_bound(py),
                };
                let change = Bound::new(
                    py,
                    PyChange {
                        inner: noticed.change,
                    },
                )?
                .into_any();
                let observed = noticed.observed.into_pyobject(py)?.into_any();
                PyTuple::new(py, [model, task, change, observed])
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    /// Outcomes observed so far, per model id.
    fn observed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (model, name) in self.names.iter().enumerate() {
            dict.set_item(name.bind(py), self.inner.observed(model))?;
        }
        Ok(dict)
    }

    /// The model ids watched, in order.
    #[getter]
    fn models(&self) -> Vec<String> {
        self.ids.iter().map(|id| id.to_string()).collect()
    }

    #[getter]
    fn per_task(&self) -> bool {
        self.inner.per_task()
    }

    /// How many changes are held for ``take_changes`` at most.
    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// Changes dropped because ``capacity`` were already waiting.
    #[getter]
    fn overflowed(&self) -> u64 {
        self.inner.overflowed()
    }
}
