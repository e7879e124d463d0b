//! The Python face of the core: the only code that says `pyo3` or `numpy`.

mod arrays;
mod config;
mod errors;
mod extract;
mod scorer;

use pyo3::prelude::*;

/// Registers every class and constant of `zeta_fast._core`.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<config::PyAdaptiveConfig>()?;
    module.add_class::<scorer::PyAdaptiveScorer>()?;
    module.add_class::<scorer::PyScoreBreakdown>()?;
    module.add(
        "GIL_RELEASE_MIN_CANDIDATES",
        arrays::GIL_RELEASE_MIN_CANDIDATES,
    )?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
