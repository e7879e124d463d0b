//! Inputs of the batch calls: zero-copy views of NumPy arrays, lists read
//! directly, a converting slow path for everything else, and raw views that
//! can cross into code running without the GIL.

use numpy::npyffi::flags::{NPY_ARRAY_ALIGNED, NPY_ARRAY_C_CONTIGUOUS};
use numpy::{Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt, PyList, PyTuple};

use super::extract::{number, repr, type_error};
use crate::errors::{Position, ZetaError};
use crate::scoring::RequestCount;

/// One input, readable as a contiguous slice: a NumPy array borrowed in
/// place, or values copied out of a Python list or tuple.
pub enum Column<'py, T: Element> {
    /// A C-contiguous, aligned NumPy array of the right dtype.
    Array(Bound<'py, PyArrayDyn<T>>),
    /// A 1-D list or tuple of numbers, read into our own buffer.
    Owned { values: Vec<T>, shape: [usize; 1] },
}

impl<'py, T: Element> Column<'py, T> {
    pub fn shape(&self) -> &[usize] {
        match self {
            Column::Array(array) => array.shape(),
            Column::Owned { shape, .. } => shape,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Column::Array(array) => array.len(),
            Column::Owned { values, .. } => values.len(),
        }
    }

    /// Raw pointer to the first element; valid while `self` lives, because we
    /// hold a reference to the array (NumPy refuses to resize an array that
    /// is referenced elsewhere) or own the buffer.
    pub fn ptr(&self) -> *const T {
        match self {
            Column::Array(array) => array.data() as *const T,
            Column::Owned { values, .. } => values.as_ptr(),
        }
    }
}

fn is_direct<T: Element>(array: &Bound<'_, PyArrayDyn<T>>) -> bool {
    // SAFETY: reading the flags field of a live array object.
    let flags = unsafe { (*array.as_array_ptr()).fields.flags };
    flags & (NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED)
        == (NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED)
}

/// A float64 input: taken as it is when it already is a contiguous float64
/// array, converted with NumPy otherwise (lists, int arrays, strided views).
pub fn float_column<'py>(
    value: &Bound<'py, PyAny>,
    field: &'static str,
) -> PyResult<Column<'py, f64>> {
    if let Ok(array) = value.cast::<PyArrayDyn<f64>>() {
        if is_direct(array) {
            return Ok(Column::Array(array.clone()));
        }
    }
    // Lists are what most callers have for a handful of candidates: reading
    // them here avoids NumPy's conversion, ~1 us per input.
    if let Ok(list) = value.cast::<PyList>() {
        if let Some(column) = read_sequence(list.iter(), list.len(), field, value)? {
            return Ok(column);
        }
    } else if let Ok(tuple) = value.cast::<PyTuple>() {
        if let Some(column) = read_sequence(tuple.iter(), tuple.len(), field, value)? {
            return Ok(column);
        }
    }
    convert(value, field)
}

/// Reads a flat sequence of numbers; `None` when an item is itself a
/// sequence (a 2-D input), which NumPy then converts.
fn read_sequence<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    len: usize,
    field: &'static str,
    whole: &Bound<'py, PyAny>,
) -> PyResult<Option<Column<'py, f64>>> {
    let mut values = Vec::with_capacity(len);
    for (position, item) in items.enumerate() {
        if let Ok(float) = item.cast_exact::<PyFloat>() {
            values.push(float.value());
        } else if item.is_instance_of::<PyList>() || item.is_instance_of::<PyTuple>() {
            return Ok(None);
        } else if let Ok(int) = item.cast_exact::<PyInt>() {
            // An int too large for a float64 is a number, just out of range.
            let value = int.extract::<f64>().map_err(|_| ZetaError::InvalidInput {
                field,
                position: Position::Flat(position),
                expected: "a number within the float64 range",
                value: repr(&item),
            })?;
            values.push(value);
        } else {
            // NumPy scalars; booleans and complex numbers are refused.
            let value = number(&item, field)
                .map_err(|_| type_error(field, "an array of numbers", whole))?;
            values.push(value);
        }
    }
    let shape = [values.len()];
    Ok(Some(Column::Owned { values, shape }))
}

/// Request counts: int64 and float64 arrays are read as they are.
pub enum CountColumn<'py> {
    Float(Column<'py, f64>),
    Int(Column<'py, i64>),
}

impl CountColumn<'_> {
    pub fn shape(&self) -> &[usize] {
        match self {
            CountColumn::Float(column) => column.shape(),
            CountColumn::Int(column) => column.shape(),
        }
    }
}

pub fn count_column<'py>(
    value: &Bound<'py, PyAny>,
    field: &'static str,
) -> PyResult<CountColumn<'py>> {
    if let Ok(array) = value.cast::<PyArrayDyn<i64>>() {
        if is_direct(array) {
            return Ok(CountColumn::Int(Column::Array(array.clone())));
        }
    }
    float_column(value, field).map(CountColumn::Float)
}

/// Refuses a request count with a fraction (`10.5`), as `score()` does: a
/// float column is taken for whole counts only. NaN, infinities and negative
/// values are left to the core, which names them with their own rule.
pub fn check_whole_counts(column: &Column<'_, f64>, field: &'static str) -> Result<(), ZetaError> {
    let len = column.len();
    if len == 0 {
        return Ok(());
    }
    // SAFETY: read with the GIL held, before any Python code runs, from a
    // column that owns its buffer or holds a reference to its array.
    let values = unsafe { std::slice::from_raw_parts(column.ptr(), len) };
    // `&` over the column, no branch: the loop vectorises; positions are
    // looked for only once a fraction was seen.
    let all_whole = values.iter().fold(true, |all, &v| all & is_whole(v));
    if all_whole {
        return Ok(());
    }
    let (index, bad) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !is_whole(**v))
        .map_or((0, f64::NAN), |(i, v)| (i, *v));
    Err(ZetaError::InvalidInput {
        field,
        position: Position::Flat(index),
        expected: "a whole number >= 0",
        value: crate::errors::float_repr(bad),
    })
}

/// No fraction: every float from 2^52 up is whole, and below it adding and
/// taking away 2^52 rounds to the nearest integer (no call to `trunc`, so
/// the SSE2 baseline vectorises it). NaN and infinities count as whole here.
#[inline(always)]
fn is_whole(value: f64) -> bool {
    const TWO_52: f64 = 4_503_599_627_370_496.0;
    let magnitude = value.abs();
    magnitude.is_nan() | (magnitude >= TWO_52) | ((magnitude + TWO_52) - TWO_52 == magnitude)
}

#[cold]
fn convert<'py>(value: &Bound<'py, PyAny>, field: &'static str) -> PyResult<Column<'py, f64>> {
    let py = value.py();
    let numpy = py.import("numpy")?;
    let array = numpy
        .call_method1("asarray", (value,))
        .map_err(|_| type_error(field, "an array of numbers", value))?;
    let array = array
        .cast_into::<numpy::PyUntypedArray>()
        .map_err(|_| type_error(field, "an array of numbers", value))?;
    // Integers, unsigned integers and floats only: booleans, strings and
    // objects are a caller's mistake, not a number.
    let kind = array.dtype().kind();
    if !matches!(kind, b'i' | b'u' | b'f') {
        return Err(type_error(field, "an array of numbers", value));
    }
    // `asarray(order="C")`, not `ascontiguousarray`: the latter turns a 0-d
    // scalar into a 1-D array, hiding a shape error.
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("dtype", numpy.getattr("float64")?)?;
    kwargs.set_item("order", "C")?;
    let converted = numpy.call_method("asarray", (array,), Some(&kwargs))?;
    let array = converted
        .cast_into::<PyArrayDyn<f64>>()
        .map_err(|_| ZetaError::InvalidInput {
            field,
            position: Position::Scalar,
            expected: "readable as float64",
            value: repr(value),
        })?;
    Ok(Column::Array(array))
}

/// Checks that every input has the shape of `capability`, and that it is 1-D
/// (candidates) or 2-D (requests x candidates).
pub fn check_shapes(
    capability: &[usize],
    others: [(&'static str, &[usize]); 3],
) -> Result<(), ZetaError> {
    if !(1..=2).contains(&capability.len()) {
        return Err(ZetaError::InvalidShape {
            field: "capability",
            expected: "a 1-D (candidates) or 2-D (requests x candidates) array",
            got: format!(
                "{}-D array of shape {}",
                capability.len(),
                shape_repr(capability)
            ),
        });
    }
    for (field, shape) in others {
        if shape != capability {
            return Err(ZetaError::ShapeMismatch {
                field,
                expected: shape_repr(capability),
                got: shape_repr(shape),
            });
        }
    }
    Ok(())
}

/// A shape as Python prints it: `(8,)`, `(3, 8)`.
pub fn shape_repr(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Borrowed views on the four inputs, as raw pointers so they can cross into
/// a closure that runs without the GIL.
///
/// With the GIL released another Python thread may write an input array
/// while we read it. As in NumPy's own ufunc loops, which also release the
/// GIL over large arrays, we read in place rather than copy (a copy measured
/// 1.4-1.55x slower at every size): each element is loaded once into a local
/// that feeds both its validity check and its score, so a concurrent writer
/// yields some mix of old and new scores, never an unchecked value. Memory
/// stays valid because the calling frame holds references to every array,
/// and NumPy refuses to resize a referenced array.
pub struct RawColumns<R> {
    pub capability: *const f64,
    pub success_rate: *const f64,
    pub avg_latency_ms: *const f64,
    pub requests: *const R,
    pub len: usize,
}

// SAFETY: the pointers stay valid for the duration of the call that built the
// struct (see above), and all access goes through `view`, which only reads.
unsafe impl<R> Send for RawColumns<R> {}
unsafe impl<R> Sync for RawColumns<R> {}

impl<R: RequestCount> RawColumns<R> {
    /// The inputs `start..start + count` as slices.
    ///
    /// # Safety
    /// `start + count <= self.len`, and the arrays outlive the slices.
    pub unsafe fn view(&self, start: usize, count: usize) -> (&[f64], &[f64], &[f64], &[R]) {
        if count == 0 {
            return (&[], &[], &[], &[]);
        }
        // SAFETY: see the function's contract.
        unsafe {
            (
                std::slice::from_raw_parts(self.capability.add(start), count),
                std::slice::from_raw_parts(self.success_rate.add(start), count),
                std::slice::from_raw_parts(self.avg_latency_ms.add(start), count),
                std::slice::from_raw_parts(self.requests.add(start), count),
            )
        }
    }
}

/// A mutable output buffer that a detached closure may write.
pub struct RawOut<T> {
    pub ptr: *mut T,
    pub len: usize,
}

// SAFETY: the output array is freshly allocated by the call and not yet
// visible to any Python code, so this closure is its only user.
unsafe impl<T> Send for RawOut<T> {}

impl<T> RawOut<T> {
    /// The whole buffer as a slice.
    ///
    /// # Safety
    /// Only one `RawOut` per array, and it does not outlive the array.
    pub unsafe fn as_mut_slice(&mut self) -> &mut [T] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: see the function's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}
