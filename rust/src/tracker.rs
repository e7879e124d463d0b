//! The performance tracker: one lock-free window per (model, replica, task),
//! a lock-free registry of keys, each model's rollups (its totals per task
//! and over all tasks, kept by the writers: see [`crate::rollup`]), and views
//! aggregated on read.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::clock::Clock;
use crate::errors::{float_repr, ZetaError};
use crate::histogram::LatencyBins;
use crate::registry::Registry;
use crate::rollup::Rollup;
use crate::window::{KeyWindow, Totals, WindowConfig, WindowState};

/// The identity of a window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyName {
    pub model: Arc<str>,
    pub replica: Arc<str>,
    pub task: Arc<str>,
}

impl Hash for KeyName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(&self.model, &self.replica, &self.task, state);
    }
}

/// A borrowed key for lookups without allocating.
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    pub model: &'a str,
    pub replica: &'a str,
    pub task: &'a str,
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_parts(self.model, self.replica, self.task, state);
    }
}

impl papaya::Equivalent<KeyName> for KeyRef<'_> {
    fn equivalent(&self, key: &KeyName) -> bool {
        *key.model == *self.model && *key.replica == *self.replica && *key.task == *self.task
    }
}

fn hash_parts<H: Hasher>(model: &str, replica: &str, task: &str, state: &mut H) {
    model.hash(state);
    replica.hash(state);
    task.hash(state);
}

/// One registered key: its name and its window.
pub struct TrackedKey {
    pub name: KeyName,
    /// Read it freely; record through [`TrackedKey::record`], which also
    /// feeds the model's rollups (a decision reads those).
    pub window: KeyWindow,
    /// Other router instances' share of this key (zero unless shared).
    pub remote: crate::shared::RemoteView,
    /// Its model's rollups this key's records also go to: the model's
    /// (task) rollup and its all-tasks rollup.
    rollups: [Arc<Rollup>; 2],
}

impl TrackedKey {
    /// Records one outcome at `now_ms` into the key's window and its
    /// model's rollups. `latency_ms` must be finite and >= 0.
    #[inline]
    pub fn record(&self, now_ms: u64, success: bool, latency_ms: f64) {
        self.window.record(now_ms, success, latency_ms);
        for rollup in &self.rollups {
            rollup.window.record_totals(now_ms, success, latency_ms);
        }
    }

    /// The rollups this key feeds: (its model and task, its model).
    pub fn rollups(&self) -> &[Arc<Rollup>; 2] {
        &self.rollups
    }
}

/// The identity of a rollup: a model and one task, or all its tasks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RollupName {
    model: Arc<str>,
    task: Option<Arc<str>>,
}

/// A borrowed rollup name for lookups without allocating.
#[derive(Hash)]
struct RollupRef<'a> {
    model: &'a str,
    task: Option<&'a str>,
}

impl papaya::Equivalent<RollupName> for RollupRef<'_> {
    fn equivalent(&self, name: &RollupName) -> bool {
        *name.model == *self.model && name.task.as_deref() == self.task
    }
}

/// Aggregated statistics of one or more windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Totals over the window.
    pub window: Totals,
    /// Totals over the keys' whole lives.
    pub lifetime: Totals,
    /// Latency percentiles over the window, in ms (`None` without data).
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Request-weighted mean of the keys' latency EWMAs, in ms.
    pub ewma_latency_ms: Option<f64>,
    /// How many keys were aggregated.
    pub keys: usize,
    /// False when some window read was torn by rotations (see `window`).
    pub consistent: bool,
}

/// Everything a tracker has learned, for persistence.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrackerState {
    pub bucket_ms: u64,
    pub buckets: u64,
    pub histogram_slices: u64,
    pub latency_min_ms: f64,
    pub latency_max_ms: f64,
    /// When the state was taken, ms since the Unix epoch.
    pub taken_at_ms: u64,
    pub keys: Vec<(String, String, String, WindowState)>,
}

/// Tracks live performance per (model, replica, task).
pub struct PerformanceTracker {
    config: WindowConfig,
    bins: LatencyBins,
    clock: Clock,
    /// The keys, registered once each; its generation is bumped on every
    /// registration, so cached resolutions know to refresh (see `registry`).
    keys: Registry<KeyMap>,
    /// Each model's rollups, per task and over all tasks.
    rollups: papaya::HashMap<RollupName, Arc<Rollup>, foldhash::fast::RandomState>,
}

type KeyMap = papaya::HashMap<KeyName, Arc<TrackedKey>, foldhash::fast::RandomState>;

impl PerformanceTracker {
    /// A tracker whose windows have `config`'s shape, reading time from `clock`.
    pub fn new(config: WindowConfig, clock: Clock) -> Result<Self, ZetaError> {
        let bins = config.validate()?;
        Ok(Self {
            config,
            bins,
            clock,
            keys: Registry::new(
                papaya::HashMap::builder()
                    .hasher(foldhash::fast::RandomState::default())
                    .build(),
            ),
            rollups: papaya::HashMap::builder()
                .hasher(foldhash::fast::RandomState::default())
                .build(),
        })
    }

    /// The shape of every window.
    /// Bins of every window's latency histogram.
    pub fn bins_len(&self) -> usize {
        self.bins.len()
    }

    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    /// The clock the tracker reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The number of registrations so far; changes whenever a key is added.
    #[inline(always)]
    pub fn generation(&self) -> u64 {
        self.keys.generation()
    }

    /// The key's window, registering it on first use. Lookups are lock-free;
    /// a first registration allocates once.
    pub fn key(
        &self,
        model: &str,
        replica: &str,
        task: &str,
    ) -> Result<Arc<TrackedKey>, ZetaError> {
        let lookup = KeyRef {
            model,
            replica,
            task,
        };
        // Two threads may race to register: the map keeps one, both use it.
        self.keys.get_or_register(&lookup, || {
            for (field, value) in [("model", model), ("replica", replica), ("task", task)] {
                if value.is_empty() {
                    return Err(ZetaError::InvalidName {
                        field,
                        problem: "must be a non-empty string",
                        value: value.to_owned(),
                    });
                }
            }
            let name = KeyName {
                model: model.into(),
                replica: replica.into(),
                task: task.into(),
            };
            let now = self.clock.now_ms();
            let fresh = Arc::new(TrackedKey {
                name: name.clone(),
                window: KeyWindow::new(self.config, self.bins, now),
                remote: crate::shared::RemoteView::default(),
                rollups: self.rollups_of(&name),
            });
            Ok((name, fresh))
        })
    }

    /// Records one outcome now.
    #[inline]
    pub fn record(
        &self,
        model: &str,
        replica: &str,
        task: &str,
        success: bool,
        latency_ms: f64,
    ) -> Result<(), ZetaError> {
        check_latency(latency_ms)?;
        let key = self.key(model, replica, task)?;
        key.record(self.clock.now_ms(), success, latency_ms);
        Ok(())
    }

    /// The rollup of `model` for `task` (`None`: over all its tasks),
    /// registering it on first use. Lock-free like [`Self::key`]; two
    /// threads racing to register keep one.
    pub fn rollup(&self, model: &str, task: Option<&str>) -> Arc<Rollup> {
        let rollups = self.rollups.pin();
        if let Some(found) = rollups.get(&RollupRef { model, task }) {
            return Arc::clone(found);
        }
        let name = RollupName {
            model: model.into(),
            task: task.map(Into::into),
        };
        let fresh = Arc::new(Rollup::new(KeyWindow::new(
            self.config,
            self.bins,
            self.clock.now_ms(),
        )));
        match rollups.try_insert(name, fresh) {
            Ok(inserted) => Arc::clone(inserted),
            Err(occupied) => Arc::clone(occupied.current),
        }
    }

    fn rollups_of(&self, name: &KeyName) -> [Arc<Rollup>; 2] {
        [
            self.rollup(&name.model, Some(&name.task)),
            self.rollup(&name.model, None),
        ]
    }

    /// Sets every rollup's remote view to the sum of its keys' remote views
    /// (after the keys' views were refreshed from the shared state).
    pub fn refresh_rollup_remotes(&self) {
        let mut sums: std::collections::HashMap<*const Rollup, (Arc<Rollup>, Totals)> =
            std::collections::HashMap::new();
        for key in self.keys.map().pin().values() {
            let remote = key.remote.totals();
            for rollup in &key.rollups {
                sums.entry(Arc::as_ptr(rollup))
                    .or_insert_with(|| (Arc::clone(rollup), Totals::default()))
                    .1
                    .merge(&remote);
            }
        }
        for (rollup, totals) in sums.into_values() {
            rollup.remote.set(&totals, None);
        }
    }

    /// Every registered key, sorted.
    pub fn keys(&self) -> Vec<Arc<TrackedKey>> {
        self.keys_at_generation().1
    }

    /// Every registered key, sorted, with a generation they all count (see
    /// `registry`): a cache stamped with it misses no key it counts.
    pub fn keys_at_generation(&self) -> (u64, Vec<Arc<TrackedKey>>) {
        let (generation, mut all) = self.keys.values_at();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        (generation, all)
    }

    /// Keys matching a model and, when given, a replica and a task.
    pub fn matching(
        &self,
        model: &str,
        replica: Option<&str>,
        task: Option<&str>,
    ) -> Vec<Arc<TrackedKey>> {
        self.keys()
            .into_iter()
            .filter(|key| {
                *key.name.model == *model
                    && replica.is_none_or(|r| *key.name.replica == *r)
                    && task.is_none_or(|t| *key.name.task == *t)
            })
            .collect()
    }

    /// Statistics aggregated over the matching keys, read now.
    pub fn stats(&self, model: &str, replica: Option<&str>, task: Option<&str>) -> Stats {
        self.aggregate(&self.matching(model, replica, task))
    }

    /// Statistics aggregated over `keys`, read now.
    pub fn aggregate(&self, keys: &[Arc<TrackedKey>]) -> Stats {
        let now = self.clock.now_ms();
        let mut window = Totals::default();
        let mut lifetime = Totals::default();
        let mut histogram = vec![0_u64; self.bins.len()];
        let mut ewma_weighted = 0.0;
        let mut ewma_weight = 0.0;
        let mut consistent = true;
        for key in keys {
            let snapshot = key.window.snapshot(now);
            window.merge(&snapshot.window);
            lifetime.merge(&snapshot.lifetime);
            for (total, count) in histogram.iter_mut().zip(&snapshot.histogram) {
                *total += count;
            }
            // Totals and histogram of one remote view, never of two cycles.
            key.remote.add_to(&mut window, &mut histogram);
            if let Some(ewma) = snapshot.ewma_latency_ms {
                let weight = snapshot.window.requests.max(1) as f64;
                ewma_weighted += ewma * weight;
                ewma_weight += weight;
            }
            consistent &= snapshot.consistent;
        }
        Stats {
            window,
            lifetime,
            p50_ms: self.bins.quantile(&histogram, 0.50),
            p95_ms: self.bins.quantile(&histogram, 0.95),
            p99_ms: self.bins.quantile(&histogram, 0.99),
            ewma_latency_ms: (ewma_weight > 0.0).then(|| ewma_weighted / ewma_weight),
            keys: keys.len(),
            consistent,
        }
    }

    /// Bytes held by all windows.
    pub fn memory_bytes(&self) -> usize {
        self.keys
            .map()
            .pin()
            .values()
            .map(|key| key.window.memory_bytes() + std::mem::size_of::<TrackedKey>())
            .sum::<usize>()
            + self
                .rollups
                .pin()
                .values()
                .map(|rollup| rollup.window.memory_bytes() + std::mem::size_of::<Rollup>())
                .sum::<usize>()
    }

    /// Everything learned, for persistence.
    pub fn state(&self) -> TrackerState {
        TrackerState {
            bucket_ms: self.config.bucket_ms,
            buckets: self.config.buckets as u64,
            histogram_slices: self.config.histogram_slices as u64,
            latency_min_ms: self.config.latency_min_ms,
            latency_max_ms: self.config.latency_max_ms,
            taken_at_ms: self.clock.now_ms(),
            keys: self
                .keys()
                .iter()
                .map(|key| {
                    (
                        key.name.model.to_string(),
                        key.name.replica.to_string(),
                        key.name.task.to_string(),
                        key.window.state(),
                    )
                })
                .collect(),
        }
    }

    /// Loads a persisted state into this (empty or not) tracker: keys in the
    /// state replace any of the same name, and the rollups of the models it
    /// names are rebuilt from their keys. Meant for start-up: outcomes
    /// recorded for those models while it runs may miss their rollups' window.
    pub fn restore(&self, state: &TrackerState) -> Result<usize, ZetaError> {
        let shape = (
            state.bucket_ms,
            state.buckets,
            state.histogram_slices,
            state.latency_min_ms.to_bits(),
            state.latency_max_ms.to_bits(),
        );
        let ours = (
            self.config.bucket_ms,
            self.config.buckets as u64,
            self.config.histogram_slices as u64,
            self.config.latency_min_ms.to_bits(),
            self.config.latency_max_ms.to_bits(),
        );
        if shape != ours {
            return Err(ZetaError::Snapshot {
                reason: format!(
                    "it was written by a tracker with {} buckets of {} ms, {} histogram slices, \
                     latency range {}..{} ms; this one has {} buckets of {} ms, {} slices, {}..{} ms",
                    state.buckets,
                    state.bucket_ms,
                    state.histogram_slices,
                    float_repr(state.latency_min_ms),
                    float_repr(state.latency_max_ms),
                    self.config.buckets,
                    self.config.bucket_ms,
                    self.config.histogram_slices,
                    float_repr(self.config.latency_min_ms),
                    float_repr(self.config.latency_max_ms),
                ),
            });
        }
        // Build every window first, so a bad state changes nothing.
        let mut windows = Vec::with_capacity(state.keys.len());
        for (model, replica, task, window_state) in &state.keys {
            let window = KeyWindow::from_state(self.config, self.bins, window_state)?;
            let name = KeyName {
                model: model.as_str().into(),
                replica: replica.as_str().into(),
                task: task.as_str().into(),
            };
            windows.push((name, window));
        }
        let restored = windows.len();
        let mut models: Vec<Arc<str>> = Vec::new();
        for (name, _) in &windows {
            if !models.contains(&name.model) {
                models.push(Arc::clone(&name.model));
            }
        }
        self.keys
            .replace_all(windows.into_iter().map(|(name, window)| {
                let key = Arc::new(TrackedKey {
                    rollups: self.rollups_of(&name),
                    name: name.clone(),
                    remote: crate::shared::RemoteView::default(),
                    window,
                });
                (name, key)
            }));
        // The restored models' rollups are rebuilt from all their keys now
        // (restored or not, a replaced key's data gone with it).
        let now = self.clock.now_ms();
        let rollups = self.rollups.pin();
        for (name, rollup) in rollups.iter() {
            if models.contains(&name.model) {
                rollup.window.clear(now);
            }
        }
        for key in self.keys.map().pin().values() {
            if models.contains(&key.name.model) {
                let state = key.window.state();
                for rollup in &key.rollups {
                    rollup.window.absorb_totals(&state);
                }
            }
        }
        Ok(restored)
    }
}

/// Latency must be finite and >= 0.
pub fn check_latency(latency_ms: f64) -> Result<(), ZetaError> {
    if latency_ms.is_finite() && latency_ms >= 0.0 {
        Ok(())
    } else {
        Err(ZetaError::InvalidInput {
            field: "latency_ms",
            position: crate::errors::Position::Scalar,
            expected: "finite and >= 0",
            value: float_repr(latency_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> (PerformanceTracker, Clock) {
        let clock = Clock::manual(1_000_000);
        (
            PerformanceTracker::new(WindowConfig::default(), clock.clone()).unwrap(),
            clock,
        )
    }

    #[test]
    fn views_aggregate_on_read() {
        let (t, _) = tracker();
        t.record("coder", "r1", "code", true, 100.0).unwrap();
        t.record("coder", "r2", "code", false, 300.0).unwrap();
        t.record("coder", "r1", "chat", true, 50.0).unwrap();
        t.record("other", "r1", "code", true, 1.0).unwrap();
        assert_eq!(t.stats("coder", None, None).window.requests, 3);
        assert_eq!(t.stats("coder", None, Some("code")).window.requests, 2);
        let leaf = t.stats("coder", Some("r2"), Some("code"));
        assert_eq!(leaf.window.successes, 0);
        assert_eq!(leaf.window.mean_latency_ms(), Some(300.0));
        assert_eq!(t.stats("nobody", None, None).keys, 0);
        assert_eq!(t.keys().len(), 4);
    }

    fn set(clock: &Clock, ms: u64) {
        if let Clock::Manual(now) = clock {
            now.store(ms, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn advance(clock: &Clock, ms: u64) {
        set(clock, clock.now_ms() + ms);
    }

    /// The window totals of `model` (and `task`) summed over its keys.
    fn summed(t: &PerformanceTracker, model: &str, task: Option<&str>) -> Totals {
        let now = t.clock().now_ms();
        let mut sum = Totals::default();
        for key in t.matching(model, None, task) {
            sum.merge(&key.window.live_totals(now));
            sum.merge(&key.remote.totals());
        }
        sum
    }

    #[test]
    fn rollups_equal_their_keys_summed_as_the_window_moves() {
        let (t, clock) = tracker();
        // Replicas and tasks recorded in every bucket for 90 buckets of a
        // 60-bucket window, so buckets expire from keys and rollups alike.
        for step in 0..900_u64 {
            let replica = ["r1", "r2", "r3"][(step % 3) as usize];
            let task = ["code", "chat"][(step % 7 % 2) as usize];
            t.record("m", replica, task, step % 5 != 0, (step % 13) as f64 * 10.5)
                .unwrap();
            t.record("other", "r1", "code", true, 1.0).unwrap();
            advance(&clock, 500);
            let now = clock.now_ms();
            for task in [Some("code"), Some("chat"), None] {
                let rollup = t.rollup("m", task).live_totals(now);
                assert_eq!(rollup, summed(&t, "m", task), "step {step}, task {task:?}");
            }
        }
        let whole = t.rollup("m", None).live_totals(clock.now_ms());
        assert!(whole.requests > 0 && whole.requests < 900, "{whole:?}");
        assert_eq!(
            t.rollup("other", None).live_totals(clock.now_ms()),
            summed(&t, "other", None)
        );
    }

    #[test]
    fn a_restore_rebuilds_the_rollups_from_the_keys() {
        let (t, clock) = tracker();
        for i in 0..300_u64 {
            t.record(
                "m",
                ["r1", "r2"][(i % 2) as usize],
                "code",
                i % 4 != 0,
                i as f64,
            )
            .unwrap();
            advance(&clock, 1_000);
        }
        let state = t.state();
        let (fresh, fresh_clock) = tracker();
        set(&fresh_clock, clock.now_ms());
        // Data recorded before the restore for a key the state replaces is
        // gone from the rollups with the key; another model's stays.
        fresh.record("m", "r1", "code", false, 9_999.0).unwrap();
        fresh.record("n", "r1", "code", true, 5.0).unwrap();
        fresh.restore(&state).unwrap();
        let now = fresh_clock.now_ms();
        let rebuilt = fresh.rollup("m", Some("code")).live_totals(now);
        assert_eq!(rebuilt, t.rollup("m", Some("code")).live_totals(now));
        assert_eq!(rebuilt, summed(&fresh, "m", Some("code")));
        assert_eq!(fresh.rollup("n", None).live_totals(now).requests, 1);
        // Records after the restore reach the rebuilt rollups.
        fresh.record("m", "r2", "code", true, 1.0).unwrap();
        assert_eq!(
            fresh.rollup("m", None).live_totals(now).requests,
            rebuilt.requests + 1
        );
    }

    #[test]
    fn rollup_remotes_are_the_sum_of_their_keys() {
        let (t, _) = tracker();
        t.record("m", "r1", "code", true, 1.0).unwrap();
        t.record("m", "r2", "code", true, 1.0).unwrap();
        let share = |requests| Totals {
            requests,
            successes: requests,
            latency_requests: requests,
            latency_units: requests * 100,
        };
        for (replica, requests) in [("r1", 7), ("r2", 5)] {
            t.key("m", replica, "code")
                .unwrap()
                .remote
                .set(&share(requests), None);
        }
        t.refresh_rollup_remotes();
        assert_eq!(t.rollup("m", Some("code")).remote.totals(), share(12));
        let now = t.clock().now_ms();
        assert_eq!(t.rollup("m", None).live_totals(now).requests, 14);
        assert_eq!(t.rollup("m", None).live_totals(now), summed(&t, "m", None));
    }

    #[test]
    fn registration_bumps_generation_once_per_key() {
        let (t, _) = tracker();
        let before = t.generation();
        t.record("m", "r", "t", true, 1.0).unwrap();
        t.record("m", "r", "t", true, 1.0).unwrap();
        assert_eq!(t.generation(), before + 1);
    }

    #[test]
    fn bad_latency_and_empty_names_are_rejected() {
        let (t, _) = tracker();
        assert!(t.record("m", "r", "t", true, f64::NAN).is_err());
        assert!(t.record("m", "r", "t", true, -1.0).is_err());
        let err = t.record("", "r", "t", true, 1.0).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("model must be a non-empty string"));
        assert_eq!(t.keys().len(), 0);
    }

    #[test]
    fn state_round_trips_through_restore() {
        let (t, _) = tracker();
        for i in 0..100 {
            t.record(
                "m",
                "r",
                if i % 2 == 0 { "a" } else { "b" },
                i % 3 != 0,
                i as f64,
            )
            .unwrap();
        }
        let state = t.state();
        let (fresh, _) = tracker();
        assert_eq!(fresh.restore(&state).unwrap(), 2);
        assert_eq!(fresh.stats("m", None, None), t.stats("m", None, None));
    }

    #[test]
    fn restore_refuses_another_window_shape() {
        let (t, _) = tracker();
        t.record("m", "r", "t", true, 1.0).unwrap();
        let other_shape = WindowConfig {
            buckets: 32,
            ..Default::default()
        };
        let other = PerformanceTracker::new(other_shape, Clock::manual(0)).unwrap();
        let err = other.restore(&t.state()).unwrap_err().to_string();
        assert!(err.contains("60 buckets of 5000 ms"), "{err}");
    }
}
