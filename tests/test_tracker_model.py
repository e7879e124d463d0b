"""Property test: the Rust window against a plain-Python model of its semantics.

Hypothesis drives both with random sequences of records and reads while the
clock jumps forward, stands still or goes backwards; window and lifetime
totals, mean latency and the EWMA must agree exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeta_fast import ManualClock, PerformanceTracker, WindowConfig

BUCKET_MS = 1_000
BUCKETS = 6
START_MS = 1_000_000


@dataclass
class WindowModel:
    """What the README says the window does, one sample at a time."""

    alpha: float
    current: int | None = None
    samples: list[tuple[int, bool, int]] = field(default_factory=list)  # (epoch, success, units)
    lifetime: list[tuple[bool, int]] = field(default_factory=list)
    ewma: float | None = None

    def _see(self, now_ms: int) -> int:
        epoch = now_ms // BUCKET_MS
        self.current = epoch if self.current is None else max(self.current, epoch)
        return epoch

    def record(self, now_ms: int, success: bool, latency_ms: float) -> None:
        epoch = self._see(now_ms)
        assert self.current is not None
        # Rust's f64::round: halves away from zero (Python's round() goes to even).
        units = math.floor(latency_ms / 0.01 + 0.5)
        self.lifetime.append((success, units))
        if epoch + BUCKETS <= self.current:
            return  # older than the window: lifetime only
        self.samples.append((epoch, success, units))
        self.ewma = (
            latency_ms if self.ewma is None else self.ewma + self.alpha * (latency_ms - self.ewma)
        )

    def window(self, now_ms: int) -> list[tuple[int, bool, int]]:
        self._see(now_ms)
        assert self.current is not None
        # Reads move the window too, so `current` is never behind `now`.
        oldest = self.current - BUCKETS + 1
        return [s for s in self.samples if oldest <= s[0] <= self.current]


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("record"),
            st.integers(-8_000, 4_000),
            st.booleans(),
            st.floats(0.0, 5_000.0, allow_nan=False),
        ),
        st.tuples(st.just("read"), st.integers(-3_000, 9_000), st.just(False), st.just(0.0)),
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_window_matches_the_model(ops: list[tuple[str, int, bool, float]]) -> None:
    clock = ManualClock(START_MS)
    window = WindowConfig(bucket_ms=BUCKET_MS, buckets=BUCKETS, histogram_slices=2, ewma_alpha=0.25)
    tracker = PerformanceTracker(window, clock=clock, persist=False)
    tracker.record("m", "r", "t", True, 1.0)
    model = WindowModel(alpha=0.25)
    model.record(START_MS, True, 1.0)
    now = START_MS
    for kind, step_ms, success, latency in ops:
        now = max(0, now + step_ms)
        clock.set(now)
        if kind == "record":
            tracker.record("m", "r", "t", success, latency)
            model.record(now, success, latency)
            continue
        stats = tracker.stats("m")
        expected = model.window(now)
        assert stats.requests == len(expected)
        assert stats.successes == sum(1 for _, ok, _ in expected if ok)
        if expected:
            mean = sum(u for _, _, u in expected) * 0.01 / len(expected)
            assert stats.mean_latency_ms == pytest.approx(mean, rel=1e-12, abs=1e-9)
        else:
            assert stats.mean_latency_ms is None
        assert stats.lifetime_requests == len(model.lifetime)
        assert stats.lifetime_successes == sum(1 for ok, _ in model.lifetime if ok)
        assert stats.ewma_latency_ms == pytest.approx(model.ewma, rel=1e-9)
        assert stats.consistent
