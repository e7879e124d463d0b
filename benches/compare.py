"""Same-run, interleaved comparison of zeta_fast with its references.

Shared, noisy machines make absolute timings unreliable; ratios measured in
one run, with the contenders interleaved in rounds (order shuffled each
round), are not. Every scenario reports per-call min and median over rounds
and each contender's median as a multiple of zeta_fast's.

    python -m benches.compare                 # all scenarios, a table
    python -m benches.compare --json out.json # and the raw figures
    python -m benches.compare --quick         # a few rounds, for smoke tests
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import threading
import time
import timeit
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from rich.console import Console
from rich.table import Table

from benches import tracker_contenders
from benches.contenders import Contender, batch_contenders, decision_contenders, make_inputs
from zeta_fast import AdaptiveScorer


@dataclass
class Result:
    scenario: str
    contender: str
    min_ns: float
    median_ns: float
    median_ratio_to_zeta: float
    items_per_call: int


def _timer(fn: Callable[..., object], args: tuple[object, ...]) -> timeit.Timer:
    # A direct call statement: no wrapper function between the loop and fn.
    names = [f"a{i}" for i in range(len(args))]
    scope: dict[str, object] = {"fn": fn, **dict(zip(names, args, strict=True))}
    return timeit.Timer(f"fn({', '.join(names)})", globals=scope)


def measure(
    scenario: str,
    contenders: dict[str, Contender],
    rounds: int,
    round_s: float,
    items_per_call: int,
) -> list[Result]:
    timers = {name: _timer(fn, args) for name, (fn, args) in contenders.items()}
    # Calibrate each contender to ~round_s per timing so fast and slow ones
    # get equally trustworthy samples.
    numbers = {}
    for name, timer in timers.items():
        number, _ = timer.autorange()
        per_call = timer.timeit(number) / number
        numbers[name] = max(1, int(round_s / per_call))
    samples: dict[str, list[float]] = {name: [] for name in timers}
    order = list(timers)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            samples[name].append(timers[name].timeit(numbers[name]) / numbers[name] * 1e9)
    zeta = next(name for name in timers if name.startswith("zeta_fast"))
    zeta_median = statistics.median(samples[zeta])
    return [
        Result(
            scenario=scenario,
            contender=name,
            min_ns=min(values),
            median_ns=statistics.median(values),
            median_ratio_to_zeta=statistics.median(values) / zeta_median,
            items_per_call=items_per_call,
        )
        for name, values in samples.items()
    ]


def two_thread_contenders() -> dict[str, Contender]:
    """Two Python threads scoring 1M candidates each, GIL released vs held."""
    data = make_inputs(1_000_000)
    args = (data.capability, data.success_rate, data.avg_latency_ms, data.requests)
    scorer = AdaptiveScorer()

    def run(release: bool) -> None:
        threads = [
            threading.Thread(target=scorer.score_many, args=args, kwargs={"release_gil": release})
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return {
        "zeta_fast, GIL released": (run, (True,)),
        "zeta_fast, GIL held": (run, (False,)),
        "one thread, 1M once": (scorer.score_many, args),
    }


def release_cost_contenders(n: int) -> dict[str, Contender]:
    data = make_inputs(n)
    args = (data.capability, data.success_rate, data.avg_latency_ms, data.requests)
    scorer = AdaptiveScorer()
    return {
        "zeta_fast, GIL held": (lambda: scorer.score_many(*args, release_gil=False), ()),
        "zeta_fast, GIL released": (lambda: scorer.score_many(*args, release_gil=True), ()),
    }


def contention(sizes: tuple[int, ...], calls: int) -> Table:
    """Caller latency and a busy Python thread's progress, GIL held vs released.

    Releasing the GIL lets the other thread run during the scoring, but the
    caller may then wait up to the interpreter's switch interval (5 ms) to
    get the GIL back: the threshold weighs one against the other.
    """
    table = Table(title="score_many() beside a busy Python thread (medians)")
    for column in ("candidates", "GIL", "caller latency", "other thread, loops/ms"):
        table.add_column(column, justify="right")
    scorer = AdaptiveScorer()
    for n in sizes:
        data = make_inputs(n)
        args = (data.capability, data.success_rate, data.avg_latency_ms, data.requests)
        for release in (False, True):
            stop = threading.Event()
            loops = [0]

            def spin(stop: threading.Event = stop, loops: list[int] = loops) -> None:
                while not stop.is_set():
                    loops[0] += 1

            thread = threading.Thread(target=spin)
            thread.start()
            latencies = []
            started = time.perf_counter()
            for _ in range(calls):
                t0 = time.perf_counter_ns()
                scorer.score_many(*args, release_gil=release)
                latencies.append(time.perf_counter_ns() - t0)
            elapsed_ms = (time.perf_counter() - started) * 1e3
            stop.set()
            thread.join()
            table.add_row(
                f"{n:,}",
                "released" if release else "held",
                _format_ns(statistics.median(latencies)),
                f"{loops[0] / elapsed_ms:,.0f}",
            )
    return table


def scenarios(quick: bool) -> list[tuple[str, dict[str, Contender], int]]:
    found = [
        ("best() over 8 candidates", decision_contenders(8), 8),
        ("best() over 64 candidates", decision_contenders(64), 64),
        ("score_many() over 1,000,000", batch_contenders(1_000_000), 1_000_000),
        ("2 threads x score_many(1M)", two_thread_contenders(), 2_000_000),
    ]
    found += [
        ("record() one outcome", tracker_contenders.record_contenders(), 1),
        ("tracked decision over 8", tracker_contenders.decision_contenders(8), 8),
        ("tracked decision over 64", tracker_contenders.decision_contenders(64), 64),
        (
            "200,000 records: 1 vs 2 threads",
            tracker_contenders.threaded_record_contenders(20_000 if quick else 200_000),
            20_000 if quick else 200_000,
        ),
    ]
    from benches import router_contenders

    found.append(("route()+record(), 8 models x 4 replicas", router_contenders.contenders(), 1))
    from benches.bench_profile import PROMPT, python_counts
    from zeta_fast import profile

    found.append(
        (
            "profile() a 2 KB prompt",
            {
                "zeta_fast.profile": (profile, (PROMPT,)),
                "Python word+bigram counting (no model)": (python_counts, (PROMPT,)),
            },
            1,
        )
    )
    sizes = (4_096, 16_384) if quick else (1_024, 4_096, 16_384, 65_536)
    found += [(f"GIL release cost at {n:,}", release_cost_contenders(n), n) for n in sizes]
    return found


def _format_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} us"
    return f"{ns:.0f} ns"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--round-ms", type=float, default=20.0, help="time per sample")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 5 ms")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--only", help="run only scenarios whose name contains this text")
    args = parser.parse_args()
    rounds, round_s = (3, 0.005) if args.quick else (args.rounds, args.round_ms / 1e3)
    results: list[Result] = []
    console = Console()
    if not console.is_terminal:
        console = Console(width=132)  # piped: rich would squash tables to 80 columns
    chosen = [s for s in scenarios(args.quick) if not args.only or args.only in s[0]]
    runs_contention = not args.only or args.only in "busy thread"
    if not chosen and not runs_contention:
        parser.error(f"no scenario matches {args.only!r}")
    for scenario, contenders, items in chosen:
        measured = measure(scenario, contenders, rounds, round_s, items)
        results += measured
        table = Table(title=f"{scenario} ({rounds} interleaved rounds)")
        for column in ("contender", "min", "median", "median / zeta_fast", "M items/s"):
            table.add_column(column, justify="left" if column == "contender" else "right")
        for r in measured:
            table.add_row(
                r.contender,
                _format_ns(r.min_ns),
                _format_ns(r.median_ns),
                f"{r.median_ratio_to_zeta:.2f}x",
                f"{r.items_per_call / r.median_ns * 1e3:.1f}",
            )
        console.print(table)
    if runs_contention:
        sizes = (16_384, 1_000_000) if args.quick else (4_096, 16_384, 65_536, 262_144, 1_000_000)
        console.print(contention(sizes, calls=5 if args.quick else 50))
    if args.json:
        machine = {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        }
        with open(args.json, "w") as handle:
            json.dump(
                {"machine": machine, "results": [asdict(r) for r in results]}, handle, indent=2
            )


if __name__ == "__main__":
    main()
