"""Contenders for the tracker benchmarks: zeta_fast against what people use
today to keep live metrics in Python, and LiteLLM's own latency loggers.

Everything here is a benchmark reference; nothing under python/ uses it.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from tests.reference import Params

from benches.contenders import Contender
from zeta_fast import CandidatePool, ManualClock, PerformanceTracker

KEY = ("coder-7b", "replica-1", "code")
HORIZON_S = 300.0


class DequeWindow:
    """A tuned pure-Python rolling window: a deque of (time, success,
    latency) with running sums, a lock for threads, expiry on write."""

    __slots__ = ("horizon", "latency_sum", "lock", "samples", "successes")

    def __init__(self, horizon_s: float = HORIZON_S) -> None:
        self.samples: deque[tuple[float, bool, float]] = deque()
        self.successes = 0
        self.latency_sum = 0.0
        self.horizon = horizon_s
        self.lock = threading.Lock()

    def record(self, success: bool, latency_ms: float) -> None:
        now = time.monotonic()
        with self.lock:
            self.samples.append((now, success, latency_ms))
            self.successes += success
            self.latency_sum += latency_ms
            cutoff = now - self.horizon
            samples = self.samples
            while samples[0][0] < cutoff:
                _, old_success, old_latency = samples.popleft()
                self.successes -= old_success
                self.latency_sum -= old_latency


class DequeTracker:
    """DequeWindow per (model, replica, task), found in a dict."""

    def __init__(self) -> None:
        self.windows: dict[tuple[str, str, str], DequeWindow] = {}

    def record(self, model: str, replica: str, task: str, success: bool, latency_ms: float) -> None:
        key = (model, replica, task)
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = DequeWindow()
        window.record(success, latency_ms)


def record_contenders() -> dict[str, Contender]:
    """Recording one outcome: each contender keyed by (model, replica, task)."""
    tracker = PerformanceTracker(persist=False)
    key = tracker.key(*KEY)
    deques = DequeTracker()
    found: dict[str, Contender] = {
        "zeta_fast tracker.record(model, replica, task, ...)": (
            tracker.record,
            (*KEY, True, 123.0),
        ),
        "zeta_fast key.record(...) (handle)": (key.record, (True, 123.0)),
        "Python deque window + lock, running sums": (deques.record, (*KEY, True, 123.0)),
    }
    try:
        import prometheus_client
    except ImportError:  # pragma: no cover - dev extra not installed
        return found
    registry = prometheus_client.CollectorRegistry()
    histogram = prometheus_client.Histogram(
        "latency_ms", "latency", ["model", "replica", "task"], registry=registry
    )
    found["prometheus_client labels().observe()"] = (
        lambda m, r, t, lat: histogram.labels(m, r, t).observe(lat),
        (*KEY, 123.0),
    )
    found.update(litellm_contenders())
    return found


def litellm_contenders() -> dict[str, Contender]:
    """LiteLLM's routing loggers, when the bench extra is installed."""
    # LiteLLM fetches a model price list from the internet at import unless
    # told to use its bundled copy; benchmarks stay on this machine.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        from litellm.caching.dual_cache import DualCache
        from litellm.router_strategy.least_busy import LeastBusyLoggingHandler
        from litellm.router_strategy.lowest_latency import LowestLatencyLoggingHandler
    except ImportError:
        return {}
    kwargs: dict[str, Any] = {
        "litellm_params": {
            "metadata": {"model_group": "coder-7b", "deployment": "replica-1"},
            "model_info": {"id": "replica-1"},
        },
        "call_type": "completion",
        "model": "coder-7b",
    }
    end = datetime.now()
    start = end - timedelta(milliseconds=123)
    latency = LowestLatencyLoggingHandler(router_cache=DualCache())
    busy = LeastBusyLoggingHandler(router_cache=DualCache())
    busy.log_pre_api_call("coder-7b", [], kwargs)
    return {
        "LiteLLM LowestLatencyLoggingHandler.log_success_event": (
            latency.log_success_event,
            (kwargs, None, start, end),
        ),
        "LiteLLM LeastBusyLoggingHandler.log_success_event": (
            lambda: (
                busy.log_pre_api_call("coder-7b", [], kwargs),
                busy.log_success_event(kwargs, None, start, end),
            ),
            (),
        ),
    }


def python_live_decision(n: int) -> Callable[[], int]:
    """The tuned pure-Python decision over live metrics kept in Python:
    per-candidate running sums in lists, one inlined loop (no call per
    candidate), as in tests/reference.py's best_python."""
    p = Params()
    capability = [60.0 + i * 35.0 / n for i in range(n)]
    counts = [200 + i for i in range(n)]
    successes = [int(c * (0.99 if i % 5 else 0.7)) for i, c in enumerate(counts)]
    latency_sums = [c * (150.0 + 10 * i) for i, c in enumerate(counts)]
    cw = p.capability_weight
    sw = p.success_rate_weight * 100.0
    lw = p.latency_weight
    min_rate = p.min_acceptable_success_rate
    max_latency = p.max_acceptable_latency_ms
    two_max = 2.0 * max_latency
    min_requests = p.min_requests_for_performance
    low_rate = p.low_success_rate_penalty
    high_latency = p.high_latency_penalty

    def decide() -> int:
        best_index = -1
        best_score = -math.inf
        for index, (cap, count, succ, lat_sum) in enumerate(
            zip(capability, counts, successes, latency_sums, strict=True)
        ):
            if count < min_requests:
                value = cap
            else:
                rate = succ / count
                latency = lat_sum / count
                lat_score = 100.0 - latency / two_max * 100.0
                if lat_score < 0.0:
                    lat_score = 0.0
                value = cap * cw + rate * sw + lat_score * lw
                if rate < min_rate:
                    value *= low_rate
                if latency > max_latency:
                    value *= high_latency
            if value > best_score:
                best_score = value
                best_index = index
        return best_index

    return decide


def tracked_pool(n: int, replicas: int = 1) -> CandidatePool:
    """A pool of ``n`` models whose live metrics sit in a tracker."""
    clock = ManualClock(1_900_000_000_000)
    tracker = PerformanceTracker(clock=clock, persist=False)
    pool = CandidatePool(tracker, {f"model-{i}": {"code": 60.0 + i * 35.0 / n} for i in range(n)})
    for i in range(n):
        for r in range(replicas):
            key = tracker.key(f"model-{i}", f"replica-{r}", "code")
            for k in range(40):
                key.record(k % 5 != 0 or i % 5 != 0, 150.0 + 10 * i)
    return pool


def decision_contenders(n: int) -> dict[str, Contender]:
    """One decision over ``n`` candidates whose live metrics are already held."""
    pool = tracked_pool(n)
    two_replicas = tracked_pool(n, replicas=2)
    return {
        "zeta_fast CandidatePool.best(task)": (pool.best, ("code",)),
        "zeta_fast, 2 replicas per model": (two_replicas.best, ("code",)),
        "pure Python, tuned loop over Python-held sums": (python_live_decision(n), ()),
    }


def threaded_record_contenders(total: int = 200_000) -> dict[str, Contender]:
    """The same number of records from one thread and from two."""
    tracker = PerformanceTracker(persist=False)

    def run(threads: int) -> None:
        def work() -> None:
            record = tracker.record
            for _ in range(total // threads):
                record("coder-7b", "replica-1", "code", True, 123.0)

        pool = [threading.Thread(target=work) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()

    return {
        "zeta_fast, 1 thread": (run, (1,)),
        "zeta_fast, 2 threads": (run, (2,)),
    }
