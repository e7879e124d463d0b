//! One row of the outcome log: captured on the request path as owned data
//! (a copy of the decision, no text built), turned into column values by
//! the writer thread.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Statement;

use crate::profile::{Features, Profile, EMBEDDING, TEXT_TASKS};
use crate::routing::{Decision, RouterCore, TASKS};

/// The columns, in table order (the Python readers' `COLUMNS`).
pub const COLUMNS: [&str; 23] = [
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

/// A profile as the JSON object `RequestProfile.to_dict()` gives.
#[derive(serde::Serialize)]
struct ProfileJson<'a> {
    task_type: &'a str,
    complexity: f64,
    task_probabilities: Probabilities,
    features: &'a Features,
}

/// The classifier's probabilities, by task (in `TEXT_TASKS` order).
#[derive(serde::Serialize)]
struct Probabilities {
    code: f64,
    reasoning: f64,
    chat: f64,
    knowledge: f64,
}

impl<'a> ProfileJson<'a> {
    fn of(profile: &'a Profile) -> Self {
        let [code, reasoning, chat, knowledge] = profile.probabilities.map(f64::from);
        Self {
            task_type: profile
                .task
                .and_then(|t| TEXT_TASKS.get(t).copied())
                .unwrap_or(EMBEDDING),
            complexity: profile.complexity,
            task_probabilities: Probabilities {
                code,
                reasoning,
                chat,
                knowledge,
            },
            features: &profile.features,
        }
    }
}

/// Buffers the JSON columns are written into, kept across rows.
#[derive(Default)]
pub struct Scratch {
    penalties: Vec<u8>,
    runners_up: Vec<u8>,
    profile: Vec<u8>,
    features: Vec<u8>,
}

fn json_into(buffer: &mut Vec<u8>, value: &impl serde::Serialize) -> rusqlite::Result<()> {
    buffer.clear();
    serde_json::to_writer(&mut *buffer, value)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn text(buffer: &[u8]) -> ValueRef<'_> {
    ValueRef::Text(buffer)
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl LogRow {
    /// Binds the row's values, in [`COLUMNS`] order, to `statement` (an
    /// insert of every column) and runs it; `price_per_1k` is a model's
    /// price per 1,000 tokens. Borrowed values: nothing is copied but the
    /// JSON columns, written into `scratch`.
    pub fn insert(
        &self,
        statement: &mut Statement<'_>,
        scratch: &mut Scratch,
        price_per_1k: &dyn Fn(&str) -> f64,
    ) -> rusqlite::Result<()> {
        let d = &self.decision;
        let models = self.router.models();
        let name = |m: usize| models.get(m).map_or("", |routed| &*routed.id);
        let model = name(d.model);
        let replica = models
            .get(d.model)
            .and_then(|routed| routed.replica_ids.get(d.replica))
            .map_or("", |r| &**r);
        let breakdown = &d.breakdown;
        let runners_up: Vec<(&str, f64)> =
            d.runners_up.iter().map(|(m, s)| (name(*m), *s)).collect();
        json_into(&mut scratch.penalties, &breakdown.penalties.names())?;
        json_into(&mut scratch.runners_up, &runners_up)?;
        if let Some(profile) = &self.profile {
            json_into(&mut scratch.profile, &ProfileJson::of(profile))?;
        }
        let learned_request = d.request.learned.as_ref();
        let features = match (self.outcome.learned, learned_request) {
            (Some(_), Some(r)) => {
                scratch.features.clear();
                for index in &r.features.indices {
                    scratch.features.extend_from_slice(&index.to_le_bytes());
                }
                Some(scratch.features.as_slice())
            }
            _ => None,
        };
        let tokens = self
            .outcome
            .prompt_tokens
            .saturating_add(self.outcome.completion_tokens) as f64;
        let values: [ValueRef<'_>; 23] = [
            ValueRef::Integer(self.ts_ms),
            text(model.as_bytes()),
            text(replica.as_bytes()),
            text(TASKS.get(d.task).copied().unwrap_or("").as_bytes()),
            ValueRef::Real(d.complexity),
            self.context
                .as_deref()
                .map_or(ValueRef::Null, |c| text(c.as_bytes())),
            text(self.outcome.outcome.as_bytes()),
            ValueRef::Integer(i64::from(self.outcome.outcome == "success")),
            ValueRef::Real(self.outcome.latency_ms),
            self.outcome.ttft_ms.map_or(ValueRef::Null, ValueRef::Real),
            ValueRef::Integer(int(self.outcome.prompt_tokens)),
            ValueRef::Integer(int(self.outcome.completion_tokens)),
            ValueRef::Real(price_per_1k(model) * tokens / 1000.0),
            ValueRef::Real(breakdown.capability_score),
            ValueRef::Real(breakdown.performance_score),
            ValueRef::Real(breakdown.performance_adjustment()),
            text(&scratch.penalties),
            text(&scratch.runners_up),
            if self.profile.is_some() {
                text(&scratch.profile)
            } else {
                ValueRef::Null
            },
            self.outcome
                .learned
                .map_or(ValueRef::Null, |good| ValueRef::Integer(i64::from(good))),
            learned_request.map_or(ValueRef::Null, |r| text(r.category.as_bytes())),
            features.map_or(ValueRef::Null, ValueRef::Blob),
            self.outcome
                .request_id
                .as_deref()
                .map_or(ValueRef::Null, |id| text(id.as_bytes())),
        ];
        for (index, value) in values.into_iter().enumerate() {
            statement.raw_bind_parameter(index + 1, ToSqlOutput::Borrowed(value))?;
        }
        statement.raw_execute()?;
        Ok(())
    }
}
