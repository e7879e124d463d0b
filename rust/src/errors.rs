//! The one error type of the core: every variant names the field and the value.

use thiserror::Error;

/// Everything the core can reject. The bindings map each variant to a Python
/// exception in one exhaustive `match`, so a new variant must be mapped on purpose.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ZetaError {
    /// A configuration value is out of range or not finite.
    #[error("{field} must be {expected}, got {value}")]
    InvalidConfig {
        field: &'static str,
        expected: &'static str,
        value: String,
    },
    /// A per-candidate input is out of range or not finite.
    #[error("{field}{position} must be {expected}, got {value}")]
    InvalidInput {
        field: &'static str,
        position: Position,
        expected: &'static str,
        value: String,
    },
    /// One of the per-candidate inputs has a different length from `capability`.
    #[error(
        "{field} has {got} entries, expected {expected} (one per candidate, as in capability)"
    )]
    LengthMismatch {
        field: &'static str,
        expected: usize,
        got: usize,
    },
    /// Inputs that must have one shape (candidates, or requests x candidates) differ.
    #[error("{field} has shape {got}, expected {expected} (the shape of capability)")]
    ShapeMismatch {
        field: &'static str,
        expected: String,
        got: String,
    },
    /// An input has a dimensionality the operation does not take.
    #[error("{field} must be {expected}, got {got}")]
    InvalidShape {
        field: &'static str,
        expected: &'static str,
        got: String,
    },
    /// A decision was asked for over no candidates at all.
    #[error("{operation} needs at least one candidate, got none")]
    NoCandidates { operation: &'static str },
}

/// Where in the input a bad value sits, written after the field name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// A single value: nothing is written.
    Scalar,
    /// The n-th candidate of a flat batch: `[n]`.
    Flat(usize),
    /// Row and column of a requests x candidates batch: `[row, column]`.
    Grid(usize, usize),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Scalar => Ok(()),
            Position::Flat(index) => write!(f, "[{index}]"),
            Position::Grid(row, column) => write!(f, "[{row}, {column}]"),
        }
    }
}

impl ZetaError {
    /// Moves a flat position by `offset`, for errors found in a chunk of a batch.
    pub fn offset_by(self, offset: usize) -> Self {
        match self {
            ZetaError::InvalidInput {
                field,
                position: Position::Flat(index),
                expected,
                value,
            } => ZetaError::InvalidInput {
                field,
                position: Position::Flat(index + offset),
                expected,
                value,
            },
            other => other,
        }
    }

    /// Turns a flat position into `[row, column]` for a batch with `columns` candidates.
    pub fn in_grid(self, columns: usize) -> Self {
        match self {
            ZetaError::InvalidInput {
                field,
                position: Position::Flat(index),
                expected,
                value,
            } if columns > 0 => ZetaError::InvalidInput {
                field,
                position: Position::Grid(index / columns, index % columns),
                expected,
                value,
            },
            other => other,
        }
    }
}

/// Formats a float the way Python's `repr` would for the common cases, so error
/// messages read the same from both languages (`nan`, `inf`, `-inf`, `0.5`).
pub(crate) fn float_repr(value: f64) -> String {
    if value.is_nan() {
        "nan".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{value:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_field_and_value() {
        let err = ZetaError::InvalidConfig {
            field: "capability_weight",
            expected: "finite and >= 0",
            value: float_repr(f64::NAN),
        };
        assert_eq!(
            err.to_string(),
            "capability_weight must be finite and >= 0, got nan"
        );
        let err = ZetaError::InvalidInput {
            field: "success_rate",
            position: Position::Flat(3),
            expected: "in [0, 1]",
            value: float_repr(1.5),
        };
        assert_eq!(
            err.to_string(),
            "success_rate[3] must be in [0, 1], got 1.5"
        );
    }

    #[test]
    fn positions_move_with_chunks_and_grids() {
        let err = ZetaError::InvalidInput {
            field: "capability",
            position: Position::Flat(5),
            expected: "in [0, 100]",
            value: "nan".to_owned(),
        };
        assert_eq!(
            err.clone().offset_by(10).to_string(),
            "capability[15] must be in [0, 100], got nan"
        );
        assert_eq!(
            err.in_grid(4).to_string(),
            "capability[1, 1] must be in [0, 100], got nan"
        );
    }

    #[test]
    fn float_repr_matches_python_repr() {
        assert_eq!(float_repr(f64::INFINITY), "inf");
        assert_eq!(float_repr(f64::NEG_INFINITY), "-inf");
        assert_eq!(float_repr(500.0), "500.0");
        assert_eq!(float_repr(0.1), "0.1");
    }
}
