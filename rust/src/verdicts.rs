//! Verdicts on answers and who gave them.
//!
//! Real users rarely say whether an answer was good, so the router collects
//! verdicts itself: structural checks of every answer, a user regenerating
//! an answer, a judge model grading a sample, shadow comparisons with a
//! stronger model, beside the caller's explicit word and a cascade's
//! validator. Each source is trusted to its own degree (a judge's verdict
//! counts more than a regeneration, which may be a user's whim), and every
//! verdict is counted per source and model, learned or not.
//!
//! The structural checks of a request *kind* (JSON mode, tools) say whether
//! a model honours that kind at all, which is a fact about the model's
//! server, not about the text: they go to a per-kind record of the model's
//! last answers (`KindChecks`) that scales its capability for requests of
//! that kind only. Sent to the text predictor instead, a server that ignores
//! `response_format` would drag down the model's plain chat too (the bias
//! and the word weights are shared between kinds).

use crate::errors::ZetaError;
use crate::request_kinds::{JSON_SCHEMA, TOOLS};
use crate::sync::{AtomicU64, Ordering};

/// Every verdict source, in index order; names as configuration, metrics
/// and the outcome log spell them.
pub const SOURCES: [&str; 7] = [
    "explicit",
    "validator",
    "judge",
    "shadow",
    "structural",
    "regeneration",
    "continuation",
];

/// How much each source's verdict counts by default (its confidence, how
/// likely it is right, is apart: the soft target it is learned as): a
/// caller's word, a validator, a judge and a shadow comparison fully; a
/// failed structural check fully (it is certain); what users do half (a
/// regeneration or a conversation going on is a habit as much as a verdict,
/// and comes for most answers: it must not drown the rarer, surer ones).
pub const DEFAULT_WEIGHTS: [f64; SOURCES.len()] = [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5];

/// How likely each source's verdict is right when it does not say
/// (`Router.feedback` without `confidence`): a caller, a validator, a judge
/// that gives no number, a shadow comparison and a failed check are taken
/// at their word; a regenerated answer is bad, and one the conversation
/// went on from good, more often than not, no more (users regenerate for
/// variety, and go on after a bad answer too).
pub const DEFAULT_CONFIDENCE: [f64; SOURCES.len()] = [1.0, 1.0, 1.0, 1.0, 1.0, 0.7, 0.7];

/// The explicit source's index (`Router.feedback`'s default).
pub const EXPLICIT: usize = 0;
/// The structural checks' index.
pub const STRUCTURAL: usize = 4;

/// The position of `name` in `names`, else an error naming the field.
fn index_in(
    names: &[&str],
    name: &str,
    field: &'static str,
    problem: &'static str,
) -> Result<usize, ZetaError> {
    names
        .iter()
        .position(|n| *n == name)
        .ok_or_else(|| ZetaError::InvalidName {
            field,
            problem,
            value: name.to_owned(),
        })
}

/// The index of a source name.
pub fn source_index(name: &str) -> Result<usize, ZetaError> {
    index_in(
        &SOURCES,
        name,
        "source",
        "is not a verdict source (explicit, validator, judge, shadow, structural, \
         regeneration, continuation)",
    )
}

/// Checks per-source weights (each finite, >= 0 and <= 10; 0 turns a
/// source's learning off while its verdicts are still counted).
pub fn check_weights(weights: &[f64; SOURCES.len()]) -> Result<(), ZetaError> {
    for (name, weight) in SOURCES.iter().zip(weights) {
        if !(weight.is_finite() && (0.0..=crate::learned::MAX_WEIGHT).contains(weight)) {
            return Err(ZetaError::InvalidConfig {
                field: "learning.source_weights",
                expected: "each weight finite and in [0, 10]",
                value: format!("{name}: {}", crate::errors::float_repr(*weight)),
            });
        }
    }
    Ok(())
}

/// Verdicts per source and model: `[source][model] -> (good, bad)`.
pub struct VerdictCounts {
    models: usize,
    counts: Box<[[AtomicU64; 2]]>,
}

impl VerdictCounts {
    pub fn new(models: usize) -> Self {
        Self {
            models,
            counts: (0..models * SOURCES.len())
                .map(|_| [AtomicU64::new(0), AtomicU64::new(0)])
                .collect(),
        }
    }

    /// Counts one verdict.
    pub fn add(&self, source: usize, model: usize, good: bool) {
        if model < self.models {
            if let Some(cell) = self.counts.get(source * self.models + model) {
                if let Some(count) = cell.get(usize::from(!good)) {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// `(source, model, good, bad)` for every pair with a verdict.
    pub fn read(&self) -> Vec<(usize, usize, u64, u64)> {
        let mut out = Vec::new();
        for source in 0..SOURCES.len() {
            for model in 0..self.models {
                if let Some([good, bad]) = self.counts.get(source * self.models + model) {
                    let (good, bad) = (good.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
                    if good + bad > 0 {
                        out.push((source, model, good, bad));
                    }
                }
            }
        }
        out
    }
}

/// What a structural check found, in index order: `ok` (nothing wrong),
/// then the failures: a JSON-mode answer that does not parse, one that does
/// not match the requested schema, a malformed tool call (unknown name,
/// arguments that do not parse or match the tool's schema), an empty
/// answer, degenerate repetition, an answer cut at the token limit when the
/// client set none.
pub const CHECKS: [&str; 7] = [
    "ok",
    "json",
    "json_schema",
    "tools",
    "empty",
    "repetition",
    "length",
];

/// The failures that say something about the answer's text whatever the
/// request's kind: learned as bad verdicts by the text predictor too.
pub const ABOUT_THE_TEXT: [&str; 3] = ["empty", "repetition", "length"];

/// The index of a check name.
pub fn check_index(name: &str) -> Result<usize, ZetaError> {
    index_in(
        &CHECKS,
        name,
        "check",
        "is not a structural check (ok, json, json_schema, tools, empty, repetition, length)",
    )
}

/// Refuses a confidence outside `[0, 1]` (or not a number).
pub fn check_confidence(confidence: f64) -> Result<(), ZetaError> {
    if confidence.is_finite() && (0.0..=1.0).contains(&confidence) {
        Ok(())
    } else {
        Err(ZetaError::InvalidInput {
            field: "confidence",
            position: crate::errors::Position::Scalar,
            expected: "finite and in [0, 1]",
            value: crate::errors::float_repr(confidence),
        })
    }
}

/// Request kinds the structural checks tell apart: plain chat (or any
/// request needing neither), JSON mode, tools.
pub const KINDS: [&str; 3] = ["plain", "json", "tools"];

/// The kind of a request needing `needs` (tools first: a request with both
/// is judged on its tool calls).
#[inline]
pub fn kind_of(needs: u32) -> usize {
    // On every route: two masks, no name lookup.
    if needs & TOOLS != 0 {
        2
    } else if needs & JSON_SCHEMA != 0 {
        1
    } else {
        0
    }
}

/// Structural checks remembered per kind: the last [`HISTORY`] verdicts.
pub const HISTORY: u32 = 32;
/// Pseudo-passes in the share, so one failure does not halve a model.
const PRIOR_PASSES: f64 = 2.0;

/// One model's recent structural checks per request kind: a bit per
/// verdict (1 = failed) shifted into a word, with how many it holds and
/// when the last came, so a record goes stale and the model is trusted
/// again after a redeploy.
#[derive(Default)]
pub struct KindChecks {
    /// Per kind: `failed bits (low 32) | count (bits 32..40)`, one atomic word
    /// so a reader never sees bits and count from different verdicts.
    history: [AtomicU64; KINDS.len()],
    last_ms: [AtomicU64; KINDS.len()],
}

impl KindChecks {
    /// Remembers one verdict on an answer of `kind` at `now_ms`.
    pub fn add(&self, kind: usize, passed: bool, now_ms: u64) {
        let (Some(history), Some(last)) = (self.history.get(kind), self.last_ms.get(kind)) else {
            return;
        };
        let _ = history.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
            let bits = ((word as u32) << 1) | u32::from(!passed);
            let count = ((word >> 32) as u32 + 1).min(HISTORY);
            Some((u64::from(count) << 32) | u64::from(bits))
        });
        last.fetch_max(now_ms, Ordering::Relaxed);
    }

    /// (checked, failed) among the last verdicts on `kind`, none when the
    /// newest is older than `ttl_ms`.
    pub fn recent(&self, kind: usize, now_ms: u64, ttl_ms: u64) -> (u32, u32) {
        let (Some(history), Some(last)) = (self.history.get(kind), self.last_ms.get(kind)) else {
            return (0, 0);
        };
        if now_ms.saturating_sub(last.load(Ordering::Relaxed)) > ttl_ms {
            return (0, 0);
        }
        let word = history.load(Ordering::Relaxed);
        let count = (word >> 32) as u32;
        let mask = if count >= 32 {
            u32::MAX
        } else {
            (1_u32 << count) - 1
        };
        (count, (word as u32 & mask).count_ones())
    }

    /// What a model's capability for a request of `kind` is multiplied by:
    /// its recent pass share with two pseudo-passes, 1 with no record.
    #[inline]
    pub fn factor(&self, kind: usize, now_ms: u64, ttl_ms: u64) -> f64 {
        // The common case, no failure held, costs one load.
        let holds_failures = self
            .history
            .get(kind)
            .is_some_and(|word| word.load(Ordering::Relaxed) as u32 != 0);
        if !holds_failures {
            return 1.0;
        }
        let (checked, failed) = self.recent(kind, now_ms, ttl_ms);
        if failed == 0 {
            return 1.0;
        }
        let checked = f64::from(checked);
        (checked - f64::from(failed) + PRIOR_PASSES) / (checked + PRIOR_PASSES)
    }

    /// Forgets every record (an operator's word after a redeploy).
    pub fn forget(&self) {
        for word in &self.history {
            word.store(0, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_have_names_and_weights() {
        for (i, name) in SOURCES.iter().enumerate() {
            assert_eq!(source_index(name).unwrap(), i);
        }
        assert!(source_index("oracle").is_err());
        assert_eq!(SOURCES[EXPLICIT], "explicit");
        assert_eq!(SOURCES[STRUCTURAL], "structural");
        check_weights(&DEFAULT_WEIGHTS).unwrap();
        let mut bad = DEFAULT_WEIGHTS;
        bad[2] = f64::NAN;
        assert!(check_weights(&bad).is_err());
        bad[2] = 11.0;
        assert!(check_weights(&bad).is_err());
        bad[2] = 0.0;
        check_weights(&bad).unwrap();
        // A judge counts more than a regeneration.
        let weight = |name| DEFAULT_WEIGHTS.get(source_index(name).unwrap()).copied();
        assert!(weight("judge") > weight("regeneration"));
    }

    #[test]
    fn verdicts_count_per_source_and_model() {
        let counts = VerdictCounts::new(2);
        counts.add(2, 1, true);
        counts.add(2, 1, false);
        counts.add(2, 1, false);
        counts.add(0, 0, true);
        counts.add(9, 0, true); // no such source: ignored
        counts.add(0, 5, true); // no such model: ignored
        assert_eq!(counts.read(), vec![(0, 0, 1, 0), (2, 1, 1, 2)]);
    }

    #[test]
    fn no_verdict_is_lost_across_threads() {
        let counts = std::sync::Arc::new(VerdictCounts::new(3));
        let checks = std::sync::Arc::new(KindChecks::default());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (counts, checks) = (counts.clone(), checks.clone());
                std::thread::spawn(move || {
                    for i in 0..5_000_u64 {
                        counts.add(t % 2, t % 3, i % 4 != 0);
                        // Every thread's last 4 verdicts on json are failures.
                        checks.add(1, i < 4_996, i);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap_or_else(|_| unreachable!());
        }
        let total: u64 = counts.read().iter().map(|(_, _, g, b)| g + b).sum();
        assert_eq!(total, 8 * 5_000);
        let good: u64 = counts.read().iter().map(|(_, _, g, _)| g).sum();
        assert_eq!(good, 8 * 3_750);
        // The word is whole: a count of 32, and the newest verdict (some
        // thread's last, a failure) among its bits.
        let (checked, failed) = checks.recent(1, 5_000, 1_000);
        assert_eq!(checked, 32);
        assert!((1..=32).contains(&failed), "{failed}");
    }

    #[test]
    fn kinds_follow_the_needs() {
        let tools = crate::request_kinds::feature_bit("tools").unwrap();
        let json = crate::request_kinds::feature_bit("json_schema").unwrap();
        let images = crate::request_kinds::feature_bit("images").unwrap();
        assert_eq!(kind_of(0), 0);
        assert_eq!(kind_of(images), 0);
        assert_eq!(kind_of(json), 1);
        assert_eq!(kind_of(json | tools), 2);
    }

    #[test]
    fn a_kind_record_scales_by_recent_passes_and_goes_stale() {
        let checks = KindChecks::default();
        assert_eq!(checks.factor(1, 0, 1_000), 1.0);
        for t in 0..6 {
            checks.add(1, false, t);
        }
        // 6 failed of 6, two pseudo-passes: 2 / 8.
        assert_eq!(checks.recent(1, 10, 1_000), (6, 6));
        assert!((checks.factor(1, 10, 1_000) - 0.25).abs() < 1e-12);
        // Other kinds are untouched.
        assert_eq!(checks.factor(0, 10, 1_000), 1.0);
        // Passes push failures out of the window.
        for t in 0..40 {
            checks.add(1, true, 100 + t);
        }
        assert_eq!(checks.recent(1, 200, 1_000), (32, 0));
        assert_eq!(checks.factor(1, 200, 1_000), 1.0);
        checks.add(1, false, 300);
        assert_eq!(checks.recent(1, 300, 1_000), (32, 1));
        // Stale: the newest verdict is older than the ttl.
        assert_eq!(checks.recent(1, 1_301, 1_000), (0, 0));
        assert_eq!(checks.factor(1, 1_301, 1_000), 1.0);
        checks.add(2, false, 5);
        checks.forget();
        assert_eq!(checks.recent(2, 5, 1_000), (0, 0));
        // Out of range kinds are ignored.
        checks.add(7, false, 5);
        assert_eq!(checks.recent(7, 5, 1_000), (0, 0));
    }
}
