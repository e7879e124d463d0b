"""The adaptive score restated in plain Python and in NumPy.

Used only to check the Rust core (tests) and as the contenders it is measured
against (benches). Nothing under ``python/`` may import this: the formula
lives once, in Rust.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Params:
    """The scorer configuration, as plain floats."""

    capability_weight: float = 0.60
    success_rate_weight: float = 0.25
    latency_weight: float = 0.15
    min_acceptable_success_rate: float = 0.90
    max_acceptable_latency_ms: float = 500.0
    min_requests_for_performance: int = 10
    low_success_rate_penalty: float = 0.5
    high_latency_penalty: float = 0.8


def is_valid(capability: float, success_rate: float, latency_ms: float, requests: float) -> bool:
    """The input domain the scorer accepts."""
    return (
        0.0 <= capability <= 100.0
        and 0.0 <= success_rate <= 1.0
        and 0.0 <= latency_ms < math.inf
        and 0.0 <= requests < math.inf
    )


def latency_score(latency_ms: float, p: Params = Params()) -> float:
    raw = 100.0 - latency_ms / (2.0 * p.max_acceptable_latency_ms) * 100.0
    return min(max(raw, 0.0), 100.0)


def score(
    capability: float, success_rate: float, latency_ms: float, requests: float, p: Params = Params()
) -> float:
    """The final score of one candidate, written as the specification reads."""
    if requests < p.min_requests_for_performance:
        return capability
    performance = (
        capability * p.capability_weight
        + success_rate * 100.0 * p.success_rate_weight
        + latency_score(latency_ms, p) * p.latency_weight
    )
    if success_rate < p.min_acceptable_success_rate:
        performance *= p.low_success_rate_penalty
    if latency_ms > p.max_acceptable_latency_ms:
        performance *= p.high_latency_penalty
    return performance


def penalties(
    success_rate: float, latency_ms: float, requests: float, p: Params = Params()
) -> tuple[str, ...]:
    if requests < p.min_requests_for_performance:
        return ()
    names = []
    if success_rate < p.min_acceptable_success_rate:
        names.append("low_success_rate")
    if latency_ms > p.max_acceptable_latency_ms:
        names.append("high_latency")
    return tuple(names)


def best_python(
    capability: Sequence[float],
    success_rate: Sequence[float],
    latency_ms: Sequence[float],
    requests: Sequence[float],
    p: Params = Params(),
) -> int:
    """The tuned pure-Python decision: one inlined loop, locals hoisted, no
    function call per candidate. Ties go to the lowest index."""
    cw = p.capability_weight
    sw = p.success_rate_weight * 100.0
    lw = p.latency_weight
    min_rate = p.min_acceptable_success_rate
    max_latency = p.max_acceptable_latency_ms
    two_max = 2.0 * max_latency
    min_requests = p.min_requests_for_performance
    low_rate = p.low_success_rate_penalty
    high_latency = p.high_latency_penalty
    best_index = -1
    best_score = -math.inf
    rows = zip(capability, success_rate, latency_ms, requests, strict=True)
    for index, (cap, rate, latency, count) in enumerate(rows):
        if count < min_requests:
            value = cap
        else:
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
    if best_index < 0:
        raise ValueError("best_python needs at least one candidate")
    return best_index


def score_numpy(
    capability: FloatArray,
    success_rate: FloatArray,
    latency_ms: FloatArray,
    requests: npt.NDArray[np.generic],
    p: Params = Params(),
) -> FloatArray:
    """The vectorised NumPy restatement (any shape)."""
    lat_score = np.clip(
        100.0 - latency_ms / (2.0 * p.max_acceptable_latency_ms) * 100.0, 0.0, 100.0
    )
    performance = (
        capability * p.capability_weight
        + success_rate * 100.0 * p.success_rate_weight
        + lat_score * p.latency_weight
    )
    factor = np.where(success_rate < p.min_acceptable_success_rate, p.low_success_rate_penalty, 1.0)
    factor = factor * np.where(
        latency_ms > p.max_acceptable_latency_ms, p.high_latency_penalty, 1.0
    )
    result: FloatArray = np.where(
        requests >= p.min_requests_for_performance, performance * factor, capability
    )
    return result


def best_numpy(
    capability: FloatArray,
    success_rate: FloatArray,
    latency_ms: FloatArray,
    requests: npt.NDArray[np.generic],
    p: Params = Params(),
) -> int:
    """argmax of the NumPy scores (argmax returns the first of ties)."""
    return int(np.argmax(score_numpy(capability, success_rate, latency_ms, requests, p)))
