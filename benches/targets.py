"""The request path's speed targets, read on any machine.

The targets were set on a machine where the tuned pure-Python decision over
8 candidates takes 1.6 us (the mission's yardstick): the bare path 0.8 us,
the defaults 1.5 us wall and 2 us process CPU, a 1 KB prompt profiled 5 us,
the learned path 8 us. Absolute times do not travel between machines (nor
between minutes on a shared VM, whose speed here swung 1.8x within one
session); a time measured beside the yardstick in the same round does. So
each round times the yardstick and every contender back to back, and each
contender is reported as its time over the yardstick's in that round (min
and median over rounds), beside the target's own ratio (target / 1.6 us).

Contenders (8 models x 4 replicas, `route()` + `record()`):
- bare: alerts and outcome log off, the profile given;
- defaults: alerts, outcome log and a persisting tracker on (as a user runs
  it), the profile given; wall on the caller's thread, and process CPU
  including the background threads, drained (as `benches.defaults_cost`);
- 1 KB profiled: the defaults, the prompt profiled by `route()`;
- learned: the defaults with learning on, + `feedback()`, a 1 KB prompt.

    python -m benches.targets               # 9 rounds
    python -m benches.targets --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

from tests import reference

from benches.contenders import make_inputs
from benches.defaults_cost import cost, drain, router_config
from benches.router_contenders import PROMPT
from zeta_fast import Router, profile
from zeta_fast.config import parse_router_config

#: The tuned pure-Python decision over 8 candidates where the targets were set.
YARDSTICK_US = 1.6
#: Each contender's target on that machine, in us.
TARGETS_US = {
    "bare, profile given": 0.8,
    "defaults, profile given": 1.5,
    "defaults, 1 KB prompt profiled": 5.0,
    "defaults, learned + feedback, 1 KB prompt": 8.0,
    "defaults, process CPU, profile given": 2.0,
}


def per_call_us(fn: Callable[[], object], seconds: float = 0.05) -> float:
    """``fn``'s time per call in us over about ``seconds``."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * seconds / max(timer.timeit(number), 1e-9)))
    return timer.timeit(number) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--cpu-requests", type=int, default=20_000)
    args = parser.parse_args()

    lists = make_inputs(8).as_lists()
    best_python = reference.best_python

    def yardstick() -> object:
        return best_python(*lists)

    folder = Path(tempfile.mkdtemp())
    routers: dict[str, Router] = {}

    def router(name: str, configuration: str, learning: bool = False) -> Router:
        raw = router_config(configuration, folder / name)
        if learning:
            raw["learning"] = {"enabled": True}
        routers[name] = Router(parse_router_config(raw))
        return routers[name]

    given = profile(PROMPT)
    bare, defaults = router("bare", "bare"), router("defaults", "defaults")
    learned = router("learned", "defaults", learning=True)

    def bare_call() -> None:
        bare.record(bare.route(profile=given), True, 120.0)

    def defaults_call() -> None:
        defaults.record(defaults.route(profile=given), True, 120.0)

    def profiled_call() -> None:
        defaults.record(defaults.route(PROMPT), True, 120.0)

    def learned_call() -> None:
        decision = learned.route(PROMPT)
        learned.record(decision, True, 120.0)
        learned.feedback(decision, True)

    walls = {
        "bare, profile given": bare_call,
        "defaults, profile given": defaults_call,
        "defaults, 1 KB prompt profiled": profiled_call,
        "defaults, learned + feedback, 1 KB prompt": learned_call,
    }
    for call in walls.values():
        for _ in range(2_000):
            call()
    ratios: dict[str, list[float]] = {name: [] for name in TARGETS_US}
    times: dict[str, list[float]] = {name: [] for name in TARGETS_US}
    sticks: list[float] = []
    for _ in range(args.rounds):
        for name, call in walls.items():
            stick = per_call_us(yardstick)
            took = per_call_us(call)
            sticks.append(stick)
            times[name].append(took)
            ratios[name].append(took / stick)
        for router_ in routers.values():
            drain(router_)
        name = "defaults, process CPU, profile given"
        before = per_call_us(yardstick)
        _, cpu = cost("defaults", args.cpu_requests)
        stick = (before + per_call_us(yardstick)) / 2
        sticks.append(stick)
        times[name].append(cpu)
        ratios[name].append(cpu / stick)
    for router_ in routers.values():
        router_.close()
    print(
        f"yardstick (tuned pure-Python decision over 8) here: min "
        f"{min(sticks):.2f} / median {statistics.median(sticks):.2f} us "
        f"({YARDSTICK_US} us where the targets were set); {args.rounds} rounds"
    )
    print(
        f"{'contender':44s} {'us min / median':>17s} {'x yardstick min / median':>26s}"
        f" {'target x':>9s}  met"
    )
    for name, values in ratios.items():
        target = TARGETS_US[name] / YARDSTICK_US
        met = "yes" if statistics.median(values) <= target else "no"
        print(
            f"{name:44s} {min(times[name]):7.2f} / {statistics.median(times[name]):6.2f}"
            f"      {min(values):8.2f} / {statistics.median(values):6.2f}"
            f"      {target:8.2f}  {met}"
        )


if __name__ == "__main__":
    main()
