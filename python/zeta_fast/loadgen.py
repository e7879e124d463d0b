"""A small closed-loop load generator: ``concurrency`` workers send requests
back to back over kept-alive connections and time each full answer (a
stream to its last byte). Used by the gateway benchmark, the demo and the
soak test."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

__all__ = ["LoadResult", "percentile", "run_load"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass
class LoadResult:
    """Latencies of the answers that came back 200, and what else happened."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def sent(self) -> int:
        return self.statuses.total() + self.errors.total()

    @property
    def throughput(self) -> float:
        """Good answers per second."""
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def summary(self) -> dict[str, float | int]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "p50_ms": self.p(0.5),
            "p99_ms": self.p(0.99),
            "mean_ms": statistics.fmean(self.latencies_ms) if self.latencies_ms else float("nan"),
            "throughput_rps": self.throughput,
        }


async def run_load(
    session: aiohttp.ClientSession,
    urls: Sequence[str],
    bodies: Sequence[bytes],
    *,
    count: int,
    concurrency: int,
    headers: dict[str, str] | None = None,
    timeout_s: float = 60.0,
    on_answer: Callable[[int, int, float, aiohttp.ClientResponse | None], None] | None = None,
) -> LoadResult:
    """Sends ``count`` POSTs, ``concurrency`` at a time: request ``i`` goes to
    ``urls[i % len(urls)]`` with ``bodies[i % len(bodies)]``. ``on_answer(i,
    status, latency_ms, response)`` sees each one (status 0: no answer)."""
    result = LoadResult()
    sent = 0
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def worker() -> None:
        nonlocal sent
        while sent < count:
            index = sent
            sent += 1
            started = time.perf_counter()
            try:
                async with session.post(
                    urls[index % len(urls)],
                    data=bodies[index % len(bodies)],
                    headers=all_headers,
                    timeout=timeout,
                ) as response:
                    await response.read()
                    latency = (time.perf_counter() - started) * 1e3
                    result.statuses[response.status] += 1
                    if response.status == 200:
                        result.latencies_ms.append(latency)
                    if on_answer is not None:
                        on_answer(index, response.status, latency, response)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                result.errors[type(exc).__name__] += 1
                if on_answer is not None:
                    on_answer(index, 0, (time.perf_counter() - started) * 1e3, None)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    result.wall_s = time.perf_counter() - began
    return result
