//! A circuit breaker per replica, as a lock-free state machine.
//!
//! Closed: requests flow; `failure_threshold` consecutive failures open it.
//! Open: no request is sent until `cooldown_ms` has passed, then one probe
//! is let through (half-open). Half-open: one probe at a time; a failure
//! opens it again for another cool-down, `success_threshold` successes in a
//! row close it. A probe whose outcome never comes back (its caller gave up)
//! does not pin the breaker: after a cool-down another probe may go.
//!
//! The whole state is one 64-bit word changed by compare-and-swap, so every
//! reader sees a consistent state and no interleaving can let two probes out
//! at once (see the loom models in `rust/tests/loom_breaker.rs`).

use crate::errors::{float_repr, ZetaError};
use crate::sync::{AtomicU64, Ordering};

/// Thresholds and timing of a breaker. Defaults: open after 5 consecutive
/// failures, probe after 5 s, close after 2 successful probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub cooldown_ms: u64,
    pub success_threshold: u32,
}

/// Counters saturate at this, so thresholds above it could never be reached.
pub const MAX_THRESHOLD: u32 = (1 << COUNT_BITS) - 1;

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown_ms: 5_000,
            success_threshold: 2,
        }
    }
}

impl BreakerConfig {
    /// Validates every field.
    pub fn new(
        failure_threshold: u32,
        cooldown_ms: u64,
        success_threshold: u32,
    ) -> Result<Self, ZetaError> {
        for (field, value) in [
            ("failure_threshold", failure_threshold),
            ("success_threshold", success_threshold),
        ] {
            if value == 0 || value > MAX_THRESHOLD {
                return Err(ZetaError::InvalidConfig {
                    field,
                    expected: "an integer in 1..=1023",
                    value: value.to_string(),
                });
            }
        }
        if cooldown_ms > EPOCH_OFFSET_MS {
            return Err(ZetaError::InvalidConfig {
                field: "cooldown_ms",
                expected: "at most 2**32 (49 days)",
                value: float_repr(cooldown_ms as f64),
            });
        }
        Ok(Self {
            failure_threshold,
            cooldown_ms,
            success_threshold,
        })
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The state's name, as shown in metrics and decisions.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

// The word: state (2 bits) | probe out (1) | failures (10) | successes (10)
// | milliseconds since the breaker was made, when it opened or the probe
// left (40 bits: 34 years).
const STATE_MASK: u64 = 0b11;
const PROBE_BIT: u64 = 1 << 2;
const COUNT_BITS: u32 = 10;
const FAILS_SHIFT: u32 = 3;
const SUCCS_SHIFT: u32 = FAILS_SHIFT + COUNT_BITS;
const SINCE_SHIFT: u32 = SUCCS_SHIFT + COUNT_BITS;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const MAX_SINCE: u64 = (1 << 40) - 1;
/// Stored times start this far above zero, so a hold shorter than the
/// cool-down can be stored as an opening time before the breaker was made.
const EPOCH_OFFSET_MS: u64 = 1 << 32;

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;

#[derive(Clone, Copy)]
struct Word(u64);

impl Word {
    fn state(self) -> u64 {
        self.0 & STATE_MASK
    }
    fn probe_out(self) -> bool {
        self.0 & PROBE_BIT != 0
    }
    fn failures(self) -> u32 {
        ((self.0 >> FAILS_SHIFT) & COUNT_MASK) as u32
    }
    fn successes(self) -> u32 {
        ((self.0 >> SUCCS_SHIFT) & COUNT_MASK) as u32
    }
    fn since(self) -> u64 {
        self.0 >> SINCE_SHIFT
    }
    fn pack(state: u64, probe: bool, failures: u32, successes: u32, since: u64) -> Word {
        Word(
            state
                | if probe { PROBE_BIT } else { 0 }
                | (u64::from(failures.min(MAX_THRESHOLD)) << FAILS_SHIFT)
                | (u64::from(successes.min(MAX_THRESHOLD)) << SUCCS_SHIFT)
                | (since.min(MAX_SINCE) << SINCE_SHIFT),
        )
    }
}

/// What a breaker says about sending a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: send it.
    Allowed,
    /// Half-open (or due to be): this request may be the probe.
    Probe,
    /// Open, or a probe is already out.
    Refused,
}

/// One replica's breaker.
pub struct CircuitBreaker {
    word: AtomicU64,
    /// Clock reading when the breaker was made: times are stored relative
    /// to it so they fit the word.
    base_ms: u64,
}

impl CircuitBreaker {
    /// A closed breaker; `now_ms` anchors its stored times.
    pub fn new(now_ms: u64) -> Self {
        Self {
            word: AtomicU64::new(CLOSED),
            base_ms: now_ms,
        }
    }

    fn relative(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.base_ms) + EPOCH_OFFSET_MS
    }

    /// The current state (an open breaker past its cool-down reads open
    /// until a request claims the probe).
    pub fn state(&self) -> BreakerState {
        match Word(self.word.load(Ordering::Acquire)).state() {
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Consecutive failures counted while closed.
    pub fn consecutive_failures(&self) -> u32 {
        Word(self.word.load(Ordering::Acquire)).failures()
    }

    /// Whether a request could be sent now, without claiming anything:
    /// selection uses it to skip replicas; [`Self::try_admit`] decides.
    pub fn admits(&self, config: &BreakerConfig, now_ms: u64) -> Admission {
        let word = Word(self.word.load(Ordering::Acquire));
        self.admission(word, config, self.relative(now_ms))
    }

    fn admission(&self, word: Word, config: &BreakerConfig, now: u64) -> Admission {
        let cooled = now.saturating_sub(word.since()) >= config.cooldown_ms;
        match word.state() {
            CLOSED => Admission::Allowed,
            OPEN if cooled => Admission::Probe,
            HALF_OPEN if !word.probe_out() || cooled => Admission::Probe,
            _ => Admission::Refused,
        }
    }

    /// Admits a request: always when closed; as the one probe when it is
    /// half-open (or open past its cool-down) and no probe is out, by a CAS
    /// so two racing requests cannot both be the probe.
    pub fn try_admit(&self, config: &BreakerConfig, now_ms: u64) -> Admission {
        let now = self.relative(now_ms);
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            let word = Word(current);
            match self.admission(word, config, now) {
                Admission::Allowed => return Admission::Allowed,
                Admission::Refused => return Admission::Refused,
                Admission::Probe => {
                    let successes = if word.state() == HALF_OPEN {
                        word.successes()
                    } else {
                        0
                    };
                    let next = Word::pack(HALF_OPEN, true, 0, successes, now);
                    match self.word.compare_exchange_weak(
                        current,
                        next.0,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return Admission::Probe,
                        Err(actual) => current = actual,
                    }
                }
            }
        }
    }

    /// Counts an outcome; returns the state it leaves the breaker in.
    pub fn on_outcome(&self, config: &BreakerConfig, success: bool, now_ms: u64) -> BreakerState {
        let now = self.relative(now_ms);
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            let word = Word(current);
            let next = match (word.state(), success) {
                (CLOSED, true) => Word::pack(CLOSED, false, 0, 0, 0),
                (CLOSED, false) if word.failures() + 1 >= config.failure_threshold => {
                    Word::pack(OPEN, false, 0, 0, now)
                }
                (CLOSED, false) => Word::pack(CLOSED, false, word.failures() + 1, 0, 0),
                (HALF_OPEN, true) if word.successes() + 1 >= config.success_threshold => {
                    Word::pack(CLOSED, false, 0, 0, 0)
                }
                // The probe came back well: the next request may probe at once.
                (HALF_OPEN, true) => Word::pack(HALF_OPEN, false, 0, word.successes() + 1, 0),
                (HALF_OPEN, false) => Word::pack(OPEN, false, 0, 0, now),
                // Late outcomes of requests sent before it opened change nothing:
                // the cool-down runs from the failure that opened it.
                _ => word,
            };
            if next.0 == current {
                return self.state();
            }
            match self.word.compare_exchange_weak(
                current,
                next.0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return match next.state() {
                        OPEN => BreakerState::Open,
                        HALF_OPEN => BreakerState::HalfOpen,
                        _ => BreakerState::Closed,
                    }
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Opens the breaker for at least `hold_ms` from `now_ms` (a server asked
    /// for a pause with `Retry-After`), then it probes as after a cool-down.
    /// A longer hold already in place is kept.
    pub fn hold(&self, config: &BreakerConfig, hold_ms: u64, now_ms: u64) {
        let until = self.relative(now_ms).saturating_add(hold_ms);
        // Stored as an opening time whose cool-down ends at `until`.
        let since = until.saturating_sub(config.cooldown_ms);
        let _ = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                let word = Word(current);
                let keeps = word.state() == OPEN && word.since() >= since;
                (!keeps).then_some(Word::pack(OPEN, false, 0, 0, since).0)
            });
    }

    /// How long until it admits a request again (0 when it does now): the
    /// rest of an open breaker's cool-down, for a `Retry-After`.
    pub fn admits_in_ms(&self, config: &BreakerConfig, now_ms: u64) -> u64 {
        let word = Word(self.word.load(Ordering::Acquire));
        match self.admission(word, config, self.relative(now_ms)) {
            Admission::Refused => config
                .cooldown_ms
                .saturating_sub(self.relative(now_ms).saturating_sub(word.since())),
            _ => 0,
        }
    }

    /// Closes the breaker (an operator's or a health check's word).
    pub fn reset(&self) {
        self.word.store(CLOSED, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig::new(3, 1_000, 2).unwrap()
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (breaker, c) = (CircuitBreaker::new(500), config());
        breaker.on_outcome(&c, false, 600);
        breaker.on_outcome(&c, false, 600);
        breaker.on_outcome(&c, true, 600);
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "a success resets the count"
        );
        for _ in 0..2 {
            assert_eq!(breaker.on_outcome(&c, false, 700), BreakerState::Closed);
        }
        assert_eq!(breaker.on_outcome(&c, false, 700), BreakerState::Open);
        assert_eq!(breaker.try_admit(&c, 1_699), Admission::Refused);
    }

    #[test]
    fn one_probe_after_the_cooldown_then_closes() {
        let (breaker, c) = (CircuitBreaker::new(0), config());
        for _ in 0..3 {
            breaker.on_outcome(&c, false, 10);
        }
        assert_eq!(breaker.admits(&c, 1_010), Admission::Probe);
        assert_eq!(breaker.try_admit(&c, 1_010), Admission::Probe);
        assert_eq!(
            breaker.try_admit(&c, 1_011),
            Admission::Refused,
            "one probe"
        );
        assert_eq!(breaker.on_outcome(&c, true, 1_020), BreakerState::HalfOpen);
        assert_eq!(breaker.try_admit(&c, 1_021), Admission::Probe);
        assert_eq!(breaker.on_outcome(&c, true, 1_030), BreakerState::Closed);
        assert_eq!(breaker.try_admit(&c, 1_031), Admission::Allowed);
    }

    #[test]
    fn a_failed_probe_reopens_for_a_full_cooldown() {
        let (breaker, c) = (CircuitBreaker::new(0), config());
        for _ in 0..3 {
            breaker.on_outcome(&c, false, 0);
        }
        assert_eq!(breaker.try_admit(&c, 1_000), Admission::Probe);
        assert_eq!(breaker.on_outcome(&c, false, 1_500), BreakerState::Open);
        assert_eq!(breaker.try_admit(&c, 2_499), Admission::Refused);
        assert_eq!(breaker.try_admit(&c, 2_500), Admission::Probe);
    }

    #[test]
    fn a_lost_probe_does_not_pin_it() {
        let (breaker, c) = (CircuitBreaker::new(0), config());
        for _ in 0..3 {
            breaker.on_outcome(&c, false, 0);
        }
        assert_eq!(breaker.try_admit(&c, 1_000), Admission::Probe);
        assert_eq!(breaker.try_admit(&c, 1_999), Admission::Refused);
        assert_eq!(breaker.try_admit(&c, 2_000), Admission::Probe, "lost probe");
    }

    #[test]
    fn late_outcomes_while_open_change_nothing() {
        let (breaker, c) = (CircuitBreaker::new(0), config());
        for _ in 0..3 {
            breaker.on_outcome(&c, false, 100);
        }
        breaker.on_outcome(&c, true, 200);
        breaker.on_outcome(&c, false, 900);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.try_admit(&c, 1_100), Admission::Probe);
    }

    #[test]
    fn a_hold_keeps_it_open_for_the_time_asked() {
        let (breaker, c) = (CircuitBreaker::new(0), config());
        breaker.hold(&c, 3_000, 100);
        assert_eq!(breaker.try_admit(&c, 3_099), Admission::Refused);
        breaker.hold(&c, 10, 200);
        assert_eq!(
            breaker.try_admit(&c, 3_099),
            Admission::Refused,
            "longer hold kept"
        );
        assert_eq!(breaker.try_admit(&c, 3_100), Admission::Probe);
        let short = CircuitBreaker::new(0);
        short.hold(&c, 10, 100);
        assert_eq!(short.try_admit(&c, 109), Admission::Refused);
        assert_eq!(short.try_admit(&c, 110), Admission::Probe);
    }

    #[test]
    fn config_is_validated() {
        assert!(BreakerConfig::new(0, 1, 1).is_err());
        assert!(BreakerConfig::new(1, 1, 1024).is_err());
        assert!(BreakerConfig::new(1, 1 << 41, 1).is_err());
        let err = BreakerConfig::new(0, 1, 1).unwrap_err().to_string();
        assert!(err.contains("failure_threshold"), "{err}");
    }
}
