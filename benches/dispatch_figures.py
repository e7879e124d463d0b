"""Figures of the dispatch path against real llama.cpp replicas on this machine.

    python -m benches.dispatch_figures [--quick] [--json]

- added latency of ``Router.chat`` over a bare aiohttp client to the same
  replica (p50/p99; sequential and 16 concurrent), the two contenders
  interleaved in rounds in one run;
- client success under each fault (replica killed mid-load, down from the
  start, hung with SIGSTOP, 50 % resets, 50 % 503s);
- time to detect a dead replica (breaker open; health check down) and to
  recover after a restart (first request it serves again);
- p99 with and without hedging when one replica answers 10 % of its
  requests 200 ms late.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from zeta_fast import PerformanceTracker, Router
from zeta_fast.config import parse_router_config
from zeta_fast.local import LlamaCppReplica, ensure_tiny_model, start_replicas
from zeta_fast.local.fault_proxy import FaultProxy

HELLO = [{"role": "user", "content": "Say hello to the team."}]
TASKS = ("chat", "code", "reasoning", "knowledge")


def router_for(urls: list[str], **dispatch: Any) -> Router:
    dispatch.setdefault("health", {"enabled": False})
    config = parse_router_config(
        {
            "models": [
                {
                    "id": "m",
                    "capabilities": dict.fromkeys(TASKS, 90),
                    "replicas": [{"id": f"r{i}", "url": u} for i, u in enumerate(urls)],
                }
            ],
            "dispatch": dispatch,
        }
    )
    return Router(config, tracker=PerformanceTracker(config.window_config(), persist=False))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def timed(call: Callable[[], Awaitable[Any]], n: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            start = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - start) * 1e3)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def overhead(url: str, rounds: int, per_round: int) -> dict[str, Any]:
    router = router_for([url])
    body = orjson.dumps({"messages": HELLO, "max_tokens": 1, "model": "m"})
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:

        async def direct() -> None:
            async with session.post(
                url + "/v1/chat/completions",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as response:
                await response.read()

        async def routed() -> None:
            await router.chat(HELLO, max_tokens=1)

        for concurrency in (1, 16):
            samples: dict[str, list[float]] = {"direct": [], "router": []}
            await timed(direct, 50, concurrency)  # warm both pools
            await timed(routed, 50, concurrency)
            for _ in range(rounds):
                samples["direct"] += await timed(direct, per_round, concurrency)
                samples["router"] += await timed(routed, per_round, concurrency)
            row = {}
            for name, values in samples.items():
                row[name] = {"p50_ms": pct(values, 0.5), "p99_ms": pct(values, 0.99)}
            row["added_p50_ms"] = row["router"]["p50_ms"] - row["direct"]["p50_ms"]
            row["added_p99_ms"] = row["router"]["p99_ms"] - row["direct"]["p99_ms"]
            out[f"concurrency_{concurrency}"] = row
    await router.aclose()
    return out


async def load(router: Router, n: int, concurrency: int, on: Callable[[int], None]) -> float:
    ok = 0
    sent = 0

    async def worker() -> None:
        nonlocal ok, sent
        while sent < n:
            i = sent
            sent += 1
            on(i)
            try:
                await router.chat(HELLO, max_tokens=4)
                ok += 1
            except Exception:
                pass

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 300)
    return ok / n


async def faults(model: str, n: int) -> dict[str, float]:
    results: dict[str, float] = {}
    timeouts = {"connect_s": 0.5, "first_byte_s": 0.5, "total_s": 5}

    replicas = start_replicas([LlamaCppReplica(model, alias=f"f{i}") for i in range(3)])
    try:
        router = router_for([r.url for r in replicas], timeouts=timeouts)

        def kill(i: int) -> None:
            if i == n // 4:
                replicas[1].kill()

        results["killed_mid_load"] = await load(router, n, 16, kill)
        await router.aclose()
        replicas[1].restart()

        router = router_for(["http://127.0.0.1:9", replicas[0].url], timeouts=timeouts)
        results["down_from_start"] = await load(router, n, 16, lambda i: None)
        await router.aclose()

        router = router_for([r.url for r in replicas], timeouts=timeouts)
        replicas[2].pause()
        try:
            results["hung_sigstop"] = await load(router, n, 16, lambda i: None)
        finally:
            replicas[2].resume()
        await router.aclose()

        for name, fault in (
            ("resets_50pct", {"reset": True}),
            ("http503_50pct", {"status": 503}),
        ):
            proxy = FaultProxy("127.0.0.1", replicas[0].port).start()
            try:
                proxy.set_fault(probability=0.5, seed=7, **fault)
                router = router_for([proxy.url, replicas[1].url], timeouts=timeouts)
                results[name] = await load(router, n, 16, lambda i: None)
                await router.aclose()
            finally:
                proxy.stop()
    finally:
        for replica in replicas:
            replica.stop()
    return results


async def detect_and_recover(model: str) -> dict[str, float]:
    a, b = start_replicas([LlamaCppReplica(model, alias="a"), LlamaCppReplica(model, alias="b")])
    try:
        cooldown_s = 1.0
        router = router_for(
            [a.url, b.url],
            breaker={"cooldown_s": cooldown_s},
            health={"interval_s": 0.25, "timeout_s": 0.5, "unhealthy_after": 2},
            timeouts={"connect_s": 0.5, "first_byte_s": 1, "total_s": 5},
        )
        monitor = router.start_health()
        for _ in range(20):
            await router.chat(HELLO, max_tokens=2)
        b.kill()
        killed = time.perf_counter()
        breaker_open = health_down = None
        while breaker_open is None or health_down is None:
            await router.chat(HELLO, max_tokens=2)
            now = time.perf_counter()
            if breaker_open is None and router._core.replica_status("m")[1].breaker == "open":
                breaker_open = now - killed
            if health_down is None and not monitor.replicas["m", "r1"].healthy:
                health_down = now - killed
            await asyncio.sleep(0.005)
        b.restart()
        restarted = time.perf_counter()
        served = None
        while served is None and time.perf_counter() - restarted < 30:
            answer = await router.chat(HELLO, max_tokens=2)
            if answer.decision.replica_id == "r1":
                served = time.perf_counter() - restarted
            await asyncio.sleep(0.005)
        await router.aclose()
        return {
            "breaker_open_after_s": breaker_open,
            "health_down_after_s": health_down,
            "served_again_after_restart_s": served if served is not None else float("nan"),
            "breaker_cooldown_s": cooldown_s,
            "health_interval_s": 0.25,
        }
    finally:
        a.stop()
        b.stop()


async def hedging(model: str, n: int, rounds: int = 5) -> dict[str, Any]:
    a, b = start_replicas([LlamaCppReplica(model, alias="a"), LlamaCppReplica(model, alias="b")])
    proxy = FaultProxy("127.0.0.1", a.port).start()
    try:
        routers = {
            name: router_for(
                [proxy.url, b.url],
                hedge={"enabled": enabled, "max_extra": 0.05, "min_delay_ms": 5},
            )
            for name, enabled in (("plain", False), ("hedged", True))
        }
        for router in routers.values():  # a latency history for the p95
            for _ in range(50):
                await router.chat(HELLO, max_tokens=2)
        proxy.set_fault(delay_ms=200, probability=0.1, seed=3)
        samples: dict[str, list[float]] = {name: [] for name in routers}
        for _ in range(rounds):  # interleaved: both see the same machine
            for name, router in routers.items():
                samples[name] += await timed(
                    lambda r=router: r.chat(HELLO, max_tokens=2), n // rounds, 4
                )
        out: dict[str, Any] = {}
        for name, router in routers.items():
            out[name] = {
                "p50_ms": pct(samples[name], 0.5),
                "p99_ms": pct(samples[name], 0.99),
                "hedges_sent": sum(
                    r.outcomes["cancelled"] + r.outcomes["success"]
                    for r in router._core.replica_status("m")
                )
                - 50
                - len(samples[name]),
            }
            await router.aclose()
        return out
    finally:
        proxy.stop()
        a.stop()
        b.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    n = 400 if args.quick else 2000
    with tempfile.TemporaryDirectory() as folder:
        model = str(ensure_tiny_model(folder))
        (replica,) = start_replicas([LlamaCppReplica(model, alias="solo", parallel=16)])
        try:
            figures: dict[str, Any] = {
                "overhead": asyncio.run(
                    overhead(replica.url, rounds=5, per_round=100 if args.quick else 400)
                )
            }
        finally:
            replica.stop()
        figures["success_under_faults"] = asyncio.run(faults(model, n))
        figures["detect_and_recover"] = asyncio.run(detect_and_recover(model))
        figures["hedging"] = asyncio.run(hedging(model, n // 2))
    if args.json:
        print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
        return
    for section, values in figures.items():
        print(f"== {section}")
        for key, value in values.items():
            print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
