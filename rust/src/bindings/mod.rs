//! The Python face of the core: the only code that says `pyo3` or `numpy`.

mod arrays;
mod balance;
mod config;
mod errors;
mod extract;
mod gil;
mod kinds;
mod learned;
mod outcome_log;
mod pool;
mod profile;
mod prompt_prefix;
mod request_text;
mod router;
mod scorer;
mod tracker;
mod trends;

use pyo3::prelude::*;

/// Registers every class and constant of `zeta_fast._core`.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<config::PyAdaptiveConfig>()?;
    module.add_class::<scorer::PyAdaptiveScorer>()?;
    module.add_class::<scorer::PyScoreBreakdown>()?;
    module.add_class::<tracker::PyWindowConfig>()?;
    module.add_class::<tracker::PyManualClock>()?;
    module.add_class::<tracker::PyPerformanceTracker>()?;
    module.add_class::<tracker::PyTrackerKey>()?;
    module.add_class::<tracker::PyTrackerStats>()?;
    module.add_class::<pool::PyCandidatePool>()?;
    module.add_function(pyo3::wrap_pyfunction!(tracker::_shutdown, module)?)?;
    module.add_class::<profile::PyRequestProfile>()?;
    module.add_class::<balance::PyReplicaSet>()?;
    module.add_class::<router::PyRouterCore>()?;
    module.add_class::<outcome_log::PyOutcomeLogWriter>()?;
    module.add_class::<router::PyDecision>()?;
    module.add_class::<router::PyReplicaStatus>()?;
    module.add_class::<router::PyModelSettings>()?;
    module.add_class::<router::PyResilience>()?;
    module.add_class::<router::PyLearningSettings>()?;
    module.add_class::<trends::PyChange>()?;
    module.add_class::<trends::PySuccessDetector>()?;
    module.add_class::<trends::PyLatencyDetector>()?;
    module.add_class::<trends::PyTrendWatch>()?;
    module.add_class::<kinds::PyTask>()?;
    module.add_class::<kinds::PyOutcomeKind>()?;
    module.add_function(pyo3::wrap_pyfunction!(profile::_profile_text, module)?)?;
    module.add_function(pyo3::wrap_pyfunction!(profile::_profile_features, module)?)?;
    module.add_function(pyo3::wrap_pyfunction!(request_text::profile, module)?)?;
    module.add_function(pyo3::wrap_pyfunction!(
        request_text::py_request_text,
        module
    )?)?;
    module.add_class::<learned::PyFeatures>()?;
    module.add_class::<learned::PyOutcomePredictor>()?;
    module.add_function(pyo3::wrap_pyfunction!(learned::_text_features, module)?)?;
    module.add_function(pyo3::wrap_pyfunction!(
        learned::_write_learned_state,
        module
    )?)?;
    module.add_function(pyo3::wrap_pyfunction!(
        learned::_read_learned_state,
        module
    )?)?;
    module.add(
        "REQUEST_FEATURES",
        pyo3::types::PyTuple::new(module.py(), crate::request_kinds::FEATURES)?,
    )?;
    module.add(
        "VERDICT_SOURCES",
        pyo3::types::PyTuple::new(module.py(), crate::verdicts::SOURCES)?,
    )?;
    module.add(
        "DEFAULT_CONFIDENCE",
        pyo3::types::PyTuple::new(module.py(), crate::verdicts::DEFAULT_CONFIDENCE)?,
    )?;
    module.add(
        "ANSWER_CHECKS",
        pyo3::types::PyTuple::new(module.py(), crate::verdicts::CHECKS)?,
    )?;
    module.add(
        "REQUEST_KINDS",
        pyo3::types::PyTuple::new(module.py(), crate::verdicts::KINDS)?,
    )?;
    module.add("FEATURE_DIM", crate::learned::FEATURE_DIM)?;
    module.add(
        "OUTCOME_LOG_COLUMNS",
        pyo3::types::PyTuple::new(module.py(), crate::outcome_log::COLUMNS)?,
    )?;
    module.add(
        "REPLICA_POLICIES",
        pyo3::types::PyTuple::new(module.py(), crate::policies::replica_policy_names())?,
    )?;
    module.add(
        "MODEL_ORDERINGS",
        pyo3::types::PyTuple::new(module.py(), crate::policies::model_ordering_names())?,
    )?;
    module.add(
        "GIL_RELEASE_MIN_CANDIDATES",
        gil::GIL_RELEASE_MIN_CANDIDATES,
    )?;
    module.add("GIL_RELEASE_MIN_RECORDS", gil::GIL_RELEASE_MIN_RECORDS)?;
    module.add(
        "SNAPSHOT_FORMAT_VERSION",
        crate::persistence::FORMAT_VERSION,
    )?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
