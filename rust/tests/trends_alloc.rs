//! The trend detectors on the request path: a router core feeds its
//! `TrendWatch` every outcome about a replica, and observing one (alarms
//! and their queueing included) allocates nothing. A counting allocator
//! counts this thread's allocations only, so other tests running at the
//! same time do not disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use zeta_fast::clock::Clock;
use zeta_fast::learned_capability::RequestView;
use zeta_fast::outcome::OutcomeKind;
use zeta_fast::policies::model_ordering;
use zeta_fast::routing::{
    Decision, EventKind, ModelInput, Outcome, OutcomeEvent, OutcomeSink, Resilience, RouterCore,
};
use zeta_fast::tracker::PerformanceTracker;
use zeta_fast::trends::{TrendWatch, DEFAULT_CAPACITY};
use zeta_fast::window::WindowConfig;
use zeta_fast::{AdaptiveConfig, AdaptiveScorer, ZetaError};

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; the
// count is a thread-local cell that allocates nothing itself.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: a pointer this allocator (the system's) gave out.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const CHAT: usize = 2;

fn core() -> Result<RouterCore, ZetaError> {
    let tracker = Arc::new(PerformanceTracker::new(
        WindowConfig::default(),
        Clock::manual(1_000_000),
    )?);
    RouterCore::new(
        tracker,
        AdaptiveScorer::new(AdaptiveConfig::default())?,
        vec![ModelInput {
            id: "a".to_owned(),
            capabilities: vec![("chat".to_owned(), 90.0)],
            ranges: vec![(0.0, 1.0)],
            replicas: vec![("a-0".to_owned(), 0)],
            context_window: 0,
            fallbacks: Vec::new(),
        }],
        "power_of_two",
        model_ordering("spread", 5.0)?,
        Resilience::default(),
    )
}

/// 200 healthy outcomes, then 100 failing: what a fault looks like.
fn verdict(i: usize) -> bool {
    i < 200
}

#[test]
fn observing_an_outcome_allocates_nothing() -> Result<(), ZetaError> {
    let core = core()?;
    let decision = core.route(CHAT, 0.5, 0, RequestView::default())?;
    let watch = TrendWatch::new(1, true, DEFAULT_CAPACITY)?;
    let outcomes: Vec<Outcome> = (0..300)
        .map(|i| Outcome::verdict(verdict(i), 20.0 + (i % 7) as f64))
        .collect();
    let before = allocations();
    for outcome in &outcomes {
        watch.on_outcome(&OutcomeEvent {
            decision: &decision,
            kind: EventKind::Outcome(outcome),
            now_ms: 0,
            learned: None,
            dispatched: false,
            request_id: None,
        });
    }
    let spent = allocations() - before;
    assert_eq!(watch.observed(0), 300);
    assert!(!watch.take_changes().is_empty(), "the fault was detected");
    assert_eq!(spent, 0, "allocations while observing 300 outcomes");
    Ok(())
}

/// Allocations made by recording `decisions` (routed beforehand).
fn recording(core: &RouterCore, decisions: &[Decision]) -> Result<u64, ZetaError> {
    // A first record outside the count: what is set up once per process
    // (or per window) on first use is no cost per observation.
    let first = core.route(CHAT, 0.5, 0, RequestView::default())?;
    core.release(&first);
    core.record(&first, true, 20.0, false)?;
    let before = allocations();
    for (i, decision) in decisions.iter().enumerate() {
        core.record(decision, verdict(i), 20.0, true)?;
    }
    Ok(allocations() - before)
}

#[test]
fn the_core_feeds_its_watch_on_record_at_no_allocation() -> Result<(), ZetaError> {
    let route = |core: &RouterCore| -> Result<Vec<Decision>, ZetaError> {
        (0..300)
            .map(|_| core.route(CHAT, 0.5, 0, RequestView::default()))
            .collect()
    };
    let plain = core()?;
    let decisions = route(&plain)?;
    let without = recording(&plain, &decisions)?;

    let watched = core()?;
    let watch = Arc::new(TrendWatch::new(1, true, DEFAULT_CAPACITY)?);
    watched.add_sink(watch.clone());
    let decisions = route(&watched)?;
    // Routed now: the fault below opens the replica's breaker.
    let refused = watched.route(CHAT, 0.5, 0, RequestView::default())?;
    let with = recording(&watched, &decisions)?;
    assert_eq!(with, without, "the watch added allocations to record");
    assert_eq!(watch.observed(0), 301);
    let changes = watch.take_changes();
    // The model's own detector and its chat detector saw the fault: at
    // its sixth failure (30 % of the window), and again once the window
    // restarted at that level fills with failures.
    assert_eq!(
        changes
            .iter()
            .map(|n| (n.task, n.observed))
            .collect::<Vec<_>>(),
        [
            (None, 207),
            (Some(CHAT), 207),
            (None, 220),
            (Some(CHAT), 220)
        ]
    );
    assert!(changes.iter().all(|n| n.change.metric.name() == "success"));
    // A client's error says nothing about the replica: not observed.
    let mut outcome = Outcome::verdict(false, 5.0);
    outcome.kind = OutcomeKind::ClientError;
    watched.record_outcome(&refused, outcome, true)?;
    assert_eq!(watch.observed(0), 301);
    Ok(())
}
