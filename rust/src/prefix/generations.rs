//! A bounded map that forgets its oldest entries first, in O(1): two
//! generations of a hash map. Writes go to the current one; when it holds
//! half the bound, it becomes the previous one and the old previous one is
//! dropped whole. Reads look in both. So at most `bound` entries are kept,
//! an entry written within the last `bound / 2` writes is always kept, and
//! a prefix churning through forever leaves memory flat (the leak other
//! routers' indexes showed under prefix churn).
//!
//! Keys are hashes already, so the maps hash them no further.

use std::collections::HashMap;

use crate::passthrough::BuildPassthrough;

type Map<V> = HashMap<u64, V, BuildPassthrough>;

/// At most `bound` entries, the oldest forgotten first (by generation).
pub struct Generations<V> {
    current: Map<V>,
    previous: Map<V>,
    half: usize,
}

impl<V: Copy> Generations<V> {
    /// An empty map keeping at most `bound` (>= 2) entries.
    pub fn new(bound: u64) -> Self {
        let half = usize::try_from(bound / 2).unwrap_or(usize::MAX).max(1);
        Self {
            current: Map::default(),
            previous: Map::default(),
            half,
        }
    }

    /// The value kept for `key`, if any.
    #[inline]
    pub fn get(&self, key: u64) -> Option<V> {
        self.current
            .get(&key)
            .or_else(|| self.previous.get(&key))
            .copied()
    }

    /// Sets `key` in the current generation (a touch: it is kept longest).
    pub fn insert(&mut self, key: u64, value: V) {
        if self.current.len() >= self.half && !self.current.contains_key(&key) {
            self.previous = std::mem::take(&mut self.current);
            // The new generation will fill as the old one did.
            self.current.reserve(self.previous.len().min(self.half));
        }
        self.current.insert(key, value);
    }

    /// Entries kept (an entry in both generations counts twice).
    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the two maps hold allocated (their buckets and control bytes).
    pub fn allocated_bytes(&self) -> usize {
        let per_bucket = std::mem::size_of::<(u64, V)>() + 1;
        // hashbrown keeps capacity at 7/8 of its buckets.
        (self.current.capacity() + self.previous.capacity()) * 8 / 7 * per_bucket
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn recent_entries_are_kept_and_the_bound_holds_under_churn() {
        let mut map = Generations::new(1_000);
        for key in 0..100_000_u64 {
            map.insert(key.wrapping_mul(0x9E37_79B9_7F4A_7C15), key);
            assert!(map.len() <= 1_000, "{}", map.len());
            // The last half-bound writes are all still there.
            let back = key.saturating_sub(499);
            assert_eq!(
                map.get(back.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                Some(back)
            );
        }
        assert_eq!(map.get(0), None, "the oldest is forgotten");
        let bytes = map.allocated_bytes();
        assert!(
            bytes < 1_000 * 2 * 17 * 2,
            "{bytes} bytes for 1,000 entries"
        );
    }

    #[test]
    fn a_rewrite_moves_an_entry_into_the_current_generation() {
        let mut map = Generations::new(4);
        map.insert(1, 'a');
        map.insert(2, 'b');
        map.insert(3, 'c'); // 1 and 2 are now the previous generation
        map.insert(1, 'A'); // touched: current again
        map.insert(4, 'd'); // the current one is full: 2 is dropped
        assert_eq!(map.get(1), Some('A'));
        assert_eq!(map.get(2), None);
        assert_eq!(map.get(4), Some('d'));
        assert!(!map.is_empty());
    }
}
