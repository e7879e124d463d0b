"""What releasing the GIL costs and buys: score_many held vs released.

The threshold ``GIL_RELEASE_MIN_CANDIDATES`` comes from these groups and from
``python -m benches.compare --only busy``: releasing is nearly free when no
other thread wants the GIL, while the two-thread case shows what it buys:
two Python threads scoring 1M candidates each run in parallel.
"""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt
import pytest
from pytest_benchmark.fixture import BenchmarkFixture
from tests import reference

from benches.contenders import make_inputs
from zeta_fast import AdaptiveScorer

scorer = AdaptiveScorer()


@pytest.mark.parametrize("n", [1_024, 4_096, 16_384, 65_536])
@pytest.mark.parametrize("release", [False, True])
def bench_release_cost(benchmark: BenchmarkFixture, n: int, release: bool) -> None:
    data = make_inputs(n)
    args = (data.capability, data.success_rate, data.avg_latency_ms, data.requests)
    benchmark.group = f"GIL release cost at {n:,}"
    benchmark.name = "released" if release else "held"
    result = benchmark(lambda: scorer.score_many(*args, release_gil=release))
    # Held or released, the scores are the formula's.
    np.testing.assert_allclose(result, reference.score_numpy(*args), atol=1e-9)


def _two_threads(release: bool, args: tuple[object, ...]) -> list[npt.NDArray[np.float64]]:
    """Both threads' scores, kept so that the bench can check them untimed."""
    scores: list[npt.NDArray[np.float64]] = []

    def score() -> None:
        scores.append(scorer.score_many(*args, release_gil=release))

    threads = [threading.Thread(target=score) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return scores


@pytest.mark.parametrize("release", [False, True])
def bench_two_threads(benchmark: BenchmarkFixture, release: bool) -> None:
    data = make_inputs(1_000_000)
    args = (data.capability, data.success_rate, data.avg_latency_ms, data.requests)
    benchmark.group = "2 threads x 1M candidates"
    benchmark.name = "released" if release else "held"
    scores = benchmark(_two_threads, release, args)
    expected = reference.score_numpy(*args)
    assert len(scores) == 2
    for thread_scores in scores:
        np.testing.assert_allclose(thread_scores, expected, atol=1e-9)
