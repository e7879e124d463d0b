//! Arguments from Python, with errors that name the field and the value.
//!
//! Every extraction tries the common type first (an exact `float`, `int`,
//! `bool` or `str`: one pointer comparison) and only looks closer when that
//! fails, so a bad value costs a careful check and a good one costs nothing
//! more than PyO3's own conversion (which names no field).

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyComplex, PyFloat, PyInt, PyString};

use super::errors::InvalidInputError;

/// A real number: `float`, `int` or anything with `__float__` (NumPy float
/// and int scalars). Booleans (Python's and NumPy's) and complex numbers are
/// refused: `True` as a latency is a bug, and `1+0j` is not on the real line.
#[inline]
pub fn number(value: &Bound<'_, PyAny>, field: &str) -> PyResult<f64> {
    // `float` and its subclasses (NumPy's float64) cannot be a bool or complex.
    if let Ok(float) = value.cast::<PyFloat>() {
        return Ok(float.value());
    }
    if let Ok(int) = value.cast_exact::<PyInt>() {
        return int.extract::<f64>().map_err(|_| beyond_float(field, value));
    }
    number_slow(value, field)
}

/// `InvalidInputError`: an integer too large for a float64.
#[cold]
pub fn beyond_float(field: &str, value: &Bound<'_, PyAny>) -> PyErr {
    InvalidInputError::new_err(format!(
        "{field} must be a number within the float64 range, got {}",
        repr(value)
    ))
}

#[cold]
fn number_slow(value: &Bound<'_, PyAny>, field: &str) -> PyResult<f64> {
    if value.is_instance_of::<PyBool>()
        || value.is_instance_of::<PyComplex>()
        || matches!(numpy_kind(value), Some(b'b' | b'c'))
    {
        return Err(type_error(field, "a number", value));
    }
    value
        .extract::<f64>()
        .map_err(|_| type_error(field, "a number", value))
}

/// `number`, or `None` when the argument was not given (or is `None`).
pub fn opt_number(value: Option<&Bound<'_, PyAny>>, field: &str) -> PyResult<Option<f64>> {
    value
        .filter(|v| !v.is_none())
        .map(|v| number(v, field))
        .transpose()
}

/// The dtype kind (`b`ool, `c`omplex, `f`loat, `i`nt...) of a NumPy scalar or
/// array; `None` for anything without a dtype.
fn numpy_kind(value: &Bound<'_, PyAny>) -> Option<u8> {
    let py = value.py();
    let kind = value
        .getattr(intern!(py, "dtype"))
        .ok()?
        .getattr(intern!(py, "kind"))
        .ok()?;
    kind.cast::<PyString>().ok()?.to_str().ok()?.bytes().next()
}

/// A non-negative integer count. Floats are refused even when integral, so
/// that a rate passed where a count belongs is caught; so are booleans.
#[inline]
pub fn count(value: &Bound<'_, PyAny>, field: &str) -> PyResult<u64> {
    if let Ok(int) = value.cast_exact::<PyInt>() {
        if let Ok(count) = int.extract::<u64>() {
            return Ok(count);
        }
    }
    count_slow(value, field)
}

#[cold]
fn count_slow(value: &Bound<'_, PyAny>, field: &str) -> PyResult<u64> {
    if value.is_instance_of::<PyBool>() || value.is_instance_of::<PyFloat>() {
        return Err(type_error(field, "an integer", value));
    }
    let is_int = value.is_instance_of::<PyInt>() || value.hasattr("__index__").unwrap_or(false);
    if !is_int {
        return Err(type_error(field, "an integer", value));
    }
    value
        .extract::<u64>()
        .map_err(|_| out_of_range(field, value, u64::MAX))
}

/// A count that fits in a `u32` (tokens waiting, a retry number, a bit mask).
#[inline]
pub fn count_u32(value: &Bound<'_, PyAny>, field: &str) -> PyResult<u32> {
    let count = count(value, field)?;
    u32::try_from(count).map_err(|_| out_of_range(field, value, u64::from(u32::MAX)))
}

/// A position in a collection (a replica's index).
#[inline]
pub fn index(value: &Bound<'_, PyAny>, field: &str) -> PyResult<usize> {
    let count = count(value, field)?;
    usize::try_from(count).map_err(|_| out_of_range(field, value, usize::MAX as u64))
}

/// `count`, `count_u32`, `number`, ... with a default when the argument was
/// not given (or is `None`).
pub fn or_default<T>(
    value: Option<&Bound<'_, PyAny>>,
    default: T,
    field: &str,
    extract: fn(&Bound<'_, PyAny>, &str) -> PyResult<T>,
) -> PyResult<T> {
    match value.filter(|v| !v.is_none()) {
        Some(value) => extract(value, field),
        None => Ok(default),
    }
}

/// `InvalidInputError("{field} must be an integer >= 0, got -1")`, or
/// `"... at most {max}, got ..."` when it is too large.
#[cold]
fn out_of_range(field: &str, value: &Bound<'_, PyAny>, max: u64) -> PyErr {
    let negative = value.lt(0).unwrap_or(false);
    let bound = if negative {
        ">= 0".to_owned()
    } else {
        format!("at most {max}")
    };
    InvalidInputError::new_err(format!(
        "{field} must be an integer {bound}, got {}",
        repr(value)
    ))
}

/// A `bool` (or NumPy's `bool_`); integers are refused, `1` is not `True`.
#[inline]
pub fn flag(value: &Bound<'_, PyAny>, field: &str) -> PyResult<bool> {
    if let Ok(flag) = value.cast_exact::<PyBool>() {
        return Ok(flag.is_true());
    }
    flag_slow(value, field)
}

#[cold]
fn flag_slow(value: &Bound<'_, PyAny>, field: &str) -> PyResult<bool> {
    // NumPy's bool_ converts through __bool__; a 0-d bool array is one too.
    let is_numpy_bool = numpy_kind(value) == Some(b'b')
        && value
            .getattr(intern!(value.py(), "ndim"))
            .is_ok_and(|ndim| ndim.extract::<usize>().is_ok_and(|n| n == 0));
    if is_numpy_bool {
        return value.is_truthy();
    }
    Err(type_error(field, "a bool", value))
}

/// A `str` argument as UTF-8: `TypeError` naming the field for another
/// type, `InvalidInputError` for a string with lone surrogates.
#[inline]
pub fn text<'a>(value: &'a Bound<'_, PyAny>, field: &str) -> PyResult<&'a str> {
    let string = value
        .cast::<PyString>()
        .map_err(|_| type_error(field, "a str", value))?;
    utf8(string, field)
}

/// `text`, or `None` when the argument was not given (or is `None`).
#[inline]
pub fn opt_text<'a>(value: Option<&'a Bound<'_, PyAny>>, field: &str) -> PyResult<Option<&'a str>> {
    match value {
        Some(value) if !value.is_none() => text(value, field).map(Some),
        _ => Ok(None),
    }
}

/// A Python string as UTF-8; lone surrogates (`"\ud800"`) cannot be.
#[inline]
pub fn utf8<'a>(string: &'a Bound<'_, PyString>, field: &str) -> PyResult<&'a str> {
    string
        .to_str()
        .map_err(|_| not_utf8(field, string.as_any()))
}

/// `utf8` for a field whose name is built only when it is needed (an item's
/// position), so that good text costs no allocation.
#[inline]
pub fn utf8_with<'a>(
    string: &'a Bound<'_, PyString>,
    field: impl FnOnce() -> String,
) -> PyResult<&'a str> {
    string
        .to_str()
        .map_err(|_| not_utf8(&field(), string.as_any()))
}

#[cold]
fn not_utf8(field: &str, value: &Bound<'_, PyAny>) -> PyErr {
    InvalidInputError::new_err(format!(
        "{field} must be valid UTF-8 text (no lone surrogates), got {}",
        repr(value)
    ))
}

/// A list (or any iterable but a `str`) of strings, each checked as `text`.
pub fn texts(value: &Bound<'_, PyAny>, field: &str) -> PyResult<Vec<String>> {
    let expected = "a list of str";
    if value.is_instance_of::<PyString>() {
        return Err(type_error(field, expected, value));
    }
    let items = value
        .try_iter()
        .map_err(|_| type_error(field, expected, value))?;
    let mut out = Vec::new();
    for (position, item) in items.enumerate() {
        out.push(text(&item?, &format!("{field}[{position}]"))?.to_owned());
    }
    Ok(out)
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
        .map(|r| r.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "<unprintable>".to_owned());
    if text.chars().count() > MAX_CHARS {
        let cut: String = text.chars().take(MAX_CHARS).collect();
        format!("{cut}...")
    } else {
        text
    }
}
