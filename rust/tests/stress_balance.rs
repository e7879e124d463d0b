//! Threads taking and giving back replica slots: capacity holds at every
//! moment, and every slot comes back.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::thread;

use zeta_fast::balance::ReplicaSet;
use zeta_fast::policies::{replica_policy, replica_policy_names};
use zeta_fast::prefix::PrefixSettings;

#[test]
fn capacity_holds_under_eight_threads() {
    for name in replica_policy_names() {
        let policy = replica_policy(name, 3, &PrefixSettings::default()).unwrap();
        let capacities = [3_u32, 1, 2];
        let set = Arc::new(ReplicaSet::new(&capacities, policy));
        // Our own count of slots held per replica, to check against capacity.
        let held: Arc<Vec<AtomicI64>> = Arc::new((0..3).map(|_| AtomicI64::new(0)).collect());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let set = Arc::clone(&set);
                let held = Arc::clone(&held);
                thread::spawn(move || {
                    let mut granted = 0_u32;
                    for _ in 0..100_000 {
                        if let Some(index) = set.acquire() {
                            granted += 1;
                            let now = held[index].fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(
                                now <= i64::from(capacities[index]),
                                "replica {index} over capacity"
                            );
                            held[index].fetch_sub(1, Ordering::SeqCst);
                            set.release(index);
                        }
                    }
                    granted
                })
            })
            .collect();
        let granted: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(granted > 0);
        assert_eq!(set.in_flight(), vec![0, 0, 0], "{name}");
    }
}
