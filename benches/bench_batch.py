"""Batch scoring: zeta_fast.score_many vs the NumPy reference, 1-D and 2-D."""

from __future__ import annotations

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from tests import reference

from benches.contenders import batch_contenders, make_inputs
from zeta_fast import AdaptiveScorer

SIZES = (1_000, 1_000_000)


@pytest.mark.parametrize(("n", "contender"), [(n, c) for n in SIZES for c in batch_contenders(8)])
def bench_score_many(benchmark: BenchmarkFixture, n: int, contender: str) -> None:
    benchmark.group = f"score {n:,} candidates"
    benchmark.name = contender
    fn, args = batch_contenders(n)[contender]
    result = benchmark(fn, *args)
    assert isinstance(result, np.ndarray)
    assert result.shape == (n,)


@pytest.mark.parametrize("contender", ["zeta_fast.best_per_row", "NumPy argmax(axis=1)"])
def bench_best_per_row(benchmark: BenchmarkFixture, contender: str) -> None:
    # 10,000 requests x 8 candidates: a whole batch of decisions in one call.
    data = make_inputs((10_000, 8))
    args = (data.capability, data.success_rate, data.avg_latency_ms, data.requests)
    scorer = AdaptiveScorer()
    benchmark.group = "best of 8 for 10,000 requests"
    benchmark.name = contender
    if contender.startswith("zeta_fast"):
        result = benchmark(scorer.best_per_row, *args)
    else:
        result = benchmark(lambda: np.argmax(reference.score_numpy(*args), axis=1))
    assert result.shape == (10_000,)
