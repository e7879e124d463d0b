//! Taking a slot on one of a model's replicas. The replica policy chooses
//! among the replicas in good standing; replicas that are slow or failing
//! beside their twins ([`crate::replica_health`]) are passed over, except
//! that a share of first attempts (`replica_adapt.explore`) probes one of
//! them, so that a healed replica is seen to be healed. A retry goes to a
//! replica in good standing; when every replica is degraded, any.

use super::models::RoutedModel;
use super::RouterCore;
use crate::breaker::BreakerState;
use crate::replica_health::degraded;

impl RouterCore {
    /// Takes a slot on one of `model`'s replicas (none in `excluded`);
    /// `explore`: this attempt may probe a degraded replica.
    pub(super) fn pick(
        &self,
        model: &RoutedModel,
        now: u64,
        excluded: &[usize],
        explore: bool,
    ) -> Option<usize> {
        let policy = &self.resilience.replica_adapt;
        let mut slow_or_failing = degraded(&model.health, policy);
        // A replica whose breaker is open or probing is the breaker's to
        // govern: it admits exactly the probes a recovery needs.
        slow_or_failing.retain(|&r| model.replicas.breaker_state(r) == Some(BreakerState::Closed));
        if slow_or_failing.is_empty() {
            return model.replicas.acquire_at(now, excluded);
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
            .acquire_at(now, &passed_over)
            .or_else(|| model.replicas.acquire_at(now, excluded))
    }
}
