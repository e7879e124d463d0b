"""How far the router's own signals take the learned router: online learning
curves per signal mix on a per-prompt outcome table (``zeta-fast eval signals``).

The test prompts of a split arrive one by one in a random order, as in
:func:`zeta_fast.learning.evaluation.evaluate_online`: each goes to the strong
model when its predicted advantage is in the top ``strong_share`` of the last
500 predictions (that share corrected by how far the stream is over or under
it, so every mix spends the same strong calls), 5 % go by chance (bandit
exploration), and what the mix's signals say of the answer is learned at
once, with the sources' default weights (``learning.source_weights``). The
table says whether each model's answer was right; a signal sees it through
its stated coverage and error:

- ``none``: nothing is learned (the router routes by chance at the share);
- ``structural``: the checks of the answers' shape. An outcome table's
  answers are all well-formed (a letter for MMLU), so they give no label:
  the curve shows what they cannot teach, not what they cost;
- ``regeneration``: a wrong answer is regenerated with probability
  ``regen_coverage`` (30 %) and a right one by mistake with ``regen_false``
  (5 %): a bad verdict (weight 0.5); an answer not regenerated continues
  with probability ``continue_rate`` (50 %): a weak good one (0.1);
- ``judge``: a share ``judge_sample`` (5 %) of the answers graded, agreeing
  with the truth with probability ``judge_agreement`` (80 %);
- ``shadow``: for ``shadow_sample`` (5 %) of the requests sent to the weak
  model, the strong one answers too and the judge (at its agreement) says
  whether each answer was right: both models learn, the strong calls it
  costs counted apart (``shadow_calls``);
- ``judge+regeneration``: the automatic mix the issue's target is about;
- ``automatic``: every automatic source at once (regeneration, the judge
  and the shadow), the shadow's strong calls paid out of the same strong
  budget: the router routes fewer requests to the strong model by as many;
- ``explicit``: every chosen answer's truth (full bandit feedback);
- ``full``: both models' truths on every request (no router sees this).

Each curve is the stream's cumulative PGR (and strong share) at checkpoints,
averaged over the seeds; PGR as in RouteLLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zeta_fast._core import DEFAULT_CONFIDENCE, VERDICT_SOURCES, LearningSettings
from zeta_fast.learning.evaluation import RoutingTable, online_split, streamed_prompt
from zeta_fast.learning.predictor import OutcomePredictor

__all__ = ["MIXES", "SignalRates", "evaluate_signals", "write_signal_plot"]

MIXES = (
    "none",
    "structural",
    "regeneration",
    "judge",
    "shadow",
    "judge+regeneration",
    "automatic",
    "explicit",
    "full",
)

_WEIGHTS: dict[str, float] = LearningSettings().to_dict()["source_weights"]
#: What the gateway learns each source's verdict as when it says no more.
_CONFIDENCE: dict[str, float] = dict(zip(VERDICT_SOURCES, DEFAULT_CONFIDENCE, strict=True))


@dataclass(frozen=True)
class SignalRates:
    """The stated coverage and error of each signal."""

    regen_coverage: float = 0.30
    regen_false: float = 0.05
    continue_rate: float = 0.50
    judge_sample: float = 0.05
    judge_agreement: float = 0.80
    shadow_sample: float = 0.05

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def _labels(
    mix: str,
    right: bool,
    rates: SignalRates,
    rng: np.random.Generator,
) -> list[tuple[float, float]]:
    """(target, weight) verdicts a mix gives one chosen answer: each
    source's verdict as the probability of a good answer the gateway
    learns it as (its default confidence; a judge at its agreement)."""
    out: list[tuple[float, float]] = []
    if mix == "explicit":
        return [(float(right), _WEIGHTS["explicit"])]
    if mix in ("regeneration", "judge+regeneration", "automatic"):
        regenerated = rng.random() < (rates.regen_coverage if not right else rates.regen_false)
        if regenerated:
            out.append((1.0 - _CONFIDENCE["regeneration"], _WEIGHTS["regeneration"]))
        elif rng.random() < rates.continue_rate:
            out.append((_CONFIDENCE["continuation"], _WEIGHTS["continuation"]))
    if mix in ("judge", "judge+regeneration", "automatic") and rng.random() < rates.judge_sample:
        agrees = rng.random() < rates.judge_agreement
        good = right if agrees else not right
        confidence = rates.judge_agreement
        out.append((confidence if good else 1.0 - confidence, _WEIGHTS["judge"]))
    return out


def _stream(
    table: RoutingTable,
    mix: str,
    *,
    seed: int,
    strong_share: float,
    rates: SignalRates,
    checkpoints: int,
    test_share: float = 0.5,
    window: int = 500,
) -> dict[str, Any]:
    # The split of evaluate_online's seed: the same streams.
    stream, strong, weak = online_split(table, np.random.default_rng(seed), test_share)
    # The signals' own draws: the same for every mix of a seed where they meet.
    rng = np.random.default_rng(seed + 1_000_003)
    predictor = OutcomePredictor([table.models[weak], table.models[strong]])
    recent: list[float] = []
    quality = 0.0
    strong_calls = shadow_calls = labels = 0
    weak_q = float(table.outcomes[stream, weak].mean())
    strong_q = float(table.outcomes[stream, strong].mean())
    gain = strong_q - weak_q
    marks = {round(len(stream) * (k + 1) / checkpoints) for k in range(checkpoints)}
    curve: list[tuple[int, float, float]] = []
    correct_weak = correct_strong = 0.0
    for step, i in enumerate(stream, start=1):
        features, category, advantage = streamed_prompt(table, predictor, i)
        # The share is held at its target: the quantile moves by what the
        # stream is over or under so far (a learning router's advantages
        # drift, and a lagging window's quantile alone lets the share drift).
        spent = strong_calls + (shadow_calls if mix == "automatic" else 0)
        behind = (strong_share * (step - 1) - spent) / 50.0
        share = min(max(strong_share + behind, 0.01), 0.99)
        threshold = float(np.quantile(recent, 1.0 - share)) if len(recent) >= 20 else None
        # Ties (nothing learned yet, or nothing at all) go by chance at the share.
        if threshold is None or advantage == threshold or rng.random() < 0.05:
            use_strong = bool(rng.random() < share)
        else:
            use_strong = advantage > threshold
        recent.append(advantage)
        if len(recent) > window:
            recent.pop(0)
        chosen = strong if use_strong else weak
        right = bool(table.outcomes[i, chosen])
        quality += right
        strong_calls += use_strong
        correct_weak += float(table.outcomes[i, weak])
        correct_strong += float(table.outcomes[i, strong])
        known: list[bool | None] = [None, None]
        slot = 1 if use_strong else 0
        if mix == "full":
            known = [bool(table.outcomes[i, weak]), bool(table.outcomes[i, strong])]
            predictor.update(features, known, category=category)
            labels += 2
        else:
            shadowed = mix in ("shadow", "automatic") and not use_strong
            if shadowed and rng.random() < rates.shadow_sample:
                shadow_calls += 1
                for model, index in ((0, weak), (1, strong)):
                    truth = bool(table.outcomes[i, index])
                    agrees = rng.random() < rates.judge_agreement
                    good = truth if agrees else not truth
                    verdict: list[float | None] = [None, None]
                    a = rates.judge_agreement
                    verdict[model] = a if good else 1.0 - a
                    predictor.update(
                        features, verdict, category=category, weight=_WEIGHTS["shadow"]
                    )
                    labels += 1
            if mix not in ("none", "structural", "shadow"):
                for target, weight in _labels(mix, right, rates, rng):
                    soft: list[float | None] = [None, None]
                    soft[slot] = target
                    predictor.update(features, soft, category=category, weight=weight)
                    labels += 1
        if step in marks:
            # PGR of the stream so far, against the models' own so far.
            seen_gain = correct_strong - correct_weak
            pgr = (quality - correct_weak) / seen_gain if seen_gain else 0.0
            curve.append((step, pgr, strong_calls / step))
    total = quality / len(stream)
    return {
        "pgr": (total - weak_q) / gain if gain else 0.0,
        "strong_share": strong_calls / len(stream),
        "shadow_calls": shadow_calls / len(stream),
        "labels_per_request": labels / len(stream),
        "curve": curve,
        "n": len(stream),
    }


def evaluate_signals(
    table: RoutingTable,
    *,
    mixes: Sequence[str] = MIXES,
    seeds: Sequence[int] = (0, 1, 2),
    strong_share: float = 0.3,
    rates: SignalRates | None = None,
    checkpoints: int = 20,
) -> dict[str, Any]:
    """Per mix: mean (with its standard error over the seeds) and per-seed
    PGR, strong share, labels per request, shadow calls, and the learning
    curve (the seeds' mean)."""
    unknown = [m for m in mixes if m not in MIXES]
    if unknown:
        raise ValueError(f"unknown signal mix(es) {unknown}; known: {list(MIXES)}")
    if not 0.0 < strong_share < 1.0:
        raise ValueError(f"strong_share must be in (0, 1), got {strong_share!r}")
    if not seeds:
        raise ValueError("seeds must not be empty")
    rates = rates or SignalRates()
    report: dict[str, Any] = {"strong_share": strong_share, "rates": vars(rates), "mixes": {}}
    for mix in mixes:
        runs = [
            _stream(
                table,
                mix,
                seed=seed,
                strong_share=strong_share,
                rates=rates,
                checkpoints=checkpoints,
            )
            for seed in seeds
        ]
        pgrs = [run["pgr"] for run in runs]
        report["mixes"][mix] = {
            "pgr": float(np.mean(pgrs)),
            "pgr_min": float(np.min(pgrs)),
            "pgr_max": float(np.max(pgrs)),
            # The mean's standard error over the seeds: a seed's PGR swings by
            # +-0.08 on MMLU, so a difference of 0.01 needs tens of seeds.
            "pgr_se": float(np.std(pgrs, ddof=1) / np.sqrt(len(pgrs))) if len(pgrs) > 1 else 0.0,
            "strong_share": float(np.mean([r["strong_share"] for r in runs])),
            "shadow_calls": float(np.mean([r["shadow_calls"] for r in runs])),
            "labels_per_request": float(np.mean([r["labels_per_request"] for r in runs])),
            # The seeds' curves averaged point by point (every seed's stream
            # has the same length, so the same checkpoints).
            "curve": [
                (
                    points[0][0],
                    float(np.mean([p[1] for p in points])),
                    float(np.mean([p[2] for p in points])),
                )
                for points in zip(*(run["curve"] for run in runs), strict=True)
            ],
            "n": runs[0]["n"],
        }
    return report


def write_signal_plot(report: dict[str, Any], path: str | Path, title: str) -> Path:
    """The learning curves, one line per mix: the stream's cumulative PGR
    over requests, and beside it the share of strong calls it spent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (pgr_axis, share_axis) = plt.subplots(
        1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 2]}
    )
    for mix, row in report["mixes"].items():
        steps = [point[0] for point in row["curve"]]
        pgr_axis.plot(
            steps, [p[1] for p in row["curve"]], label=f"{mix} (mean PGR {row['pgr']:.3f})"
        )
        share_axis.plot(steps, [p[2] * 100 for p in row["curve"]], label=mix)
    pgr_axis.axhline(report["strong_share"], color="grey", linestyle=":", linewidth=1)
    pgr_axis.set_xlabel("requests learned from (online, from scratch; mean of the seeds)")
    pgr_axis.set_ylabel("PGR of the stream so far")
    pgr_axis.set_title(title)
    pgr_axis.legend(loc="lower right", fontsize=8)
    pgr_axis.grid(alpha=0.3)
    share_axis.axhline(report["strong_share"] * 100, color="grey", linestyle=":", linewidth=1)
    share_axis.set_xlabel("requests")
    share_axis.set_ylabel("strong calls so far, %")
    share_axis.set_title("the strong share each mix spent")
    share_axis.grid(alpha=0.3)
    figure.tight_layout()
    out = Path(path)
    figure.savefig(out, dpi=90)
    plt.close(figure)
    return out
