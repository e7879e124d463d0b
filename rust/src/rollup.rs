//! Rollups: the windows a decision reads, kept by the writers.
//!
//! A decision scores every candidate model from its live totals for the
//! request's task over all its replicas, and from its totals over every task
//! while that task has too few requests. Summing the replicas' windows on
//! each decision made its cost grow with the replica count (and, for models
//! without enough data, with tasks x replicas): 30 % of a decision over 8
//! models x 4 replicas. Instead every record also goes to two rollup windows
//! of its model, (model, task) and (model, all tasks), so a decision reads
//! one or two windows per model whatever the replica count.
//!
//! A rollup is a [`KeyWindow`] recording totals only (no histogram bin, no
//! EWMA: percentiles are read from the keys, off the decision path), plus the
//! other instances' share summed from its keys' remote views whenever shared
//! state is refreshed. It has the window's bounds: its packed words saturate
//! for the model as a whole (e.g. 16.7M timed requests per window across its
//! replicas), and then it leaves records out of its window as a key would.

use crate::shared::RemoteView;
use crate::window::{KeyWindow, Totals};

/// One rollup window: a model's totals for one task, or for all its tasks,
/// over every replica the tracker holds for it.
pub struct Rollup {
    pub window: KeyWindow,
    /// Other router instances' share: the sum of its keys' remote views.
    pub remote: RemoteView,
}

impl Rollup {
    /// An empty rollup.
    pub fn new(window: KeyWindow) -> Self {
        Self {
            window,
            remote: RemoteView::default(),
        }
    }

    /// The live totals at `now_ms`, other instances' share included: two
    /// words of the window and, only when shared state is on, the remote
    /// view.
    #[inline(always)]
    pub fn live_totals(&self, now_ms: u64) -> Totals {
        let mut totals = self.window.live_totals(now_ms);
        totals.merge(&self.remote.totals());
        totals
    }
}

/// The live totals of `primary`, or of `fallback` when `primary` has fewer
/// than `minimum` requests and `fallback` has enough: a model's task totals,
/// or its totals over every task until the task has data of its own.
#[inline(always)]
pub fn totals_with_fallback(
    primary: &Rollup,
    fallback: &Rollup,
    now_ms: u64,
    minimum: u64,
) -> Totals {
    let totals = primary.live_totals(now_ms);
    if totals.requests < minimum {
        let whole = fallback.live_totals(now_ms);
        if whole.requests >= minimum {
            return whole;
        }
    }
    totals
}
