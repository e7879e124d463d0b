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
    Cancelled,
    Other,
}

/// Every kind, in counter order; names as Python and metrics spell them.
pub const OUTCOME_KINDS: [(OutcomeKind, &str); 10] = [
    (OutcomeKind::Success, "success"),
    (OutcomeKind::Timeout, "timeout"),
    (OutcomeKind::Connect, "connect"),
    (OutcomeKind::RateLimited, "rate_limited"),
    (OutcomeKind::ServerError, "server_error"),
    (OutcomeKind::StreamCut, "stream_cut"),
    (OutcomeKind::ContextLength, "context_length"),
    (OutcomeKind::ClientError, "client_error"),
    (OutcomeKind::Cancelled, "cancelled"),
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

    fn index(self) -> usize {
        OUTCOME_KINDS
            .iter()
            .position(|(kind, _)| *kind == self)
            .unwrap_or(OUTCOME_KINDS.len() - 1)
    }

    /// Whether the replica is to blame (its breaker and success rate see a
    /// failure). Client errors and the context-length refusals are the
    /// request's doing; a cancelled hedge says nothing either way.
    pub fn is_replica_fault(self) -> bool {
        !matches!(
            self,
            OutcomeKind::Success
                | OutcomeKind::ClientError
                | OutcomeKind::ContextLength
                | OutcomeKind::Cancelled
        )
    }
}

/// Counters of one replica's outcomes.
#[derive(Default)]
pub struct ReplicaCounters {
    by_kind: [AtomicU64; OUTCOME_KINDS.len()],
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
}

impl ReplicaCounters {
    /// Counts one outcome.
    pub fn count(&self, kind: OutcomeKind, ttft_ms: Option<f64>, prompt: u64, completion: u64) {
        if let Some(counter) = self.by_kind.get(kind.index()) {
            counter.fetch_add(1, Ordering::Relaxed);
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_kinds_tokens_and_ttft() {
        let counters = ReplicaCounters::default();
        counters.count(OutcomeKind::Success, Some(2.0), 10, 8);
        counters.count(OutcomeKind::Success, Some(4.0), 5, 8);
        counters.count(OutcomeKind::Timeout, None, 0, 0);
        let snap = counters.snapshot();
        assert_eq!(snap.by_kind[0], 2);
        assert_eq!(snap.by_kind[1], 1);
        assert_eq!((snap.prompt_tokens, snap.completion_tokens), (15, 16));
        assert!((snap.mean_ttft_ms.unwrap() - 3.0).abs() < 1e-9);
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
