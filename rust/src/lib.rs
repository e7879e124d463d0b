//! zeta_fast's core: adaptive scoring of LLM routing candidates.
//!
//! The modules below hold the logic and know nothing of Python; `bindings`
//! (behind the `python` feature) is the only code that speaks PyO3.

pub mod balance;
pub mod breaker;
pub mod candidates;
pub mod clock;
pub mod config;
pub mod errors;
pub mod histogram;
pub mod hogwild;
pub mod learned;
pub mod learned_capability;
pub mod outcome;
pub mod outcome_log;
pub mod passthrough;
pub mod penalties;
pub mod persistence;
pub mod policies;
pub mod pool;
pub mod prefix;
pub mod profile;
pub mod registry;
pub mod replica_health;
pub mod request_kinds;
pub mod retry;
pub mod rng;
pub mod rollup;
pub mod routing;
pub mod scoring;
pub mod shared;
pub mod sync;
pub mod tracker;
pub mod trends;
pub mod verdicts;
pub mod window;

#[cfg(feature = "python")]
mod bindings;

pub use config::AdaptiveConfig;
pub use errors::ZetaError;
pub use penalties::Penalties;
pub use scoring::{AdaptiveScorer, ScoreBreakdown};

/// The native module, `zeta_fast._core`. Users import `zeta_fast` instead.
#[cfg(feature = "python")]
#[pyo3::pymodule]
fn _core(module: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    bindings::register(module)
}
