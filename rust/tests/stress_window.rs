//! Many threads recording into one window at once: no update is lost.
#![cfg(not(loom))]

use std::sync::Arc;
use std::thread;

use zeta_fast::window::{KeyWindow, WindowConfig};

const THREADS: u64 = 8;
const RECORDS: u64 = 1_000_000;

#[test]
fn eight_threads_a_million_records_each_exact_totals() {
    let config = WindowConfig::default();
    let start_ms = 1_700_000_000_000;
    let window = Arc::new(KeyWindow::new(config, config.validate().unwrap(), start_ms));
    let handles: Vec<_> = (0..THREADS)
        .map(|thread_index| {
            let window = Arc::clone(&window);
            thread::spawn(move || {
                for i in 0..RECORDS {
                    // Time moves through ~3 window horizons while the threads
                    // race, so records also race rotations and expiry.
                    let now = start_ms + i;
                    let success = (i + thread_index) % 10 != 0;
                    window.record(now, success, 2.0);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let snapshot = window.snapshot(start_ms + RECORDS);
    let total = THREADS * RECORDS;
    assert!(snapshot.consistent);
    assert_eq!(snapshot.lifetime.requests, total);
    assert_eq!(snapshot.lifetime.successes, total - total / 10);
    assert_eq!(snapshot.lifetime.latency_requests, total);
    assert_eq!(snapshot.lifetime.latency_units, total * 200);
}

#[test]
fn eight_threads_in_one_bucket_fill_the_window_exactly() {
    let config = WindowConfig::default();
    let now = 42_000;
    let window = Arc::new(KeyWindow::new(config, config.validate().unwrap(), now));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let window = Arc::clone(&window);
            thread::spawn(move || {
                for i in 0..RECORDS {
                    window.record(now, i % 2 == 0, 10.0);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let snapshot = window.snapshot(now);
    assert_eq!(snapshot.window.requests, THREADS * RECORDS);
    assert_eq!(snapshot.window.successes, THREADS * RECORDS / 2);
    assert_eq!(snapshot.histogram.iter().sum::<u64>(), THREADS * RECORDS);
    assert_eq!(window.live_totals(now), snapshot.window);
}

#[test]
fn threads_registering_and_recording_through_the_tracker_lose_nothing() {
    use zeta_fast::clock::Clock;
    use zeta_fast::tracker::PerformanceTracker;

    let tracker =
        Arc::new(PerformanceTracker::new(WindowConfig::default(), Clock::System).unwrap());
    let per_thread = 200_000_u64;
    let handles: Vec<_> = (0..THREADS)
        .map(|thread_index| {
            let tracker = Arc::clone(&tracker);
            thread::spawn(move || {
                for i in 0..per_thread {
                    // Sixteen keys shared by all threads: first uses race to register.
                    let replica = format!("r{}", (i + thread_index) % 16);
                    tracker
                        .record("model", &replica, "task", i % 2 == 0, 1.0)
                        .unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    let stats = tracker.stats("model", None, None);
    assert_eq!(tracker.keys().len(), 16);
    assert_eq!(stats.lifetime.requests, THREADS * per_thread);
    assert_eq!(stats.lifetime.successes, THREADS * per_thread / 2);
    // The model's rollups got every record too (the real clock may have
    // moved buckets meanwhile, so lifetime = window + expired is compared).
    for task in [Some("task"), None] {
        let rollup = tracker.rollup("model", task);
        let snapshot = rollup.window.snapshot(tracker.clock().now_ms());
        assert_eq!(snapshot.lifetime.requests, THREADS * per_thread, "{task:?}");
        assert_eq!(snapshot.lifetime.successes, THREADS * per_thread / 2);
        assert_eq!(snapshot.lifetime.latency_units, THREADS * per_thread * 100);
    }
}
