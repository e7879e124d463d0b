"""One routing decision: zeta_fast vs a tuned pure-Python loop vs NumPy.

Run with ``make bench`` (or ``pytest benches --benchmark-enable``); the
interleaved same-run ratios for reports come from ``python -m benches.compare``.
"""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benches.contenders import decision_contenders

CASES = [(n, name) for n in (8, 64) for name in decision_contenders(n)]
#: The contender every other one must agree with: the plain loop of tests/reference.py.
REFERENCE = "pure Python, tuned loop (lists)"


@pytest.mark.parametrize(("n", "contender"), CASES)
def bench_best(benchmark: BenchmarkFixture, n: int, contender: str) -> None:
    benchmark.group = f"best over {n} candidates"
    benchmark.name = contender
    contenders = decision_contenders(n)
    fn, args = contenders[contender]
    result = benchmark(fn, *args)
    reference_fn, reference_args = contenders[REFERENCE]
    # Every contender sees the same candidates, so they must pick the same one.
    assert result == reference_fn(*reference_args)
