"""``zeta-fast report``: the dashboard's views for a finished run, from its
outcome log, for people without a running gateway.

It reads the outcome log (and the alert history kept in the same file),
rebuilds the view the live page shows (:mod:`zeta_fast.dashboard.views`)
over the whole run, and writes PNG plots (latency, success, traffic,
scores, the learned router's table) and ``report.html``: one self-contained
file (the page's own CSS and JavaScript inlined, the data embedded, the
PNGs as data URIs) that opens anywhere without a server.
"""

from __future__ import annotations

import base64
import json
import math
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zeta_fast.config import RouterConfig
from zeta_fast.dashboard.views import learned_view
from zeta_fast.outcomes import NOT_THE_REPLICAS

__all__ = ["build_view", "write_report"]

_COLUMNS = (
    "ts_ms",
    "model",
    "replica",
    "task",
    "complexity",
    "outcome",
    "success",
    "latency_ms",
    "capability",
    "score",
    "penalties",
    "runners_up",
)
# Outcomes that say nothing of the replica (as the windows count them).
_NOT_THE_REPLICAS = NOT_THE_REPLICAS | {"feedback"}


def _read(db_path: Path, since_ms: int) -> list[dict[str, Any]]:
    if not db_path.is_file():
        raise FileNotFoundError(f"no outcome log at {db_path}")
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30.0)
    try:
        rows = db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM outcomes WHERE ts_ms >= ? ORDER BY ts_ms, rowid",
            (since_ms,),
        ).fetchall()
    finally:
        db.close()
    return [dict(zip(_COLUMNS, row, strict=True)) for row in rows]


def _quantiles(latencies: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    if not latencies:
        return None, None, None
    p50, p95, p99 = np.percentile(np.asarray(latencies, dtype=float), [50, 95, 99])
    return float(p50), float(p95), float(p99)


def build_view(
    db_path: str | Path,
    config: RouterConfig | None = None,
    *,
    since_ms: int = 0,
    buckets: int = 60,
    decisions: int = 30,
) -> dict[str, Any]:
    """The dashboard's data for the run in an outcome log (the live page's
    shape): figures over the whole run, history in ``buckets`` time slices.

    Raises:
        FileNotFoundError: no database at ``db_path``.
        ValueError: the log holds no outcomes.
    """
    db_path = Path(db_path)
    rows = [r for r in _read(db_path, since_ms) if r["outcome"] != "feedback"]
    if not rows:
        raise ValueError(f"{db_path}: no outcomes to report")
    scoring = (config.adaptive_config() if config else _default_scoring()).to_dict()
    counted = [r for r in rows if r["outcome"] not in _NOT_THE_REPLICAS]
    model_ids = list(dict.fromkeys([m.id for m in config.models] if config else []))
    model_ids += [m for m in dict.fromkeys(r["model"] for r in rows) if m not in model_ids]

    models = []
    for model in model_ids:
        mine = [r for r in counted if r["model"] == model]
        good = [r["latency_ms"] for r in mine if r["success"]]
        p50, p95, p99 = _quantiles(good)
        tasks = []
        for task in dict.fromkeys(r["task"] for r in mine):
            of_task = [r for r in mine if r["task"] == task]
            penalties: Counter[str] = Counter()
            for r in of_task:
                penalties.update(json.loads(r["penalties"]))
            share = {name: count / len(of_task) for name, count in penalties.items()}
            mean = float(np.mean([r["latency_ms"] for r in of_task]))
            tasks.append(
                {
                    "task": task,
                    "capability": float(np.mean([r["capability"] for r in of_task])),
                    "score": float(np.mean([r["score"] for r in of_task])),
                    "success_rate": sum(r["success"] for r in of_task) / len(of_task),
                    "avg_latency_ms": mean,
                    "has_data": True,
                    "penalties": sorted(share),
                    "reasons": {
                        name: f"applied to {share[name]:.0%} of {len(of_task)} decisions"
                        for name in share
                    },
                }
            )
        replicas = []
        for replica in dict.fromkeys(r["replica"] for r in mine):
            of_replica = [r for r in mine if r["replica"] == replica]
            failures = sum(not r["success"] for r in of_replica) / len(of_replica)
            r50, r95, r99 = _quantiles([r["latency_ms"] for r in of_replica if r["success"]])
            replicas.append(
                {
                    "id": replica,
                    "p50_ms": r50,
                    "p95_ms": r95,
                    "p99_ms": r99,
                    "in_flight": 0,
                    "healthy": True,
                    "breaker": "closed",
                    "degraded": failures > 0.1,
                    "recent_failure_share": failures,
                    "recent_latency_ms": float(np.mean([r["latency_ms"] for r in of_replica])),
                    "requests": len(of_replica),
                }
            )
        models.append(
            {
                "id": model,
                "requests": len(mine),
                "success_rate": (sum(r["success"] for r in mine) / len(mine)) if mine else None,
                "p50_ms": p50,
                "p95_ms": p95,
                "p99_ms": p99,
                "in_flight": 0,
                "tasks": tasks,
                "replicas": replicas,
            }
        )

    history = _history(counted, model_ids, buckets)
    latest = rows[-decisions:]
    from zeta_fast.alerts.engine import read_history

    alerts = read_history(db_path, since_ms)
    return {
        "ts": rows[-1]["ts_ms"] / 1000,
        "source": "report",
        "run": {
            "from": rows[0]["ts_ms"] / 1000,
            "to": rows[-1]["ts_ms"] / 1000,
            "outcomes": len(rows),
            "db": str(db_path),
        },
        "scoring": scoring,
        "models": models,
        "history": history,
        "decisions": [
            {
                "ts": r["ts_ms"] / 1000,
                "model": r["model"],
                "replica": r["replica"],
                "task": r["task"],
                "complexity": r["complexity"],
                "capability": r["capability"],
                "score": r["score"],
                "penalties": json.loads(r["penalties"]),
                "runners_up": [
                    {"model_id": model, "performance_score": score}
                    for model, score in json.loads(r["runners_up"])
                ],
                "explored": False,
                "outcome": r["outcome"],
                "latency_ms": r["latency_ms"],
            }
            for r in reversed(latest)
        ],
        "alerts": {"enabled": True, "open": [], "past": list(reversed(alerts))},
        "learned": _learned(db_path, config, model_ids),
    }


def _default_scoring() -> Any:
    from zeta_fast import AdaptiveConfig

    return AdaptiveConfig()


def _history(
    rows: Sequence[dict[str, Any]], model_ids: Sequence[str], buckets: int
) -> list[dict[str, Any]]:
    """Per time slice and model: success rate, latency quantiles, requests,
    and the mean concurrency (Little's law: busy time / slice length)."""
    start, end = rows[0]["ts_ms"], rows[-1]["ts_ms"]
    width = max((end - start) / buckets, 1.0)
    slices: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        index = min(int((r["ts_ms"] - start) / width), buckets - 1)
        slices[index][r["model"]].append(r)
    points = []
    for index in sorted(slices):
        point: dict[str, Any] = {
            "ts": (start + (index + 0.5) * width) / 1000,
            "models": {},
            "replicas": {},
        }
        for model in model_ids:
            mine = slices[index].get(model, [])
            p50, p95, p99 = _quantiles([r["latency_ms"] for r in mine if r["success"]])
            point["models"][model] = {
                "requests": len(mine),
                "success_rate": (sum(r["success"] for r in mine) / len(mine)) if mine else None,
                "p50_ms": p50,
                "p95_ms": p95,
                "p99_ms": p99,
                "in_flight": sum(r["latency_ms"] for r in mine) / width,
            }
            for replica in dict.fromkeys(r["replica"] for r in mine):
                of_replica = [r for r in mine if r["replica"] == replica]
                point["replicas"][f"{model}/{replica}"] = {
                    "in_flight": sum(r["latency_ms"] for r in of_replica) / width,
                    "p95_ms": _quantiles([r["latency_ms"] for r in of_replica if r["success"]])[1],
                }
        points.append(point)
    return points


def _learned(
    db_path: Path, config: RouterConfig | None, model_ids: Sequence[str]
) -> dict[str, Any]:
    from zeta_fast.learning.training import read_learned_rows, train_from_log

    try:
        rows = read_learned_rows(db_path)
    except ValueError:
        rows = []
    if not rows:
        return {"enabled": False, "models": [], "categories": []}
    params = config.learning.predictor_params() if config is not None else {}
    predictor, _ = train_from_log(db_path, list(model_ids), params, holdout=0.0)
    return learned_view(predictor)


def write_plots(view: dict[str, Any], out: Path) -> list[Path]:
    """PNGs of the view: latency, success and traffic over time, scores,
    the learned table. Needs matplotlib (the ``plots`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    ids = [m["id"] for m in view["models"]]
    start = view["history"][0]["ts"] if view["history"] else 0.0
    times = [p["ts"] - start for p in view["history"]]

    def series(model: str, field: str) -> list[float]:
        values = [p["models"].get(model, {}).get(field) for p in view["history"]]
        return [math.nan if v is None else v for v in values]

    figure, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    for model in ids:
        line = axes[0].plot(times, series(model, "p95_ms"), label=f"{model} p95")[0]
        axes[0].plot(times, series(model, "p50_ms"), linestyle=":", color=line.get_color())
        axes[1].plot(times, series(model, "success_rate"), label=model)
        axes[2].plot(times, series(model, "requests"), label=model)
    axes[0].set_ylabel("latency, ms (dotted: p50)")
    axes[0].set_title("latency per model")
    axes[1].set_ylabel("success rate")
    axes[1].set_ylim(-0.02, 1.02)
    axes[2].set_ylabel("requests per slice")
    axes[2].set_xlabel("seconds into the run")
    for axis in axes:
        axis.legend(loc="upper right", fontsize="small")
        axis.grid(alpha=0.3)
    written.append(_save(plt, figure, out / "timeline.png"))

    labels, capability, score = [], [], []
    for model in view["models"]:
        for task in model["tasks"]:
            labels.append(f"{model['id']}\n{task['task']}")
            capability.append(task["capability"])
            score.append(task["score"])
    if labels:
        figure, axis = plt.subplots(figsize=(max(6, len(labels) * 0.9), 4))
        x = np.arange(len(labels))
        axis.bar(x - 0.2, capability, 0.4, label="capability (mean at decision)")
        axis.bar(x + 0.2, score, 0.4, label="score (mean at decision)")
        axis.set_xticks(x, labels, fontsize="small", rotation=30, ha="right")
        axis.set_ylim(0, 105)
        axis.legend(loc="lower right")
        axis.set_title("capability vs score per model and task")
        written.append(_save(plt, figure, out / "scores.png"))

    learned = view["learned"]
    if learned["enabled"] and learned["categories"]:
        cats = [c["category"] for c in learned["categories"]]
        matrix = np.array(
            [[c["success"][m] for m in learned["models"]] for c in learned["categories"]]
        )
        figure, axis = plt.subplots(figsize=(2 + 1.6 * len(learned["models"]), 1 + 0.4 * len(cats)))
        image = axis.imshow(matrix, cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
        axis.set_xticks(range(len(learned["models"])), learned["models"])
        axis.set_yticks(range(len(cats)), cats)
        for i in range(len(cats)):
            for j in range(len(learned["models"])):
                axis.text(j, i, f"{matrix[i, j]:.0%}", ha="center", va="center", fontsize="small")
        figure.colorbar(image, ax=axis, label="smoothed success rate")
        axis.set_title("what the learned router learned")
        written.append(_save(plt, figure, out / "learned.png"))
    return written


def _save(plt: Any, figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _script_json(data: Any) -> str:
    # Inside <script>, "</" would end the element: JSON allows "<\/".
    return json.dumps(data, allow_nan=False, default=str).replace("</", "<\\/")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_report(
    db_path: str | Path,
    out: str | Path,
    config: RouterConfig | None = None,
    *,
    since_ms: int = 0,
) -> dict[str, Any]:
    """Writes the PNGs and ``report.html`` into ``out``; returns what was
    written and the view."""
    from zeta_fast.dashboard import static_file

    out = Path(out)
    view = _finite(build_view(db_path, config, since_ms=since_ms))
    images = write_plots(view, out)
    html = static_file("index.html").decode()
    css = static_file("dashboard.css").decode()
    js = static_file("dashboard.js").decode()
    figures = "".join(
        f'<figure><figcaption>{p.name}</figcaption><img alt="{p.stem}" '
        f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}"></figure>'
        for p in images
    )
    run = view["run"]
    summary = (
        f"<section><h2>Run</h2><p>{run['outcomes']} outcomes from {run['db']}</p>"
        f'<div class="charts">{figures}</div></section>'
    )
    html = html.replace(
        '<link rel="stylesheet" href="/dashboard/static/dashboard.css">', f"<style>{css}</style>"
    )
    html = html.replace('<main id="main" hidden>', f'<main id="main" hidden>{summary}')
    html = html.replace(
        '<script src="/dashboard/static/dashboard.js"></script>',
        f"<script>window.ZETA_DATA = {_script_json(view)};</script>\n<script>{js}</script>",
    )
    page = out / "report.html"
    page.write_text(html, encoding="utf-8")
    return {"html": str(page), "images": [str(p) for p in images], "view": view}
