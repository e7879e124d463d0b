//! Criterion benches of the core without Python: one decision over 8 and 64
//! candidates, batch scoring of 1,000,000 candidates, and the `cache_aware`
//! replica choice (hashing a 4 KB prompt's blocks, choosing among 8
//! replicas with an index of many conversations), and the router core's
//! route + record over 8 models x 4 replicas (the floor under Python's
//! `route()` + `record()`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::sync::Arc;
use zeta_fast::clock::Clock;
use zeta_fast::learned_capability::RequestView;
use zeta_fast::policies::model_ordering;
use zeta_fast::policies::{CacheAware, ReplicaPolicy, Replicas};
use zeta_fast::prefix::{Affinity, PrefixSettings};
use zeta_fast::routing::{ModelInput, Resilience, RouterCore};
use zeta_fast::tracker::PerformanceTracker;
use zeta_fast::window::WindowConfig;
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

/// A 4 KB conversation (system prompt, then turns), and its opening's end.
fn conversation(c: usize) -> (Vec<u8>, usize) {
    let mut text = "You are a coding agent with tools: search, read, write, run. ".repeat(16);
    text.push_str(&format!("user: task {c:05}: fix the failing test. "));
    let opening = text.len();
    while text.len() < 4096 {
        text.push_str(&format!(
            "assistant: step {} done. user: go on. ",
            text.len()
        ));
    }
    text.truncate(4096);
    (text.into_bytes(), opening)
}

fn cache_aware(c: &mut Criterion) {
    let settings = PrefixSettings::default();
    let policy = CacheAware::new(8, settings);
    let loads = [0.1, 0.2, 0.0, 0.3, 0.1, 0.2, 0.0, 0.1];
    let load = |r: usize| loads.get(r).copied();
    let requests = |r: usize| loads.get(r).map_or(0.0, |l| l * 10.0);
    // 2,000 conversations already placed.
    for i in 0..2_000 {
        let (prompt, opening) = conversation(i);
        let affinity = Affinity::new(&prompt, None, Some(opening), settings.block_bytes);
        if let Some(index) = policy.prefix_index() {
            index.route(i % 8, &affinity, 0);
        }
    }
    let (prompt, opening) = conversation(1_234);
    let mut group = c.benchmark_group("cache_aware");
    group.bench_function("hash 4 KB + choose of 8", |b| {
        b.iter(|| {
            let affinity = Affinity::new(
                black_box(&prompt),
                None,
                Some(opening),
                settings.block_bytes,
            );
            let view = Replicas::new(8, &load)
                .with_requests(&requests)
                .with_affinity(Some(&affinity), 0);
            black_box(policy.choose(&view))
        })
    });
    // A conversation the index has never seen (no session bound): every
    // replica's match is searched.
    let (fresh, _) = conversation(99_999);
    group.bench_function("hash 4 KB + choose of 8, new conversation", |b| {
        b.iter(|| {
            let affinity = Affinity::new(black_box(&fresh), None, None, settings.block_bytes);
            let view = Replicas::new(8, &load)
                .with_requests(&requests)
                .with_affinity(Some(&affinity), 0);
            black_box(policy.choose(&view))
        })
    });
    group.finish();
}

/// 8 models x 4 replicas as `benches.defaults_cost` builds them (code,
/// chat and reasoning capabilities; the default policy and ordering).
fn router_core() -> RouterCore {
    let tracker =
        Arc::new(PerformanceTracker::new(WindowConfig::default(), Clock::System).unwrap());
    let models = (0..8)
        .map(|m| {
            let id = format!("model-{m}");
            ModelInput {
                capabilities: vec![
                    ("code".to_owned(), 80.0 + m as f64),
                    ("chat".to_owned(), 70.0 + m as f64),
                    ("reasoning".to_owned(), 75.0 + m as f64),
                ],
                ranges: vec![(0.0, 1.0)],
                replicas: (0..4).map(|r| (format!("{id}-r{r}"), 0)).collect(),
                context_window: 0,
                fallbacks: Vec::new(),
                id,
            }
        })
        .collect();
    RouterCore::new(
        tracker,
        AdaptiveScorer::new(AdaptiveConfig::default()).unwrap(),
        models,
        "power_of_two",
        model_ordering("spread", 5.0).unwrap(),
        Resilience::default(),
    )
    .unwrap()
}

fn router(c: &mut Criterion) {
    let core = router_core();
    let cycle = |core: &RouterCore| {
        let decision = core.route(0, 0.5, 0, RequestView::default()).unwrap();
        core.record(&decision, true, 120.0, true).unwrap();
    };
    for _ in 0..2_000 {
        cycle(&core);
    }
    let mut group = c.benchmark_group("router");
    group.bench_function("route + record, 8 x 4", |b| {
        b.iter(|| cycle(black_box(&core)))
    });
    group.bench_function("route, 8 x 4", |b| {
        b.iter(|| black_box(core.route(0, 0.5, 0, RequestView::default()).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, best, score_into, cache_aware, router);
criterion_main!(benches);
