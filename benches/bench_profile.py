"""Profiling a 2 KB prompt: zeta_fast's Rust profiler vs the same work in Python.

The Python contender does the minimum the model needs (lower-case word and
bigram counting with a dict, no hashing or scoring), so the ratio is a floor.
"""

from __future__ import annotations

import re
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from zeta_fast import profile

ROOT = Path(__file__).resolve().parent.parent
PROMPT = (
    "You are given a list of integers. Write a Python function that returns the length of the "
    "longest strictly increasing subsequence, explain why your algorithm is correct step by "
    "step, and analyse its complexity. def lis(xs):\n    tails = []\n    for x in xs:\n"
    "        i = bisect_left(tails, x)\n        tails[i:i + 1] = [x]\n    return len(tails)\n"
) * 8
PROMPT = PROMPT[:2048]
WORD = re.compile(r"\w+")


def python_counts(text: str) -> int:
    words = WORD.findall(text.lower())
    counts = Counter(words)
    counts.update(pairwise(words))
    return len(counts)


@pytest.mark.parametrize("contender", ["zeta_fast.profile", "Python word+bigram counting"])
def bench_profile_2kb(benchmark: BenchmarkFixture, contender: str) -> None:
    benchmark.group = "profile a 2 KB prompt"
    benchmark.name = contender
    assert len(PROMPT) == 2048
    if contender.startswith("zeta_fast"):
        result = benchmark(profile, PROMPT)
        assert result.task_type == "code"
    else:
        assert benchmark(python_counts, PROMPT) > 50
