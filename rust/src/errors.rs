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
    /// A persisted snapshot cannot be used.
    #[error("snapshot unusable: {reason}")]
    Snapshot { reason: String },
    /// A name (model, replica, task) is empty or unknown.
    #[error("{field} {problem}: {value:?}")]
    InvalidName {
        field: &'static str,
        problem: &'static str,
        value: String,
    },
    /// A decision was asked for over no candidates at all.
    #[error("{operation} needs at least one candidate, got none")]
    NoCandidates { operation: &'static str },
    /// No model (or not the named one) serves a kind of request this one is.
    #[error("{who} requests with {features}")]
    Unsupported { who: String, features: String },
    /// A name (model, replica, context, policy) that is not one of the known ones.
    #[error("unknown {field} {value:?}; known: {known}")]
    UnknownName {
        field: &'static str,
        value: String,
        known: String,
    },
    /// A configuration value naming something (a policy) not among the known ones.
    #[error("unknown {field} {value:?}; known: {known}")]
    UnknownSetting {
        field: &'static str,
        value: String,
        known: String,
    },
    /// A settings mapping holds a key that is none of its fields.
    #[error("{owner} has no field {key:?}; fields: {known}")]
    UnknownField {
        owner: &'static str,
        key: String,
        known: String,
    },
    /// A decision's outcome (or verdict) was given twice.
    #[error("decision {what}")]
    AlreadyRecorded { what: &'static str },
    /// A decision passed to a router that did not make it.
    #[error("decision was made by another router")]
    ForeignDecision,
    /// Candidates exist, but every one's replicas are down or at capacity.
    #[error("{operation}: every candidate's replicas are down or at capacity")]
    Saturated { operation: &'static str },
    /// The router was closed: what it would route or record now is lost.
    #[error("{operation}: the router is closed (its outcome log and alerts are stopped)")]
    Closed { operation: &'static str },
    /// An operation that needs a feature the configuration leaves off.
    #[error("{operation} needs {setting} in the configuration")]
    NotEnabled {
        operation: &'static str,
        setting: &'static str,
    },
    /// One entry of a configuration list is out of range.
    #[error("{field}{position} must be {expected}, got {value}")]
    InvalidConfigEntry {
        field: &'static str,
        position: Position,
        expected: &'static str,
        value: String,
    },
    /// Inputs of a batch that go one per item (outcome) differ in length.
    #[error("{field} has {got} entries, expected {expected} (one per {per})")]
    EntryCountMismatch {
        field: &'static str,
        expected: usize,
        got: usize,
        per: &'static str,
    },
    /// An index past the end of a collection (replicas, models).
    #[error("{what} index {index} out of range for {len} {what}s")]
    IndexOutOfRange {
        what: &'static str,
        index: usize,
        len: usize,
    },
    /// An input nested deeper than the core reads (a request body whose
    /// `messages` is another body, and so on), refused before it can exhaust
    /// the stack.
    #[error("{field} is nested deeper than the limit of {limit} levels")]
    TooDeep { field: &'static str, limit: usize },
    /// A broken invariant inside zeta_fast (a poisoned lock, unusable shipped
    /// data): a bug, not a bad value from the caller.
    #[error("internal error: {what}")]
    Internal { what: String },
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

/// Formats a float exactly as Python's `repr` does (`nan`, `inf`, `0.1`,
/// `500.0`, `1e+16`, `1e-05`), so messages read the same from both languages.
pub(crate) fn float_repr(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let (digits, exponent) = shortest_digits(value.abs());
    // Shortest digits never end in 0 (but 0.0 itself is "0").
    let digits = match digits.trim_end_matches('0') {
        "" => "0".to_owned(),
        trimmed => trimmed.to_owned(),
    };
    let sign = if value.is_sign_negative() { "-" } else { "" };
    // Python's rule (float_repr_style "short"): exponent notation below 1e-4
    // and from 1e16 up, fixed notation between.
    if !(-4..16).contains(&exponent) {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exponent_sign = if exponent < 0 { '-' } else { '+' };
        return format!(
            "{sign}{first}{fraction}e{exponent_sign}{:02}",
            exponent.unsigned_abs()
        );
    }
    let point = exponent + 1; // digits before the decimal point
    let text = if point <= 0 {
        format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize))
    } else {
        let point = point as usize;
        if digits.len() <= point {
            format!("{digits}{}.0", "0".repeat(point - digits.len()))
        } else {
            let (whole, fraction) = digits.split_at(point);
            format!("{whole}.{fraction}")
        }
    };
    format!("{sign}{text}")
}

/// Splits `{:e}` output ("1.2345e-5") into digits ("12345") and exponent (-5).
fn split_scientific(text: &str) -> (String, i32) {
    let (mantissa, exponent) = text.split_once('e').unwrap_or((text, "0"));
    (
        mantissa.chars().filter(char::is_ascii_digit).collect(),
        exponent.parse().unwrap_or(0),
    )
}

/// The shortest digits that round-trip, chosen as Python chooses them.
///
/// `{:e}` already gives a shortest round-trip string; when the float lies
/// exactly halfway between the two shortest candidates (70368744177664.625
/// as ...62 or ...63), Rust rounds up and Python takes the even one.
fn shortest_digits(value: f64) -> (String, i32) {
    let (digits, exponent) = split_scientific(&format!("{value:e}"));
    // 800 digits print any f64 exactly, so a tie is visible as "5000...".
    let (exact, exact_exponent) = split_scientific(&format!("{value:.800e}"));
    if exact_exponent != exponent || exact.len() <= digits.len() {
        return (digits, exponent);
    }
    let (floor, rest) = exact.split_at(digits.len());
    let tie = rest.starts_with('5') && rest.bytes().skip(1).all(|b| b == b'0');
    if !tie {
        return (digits, exponent);
    }
    // Both candidates are equally near; Python takes the even one, provided
    // it still reads back as this float (just above a power of two the
    // lower neighbour is closer, and only one candidate round-trips).
    let (up, carry) = increment(floor);
    let ceiling = (up, exponent + carry);
    let (even, odd) = if floor.bytes().last().is_some_and(|b| (b - b'0') % 2 == 0) {
        ((floor.to_owned(), exponent), ceiling)
    } else {
        (ceiling, (floor.to_owned(), exponent))
    };
    for candidate in [even, odd] {
        if reads_back(&candidate, value) {
            return candidate;
        }
    }
    (digits, exponent)
}

/// The decimal digits plus one in the last place, carrying into a new
/// power of ten when they were all nines.
fn increment(digits: &str) -> (String, i32) {
    let mut bytes: Vec<u8> = digits.bytes().collect();
    for digit in bytes.iter_mut().rev() {
        if *digit == b'9' {
            *digit = b'0';
        } else {
            *digit += 1;
            return (String::from_utf8_lossy(&bytes).into_owned(), 0);
        }
    }
    (format!("1{}", String::from_utf8_lossy(&bytes)), 1)
}

/// Whether `digits x 10^exponent` (one digit before the point) parses back to `value`.
fn reads_back(candidate: &(String, i32), value: f64) -> bool {
    let (digits, exponent) = candidate;
    let (first, rest) = digits.split_at(1.min(digits.len()));
    format!("{first}.{rest}e{exponent}")
        .parse::<f64>()
        .is_ok_and(|parsed| parsed == value)
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
    fn binding_variants_read_as_before() {
        let err = ZetaError::IndexOutOfRange {
            what: "replica",
            index: 5,
            len: 1,
        };
        assert_eq!(
            err.to_string(),
            "replica index 5 out of range for 1 replicas"
        );
        let err = ZetaError::EntryCountMismatch {
            field: "keys",
            expected: 2,
            got: 1,
            per: "outcome",
        };
        assert_eq!(
            err.to_string(),
            "keys has 1 entries, expected 2 (one per outcome)"
        );
        let err = ZetaError::InvalidConfigEntry {
            field: "capacities",
            position: Position::Flat(1),
            expected: "at most 4294967295",
            value: "4294967296".to_owned(),
        };
        assert_eq!(
            err.to_string(),
            "capacities[1] must be at most 4294967295, got 4294967296"
        );
        let err = ZetaError::Internal {
            what: "saver lock poisoned".to_owned(),
        };
        assert_eq!(err.to_string(), "internal error: saver lock poisoned");
        let err = ZetaError::TooDeep {
            field: "request",
            limit: 32,
        };
        assert_eq!(
            err.to_string(),
            "request is nested deeper than the limit of 32 levels"
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
        assert_eq!(float_repr(-0.0), "-0.0");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1.5e16), "1.5e+16");
        assert_eq!(float_repr(9999999999999998.0), "9999999999999998.0");
        assert_eq!(float_repr(1e-5), "1e-05");
        assert_eq!(float_repr(0.0001), "0.0001");
        assert_eq!(float_repr(-2.5e-300), "-2.5e-300");
        assert_eq!(float_repr(123.456), "123.456");
        assert_eq!(
            float_repr(1.7976931348623157e308),
            "1.7976931348623157e+308"
        );
    }
}
