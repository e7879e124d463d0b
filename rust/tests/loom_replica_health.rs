//! loom model of a replica's health averages: each outcome is blended in by
//! a CAS loop, so however observes interleave, each average ends as some
//! serial order of the outcomes would leave it, and no outcome is lost.
#![cfg(loom)]

use loom::model::Builder;
use loom::sync::Arc;
use loom::thread;
use zeta_fast::replica_health::ReplicaHealth;

fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(body);
}

const ALPHA: f64 = 0.25;

#[test]
fn racing_observes_are_both_blended_in() {
    model(|| {
        let health = Arc::new(ReplicaHealth::default());
        let other = health.clone();
        let failure = thread::spawn(move || other.observe(false, 500.0, ALPHA));
        health.observe(true, 20.0, ALPHA);
        failure.join().unwrap();
        let (fail, latency, samples) = health.read();
        assert_eq!(samples, 2);
        // Failure first: 1 then 1 + a(0 - 1); success first: 0 then a(1 - 0).
        let serial = [1.0 - ALPHA, ALPHA];
        assert!(
            serial.contains(&fail),
            "failure share {fail}: an outcome was lost"
        );
        // Only the success says anything about latency.
        assert_eq!(latency, 20.0);
    });
}

#[test]
fn racing_successes_blend_both_latencies() {
    model(|| {
        let health = Arc::new(ReplicaHealth::default());
        let other = health.clone();
        let slow = thread::spawn(move || other.observe(true, 400.0, ALPHA));
        health.observe(true, 100.0, ALPHA);
        slow.join().unwrap();
        let (fail, latency, samples) = health.read();
        assert_eq!((fail, samples), (0.0, 2));
        // 100 then 400: 175; 400 then 100: min(325, 2 x 100) = 200.
        assert!(
            latency == 175.0 || latency == 200.0,
            "latency {latency}: an outcome was lost"
        );
    });
}
