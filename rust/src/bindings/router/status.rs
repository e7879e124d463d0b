//! What the router reports about itself to Python as plain data: replica
//! status, histograms, range changes and the learned router's predictions.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::learned_capability::{LearnedRequest, Learning};
use crate::outcome::{HistogramSnapshot, OUTCOME_KINDS};
use crate::replica_health::degraded_by;
use crate::routing::{RangeChange, RoutedModel, RouterCore};

/// ``{"buckets": [(le_ms, cumulative)], "sum_ms", "count"}``.
pub fn histogram_dict<'py>(
    py: Python<'py>,
    snap: &HistogramSnapshot,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("buckets", snap.cumulative.clone())?;
    dict.set_item("sum_ms", snap.sum_ms)?;
    dict.set_item("count", snap.count)?;
    Ok(dict)
}

/// One replica's state now: health, breaker, load and outcome counters.
#[pyclass(name = "ReplicaStatus", module = "zeta_fast._core", frozen)]
pub struct PyReplicaStatus {
    /// The replica's id.
    #[pyo3(get)]
    replica_id: String,
    /// False when marked unhealthy (health checks): never chosen then.
    #[pyo3(get)]
    healthy: bool,
    /// Requests this router has running on it.
    #[pyo3(get)]
    in_flight: u32,
    /// The breaker's state: ``closed``, ``open`` or ``half_open``.
    #[pyo3(get)]
    breaker: Option<&'static str>,
    /// How long until the breaker admits a request again (0: now).
    #[pyo3(get)]
    breaker_admits_in_ms: u64,
    /// Requests the engine reports queued (its last scrape, while fresh).
    #[pyo3(get)]
    engine_waiting: u32,
    /// KV-cache use the engine reports, 0..1.
    #[pyo3(get)]
    engine_kv_usage: f64,
    outcomes: Vec<(&'static str, u64)>,
    #[pyo3(get)]
    prompt_tokens: u64,
    #[pyo3(get)]
    completion_tokens: u64,
    /// Mean time to the first streamed event, ms (None before a stream).
    #[pyo3(get)]
    mean_ttft_ms: Option<f64>,
    /// Latency histogram: (upper bound ms, cumulative count) per bucket.
    latency_buckets: Vec<(f64, u64)>,
    latency_sum_ms: f64,
    latency_count: u64,
    /// Its recent failure share (None before its first outcome).
    #[pyo3(get)]
    recent_failure_share: Option<f64>,
    /// Its recent latency, ms (None before its first answer).
    #[pyo3(get)]
    recent_latency_ms: Option<f64>,
    /// Passed over for being slow or failing beside its twins.
    #[pyo3(get)]
    degraded: bool,
}

#[pymethods]
impl PyReplicaStatus {
    /// The status as a JSON-serialisable dict (``outcomes`` and ``latency``
    /// as dicts), for pages and logs.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("replica_id", &self.replica_id)?;
        dict.set_item("healthy", self.healthy)?;
        dict.set_item("in_flight", self.in_flight)?;
        dict.set_item("breaker", self.breaker)?;
        dict.set_item("breaker_admits_in_ms", self.breaker_admits_in_ms)?;
        dict.set_item("engine_waiting", self.engine_waiting)?;
        dict.set_item("engine_kv_usage", self.engine_kv_usage)?;
        dict.set_item("outcomes", self.outcomes(py)?)?;
        dict.set_item("prompt_tokens", self.prompt_tokens)?;
        dict.set_item("completion_tokens", self.completion_tokens)?;
        dict.set_item("mean_ttft_ms", self.mean_ttft_ms)?;
        dict.set_item("latency", self.latency(py)?)?;
        dict.set_item("recent_failure_share", self.recent_failure_share)?;
        dict.set_item("recent_latency_ms", self.recent_latency_ms)?;
        dict.set_item("degraded", self.degraded)?;
        Ok(dict)
    }

    /// Outcomes by kind (every ``OutcomeKind`` value), as a dict.
    #[getter]
    fn outcomes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let kinds = PyDict::new(py);
        for (name, count) in &self.outcomes {
            kinds.set_item(*name, *count)?;
        }
        Ok(kinds)
    }

    /// The latency histogram as ``{"buckets", "sum_ms", "count"}``.
    #[getter]
    fn latency<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("buckets", self.latency_buckets.clone())?;
        dict.set_item("sum_ms", self.latency_sum_ms)?;
        dict.set_item("count", self.latency_count)?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        format!(
            "ReplicaStatus(replica_id={:?}, healthy={}, in_flight={}, breaker={:?}, degraded={})",
            self.replica_id,
            self.healthy,
            self.in_flight,
            self.breaker.unwrap_or("none"),
            self.degraded
        )
    }
}

/// Each replica of a model now.
pub fn replica_status(core: &RouterCore, routed: &RoutedModel) -> Vec<PyReplicaStatus> {
    let now = core.tracker().clock().now_ms();
    let in_flight = routed.replicas.in_flight();
    let passed_over = degraded_by(
        &routed.health,
        &core.resilience().replica_adapt,
        routed.replicas.policy().passes_over_slow_replicas(),
    );
    routed
        .replica_ids
        .iter()
        .enumerate()
        .map(|(r, id)| {
            let (waiting, kv) = routed.replicas.engine_load(r, now);
            let snap = routed.counters.get(r).map(|c| c.snapshot());
            let (fail, latency, samples) = routed.health.get(r).map_or((0.0, 0.0, 0), |h| h.read());
            PyReplicaStatus {
                replica_id: id.to_string(),
                healthy: routed.replicas.is_healthy(r),
                in_flight: in_flight.get(r).copied().unwrap_or(0),
                breaker: routed.replicas.breaker_state(r).map(|b| b.name()),
                breaker_admits_in_ms: routed.replicas.breaker_admits_in_ms(r, now),
                engine_waiting: waiting,
                engine_kv_usage: kv,
                outcomes: OUTCOME_KINDS
                    .iter()
                    .enumerate()
                    .map(|(i, (_, name))| {
                        let count = snap.as_ref().and_then(|s| s.by_kind.get(i).copied());
                        (*name, count.unwrap_or(0))
                    })
                    .collect(),
                prompt_tokens: snap.as_ref().map_or(0, |s| s.prompt_tokens),
                completion_tokens: snap.as_ref().map_or(0, |s| s.completion_tokens),
                mean_ttft_ms: snap.as_ref().and_then(|s| s.mean_ttft_ms),
                latency_buckets: snap
                    .as_ref()
                    .map(|s| s.latency.cumulative.clone())
                    .unwrap_or_default(),
                latency_sum_ms: snap.as_ref().map_or(0.0, |s| s.latency.sum_ms),
                latency_count: snap.as_ref().map_or(0, |s| s.latency.count),
                recent_failure_share: (samples > 0).then_some(fail),
                recent_latency_ms: (latency > 0.0).then_some(latency),
                degraded: passed_over.contains(&r),
            }
        })
        .collect()
}

/// One range change as a dict (model_id, context, old_high, new_high,
/// requests, success_rate).
pub fn range_change<'py>(
    py: Python<'py>,
    change: &RangeChange,
    model_names: &[Py<PyString>],
    contexts: &[String],
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item(
        "model_id",
        model_names.get(change.model).map(|n| n.bind(py).clone()),
    )?;
    dict.set_item(
        "context",
        change
            .context
            .checked_sub(1)
            .and_then(|c| contexts.get(c).cloned()),
    )?;
    dict.set_item("old_high", change.old_high)?;
    dict.set_item("new_high", change.new_high)?;
    dict.set_item("requests", change.requests)?;
    dict.set_item("success_rate", change.success_rate)?;
    Ok(dict)
}

/// What the learned router expects of each model for one request.
pub fn predictions<'py>(
    py: Python<'py>,
    learning: &Learning,
    learned: &LearnedRequest,
    prompt_tokens: usize,
    model_names: &[Py<PyString>],
) -> PyResult<Bound<'py, PyDict>> {
    let mut success = Vec::new();
    learning
        .predictor
        .predict_all(&learned.features, &mut success);
    let latency = learning.predictor.predict_latency_all(&learned.features);
    let capabilities = learning.capabilities(learned);
    let models = PyList::empty(py);
    for (m, name) in model_names.iter().enumerate() {
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
    out.set_item("prompt_tokens", prompt_tokens)?;
    out.set_item("models", models)?;
    Ok(out)
}
