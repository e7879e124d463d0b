//! Many threads learning and predicting at once: every count arrives
//! (atomic increments), no weight is ever torn or non-finite (Hogwild SGD
//! over atomic f64 cells), and what was learned is still learned.

use std::sync::Arc;
use std::thread;

use zeta_fast::learned::{features, OutcomePredictor, PredictorParams};

#[test]
fn concurrent_updates_lose_no_count_and_keep_weights_finite() {
    let predictor = Arc::new(
        OutcomePredictor::new(vec!["a".into(), "b".into()], PredictorParams::default())
            .unwrap_or_else(|e| unreachable!("{e}")),
    );
    let maths = Arc::new(features("compute 17 * 23 step by step", &["maths"]));
    let poem = Arc::new(features("write a short poem about the sea", &["poems"]));
    let threads = 8;
    let per_thread = 5_000;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (predictor, maths, poem) = (
                Arc::clone(&predictor),
                Arc::clone(&maths),
                Arc::clone(&poem),
            );
            thread::spawn(move || {
                for i in 0..per_thread {
                    // Both kinds, both models, bandit feedback from every thread.
                    let model = (t + i) % 2;
                    let (f, category, good) = if i % 2 == 0 {
                        (&maths, "maths", model == 0)
                    } else {
                        (&poem, "poems", model == 1)
                    };
                    predictor
                        .update(f, &[(model, good)], Some(category), None)
                        .unwrap_or_else(|e| unreachable!("{e}"));
                    let p = predictor.predict_one(f, model);
                    assert!(p.is_finite() && (0.0..=1.0).contains(&p));
                }
            })
        })
        .collect();
    for handle in handles {
        handle
            .join()
            .unwrap_or_else(|_| unreachable!("a learner panicked"));
    }
    let total = (threads * per_thread) as u64;
    assert_eq!(predictor.updates(), total);
    assert_eq!(
        predictor.outcomes_seen(0) + predictor.outcomes_seen(1),
        total
    );
    let state = predictor.state();
    let counted: u64 = state
        .categories
        .iter()
        .flat_map(|(_, per_model)| per_model.iter().map(|(_, (_, n))| n))
        .sum();
    // Saved counts are in thousandths of an outcome (weighted verdicts).
    assert_eq!(counted, total * zeta_fast::learned::COUNT_UNIT);
    assert!(state
        .models
        .iter()
        .flat_map(|m| m.weights.iter())
        .all(|(_, w)| w.is_finite()));
    assert!(predictor.predict_one(&maths, 0) > 0.9 && predictor.predict_one(&maths, 1) < 0.1);
    assert!(predictor.predict_one(&poem, 1) > 0.9 && predictor.predict_one(&poem, 0) < 0.1);
}
