//! What a dispatched request ended as, and per-replica counters of it.
//!
//! The tracker's windows hold success and latency for scoring; these
//! counters keep the rest of an outcome (error kinds, tokens, time to first
//! token) for metrics and dashboards, with one relaxed atomic add each.

use std::sync::atomic::{AtomicU64, Ordering};

/// How a request ended. Only replica faults count against a replica:
/// a client error (a bad request) shows the replica is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    Success,
    Timeout,
    Connect,
    RateLimited,
    ServerError,
    StreamCut,
    ContextLength,
    ClientError,
    /// The model cannot serve this kind of request (images to a text-only
    /// model, embeddings to a chat server, a route its server lacks): the
    /// request goes to a model that can, and this one is not to blame.
    Unsupported,
    Cancelled,
    /// The caller's own failure around the attempt (a body it could not
    /// encode, a bug): nothing the replica did.
    Internal,
    Other,
}

/// Every kind, in counter order; names as Python and metrics spell them.
pub const OUTCOME_KINDS: [(OutcomeKind, &str); 12] = [
    (OutcomeKind::Success, "success"),
    (OutcomeKind::Timeout, "timeout"),
    (OutcomeKind::Connect, "connect"),
    (OutcomeKind::RateLimited, "rate_limited"),
    (OutcomeKind::ServerError, "server_error"),
    (OutcomeKind::StreamCut, "stream_cut"),
    (OutcomeKind::ContextLength, "context_length"),
    (OutcomeKind::ClientError, "client_error"),
    (OutcomeKind::Unsupported, "unsupported"),
    (OutcomeKind::Cancelled, "cancelled"),
    (OutcomeKind::Internal, "internal"),
    (OutcomeKind::Other, "other"),
];

impl OutcomeKind {
    /// The kind a name stands for.
    pub fn parse(name: &str) -> Option<Self> {
        OUTCOME_KINDS
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(kind, _)| *kind)
    }

    /// Its name, as Python, metrics and the outcome log spell it.
    pub fn name(self) -> &'static str {
        OUTCOME_KINDS
            .get(self.index())
            .map_or("other", |(_, name)| name)
    }

    fn index(self) -> usize {
        OUTCOME_KINDS
            .iter()
            .position(|(kind, _)| *kind == self)
            .unwrap_or(OUTCOME_KINDS.len() - 1)
    }

    /// Whether the replica is to blame (its breaker and success rate see a
    /// failure). Client errors and the context-length refusals are the
    /// request's doing, and so is a kind of request the model cannot serve;
    /// a cancelled hedge or the caller's own failure says nothing either way.
    pub fn is_replica_fault(self) -> bool {
        !matches!(
            self,
            OutcomeKind::Success
                | OutcomeKind::ClientError
                | OutcomeKind::ContextLength
                | OutcomeKind::Unsupported
                | OutcomeKind::Cancelled
                | OutcomeKind::Internal
        )
    }
}

/// Upper bounds (ms) of the lifetime latency buckets kept per replica: the
/// usual Prometheus spread for request latencies, from a fast embedding to a
/// long generation.
pub const REPLICA_LATENCY_BOUNDS_MS: [f64; 14] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 30_000.0,
    60_000.0, 120_000.0,
];

/// Upper bounds (ms) of the router-overhead buckets: tens of microseconds up.
pub const OVERHEAD_BOUNDS_MS: [f64; 12] = [
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0,
];

/// A lifetime histogram with fixed bucket bounds, for metrics pages: one
/// relaxed add for the bucket, one for the sum. Unlike the tracker's windows
/// it never forgets, as a Prometheus histogram must not.
pub struct LatencyHistogram {
    bounds: &'static [f64],
    /// One per bound, then the overflow (`+Inf`) bucket.
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
}

/// A copy of a histogram: cumulative counts per upper bound (`+Inf` last).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub cumulative: Vec<(f64, u64)>,
    pub sum_ms: f64,
    pub count: u64,
}

impl LatencyHistogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    /// Counts one observation (ignored unless finite and >= 0).
    pub fn observe(&self, ms: f64) {
        if !(ms.is_finite() && ms >= 0.0) {
            return;
        }
        // Bounds are few and sorted: a linear scan beats a binary search here.
        let bucket = self
            .bounds
            .iter()
            .position(|bound| ms <= *bound)
            .unwrap_or(self.bounds.len());
        if let Some(counter) = self.counts.get(bucket) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us
            .fetch_add((ms * 1_000.0).round() as u64, Ordering::Relaxed);
    }

    /// Reads the buckets as cumulative counts.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let mut cumulative = Vec::with_capacity(self.counts.len());
        for (i, counter) in self.counts.iter().enumerate() {
            running += counter.load(Ordering::Relaxed);
            cumulative.push((
                self.bounds.get(i).copied().unwrap_or(f64::INFINITY),
                running,
            ));
        }
        HistogramSnapshot {
            cumulative,
            sum_ms: self.sum_us.load(Ordering::Relaxed) as f64 / 1_000.0,
            count: running,
        }
    }
}

/// Counters of one replica's outcomes.
pub struct ReplicaCounters {
    by_kind: [AtomicU64; OUTCOME_KINDS.len()],
    /// Latency of every outcome that reached the replica (cancelled ones excluded).
    latency: LatencyHistogram,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    ttft_us_sum: AtomicU64,
    ttft_count: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CountersSnapshot {
    pub by_kind: [u64; OUTCOME_KINDS.len()],
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub mean_ttft_ms: Option<f64>,
    pub latency: HistogramSnapshot,
}

impl Default for ReplicaCounters {
    fn default() -> Self {
        Self {
            by_kind: Default::default(),
            latency: LatencyHistogram::new(&REPLICA_LATENCY_BOUNDS_MS),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            ttft_us_sum: AtomicU64::new(0),
            ttft_count: AtomicU64::new(0),
        }
    }
}

impl ReplicaCounters {
    /// Counts one outcome.
    pub fn count(
        &self,
        kind: OutcomeKind,
        latency_ms: f64,
        ttft_ms: Option<f64>,
        prompt: u64,
        completion: u64,
    ) {
        if let Some(counter) = self.by_kind.get(kind.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        if kind != OutcomeKind::Cancelled {
            self.latency.observe(latency_ms);
        }
        if prompt > 0 {
            self.prompt_tokens.fetch_add(prompt, Ordering::Relaxed);
        }
        if completion > 0 {
            self.completion_tokens
                .fetch_add(completion, Ordering::Relaxed);
        }
        if let Some(ttft) = ttft_ms.filter(|t| t.is_finite() && *t >= 0.0) {
            self.ttft_us_sum
                .fetch_add((ttft * 1_000.0) as u64, Ordering::Relaxed);
            self.ttft_count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> CountersSnapshot {
        let count = self.ttft_count.load(Ordering::Relaxed);
        CountersSnapshot {
            by_kind: std::array::from_fn(|i| {
                self.by_kind.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
            }),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
            mean_ttft_ms: (count > 0)
                .then(|| self.ttft_us_sum.load(Ordering::Relaxed) as f64 / count as f64 / 1_000.0),
            latency: self.latency.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_kinds_tokens_and_ttft() {
        let counters = ReplicaCounters::default();
        counters.count(OutcomeKind::Success, 20.0, Some(2.0), 10, 8);
        counters.count(OutcomeKind::Success, 40.0, Some(4.0), 5, 8);
        counters.count(OutcomeKind::Timeout, 3_000.0, None, 0, 0);
        counters.count(OutcomeKind::Cancelled, 1.0, None, 0, 0);
        let snap = counters.snapshot();
        assert_eq!(snap.by_kind[0], 2);
        assert_eq!(snap.by_kind[1], 1);
        assert_eq!((snap.prompt_tokens, snap.completion_tokens), (15, 16));
        assert!((snap.mean_ttft_ms.unwrap() - 3.0).abs() < 1e-9);
        // The cancelled one is counted by kind but has no latency of its own.
        assert_eq!(snap.latency.count, 3);
        assert!((snap.latency.sum_ms - 3_060.0).abs() < 1e-9);
    }

    #[test]
    fn histogram_is_cumulative_with_inf_last() {
        let histogram = LatencyHistogram::new(&[1.0, 10.0]);
        for ms in [0.5, 1.0, 1.5, 10.0, 99.0, f64::NAN, -1.0] {
            histogram.observe(ms);
        }
        let snap = histogram.snapshot();
        assert_eq!(
            snap.cumulative,
            vec![(1.0, 2), (10.0, 4), (f64::INFINITY, 5)]
        );
        assert_eq!(snap.count, 5);
        assert!((snap.sum_ms - 112.0).abs() < 1e-9);
    }

    #[test]
    fn names_round_trip_and_blame_is_right() {
        for (kind, name) in OUTCOME_KINDS {
            assert_eq!(OutcomeKind::parse(name), Some(kind));
        }
        assert_eq!(OutcomeKind::parse("nope"), None);
        assert!(OutcomeKind::Timeout.is_replica_fault());
        assert!(OutcomeKind::RateLimited.is_replica_fault());
        assert!(!OutcomeKind::ClientError.is_replica_fault());
        assert!(!OutcomeKind::ContextLength.is_replica_fault());
    }
}
