//! loom model of the learned weights' Hogwild! updates (`zeta_fast::hogwild`,
//! the step `OutcomePredictor::update` takes per model): two threads each
//! take one logistic SGD step on the same two weights while a third
//! predicts. Whatever the interleaving:
//! - every weight read (the predictor's, mid-update) is a value some
//!   thread wrote whole, i.e. one of the admissible values below, never a
//!   torn one, an intermediate or a marker;
//! - the prediction is finite, in [0, 1], and its sum is one of the sums
//!   of admissible values;
//! - each weight ends at a serialisation or lost-update outcome: one
//!   thread's step from values written before it.
//!
//! The admissible values of a weight: its first value, and each thread's
//! step computed from any mix of the first values and the other thread's
//! values (a step reads all its weights before it stores any, so it can see
//! none, some or all of the other's stores, never its own).
#![cfg(loom)]

use std::panic::resume_unwind;
// The admissible values are worked out once, outside the model.
use std::sync::Arc as Shared;

use loom::model::Builder;
use loom::sync::Arc;
use loom::thread;
use zeta_fast::hogwild::{self, descend, dot, logistic_error, sigmoid, Row};

fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(body);
}

/// The predictor's defaults.
const ETA: f64 = 0.3;
const L2: f64 = 1e-5;
/// Weight 0 a feature, weight 1 the bias.
const INDICES: [u32; 2] = [0, 1];
const FIRST: [f64; 2] = [0.75, -0.5];

/// An updater: its features' values and its outcome.
type Updater = ([f64; 2], bool);
const UPDATERS: [Updater; 2] = [([0.5, 1.0], true), ([1.0, 1.0], false)];
/// What the predictor reads the weights with.
const PREDICTED: [f64; 2] = [0.25, 1.0];

/// The weights `updater` writes having read `read`: exactly the library's
/// arithmetic (its `dot`, `logistic_error` and `descend`).
fn step_from((values, success): Updater, read: [f64; 2]) -> [f64; 2] {
    let error = logistic_error(dot(&read, &values), success);
    let mut out = [0.0; 2];
    for ((out, weight), value) in out.iter_mut().zip(read).zip(values) {
        *out = descend(weight, value, error, ETA, L2);
    }
    out
}

/// Every mix of `a` and `b`, weight by weight.
fn mixes([a0, a1]: [f64; 2], [b0, b1]: [f64; 2]) -> [[f64; 2]; 4] {
    [[a0, a1], [a0, b1], [b0, a1], [b0, b1]]
}

/// Per weight, every value a thread may write.
fn written() -> [Vec<f64>; 2] {
    let mut out = [Vec::new(), Vec::new()];
    let [first, second] = UPDATERS;
    for (updater, other) in [(first, second), (second, first)] {
        for read in mixes(FIRST, step_from(other, FIRST)) {
            for (values, stepped) in out.iter_mut().zip(step_from(updater, read)) {
                values.push(stepped);
            }
        }
    }
    out
}

/// Per weight, every value a reader may see.
fn admissible() -> [Vec<f64>; 2] {
    let mut out = written();
    for (values, first) in out.iter_mut().zip(FIRST) {
        values.push(first);
    }
    out
}

fn is_among(value: f64, values: &[f64]) -> bool {
    values.iter().any(|v| v.to_bits() == value.to_bits())
}

/// The weights at their first values, two threads each taking its step,
/// and `predictor` run on a third thread meanwhile.
///
/// Every participant is a spawned thread and the model's own thread only
/// joins them: with the model's thread as the reader, loom 0.7 skipped the
/// interleavings where it reads between an updater's loads and its stores
/// (a deliberately two-part store went unseen; cf. tokio-rs/loom#392).
fn race(predictor: impl Fn(&Row<'_>) + Send + Sync + Clone + 'static) {
    model(move || {
        let weights = Arc::new(hogwild::zeros(2));
        for (cell, first) in weights.iter().zip(FIRST) {
            hogwild::write(cell, first);
        }
        let updaters: Vec<_> = UPDATERS
            .into_iter()
            .map(|(values, success)| {
                let weights = weights.clone();
                thread::spawn(move || {
                    let mut old = Vec::new();
                    Row::new(&weights, 1, 0).step(&INDICES, &values, &mut old, ETA, L2, |z| {
                        logistic_error(z, success)
                    });
                })
            })
            .collect();
        let reader = {
            let (weights, predictor) = (weights.clone(), predictor.clone());
            thread::spawn(move || predictor(&Row::new(&weights, 1, 0)))
        };
        for participant in updaters.into_iter().chain([reader]) {
            participant
                .join()
                .unwrap_or_else(|panic| resume_unwind(panic));
        }
        // Each weight's last store is one thread's step: a serialisation
        // (one step read the other's stores), a lost update (both read the
        // first values, the later store won), or a step from a mix.
        let row = Row::new(&weights, 1, 0);
        for (weight, written) in written().iter().enumerate() {
            let last = row.read(weight);
            assert!(
                is_among(last, written),
                "weight {weight} ended at {last:e}, no thread's step"
            );
        }
    });
}

#[test]
fn admissible_values_are_distinct_enough_to_tell_a_stray_value() {
    // Not a loom model: the values the models check against are what the
    // model says (a step moves every weight, all of them finite).
    for (written, first) in written().iter().zip(FIRST) {
        assert!(!is_among(first, written));
        assert!(written.iter().all(|w| w.is_finite()));
    }
}

#[test]
fn a_prediction_mid_update_sums_written_values_and_is_finite() {
    let [first, second] = admissible();
    let sums: Shared<Vec<f64>> = Shared::new(
        first
            .iter()
            .flat_map(|&w0| second.iter().map(move |&w1| dot(&[w0, w1], &PREDICTED)))
            .collect(),
    );
    race(move |row| {
        // predict_one's read.
        let z = row.dot(&INDICES, &PREDICTED);
        assert!(
            is_among(z, &sums),
            "prediction summed {z:e}, no mix of written weights"
        );
        let p = sigmoid(z);
        assert!(p.is_finite() && (0.0..=1.0).contains(&p), "prediction {p}");
    });
}

#[test]
fn each_weight_read_mid_update_is_a_written_value() {
    let allowed = Shared::new(admissible());
    race(move |row| {
        for (weight, allowed) in allowed.iter().enumerate() {
            let value = row.read(weight);
            assert!(value.is_finite(), "weight {weight} read as {value}");
            assert!(
                is_among(value, allowed),
                "weight {weight} read as {value:e} ({:#018x}), which no thread wrote; \
                 admissible: {allowed:?}",
                value.to_bits(),
            );
        }
    });
}
