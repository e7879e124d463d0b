//! The lock-free rolling metric window of one key (model, replica, task).
//!
//! Time is cut into epochs of `bucket_ms`; the window keeps the last
//! `buckets` epochs in a ring of slots, plus latency histograms in
//! `histogram_slices` coarser slices, plus lifetime totals of everything that
//! has expired. Recording touches four atomics and never waits; moving the
//! window forward (once per epoch) is done by whichever thread first wins a
//! try-claim, while the others carry on.
//!
//! Each slot packs what must agree into single words, so no reader can see
//! half a record: `counts` = successes << 32 | requests, `latency` =
//! latency requests << 40 | latency sum in 10 us units.
//!
//! Bounds. The packed words never wrap, so the window never reports a wrong
//! mean:
//! - one record's latency is clamped to `latency_max_ms` (300 s by default:
//!   anything slower is a timeout already), which `validate` keeps within
//!   the 40-bit sum, so a single record always fits;
//! - the live totals hold the whole window in the slots' format, and every
//!   record is added to them before its slot, so they bound every slot. A
//!   record reserves room there (a CAS loop that refuses to pass a field's
//!   top: 2^32 - 1 requests, 2^24 - 1 latency requests, 2^40 - 1 units, i.e.
//!   127 days of summed latency); whatever finds no room is added to the
//!   lifetime totals only. The window's mean is then the exact mean of the
//!   latencies it holds (`latency_requests` < `requests` says some were left
//!   out). With the defaults a key's 5-minute window holds 36,650 timeouts
//!   of 300 s, or 16.7M latencies (56K/s), before it starts leaving any out;
//! - the lifetime totals are four u64 (summed latency grows at most as fast
//!   as the requests in flight: a million of them for 5.8 years).
//!
//! `record` stays lock-free (two CAS loops, two adds) and a decision reads
//! two words, O(1).
//!
//! Size: ~790 lines of code that must be read together (the slot protocol, its bounds, its
//! readers and its snapshot) and ~370 of tests; loom checks it as one unit.

use strength_reduce::StrengthReducedU64;

use crate::errors::{float_repr, ZetaError};
use crate::histogram::LatencyBins;
use crate::sync::{spin_hint, AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Latency sums are kept in units of 10 us: 40 bits of them hold 127 days of
/// summed latency per window, and 10 us is far below any LLM call's noise.
pub const LATENCY_UNIT_MS: f64 = 0.01;
const LATENCY_BITS: u32 = 40;
const LATENCY_MASK: u64 = (1 << LATENCY_BITS) - 1;
/// The most latency requests the latency word's top 24 bits hold.
const LATENCY_REQUESTS_MAX: u64 = (1 << (64 - LATENCY_BITS)) - 1;
const REQUEST_MASK: u64 = (1 << 32) - 1;
/// The largest `latency_max_ms`: one clamped record then fits the latency sum.
pub const LATENCY_MAX_MS_LIMIT: f64 = LATENCY_MASK as f64 * LATENCY_UNIT_MS;
/// Readers retry a torn snapshot (a rotation ran meanwhile) this often before
/// settling for the last read; rotations are microseconds, once per epoch.
const SNAPSHOT_RETRIES: usize = 64;

/// The shape of every window in a tracker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowConfig {
    /// Width of one time bucket, in milliseconds.
    pub bucket_ms: u64,
    /// Buckets in the window: the horizon is `bucket_ms * buckets`.
    pub buckets: usize,
    /// Latency histograms cover the window in this many slices (must divide
    /// `buckets`): percentiles cover between `(slices - 1) / slices` of the
    /// horizon and all of it. Fewer slices, less memory per key.
    pub histogram_slices: usize,
    /// Lower edge of the latency histogram; smaller values count as this.
    pub latency_min_ms: f64,
    /// Upper edge of the latency histogram; larger values count as this.
    pub latency_max_ms: f64,
    /// Weight of the newest sample in the latency EWMA.
    pub ewma_alpha: f64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        // 5 minutes in 5 s buckets. Latencies up to 5 minutes (anything
        // slower has long been a timeout) in 4 histogram slices: 383 bins
        // each, which keeps a key under 8 KiB (see `memory_per_key...`).
        Self {
            bucket_ms: 5_000,
            buckets: 60,
            histogram_slices: 4,
            latency_min_ms: 0.1,
            latency_max_ms: 300_000.0,
            ewma_alpha: 0.1,
        }
    }
}

impl WindowConfig {
    /// Checks every field; the first bad one is reported with its value.
    pub fn validate(&self) -> Result<LatencyBins, ZetaError> {
        let invalid = |field, expected, value: String| ZetaError::InvalidConfig {
            field,
            expected,
            value,
        };
        if self.bucket_ms == 0 {
            return Err(invalid("bucket_ms", "an integer >= 1", "0".into()));
        }
        if !(1..=100_000).contains(&self.buckets) {
            return Err(invalid(
                "buckets",
                "an integer in [1, 100000]",
                self.buckets.to_string(),
            ));
        }
        if self.histogram_slices == 0 || self.buckets % self.histogram_slices != 0 {
            return Err(invalid(
                "histogram_slices",
                "an integer >= 1 that divides buckets",
                self.histogram_slices.to_string(),
            ));
        }
        if !(self.ewma_alpha > 0.0 && self.ewma_alpha <= 1.0) {
            return Err(invalid(
                "ewma_alpha",
                "in (0, 1]",
                float_repr(self.ewma_alpha),
            ));
        }
        let bins = LatencyBins::new(self.latency_min_ms, self.latency_max_ms)?;
        if self.latency_max_ms > LATENCY_MAX_MS_LIMIT {
            return Err(invalid(
                "latency_max_ms",
                "<= 10995116277.75 (2^40 - 1 units of 10 us, so one record fits a window's sum)",
                float_repr(self.latency_max_ms),
            ));
        }
        Ok(bins)
    }

    /// The window's horizon in milliseconds.
    pub fn horizon_ms(&self) -> u64 {
        self.bucket_ms.saturating_mul(self.buckets as u64)
    }

    fn buckets_per_slice(&self) -> u64 {
        (self.buckets / self.histogram_slices) as u64
    }
}

/// Request, success and latency totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    /// Requests recorded.
    pub requests: u64,
    /// Of which succeeded.
    pub successes: u64,
    /// Requests whose latency is in `latency_units`: equals `requests` except
    /// in a snapshot taken while a record was half-applied, or in a window
    /// whose latency word was full (see the module's bounds).
    pub latency_requests: u64,
    /// Summed latency in units of [`LATENCY_UNIT_MS`].
    pub latency_units: u64,
}

impl Totals {
    #[inline(always)]
    fn add_words(&mut self, counts: u64, latency: u64) {
        self.requests += counts & REQUEST_MASK;
        self.successes += counts >> 32;
        self.latency_requests += latency >> LATENCY_BITS;
        self.latency_units += latency & LATENCY_MASK;
    }

    /// Adds another set of totals.
    #[inline(always)]
    pub fn merge(&mut self, other: &Totals) {
        self.requests += other.requests;
        self.successes += other.successes;
        self.latency_requests += other.latency_requests;
        self.latency_units += other.latency_units;
    }

    /// Success rate in 0..=1; `None` without requests.
    pub fn success_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.successes as f64 / self.requests as f64)
    }

    /// Mean latency in ms; `None` without requests.
    pub fn mean_latency_ms(&self) -> Option<f64> {
        (self.latency_requests > 0)
            .then(|| self.latency_units as f64 * LATENCY_UNIT_MS / self.latency_requests as f64)
    }
}

struct Slot {
    counts: AtomicU64,
    latency: AtomicU64,
}

/// `word + add` for a `counts` word, unless its requests or successes would
/// pass their top (and carry into the field above).
#[inline(always)]
fn counts_fit(word: u64, add: u64) -> Option<u64> {
    let requests = (word & REQUEST_MASK).checked_add(add & REQUEST_MASK)?;
    let successes = (word >> 32).checked_add(add >> 32)?;
    (requests <= REQUEST_MASK && successes <= REQUEST_MASK).then(|| word + add)
}

/// `word + add` for a `latency` word, unless its request count or its sum
/// would pass its top.
#[inline(always)]
fn latency_fits(word: u64, add: u64) -> Option<u64> {
    let requests = (word >> LATENCY_BITS).checked_add(add >> LATENCY_BITS)?;
    let units = (word & LATENCY_MASK).checked_add(add & LATENCY_MASK)?;
    (requests <= LATENCY_REQUESTS_MAX && units <= LATENCY_MASK).then(|| word + add)
}

/// Adds `add` to the packed `word` if `fits` says it has room; false (and
/// nothing added) when it has none. Lock-free: retried only when another
/// thread changed the word meanwhile.
#[inline(always)]
fn reserve(word: &AtomicU64, add: u64, fits: fn(u64, u64) -> Option<u64>) -> bool {
    word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
        fits(current, add)
    })
    .is_ok()
}

struct Slice {
    /// Slice epoch + 1 of the data held; 0 before first use.
    tag: AtomicU64,
    bins: Box<[AtomicU32]>,
}

/// A consistent read of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowSnapshot {
    /// Totals over the window.
    pub window: Totals,
    /// Totals over the key's whole life (window included).
    pub lifetime: Totals,
    /// Latency histogram over the window's slices.
    pub histogram: Vec<u64>,
    /// EWMA of latency, in ms; `None` before the first record.
    pub ewma_latency_ms: Option<f64>,
    /// False only when rotations kept tearing the read (see `SNAPSHOT_RETRIES`).
    pub consistent: bool,
}

/// The raw state of a window, for persistence.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowState {
    /// Latest epoch whose slot was initialised.
    pub epoch: u64,
    /// `(counts, latency)` words of each slot, by ring index.
    pub slots: Vec<(u64, u64)>,
    /// `(tag, sparse bins as (index, count))` of each histogram slice.
    pub slices: Vec<(u64, Vec<(u32, u32)>)>,
    /// Totals of data in no slot: expired, or beyond a packed word's bounds.
    pub retired: Totals,
    /// EWMA bits (NaN when unset).
    pub ewma_bits: u64,
}

/// The window's integer divisors, strength-reduced: a hardware 64-bit divide
/// costs 25-40 cycles, and a record or a decision needs up to four of them.
#[derive(Clone, Copy)]
struct Divisors {
    bucket_ms: StrengthReducedU64,
    buckets: StrengthReducedU64,
    buckets_per_slice: StrengthReducedU64,
    slices: StrengthReducedU64,
}

/// The rolling window of one key.
pub struct KeyWindow {
    config: WindowConfig,
    bins: LatencyBins,
    divisors: Divisors,
    /// Latest epoch whose slot has been reset for it.
    epoch: AtomicU64,
    /// Try-claim for moving the window; nobody ever waits on it.
    rotating: AtomicBool,
    /// Odd while a rotation is rewriting slots: readers retry on a change.
    version: AtomicU64,
    slots: Box<[Slot]>,
    slices: Box<[Slice]>,
    /// The window's totals in the slots' packed format, kept by writers
    /// (added before the slot) and rotation (subtracted when a slot is
    /// reset), so a decision reads two words instead of every slot.
    live_counts: AtomicU64,
    live_latency: AtomicU64,
    /// Totals of data in no slot (expired, or beyond the packed bounds):
    /// lifetime = retired + every slot.
    retired: [AtomicU64; 4],
    ewma_bits: AtomicU64,
}

impl KeyWindow {
    /// An empty window whose current epoch is the one containing `now_ms`.
    pub fn new(config: WindowConfig, bins: LatencyBins, now_ms: u64) -> Self {
        let slots = (0..config.buckets)
            .map(|_| Slot {
                counts: AtomicU64::new(0),
                latency: AtomicU64::new(0),
            })
            .collect();
        let slices = (0..config.histogram_slices)
            .map(|_| Slice {
                tag: AtomicU64::new(0),
                bins: (0..bins.len()).map(|_| AtomicU32::new(0)).collect(),
            })
            .collect();
        let divisors = Divisors {
            bucket_ms: StrengthReducedU64::new(config.bucket_ms.max(1)),
            buckets: StrengthReducedU64::new((config.buckets as u64).max(1)),
            buckets_per_slice: StrengthReducedU64::new(config.buckets_per_slice().max(1)),
            slices: StrengthReducedU64::new((config.histogram_slices as u64).max(1)),
        };
        let window = Self {
            config,
            bins,
            divisors,
            epoch: AtomicU64::new(now_ms / config.bucket_ms),
            rotating: AtomicBool::new(false),
            version: AtomicU64::new(0),
            slots,
            slices,
            live_counts: AtomicU64::new(0),
            live_latency: AtomicU64::new(0),
            retired: Default::default(),
            ewma_bits: AtomicU64::new(f64::NAN.to_bits()),
        };
        let epoch = now_ms / config.bucket_ms;
        window.tag_slice(epoch / config.buckets_per_slice());
        window
    }

    /// Bytes this window occupies (its heap buffers included).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.slots.len() * std::mem::size_of::<Slot>()
            + self.slices.len() * std::mem::size_of::<Slice>()
            + self.slices.len() * self.bins.len() * std::mem::size_of::<AtomicU32>()
    }

    fn slot(&self, epoch: u64) -> Option<&Slot> {
        self.slots.get((epoch % self.divisors.buckets) as usize)
    }

    fn slice(&self, slice_epoch: u64) -> Option<&Slice> {
        self.slices
            .get((slice_epoch % self.divisors.slices) as usize)
    }

    fn tag_slice(&self, slice_epoch: u64) {
        if let Some(slice) = self.slice(slice_epoch) {
            slice.tag.store(slice_epoch + 1, Ordering::Relaxed);
        }
    }

    /// Records one outcome at `now_ms`. `latency_ms` must be finite and >= 0
    /// (the tracker checks); above `latency_max_ms` it counts as that.
    /// Lock-free: four atomic updates (two of them CAS loops that keep the
    /// packed words from wrapping), and at most once per epoch an attempt to
    /// move the window, which never waits.
    #[inline]
    pub fn record(&self, now_ms: u64, success: bool, latency_ms: f64) {
        let Some((target, latency_ms)) = self.record_words(now_ms, success, latency_ms) else {
            return;
        };
        if let Some(slice) = self.slice(target / self.divisors.buckets_per_slice) {
            if let Some(bin) = slice.bins.get(self.bins.index(latency_ms)) {
                bin.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.update_ewma(latency_ms);
    }

    /// Records one outcome's counts and latency sum, not its histogram bin
    /// or the EWMA: for a model's rollup windows (see [`crate::rollup`]),
    /// whose readers want the totals alone.
    #[inline]
    pub fn record_totals(&self, now_ms: u64, success: bool, latency_ms: f64) {
        let _ = self.record_words(now_ms, success, latency_ms);
    }

    /// The slots' and totals' part of a record; the epoch it went to and the
    /// clamped latency, or `None` when it was older than the window (and went
    /// to the lifetime totals only).
    #[inline(always)]
    fn record_words(&self, now_ms: u64, success: bool, latency_ms: f64) -> Option<(u64, f64)> {
        let now = now_ms / self.divisors.bucket_ms;
        // Acquire: pairs with the Release store in `advance`, so the slot
        // reset for `current` is visible before we add to it.
        let mut current = self.epoch.load(Ordering::Acquire);
        if now > current {
            self.advance(now);
            current = self.epoch.load(Ordering::Acquire);
        }
        // Anything slower than the histogram's top is a timeout already; the
        // clamp also keeps one record inside the latency word.
        let latency_ms = latency_ms.min(self.config.latency_max_ms);
        let counts = 1 | (u64::from(success) << 32);
        let units = ((latency_ms / LATENCY_UNIT_MS).round() as u64).min(LATENCY_MASK);
        let latency = (1 << LATENCY_BITS) | units;
        // A sample from a clock that is behind goes to its own slot while it
        // is still in the window; one older than the window straight to the
        // lifetime totals. A sample from ahead of the window (another thread
        // is moving it) goes to the newest ready slot: it leaves the window
        // at most one bucket early and is never lost.
        let target = now.min(current);
        let horizon = self.slots.len() as u64;
        if target + horizon <= current {
            self.retired_add(counts, latency);
            return None;
        }
        if let Some(slot) = self.slot(target) {
            self.admit(slot, counts, latency);
        }
        Some((target, latency_ms))
    }

    /// Adds packed words to `slot`, the live totals first, then the slot with
    /// Release: a rotation that swaps them out of the slot (Acquire) has seen
    /// them added to the live totals, so its subtraction never borrows across
    /// the packed fields. The live totals hold every slot of the window, so
    /// room there is room in the slot too; what finds none goes to the
    /// lifetime totals only.
    #[inline(always)]
    fn admit(&self, slot: &Slot, counts: u64, latency: u64) {
        let latency_fits = reserve(&self.live_latency, latency, latency_fits);
        let counts_fit = reserve(&self.live_counts, counts, counts_fit);
        if latency_fits {
            slot.latency.fetch_add(latency, Ordering::Release);
        }
        if counts_fit {
            slot.counts.fetch_add(counts, Ordering::Release);
        }
        if !(latency_fits && counts_fit) {
            self.retired_add(
                if counts_fit { 0 } else { counts },
                if latency_fits { 0 } else { latency },
            );
        }
    }

    /// Adds a window's persisted data (a window of the same shape) to this
    /// one's totals, as if its records had been made here: buckets still
    /// inside this window go to their slots, older ones and the lifetime
    /// totals to the lifetime totals. Histograms and the EWMA are not
    /// carried: rollups keep totals only. Meant for building a rollup while
    /// nothing records into it (a restore at start-up): a concurrent record
    /// is kept, but may land in the lifetime totals instead of the window.
    pub fn absorb_totals(&self, state: &WindowState) {
        if state.epoch > self.epoch.load(Ordering::Acquire) {
            self.advance(state.epoch);
        }
        let current = self.epoch.load(Ordering::Acquire);
        let horizon = self.slots.len() as u64;
        let mut expired = state.retired;
        for epoch in state.epoch.saturating_sub(horizon - 1)..=state.epoch {
            let index = (epoch % self.divisors.buckets) as usize;
            let Some(&(counts, latency)) = state.slots.get(index) else {
                continue;
            };
            match self.slot(epoch) {
                Some(slot) if epoch + horizon > current && epoch <= current => {
                    self.admit(slot, counts, latency);
                }
                _ => expired.add_words(counts, latency),
            }
        }
        self.add_to(&self.retired, &expired);
    }

    /// Empties the window (slots, totals, histograms, EWMA) with `now_ms` as
    /// its current time. Not atomic with concurrent records: for rebuilding a
    /// rollup while nothing records into it.
    pub fn clear(&self, now_ms: u64) {
        let epoch = now_ms / self.divisors.bucket_ms;
        self.epoch.store(epoch, Ordering::Release);
        for slot in self.slots.iter() {
            slot.counts.store(0, Ordering::Relaxed);
            slot.latency.store(0, Ordering::Relaxed);
        }
        for slice in self.slices.iter() {
            slice.tag.store(0, Ordering::Relaxed);
            for bin in slice.bins.iter() {
                bin.store(0, Ordering::Relaxed);
            }
        }
        self.live_counts.store(0, Ordering::Relaxed);
        self.live_latency.store(0, Ordering::Relaxed);
        for word in &self.retired {
            word.store(0, Ordering::Relaxed);
        }
        self.ewma_bits.store(f64::NAN.to_bits(), Ordering::Relaxed);
        self.tag_slice(epoch / self.divisors.buckets_per_slice);
    }

    fn retired_add(&self, counts: u64, latency: u64) {
        let mut totals = Totals::default();
        totals.add_words(counts, latency);
        self.add_to(&self.retired, &totals);
    }

    fn add_to(&self, target: &[AtomicU64; 4], totals: &Totals) {
        let [requests, successes, latency_requests, latency_units] = target;
        requests.fetch_add(totals.requests, Ordering::Relaxed);
        successes.fetch_add(totals.successes, Ordering::Relaxed);
        latency_requests.fetch_add(totals.latency_requests, Ordering::Relaxed);
        latency_units.fetch_add(totals.latency_units, Ordering::Relaxed);
    }

    fn load_totals(words: &[AtomicU64; 4]) -> Totals {
        let [requests, successes, latency_requests, latency_units] = words;
        Totals {
            requests: requests.load(Ordering::Relaxed),
            successes: successes.load(Ordering::Relaxed),
            latency_requests: latency_requests.load(Ordering::Relaxed),
            latency_units: latency_units.load(Ordering::Relaxed),
        }
    }

    fn update_ewma(&self, latency_ms: f64) {
        let alpha = self.config.ewma_alpha;
        let mut old = self.ewma_bits.load(Ordering::Relaxed);
        loop {
            let previous = f64::from_bits(old);
            let next = if previous.is_nan() {
                latency_ms
            } else {
                previous + alpha * (latency_ms - previous)
            };
            match self.ewma_bits.compare_exchange_weak(
                old,
                next.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => old = actual,
            }
        }
    }

    /// Moves the window so that `now` is its current epoch, if no other
    /// thread is doing so already (then this returns at once).
    pub fn advance(&self, now: u64) {
        // Acquire: see the slots as the previous rotator left them.
        if self
            .rotating
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let current = self.epoch.load(Ordering::Relaxed);
        if now > current {
            // Odd version: readers know slots are being rewritten.
            self.version.fetch_add(1, Ordering::AcqRel);
            let horizon = self.slots.len() as u64;
            let first = (current + 1).max(now.saturating_sub(horizon - 1));
            for epoch in first..=now {
                if let Some(slot) = self.slot(epoch) {
                    // Swap, not store: a late writer's add lands either in
                    // what we retire or in the fresh slot, never nowhere.
                    let latency = slot.latency.swap(0, Ordering::AcqRel);
                    let counts = slot.counts.swap(0, Ordering::AcqRel);
                    self.live_latency.fetch_sub(latency, Ordering::Relaxed);
                    self.live_counts.fetch_sub(counts, Ordering::Relaxed);
                    self.retired_add(counts, latency);
                }
            }
            let per_slice = self.config.buckets_per_slice();
            let slices = self.slices.len() as u64;
            let first_slice =
                (current / per_slice + 1).max((now / per_slice).saturating_sub(slices - 1));
            for slice_epoch in first_slice..=now / per_slice {
                if let Some(slice) = self.slice(slice_epoch) {
                    for bin in slice.bins.iter() {
                        bin.store(0, Ordering::Relaxed);
                    }
                    slice.tag.store(slice_epoch + 1, Ordering::Relaxed);
                }
            }
            // Release: writers that Acquire-load the new epoch see the resets.
            self.epoch.store(now, Ordering::Release);
            self.version.fetch_add(1, Ordering::Release);
        }
        self.rotating.store(false, Ordering::Release);
    }

    /// Window totals for a decision at `now_ms`: two words, O(1). Under
    /// concurrent writes the counts and latency words may be a record apart.
    #[inline(always)]
    pub fn live_totals(&self, now_ms: u64) -> Totals {
        let now = now_ms / self.divisors.bucket_ms;
        if now > self.epoch.load(Ordering::Acquire) {
            self.advance(now);
        }
        let mut totals = Totals::default();
        totals.add_words(
            self.live_counts.load(Ordering::Relaxed),
            self.live_latency.load(Ordering::Relaxed),
        );
        totals
    }

    /// The window's non-empty buckets as (epoch, totals) and histogram
    /// slices as (slice epoch, sparse bins) at `now_ms`, for sharing with
    /// other instances (see [`crate::shared`]). Each bucket's words are read
    /// whole; a bucket still being written is read as it stands.
    #[allow(clippy::type_complexity)]
    pub fn export(&self, now_ms: u64) -> (Vec<(u64, Totals)>, Vec<(u64, Vec<(u32, u32)>)>) {
        let now = now_ms / self.divisors.bucket_ms;
        if now > self.epoch.load(Ordering::Acquire) {
            self.advance(now);
        }
        let current = self.epoch.load(Ordering::Acquire);
        let horizon = self.slots.len() as u64;
        let oldest = now.saturating_sub(horizon - 1);
        let mut buckets = Vec::new();
        for epoch in oldest.max(current.saturating_sub(horizon - 1))..=current {
            if let Some(slot) = self.slot(epoch) {
                let mut totals = Totals::default();
                totals.add_words(
                    slot.counts.load(Ordering::Acquire),
                    slot.latency.load(Ordering::Acquire),
                );
                if totals.requests > 0 {
                    buckets.push((epoch, totals));
                }
            }
        }
        let per_slice = self.config.buckets_per_slice();
        let newest_slice = now / per_slice;
        let oldest_slice = newest_slice.saturating_sub(self.slices.len() as u64 - 1);
        let mut slices = Vec::new();
        for slice in self.slices.iter() {
            let tag = slice.tag.load(Ordering::Relaxed);
            if tag == 0 || tag - 1 < oldest_slice || tag - 1 > newest_slice {
                continue;
            }
            let bins: Vec<(u32, u32)> = slice
                .bins
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    let count = b.load(Ordering::Relaxed);
                    (count > 0).then_some((i as u32, count))
                })
                .collect();
            if !bins.is_empty() {
                slices.push((tag - 1, bins));
            }
        }
        (buckets, slices)
    }

    /// Bins of this window's latency histogram.
    pub fn histogram_len(&self) -> usize {
        self.bins.len()
    }

    /// Histogram slices covering the window.
    pub fn histogram_slices(&self) -> u64 {
        self.slices.len() as u64
    }

    /// The bucket epoch of `now_ms`, and of the oldest bucket still in the window.
    pub fn epochs(&self, now_ms: u64) -> (u64, u64) {
        let now = now_ms / self.divisors.bucket_ms;
        (now, now.saturating_sub(self.slots.len() as u64 - 1))
    }

    /// The slice epoch of `now_ms`, and of the oldest slice still in the window.
    pub fn slice_epochs(&self, now_ms: u64) -> (u64, u64) {
        let newest = now_ms / self.divisors.bucket_ms / self.config.buckets_per_slice();
        (newest, newest.saturating_sub(self.slices.len() as u64 - 1))
    }

    /// A consistent read of the window at `now_ms`, without blocking writers:
    /// each slot's words are whole records, and a read torn by a rotation is
    /// retried.
    pub fn snapshot(&self, now_ms: u64) -> WindowSnapshot {
        let now = now_ms / self.divisors.bucket_ms;
        if now > self.epoch.load(Ordering::Acquire) {
            self.advance(now);
        }
        let mut last = None;
        for _ in 0..SNAPSHOT_RETRIES {
            let before = self.version.load(Ordering::Acquire);
            if before % 2 == 1 {
                spin_hint();
                continue;
            }
            let read = self.read_once(now);
            if self.version.load(Ordering::Acquire) == before {
                return read;
            }
            last = Some(read);
            spin_hint();
        }
        let mut read = last.unwrap_or_else(|| self.read_once(now));
        read.consistent = false;
        read
    }

    fn read_once(&self, now: u64) -> WindowSnapshot {
        let current = self.epoch.load(Ordering::Acquire);
        let horizon = self.slots.len() as u64;
        // Epochs in the window relative to `now`, capped at what is initialised.
        let oldest = now.saturating_sub(horizon - 1);
        let mut window = Totals::default();
        let mut lifetime = Self::load_totals(&self.retired);
        for epoch in current.saturating_sub(horizon - 1)..=current {
            if let Some(slot) = self.slot(epoch) {
                let counts = slot.counts.load(Ordering::Relaxed);
                let latency = slot.latency.load(Ordering::Relaxed);
                lifetime.add_words(counts, latency);
                if epoch >= oldest {
                    window.add_words(counts, latency);
                }
            }
        }
        let per_slice = self.config.buckets_per_slice();
        let slices = self.slices.len() as u64;
        let newest_slice = now / per_slice;
        let oldest_slice = newest_slice.saturating_sub(slices - 1);
        let mut histogram = vec![0_u64; self.bins.len()];
        for slice in self.slices.iter() {
            let tag = slice.tag.load(Ordering::Relaxed);
            if tag == 0 || tag - 1 < oldest_slice || tag - 1 > newest_slice {
                continue;
            }
            for (total, bin) in histogram.iter_mut().zip(slice.bins.iter()) {
                *total += u64::from(bin.load(Ordering::Relaxed));
            }
        }
        let ewma = f64::from_bits(self.ewma_bits.load(Ordering::Relaxed));
        WindowSnapshot {
            window,
            lifetime,
            histogram,
            ewma_latency_ms: (!ewma.is_nan()).then_some(ewma),
            consistent: true,
        }
    }

    /// The raw state, for persistence. Taken like a snapshot: retried while
    /// a rotation tears it.
    pub fn state(&self) -> WindowState {
        let mut state = self.read_state();
        for _ in 0..SNAPSHOT_RETRIES {
            let before = self.version.load(Ordering::Acquire);
            if before % 2 == 1 {
                spin_hint();
                continue;
            }
            state = self.read_state();
            if self.version.load(Ordering::Acquire) == before {
                break;
            }
        }
        state
    }

    fn read_state(&self) -> WindowState {
        WindowState {
            epoch: self.epoch.load(Ordering::Acquire),
            slots: self
                .slots
                .iter()
                .map(|slot| {
                    (
                        slot.counts.load(Ordering::Relaxed),
                        slot.latency.load(Ordering::Relaxed),
                    )
                })
                .collect(),
            slices: self
                .slices
                .iter()
                .map(|slice| {
                    let bins = slice
                        .bins
                        .iter()
                        .enumerate()
                        .filter_map(|(index, bin)| {
                            let count = bin.load(Ordering::Relaxed);
                            (count > 0).then_some((index as u32, count))
                        })
                        .collect();
                    (slice.tag.load(Ordering::Relaxed), bins)
                })
                .collect(),
            retired: Self::load_totals(&self.retired),
            ewma_bits: self.ewma_bits.load(Ordering::Relaxed),
        }
    }

    /// A window holding a persisted state; the shapes must match.
    pub fn from_state(
        config: WindowConfig,
        bins: LatencyBins,
        state: &WindowState,
    ) -> Result<Self, ZetaError> {
        if state.slots.len() != config.buckets || state.slices.len() != config.histogram_slices {
            return Err(ZetaError::Snapshot {
                reason: format!(
                    "window shape differs: snapshot has {} buckets and {} histogram slices, \
                     this tracker {} and {}",
                    state.slots.len(),
                    state.slices.len(),
                    config.buckets,
                    config.histogram_slices
                ),
            });
        }
        let window = Self::new(config, bins, state.epoch.saturating_mul(config.bucket_ms));
        window.epoch.store(state.epoch, Ordering::Relaxed);
        for (slot, &(counts, latency)) in window.slots.iter().zip(&state.slots) {
            slot.counts.store(counts, Ordering::Relaxed);
            slot.latency.store(latency, Ordering::Relaxed);
        }
        for (slice, (tag, bins)) in window.slices.iter().zip(&state.slices) {
            slice.tag.store(*tag, Ordering::Relaxed);
            for &(index, count) in bins {
                let bin = slice
                    .bins
                    .get(index as usize)
                    .ok_or_else(|| ZetaError::Snapshot {
                        reason: format!("histogram bin {index} out of range"),
                    })?;
                bin.store(count, Ordering::Relaxed);
            }
        }
        window.add_to(&window.retired, &state.retired);
        window.ewma_bits.store(state.ewma_bits, Ordering::Relaxed);
        // The live totals: every slot in the window at the restored epoch,
        // newest first, each word admitted like a record. A word that finds
        // no room (a snapshot of a build whose sums could wrap) moves to the
        // lifetime totals, so the window keeps its newest data and no mean
        // is misread.
        let horizon = config.buckets as u64;
        for epoch in (state.epoch.saturating_sub(horizon - 1)..=state.epoch).rev() {
            if let Some(slot) = window.slot(epoch) {
                let counts = slot.counts.load(Ordering::Relaxed);
                let latency = slot.latency.load(Ordering::Relaxed);
                let counts_fit = reserve(&window.live_counts, counts, counts_fit);
                let latency_fits = reserve(&window.live_latency, latency, latency_fits);
                if !counts_fit {
                    slot.counts.store(0, Ordering::Relaxed);
                }
                if !latency_fits {
                    slot.latency.store(0, Ordering::Relaxed);
                }
                if !(counts_fit && latency_fits) {
                    window.retired_add(
                        if counts_fit { 0 } else { counts },
                        if latency_fits { 0 } else { latency },
                    );
                }
            }
        }
        Ok(window)
    }

    /// The bins of this window's histograms.
    pub fn bins(&self) -> &LatencyBins {
        &self.bins
    }

    /// The configuration of this window.
    pub fn config(&self) -> &WindowConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(now_ms: u64) -> KeyWindow {
        let config = WindowConfig::default();
        KeyWindow::new(config, config.validate().unwrap(), now_ms)
    }

    #[test]
    fn records_are_counted_in_window_and_lifetime() {
        let w = window(1_000_000);
        w.record(1_000_000, true, 100.0);
        w.record(1_000_100, false, 300.0);
        let s = w.snapshot(1_000_200);
        assert_eq!(s.window.requests, 2);
        assert_eq!(s.window.successes, 1);
        assert_eq!(s.window.mean_latency_ms(), Some(200.0));
        assert_eq!(s.lifetime, s.window);
        assert!(s.consistent);
        assert_eq!(s.histogram.iter().sum::<u64>(), 2);
    }

    #[test]
    fn export_sums_to_the_window_and_forgets_what_left_it() {
        let start = 10_000_000;
        let w = window(start);
        w.record(start, true, 100.0);
        w.record(start + 5_000, false, 300.0);
        w.record(start + 5_001, true, 50.0);
        let (buckets, slices) = w.export(start + 6_000);
        let epochs: Vec<u64> = buckets.iter().map(|(e, _)| *e).collect();
        assert_eq!(epochs, vec![start / 5_000, start / 5_000 + 1]);
        let mut total = Totals::default();
        for (_, t) in &buckets {
            total.merge(t);
        }
        assert_eq!(total, w.snapshot(start + 6_000).window);
        let binned: u32 = slices
            .iter()
            .flat_map(|(_, b)| b.iter().map(|(_, c)| c))
            .sum();
        assert_eq!(binned, 3);
        // The first bucket leaves the window first.
        let (later, _) = w.export(start + 300_000);
        assert_eq!(later.len(), 1);
        assert_eq!(later.first().map(|(_, t)| t.requests), Some(2));
        assert!(w.export(start + 310_000).0.is_empty());
    }

    #[test]
    fn window_forgets_samples_older_than_horizon() {
        let start = 10_000_000;
        let w = window(start);
        w.record(start, false, 900.0);
        // Just inside the horizon (300 s): still there.
        let inside = w.snapshot(start + 299_000);
        assert_eq!(inside.window.requests, 1);
        // One bucket later it has expired from the window, not from lifetime.
        let after = w.snapshot(start + 300_000);
        assert_eq!(after.window.requests, 0);
        assert_eq!(after.lifetime.requests, 1);
        assert_eq!(after.histogram.iter().sum::<u64>(), 0);
    }

    #[test]
    fn live_totals_match_snapshot() {
        let start = 5_000_000;
        let w = window(start);
        for i in 0..1000_u64 {
            w.record(start + i * 400, i % 3 != 0, (i % 50) as f64);
        }
        let now = start + 400_000;
        assert_eq!(w.live_totals(now), w.snapshot(now).window);
    }

    #[test]
    fn late_and_ancient_samples_are_never_lost() {
        let start = 100_000_000;
        let w = window(start);
        w.record(start, true, 1.0);
        // From a clock 10 s behind: its own slot, still in the window.
        w.record(start - 10_000, true, 1.0);
        // From an hour ago: lifetime only.
        w.record(start - 3_600_000, true, 1.0);
        let s = w.snapshot(start);
        assert_eq!(s.window.requests, 2);
        assert_eq!(s.lifetime.requests, 3);
    }

    #[test]
    fn percentiles_come_from_the_window_histogram() {
        let start = 0;
        let w = window(start);
        for i in 1..=1000_u64 {
            w.record(start, true, i as f64);
        }
        let s = w.snapshot(start);
        let p99 = w.bins().quantile(&s.histogram, 0.99).unwrap();
        assert!((p99 - 990.0).abs() / 990.0 <= 0.02, "{p99}");
    }

    #[test]
    fn ewma_tracks_recent_latency() {
        let w = window(0);
        w.record(0, true, 100.0);
        assert_eq!(w.snapshot(0).ewma_latency_ms, Some(100.0));
        w.record(0, true, 200.0);
        assert!((w.snapshot(0).ewma_latency_ms.unwrap() - 110.0).abs() < 1e-9);
    }

    #[test]
    fn state_round_trips() {
        let start = 77_000_000;
        let w = window(start);
        for i in 0..500_u64 {
            w.record(start + i * 700, i % 4 != 0, i as f64);
        }
        let state = w.state();
        let config = WindowConfig::default();
        let restored = KeyWindow::from_state(config, config.validate().unwrap(), &state).unwrap();
        let now = start + 500 * 700;
        assert_eq!(restored.snapshot(now), w.snapshot(now));
        assert_eq!(restored.live_totals(now), w.live_totals(now));
    }

    /// Mean latency of the window, of the decision's live totals and of
    /// the lifetime, at `now_ms`.
    fn means(w: &KeyWindow, now_ms: u64) -> [Option<f64>; 3] {
        let s = w.snapshot(now_ms);
        [
            s.window.mean_latency_ms(),
            w.live_totals(now_ms).mean_latency_ms(),
            s.lifetime.mean_latency_ms(),
        ]
    }

    fn assert_means(w: &KeyWindow, now_ms: u64, expected_ms: f64) {
        for mean in means(w, now_ms) {
            let mean = mean.unwrap();
            assert!(
                (mean - expected_ms).abs() <= expected_ms * 1e-12,
                "{mean} ms, expected {expected_ms}: {:?}",
                means(w, now_ms)
            );
        }
    }

    #[test]
    fn ten_records_of_two_to_the_forty_units_read_the_histogram_max() {
        // 10,995,116,277.76 ms is 2^40 units: the packed sum used to wrap to 0.
        let w = window(0);
        for _ in 0..10 {
            w.record(0, true, 10_995_116_277.76);
        }
        assert_means(&w, 0, 300_000.0);
        assert_eq!(w.snapshot(0).window.requests, 10);
    }

    #[test]
    fn forty_thousand_timeouts_in_one_bucket_read_their_mean() {
        // 40,000 x 300,000 ms is 1.2e12 units, past the 40-bit sum (used to read 25,121 ms).
        let w = window(0);
        for _ in 0..40_000 {
            w.record(0, false, 300_000.0);
        }
        assert_means(&w, 0, 300_000.0);
        let s = w.snapshot(0);
        assert_eq!((s.window.requests, s.lifetime.requests), (40_000, 40_000));
        assert_eq!(s.lifetime.latency_requests, 40_000);
    }

    #[test]
    fn more_records_than_the_latency_count_holds_read_their_mean() {
        // 2^24 + 10 records: the 24-bit count used to wrap to 10 (read 1,677,722 ms).
        let w = window(0);
        let n = (1_u64 << 24) + 10;
        for _ in 0..n {
            w.record(0, true, 1.0);
        }
        assert_means(&w, 0, 1.0);
        let s = w.snapshot(0);
        assert_eq!((s.window.requests, s.lifetime.latency_requests), (n, n));
    }

    #[test]
    fn a_histogram_top_past_the_latency_word_is_refused() {
        let bad = WindowConfig {
            latency_max_ms: 2e10,
            ..Default::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.starts_with("latency_max_ms") && err.contains("20000000000"),
            "{err}"
        );
        let top = WindowConfig {
            latency_max_ms: LATENCY_MAX_MS_LIMIT,
            ..Default::default()
        };
        let w = KeyWindow::new(top, top.validate().unwrap(), 0);
        w.record(0, true, f64::MAX);
        assert_eq!(w.snapshot(0).window.latency_units, LATENCY_MASK);
    }

    const NOW_EPOCH: u64 = 1_000;
    const NOW_MS: u64 = NOW_EPOCH * 5_000;

    /// A default window at `NOW_MS` restored with these `(counts, latency)`
    /// words in its newest slots (newest first).
    fn restored(newest_first: &[(u64, u64)]) -> KeyWindow {
        let config = WindowConfig::default();
        let bins = config.validate().unwrap();
        let mut state = KeyWindow::new(config, bins, NOW_MS).state();
        for (age, words) in newest_first.iter().enumerate() {
            let ring = ((NOW_EPOCH - age as u64) % config.buckets as u64) as usize;
            state.slots[ring] = *words;
        }
        KeyWindow::from_state(config, bins, &state).unwrap()
    }

    fn units_of(latency_ms: f64) -> u64 {
        (latency_ms.min(300_000.0) / LATENCY_UNIT_MS).round() as u64
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// From a latency word a few records or units short of full, records
        /// are taken while they fit and go to the lifetime only after: the
        /// window's sum and count are exactly those of the records it holds.
        #[test]
        fn the_latency_word_stops_at_its_limits_and_never_wraps(
            room_requests in 0_u64..4,
            room_units in proptest::prop_oneof![0_u64..4, 0_u64..100_000_000],
            records in proptest::collection::vec(
                (proptest::bool::ANY, 0.0_f64..700_000.0), 0..40),
        ) {
            let requests0 = LATENCY_REQUESTS_MAX - room_requests;
            let units0 = LATENCY_MASK - room_units;
            let w = restored(&[(requests0, requests0 << LATENCY_BITS | units0)]);
            let (mut held_requests, mut held_units) = (requests0, units0);
            let mut all_units = units0;
            for &(success, latency_ms) in &records {
                w.record(NOW_MS, success, latency_ms);
                let units = units_of(latency_ms);
                all_units += units;
                if held_requests < LATENCY_REQUESTS_MAX && held_units + units <= LATENCY_MASK {
                    held_requests += 1;
                    held_units += units;
                }
            }
            let n = records.len() as u64;
            let s = w.snapshot(NOW_MS);
            proptest::prop_assert_eq!(s.window.requests, requests0 + n);
            proptest::prop_assert_eq!(
                (s.window.latency_requests, s.window.latency_units),
                (held_requests, held_units)
            );
            proptest::prop_assert_eq!(
                (s.lifetime.latency_requests, s.lifetime.latency_units),
                (requests0 + n, all_units)
            );
            proptest::prop_assert_eq!(w.live_totals(NOW_MS), s.window);
            // Expiry subtracts exactly what was added: nothing borrows.
            let later = NOW_MS + 300_000;
            let gone = w.snapshot(later);
            proptest::prop_assert_eq!(gone.window, Totals::default());
            proptest::prop_assert_eq!(w.live_totals(later), Totals::default());
            proptest::prop_assert_eq!(gone.lifetime, s.lifetime);
        }

        /// The same for the counts word: requests stop at 2^32 - 1 in the
        /// window and never carry into the successes.
        #[test]
        fn the_counts_word_stops_at_its_limit_and_never_carries(
            room in 0_u64..4,
            success_share in 0.0_f64..=1.0,
            records in proptest::collection::vec(proptest::bool::ANY, 0..20),
        ) {
            let requests0 = REQUEST_MASK - room;
            let successes0 = (requests0 as f64 * success_share) as u64;
            let w = restored(&[(successes0 << 32 | requests0, 0)]);
            let (mut requests, mut successes) = (requests0, successes0);
            for &success in &records {
                w.record(NOW_MS, success, 1.0);
                if requests < REQUEST_MASK {
                    requests += 1;
                    successes += u64::from(success);
                }
            }
            let s = w.snapshot(NOW_MS);
            proptest::prop_assert_eq!((s.window.requests, s.window.successes), (requests, successes));
            let all_successes = successes0 + records.iter().filter(|s| **s).count() as u64;
            proptest::prop_assert_eq!(
                (s.lifetime.requests, s.lifetime.successes),
                (requests0 + records.len() as u64, all_successes)
            );
            proptest::prop_assert_eq!(w.live_totals(NOW_MS), s.window);
        }

        /// A snapshot whose buckets sum past the live words (as an older
        /// build's could) loads with the newest buckets in the window, the
        /// rest in the lifetime, and every mean one of the data it holds.
        #[test]
        fn restored_buckets_never_sum_past_the_live_words(
            slots in proptest::collection::vec(
                (1_u64..=LATENCY_REQUESTS_MAX, 0_u64..=LATENCY_MASK), 60),
        ) {
            let words: Vec<(u64, u64)> = slots
                .iter()
                .map(|&(requests, units)| (requests, requests << LATENCY_BITS | units))
                .collect();
            let w = restored(&words);
            let s = w.snapshot(NOW_MS);
            proptest::prop_assert_eq!(w.live_totals(NOW_MS), s.window);
            proptest::prop_assert!(s.window.latency_requests <= LATENCY_REQUESTS_MAX);
            proptest::prop_assert!(s.window.latency_units <= LATENCY_MASK);
            let requests: u64 = slots.iter().map(|s| s.0).sum();
            let units: u64 = slots.iter().map(|s| s.1).sum();
            proptest::prop_assert_eq!(
                (s.lifetime.requests, s.lifetime.latency_requests, s.lifetime.latency_units),
                (requests, requests, units)
            );
            // The newest bucket always fits an empty window.
            proptest::prop_assert!(s.window.latency_requests >= slots[0].0);
            let mean = s.window.latency_units as f64 / s.window.latency_requests as f64;
            let per_slot = slots.iter().map(|&(r, u)| u as f64 / r as f64);
            let lowest = per_slot.clone().fold(f64::INFINITY, f64::min);
            let highest = per_slot.fold(0.0, f64::max);
            proptest::prop_assert!(
                lowest * (1.0 - 1e-12) <= mean && mean <= highest * (1.0 + 1e-12),
                "{} not in [{}, {}]", mean, lowest, highest
            );
        }
    }

    #[test]
    fn memory_per_key_is_under_8_kib() {
        let w = window(0);
        assert!(w.memory_bytes() <= 8 * 1024, "{} bytes", w.memory_bytes());
    }

    #[test]
    fn config_validation_names_fields() {
        let bad = WindowConfig {
            histogram_slices: 7,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("histogram_slices"));
        let bad = WindowConfig {
            bucket_ms: 0,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("bucket_ms"));
        let bad = WindowConfig {
            ewma_alpha: 0.0,
            ..Default::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("ewma_alpha"));
    }
}
