"""The tracker: recording an outcome and deciding from live metrics.

zeta_fast against a tuned pure-Python deque window, prometheus_client and
(with the bench extra) LiteLLM's routing loggers; decisions against a tuned
pure-Python loop over Python-held sums. Same-run ratios for reports come
from ``python -m benches.compare --only record`` / ``--only tracked``.

Each item then checks, outside the timed calls, that the measured call did
what its name says: one more outcome in the contender's own store, the
same candidate as the reference loop, every record of every thread counted.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benches import tracker_contenders
from benches.tracker_contenders import KEY
from zeta_fast import PerformanceTracker

RECORD = tracker_contenders.record_contenders()
#: The decision contender the others must agree with.
REFERENCE_DECISION = "pure Python, tuned loop over Python-held sums"
RECORDS_PER_CALL = 20_000


def _closed_over(fn: Callable[..., object], name: str) -> Any:
    """The object a contender's lambda or closure calls (``name`` in its
    body): where its effect can be read without timing anything more."""
    return inspect.getclosurevars(fn).nonlocals[name]


def _outcomes_held(contender: str, fn: Callable[..., object]) -> Callable[[], float]:
    """A reader of how many outcomes the contender's own store holds for KEY."""
    if contender.startswith("zeta_fast tracker.record"):
        tracker: PerformanceTracker = fn.__self__  # type: ignore[attr-defined]
        return lambda: tracker.key(*KEY).stats().lifetime_requests
    if contender.startswith("zeta_fast key.record"):
        key = fn.__self__  # type: ignore[attr-defined]
        return lambda: key.stats().lifetime_requests
    if contender.startswith("Python deque window"):
        deques: tracker_contenders.DequeTracker = fn.__self__  # type: ignore[attr-defined]
        return lambda: len(deques.windows[KEY].samples)
    if contender.startswith("prometheus_client"):
        histogram = _closed_over(fn, "histogram")
        labels = dict(zip(("model", "replica", "task"), KEY, strict=True))
        return lambda: next(
            sample.value
            for metric in histogram.collect()
            for sample in metric.samples
            if sample.name == "latency_ms_count" and sample.labels == labels
        )
    if contender.startswith("LiteLLM LowestLatencyLoggingHandler"):
        cache = fn.__self__.router_cache  # type: ignore[attr-defined]

        def requests_counted() -> float:
            # The handler keeps a capped latency list, but counts every
            # success in its per-minute rpm entries.
            deployment = cache.get_cache(key="coder-7b_map")["replica-1"]
            return sum(v["rpm"] for v in deployment.values() if isinstance(v, dict))

        return requests_counted
    if contender.startswith("LiteLLM LeastBusyLoggingHandler"):
        cache = _closed_over(fn, "busy").router_cache
        return lambda: cache.get_cache(key="coder-7b_request_count:replica-1")
    raise AssertionError(f"no check for contender {contender!r}")


#: What one call changes in the store: one outcome more, except for the
#: least-busy pair (a request sent, then its success) that must leave the
#: in-flight count where it was.
CHANGE_PER_CALL = {"LiteLLM LeastBusyLoggingHandler.log_success_event": 0}


@pytest.mark.parametrize("contender", list(RECORD))
def bench_record(benchmark: BenchmarkFixture, contender: str) -> None:
    benchmark.group = "record one outcome"
    benchmark.name = contender
    fn, args = RECORD[contender]
    benchmark(fn, *args)
    held = _outcomes_held(contender, fn)
    before = held()
    fn(*args)
    assert held() - before == CHANGE_PER_CALL.get(contender, 1)


@pytest.mark.parametrize(
    ("n", "contender"),
    [(n, c) for n in (8, 64) for c in tracker_contenders.decision_contenders(8)],
)
def bench_tracked_decision(benchmark: BenchmarkFixture, n: int, contender: str) -> None:
    benchmark.group = f"decision over {n} tracked candidates"
    benchmark.name = contender
    contenders = tracker_contenders.decision_contenders(n)
    fn, args = contenders[contender]
    result = benchmark(fn, *args)
    reference_fn, reference_args = contenders[REFERENCE_DECISION]
    # The pools name the candidates model-<index>; the loop returns the index.
    picked = result if isinstance(result, int) else int(str(result).removeprefix("model-"))
    assert picked == reference_fn(*reference_args)


@pytest.mark.parametrize("threads", [1, 2])
def bench_record_threads(benchmark: BenchmarkFixture, threads: int) -> None:
    benchmark.group = "20,000 records from 1 or 2 threads"
    benchmark.name = f"{threads} thread(s)"
    fn, args = tracker_contenders.threaded_record_contenders(RECORDS_PER_CALL)[
        f"zeta_fast, {threads} thread{'s' if threads > 1 else ''}"
    ]
    benchmark(fn, *args)
    tracker: PerformanceTracker = _closed_over(fn, "tracker")
    counted = tracker.key(*KEY).stats().lifetime_requests
    # However many rounds ran, each call's threads recorded all their records.
    assert counted > 0
    assert counted % RECORDS_PER_CALL == 0
