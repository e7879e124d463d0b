"""How a decision's cost grows with the router's size: the bare core's
``route()`` + ``record()`` (alerts and outcome log off, the profile given)
for models x replicas from 8 x 1 to 64 x 8, interleaved in rounds, min and
median per request.

    python -m benches.decision_curve
"""

from __future__ import annotations

import random
import statistics
import timeit
from typing import Any

from benches.router_contenders import PROMPT
from zeta_fast import ManualClock, PerformanceTracker, Router, profile
from zeta_fast.config import parse_router_config

SIZES = ((8, 1), (8, 4), (8, 8), (32, 4), (64, 1), (64, 8))


def bare_router(models: int, replicas: int) -> Router:
    raw: dict[str, Any] = {
        "models": [
            {
                "id": f"model-{m}",
                "capabilities": {"code": 80 + m % 20, "chat": 70, "reasoning": 75},
                "replicas": [
                    {"id": f"m{m}-r{r}", "url": f"http://127.0.0.1:{9000 + m * 8 + r}"}
                    for r in range(replicas)
                ],
            }
            for m in range(models)
        ],
        "alerts": {"enabled": False},
        "outcome_log": {"enabled": False},
    }
    tracker = PerformanceTracker(clock=ManualClock(2_000_000_000_000), persist=False)
    return Router(parse_router_config(raw), tracker=tracker)


def main() -> None:
    given = profile(PROMPT)
    timers = {}
    for models, replicas in SIZES:
        router = bare_router(models, replicas)
        route, record = router.route, router.record
        for _ in range(20 * models):
            record(route(profile=given), True, 120.0)
        timers[models, replicas] = timeit.Timer(
            "record(route(profile=given), True, 120.0)",
            globals={"route": route, "record": record, "given": given},
        )
    samples: dict[tuple[int, int], list[float]] = {size: [] for size in SIZES}
    order = list(SIZES)
    for _ in range(15):
        random.shuffle(order)
        for size in order:
            samples[size].append(timers[size].timeit(2_000) / 2_000 * 1e6)
    print("models x replicas   min us   median us")
    for (models, replicas), values in samples.items():
        print(f"{models:>6} x {replicas:<8} {min(values):8.2f}  {statistics.median(values):8.2f}")


if __name__ == "__main__":
    main()
