//! The router's side of "a request's fault is not the replica's": models
//! that cannot serve a kind of request are no candidates for it, a named
//! model keeps its attempts to itself and its fallbacks, a slot given back
//! before its outcome is known is never freed twice, and the breaker says
//! how long until it admits again.

use std::sync::Arc;

use zeta_fast::clock::Clock;
use zeta_fast::learned_capability::RequestView;
use zeta_fast::outcome::OutcomeKind;
use zeta_fast::policies::model_ordering;
use zeta_fast::request_kinds::feature_bit;
use zeta_fast::routing::{ModelInput, Outcome, Resilience, RouterCore, Target};
use zeta_fast::tracker::PerformanceTracker;
use zeta_fast::window::WindowConfig;
use zeta_fast::{AdaptiveConfig, AdaptiveScorer, ZetaError};

const CHAT: usize = 2;
const CHAT_TARGET: Target = Target {
    task: CHAT,
    complexity: 0.5,
    context: 0,
};

fn outcome(kind: OutcomeKind, latency_ms: f64) -> Outcome {
    Outcome {
        kind,
        latency_ms,
        ttft_ms: None,
        prompt_tokens: 0,
        completion_tokens: 0,
        cached_tokens: None,
    }
}

fn model(id: &str, replicas: usize, fallbacks: &[&str]) -> ModelInput {
    ModelInput {
        id: id.to_owned(),
        capabilities: vec![("chat".to_owned(), 80.0)],
        ranges: vec![(0.0, 1.0)],
        replicas: (0..replicas).map(|r| (format!("{id}-{r}"), 0)).collect(),
        context_window: 0,
        fallbacks: fallbacks.iter().map(|f| (*f).to_owned()).collect(),
    }
}

fn router(models: Vec<ModelInput>) -> Result<(RouterCore, Clock), ZetaError> {
    let clock = Clock::manual(1_000_000);
    let tracker = Arc::new(PerformanceTracker::new(
        WindowConfig::default(),
        clock.clone(),
    )?);
    let mut resilience = Resilience::default();
    resilience.breaker.failure_threshold = 2;
    resilience.breaker.cooldown_ms = 30_000;
    let core = RouterCore::new(
        tracker,
        AdaptiveScorer::new(AdaptiveConfig::default())?,
        models,
        "least_loaded",
        model_ordering("spread", 10.0)?,
        resilience,
    )?;
    Ok((core, clock))
}

fn in_flight(core: &RouterCore, model: usize) -> Vec<u32> {
    core.models()
        .get(model)
        .map(|m| m.replicas.in_flight())
        .unwrap_or_default()
}

fn advance(clock: &Clock, ms: u64) {
    if let Clock::Manual(now) = clock {
        now.fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

fn needing(needs: u32) -> RequestView {
    RequestView {
        needs,
        ..RequestView::default()
    }
}

#[test]
fn models_that_cannot_serve_a_feature_are_no_candidates() -> Result<(), ZetaError> {
    let (core, _) = router(vec![model("a", 1, &[]), model("b", 1, &[])])?;
    let images = feature_bit("images")?;
    if let Some(a) = core.models().first() {
        a.unserved.declare(images);
    }
    for _ in 0..4 {
        let decision = core.route(CHAT, 0.5, 0, needing(images))?;
        assert_eq!(decision.model, 1);
        core.release(&decision);
    }
    // Text requests still go to both.
    let first = core.route(CHAT, 0.5, 0, needing(0))?;
    let second = core.route(CHAT, 0.5, 0, needing(0))?;
    assert_ne!(first.model, second.model);
    core.learn_unserved(1, images, 60_000);
    assert!(matches!(
        core.route(CHAT, 0.5, 0, needing(images)),
        Err(ZetaError::Unsupported { ref features, .. }) if features == "images"
    ));
    assert!(matches!(
        core.route_to(0, CHAT_TARGET, needing(images), None),
        Err(ZetaError::Unsupported { ref who, .. }) if who.contains("\"a\"")
    ));
    Ok(())
}

#[test]
fn a_learned_refusal_expires() -> Result<(), ZetaError> {
    let (core, clock) = router(vec![model("a", 1, &[])])?;
    let audio = feature_bit("audio")?;
    core.learn_unserved(0, audio, 10_000);
    assert!(core.route(CHAT, 0.5, 0, needing(audio)).is_err());
    advance(&clock, 10_001);
    assert!(core.route(CHAT, 0.5, 0, needing(audio)).is_ok());
    Ok(())
}

#[test]
fn a_named_model_is_retried_on_itself_and_its_fallbacks_only() -> Result<(), ZetaError> {
    let (core, _) = router(vec![
        model("named", 2, &["backup"]),
        model("backup", 1, &[]),
        model("stranger", 1, &[]),
    ])?;
    let first = core.route_to(0, CHAT_TARGET, needing(0), None)?;
    assert!(first.pinned);
    let tried = [(first.model, first.replica)];
    let second = core.reroute(&first, &tried, false)?;
    assert_eq!(second.model, 0);
    assert!(second.pinned);
    let tried = [(0, 0), (0, 1)];
    let third = core.reroute(&second, &tried, false)?;
    assert_eq!(third.model, 1, "the configured fallback");
    let tried = [(0, 0), (0, 1), (1, 0)];
    assert!(
        core.reroute(&third, &tried, false).is_err(),
        "never the model nobody named"
    );
    // Routed by the router, the same request may go anywhere.
    let free = core.route(CHAT, 0.5, 0, needing(0))?;
    assert!(!free.pinned);
    Ok(())
}

#[test]
fn a_named_model_with_no_usable_replica_goes_to_its_fallback_at_once() -> Result<(), ZetaError> {
    let (core, _) = router(vec![
        model("named", 1, &["backup"]),
        model("backup", 1, &[]),
    ])?;
    for _ in 0..2 {
        let decision = core.route_to(0, CHAT_TARGET, needing(0), None)?;
        assert_eq!(decision.model, 0);
        core.record_outcome(&decision, outcome(OutcomeKind::Connect, 1.0), true)?;
    }
    // Its breaker is open: the fallback serves, pinned.
    let decision = core.route_to(0, CHAT_TARGET, needing(0), None)?;
    assert_eq!(decision.model, 1);
    assert!(decision.pinned);
    Ok(())
}

#[test]
fn a_released_slot_is_not_freed_again_by_its_late_outcome() -> Result<(), ZetaError> {
    let (core, _) = router(vec![model("a", 1, &[])])?;
    let held = core.route(CHAT, 0.5, 0, needing(0))?;
    let other = core.route(CHAT, 0.5, 0, needing(0))?;
    assert_eq!(in_flight(&core, 0), vec![2]);
    core.release(&held);
    assert_eq!(in_flight(&core, 0), vec![1]);
    // Its outcome arrives later, without freeing a slot: `other` still holds one.
    core.record_outcome(&held, outcome(OutcomeKind::ServerError, 5.0), false)?;
    assert_eq!(in_flight(&core, 0), vec![1]);
    core.record_outcome(&other, outcome(OutcomeKind::Success, 5.0), true)?;
    assert_eq!(in_flight(&core, 0), vec![0]);
    Ok(())
}

#[test]
fn request_faults_never_open_a_breaker_and_replica_faults_do() -> Result<(), ZetaError> {
    let (core, clock) = router(vec![model("a", 1, &[])])?;
    for kind in [
        OutcomeKind::ClientError,
        OutcomeKind::Unsupported,
        OutcomeKind::ContextLength,
        OutcomeKind::Internal,
    ] {
        for _ in 0..5 {
            let decision = core.route(CHAT, 0.5, 0, needing(0))?;
            core.record_outcome(&decision, outcome(kind, 1.0), true)?;
        }
    }
    let admits_in = |core: &RouterCore| {
        core.models()
            .first()
            .map(|m| m.replicas.breaker_admits_in_ms(0, clock.now_ms()))
    };
    assert_eq!(admits_in(&core), Some(0));
    for _ in 0..2 {
        let decision = core.route(CHAT, 0.5, 0, needing(0))?;
        core.record_outcome(&decision, outcome(OutcomeKind::Timeout, 1.0), true)?;
    }
    assert_eq!(admits_in(&core), Some(30_000));
    advance(&clock, 12_000);
    assert_eq!(admits_in(&core), Some(18_000));
    Ok(())
}
