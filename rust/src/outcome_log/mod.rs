//! The outcome log: every decision and how it ended, in an embedded SQLite
//! database, written by a thread of its own.
//!
//! The request path pushes an owned row (a copy of the decision, no text
//! built) onto a bounded queue under an uncontended lock, never waits on the
//! writer and never needs the GIL. The writer takes what is queued every
//! `flush_interval` (sooner when 4,096 rows wait) and appends the batch in
//! one transaction, building the JSON columns there.
//!
//! Routing never depends on the log. A file that cannot be opened or written
//! (a lock held by another process, a full disk) keeps its rows queued and is
//! retried every interval; a corrupt file is moved aside and a new one
//! started; rows that do not fit the queue are dropped and counted; each
//! kind of trouble is reported once through the `notice` callback and kept
//! in `last_error`.

mod db;
mod insert;
mod json;
mod row;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use row::{unix_ms, LogRow, LoggedOutcome, COLUMNS};

use crate::errors::{float_repr, ZetaError};

/// Rows waiting at which the writer is woken before its interval is up.
const EAGER_BATCH: usize = 4096;

/// Reports trouble once (a log line): the bindings pass Python's logging.
pub type Notice = Box<dyn Fn(&str) + Send + Sync>;

/// How the log is kept.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub path: PathBuf,
    /// Model id -> price per 1,000 tokens, for the `cost` column.
    pub costs: HashMap<String, f64>,
    /// Rows held (queued or waiting for a retry) before appends are dropped.
    pub max_pending: usize,
    /// The longest a row waits before it is written.
    pub flush_interval: Duration,
    /// Rows older than this are deleted (at start and every `prune_every`).
    pub retention_days: Option<f64>,
    pub prune_every: Duration,
}

impl LogSettings {
    fn validate(&self) -> Result<(), ZetaError> {
        let invalid = |field, expected, value: String| ZetaError::InvalidConfig {
            field,
            expected,
            value,
        };
        if self.max_pending == 0 {
            return Err(invalid("max_pending", "an integer >= 1", "0".into()));
        }
        if self.flush_interval.is_zero() {
            return Err(invalid("flush_interval_s", "> 0", "0".into()));
        }
        if let Some(days) = self.retention_days.filter(|d| !(d.is_finite() && *d > 0.0)) {
            return Err(invalid("retention_days", "> 0 or None", float_repr(days)));
        }
        Ok(())
    }
}

#[derive(Default)]
struct Queue {
    rows: Vec<LogRow>,
    /// Rows the writer holds: a batch being written or kept for a retry.
    held: usize,
    /// The writer has a batch in hand.
    writing: bool,
    /// Someone waits in `flush`: write now.
    flush_wanted: bool,
    closing: bool,
}

struct Shared {
    settings: LogSettings,
    queue: Mutex<Queue>,
    /// Wakes the writer.
    wake: Condvar,
    /// Wakes those waiting for the writer to be done (`flush`).
    done: Condvar,
    written: AtomicU64,
    dropped: AtomicU64,
    drop_reported: AtomicBool,
    last_error: Mutex<Option<String>>,
    notice: Notice,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock cannot leave the queue torn (it is
        // only pushed to and swapped): keep going with it.
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn drop_rows(&self, count: usize) {
        if count == 0 {
            return;
        }
        self.dropped.fetch_add(count as u64, Ordering::Relaxed);
        if !self.drop_reported.swap(true, Ordering::Relaxed) {
            (self.notice)(&format!(
                "outcome log {}: rows are being dropped (the queue of {} is full); \
                 routing is not affected, drops are counted",
                self.settings.path.display(),
                self.settings.max_pending
            ));
        }
    }

    /// Keeps `error` as the last one, reporting it when it is new.
    fn fail(&self, error: String) {
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.as_deref() != Some(error.as_str()) {
            (self.notice)(&format!("outcome log: {error}"));
        }
        *last = Some(error);
    }
}

/// The outcome log's writer: a queue and the thread that empties it.
pub struct OutcomeLog {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl OutcomeLog {
    /// Starts the writer; the file is opened by it, so a locked or broken
    /// file never delays or fails the caller.
    pub fn start(settings: LogSettings, notice: Notice) -> Result<Self, ZetaError> {
        settings.validate()?;
        let shared = Arc::new(Shared {
            settings,
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            done: Condvar::new(),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            drop_reported: AtomicBool::new(false),
            last_error: Mutex::new(None),
            notice,
        });
        // The first open (and prune) here: the table exists once `start`
        // returns, unless the file cannot be opened now (then the writer
        // retries, and the caller goes on: a lock waits 100 ms at most).
        let mut writer = Writer::new(Arc::clone(&shared));
        writer.prune_when_due();
        let thread = std::thread::Builder::new()
            .name("zeta-fast-outcome-log".into())
            .spawn(move || writer.run())
            .map_err(|e| ZetaError::Internal {
                what: format!("could not start the outcome log's writer: {e}"),
            })?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a row; false (and counted in `dropped`) when the queue is full
    /// or the log is closed. Never waits on the writer.
    #[inline]
    pub fn append(&self, row: LogRow) -> bool {
        let mut queue = self.shared.lock();
        if queue.closing || queue.rows.len() + queue.held >= self.shared.settings.max_pending {
            drop(queue);
            self.shared.drop_rows(1);
            return false;
        }
        queue.rows.push(row);
        if queue.rows.len() == EAGER_BATCH {
            self.shared.wake.notify_one();
        }
        true
    }

    /// Waits until everything queued so far is written (or `timeout`);
    /// true when nothing is left unwritten.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut queue = self.shared.lock();
        loop {
            if queue.rows.is_empty() && queue.held == 0 && !queue.writing {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            queue.flush_wanted = true;
            self.shared.wake.notify_one();
            queue = match self.shared.done.wait_timeout(queue, left) {
                Ok((queue, _)) => queue,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Writes what is queued (waiting up to `timeout`), stops the writer and
    /// refuses further rows; what could not be written is counted as
    /// dropped. Idempotent.
    pub fn close(&self, timeout: Duration) {
        let written = self.flush(timeout);
        {
            let mut queue = self.shared.lock();
            queue.closing = true;
            if !written {
                // Give up on what is left: the writer must not retry forever.
                let left = std::mem::take(&mut queue.rows);
                drop(queue);
                self.shared.drop_rows(left.len());
            }
        }
        self.shared.wake.notify_one();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    pub fn settings(&self) -> &LogSettings {
        &self.shared.settings
    }

    /// Rows written to the database.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Rows not logged: the queue was full, or the log closed first.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Rows queued or held by the writer, not yet written.
    pub fn pending(&self) -> usize {
        let queue = self.shared.lock();
        queue.rows.len() + queue.held
    }

    /// The last trouble the writer met (it keeps going), if any.
    pub fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Drop for OutcomeLog {
    fn drop(&mut self) {
        self.close(Duration::from_secs(10));
    }
}

/// The writer thread's state.
struct Writer {
    shared: Arc<Shared>,
    db: Option<rusqlite::Connection>,
    /// Rows a failed write kept for the next round, oldest first.
    retry: Vec<LogRow>,
    next_prune: Instant,
}

impl Writer {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            db: None,
            retry: Vec::new(),
            next_prune: Instant::now(),
        }
    }

    fn run(mut self) {
        loop {
            let closing = {
                let mut queue = self.shared.lock();
                if queue.rows.is_empty() && !queue.closing && !queue.flush_wanted {
                    queue = match self
                        .shared
                        .wake
                        .wait_timeout(queue, self.shared.settings.flush_interval)
                    {
                        Ok((queue, _)) => queue,
                        Err(poisoned) => poisoned.into_inner().0,
                    };
                }
                queue.flush_wanted = false;
                // Two buffers take turns (the queue's and the writer's), each
                // keeping its capacity: no regrowth, no fresh pages per batch.
                if self.retry.is_empty() {
                    std::mem::swap(&mut queue.rows, &mut self.retry);
                } else {
                    self.retry.append(&mut queue.rows);
                }
                queue.held = self.retry.len();
                queue.writing = !self.retry.is_empty();
                queue.closing
            };
            self.write();
            self.prune_when_due();
            let mut queue = self.shared.lock();
            if closing && queue.rows.is_empty() {
                // The last round: what still failed is given up, counted.
                let left = std::mem::take(&mut self.retry);
                queue.held = 0;
                queue.writing = false;
                drop(queue);
                self.shared.drop_rows(left.len());
                self.shared.done.notify_all();
                return;
            }
            queue.held = self.retry.len();
            queue.writing = false;
            drop(queue);
            self.shared.done.notify_all();
        }
    }

    fn connection(&mut self) -> Option<&mut rusqlite::Connection> {
        if self.db.is_none() {
            let shared = Arc::clone(&self.shared);
            let path = &shared.settings.path;
            match db::open(path) {
                Ok(opened) => self.db = Some(opened),
                Err(error) if db::is_corrupt(&error) => {
                    self.start_over(&error.to_string());
                    if let Ok(opened) = db::open(path) {
                        self.db = Some(opened);
                    }
                }
                Err(error) => self.shared.fail(format!(
                    "cannot open {}: {error} (rows are kept and retried)",
                    path.display()
                )),
            }
        }
        self.db.as_mut()
    }

    /// Moves a corrupt file aside; the next open starts a new one.
    fn start_over(&mut self, error: &str) {
        self.db = None;
        let path = &self.shared.settings.path;
        match db::move_aside(path, unix_ms()) {
            Ok(aside) => self.shared.fail(format!(
                "{} was corrupt ({error}): moved to {} and a new log started",
                path.display(),
                aside.display()
            )),
            Err(io) => self.shared.fail(format!(
                "{} is corrupt ({error}) and could not be moved aside: {io}",
                path.display()
            )),
        }
    }

    fn write(&mut self) {
        if self.retry.is_empty() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let price = |model: &str| shared.settings.costs.get(model).copied().unwrap_or(0.0);
        let rows = std::mem::take(&mut self.retry);
        let result = self.connection().map(|db| db::append(db, &rows, &price));
        self.retry = rows;
        match result {
            Some(Ok(count)) => {
                self.shared
                    .written
                    .fetch_add(count as u64, Ordering::Relaxed);
                self.retry.clear();
            }
            Some(Err(error)) if db::is_corrupt(&error) => self.start_over(&error.to_string()),
            Some(Err(error)) => self.shared.fail(format!(
                "cannot write {}: {error} (rows are kept and retried)",
                self.shared.settings.path.display()
            )),
            None => {}
        }
        // What is held may not outgrow the queue's bound: the oldest go.
        let max = self.shared.settings.max_pending;
        if self.retry.len() > max {
            let excess = self.retry.len() - max;
            self.retry.drain(..excess);
            self.shared.drop_rows(excess);
        }
    }

    /// Opens the file when it is not (always: it makes sure the table
    /// is there) and prunes it when retention is on and it is time.
    fn prune_when_due(&mut self) {
        let Some(days) = self.shared.settings.retention_days else {
            let _ = self.connection();
            return;
        };
        if Instant::now() < self.next_prune {
            return;
        }
        self.next_prune = Instant::now() + self.shared.settings.prune_every;
        let cutoff = unix_ms() - (days * 86_400_000.0) as i64;
        if let Some(db) = self.connection() {
            if let Err(error) = db::prune(db, cutoff) {
                self.shared.fail(format!("cannot prune old rows: {error}"));
            }
        }
    }
}
