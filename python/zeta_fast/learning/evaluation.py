"""Offline evaluation of routers on per-prompt outcome tables.

A table has ``id``, ``prompt``, one ``<model>_correct`` column (0/1) per
model, and optionally ``contaminated`` (rows with 1 are dropped) and
``subject`` (a category). Prompts are split into train and test with a
fixed seed; the strong model is the most accurate on the train half, the
weak one the least. A router ranks the test prompts; sending the top
fraction ``c`` to the strong model and the rest to the weak one gives a
quality; PGR(c) = (quality - weak) / (strong - weak). As in RouteLLM (Ong
et al., arXiv 2406.18665): APGR is the area under PGR over c in [0, 1] (a
random router scores 0.5), CPT(x) the smallest c whose PGR reaches x.

Routers: ``random`` (expected PGR(c) = c), ``oracle`` (strong-only wins
first, weak-only wins last), ``category_prior`` (when there is a
``subject``: smoothed per-subject win rates) and ``learned``
(:class:`OutcomePredictor` over local text features plus the category).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from zeta_fast.learning.features import Features, text_features
from zeta_fast.learning.predictor import OutcomePredictor

__all__ = [
    "RoutingTable",
    "evaluate",
    "evaluate_online",
    "load_table",
    "online_split",
    "routing_curve",
]

ROUTERS = ("random", "oracle", "category_prior", "learned")


@dataclass
class RoutingTable:
    """Prompts and each model's 0/1 outcome on them."""

    ids: list[str]
    prompts: list[str]
    models: list[str]
    outcomes: npt.NDArray[np.int8]  # (prompts, models)
    categories: list[str] | None = None
    dropped_contaminated: int = 0


def load_table(path: str | Path) -> RoutingTable:
    """Reads a table; raises ValueError naming what is missing or wrong."""
    csv.field_size_limit(sys.maxsize)
    with Path(path).open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        models = [c.removesuffix("_correct") for c in header if c.endswith("_correct")]
        missing = [c for c in ("id", "prompt") if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header: {header}")
        if len(models) < 2:
            raise ValueError(f"{path}: needs at least two <model>_correct columns, got {models}")
        ids, prompts, outcomes, categories = [], [], [], []
        dropped = 0
        for line, row in enumerate(reader, start=2):
            if row.get("contaminated", "0") in ("1", "true", "True"):
                dropped += 1
                continue
            values = []
            for model in models:
                raw = row[f"{model}_correct"]
                if raw not in ("0", "1"):
                    raise ValueError(f"{path}:{line}: {model}_correct must be 0 or 1, got {raw!r}")
                values.append(int(raw))
            ids.append(row["id"])
            prompts.append(row["prompt"])
            outcomes.append(values)
            categories.append(row.get("subject") or "")
    if len(ids) < 4:
        raise ValueError(f"{path}: needs at least 4 usable rows, got {len(ids)}")
    return RoutingTable(
        ids=ids,
        prompts=prompts,
        models=models,
        outcomes=np.array(outcomes, dtype=np.int8),
        categories=categories if any(categories) else None,
        dropped_contaminated=dropped,
    )


def routing_curve(
    score: npt.NDArray[np.float64], strong: npt.NDArray[np.int8], weak: npt.NDArray[np.int8]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(share of strong calls, quality) sending the highest scores to the strong model."""
    order = np.argsort(-score, kind="stable")
    strong_sorted = strong[order].astype(np.float64)
    weak_sorted = weak[order].astype(np.float64)
    n = len(score)
    strong_done = np.concatenate([[0.0], np.cumsum(strong_sorted)])
    weak_left = weak_sorted.sum() - np.concatenate([[0.0], np.cumsum(weak_sorted)])
    quality = (strong_done + weak_left) / n
    return np.arange(n + 1) / n, quality


@dataclass
class _Scores:
    apgr: list[float] = field(default_factory=list)
    cpt50: list[float] = field(default_factory=list)
    cpt80: list[float] = field(default_factory=list)
    curves: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = field(
        default_factory=list
    )


def _metrics(
    shares: npt.NDArray[np.float64], quality: npt.NDArray[np.float64], weak: float, strong: float
) -> tuple[float, float, float]:
    pgr = (quality - weak) / (strong - weak) if strong != weak else np.zeros_like(quality)
    area = float(np.trapezoid(pgr, shares))

    def cpt(target: float) -> float:
        reached = np.nonzero(pgr >= target)[0]
        return float(shares[reached[0]]) if len(reached) else float("nan")

    return area, cpt(0.5), cpt(0.8)


def _category_prior(
    table: RoutingTable, train: npt.NDArray[np.int64], strong: int, weak: int, k: float = 20.0
) -> npt.NDArray[np.float64]:
    assert table.categories is not None
    wins = table.outcomes[:, strong].astype(float) - table.outcomes[:, weak].astype(float)
    base = wins[train].mean()
    totals: dict[str, list[float]] = {}
    for i in train:
        entry = totals.setdefault(table.categories[i], [0.0, 0.0])
        entry[0] += wins[i]
        entry[1] += 1.0
    out = np.empty(len(table.ids))
    for i, category in enumerate(table.categories):
        s, n = totals.get(category, (0.0, 0.0))
        out[i] = (s + k * base) / (n + k)
    return out


def evaluate(
    table: RoutingTable,
    *,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    test_share: float = 0.5,
    epochs: int = 8,
    online: bool = True,
) -> dict[str, Any]:
    """Every router on ``len(seeds)`` prompt-level splits; the report's
    figures are means over the seeds. With ``online``, also the PGR of
    learning from scratch on the test stream at a 30 % strong share, with
    full and with bandit feedback (:func:`evaluate_online`)."""
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must be in (0, 1), got {test_share!r}")
    n = len(table.ids)
    features: list[Features] = [
        text_features(p, [c] if table.categories else [])
        for p, c in zip(table.prompts, table.categories or [""] * n, strict=True)
    ]
    scores: dict[str, _Scores] = {}
    accuracies: list[npt.NDArray[np.float64]] = []
    n_test = 0
    pairs = []
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(n)
        cut = round(n * (1 - test_share))
        train, test = order[:cut], order[cut:]
        n_test = len(test)
        train_accuracy = table.outcomes[train].mean(axis=0)
        strong, weak = int(np.argmax(train_accuracy)), int(np.argmin(train_accuracy))
        pairs.append((table.models[strong], table.models[weak]))
        accuracies.append(table.outcomes[test].mean(axis=0))
        s_out = table.outcomes[test, strong]
        w_out = table.outcomes[test, weak]
        weak_q, strong_q = float(w_out.mean()), float(s_out.mean())
        routers: dict[str, npt.NDArray[np.float64] | None] = {
            "oracle": (s_out.astype(float) - w_out.astype(float)),
            "category_prior": (
                _category_prior(table, train, strong, weak)[test] if table.categories else None
            ),
        }
        predictor = OutcomePredictor(table.models)
        categories = table.categories
        predictor.fit(
            [
                (
                    features[i],
                    list(table.outcomes[i].astype(bool)),
                    categories[i] if categories else None,
                )
                for i in train
            ],
            epochs=epochs,
            seed=seed,
        )
        learned = np.array(
            [predictor.utility(features[i], categories[i] if categories else None) for i in test]
        )
        routers["learned"] = learned[:, strong] - learned[:, weak]
        # Random: the expectation over orders, PGR(c) = c exactly.
        shares = np.arange(n_test + 1) / n_test
        random_quality = weak_q + shares * (strong_q - weak_q)
        entry = scores.setdefault("random", _Scores())
        _add(entry, shares, random_quality, weak_q, strong_q)
        for name, score in routers.items():
            if score is None:
                continue
            shares, quality = routing_curve(score, s_out, w_out)
            _add(scores.setdefault(name, _Scores()), shares, quality, weak_q, strong_q)
    mean_accuracy = np.mean(accuracies, axis=0)
    report: dict[str, Any] = {
        "data_rows": n,
        "dropped_contaminated": table.dropped_contaminated,
        "n_test": n_test,
        "seeds": list(seeds),
        "test_share": test_share,
        "models": table.models,
        "accuracy": {m: float(a) for m, a in zip(table.models, mean_accuracy, strict=True)},
        "strong": pairs[0][0],
        "weak": pairs[0][1],
        "routers": {
            name: {
                "apgr": float(np.mean(s.apgr)),
                "apgr_std": float(np.std(s.apgr)),
                "cpt50": float(np.nanmean(s.cpt50)),
                "cpt80": float(np.nanmean(s.cpt80)),
            }
            for name, s in scores.items()
        },
    }
    learned_row = report["routers"]["learned"]
    report |= {k: learned_row[k] for k in ("apgr", "cpt50", "cpt80")}
    if online:
        report["online"] = {
            feedback: {
                "pgr": float(np.mean([r["pgr"] for r in runs])),
                "strong_share": float(np.mean([r["strong_share"] for r in runs])),
            }
            for feedback in ("full", "bandit")
            for runs in [
                [
                    evaluate_online(table, feedback=feedback, seed=seed, test_share=test_share)
                    for seed in seeds
                ]
            ]
        }
    report["_curves"] = {name: s.curves[0] for name, s in scores.items()}
    return report


def _add(
    entry: _Scores,
    shares: npt.NDArray[np.float64],
    quality: npt.NDArray[np.float64],
    weak: float,
    strong: float,
) -> None:
    area, c50, c80 = _metrics(shares, quality, weak, strong)
    entry.apgr.append(area)
    entry.cpt50.append(c50)
    entry.cpt80.append(c80)
    entry.curves.append((shares, quality))


def write_plot(report: dict[str, Any], path: str | Path) -> Path:
    """Quality vs share of strong calls for every router (first seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    for name, (shares, quality) in report["_curves"].items():
        row = report["routers"][name]
        axis.plot(shares * 100, quality * 100, label=f"{name} (APGR {row['apgr']:.3f})")
    axis.set_xlabel(f"share of calls to the strong model ({report['strong']}), %")
    axis.set_ylabel("quality (% correct)")
    axis.set_title(
        f"routing {report['strong']} vs {report['weak']}, {report['n_test']} test prompts"
    )
    axis.legend(loc="lower right")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    out = Path(path)
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def online_split(
    table: RoutingTable, rng: np.random.Generator, test_share: float
) -> tuple[npt.NDArray[np.int64], int, int]:
    """The prompts streamed (``test_share`` of them, in a random order) and
    the strong and weak models' columns, judged on the rest."""
    order = rng.permutation(len(table.ids))
    cut = round(len(order) * (1 - test_share))
    accuracy = table.outcomes[order[:cut]].mean(axis=0)
    return order[cut:], int(np.argmax(accuracy)), int(np.argmin(accuracy))


def streamed_prompt(
    table: RoutingTable, predictor: OutcomePredictor, i: int
) -> tuple[Features, str | None, float]:
    """A streamed prompt's features and category, and the strong model's
    predicted advantage over the weak one (columns 1 and 0) for it now."""
    category = table.categories[i] if table.categories else None
    features = text_features(table.prompts[i], [category] if category else [])
    utility = predictor.utility(features, category)
    return features, category, float(utility[1] - utility[0])


def evaluate_online(
    table: RoutingTable,
    *,
    strong_share: float = 0.3,
    feedback: str = "full",
    seed: int = 0,
    test_share: float = 0.5,
    explore: float = 0.05,
    window: int = 500,
) -> dict[str, float]:
    """Learning from scratch while routing: the test prompts of a split
    arrive one by one in a random order; each goes to the strong model when
    its predicted advantage is in the top ``strong_share`` of the last
    ``window`` predictions (so the strong share stays near its target), and
    its outcome is learned at once. ``feedback="full"`` learns both models'
    outcomes; ``"bandit"`` only the chosen one's, with ``explore`` of the
    requests routed at random so that both keep being seen. Returns the
    PGR of the whole stream and the strong share it used."""
    if feedback not in ("full", "bandit"):
        raise ValueError(f"feedback must be 'full' or 'bandit', got {feedback!r}")
    if not 0.0 < strong_share < 1.0:
        raise ValueError(f"strong_share must be in (0, 1), got {strong_share!r}")
    rng = np.random.default_rng(seed)
    stream, strong, weak = online_split(table, rng, test_share)
    predictor = OutcomePredictor([table.models[weak], table.models[strong]])
    recent: list[float] = []
    quality = 0.0
    strong_calls = 0
    for i in stream:
        features, category, advantage = streamed_prompt(table, predictor, i)
        threshold = float(np.quantile(recent, 1.0 - strong_share)) if len(recent) >= 20 else None
        if (feedback == "bandit" and rng.random() < explore) or threshold is None:
            use_strong = bool(rng.random() < strong_share)
        else:
            use_strong = advantage > threshold
        recent.append(advantage)
        if len(recent) > window:
            recent.pop(0)
        chosen = strong if use_strong else weak
        quality += float(table.outcomes[i, chosen])
        strong_calls += use_strong
        weak_ok, strong_ok = bool(table.outcomes[i, weak]), bool(table.outcomes[i, strong])
        if feedback == "full":
            predictor.update(features, [weak_ok, strong_ok], category=category)
        else:
            predictor.update(
                features,
                [None, strong_ok] if use_strong else [weak_ok, None],
                category=category,
            )
    weak_q = float(table.outcomes[stream, weak].mean())
    strong_q = float(table.outcomes[stream, strong].mean())
    quality /= len(stream)
    return {
        "pgr": (quality - weak_q) / (strong_q - weak_q) if strong_q != weak_q else 0.0,
        "strong_share": strong_calls / len(stream),
        "quality": quality,
        "n": len(stream),
    }
