//! `AdaptiveScorer` and `ScoreBreakdown`: the scoring API seen from Python.

use numpy::{Element, PyArrayDyn, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::arrays::{
    check_shapes, check_whole_counts, count_column, float_column, shape_repr, Column, CountColumn,
    RawColumns, RawOut,
};
use super::config::{adaptive_config_arg, PyAdaptiveConfig};
use super::extract::{count, flag, number};
use super::gil::{self, Cost};
use crate::errors::ZetaError;
use crate::scoring::{AdaptiveScorer, RequestCount, ScoreBreakdown};

/// Runs `$body` with `$column` bound to the request counts in whichever
/// element type they arrived (`i64` or `f64`), monomorphising the call.
macro_rules! with_counts {
    ($batch:expr, $column:ident => $body:expr) => {
        match &$batch.requests {
            CountColumn::Int($column) => $body,
            CountColumn::Float($column) => $body,
        }
    };
}

/// Scores routing candidates: capability blended with live performance.
#[pyclass(name = "AdaptiveScorer", module = "zeta_fast._core", frozen)]
pub struct PyAdaptiveScorer {
    inner: AdaptiveScorer,
}

/// Why a candidate scored what it did: the fields of a decision record.
#[pyclass(name = "ScoreBreakdown", module = "zeta_fast._core", frozen)]
#[derive(Clone)]
pub struct PyScoreBreakdown {
    inner: ScoreBreakdown,
    requests: u64,
}

/// The four inputs of a batch call, read and checked once.
struct Batch<'py> {
    capability: Column<'py, f64>,
    success_rate: Column<'py, f64>,
    avg_latency_ms: Column<'py, f64>,
    requests: CountColumn<'py>,
}

impl<'py> Batch<'py> {
    fn read(
        capability: &Bound<'py, PyAny>,
        success_rate: &Bound<'py, PyAny>,
        avg_latency_ms: &Bound<'py, PyAny>,
        requests: &Bound<'py, PyAny>,
    ) -> PyResult<Self> {
        let batch = Batch {
            capability: float_column(capability, "capability")?,
            success_rate: float_column(success_rate, "success_rate")?,
            avg_latency_ms: float_column(avg_latency_ms, "avg_latency_ms")?,
            requests: count_column(requests, "requests")?,
        };
        check_shapes(
            batch.capability.shape(),
            [
                ("success_rate", batch.success_rate.shape()),
                ("avg_latency_ms", batch.avg_latency_ms.shape()),
                ("requests", batch.requests.shape()),
            ],
        )?;
        if let CountColumn::Float(column) = &batch.requests {
            check_whole_counts(column, "requests").map_err(|err| batch.locate(err))?;
        }
        Ok(batch)
    }

    fn raw<R: Element>(&self, requests: &Column<'py, R>) -> RawColumns<R> {
        RawColumns {
            capability: self.capability.ptr(),
            success_rate: self.success_rate.ptr(),
            avg_latency_ms: self.avg_latency_ms.ptr(),
            requests: requests.ptr(),
            len: self.capability.len(),
        }
    }

    /// `(rows, columns)`: a 1-D batch is one row.
    fn grid(&self) -> (usize, usize) {
        match *self.capability.shape() {
            [rows, columns] => (rows, columns),
            _ => (1, self.capability.len()),
        }
    }

    fn require_ndim(&self, ndim: usize, expected: &'static str) -> Result<(), ZetaError> {
        let shape = self.capability.shape();
        if shape.len() == ndim {
            Ok(())
        } else {
            Err(ZetaError::InvalidShape {
                field: "capability",
                expected,
                got: format!("{}-D array of shape {}", shape.len(), shape_repr(shape)),
            })
        }
    }

    fn is_2d(&self) -> bool {
        self.capability.shape().len() == 2
    }

    /// Places a flat error position as `[row, column]` for 2-D batches.
    fn locate(&self, err: ZetaError) -> ZetaError {
        if self.is_2d() {
            err.in_grid(self.grid().1)
        } else {
            err
        }
    }
}

/// Scores all candidates into `out`; runs with or without the GIL.
fn score_all<R: RequestCount>(
    scorer: &AdaptiveScorer,
    raw: &RawColumns<R>,
    out: &mut RawOut<f64>,
) -> Result<(), ZetaError> {
    // SAFETY: `out` is the only handle on a fresh array of `raw.len` floats,
    // and the input arrays outlive this call (see `RawColumns`).
    let (out, (capability, success_rate, latency, requests)) =
        unsafe { (out.as_mut_slice(), raw.view(0, raw.len)) };
    scorer.score_into(capability, success_rate, latency, requests, out)
}

/// The best column of each row of a `rows x columns` batch, into `out`.
fn best_per_row<R: RequestCount>(
    scorer: &AdaptiveScorer,
    raw: &RawColumns<R>,
    columns: usize,
    out: &mut [i64],
) -> Result<(), ZetaError> {
    for (row, slot) in out.iter_mut().enumerate() {
        let start = row * columns;
        // SAFETY: `start + columns <= rows * columns == raw.len`.
        let (capability, success_rate, latency, requests) = unsafe { raw.view(start, columns) };
        let (index, _) = scorer
            .best(capability, success_rate, latency, requests)
            .map_err(|err| err.offset_by(start))?;
        *slot = index as i64;
    }
    Ok(())
}

impl PyAdaptiveScorer {
    fn score_many_typed<'py, R: RequestCount + Element>(
        &self,
        py: Python<'py>,
        batch: &Batch<'py>,
        requests: &Column<'py, R>,
        release_gil: Option<bool>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
        let raw = batch.raw(requests);
        // SAFETY: every element is written by `score_all` before the array is
        // returned; on error the array is dropped unseen.
        let out = unsafe { PyArrayDyn::<f64>::new(py, batch.capability.shape(), false) };
        let mut raw_out = RawOut {
            ptr: out.data(),
            len: raw.len,
        };
        let scorer = self.inner;
        let result = gil::run(py, Cost::Candidates(raw.len), release_gil, move || {
            score_all(&scorer, &raw, &mut raw_out)
        });
        result.map_err(|err| batch.locate(err))?;
        Ok(out)
    }

    fn best_typed<'py, R: RequestCount + Element>(
        &self,
        py: Python<'py>,
        batch: &Batch<'py>,
        requests: &Column<'py, R>,
    ) -> PyResult<usize> {
        let raw = batch.raw(requests);
        let scorer = self.inner;
        let mut index = [0_i64];
        let result = gil::run(py, Cost::Candidates(raw.len), None, || {
            best_per_row(&scorer, &raw, raw.len, &mut index)
        });
        result?;
        Ok(index[0] as usize)
    }

    fn best_per_row_typed<'py, R: RequestCount + Element>(
        &self,
        py: Python<'py>,
        batch: &Batch<'py>,
        requests: &Column<'py, R>,
    ) -> PyResult<Bound<'py, PyArrayDyn<i64>>> {
        let raw = batch.raw(requests);
        let (rows, columns) = batch.grid();
        if columns == 0 && rows > 0 {
            return Err(ZetaError::NoCandidates {
                operation: "best_per_row()",
            }
            .into());
        }
        let out = PyArrayDyn::<i64>::zeros(py, [rows].as_slice(), false);
        let mut raw_out = RawOut {
            ptr: out.data(),
            len: rows,
        };
        let scorer = self.inner;
        let result = gil::run(py, Cost::Candidates(raw.len), None, move || {
            // SAFETY: the only handle on a fresh array of `rows` ints.
            let slots = unsafe { raw_out.as_mut_slice() };
            best_per_row(&scorer, &raw, columns, slots)
        });
        result.map_err(|err| err.in_grid(columns))?;
        Ok(out)
    }
}

#[pymethods]
impl PyAdaptiveScorer {
    #[new]
    #[pyo3(signature = (config = None))]
    fn new(config: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let config = adaptive_config_arg(config)?;
        Ok(Self {
            inner: AdaptiveScorer::new(config)?,
        })
    }

    /// The configuration this scorer applies.
    #[getter]
    fn config(&self) -> PyAdaptiveConfig {
        PyAdaptiveConfig {
            inner: *self.inner.config(),
        }
    }

    /// Scores one candidate and explains the result.
    fn score(
        &self,
        capability: &Bound<'_, PyAny>,
        success_rate: &Bound<'_, PyAny>,
        avg_latency_ms: &Bound<'_, PyAny>,
        requests: &Bound<'_, PyAny>,
    ) -> PyResult<PyScoreBreakdown> {
        let capability = number(capability, "capability")?;
        let success_rate = number(success_rate, "success_rate")?;
        let avg_latency_ms = number(avg_latency_ms, "avg_latency_ms")?;
        let requests = count(requests, "requests")?;
        let inner = self
            .inner
            .score(capability, success_rate, avg_latency_ms, requests)?;
        Ok(PyScoreBreakdown { inner, requests })
    }

    /// Final scores of every candidate (1-D) or of every request's candidates (2-D).
    #[pyo3(signature = (capability, success_rate, avg_latency_ms, requests, *, release_gil = None))]
    fn score_many<'py>(
        &self,
        py: Python<'py>,
        capability: &Bound<'py, PyAny>,
        success_rate: &Bound<'py, PyAny>,
        avg_latency_ms: &Bound<'py, PyAny>,
        requests: &Bound<'py, PyAny>,
        release_gil: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
        let release_gil = release_gil
            .filter(|v| !v.is_none())
            .map(|v| flag(v, "release_gil"))
            .transpose()?;
        let batch = Batch::read(capability, success_rate, avg_latency_ms, requests)?;
        with_counts!(batch, column => self.score_many_typed(py, &batch, column, release_gil))
    }

    /// Index of the best of 1-D candidates; ties go to the lowest index.
    fn best<'py>(
        &self,
        py: Python<'py>,
        capability: &Bound<'py, PyAny>,
        success_rate: &Bound<'py, PyAny>,
        avg_latency_ms: &Bound<'py, PyAny>,
        requests: &Bound<'py, PyAny>,
    ) -> PyResult<usize> {
        let batch = Batch::read(capability, success_rate, avg_latency_ms, requests)?;
        batch.require_ndim(1, "a 1-D array of candidates (use best_per_row for 2-D)")?;
        with_counts!(batch, column => self.best_typed(py, &batch, column))
    }

    /// Index of the best candidate of each row of a 2-D batch.
    fn best_per_row<'py>(
        &self,
        py: Python<'py>,
        capability: &Bound<'py, PyAny>,
        success_rate: &Bound<'py, PyAny>,
        avg_latency_ms: &Bound<'py, PyAny>,
        requests: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArrayDyn<i64>>> {
        let batch = Batch::read(capability, success_rate, avg_latency_ms, requests)?;
        batch.require_ndim(2, "a 2-D (requests x candidates) array")?;
        with_counts!(batch, column => self.best_per_row_typed(py, &batch, column))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let config = Bound::new(py, self.config())?;
        Ok(format!("AdaptiveScorer({})", config.repr()?))
    }
}

impl PyScoreBreakdown {
    /// Wraps a core breakdown; its request count is integral by construction.
    pub fn new(inner: ScoreBreakdown) -> Self {
        Self {
            requests: inner.requests as u64,
            inner,
        }
    }
}

#[pymethods]
impl PyScoreBreakdown {
    #[getter]
    fn capability_score(&self) -> f64 {
        self.inner.capability_score
    }
    #[getter]
    fn performance_score(&self) -> f64 {
        self.inner.performance_score
    }
    #[getter]
    fn performance_adjustment(&self) -> f64 {
        self.inner.performance_adjustment()
    }
    #[getter]
    fn has_performance_data(&self) -> bool {
        self.inner.has_performance_data
    }
    #[getter]
    fn success_rate(&self) -> f64 {
        self.inner.success_rate
    }
    #[getter]
    fn avg_latency_ms(&self) -> f64 {
        self.inner.avg_latency_ms
    }
    #[getter]
    fn requests(&self) -> u64 {
        self.requests
    }
    #[getter]
    fn latency_score(&self) -> f64 {
        self.inner.latency_score
    }
    #[getter]
    fn blended_score(&self) -> f64 {
        self.inner.blended_score
    }
    #[getter]
    fn penalty_factor(&self) -> f64 {
        self.inner.penalty_factor
    }
    #[getter]
    fn penalties<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.inner.penalties.names())
    }

    /// The record as a JSON-serialisable dict (penalties as a list).
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let b = &self.inner;
        let dict = PyDict::new(py);
        put_score_fields(&dict, b)?;
        dict.set_item("requests", self.requests)?;
        dict.set_item("latency_score", b.latency_score)?;
        dict.set_item("blended_score", b.blended_score)?;
        dict.set_item("penalty_factor", b.penalty_factor)?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        let b = &self.inner;
        format!(
            "ScoreBreakdown(capability_score={:?}, performance_score={:?}, performance_adjustment={:?}, \
             has_performance_data={}, penalties={})",
            b.capability_score,
            b.performance_score,
            b.performance_adjustment(),
            if b.has_performance_data { "True" } else { "False" },
            python_tuple(&b.penalties.names()),
        )
    }
}

/// A tuple of strings as Python prints it: `()`, `('a',)`, `('a', 'b')`.
fn python_tuple(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("'{item}'")).collect();
    match quoted.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", quoted.join(", ")),
    }
}

/// The score fields every record of a score shows (a breakdown's
/// `to_dict`, a decision's): written once, so the two cannot drift apart.
pub(crate) fn put_score_fields(dict: &Bound<'_, PyDict>, b: &ScoreBreakdown) -> PyResult<()> {
    dict.set_item("capability_score", b.capability_score)?;
    dict.set_item("performance_score", b.performance_score)?;
    dict.set_item("performance_adjustment", b.performance_adjustment())?;
    dict.set_item("has_performance_data", b.has_performance_data)?;
    dict.set_item("success_rate", b.success_rate)?;
    dict.set_item("avg_latency_ms", b.avg_latency_ms)?;
    dict.set_item("penalties", b.penalties.names())?;
    Ok(())
}
