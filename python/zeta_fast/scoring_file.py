"""Candidates to score, read from a TOML, YAML or JSON file.

The file holds an optional ``scoring`` table (``AdaptiveConfig`` fields) and a
``candidates`` list, each with ``name``, ``capability`` (0..100),
``success_rate`` (0..1), ``avg_latency_ms`` and ``requests``::

    [scoring]
    max_acceptable_latency_ms = 500

    [[candidates]]
    name = "coder-7b"
    capability = 85
    success_rate = 0.99
    avg_latency_ms = 120
    requests = 100

Errors name the path of the bad value, e.g. ``candidates[1].success_rate``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib
import yaml

from zeta_fast._core import AdaptiveConfig, AdaptiveScorer
from zeta_fast.exceptions import ConfigError

__all__ = ["Candidate", "ScoringFile", "load_document", "load_scoring_file"]

_CANDIDATE_FIELDS = ("name", "capability", "success_rate", "avg_latency_ms", "requests")


@dataclass(frozen=True)
class Candidate:
    """One candidate model with its capability and live metrics."""

    name: str
    capability: float
    success_rate: float
    avg_latency_ms: float
    requests: int


@dataclass(frozen=True)
class ScoringFile:
    """A validated scoring file: the configuration and the candidates."""

    config: AdaptiveConfig
    candidates: tuple[Candidate, ...]


def _parse_problem(exc: Exception) -> str:
    """What a parser says is wrong, and where, never quoting the file:
    PyYAML's text shows the offending line (JSON's and TOML's show none)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        parts = [
            f"{text} (line {mark.line + 1}, column {mark.column + 1})" if mark else text
            for text, mark in ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark))
            if text
        ]
        return "; ".join(parts) or "invalid YAML"
    if isinstance(exc, yaml.YAMLError):
        return "invalid YAML"
    return str(exc)


def load_document(path: str | Path) -> dict[str, Any]:
    """Reads a TOML (``.toml``), YAML (``.yaml``/``.yml``) or JSON file into a dict.

    Raises:
        ConfigError: the file cannot be parsed, or its top level is not a mapping.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    problem = None
    try:
        if suffix == ".toml":
            document: object = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            document = yaml.safe_load(text)
        elif suffix == ".json":
            document = json.loads(text)
        else:
            raise ConfigError(f"{path}: unknown file type {suffix!r}; use .toml, .yaml or .json")
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
        problem = _parse_problem(exc)
    if problem is not None:
        # Raised outside the except block, with nothing chained: PyYAML's
        # own error quotes the offending line, which may hold a secret.
        raise ConfigError(f"{path}: cannot parse: {problem}")
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(document).__name__}")
    return document


def _candidate(index: int, raw: object, scorer: AdaptiveScorer) -> Candidate:
    where = f"candidates[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(raw).__name__}: {raw!r}")
    missing = [field for field in _CANDIDATE_FIELDS if field not in raw]
    if missing:
        raise ConfigError(f"{where} is missing {', '.join(missing)}")
    unknown = sorted(set(raw) - set(_CANDIDATE_FIELDS))
    if unknown:
        raise ConfigError(f"{where} has unknown field(s) {', '.join(unknown)}")
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.name must be a non-empty string, got {name!r}")
    try:
        # The scorer validates the values; we only add where they came from.
        scorer.score(raw["capability"], raw["success_rate"], raw["avg_latency_ms"], raw["requests"])
    except TypeError as exc:
        raise TypeError(f"{where}.{exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{where}.{exc}") from exc
    return Candidate(
        name=name,
        capability=float(raw["capability"]),
        success_rate=float(raw["success_rate"]),
        avg_latency_ms=float(raw["avg_latency_ms"]),
        requests=int(raw["requests"]),
    )


def load_scoring_file(path: str | Path) -> ScoringFile:
    """Reads and validates a scoring file.

    Raises:
        ConfigError: a value is out of range, missing or unknown (the message
            names its path, such as ``candidates[1].success_rate``).
        TypeError: a value has the wrong type.
    """
    document = load_document(path)
    unknown = sorted(set(document) - {"scoring", "candidates"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(unknown)}")
    scoring = document.get("scoring", {})
    if not isinstance(scoring, dict):
        raise ConfigError(f"scoring must be a mapping, got {type(scoring).__name__}")
    try:
        config = AdaptiveConfig.from_dict(scoring)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"scoring.{exc}") from exc
    raw_candidates = document.get("candidates")
    if not isinstance(raw_candidates, list) or not raw_candidates:
        raise ConfigError("candidates must be a non-empty list")
    scorer = AdaptiveScorer(config)
    candidates = tuple(_candidate(i, raw, scorer) for i, raw in enumerate(raw_candidates))
    names = [c.name for c in candidates]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"candidates: duplicate name(s) {', '.join(duplicates)}")
    return ScoringFile(config=config, candidates=candidates)
