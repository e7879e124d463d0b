//! The one door through which native work leaves the GIL (as polars'
//! `enter_polars`): every call site says what its work costs, and one rule
//! decides.
//!
//! Releasing is cheap (~40 ns uncontended: `python -m benches.compare
//! --only "GIL release"` shows held and released within 2 % from 1k to 64k
//! candidates). Getting the GIL back is not: when another Python thread is
//! busy, the caller waits for it to yield, up to the interpreter's 5 ms
//! switch interval (`--only busy`: 65k candidates took 108 us held but
//! 5.2 ms released). So work under ~1 ms, shorter than the slice other
//! threads wait for anyway, keeps the GIL; longer work, and anything that
//! may block (files, locks, joining threads), lets other threads run.

use pyo3::marker::Ungil;
use pyo3::Python;

/// Work above this many nanoseconds releases the GIL.
pub const RELEASE_ABOVE_NS: u64 = 1 << 20;
/// Scoring one candidate in a batch (~600 M scores/s, rounded up).
const NS_PER_CANDIDATE: u64 = 2;
/// Recording one outcome into a window.
const NS_PER_RECORD: u64 = 32;

/// The smallest batch of candidates that releases the GIL.
pub const GIL_RELEASE_MIN_CANDIDATES: usize = (RELEASE_ABOVE_NS / NS_PER_CANDIDATE) as usize;
/// The smallest batch of recorded outcomes that releases the GIL.
pub const GIL_RELEASE_MIN_RECORDS: usize = (RELEASE_ABOVE_NS / NS_PER_RECORD) as usize;

/// What a call's native work costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// Scoring this many candidates.
    Candidates(usize),
    /// Recording this many outcomes.
    Records(usize),
    /// It may block: file I/O, a lock another thread holds, a thread join.
    Blocking,
}

impl Cost {
    /// Whether work of this cost runs with the GIL released.
    pub fn releases(self) -> bool {
        match self {
            Cost::Candidates(n) => n >= GIL_RELEASE_MIN_CANDIDATES,
            Cost::Records(n) => n >= GIL_RELEASE_MIN_RECORDS,
            Cost::Blocking => true,
        }
    }
}

/// Runs `work`, with the GIL released when its cost says so (or when the
/// caller's `release_gil=` override says so).
#[inline]
pub fn run<T, F>(py: Python<'_>, cost: Cost, release_gil: Option<bool>, work: F) -> T
where
    F: Ungil + FnOnce() -> T,
    T: Ungil,
{
    if release_gil.unwrap_or_else(|| cost.releases()) {
        py.detach(work)
    } else {
        work()
    }
}
