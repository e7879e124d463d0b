//! The tracker's key registration protocol, apart from the map that holds
//! the keys, so loom can check it (`rust/tests/loom_registry.rs`) with a
//! stand-in map: loom cannot instrument papaya, whose own tests check its map.
//!
//! What it keeps, however threads interleave:
//! - threads racing to register one key all get the same value (the map
//!   keeps the first insert, every racer uses what the map kept);
//! - the generation counts each new key exactly once (only the insert that
//!   won bumps it);
//! - a reader that sees generation `g` finds every key `g` counts: the bump
//!   comes after the insert and releases it, and [`Registry::values_at`]
//!   reads the generation (acquire) before it lists the map. Listing first
//!   could stamp a list without the newest key with the generation that
//!   counts it, and a cache keyed on the generation (the candidate pool's)
//!   would then miss that key until the next registration.
//!
//! A lookup that finds its key is the map's lookup alone: no atomic of the
//! registry's is touched on that path.

use crate::sync::{AtomicU64, Ordering};

/// A concurrent map whose `try_insert` keeps the value already there, as
/// papaya's does.
pub trait FirstInsertWins {
    type Key;
    type Value: Clone;
    /// Inserts `value` unless `key` has one: `Ok` with the value inserted,
    /// `Err` with the one the map already held (and `value` is dropped).
    fn try_insert(&self, key: Self::Key, value: Self::Value) -> Result<Self::Value, Self::Value>;
    /// Inserts `value`, replacing any value of `key`.
    fn replace(&self, key: Self::Key, value: Self::Value);
    /// Every value, in no particular order.
    fn values(&self) -> Vec<Self::Value>;
}

/// Finding a value by a borrowed form `Q` of the key (no allocation).
pub trait LookUp<Q: ?Sized>: FirstInsertWins {
    fn get(&self, key: &Q) -> Option<Self::Value>;
}

impl<K, V, S> FirstInsertWins for papaya::HashMap<K, V, S>
where
    K: std::hash::Hash + Eq,
    V: Clone,
    S: std::hash::BuildHasher,
{
    type Key = K;
    type Value = V;

    fn try_insert(&self, key: K, value: V) -> Result<V, V> {
        match self.pin().try_insert(key, value) {
            Ok(inserted) => Ok(inserted.clone()),
            Err(occupied) => Err(occupied.current.clone()),
        }
    }

    fn replace(&self, key: K, value: V) {
        self.pin().insert(key, value);
    }

    fn values(&self) -> Vec<V> {
        self.pin().values().cloned().collect()
    }
}

impl<K, V, S, Q> LookUp<Q> for papaya::HashMap<K, V, S>
where
    K: std::hash::Hash + Eq,
    V: Clone,
    S: std::hash::BuildHasher,
    Q: papaya::Equivalent<K> + std::hash::Hash + ?Sized,
{
    #[inline(always)]
    fn get(&self, key: &Q) -> Option<V> {
        self.pin().get(key).cloned()
    }
}

/// A map of keys registered once each, and a generation that changes
/// whenever the set of keys does.
pub struct Registry<M> {
    map: M,
    generation: AtomicU64,
}

impl<M: FirstInsertWins> Registry<M> {
    pub fn new(map: M) -> Self {
        Self {
            map,
            generation: AtomicU64::new(0),
        }
    }

    /// The map itself, for reads that need nothing of the protocol.
    pub fn map(&self) -> &M {
        &self.map
    }

    /// Changes whenever a key is added (or the keys are replaced).
    #[inline(always)]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The value of `lookup`'s key, made by `make` and registered when
    /// there is none; an error of `make` registers nothing.
    #[inline(always)]
    pub fn get_or_register<Q, E>(
        &self,
        lookup: &Q,
        make: impl FnOnce() -> Result<(M::Key, M::Value), E>,
    ) -> Result<M::Value, E>
    where
        Q: ?Sized,
        M: LookUp<Q>,
    {
        if let Some(found) = self.map.get(lookup) {
            return Ok(found);
        }
        let (key, fresh) = make()?;
        Ok(self.register(key, fresh))
    }

    /// Registers `key` unless some thread did first; returns the value every
    /// racer gets.
    pub fn register(&self, key: M::Key, value: M::Value) -> M::Value {
        match self.map.try_insert(key, value) {
            Ok(inserted) => {
                // After the insert, released: whoever acquires this
                // generation finds the key.
                self.generation.fetch_add(1, Ordering::AcqRel);
                inserted
            }
            Err(current) => current,
        }
    }

    /// Replaces (or adds) every entry, then bumps the generation once, so a
    /// cache of the old values refreshes.
    pub fn replace_all(&self, entries: impl IntoIterator<Item = (M::Key, M::Value)>) {
        for (key, value) in entries {
            self.map.replace(key, value);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Every value, with a generation all of whose keys are among them
    /// (keys registered meanwhile may be too; the next generation counts them).
    pub fn values_at(&self) -> (u64, Vec<M::Value>) {
        let generation = self.generation();
        (generation, self.map.values())
    }
}
