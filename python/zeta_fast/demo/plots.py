"""The demo's PNG plots: traffic share and scores over time, faults marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zeta_fast.demo.scenario import MODELS, DemoState

__all__ = ["write_plots"]

#: The (model, task) scores plotted: the tasks that move when the faults hit.
SCORED = [
    ("reasoner-large", "reasoning"),
    ("coder-small", "reasoning"),
    ("reasoner-large", "code"),
    ("coder-small", "code"),
]


def write_plots(state: DemoState, out: Path) -> list[Path]:
    """Writes ``traffic.png`` and ``scores.png`` into ``out``; returns them.

    Raises:
        ImportError: matplotlib is missing (``pip install 'zeta_fast[plots]'``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = state.samples
    times = [s.t for s in samples]
    marks = [(t, text) for t, text in state.events if text.startswith(("fault", "healed"))]

    def mark(axis: Any) -> None:
        for t, text in marks:
            color = "red" if text.startswith("fault") else "green"
            axis.axvline(t, color=color, linestyle="--", linewidth=1)

    figure, (share_axis, replica_axis) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for model_id, _, _ in MODELS:
        shares = []
        for s in samples:
            total = sum(s.served.values())
            shares.append(s.served.get(model_id, 0) / total if total else float("nan"))
        share_axis.plot(times, shares, label=model_id)
    share_axis.set_ylabel("share of answers")
    share_axis.set_title("traffic share per model (per 0.5 s)")
    share_axis.legend(loc="upper right")
    mark(share_axis)
    for model_id, _, _ in MODELS:
        for letter in "ab":
            replica = f"{model_id}-{letter}"
            rate = [s.replicas.get(replica, 0) / state.settings.sample_every_s for s in samples]
            replica_axis.plot(times, rate, label=replica)
    replica_axis.set_ylabel("answers / s")
    replica_axis.set_xlabel("seconds")
    replica_axis.set_title("answers per replica (dashed: red fault, green heal)")
    replica_axis.legend(loc="upper right", ncol=3, fontsize="small")
    mark(replica_axis)
    figure.tight_layout()
    traffic = out / "traffic.png"
    figure.savefig(traffic, dpi=100)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(10, 4.5))
    for model_id, task in SCORED:
        key = f"{model_id}/{task}"
        axis.plot(times, [s.scores.get(key, float("nan")) for s in samples], label=key)
    axis.set_ylabel("score (0..100)")
    axis.set_xlabel("seconds")
    axis.set_title("scores routing sees, per model and task")
    axis.legend(loc="lower left")
    mark(axis)
    figure.tight_layout()
    scores = out / "scores.png"
    figure.savefig(scores, dpi=100)
    plt.close(figure)
    return [traffic, scores]
