"""Adaptation to a degraded replica, zeta_fast beside LiteLLM's Router, in one run.

Three real llama.cpp replicas of one tiny model sit behind fault proxies.
Requests go one at a time (so load cannot hide anything): at request
``fault_at`` replica 0 turns bad (``slow``: +400 ms; ``errors``: half its
answers are 503s), at ``heal_at`` it is healed. Each router may retry once
(on another replica where it can). Reported per router and fault:

- ``off_within``: the degraded replica's share of the requests from
  ``fault_at + 20`` to ``heal_at`` (target: <= 10 %, i.e. >= 90 % off it
  within 20 requests);
- ``regained``: its share from ``heal_at + 50`` to the end (fair: 33 %);
- ``success``: answered requests / requests;
- ``regret``: the cost of the choices against always choosing a healthy
  replica during the fault, summed: extra milliseconds (slow) or expected
  failed first attempts (errors).

Run: ``python -m benches.adaptation [--requests 600] [--json]`` (LiteLLM from
the bench extra; skipped with a note when missing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from zeta_fast import PerformanceTracker, Router
from zeta_fast.backends import BackendError
from zeta_fast.config import parse_router_config
from zeta_fast.local import LlamaCppReplica, ensure_tiny_model, start_replicas
from zeta_fast.local.fault_proxy import FaultProxy

MESSAGES = [{"role": "user", "content": "Say hi."}]
SLOW_MS = 400.0


@dataclass
class Run:
    router: str
    fault: str
    replicas: list[str] = field(default_factory=list)  # serving replica per request ("" failed)
    latencies: list[float] = field(default_factory=list)


Send = Callable[[], Awaitable[str]]


def _inject(proxy: FaultProxy, fault: str) -> None:
    if fault == "slow":
        proxy.set_fault(delay_ms=SLOW_MS)
    else:
        proxy.set_fault(status=503, probability=0.5, seed=7)


async def _drive(
    send: Send, proxy: FaultProxy, fault: str, run: Run, total: int, fault_at: int, heal_at: int
) -> None:
    for index in range(total):
        if index == fault_at:
            _inject(proxy, fault)
        if index == heal_at:
            proxy.clear()
        started = time.perf_counter()
        try:
            replica = await send()
        except Exception:  # counted as a failed request, whatever the library raised
            replica = ""
        run.replicas.append(replica)
        run.latencies.append((time.perf_counter() - started) * 1e3)


def _zeta_router(urls: list[str]) -> Router:
    config = parse_router_config(
        {
            "models": [
                {
                    "id": "tiny",
                    "capabilities": {"chat": 80},
                    "replicas": [{"id": f"r{i}", "url": url} for i, url in enumerate(urls)],
                }
            ],
            # One retry, elsewhere; health checks off: the choice is what is measured.
            "dispatch": {"max_attempts": 2, "health": {"enabled": False}},
            "alerts": {"enabled": False},
        }
    )
    return Router(config, tracker=PerformanceTracker(persist=False))


async def run_zeta(
    urls: list[str], proxy: FaultProxy, fault: str, total: int, fault_at: int, heal_at: int
) -> Run:
    router = _zeta_router(urls)
    run = Run("zeta_fast", fault)

    async def send() -> str:
        try:
            answer = await router.chat(MESSAGES, max_tokens=2)
        except BackendError:
            return ""
        return answer.decision.replica_id

    async with router:
        await _drive(send, proxy, fault, run, total, fault_at, heal_at)
    return run


async def run_litellm(
    urls: list[str],
    proxy: FaultProxy,
    fault: str,
    total: int,
    fault_at: int,
    heal_at: int,
    strategy: str,
) -> Run:
    import litellm

    litellm.suppress_debug_info = True
    model_list = [
        {
            "model_name": "tiny",
            "litellm_params": {"model": "openai/tiny", "api_base": f"{url}/v1", "api_key": "x"},
            "model_info": {"id": f"r{i}"},
        }
        for i, url in enumerate(urls)
    ]
    router = litellm.Router(model_list=model_list, routing_strategy=strategy, num_retries=1)
    run = Run(f"litellm {strategy}", fault)

    async def send() -> str:
        response = await router.acompletion(model="tiny", messages=MESSAGES, max_tokens=2)
        return str(response._hidden_params.get("model_id", "?"))

    await _drive(send, proxy, fault, run, total, fault_at, heal_at)
    return run


def summarise(run: Run, fault_at: int, heal_at: int) -> dict[str, Any]:
    def share(lo: int, hi: int) -> float:
        part = run.replicas[lo:hi]
        return sum(1 for r in part if r == "r0") / max(1, len(part))

    during = run.replicas[fault_at:heal_at]
    to_bad = sum(1 for r in during if r == "r0")
    regret = to_bad * (SLOW_MS if run.fault == "slow" else 0.5)
    return {
        "router": run.router,
        "fault": run.fault,
        "before": share(0, fault_at),
        "off_within": share(fault_at + 20, heal_at),
        "regained": share(heal_at + 50, len(run.replicas)),
        "success": sum(1 for r in run.replicas if r) / len(run.replicas),
        "to_degraded_during_fault": to_bad,
        "regret": regret,
        "regret_unit": "ms" if run.fault == "slow" else "expected failed first attempts",
    }


async def scenario(total: int, fault_at: int, heal_at: int, litellm: bool) -> list[dict[str, Any]]:
    model = ensure_tiny_model(tempfile.mkdtemp(prefix="zeta-adapt-"))
    replicas = start_replicas([LlamaCppReplica(model, alias=f"r{i}", parallel=2) for i in range(3)])
    proxies = [FaultProxy("127.0.0.1", r.port).start() for r in replicas]
    urls = [p.url for p in proxies]
    rows = []
    try:
        for fault in ("slow", "errors"):
            runs = [await run_zeta(urls, proxies[0], fault, total, fault_at, heal_at)]
            proxies[0].clear()
            if litellm:
                for strategy in ("simple-shuffle", "latency-based-routing"):
                    runs.append(
                        await run_litellm(
                            urls, proxies[0], fault, total, fault_at, heal_at, strategy
                        )
                    )
                    proxies[0].clear()
            rows += [summarise(r, fault_at, heal_at) for r in runs]
    finally:
        for proxy in proxies:
            proxy.stop()
        for replica in replicas:
            replica.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-litellm", action="store_true")
    args = parser.parse_args()
    litellm = not args.no_litellm
    if litellm:
        try:
            import litellm as _  # noqa: F401
        except ImportError:
            litellm = False
            print("LiteLLM not installed: zeta_fast only (pip install 'zeta_fast[bench]')")
    total = args.requests
    rows = asyncio.run(scenario(total, total // 3, 2 * total // 3, litellm))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{'router':32s} {'fault':7s} {'before':>7s} {'off':>7s} {'regained':>9s} "
        f"{'success':>8s} {'regret':>10s}"
    )
    for row in rows:
        print(
            f"{row['router']:32s} {row['fault']:7s} {row['before']:7.1%} {row['off_within']:7.1%} "
            f"{row['regained']:9.1%} {row['success']:8.2%} {row['regret']:10.1f}"
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
