"""Typed use of the public API: mypy --strict reads this file in CI, pytest runs it."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from zeta_fast import AdaptiveConfig, AdaptiveScorer, ScoreBreakdown


def choose(scorer: AdaptiveScorer, capability: npt.NDArray[np.float64]) -> int:
    ones = np.ones_like(capability)
    index: int = scorer.best(capability, ones, ones * 100.0, np.full(capability.shape, 50))
    return index


def test_typed_usage() -> None:
    config: AdaptiveConfig = AdaptiveConfig(max_acceptable_latency_ms=300.0)
    scorer = AdaptiveScorer(config)
    breakdown: ScoreBreakdown = scorer.score(85.0, 0.99, 120.0, 100)
    penalties: tuple[str, ...] = breakdown.penalties
    scores: npt.NDArray[np.float64] = scorer.score_many([85.0], [0.99], [120.0], [100])
    rows: npt.NDArray[np.int64] = scorer.best_per_row(
        np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 3)), np.ones((2, 3))
    )
    assert penalties == ()
    assert scores.shape == (1,)
    assert rows.tolist() == [0, 0]
    assert choose(scorer, np.array([10.0, 30.0, 20.0])) == 1
    as_dict: dict[str, float | int] = config.to_dict()
    assert AdaptiveConfig.from_dict(dict(as_dict)) == config
