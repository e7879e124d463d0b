//! `least_loaded`: the replica with the lowest load; ties to the lowest index.

use super::{ReplicaPolicy, Replicas};

/// The lowest in-flight / capacity ratio (engine queue and KV use counted).
#[derive(Debug, Default, Clone, Copy)]
pub struct LeastLoaded;

impl ReplicaPolicy for LeastLoaded {
    fn name(&self) -> &'static str {
        "least_loaded"
    }

    fn choose(&self, replicas: &Replicas<'_>) -> Option<usize> {
        least_loaded(replicas)
    }
}

/// The least loaded replica that can take a request (ties: lowest index).
pub fn least_loaded(replicas: &Replicas<'_>) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for index in 0..replicas.len() {
        if let Some(load) = replicas.load(index) {
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((index, load));
            }
        }
    }
    best.map(|(index, _)| index)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_load_wins_and_ties_go_to_the_first() {
        let loads = [Some(0.5), Some(0.25), None, Some(0.25)];
        let load = |r: usize| loads.get(r).copied().flatten();
        assert_eq!(LeastLoaded.choose(&Replicas::new(4, &load)), Some(1));
    }

    #[test]
    fn nothing_to_choose_when_no_replica_can_take_it() {
        let load = |_: usize| None;
        assert_eq!(LeastLoaded.choose(&Replicas::new(3, &load)), None);
        assert_eq!(LeastLoaded.choose(&Replicas::new(0, &load)), None);
    }
}
