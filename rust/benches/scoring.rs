//! Criterion benches of the core without Python: one decision over 8 and 64
//! candidates, and batch scoring of 1,000,000 candidates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use zeta_fast::{AdaptiveConfig, AdaptiveScorer};

/// Deterministic pseudo-random inputs (xorshift), so runs compare like with like.
fn inputs(n: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<i64>) {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1_u64 << 53) as f64
    };
    let mut cap = Vec::with_capacity(n);
    let mut rate = Vec::with_capacity(n);
    let mut latency = Vec::with_capacity(n);
    let mut requests = Vec::with_capacity(n);
    for _ in 0..n {
        cap.push(next() * 100.0);
        rate.push(next());
        latency.push(next() * 1200.0);
        requests.push((next() * 30.0) as i64);
    }
    (cap, rate, latency, requests)
}

fn best(c: &mut Criterion) {
    let scorer = AdaptiveScorer::new(AdaptiveConfig::default()).unwrap();
    let mut group = c.benchmark_group("best");
    for n in [8_usize, 64] {
        let (cap, rate, latency, requests) = inputs(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                scorer
                    .best(
                        black_box(&cap),
                        black_box(&rate),
                        black_box(&latency),
                        black_box(&requests),
                    )
                    .unwrap()
            })
        });
    }
    group.finish();
}

fn score_into(c: &mut Criterion) {
    let scorer = AdaptiveScorer::new(AdaptiveConfig::default()).unwrap();
    let mut group = c.benchmark_group("score_into");
    // 4096 stays in L1/L2 (the compute rate); 1M streams from memory.
    for n in [4096_usize, 1_000_000] {
        let (cap, rate, latency, requests) = inputs(n);
        let mut out = vec![0.0; n];
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                scorer
                    .score_into(
                        black_box(&cap),
                        black_box(&rate),
                        black_box(&latency),
                        black_box(&requests),
                        &mut out,
                    )
                    .unwrap();
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, best, score_into);
criterion_main!(benches);
