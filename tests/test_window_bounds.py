"""The window's packed sums never wrap: every mean read is a mean of what was recorded.

Each figure below used to be misread (the old reading in each test's comment).
"""

from __future__ import annotations

import numpy as np
import pytest

from zeta_fast import CandidatePool, ManualClock, PerformanceTracker

START_MS = 1_700_000_000_000
# 2^40 units of 10 us: one record the size of the whole 40-bit latency sum.
WORD_SIZED_MS = 10_995_116_277.76
LATENCY_MAX_MS = 300_000.0


@pytest.fixture
def tracker() -> PerformanceTracker:
    return PerformanceTracker(clock=ManualClock(START_MS), persist=False)


def test_a_latency_the_size_of_the_sum_reads_as_the_histogram_max(
    tracker: PerformanceTracker,
) -> None:
    # Used to read a mean of 0.0 ms.
    for _ in range(10):
        tracker.record("m", "r", "t", True, WORD_SIZED_MS)
    stats = tracker.stats("m")
    assert stats.requests == 10
    assert stats.mean_latency_ms == pytest.approx(LATENCY_MAX_MS)
    assert stats.lifetime_mean_latency_ms == pytest.approx(LATENCY_MAX_MS)


def test_a_model_with_word_sized_latencies_does_not_win(tracker: PerformanceTracker) -> None:
    # With its mean read as 0.0 ms the slow model used to win.
    pool = CandidatePool(tracker, {"slow": {"code": 92}, "steady": {"code": 88}})
    for _ in range(10):
        pool.record("slow", "r", "code", True, WORD_SIZED_MS)
        pool.record("steady", "r", "code", True, 150.0)
    assert pool.best("code") == "steady"


def test_forty_thousand_timeouts_in_one_bucket_read_their_mean(
    tracker: PerformanceTracker,
) -> None:
    # 1.2e12 units, past the 40-bit sum: used to read 25,121 ms.
    for _ in range(40_000):
        tracker.record("m", "r", "t", False, LATENCY_MAX_MS)
    stats = tracker.stats("m")
    assert (stats.requests, stats.successes) == (40_000, 0)
    assert stats.mean_latency_ms == pytest.approx(LATENCY_MAX_MS)
    assert stats.lifetime_requests == 40_000
    assert stats.lifetime_mean_latency_ms == pytest.approx(LATENCY_MAX_MS)


def test_more_latencies_than_the_packed_count_holds_read_their_mean(
    tracker: PerformanceTracker,
) -> None:
    # 2^24 + 10 records, past the 24-bit count: used to read 1,677,722 ms.
    n = (1 << 24) + 10
    recorded = tracker.record_many(("m", "r", "t"), np.ones(n, dtype=bool), np.ones(n))
    assert recorded == n
    stats = tracker.stats("m")
    assert stats.requests == n
    assert stats.mean_latency_ms == pytest.approx(1.0)
    assert stats.lifetime_requests == n
    assert stats.lifetime_mean_latency_ms == pytest.approx(1.0)
