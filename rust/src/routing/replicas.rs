//! Taking a slot on one of a model's replicas. The replica policy chooses
//! among the replicas in good standing; replicas that are slow or failing
//! beside their twins ([`crate::replica_health`]) are passed over, except
//! that a share of first attempts (`replica_adapt.explore`) probes one of
//! them, so that a healed replica is seen to be healed. A retry goes to a
//! replica in good standing; when every replica is degraded, any.

use super::models::RoutedModel;
use super::RouterCore;
use crate::breaker::BreakerState;
use crate::prefix::Affinity;
use crate::replica_health::degraded_by;

impl RouterCore {
    /// Takes a slot on one of `model`'s replicas (none in `excluded`);
    /// `explore`: this attempt may probe a degraded replica.
    pub(super) fn pick(
        &self,
        model: &RoutedModel,
        now: u64,
        excluded: &[usize],
        explore: bool,
        affinity: Option<&Affinity>,
    ) -> Option<usize> {
        let policy = &self.resilience.replica_adapt;
        let slow_too = model.replicas.policy().passes_over_slow_replicas();
        let mut slow_or_failing = degraded_by(&model.health, policy, slow_too);
        // A replica whose breaker is open or probing is the breaker's to
        // govern: it admits exactly the probes a recovery needs.
        slow_or_failing.retain(|&r| model.replicas.breaker_state(r) == Some(BreakerState::Closed));
        if slow_or_failing.is_empty() {
            return model.replicas.acquire_for(now, excluded, affinity);
        }
        let draw = self.rng.unit();
        if explore && draw < policy.explore {
            let start = (draw / policy.explore * slow_or_failing.len() as f64) as usize;
            for offset in 0..slow_or_failing.len() {
                let Some(&probe) = slow_or_failing.get((start + offset) % slow_or_failing.len())
                else {
                    continue;
                };
                if !excluded.contains(&probe) && model.replicas.try_acquire_at(probe, now) {
                    return Some(probe);
                }
            }
        }
        let mut passed_over = excluded.to_vec();
        passed_over.extend(slow_or_failing);
        model
            .replicas
            .acquire_for(now, &passed_over, affinity)
            .or_else(|| model.replicas.acquire_for(now, excluded, affinity))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::super::test_support::{model, Build, Harness, CHAT};
    use super::super::Resilience;
    use crate::breaker::BreakerState;
    use crate::errors::ZetaError;
    use crate::outcome::OutcomeKind;
    use crate::replica_health::{degraded, ReplicaAdapt};

    /// One chat model with `capacities`; replica 0 has failed 10 times,
    /// the others answered 10 times, all in 50 ms.
    fn failing_first(capacities: &[u32], adapt: ReplicaAdapt) -> Result<Harness, ZetaError> {
        failing_first_under("least_loaded", capacities, adapt)
    }

    fn failing_first_under(
        policy: &str,
        capacities: &[u32],
        adapt: ReplicaAdapt,
    ) -> Result<Harness, ZetaError> {
        let h = Build::new(vec![model("a", &[("chat", 80.0)], capacities)])
            .replica_policy(policy)
            .resilience(Resilience {
                replica_adapt: adapt,
                ..Resilience::default()
            })
            .build()?;
        h.feed(0, 0, CHAT, OutcomeKind::ServerError, 50.0, 10)?;
        for r in 1..capacities.len() {
            h.feed(0, r, CHAT, OutcomeKind::Success, 50.0, 10)?;
        }
        let a = h.core.models().first().ok_or(ZetaError::ForeignDecision)?;
        // The premise: replica 0 is degraded but its breaker closed (a
        // degraded replica's 5xx do not count against the breaker), so
        // replica health, not the breaker, keeps it out.
        assert_eq!(a.replicas.breaker_state(0), Some(BreakerState::Closed));
        assert_eq!(degraded(&a.health, &adapt), vec![0]);
        Ok(h)
    }

    /// First attempts of `n` routes (each slot given back at once) per replica.
    fn first_attempts(h: &Harness, n: usize, replicas: usize) -> Result<Vec<usize>, ZetaError> {
        let mut counts = vec![0; replicas];
        for _ in 0..n {
            let d = h.route(CHAT, 0.5)?;
            h.core.release(&d);
            if let Some(count) = counts.get_mut(d.replica) {
                *count += 1;
            }
        }
        Ok(counts)
    }

    #[test]
    fn a_failing_replica_gets_almost_no_first_attempts_but_is_probed() -> Result<(), ZetaError> {
        let adapt = ReplicaAdapt::default();
        // Replica 0 is the one least_loaded picks on ties: without the
        // adaptation it would get every request (see below).
        let h = failing_first(&[0, 0], adapt)?;
        let counts = first_attempts(&h, 500, 2)?;
        let probes = counts.first().copied().unwrap_or(0);
        // explore = 5 %: 25 expected; 50 is 5 standard deviations above.
        assert!(probes > 0, "never probed: {counts:?}");
        assert!(probes <= 50, "probed too often: {counts:?}");
        assert_eq!(h.in_flight(0), vec![0, 0]);
        Ok(())
    }

    #[test]
    fn without_exploration_a_failing_replica_gets_no_first_attempts() -> Result<(), ZetaError> {
        let adapt = ReplicaAdapt {
            explore: 0.0,
            ..ReplicaAdapt::default()
        };
        let h = failing_first(&[0, 0], adapt)?;
        assert_eq!(first_attempts(&h, 200, 2)?, vec![0, 200]);
        Ok(())
    }

    #[test]
    fn every_replica_policy_passes_a_failing_replica_over() -> Result<(), ZetaError> {
        let adapt = ReplicaAdapt {
            explore: 0.0,
            ..ReplicaAdapt::default()
        };
        for policy in crate::policies::replica_policy_names() {
            let h = failing_first_under(policy, &[0, 0, 0], adapt)?;
            let counts = first_attempts(&h, 120, 3)?;
            assert_eq!(counts.first(), Some(&0), "{policy}: {counts:?}");
            assert_eq!(counts.iter().sum::<usize>(), 120, "{policy}");
        }
        Ok(())
    }

    #[test]
    fn without_adaptation_the_failing_replica_keeps_its_share() -> Result<(), ZetaError> {
        // The control for the tests above: same outcomes, adaptation off
        // (and a breaker that would not open on 10 failures).
        let mut resilience = Resilience::default();
        resilience.replica_adapt.enabled = false;
        resilience.breaker.failure_threshold = 100;
        let h = Build::new(vec![model("a", &[("chat", 80.0)], &[0, 0])])
            .resilience(resilience)
            .build()?;
        h.feed(0, 0, CHAT, OutcomeKind::ServerError, 50.0, 10)?;
        h.feed(0, 1, CHAT, OutcomeKind::Success, 50.0, 10)?;
        assert_eq!(first_attempts(&h, 100, 2)?, vec![100, 0]);
        Ok(())
    }

    #[test]
    fn a_retry_never_probes_a_degraded_replica() -> Result<(), ZetaError> {
        // Half of all first attempts would probe: retries still never do.
        let adapt = ReplicaAdapt {
            explore: 0.5,
            ..ReplicaAdapt::default()
        };
        let h = failing_first(&[0, 0, 0], adapt)?;
        let first = h.route(CHAT, 0.5)?;
        let mut probed_first = 0;
        let mut retried = [0; 3];
        for _ in 0..300 {
            let d = h.route(CHAT, 0.5)?;
            h.core.release(&d);
            probed_first += usize::from(d.replica == 0);
            let tried = [(first.model, first.replica)];
            let retry = h.core.reroute(&first, &tried, false)?;
            h.core.release(&retry);
            if let Some(count) = retried.get_mut(retry.replica) {
                *count += 1;
            }
        }
        assert!(probed_first > 0, "first attempts do probe at 50 %");
        assert_eq!(retried.first(), Some(&0), "retries: {retried:?}");
        assert_eq!(retried.get(first.replica), Some(&0), "never the tried one");
        Ok(())
    }

    #[test]
    fn when_every_usable_replica_is_degraded_one_is_still_chosen() -> Result<(), ZetaError> {
        let adapt = ReplicaAdapt {
            explore: 0.0,
            ..ReplicaAdapt::default()
        };
        // The healthy twin is full (capacity 1, held): the degraded one serves.
        let h = failing_first(&[0, 1], adapt)?;
        let held = h.route(CHAT, 0.5)?;
        assert_eq!(held.replica, 1);
        for _ in 0..10 {
            let d = h.route(CHAT, 0.5)?;
            assert_eq!(d.replica, 0);
            h.core.release(&d);
            let retry = h.core.reroute(&held, &[], false)?;
            assert_eq!(retry.replica, 0, "a retry too, rather than none");
            h.core.release(&retry);
        }
        // Two degraded replicas and an untried third that is down: one of
        // the degraded two, every time.
        let h = Build::new(vec![model("b", &[("chat", 80.0)], &[0, 0, 0])])
            .resilience(Resilience {
                replica_adapt: adapt,
                ..Resilience::default()
            })
            .build()?;
        h.feed(0, 0, CHAT, OutcomeKind::ServerError, 50.0, 10)?;
        h.feed(0, 1, CHAT, OutcomeKind::ServerError, 50.0, 10)?;
        let b = h.core.models().first().ok_or(ZetaError::ForeignDecision)?;
        b.replicas.set_healthy(2, false);
        assert_eq!(degraded(&b.health, &adapt), vec![0, 1]);
        for _ in 0..10 {
            let d = h.route(CHAT, 0.5)?;
            assert!(d.replica < 2, "{}", d.replica);
            h.core.release(&d);
        }
        Ok(())
    }

    #[test]
    fn a_replica_ten_times_slower_than_its_twins_is_passed_over() -> Result<(), ZetaError> {
        let adapt = ReplicaAdapt {
            explore: 0.0,
            ..ReplicaAdapt::default()
        };
        let h = Build::new(vec![model("a", &[("chat", 80.0)], &[0, 0, 0])])
            .resilience(Resilience {
                replica_adapt: adapt,
                ..Resilience::default()
            })
            .build()?;
        h.feed(0, 0, CHAT, OutcomeKind::Success, 500.0, 5)?;
        h.feed(0, 1, CHAT, OutcomeKind::Success, 50.0, 5)?;
        h.feed(0, 2, CHAT, OutcomeKind::Success, 50.0, 5)?;
        let counts = first_attempts(&h, 100, 3)?;
        assert_eq!(counts.first(), Some(&0), "{counts:?}");
        Ok(())
    }

    #[test]
    fn under_cache_aware_a_slow_replica_keeps_its_work_and_a_failing_one_does_not(
    ) -> Result<(), ZetaError> {
        // Replicas of a prefix-aware policy serve unlike work (whole new
        // prompts beside cached turns): latency beside twins says nothing
        // there, failures still do.
        let adapt = ReplicaAdapt {
            explore: 0.0,
            ..ReplicaAdapt::default()
        };
        let build = || {
            Build::new(vec![model("a", &[("chat", 80.0)], &[0, 0, 0])])
                .replica_policy("cache_aware")
                .resilience(Resilience {
                    replica_adapt: adapt,
                    ..Resilience::default()
                })
                .build()
        };
        let slow = build()?;
        slow.feed(0, 0, CHAT, OutcomeKind::Success, 500.0, 5)?;
        slow.feed(0, 1, CHAT, OutcomeKind::Success, 50.0, 5)?;
        slow.feed(0, 2, CHAT, OutcomeKind::Success, 50.0, 5)?;
        let counts = first_attempts(&slow, 150, 3)?;
        assert!(counts.first().is_some_and(|&c| c > 20), "{counts:?}");
        let failing = build()?;
        failing.feed(0, 0, CHAT, OutcomeKind::ServerError, 50.0, 10)?;
        failing.feed(0, 1, CHAT, OutcomeKind::Success, 50.0, 10)?;
        failing.feed(0, 2, CHAT, OutcomeKind::Success, 50.0, 10)?;
        let counts = first_attempts(&failing, 150, 3)?;
        assert_eq!(counts.first(), Some(&0), "{counts:?}");
        Ok(())
    }

    #[test]
    fn a_replica_ten_times_slower_than_its_one_twin_is_passed_over() -> Result<(), ZetaError> {
        let adapt = ReplicaAdapt {
            explore: 0.0,
            ..ReplicaAdapt::default()
        };
        let h = Build::new(vec![model("a", &[("chat", 80.0)], &[0, 0])])
            .resilience(Resilience {
                replica_adapt: adapt,
                ..Resilience::default()
            })
            .build()?;
        h.feed(0, 0, CHAT, OutcomeKind::Success, 500.0, 5)?;
        h.feed(0, 1, CHAT, OutcomeKind::Success, 50.0, 5)?;
        let counts = first_attempts(&h, 100, 2)?;
        assert_eq!(counts, vec![0, 100]);
        Ok(())
    }
}
