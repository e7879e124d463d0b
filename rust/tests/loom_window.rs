//! loom models of the window's races: concurrent records, records racing a
//! rotation, and reads racing both. Run with
//! `RUSTFLAGS="--cfg loom" cargo test --release --test loom_window`.
#![cfg(loom)]

use loom::model::Builder;
use loom::sync::Arc;
use loom::thread;
use zeta_fast::window::{KeyWindow, WindowConfig};

/// Bounded preemptions (loom's advice for real-sized models): every
/// interleaving with up to this many forced thread switches is explored,
/// which covers the races of two threads over a handful of atomics.
fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(body);
}

/// Two buckets of 1 s, one histogram slice, a handful of bins: small enough
/// for loom to explore every interleaving.
fn small_window(now_ms: u64) -> KeyWindow {
    let config = WindowConfig {
        bucket_ms: 1_000,
        buckets: 2,
        histogram_slices: 1,
        latency_min_ms: 1.0,
        latency_max_ms: 1.2,
        ewma_alpha: 0.5,
    };
    KeyWindow::new(config, config.validate().unwrap(), now_ms)
}

#[test]
fn concurrent_records_are_all_counted() {
    model(|| {
        let window = Arc::new(small_window(0));
        let other = window.clone();
        let writer = thread::spawn(move || other.record(10, true, 1.0));
        window.record(20, false, 1.0);
        writer.join().unwrap();
        let snapshot = window.snapshot(30);
        assert_eq!(snapshot.window.requests, 2);
        assert_eq!(snapshot.window.successes, 1);
        assert_eq!(snapshot.window.latency_units, 200);
        assert_eq!(snapshot.histogram.iter().sum::<u64>(), 2);
        assert_eq!(window.live_totals(30), snapshot.window);
    });
}

#[test]
fn a_record_racing_a_rotation_is_never_lost() {
    model(|| {
        let window = Arc::new(small_window(0));
        let other = window.clone();
        // This one crosses into epoch 1 and moves the window...
        let rotating = thread::spawn(move || other.record(1_000, true, 1.0));
        // ...while this one records in epoch 0.
        window.record(500, false, 1.0);
        rotating.join().unwrap();
        let snapshot = window.snapshot(1_500);
        assert!(snapshot.consistent);
        assert_eq!(snapshot.lifetime.requests, 2);
        assert_eq!(snapshot.lifetime.successes, 1);
        // Both are recent enough to still be in the two-bucket window.
        assert_eq!(snapshot.window.requests, 2);
        // The decision's live totals never lose or double a racing record.
        assert_eq!(window.live_totals(1_500), snapshot.window);
    });
}

#[test]
fn expiry_racing_a_record_keeps_lifetime_exact() {
    model(|| {
        let window = Arc::new(small_window(0));
        window.record(0, true, 1.0);
        let other = window.clone();
        // Jumps three epochs: the window empties while a writer records.
        let rotating = thread::spawn(move || other.record(3_000, true, 1.0));
        window.record(100, true, 1.0);
        rotating.join().unwrap();
        let snapshot = window.snapshot(3_000);
        assert_eq!(snapshot.lifetime.requests, 3);
        assert_eq!(snapshot.lifetime.latency_requests, 3);
        assert!(snapshot.window.requests >= 1);
        assert_eq!(window.live_totals(3_000), snapshot.window);
    });
}

#[test]
fn readers_never_see_half_a_record() {
    model(|| {
        let window = Arc::new(small_window(0));
        let other = window.clone();
        let writer = thread::spawn(move || {
            other.record(10, true, 1.0);
            other.record(1_010, false, 1.0);
        });
        let snapshot = window.snapshot(1_020);
        // Each word is whole: successes never exceed requests, and the
        // latency sum is exactly 100 units (1 ms) per request it counts.
        let w = snapshot.window;
        assert!(w.successes <= w.requests);
        assert!(w.requests <= 2);
        assert_eq!(w.latency_units, 100 * w.latency_requests);
        writer.join().unwrap();
        let done = window.snapshot(1_020);
        assert_eq!(done.window.requests, 2);
        assert_eq!(done.lifetime.requests, 2);
    });
}
