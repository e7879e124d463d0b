//! Many threads registering the same keys at once on the real (papaya) map:
//! every thread gets the same `Arc` per key, the generation counts each key
//! once, every record lands in the kept window, and a reader racing them
//! always finds every key the generation it read counts.
#![cfg(not(loom))]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use zeta_fast::clock::Clock;
use zeta_fast::tracker::{PerformanceTracker, TrackedKey};
use zeta_fast::window::WindowConfig;

const THREADS: usize = 8;
const KEYS: usize = 1_000;
const ROUNDS: usize = 20;

/// Key `i`: 10 models x 10 replicas x 10 tasks.
fn name(i: usize) -> (String, String, String) {
    (
        format!("model-{}", i / 100),
        format!("replica-{}", i / 10 % 10),
        format!("task-{}", i % 10),
    )
}

/// The order thread `t` registers in: half the threads in one order (so
/// they collide on every key), the others reversed or rotated.
fn order(t: usize) -> Vec<usize> {
    let mut keys: Vec<usize> = (0..KEYS).collect();
    match t % 4 {
        0 | 1 => {}
        2 => keys.reverse(),
        _ => keys.rotate_left(KEYS / 2),
    }
    keys
}

#[test]
fn eight_threads_racing_a_thousand_keys_share_one_arc_each() {
    let names = Arc::new((0..KEYS).map(name).collect::<Vec<_>>());
    for _ in 0..ROUNDS {
        let tracker = Arc::new(
            PerformanceTracker::new(WindowConfig::default(), Clock::manual(1_000_000)).unwrap(),
        );
        // The writers, the reader and this thread start together.
        let start = Arc::new(Barrier::new(THREADS + 2));
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (tracker, start, done) = (tracker.clone(), start.clone(), done.clone());
            thread::spawn(move || {
                start.wait();
                let mut last = 0;
                let mut reads = 0_u64;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let (generation, keys) = tracker.keys_at_generation();
                    assert!(
                        keys.len() as u64 >= generation,
                        "generation {generation} read, {} keys listed",
                        keys.len()
                    );
                    assert!(generation >= last, "generation went back");
                    last = generation;
                    reads += 1;
                    if finished {
                        return reads;
                    }
                }
            })
        };
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (tracker, start, names) = (tracker.clone(), start.clone(), names.clone());
                thread::spawn(move || {
                    start.wait();
                    let mut got: Vec<Option<Arc<TrackedKey>>> = vec![None; KEYS];
                    for i in order(t) {
                        let (model, replica, task) = &names[i];
                        let key = tracker.key(model, replica, task).unwrap();
                        key.window.record(1_000_000, true, 1.0);
                        got[i] = Some(key);
                    }
                    got
                })
            })
            .collect();
        start.wait();
        let got: Vec<Vec<Option<Arc<TrackedKey>>>> =
            writers.into_iter().map(|w| w.join().unwrap()).collect();
        done.store(true, Ordering::Release);
        assert!(reader.join().unwrap() > 0);

        assert_eq!(tracker.generation(), KEYS as u64, "each key counted once");
        let kept = tracker.keys();
        assert_eq!(kept.len(), KEYS);
        let distinct: HashSet<_> = kept.iter().map(|k| Arc::as_ptr(k) as usize).collect();
        assert_eq!(distinct.len(), KEYS);
        for (i, (model, replica, task)) in names.iter().enumerate() {
            let first = got[0][i].as_ref().unwrap();
            for (t, thread_got) in got.iter().enumerate() {
                let key = thread_got[i].as_ref().unwrap();
                assert!(
                    Arc::ptr_eq(first, key),
                    "thread {t} got another Arc for key {i}"
                );
            }
            let now = tracker.key(model, replica, task).unwrap();
            assert!(Arc::ptr_eq(first, &now), "the map kept another Arc");
            // Every thread's record is in the kept window: none went to a
            // window the map dropped.
            assert_eq!(
                now.window.snapshot(1_000_000).lifetime.requests,
                THREADS as u64
            );
        }
    }
}
