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
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib
import yaml

from zeta_fast._core import AdaptiveConfig, AdaptiveScorer
from zeta_fast.exceptions import ConfigError

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_VALUES",
    "Candidate",
    "ScoringFile",
    "load_document",
    "load_scoring_file",
]

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


#: The largest configuration file read, in bytes (a router's is a few KB).
MAX_DOCUMENT_BYTES = 1 << 20
#: The deepest nesting of mappings and lists (a router's configuration uses 5).
MAX_DEPTH = 32
#: The most values (keys included) a document may hold, a YAML alias
#: counted as every value it repeats.
MAX_VALUES = 100_000

# libyaml's parser: PyYAML's pure-Python one takes minutes on a large file.
_YAML_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = (
    yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
)
_YAML_MERGE_TAG = "tag:yaml.org,2002:merge"
# libyaml refuses nesting past 1000 levels before our check sees the document:
# its error is worded as ours.
_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"

_Location = tuple[str | int, ...]


class _RefusedError(Exception):
    """A document that parses but is refused: too large, too deep or ambiguous."""


@dataclass(frozen=True)
class _DuplicateKey:
    """Stands, in a parsed JSON document, for an object that has ``key`` twice
    (the check that refuses it knows where the object is; the parser does not)."""

    key: str


def _where(location: _Location) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "the top-level mapping"


def _too_deep(location: _Location) -> _RefusedError:
    return _RefusedError(f"{_where(location)}: nested deeper than {MAX_DEPTH} levels")


def _too_many() -> _RefusedError:
    return _RefusedError(f"more than {MAX_VALUES} values (a YAML alias counts as all it repeats)")


def _parse_problem(exc: Exception) -> str:
    """What a parser says is wrong, and where, never quoting the file:
    PyYAML's text shows the offending line (JSON's and TOML's show none)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        if exc.problem == _LIBYAML_TOO_DEEP and exc.problem_mark:
            return f"nested deeper than {MAX_DEPTH} levels (line {exc.problem_mark.line + 1})"
        parts = [
            f"{text} (line {mark.line + 1}, column {mark.column + 1})" if mark else text
            for text, mark in ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark))
            if text
        ]
        return "; ".join(parts) or "invalid YAML"
    if isinstance(exc, yaml.YAMLError):
        return "invalid YAML"
    return str(exc)


def _check_yaml_nodes(root: yaml.Node) -> None:
    """Refuses a composed YAML document before any of it is built: aliases
    that repeat more than ``MAX_VALUES`` values ("billion laughs": built,
    then walked by validation, they take minutes and gigabytes), nesting
    deeper than ``MAX_DEPTH``, a key given twice in one mapping (PyYAML
    keeps the last) and an alias inside the node it names.

    Each node is measured once (its values and levels), so an alias costs
    what a scalar does here."""
    measured: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()

    def measure(node: yaml.Node, location: _Location, depth: int) -> tuple[int, int]:
        known = measured.get(id(node))
        if known is not None:
            if depth + known[1] - 1 > MAX_DEPTH:
                raise _too_deep(location)
            return known
        if isinstance(node, yaml.ScalarNode):
            return 1, 0
        if depth > MAX_DEPTH:
            raise _too_deep(location)
        if id(node) in open_nodes:
            raise _RefusedError(
                f"{_where(location)}: an alias inside the node it names "
                f"(line {node.start_mark.line + 1})"
            )
        open_nodes.add(id(node))
        values, levels = 1, 1
        for child, child_location in _yaml_children(node, location):
            child_values, child_levels = measure(child, child_location, depth + 1)
            values += child_values
            if values > MAX_VALUES:
                raise _too_many()
            levels = max(levels, child_levels + 1)
        open_nodes.discard(id(node))
        measured[id(node)] = (values, levels)
        return values, levels

    measure(root, (), 1)


def _yaml_children(node: yaml.Node, location: _Location) -> Iterator[tuple[yaml.Node, _Location]]:
    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield item, (*location, index)
        return
    first_seen: dict[tuple[str, str], int] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            yield key, location  # refused as a key later; measured like any node
            yield value, (*location, "?")
            continue
        line = key.start_mark.line + 1
        # Merged keys (<<: *defaults) may be overridden; written ones may not.
        if key.tag != _YAML_MERGE_TAG:
            first = first_seen.get((key.tag, key.value))
            if first is not None:
                raise _RefusedError(
                    f"duplicate key {key.value!r} in {_where(location)} "
                    f"(line {line}, first at line {first})"
                )
            first_seen[(key.tag, key.value)] = line
        yield key, location
        yield value, (*location, key.value)


def _load_yaml(text: str) -> object:
    loader = _YAML_LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_nodes(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | _DuplicateKey:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            return _DuplicateKey(key)
        document[key] = value
    return document


def _load_json(text: str) -> object:
    return json.loads(text, object_pairs_hook=_json_object)


_PARSERS: dict[str, Callable[[str], object]] = {
    ".toml": tomllib.loads,
    ".yaml": _load_yaml,
    ".yml": _load_yaml,
    ".json": _load_json,
}


def _check_values(document: object) -> None:
    """Refuses what a parser reads but a configuration cannot mean: keys
    that are not strings (YAML reads ``yes:`` as True and ``1:`` as 1), a
    duplicate JSON key, NaN and infinities, values that JSON has no type
    for (YAML's and TOML's dates, YAML's sets and binaries), nesting deeper
    than ``MAX_DEPTH`` and more than ``MAX_VALUES`` values."""
    count = 0

    def visit(value: object, location: _Location, depth: int) -> None:
        nonlocal count
        count += 1
        if count > MAX_VALUES:
            raise _too_many()
        if isinstance(value, dict | list) and depth > MAX_DEPTH:
            raise _too_deep(location)
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise _RefusedError(
                        f"{_where(location)}: key {key!r} is not a string (quote it: "
                        "YAML reads yes, no, on, off, null and numbers as such)"
                    )
                count += 1
                visit(item, (*location, key), depth + 1)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                visit(item, (*location, index), depth + 1)
        elif isinstance(value, _DuplicateKey):
            raise _RefusedError(f"duplicate key {value.key!r} in {_where(location)}")
        elif isinstance(value, float) and not math.isfinite(value):
            raise _RefusedError(f"{_where(location)}: {value} is not a finite number")
        elif not isinstance(value, str | int | float | None):
            # The value is not quoted: a YAML !!binary may be a secret.
            raise _RefusedError(
                f"{_where(location)}: a {type(value).__name__} is not a configuration "
                "value (quote it to make it a string)"
            )

    visit(document, (), 1)


def load_document(path: str | Path) -> dict[str, Any]:
    """Reads a TOML (``.toml``), YAML (``.yaml``/``.yml``) or JSON file into a dict.

    The file is bounded, so that a hostile or broken one fails fast: at most
    ``MAX_DOCUMENT_BYTES`` (1 MiB) of UTF-8, nested at most ``MAX_DEPTH``
    (32) levels deep, holding at most ``MAX_VALUES`` (100 000) values, keys
    included, where a YAML alias counts as every value it repeats (so an
    alias bomb is refused before it is expanded). It must also be
    unambiguous: a mapping at the top level, string keys, no key twice in
    one mapping (YAML's ``<<:`` merge keys may still be overridden), no
    NaN or infinity, no dates, sets or binaries (quote them). YAML is read
    with libyaml when PyYAML has it.

    Raises:
        ConfigError: the file is too large, cannot be parsed or breaks one of
            the rules above; the message names the file and where (a path
            such as ``models[0].replicas``, or a YAML line).
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    with path.open("rb") as file:
        raw = file.read(MAX_DOCUMENT_BYTES + 1)
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_DOCUMENT_BYTES} bytes, the limit of a configuration file"
        )
    suffix = path.suffix.lower()
    parse = _PARSERS.get(suffix)
    if parse is None:
        raise ConfigError(f"{path}: unknown file type {suffix!r}; use .toml, .yaml or .json")
    problem = None
    try:
        document = parse(raw.decode("utf-8"))
        _check_values(document)
    except _RefusedError as exc:
        problem = str(exc)
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte {exc.start})"
    except RecursionError:
        problem = f"nested deeper than {MAX_DEPTH} levels"
    except (yaml.YAMLError, ValueError) as exc:
        # ValueError: TOML's and JSON's errors, and an integer too long to read.
        problem = f"cannot parse: {_parse_problem(exc)}"
    if problem is not None:
        # Raised outside the except block, with nothing chained: PyYAML's
        # own error quotes the offending line, which may hold a secret.
        raise ConfigError(f"{path}: {problem}")
    if document is None:
        raise ConfigError(f"{path}: the file is empty")
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
