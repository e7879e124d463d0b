"""Change detectors for one model's outcome stream.

Two tests run on each stream, cheap per observation:

- **sudden**: the last ``window`` observations against the long-run
  baseline (an EWMA frozen while an alarm builds): the failure share over
  the window, or the median log latency, far above it. Fires within about
  half a window of a hard fault.
- **drift**: Page-Hinkley on the same series, standardised for latency: the
  cumulative excess over the baseline plus a tolerance ``delta``, alarmed
  when it climbs ``threshold`` above its minimum. Catches a worsening too
  small for the window test. An alarm raised within ``window`` observations
  of the statistic leaving calm (a quarter of the threshold) is reported as
  sudden, a slower climb as drift.

The baseline follows the stream slowly (``alpha``) and only while neither
test is building towards an alarm, so a fault never becomes the norm. Both
need ``warmup`` observations first; after an alarm the detector restarts
from the new level, so one fault gives one alarm.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

__all__ = ["Change", "LatencyDetector", "SuccessDetector"]


@dataclass(frozen=True, slots=True)
class Change:
    """A detected change: ``kind`` is "sudden" or "drift"."""

    metric: str  # "success" or "latency"
    kind: str
    value: float  # the recent level (failure share, or latency ms)
    baseline: float  # the level before (same unit)


def _tail_mean(values: deque[float], count: int) -> float:
    """The mean of the last ``count`` values (at least one, at most all)."""
    take = max(1, min(count, len(values)))
    return sum(list(values)[-take:]) / take


class _PageHinkley:
    """Page-Hinkley for an increase: alarm when the cumulative excess over
    ``delta`` climbs ``threshold`` above its running minimum."""

    __slots__ = ("cumulative", "delta", "minimum", "since_calm", "threshold")

    def __init__(self, delta: float, threshold: float) -> None:
        self.delta = delta
        self.threshold = threshold
        self.cumulative = 0.0
        self.minimum = 0.0
        #: Observations since the statistic was last calm (under a quarter
        #: of the threshold): how long the change took to raise the alarm.
        self.since_calm = 0

    def step(self, excess: float) -> bool:
        self.cumulative += excess - self.delta
        self.minimum = min(self.minimum, self.cumulative)
        self.since_calm = self.since_calm + 1 if self.building else 0
        return self.cumulative - self.minimum > self.threshold

    @property
    def building(self) -> bool:
        """Whether the statistic is a quarter of the way to an alarm."""
        return self.cumulative - self.minimum > self.threshold / 4

    def reset(self) -> None:
        self.cumulative = self.minimum = 0.0
        self.since_calm = 0


class _Detector:
    """What both detectors keep: the recent window, the warm-up count, the
    baseline's weight and the drift test."""

    def __init__(
        self, window: int, warmup: int, alpha: float, delta: float, threshold: float
    ) -> None:
        if window < 2 or warmup < 1 or not 0.0 < alpha <= 1.0:
            raise ValueError(
                f"need window >= 2, warmup >= 1, 0 < alpha <= 1; got {window}, {warmup}, {alpha}"
            )
        self.window = window
        self.warmup = warmup
        self.alpha = alpha
        self.recent: deque[float] = deque(maxlen=window)
        self.seen = 0
        self.drift = _PageHinkley(delta, threshold)


class SuccessDetector(_Detector):
    """Failures of one model: a sudden jump or a slow rise in their share."""

    def __init__(
        self,
        *,
        window: int = 20,
        warmup: int = 50,
        alpha: float = 0.002,
        sudden_margin: float = 0.25,
        delta: float = 0.05,
        threshold: float = 8.0,
    ) -> None:
        super().__init__(window, warmup, alpha, delta, threshold)
        self.sudden_margin = sudden_margin
        self.baseline = 0.0

    def observe(self, success: bool) -> Change | None:
        failure = 0.0 if success else 1.0
        self.recent.append(failure)
        self.seen += 1
        if self.seen <= self.warmup:
            # The warm-up's mean is the first baseline.
            self.baseline += (failure - self.baseline) / self.seen
            return None
        share = sum(self.recent) / len(self.recent)
        if len(self.recent) == self.window and share >= self.baseline + self.sudden_margin:
            return self._alarm("sudden", share)
        if self.drift.step(failure - self.baseline):
            kind = "sudden" if self.drift.since_calm <= self.window else "drift"
            return self._alarm(kind, _tail_mean(self.recent, self.drift.since_calm))
        if share < self.baseline + self.sudden_margin / 2 and not self.drift.building:
            self.baseline += self.alpha * (failure - self.baseline)
        return None

    def _alarm(self, kind: str, share: float) -> Change:
        change = Change("success", kind, share, self.baseline)
        # Start over from the new level: one alarm per change.
        self.baseline = share
        self.recent.clear()
        self.drift.reset()
        return change


class LatencyDetector(_Detector):
    """Latency of one model, on a log scale: a sudden jump of the recent
    median, or a slow rise (Page-Hinkley on standardised log latency)."""

    def __init__(
        self,
        *,
        window: int = 20,
        warmup: int = 50,
        alpha: float = 0.002,
        sudden_sigmas: float = 4.0,
        sudden_ratio: float = 1.5,
        delta: float = 0.5,
        threshold: float = 25.0,
    ) -> None:
        super().__init__(window, warmup, alpha, delta, threshold)
        self.sudden_sigmas = sudden_sigmas
        self.sudden_log_ratio = math.log(sudden_ratio)
        self.mean = 0.0
        self.variance = 0.0

    def observe(self, latency_ms: float) -> Change | None:
        x = math.log(max(latency_ms, 0.01))
        self.recent.append(x)
        self.seen += 1
        if self.seen <= self.warmup:
            previous = self.mean
            self.mean += (x - previous) / self.seen
            self.variance += ((x - previous) * (x - self.mean) - self.variance) / self.seen
            return None
        sigma = max(math.sqrt(self.variance), 0.05)
        median = sorted(self.recent)[len(self.recent) // 2]
        margin = max(self.sudden_sigmas * sigma, self.sudden_log_ratio)
        if len(self.recent) == self.window and median > self.mean + margin:
            return self._alarm("sudden", median)
        if self.drift.step((x - self.mean) / sigma):
            kind = "sudden" if self.drift.since_calm <= self.window else "drift"
            return self._alarm(kind, _tail_mean(self.recent, self.drift.since_calm))
        if median < self.mean + margin / 2 and not self.drift.building:
            deviation = x - self.mean
            self.mean += self.alpha * deviation
            self.variance += self.alpha * (deviation * deviation - self.variance)
        return None

    def _alarm(self, kind: str, median: float) -> Change:
        change = Change("latency", kind, math.exp(median), math.exp(self.mean))
        self.mean = median
        self.recent.clear()
        self.drift.reset()
        return change
