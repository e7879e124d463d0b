"""Training the learned router from its outcome log (``zeta-fast learn``).

The live router learns online from each verdict; the log keeps every
learned row's features (hashed indices, not the text), so the predictor can
be rebuilt from scratch: after its state file was lost, with other
settings, or with several passes. Before the final fit on every row, the
rows are split by time (the oldest ``1 - holdout`` to train, the newest to
test) to report how well it predicts outcomes it has not seen, beside the
per-model success rate alone.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zeta_fast._core import Features
from zeta_fast.learning.predictor import OutcomePredictor

__all__ = ["LoggedOutcome", "read_learned_rows", "train_from_log"]


@dataclass(frozen=True)
class LoggedOutcome:
    """One learned row of the outcome log."""

    ts_ms: int
    model: str
    category: str | None
    good: bool
    features: Features


def read_learned_rows(path: str | Path) -> list[LoggedOutcome]:
    """The log's learned rows with features, oldest first.

    Raises:
        FileNotFoundError: no database at ``path``.
        ValueError: the database has no learned columns (an older log).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no outcome log at {path}")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(outcomes)")}
        if not {"learned", "features"} <= columns:
            raise ValueError(f"{path}: the outcome log has no learned rows (no 'features' column)")
        rows = db.execute(
            "SELECT ts_ms, model, category, learned, features FROM outcomes "
            "WHERE learned IS NOT NULL AND features IS NOT NULL ORDER BY ts_ms, rowid"
        ).fetchall()
    finally:
        db.close()
    return [
        LoggedOutcome(int(ts), str(model), category, bool(good), Features.from_bytes(blob))
        for ts, model, category, good, blob in rows
    ]


def _fit(
    rows: Sequence[LoggedOutcome], models: Sequence[str], params: dict[str, float], epochs: int
) -> OutcomePredictor:
    predictor = OutcomePredictor(models, **params)
    index = {m: i for i, m in enumerate(models)}
    for epoch in range(epochs):
        eta = predictor.learning_rate / (1 + epoch)
        for row in rows:
            if row.model in index:
                outcome: list[bool | None] = [None] * len(models)
                outcome[index[row.model]] = row.good
                predictor.update(
                    row.features,
                    outcome,
                    category=row.category if epoch == 0 else None,
                    learning_rate=eta,
                )
    return predictor


def _scores(
    predictor: OutcomePredictor, rows: Sequence[LoggedOutcome], models: Sequence[str]
) -> dict[str, float]:
    index = {m: i for i, m in enumerate(models)}
    probabilities, truths, base = [], [], []
    for row in rows:
        if row.model not in index:
            continue
        m = index[row.model]
        weight = predictor.prior_weight
        blended = float(predictor.utility(row.features, row.category)[m]) / (1.0 + weight)
        probabilities.append(min(max(blended, 1e-6), 1 - 1e-6))
        base.append(float(predictor.prior(None)[m]))
        truths.append(1.0 if row.good else 0.0)
    p, y, b = np.array(probabilities), np.array(truths), np.array(base)
    if len(y) == 0:
        return {"rows": 0}

    def log_loss(q: np.ndarray) -> float:
        q = np.clip(q, 1e-6, 1 - 1e-6)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))

    return {
        "rows": float(len(y)),
        "accuracy": float(np.mean((p >= 0.5) == (y == 1.0))),
        "log_loss": log_loss(p),
        "baseline_accuracy": float(np.mean((b >= 0.5) == (y == 1.0))),
        "baseline_log_loss": log_loss(b),
    }


def train_from_log(
    path: str | Path,
    models: Sequence[str],
    params: dict[str, float] | None = None,
    *,
    epochs: int = 1,
    holdout: float = 0.2,
) -> tuple[OutcomePredictor, dict[str, Any]]:
    """Fits a predictor on the log's learned rows and reports, on the newest
    ``holdout`` of them, its accuracy and log loss against the per-model
    success rate (a model trained on the older rows only)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1), got {holdout!r}")
    params = dict(params or {})
    rows = read_learned_rows(path)
    per_model = {m: sum(1 for r in rows if r.model == m) for m in models}
    report: dict[str, Any] = {
        "rows": len(rows),
        "per_model": per_model,
        "unknown_models": sorted({r.model for r in rows} - set(models)),
        "epochs": epochs,
    }
    cut = len(rows) - math.ceil(len(rows) * holdout)
    if holdout > 0 and 0 < cut < len(rows):
        report["holdout"] = _scores(_fit(rows[:cut], models, params, epochs), rows[cut:], models)
    predictor = _fit(rows, models, params, epochs)
    return predictor, report
