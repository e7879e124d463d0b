"""The outcome log's rates: how fast the request path captures rows, and
whether a sustained load is written with none dropped.

- capture: appends through ``OutcomeLogWriter.append`` (the Python call
  included; the core's own append on ``record()`` skips that call), with the
  writer held back by a long flush interval, so only the capture is timed;
- sustained: a router with the defaults (alerts and the outcome log on)
  doing ``route()`` + ``record()`` at a paced rate (100,000/s by default) for
  some seconds, then the rows written and dropped.

    python -m benches.outcome_log_rate               # 100,000/s for 5 s
    python -m benches.outcome_log_rate --rate 200000 --seconds 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benches.defaults_cost import PROMPT, router_config
from zeta_fast import Router, profile
from zeta_fast._core import OutcomeLogWriter
from zeta_fast.config import parse_router_config


def capture_rate(rows: int, folder: Path) -> float:
    router = Router(parse_router_config(router_config("bare", folder / "capture")))
    decision = router.route(profile=profile(PROMPT))
    writer = OutcomeLogWriter(
        str(folder / "capture.sqlite"), max_pending=rows + 1, flush_interval_s=3600.0
    )
    append = writer.append
    started = time.perf_counter()
    for _ in range(rows):
        append(decision, "success", 120.0)
    elapsed = time.perf_counter() - started
    writer.close(60.0)
    router.close()
    router.tracker.close()
    return rows / elapsed


def sustained(rate: int, seconds: int, folder: Path) -> tuple[int, int, int, float]:
    """(recorded, written, dropped, worst lag in s behind the pace)."""
    router = Router(parse_router_config(router_config("defaults", folder / "sustained")))
    given = profile(PROMPT)
    route, record = router.route, router.record
    recorded, lag = 0, 0.0
    started = time.perf_counter()
    per_tick = rate // 100  # paced in 10 ms ticks
    for tick in range(seconds * 100):
        for _ in range(per_tick):
            record(route(profile=given), True, 120.0)
        recorded += per_tick
        due = started + (tick + 1) / 100
        now = time.perf_counter()
        lag = max(lag, now - due)
        while time.perf_counter() < due:
            pass
    log = router.outcome_log
    assert log is not None
    log.flush(120.0)
    written, dropped = log.written, log.dropped
    router.close()
    router.tracker.close()
    return recorded, written, dropped, lag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        captured = capture_rate(1_000_000, Path(folder))
        print(f"capture: {captured / 1e6:.2f} M rows/s (1,000,000 appends, Python call included)")
        recorded, written, dropped, lag = sustained(args.rate, args.seconds, Path(folder))
        print(
            f"sustained {args.rate:,}/s for {args.seconds} s with the defaults: "
            f"{recorded:,} recorded, {written:,} written, {dropped:,} dropped "
            f"(the loop fell at most {lag * 1e3:.1f} ms behind its pace)"
        )


if __name__ == "__main__":
    main()
