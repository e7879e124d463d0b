"""The router configuration: real files, every error with its path and value."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from zeta_fast import AdaptiveConfig, ConfigError, WindowConfig
from zeta_fast.config import load_router_config, parse_router_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "router.yaml"


def example() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    assert isinstance(data, dict)
    return data


def test_example_loads_from_yaml_toml_and_json(tmp_path: Path) -> None:
    config = load_router_config(EXAMPLE)
    assert [m.id for m in config.models] == ["coder-7b", "embedder-4b", "reasoner-14b"]
    assert config.models[2].replicas[1].backend == "vllm"
    assert config.adaptive_config() == AdaptiveConfig(max_acceptable_latency_ms=800)
    assert config.window_config() == WindowConfig()
    assert config.complexity_range("reasoner-14b") == (0.4, 1.0)
    assert config.complexity_range("reasoner-14b", "interactive") == (0.7, 1.0)
    assert config.complexity_range("coder-7b", "interactive") == (0.0, 0.6)
    as_json = tmp_path / "router.json"
    as_json.write_text(json.dumps(example()))
    assert load_router_config(as_json) == config


def mutate(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(example())
    target: Any = data
    parts = path.replace("]", "").replace("[", ".").split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "models[2].replicas[0].url",
            "not a url",
            "models[2].replicas[0].url: Input should be a valid URL",
        ),
        (
            "models[0].replicas[1].backend",
            "tgi",
            "models[0].replicas[1].backend: Input should be 'llamacpp', 'vllm' or 'openai'",
        ),
        (
            "models[0].replicas[0].max_concurrency",
            -1,
            "models[0].replicas[0].max_concurrency: "
            "Input should be greater than or equal to 0 (got -1)",
        ),
        (
            "models[1].capabilities.embedding",
            120,
            "models[1].capabilities.embedding: Input should be less than or equal to 100 (got 120)",
        ),
        ("models[0].capabilities", {"poetry": 50}, "unknown task type(s) poetry"),
        ("models[0].complexity_range", [0.8, 0.2], "must be [low, high] with low <= high"),
        (
            "models[0].complexity_range",
            [0.0, 1.5],
            "models[0].complexity_range[1]: Input should be less than or equal to 1",
        ),
        (
            "models[0].cost_per_1k_tokens",
            float("nan"),
            "models[0].cost_per_1k_tokens: Input should be a finite number",
        ),
        ("models[0].replicas", [], "models[0].replicas: List should have at least 1 item"),
        ("models[1].id", "coder-7b", "duplicate model id(s) coder-7b"),
        (
            "models[1].replicas[0].id",
            "coder-7b-a",
            "replica id(s) used by several models: coder-7b-a",
        ),
        (
            "contexts.interactive.complexity_ranges",
            {"ghost": [0, 1]},
            "names unknown model 'ghost'",
        ),
        ("models[0].colour", "blue", "models[0].colour: Extra inputs are not permitted"),
        (
            "scoring",
            {"capability_weight": 0.9},
            "scoring.capability_weight + success_rate_weight + latency_weight",
        ),
        ("window", {"histogram_slices": 7}, "window.histogram_slices must be an integer >= 1"),
        ("model_ordering", "fastest", "model_ordering: Input should be 'spread' or 'by_score'"),
        (
            "replica_policy",
            "random",
            "replica_policy: Input should be 'least_loaded', 'power_of_two', 'round_robin' "
            "or 'cache_aware'",
        ),
    ],
)
def test_errors_name_the_path_and_the_value(path: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_router_config(mutate(path, value))
    assert message in str(info.value)


def test_several_problems_are_listed_together() -> None:
    data = mutate("models[0].replicas[0].url", "nope")
    data["models"][1]["replicas"][0]["max_concurrency"] = "lots"
    with pytest.raises(ConfigError) as info:
        parse_router_config(data)
    text = str(info.value)
    assert "models[0].replicas[0].url" in text
    assert "models[1].replicas[0].max_concurrency" in text


def test_the_config_is_immutable() -> None:
    config = load_router_config(EXAMPLE)
    with pytest.raises(ValueError, match="frozen"):
        config.models[0].id = "other"  # type: ignore[misc]


def test_missing_file_and_bad_syntax(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_router_config(tmp_path / "none.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_router_config(broken)
