//! One model's memory of where prompt prefixes went: which replica was
//! sent which block (by its chained hash) and how many requests ago, and
//! which replica each session is bound to. Bounded in entries
//! ([`super::generations`]); one lock, held for a lookup or an update of
//! one request (tens of probes), never across a call out.
//!
//! How far back it is trusted is measured: each replica has a *horizon*
//! (in its own requests) beyond which its entries count as evicted. An
//! engine report that a predicted prefix was not cached sets the horizon
//! just below that entry's age; a report that it was cached lets it grow
//! by an eighth (so a horizon set by a cold start or a restart comes back).
//! A replica's horizon starts unknown (everything kept counts).

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::generations::Generations;
use super::sessions::Sessions;
use super::{Affinity, PrefixSettings};

/// An unknown horizon: every kept entry counts.
const UNKNOWN: u32 = u32::MAX;

/// What every replica's recent work keeps at each request the model
/// places (a half-life of about 69 requests).
pub const WORK_DECAY: f64 = 0.99;

/// What the index expected of a request it placed: the whole blocks the
/// replica held and the age (in the replica's requests) of the oldest of
/// them, for scoring the expectation against the engine's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Routed {
    pub predicted_blocks: u32,
    pub age: u32,
}

/// One replica's cache as the index sees it, and its report counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaCacheStats {
    /// Requests placed on it (wrapping).
    pub tick: u32,
    /// Requests back its entries are trusted (`u32::MAX`: unknown).
    pub horizon: u32,
    /// Outcomes that came with the engine's cache figures.
    pub reports: u64,
    /// Reports whose prediction held (at least half the predicted share cached).
    pub hits: u64,
    /// Reports where a predicted prefix was not cached.
    pub misses: u64,
    /// Prompt tokens the index expected cached (its share times the prompt).
    pub predicted_tokens: f64,
    /// Prompt tokens the engine reports it reused.
    pub cached_tokens: u64,
    /// Prompt tokens of the reported requests (reused ones included).
    pub prompt_tokens: u64,
    /// Recent prefill work sent to it: each request's blocks it did not
    /// hold, plus one, decayed by [`WORK_DECAY`] at every request the
    /// model places; what the work bound compares.
    pub work: f64,
}

impl Default for ReplicaCacheStats {
    fn default() -> Self {
        Self {
            tick: 0,
            horizon: UNKNOWN,
            reports: 0,
            hits: 0,
            misses: 0,
            predicted_tokens: 0.0,
            cached_tokens: 0,
            prompt_tokens: 0,
            work: 0.0,
        }
    }
}

/// The whole index's size and every replica's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixStats {
    pub entries: usize,
    pub sessions: usize,
    pub allocated_bytes: usize,
    pub replicas: Vec<ReplicaCacheStats>,
}

struct Inner {
    /// (block, replica) -> the replica's tick when it was last sent it.
    entries: Generations<u32>,
    sessions: Sessions,
    replicas: Vec<ReplicaCacheStats>,
    /// This instance's placements not yet shared with the others (only
    /// while sharing is on), oldest first; bounded.
    journal: Option<Journal>,
}

/// Placements waiting to be shared; at most [`JOURNAL_LIMIT`], the oldest
/// dropped (and counted) first.
#[derive(Default)]
struct Journal {
    placements: std::collections::VecDeque<Placement>,
    dropped: u64,
}

/// One request's placement, as shared: the replica, the session, the blocks.
struct Placement {
    replica: u32,
    session: Option<u64>,
    blocks: Box<[u64]>,
}

/// Placements kept for sharing between two sync cycles.
pub const JOURNAL_LIMIT: usize = 4_096;

/// What a shared placement record may hold, at most (a 64 KB prompt in
/// 16-byte blocks): a larger count is a corrupt record.
const MAX_SHARED_BLOCKS: usize = 4_096;

/// Why a shared placement record was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPlacements(pub String);

impl std::fmt::Display for BadPlacements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where one model's prefixes and sessions went.
pub struct PrefixIndex {
    settings: PrefixSettings,
    inner: Mutex<Inner>,
}

/// The entry key of `block` on `replica`: block hashes are uniform, so
/// adding a per-replica odd constant keeps keys uniform and distinct.
#[inline]
fn key(block: u64, replica: usize) -> u64 {
    block.wrapping_add((replica as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

impl Inner {
    /// The age of `block`'s entry on `replica` when it counts (held and
    /// within the horizon).
    #[inline]
    fn age(&self, block: u64, replica: usize) -> Option<u32> {
        let cache = self.replicas.get(replica)?;
        let touched = self.entries.get(key(block, replica))?;
        let age = cache.tick.wrapping_sub(touched);
        (age <= cache.horizon).then_some(age)
    }

    /// Leading blocks `replica` holds, and the age of the last of them.
    /// A binary search: every request that sends a block sends all the
    /// blocks before it, so what a replica holds is a prefix of the chain
    /// (up to hash collisions and generation edges, which only make the
    /// estimate a little short or long).
    fn matched(&self, blocks: &[u64], replica: usize) -> Routed {
        let held = |k: usize| blocks.get(k).and_then(|&b| self.age(b, replica));
        if held(0).is_none() {
            return Routed::default();
        }
        // Invariant: blocks[..low] held; blocks[high..] not.
        let (mut low, mut high) = (1_usize, blocks.len());
        while low < high {
            let mid = low + (high - low).div_ceil(2);
            if held(mid - 1).is_some() {
                low = mid;
            } else {
                high = mid - 1;
            }
        }
        Routed {
            predicted_blocks: u32::try_from(low).unwrap_or(u32::MAX),
            age: low.checked_sub(1).and_then(held).unwrap_or(0),
        }
    }
}

impl Inner {
    /// `replica` was sent `blocks` (in `session`): what it was expected to
    /// hold before, then it holds them all.
    fn place(
        &mut self,
        replica: usize,
        blocks: &[u64],
        session: Option<u64>,
        now_ms: u64,
    ) -> Routed {
        let before = self.matched(blocks, replica);
        if replica >= self.replicas.len() {
            return before;
        }
        for cache in &mut self.replicas {
            cache.work *= WORK_DECAY;
        }
        let Some(cache) = self.replicas.get_mut(replica) else {
            return before;
        };
        let uncached = blocks
            .len()
            .saturating_sub(before.predicted_blocks as usize);
        cache.work += uncached as f64 + 1.0;
        cache.tick = cache.tick.wrapping_add(1);
        let tick = cache.tick;
        for &block in blocks {
            self.entries.insert(key(block, replica), tick);
        }
        if let Some(session) = session {
            self.sessions.bind(session, replica, now_ms);
        }
        before
    }
}

/// Reads packed placements (see [`PrefixIndex::export`]) for a model of
/// `replicas` replicas.
fn parse_placements(data: &[u8], replicas: usize) -> Result<Vec<Placement>, BadPlacements> {
    fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], BadPlacements> {
        if data.len() < n {
            return Err(BadPlacements(format!(
                "shared placements cut short: {n} bytes wanted, {} left",
                data.len()
            )));
        }
        let (head, rest) = data.split_at(n);
        *data = rest;
        Ok(head)
    }
    fn u32_of(bytes: &[u8]) -> u32 {
        let mut word = [0_u8; 4];
        word.copy_from_slice(bytes);
        u32::from_le_bytes(word)
    }
    fn u64_of(bytes: &[u8]) -> u64 {
        let mut word = [0_u8; 8];
        word.copy_from_slice(bytes);
        u64::from_le_bytes(word)
    }
    let mut rest = data;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let replica = u32_of(take(&mut rest, 4)?);
        if replica as usize >= replicas {
            return Err(BadPlacements(format!(
                "shared placement names replica {replica}; the model has {replicas}"
            )));
        }
        let flag = take(&mut rest, 1)?.first().copied().unwrap_or(0);
        let session = u64_of(take(&mut rest, 8)?);
        let count = u32_of(take(&mut rest, 4)?) as usize;
        if count > MAX_SHARED_BLOCKS || flag > 1 {
            return Err(BadPlacements(format!(
                "shared placement is corrupt (block count {count}, session flag {flag})"
            )));
        }
        let blocks = take(&mut rest, count * 8)?
            .chunks_exact(8)
            .map(u64_of)
            .collect();
        out.push(Placement {
            replica,
            session: (flag == 1).then_some(session),
            blocks,
        });
    }
    Ok(out)
}

impl PrefixIndex {
    /// An empty index over `replicas` replicas.
    pub fn new(replicas: usize, settings: PrefixSettings) -> Self {
        Self {
            settings,
            inner: Mutex::new(Inner {
                entries: Generations::new(settings.max_entries),
                sessions: Sessions::new(settings.max_sessions, settings.session_ttl_ms),
                replicas: vec![ReplicaCacheStats::default(); replicas],
                journal: None,
            }),
        }
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &PrefixSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing here panics while holding the lock; if something did, the
        // data is still a valid (if approximate) index: keep using it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// For a request: the replica its session is bound to (at `now_ms`),
    /// into `matched[r]` the leading blocks each replica `r` holds (0 for
    /// those `consider` rules out) and into `work[r]` its recent work.
    /// One lock for all of it.
    pub fn look(
        &self,
        affinity: &Affinity,
        now_ms: u64,
        consider: &dyn Fn(usize) -> bool,
        matched: &mut [u32],
        work: &mut [f64],
    ) -> Option<usize> {
        let inner = self.lock();
        let session = affinity
            .session
            .and_then(|s| inner.sessions.replica(s, now_ms));
        for (replica, slot) in matched.iter_mut().enumerate() {
            *slot = if affinity.blocks.is_empty() || !consider(replica) {
                0
            } else {
                inner.matched(&affinity.blocks, replica).predicted_blocks
            };
        }
        for (slot, cache) in work.iter_mut().zip(&inner.replicas) {
            *slot = cache.work;
        }
        session
    }

    /// Notes that the request went to `replica`: it will hold every block
    /// (and the session is bound to it). Returns what it was expected to
    /// hold before, for the engine's report to be scored against.
    pub fn route(&self, replica: usize, affinity: &Affinity, now_ms: u64) -> Routed {
        let mut inner = self.lock();
        if let Some(journal) = inner.journal.as_mut() {
            if journal.placements.len() >= JOURNAL_LIMIT {
                journal.placements.pop_front();
                journal.dropped += 1;
            }
            journal.placements.push_back(Placement {
                replica: u32::try_from(replica).unwrap_or(u32::MAX),
                session: affinity.session,
                blocks: affinity.blocks.clone(),
            });
        }
        inner.place(replica, &affinity.blocks, affinity.session, now_ms)
    }

    /// Starts (or stops) keeping this instance's placements for sharing.
    pub fn set_sharing(&self, on: bool) {
        let mut inner = self.lock();
        match (on, inner.journal.is_some()) {
            (true, false) => inner.journal = Some(Journal::default()),
            (false, true) => inner.journal = None,
            _ => {}
        }
    }

    /// Takes the placements kept since the last call, packed for another
    /// instance's [`Self::import`] (little-endian: per placement the
    /// replica u32, a session flag u8 and u64, the block count u32 and the
    /// blocks u64 each), and how many were dropped for want of room.
    pub fn export(&self) -> (Vec<u8>, u64) {
        let mut inner = self.lock();
        let Some(journal) = inner.journal.as_mut() else {
            return (Vec::new(), 0);
        };
        let mut out = Vec::new();
        for placement in journal.placements.drain(..) {
            out.extend_from_slice(&placement.replica.to_le_bytes());
            out.push(u8::from(placement.session.is_some()));
            out.extend_from_slice(&placement.session.unwrap_or(0).to_le_bytes());
            let count = u32::try_from(placement.blocks.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&count.to_le_bytes());
            for block in placement.blocks.iter() {
                out.extend_from_slice(&block.to_le_bytes());
            }
        }
        (out, std::mem::take(&mut journal.dropped))
    }

    /// Applies another instance's placements (from its [`Self::export`]):
    /// the replicas they went to hold those blocks now, and their sessions
    /// are bound there. A record that does not parse, or names a replica
    /// this model lacks, is refused whole, before anything is applied.
    pub fn import(&self, data: &[u8], now_ms: u64) -> Result<usize, BadPlacements> {
        let placements = parse_placements(data, self.lock().replicas.len())?;
        let mut inner = self.lock();
        for placement in &placements {
            inner.place(
                placement.replica as usize,
                &placement.blocks,
                placement.session,
                now_ms,
            );
        }
        Ok(placements.len())
    }

    /// The engine's report for a request placed as `routed`:
    /// `prompt_tokens` in its prompt, `cached_tokens` of them reused.
    /// Scores the expectation and moves the replica's horizon.
    pub fn report(
        &self,
        replica: usize,
        routed: Routed,
        affinity: &Affinity,
        prompt_tokens: u64,
        cached_tokens: u64,
    ) {
        if prompt_tokens == 0 {
            return;
        }
        let cached_tokens = cached_tokens.min(prompt_tokens);
        let predicted = affinity.share_of(routed.predicted_blocks, self.settings.block_bytes);
        let measured = cached_tokens as f64 / prompt_tokens as f64;
        let mut inner = self.lock();
        let Some(cache) = inner.replicas.get_mut(replica) else {
            return;
        };
        cache.reports += 1;
        cache.predicted_tokens += predicted * prompt_tokens as f64;
        cache.cached_tokens = cache.cached_tokens.saturating_add(cached_tokens);
        cache.prompt_tokens = cache.prompt_tokens.saturating_add(prompt_tokens);
        if routed.predicted_blocks == 0 {
            return;
        }
        if measured < predicted / 2.0 {
            cache.misses += 1;
            // Entries this old were gone: trust only younger ones.
            cache.horizon = cache.horizon.min(routed.age.saturating_sub(1));
        } else {
            cache.hits += 1;
            if cache.horizon != UNKNOWN {
                let horizon = cache.horizon.max(routed.age);
                cache.horizon = horizon.saturating_add((horizon / 8).max(1));
            }
        }
    }

    /// Sizes and every replica's figures.
    pub fn stats(&self) -> PrefixStats {
        let inner = self.lock();
        PrefixStats {
            entries: inner.entries.len(),
            sessions: inner.sessions.len(),
            allocated_bytes: inner.entries.allocated_bytes() + inner.sessions.allocated_bytes(),
            replicas: inner.replicas.clone(),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const BLOCK: u32 = 16;

    fn settings() -> PrefixSettings {
        PrefixSettings {
            block_bytes: BLOCK,
            ..PrefixSettings::default()
        }
    }

    fn prompt(parts: &[&str]) -> Affinity {
        Affinity::new(parts.concat().as_bytes(), None, None, BLOCK)
    }

    fn matched(index: &PrefixIndex, affinity: &Affinity, replicas: usize) -> Vec<u32> {
        let mut out = vec![0; replicas];
        index.look(affinity, 0, &|_| true, &mut out, &mut []);
        out
    }

    #[test]
    fn a_conversation_matches_on_the_replica_that_served_its_last_turn() {
        let index = PrefixIndex::new(3, settings());
        let system = "You are a careful assistant. ".repeat(4); // 116 bytes
        let turn1 = prompt(&[&system, "user: what is 2+2?"]);
        assert_eq!(matched(&index, &turn1, 3), vec![0, 0, 0]);
        assert_eq!(index.route(1, &turn1, 0), Routed::default());
        let turn2 = prompt(&[
            &system,
            "user: what is 2+2?",
            "assistant: 4",
            "user: and 3+3?",
        ]);
        let found = matched(&index, &turn2, 3);
        assert_eq!(found, vec![0, turn1.blocks.len() as u32, 0]);
        // Blocks of turn 2 past turn 1's are new: the match stops there.
        assert!(found[1] < turn2.blocks.len() as u32);
        // Another conversation with the same system prompt matches its
        // system-prompt blocks only.
        let other = prompt(&[&system, "user: tell me a story about a cat"]);
        let shared = (system.len() / BLOCK as usize) as u32;
        assert_eq!(matched(&index, &other, 3), vec![0, shared, 0]);
    }

    #[test]
    fn the_binary_search_agrees_with_a_linear_scan() {
        let index = PrefixIndex::new(2, settings());
        let long = "abcdefghijklmnopqrstuvwxyz0123456789".repeat(30);
        for cut in [16, 17, 100, 500, 1000] {
            let short = prompt(&[long.get(..cut).unwrap_or("")]);
            let fresh = PrefixIndex::new(2, settings());
            fresh.route(0, &short, 0);
            let full = prompt(&[&long]);
            let linear = full
                .blocks
                .iter()
                .take_while(|b| short.blocks.contains(b))
                .count() as u32;
            assert_eq!(matched(&fresh, &full, 2), vec![linear, 0], "cut {cut}");
        }
        assert_eq!(matched(&index, &prompt(&[&long]), 2), vec![0, 0]);
    }

    #[test]
    fn sessions_are_bound_to_the_replica_last_used() {
        let index = PrefixIndex::new(2, settings());
        let affinity = Affinity::new(b"hi", Some(b"conversation-9"), None, BLOCK);
        let (mut out, mut work) = ([0; 2], [0.0; 2]);
        assert_eq!(
            index.look(&affinity, 5, &|_| true, &mut out, &mut work),
            None
        );
        index.route(1, &affinity, 5);
        assert_eq!(
            index.look(&affinity, 6, &|_| true, &mut out, &mut work),
            Some(1)
        );
        // One request without whole blocks: one unit of work.
        assert_eq!(work, [0.0, 1.0]);
        let ttl = settings().session_ttl_ms;
        assert_eq!(
            index.look(&affinity, 5 + ttl, &|_| true, &mut out, &mut work),
            None
        );
    }

    #[test]
    fn an_engine_miss_shortens_the_horizon_and_hits_grow_it_back() {
        let index = PrefixIndex::new(1, settings());
        let old = prompt(&["the oldest conversation, long enough for blocks"]);
        index.route(0, &old, 0);
        // 20 other conversations on the same replica.
        for i in 0..20 {
            index.route(
                0,
                &prompt(&[&format!("conversation number {i:04} padded out")]),
                0,
            );
        }
        let again = prompt(&["the oldest conversation, long enough for blocks", " more"]);
        let expected = index.route(0, &again, 0);
        assert_eq!(expected.predicted_blocks, old.blocks.len() as u32);
        assert_eq!(expected.age, 20);
        // The engine had evicted it: nothing reused.
        index.report(0, expected, &again, 100, 0);
        let stats = index.stats().replicas[0];
        assert_eq!((stats.misses, stats.horizon), (1, 19));
        // Entries older than 19 requests no longer count.
        for i in 0..25 {
            index.route(
                0,
                &prompt(&[&format!("filler request {i:04} padded out...")]),
                0,
            );
        }
        assert_eq!(matched(&index, &again, 1), vec![0]);
        // A hit widens it again by an eighth.
        let recent = prompt(&["filler request 0024 padded out..."]);
        let routed = index.route(0, &recent, 0);
        assert!(routed.predicted_blocks > 0);
        index.report(0, routed, &recent, 10, 9);
        let stats = index.stats().replicas[0];
        assert_eq!((stats.hits, stats.horizon), (1, 21));
        assert_eq!(stats.reports, 2);
        assert_eq!((stats.cached_tokens, stats.prompt_tokens), (9, 110));
    }

    #[test]
    fn placements_shared_by_another_instance_are_found_here() {
        let one = PrefixIndex::new(3, settings());
        let two = PrefixIndex::new(3, settings());
        let conversation = Affinity::new(
            "a conversation one instance placed, several blocks long".as_bytes(),
            Some(b"s-42"),
            None,
            BLOCK,
        );
        // Not sharing: nothing kept.
        one.route(2, &conversation, 0);
        assert_eq!(one.export(), (Vec::new(), 0));
        one.set_sharing(true);
        one.route(2, &conversation, 0);
        let (data, dropped) = one.export();
        assert_eq!(dropped, 0);
        assert_eq!(two.import(&data, 0), Ok(1));
        assert_eq!(
            matched(&two, &conversation, 3),
            vec![0, 0, conversation.blocks.len() as u32]
        );
        let (mut out, mut work) = ([0; 3], [0.0; 3]);
        assert_eq!(
            two.look(&conversation, 1, &|_| true, &mut out, &mut work),
            Some(2)
        );
        // Taken: a second export is empty.
        assert_eq!(one.export().0, Vec::<u8>::new());
    }

    #[test]
    fn corrupt_or_foreign_placements_are_refused_whole() {
        let one = PrefixIndex::new(4, settings());
        one.set_sharing(true);
        let a = prompt(&["the first placement, long enough for blocks"]);
        one.route(3, &a, 0);
        one.route(1, &a, 0);
        let (data, _) = one.export();
        let small = PrefixIndex::new(2, settings());
        let Err(err) = small.import(&data, 0) else {
            panic!("a replica the model lacks was accepted");
        };
        assert!(err.to_string().contains("replica 3"), "{err}");
        assert_eq!(small.stats().entries, 0, "nothing applied");
        let same = PrefixIndex::new(4, settings());
        for cut in [1, 4, 5, 13, 17, data.len() - 1] {
            assert!(
                same.import(data.get(..cut).unwrap_or(&[]), 0).is_err(),
                "cut {cut}"
            );
        }
        let mut flag = data.clone();
        if let Some(byte) = flag.get_mut(4) {
            *byte = 7;
        }
        assert!(same.import(&flag, 0).is_err());
        assert_eq!(same.stats().entries, 0);
        assert_eq!(same.import(&data, 0), Ok(2));
    }

    #[test]
    fn the_journal_is_bounded_and_counts_what_it_dropped() {
        let one = PrefixIndex::new(1, settings());
        one.set_sharing(true);
        for i in 0..(JOURNAL_LIMIT + 10) {
            one.route(0, &prompt(&[&format!("prompt {i:06} padded")]), 0);
        }
        let (data, dropped) = one.export();
        assert_eq!(dropped, 10);
        let two = PrefixIndex::new(1, settings());
        assert_eq!(two.import(&data, 0), Ok(JOURNAL_LIMIT));
    }

    #[test]
    fn the_index_stays_bounded_under_prefix_churn() {
        let index = PrefixIndex::new(
            4,
            PrefixSettings {
                block_bytes: BLOCK,
                max_entries: 10_000,
                ..PrefixSettings::default()
            },
        );
        let mut peak = 0;
        for i in 0..20_000_u32 {
            let unique = prompt(&[&format!("{i:08} a prompt no one sends twice, churn {i:08}")]);
            index.route((i % 4) as usize, &unique, 0);
            peak = peak.max(index.stats().allocated_bytes);
        }
        let stats = index.stats();
        assert!(stats.entries <= 10_000, "{}", stats.entries);
        // ~20 bytes an entry, twice for the two generations' slack.
        assert!(peak < 10_000 * 20 * 4, "{peak} bytes");
    }
}
