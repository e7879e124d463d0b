//! The task types and outcome kinds as Python enums: `Task` and
//! `OutcomeKind` name the values the core uses (`Task.CODE.value == "code"`),
//! and each outcome kind says whether it counts against a replica.

use pyo3::prelude::*;

use crate::outcome::{OutcomeKind, OUTCOME_KINDS};
use crate::routing::TASKS;

/// A task type a model can declare a capability for.
#[pyclass(name = "Task", module = "zeta_fast._core", eq, eq_int, frozen, hash)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PyTask {
    #[pyo3(name = "CODE")]
    Code,
    #[pyo3(name = "REASONING")]
    Reasoning,
    #[pyo3(name = "CHAT")]
    Chat,
    #[pyo3(name = "KNOWLEDGE")]
    Knowledge,
    #[pyo3(name = "EMBEDDING")]
    Embedding,
}

const TASK_ORDER: [PyTask; 5] = [
    PyTask::Code,
    PyTask::Reasoning,
    PyTask::Chat,
    PyTask::Knowledge,
    PyTask::Embedding,
];

#[pymethods]
impl PyTask {
    /// The name the configuration and decisions use (``"code"``, ...).
    #[getter]
    fn value(&self) -> &'static str {
        let index = TASK_ORDER.iter().position(|t| t == self).unwrap_or(0);
        TASKS.get(index).copied().unwrap_or("chat")
    }

    /// Every task type, in the core's order.
    #[staticmethod]
    fn members() -> Vec<PyTask> {
        TASK_ORDER.to_vec()
    }

    /// The task type named `value` (``"code"``, ...).
    #[staticmethod]
    fn parse(value: &str) -> PyResult<PyTask> {
        TASKS
            .iter()
            .position(|t| *t == value)
            .and_then(|i| TASK_ORDER.get(i).copied())
            .ok_or_else(|| {
                crate::errors::ZetaError::UnknownName {
                    field: "task",
                    value: value.to_owned(),
                    known: TASKS.join(", "),
                }
                .into()
            })
    }

    fn __str__(&self) -> &'static str {
        self.value()
    }
}

/// How a dispatched request ended.
#[pyclass(
    name = "OutcomeKind",
    module = "zeta_fast._core",
    eq,
    eq_int,
    frozen,
    hash
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PyOutcomeKind {
    #[pyo3(name = "SUCCESS")]
    Success,
    #[pyo3(name = "TIMEOUT")]
    Timeout,
    #[pyo3(name = "CONNECT")]
    Connect,
    #[pyo3(name = "RATE_LIMITED")]
    RateLimited,
    #[pyo3(name = "SERVER_ERROR")]
    ServerError,
    #[pyo3(name = "STREAM_CUT")]
    StreamCut,
    #[pyo3(name = "CONTEXT_LENGTH")]
    ContextLength,
    #[pyo3(name = "CLIENT_ERROR")]
    ClientError,
    #[pyo3(name = "UNSUPPORTED")]
    Unsupported,
    #[pyo3(name = "CANCELLED")]
    Cancelled,
    #[pyo3(name = "INTERNAL")]
    Internal,
    #[pyo3(name = "OTHER")]
    Other,
}

impl PyOutcomeKind {
    /// The core's kind: the entry of `OUTCOME_KINDS` at the same position
    /// (both lists are in counter order; a Python test checks every name).
    pub fn core(self) -> OutcomeKind {
        KIND_ORDER
            .iter()
            .position(|k| *k == self)
            .and_then(|i| OUTCOME_KINDS.get(i))
            .map_or(OutcomeKind::Other, |(kind, _)| *kind)
    }
}

const KIND_ORDER: [PyOutcomeKind; 12] = [
    PyOutcomeKind::Success,
    PyOutcomeKind::Timeout,
    PyOutcomeKind::Connect,
    PyOutcomeKind::RateLimited,
    PyOutcomeKind::ServerError,
    PyOutcomeKind::StreamCut,
    PyOutcomeKind::ContextLength,
    PyOutcomeKind::ClientError,
    PyOutcomeKind::Unsupported,
    PyOutcomeKind::Cancelled,
    PyOutcomeKind::Internal,
    PyOutcomeKind::Other,
];

#[pymethods]
impl PyOutcomeKind {
    /// The name metrics, logs and ``record_outcome`` use (``"server_error"``, ...).
    #[getter]
    fn value(&self) -> &'static str {
        KIND_ORDER
            .iter()
            .position(|k| k == self)
            .and_then(|i| OUTCOME_KINDS.get(i))
            .map_or("other", |(_, name)| *name)
    }

    /// Whether it counts against the replica (its window, breaker and
    /// health): false for successes and for the request's own faults.
    #[getter]
    fn is_replica_fault(&self) -> bool {
        self.core().is_replica_fault()
    }

    /// Every kind, in counter order.
    #[staticmethod]
    fn members() -> Vec<PyOutcomeKind> {
        KIND_ORDER.to_vec()
    }

    /// The kind named `value` (``"timeout"``, ...).
    #[staticmethod]
    fn parse(value: &str) -> PyResult<PyOutcomeKind> {
        Ok(from_name(value)?)
    }

    fn __str__(&self) -> &'static str {
        self.value()
    }
}

/// The kind named `value`, or an error listing the known names.
pub fn from_name(value: &str) -> Result<PyOutcomeKind, crate::errors::ZetaError> {
    OUTCOME_KINDS
        .iter()
        .position(|(_, name)| *name == value)
        .and_then(|i| KIND_ORDER.get(i).copied())
        .ok_or_else(|| crate::errors::ZetaError::UnknownName {
            field: "outcome kind",
            value: value.to_owned(),
            known: OUTCOME_KINDS
                .iter()
                .map(|(_, n)| *n)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// A `kind=` argument: an `OutcomeKind` or its name.
pub fn kind_arg(kind: &Bound<'_, PyAny>) -> PyResult<OutcomeKind> {
    if let Ok(kind) = kind.cast::<PyOutcomeKind>() {
        return Ok(kind.get().core());
    }
    let name: &str = kind
        .extract()
        .map_err(|_| super::extract::type_error("kind", "an OutcomeKind or its name", kind))?;
    Ok(from_name(name)?.core())
}
