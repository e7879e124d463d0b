//! loom model of key registration (`zeta_fast::registry`, the protocol the
//! tracker's `key()` runs over its papaya map): threads racing to register
//! one key all get the value the map kept, the generation counts each new
//! key once, and a reader that sees a generation finds every key it counts.
//!
//! loom cannot see inside papaya, so the map here is a stand-in with
//! papaya's semantics and orderings: `try_insert` keeps the value already
//! there (a compare-exchange on the key's slot, AcqRel as papaya's insert),
//! lookups and listings are acquire loads. Keys are slot numbers, values
//! non-zero tokens (a token compared is an `Arc::ptr_eq` of the real map).
#![cfg(loom)]

use std::convert::Infallible;

use loom::model::Builder;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use zeta_fast::registry::{FirstInsertWins, LookUp, Registry};

/// Every participant of a model is a spawned thread and the model's own
/// thread only sets up and joins: with it as a reader, loom 0.7 skipped
/// interleavings where it reads between another thread's loads and stores
/// (cf. tokio-rs/loom#392; seen in `loom_learned.rs`).
fn model(body: impl Fn() + Sync + Send + 'static) {
    let mut builder = Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(body);
}

const EMPTY: u64 = 0;

/// One slot per key; `EMPTY` until a value is inserted.
struct SlotMap {
    slots: [AtomicU64; 2],
}

impl SlotMap {
    fn new() -> Self {
        Self {
            slots: [AtomicU64::new(EMPTY), AtomicU64::new(EMPTY)],
        }
    }

    #[allow(clippy::indexing_slicing)] // the models use keys 0 and 1 only
    fn slot(&self, key: usize) -> &AtomicU64 {
        &self.slots[key]
    }
}

impl FirstInsertWins for SlotMap {
    type Key = usize;
    type Value = u64;

    fn try_insert(&self, key: usize, value: u64) -> Result<u64, u64> {
        match self
            .slot(key)
            .compare_exchange(EMPTY, value, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(value),
            Err(current) => Err(current),
        }
    }

    fn replace(&self, key: usize, value: u64) {
        self.slot(key).swap(value, Ordering::AcqRel);
    }

    fn values(&self) -> Vec<u64> {
        self.slots
            .iter()
            .map(|slot| slot.load(Ordering::Acquire))
            .filter(|&value| value != EMPTY)
            .collect()
    }
}

impl LookUp<usize> for SlotMap {
    fn get(&self, key: &usize) -> Option<u64> {
        Some(self.slot(*key).load(Ordering::Acquire)).filter(|&value| value != EMPTY)
    }
}

type Keys = Registry<SlotMap>;

/// Registers `key` with `token` as the fresh value (a thread's own `Arc`).
fn register(keys: &Keys, key: usize, token: u64) -> u64 {
    match keys.get_or_register(&key, || Ok::<_, Infallible>((key, token))) {
        Ok(kept) => kept,
        Err(never) => match never {},
    }
}

/// What a reader may rely on: every key the generation counts is listed.
fn check_reader(keys: &Keys) -> u64 {
    let (generation, values) = keys.values_at();
    assert!(
        values.len() as u64 >= generation,
        "generation {generation} read, but only {values:?} listed"
    );
    generation
}

#[test]
fn racers_for_one_key_share_the_kept_value_and_count_it_once() {
    model(|| {
        let keys = Arc::new(Keys::new(SlotMap::new()));
        let racers: Vec<_> = [1_u64, 2]
            .into_iter()
            .map(|token| {
                let keys = keys.clone();
                thread::spawn(move || register(&keys, 0, token))
            })
            .collect();
        // A reader (the candidate pool) looking up what the generation counts.
        let reader = {
            let keys = keys.clone();
            thread::spawn(move || {
                if keys.generation() >= 1 {
                    assert!(keys.map().get(&0).is_some(), "counted, not found");
                }
                check_reader(&keys);
            })
        };
        reader.join().unwrap();
        let kept: Vec<u64> = racers
            .into_iter()
            .map(|racer| racer.join().unwrap())
            .collect();
        assert_eq!(kept[0], kept[1], "racers got different values");
        assert_eq!(keys.generation(), 1, "one key, counted otherwise");
        assert_eq!(keys.map().values(), vec![kept[0]]);
    });
}

#[test]
fn a_reader_that_sees_a_generation_finds_every_key_it_counts() {
    model(|| {
        let keys = Arc::new(Keys::new(SlotMap::new()));
        let writers: Vec<_> = [0_usize, 1]
            .into_iter()
            .map(|key| {
                let keys = keys.clone();
                thread::spawn(move || register(&keys, key, 10 + key as u64))
            })
            .collect();
        let reader = {
            let keys = keys.clone();
            thread::spawn(move || {
                let earlier = check_reader(&keys);
                let later = check_reader(&keys);
                assert!(earlier <= later, "generation went back");
            })
        };
        reader.join().unwrap();
        for writer in writers {
            writer.join().unwrap();
        }
        assert_eq!(keys.generation(), 2);
        assert_eq!(keys.map().values(), vec![10, 11]);
    });
}

#[test]
fn replacing_the_keys_is_seen_with_its_generation() {
    model(|| {
        let keys = Arc::new(Keys::new(SlotMap::new()));
        register(&keys, 0, 1);
        let restorer = {
            let keys = keys.clone();
            thread::spawn(move || keys.replace_all([(0, 2), (1, 3)]))
        };
        // The restore's generation (2) counts its new values: a cache
        // stamped with it holds them, never the replaced one.
        let reader = {
            let keys = keys.clone();
            thread::spawn(move || {
                let (generation, values) = keys.values_at();
                if generation == 2 {
                    assert_eq!(values, vec![2, 3]);
                }
            })
        };
        reader.join().unwrap();
        restorer.join().unwrap();
        assert_eq!(keys.generation(), 2);
    });
}
