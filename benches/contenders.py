"""The contenders every benchmark compares, built once per scenario.

zeta_fast against the references in ``tests/reference.py``: a tuned pure-Python
loop (one inlined loop over lists, its natural input) and NumPy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tests import reference

from zeta_fast import AdaptiveScorer


@dataclass(frozen=True)
class Inputs:
    capability: np.ndarray
    success_rate: np.ndarray
    avg_latency_ms: np.ndarray
    requests: np.ndarray

    def as_lists(self) -> tuple[list[float], list[float], list[float], list[int]]:
        return (
            self.capability.tolist(),
            self.success_rate.tolist(),
            self.avg_latency_ms.tolist(),
            self.requests.tolist(),
        )


def make_inputs(shape: int | tuple[int, ...], seed: int = 42) -> Inputs:
    """Realistic live metrics: most candidates healthy, some slow or failing."""
    rng = np.random.default_rng(seed)
    return Inputs(
        capability=rng.uniform(60.0, 95.0, shape),
        success_rate=rng.choice([0.99, 0.97, 0.85, 0.6], size=shape) - rng.uniform(0, 0.02, shape),
        avg_latency_ms=rng.lognormal(np.log(200.0), 0.6, shape),
        requests=rng.integers(0, 500, shape),
    )


Contender = tuple[Callable[..., object], tuple[object, ...]]
"""A function and the arguments to call it with: benchmarks call ``fn(*args)``
directly, so no wrapper adds its own call to what is measured."""


def decision_contenders(n: int) -> dict[str, Contender]:
    """One routing decision over ``n`` candidates, each contender in its best form."""
    data = make_inputs(n)
    scorer = AdaptiveScorer()
    lists = data.as_lists()
    cap, rate, latency, requests = (
        data.capability,
        data.success_rate,
        data.avg_latency_ms,
        data.requests,
    )
    best_python = reference.best_python
    best_numpy = reference.best_numpy
    expected = best_python(*lists)
    assert scorer.best(cap, rate, latency, requests) == expected
    assert best_numpy(cap, rate, latency, requests) == expected
    arrays = (cap, rate, latency, requests)
    return {
        "zeta_fast.best (numpy arrays)": (scorer.best, arrays),
        "zeta_fast.best (lists)": (scorer.best, lists),
        "pure Python, tuned loop (lists)": (best_python, lists),
        "NumPy reference (arrays)": (best_numpy, arrays),
    }


def batch_contenders(n: int) -> dict[str, Contender]:
    """Scoring ``n`` candidates at once."""
    data = make_inputs(n)
    scorer = AdaptiveScorer()
    args = (data.capability, data.success_rate, data.avg_latency_ms, data.requests)
    np.testing.assert_allclose(scorer.score_many(*args), reference.score_numpy(*args), atol=1e-9)
    return {
        "zeta_fast.score_many": (scorer.score_many, args),
        "NumPy reference": (reference.score_numpy, args),
    }
