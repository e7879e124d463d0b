//! loom models of the retry budget: however spends, deposits and refills
//! interleave, the budget never holds more than its cap, and every
//! millisecond of refill is credited exactly once (none lost, none twice).
#![cfg(loom)]

use loom::model::Builder;
use loom::sync::Arc;
use loom::thread;
use zeta_fast::retry::{BudgetConfig, RetryBudget};

fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(body);
}

/// A spent budget at t = 0 that refills `per_second` tokens a second, with
/// room for `max_tokens`.
fn spent(per_second: f64, max_tokens: f64) -> Arc<RetryBudget> {
    let budget = Arc::new(RetryBudget::new(
        BudgetConfig::new(0.0, per_second, max_tokens).unwrap(),
        0,
    ));
    while budget.try_withdraw(0) {}
    assert_eq!(budget.tokens(), 0.0);
    budget
}

#[test]
fn racing_refills_credit_every_millisecond_once() {
    model(|| {
        // 0.3 tokens/s: 1.5 thousandths by 5 ms, 3 by 10 ms. Whichever
        // refill runs first, the two together credit exactly 3.
        let budget = spent(0.3, 1.0);
        let other = budget.clone();
        let early = thread::spawn(move || other.try_withdraw(5));
        let late = budget.try_withdraw(10);
        let early = early.join().unwrap();
        assert!(!early && !late, "no whole token earned yet");
        assert_eq!(budget.tokens(), 0.003);
    });
}

#[test]
fn racing_spends_and_refills_conserve_tokens() {
    model(|| {
        // 1 token/s with room for 5: by 2 s two tokens are earned, whoever
        // refills; what was spent plus what is left is exactly that.
        let budget = spent(1.0, 5.0);
        let other = budget.clone();
        let racer = thread::spawn(move || other.try_withdraw(2_000));
        let mine = budget.try_withdraw(2_000);
        let theirs = racer.join().unwrap();
        let spent = f64::from(u8::from(mine) + u8::from(theirs));
        assert!(spent >= 1.0, "the first refill pays for one of them");
        assert_eq!(spent + budget.tokens(), 2.0);
    });
}

#[test]
fn deposits_and_refills_racing_never_pass_the_cap() {
    model(|| {
        // Full (1 token), deposits of half a token and a refill of one
        // token racing: every read is at most the cap.
        let budget = Arc::new(RetryBudget::new(
            BudgetConfig::new(0.5, 1.0, 1.0).unwrap(),
            0,
        ));
        let depositor = budget.clone();
        let deposits = thread::spawn(move || {
            depositor.deposit();
            depositor.deposit();
        });
        let reader = budget.clone();
        let reads = thread::spawn(move || reader.tokens());
        let spent = budget.try_withdraw(1_000);
        assert!(reads.join().unwrap() <= 1.0);
        deposits.join().unwrap();
        assert!(spent, "it started full");
        let left = budget.tokens();
        assert!(left == 0.0 || left == 0.5 || left == 1.0, "{left}");
    });
}
