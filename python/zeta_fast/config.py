"""The router's configuration: models, their replicas, and request contexts.

Read from YAML, TOML or JSON and validated as a whole; every error names the
path of the bad value (``models[2].replicas[0].url``) and the value::

    scoring:                      # AdaptiveConfig fields, optional
      max_acceptable_latency_ms: 800
    window:                       # WindowConfig fields, optional
      buckets: 60
    replica_policy: power_of_two  # or least_loaded
    contexts:                     # named request contexts, optional
      interactive:
        complexity_ranges:        # per model, overriding its own range
          reasoner-14b: [0.6, 1.0]
    models:
      - id: coder-7b
        capabilities: {code: 90, chat: 70}   # 0..100 per task type
        complexity_range: [0.0, 0.6]         # the requests it suits
        cost_per_1k_tokens: 0.0002
        replicas:
          - id: coder-7b-a
            url: http://127.0.0.1:8001
            backend: llamacpp                # or vllm
            max_concurrency: 4               # 0 = unlimited

A model serves the task types it has a capability for; among those, the ones
whose complexity range (in the request's context) contains the request's
complexity are the candidates, and all capable models when none does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    field_validator,
    model_validator,
)

from zeta_fast._core import AdaptiveConfig, WindowConfig
from zeta_fast.exceptions import ConfigError
from zeta_fast.scoring_file import load_document

__all__ = [
    "ContextSpec",
    "ModelSpec",
    "ReplicaSpec",
    "RouterConfig",
    "load_router_config",
    "parse_router_config",
]

TASK_TYPES = ("code", "reasoning", "chat", "knowledge", "embedding")
Capability = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]
Complexity = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/@+-]+$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class ReplicaSpec(_Frozen):
    """One serving endpoint of a model."""

    id: Name
    url: HttpUrl
    backend: Literal["llamacpp", "vllm"] = "llamacpp"
    max_concurrency: Annotated[int, Field(ge=0, le=1_000_000)] = 0


class ModelSpec(_Frozen):
    """A model: what it is good at, the requests it suits, its replicas."""

    id: Name
    capabilities: dict[str, Capability] = Field(min_length=1)
    complexity_range: tuple[Complexity, Complexity] = (0.0, 1.0)
    cost_per_1k_tokens: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0
    replicas: list[ReplicaSpec] = Field(min_length=1)

    @field_validator("capabilities")
    @classmethod
    def _known_tasks(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(TASK_TYPES))
        if unknown:
            raise ValueError(
                f"unknown task type(s) {', '.join(unknown)}; expected {', '.join(TASK_TYPES)}"
            )
        return value

    @field_validator("complexity_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"must be [low, high] with low <= high, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _unique_replicas(self) -> ModelSpec:
        ids = [r.id for r in self.replicas]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate replica id(s) {', '.join(duplicates)}")
        return self


class ContextSpec(_Frozen):
    """A named request context with its own complexity ranges per model."""

    complexity_ranges: dict[str, tuple[Complexity, Complexity]] = Field(default_factory=dict)


class RouterConfig(_Frozen):
    """The whole configuration, validated; build with ``load_router_config``."""

    models: list[ModelSpec] = Field(min_length=1)
    contexts: dict[str, ContextSpec] = Field(default_factory=dict)
    replica_policy: Literal["least_loaded", "power_of_two"] = "power_of_two"
    scoring: dict[str, Any] = Field(default_factory=dict)
    window: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> RouterConfig:
        ids = [m.id for m in self.models]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate model id(s) {', '.join(duplicates)}")
        replica_ids = [r.id for m in self.models for r in m.replicas]
        shared = sorted({i for i in replica_ids if replica_ids.count(i) > 1})
        if shared:
            raise ValueError(f"replica id(s) used by several models: {', '.join(shared)}")
        for name, context in self.contexts.items():
            for model, (low, high) in context.complexity_ranges.items():
                if model not in ids:
                    raise ValueError(
                        f"contexts.{name}.complexity_ranges names unknown model {model!r}"
                    )
                if low > high:
                    raise ValueError(
                        f"contexts.{name}.complexity_ranges.{model} must be [low, high] "
                        f"with low <= high, got {[low, high]}"
                    )
        return self

    def adaptive_config(self) -> AdaptiveConfig:
        """The scoring section as an ``AdaptiveConfig`` (defaults where omitted)."""
        try:
            return AdaptiveConfig.from_dict(self.scoring)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"scoring.{exc}") from exc

    def window_config(self) -> WindowConfig:
        """The window section as a ``WindowConfig`` (defaults where omitted)."""
        try:
            return WindowConfig.from_dict(self.window)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"window.{exc}") from exc

    def complexity_range(self, model: str, context: str | None = None) -> tuple[float, float]:
        """The range a model suits in a context (its own when not overridden)."""
        spec = next(m for m in self.models if m.id == model)
        if context is not None and context in self.contexts:
            return self.contexts[context].complexity_ranges.get(model, spec.complexity_range)
        return spec.complexity_range


def _path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def parse_router_config(data: dict[str, Any]) -> RouterConfig:
    """Validates a configuration mapping.

    Raises:
        ConfigError: listing every problem as ``path: message (got value)``.
    """
    try:
        config = RouterConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            where = _path(tuple(error["loc"]))
            got = error.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            problems.append(f"{where}: {error['msg']}{shown}")
        raise ConfigError("invalid router configuration:\n  " + "\n  ".join(problems)) from None
    # The native sections validate themselves: surface their errors now.
    config.adaptive_config()
    config.window_config()
    return config


def load_router_config(path: str | Path) -> RouterConfig:
    """Reads and validates a YAML, TOML or JSON router configuration file.

    Raises:
        ConfigError: the file cannot be parsed or a value is invalid (with its path).
        FileNotFoundError: the file does not exist.
    """
    return parse_router_config(load_document(path))
