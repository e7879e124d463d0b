//! `profile()`'s native half: task type and complexity of a request text.

use std::sync::OnceLock;

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::ZetaError;
use crate::profile::{Profile, TaskModel, EMBEDDING, SHIPPED_WEIGHTS, TEXT_TASKS};

fn model() -> PyResult<&'static TaskModel> {
    static MODEL: OnceLock<Result<TaskModel, ZetaError>> = OnceLock::new();
    MODEL
        .get_or_init(|| TaskModel::from_bytes(SHIPPED_WEIGHTS))
        .as_ref()
        .map_err(|e| {
            ZetaError::Internal {
                what: format!("the shipped task model cannot be loaded: {e}"),
            }
            .into()
        })
}

/// What a request is (task type) and how hard it looks (complexity), with
/// the measurements behind both.
#[pyclass(name = "RequestProfile", module = "zeta_fast._core", frozen)]
pub struct PyRequestProfile {
    pub(crate) inner: Profile,
}

/// Profiles a text with the shipped model (the router's fast path).
pub(crate) fn profile_text(text: &str) -> PyResult<PyRequestProfile> {
    Ok(PyRequestProfile {
        inner: model()?.profile(text, 1, false),
    })
}

/// Profiles a text of `turns` messages, or an embedding request's input,
/// pushing its feature buckets to `buckets`.
pub(crate) fn profile_keeping_buckets(
    text: &str,
    turns: usize,
    embedding: bool,
    buckets: &mut Vec<u32>,
) -> PyResult<PyRequestProfile> {
    Ok(PyRequestProfile {
        inner: model()?.profile_keeping_buckets(text, turns, embedding, Some(buckets)),
    })
}

#[pymethods]
impl PyRequestProfile {
    /// `code`, `reasoning`, `chat`, `knowledge` or `embedding`.
    #[getter]
    fn task_type(&self) -> &'static str {
        self.inner
            .task
            .and_then(|t| TEXT_TASKS.get(t).copied())
            .unwrap_or(EMBEDDING)
    }

    /// 0 (trivial) ..= 1 (hard).
    #[getter]
    fn complexity(&self) -> f64 {
        self.inner.complexity
    }

    /// The classifier's probability for each text task type.
    #[getter]
    fn task_probabilities<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (name, p) in TEXT_TASKS.iter().zip(self.inner.probabilities) {
            dict.set_item(name, f64::from(p))?;
        }
        Ok(dict)
    }

    /// The measurements behind the profile.
    #[getter]
    fn features<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let f = &self.inner.features;
        let dict = PyDict::new(py);
        dict.set_item("chars", f.chars)?;
        dict.set_item("token_estimate", f.token_estimate)?;
        dict.set_item("lines", f.lines)?;
        dict.set_item("words", f.words)?;
        dict.set_item("code_lines", f.code_lines)?;
        dict.set_item("code_fences", f.code_fences)?;
        dict.set_item("math_markers", f.math_markers)?;
        dict.set_item("multi_step_cues", f.multi_step_cues)?;
        dict.set_item("constraint_cues", f.constraint_cues)?;
        dict.set_item("question_marks", f.question_marks)?;
        dict.set_item("turns", f.turns)?;
        Ok(dict)
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("task_type", self.task_type())?;
        dict.set_item("complexity", self.complexity())?;
        dict.set_item("task_probabilities", self.task_probabilities(py)?)?;
        dict.set_item("features", self.features(py)?)?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        format!(
            "RequestProfile(task_type='{}', complexity={})",
            self.task_type(),
            crate::errors::float_repr(self.inner.complexity)
        )
    }
}

/// Profiles a request text: the hot path behind `zeta_fast.profile`.
#[pyfunction]
#[pyo3(signature = (text, turns = 1, embedding = false))]
pub fn _profile_text(text: &str, turns: usize, embedding: bool) -> PyResult<PyRequestProfile> {
    Ok(PyRequestProfile {
        inner: model()?.profile(text, turns, embedding),
    })
}

/// The task classifier's features of a text, for training: its distinct
/// word-space and character-space buckets.
#[pyfunction]
pub fn _profile_features<'py>(
    py: Python<'py>,
    text: &str,
) -> (Bound<'py, PyArray1<u32>>, Bound<'py, PyArray1<u32>>) {
    let (words, chars) = crate::profile::task_features(text);
    (words.into_pyarray(py), chars.into_pyarray(py))
}
