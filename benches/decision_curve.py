"""How a decision's cost grows with the router's size: the bare core's
``route()`` + ``record()`` (alerts and outcome log off, the profile given)
for models x replicas from 8 x 1 to 64 x 8, and 8 x 4 with windows of 60,
600 and 6,000 buckets, interleaved in rounds, min and median per request.

    python -m benches.decision_curve
"""

from __future__ import annotations

import random
import statistics
import timeit
from typing import Any

from benches.router_contenders import PROMPT
from zeta_fast import ManualClock, PerformanceTracker, Router, WindowConfig, profile
from zeta_fast.config import parse_router_config

#: (models, replicas, buckets per window): the default window is 60 buckets.
SIZES = (
    (8, 1, 60),
    (8, 4, 60),
    (8, 8, 60),
    (32, 4, 60),
    (64, 1, 60),
    (64, 8, 60),
    (8, 4, 600),
    (8, 4, 6_000),
)


def bare_router(models: int, replicas: int, buckets: int = 60) -> Router:
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
    tracker = PerformanceTracker(
        WindowConfig(buckets=buckets, histogram_slices=4),
        clock=ManualClock(2_000_000_000_000),
        persist=False,
    )
    return Router(parse_router_config(raw), tracker=tracker)


def main() -> None:
    given = profile(PROMPT)
    timers = {}
    for models, replicas, buckets in SIZES:
        router = bare_router(models, replicas, buckets)
        route, record = router.route, router.record
        for _ in range(20 * models):
            record(route(profile=given), True, 120.0)
        timers[models, replicas, buckets] = timeit.Timer(
            "record(route(profile=given), True, 120.0)",
            globals={"route": route, "record": record, "given": given},
        )
    samples: dict[tuple[int, int, int], list[float]] = {size: [] for size in SIZES}
    order = list(SIZES)
    for _ in range(15):
        random.shuffle(order)
        for size in order:
            samples[size].append(timers[size].timeit(2_000) / 2_000 * 1e6)
    print("models x replicas   buckets   min us   median us")
    for (models, replicas, buckets), values in samples.items():
        print(
            f"{models:>6} x {replicas:<8} {buckets:>7}  {min(values):8.2f}  "
            f"{statistics.median(values):8.2f}"
        )


if __name__ == "__main__":
    main()
