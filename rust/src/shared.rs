//! What other router instances see, merged into this one's read view.
//!
//! Each instance keeps its own lock-free windows on the hot path. A sync
//! loop (in the Python layer, `zeta_fast.shared`) publishes this instance's
//! per-bucket counters to Redis and reads the others': their sums over the
//! current window land here, one [`RemoteView`] per key, replaced as a whole
//! each cycle. Decisions add the remote totals to the local ones; statistics
//! add the remote latency histogram too.
//!
//! A view is one immutable value swapped in whole ([`SwapCell`]), so a
//! reader sees the view before a `set` or the one after it, never a mix
//! (successes above requests, or totals of one cycle with the histogram of
//! another): see `rust/tests/loom_remote.rs`. While nothing was ever shared
//! a read is one relaxed flag.
//!
//! Export: [`export_key`] reads a window's non-empty buckets (epoch, totals)
//! and histogram slices (slice epoch, sparse bins): absolute per-instance
//! counts per time bucket, so merging instances is a sum, exact and
//! independent of order, and a bucket leaves every view when it leaves the
//! window.

use std::sync::Arc;

use crate::sync::{AtomicBool, Ordering, SwapCell};
use crate::window::{KeyWindow, Totals};

/// One cycle's share of a key, published whole.
struct Shared {
    totals: Totals,
    histogram: Option<Vec<u64>>,
}

/// The other instances' share of one key's window.
#[derive(Default)]
pub struct RemoteView {
    view: SwapCell<Shared>,
    /// Set once the first view is published: until then reads skip the
    /// swap cell (shared state is off by default, and decisions read every
    /// candidate's view).
    published: AtomicBool,
}

impl RemoteView {
    /// Replaces the view (totals and, when given, the histogram) as a whole.
    pub fn set(&self, totals: &Totals, histogram: Option<Vec<u64>>) {
        self.view.store(Some(Arc::new(Shared {
            totals: *totals,
            histogram,
        })));
        // Release: a reader that sees the flag sees the view stored above.
        self.published.store(true, Ordering::Release);
    }

    #[inline(always)]
    fn read<R>(&self, read: impl FnOnce(&Shared) -> R) -> Option<R> {
        if !self.published.load(Ordering::Acquire) {
            return None;
        }
        self.view.read(|view| view.map(read))
    }

    /// The remote totals (all zero while nothing is shared).
    #[inline(always)]
    pub fn totals(&self) -> Totals {
        self.read(|view| view.totals).unwrap_or_default()
    }

    /// Adds the remote histogram to `into` (bins of the same layout).
    pub fn add_histogram(&self, into: &mut [u64]) {
        self.add_to(&mut Totals::default(), into);
    }

    /// Adds the remote totals to `totals` and the remote histogram to
    /// `histogram`, both from one view.
    pub fn add_to(&self, totals: &mut Totals, histogram: &mut [u64]) {
        self.read(|view| {
            totals.merge(&view.totals);
            if let Some(remote) = &view.histogram {
                for (total, count) in histogram.iter_mut().zip(remote.iter()) {
                    *total += count;
                }
            }
        });
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
