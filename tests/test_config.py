"""AdaptiveConfig: defaults, validation that names field and value, round trips."""

from __future__ import annotations

import copy
import math
import pickle

import pytest

from zeta_fast import AdaptiveConfig, ConfigError

DEFAULTS = {
    "capability_weight": 0.60,
    "success_rate_weight": 0.25,
    "latency_weight": 0.15,
    "min_acceptable_success_rate": 0.90,
    "max_acceptable_latency_ms": 500.0,
    "min_requests_for_performance": 10,
    "low_success_rate_penalty": 0.5,
    "high_latency_penalty": 0.8,
}


def test_defaults_match_the_specification() -> None:
    assert AdaptiveConfig().to_dict() == DEFAULTS
    config = AdaptiveConfig()
    for name, value in DEFAULTS.items():
        assert getattr(config, name) == value


def test_round_trip_through_dict_and_pickle() -> None:
    config = AdaptiveConfig(max_acceptable_latency_ms=250, min_requests_for_performance=20)
    assert AdaptiveConfig.from_dict(config.to_dict()) == config
    assert pickle.loads(pickle.dumps(config)) == config
    assert copy.deepcopy(config) == config
    assert hash(AdaptiveConfig.from_dict(config.to_dict())) == hash(config)
    assert config != AdaptiveConfig()


def test_from_dict_fills_defaults() -> None:
    assert AdaptiveConfig.from_dict({}) == AdaptiveConfig()


def test_is_immutable() -> None:
    config = AdaptiveConfig()
    with pytest.raises(AttributeError):
        config.capability_weight = 0.5  # type: ignore[misc]


def test_replace_validates_again() -> None:
    config = AdaptiveConfig().replace(max_acceptable_latency_ms=100.0)
    assert config.max_acceptable_latency_ms == 100.0
    with pytest.raises(ConfigError, match="max_acceptable_latency_ms"):
        config.replace(max_acceptable_latency_ms=-1.0)
    with pytest.raises(ConfigError, match='AdaptiveConfig has no field "latency"'):
        config.replace(latency=1.0)


def test_weights_may_sum_to_one_within_a_hundredth() -> None:
    AdaptiveConfig(capability_weight=0.33, success_rate_weight=0.33, latency_weight=0.34)
    AdaptiveConfig(capability_weight=0.605)
    with pytest.raises(ConfigError) as info:
        AdaptiveConfig(capability_weight=0.7)
    message = str(info.value)
    assert "capability_weight + success_rate_weight + latency_weight" in message
    assert "1.0 within 0.01" in message
    assert "1.09" in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("capability_weight", -0.1, "finite and >= 0"),
        ("capability_weight", math.nan, "finite and >= 0"),
        ("success_rate_weight", math.inf, "finite and >= 0"),
        ("latency_weight", -math.inf, "finite and >= 0"),
        ("min_acceptable_success_rate", 0.0, "in (0, 1]"),
        ("min_acceptable_success_rate", 1.01, "in (0, 1]"),
        ("min_acceptable_success_rate", math.nan, "in (0, 1]"),
        ("max_acceptable_latency_ms", 0.0, "finite and > 0"),
        ("max_acceptable_latency_ms", math.inf, "finite and > 0"),
        ("max_acceptable_latency_ms", math.nan, "finite and > 0"),
        ("min_requests_for_performance", 0, "an integer >= 1"),
        ("low_success_rate_penalty", 0.0, "in (0, 1]"),
        ("low_success_rate_penalty", 1.5, "in (0, 1]"),
        ("high_latency_penalty", math.nan, "in (0, 1]"),
    ],
)
def test_bad_values_name_field_and_value(field: str, value: float, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        AdaptiveConfig(**{field: value})
    message = str(info.value)
    assert message.startswith(field), message
    assert expected in message
    assert repr(value) in message or str(value) in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("capability_weight", "0.6"),
        ("latency_weight", b"0.15"),
        ("max_acceptable_latency_ms", True),
        ("min_requests_for_performance", 10.0),
        ("min_requests_for_performance", "10"),
        ("high_latency_penalty", [0.8]),
    ],
)
def test_wrong_types_are_type_errors(field: str, value: object) -> None:
    with pytest.raises(TypeError) as info:
        AdaptiveConfig(**{field: value})  # type: ignore[arg-type]
    assert str(info.value).startswith(f"{field} must be")
    assert repr(value) in str(info.value)


def test_negative_count_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="min_requests_for_performance must be an integer >= 0"):
        AdaptiveConfig(min_requests_for_performance=-1)


def test_unknown_and_non_string_keys() -> None:
    with pytest.raises(ConfigError, match='AdaptiveConfig has no field "capability"'):
        AdaptiveConfig.from_dict({"capability": 1.0})
    with pytest.raises(TypeError, match="keys must be strings"):
        AdaptiveConfig.from_dict({1: 1.0})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="expects a dict, got list"):
        AdaptiveConfig.from_dict([("latency_weight", 0.15)])  # type: ignore[arg-type]


def test_repr_round_trips_through_eval() -> None:
    config = AdaptiveConfig(max_acceptable_latency_ms=321.5)
    assert eval(repr(config), {"AdaptiveConfig": AdaptiveConfig}) == config
