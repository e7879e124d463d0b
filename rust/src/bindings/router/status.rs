//! What the router reports about itself to Python as plain data: replica
//! status, histograms, range changes and the learned router's predictions.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::learned_capability::{LearnedRequest, Learning};
use crate::outcome::{HistogramSnapshot, OUTCOME_KINDS};
use crate::replica_health::degraded;
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

/// Each replica of a model now: health, breaker, load, outcome counters.
pub fn replica_status<'py>(
    py: Python<'py>,
    core: &RouterCore,
    routed: &RoutedModel,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let now = core.tracker().clock().now_ms();
    let in_flight = routed.replicas.in_flight();
    let passed_over = degraded(&routed.health, &core.resilience().replica_adapt);
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
