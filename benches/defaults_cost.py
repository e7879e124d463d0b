"""What a request costs with the defaults on, beside the bare path.

One process, 8 models x 4 replicas, the profile given, the real clock and a
persisting tracker (as a user runs it), ``route()`` + ``record()`` after a
warm-up; wall time per request on the calling thread and process CPU per
request including the background threads (the outcome log's writer, the
alert ticker, the snapshot saver), measured after they drained what the
requests gave them. Configurations, interleaved in rounds:

- ``bare``: alerts and outcome log off;
- ``alerts``: alerts on (the default), no outcome log;
- ``defaults``: alerts and outcome log on (the default configuration).

    python -m benches.defaults_cost            # 3 rounds of 100,000 requests
    python -m benches.defaults_cost --requests 20000 --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benches.router_contenders import MODELS, PROMPT, REPLICAS
from zeta_fast import Router, profile
from zeta_fast.config import parse_router_config

CONFIGURATIONS = ("bare", "alerts", "defaults")


def router_config(configuration: str, folder: Path) -> dict[str, Any]:
    """A router of 8 models x 4 replicas keeping its state in ``folder``."""
    raw: dict[str, Any] = {
        "models": [
            {
                "id": f"model-{m}",
                "capabilities": {"code": 80 + m, "chat": 70 + m, "reasoning": 75 + m},
                "replicas": [
                    {"id": f"model-{m}-r{r}", "url": f"http://127.0.0.1:{8000 + m * REPLICAS + r}"}
                    for r in range(REPLICAS)
                ],
            }
            for m in range(MODELS)
        ],
        "state_path": str(folder / "tracker.snapshot"),
    }
    if configuration == "bare":
        raw["alerts"] = {"enabled": False}
    if configuration in ("bare", "alerts"):
        raw["outcome_log"] = {"enabled": False}
    return raw


def drain(router: Router) -> None:
    """Waits for the background work the requests caused."""
    if router.outcome_log is not None:
        router.outcome_log.flush(120.0)
    if router.alerts is not None:
        router.alerts.process()


def cost(configuration: str, requests: int) -> tuple[float, float]:
    """(wall us, process CPU us) per route()+record() in ``configuration``."""
    with tempfile.TemporaryDirectory() as folder:
        router = Router(parse_router_config(router_config(configuration, Path(folder))))
        given = profile(PROMPT)
        route, record = router.route, router.record
        for _ in range(2_000):
            record(route(profile=given), True, 120.0)
        drain(router)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(requests):
            record(route(profile=given), True, 120.0)
        wall = time.perf_counter() - wall
        drain(router)
        cpu = time.process_time() - cpu
        router.close()
        router.tracker.close()  # its final save, while the folder is there
    return wall / requests * 1e6, cpu / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    found: dict[str, list[tuple[float, float]]] = {c: [] for c in CONFIGURATIONS}
    for _ in range(args.rounds):
        for configuration in CONFIGURATIONS:
            found[configuration].append(cost(configuration, args.requests))
    print(f"route()+record(), 8 x 4, profile given, {args.requests:,} requests x {args.rounds}")
    print(f"{'configuration':14s} {'wall us (min / median)':>24s} {'CPU us (min / median)':>24s}")
    for configuration, runs in found.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(
            f"{configuration:14s} {min(walls):11.2f} / {statistics.median(walls):6.2f}"
            f"      {min(cpus):11.2f} / {statistics.median(cpus):6.2f}"
        )


if __name__ == "__main__":
    main()
