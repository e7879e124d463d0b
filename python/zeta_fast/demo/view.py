"""What the demo shows while it runs and when it is done (``rich``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from zeta_fast.demo.scenario import MODELS, DemoState, Sample
from zeta_fast.loadgen import percentile

__all__ = ["live_view", "summary_tables"]

#: The task each model's score is shown for in the live view.
SHOWN_TASKS = ("code", "reasoning", "embedding")


def live_view(state: DemoState, sample: Sample | None) -> RenderableType:
    """The live panel: progress, per-model share and health, per-replica load."""
    settings = state.settings
    done = len(state.outcomes)
    ok = sum(1 for o in state.outcomes if o.status == 200)
    header = Text.assemble(
        ("zeta_fast demo ", "bold"),
        f"t={state.now():5.1f}s / {settings.duration_s:.0f}s  phase: ",
        (state.phase, {"healthy": "green", "fault": "bold red", "healed": "yellow"}[state.phase]),
        f"  sent {state.sent}  answered {done}  success {(ok / done if done else 1.0):.2%}",
    )
    recent = state.outcomes[-400:]
    by_model = Counter(o.model for o in recent if o.status == 200)
    total_recent = sum(by_model.values()) or 1
    models = Table(title="models (share of the last 400 answers)", expand=False)
    for column in ("model", "share", "p50 ms", *(f"score {t}" for t in SHOWN_TASKS), "penalties"):
        models.add_column(column, justify="left" if column in ("model", "penalties") else "right")
    for model_id, _, _ in MODELS:
        latencies = [o.latency_ms for o in recent if o.model == model_id and o.status == 200]
        scores = []
        penalties: set[str] = set()
        for task in SHOWN_TASKS:
            key = f"{model_id}/{task}"
            if sample is None or key not in sample.scores:
                scores.append("-")
                continue
            scores.append(f"{sample.scores[key]:.1f}")
            penalties |= set(sample.penalties[key])
        models.add_row(
            model_id,
            f"{by_model.get(model_id, 0) / total_recent:.0%}",
            f"{percentile(latencies, 0.5):.1f}" if latencies else "-",
            *scores,
            Text(", ".join(sorted(penalties)) or "-", style="red" if penalties else ""),
        )
    replicas = Table(title="replicas", expand=False)
    for column in ("replica", "share of model", "in flight", "recent record", "breaker", "health"):
        replicas.add_column(column, justify="left" if column == "replica" else "right")
    by_replica = Counter(o.replica for o in recent if o.status == 200)
    for model_id, _, _ in MODELS:
        model_total = sum(v for k, v in by_replica.items() if k.startswith(model_id)) or 1
        for letter in "ab":
            replica = f"{model_id}-{letter}"
            breaker = sample.breakers.get(replica, "?") if sample else "?"
            passed_over = sample.degraded.get(replica, False) if sample else False
            healthy = sample.healthy.get(replica, True) if sample else True
            replicas.add_row(
                replica,
                f"{by_replica.get(replica, 0) / model_total:.0%}",
                str(sample.in_flight.get(replica, 0)) if sample else "-",
                Text(
                    "passed over" if passed_over else "good",
                    style="red" if passed_over else "green",
                ),
                Text(breaker, style="red" if breaker != "closed" else "green"),
                Text("up" if healthy else "down", style="green" if healthy else "red"),
            )
    events = Text("\n".join(f"{t:6.2f}s  {text}" for t, text in state.events[-6:]))
    return Group(header, models, replicas, events)


def summary_tables(report: dict[str, Any]) -> list[Table]:
    """The final tables: per phase, and what happened to the faulty replicas."""
    phases = Table(title="zeta_fast demo: what the router did, phase by phase")
    columns = (
        "phase",
        "requests",
        "success",
        "p50 ms",
        "p99 ms",
        "slowed replica's share",
        "reasoning -> reasoner",
        "answers by model",
    )
    for column in columns:
        phases.add_column(
            column, justify="left" if column in ("phase", "answers by model") else "right"
        )
    for name, phase in report["phases"].items():
        share = phase["slowed_replica_share_of_its_model"]
        reasoning = phase["reasoning_to_reasoner_share"]
        phases.add_row(
            name,
            str(phase["requests"]),
            f"{phase['success_rate']:.2%}" if phase["success_rate"] is not None else "-",
            f"{phase['p50_ms']:.1f}",
            f"{phase['p99_ms']:.1f}",
            f"{share:.0%}" if share is not None else "-",
            f"{reasoning:.0%}" if reasoning is not None else "-",
            ", ".join(f"{k} {v}" for k, v in sorted(phase["by_model"].items())),
        )
    killed = report["killed_replica"]
    faults = Table(title="the killed replica")
    for column in (
        "replica",
        "answers after the kill",
        "passed over after",
        "breaker open after",
        "health down after",
    ):
        faults.add_column(column)
    times = [killed[k] for k in ("avoided_after_s", "breaker_open_after_s", "health_down_after_s")]
    faults.add_row(
        killed["replica"],
        str(killed["answers_after_kill"]),
        *(f"{t} s" if t is not None else "-" for t in times),
    )
    return [phases, faults]
