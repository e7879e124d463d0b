"""The benchmark gate CI runs (``make bench-check``): the key scenarios as
ratios against references measured in the same run, interleaved in rounds,
failing when a ratio falls below the floor kept in ``benches/floors.toml``.

Absolute timings on shared CI machines mean little; a ratio of two
contenders timed side by side, order shuffled each round, is stable to a
margin measured and written beside each floor. A floor guards a claim the
README makes (zeta_fast against a tuned pure-Python loop, NumPy, LiteLLM;
the defaults against the bare core), so a change that loses it fails CI.

    python -m benches.check                    # the gate: a table, exit 1 below a floor
    python -m benches.check --json out.json    # and the figures, for an artifact
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import tomllib

from benches.compare import Result, measure
from benches.contenders import Contender, decision_contenders
from zeta_fast import Router, profile
from zeta_fast.config import parse_router_config

FLOORS = Path(__file__).with_name("floors.toml")


@dataclass
class Check:
    scenario: str
    numerator: str
    denominator: str
    floor: float
    ratio: float
    passed: bool


@contextmanager
def router_scenario() -> Iterator[dict[str, Contender]]:
    """route()+record() over 8 models x 4 replicas, the profile given:
    with the defaults on (alerts, outcome log, a persisting tracker), bare
    (both off), and LiteLLM's simple-shuffle decision when installed."""
    from benches.defaults_cost import PROMPT, router_config

    with tempfile.TemporaryDirectory() as folder:
        routers = {
            name: Router(parse_router_config(router_config(name, Path(folder) / name)))
            for name in ("defaults", "bare")
        }
        given = profile(PROMPT)
        found: dict[str, Contender] = {}
        for name, router in routers.items():
            route, record = router.route, router.record
            for _ in range(200):
                record(route(profile=given), True, 120.0)
            found[f"zeta_fast route()+record(), {name}"] = (
                lambda route=route, record=record: record(route(profile=given), True, 120.0),
                (),
            )
        try:
            from benches.router_contenders import litellm_router

            shuffle = litellm_router("simple-shuffle")
            messages = [{"role": "user", "content": PROMPT}]
            found["LiteLLM Router simple-shuffle (decision only)"] = (
                lambda: shuffle.get_available_deployment(model="auto", messages=messages),
                (),
            )
        except ImportError:
            pass
        try:
            yield found
        finally:
            for router in routers.values():
                router.close()
                router.tracker.close()


#: The process-CPU scenario: the defaults' background work (the outcome log's
#: writer, the snapshot saver) is not on the caller's thread, so the wall
#: clock alone cannot see it grow.
CPU_SCENARIO = "route()+record(), 8 x 4, process CPU"


def cpu_results(rounds: int, requests: int) -> list[Result]:
    """Process CPU per route()+record(), background threads included and
    drained (``benches.defaults_cost``), bare and defaults interleaved."""
    from benches.defaults_cost import cost

    found: dict[str, list[float]] = {"bare": [], "defaults": []}
    for _ in range(rounds):
        for configuration, runs in found.items():
            runs.append(cost(configuration, requests)[1] * 1e3)
    defaults = statistics.median(found["defaults"])
    return [
        Result(
            CPU_SCENARIO,
            f"zeta_fast route()+record(), {configuration}",
            min(runs),
            statistics.median(runs),
            statistics.median(runs) / defaults,
            1,
        )
        for configuration, runs in found.items()
    ]


def profile_scenario() -> dict[str, Contender]:
    from benches.bench_profile import PROMPT, python_counts

    return {
        "zeta_fast.profile": (profile, (PROMPT,)),
        "Python word+bigram counting (no model)": (python_counts, (PROMPT,)),
    }


def record_scenario() -> dict[str, Contender]:
    from benches.tracker_contenders import KEY, DequeTracker
    from zeta_fast import PerformanceTracker

    tracker = PerformanceTracker(persist=False)
    deques = DequeTracker()
    return {
        "zeta_fast tracker.record(model, replica, task, ...)": (
            tracker.record,
            (*KEY, True, 123.0),
        ),
        "Python deque window + lock, running sums": (deques.record, (*KEY, True, 123.0)),
    }


def run(
    rounds: int, round_s: float, floors_path: Path = FLOORS
) -> tuple[list[Result], list[Check]]:
    floors = tomllib.loads(floors_path.read_text())["floor"]
    scenarios: dict[str, Callable[[], dict[str, Contender]]] = {
        "best() over 8 candidates": lambda: decision_contenders(8),
        "profile() a 2 KB prompt": profile_scenario,
        "record() one outcome": record_scenario,
    }
    results: list[Result] = []
    for name, build in scenarios.items():
        results += measure(name, build(), rounds, round_s, 1)
    with router_scenario() as contenders:
        results += measure("route()+record(), 8 x 4", contenders, rounds, round_s, 1)
    results += cpu_results(max(3, rounds // 3), 20_000)
    medians = {(r.scenario, r.contender): r.median_ns for r in results}
    checks = []
    for floor in floors:
        key = (floor["scenario"], floor["numerator"]), (floor["scenario"], floor["denominator"])
        if key[0] not in medians or key[1] not in medians:
            if floor.get("optional", False):
                continue  # a peer library that is not installed
            raise SystemExit(f"floors.toml names a contender the run lacks: {key}")
        ratio = medians[key[0]] / medians[key[1]]
        checks.append(
            Check(
                floor["scenario"],
                floor["numerator"],
                floor["denominator"],
                floor["floor"],
                ratio,
                ratio >= floor["floor"],
            )
        )
    return results, checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--round-ms", type=float, default=20.0)
    parser.add_argument("--json", help="write the figures and the checks to this file")
    parser.add_argument("--floors", type=Path, default=FLOORS, help="the floors (TOML)")
    args = parser.parse_args()
    results, checks = run(args.rounds, args.round_ms / 1e3, args.floors)
    for r in results:
        print(
            f"{r.scenario:38s} {r.contender:58s}"
            f" min {r.min_ns:10.0f} ns  median {r.median_ns:10.0f} ns"
        )
    print()
    for c in checks:
        mark = "ok  " if c.passed else "FAIL"
        print(
            f"{mark} {c.scenario}: {c.numerator} / {c.denominator} = {c.ratio:.2f}"
            f" (floor {c.floor:.2f})"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {"results": [asdict(r) for r in results], "checks": [asdict(c) for c in checks]},
                indent=2,
            )
        )
    failed = [c for c in checks if not c.passed]
    if failed:
        print(f"\n{len(failed)} ratio(s) below their floor", file=sys.stderr)
        sys.exit(1)
    print(
        f"\nall {len(checks)} ratios at or above their floors "
        f"(median of {statistics.median([c.ratio / c.floor for c in checks]):.2f}x the floor)"
    )


if __name__ == "__main__":
    main()
