"""What the dashboard shows, as plain data: read from a running router (the
live page's ``/dashboard/data``) or rebuilt from an outcome log
(``zeta-fast report``). One shape for both, so the page and the report
render the same views.

- ``models``: per model and task type, the configured capability, the
  score routing gives it now (the performance score), the penalties applied
  and why; per model the window's requests, success rate and latency
  percentiles; per replica in-flight load, health, breaker, recent record.
- ``history``: samples over time (a second apart live) of each model's
  success rate, p50/p95/p99 latency and in-flight requests.
- ``decisions``: the latest attempts with their score breakdown.
- ``alerts``: open (within their cool-down) and past.
- ``learned``: the learned router's view: per category (task type x
  complexity band) each model's smoothed success rate and the winner.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zeta_fast.learning.predictor import OutcomePredictor
    from zeta_fast.outcomes import RecentOutcome
    from zeta_fast.router import Router

__all__ = ["History", "learned_view", "live_view", "penalty_reasons", "signals_view"]


def penalty_reasons(
    penalties: Iterable[str],
    success_rate: float | None,
    avg_latency_ms: float | None,
    scoring: Mapping[str, Any],
    relative_latency_factor: float = 0.0,
) -> dict[str, str]:
    """Why each penalty applies, in words, from the figures it was judged on."""
    reasons = {}
    for name in penalties:
        if name == "low_success_rate":
            reasons[name] = (
                f"success {_percent(success_rate)} below "
                f"{scoring['min_acceptable_success_rate']:.0%}"
            )
        elif name == "high_latency":
            reasons[name] = (
                f"mean latency {_ms(avg_latency_ms)} above "
                f"{scoring['max_acceptable_latency_ms']:g} ms"
            )
        elif name == "relative_latency":
            reasons[name] = (
                f"mean latency {_ms(avg_latency_ms)} over {relative_latency_factor:g}x "
                "the other candidates' median"
            )
        else:
            reasons[name] = name
    return reasons


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


class History:
    """Samples of every model's window figures, one per ``sample()`` call
    (a second apart on the live page), the latest ``size`` kept."""

    def __init__(self, size: int = 600) -> None:
        self.samples: deque[dict[str, Any]] = deque(maxlen=size)

    def sample(self, router: Router, now: float | None = None) -> dict[str, Any]:
        point: dict[str, Any] = {
            "ts": time.time() if now is None else now,
            "models": {},
            "replicas": {},
        }
        for model in router.config.models:
            stats = router.tracker.stats(model.id)
            in_flight = router.core.in_flight(model.id)
            point["models"][model.id] = {
                "requests": stats.requests,
                "success_rate": stats.success_rate,
                "p50_ms": stats.p50_ms,
                "p95_ms": stats.p95_ms,
                "p99_ms": stats.p99_ms,
                "in_flight": sum(in_flight),
            }
            for replica, load in zip(model.replicas, in_flight, strict=True):
                replica_stats = router.tracker.stats(model.id, replica=replica.id)
                point["replicas"][f"{model.id}/{replica.id}"] = {
                    "in_flight": load,
                    "p95_ms": replica_stats.p95_ms,
                }
        # Verdicts so far per source (the page turns them into labels per
        # minute) and each model's learned success rate overall (how its
        # learned capability moves).
        verdicts: dict[str, int] = {}
        for source, _, good, bad in router.core.verdict_counts():
            verdicts[source] = verdicts.get(source, 0) + good + bad
        point["verdicts"] = verdicts
        predictor = router.predictor
        if predictor is not None:
            point["learned"] = dict(
                zip(predictor.models, (float(p) for p in predictor.prior(None)), strict=True)
            )
        self.samples.append(point)
        return point


def _decision_row(ts: float, decision: Any, kind: str, latency_ms: float) -> dict[str, Any]:
    record = decision.to_dict()
    return {
        "ts": ts,
        "model": record["model_id"],
        "replica": record["replica_id"],
        "task": record["task_type"],
        "complexity": record["complexity"],
        "capability": record["capability_score"],
        "score": record["performance_score"],
        "penalties": record["penalties"],
        "runners_up": record["runners_up"],
        "explored": record.get("explored", False),
        "outcome": kind,
        "latency_ms": latency_ms,
    }


def live_view(
    router: Router,
    history: History | None = None,
    recent: Iterable[RecentOutcome] = (),
    *,
    decisions: int = 30,
    signal_events: Mapping[tuple[str, str], int] | None = None,
) -> dict[str, Any]:
    """The dashboard's data, read from a running router now (with the
    gateway's signal counters, ``signal_events``, when it has them)."""
    scoring = router.config.adaptive_config().to_dict()
    relative = router.config.relative_latency_factor
    models = []
    scores: dict[str, list[dict[str, Any]]] = {}
    for model_id, task, breakdown in router.core.scores():
        penalties = list(breakdown.penalties)
        scores.setdefault(model_id, []).append(
            {
                "task": task,
                "capability": breakdown.capability_score,
                "score": breakdown.performance_score,
                "success_rate": breakdown.success_rate,
                "avg_latency_ms": breakdown.avg_latency_ms,
                "has_data": breakdown.has_performance_data,
                "penalties": penalties,
                "reasons": penalty_reasons(
                    penalties, breakdown.success_rate, breakdown.avg_latency_ms, scoring, relative
                ),
            }
        )
    for model in router.config.models:
        stats = router.tracker.stats(model.id)
        statuses = router.core.replica_status(model.id)
        caches = _prefix_caches(router, model.id)
        replicas: list[dict[str, Any]] = [
            {
                **_replica_quantiles(router, model.id, status.replica_id),
                **caches.get(status.replica_id, _NO_CACHE),
                "id": status.replica_id,
                "in_flight": status.in_flight,
                "healthy": status.healthy,
                "breaker": status.breaker,
                "degraded": status.degraded,
                "recent_failure_share": status.recent_failure_share,
                "recent_latency_ms": status.recent_latency_ms,
                "requests": sum(status.outcomes.values()),
            }
            for status in statuses
        ]
        models.append(
            {
                "id": model.id,
                "requests": stats.requests,
                "success_rate": stats.success_rate,
                "p50_ms": stats.p50_ms,
                "p95_ms": stats.p95_ms,
                "p99_ms": stats.p99_ms,
                "in_flight": sum(status.in_flight for status in statuses),
                "tasks": scores.get(model.id, []),
                "replicas": replicas,
            }
        )
    latest = list(recent)[-decisions:]
    return {
        "ts": time.time(),
        "source": "live",
        "scoring": scoring,
        "models": models,
        "history": list(history.samples) if history is not None else [],
        "decisions": [_decision_row(*item) for item in reversed(latest)],
        "alerts": _alerts(router),
        "learned": _learned(router),
        "signals": signals_view(router, history, signal_events),
        "shared": _shared(router),
    }


def signals_view(
    router: Router,
    history: History | None = None,
    events: Mapping[tuple[str, str], int] | None = None,
) -> dict[str, Any]:
    """The quality signals: verdicts per source (good, bad, labels per
    minute over the last minute of history), each model's structural check
    record per request kind, and what the signal sources did."""
    sources: dict[str, dict[str, Any]] = {}
    for source, model, good, bad in router.core.verdict_counts():
        row = sources.setdefault(source, {"source": source, "good": 0, "bad": 0, "models": {}})
        row["good"] += good
        row["bad"] += bad
        row["models"][model] = {"good": good, "bad": bad}
    samples = list(history.samples) if history is not None else []
    if len(samples) >= 2:
        last = samples[-1]
        first = next((p for p in samples if last["ts"] - p["ts"] <= 60.0), samples[0])
        span = max(last["ts"] - first["ts"], 1e-9)
        for source, row in sources.items():
            before = first.get("verdicts", {}).get(source, 0)
            now = last.get("verdicts", {}).get(source, 0)
            row["per_minute"] = (now - before) * 60.0 / span if span >= 1.0 else None
    kinds = {model.id: router.core.kind_checks(model.id) for model in router.config.models}
    return {
        "sources": sorted(sources.values(), key=lambda r: r["source"]),
        "kinds": {
            model: {k: {"checked": c, "failed": f, "factor": x} for k, (c, f, x) in per.items()}
            for model, per in kinds.items()
        },
        "events": {f"{signal}:{event}": n for (signal, event), n in sorted((events or {}).items())},
    }


#: A replica's prefix-cache figures when its model is not under cache_aware.
_NO_CACHE: dict[str, float | None] = {"cache_hit_share": None, "cache_expected_share": None}


def _prefix_caches(router: Router, model: str) -> dict[str, dict[str, float | None]]:
    """Per replica: the share of prompt tokens its engine reported reused
    (measured) and the share the ``cache_aware`` index expected; None
    before any report, and for models under another policy."""
    index = router.core.prefix_cache(model)
    if index is None:
        return {}
    out: dict[str, dict[str, float | None]] = {}
    for replica, row in index["replicas"].items():
        prompt = row["prompt_tokens"]
        out[replica] = {
            "cache_hit_share": row["cached_tokens"] / prompt if prompt else None,
            "cache_expected_share": row["predicted_tokens"] / prompt if prompt else None,
        }
    return out


def _shared(router: Router) -> dict[str, Any]:
    shared = router.shared
    if shared is None:
        return {"enabled": False}
    return {
        "enabled": True,
        "up": shared.up,
        "instance_id": shared.instance_id,
        "remote_instances": shared.stats.remote_instances,
        "errors": shared.stats.errors,
    }


def _replica_quantiles(router: Router, model: str, replica: str) -> dict[str, float | None]:
    stats = router.tracker.stats(model, replica=replica)
    return {"p50_ms": stats.p50_ms, "p95_ms": stats.p95_ms, "p99_ms": stats.p99_ms}


def _alerts(router: Router) -> dict[str, Any]:
    engine = router.alerts
    if engine is None:
        return {"enabled": False, "open": [], "past": []}
    attention = engine.needs_attention()
    open_alerts = [a.to_dict() for alerts in attention.values() for a in alerts]
    return {
        "enabled": True,
        "open": sorted(open_alerts, key=lambda a: -a["ts_ms"]),
        "past": [a.to_dict() for a in reversed(engine.fired[-50:])],
    }


def _learned(router: Router) -> dict[str, Any]:
    return learned_view(router.predictor)


def learned_view(predictor: OutcomePredictor | None) -> dict[str, Any]:
    """The learned router's table: per category each model's smoothed
    success rate, its learned outcomes, and the winner."""
    if predictor is None:
        return {"enabled": False, "models": [], "categories": []}
    rows = []
    for category, counts in sorted(predictor.categories()):
        prior = [float(p) for p in predictor.prior(category)]
        requests = [counts[m][1] for m in predictor.models]
        best = max(range(len(prior)), key=prior.__getitem__)
        rows.append(
            {
                "category": category,
                "success": dict(zip(predictor.models, prior, strict=True)),
                "requests": dict(zip(predictor.models, requests, strict=True)),
                "winner": predictor.models[best],
            }
        )
    return {
        "enabled": True,
        "models": predictor.models,
        "updates": predictor.updates,
        "categories": rows,
    }
