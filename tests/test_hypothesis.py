"""Property tests: the Rust scorer against the plain-Python and NumPy restatements.

Hypothesis drives both with the same inputs, boundaries, NaN, inf, empty
batches and mismatched lengths included.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from tests import reference
from zeta_fast import (
    AdaptiveConfig,
    AdaptiveScorer,
    ConfigError,
    InvalidInputError,
    NoCandidatesError,
)

capabilities = st.floats(0.0, 100.0)
rates = st.floats(0.0, 1.0)
latencies = st.one_of(st.floats(0.0, 1e6), st.sampled_from([0.0, 500.0, 1000.0]))
counts = st.integers(0, 10**9)
anything = st.floats(allow_nan=True, allow_infinity=True)

# Keeps property tests quick in CI while still exploring several hundred cases.
settings.register_profile("ci", max_examples=300, deadline=None)
settings.load_profile("ci")


@st.composite
def configs(draw: st.DrawFn) -> tuple[AdaptiveConfig, reference.Params]:
    """Valid configurations: weights that sum to 1, thresholds in range."""
    raw = draw(st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3))
    total = sum(raw)
    assume(total > 1e-6)
    weights = [w / total for w in raw]
    fields = {
        "capability_weight": weights[0],
        "success_rate_weight": weights[1],
        "latency_weight": weights[2],
        "min_acceptable_success_rate": draw(st.floats(0.01, 1.0)),
        "max_acceptable_latency_ms": draw(st.floats(1.0, 1e5)),
        "min_requests_for_performance": draw(st.integers(1, 1000)),
        "low_success_rate_penalty": draw(st.floats(0.01, 1.0)),
        "high_latency_penalty": draw(st.floats(0.01, 1.0)),
    }
    return AdaptiveConfig(**fields), reference.Params(**fields)


@st.composite
def batches(
    draw: st.DrawFn, min_size: int = 0
) -> tuple[list[float], list[float], list[float], list[int]]:
    n = draw(st.integers(min_size, 40))
    return (
        draw(st.lists(capabilities, min_size=n, max_size=n)),
        draw(st.lists(rates, min_size=n, max_size=n)),
        draw(st.lists(latencies, min_size=n, max_size=n)),
        draw(st.lists(counts, min_size=n, max_size=n)),
    )


@given(configs(), capabilities, rates, latencies, counts)
def test_single_score_matches_reference(
    config: tuple[AdaptiveConfig, reference.Params],
    capability: float,
    rate: float,
    latency: float,
    requests: int,
) -> None:
    ours, params = config
    b = AdaptiveScorer(ours).score(capability, rate, latency, requests)
    expected = reference.score(capability, rate, latency, requests, params)
    assert b.performance_score == pytest.approx(expected, rel=1e-12, abs=1e-9)
    assert b.penalties == reference.penalties(rate, latency, requests, params)
    assert b.has_performance_data == (requests >= params.min_requests_for_performance)
    assert b.latency_score == pytest.approx(reference.latency_score(latency, params), abs=1e-9)
    assert b.performance_adjustment == pytest.approx(expected - capability, abs=1e-9)


@given(configs(), batches())
def test_batch_matches_both_references(
    config: tuple[AdaptiveConfig, reference.Params],
    batch: tuple[list[float], list[float], list[float], list[int]],
) -> None:
    ours, params = config
    cap, rate, latency, requests = batch
    got = AdaptiveScorer(ours).score_many(
        np.array(cap, dtype=np.float64),
        np.array(rate, dtype=np.float64),
        np.array(latency, dtype=np.float64),
        np.array(requests, dtype=np.int64),
    )
    plain = [
        reference.score(*row, params) for row in zip(cap, rate, latency, requests, strict=True)
    ]
    np.testing.assert_allclose(got, plain, rtol=1e-12, atol=1e-9)
    vectorised = reference.score_numpy(
        np.array(cap), np.array(rate), np.array(latency), np.array(requests), params
    )
    np.testing.assert_allclose(got, vectorised, rtol=1e-12, atol=1e-9)


@given(configs(), batches(min_size=1))
def test_best_is_the_first_maximum(
    config: tuple[AdaptiveConfig, reference.Params],
    batch: tuple[list[float], list[float], list[float], list[int]],
) -> None:
    ours, params = config
    scorer = AdaptiveScorer(ours)
    index = scorer.best(*batch)
    scores = scorer.score_many(*batch)
    # The chosen one has the top score, and nobody before it ties.
    assert scores[index] == scores.max()
    assert all(s < scores[index] for s in scores[:index])
    assert index == reference.best_python(*batch, params)


@given(batches(min_size=1), st.sampled_from([0, 1, 2, 3]), st.data())
def test_any_bad_value_is_reported_not_scored(
    batch: tuple[list[float], list[float], list[float], list[int]],
    column: int,
    data: st.DataObject,
) -> None:
    columns = [list(map(float, values)) for values in batch]
    position = data.draw(st.integers(0, len(columns[0]) - 1))
    bad = data.draw(anything)
    columns[column][position] = bad
    row = [c[position] for c in columns]
    assume(not reference.is_valid(*row))
    field = ["capability", "success_rate", "avg_latency_ms", "requests"][column]
    scorer = AdaptiveScorer()
    arrays = [np.array(c, dtype=np.float64) for c in columns]
    with pytest.raises(InvalidInputError) as info:
        scorer.score_many(*arrays)
    assert str(info.value).startswith(f"{field}[{position}] must be")
    with pytest.raises(InvalidInputError):
        scorer.best(*arrays)
    if column < 3:
        scalar = [c[position] for c in columns[:3]]
        with pytest.raises(InvalidInputError) as info:
            scorer.score(*scalar, 10)
        assert str(info.value).startswith(f"{field} must be")
        bad_repr = "nan" if math.isnan(bad) else repr(bad)
        assert str(info.value).endswith(bad_repr)


@given(st.integers(0, 20), st.integers(0, 20), st.sampled_from([1, 2, 3]))
def test_mismatched_lengths_are_errors_never_truncation(n: int, m: int, column: int) -> None:
    assume(n != m)
    arrays = [np.ones(n) for _ in range(4)]
    arrays[column] = np.ones(m)
    field = ["capability", "success_rate", "avg_latency_ms", "requests"][column]
    with pytest.raises(
        InvalidInputError, match=f"{field} has shape \\({m},\\), expected \\({n},\\)"
    ):
        AdaptiveScorer().score_many(*arrays)


def test_empty_batch_scores_to_empty_and_has_no_best() -> None:
    empty = np.empty(0)
    assert AdaptiveScorer().score_many(empty, empty, empty, empty).shape == (0,)
    with pytest.raises(NoCandidatesError):
        AdaptiveScorer().best(empty, empty, empty, empty)


@given(st.one_of(st.floats(max_value=0.0), st.just(math.nan), st.just(math.inf)))
@example(-70368744177664.62)  # an exact tie: Python takes the even candidate
@example(-5.960464477539063e-08)  # a tie where only the upper candidate reads back
@example(-1e16)
@example(-1e-05)
def test_error_messages_print_floats_as_python_does(value: float) -> None:
    # The core formats floats itself; they must read exactly as repr() would.
    with pytest.raises(ConfigError) as info:
        AdaptiveConfig(max_acceptable_latency_ms=value)
    assert str(info.value) == f"max_acceptable_latency_ms must be finite and > 0, got {value!r}"
