"""The learned router live, on a real outcome table: a `Router` with
learning on routes a stream of prompts between a weak and a strong model,
learning from scratch with bandit feedback (each answer judged through
`Router.feedback`, only the chosen model's outcome known), while the
cost/quality knob (`cost.willingness_to_pay`) sets how much quality is
worth. Each willingness to pay gives a share of strong calls and a quality;
PGR at that share says how much of the strong model's gain was kept
(random routing at share c keeps c).

    python -m benches.learned_live --data ../shared/data/routellm_evals/mmlu.csv
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from zeta_fast import ManualClock, PerformanceTracker, Router
from zeta_fast.config import parse_router_config
from zeta_fast.learning.evaluation import RoutingTable, load_table

# Prices per 1,000 tokens (the strong model ~20x the weak one, as for
# GPT-4-class vs Mixtral-class APIs).
WEAK_PRICE, STRONG_PRICE = 0.0006, 0.012
WILLINGNESS = (0.002, 0.005, 0.01, 0.02, 0.05, 1.0)


def live_run(
    table: RoutingTable,
    willingness: float | None,
    *,
    seed: int = 0,
    explore: float = 0.02,
    limit: int | None = None,
) -> dict[str, float]:
    """Streams the table's prompts (shuffled by ``seed``) through a learning
    router; returns its quality, strong share and PGR."""
    accuracy = table.outcomes.mean(axis=0)
    strong, weak = int(np.argmax(accuracy)), int(np.argmin(accuracy))
    names = {weak: "weak", strong: "strong"}
    raw: dict[str, Any] = {
        "models": [
            {
                "id": names[m],
                "capabilities": dict.fromkeys(("code", "reasoning", "chat", "knowledge"), 80.0),
                "cost_per_1k_tokens": STRONG_PRICE if m == strong else WEAK_PRICE,
                "replicas": [{"id": f"{names[m]}-0", "url": "http://127.0.0.1:9"}],
            }
            for m in (weak, strong)
        ],
        "learning": {"enabled": True, "explore": explore, "min_outcomes": 50},
        "outcome_log": {"enabled": False},
    }
    if willingness is not None:
        raw["cost"] = {"willingness_to_pay": willingness, "expected_completion_tokens": 0}
    tracker = PerformanceTracker(clock=ManualClock(2_000_000_000_000), persist=False)
    router = Router(parse_router_config(raw), tracker=tracker, spread_margin=0.0)
    order = np.random.default_rng(seed).permutation(len(table.ids))[:limit]
    correct = strong_calls = 0
    spent = all_weak = all_strong = 0.0
    column = {"weak": weak, "strong": strong}
    for i in order:
        decision = router.route(table.prompts[i])
        good = bool(table.outcomes[i, column[decision.model_id]])
        router.record(decision, True, 10.0)
        router.feedback(decision, good)
        correct += good
        strong_calls += decision.model_id == "strong"
        # What the call costs: the prompt's tokens at the model's price.
        tokens = decision.profile.features["token_estimate"] if decision.profile else 0
        spent += tokens * (STRONG_PRICE if decision.model_id == "strong" else WEAK_PRICE) / 1000
        all_weak += tokens * WEAK_PRICE / 1000
        all_strong += tokens * STRONG_PRICE / 1000
    n = len(order)
    weak_q = float(table.outcomes[order, weak].mean())
    strong_q = float(table.outcomes[order, strong].mean())
    quality = correct / n
    router.close()
    gain = strong_q - weak_q
    return {
        "willingness_to_pay": float("inf") if willingness is None else willingness,
        "strong_share": strong_calls / n,
        # Of the extra spend of sending everything to the strong model: the
        # share spent. Random routing at that spend keeps the same share of
        # the quality gain, so PGR above it is what routing earned.
        "spend_share": (spent - all_weak) / (all_strong - all_weak),
        "quality": quality,
        "pgr": (quality - weak_q) / gain if gain else 0.0,
        "weak_quality": weak_q,
        "strong_quality": strong_q,
        "n": n,
    }


def sweep(
    table: RoutingTable,
    willingness: Sequence[float] = WILLINGNESS,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    limit: int | None = None,
) -> list[dict[str, float]]:
    """``live_run`` per willingness to pay, averaged over ``seeds``."""
    rows = []
    for w in willingness:
        runs = [live_run(table, w, seed=s, limit=limit) for s in seeds]
        rows.append({k: float(np.mean([r[k] for r in runs])) for k in runs[0]})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a <model>_correct outcome table")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="prompts per run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = sweep(load_table(args.data), seeds=range(args.seeds), limit=args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"{'willingness $':>14} {'strong calls':>13} {'extra spend':>12} {'quality':>8} {'PGR':>6}"
    )
    for row in rows:
        print(
            f"{row['willingness_to_pay']:>14g} {row['strong_share']:>13.1%} "
            f"{row['spend_share']:>12.1%} {row['quality']:>8.1%} {row['pgr']:>6.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
