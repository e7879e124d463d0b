//! The learned router's model: which model succeeds on which request.
//!
//! Features are local (no model download, no external API): the profiler's
//! hashed word unigrams and bigrams, hashed character 4-grams (numbers,
//! formulas and option patterns that words miss), hashed categories and a
//! bias. For every model a logistic regression over them, trained by
//! stochastic gradient descent, so the same code learns offline from a
//! table (`zeta-fast eval routing`, `zeta-fast learn`) and online from each
//! recorded outcome; beside it a smoothed success rate per category.
//!
//! Concurrency: predictions read the weights with relaxed atomic loads while
//! updates write them with relaxed stores (Hogwild!, Niu et al. 2011; the
//! invariants and their loom model: `hogwild`): two updates touching the
//! same weight at the same instant may overwrite one another's step, which
//! sparse SGD tolerates by design, and no reader ever sees a torn or
//! non-finite value. Counts (outcomes per model and category, updates) are
//! atomic increments and exact.
//!
//! Size: ~760 lines of code (features, the online logistic model, its priors and the latency model
//! share one weight layout; the lock-free step and reads are `hogwild`) and ~170 of tests.

use serde::{Deserialize, Serialize};

use crate::errors::{float_repr, Position, ZetaError};
use crate::hogwild::{self, Row};
use crate::persistence::{self, FileKind};
use crate::profile::FEATURE_BITS;
use crate::sync::{AtomicU64, Ordering};

/// Hashed word n-grams: the profiler's own buckets.
pub const WORD_DIM: usize = 1 << FEATURE_BITS;
/// Hashed character 4-grams.
pub const CHAR_DIM: usize = 1 << CHAR_BITS;
const CHAR_BITS: u32 = 16;
/// Hashed categories (a subject, a task type and complexity band).
pub const CATEGORY_DIM: usize = 1 << 10;
/// Length of a feature vector: words, characters, categories, then a bias.
pub const FEATURE_DIM: usize = WORD_DIM + CHAR_DIM + CATEGORY_DIM + 1;
const CHAR_GRAM: usize = 4;

/// A sparse feature vector of [`FEATURE_DIM`]. Word indices repeat as often
/// as the word occurs (counts), the other blocks are sets.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SparseFeatures {
    pub indices: Vec<u32>,
    pub values: Vec<f64>,
}

/// The features of `text` with its `categories`.
pub fn features(text: &str, categories: &[&str]) -> SparseFeatures {
    features_with_words(crate::profile::feature_buckets(text).0, text, categories)
}

/// [`features`] when the profiler's buckets of `text` (`words`) are known.
pub fn features_with_words(words: Vec<u32>, text: &str, categories: &[&str]) -> SparseFeatures {
    let word_scale = 1.0 / (words.len().max(1) as f32).sqrt();
    let chars = char_grams(text);
    let mut cats: Vec<u32> = categories
        .iter()
        .map(|c| crc32fast::hash(c.as_bytes()) % CATEGORY_DIM as u32)
        .collect();
    // (`category_index` is these plus the block's offset.)
    cats.sort_unstable();
    cats.dedup();
    let total = words.len() + chars.len() + cats.len() + 1;
    let mut indices = Vec::with_capacity(total);
    let mut values = Vec::with_capacity(total);
    indices.extend(&words);
    values.extend(std::iter::repeat_n(f64::from(word_scale), words.len()));
    let char_scale = 1.0 / (chars.len().max(1) as f64).sqrt();
    indices.extend(chars.iter().map(|c| c + WORD_DIM as u32));
    values.extend(std::iter::repeat_n(char_scale, chars.len()));
    indices.extend(cats.iter().map(|c| c + (WORD_DIM + CHAR_DIM) as u32));
    values.extend(std::iter::repeat_n(1.0, cats.len()));
    indices.push((FEATURE_DIM - 1) as u32);
    values.push(1.0);
    SparseFeatures { indices, values }
}

/// The feature index of a category (in the category block).
pub fn category_index(category: &str) -> u32 {
    crc32fast::hash(category.as_bytes()) % CATEGORY_DIM as u32 + (WORD_DIM + CHAR_DIM) as u32
}

/// The distinct hashed character 4-grams of the lowercased text, in order
/// of first occurrence. One pass, no allocation but the result: ASCII text
/// (the common case) is read byte by byte, and a bit set kept per thread
/// (cleared bit by bit afterwards) tells repeats apart.
fn char_grams(text: &str) -> Vec<u32> {
    thread_local! {
        static SEEN: std::cell::RefCell<Vec<u64>> =
            std::cell::RefCell::new(vec![0; CHAR_DIM / 64]);
    }
    let mut out = Vec::with_capacity(text.len().min(4096));
    SEEN.with(|seen| {
        let mut seen = seen.borrow_mut();
        // The last four chars, 16 bits each, in one register: exact for the
        // Basic Multilingual Plane, chars beyond it folded into 16 bits.
        let mut key = 0_u64;
        let mut filled = 0;
        let mut push = |c: u32, seen: &mut Vec<u64>| {
            let folded = (c ^ (c >> 16).wrapping_mul(0x9e37)) & 0xffff;
            key = (key << 16) | u64::from(folded);
            filled += 1;
            if filled < CHAR_GRAM {
                return;
            }
            // Fibonacci hashing: the top bits of the product mix every char.
            let index = (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - CHAR_BITS)) as u32;
            if let Some(word) = seen.get_mut(index as usize / 64) {
                let bit = 1_u64 << (index % 64);
                if *word & bit == 0 {
                    *word |= bit;
                    out.push(index);
                }
            }
        };
        if text.is_ascii() {
            for byte in text.bytes() {
                push(u32::from(byte.to_ascii_lowercase()), &mut seen);
            }
        } else {
            for c in text.chars().flat_map(char::to_lowercase) {
                push(u32::from(c), &mut seen);
            }
        }
        for index in &out {
            if let Some(word) = seen.get_mut(*index as usize / 64) {
                *word = 0;
            }
        }
    });
    out
}

/// The first four bytes of [`encode_indices`]' output: as a little-endian
/// u32 they are past [`FEATURE_DIM`], so no list of the first format (plain
/// little-endian u32 indices, each below it) starts with them.
const PACKED_MAGIC: [u8; 4] = [0x7a, 0x66, 0x02, 0xff];

/// A feature vector's indices as an outcome log keeps them: sorted (the
/// values follow from the indices, so their order only changes how sums
/// round), as LEB128 gaps after [`PACKED_MAGIC`]. A 1 KB prompt's ~1,100
/// indices take ~1.4 KB instead of 4.4 KB as plain u32s: most gaps between
/// its character 4-grams fit one byte. `sorted` is scratch space.
pub fn encode_indices(indices: &[u32], sorted: &mut Vec<u32>, out: &mut Vec<u8>) {
    sorted.clear();
    sorted.extend_from_slice(indices);
    sorted.sort_unstable();
    out.clear();
    out.extend_from_slice(&PACKED_MAGIC);
    let mut previous = 0_u32;
    for &index in sorted.iter() {
        let mut gap = index - previous;
        previous = index;
        while gap >= 0x80 {
            out.push((gap as u8 & 0x7f) | 0x80);
            gap >>= 7;
        }
        out.push(gap as u8);
    }
}

/// The indices of [`encode_indices`]' output, or of the first format (plain
/// little-endian u32s); each must be below [`FEATURE_DIM`].
pub fn decode_indices(data: &[u8]) -> Result<Vec<u32>, ZetaError> {
    let bad = |expected: &'static str, value: String| ZetaError::InvalidInput {
        field: "features",
        position: Position::Scalar,
        expected,
        value,
    };
    let indices: Vec<u32> = match data.strip_prefix(&PACKED_MAGIC) {
        Some(packed) => {
            let mut indices = Vec::with_capacity(packed.len());
            let (mut previous, mut gap, mut shift) = (0_u64, 0_u64, 0_u32);
            for &byte in packed {
                if shift > 28 {
                    return Err(bad(
                        "LEB128 gaps of at most 5 bytes",
                        format!("{} bytes", packed.len()),
                    ));
                }
                gap |= u64::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    previous += gap;
                    let index = u32::try_from(previous).unwrap_or(u32::MAX);
                    indices.push(index);
                    (gap, shift) = (0, 0);
                }
            }
            if shift != 0 {
                return Err(bad(
                    "whole LEB128 gaps",
                    "a gap cut short at the end".to_owned(),
                ));
            }
            indices
        }
        None => {
            if data.len() % 4 != 0 {
                return Err(bad(
                    "a multiple of 4 bytes",
                    format!("{} bytes", data.len()),
                ));
            }
            data.chunks_exact(4)
                .filter_map(|c| <[u8; 4]>::try_from(c).ok().map(u32::from_le_bytes))
                .collect()
        }
    };
    if let Some((position, bad_index)) = indices
        .iter()
        .enumerate()
        .find(|(_, &i)| i as usize >= FEATURE_DIM)
    {
        return Err(ZetaError::InvalidInput {
            field: "features",
            position: Position::Flat(position),
            expected: "a feature index below FEATURE_DIM",
            value: format!("{bad_index} (FEATURE_DIM = {FEATURE_DIM})"),
        });
    }
    Ok(indices)
}

/// Rebuilds the features whose indices are `indices` (as [`features`] made
/// them: word buckets, then character and category sets, then the bias):
/// the values follow from the block sizes, so an outcome log keeps indices only.
pub fn features_from_indices(indices: Vec<u32>) -> SparseFeatures {
    let block = |i: u32| match i as usize {
        i if i < WORD_DIM => 0,
        i if i < WORD_DIM + CHAR_DIM => 1,
        _ => 2,
    };
    let words = indices.iter().filter(|&&i| block(i) == 0).count();
    let chars = indices.iter().filter(|&&i| block(i) == 1).count();
    let word_scale = f64::from(1.0 / (words.max(1) as f32).sqrt());
    let char_scale = 1.0 / (chars.max(1) as f64).sqrt();
    let values = indices
        .iter()
        .map(|&i| match block(i) {
            0 => word_scale,
            1 => char_scale,
            _ => 1.0,
        })
        .collect();
    SparseFeatures { indices, values }
}

/// How the predictor learns and blends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PredictorParams {
    /// The SGD step.
    pub learning_rate: f64,
    /// Weight decay applied to the touched weights.
    pub l2: f64,
    /// How much the category prior adds to the utility.
    pub prior_weight: f64,
    /// `k`, the pseudo-count pulling a category to the model's overall rate.
    pub prior_strength: f64,
}

impl Default for PredictorParams {
    fn default() -> Self {
        Self {
            learning_rate: 0.3,
            l2: 1e-5,
            prior_weight: 2.0,
            prior_strength: 40.0,
        }
    }
}

impl PredictorParams {
    /// Checks every parameter (the predictor's constructor does too).
    pub fn validate(&self) -> Result<(), ZetaError> {
        check_settings(&[
            ("learning_rate", self.learning_rate, false),
            ("prior_strength", self.prior_strength, false),
            ("l2", self.l2, true),
            ("prior_weight", self.prior_weight, true),
        ])
    }
}

/// Each `(field, value, zero allowed)` must be finite and > 0 (or >= 0);
/// the first that is not is named with its value.
pub fn check_settings(checks: &[(&'static str, f64, bool)]) -> Result<(), ZetaError> {
    for &(field, value, zero_ok) in checks {
        if !(value.is_finite() && (value > 0.0 || (zero_ok && value == 0.0))) {
            return Err(ZetaError::InvalidConfig {
                field,
                expected: if zero_ok {
                    "finite and >= 0"
                } else {
                    "finite and > 0"
                },
                value: crate::errors::float_repr(value),
            });
        }
    }
    Ok(())
}

/// Counts are kept in thousandths of an outcome, so a verdict of weight
/// 0.1 (a weak signal) counts a tenth of one of weight 1 in the priors and
/// the ramp, while atomics stay integers (exact under concurrency).
pub const COUNT_UNIT: u64 = 1_000;

/// The most one verdict may weigh: a weight is a source's trust times its
/// confidence, and no single label should outweigh ten plain ones.
pub const MAX_WEIGHT: f64 = 10.0;

/// Successes and requests of one model (in one category), in [`COUNT_UNIT`]s.
#[derive(Debug, Default)]
struct Counts {
    successes: AtomicU64,
    requests: AtomicU64,
}

impl Counts {
    /// Counts `units` of requests, `target` of them successes.
    fn add(&self, target: f64, units: u64) {
        self.requests.fetch_add(units, Ordering::Relaxed);
        let successes = (target * units as f64).round() as u64;
        if successes > 0 {
            self.successes.fetch_add(successes, Ordering::Relaxed);
        }
    }

    /// (successes, requests) in outcomes.
    fn read(&self) -> (f64, f64) {
        (
            self.successes.load(Ordering::Relaxed) as f64 / COUNT_UNIT as f64,
            self.requests.load(Ordering::Relaxed) as f64 / COUNT_UNIT as f64,
        )
    }
}

type CategoryMap = papaya::HashMap<String, Box<[Counts]>, foldhash::fast::RandomState>;

/// Per-model success predictors over one feature space.
pub struct OutcomePredictor {
    models: Vec<String>,
    params: PredictorParams,
    /// `FEATURE_DIM x models` weights as f64 bits, feature-major: a
    /// request's prediction for every model reads one line per feature.
    weights: Box<[AtomicU64]>,
    /// The same layout for the latency model: ln(1 + latency ms) as a
    /// linear function of the features (least squares by SGD).
    latency_weights: Box<[AtomicU64]>,
    /// Latencies learned per model.
    latency_seen: Box<[AtomicU64]>,
    overall: Box<[Counts]>,
    by_category: CategoryMap,
    updates: AtomicU64,
}

/// The SGD step of the latency model (features have norm about 2, so
/// steps stay well inside the stable range).
const LATENCY_STEP: f64 = 0.1;
/// Latencies a model needs before its latency predictions are given.
pub const MIN_LATENCY_SAMPLES: u64 = 5;

impl OutcomePredictor {
    pub fn new(models: Vec<String>, params: PredictorParams) -> Result<Self, ZetaError> {
        params.validate()?;
        if models.is_empty() {
            return Err(ZetaError::NoCandidates {
                operation: "OutcomePredictor() (models must not be empty)",
            });
        }
        for (index, model) in models.iter().enumerate() {
            if models.iter().skip(index + 1).any(|other| other == model) {
                return Err(ZetaError::InvalidName {
                    field: "models",
                    problem: "appears twice",
                    value: model.clone(),
                });
            }
        }
        let weights = hogwild::zeros(models.len() * FEATURE_DIM);
        let latency_weights = hogwild::zeros(models.len() * FEATURE_DIM);
        let latency_seen = (0..models.len()).map(|_| AtomicU64::new(0)).collect();
        let overall = (0..models.len()).map(|_| Counts::default()).collect();
        Ok(Self {
            models,
            params,
            weights,
            latency_weights,
            latency_seen,
            overall,
            by_category: CategoryMap::with_hasher(foldhash::fast::RandomState::default()),
            updates: AtomicU64::new(0),
        })
    }

    pub fn models(&self) -> &[String] {
        &self.models
    }

    pub fn params(&self) -> PredictorParams {
        self.params
    }

    /// Updates learned so far (one per request, however many models' outcomes it held).
    pub fn updates(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }

    /// Outcomes learned for `model` (index) so far, each counted by its
    /// weight (whole outcomes, rounded down).
    pub fn outcomes_seen(&self, model: usize) -> u64 {
        self.overall
            .get(model)
            .map_or(0, |c| c.requests.load(Ordering::Relaxed) / COUNT_UNIT)
    }

    /// One model's weights, a column of the feature-major table.
    fn row(&self, model: usize) -> Row<'_> {
        Row::new(&self.weights, self.models.len(), model)
    }

    fn latency_row(&self, model: usize) -> Row<'_> {
        Row::new(&self.latency_weights, self.models.len(), model)
    }

    /// Learns one measured latency of `model` on a request (an answer's
    /// time: the objective part, learned whatever the verdict).
    pub fn update_latency(
        &self,
        features: &SparseFeatures,
        model: usize,
        latency_ms: f64,
    ) -> Result<(), ZetaError> {
        self.check(features)?;
        if !(latency_ms.is_finite() && latency_ms >= 0.0) {
            return Err(ZetaError::InvalidInput {
                field: "latency_ms",
                position: crate::errors::Position::Scalar,
                expected: "finite and >= 0",
                value: crate::errors::float_repr(latency_ms),
            });
        }
        let Some(seen) = self.latency_seen.get(model) else {
            return Err(ZetaError::InvalidName {
                field: "model",
                problem: "is out of range",
                value: model.to_string(),
            });
        };
        let target = latency_ms.ln_1p();
        self.latency_row(model).step(
            &features.indices,
            &features.values,
            &mut Vec::with_capacity(features.indices.len()),
            LATENCY_STEP,
            self.params.l2,
            |predicted| predicted - target,
        );
        seen.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Expected latency (ms) of every model on a request; `None` for a
    /// model with fewer than [`MIN_LATENCY_SAMPLES`] latencies learned.
    pub fn predict_latency_all(&self, features: &SparseFeatures) -> Vec<Option<f64>> {
        let models = self.models.len();
        let mut sums = vec![0.0; models];
        for (&i, &v) in features.indices.iter().zip(&features.values) {
            let start = i as usize * models;
            if let Some(cells) = self.latency_weights.get(start..start + models) {
                for (z, w) in sums.iter_mut().zip(cells) {
                    *z += hogwild::read(w) * v;
                }
            }
        }
        sums.iter()
            .zip(self.latency_seen.iter())
            .map(|(z, seen)| {
                (seen.load(Ordering::Relaxed) >= MIN_LATENCY_SAMPLES).then(|| z.exp_m1().max(0.0))
            })
            .collect()
    }

    /// P(success) of every model from the text alone, in one pass: the
    /// models' weights of a feature share a cache line.
    pub fn predict_all(&self, features: &SparseFeatures, out: &mut Vec<f64>) {
        let models = self.models.len();
        out.clear();
        out.resize(models, 0.0);
        for (&i, &v) in features.indices.iter().zip(&features.values) {
            let start = i as usize * models;
            if let Some(cells) = self.weights.get(start..start + models) {
                for (z, w) in out.iter_mut().zip(cells) {
                    *z += hogwild::read(w) * v;
                }
            }
        }
        for z in out.iter_mut() {
            *z = hogwild::sigmoid(*z);
        }
    }

    fn check(&self, features: &SparseFeatures) -> Result<(), ZetaError> {
        // The common case in two branch-free passes the compiler vectorises
        // (a request's ~1,100 features, checked on every update): the
        // largest index, and whether any value is not finite (an integer
        // OR over the exponent bits; a float sum would be one serial add
        // per value). Only a bad vector is searched for the value to name.
        let largest = features.indices.iter().fold(0_u32, |m, &i| m.max(i));
        let poisoned = features
            .values
            .iter()
            .fold(false, |acc, v| acc | !v.is_finite());
        if (largest as usize) < FEATURE_DIM
            && !poisoned
            && features.indices.len() == features.values.len()
        {
            return Ok(());
        }
        let bad = features
            .indices
            .iter()
            .find(|&&i| i as usize >= FEATURE_DIM)
            .map(|i| i.to_string())
            .or_else(|| {
                features
                    .values
                    .iter()
                    .find(|v| !v.is_finite())
                    .map(|v| crate::errors::float_repr(*v))
            });
        if features.indices.len() != features.values.len() {
            return Err(ZetaError::InvalidInput {
                field: "features",
                position: crate::errors::Position::Scalar,
                expected: "as many values as indices",
                value: format!("{} vs {}", features.values.len(), features.indices.len()),
            });
        }
        match bad {
            Some(value) => Err(ZetaError::InvalidInput {
                field: "features",
                position: crate::errors::Position::Scalar,
                expected: "indices < FEATURE_DIM and finite values",
                value,
            }),
            None => Ok(()),
        }
    }

    /// Learns one request: `known` holds (model index, success) for the
    /// models whose outcome is known (all of them with full feedback, the
    /// chosen one with bandit feedback); `learning_rate` overrides the step.
    pub fn update(
        &self,
        features: &SparseFeatures,
        known: &[(usize, bool)],
        category: Option<&str>,
        learning_rate: Option<f64>,
    ) -> Result<(), ZetaError> {
        self.update_weighted(features, known, category, learning_rate, 1.0)
    }

    /// [`Self::update`] for verdicts of `weight` (in `(0, MAX_WEIGHT]`): the
    /// step is scaled by it and the priors count it as that share of an
    /// outcome, so a judge's verdict moves the model more than a guess from
    /// a regenerated answer.
    pub fn update_weighted(
        &self,
        features: &SparseFeatures,
        known: &[(usize, bool)],
        category: Option<&str>,
        learning_rate: Option<f64>,
        weight: f64,
    ) -> Result<(), ZetaError> {
        let targets: Vec<(usize, f64)> = known
            .iter()
            .map(|&(m, good)| (m, f64::from(u8::from(good))))
            .collect();
        self.update_targets(features, &targets, category, learning_rate, weight)
    }

    /// [`Self::update_weighted`] with soft targets: each known model's
    /// probability (in `[0, 1]`) that its answer was good, as a verdict's
    /// source can tell it (a judge that agrees 80 % of the time, a
    /// regenerated answer that is bad more often than not). The logistic
    /// loss against a calibrated target keeps every source's labels on one
    /// scale, so mixing sources of unequal reliability does not skew the
    /// model; the priors count the target's share as successes.
    pub fn update_targets(
        &self,
        features: &SparseFeatures,
        known: &[(usize, f64)],
        category: Option<&str>,
        learning_rate: Option<f64>,
        weight: f64,
    ) -> Result<(), ZetaError> {
        self.check(features)?;
        if !(weight.is_finite() && weight > 0.0 && weight <= MAX_WEIGHT) {
            return Err(ZetaError::InvalidInput {
                field: "weight",
                position: Position::Scalar,
                expected: "finite, > 0 and <= 10",
                value: float_repr(weight),
            });
        }
        if let Some(&(model, _)) = known.iter().find(|(m, _)| *m >= self.models.len()) {
            return Err(ZetaError::InvalidName {
                field: "model",
                problem: "is out of range",
                value: model.to_string(),
            });
        }
        if let Some(&(_, target)) = known.iter().find(|(_, t)| !(0.0..=1.0).contains(t)) {
            return Err(ZetaError::InvalidInput {
                field: "target",
                position: Position::Scalar,
                expected: "a probability in [0, 1]",
                value: float_repr(target),
            });
        }
        if let Some(eta) = learning_rate.filter(|e| !(e.is_finite() && *e > 0.0)) {
            // A zero, negative or non-finite step would freeze, reverse or
            // poison every weight it touches.
            return Err(ZetaError::InvalidInput {
                field: "learning_rate",
                position: Position::Scalar,
                expected: "finite and > 0",
                value: float_repr(eta),
            });
        }
        if known.is_empty() {
            return Ok(());
        }
        let eta = learning_rate.unwrap_or(self.params.learning_rate) * weight;
        let units = ((weight * COUNT_UNIT as f64).round() as u64).max(1);
        let l2 = self.params.l2;
        let mut old = Vec::with_capacity(features.indices.len());
        for &(model, target) in known {
            // Every step is taken from the weights as read before it, so a
            // word counted twice moves its weight once, as a dense update would.
            self.row(model).step(
                &features.indices,
                &features.values,
                &mut old,
                eta,
                l2,
                |z| hogwild::sigmoid(z) - target,
            );
        }
        for &(model, target) in known {
            if let Some(counts) = self.overall.get(model) {
                counts.add(target, units);
            }
        }
        if let Some(category) = category {
            let map = self.by_category.pin();
            let counts = match map.get(category) {
                Some(counts) => counts,
                None => map.get_or_insert_with(category.to_owned(), || {
                    (0..self.models.len()).map(|_| Counts::default()).collect()
                }),
            };
            for &(model, target) in known {
                if let Some(c) = counts.get(model) {
                    c.add(target, units);
                }
            }
        }
        self.updates.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// P(success) of `model` from the text alone.
    pub fn predict_one(&self, features: &SparseFeatures, model: usize) -> f64 {
        hogwild::sigmoid(self.row(model).dot(&features.indices, &features.values))
    }

    /// P(success) per model from the text alone.
    pub fn predict(&self, features: &SparseFeatures) -> Result<Vec<f64>, ZetaError> {
        self.check(features)?;
        let mut out = Vec::with_capacity(self.models.len());
        self.predict_all(features, &mut out);
        Ok(out)
    }

    /// The smoothed success rate of `model` in `category` (overall when
    /// None or not seen yet): `(s + k * overall) / (n + k)`, overall itself
    /// `(s + 1) / (n + 2)`.
    pub fn prior_one(&self, category: Option<&str>, model: usize) -> f64 {
        let (s, n) = self.overall.get(model).map_or((0.0, 0.0), Counts::read);
        let overall = (s + 1.0) / (n + 2.0);
        let Some(category) = category else {
            return overall;
        };
        let map = self.by_category.pin();
        match map.get(category).and_then(|c| c.get(model)) {
            Some(counts) => {
                let (s, n) = counts.read();
                let k = self.params.prior_strength;
                (s + k * overall) / (n + k)
            }
            None => overall,
        }
    }

    /// Per model: predicted success plus the weighted category prior, in
    /// `[0, 1 + prior_weight]`.
    pub fn utility_one(&self, features: &SparseFeatures, category: Option<&str>, m: usize) -> f64 {
        self.predict_one(features, m) + self.params.prior_weight * self.prior_one(category, m)
    }

    /// The state to save: non-zero weights only (most are zero).
    pub fn state(&self) -> PredictorState {
        let mut weights = Vec::new();
        for (model, name) in self.models.iter().enumerate() {
            let row = self.row(model);
            let row: Vec<(u32, f64)> = (0..FEATURE_DIM)
                .filter_map(|i| {
                    let w = hogwild::read(row.get(i)?);
                    (w != 0.0).then_some((i as u32, w))
                })
                .collect();
            let latency_row = self.latency_row(model);
            let latency: Vec<(u32, f64)> = (0..FEATURE_DIM)
                .filter_map(|i| {
                    let w = hogwild::read(latency_row.get(i)?);
                    (w != 0.0).then_some((i as u32, w))
                })
                .collect();
            weights.push(ModelState {
                model: name.clone(),
                weights: row,
                overall: self.overall.get(model).map_or((0, 0), counts_pair),
                latency_weights: latency,
                latency_seen: self
                    .latency_seen
                    .get(model)
                    .map_or(0, |s| s.load(Ordering::Relaxed)),
            });
        }
        let map = self.by_category.pin();
        let categories = map
            .iter()
            .map(|(name, counts)| {
                let per_model = self
                    .models
                    .iter()
                    .zip(counts.iter())
                    .map(|(m, c)| (m.clone(), counts_pair(c)))
                    .collect();
                (name.clone(), per_model)
            })
            .collect();
        PredictorState {
            version: STATE_VERSION,
            feature_dim: FEATURE_DIM as u32,
            params: self.params,
            models: weights,
            categories,
            updates: self.updates(),
        }
    }

    /// Loads a saved state: models matched by id (a model the state does not
    /// know starts from zero, one this predictor does not have is ignored).
    pub fn restore(&self, state: &PredictorState) -> Result<(), ZetaError> {
        state.check()?;
        for saved in &state.models {
            let Some(model) = self.models.iter().position(|m| *m == saved.model) else {
                continue;
            };
            let row = self.row(model);
            for &(index, weight) in &saved.weights {
                if let Some(cell) = row.get(index as usize).filter(|_| weight.is_finite()) {
                    hogwild::write(cell, weight);
                }
            }
            if let Some(counts) = self.overall.get(model) {
                store_pair(counts, saved.overall);
            }
            let latency_row = self.latency_row(model);
            for &(index, weight) in &saved.latency_weights {
                if let Some(cell) = latency_row
                    .get(index as usize)
                    .filter(|_| weight.is_finite())
                {
                    hogwild::write(cell, weight);
                }
            }
            if let Some(seen) = self.latency_seen.get(model) {
                seen.store(saved.latency_seen, Ordering::Relaxed);
            }
        }
        let map = self.by_category.pin();
        for (name, per_model) in &state.categories {
            let counts = map.get_or_insert_with(name.clone(), || {
                (0..self.models.len()).map(|_| Counts::default()).collect()
            });
            for (model, pair) in per_model {
                if let Some(c) = self
                    .models
                    .iter()
                    .position(|m| m == model)
                    .and_then(|m| counts.get(m))
                {
                    store_pair(c, *pair);
                }
            }
        }
        self.updates.store(state.updates, Ordering::Relaxed);
        Ok(())
    }

    /// Averages this predictor's weights with other instances' (federated
    /// averaging: each instance learns from its own traffic, and every few
    /// seconds each moves to the mean of all live instances' weights, which
    /// converges on a consensus). Models are matched by id; counts (the
    /// priors) stay this instance's own. Returns how many states were used.
    pub fn average_with(&self, others: &[PredictorState]) -> Result<usize, ZetaError> {
        for state in others {
            state.check()?;
        }
        for (model, name) in self.models.iter().enumerate() {
            // An instance without this model contributes zeros, like a fresh one.
            let saved: Vec<Option<&ModelState>> = others
                .iter()
                .map(|state| state.models.iter().find(|m| m.model == *name))
                .collect();
            average_row(
                &self.row(model),
                saved.iter().map(|m| m.map_or(&[][..], |m| &m.weights[..])),
                others.len(),
            );
            average_row(
                &self.latency_row(model),
                saved
                    .iter()
                    .map(|m| m.map_or(&[][..], |m| &m.latency_weights[..])),
                others.len(),
            );
        }
        Ok(others.len())
    }

    /// Decodes [`Self::to_bytes`] output, refusing a damaged, truncated,
    /// unframed or other-version one (see [`LEARNED_STATE`]).
    pub fn decode_state(bytes: &[u8]) -> Result<PredictorState, ZetaError> {
        let corrupted = |e: postcard::Error| ZetaError::Snapshot {
            reason: format!("corrupted learned state payload: {e}"),
        };
        match persistence::unframe(&LEARNED_STATE, bytes) {
            Ok(payload) => postcard::from_bytes(payload).map_err(corrupted),
            Err(newer_error) => {
                // A state saved before counts were weighted: the same layout
                // with counts in whole outcomes, read as such.
                let Ok(payload) = persistence::unframe(&LEARNED_STATE_V1, bytes) else {
                    return Err(newer_error);
                };
                let mut state: PredictorState = postcard::from_bytes(payload).map_err(corrupted)?;
                state.upgrade_from_whole_counts();
                Ok(state)
            }
        }
    }

    /// The state as bytes: postcard, framed as [`LEARNED_STATE`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, ZetaError> {
        let payload = postcard::to_stdvec(&self.state()).map_err(|e| ZetaError::InvalidConfig {
            field: "learned state",
            expected: "a state that serialises",
            value: e.to_string(),
        })?;
        Ok(persistence::frame(&LEARNED_STATE, &payload))
    }

    /// Restores from [`Self::to_bytes`].
    pub fn restore_bytes(&self, bytes: &[u8]) -> Result<(), ZetaError> {
        self.restore(&Self::decode_state(bytes)?)
    }
}

/// Sets each weight of `row` to the mean of its own and `others`' values
/// (sparse: an absent index is a zero).
fn average_row<'a>(row: &Row<'_>, others: impl Iterator<Item = &'a [(u32, f64)]>, count: usize) {
    let mut sums = vec![0.0_f64; FEATURE_DIM];
    for weights in others {
        for &(index, weight) in weights {
            if let Some(sum) = sums.get_mut(index as usize).filter(|_| weight.is_finite()) {
                *sum += weight;
            }
        }
    }
    let divisor = (count + 1) as f64;
    for (index, sum) in sums.iter().enumerate() {
        if let Some(cell) = row.get(index) {
            let own = hogwild::read(cell);
            let mean = (own + sum) / divisor;
            if mean != own && mean.is_finite() {
                hogwild::write(cell, mean);
            }
        }
    }
}

fn counts_pair(c: &Counts) -> (u64, u64) {
    (
        c.successes.load(Ordering::Relaxed),
        c.requests.load(Ordering::Relaxed),
    )
}

fn store_pair(c: &Counts, (successes, requests): (u64, u64)) {
    c.successes.store(successes, Ordering::Relaxed);
    c.requests.store(requests, Ordering::Relaxed);
}

/// Version 2: counts in [`COUNT_UNIT`]s (version 1 counted whole outcomes).
const STATE_VERSION: u32 = 2;

/// The learned state's bytes, in a file and between instances: the
/// snapshot's framing (magic, version, length, CRC-32), so a flipped byte or
/// a cut file is refused rather than loaded as other weights.
pub const LEARNED_STATE: FileKind = FileKind {
    magic: b"ZETALRND",
    version: STATE_VERSION,
    name: "learned state",
    bad_magic_hint: ": another file, or one written before learned states were framed \
                     (retrain it with `zeta-fast learn`, or delete it to start over)",
};

/// The framing of states saved before counts were weighted (still read).
const LEARNED_STATE_V1: FileKind = FileKind {
    version: 1,
    ..LEARNED_STATE
};

/// One model's saved weights and counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelState {
    pub model: String,
    pub weights: Vec<(u32, f64)>,
    pub overall: (u64, u64),
    /// The latency model's non-zero weights and how many latencies it learned.
    pub latency_weights: Vec<(u32, f64)>,
    pub latency_seen: u64,
}

/// One category's (model id, (successes, requests)) pairs.
pub type CategoryCounts = Vec<(String, (u64, u64))>;

/// What a predictor saves: sparse weights, counts, categories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictorState {
    pub version: u32,
    pub feature_dim: u32,
    pub params: PredictorParams,
    pub models: Vec<ModelState>,
    /// Category -> per model (successes, requests).
    pub categories: Vec<(String, CategoryCounts)>,
    pub updates: u64,
}

impl PredictorState {
    /// Turns a version-1 state's whole-outcome counts into [`COUNT_UNIT`]s.
    fn upgrade_from_whole_counts(&mut self) {
        let scale =
            |(s, n): (u64, u64)| (s.saturating_mul(COUNT_UNIT), n.saturating_mul(COUNT_UNIT));
        if self.version == 1 {
            for model in &mut self.models {
                model.overall = scale(model.overall);
            }
            for (_, per_model) in &mut self.categories {
                for (_, pair) in per_model.iter_mut() {
                    *pair = scale(*pair);
                }
            }
            self.version = STATE_VERSION;
        }
    }

    /// Refuses a state of another format version or feature space.
    fn check(&self) -> Result<(), ZetaError> {
        if self.version != STATE_VERSION || self.feature_dim as usize != FEATURE_DIM {
            return Err(ZetaError::InvalidConfig {
                field: "learned state",
                expected: "a state of this version and feature space",
                value: format!(
                    "version {} with {} features",
                    self.version, self.feature_dim
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> OutcomePredictor {
        OutcomePredictor::new(vec!["a".into(), "b".into()], PredictorParams::default())
            .unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn features_have_every_block_and_a_bias() {
        let f = features("What is 12 + 30?", &["math"]);
        assert_eq!(f.indices.len(), f.values.len());
        assert_eq!(f.indices.last().copied(), Some((FEATURE_DIM - 1) as u32));
        assert!(f.indices.iter().any(|&i| (i as usize) < WORD_DIM));
        assert!(f
            .indices
            .iter()
            .any(|&i| (WORD_DIM..WORD_DIM + CHAR_DIM).contains(&(i as usize))));
        assert!(f
            .indices
            .iter()
            .any(|&i| (WORD_DIM + CHAR_DIM..FEATURE_DIM - 1).contains(&(i as usize))));
        // Case does not matter to the character block.
        let upper = features("WHAT IS 12 + 30?", &["math"]);
        let chars = |f: &SparseFeatures| -> Vec<u32> {
            f.indices
                .iter()
                .copied()
                .filter(|&i| (WORD_DIM as u32..(WORD_DIM + CHAR_DIM) as u32).contains(&i))
                .collect()
        };
        assert_eq!(chars(&f), chars(&upper));
    }

    #[test]
    fn indices_alone_rebuild_the_features() {
        let f = features("Solve: 3x + 5 = 20. Then explain why.", &["math", "x"]);
        assert_eq!(features_from_indices(f.indices.clone()), f);
    }

    #[test]
    fn learns_which_model_wins_which_text() {
        let p = two();
        let maths = features("compute 17 * 23 step by step", &[]);
        let poem = features("write a short poem about the sea", &[]);
        for _ in 0..50 {
            p.update(&maths, &[(0, true), (1, false)], Some("math"), None)
                .unwrap_or_else(|e| unreachable!("{e}"));
            p.update(&poem, &[(0, false), (1, true)], Some("chat"), None)
                .unwrap_or_else(|e| unreachable!("{e}"));
        }
        assert!(p.predict_one(&maths, 0) > 0.9 && p.predict_one(&maths, 1) < 0.1);
        assert!(p.predict_one(&poem, 1) > 0.9 && p.predict_one(&poem, 0) < 0.1);
        assert!(p.prior_one(Some("math"), 0) > p.prior_one(Some("math"), 1));
        assert_eq!(p.outcomes_seen(0), 100);
        assert_eq!(p.updates(), 100);
    }

    #[test]
    fn state_round_trips_exactly() {
        let p = two();
        let f = features("hello there", &["x"]);
        for i in 0..7 {
            p.update(&f, &[(0, i % 2 == 0)], Some("x"), None)
                .unwrap_or_else(|e| unreachable!("{e}"));
        }
        let bytes = p.to_bytes().unwrap_or_else(|e| unreachable!("{e}"));
        let q = two();
        q.restore_bytes(&bytes)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(p.state(), q.state());
        assert_eq!(p.predict_one(&f, 0), q.predict_one(&f, 0));
        assert!(q.restore_bytes(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn weighted_verdicts_scale_the_step_and_the_counts() {
        let (whole, weak) = (two(), two());
        let f = features("is this answer any good", &["chat/low"]);
        whole
            .update(&f, &[(0, false)], Some("chat/low"), None)
            .unwrap_or_else(|e| unreachable!("{e}"));
        for _ in 0..10 {
            weak.update_weighted(&f, &[(0, false)], Some("chat/low"), None, 0.1)
                .unwrap_or_else(|e| unreachable!("{e}"));
        }
        // Ten verdicts of a tenth count as one in the priors and the ramp.
        assert_eq!(weak.outcomes_seen(0), 1);
        assert!(
            (weak.prior_one(Some("chat/low"), 0) - whole.prior_one(Some("chat/low"), 0)).abs()
                < 1e-9
        );
        // One of a tenth moves the prediction about a tenth as far.
        let one_tenth = two();
        one_tenth
            .update_weighted(&f, &[(0, false)], Some("chat/low"), None, 0.1)
            .unwrap_or_else(|e| unreachable!("{e}"));
        let moved = |p: &OutcomePredictor| 0.5 - p.predict_one(&f, 0);
        let ratio = moved(&one_tenth) / moved(&whole);
        assert!((0.08..0.12).contains(&ratio), "{ratio}");
        for bad in [0.0, -1.0, 10.5, f64::NAN, f64::INFINITY] {
            assert!(whole
                .update_weighted(&f, &[(0, true)], None, None, bad)
                .is_err());
        }
    }

    #[test]
    fn soft_targets_pull_towards_the_probability_and_count_its_share() {
        let p = two();
        let f = features("was the answer any good", &["chat/low"]);
        // A coin's verdict leaves a fresh model where it is (p = 0.5 already).
        p.update_targets(&f, &[(0, 0.5)], Some("chat/low"), None, 1.0)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert!((p.predict_one(&f, 0) - 0.5).abs() < 1e-12);
        for _ in 0..200 {
            p.update_targets(&f, &[(1, 0.8)], Some("chat/low"), None, 1.0)
                .unwrap_or_else(|e| unreachable!("{e}"));
        }
        // Learned towards 0.8, not past it as hard labels would go.
        let learned = p.predict_one(&f, 1);
        assert!((0.7..0.9).contains(&learned), "{learned}");
        let counted = p.state();
        let pair = counted
            .categories
            .iter()
            .find_map(|(name, per_model)| (name == "chat/low").then(|| per_model[1].1))
            .unwrap_or_default();
        assert_eq!(pair, (160 * COUNT_UNIT, 200 * COUNT_UNIT));
        for bad in [-0.1, 1.1, f64::NAN] {
            assert!(p.update_targets(&f, &[(0, bad)], None, None, 1.0).is_err());
        }
    }

    #[test]
    fn a_state_saved_before_weights_reads_with_whole_counts() {
        let p = two();
        let f = features("hello there", &["x"]);
        for i in 0..7 {
            p.update(&f, &[(0, i % 2 == 0)], Some("x"), None)
                .unwrap_or_else(|e| unreachable!("{e}"));
        }
        // What version 1 wrote: the same layout, counts in whole outcomes.
        let mut old = p.state();
        old.version = 1;
        for model in &mut old.models {
            model.overall = (model.overall.0 / COUNT_UNIT, model.overall.1 / COUNT_UNIT);
        }
        for (_, per_model) in &mut old.categories {
            for (_, pair) in per_model.iter_mut() {
                *pair = (pair.0 / COUNT_UNIT, pair.1 / COUNT_UNIT);
            }
        }
        let payload = postcard::to_stdvec(&old).unwrap_or_else(|e| unreachable!("{e}"));
        let bytes = persistence::frame(&LEARNED_STATE_V1, &payload);
        let q = two();
        q.restore_bytes(&bytes)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(q.outcomes_seen(0), 7);
        assert_eq!(p.state(), q.state());
        // A damaged old file is still refused.
        let mut damaged = bytes.clone();
        if let Some(last) = damaged.last_mut() {
            *last ^= 1;
        }
        assert!(q.restore_bytes(&damaged).is_err());
    }

    #[test]
    fn averaging_moves_to_the_mean_of_the_instances() {
        let (a, b) = (two(), two());
        let f = features("compute 17 * 23", &[]);
        for _ in 0..30 {
            a.update(&f, &[(0, true)], None, None)
                .unwrap_or_else(|e| unreachable!("{e}"));
        }
        let index = f.indices.first().copied().unwrap_or_default() as usize;
        let weight = |p: &OutcomePredictor| {
            p.state()
                .models
                .first()
                .and_then(|m| m.weights.iter().find(|(i, _)| *i as usize == index))
                .map_or(0.0, |(_, w)| *w)
        };
        let learned = weight(&a);
        assert!(learned > 0.0);
        // b (all zeros) averages a in: half of a's weight; counts stay b's own.
        assert_eq!(b.average_with(&[a.state()]).ok(), Some(1));
        assert!((weight(&b) - learned / 2.0).abs() < 1e-12);
        assert_eq!(b.outcomes_seen(0), 0);
        let broken = PredictorState {
            version: 99,
            ..a.state()
        };
        assert!(b.average_with(&[broken]).is_err());
    }

    #[test]
    fn learns_each_model_latency_from_the_text() {
        let p = two();
        let short = features("hi", &[]);
        let long = features(
            &"explain the whole history of the roman empire ".repeat(20),
            &[],
        );
        assert_eq!(p.predict_latency_all(&short), vec![None, None]);
        for _ in 0..300 {
            // Model 0's time grows with the prompt; model 1 takes 200 ms always.
            p.update_latency(&short, 0, 20.0)
                .unwrap_or_else(|e| unreachable!("{e}"));
            p.update_latency(&long, 0, 900.0)
                .unwrap_or_else(|e| unreachable!("{e}"));
            p.update_latency(&short, 1, 200.0)
                .unwrap_or_else(|e| unreachable!("{e}"));
            p.update_latency(&long, 1, 200.0)
                .unwrap_or_else(|e| unreachable!("{e}"));
        }
        let near = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() < want * 0.1);
        let fast = p.predict_latency_all(&short);
        let slow = p.predict_latency_all(&long);
        assert!(near(fast.first().copied().flatten(), 20.0), "{fast:?}");
        assert!(near(slow.first().copied().flatten(), 900.0), "{slow:?}");
        assert!(near(slow.get(1).copied().flatten(), 200.0), "{slow:?}");
        assert!(p.update_latency(&short, 0, f64::NAN).is_err());
        assert!(p.update_latency(&short, 2, 1.0).is_err());
        // Saved and restored with the rest.
        let q = two();
        q.restore(&p.state())
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(q.predict_latency_all(&long), slow);
    }

    #[test]
    fn bad_input_is_refused() {
        let p = two();
        let bad = SparseFeatures {
            indices: vec![FEATURE_DIM as u32],
            values: vec![1.0],
        };
        assert!(p.predict(&bad).is_err());
        let nan = SparseFeatures {
            indices: vec![0],
            values: vec![f64::NAN],
        };
        assert!(p.update(&nan, &[(0, true)], None, None).is_err());
        // One bad value or index at the end of a long vector, either
        // infinity, or lengths that disagree: each refused, naming it.
        for (index, value) in [
            (0, f64::INFINITY),
            (0, f64::NEG_INFINITY),
            (FEATURE_DIM as u32 + 7, 1.0),
        ] {
            let mut long = features(&"many words here ".repeat(200), &[]);
            long.indices.push(index);
            long.values.push(value);
            let refused = p.update(&long, &[(0, true)], None, None);
            assert!(
                matches!(&refused, Err(ZetaError::InvalidInput { field: "features", value: named, .. })
                    if named.contains("inf") || named == &(FEATURE_DIM + 7).to_string()),
                "{refused:?}"
            );
            assert!(p.update_latency(&long, 0, 5.0).is_err());
        }
        let uneven = SparseFeatures {
            indices: vec![0, 1],
            values: vec![1.0],
        };
        assert!(p.update(&uneven, &[(0, true)], None, None).is_err());
        assert!(p
            .update(&features("x", &[]), &[(2, true)], None, None)
            .is_err());
        let before = p.predict(&features("x", &[])).unwrap();
        for eta in [0.0, -0.5, f64::NAN, f64::INFINITY] {
            let refused = p.update(&features("x", &[]), &[(0, true)], None, Some(eta));
            assert!(
                matches!(
                    refused,
                    Err(ZetaError::InvalidInput {
                        field: "learning_rate",
                        ..
                    })
                ),
                "{eta}: {refused:?}"
            );
        }
        assert_eq!(p.predict(&features("x", &[])).unwrap(), before);
        let params = PredictorParams {
            learning_rate: 0.0,
            ..PredictorParams::default()
        };
        assert!(OutcomePredictor::new(vec!["a".into()], params).is_err());
        assert!(
            OutcomePredictor::new(vec!["a".into(), "a".into()], PredictorParams::default())
                .is_err()
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn packed_indices_read_back_as_the_sorted_indices(
            indices in proptest::collection::vec(0_u32..FEATURE_DIM as u32, 0..400),
        ) {
            let (mut sorted, mut packed) = (Vec::new(), Vec::new());
            encode_indices(&indices, &mut sorted, &mut packed);
            let mut want = indices.clone();
            want.sort_unstable();
            proptest::prop_assert_eq!(decode_indices(&packed).ok(), Some(want));
            // The first format (plain little-endian u32s) still reads as given.
            let plain: Vec<u8> = indices.iter().flat_map(|i| i.to_le_bytes()).collect();
            proptest::prop_assert_eq!(decode_indices(&plain).ok(), Some(indices));
        }
    }

    #[test]
    fn a_prompt_s_indices_pack_into_a_third_and_bad_bytes_are_refused() {
        let prompt = "Write a Python function that merges two sorted lists. ".repeat(20);
        let f = features(&prompt, &["code"]);
        let (mut sorted, mut packed) = (Vec::new(), Vec::new());
        encode_indices(&f.indices, &mut sorted, &mut packed);
        assert!(
            packed.len() * 3 < f.indices.len() * 4,
            "{} bytes",
            packed.len()
        );
        let back = features_from_indices(decode_indices(&packed).unwrap());
        let mut want: Vec<(u32, u64)> = f
            .indices
            .iter()
            .zip(&f.values)
            .map(|(i, v)| (*i, v.to_bits()))
            .collect();
        let mut got: Vec<(u32, u64)> = back
            .indices
            .iter()
            .zip(&back.values)
            .map(|(i, v)| (*i, v.to_bits()))
            .collect();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "the same entries, values included");
        // A gap cut short, a gap of six bytes, an index past the end, a
        // plain list of a length no u32 list has: each refused.
        let mut cut = packed.clone();
        cut.push(0x80);
        let mut long = PACKED_MAGIC.to_vec();
        long.extend([0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
        let mut past = PACKED_MAGIC.to_vec();
        past.extend([0xff, 0xff, 0xff, 0x7f]);
        for bad in [cut, long, past, vec![1, 2, 3]] {
            assert!(
                matches!(
                    decode_indices(&bad),
                    Err(ZetaError::InvalidInput {
                        field: "features",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
        assert_eq!(decode_indices(&PACKED_MAGIC).unwrap(), Vec::<u32>::new());
    }
}
