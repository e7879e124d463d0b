//! loom models of the circuit breaker: however threads interleave, a
//! half-open breaker lets exactly one probe out, and racing outcomes leave
//! it in a state some serial order would have produced.
#![cfg(loom)]

use loom::model::Builder;
use loom::sync::Arc;
use loom::thread;
use zeta_fast::breaker::{Admission, BreakerConfig, BreakerState, CircuitBreaker};

fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(body);
}

fn config() -> BreakerConfig {
    BreakerConfig::new(2, 100, 1).unwrap()
}

fn opened() -> Arc<CircuitBreaker> {
    let breaker = Arc::new(CircuitBreaker::new(0));
    breaker.on_outcome(&config(), false, 0);
    breaker.on_outcome(&config(), false, 0);
    assert_eq!(breaker.state(), BreakerState::Open);
    breaker
}

#[test]
fn racing_requests_release_exactly_one_probe() {
    model(|| {
        let breaker = opened();
        let other = breaker.clone();
        let racer = thread::spawn(move || other.try_admit(&config(), 100));
        let mine = breaker.try_admit(&config(), 100);
        let theirs = racer.join().unwrap();
        let probes = [mine, theirs]
            .iter()
            .filter(|a| **a == Admission::Probe)
            .count();
        assert_eq!(probes, 1, "{mine:?} {theirs:?}");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
    });
}

#[test]
fn a_probe_outcome_racing_a_new_request_is_never_lost() {
    model(|| {
        let breaker = opened();
        assert_eq!(breaker.try_admit(&config(), 100), Admission::Probe);
        let other = breaker.clone();
        // The probe succeeds (success_threshold 1: it closes) while another
        // request asks to go.
        let outcome = thread::spawn(move || other.on_outcome(&config(), true, 101));
        let admission = breaker.try_admit(&config(), 101);
        outcome.join().unwrap();
        assert_eq!(breaker.state(), BreakerState::Closed);
        // Before the close it was refused (probe out); after, allowed.
        assert!(matches!(admission, Admission::Refused | Admission::Allowed));
    });
}

#[test]
fn concurrent_failures_open_it_once() {
    model(|| {
        let breaker = Arc::new(CircuitBreaker::new(0));
        let other = breaker.clone();
        let racer = thread::spawn(move || other.on_outcome(&config(), false, 5));
        breaker.on_outcome(&config(), false, 5);
        racer.join().unwrap();
        assert_eq!(breaker.state(), BreakerState::Open, "2 failures of 2");
        assert_eq!(breaker.try_admit(&config(), 104), Admission::Refused);
        assert_eq!(breaker.try_admit(&config(), 105), Admission::Probe);
    });
}
