//! Scalar arguments from Python, with errors that name the field and the value.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt};

/// A real number: `float`, `int` or anything with `__float__` (NumPy scalars).
/// Booleans are refused: `True` as a latency is a bug, not a value.
pub fn number(value: &Bound<'_, PyAny>, field: &str) -> PyResult<f64> {
    if let Ok(float) = value.cast_exact::<PyFloat>() {
        return Ok(float.value());
    }
    if value.is_instance_of::<PyBool>() {
        return Err(type_error(field, "a number", value));
    }
    value
        .extract::<f64>()
        .map_err(|_| type_error(field, "a number", value))
}

/// A non-negative integer count. Floats are refused even when integral, so
/// that a rate passed where a count belongs is caught.
pub fn count(value: &Bound<'_, PyAny>, field: &str) -> PyResult<u64> {
    if value.is_instance_of::<PyBool>() || value.is_instance_of::<PyFloat>() {
        return Err(type_error(field, "an integer", value));
    }
    let is_int = value.is_instance_of::<PyInt>() || value.hasattr("__index__").unwrap_or(false);
    if !is_int {
        return Err(type_error(field, "an integer", value));
    }
    match value.extract::<u64>() {
        Ok(count) => Ok(count),
        Err(_) => Err(PyValueError::new_err(format!(
            "{field} must be an integer >= 0, got {}",
            repr(value)
        ))),
    }
}

/// `TypeError("{field} must be {expected}, got {type}: {repr}")`.
pub fn type_error(field: &str, expected: &str, value: &Bound<'_, PyAny>) -> PyErr {
    let type_name = value
        .get_type()
        .name()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "?".to_owned());
    PyTypeError::new_err(format!(
        "{field} must be {expected}, got {type_name}: {}",
        repr(value)
    ))
}

/// `repr(value)`, cut short so one huge argument cannot flood a log line.
pub fn repr(value: &Bound<'_, PyAny>) -> String {
    const MAX_CHARS: usize = 80;
    let text = value
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "<unprintable>".to_owned());
    if text.chars().count() > MAX_CHARS {
        let cut: String = text.chars().take(MAX_CHARS).collect();
        format!("{cut}...")
    } else {
        text
    }
}
