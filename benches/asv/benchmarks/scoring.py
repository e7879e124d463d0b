"""asv benchmarks: the scorer's history across commits.

    cd benches/asv && asv run --python=same --quick    # the installed build, now
    cd benches/asv && asv continuous main HEAD         # two commits, built by asv

Same-run ratios against the references live in ``benches/compare.py``; these
track zeta_fast's own figures over time.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from zeta_fast import AdaptiveScorer


def _inputs(shape: int | tuple[int, ...]) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(42)
    return (
        rng.uniform(60.0, 95.0, shape),
        rng.uniform(0.5, 1.0, shape),
        rng.lognormal(np.log(200.0), 0.6, shape),
        rng.integers(0, 500, shape),
    )


class Decision:
    params: ClassVar[list[int]] = [8, 64]
    param_names: ClassVar[list[str]] = ["candidates"]

    def setup(self, candidates: int) -> None:
        self.scorer = AdaptiveScorer()
        self.args = _inputs(candidates)
        self.lists = tuple(a.tolist() for a in self.args)

    def time_best_arrays(self, candidates: int) -> None:
        self.scorer.best(*self.args)

    def time_best_lists(self, candidates: int) -> None:
        self.scorer.best(*self.lists)


class Batch:
    params: ClassVar[list[int]] = [1_000, 1_000_000]
    param_names: ClassVar[list[str]] = ["candidates"]

    def setup(self, candidates: int) -> None:
        self.scorer = AdaptiveScorer()
        self.args = _inputs(candidates)

    def time_score_many(self, candidates: int) -> None:
        self.scorer.score_many(*self.args)

    def time_score_many_gil_held(self, candidates: int) -> None:
        self.scorer.score_many(*self.args, release_gil=False)


class Breakdown:
    def setup(self) -> None:
        self.scorer = AdaptiveScorer()

    def time_score_one(self) -> None:
        self.scorer.score(85.0, 0.99, 120.0, 100)
