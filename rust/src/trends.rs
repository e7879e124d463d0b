//! Change detection on an outcome stream: each model's (and each model x
//! task's) success and latency detectors, fed by the core as it records an
//! outcome, with no Python call on the request path.
//!
//! Two tests run on each stream, cheap per observation:
//!
//! - **sudden**: the last `window` observations against the long-run
//!   baseline (an EWMA frozen while an alarm builds): the failure share over
//!   the window, or the median log latency, far above it. Fires within about
//!   half a window of a hard fault.
//! - **drift**: Page-Hinkley on the same series, standardised for latency:
//!   the cumulative excess over the baseline plus a tolerance `delta`,
//!   alarmed when it climbs `threshold` above its minimum. Catches a
//!   worsening too small for the window test. An alarm raised within
//!   `window` observations of the statistic leaving calm (a quarter of the
//!   threshold) is reported as sudden, a slower climb as drift.
//!
//! The baseline follows the stream slowly (`alpha`) and only while neither
//! test is building towards an alarm, so a fault never becomes the norm.
//! Both need `warmup` observations first; after an alarm the detector
//! restarts from the new level, so one fault gives one alarm.
//!
//! [`TrendWatch`] holds the detectors of a router's models and queues what
//! they detect (bounded: a change past the bound is counted, not kept); the
//! alert rules, cool-downs and sinks stay in Python and drain the queue.
//! Every buffer is allocated when the watch is built: an observation takes
//! two uncontended locks (the model's, the model x task's) and allocates
//! nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::errors::{float_repr, ZetaError};
use crate::outcome::OutcomeKind;
use crate::routing::{EventKind, OutcomeEvent, OutcomeSink, TASKS};

/// The most observations a detector's window may hold (its buffers are
/// allocated up front).
pub const MAX_WINDOW: usize = 100_000;
/// What a window must be, as its error says.
pub const WINDOW_EXPECTED: &str = ">= 2 and <= 100000";
/// How many detected changes a [`TrendWatch`] holds for its reader by default.
pub const DEFAULT_CAPACITY: usize = 1024;
/// The smallest latency taken, so its log stays finite.
const LATENCY_FLOOR_MS: f64 = 0.01;
/// The smallest spread of log latency taken (5 %), so a very steady model
/// is not alarmed by noise.
const SIGMA_FLOOR: f64 = 0.05;

/// What a change is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Success,
    Latency,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::Success => "success",
            Metric::Latency => "latency",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Metric::Success, Metric::Latency]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// How a change came: within a window of leaving calm, or slowly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Sudden,
    Drift,
}

impl ChangeKind {
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Sudden => "sudden",
            ChangeKind::Drift => "drift",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [ChangeKind::Sudden, ChangeKind::Drift]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// A detected change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Change {
    pub metric: Metric,
    pub kind: ChangeKind,
    /// The recent level (failure share, or latency in ms).
    pub value: f64,
    /// The level before (same unit).
    pub baseline: f64,
}

fn invalid(field: &'static str, expected: &'static str, value: String) -> ZetaError {
    ZetaError::InvalidConfig {
        field,
        expected,
        value,
    }
}

/// `value` must be finite (and within what `ok` accepts).
fn check_float(
    field: &'static str,
    expected: &'static str,
    value: f64,
    ok: impl Fn(f64) -> bool,
) -> Result<(), ZetaError> {
    if value.is_finite() && ok(value) {
        Ok(())
    } else {
        Err(invalid(field, expected, float_repr(value)))
    }
}

/// What both detectors take: the window, the warm-up, the baseline's
/// weight and the drift test's tolerance and threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Common {
    pub window: usize,
    pub warmup: u64,
    pub alpha: f64,
    pub delta: f64,
    pub threshold: f64,
}

impl Common {
    fn validate(&self) -> Result<(), ZetaError> {
        if !(2..=MAX_WINDOW).contains(&self.window) {
            return Err(invalid("window", WINDOW_EXPECTED, self.window.to_string()));
        }
        if self.warmup < 1 {
            return Err(invalid("warmup", ">= 1", self.warmup.to_string()));
        }
        check_float("alpha", "in (0, 1]", self.alpha, |a| a > 0.0 && a <= 1.0)?;
        check_float("delta", "finite", self.delta, |_| true)?;
        check_float("threshold", "finite and > 0", self.threshold, |t| t > 0.0)
    }
}

/// The success detector's settings (the defaults are the alerts' own).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SuccessParams {
    pub common: Common,
    /// How far the window's failure share must rise above the baseline.
    pub sudden_margin: f64,
}

impl Default for SuccessParams {
    fn default() -> Self {
        Self {
            common: Common {
                window: 20,
                warmup: 50,
                alpha: 0.002,
                delta: 0.05,
                threshold: 8.0,
            },
            sudden_margin: 0.25,
        }
    }
}

/// The latency detector's settings (the defaults are the alerts' own).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyParams {
    pub common: Common,
    /// How many standard deviations of log latency the median must rise.
    pub sudden_sigmas: f64,
    /// ... and at least by this factor.
    pub sudden_ratio: f64,
}

impl Default for LatencyParams {
    fn default() -> Self {
        Self {
            common: Common {
                window: 20,
                warmup: 50,
                alpha: 0.002,
                delta: 0.5,
                threshold: 25.0,
            },
            sudden_sigmas: 4.0,
            sudden_ratio: 1.5,
        }
    }
}

/// Page-Hinkley for an increase: alarm when the cumulative excess over
/// `delta` climbs `threshold` above its running minimum.
#[derive(Debug, Clone)]
struct PageHinkley {
    delta: f64,
    threshold: f64,
    cumulative: f64,
    minimum: f64,
    /// Observations since the statistic was last calm (under a quarter of
    /// the threshold): how long the change took to raise the alarm.
    since_calm: u64,
}

impl PageHinkley {
    fn new(delta: f64, threshold: f64) -> Self {
        Self {
            delta,
            threshold,
            cumulative: 0.0,
            minimum: 0.0,
            since_calm: 0,
        }
    }

    fn step(&mut self, excess: f64) -> bool {
        self.cumulative += excess - self.delta;
        self.minimum = self.minimum.min(self.cumulative);
        self.since_calm = if self.building() {
            self.since_calm + 1
        } else {
            0
        };
        self.cumulative - self.minimum > self.threshold
    }

    /// Whether the statistic is a quarter of the way to an alarm.
    fn building(&self) -> bool {
        self.cumulative - self.minimum > self.threshold / 4.0
    }

    fn reset(&mut self) {
        self.cumulative = 0.0;
        self.minimum = 0.0;
        self.since_calm = 0;
    }
}

/// The last `capacity` observations, oldest first, in a ring allocated once.
#[derive(Debug, Clone)]
struct Recent {
    values: Box<[f64]>,
    /// Where the next observation goes.
    next: usize,
    len: usize,
}

impl Recent {
    fn new(capacity: usize) -> Self {
        Self {
            values: vec![0.0; capacity].into_boxed_slice(),
            next: 0,
            len: 0,
        }
    }

    fn capacity(&self) -> usize {
        self.values.len()
    }

    fn full(&self) -> bool {
        self.len == self.capacity()
    }

    /// Appends `x`; returns the observation it pushed out, if any.
    fn push(&mut self, x: f64) -> Option<f64> {
        let capacity = self.capacity();
        let slot = self.values.get_mut(self.next)?;
        let evicted = (self.len == capacity).then_some(*slot);
        *slot = x;
        self.next = (self.next + 1) % capacity;
        self.len = (self.len + 1).min(capacity);
        evicted
    }

    /// The mean of the last `count` observations (at least one, at most all).
    fn tail_mean(&self, count: u64) -> f64 {
        let capacity = self.capacity();
        let take = usize::try_from(count)
            .unwrap_or(usize::MAX)
            .clamp(1, self.len.max(1));
        let first = (self.next + capacity - take) % capacity;
        let sum: f64 = (0..take)
            .filter_map(|i| self.values.get((first + i) % capacity))
            .sum();
        sum / take as f64
    }

    fn clear(&mut self) {
        self.next = 0;
        self.len = 0;
    }
}

/// The recent window's observations in order, kept sorted as they come and
/// go (a shift of at most a window per observation, no sort), for its median.
#[derive(Debug, Clone)]
struct Sorted {
    values: Box<[f64]>,
    len: usize,
}

impl Sorted {
    fn new(capacity: usize) -> Self {
        Self {
            values: vec![0.0; capacity].into_boxed_slice(),
            len: 0,
        }
    }

    fn held(&mut self) -> &mut [f64] {
        let len = self.len;
        self.values.get_mut(..len).unwrap_or_default()
    }

    fn remove(&mut self, x: f64) {
        let held = self.held();
        if let Ok(at) = held.binary_search_by(|v| v.total_cmp(&x)) {
            if let Some(tail) = held.get_mut(at..) {
                tail.rotate_left(1);
            }
            self.len -= 1;
        }
    }

    fn insert(&mut self, x: f64) {
        if self.len == self.values.len() {
            return; // never: a value leaves before one comes once full
        }
        self.len += 1;
        let held = self.held();
        let at = held
            .get(..held.len() - 1)
            .map_or(0, |old| old.partition_point(|v| v.total_cmp(&x).is_lt()));
        if let Some(tail) = held.get_mut(at..) {
            tail.rotate_right(1);
            if let Some(first) = tail.first_mut() {
                *first = x;
            }
        }
    }

    /// The upper median (the window's `sorted()[len // 2]`).
    fn median(&self) -> f64 {
        self.values.get(self.len / 2).copied().unwrap_or(0.0)
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// Failures of one stream: a sudden jump or a slow rise in their share.
/// `default()` has the alerts' settings.
#[derive(Debug, Clone)]
pub struct SuccessDetector {
    params: SuccessParams,
    recent: Recent,
    /// Failures among `recent` (each observation is 0 or 1).
    failures: u32,
    seen: u64,
    baseline: f64,
    drift: PageHinkley,
}

impl SuccessDetector {
    pub fn new(params: SuccessParams) -> Result<Self, ZetaError> {
        params.common.validate()?;
        check_float("sudden_margin", "finite", params.sudden_margin, |_| true)?;
        Ok(Self::checked(params))
    }

    /// From settings known to be valid.
    fn checked(params: SuccessParams) -> Self {
        let c = params.common;
        Self {
            params,
            recent: Recent::new(c.window),
            failures: 0,
            seen: 0,
            baseline: 0.0,
            drift: PageHinkley::new(c.delta, c.threshold),
        }
    }

    /// Observations so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn observe(&mut self, success: bool) -> Option<Change> {
        let failure = if success { 0.0 } else { 1.0 };
        if self.recent.push(failure) == Some(1.0) {
            self.failures -= 1;
        }
        self.failures += u32::from(!success);
        self.seen += 1;
        let c = self.params.common;
        if self.seen <= c.warmup {
            // The warm-up's mean is the first baseline.
            self.baseline += (failure - self.baseline) / self.seen as f64;
            return None;
        }
        let share = f64::from(self.failures) / self.recent.len as f64;
        let margin = self.params.sudden_margin;
        if self.recent.full() && share >= self.baseline + margin {
            return Some(self.alarm(ChangeKind::Sudden, share));
        }
        if self.drift.step(failure - self.baseline) {
            let kind = sudden_or_drift(self.drift.since_calm, c.window);
            let level = self.recent.tail_mean(self.drift.since_calm);
            return Some(self.alarm(kind, level));
        }
        if share < self.baseline + margin / 2.0 && !self.drift.building() {
            self.baseline += c.alpha * (failure - self.baseline);
        }
        None
    }

    fn alarm(&mut self, kind: ChangeKind, share: f64) -> Change {
        let change = Change {
            metric: Metric::Success,
            kind,
            value: share,
            baseline: self.baseline,
        };
        // Start over from the new level: one alarm per change.
        self.baseline = share;
        self.recent.clear();
        self.failures = 0;
        self.drift.reset();
        change
    }
}

/// Latency of one stream, on a log scale: a sudden jump of the recent
/// median, or a slow rise (Page-Hinkley on standardised log latency).
/// `default()` has the alerts' settings.
#[derive(Debug, Clone)]
pub struct LatencyDetector {
    params: LatencyParams,
    sudden_log_ratio: f64,
    recent: Recent,
    sorted: Sorted,
    seen: u64,
    mean: f64,
    variance: f64,
    drift: PageHinkley,
}

impl LatencyDetector {
    pub fn new(params: LatencyParams) -> Result<Self, ZetaError> {
        params.common.validate()?;
        check_float(
            "sudden_sigmas",
            "finite and >= 0",
            params.sudden_sigmas,
            |s| s >= 0.0,
        )?;
        check_float("sudden_ratio", "finite and > 0", params.sudden_ratio, |r| {
            r > 0.0
        })?;
        Ok(Self::checked(params))
    }

    /// From settings known to be valid.
    fn checked(params: LatencyParams) -> Self {
        let c = params.common;
        Self {
            params,
            sudden_log_ratio: params.sudden_ratio.ln(),
            recent: Recent::new(c.window),
            sorted: Sorted::new(c.window),
            seen: 0,
            mean: 0.0,
            variance: 0.0,
            drift: PageHinkley::new(c.delta, c.threshold),
        }
    }

    /// Observations so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// `latency_ms` must be finite and >= 0 (the core checks it first).
    pub fn observe(&mut self, latency_ms: f64) -> Option<Change> {
        let x = latency_ms.max(LATENCY_FLOOR_MS).ln();
        if let Some(evicted) = self.recent.push(x) {
            self.sorted.remove(evicted);
        }
        self.sorted.insert(x);
        self.seen += 1;
        let c = self.params.common;
        if self.seen <= c.warmup {
            let previous = self.mean;
            let n = self.seen as f64;
            self.mean += (x - previous) / n;
            self.variance += ((x - previous) * (x - self.mean) - self.variance) / n;
            return None;
        }
        let sigma = self.variance.sqrt().max(SIGMA_FLOOR);
        let median = self.sorted.median();
        let margin = (self.params.sudden_sigmas * sigma).max(self.sudden_log_ratio);
        if self.recent.full() && median > self.mean + margin {
            return Some(self.alarm(ChangeKind::Sudden, median));
        }
        if self.drift.step((x - self.mean) / sigma) {
            let kind = sudden_or_drift(self.drift.since_calm, c.window);
            let level = self.recent.tail_mean(self.drift.since_calm);
            return Some(self.alarm(kind, level));
        }
        if median < self.mean + margin / 2.0 && !self.drift.building() {
            let deviation = x - self.mean;
            self.mean += c.alpha * deviation;
            self.variance += c.alpha * (deviation * deviation - self.variance);
        }
        None
    }

    fn alarm(&mut self, kind: ChangeKind, median: f64) -> Change {
        let change = Change {
            metric: Metric::Latency,
            kind,
            value: median.exp(),
            baseline: self.mean.exp(),
        };
        self.mean = median;
        self.recent.clear();
        self.sorted.clear();
        self.drift.reset();
        change
    }
}

impl Default for SuccessDetector {
    fn default() -> Self {
        Self::checked(SuccessParams::default())
    }
}

impl Default for LatencyDetector {
    fn default() -> Self {
        Self::checked(LatencyParams::default())
    }
}

/// An alarm within a window of the statistic leaving calm is sudden.
fn sudden_or_drift(since_calm: u64, window: usize) -> ChangeKind {
    if since_calm <= window as u64 {
        ChangeKind::Sudden
    } else {
        ChangeKind::Drift
    }
}

/// One stream's two detectors.
#[derive(Debug, Clone)]
struct Pair {
    success: SuccessDetector,
    latency: LatencyDetector,
    /// Outcomes this pair observed.
    observed: u64,
}

impl Pair {
    fn new() -> Self {
        Self {
            success: SuccessDetector::default(),
            latency: LatencyDetector::default(),
            observed: 0,
        }
    }

    /// A success feeds both detectors, a failure only the success one.
    fn observe(&mut self, success: bool, latency_ms: f64) -> [Option<Change>; 2] {
        self.observed += 1;
        let failures = self.success.observe(success);
        let latency = if success {
            self.latency.observe(latency_ms)
        } else {
            None
        };
        [failures, latency]
    }
}

/// A model's detectors: its own and, with per-task detection, one pair per
/// entry of [`TASKS`].
struct Watched {
    whole: Mutex<Pair>,
    tasks: Box<[Mutex<Pair>]>,
}

/// A change as the watch queues it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noticed {
    pub model: usize,
    /// The task's index in [`TASKS`]; `None` for the model as a whole.
    pub task: Option<usize>,
    pub change: Change,
    /// The model's outcomes observed when it was detected (the outcome that
    /// raised it included).
    pub observed: u64,
}

/// The detectors of a router's models, and the changes they detected.
pub struct TrendWatch {
    models: Box<[Watched]>,
    per_task: bool,
    queue: Mutex<VecDeque<Noticed>>,
    capacity: usize,
    overflowed: AtomicU64,
}

/// A poisoned lock only means a panic elsewhere while it was held; the
/// detectors' numbers are still usable, and a sink must never fail.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TrendWatch {
    /// Detectors for `models` models (by index), per task too when
    /// `per_task`, queueing up to `capacity` changes.
    pub fn new(models: usize, per_task: bool, capacity: usize) -> Result<Self, ZetaError> {
        if capacity < 1 {
            return Err(invalid("capacity", ">= 1", capacity.to_string()));
        }
        let pair = Pair::new();
        let tasks = if per_task { TASKS.len() } else { 0 };
        let models = (0..models)
            .map(|_| Watched {
                whole: Mutex::new(pair.clone()),
                tasks: (0..tasks).map(|_| Mutex::new(pair.clone())).collect(),
            })
            .collect();
        Ok(Self {
            models,
            per_task,
            queue: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
            overflowed: AtomicU64::new(0),
        })
    }

    pub fn models(&self) -> usize {
        self.models.len()
    }

    pub fn per_task(&self) -> bool {
        self.per_task
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Observes one outcome of `model` (a success, or the replica's fault)
    /// of a request of `task` (an index into [`TASKS`]); an unknown model or
    /// task is ignored. `latency_ms` must be finite and >= 0.
    pub fn observe(&self, model: usize, task: Option<usize>, success: bool, latency_ms: f64) {
        let Some(watched) = self.models.get(model) else {
            return;
        };
        let (observed, changes) = {
            let mut whole = lock(&watched.whole);
            let changes = whole.observe(success, latency_ms);
            (whole.observed, changes)
        };
        self.queue(model, None, observed, changes);
        if let Some(pair) = task.and_then(|t| watched.tasks.get(t)) {
            let changes = lock(pair).observe(success, latency_ms);
            self.queue(model, task, observed, changes);
        }
    }

    fn queue(
        &self,
        model: usize,
        task: Option<usize>,
        observed: u64,
        changes: [Option<Change>; 2],
    ) {
        if changes.iter().all(Option::is_none) {
            return;
        }
        let mut queue = lock(&self.queue);
        for change in changes.into_iter().flatten() {
            if queue.len() < self.capacity {
                queue.push_back(Noticed {
                    model,
                    task,
                    change,
                    observed,
                });
            } else {
                self.overflowed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The changes detected since the last call, oldest first.
    pub fn take_changes(&self) -> Vec<Noticed> {
        // Drained, not swapped: the queue keeps its buffer.
        lock(&self.queue).drain(..).collect()
    }

    /// The outcomes of `model` observed so far (0 for an unknown model).
    pub fn observed(&self, model: usize) -> u64 {
        self.models
            .get(model)
            .map_or(0, |watched| lock(&watched.whole).observed)
    }

    /// Changes dropped because the queue was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }
}

impl OutcomeSink for TrendWatch {
    /// What is about the replica: a success feeds both detectors, a
    /// replica's fault the success detector.
    fn on_outcome(&self, event: &OutcomeEvent<'_>) {
        let EventKind::Outcome(outcome) = event.kind else {
            return;
        };
        if !event.about_replica() {
            return;
        }
        let decision = event.decision;
        self.observe(
            decision.model,
            Some(decision.task),
            outcome.kind == OutcomeKind::Success,
            outcome.latency_ms,
        );
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A seeded stream (splitmix64), with normal draws by Box-Muller.
    struct Rng(u64);

    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }

        fn gauss(&mut self, mean: f64, sigma: f64) -> f64 {
            let u = 1.0 - self.unit();
            let v = self.unit();
            mean + sigma * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }

        /// 99 % success.
        fn ok(&mut self) -> bool {
            self.unit() > 0.01
        }

        /// ~25 ms with log-normal noise (sigma 0.3).
        fn ms(&mut self) -> f64 {
            self.gauss(25.0_f64.ln(), 0.3).exp()
        }
    }

    fn success() -> SuccessDetector {
        SuccessDetector::default()
    }

    fn latency() -> LatencyDetector {
        LatencyDetector::default()
    }

    /// 1,000 healthy observations, then the fault until detected (within
    /// 5,000): how many faulty ones it took, and the change.
    fn delay<T: Copy>(
        rng: &mut Rng,
        mut observe: impl FnMut(T) -> Option<Change>,
        warm: impl Fn(&mut Rng) -> T,
        fault: impl Fn(&mut Rng) -> T,
    ) -> Option<(usize, Change)> {
        for _ in 0..1000 {
            let x = warm(rng);
            assert_eq!(observe(x), None, "a false alarm while healthy");
        }
        for n in 1..=5000 {
            let x = fault(rng);
            if let Some(change) = observe(x) {
                return Some((n, change));
            }
        }
        None
    }

    #[test]
    fn no_false_alarm_in_100k_healthy_observations() {
        let mut rng = Rng(7);
        let (mut s, mut l) = (success(), latency());
        for i in 0..100_000 {
            let (ok, ms) = (rng.ok(), rng.ms());
            assert_eq!(s.observe(ok), None, "success alarm at {i}");
            assert_eq!(l.observe(ms), None, "latency alarm at {i}");
        }
        assert_eq!((s.seen(), l.seen()), (100_000, 100_000));
        // The defaults are the checked settings' own.
        assert!(SuccessDetector::new(SuccessParams::default()).is_ok());
        assert!(LatencyDetector::new(LatencyParams::default()).is_ok());
    }

    #[test]
    fn hard_faults_are_sudden_and_seen_within_a_few_requests() {
        for seed in 1..=5 {
            let mut rng = Rng(seed);
            let mut s = success();
            let (n, change) =
                delay(&mut rng, |x| s.observe(x), Rng::ok, |r| r.unit() > 0.5).expect("detected");
            assert_eq!(
                (change.metric, change.kind),
                (Metric::Success, ChangeKind::Sudden)
            );
            assert!(n <= 20, "seed {seed}: half failing seen after {n}");
            assert!(change.value >= 0.25 && change.baseline < 0.05, "{change:?}");
            let mut l = latency();
            let (n, change) =
                delay(&mut rng, |x| l.observe(x), Rng::ms, |r| r.ms() + 400.0).expect("detected");
            assert_eq!(
                (change.metric, change.kind),
                (Metric::Latency, ChangeKind::Sudden)
            );
            assert!(n <= 10, "seed {seed}: +400 ms seen after {n}");
            assert!(change.value > 300.0 && (20.0..30.0).contains(&change.baseline));
        }
    }

    #[test]
    fn slow_worsening_is_a_drift() {
        for seed in 1..=3 {
            let mut rng = Rng(seed);
            let mut s = success();
            let (n, change) =
                delay(&mut rng, |x| s.observe(x), Rng::ok, |r| r.unit() > 0.08).expect("detected");
            assert_eq!(change.kind, ChangeKind::Drift, "seed {seed}");
            assert!(n <= 1000, "seed {seed}: 8 % failures seen after {n}");
            let mut l = latency();
            let (n, change) =
                delay(&mut rng, |x| l.observe(x), Rng::ms, |r| r.ms() * 1.3).expect("detected");
            assert_eq!(change.kind, ChangeKind::Drift, "seed {seed}");
            assert!(n <= 200, "seed {seed}: 30 % slower seen after {n}");
        }
    }

    #[test]
    fn after_an_alarm_it_restarts_from_the_new_level() {
        // As the Python detectors did: from none to every request failing,
        // the window's share alarms at 30 % (the 6th failure), then at 100 %
        // once the restarted window fills, then the new level is the norm.
        let mut s = success();
        for _ in 0..100 {
            assert_eq!(s.observe(true), None);
        }
        let alarms: Vec<(usize, f64)> = (0..500)
            .filter_map(|i| s.observe(false).map(|c| (i, c.value)))
            .collect();
        assert_eq!(alarms, [(5, 0.3), (18, 1.0)]);
    }

    #[test]
    fn nothing_is_alarmed_during_the_warm_up() {
        let mut s = success();
        let mut l = latency();
        for _ in 0..50 {
            assert_eq!(s.observe(false), None);
            assert_eq!(l.observe(1e6), None);
        }
    }

    #[test]
    fn the_median_is_the_windows_upper_median_as_values_come_and_go() {
        let mut rng = Rng(11);
        let mut recent = Recent::new(5);
        let mut sorted = Sorted::new(5);
        for _ in 0..200 {
            // Repeats too, so equal values leave and come.
            let x = (rng.unit() * 6.0).floor();
            if let Some(evicted) = recent.push(x) {
                sorted.remove(evicted);
            }
            sorted.insert(x);
            let mut held: Vec<f64> = (0..recent.len)
                .map(|i| recent.values[(recent.next + 5 - recent.len + i) % 5])
                .collect();
            held.sort_by(f64::total_cmp);
            assert_eq!(sorted.median(), held[held.len() / 2]);
            assert_eq!(&sorted.values[..sorted.len], &held[..]);
        }
        assert_eq!(
            recent.tail_mean(2),
            (recent.values[(recent.next + 3) % 5] + recent.values[(recent.next + 4) % 5]) / 2.0
        );
    }

    #[test]
    fn bad_settings_name_the_field() {
        let mut p = SuccessParams::default();
        p.common.window = 1;
        let err = SuccessDetector::new(p).unwrap_err().to_string();
        assert_eq!(err, "window must be >= 2 and <= 100000, got 1");
        let mut p = LatencyParams::default();
        p.common.alpha = 0.0;
        assert_eq!(
            LatencyDetector::new(p).unwrap_err().to_string(),
            "alpha must be in (0, 1], got 0.0"
        );
        let p = LatencyParams {
            sudden_ratio: -1.0,
            ..LatencyParams::default()
        };
        assert!(LatencyDetector::new(p)
            .unwrap_err()
            .to_string()
            .starts_with("sudden_ratio"));
        assert!(TrendWatch::new(1, true, 0).is_err());
    }

    /// Warms model `m` up, then fails it until its success detector alarms
    /// (once: at the sixth failure).
    fn fail(watch: &TrendWatch, m: usize) {
        for _ in 0..100 {
            watch.observe(m, None, true, 20.0);
        }
        for _ in 0..6 {
            watch.observe(m, None, false, 20.0);
        }
    }

    #[test]
    fn the_queue_is_bounded_and_counts_what_overflows() {
        let watch = TrendWatch::new(4, false, 2).unwrap();
        for m in 0..4 {
            fail(&watch, m);
        }
        let taken = watch.take_changes();
        assert_eq!(taken.iter().map(|n| n.model).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(watch.overflowed(), 2);
        assert!(taken
            .iter()
            .all(|n| n.change.metric == Metric::Success && n.task.is_none() && n.observed == 106));
        // Taking makes room again.
        let again = TrendWatch::new(1, false, 2).unwrap();
        fail(&again, 0);
        assert_eq!(again.take_changes().len(), 1);
        assert!(again.take_changes().is_empty());
    }

    #[test]
    fn per_task_detectors_see_their_task_only() {
        let watch = TrendWatch::new(1, true, 16).unwrap();
        let (code, chat) = (0, 2);
        for i in 0..3000 {
            watch.observe(0, Some(if i % 10 == 0 { code } else { chat }), true, 20.0);
        }
        let mut code_requests = 0;
        let noticed = loop {
            code_requests += 1;
            watch.observe(0, Some(code), false, 20.0);
            for _ in 0..9 {
                watch.observe(0, Some(chat), true, 20.0);
            }
            if let Some(n) = watch.take_changes().first() {
                break *n;
            }
        };
        assert_eq!(noticed.task, Some(code));
        assert!(code_requests <= 12, "{code_requests}");
        let flat = TrendWatch::new(1, false, 16).unwrap();
        flat.observe(0, Some(code), true, 20.0);
        assert_eq!(flat.observed(0), 1);
    }

    #[test]
    fn threads_recording_at_once_lose_no_observation() {
        let watch = Arc::new(TrendWatch::new(2, true, DEFAULT_CAPACITY).unwrap());
        let per_thread = 20_000;
        let threads: Vec<_> = (0..4_u64)
            .map(|t| {
                let watch = Arc::clone(&watch);
                std::thread::spawn(move || {
                    let mut rng = Rng(t);
                    for i in 0..per_thread {
                        let model = i % 2;
                        watch.observe(model, Some(i % TASKS.len()), rng.ok(), rng.ms());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(watch.observed(0) + watch.observed(1), 4 * per_thread as u64);
        assert_eq!(watch.observed(0), 2 * per_thread as u64);
        let per_task: u64 = watch.models[0]
            .tasks
            .iter()
            .map(|pair| lock(pair).observed)
            .sum();
        assert_eq!(per_task, 2 * per_thread as u64);
    }
}
