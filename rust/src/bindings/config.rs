//! `AdaptiveConfig`: the validated, immutable scorer configuration.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::extract::{count, number, repr, text, utf8};
use crate::config::AdaptiveConfig;
use crate::errors::ZetaError;

/// Field names in declaration order: the keyword arguments, `to_dict()` keys
/// and the keys `from_dict()` accepts.
const FIELDS: [&str; 8] = [
    "capability_weight",
    "success_rate_weight",
    "latency_weight",
    "min_acceptable_success_rate",
    "max_acceptable_latency_ms",
    "min_requests_for_performance",
    "low_success_rate_penalty",
    "high_latency_penalty",
];

/// The error for a key that is none of `FIELDS`.
fn unknown_field(key: &str) -> ZetaError {
    ZetaError::UnknownField {
        owner: "AdaptiveConfig",
        key: key.to_owned(),
        known: FIELDS.join(", "),
    }
}

/// Validated, immutable configuration of the adaptive score (see `_core.pyi`).
#[pyclass(name = "AdaptiveConfig", module = "zeta_fast._core", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PyAdaptiveConfig {
    pub inner: AdaptiveConfig,
}

/// A `config=` argument: an `AdaptiveConfig`, or `None` for the defaults.
pub fn adaptive_config_arg(value: Option<&Bound<'_, PyAny>>) -> PyResult<AdaptiveConfig> {
    match value {
        None => Ok(AdaptiveConfig::default()),
        Some(value) => value
            .cast::<PyAdaptiveConfig>()
            .map(|config| config.get().inner)
            .map_err(|_| super::extract::type_error("config", "an AdaptiveConfig", value)),
    }
}

/// Applies one named field onto `config`; the value is type-checked here and
/// range-checked later by `AdaptiveConfig::validate`.
fn set_field(config: &mut AdaptiveConfig, name: &str, value: &Bound<'_, PyAny>) -> PyResult<()> {
    match name {
        "capability_weight" => config.capability_weight = number(value, name)?,
        "success_rate_weight" => config.success_rate_weight = number(value, name)?,
        "latency_weight" => config.latency_weight = number(value, name)?,
        "min_acceptable_success_rate" => config.min_acceptable_success_rate = number(value, name)?,
        "max_acceptable_latency_ms" => config.max_acceptable_latency_ms = number(value, name)?,
        "min_requests_for_performance" => {
            config.min_requests_for_performance = count(value, name)?;
        }
        "low_success_rate_penalty" => config.low_success_rate_penalty = number(value, name)?,
        "high_latency_penalty" => config.high_latency_penalty = number(value, name)?,
        unknown => return Err(unknown_field(unknown).into()),
    }
    Ok(())
}

/// Builds from `(name, value)` pairs over the defaults, then validates.
fn build<'py>(
    pairs: impl IntoIterator<Item = (String, Bound<'py, PyAny>)>,
) -> PyResult<PyAdaptiveConfig> {
    let mut config = AdaptiveConfig::default();
    for (name, value) in pairs {
        set_field(&mut config, &name, &value)?;
    }
    config.validate()?;
    Ok(PyAdaptiveConfig { inner: config })
}

impl PyAdaptiveConfig {
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.inner;
        let dict = PyDict::new(py);
        dict.set_item("capability_weight", c.capability_weight)?;
        dict.set_item("success_rate_weight", c.success_rate_weight)?;
        dict.set_item("latency_weight", c.latency_weight)?;
        dict.set_item("min_acceptable_success_rate", c.min_acceptable_success_rate)?;
        dict.set_item("max_acceptable_latency_ms", c.max_acceptable_latency_ms)?;
        dict.set_item(
            "min_requests_for_performance",
            c.min_requests_for_performance,
        )?;
        dict.set_item("low_success_rate_penalty", c.low_success_rate_penalty)?;
        dict.set_item("high_latency_penalty", c.high_latency_penalty)?;
        Ok(dict)
    }
}

#[pymethods]
impl PyAdaptiveConfig {
    #[new]
    #[pyo3(signature = (
        *,
        capability_weight = None,
        success_rate_weight = None,
        latency_weight = None,
        min_acceptable_success_rate = None,
        max_acceptable_latency_ms = None,
        min_requests_for_performance = None,
        low_success_rate_penalty = None,
        high_latency_penalty = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new<'py>(
        capability_weight: Option<Bound<'py, PyAny>>,
        success_rate_weight: Option<Bound<'py, PyAny>>,
        latency_weight: Option<Bound<'py, PyAny>>,
        min_acceptable_success_rate: Option<Bound<'py, PyAny>>,
        max_acceptable_latency_ms: Option<Bound<'py, PyAny>>,
        min_requests_for_performance: Option<Bound<'py, PyAny>>,
        low_success_rate_penalty: Option<Bound<'py, PyAny>>,
        high_latency_penalty: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Self> {
        let given = [
            capability_weight,
            success_rate_weight,
            latency_weight,
            min_acceptable_success_rate,
            max_acceptable_latency_ms,
            min_requests_for_performance,
            low_success_rate_penalty,
            high_latency_penalty,
        ];
        // Omitted arguments keep their defaults: only the given ones are applied.
        build(
            FIELDS
                .iter()
                .zip(given)
                .filter_map(|(name, value)| value.map(|value| ((*name).to_owned(), value))),
        )
    }

    /// Builds a configuration from a mapping such as the one `to_dict()` returns.
    #[staticmethod]
    fn from_dict(data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let dict = data.cast::<PyDict>().map_err(|_| {
            PyTypeError::new_err(format!(
                "AdaptiveConfig.from_dict expects a dict, got {}: {}",
                data.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
                repr(data)
            ))
        })?;
        let mut pairs = Vec::with_capacity(dict.len());
        for (key, value) in dict.iter() {
            let name = key.cast::<pyo3::types::PyString>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "AdaptiveConfig.from_dict keys must be strings, got {}",
                    repr(&key)
                ))
            })?;
            pairs.push((
                utf8(name, "AdaptiveConfig.from_dict key")?.to_owned(),
                value,
            ));
        }
        build(pairs)
    }

    /// A copy with some fields changed, validated again.
    #[pyo3(signature = (**changes))]
    fn replace(&self, py: Python<'_>, changes: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let base = self.as_dict(py)?;
        if let Some(changes) = changes {
            for (key, value) in changes.iter() {
                let name = text(&key, "AdaptiveConfig.replace keyword")?;
                if !FIELDS.contains(&name) {
                    return Err(unknown_field(name).into());
                }
                base.set_item(name, value)?;
            }
        }
        Self::from_dict(base.as_any())
    }

    /// The fields as a plain, JSON-serialisable dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.as_dict(py)
    }

    #[getter]
    fn capability_weight(&self) -> f64 {
        self.inner.capability_weight
    }
    #[getter]
    fn success_rate_weight(&self) -> f64 {
        self.inner.success_rate_weight
    }
    #[getter]
    fn latency_weight(&self) -> f64 {
        self.inner.latency_weight
    }
    #[getter]
    fn min_acceptable_success_rate(&self) -> f64 {
        self.inner.min_acceptable_success_rate
    }
    #[getter]
    fn max_acceptable_latency_ms(&self) -> f64 {
        self.inner.max_acceptable_latency_ms
    }
    #[getter]
    fn min_requests_for_performance(&self) -> u64 {
        self.inner.min_requests_for_performance
    }
    #[getter]
    fn low_success_rate_penalty(&self) -> f64 {
        self.inner.low_success_rate_penalty
    }
    #[getter]
    fn high_latency_penalty(&self) -> f64 {
        self.inner.high_latency_penalty
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let dict = self.as_dict(py)?;
        let mut parts = Vec::with_capacity(FIELDS.len());
        for (key, value) in dict.iter() {
            parts.push(format!("{}={}", key, value.repr()?));
        }
        Ok(format!("AdaptiveConfig({})", parts.join(", ")))
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let c = &self.inner;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for value in [
            c.capability_weight,
            c.success_rate_weight,
            c.latency_weight,
            c.min_acceptable_success_rate,
            c.max_acceptable_latency_ms,
            c.low_success_rate_penalty,
            c.high_latency_penalty,
        ] {
            // `+ 0.0` folds -0.0 into 0.0, which compare equal and so must hash alike.
            (value + 0.0).to_bits().hash(&mut hasher);
        }
        c.min_requests_for_performance.hash(&mut hasher);
        hasher.finish()
    }

    /// Pickle support: rebuilt through the validating constructor.
    fn __getnewargs_ex__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let args = PyTuple::empty(py);
        let kwargs = self.as_dict(py)?;
        PyTuple::new(py, [args.into_any(), kwargs.into_any()])
    }
}
