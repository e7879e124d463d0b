//! `cache_aware`: the replica most likely to hold the request's prompt
//! prefix in its KV cache, within a bound on load.
//!
//! In order:
//! 1. *Bounded loads*: a replica is eligible only while its requests
//!    (running here and on other router instances, plus those queued in
//!    the engine) stay within `load_factor` times the mean over the
//!    model's available replicas, rounded up, counting this request, plus
//!    `load_slack` (0 by default; consistent hashing with bounded loads,
//!    Mirrokni et al.). At least one replica is always eligible, and no
//!    replica runs more than `load_factor` times the mean plus the slack:
//!    not when every request shares one system prompt, not when one
//!    conversation is very busy. A replica with a free slot of its
//!    configured capacity (`max_concurrency`: for llama.cpp, its slots) is
//!    always within the bound: the request runs at once and evicts no
//!    one's cache. Measured: a slack of 2 let conversations
//!    pile past the slots of two-slot llama.cpp replicas, which evicted
//!    each other (1.04x the sticky oracle's prompt tokens without it,
//!    1.5-2.4x with it).
//! 2. *Session affinity*: a request of a session goes back to the replica
//!    its session is bound to, if eligible. A session is the one the
//!    caller names, else the conversation (its messages up to the first
//!    user turn: [`crate::prefix::Affinity`]), so a conversation's later
//!    turns go where its earlier ones went even when its whole blocks so
//!    far are a system prompt many conversations share.
//! 3. *A new conversation* (a session not bound yet, or moved by the
//!    bound) goes to the least loaded eligible replica, the one holding
//!    the most of its prompt among equals: what it shares with others is
//!    a system prompt most replicas soon hold, while its own later turns
//!    want a slot that stays theirs.
//! 4. *A prompt without a session* (a completion) goes to the replica
//!    holding the most of it, at least `min_match_blocks`, among those
//!    whose recent prefill work is within `load_factor` times the mean
//!    plus this request's own: so prompts that quote one document spread
//!    over the replicas instead of all going where it went first. Ties go
//!    to the less loaded.
//! 5. Else the least loaded eligible replica (then the least worked), ties
//!    broken at random so that new prefixes spread.
//!
//! A request without an affinity (no prompt text known) is placed by 1
//! and 5 only.

use super::{ReplicaPolicy, Replicas};
use crate::prefix::{Affinity, PrefixIndex, PrefixSettings};
use crate::rng::SharedRng;

/// Replicas per model looked at on the stack; more use the heap.
const ON_STACK: usize = 32;

/// Prefix- and session-aware choice within a load bound.
pub struct CacheAware {
    index: PrefixIndex,
    rng: SharedRng,
}

impl CacheAware {
    /// For a model of `replicas` replicas.
    pub fn new(replicas: usize, settings: PrefixSettings) -> Self {
        Self {
            index: PrefixIndex::new(replicas, settings),
            rng: SharedRng::new(0xC0FF_EE00_D15E_A5E5),
        }
    }
}

/// A replica as the choice sees it: its load, when it can take the
/// request, and its request count.
#[derive(Clone, Copy, Default)]
struct Seen {
    load: Option<f64>,
    requests: f64,
    /// Configured capacity (0: unlimited).
    capacity: f64,
}

impl CacheAware {
    fn choose_among(&self, replicas: &Replicas<'_>, seen: &mut [Seen]) -> Option<usize> {
        let mut total = 0.0;
        let mut available = 0_usize;
        for (r, slot) in seen.iter_mut().enumerate() {
            slot.load = replicas.load(r);
            if slot.load.is_some() {
                slot.requests = replicas.requests(r);
                slot.capacity = f64::from(replicas.capacity(r));
                total += slot.requests;
                available += 1;
            }
        }
        if available == 0 {
            return None;
        }
        let settings = self.index.settings();
        let cap = (settings.load_factor * (total + 1.0) / available as f64).ceil()
            + f64::from(settings.load_slack);
        let seen: &[Seen] = seen;
        // A replica with a free configured slot is never over the bound:
        // the request runs at once and evicts no one.
        let within = |r: usize| {
            seen.get(r).is_some_and(|s| {
                s.load.is_some() && (s.requests + 1.0 <= cap || s.requests + 1.0 <= s.capacity)
            })
        };
        match replicas.affinity() {
            Some(affinity) => self.by_affinity(affinity, replicas, seen, &within),
            None => self.least_loaded(seen, &within, &[]),
        }
    }

    /// The least loaded replica `eligible` allows (then the one with the
    /// least recent work), from a random start so that ties spread.
    fn least_loaded(
        &self,
        seen: &[Seen],
        eligible: &dyn Fn(usize) -> bool,
        work: &[f64],
    ) -> Option<usize> {
        let n = seen.len();
        let start = (self.rng.next_u64() % n.max(1) as u64) as usize;
        let key = |r: usize| {
            (
                seen.get(r).and_then(|s| s.load).unwrap_or(f64::INFINITY),
                work.get(r).copied().unwrap_or(0.0),
            )
        };
        (0..n)
            .map(|offset| (start + offset) % n)
            .filter(|&r| eligible(r))
            .min_by(|&a, &b| {
                let (ka, kb) = (key(a), key(b));
                ka.0.total_cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
            })
    }

    fn by_affinity(
        &self,
        affinity: &Affinity,
        replicas: &Replicas<'_>,
        seen: &[Seen],
        within: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = seen.len();
        let (mut matched_stack, mut work_stack) = ([0_u32; ON_STACK], [0.0_f64; ON_STACK]);
        let (mut matched_heap, mut work_heap) = (Vec::new(), Vec::new());
        let (matched, work): (&mut [u32], &mut [f64]) = if n <= ON_STACK {
            (
                matched_stack.get_mut(..n).unwrap_or_default(),
                work_stack.get_mut(..n).unwrap_or_default(),
            )
        } else {
            matched_heap.resize(n, 0);
            work_heap.resize(n, 0.0);
            (&mut matched_heap, &mut work_heap)
        };
        let session = self
            .index
            .look(affinity, replicas.now_ms(), within, matched, work);
        if let Some(replica) = session.filter(|&r| within(r)) {
            return Some(replica);
        }
        let load_of = |r: usize| seen.get(r).and_then(|s| s.load).unwrap_or(f64::INFINITY);
        // The work bound: no new prefix goes to a replica whose recent
        // prefill work is past `load_factor` times the mean plus what this
        // request would cost from scratch (bounded loads for weighted
        // items: without the slack a second request of a prefix would
        // leave the replica holding it whenever the others are idle).
        let (mut total_work, mut available) = (0.0, 0_usize);
        for (s, w) in seen.iter().zip(work.iter()) {
            if s.load.is_some() {
                total_work += w;
                available += 1;
            }
        }
        let settings = self.index.settings();
        let work_cap = settings.load_factor * total_work / available.max(1) as f64
            + affinity.blocks.len() as f64
            + 1.0;
        let work: &[f64] = work;
        let eligible = |r: usize| within(r) && work.get(r).is_some_and(|&w| w <= work_cap);
        if affinity.session.is_some() {
            // A conversation starting (or moved by the bound): what it shares
            // with others is a system prompt most replicas soon hold, while
            // its own turns will want a slot that stays its own. So the
            // least loaded replica first; then the longest match, then the
            // least worked (from a random start, so that ties spread).
            let start = (self.rng.next_u64() % n.max(1) as u64) as usize;
            let key = |r: usize| {
                (
                    load_of(r),
                    matched.get(r).copied().unwrap_or(0),
                    work.get(r).copied().unwrap_or(0.0),
                )
            };
            let chosen = (0..n)
                .map(|offset| (start + offset) % n)
                .filter(|&r| eligible(r))
                .min_by(|&a, &b| {
                    let (ka, kb) = (key(a), key(b));
                    ka.0.total_cmp(&kb.0)
                        .then(kb.1.cmp(&ka.1))
                        .then(ka.2.total_cmp(&kb.2))
                });
            return chosen.or_else(|| self.least_loaded(seen, within, work));
        }
        matched
            .iter()
            .enumerate()
            .filter(|&(r, &m)| m >= settings.min_match_blocks && eligible(r))
            .max_by(|&(a, &ma), &(b, &mb)| {
                // More blocks first; then the less loaded.
                ma.cmp(&mb).then(load_of(b).total_cmp(&load_of(a)))
            })
            .map(|(r, _)| r)
            .or_else(|| self.least_loaded(seen, &eligible, work))
            // The two bounds can rule out every replica only when the least
            // loaded and the least worked differ: then load alone decides.
            .or_else(|| self.least_loaded(seen, within, work))
    }
}

impl ReplicaPolicy for CacheAware {
    fn name(&self) -> &'static str {
        "cache_aware"
    }

    fn choose(&self, replicas: &Replicas<'_>) -> Option<usize> {
        let n = replicas.len();
        if n <= ON_STACK {
            let mut seen = [Seen::default(); ON_STACK];
            self.choose_among(replicas, seen.get_mut(..n).unwrap_or_default())
        } else {
            self.choose_among(replicas, &mut vec![Seen::default(); n])
        }
    }

    fn passes_over_slow_replicas(&self) -> bool {
        // Its replicas serve unlike work by design; the load bound moves
        // work off one that falls behind. Failing replicas are still
        // passed over.
        false
    }

    fn wants_affinity(&self) -> Option<u32> {
        Some(self.index.settings().block_bytes)
    }

    fn prefix_index(&self) -> Option<&PrefixIndex> {
        Some(&self.index)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const BLOCK: u32 = 16;

    fn policy(replicas: usize) -> CacheAware {
        CacheAware::new(
            replicas,
            PrefixSettings {
                block_bytes: BLOCK,
                ..PrefixSettings::default()
            },
        )
    }

    fn affinity(text: &str, session: Option<&str>) -> Affinity {
        Affinity::new(text.as_bytes(), session.map(str::as_bytes), None, BLOCK)
    }

    /// Chooses for `a` with these request counts (capacity unlimited) and
    /// notes the choice, as the router does once the slot is taken.
    fn place(policy: &CacheAware, a: &Affinity, requests: &[f64]) -> Option<usize> {
        let load = |r: usize| requests.get(r).map(|q| q / 64.0);
        let count = |r: usize| requests.get(r).copied().unwrap_or(0.0);
        let view = Replicas::new(requests.len(), &load)
            .with_requests(&count)
            .with_affinity(Some(a), 1_000);
        let chosen = policy.choose(&view)?;
        policy.index.route(chosen, a, 1_000);
        Some(chosen)
    }

    /// Conversation `c` after `turn` more turns, named by its opening as
    /// the bindings name it.
    fn turn_of(system: &str, c: usize, turn: usize) -> Affinity {
        let opening = format!("{system}user: task {c:03} begins here");
        let text = format!(
            "{opening}{}",
            " assistant: done; user: next step.".repeat(turn)
        );
        Affinity::new(text.as_bytes(), None, Some(opening.len()), BLOCK)
    }

    #[test]
    fn each_conversation_returns_to_the_replica_holding_it() {
        let policy = policy(4);
        let system = "You are an agent with these tools: search, read, write. ".repeat(3);
        let homes: Vec<_> = (0..8)
            .map(|c| place(&policy, &turn_of(&system, c, 0), &[0.0; 4]))
            .collect();
        for turn in 1..5 {
            for (c, home) in homes.iter().enumerate() {
                assert_eq!(place(&policy, &turn_of(&system, c, turn), &[0.0; 4]), *home);
            }
        }
        // New conversations spread over the replicas rather than pile up
        // where the shared system prompt went first (the work bound).
        let mut used = homes.iter().flatten().copied().collect::<Vec<_>>();
        used.sort_unstable();
        used.dedup();
        assert!(used.len() >= 2, "{homes:?}");
    }

    #[test]
    fn one_shared_prefix_spreads_over_every_replica_by_work() {
        // Prompts that share one long document and differ after it, no
        // session: the work bound keeps them from all going to the replica
        // the document went to first.
        let policy = policy(3);
        let document = "a long document every request quotes before its question. ".repeat(4);
        let mut counts = [0_u32; 3];
        for i in 0..60 {
            let prompt = format!("{document} question {i:03}: what does it say?");
            if let Some(r) = place(&policy, &affinity(&prompt, None), &[0.0; 3]) {
                if let Some(c) = counts.get_mut(r) {
                    *c += 1;
                }
            }
        }
        // Work-balanced, not count-balanced: a second replica takes the
        // document once the first is past the bound, and a third only
        // when both are (so the exact spread depends on the draws).
        assert!(counts.iter().filter(|&&c| c > 0).count() >= 2, "{counts:?}");
        let stats = policy.index.stats();
        let work: Vec<f64> = stats.replicas.iter().map(|r| r.work).collect();
        let mean = work.iter().sum::<f64>() / 3.0;
        let blocks = affinity(&format!("{document} question 000: what does it say?"), None)
            .blocks
            .len() as f64;
        for w in &work {
            assert!(*w <= 1.25 * mean + blocks + 4.0, "{work:?}");
        }
    }

    #[test]
    fn the_load_bound_overrides_the_prefix() {
        let policy = policy(3);
        let text = "a long shared prompt that every request of this test carries along";
        let a = affinity(text, None);
        assert!(place(&policy, &a, &[0.0, 0.0, 0.0]).is_some());
        let home = place(&policy, &a, &[0.0, 0.0, 0.0]).unwrap_or(9);
        // Within the bound, the prefix wins over a lighter load.
        let mut light = [2.0; 3];
        light[home] = 3.0;
        assert_eq!(place(&policy, &a, &light), Some(home));
        // Home busy past 1.25 x the mean (counting this request):
        // ceil(1.25 x 5 / 3) = 3 < 5: elsewhere.
        let mut busy = [0.0; 3];
        busy[home] = 4.0;
        let moved = place(&policy, &a, &busy).unwrap_or(home);
        assert_ne!(moved, home);
    }

    #[test]
    fn a_free_configured_slot_is_within_the_bound() {
        let policy = policy(3);
        let a = affinity(
            "a conversation long enough to have several blocks",
            Some("s"),
        );
        let home = place(&policy, &a, &[0.0; 3]).unwrap_or(9);
        // Two in flight at home, none elsewhere: past ceil(1.25 x 3 / 3) =
        // 2 without capacities, but home has a third slot free.
        let mut counts = [0.0; 3];
        counts[home] = 2.0;
        let load = |r: usize| counts.get(r).map(|q| q / 3.0);
        let requests = |r: usize| counts.get(r).copied().unwrap_or(0.0);
        let slots = |_: usize| 3_u32;
        let unlimited = |_: usize| 0_u32;
        for (capacity, stays) in [(&slots as &dyn Fn(usize) -> u32, true), (&unlimited, false)] {
            let view = Replicas::new(3, &load)
                .with_requests(&requests)
                .with_capacity(capacity)
                .with_affinity(Some(&a), 1_000);
            assert_eq!(policy.choose(&view) == Some(home), stays);
        }
    }

    #[test]
    fn one_shared_prompt_under_load_stays_within_the_bound() {
        // 300 requests of one prompt with 12 always in flight on 4
        // replicas: the prefix would send all to one; the bound keeps each
        // at ceil(1.25 x 12 / 4) = 4 at most.
        let policy = policy(4);
        let a = affinity(&"the one system prompt everyone sends. ".repeat(8), None);
        let mut running: Vec<usize> = Vec::new();
        let mut counts = [0.0_f64; 4];
        for i in 0..300 {
            if running.len() == 12 {
                let done = running.remove(i % 12);
                if let Some(c) = counts.get_mut(done) {
                    *c -= 1.0;
                }
            }
            let chosen = place(&policy, &a, &counts).unwrap_or(0);
            if let Some(c) = counts.get_mut(chosen) {
                *c += 1.0;
            }
            running.push(chosen);
            assert!(counts.iter().all(|&c| c <= 4.0), "{counts:?}");
        }
    }

    #[test]
    fn a_session_sticks_even_without_a_prompt_prefix() {
        let policy = policy(3);
        let first = place(&policy, &affinity("hi", Some("s-1")), &[1.0, 0.0, 1.0]);
        assert_eq!(first, Some(1));
        for _ in 0..10 {
            assert_eq!(
                place(&policy, &affinity("ok", Some("s-1")), &[1.0, 1.0, 1.0]),
                first
            );
        }
        // Over the bound: moved, and bound to where it went.
        let moved = place(&policy, &affinity("ok", Some("s-1")), &[0.0, 5.0, 0.0]);
        assert_ne!(moved, first);
        assert_eq!(
            place(&policy, &affinity("ok", Some("s-1")), &[1.0, 1.0, 1.0]),
            moved
        );
    }

    #[test]
    fn unavailable_replicas_are_never_chosen() {
        let policy = policy(3);
        let a = affinity("a prompt long enough to have several blocks of it", None);
        place(&policy, &a, &[0.0; 3]);
        let load = |r: usize| (r == 2).then_some(0.5);
        let count = |_: usize| 0.0;
        for _ in 0..20 {
            let view = Replicas::new(3, &load)
                .with_requests(&count)
                .with_affinity(Some(&a), 0);
            assert_eq!(policy.choose(&view), Some(2));
        }
        let none = |_: usize| None;
        assert_eq!(policy.choose(&Replicas::new(3, &none)), None);
    }

    #[test]
    fn many_replicas_use_the_heap_path_alike() {
        let policy = policy(40);
        let a = affinity(
            "forty replicas, one conversation, several blocks long",
            None,
        );
        let home = place(&policy, &a, &[0.0; 40]);
        assert_eq!(place(&policy, &a, &[0.0; 40]), home);
    }
}
