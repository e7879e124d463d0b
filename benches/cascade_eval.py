"""Cost and quality of a small-then-large cascade on recorded outcomes.

    python -m benches.cascade_eval [--data ../shared/data/routellm_evals/mt_bench_scores.csv]

MT-Bench turns answered by a weak (Mixtral-8x7B) and a strong (GPT-4) model,
each graded 1-10 by a GPT-4 judge. The cascade runs the weak model on every
turn and escalates to the strong one when a validator rejects the weak
answer (``Router.cascade(..., validator=)``); the validator here is such a
judge accepting a weak answer graded at least ``t``. Cost counts the calls
at the data README's prices (weak ~$0.6 / M tokens, strong ~$20 / M tokens,
equal tokens per call), relative to sending everything to the strong model.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

WEAK_PRICE, STRONG_PRICE = 0.6, 20.0
DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/routellm_evals/mt_bench_scores.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    args = parser.parse_args()
    with args.data.open() as handle:
        rows = [
            (float(r["mixtral_8x7b_score"]), float(r["gpt4_1106_score"]))
            for r in csv.DictReader(handle)
        ]
    n = len(rows)
    weak_mean = sum(w for w, _ in rows) / n
    strong_mean = sum(s for _, s in rows) / n
    print(
        f"{n} turns: weak only {weak_mean:.2f} (cost {WEAK_PRICE / STRONG_PRICE:.1%}), "
        f"strong only {strong_mean:.2f} (cost 100%)"
    )
    print("threshold  escalated  mean score  cost vs strong-only")
    for threshold in (6, 7, 8, 9, 10):
        escalated = [w < threshold for w, _ in rows]
        quality = sum(s if e else w for (w, s), e in zip(rows, escalated, strict=True)) / n
        share = sum(escalated) / n
        cost = (WEAK_PRICE + share * STRONG_PRICE) / STRONG_PRICE
        print(f"{threshold:>9}  {share:>9.1%}  {quality:>10.2f}  {cost:>19.1%}")


if __name__ == "__main__":
    main()
