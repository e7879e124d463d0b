//! The adaptive score: capability blended with live performance, penalised when
//! a candidate is unreliable or slow. The formula lives here and nowhere else.
//!
//! Size: ~520 lines of code (the scalar, batch and AVX2 paths must stay side by side to stay bit-
//! identical) and ~150 of tests.

use crate::config::AdaptiveConfig;
use crate::errors::{float_repr, Position, ZetaError};
use crate::penalties::{penalty_factor, Penalties};

/// Highest capability score a model can have for a request.
pub const MAX_CAPABILITY: f64 = 100.0;

/// A per-candidate request count, as it arrives: `f64` from float arrays,
/// `i64` from NumPy's default integer arrays, `u64` from Rust callers.
///
/// The batch loop asks the two questions it needs in the count's own type:
/// AVX2 has no 64-bit integer-to-float conversion, so converting every count
/// made the loop scalar (criterion `best/64`: 200 ns converting, see the
/// README for the figure after).
pub trait RequestCount: Copy + Send + Sync {
    /// The count as a float; exact below 2^53, far beyond any window.
    fn as_f64(self) -> f64;
    /// Finite and >= 0.
    fn is_valid_count(self) -> bool;
    /// At least `minimum` (given in this type by [`RequestCount::threshold`]).
    fn reaches(self, minimum: Self) -> bool;
    /// `min_requests_for_performance` in this type.
    fn threshold(minimum: u64) -> Self;
}

impl RequestCount for f64 {
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn is_valid_count(self) -> bool {
        (0.0..f64::INFINITY).contains(&self)
    }
    #[inline(always)]
    fn reaches(self, minimum: Self) -> bool {
        self >= minimum
    }
    #[inline(always)]
    fn threshold(minimum: u64) -> Self {
        minimum as f64
    }
}

impl RequestCount for i64 {
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn is_valid_count(self) -> bool {
        self >= 0
    }
    #[inline(always)]
    fn reaches(self, minimum: Self) -> bool {
        self >= minimum
    }
    #[inline(always)]
    fn threshold(minimum: u64) -> Self {
        i64::try_from(minimum).unwrap_or(i64::MAX)
    }
}

impl RequestCount for u64 {
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn is_valid_count(self) -> bool {
        true
    }
    #[inline(always)]
    fn reaches(self, minimum: Self) -> bool {
        self >= minimum
    }
    #[inline(always)]
    fn threshold(minimum: u64) -> Self {
        minimum
    }
}

/// Everything a decision record says about one candidate's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreBreakdown {
    /// The capability score the candidate came in with (0..100).
    pub capability_score: f64,
    /// Latency on the 0..100 scale (100 at 0 ms, 0 at twice the acceptable latency).
    pub latency_score: f64,
    /// The weighted blend before penalties.
    pub blended_score: f64,
    /// The final score: the penalised blend, or the capability alone when
    /// there is not yet enough performance data.
    pub performance_score: f64,
    /// Whether enough requests were seen for live performance to count.
    pub has_performance_data: bool,
    /// The success rate that was scored (0..1).
    pub success_rate: f64,
    /// The mean latency that was scored, in milliseconds.
    pub avg_latency_ms: f64,
    /// The number of requests behind the live metrics.
    pub requests: f64,
    /// The penalties that applied (none without performance data).
    pub penalties: Penalties,
    /// The product of the applied penalty factors (1.0 when none applied).
    pub penalty_factor: f64,
}

impl ScoreBreakdown {
    /// How far live performance moved the score away from the capability.
    pub fn performance_adjustment(&self) -> f64 {
        self.performance_score - self.capability_score
    }

    /// Applies one more penalty (the candidate-set rules, such as
    /// [`Penalties::RELATIVE_LATENCY`]) with its factor.
    pub fn add_penalty(&mut self, penalty: Penalties, factor: f64) {
        self.performance_score *= factor;
        self.penalty_factor *= factor;
        self.penalties = self.penalties.with(penalty);
    }
}

/// A learned capability blended into the configured one: `ramp` (0..1) is
/// how far the learned value has earned its place.
#[inline]
pub fn blend_learned(configured: f64, learned: f64, ramp: f64) -> f64 {
    (1.0 - ramp) * configured + ramp * learned
}

/// The capability term of one candidate for one request: the configured
/// capability, blended with the learned one when learning is on (`learned`:
/// its capability and ramp), less the request's expected cost in
/// capability points (the cost/quality knob), never below 0.
#[inline]
pub fn capability_term(configured: f64, learned: Option<(f64, f64)>, cost_points: f64) -> f64 {
    let capability = learned.map_or(configured, |(cap, ramp)| {
        blend_learned(configured, cap, ramp)
    });
    if cost_points > 0.0 {
        (capability - cost_points).max(0.0)
    } else {
        capability
    }
}

/// Scores candidates under one validated [`AdaptiveConfig`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveScorer {
    config: AdaptiveConfig,
    // 2 * max_acceptable_latency_ms and 100 / that, precomputed.
    two_max_latency: f64,
    latency_scale: f64,
}

impl AdaptiveScorer {
    /// A scorer for `config`, which is validated again here because its
    /// fields are public and may have been changed after it was built.
    pub fn new(config: AdaptiveConfig) -> Result<Self, ZetaError> {
        config.validate()?;
        let two_max_latency = 2.0 * config.max_acceptable_latency_ms;
        Ok(Self {
            config,
            two_max_latency,
            latency_scale: 100.0 / two_max_latency,
        })
    }

    /// The configuration this scorer applies.
    pub fn config(&self) -> &AdaptiveConfig {
        &self.config
    }

    /// `clamp(100 - latency / (2 * max_acceptable) * 100, 0, 100)`.
    #[inline(always)]
    pub fn latency_score(&self, latency_ms: f64) -> f64 {
        // (2 * max - latency) * (100 / (2 * max)) is the specification's
        // 100 - latency / (2 * max) * 100 rearranged so the batch loop
        // multiplies instead of dividing (one vdivpd per 4 candidates cost
        // ~25 % of `best` over 64). Within an ulp of the division; exact for
        // the worked examples.
        ((self.two_max_latency - latency_ms) * self.latency_scale).clamp(0.0, 100.0)
    }

    /// The weighted blend of capability, success rate and latency score.
    #[inline(always)]
    fn blend(&self, capability: f64, success_rate: f64, latency_score: f64) -> f64 {
        let c = &self.config;
        capability * c.capability_weight
            + success_rate * 100.0 * c.success_rate_weight
            + latency_score * c.latency_weight
    }

    /// The final score of valid inputs, without the record around it: the
    /// batch and selection paths run this, and [`Self::score`] runs the same
    /// three steps, so they cannot disagree.
    #[inline(always)]
    fn final_score(
        &self,
        capability: f64,
        success_rate: f64,
        latency_ms: f64,
        has_performance_data: bool,
    ) -> f64 {
        let blended = self.blend(capability, success_rate, self.latency_score(latency_ms));
        let penalised = blended * penalty_factor(&self.config, success_rate, latency_ms);
        if has_performance_data {
            penalised
        } else {
            capability
        }
    }

    /// Scores one candidate and explains the result.
    pub fn score(
        &self,
        capability: f64,
        success_rate: f64,
        avg_latency_ms: f64,
        requests: u64,
    ) -> Result<ScoreBreakdown, ZetaError> {
        let has_performance_data = requests >= self.config.min_requests_for_performance;
        let requests = requests as f64;
        if !inputs_valid(capability, success_rate, avg_latency_ms, true) {
            return Err(describe_invalid(
                Position::Scalar,
                capability,
                success_rate,
                avg_latency_ms,
                requests,
            ));
        }
        let latency_score = self.latency_score(avg_latency_ms);
        let blended_score = self.blend(capability, success_rate, latency_score);
        let (penalties, factor) = if has_performance_data {
            (
                Penalties::for_metrics(&self.config, success_rate, avg_latency_ms),
                penalty_factor(&self.config, success_rate, avg_latency_ms),
            )
        } else {
            (Penalties::NONE, 1.0)
        };
        let performance_score = if has_performance_data {
            blended_score * factor
        } else {
            capability
        };
        debug_assert_eq!(
            performance_score,
            self.final_score(
                capability,
                success_rate,
                avg_latency_ms,
                has_performance_data
            )
        );
        Ok(ScoreBreakdown {
            capability_score: capability,
            latency_score,
            blended_score,
            performance_score,
            has_performance_data,
            success_rate,
            avg_latency_ms,
            requests,
            penalties,
            penalty_factor: factor,
        })
    }

    /// Scores every candidate into `out`. All slices must have the same length.
    /// Inputs are validated in the same pass; on a bad value nothing in `out`
    /// is meaningful and the error names the first bad field and index.
    pub fn score_into<R: RequestCount>(
        &self,
        capability: &[f64],
        success_rate: &[f64],
        avg_latency_ms: &[f64],
        requests: &[R],
        out: &mut [f64],
    ) -> Result<(), ZetaError> {
        check_lengths(capability.len(), success_rate, avg_latency_ms, requests)?;
        check_len("out", capability.len(), out.len())?;
        #[cfg(target_arch = "x86_64")]
        let all_valid = if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe {
                self.score_kernel_avx2(capability, success_rate, avg_latency_ms, requests, out)
            }
        } else {
            self.score_kernel(capability, success_rate, avg_latency_ms, requests, out)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let all_valid = self.score_kernel(capability, success_rate, avg_latency_ms, requests, out);
        if all_valid {
            Ok(())
        } else {
            Err(first_invalid(
                capability,
                success_rate,
                avg_latency_ms,
                requests,
            ))
        }
    }

    /// The batch loop; returns whether every input was valid. Lengths are
    /// checked by the caller (zip stops at the shortest anyway).
    #[inline(always)]
    fn score_kernel<R: RequestCount>(
        &self,
        capability: &[f64],
        success_rate: &[f64],
        avg_latency_ms: &[f64],
        requests: &[R],
        out: &mut [f64],
    ) -> bool {
        let minimum = R::threshold(self.config.min_requests_for_performance);
        let mut all_valid = true;
        for ((((slot, &cap), &rate), &latency), &count) in out
            .iter_mut()
            .zip(capability)
            .zip(success_rate)
            .zip(avg_latency_ms)
            .zip(requests)
        {
            // `&` rather than `&&`: no branch, so the loop vectorises.
            all_valid &= inputs_valid(cap, rate, latency, count.is_valid_count());
            *slot = self.final_score(cap, rate, latency, count.reaches(minimum));
        }
        all_valid
    }

    /// The same loop compiled for AVX2: the x86-64 baseline (SSE2) has no
    /// vector blend, so LLVM keeps the selects scalar there. Measured with
    /// `cargo bench --bench scoring -- score_into/4096`: 14.0 us on SSE2,
    /// 6.2 us with AVX2. No FMA is enabled, and Rust never contracts `a*b+c`,
    /// so both paths give bit-identical scores.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn score_kernel_avx2<R: RequestCount>(
        &self,
        capability: &[f64],
        success_rate: &[f64],
        avg_latency_ms: &[f64],
        requests: &[R],
        out: &mut [f64],
    ) -> bool {
        self.score_kernel(capability, success_rate, avg_latency_ms, requests, out)
    }

    /// Scores every candidate into a new vector.
    pub fn score_vec<R: RequestCount>(
        &self,
        capability: &[f64],
        success_rate: &[f64],
        avg_latency_ms: &[f64],
        requests: &[R],
    ) -> Result<Vec<f64>, ZetaError> {
        let mut out = vec![0.0; capability.len()];
        self.score_into(capability, success_rate, avg_latency_ms, requests, &mut out)?;
        Ok(out)
    }

    /// The index and score of the best candidate; ties go to the lowest index.
    pub fn best<R: RequestCount>(
        &self,
        capability: &[f64],
        success_rate: &[f64],
        avg_latency_ms: &[f64],
        requests: &[R],
    ) -> Result<(usize, f64), ZetaError> {
        check_lengths(capability.len(), success_rate, avg_latency_ms, requests)?;
        if capability.is_empty() {
            return Err(ZetaError::NoCandidates {
                operation: "best()",
            });
        }
        // Score a block at a time with the vectorised kernel, then scan it:
        // the scan is a short dependent chain, the scoring is not.
        let mut scores = [0.0_f64; BEST_BLOCK];
        let mut best_index = 0;
        let mut best_score = f64::NEG_INFINITY;
        let blocks = capability
            .chunks(BEST_BLOCK)
            .zip(success_rate.chunks(BEST_BLOCK))
            .zip(avg_latency_ms.chunks(BEST_BLOCK))
            .zip(requests.chunks(BEST_BLOCK));
        for (block_index, (((cap, rate), latency), count)) in blocks.enumerate() {
            let start = block_index * BEST_BLOCK;
            let block = scores.get_mut(..cap.len()).unwrap_or_default();
            self.score_into(cap, rate, latency, count, block)
                .map_err(|err| err.offset_by(start))?;
            // Two vectorisable passes (max, then its first position) beat
            // one branchy scan with a loop-carried dependency.
            let block_max = max_of(block);
            // Strictly greater: the first of equal scores wins, across blocks too.
            if block_max > best_score {
                if let Some(offset) = block.iter().position(|&score| score == block_max) {
                    best_score = block_max;
                    best_index = start + offset;
                }
            }
        }
        Ok((best_index, best_score))
    }
}

/// The largest of finite scores, with four independent running maxima: one
/// chain would wait ~4 cycles per candidate on the previous comparison.
#[inline]
fn max_of(scores: &[f64]) -> f64 {
    let mut lanes = [f64::NEG_INFINITY; 4];
    let mut chunks = scores.chunks_exact(4);
    for chunk in &mut chunks {
        for (lane, &score) in lanes.iter_mut().zip(chunk) {
            *lane = if score > *lane { score } else { *lane };
        }
    }
    let mut max = chunks
        .remainder()
        .iter()
        .fold(f64::NEG_INFINITY, |m, &s| if s > m { s } else { m });
    for lane in lanes {
        max = if lane > max { lane } else { max };
    }
    max
}

/// Candidates scored per block by [`AdaptiveScorer::best`]: 512 bytes of
/// scores on the stack, and 64 covers the widest fan-out we expect in one go.
const BEST_BLOCK: usize = 64;

/// Valid inputs: capability in [0, 100], success rate in [0, 1], latency and
/// request count finite and >= 0. Every comparison is false for NaN.
#[inline(always)]
fn inputs_valid(capability: f64, success_rate: f64, latency_ms: f64, count_valid: bool) -> bool {
    (0.0..=MAX_CAPABILITY).contains(&capability)
        & (0.0..=1.0).contains(&success_rate)
        & (0.0..f64::INFINITY).contains(&latency_ms)
        & count_valid
}

/// The error for the first invalid field of one candidate at `index`.
fn describe_invalid(
    position: Position,
    capability: f64,
    success_rate: f64,
    latency_ms: f64,
    requests: f64,
) -> ZetaError {
    let (field, expected, value) = if !(0.0..=MAX_CAPABILITY).contains(&capability) {
        ("capability", "in [0, 100]", capability)
    } else if !(0.0..=1.0).contains(&success_rate) {
        ("success_rate", "in [0, 1]", success_rate)
    } else if !(latency_ms >= 0.0 && latency_ms.is_finite()) {
        ("avg_latency_ms", "finite and >= 0", latency_ms)
    } else {
        ("requests", "finite and >= 0", requests)
    };
    ZetaError::InvalidInput {
        field,
        position,
        expected,
        value: float_repr(value),
    }
}

/// Slow path, run only once a batch is known to hold a bad value.
#[cold]
fn first_invalid<R: RequestCount>(
    capability: &[f64],
    success_rate: &[f64],
    avg_latency_ms: &[f64],
    requests: &[R],
) -> ZetaError {
    let rows = capability
        .iter()
        .zip(success_rate)
        .zip(avg_latency_ms)
        .zip(requests)
        .enumerate();
    for (index, (((&cap, &rate), &latency), &count)) in rows {
        if !inputs_valid(cap, rate, latency, count.is_valid_count()) {
            return describe_invalid(Position::Flat(index), cap, rate, latency, count.as_f64());
        }
    }
    // Unreachable when called after a failed validation pass; kept total so
    // that no panic can reach the Python boundary.
    ZetaError::NoCandidates {
        operation: "validation",
    }
}

fn check_len(field: &'static str, expected: usize, got: usize) -> Result<(), ZetaError> {
    if expected == got {
        Ok(())
    } else {
        Err(ZetaError::LengthMismatch {
            field,
            expected,
            got,
        })
    }
}

fn check_lengths<R>(
    expected: usize,
    success_rate: &[f64],
    avg_latency_ms: &[f64],
    requests: &[R],
) -> Result<(), ZetaError> {
    check_len("success_rate", expected, success_rate.len())?;
    check_len("avg_latency_ms", expected, avg_latency_ms.len())?;
    check_len("requests", expected, requests.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scorer() -> AdaptiveScorer {
        AdaptiveScorer::new(AdaptiveConfig::default()).unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn worked_example_reliable_fast_model_gains() {
        let b = scorer().score(85.0, 0.99, 120.0, 100).unwrap();
        assert!(close(b.latency_score, 88.0));
        assert!(close(b.performance_score, 88.95));
        assert!(close(b.performance_adjustment(), 3.95));
        assert!(b.has_performance_data);
        assert!(b.penalties.is_empty());
    }

    #[test]
    fn worked_example_unreliable_model_is_halved() {
        let b = scorer().score(88.0, 0.60, 450.0, 100).unwrap();
        assert!(close(b.blended_score, 76.05));
        assert!(close(b.performance_score, 38.025));
        assert!(close(b.performance_adjustment(), -49.975));
        assert_eq!(b.penalties, Penalties::LOW_SUCCESS_RATE);
    }

    #[test]
    fn latency_score_scale() {
        let s = scorer();
        for (latency, expected) in [
            (0.0, 100.0),
            (250.0, 75.0),
            (500.0, 50.0),
            (1000.0, 0.0),
            (5000.0, 0.0),
        ] {
            assert!(close(s.latency_score(latency), expected), "{latency}");
        }
    }

    #[test]
    fn too_few_requests_means_capability_only() {
        let b = scorer().score(70.0, 0.1, 4000.0, 9).unwrap();
        assert!(!b.has_performance_data);
        assert_eq!(b.performance_score, 70.0);
        assert_eq!(b.performance_adjustment(), 0.0);
        assert!(b.penalties.is_empty());
        assert!(
            scorer()
                .score(70.0, 0.1, 4000.0, 10)
                .unwrap()
                .has_performance_data
        );
    }

    #[test]
    fn both_penalties_give_point_four() {
        let b = scorer().score(80.0, 0.5, 800.0, 50).unwrap();
        assert!(close(b.penalty_factor, 0.4));
        assert!(close(b.performance_score, b.blended_score * 0.4));
    }

    #[test]
    fn batch_matches_single_scores() {
        let s = scorer();
        let cap = [85.0, 88.0, 60.0, 99.0];
        let rate = [0.99, 0.60, 1.0, 0.0];
        let latency = [120.0, 450.0, 0.0, 10_000.0];
        let requests = [100_i64, 100, 3, 10];
        let scores = s.score_vec(&cap, &rate, &latency, &requests).unwrap();
        for i in 0..4 {
            let single = s
                .score(cap[i], rate[i], latency[i], requests[i] as u64)
                .unwrap();
            assert_eq!(scores[i], single.performance_score);
        }
    }

    #[test]
    fn best_breaks_ties_by_lowest_index() {
        let s = scorer();
        let (index, _) = s
            .best(&[50.0, 90.0, 90.0], &[1.0; 3], &[0.0; 3], &[0_u64; 3])
            .unwrap();
        assert_eq!(index, 1);
    }

    #[test]
    fn best_of_none_is_an_error() {
        let empty: [f64; 0] = [];
        let err = scorer().best(&empty, &empty, &empty, &empty).unwrap_err();
        assert_eq!(
            err,
            ZetaError::NoCandidates {
                operation: "best()"
            }
        );
    }

    #[test]
    fn invalid_inputs_name_field_and_index() {
        let s = scorer();
        let err = s
            .score_vec(&[50.0, 50.0], &[1.0, f64::NAN], &[1.0, 1.0], &[1.0, 1.0])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "success_rate[1] must be in [0, 1], got nan"
        );
        let err = s
            .best(&[50.0], &[1.0], &[f64::INFINITY], &[1.0])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "avg_latency_ms[0] must be finite and >= 0, got inf"
        );
        let err = s.best(&[50.0], &[1.0], &[1.0], &[-1_i64]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "requests[0] must be finite and >= 0, got -1.0"
        );
        let err = s.score(101.0, 1.0, 1.0, 1).unwrap_err();
        assert_eq!(err.to_string(), "capability must be in [0, 100], got 101.0");
    }

    #[test]
    fn mismatched_lengths_are_rejected() {
        let err = scorer()
            .score_vec(&[1.0, 2.0], &[1.0], &[1.0, 1.0], &[1.0, 1.0])
            .unwrap_err();
        assert_eq!(
            err,
            ZetaError::LengthMismatch {
                field: "success_rate",
                expected: 2,
                got: 1
            }
        );
    }

    #[test]
    fn empty_batch_is_empty() {
        let empty: [f64; 0] = [];
        assert!(scorer()
            .score_vec(&empty, &empty, &empty, &empty)
            .unwrap()
            .is_empty());
    }
}
