//! The router's settings from Python: models, resilience, learning and
//! cost, each read once into the core's validated types.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::super::errors::{ConfigError, InvalidInputError};
use super::super::extract::{count, count_u32, flag, number, or_default, text, texts, type_error};
use super::super::learned::params_arg;
use crate::breaker::BreakerConfig;
use crate::errors::{float_repr, ZetaError};
use crate::learned_capability::{CostKnob, LearningSettings};
use crate::replica_health::ReplicaAdapt;
use crate::retry::{Backoff, BudgetConfig};
use crate::routing::{ModelInput, Resilience};

/// One model as the core takes it, validated once when built.
#[pyclass(name = "ModelSettings", module = "zeta_fast._core", frozen)]
pub struct PyModelSettings {
    pub(super) inner: ModelInput,
}

#[pymethods]
impl PyModelSettings {
    /// `capabilities`: {task: 0..100}; `ranges`: its own complexity range,
    /// then one per context (in the router's context order); `replicas`:
    /// (id, max_concurrency, 0 = unlimited); `context_window`: tokens (0:
    /// not stated); `fallbacks`: model ids, in order.
    #[new]
    #[pyo3(
        signature = (id, capabilities, ranges, replicas, context_window = None, fallbacks = None),
        text_signature = "(id, capabilities, ranges, replicas, context_window=0, fallbacks=...)"
    )]
    fn new(
        id: &Bound<'_, PyAny>,
        capabilities: &Bound<'_, PyAny>,
        ranges: &Bound<'_, PyAny>,
        replicas: &Bound<'_, PyAny>,
        context_window: Option<&Bound<'_, PyAny>>,
        fallbacks: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let id = text(id, "id")?.to_owned();
        let capabilities = capabilities.cast::<PyDict>().map_err(|_| {
            type_error("capabilities", "a dict of task -> capability", capabilities)
        })?;
        let ranges = pairs(ranges, "ranges", |low, high, field| {
            Ok((
                number(low, &format!("{field}[0]"))?,
                number(high, &format!("{field}[1]"))?,
            ))
        })?;
        let replicas = pairs(replicas, "replicas", |replica, capacity, field| {
            Ok((
                text(replica, &format!("{field}[0]"))?.to_owned(),
                count_u32(capacity, &format!("{field}[1]"))?,
            ))
        })?;
        let context_window = or_default(context_window, 0, "context_window", count_u32)?;
        let fallbacks = match fallbacks {
            Some(given) if !given.is_none() => texts(given, "fallbacks")?,
            _ => Vec::new(),
        };
        let mut caps = Vec::with_capacity(capabilities.len());
        for (task, value) in capabilities.iter() {
            let task = text(&task, "capabilities key")?.to_owned();
            let value = number(&value, &format!("{id}.capabilities.{task}"))?;
            caps.push((task, value));
        }
        let inner = ModelInput {
            id,
            capabilities: caps,
            ranges,
            replicas,
            context_window,
            fallbacks,
        };
        inner.validate()?;
        Ok(Self { inner })
    }

    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }
    #[getter]
    fn capabilities(&self) -> Vec<(String, f64)> {
        self.inner.capabilities.clone()
    }
    #[getter]
    fn ranges(&self) -> Vec<(f64, f64)> {
        self.inner.ranges.clone()
    }
    #[getter]
    fn replicas(&self) -> Vec<(String, u32)> {
        self.inner.replicas.clone()
    }
    #[getter]
    fn context_window(&self) -> u32 {
        self.inner.context_window
    }
    #[getter]
    fn fallbacks(&self) -> Vec<String> {
        self.inner.fallbacks.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "ModelSettings(id={:?}, replicas={})",
            self.inner.id,
            self.inner.replicas.len()
        )
    }
}

/// A list of 2-tuples (`ranges`, `replicas`), each item read by `read`
/// with its position (`ranges[1]`) for the errors.
fn pairs<T>(
    value: &Bound<'_, PyAny>,
    field: &str,
    read: impl Fn(&Bound<'_, PyAny>, &Bound<'_, PyAny>, &str) -> PyResult<T>,
) -> PyResult<Vec<T>> {
    let expected = "a list of 2-tuples";
    let items = value
        .try_iter()
        .map_err(|_| type_error(field, expected, value))?;
    let mut out = Vec::new();
    for (index, item) in items.enumerate() {
        let item = item?;
        let at = format!("{field}[{index}]");
        let pair = item
            .cast::<pyo3::types::PyTuple>()
            .ok()
            .filter(|t| t.len() == 2)
            .ok_or_else(|| type_error(&at, "a 2-tuple", &item))?;
        out.push(read(&pair.get_item(0)?, &pair.get_item(1)?, &at)?);
    }
    Ok(out)
}

/// The models list of `RouterCore(...)`: `ModelSettings`, in order.
pub fn models_arg(models: &Bound<'_, PyList>) -> PyResult<Vec<ModelInput>> {
    models
        .iter()
        .enumerate()
        .map(|(index, item)| {
            item.cast::<PyModelSettings>()
                .map(|m| m.get().inner.clone())
                .map_err(|_| type_error(&format!("models[{index}]"), "a ModelSettings", &item))
        })
        .collect()
}

/// The dispatch settings the core takes (breakers, budgets, backoff, replica
/// adaptation, the relative latency rule), validated once when built; the
/// defaults are the core's (`ResilienceSettings().to_dict()`).
#[pyclass(name = "ResilienceSettings", module = "zeta_fast._core", frozen)]
pub struct PyResilience {
    pub(super) inner: Resilience,
}

#[pymethods]
impl PyResilience {
    /// Any of the fields of `to_dict()`, by keyword; the rest default.
    #[new]
    #[pyo3(signature = (**fields))]
    fn new(fields: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Ok(Self {
            inner: resilience_arg(fields)?,
        })
    }

    /// Every field with its value.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = &self.inner;
        let dict = PyDict::new(py);
        dict.set_item("failure_threshold", r.breaker.failure_threshold)?;
        dict.set_item("cooldown_ms", r.breaker.cooldown_ms)?;
        dict.set_item("success_threshold", r.breaker.success_threshold)?;
        dict.set_item("retry_ratio", r.retry_budget.ratio)?;
        dict.set_item("retry_min_per_second", r.retry_budget.min_per_second)?;
        dict.set_item("retry_max_tokens", r.retry_budget.max_tokens)?;
        dict.set_item("hedge_ratio", r.hedge_budget.ratio)?;
        dict.set_item("hedge_max_tokens", r.hedge_budget.max_tokens)?;
        dict.set_item("backoff_base_ms", r.backoff.base_ms)?;
        dict.set_item("backoff_max_ms", r.backoff.max_ms)?;
        dict.set_item("engine_load_ttl_ms", r.engine_load_ttl_ms)?;
        dict.set_item("replica_adaptation", r.replica_adapt.enabled)?;
        dict.set_item("replica_alpha", r.replica_adapt.alpha)?;
        dict.set_item("replica_fail_margin", r.replica_adapt.fail_margin)?;
        dict.set_item("replica_latency_factor", r.replica_adapt.latency_factor)?;
        dict.set_item("replica_explore", r.replica_adapt.explore)?;
        dict.set_item("relative_latency_factor", r.relative_latency_factor)?;
        dict.set_item("prefix_block_bytes", r.prefix.block_bytes)?;
        dict.set_item("prefix_max_entries", r.prefix.max_entries)?;
        dict.set_item("prefix_load_factor", r.prefix.load_factor)?;
        dict.set_item("prefix_load_slack", r.prefix.load_slack)?;
        dict.set_item("prefix_min_match_blocks", r.prefix.min_match_blocks)?;
        dict.set_item("session_ttl_ms", r.prefix.session_ttl_ms)?;
        dict.set_item("max_sessions", r.prefix.max_sessions)?;
        Ok(dict)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyResilience>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }
}

/// The learned router's settings, validated once when built; the defaults
/// are the core's (`LearningSettings().to_dict()`).
#[pyclass(name = "LearningSettings", module = "zeta_fast._core", frozen)]
pub struct PyLearningSettings {
    pub(super) inner: LearningSettings,
}

#[pymethods]
impl PyLearningSettings {
    /// `min_outcomes`, `explore`, `learn_from_outcomes` and the predictor's
    /// `learning_rate`, `l2`, `prior_weight`, `prior_strength`, by keyword.
    #[new]
    #[pyo3(signature = (**fields))]
    fn new(py: Python<'_>, fields: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut out = LearningSettings::default();
        let params = PyDict::new(py);
        if let Some(fields) = fields {
            for (key, value) in fields.iter() {
                let name = text(&key, "learning key")?;
                match name {
                    "min_outcomes" => out.min_outcomes = count(&value, "learning.min_outcomes")?,
                    "explore" => out.explore = number(&value, "learning.explore")?,
                    "learn_from_outcomes" => {
                        out.learn_from_outcomes = flag(&value, "learning.learn_from_outcomes")?
                    }
                    "source_weights" => {
                        let weights = value.cast::<PyDict>().map_err(|_| {
                            type_error(
                                "learning.source_weights",
                                "a dict of source -> weight",
                                &value,
                            )
                        })?;
                        for (source, weight) in weights.iter() {
                            let index = crate::verdicts::source_index(text(
                                &source,
                                "learning.source_weights key",
                            )?)?;
                            let value = number(&weight, "learning.source_weights value")?;
                            if let Some(slot) = out.source_weights.get_mut(index) {
                                *slot = value;
                            }
                        }
                    }
                    _ => params.set_item(&key, value)?,
                }
            }
        }
        out.params = params_arg(Some(&params))?;
        out.validate()?;
        Ok(Self { inner: out })
    }

    /// Every setting with its value.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let l = &self.inner;
        let dict = PyDict::new(py);
        dict.set_item("min_outcomes", l.min_outcomes)?;
        dict.set_item("explore", l.explore)?;
        dict.set_item("learn_from_outcomes", l.learn_from_outcomes)?;
        let weights = PyDict::new(py);
        for (source, weight) in crate::verdicts::SOURCES.iter().zip(l.source_weights) {
            weights.set_item(*source, weight)?;
        }
        dict.set_item("source_weights", weights)?;
        dict.set_item("learning_rate", l.params.learning_rate)?;
        dict.set_item("l2", l.params.l2)?;
        dict.set_item("prior_weight", l.params.prior_weight)?;
        dict.set_item("prior_strength", l.params.prior_strength)?;
        Ok(dict)
    }
}

/// The keys a `resilience=` mapping may hold.
const RESILIENCE_KEYS: [&str; 24] = [
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
    "prefix_block_bytes",
    "prefix_max_entries",
    "prefix_load_factor",
    "prefix_load_slack",
    "prefix_min_match_blocks",
    "session_ttl_ms",
    "max_sessions",
];

/// A whole number >= 0 for a `resilience=` field.
fn whole(item: &Bound<'_, PyAny>, field: &str) -> PyResult<u64> {
    let value = number(item, field)?;
    if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value < 2f64.powi(53) {
        Ok(value as u64)
    } else {
        Err(ConfigError::new_err(format!(
            "{field} must be a whole number >= 0, got {}",
            float_repr(value)
        )))
    }
}

/// Reads a `resilience=` mapping over the defaults; the core's constructors
/// validate each part.
pub fn resilience_arg(value: Option<&Bound<'_, PyDict>>) -> PyResult<Resilience> {
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
        let key = text(&key, "resilience key")?.to_owned();
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
                    return Err(ZetaError::InvalidConfig {
                        field: "resilience.relative_latency_factor",
                        expected: "0 (off) or > 1",
                        value: float_repr(factor),
                    }
                    .into());
                }
                out.relative_latency_factor = factor;
            }
            "prefix_block_bytes" => out.prefix.block_bytes = count(&item)?,
            "prefix_max_entries" => out.prefix.max_entries = whole(&item, &field)?,
            "prefix_load_factor" => out.prefix.load_factor = number(&item, &field)?,
            "prefix_load_slack" => out.prefix.load_slack = count(&item)?,
            "prefix_min_match_blocks" => out.prefix.min_match_blocks = count(&item)?,
            "session_ttl_ms" => out.prefix.session_ttl_ms = whole(&item, &field)?,
            "max_sessions" => out.prefix.max_sessions = whole(&item, &field)?,
            _ => {
                return Err(ZetaError::UnknownField {
                    owner: "resilience",
                    key,
                    known: RESILIENCE_KEYS.join(", "),
                }
                .into())
            }
        }
    }
    let config_error = |prefix: &str, err: ZetaError| -> PyErr {
        ConfigError::new_err(format!("resilience.{prefix}{err}"))
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
    out.prefix = out.prefix.validated().map_err(|e| config_error("", e))?;
    Ok(out)
}

/// `cost`: `{cost_per_1k_tokens: [per model], willingness_to_pay, expected_completion_tokens}`.
pub fn cost_arg(cost: &Bound<'_, PyDict>) -> PyResult<CostKnob> {
    let item = |key: &str| -> PyResult<Bound<'_, PyAny>> {
        cost.get_item(key)?
            .ok_or_else(|| InvalidInputError::new_err(format!("cost needs {key:?}")))
    };
    let prices = item("cost_per_1k_tokens")?;
    let items = prices
        .try_iter()
        .map_err(|_| type_error("cost_per_1k_tokens", "a list of numbers", &prices))?;
    let mut cost_per_1k_tokens = Vec::new();
    for (index, price) in items.enumerate() {
        cost_per_1k_tokens.push(number(&price?, &format!("cost_per_1k_tokens[{index}]"))?);
    }
    Ok(CostKnob {
        cost_per_1k_tokens,
        willingness_to_pay: number(&item("willingness_to_pay")?, "willingness_to_pay")?,
        expected_completion_tokens: number(
            &item("expected_completion_tokens")?,
            "expected_completion_tokens",
        )?,
    })
}
