"""The tracker: recording an outcome and deciding from live metrics.

zeta_fast against a tuned pure-Python deque window, prometheus_client and
(with the bench extra) LiteLLM's routing loggers; decisions against a tuned
pure-Python loop over Python-held sums. Same-run ratios for reports come
from ``python -m benches.compare --only record`` / ``--only tracked``.
"""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benches import tracker_contenders

RECORD = tracker_contenders.record_contenders()


@pytest.mark.parametrize("contender", list(RECORD))
def bench_record(benchmark: BenchmarkFixture, contender: str) -> None:
    benchmark.group = "record one outcome"
    benchmark.name = contender
    fn, args = RECORD[contender]
    benchmark(fn, *args)


@pytest.mark.parametrize(
    ("n", "contender"),
    [(n, c) for n in (8, 64) for c in tracker_contenders.decision_contenders(8)],
)
def bench_tracked_decision(benchmark: BenchmarkFixture, n: int, contender: str) -> None:
    benchmark.group = f"decision over {n} tracked candidates"
    benchmark.name = contender
    fn, args = tracker_contenders.decision_contenders(n)[contender]
    result = benchmark(fn, *args)
    assert isinstance(result, int | str)


@pytest.mark.parametrize("threads", [1, 2])
def bench_record_threads(benchmark: BenchmarkFixture, threads: int) -> None:
    benchmark.group = "20,000 records from 1 or 2 threads"
    benchmark.name = f"{threads} thread(s)"
    fn, args = tracker_contenders.threaded_record_contenders(20_000)[
        f"zeta_fast, {threads} thread{'s' if threads > 1 else ''}"
    ]
    benchmark(fn, *args)
