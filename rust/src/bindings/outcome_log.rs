//! `OutcomeLogWriter`: the outcome log's Rust writer as Python holds it
//! (`zeta_fast.OutcomeLog` is the facade, with the readers). A router's
//! core appends to it itself (`RouterCore.log_outcomes`), so the request
//! path makes no Python call for the log.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;

use super::extract::type_error;
use super::router::PyDecision;
use crate::errors::{float_repr, Position, ZetaError};
use crate::outcome::OutcomeKind;
use crate::outcome_log::LoggedOutcome;
use crate::outcome_log::{LogSettings, Notice, OutcomeLog};

/// The writer of an outcome log (SQLite), with its own thread.
#[pyclass(name = "OutcomeLogWriter", module = "zeta_fast._core", frozen)]
pub struct PyOutcomeLogWriter {
    pub(crate) inner: Arc<OutcomeLog>,
}

fn seconds(field: &'static str, value: f64) -> Result<Duration, ZetaError> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| ZetaError::InvalidInput {
            field,
            position: Position::Scalar,
            expected: "a number of seconds > 0",
            value: float_repr(value),
        })
}

/// Trouble is told to Python's logging (`zeta_fast.outcome_log`), once per
/// kind; nothing when the interpreter is gone (shutting down).
fn python_logging() -> Notice {
    Box::new(|message: &str| {
        let _ = Python::try_attach(|py| -> PyResult<()> {
            py.import("logging")?
                .call_method1("getLogger", ("zeta_fast.outcome_log",))?
                .call_method1("warning", ("%s", message))?;
            Ok(())
        });
    })
}

/// The name an outcome is logged under: an `OutcomeKind`'s, or `feedback`.
pub(crate) fn outcome_name(name: &str) -> Result<&'static str, ZetaError> {
    if name == "feedback" {
        return Ok("feedback");
    }
    OutcomeKind::parse(name)
        .map(OutcomeKind::name)
        .ok_or_else(|| ZetaError::UnknownName {
            field: "outcome",
            value: name.to_owned(),
            known: "an OutcomeKind's value or feedback".to_owned(),
        })
}

#[pymethods]
impl PyOutcomeLogWriter {
    #[new]
    #[pyo3(signature = (path, *, costs = HashMap::new(), max_pending = 100_000, flush_interval_s = 0.2, retention_days = Some(30.0), prune_every_s = 600.0))]
    fn new(
        path: PathBuf,
        costs: HashMap<String, f64>,
        max_pending: usize,
        flush_interval_s: f64,
        retention_days: Option<f64>,
        prune_every_s: f64,
    ) -> PyResult<Self> {
        let settings = LogSettings {
            path,
            costs,
            max_pending,
            flush_interval: seconds("flush_interval_s", flush_interval_s)?,
            retention_days,
            prune_every: seconds("prune_every_s", prune_every_s)?,
        };
        Ok(Self {
            inner: Arc::new(OutcomeLog::start(settings, python_logging())?),
        })
    }

    /// Queues one outcome of `decision`; False (counted in ``dropped``)
    /// when the queue is full or the log closed. Never waits.
    #[pyo3(signature = (decision, outcome, latency_ms, *, ttft_ms = None, prompt_tokens = 0, completion_tokens = 0, learned = None, request_id = None))]
    #[allow(clippy::too_many_arguments)]
    fn append(
        &self,
        decision: &Bound<'_, PyAny>,
        outcome: &str,
        latency_ms: f64,
        ttft_ms: Option<f64>,
        prompt_tokens: u64,
        completion_tokens: u64,
        learned: Option<bool>,
        request_id: Option<String>,
    ) -> PyResult<bool> {
        let py = decision.py();
        let decision = decision
            .cast::<PyDecision>()
            .map_err(|_| type_error("decision", "a Decision from route()", decision))?
            .get();
        let logged = LoggedOutcome {
            outcome: outcome_name(outcome)?,
            latency_ms,
            ttft_ms,
            prompt_tokens,
            completion_tokens,
            learned,
            request_id,
            source: None,
            verdict: None,
            confidence: None,
            detail: None,
        };
        let row = decision.log_row(py, logged);
        Ok(self.inner.append(row))
    }

    /// Waits (without the GIL) until what is queued is written; True when
    /// nothing was left unwritten within ``timeout_s``.
    #[pyo3(signature = (timeout_s = 10.0))]
    fn flush(&self, py: Python<'_>, timeout_s: f64) -> PyResult<bool> {
        let timeout = seconds("timeout_s", timeout_s)?;
        let log = Arc::clone(&self.inner);
        Ok(py.detach(move || log.flush(timeout)))
    }

    /// Writes what is queued (up to ``timeout_s``) and stops; what could
    /// not be written is counted in ``dropped``. Idempotent.
    #[pyo3(signature = (timeout_s = 10.0))]
    fn close(&self, py: Python<'_>, timeout_s: f64) -> PyResult<()> {
        let timeout = seconds("timeout_s", timeout_s)?;
        let log = Arc::clone(&self.inner);
        py.detach(move || log.close(timeout));
        Ok(())
    }

    /// Rows written to the database.
    #[getter]
    fn written(&self) -> u64 {
        self.inner.written()
    }

    /// Rows not logged (the queue was full, or the log closed first).
    #[getter]
    fn dropped(&self) -> u64 {
        self.inner.dropped()
    }

    /// Rows queued or held for a retry, not yet written.
    #[getter]
    fn pending(&self) -> usize {
        self.inner.pending()
    }

    /// The last trouble the writer met (it keeps going), or None.
    #[getter]
    fn last_error(&self) -> Option<String> {
        self.inner.last_error()
    }
}
