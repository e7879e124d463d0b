//! One row of the outcome log: captured on the request path as owned data
//! (a copy of the decision, no text built), turned into column values by
//! the writer thread.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::insert::Value;
use super::json;
use crate::learned::encode_indices;
use crate::profile::Profile;
use crate::routing::{Decision, RouterCore, TASKS};

/// The columns, in table order (the Python readers' `COLUMNS`).
pub const COLUMNS: [&str; 27] = [
    "ts_ms",
    "model",
    "replica",
    "task",
    "complexity",
    "context",
    "outcome",
    "success",
    "latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "capability",
    "score",
    "adjustment",
    "penalties",
    "runners_up",
    "profile",
    "learned",
    "category",
    "features",
    "request_id",
    "source",
    "verdict",
    "confidence",
    "detail",
];

/// What a row says of the outcome (the rest is the decision's).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedOutcome {
    /// `success`, `timeout`, ..., `other` for a failure a caller recorded,
    /// `feedback` for a verdict given later.
    pub outcome: &'static str,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// What the learned router took from it, if anything.
    pub learned: Option<bool>,
    pub request_id: Option<String>,
    /// A verdict's source (`explicit`, `judge`, `structural`, ...), what it
    /// said (good or not), how sure it was, and what it found (a failed
    /// check's name); None for an attempt's outcome.
    pub source: Option<&'static str>,
    pub verdict: Option<bool>,
    pub confidence: Option<f64>,
    pub detail: Option<&'static str>,
}

impl LoggedOutcome {
    /// An outcome with no stream or token figures and no request id.
    pub fn plain(outcome: &'static str, latency_ms: f64, learned: Option<bool>) -> Self {
        Self {
            outcome,
            latency_ms,
            ttft_ms: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            learned,
            request_id: None,
            source: None,
            verdict: None,
            confidence: None,
            detail: None,
        }
    }

    /// A verdict on an answer, given after its outcome (kind `feedback`).
    pub fn verdict(
        source: &'static str,
        good: bool,
        confidence: f64,
        detail: Option<&'static str>,
        learned: bool,
    ) -> Self {
        Self {
            source: Some(source),
            verdict: Some(good),
            confidence: Some(confidence),
            detail,
            ..Self::plain("feedback", 0.0, learned.then_some(good))
        }
    }
}

/// What one outcome row holds until the writer turns it into values.
pub struct LogRow {
    pub ts_ms: i64,
    /// The router the decision is of: its names are read at write time.
    pub router: Arc<RouterCore>,
    pub decision: Decision,
    pub context: Option<String>,
    pub profile: Option<Profile>,
    pub outcome: LoggedOutcome,
}

/// Milliseconds since the Unix epoch (the log's clock is the wall clock,
/// whatever clock the tracker runs on).
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Buffers the JSON columns are written into, kept across rows.
#[derive(Default)]
pub struct Scratch {
    penalties: Vec<u8>,
    runners_up: Vec<u8>,
    profile: Vec<u8>,
    features: Vec<u8>,
    sorted_indices: Vec<u32>,
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn text(value: &str) -> Value<'_> {
    Value::Text(value.as_bytes())
}

impl LogRow {
    /// The row's values in [`COLUMNS`] order; `price_per_1k` is a model's
    /// price per 1,000 tokens. Borrowed: nothing is copied but the JSON
    /// columns, written into `scratch`.
    pub fn values<'a>(
        &'a self,
        scratch: &'a mut Scratch,
        price_per_1k: &dyn Fn(&str) -> f64,
    ) -> [Value<'a>; COLUMNS.len()] {
        let d = &self.decision;
        let models = self.router.models();
        let name = |m: usize| models.get(m).map_or("", |routed| &*routed.id);
        let model = name(d.model);
        let replica = models
            .get(d.model)
            .and_then(|routed| routed.replica_ids.get(d.replica))
            .map_or("", |r| &**r);
        let breakdown = &d.breakdown;
        scratch.penalties.clear();
        json::names(&mut scratch.penalties, &breakdown.penalties.names());
        scratch.runners_up.clear();
        json::scored(
            &mut scratch.runners_up,
            d.runners_up.iter().map(|(m, s)| (name(*m), *s)),
        );
        if let Some(profile) = &self.profile {
            scratch.profile.clear();
            json::profile(&mut scratch.profile, profile);
        }
        let learned_request = d.request.learned.as_ref();
        let features = match (self.outcome.learned, learned_request) {
            (Some(_), Some(r)) => {
                encode_indices(
                    &r.features.indices,
                    &mut scratch.sorted_indices,
                    &mut scratch.features,
                );
                Some(scratch.features.as_slice())
            }
            _ => None,
        };
        let tokens = self
            .outcome
            .prompt_tokens
            .saturating_add(self.outcome.completion_tokens) as f64;
        [
            Value::Integer(self.ts_ms),
            text(model),
            text(replica),
            text(TASKS.get(d.task).copied().unwrap_or("")),
            Value::Real(d.complexity),
            self.context.as_deref().map_or(Value::Null, text),
            text(self.outcome.outcome),
            Value::Integer(i64::from(self.outcome.outcome == "success")),
            Value::Real(self.outcome.latency_ms),
            self.outcome.ttft_ms.map_or(Value::Null, Value::Real),
            Value::Integer(int(self.outcome.prompt_tokens)),
            Value::Integer(int(self.outcome.completion_tokens)),
            Value::Real(price_per_1k(model) * tokens / 1000.0),
            Value::Real(breakdown.capability_score),
            Value::Real(breakdown.performance_score),
            Value::Real(breakdown.performance_adjustment()),
            Value::Text(&scratch.penalties),
            Value::Text(&scratch.runners_up),
            if self.profile.is_some() {
                Value::Text(&scratch.profile)
            } else {
                Value::Null
            },
            self.outcome
                .learned
                .map_or(Value::Null, |good| Value::Integer(i64::from(good))),
            learned_request.map_or(Value::Null, |r| text(&r.category)),
            features.map_or(Value::Null, Value::Blob),
            self.outcome.request_id.as_deref().map_or(Value::Null, text),
            self.outcome.source.map_or(Value::Null, text),
            self.outcome
                .verdict
                .map_or(Value::Null, |good| Value::Integer(i64::from(good))),
            self.outcome.confidence.map_or(Value::Null, Value::Real),
            self.outcome.detail.map_or(Value::Null, text),
        ]
    }
}
