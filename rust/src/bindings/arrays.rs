//! NumPy inputs for the batch calls: zero-copy views on the fast path, a
//! converting slow path for everything else, and chunked snapshots when the
//! GIL is released.

use numpy::npyffi::flags::{NPY_ARRAY_ALIGNED, NPY_ARRAY_C_CONTIGUOUS};
use numpy::{Element, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;

use super::errors::InvalidInputError;
use super::extract::{repr, type_error};
use crate::errors::ZetaError;
use crate::scoring::RequestCount;

/// Batches of at least this many scores release the GIL while they are scored.
///
/// Releasing costs a save/restore of the thread state plus, for safety, a
/// chunked snapshot of the inputs (see [`RawColumns`]). Measured with
/// `pytest benches/bench_gil.py` on the 2-core dev machine: scoring itself
/// runs at ~1.3-1.8 ns per candidate, releasing adds a fixed ~0.3-1 us, so at
/// 16k candidates (~25 us of work) the release costs under 5 % while other
/// Python threads get to run for the whole batch.
pub const GIL_RELEASE_MIN_CANDIDATES: usize = 16_384;

/// Candidates copied per chunk in the released path: four inputs of 1024
/// floats fill 32 KiB, which stays in L1 on any current x86 or ARM core.
pub const SNAPSHOT_CHUNK: usize = 1024;

/// A C-contiguous, aligned NumPy array this call can read directly.
pub struct Column<'py, T: Element> {
    array: Bound<'py, PyArrayDyn<T>>,
}

impl<'py, T: Element> Column<'py, T> {
    pub fn shape(&self) -> &[usize] {
        self.array.shape()
    }

    pub fn len(&self) -> usize {
        self.array.len()
    }

    /// Raw pointer to the first element; valid while `self` lives, because we
    /// hold a reference to the array and NumPy refuses to resize an array
    /// that is referenced elsewhere.
    pub fn ptr(&self) -> *const T {
        self.array.data() as *const T
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
            return Ok(Column {
                array: array.clone(),
            });
        }
    }
    convert(value, field)
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
            return Ok(CountColumn::Int(Column {
                array: array.clone(),
            }));
        }
    }
    float_column(value, field).map(CountColumn::Float)
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
    let array = converted.cast_into::<PyArrayDyn<f64>>().map_err(|_| {
        InvalidInputError::new_err(format!(
            "{field} could not be read as float64: {}",
            repr(value)
        ))
    })?;
    Ok(Column { array })
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
pub struct RawColumns<R> {
    pub capability: *const f64,
    pub success_rate: *const f64,
    pub avg_latency_ms: *const f64,
    pub requests: *const R,
    pub len: usize,
}

// SAFETY: the pointers stay valid for the duration of the call that built the
// struct (the arrays are referenced by its frame), and all access goes
// through `snapshot`, which only reads.
unsafe impl<R> Send for RawColumns<R> {}
unsafe impl<R> Sync for RawColumns<R> {}

/// A private copy of one chunk of each input.
pub struct Snapshot<R> {
    pub capability: Vec<f64>,
    pub success_rate: Vec<f64>,
    pub avg_latency_ms: Vec<f64>,
    pub requests: Vec<R>,
}

impl<R: RequestCount + Default> Snapshot<R> {
    pub fn with_capacity(len: usize) -> Self {
        Self {
            capability: Vec::with_capacity(len),
            success_rate: Vec::with_capacity(len),
            avg_latency_ms: Vec::with_capacity(len),
            requests: Vec::with_capacity(len),
        }
    }
}

impl<R: RequestCount> RawColumns<R> {
    /// The inputs `start..start + count` read in place.
    ///
    /// # Safety
    /// `start + count <= self.len`, the arrays are alive, and the caller holds
    /// the GIL without running Python code for as long as the slices live.
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

    /// Copies candidates `start..start + count` into `into`.
    ///
    /// With the GIL released another Python thread may write the arrays while
    /// we read. Copying each chunk once means every value is read exactly
    /// once, so validation and scoring see the same number; the result for
    /// a concurrently written array is then some mix of old and new values,
    /// never a torn read of memory we do not own.
    ///
    /// # Safety
    /// `start + count <= self.len` and the arrays are alive.
    pub unsafe fn snapshot(&self, start: usize, count: usize, into: &mut Snapshot<R>) {
        // SAFETY: bounds are the caller's contract; the pointers are valid for `len`.
        unsafe {
            copy_range(self.capability, start, count, &mut into.capability);
            copy_range(self.success_rate, start, count, &mut into.success_rate);
            copy_range(self.avg_latency_ms, start, count, &mut into.avg_latency_ms);
            copy_range(self.requests, start, count, &mut into.requests);
        }
    }
}

unsafe fn copy_range<T: Copy>(source: *const T, start: usize, count: usize, into: &mut Vec<T>) {
    into.clear();
    into.reserve(count);
    // SAFETY: `source + start .. + count` is in bounds (caller) and `into` has
    // capacity for `count` elements; `set_len` follows the full copy.
    unsafe {
        std::ptr::copy_nonoverlapping(source.add(start), into.as_mut_ptr(), count);
        into.set_len(count);
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
