//! loom model of the other instances' view of a key: however a reader and
//! the sync loop's writer interleave, a reader sees one whole view (the one
//! before a `set` or the one after it), never successes above requests, and
//! never an older view after a newer one.
#![cfg(loom)]

use loom::model::Builder;
use loom::sync::Arc;
use loom::thread;
use zeta_fast::shared::RemoteView;
use zeta_fast::window::Totals;

fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(body);
}

fn totals(requests: u64, successes: u64, latency_units: u64) -> Totals {
    Totals {
        requests,
        successes,
        latency_requests: requests,
        latency_units,
    }
}

/// The views in the order the writer publishes them: nothing shared, a
/// healthy cycle, then a failing one (fewer requests, no successes).
fn views() -> [Totals; 3] {
    [Totals::default(), totals(10, 10, 1_000), totals(2, 0, 50)]
}

fn position(seen: &Totals) -> usize {
    let position = views().iter().position(|view| view == seen);
    assert!(
        seen.successes <= seen.requests,
        "successes above requests: {seen:?}"
    );
    position.unwrap_or_else(|| panic!("a half-updated view: {seen:?}"))
}

#[test]
fn a_reader_sees_whole_views_in_order() {
    model(|| {
        let view = Arc::new(RemoteView::default());
        let writer_view = view.clone();
        let writer = thread::spawn(move || {
            let [_, first, second] = views();
            writer_view.set(&first, Some(vec![10, 0]));
            writer_view.set(&second, Some(vec![0, 2]));
        });
        let earlier = position(&view.totals());
        let later = position(&view.totals());
        assert!(earlier <= later, "went back from view {earlier} to {later}");
        writer.join().unwrap();
        assert_eq!(view.totals(), views()[2]);
    });
}

#[test]
fn totals_and_histogram_come_from_one_view() {
    model(|| {
        let view = Arc::new(RemoteView::default());
        let writer_view = view.clone();
        let writer = thread::spawn(move || {
            let [_, first, second] = views();
            writer_view.set(&first, Some(vec![10, 0]));
            writer_view.set(&second, Some(vec![0, 2]));
        });
        let mut totals = Totals::default();
        let mut histogram = vec![0_u64; 2];
        view.add_to(&mut totals, &mut histogram);
        position(&totals);
        // Each view's histogram counts exactly its timed requests.
        assert_eq!(histogram.iter().sum::<u64>(), totals.latency_requests);
        writer.join().unwrap();
    });
}
