//! Outcome sinks: what hears of every outcome the core records, in Rust and
//! on the request path, without a Python call: the trend detectors and the
//! outcome log. A sink copies what it needs and returns at once (a queue
//! push, a few arithmetic updates); it must never block or fail the record.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Decision, Outcome};

/// What an outcome event is about.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventKind<'a> {
    /// A caller's verdict (`record`) or a dispatched attempt
    /// (`record_outcome`), as the core recorded it.
    Outcome(&'a Outcome),
    /// A quality verdict given after the outcome (`feedback`): learned,
    /// about the answer rather than the replica.
    Feedback { good: bool },
}

/// One recorded outcome, as the sinks see it.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeEvent<'a> {
    pub decision: &'a Decision,
    pub kind: EventKind<'a>,
    /// The core's clock when it was recorded.
    pub now_ms: u64,
    /// What the learned router took from it (true good, false bad), when
    /// it learned anything.
    pub learned: Option<bool>,
    /// An attempt the dispatcher made (not a caller's `record`).
    pub dispatched: bool,
    /// The id of the request being served (a gateway's `x-request-id`).
    pub request_id: Option<&'a str>,
}

impl OutcomeEvent<'_> {
    /// Whether it says anything about the replica: a success or the
    /// replica's fault (what the windows and the trend detectors see).
    pub fn about_replica(&self) -> bool {
        match self.kind {
            EventKind::Outcome(outcome) => {
                outcome.kind == crate::outcome::OutcomeKind::Success
                    || outcome.kind.is_replica_fault()
            }
            EventKind::Feedback { .. } => false,
        }
    }
}

/// Hears of every outcome a router core records.
pub trait OutcomeSink: Send + Sync {
    fn on_outcome(&self, event: &OutcomeEvent<'_>);
}

/// The sinks of one core: a list swapped whole when one is added, so the
/// record path reads it with one load and no lock.
#[derive(Default)]
pub(super) struct Sinks {
    list: ArcSwap<Vec<Arc<dyn OutcomeSink>>>,
}

impl Sinks {
    pub(super) fn add(&self, sink: Arc<dyn OutcomeSink>) {
        self.list.rcu(|list| {
            let mut next = Vec::clone(list);
            next.push(Arc::clone(&sink));
            next
        });
    }

    /// Removes `sink` (compared by address); false when it was not there.
    pub(super) fn remove(&self, sink: &Arc<dyn OutcomeSink>) -> bool {
        let mut found = false;
        self.list.rcu(|list| {
            let next: Vec<_> = list
                .iter()
                .filter(|s| !Arc::ptr_eq(s, sink))
                .cloned()
                .collect();
            found = next.len() != list.len();
            next
        });
        found
    }

    #[inline]
    pub(super) fn publish(&self, event: &OutcomeEvent<'_>) {
        let list = self.list.load();
        for sink in list.iter() {
            sink.on_outcome(event);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Mutex;

    use super::super::test_support::{model, outcome, Build, CODE};
    use super::*;
    use crate::errors::ZetaError;
    use crate::outcome::OutcomeKind;

    /// (kind, about the replica, learned, dispatched, request id).
    type Seen = (String, bool, Option<bool>, bool, Option<String>);

    #[derive(Default)]
    struct Kept(Mutex<Vec<Seen>>);

    impl OutcomeSink for Kept {
        fn on_outcome(&self, event: &OutcomeEvent<'_>) {
            let kind = match event.kind {
                EventKind::Outcome(o) => o.kind.name().to_owned(),
                EventKind::Feedback { good } => format!("feedback:{good}"),
            };
            if let Ok(mut kept) = self.0.lock() {
                kept.push((
                    kind,
                    event.about_replica(),
                    event.learned,
                    event.dispatched,
                    event.request_id.map(str::to_owned),
                ));
            }
        }
    }

    #[test]
    fn every_recorded_outcome_reaches_each_sink_once_until_it_is_removed() -> Result<(), ZetaError>
    {
        let h = Build::new(vec![model("a", &[("code", 90.0)], &[0])]).build()?;
        let kept = Arc::new(Kept::default());
        let sink: Arc<dyn OutcomeSink> = kept.clone();
        h.core.add_sink(Arc::clone(&sink));
        let d = h.route(CODE, 0.5)?;
        h.core.record(&d, true, 10.0, true)?;
        let d = h.route(CODE, 0.5)?;
        h.core.record_attempt(
            &d,
            outcome(OutcomeKind::ClientError, 5.0),
            true,
            Some("req-1"),
        )?;
        // An outcome that fails its checks is not recorded, so not told.
        let d = h.route(CODE, 0.5)?;
        assert!(h.core.record(&d, true, f64::NAN, true).is_err());
        assert!(h.core.remove_sink(&sink));
        assert!(!h.core.remove_sink(&sink), "removed once");
        h.core.record(&d, true, 10.0, true)?;
        let kept = kept.0.lock().map_err(|_| ZetaError::Internal {
            what: "poisoned".into(),
        })?;
        assert_eq!(
            *kept,
            vec![
                ("success".into(), true, None, false, None),
                (
                    "client_error".into(),
                    false,
                    None,
                    true,
                    Some("req-1".into())
                ),
            ]
        );
        Ok(())
    }
}
