//! Hogwild! weights (Niu et al. 2011): f64 weights kept as their bits in
//! atomics, read with relaxed loads and written with relaxed stores by any
//! number of threads at once, without a lock.
//!
//! What each weight keeps, however updates and predictions interleave
//! (checked by loom in `rust/tests/loom_learned.rs`, on two weights, two
//! updating threads and a predicting one):
//! - a read returns a whole value some thread wrote (or the weight's first
//!   value): each step stores a weight once, as one 64-bit atomic store of
//!   its final value, never in parts and never an intermediate or a marker;
//! - every value written is one step, `w - eta * (error * v + l2 * w)`, from
//!   values that were written: a step reads all its weights first, then
//!   stores each once. Two steps at once may lose one another's change (the
//!   later store wins) or read a mix of one's before and after values, which
//!   sparse SGD tolerates; no other value ever appears;
//! - a step whose result is not finite stores nothing (nor does any other
//!   writer: a restore, an average), so every weight is always finite and a
//!   prediction mid-update (some weights stepped, some not) is a sum of
//!   finite values.
//!
//! Reads and writes are relaxed: a weight orders nothing else, and each
//! weight alone is coherent (a thread never reads a value older than one
//! it has read).

use crate::sync::{AtomicU64, Ordering};

/// `len` weights, all zero.
pub fn zeros(len: usize) -> Box<[AtomicU64]> {
    (0..len)
        .map(|_| AtomicU64::new(0.0_f64.to_bits()))
        .collect()
}

/// A weight's value.
#[inline(always)]
pub fn read(cell: &AtomicU64) -> f64 {
    f64::from_bits(cell.load(Ordering::Relaxed))
}

/// Sets a weight, whole.
#[inline(always)]
pub fn write(cell: &AtomicU64, value: f64) {
    cell.store(value.to_bits(), Ordering::Relaxed);
}

/// Independent partial sums in a dot product: a single running sum is one
/// add after another, each waiting for the last (~4 cycles apiece, ~1.5 us
/// over a request's ~1,100 features); four run side by side.
const LANES: usize = 4;

/// `sum(w * v)` in a fixed order (every step and `Row::dot` add this way,
/// so a prediction of one model and the step it learns from agree to the
/// bit): product `k` of each whole group of four goes to partial sum `k`,
/// the partial sums are added pairwise, then the remaining products in
/// index order.
#[inline]
pub fn dot(weights: &[f64], values: &[f64]) -> f64 {
    dot_by(weights, values, |&w| w)
}

/// `sum(weight(key) * v)` in [`dot`]'s order: the one loop behind both
/// [`dot`] and [`Row::dot`], so they cannot add in different orders.
#[inline(always)]
fn dot_by<K>(keys: &[K], values: &[f64], weight: impl Fn(&K) -> f64) -> f64 {
    let n = keys.len().min(values.len());
    let (keys, values) = (
        keys.get(..n).unwrap_or_default(),
        values.get(..n).unwrap_or_default(),
    );
    let (k_groups, v_groups) = (keys.chunks_exact(LANES), values.chunks_exact(LANES));
    let tail = k_groups
        .remainder()
        .iter()
        .zip(v_groups.remainder())
        .map(|(k, v)| weight(k) * v);
    let mut lanes = [0.0_f64; LANES];
    for (k, v) in k_groups.zip(v_groups) {
        for ((lane, k), v) in lanes.iter_mut().zip(k).zip(v) {
            *lane += weight(k) * v;
        }
    }
    combine(lanes, tail)
}

/// The partial sums added pairwise, then the remaining products in order.
#[inline(always)]
fn combine(lanes: [f64; LANES], tail: impl Iterator<Item = f64>) -> f64 {
    let [a, b, c, d] = lanes;
    tail.fold((a + b) + (c + d), |sum, product| sum + product)
}

/// One weight's gradient step.
#[inline(always)]
pub fn descend(weight: f64, value: f64, error: f64, eta: f64, l2: f64) -> f64 {
    weight - eta * (error * value + l2 * weight)
}

/// The logistic function.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The logistic loss's error: predicted probability minus the outcome.
#[inline]
pub fn logistic_error(z: f64, success: bool) -> f64 {
    sigmoid(z) - f64::from(u8::from(success))
}

/// One model's weights: every `stride`-th cell from `offset` (a column of a
/// feature-major table, so one feature's weights of every model are adjacent).
pub struct Row<'a> {
    weights: &'a [AtomicU64],
    stride: usize,
    offset: usize,
}

impl<'a> Row<'a> {
    pub fn new(weights: &'a [AtomicU64], stride: usize, offset: usize) -> Self {
        Self {
            weights,
            stride,
            offset,
        }
    }

    /// The weight of `feature`, if the table has it.
    #[inline(always)]
    pub fn get(&self, feature: usize) -> Option<&'a AtomicU64> {
        self.weights.get(feature * self.stride + self.offset)
    }

    /// The weight of `feature` (zero outside the table).
    #[inline(always)]
    pub fn read(&self, feature: usize) -> f64 {
        self.get(feature).map_or(0.0, read)
    }

    /// `sum(w * v)` over a sparse vector, each weight read once.
    #[inline]
    pub fn dot(&self, indices: &[u32], values: &[f64]) -> f64 {
        dot_by(indices, values, |&i| self.read(i as usize))
    }

    /// One SGD step on a sparse vector: reads every weight into `old`, takes
    /// `error_of(sum(w * v))`, then stores each weight's step once, computed
    /// from `old` (so an index listed twice moves once, as a dense update
    /// would). A step that is not finite is not stored.
    pub fn step(
        &self,
        indices: &[u32],
        values: &[f64],
        old: &mut Vec<f64>,
        eta: f64,
        l2: f64,
        error_of: impl FnOnce(f64) -> f64,
    ) {
        old.clear();
        old.extend(indices.iter().map(|&i| self.read(i as usize)));
        let error = error_of(dot(old, values));
        for ((&i, &v), &w) in indices.iter().zip(values).zip(old.iter()) {
            if let Some(cell) = self.get(i as usize) {
                let stepped = descend(w, v, error, eta, l2);
                // A diverging step (an extreme rate or feature) is dropped
                // rather than stored: one non-finite weight would make every
                // prediction touching it NaN, for good.
                if stepped.is_finite() {
                    write(cell, stepped);
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_step_reads_every_weight_first_then_stores_each_once() {
        let weights = zeros(4);
        // Column 1 of a 2-wide table: cells 1 and 3.
        let row = Row::new(&weights, 2, 1);
        write(&weights[1], 0.5);
        let mut old = Vec::new();
        let mut seen = None;
        row.step(&[0, 1, 0], &[1.0, 2.0, 1.0], &mut old, 0.1, 0.0, |z| {
            seen = Some(z);
            1.0
        });
        assert_eq!(seen, Some(0.5 + 0.0 + 0.5));
        // Index 0 is listed twice: stepped once from its old value.
        assert_eq!(read(&weights[1]), 0.5 - 0.1);
        assert_eq!(read(&weights[3]), -0.2);
        assert_eq!((read(&weights[0]), read(&weights[2])), (0.0, 0.0));
        assert_eq!(row.dot(&[0, 1], &[1.0, 1.0]), (0.5 - 0.1) + -0.2);
    }

    #[test]
    fn a_step_that_is_not_finite_is_not_stored() {
        let weights = zeros(2);
        write(&weights[0], f64::MAX);
        let row = Row::new(&weights, 1, 0);
        let mut old = Vec::new();
        // -MAX error at full rate: MAX + MAX overflows to infinity.
        row.step(&[0, 1], &[1.0, 1.0], &mut old, 1.0, 0.0, |_| -f64::MAX);
        assert_eq!(read(&weights[0]), f64::MAX);
        assert_eq!(read(&weights[1]), f64::MAX);
        assert!(row.dot(&[0], &[1.0]).is_finite());
    }

    #[test]
    fn a_row_dot_and_a_step_add_in_the_same_order() {
        // 11 features (two groups of four and three left over) whose sum
        // depends on the order of the additions.
        let values: Vec<f64> = (0..11).map(|k| 1.0 + f64::from(k) * 1e-9).collect();
        let weights = zeros(11);
        for (k, cell) in weights.iter().enumerate() {
            write(
                cell,
                if k % 2 == 0 {
                    1e16
                } else {
                    -1e16 + 1.0 + k as f64
                },
            );
        }
        let indices: Vec<u32> = (0..11).collect();
        let row = Row::new(&weights, 1, 0);
        let read: Vec<f64> = (0..11).map(|k| row.read(k)).collect();
        let mut seen = None;
        row.step(&indices, &values, &mut Vec::new(), 0.0, 0.0, |z| {
            seen = Some(z);
            0.0
        });
        assert_eq!(seen, Some(row.dot(&indices, &values)));
        assert_eq!(dot(&read, &values), row.dot(&indices, &values));
        // And it is the sum, within rounding.
        let exact: f64 = read.iter().zip(&values).map(|(w, v)| w * v).sum();
        assert!(
            (dot(&read, &values) - exact).abs() <= 1e-6 * exact.abs().max(1e16),
            "{exact}"
        );
        // Lengths that disagree: the shorter one's.
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[1.0, 1.0]), 3.0);
    }
}
