//! `PerformanceTracker`, `WindowConfig`, `ManualClock`, `TrackerKey` and
//! `TrackerStats`: the tracker seen from Python.
//!
//! Size: over 600 lines because PyO3 takes one `#[pymethods]` block per class (the `multiple-
//! pymethods` feature costs a registry at start-up) and the tracker has five classes and a batch
//! API; every method only translates.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use numpy::{PyArrayDyn, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyString, PyTuple};

use super::arrays::{float_column, shape_repr};
use super::extract::{count, flag, number, opt_text, or_default, text, type_error, utf8};
use super::gil::{self, Cost};
use crate::clock::Clock;
use crate::errors::{float_repr, Position, ZetaError};
use crate::passthrough::BuildPassthrough;
use crate::persistence::{self, FileLock, Saver};
use crate::tracker::{check_latency, PerformanceTracker, Stats, TrackedKey};
use crate::window::WindowConfig;

/// The error for a saver lock that a panicking thread left poisoned.
fn saver_lock_poisoned() -> ZetaError {
    ZetaError::Internal {
        what: "saver lock poisoned".to_owned(),
    }
}

const WINDOW_FIELDS: [&str; 6] = [
    "bucket_ms",
    "buckets",
    "histogram_slices",
    "latency_min_ms",
    "latency_max_ms",
    "ewma_alpha",
];

/// The shape of every rolling window of a tracker (validated, immutable).
#[pyclass(name = "WindowConfig", module = "zeta_fast._core", frozen, eq)]
#[derive(Clone, PartialEq)]
pub struct PyWindowConfig {
    pub inner: WindowConfig,
}

fn set_window_field(
    config: &mut WindowConfig,
    name: &str,
    value: &Bound<'_, PyAny>,
) -> PyResult<()> {
    match name {
        "bucket_ms" => config.bucket_ms = count(value, name)?,
        "buckets" => config.buckets = count(value, name)? as usize,
        "histogram_slices" => config.histogram_slices = count(value, name)? as usize,
        "latency_min_ms" => config.latency_min_ms = number(value, name)?,
        "latency_max_ms" => config.latency_max_ms = number(value, name)?,
        "ewma_alpha" => config.ewma_alpha = number(value, name)?,
        unknown => {
            return Err(ZetaError::UnknownField {
                owner: "WindowConfig",
                key: unknown.to_owned(),
                known: WINDOW_FIELDS.join(", "),
            }
            .into())
        }
    }
    Ok(())
}

impl PyWindowConfig {
    fn build<'py>(pairs: impl IntoIterator<Item = (String, Bound<'py, PyAny>)>) -> PyResult<Self> {
        let mut config = WindowConfig::default();
        for (name, value) in pairs {
            set_window_field(&mut config, &name, &value)?;
        }
        config.validate()?;
        Ok(Self { inner: config })
    }

    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = &self.inner;
        let dict = PyDict::new(py);
        dict.set_item("bucket_ms", c.bucket_ms)?;
        dict.set_item("buckets", c.buckets)?;
        dict.set_item("histogram_slices", c.histogram_slices)?;
        dict.set_item("latency_min_ms", c.latency_min_ms)?;
        dict.set_item("latency_max_ms", c.latency_max_ms)?;
        dict.set_item("ewma_alpha", c.ewma_alpha)?;
        Ok(dict)
    }
}

#[pymethods]
impl PyWindowConfig {
    #[new]
    #[pyo3(signature = (
        *,
        bucket_ms = None,
        buckets = None,
        histogram_slices = None,
        latency_min_ms = None,
        latency_max_ms = None,
        ewma_alpha = None,
    ))]
    fn new<'py>(
        bucket_ms: Option<Bound<'py, PyAny>>,
        buckets: Option<Bound<'py, PyAny>>,
        histogram_slices: Option<Bound<'py, PyAny>>,
        latency_min_ms: Option<Bound<'py, PyAny>>,
        latency_max_ms: Option<Bound<'py, PyAny>>,
        ewma_alpha: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Self> {
        let given = [
            bucket_ms,
            buckets,
            histogram_slices,
            latency_min_ms,
            latency_max_ms,
            ewma_alpha,
        ];
        Self::build(
            WINDOW_FIELDS
                .iter()
                .zip(given)
                .filter_map(|(name, value)| value.map(|value| ((*name).to_owned(), value))),
        )
    }

    #[staticmethod]
    fn from_dict(data: &Bound<'_, PyAny>) -> PyResult<Self> {
        let dict = data
            .cast::<PyDict>()
            .map_err(|_| type_error("WindowConfig.from_dict(data)", "a dict", data))?;
        let mut pairs = Vec::with_capacity(dict.len());
        for (key, value) in dict.iter() {
            pairs.push((text(&key, "WindowConfig.from_dict key")?.to_owned(), value));
        }
        Self::build(pairs)
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.as_dict(py)
    }

    #[getter]
    fn bucket_ms(&self) -> u64 {
        self.inner.bucket_ms
    }
    #[getter]
    fn buckets(&self) -> usize {
        self.inner.buckets
    }
    #[getter]
    fn histogram_slices(&self) -> usize {
        self.inner.histogram_slices
    }
    #[getter]
    fn latency_min_ms(&self) -> f64 {
        self.inner.latency_min_ms
    }
    #[getter]
    fn latency_max_ms(&self) -> f64 {
        self.inner.latency_max_ms
    }
    #[getter]
    fn ewma_alpha(&self) -> f64 {
        self.inner.ewma_alpha
    }
    /// The window's horizon in seconds.
    #[getter]
    fn horizon_s(&self) -> f64 {
        self.inner.horizon_ms() as f64 / 1000.0
    }
    /// Worst-case relative error of the reported percentiles.
    #[getter]
    fn percentile_relative_error(&self) -> f64 {
        crate::histogram::max_relative_error()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let parts: PyResult<Vec<String>> = self
            .as_dict(py)?
            .iter()
            .map(|(k, v)| Ok(format!("{k}={}", v.repr()?)))
            .collect();
        Ok(format!("WindowConfig({})", parts?.join(", ")))
    }
}

/// A clock that moves only when told to, for tests and replays.
#[pyclass(name = "ManualClock", module = "zeta_fast._core", frozen)]
pub struct PyManualClock {
    now: Arc<AtomicU64>,
}

#[pymethods]
impl PyManualClock {
    #[new]
    #[pyo3(signature = (start_ms = None))]
    fn new(start_ms: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let start = match start_ms {
            Some(value) => count(value, "start_ms")?,
            None => 0,
        };
        Ok(Self {
            now: Arc::new(AtomicU64::new(start)),
        })
    }

    /// Milliseconds since the Unix epoch, as this clock tells it.
    #[getter]
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }

    /// Moves the clock forward by `ms`.
    fn advance(&self, ms: &Bound<'_, PyAny>) -> PyResult<()> {
        self.now.fetch_add(count(ms, "ms")?, Ordering::Relaxed);
        Ok(())
    }

    /// Sets the clock (it may go backwards: records then land in older buckets).
    fn set(&self, now_ms: &Bound<'_, PyAny>) -> PyResult<()> {
        self.now.store(count(now_ms, "now_ms")?, Ordering::Relaxed);
        Ok(())
    }
}

struct Persistence {
    saver: Saver,
    _lock: FileLock,
}

/// A tracker's saver and file lock, taken out when it closes.
type SharedPersistence = Mutex<Option<Persistence>>;

/// Trackers with a saver, so the atexit hook can give each a final save.
fn live_savers() -> &'static Mutex<Vec<Weak<SharedPersistence>>> {
    static SAVERS: OnceLock<Mutex<Vec<Weak<SharedPersistence>>>> = OnceLock::new();
    SAVERS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Stops every tracker's saver after a final save: the clean-shutdown hook
/// `zeta_fast` registers with `atexit`. A final save that fails is printed
/// as a `RuntimeWarning`.
#[pyfunction]
pub fn _shutdown(py: Python<'_>) {
    let savers: Vec<_> = live_savers()
        .lock()
        .map(|mut all| {
            let alive = all.iter().filter_map(Weak::upgrade).collect();
            all.clear();
            alive
        })
        .unwrap_or_default();
    let failures: Vec<String> = gil::run(py, Cost::Blocking, None, || {
        savers
            .iter()
            .filter_map(|persistence| persistence.lock().ok()?.take())
            .filter_map(|mut p| p.saver.stop().err())
            .map(|err| final_save_failed(err).to_string())
            .collect()
    });
    // Nobody is left to catch an exception at exit: a warning is printed.
    let warning = py.get_type::<pyo3::exceptions::PyRuntimeWarning>();
    for message in failures {
        if let Ok(message) = std::ffi::CString::new(message) {
            let _ = PyErr::warn(py, &warning, &message, 1);
        }
    }
}

/// The error a close reports when its final save failed.
fn final_save_failed(err: ZetaError) -> ZetaError {
    let reason = match err {
        ZetaError::Snapshot { reason } => reason,
        other => other.to_string(),
    };
    ZetaError::Snapshot {
        reason: format!("final save failed: {reason}"),
    }
}

/// Where snapshots go when no path is given: `$ZETA_FAST_STATE_DIR`, else
/// `$XDG_STATE_HOME/zeta_fast`, else `~/.local/state/zeta_fast`, else
/// `./.zeta_fast`; the file is `tracker.snapshot`.
fn default_snapshot_path() -> PathBuf {
    let folder = std::env::var_os("ZETA_FAST_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("zeta_fast")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/zeta_fast"))
        })
        .unwrap_or_else(|| PathBuf::from(".zeta_fast"));
    folder.join("tracker.snapshot")
}

/// Live performance per (model, replica, task) in lock-free rolling windows.
#[pyclass(name = "PerformanceTracker", module = "zeta_fast._core", frozen)]
pub struct PyPerformanceTracker {
    pub inner: Arc<PerformanceTracker>,
    fast: papaya::HashMap<u64, Arc<TrackedKey>, BuildPassthrough>,
    persistence: Arc<SharedPersistence>,
    snapshot_path: Option<PathBuf>,
    restored_from: Option<PathBuf>,
    restored_taken_at_ms: Option<u64>,
    restore_warning: Option<String>,
    window: WindowConfig,
}

fn mix(model: isize, replica: isize, task: isize) -> u64 {
    (model as u64) ^ (replica as u64).rotate_left(21) ^ (task as u64).rotate_left(42)
}

fn same(name: &str, value: &Bound<'_, PyString>) -> bool {
    value.to_str().is_ok_and(|text| text == name)
}

fn name_arg<'a, 'py>(
    value: &'a Bound<'py, PyAny>,
    field: &str,
) -> PyResult<&'a Bound<'py, PyString>> {
    value
        .cast::<PyString>()
        .map_err(|_| type_error(field, "a str", value))
}

fn success_arg(value: &Bound<'_, PyAny>) -> PyResult<bool> {
    flag(value, "success")
}

fn latency_arg(value: &Bound<'_, PyAny>) -> PyResult<f64> {
    let latency = match value.cast_exact::<PyFloat>() {
        Ok(float) => float.value(),
        Err(_) => number(value, "latency_ms")?,
    };
    check_latency(latency)?;
    Ok(latency)
}

impl PyPerformanceTracker {
    /// The key's window, through the fast index of Python string hashes.
    #[inline]
    pub fn resolve(
        &self,
        model: &Bound<'_, PyString>,
        replica: &Bound<'_, PyString>,
        task: &Bound<'_, PyString>,
    ) -> PyResult<Arc<TrackedKey>> {
        let hash = mix(model.hash()?, replica.hash()?, task.hash()?);
        let fast = self.fast.pin();
        if let Some(key) = fast.get(&hash) {
            if same(&key.name.model, model)
                && same(&key.name.replica, replica)
                && same(&key.name.task, task)
            {
                return Ok(Arc::clone(key));
            }
            // A 64-bit hash collision: correct, just not cached.
            return self.register(model, replica, task);
        }
        let key = self.register(model, replica, task)?;
        fast.insert(hash, Arc::clone(&key));
        Ok(key)
    }

    /// The key of names not in the fast index (registered on first use).
    #[cold]
    fn register(
        &self,
        model: &Bound<'_, PyString>,
        replica: &Bound<'_, PyString>,
        task: &Bound<'_, PyString>,
    ) -> PyResult<Arc<TrackedKey>> {
        Ok(self.inner.key(
            utf8(model, "model")?,
            utf8(replica, "replica")?,
            utf8(task, "task")?,
        )?)
    }

    fn resolve_any(&self, key: &Bound<'_, PyAny>) -> PyResult<Arc<TrackedKey>> {
        if let Ok(handle) = key.cast::<PyTrackerKey>() {
            return Ok(Arc::clone(&handle.get().inner));
        }
        if let Ok(tuple) = key.cast::<PyTuple>() {
            if tuple.len() == 3 {
                let model = tuple.get_item(0)?;
                let replica = tuple.get_item(1)?;
                let task = tuple.get_item(2)?;
                return self.resolve(
                    name_arg(&model, "model")?,
                    name_arg(&replica, "replica")?,
                    name_arg(&task, "task")?,
                );
            }
        }
        Err(type_error(
            "keys",
            "a TrackerKey or a (model, replica, task) tuple",
            key,
        ))
    }
}

fn success_column(value: &Bound<'_, PyAny>) -> PyResult<Vec<bool>> {
    if let Ok(array) = value.cast::<PyArrayDyn<bool>>() {
        return Ok(array
            .to_vec()
            .unwrap_or_else(|_| array.to_owned_array().iter().copied().collect()));
    }
    if let Ok(list) = value.cast::<PyList>() {
        let mut flags = Vec::with_capacity(list.len());
        for item in list.iter() {
            flags.push(
                success_arg(&item)
                    .map_err(|_| type_error("success", "a sequence of bools", value))?,
            );
        }
        return Ok(flags);
    }
    let numpy = value.py().import("numpy")?;
    let array = numpy.call_method1("asarray", (value,))?;
    let kind = array
        .getattr("dtype")?
        .getattr("kind")?
        .extract::<String>()?;
    if kind != "b" {
        return Err(type_error("success", "an array of bools", value));
    }
    let array = array.cast_into::<PyArrayDyn<bool>>()?;
    Ok(array.to_owned_array().iter().copied().collect())
}

#[pymethods]
impl PyPerformanceTracker {
    #[new]
    #[pyo3(
        signature = (
            window = None,
            *,
            clock = None,
            persist = None,
            snapshot_path = None,
            snapshot_interval_s = None,
            restore = None,
        ),
        text_signature = "(window=None, *, clock=None, persist=True, snapshot_path=None, snapshot_interval_s=1.0, restore=True)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        window: Option<&Bound<'_, PyAny>>,
        clock: Option<&Bound<'_, PyAny>>,
        persist: Option<&Bound<'_, PyAny>>,
        snapshot_path: Option<&Bound<'_, PyAny>>,
        snapshot_interval_s: Option<&Bound<'_, PyAny>>,
        restore: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let persist = or_default(persist, true, "persist", flag)?;
        let restore = or_default(restore, true, "restore", flag)?;
        let snapshot_interval_s =
            or_default(snapshot_interval_s, 1.0, "snapshot_interval_s", number)?;
        let snapshot_path = match snapshot_path.filter(|p| !p.is_none()) {
            Some(given) => Some(
                given
                    .extract::<PathBuf>()
                    .map_err(|_| type_error("snapshot_path", "a str or os.PathLike", given))?,
            ),
            None => None,
        };
        let snapshot_path = match (persist, snapshot_path) {
            (false, _) => None,
            (true, Some(path)) => Some(path),
            (true, None) => Some(default_snapshot_path()),
        };
        let window = match window {
            None => WindowConfig::default(),
            Some(value) => {
                value
                    .cast::<PyWindowConfig>()
                    .map_err(|_| type_error("window", "a WindowConfig", value))?
                    .get()
                    .inner
            }
        };
        let clock = match clock {
            None => Clock::System,
            Some(value) => Clock::Manual(Arc::clone(
                &value
                    .cast::<PyManualClock>()
                    .map_err(|_| type_error("clock", "a ManualClock", value))?
                    .get()
                    .now,
            )),
        };
        if !(snapshot_interval_s.is_finite() && snapshot_interval_s > 0.0) {
            return Err(ZetaError::InvalidConfig {
                field: "snapshot_interval_s",
                expected: "finite and > 0",
                value: float_repr(snapshot_interval_s),
            }
            .into());
        }
        let tracker = Arc::new(PerformanceTracker::new(window, clock)?);
        let mut restored_from = None;
        let mut restored_taken_at_ms = None;
        let mut restore_warning = None;
        let persistence = Arc::new(Mutex::new(None));
        if let Some(path) = &snapshot_path {
            if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(folder).map_err(|err| ZetaError::Snapshot {
                    reason: format!("cannot create {}: {err}", folder.display()),
                })?;
            }
            let lock = FileLock::acquire(path)?;
            if restore {
                if let Some(found) = gil::run(py, Cost::Blocking, None, || persistence::load(path))?
                {
                    tracker.restore(&found.state)?;
                    restored_from = Some(found.path.clone());
                    restored_taken_at_ms = Some(found.state.taken_at_ms);
                    if let Some(problem) = found.fell_back_because {
                        let message = format!(
                            "{} was unusable ({problem}); restored the previous snapshot {}",
                            path.display(),
                            found.path.display()
                        );
                        let warning = py
                            .import("zeta_fast.exceptions")?
                            .getattr("SnapshotWarning")?;
                        PyErr::warn(py, &warning, &std::ffi::CString::new(message.clone())?, 1)?;
                        restore_warning = Some(message);
                    }
                }
            }
            let saver = Saver::start(
                Arc::clone(&tracker),
                path.clone(),
                Duration::from_secs_f64(snapshot_interval_s),
            )
            .map_err(|err| ZetaError::Snapshot {
                reason: format!("cannot start the saver thread: {err}"),
            })?;
            if let Ok(mut slot) = persistence.lock() {
                *slot = Some(Persistence { saver, _lock: lock });
            }
            if let Ok(mut all) = live_savers().lock() {
                all.retain(|weak| weak.strong_count() > 0);
                all.push(Arc::downgrade(&persistence));
            }
        }
        Ok(Self {
            inner: tracker,
            fast: papaya::HashMap::default(),
            persistence,
            snapshot_path,
            restored_from,
            restored_taken_at_ms,
            restore_warning,
            window,
        })
    }

    /// Records one outcome. Lock-free: a lookup in a concurrent index and
    /// four atomic updates; a key's first use registers it once.
    pub fn record(
        &self,
        model: &Bound<'_, PyAny>,
        replica: &Bound<'_, PyAny>,
        task: &Bound<'_, PyAny>,
        success: &Bound<'_, PyAny>,
        latency_ms: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let key = self.resolve(
            name_arg(model, "model")?,
            name_arg(replica, "replica")?,
            name_arg(task, "task")?,
        )?;
        let success = success_arg(success)?;
        let latency = latency_arg(latency_ms)?;
        key.record(self.inner.clock().now_ms(), success, latency);
        Ok(())
    }

    /// A handle on one key, for recording without a lookup.
    fn key(
        &self,
        model: &Bound<'_, PyAny>,
        replica: &Bound<'_, PyAny>,
        task: &Bound<'_, PyAny>,
    ) -> PyResult<PyTrackerKey> {
        let key = self.resolve(
            name_arg(model, "model")?,
            name_arg(replica, "replica")?,
            name_arg(task, "task")?,
        )?;
        Ok(PyTrackerKey {
            inner: key,
            tracker: Arc::clone(&self.inner),
        })
    }

    /// Records many outcomes: `keys` is one key for all (a TrackerKey or a
    /// (model, replica, task) tuple) or a list with one key per outcome.
    /// Validates everything first (nothing is recorded on bad input), then
    /// records with the GIL released for large batches.
    fn record_many(
        &self,
        py: Python<'_>,
        keys: &Bound<'_, PyAny>,
        success: &Bound<'_, PyAny>,
        latency_ms: &Bound<'_, PyAny>,
    ) -> PyResult<usize> {
        let latencies = float_column(latency_ms, "latency_ms")?;
        let flags = success_column(success)?;
        let n = latencies.len();
        if latencies.shape().len() != 1 {
            return Err(ZetaError::InvalidShape {
                field: "latency_ms",
                expected: "a 1-D array (one entry per outcome)",
                got: format!(
                    "{}-D array of shape {}",
                    latencies.shape().len(),
                    shape_repr(latencies.shape())
                ),
            }
            .into());
        }
        if flags.len() != n {
            return Err(ZetaError::EntryCountMismatch {
                field: "success",
                expected: n,
                got: flags.len(),
                per: "outcome, as in latency_ms",
            }
            .into());
        }
        let per_record: Vec<Arc<TrackedKey>> = if let Ok(list) = keys.cast::<PyList>() {
            if list.len() != n {
                return Err(ZetaError::EntryCountMismatch {
                    field: "keys",
                    expected: n,
                    got: list.len(),
                    per: "outcome",
                }
                .into());
            }
            list.iter()
                .map(|key| self.resolve_any(&key))
                .collect::<PyResult<_>>()?
        } else {
            vec![self.resolve_any(keys)?]
        };
        // SAFETY: read with the GIL held, before any Python code runs.
        let values: Vec<f64> = unsafe { std::slice::from_raw_parts(latencies.ptr(), n) }.to_vec();
        if let Some((index, bad)) = values
            .iter()
            .enumerate()
            .find(|(_, v)| check_latency(**v).is_err())
        {
            return Err(ZetaError::InvalidInput {
                field: "latency_ms",
                position: Position::Flat(index),
                expected: "finite and >= 0",
                value: float_repr(*bad),
            }
            .into());
        }
        let now = self.inner.clock().now_ms();
        let work = move || {
            for (i, (&flag, &latency)) in flags.iter().zip(&values).enumerate() {
                let key = per_record.get(i).or_else(|| per_record.first());
                if let Some(key) = key {
                    key.record(now, flag, latency);
                }
            }
        };
        gil::run(py, Cost::Records(n), None, work);
        Ok(n)
    }

    /// Statistics over the window (and lifetime), aggregated on read over
    /// the model's keys, narrowed by replica and task when given.
    #[pyo3(signature = (model, replica = None, task = None))]
    fn stats(
        &self,
        py: Python<'_>,
        model: &Bound<'_, PyAny>,
        replica: Option<&Bound<'_, PyAny>>,
        task: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyTrackerStats> {
        let model = text(model, "model")?;
        let replica = opt_text(replica, "replica")?;
        let task = opt_text(task, "task")?;
        let stats = gil::run(py, Cost::Blocking, None, || {
            self.inner.stats(model, replica, task)
        });
        Ok(PyTrackerStats { inner: stats })
    }

    /// Every key as (model, replica, task), sorted.
    fn keys(&self) -> Vec<(String, String, String)> {
        self.inner
            .keys()
            .iter()
            .map(|k| {
                (
                    k.name.model.to_string(),
                    k.name.replica.to_string(),
                    k.name.task.to_string(),
                )
            })
            .collect()
    }

    /// What this instance shares with others (see `zeta_fast.shared`): for
    /// every key with data in its window, the non-empty buckets as
    /// `(epoch, requests, successes, latency_requests, latency_units)` and
    /// histogram slices as `(slice_epoch, [(bin, count), ...])`.
    #[allow(clippy::type_complexity)]
    fn export_shared(
        &self,
        py: Python<'_>,
    ) -> Vec<(
        String,
        String,
        String,
        Vec<(u64, u64, u64, u64, u64)>,
        Vec<(u64, Vec<(u32, u32)>)>,
    )> {
        let inner = Arc::clone(&self.inner);
        gil::run(py, Cost::Blocking, None, move || {
            let now = inner.clock().now_ms();
            inner
                .keys()
                .iter()
                .filter_map(|key| {
                    let export = crate::shared::export_key(&key.window, now);
                    if export.buckets.is_empty() && export.slices.is_empty() {
                        return None;
                    }
                    Some((
                        key.name.model.to_string(),
                        key.name.replica.to_string(),
                        key.name.task.to_string(),
                        export
                            .buckets
                            .iter()
                            .map(|(e, t)| {
                                (
                                    *e,
                                    t.requests,
                                    t.successes,
                                    t.latency_requests,
                                    t.latency_units,
                                )
                            })
                            .collect(),
                        export.slices,
                    ))
                })
                .collect()
        })
    }

    /// `(bucket epoch now, oldest bucket epoch in the window, slice epoch
    /// now, oldest slice epoch, bucket_ms, histogram bins)` at the tracker's time.
    fn shared_epochs(&self) -> (u64, u64, u64, u64, u64, usize) {
        let now = self.inner.clock().now_ms();
        let config = self.inner.config();
        let buckets = config.buckets as u64;
        let per_slice = (config.buckets / config.histogram_slices.max(1)) as u64;
        let epoch = now / config.bucket_ms.max(1);
        let slice = epoch / per_slice.max(1);
        (
            epoch,
            epoch.saturating_sub(buckets - 1),
            slice,
            slice.saturating_sub(config.histogram_slices as u64 - 1),
            config.bucket_ms,
            self.inner.bins_len(),
        )
    }

    /// Replaces the other instances' share of every key: `entries` of
    /// `(model, replica, task, (requests, successes, latency_requests,
    /// latency_units), [(bin, count), ...])`; keys not listed are zeroed,
    /// keys not known yet are registered.
    #[allow(clippy::type_complexity)]
    fn set_remote(
        &self,
        entries: Vec<(
            String,
            String,
            String,
            (u64, u64, u64, u64),
            Vec<(u32, u64)>,
        )>,
    ) -> PyResult<usize> {
        let bins = self.inner.bins_len();
        let mut seen = std::collections::HashSet::with_capacity(entries.len());
        for (
            index,
            (model, replica, task, (requests, successes, latency_requests, latency_units), hist),
        ) in entries.iter().enumerate()
        {
            if successes > requests || latency_requests > requests {
                return Err(ZetaError::InvalidInput {
                    field: "entries",
                    position: Position::Flat(index),
                    expected: "counts with successes and latency_requests <= requests",
                    value: format!(
                        "{model}/{replica}/{task}: {successes} successes, \
                         {latency_requests} timed of {requests}"
                    ),
                }
                .into());
            }
            let key = self.inner.key(model, replica, task)?;
            let histogram = if hist.is_empty() {
                None
            } else {
                let mut dense = vec![0_u64; bins];
                for (bin, count) in hist {
                    if let Some(slot) = dense.get_mut(*bin as usize) {
                        *slot += count;
                    }
                }
                Some(dense)
            };
            key.remote.set(
                &crate::window::Totals {
                    requests: *requests,
                    successes: *successes,
                    latency_requests: *latency_requests,
                    latency_units: *latency_units,
                },
                histogram,
            );
            seen.insert(Arc::as_ptr(&key) as usize);
        }
        for key in self.inner.keys() {
            if !seen.contains(&(Arc::as_ptr(&key) as usize)) {
                key.remote.set(&crate::window::Totals::default(), None);
            }
        }
        self.inner.refresh_rollup_remotes();
        Ok(entries.len())
    }

    /// The tracker's current time, ms since the Unix epoch.
    fn now_ms(&self) -> u64 {
        self.inner.clock().now_ms()
    }

    #[getter]
    fn window(&self) -> PyWindowConfig {
        PyWindowConfig { inner: self.window }
    }

    /// Bytes held by all windows.
    #[getter]
    fn memory_bytes(&self) -> usize {
        self.inner.memory_bytes()
    }

    /// A `str`, as the stub says: an `OsString` converts as `os.fsdecode`
    /// would, so a path that is not UTF-8 survives the round trip.
    #[getter]
    fn snapshot_path(&self) -> Option<std::ffi::OsString> {
        self.snapshot_path.clone().map(PathBuf::into_os_string)
    }

    /// The snapshot file the tracker started from, if any (a `str`).
    #[getter]
    fn restored_from(&self) -> Option<std::ffi::OsString> {
        self.restored_from.clone().map(PathBuf::into_os_string)
    }

    /// When the restored snapshot was taken (ms since the Unix epoch): every
    /// outcome recorded before then is in it.
    #[getter]
    fn restored_taken_at_ms(&self) -> Option<u64> {
        self.restored_taken_at_ms
    }

    /// Why the newest snapshot was skipped at start-up, if it was.
    #[getter]
    fn restore_warning(&self) -> Option<String> {
        self.restore_warning.clone()
    }

    /// Saves a snapshot now; returns its size in bytes.
    fn save(&self, py: Python<'_>) -> PyResult<usize> {
        let guard = self.persistence.lock().map_err(|_| saver_lock_poisoned())?;
        match guard.as_ref() {
            Some(p) => Ok(gil::run(py, Cost::Blocking, None, || p.saver.save_now())?),
            None => Err(ZetaError::Snapshot {
                reason: "this tracker has no snapshot_path (persistence is off), or it is closed"
                    .to_owned(),
            }
            .into()),
        }
    }

    /// Saves, counts and last error of the background saver.
    fn saver_status<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let guard = self.persistence.lock().map_err(|_| saver_lock_poisoned())?;
        let Some(p) = guard.as_ref() else {
            return Ok(None);
        };
        let status = p.saver.status();
        let dict = PyDict::new(py);
        dict.set_item("saves", status.saves)?;
        dict.set_item("failures", status.failures)?;
        dict.set_item("last_error", status.last_error)?;
        dict.set_item("last_bytes", status.last_bytes)?;
        Ok(Some(dict))
    }

    /// Stops the saver after a final snapshot and releases the file; idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self
            .persistence
            .lock()
            .map_err(|_| saver_lock_poisoned())?
            .take();
        if let Some(mut p) = taken {
            // Only the final save decides: a failure that a later save
            // superseded is history (saver_status still counts it).
            gil::run(py, Cost::Blocking, None, || p.saver.stop()).map_err(final_save_failed)?;
        }
        Ok(())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: &Bound<'_, PyAny>,
        _exc: &Bound<'_, PyAny>,
        _traceback: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }
}

/// A handle on one (model, replica, task) window.
#[pyclass(name = "TrackerKey", module = "zeta_fast._core", frozen)]
pub struct PyTrackerKey {
    pub inner: Arc<TrackedKey>,
    tracker: Arc<PerformanceTracker>,
}

#[pymethods]
impl PyTrackerKey {
    #[getter]
    fn model(&self) -> &str {
        &self.inner.name.model
    }
    #[getter]
    fn replica(&self) -> &str {
        &self.inner.name.replica
    }
    #[getter]
    fn task(&self) -> &str {
        &self.inner.name.task
    }

    /// Records one outcome for this key, with no lookup at all.
    fn record(&self, success: &Bound<'_, PyAny>, latency_ms: &Bound<'_, PyAny>) -> PyResult<()> {
        let success = success_arg(success)?;
        let latency = latency_arg(latency_ms)?;
        self.inner
            .record(self.tracker.clock().now_ms(), success, latency);
        Ok(())
    }

    /// This key's statistics, read now.
    fn stats(&self) -> PyTrackerStats {
        PyTrackerStats {
            inner: self.tracker.aggregate(&[Arc::clone(&self.inner)]),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "TrackerKey(model={:?}, replica={:?}, task={:?})",
            &*self.inner.name.model, &*self.inner.name.replica, &*self.inner.name.task
        )
    }
}

/// Statistics of one or more windows, read at one moment.
#[pyclass(name = "TrackerStats", module = "zeta_fast._core", frozen)]
pub struct PyTrackerStats {
    pub inner: Stats,
}

#[pymethods]
impl PyTrackerStats {
    #[getter]
    fn requests(&self) -> u64 {
        self.inner.window.requests
    }
    #[getter]
    fn successes(&self) -> u64 {
        self.inner.window.successes
    }
    #[getter]
    fn success_rate(&self) -> Option<f64> {
        self.inner.window.success_rate()
    }
    #[getter]
    fn mean_latency_ms(&self) -> Option<f64> {
        self.inner.window.mean_latency_ms()
    }
    #[getter]
    fn p50_ms(&self) -> Option<f64> {
        self.inner.p50_ms
    }
    #[getter]
    fn p95_ms(&self) -> Option<f64> {
        self.inner.p95_ms
    }
    #[getter]
    fn p99_ms(&self) -> Option<f64> {
        self.inner.p99_ms
    }
    #[getter]
    fn ewma_latency_ms(&self) -> Option<f64> {
        self.inner.ewma_latency_ms
    }
    #[getter]
    fn lifetime_requests(&self) -> u64 {
        self.inner.lifetime.requests
    }
    #[getter]
    fn lifetime_successes(&self) -> u64 {
        self.inner.lifetime.successes
    }
    #[getter]
    fn lifetime_success_rate(&self) -> Option<f64> {
        self.inner.lifetime.success_rate()
    }
    #[getter]
    fn lifetime_mean_latency_ms(&self) -> Option<f64> {
        self.inner.lifetime.mean_latency_ms()
    }
    #[getter]
    fn keys(&self) -> usize {
        self.inner.keys
    }
    #[getter]
    fn consistent(&self) -> bool {
        self.inner.consistent
    }

    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("requests", self.requests())?;
        dict.set_item("successes", self.successes())?;
        dict.set_item("success_rate", self.success_rate())?;
        dict.set_item("mean_latency_ms", self.mean_latency_ms())?;
        dict.set_item("p50_ms", self.p50_ms())?;
        dict.set_item("p95_ms", self.p95_ms())?;
        dict.set_item("p99_ms", self.p99_ms())?;
        dict.set_item("ewma_latency_ms", self.ewma_latency_ms())?;
        dict.set_item("lifetime_requests", self.lifetime_requests())?;
        dict.set_item("lifetime_successes", self.lifetime_successes())?;
        dict.set_item("lifetime_success_rate", self.lifetime_success_rate())?;
        dict.set_item("lifetime_mean_latency_ms", self.lifetime_mean_latency_ms())?;
        dict.set_item("keys", self.keys())?;
        dict.set_item("consistent", self.consistent())?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        let w = &self.inner.window;
        format!(
            "TrackerStats(requests={}, successes={}, success_rate={}, mean_latency_ms={}, p99_ms={})",
            w.requests,
            w.successes,
            opt(w.success_rate()),
            opt(w.mean_latency_ms()),
            opt(self.inner.p99_ms)
        )
    }
}

fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "None".to_owned(), float_repr)
}
