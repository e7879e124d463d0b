//! Outcomes: how a dispatched request ended, fed back where each part of
//! the router learns from it. The tracker's window (scoring) and the
//! replica's breaker see replica faults and successes; client errors,
//! context-length refusals and cancelled hedges only count in the replica's
//! counters ("a request's fault is not the replica's"). Replica health and
//! the complexity ranges learn from the same outcomes as the window; the
//! learned router from successes and context-length refusals.

use super::sinks::{EventKind, OutcomeEvent};
use super::{Decision, RouterCore};
use crate::errors::{float_repr, Position, ZetaError};
use crate::outcome::OutcomeKind;
use crate::replica_health::degraded_by;
use crate::verdicts::{
    check_confidence, kind_of, ABOUT_THE_TEXT, CHECKS, KINDS, SOURCES, STRUCTURAL,
};

/// One outcome to record, as the dispatcher reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub kind: OutcomeKind,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Of the prompt's tokens, those the engine reused from its cache
    /// (llama.cpp's `timings.cache_n`, vLLM's `cached_tokens`), when it said.
    pub cached_tokens: Option<u64>,
}

impl Outcome {
    /// A caller's verdict alone: success or not, and the time it took.
    pub fn verdict(success: bool, latency_ms: f64) -> Self {
        Self {
            kind: if success {
                OutcomeKind::Success
            } else {
                OutcomeKind::Other
            },
            latency_ms,
            ttft_ms: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: None,
        }
    }

    fn check(&self) -> Result<(), ZetaError> {
        crate::tracker::check_latency(self.latency_ms)?;
        if let Some(ttft) = self.ttft_ms.filter(|t| !(t.is_finite() && *t >= 0.0)) {
            return Err(ZetaError::InvalidInput {
                field: "ttft_ms",
                position: Position::Scalar,
                expected: "finite and >= 0",
                value: float_repr(ttft),
            });
        }
        Ok(())
    }
}

/// Whether an outcome reached a verdict on the model's answer: what the
/// learned router learns (`Some(good)`), with `learn_from_outcomes` on.
fn verdict_of(kind: OutcomeKind, caller_verdict: bool) -> Option<bool> {
    match kind {
        OutcomeKind::Success => Some(true),
        OutcomeKind::ContextLength => Some(false),
        // `record()`'s caller said it failed, without saying how.
        OutcomeKind::Other if caller_verdict => Some(false),
        _ => None,
    }
}

impl RouterCore {
    /// Records a caller's verdict on a decision and gives its replica slot
    /// back (unless `free_slot` is off); true when the learned router
    /// learned it (`learn_from_outcomes`).
    pub fn record(
        &self,
        decision: &Decision,
        success: bool,
        latency_ms: f64,
        free_slot: bool,
    ) -> Result<bool, ZetaError> {
        let outcome = Outcome::verdict(success, latency_ms);
        self.record_inner(decision, &outcome, true, free_slot, None)
    }

    /// Records how a dispatched request ended (see the module's rules) and
    /// gives the replica slot back (unless `free_slot` is off). True when
    /// the learned router learned it (`learn_from_outcomes`: a success as
    /// good, a context-length refusal as bad).
    pub fn record_outcome(
        &self,
        decision: &Decision,
        outcome: Outcome,
        free_slot: bool,
    ) -> Result<bool, ZetaError> {
        self.record_inner(decision, &outcome, false, free_slot, None)
    }

    /// `record_outcome` for an attempt of the request `request_id` (a
    /// gateway's `x-request-id`, which the outcome log keeps).
    pub fn record_attempt(
        &self,
        decision: &Decision,
        outcome: Outcome,
        free_slot: bool,
        request_id: Option<&str>,
    ) -> Result<bool, ZetaError> {
        self.record_inner(decision, &outcome, false, free_slot, request_id)
    }

    /// Gives a decision's replica slot back without recording anything: for
    /// a request abandoned before it was sent, or one whose outcome is
    /// recorded later with `free_slot` off (once its cause is known).
    pub fn release(&self, decision: &Decision) {
        self.release_slot(decision.model, decision.replica);
    }

    /// Remembers that `model` refused requests with `feature` (one bit of
    /// [`crate::request_kinds::FEATURES`]) for `ttl_ms`: it is skipped for
    /// them meanwhile.
    pub fn learn_unserved(&self, model: usize, bit: u32, ttl_ms: u64) {
        if let Some(routed) = self.models.get(model) {
            let now = self.tracker.clock().now_ms();
            routed.unserved.learn(bit, now.saturating_add(ttl_ms));
        }
    }

    /// A quality verdict on a decision's answer, given after its outcome by
    /// `source` (an index of [`SOURCES`]) with `confidence` in `[0, 1]`
    /// (how likely the verdict is right): counted, learned as the soft
    /// target `confidence` (good) or `1 - confidence` (bad) with the
    /// source's weight (when learning is on, the text was known and the
    /// weight is above 0) and told to the sinks; true when learned.
    pub fn feedback(
        &self,
        decision: &Decision,
        good: bool,
        source: usize,
        confidence: f64,
    ) -> Result<bool, ZetaError> {
        if source >= SOURCES.len() {
            return Err(ZetaError::InvalidName {
                field: "source",
                problem: "is out of range",
                value: source.to_string(),
            });
        }
        check_confidence(confidence)?;
        self.verdicts.add(source, decision.model, good);
        let weight = self
            .learning
            .as_ref()
            .and_then(|l| l.source_weights.get(source))
            .copied()
            .unwrap_or(0.0);
        // The verdict as a probability that the answer was good: a judge's
        // "bad, 0.7" is 0.3, a regeneration (bad, 0.7 by default) too.
        let target = if good { confidence } else { 1.0 - confidence };
        let learned = weight > 0.0 && self.learn_target(decision, target, weight)?;
        if learned {
            self.sinks.publish(&OutcomeEvent {
                decision,
                kind: EventKind::Feedback { good },
                now_ms: self.tracker.clock().now_ms(),
                learned: Some(good),
                dispatched: false,
                request_id: None,
            });
        }
        Ok(learned)
    }

    /// The structural check of a decision's answer: `check` is an index of
    /// [`CHECKS`] (0, `ok`, for an answer with nothing wrong). It goes to the
    /// model's record for the request's kind (which scales its capability
    /// for that kind) and is counted as a `structural` verdict; a failure
    /// about the answer's text (empty, degenerate, cut short) is also
    /// learned as a bad verdict. True when learned.
    pub fn check_answer(&self, decision: &Decision, check: usize) -> Result<bool, ZetaError> {
        let Some(name) = CHECKS.get(check) else {
            return Err(ZetaError::InvalidName {
                field: "check",
                problem: "is out of range",
                value: check.to_string(),
            });
        };
        let model = self
            .models
            .get(decision.model)
            .ok_or(ZetaError::ForeignDecision)?;
        let passed = check == 0;
        let now = self.tracker.clock().now_ms();
        model
            .checks
            .add(kind_of(decision.request.needs), passed, now);
        self.verdicts.add(STRUCTURAL, decision.model, passed);
        if passed || !ABOUT_THE_TEXT.contains(name) {
            return Ok(false);
        }
        let weight = self
            .learning
            .as_ref()
            .map_or(0.0, |l| l.source_weights[STRUCTURAL]);
        Ok(weight > 0.0 && self.learn_weighted(decision, false, weight)?)
    }

    /// (checked, failed) among a model's recent structural checks per
    /// request kind ([`KINDS`] order), and each kind's capability factor.
    pub fn kind_checks(&self, model: usize) -> Result<Vec<(u32, u32, f64)>, ZetaError> {
        let routed = self.models.get(model).ok_or(ZetaError::ForeignDecision)?;
        let now = self.tracker.clock().now_ms();
        Ok((0..KINDS.len())
            .map(|kind| {
                let (checked, failed) = routed.checks.recent(kind, now, self.check_ttl_ms);
                (
                    checked,
                    failed,
                    routed.checks.factor(kind, now, self.check_ttl_ms),
                )
            })
            .collect())
    }

    /// Learns one verdict on a decision's request (when learning is on and
    /// its text was known); true when learned.
    pub fn learn(&self, decision: &Decision, success: bool) -> Result<bool, ZetaError> {
        self.learn_weighted(decision, success, 1.0)
    }

    /// [`Self::learn`] for a verdict of `weight` (see
    /// [`crate::learned::OutcomePredictor::update_weighted`]).
    pub fn learn_weighted(
        &self,
        decision: &Decision,
        success: bool,
        weight: f64,
    ) -> Result<bool, ZetaError> {
        self.learn_target(decision, f64::from(u8::from(success)), weight)
    }

    /// Learns a soft verdict: `target`, the probability that the answer
    /// was good, with `weight` (see
    /// [`crate::learned::OutcomePredictor::update_targets`]).
    pub fn learn_target(
        &self,
        decision: &Decision,
        target: f64,
        weight: f64,
    ) -> Result<bool, ZetaError> {
        let (Some(learning), Some(request)) = (&self.learning, &decision.request.learned) else {
            return Ok(false);
        };
        learning.predictor.update_targets(
            &request.features,
            &[(decision.model, target)],
            Some(&request.category),
            None,
            weight.min(crate::learned::MAX_WEIGHT),
        )?;
        Ok(true)
    }

    fn record_inner(
        &self,
        decision: &Decision,
        outcome: &Outcome,
        caller_verdict: bool,
        free_slot: bool,
        request_id: Option<&str>,
    ) -> Result<bool, ZetaError> {
        self.check_open("record()")?;
        outcome.check()?;
        let now = self.tracker.clock().now_ms();
        let taught = self.apply(decision, outcome, caller_verdict, free_slot, now)?;
        let success = outcome.kind == OutcomeKind::Success;
        self.sinks.publish(&OutcomeEvent {
            decision,
            kind: EventKind::Outcome(outcome),
            now_ms: now,
            learned: taught.then_some(success),
            dispatched: !caller_verdict,
            request_id,
        });
        Ok(taught)
    }

    /// Feeds a checked outcome to every part that learns from it.
    fn apply(
        &self,
        decision: &Decision,
        outcome: &Outcome,
        caller_verdict: bool,
        free_slot: bool,
        now: u64,
    ) -> Result<bool, ZetaError> {
        let model = self
            .models
            .get(decision.model)
            .ok_or(ZetaError::ForeignDecision)?;
        let Outcome {
            kind, latency_ms, ..
        } = *outcome;
        if free_slot {
            model.replicas.release(decision.replica);
        }
        // The engine said what it reused: score the prefix index against it.
        if let (Some(cached), Some(affinity), Some(index)) = (
            outcome.cached_tokens,
            &decision.request.affinity,
            model.replicas.policy().prefix_index(),
        ) {
            index.report(
                decision.replica,
                decision.cache,
                affinity,
                outcome.prompt_tokens,
                cached,
            );
        }
        if let Some(counters) = model.counters.get(decision.replica) {
            counters.count(
                kind,
                latency_ms,
                outcome.ttft_ms,
                outcome.prompt_tokens,
                outcome.completion_tokens,
            );
        }
        let success = kind == OutcomeKind::Success;
        let learns = self
            .learning
            .as_ref()
            .is_some_and(|l| l.learn_from_outcomes);
        let taught = match verdict_of(kind, caller_verdict).filter(|_| learns) {
            Some(good) => self.learn(decision, good)?,
            None => false,
        };
        // An answer's time is a measurement, not a verdict: always learned.
        if let (true, Some(learning), Some(request)) =
            (success, &self.learning, &decision.request.learned)
        {
            learning
                .predictor
                .update_latency(&request.features, decision.model, latency_ms)?;
        }
        if !success && !kind.is_replica_fault() {
            if !matches!(kind, OutcomeKind::Cancelled | OutcomeKind::Internal) {
                // It answered: as far as the breaker knows, the replica is up.
                model.replicas.on_outcome(decision.replica, true, now);
            }
            return Ok(taught);
        }
        // A replica that answers, but badly (5xx, cut streams), and is already
        // passed over for its record: its failed probes must not open the
        // breaker, whose cool-down would keep it out long after it could be
        // seen healed. Refused connections and timeouts (down, hung) still
        // do: the breaker is the better tool for a replica that is gone.
        let answers_badly = matches!(
            kind,
            OutcomeKind::ServerError
                | OutcomeKind::RateLimited
                | OutcomeKind::StreamCut
                | OutcomeKind::Other
        );
        let policy = &self.resilience.replica_adapt;
        let probe_of_degraded = answers_badly
            && degraded_by(
                &model.health,
                policy,
                model.replicas.policy().passes_over_slow_replicas(),
            )
            .contains(&decision.replica);
        if !probe_of_degraded {
            model.replicas.on_outcome(decision.replica, success, now);
        }
        if let Some(health) = model.health.get(decision.replica) {
            // A success of a replica with a bad record (a probe, mostly)
            // counts double, so a healed replica is back after two.
            let alpha = if success && health.read().0 > policy.fail_margin {
                policy.alpha.max(0.5)
            } else {
                policy.alpha
            };
            health.observe(success, latency_ms, alpha);
        }
        model
            .ranges
            .count(decision.context, decision.complexity, success);
        if let Some(key) = model
            .leaves
            .get(decision.task)
            .and_then(|l| l.get(decision.replica))
        {
            key.record(now, success, latency_ms);
        }
        Ok(taught)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn only_answers_and_context_refusals_are_verdicts() {
        assert_eq!(verdict_of(OutcomeKind::Success, false), Some(true));
        assert_eq!(verdict_of(OutcomeKind::ContextLength, false), Some(false));
        assert_eq!(verdict_of(OutcomeKind::Other, true), Some(false));
        for kind in [
            OutcomeKind::Other,
            OutcomeKind::ServerError,
            OutcomeKind::Timeout,
            OutcomeKind::ClientError,
            OutcomeKind::Cancelled,
        ] {
            assert_eq!(verdict_of(kind, false), None, "{kind:?}");
        }
    }

    #[test]
    fn bad_latencies_are_errors() {
        assert!(Outcome::verdict(true, f64::NAN).check().is_err());
        let mut outcome = Outcome::verdict(true, 1.0);
        outcome.ttft_ms = Some(-1.0);
        assert!(outcome.check().is_err());
        outcome.ttft_ms = Some(0.5);
        assert!(outcome.check().is_ok());
    }
}
