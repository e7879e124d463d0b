//! What other router instances see, merged into this one's read view.
//!
//! Each instance keeps its own lock-free windows on the hot path. A sync
//! loop (in the Python layer, `zeta_fast.shared`) publishes this instance's
//! per-bucket counters to Redis and reads the others': their sums over the
//! current window land here, one [`RemoteView`] per key, replaced as a whole
//! each cycle. Decisions add the remote totals (four relaxed loads) to the
//! local ones; statistics add the remote latency histogram too.
//!
//! Export: [`export_key`] reads a window's non-empty buckets (epoch, totals)
//! and histogram slices (slice epoch, sparse bins): absolute per-instance
//! counts per time bucket, so merging instances is a sum, exact and
//! independent of order, and a bucket leaves every view when it leaves the
//! window.

use arc_swap::ArcSwapOption;

use crate::sync::{AtomicU64, Ordering};
use crate::window::{KeyWindow, Totals};

/// The other instances' share of one key's window.
#[derive(Default)]
pub struct RemoteView {
    requests: AtomicU64,
    successes: AtomicU64,
    latency_requests: AtomicU64,
    latency_units: AtomicU64,
    histogram: ArcSwapOption<Vec<u64>>,
}

impl RemoteView {
    /// Replaces the view (totals and, when given, the histogram).
    pub fn set(&self, totals: &Totals, histogram: Option<Vec<u64>>) {
        self.requests.store(totals.requests, Ordering::Relaxed);
        self.successes.store(totals.successes, Ordering::Relaxed);
        self.latency_requests
            .store(totals.latency_requests, Ordering::Relaxed);
        self.latency_units
            .store(totals.latency_units, Ordering::Relaxed);
        self.histogram.store(histogram.map(std::sync::Arc::new));
    }

    /// The remote totals (all zero while nothing is shared).
    #[inline(always)]
    pub fn totals(&self) -> Totals {
        Totals {
            requests: self.requests.load(Ordering::Relaxed),
            successes: self.successes.load(Ordering::Relaxed),
            latency_requests: self.latency_requests.load(Ordering::Relaxed),
            latency_units: self.latency_units.load(Ordering::Relaxed),
        }
    }

    /// Adds the remote histogram to `into` (bins of the same layout).
    pub fn add_histogram(&self, into: &mut [u64]) {
        if let Some(remote) = self.histogram.load().as_ref() {
            for (total, count) in into.iter_mut().zip(remote.iter()) {
                *total += count;
            }
        }
    }
}

/// One key's shareable state now: non-empty buckets of the window and
/// histogram slices with their sparse bins.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KeyExport {
    /// (epoch, totals) of each non-empty bucket in the window.
    pub buckets: Vec<(u64, Totals)>,
    /// (slice epoch, [(bin, count)]) of each non-empty slice in the window.
    pub slices: Vec<(u64, Vec<(u32, u32)>)>,
}

/// Reads a window's shareable state at `now_ms`.
pub fn export_key(window: &KeyWindow, now_ms: u64) -> KeyExport {
    let (buckets, slices) = window.export(now_ms);
    KeyExport { buckets, slices }
}
