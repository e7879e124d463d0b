//! The learned router's native half: local text features and the per-model
//! success predictor, shared with a router core when learning is on.

use std::path::PathBuf;
use std::sync::Arc;

use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::learned::{
    decode_indices, encode_indices, features, features_from_indices, OutcomePredictor,
    PredictorParams, SparseFeatures, COUNT_UNIT, LEARNED_STATE,
};
use crate::persistence;

use super::extract::type_error;
use super::gil::{self, Cost};
use crate::errors::ZetaError;

/// A sparse feature vector of a request (`FEATURE_DIM` long).
#[pyclass(name = "Features", module = "zeta_fast._core", frozen)]
pub struct PyFeatures {
    pub(crate) inner: Arc<SparseFeatures>,
}

#[pymethods]
impl PyFeatures {
    /// Indices of the non-zero entries (word buckets repeat per occurrence).
    #[getter]
    fn indices<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u32>> {
        self.inner.indices.clone().into_pyarray(py)
    }

    /// The entries' values.
    #[getter]
    fn values<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        self.inner.values.clone().into_pyarray(py)
    }

    fn __len__(&self) -> usize {
        self.inner.indices.len()
    }

    /// The indices, packed (`encode_indices`: sorted, as LEB128 gaps; the
    /// values follow from them), as the outcome log keeps them.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let mut packed = Vec::new();
        encode_indices(&self.inner.indices, &mut Vec::new(), &mut packed);
        PyBytes::new(py, &packed)
    }

    /// Rebuilds features from `to_bytes()` (or from an older log's plain
    /// little-endian u32 indices).
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Self> {
        Ok(Self {
            inner: Arc::new(features_from_indices(decode_indices(data)?)),
        })
    }

    fn __repr__(&self) -> String {
        format!("Features({} non-zero)", self.inner.indices.len())
    }
}

/// The features of a text with its categories (a subject, a task type).
#[pyfunction]
#[pyo3(signature = (text, categories = Vec::new()))]
pub fn _text_features(text: &str, categories: Vec<String>) -> PyFeatures {
    let categories: Vec<&str> = categories.iter().map(String::as_str).collect();
    PyFeatures {
        inner: Arc::new(features(text, &categories)),
    }
}

/// Per-model success predictors (see `zeta_fast.learning.OutcomePredictor`).
#[pyclass(name = "OutcomePredictor", module = "zeta_fast._core", frozen)]
pub struct PyOutcomePredictor {
    pub(crate) inner: Arc<OutcomePredictor>,
}

fn features_arg<'a>(value: &'a Bound<'_, PyAny>) -> PyResult<PyRef<'a, PyFeatures>> {
    value
        .cast::<PyFeatures>()
        .map_err(|_| type_error("features", "a Features (text_features())", value))
        .map(|f| f.borrow())
}

pub(crate) fn params_arg(params: Option<&Bound<'_, PyDict>>) -> PyResult<PredictorParams> {
    let mut out = PredictorParams::default();
    let Some(params) = params else {
        return Ok(out);
    };
    for (key, value) in params.iter() {
        let key: String = key.extract()?;
        let number: f64 = value
            .extract()
            .map_err(|_| type_error(&key, "a number", &value))?;
        match key.as_str() {
            "learning_rate" => out.learning_rate = number,
            "l2" => out.l2 = number,
            "prior_weight" => out.prior_weight = number,
            "prior_strength" => out.prior_strength = number,
            _ => {
                return Err(ZetaError::UnknownName {
                    field: "predictor parameter",
                    value: key,
                    known: "learning_rate, l2, prior_weight, prior_strength".to_owned(),
                }
                .into())
            }
        }
    }
    Ok(out)
}

#[pymethods]
impl PyOutcomePredictor {
    #[new]
    #[pyo3(signature = (models, params = None))]
    fn new(models: Vec<String>, params: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        Ok(Self {
            inner: Arc::new(OutcomePredictor::new(models, params_arg(params)?)?),
        })
    }

    #[getter]
    fn models(&self) -> Vec<String> {
        self.inner.models().to_vec()
    }

    /// `{learning_rate, l2, prior_weight, prior_strength}`.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let p = self.inner.params();
        let out = PyDict::new(py);
        out.set_item("learning_rate", p.learning_rate)?;
        out.set_item("l2", p.l2)?;
        out.set_item("prior_weight", p.prior_weight)?;
        out.set_item("prior_strength", p.prior_strength)?;
        Ok(out)
    }

    /// Requests learned so far.
    #[getter]
    fn updates(&self) -> u64 {
        self.inner.updates()
    }

    /// Outcomes learned per model, in `models` order.
    fn outcomes_seen(&self) -> Vec<u64> {
        (0..self.inner.models().len())
            .map(|m| self.inner.outcomes_seen(m))
            .collect()
    }

    /// Learns one request: `known` holds (model index, success) pairs;
    /// `weight` (in (0, 10]) scales the step and what the priors count.
    #[pyo3(signature = (features, known, category = None, learning_rate = None, weight = 1.0))]
    fn update(
        &self,
        features: &Bound<'_, PyAny>,
        known: Vec<(usize, bool)>,
        category: Option<&str>,
        learning_rate: Option<f64>,
        weight: f64,
    ) -> PyResult<()> {
        let features = features_arg(features)?;
        Ok(self
            .inner
            .update_weighted(&features.inner, &known, category, learning_rate, weight)?)
    }

    /// Learns one request from soft targets: `known` holds (model index,
    /// probability that its answer was good) pairs; `weight` as in `update`.
    #[pyo3(signature = (features, known, category = None, learning_rate = None, weight = 1.0))]
    fn update_targets(
        &self,
        features: &Bound<'_, PyAny>,
        known: Vec<(usize, f64)>,
        category: Option<&str>,
        learning_rate: Option<f64>,
        weight: f64,
    ) -> PyResult<()> {
        let features = features_arg(features)?;
        Ok(self
            .inner
            .update_targets(&features.inner, &known, category, learning_rate, weight)?)
    }

    /// P(success) per model from the text alone.
    fn predict<'py>(
        &self,
        py: Python<'py>,
        features: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let features = features_arg(features)?;
        Ok(self.inner.predict(&features.inner)?.into_pyarray(py))
    }

    /// The smoothed success rate per model in `category` (overall when None or new).
    #[pyo3(signature = (category = None))]
    fn prior<'py>(&self, py: Python<'py>, category: Option<&str>) -> Bound<'py, PyArray1<f64>> {
        (0..self.inner.models().len())
            .map(|m| self.inner.prior_one(category, m))
            .collect::<Vec<_>>()
            .into_pyarray(py)
    }

    /// Per model: predicted success plus the weighted category prior.
    #[pyo3(signature = (features, category = None))]
    fn utility<'py>(
        &self,
        py: Python<'py>,
        features: &Bound<'_, PyAny>,
        category: Option<&str>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let features = features_arg(features)?;
        let predictions = self.inner.predict(&features.inner)?;
        let weight = self.inner.params().prior_weight;
        Ok(predictions
            .iter()
            .enumerate()
            .map(|(m, p)| p + weight * self.inner.prior_one(category, m))
            .collect::<Vec<_>>()
            .into_pyarray(py))
    }

    /// The learned state (sparse weights and counts) as bytes.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.inner.to_bytes()?))
    }

    /// Averages the weights with other instances' `to_bytes()` states
    /// (federated averaging; counts stay this instance's own).
    fn average_with(&self, states: Vec<Vec<u8>>) -> PyResult<usize> {
        let decoded = states
            .iter()
            .map(|bytes| OutcomePredictor::decode_state(bytes))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.inner.average_with(&decoded)?)
    }

    /// Loads `to_bytes()` output, matching models by id.
    fn restore(&self, data: &[u8]) -> PyResult<()> {
        Ok(self.inner.restore_bytes(data)?)
    }

    /// Categories seen so far, with (successes, requests) per model, each
    /// verdict counted by its weight.
    fn categories(&self) -> Vec<(String, Vec<(f64, f64)>)> {
        let unit = COUNT_UNIT as f64;
        let state = self.inner.state();
        state
            .categories
            .into_iter()
            .map(|(name, per_model)| {
                let counts = per_model
                    .into_iter()
                    .map(|(_, (s, n))| (s as f64 / unit, n as f64 / unit))
                    .collect();
                (name, counts)
            })
            .collect()
    }
}

/// Writes a learned state (`to_bytes()` output) to `path` the way a snapshot
/// is written: atomically, the previous file kept as `path.prev`. Bytes that
/// would not load are refused (SnapshotError); a failed write is an OSError.
#[pyfunction]
pub fn _write_learned_state(py: Python<'_>, path: PathBuf, data: &[u8]) -> PyResult<()> {
    persistence::unframe(&LEARNED_STATE, data)?;
    gil::run(py, Cost::Blocking, None, || {
        persistence::write_atomic(&path, data)
    })
    .map_err(|err| {
        PyOSError::new_err(format!(
            "cannot write the learned state {}: {err}",
            path.display()
        ))
    })
}

/// A learned state's bytes, the file they came from, and why the newer file
/// was skipped.
type FoundState = (Py<PyBytes>, PathBuf, Option<String>);

/// The newest good learned state at `path` (else `path.prev`), as the
/// snapshot loader finds it: `(data, the file it came from, why the newer
/// file was skipped)`, None when neither exists, SnapshotError when neither
/// is usable or either is not a regular file.
#[pyfunction]
pub fn _read_learned_state(py: Python<'_>, path: PathBuf) -> PyResult<Option<FoundState>> {
    let found = gil::run(py, Cost::Blocking, None, || {
        persistence::load_newest(&path, &LEARNED_STATE, |bytes| {
            OutcomePredictor::decode_state(bytes).map(|_| bytes.to_vec())
        })
    })?;
    Ok(found.map(|loaded| {
        (
            PyBytes::new(py, &loaded.state).unbind(),
            loaded.path,
            loaded.fell_back_because,
        )
    }))
}
