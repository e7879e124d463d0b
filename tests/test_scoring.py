"""The scorer's specification: worked examples, penalties, the breakdown record."""

from __future__ import annotations

import json

import pytest

from zeta_fast import AdaptiveConfig, AdaptiveScorer, InvalidInputError, ZetaError

TOL = 1e-9


@pytest.fixture
def scorer() -> AdaptiveScorer:
    return AdaptiveScorer()


def test_reliable_fast_model_gains_over_capability(scorer: AdaptiveScorer) -> None:
    b = scorer.score(85, 0.99, 120, 100)
    assert b.latency_score == pytest.approx(88.0, abs=TOL)
    assert b.performance_score == pytest.approx(88.95, abs=TOL)
    assert b.performance_adjustment == pytest.approx(3.95, abs=TOL)
    assert b.has_performance_data is True
    assert b.penalties == ()
    assert b.penalty_factor == 1.0


def test_unreliable_model_is_halved(scorer: AdaptiveScorer) -> None:
    b = scorer.score(88, 0.60, 450, 100)
    assert b.blended_score == pytest.approx(76.05, abs=TOL)
    assert b.performance_score == pytest.approx(38.025, abs=TOL)
    assert b.performance_adjustment == pytest.approx(-49.975, abs=TOL)
    assert b.penalties == ("low_success_rate",)
    assert b.penalty_factor == 0.5


@pytest.mark.parametrize(
    ("latency_ms", "expected"), [(0, 100.0), (250, 75.0), (500, 50.0), (1000, 0.0), (5000, 0.0)]
)
def test_latency_score_scale(scorer: AdaptiveScorer, latency_ms: float, expected: float) -> None:
    assert scorer.score(50, 1.0, latency_ms, 100).latency_score == pytest.approx(expected, abs=TOL)


def test_nine_requests_means_capability_only(scorer: AdaptiveScorer) -> None:
    b = scorer.score(70, 0.10, 4000, 9)
    assert b.has_performance_data is False
    assert b.performance_score == 70.0
    assert b.performance_adjustment == 0.0
    assert b.penalties == ()
    assert scorer.score(70, 0.10, 4000, 10).has_performance_data is True


def test_penalties_compound(scorer: AdaptiveScorer) -> None:
    b = scorer.score(80, 0.5, 800, 50)
    assert b.penalties == ("low_success_rate", "high_latency")
    assert b.penalty_factor == pytest.approx(0.4, abs=TOL)
    assert b.performance_score == pytest.approx(b.blended_score * 0.4, abs=TOL)


def test_only_latency_penalty(scorer: AdaptiveScorer) -> None:
    b = scorer.score(85, 0.97, 700, 250)
    assert b.penalties == ("high_latency",)
    expected = (85 * 0.6 + 97 * 0.25 + 30 * 0.15) * 0.8
    assert b.performance_score == pytest.approx(expected, abs=TOL)


def test_thresholds_are_strict_inequalities(scorer: AdaptiveScorer) -> None:
    assert scorer.score(80, 0.90, 500, 10).penalties == ()


def test_custom_penalty_factors_apply() -> None:
    config = AdaptiveConfig(low_success_rate_penalty=0.25, high_latency_penalty=1.0)
    b = AdaptiveScorer(config).score(80, 0.5, 800, 50)
    assert b.penalty_factor == pytest.approx(0.25)
    assert AdaptiveScorer(config).config == config


def test_breakdown_serialises_to_json(scorer: AdaptiveScorer) -> None:
    record = json.loads(json.dumps(scorer.score(88, 0.60, 450, 100).to_dict()))
    assert record["penalties"] == ["low_success_rate"]
    assert record["performance_score"] == pytest.approx(38.025)
    assert record["requests"] == 100
    expected_keys = {
        "capability_score",
        "performance_score",
        "performance_adjustment",
        "has_performance_data",
        "success_rate",
        "avg_latency_ms",
        "requests",
        "latency_score",
        "blended_score",
        "penalty_factor",
        "penalties",
    }
    assert set(record) == expected_keys


def test_breakdown_repr_reads_like_python(scorer: AdaptiveScorer) -> None:
    text = repr(scorer.score(88, 0.60, 450, 100))
    assert "penalties=('low_success_rate',)" in text
    assert "has_performance_data=True" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((101, 0.9, 100, 10), "capability must be in [0, 100], got 101.0"),
        ((-1, 0.9, 100, 10), "capability must be in [0, 100], got -1.0"),
        ((50, 1.5, 100, 10), "success_rate must be in [0, 1], got 1.5"),
        ((50, float("nan"), 100, 10), "success_rate must be in [0, 1], got nan"),
        ((50, 0.9, float("inf"), 10), "avg_latency_ms must be finite and >= 0, got inf"),
        ((50, 0.9, -5, 10), "avg_latency_ms must be finite and >= 0, got -5.0"),
    ],
)
def test_bad_values_raise_value_errors_naming_field_and_value(
    scorer: AdaptiveScorer, args: tuple[float, float, float, int], message: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        scorer.score(*args)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ZetaError)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("85", 0.9, 100, 10), "capability must be a number, got str: '85'"),
        ((85, None, 100, 10), "success_rate must be a number, got NoneType: None"),
        ((85, 0.9, True, 10), "avg_latency_ms must be a number, got bool: True"),
        ((85, 0.9, 100, 10.0), "requests must be an integer, got float: 10.0"),
        ((85, 0.9, 100, "10"), "requests must be an integer, got str: '10'"),
    ],
)
def test_wrong_types_raise_type_errors(
    scorer: AdaptiveScorer, args: tuple[object, ...], message: str
) -> None:
    with pytest.raises(TypeError) as info:
        scorer.score(*args)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_negative_request_count_is_a_value_error(scorer: AdaptiveScorer) -> None:
    with pytest.raises(ValueError, match=r"requests must be an integer >= 0, got -3"):
        scorer.score(50, 0.9, 100, -3)


def test_numpy_scalars_are_accepted(scorer: AdaptiveScorer) -> None:
    import numpy as np

    b = scorer.score(np.float64(85), np.float32(0.99), np.int64(120), np.int64(100))
    assert b.performance_score == pytest.approx(88.95, abs=1e-6)


def test_scorer_rejects_a_non_config(scorer: AdaptiveScorer) -> None:
    with pytest.raises(TypeError, match="config must be an AdaptiveConfig, got dict"):
        AdaptiveScorer({"capability_weight": 0.6})  # type: ignore[arg-type]
    assert "AdaptiveScorer(AdaptiveConfig(" in repr(scorer)
