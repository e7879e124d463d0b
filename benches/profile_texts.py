"""What profiling 2 KB costs by the kind of text: the benchmark's prompt (a
code question repeated, so many tokens recur and their character grams are
read once) beside 2 KB of real user requests (Arena-Hard v2's prompts from
the shared data, joined: few tokens recur), interleaved in rounds.

    python -m benches.profile_texts                 # 9 rounds of 5,000 calls each
    python -m benches.profile_texts --data ../shared/data/task_type_prompts/prompts.csv
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benches.bench_profile import PROMPT
from zeta_fast import profile
from zeta_fast.profile_eval import load_rows

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "task_type_prompts" / "prompts.csv"


def arena_text(path: Path, size: int = 2048) -> str:
    """The first ``size`` characters of the source's prompts, joined."""
    rows = load_rows(path)
    text = " ".join(r["prompt"] for r in rows if r["source"] == "arena_hard_v2")
    if len(text) < size:
        raise ValueError(f"{path}: fewer than {size} characters of arena_hard_v2 prompts")
    return text[:size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    texts = {"benchmark prompt (2 KB)": PROMPT, "Arena-Hard v2 text (2 KB)": arena_text(args.data)}
    times: dict[str, list[float]] = {name: [] for name in texts}
    for _ in range(args.rounds):
        for name, text in texts.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                profile(text)
            times[name].append((time.perf_counter() - start) / args.calls * 1e6)
    for name, samples in times.items():
        print(f"{name:28s} min {min(samples):6.2f} us  median {statistics.median(samples):6.2f} us")


if __name__ == "__main__":
    main()
