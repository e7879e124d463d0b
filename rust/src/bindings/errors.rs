//! One translation from core errors to Python exceptions.

use pyo3::exceptions::{PyIndexError, PyRuntimeError};
use pyo3::PyErr;

use crate::errors::ZetaError;

// The exception classes are declared once, in Python (`zeta_fast.exceptions`),
// so they can subclass both the package's base error and `ValueError`.
pyo3::import_exception!(zeta_fast.exceptions, ConfigError);
pyo3::import_exception!(zeta_fast.exceptions, InvalidInputError);
pyo3::import_exception!(zeta_fast.exceptions, NoCandidatesError);
pyo3::import_exception!(zeta_fast.exceptions, SnapshotError);
pyo3::import_exception!(zeta_fast.exceptions, UnsupportedRequestError);

/// Lets `?` turn a core error into the matching Python exception.
impl From<ZetaError> for PyErr {
    fn from(err: ZetaError) -> PyErr {
        let message = err.to_string();
        // No `_ =>` arm: a new variant must be mapped on purpose.
        match err {
            ZetaError::InvalidConfig { .. }
            | ZetaError::InvalidConfigEntry { .. }
            | ZetaError::UnknownSetting { .. }
            | ZetaError::UnknownField { .. } => ConfigError::new_err(message),
            ZetaError::InvalidInput { .. }
            | ZetaError::LengthMismatch { .. }
            | ZetaError::EntryCountMismatch { .. }
            | ZetaError::ShapeMismatch { .. }
            | ZetaError::InvalidShape { .. } => InvalidInputError::new_err(message),
            ZetaError::NoCandidates { .. } | ZetaError::Saturated { .. } => {
                NoCandidatesError::new_err(message)
            }
            ZetaError::Snapshot { .. } => SnapshotError::new_err(message),
            ZetaError::InvalidName { .. } => InvalidInputError::new_err(message),
            ZetaError::Unsupported { .. } => UnsupportedRequestError::new_err(message),
            ZetaError::UnknownName { .. }
            | ZetaError::AlreadyRecorded { .. }
            | ZetaError::ForeignDecision
            | ZetaError::NotEnabled { .. }
            | ZetaError::TooDeep { .. }
            | ZetaError::Closed { .. } => InvalidInputError::new_err(message),
            // Python's own classes: an index past the end is an IndexError,
            // and a broken invariant (a poisoned lock) is no bad value.
            ZetaError::IndexOutOfRange { .. } => PyIndexError::new_err(message),
            ZetaError::Internal { .. } => PyRuntimeError::new_err(message),
        }
    }
}
