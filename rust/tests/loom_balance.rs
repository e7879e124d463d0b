//! loom models of replica capacity: however threads interleave, a replica
//! never runs more requests than its capacity, and releases are not lost.
#![cfg(loom)]

use loom::model::Builder;
use loom::sync::Arc;
use loom::thread;
use zeta_fast::balance::ReplicaSet;
use zeta_fast::policies::replica_policy;
use zeta_fast::prefix::PrefixSettings;

fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(body);
}

#[test]
fn racing_acquires_never_exceed_capacity() {
    model(|| {
        let set = Arc::new(ReplicaSet::new(
            &[1],
            replica_policy("least_loaded", 2, &PrefixSettings::default()).unwrap(),
        ));
        let other = set.clone();
        let racer = thread::spawn(move || other.acquire());
        let mine = set.acquire();
        let theirs = racer.join().unwrap();
        // Exactly one of the two got the only slot.
        assert_eq!(mine.is_some() as u32 + theirs.is_some() as u32, 1);
        assert_eq!(set.in_flight(), vec![1]);
    });
}

#[test]
fn acquire_and_release_racing_leave_the_count_exact() {
    model(|| {
        let set = Arc::new(ReplicaSet::new(
            &[2, 2],
            replica_policy("power_of_two", 2, &PrefixSettings::default()).unwrap(),
        ));
        let first = set.acquire().unwrap();
        let other = set.clone();
        let releaser = thread::spawn(move || other.release(first));
        let second = set.acquire();
        releaser.join().unwrap();
        assert!(second.is_some());
        assert_eq!(set.in_flight().iter().sum::<u32>(), 1);
    });
}
