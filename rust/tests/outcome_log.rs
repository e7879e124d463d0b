//! The outcome log against a real SQLite file: rows written whole, a full
//! queue dropping and counting, a file locked by another connection (rows
//! kept, written once the lock goes), a corrupt file moved aside at start
//! and while running, and close giving up on what cannot be written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use zeta_fast::clock::Clock;
use zeta_fast::learned_capability::RequestView;
use zeta_fast::outcome_log::{unix_ms, LogRow, LogSettings, LoggedOutcome, OutcomeLog};
use zeta_fast::policies::model_ordering;
use zeta_fast::routing::{Decision, ModelInput, Resilience, RouterCore};
use zeta_fast::tracker::PerformanceTracker;
use zeta_fast::window::WindowConfig;
use zeta_fast::{AdaptiveConfig, AdaptiveScorer, ZetaError};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn router() -> Result<Arc<RouterCore>, ZetaError> {
    let tracker = Arc::new(PerformanceTracker::new(
        WindowConfig::default(),
        Clock::manual(1_000_000),
    )?);
    let models = ["coder", "chatter"]
        .iter()
        .map(|id| ModelInput {
            id: (*id).to_owned(),
            capabilities: vec![("code".to_owned(), 80.0), ("chat".to_owned(), 70.0)],
            ranges: vec![(0.0, 1.0)],
            replicas: vec![(format!("{id}-a"), 0)],
            context_window: 0,
            fallbacks: Vec::new(),
        })
        .collect();
    Ok(Arc::new(RouterCore::new(
        tracker,
        AdaptiveScorer::new(AdaptiveConfig::default())?,
        models,
        "least_loaded",
        model_ordering("by_score", 0.0)?,
        Resilience::default(),
    )?))
}

fn decision(core: &RouterCore) -> Result<Decision, ZetaError> {
    let d = core.route(0, 0.5, 0, RequestView::default())?;
    core.release(&d);
    Ok(d)
}

fn row(core: &Arc<RouterCore>, latency_ms: f64) -> Result<LogRow, ZetaError> {
    Ok(LogRow {
        ts_ms: unix_ms(),
        router: Arc::clone(core),
        decision: decision(core)?,
        context: None,
        profile: None,
        outcome: LoggedOutcome {
            outcome: "success",
            latency_ms,
            ttft_ms: Some(1.5),
            prompt_tokens: 10,
            completion_tokens: 30,
            learned: None,
            request_id: Some("req-7".into()),
            source: None,
            verdict: None,
            confidence: None,
            detail: None,
        },
    })
}

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zeta-fast-log-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Notices the log reported, for asserting on.
fn notices() -> (Arc<Mutex<Vec<String>>>, zeta_fast::outcome_log::Notice) {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&kept);
    let notice = Box::new(move |message: &str| {
        if let Ok(mut kept) = sink.lock() {
            kept.push(message.to_owned());
        }
    });
    (kept, notice)
}

fn settings(path: &Path, max_pending: usize) -> LogSettings {
    LogSettings {
        path: path.to_owned(),
        costs: HashMap::from([("coder".to_owned(), 2.0)]),
        max_pending,
        flush_interval: Duration::from_millis(20),
        retention_days: Some(30.0),
        prune_every: Duration::from_secs(600),
    }
}

fn count(path: &Path) -> rusqlite::Result<i64> {
    Connection::open(path)?.query_row("SELECT COUNT(*) FROM outcomes", [], |r| r.get(0))
}

/// Polls `condition` until it holds or 10 s pass.
fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::yield_now();
    }
    condition()
}

#[test]
fn rows_are_written_whole_with_their_columns() -> TestResult {
    let dir = folder("whole");
    let path = dir.join("o.sqlite");
    let core = router()?;
    let (_, notice) = notices();
    let log = OutcomeLog::start(settings(&path, 1000), notice)?;
    for i in 0..100 {
        assert!(log.append(row(&core, f64::from(i))?));
    }
    assert!(log.flush(Duration::from_secs(10)));
    assert_eq!(log.written(), 100);
    let db = Connection::open(&path)?;
    let (model, replica, task, outcome, success, cost, request, penalties): (
        String,
        String,
        String,
        String,
        i64,
        f64,
        String,
        String,
    ) = db.query_row(
        "SELECT model, replica, task, outcome, success, cost, request_id, penalties \
         FROM outcomes ORDER BY latency_ms LIMIT 1",
        [],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        },
    )?;
    assert_eq!(
        (model.as_str(), replica.as_str(), task.as_str()),
        ("coder", "coder-a", "code")
    );
    assert_eq!(
        (outcome.as_str(), success, request.as_str()),
        ("success", 1, "req-7")
    );
    assert!((cost - 2.0 * 40.0 / 1000.0).abs() < 1e-12, "{cost}");
    assert_eq!(penalties, "[]");
    let sum: f64 = db.query_row("SELECT SUM(latency_ms) FROM outcomes", [], |r| r.get(0))?;
    assert_eq!(sum, (0..100).map(f64::from).sum::<f64>());
    log.close(Duration::from_secs(10));
    assert!(!log.append(row(&core, 1.0)?), "closed: refused");
    assert_eq!(log.dropped(), 1);
    Ok(())
}

#[test]
fn a_full_queue_drops_counts_and_says_so_once() -> TestResult {
    let dir = folder("full");
    let path = dir.join("o.sqlite");
    let core = router()?;
    let (kept, notice) = notices();
    let log = OutcomeLog::start(settings(&path, 50), notice)?;
    // Locked elsewhere: whatever the writer takes meanwhile, it holds (and
    // counts against the bound) rather than writes.
    let other = Connection::open(&path)?;
    other.execute_batch("BEGIN EXCLUSIVE")?;
    let accepted = (0..500)
        .map(|_| row(&core, 1.0).map(|r| log.append(r)))
        .collect::<Result<Vec<bool>, _>>()?
        .into_iter()
        .filter(|a| *a)
        .count();
    assert_eq!(accepted, 50);
    assert_eq!(log.dropped(), 450);
    other.execute_batch("COMMIT")?;
    log.close(Duration::from_secs(10));
    assert_eq!(count(&path)?, 50);
    let kept = kept.lock().map_err(|_| "poisoned")?;
    assert_eq!(
        kept.iter().filter(|m| m.contains("dropped")).count(),
        1,
        "{kept:?}"
    );
    Ok(())
}

#[test]
fn a_lock_held_elsewhere_keeps_rows_until_it_goes() -> TestResult {
    let dir = folder("locked");
    let path = dir.join("o.sqlite");
    let core = router()?;
    let (_, notice) = notices();
    let log = OutcomeLog::start(settings(&path, 10_000), notice)?;
    let other = Connection::open(&path)?;
    other.execute_batch("BEGIN EXCLUSIVE")?;
    for _ in 0..20 {
        assert!(log.append(row(&core, 1.0)?));
    }
    assert!(eventually(|| log
        .last_error()
        .is_some_and(|e| e.contains("locked"))));
    assert_eq!(log.written(), 0);
    assert_eq!(log.pending(), 20, "kept for a retry, not dropped");
    other.execute_batch("COMMIT")?;
    assert!(log.flush(Duration::from_secs(10)));
    assert_eq!((log.written(), log.dropped()), (20, 0));
    drop(other);
    assert_eq!(count(&path)?, 20);
    Ok(())
}

#[test]
fn a_corrupt_file_is_moved_aside_and_a_new_log_started() -> TestResult {
    let dir = folder("corrupt");
    let path = dir.join("o.sqlite");
    std::fs::write(&path, vec![0x5a; 8192])?;
    let core = router()?;
    let (kept, notice) = notices();
    let log = OutcomeLog::start(settings(&path, 1000), notice)?;
    assert!(log.append(row(&core, 1.0)?));
    assert!(log.flush(Duration::from_secs(10)));
    assert_eq!(count(&path)?, 1);
    let aside: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert_eq!(
        std::fs::read(aside[0].path())?,
        vec![0x5a; 8192],
        "kept as it was"
    );
    let kept = kept.lock().map_err(|_| "poisoned")?;
    assert!(kept.iter().any(|m| m.contains("was corrupt")), "{kept:?}");
    Ok(())
}

#[test]
fn close_gives_up_on_rows_it_cannot_write_and_counts_them() -> TestResult {
    let dir = folder("give-up");
    let path = dir.join("o.sqlite");
    let core = router()?;
    let (_, notice) = notices();
    let log = OutcomeLog::start(settings(&path, 1000), notice)?;
    let other = Connection::open(&path)?;
    other.execute_batch("BEGIN EXCLUSIVE")?;
    for _ in 0..5 {
        assert!(log.append(row(&core, 1.0)?));
    }
    let started = Instant::now();
    log.close(Duration::from_millis(300));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a hang guard only"
    );
    assert_eq!((log.written(), log.dropped()), (0, 5));
    Ok(())
}

#[test]
fn threads_appending_at_once_lose_nothing() -> TestResult {
    let dir = folder("threads");
    let path = dir.join("o.sqlite");
    let core = router()?;
    let (_, notice) = notices();
    let log = Arc::new(OutcomeLog::start(settings(&path, 1_000_000), notice)?);
    let rows: Vec<Vec<LogRow>> = (0..4)
        .map(|_| (0..5_000).map(|_| row(&core, 1.0)).collect())
        .collect::<Result<_, _>>()?;
    let workers: Vec<_> = rows
        .into_iter()
        .map(|batch| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                // Refused appends, counted (each row is offered).
                let refused = batch
                    .into_iter()
                    .map(|r| log.append(r))
                    .filter(|accepted| !accepted)
                    .count();
                refused == 0
            })
        })
        .collect();
    for worker in workers {
        assert!(worker.join().map_err(|_| "a worker panicked")?);
    }
    assert!(log.flush(Duration::from_secs(30)));
    assert_eq!((log.written(), log.dropped()), (20_000, 0));
    assert_eq!(count(&path)?, 20_000);
    Ok(())
}
