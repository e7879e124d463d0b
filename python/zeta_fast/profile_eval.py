"""Evaluating the profiler on labelled prompts (``zeta-fast eval profiler``).

Any CSV with the columns ``id``, ``source``, ``task_type`` and ``prompt``
works. ``split_of`` assigns each id to ``train`` or ``test`` by a stable
hash: ``scripts/train_profiler.py`` learns from ``train`` only, so ``test``
is held out.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zeta_fast.profiling import profile

__all__ = ["EvalReport", "evaluate", "load_rows", "split_of"]

TEXT_TASKS = ("code", "reasoning", "chat", "knowledge")
TEST_FRACTION = 0.3


def split_of(row_id: str) -> str:
    """``test`` for ~30 % of ids (by SHA-256), ``train`` for the rest."""
    digest = hashlib.sha256(row_id.encode("utf-8")).digest()
    return "test" if digest[0] < TEST_FRACTION * 256 else "train"


def load_rows(path: str | Path, split: str = "all") -> list[dict[str, str]]:
    """Rows of a labelled CSV, optionally only one split.

    Raises:
        ValueError: a column is missing, or the split is unknown.
    """
    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be all, train or test, got {split!r}")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"id", "source", "task_type", "prompt"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        rows = list(reader)
    return [r for r in rows if split == "all" or split_of(r["id"]) == split]


@dataclass
class EvalReport:
    """Accuracy overall and per source, macro-F1, code-vs-not accuracy, confusion."""

    rows: int
    accuracy: float
    macro_f1: float
    code_accuracy: float
    per_source: dict[str, tuple[int, float]] = field(default_factory=dict)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "code_vs_not_accuracy": self.code_accuracy,
            "per_source": {s: {"rows": n, "accuracy": a} for s, (n, a) in self.per_source.items()},
            "confusion": self.confusion,
        }


def evaluate(rows: Iterable[dict[str, str]]) -> EvalReport:
    """Profiles every prompt and compares with its label."""
    pairs = [(r["source"], r["task_type"], profile(r["prompt"]).task_type) for r in rows]
    if not pairs:
        raise ValueError("no rows to evaluate")
    confusion: dict[str, Counter[str]] = defaultdict(Counter)
    by_source: dict[str, list[bool]] = defaultdict(list)
    for source, truth, guess in pairs:
        confusion[truth][guess] += 1
        by_source[source].append(truth == guess)
    f1s = []
    for task in TEXT_TASKS:
        tp = confusion[task][task]
        fp = sum(confusion[t][task] for t in confusion if t != task)
        fn = sum(confusion[task].values()) - tp
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    correct = sum(truth == guess for _, truth, guess in pairs)
    code_correct = sum((truth == "code") == (guess == "code") for _, truth, guess in pairs)
    return EvalReport(
        rows=len(pairs),
        accuracy=correct / len(pairs),
        macro_f1=sum(f1s) / len(f1s),
        code_accuracy=code_correct / len(pairs),
        per_source={s: (len(v), sum(v) / len(v)) for s, v in sorted(by_source.items())},
        confusion={t: dict(confusion[t]) for t in TEXT_TASKS if t in confusion},
    )
