//! The router's settings from Python: models, resilience, learning and
//! cost, each read once into the core's validated types.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::super::errors::{ConfigError, InvalidInputError};
use super::super::extract::{number, type_error};
use super::super::learned::params_arg;
use crate::breaker::BreakerConfig;
use crate::errors::{float_repr, ZetaError};
use crate::learned::OutcomePredictor;
use crate::learned_capability::{CostKnob, Learning};
use crate::replica_health::ReplicaAdapt;
use crate::retry::{Backoff, BudgetConfig};
use crate::routing::{ModelInput, Resilience};

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

/// The models list of `RouterCore(...)`.
pub fn models_arg(models: &Bound<'_, PyList>) -> PyResult<Vec<ModelInput>> {
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
    Ok(inputs)
}

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
                    return Err(ZetaError::InvalidConfig {
                        field: "resilience.relative_latency_factor",
                        expected: "0 (off) or > 1",
                        value: float_repr(factor),
                    }
                    .into());
                }
                out.relative_latency_factor = factor;
            }
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
    Ok(out)
}

/// `learning`: `{min_outcomes, explore, learn_from_outcomes, and the
/// predictor's learning_rate, l2, prior_weight, prior_strength}`.
pub fn learning_arg(learning: &Bound<'_, PyDict>, models: Vec<String>) -> PyResult<Learning> {
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
pub fn cost_arg(cost: &Bound<'_, PyDict>) -> PyResult<CostKnob> {
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
