"""Change detectors for one model's outcome stream (native: ``zeta_fast._core``).

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

The detectors live in Rust (``rust/src/trends.rs``) beside the windows: a
router's :class:`TrendWatch` (``RouterCore.watch_trends``) holds one pair per
model and per model x task type, and the core feeds it as it records each
outcome, with no Python call. ``SuccessDetector(window=20, warmup=50,
alpha=0.002, sudden_margin=0.25, delta=0.05, threshold=8.0)`` and
``LatencyDetector(window=20, warmup=50, alpha=0.002, sudden_sigmas=4.0,
sudden_ratio=1.5, delta=0.5, threshold=25.0)`` are single detectors, for
direct use; ``observe`` returns the :class:`Change` an observation
completes, or None.
"""

from __future__ import annotations

from zeta_fast._core import Change, LatencyDetector, SuccessDetector, TrendWatch

__all__ = ["Change", "LatencyDetector", "SuccessDetector", "TrendWatch"]
