"""Scale-out figures: three router instances (separate processes) sharing
state through a real Redis server on this machine.

1. Agreement after a fault: each instance routes and records ~150
   requests/s; at a moment one instance records a burst of 100 failures.
   Reported: how long until every instance's view counts them (target
   <= 1 s at the default 250 ms interval).
2. Redis commands per second per instance.
3. Overhead on route() + record(): sharing on vs off in one process, with
   two other instances publishing, interleaved rounds, min and median.

    python -m benches.shared_state [--redis-url URL] [--json]

Without ``--redis-url`` it starts its own ``redis-server`` on a free port.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from pathlib import Path
from typing import Any

PROMPT = "Say hello to the team."
WARMUP_S = 3.0
AFTER_S = 3.0
RATE = 150.0
BURST = 100


def router_config(url: str, namespace: str, shared: bool = True) -> dict[str, Any]:
    return {
        "models": [
            {
                "id": model,
                "capabilities": {"chat": cap, "code": cap, "reasoning": cap, "knowledge": cap},
                "replicas": [
                    {"id": f"{model}-{i}", "url": f"http://127.0.0.1:{9000 + i}"} for i in range(2)
                ],
            }
            for model, cap in (("small", 80), ("large", 90))
        ],
        "shared_state": {"enabled": shared, "url": url, "namespace": namespace},
        "outcome_log": {"enabled": False},
        "alerts": {"enabled": False},
        "dispatch": {"breaker": {"failure_threshold": 1000}},
    }


def worker(index: int, url: str, namespace: str, start_at: float, out: Path) -> None:
    from zeta_fast import PerformanceTracker, Router
    from zeta_fast.config import parse_router_config

    parsed = parse_router_config(router_config(url, namespace))
    router = Router(parsed, tracker=PerformanceTracker(parsed.window_config(), persist=False))
    assert router.shared is not None
    while time.time() < start_at:
        time.sleep(0.005)
    began = time.time()
    samples: list[tuple[float, int, int]] = []
    burst_end = None
    next_request = began
    last_sample = 0.0
    while time.time() - began < WARMUP_S + AFTER_S:
        now = time.time()
        if index == 0 and burst_end is None and now - began >= WARMUP_S:
            for _ in range(BURST):
                decision = router.route(PROMPT, model="large")
                router.record(decision, False, 20.0)
            burst_end = time.time()
        if now >= next_request:
            decision = router.route(PROMPT, model="large")
            router.record(decision, True, 20.0)
            next_request += 1.0 / RATE
        if now - last_sample >= 0.01:
            stats = router.tracker.stats("large")
            samples.append((now, stats.requests, stats.successes))
            last_sample = now
        time.sleep(0.001)
    elapsed = time.time() - began
    commands = router.shared.stats.commands
    router.close()
    out.write_text(
        json.dumps(
            {
                "index": index,
                "samples": samples,
                "burst_end": burst_end,
                "commands_per_s": commands / elapsed,
            }
        )
    )


def overhead(url: str, namespace: str, rounds: int = 7, number: int = 20000) -> dict[str, Any]:
    from zeta_fast import PerformanceTracker, Router, profile
    from zeta_fast.config import parse_router_config

    given = profile(PROMPT)

    def make(shared: bool) -> Router:
        parsed = parse_router_config(router_config(url, namespace, shared))
        return Router(parsed, tracker=PerformanceTracker(parsed.window_config(), persist=False))

    on, off = make(True), make(False)
    times: dict[str, list[float]] = {"on": [], "off": []}
    for r in range(rounds):
        for name in ["on", "off"] if r % 2 == 0 else ["off", "on"]:
            router = on if name == "on" else off
            seconds = timeit.timeit(
                lambda r=router: r.record(r.route(profile=given), True, 20.0),  # type: ignore[misc]
                number=number,
            )
            times[name].append(seconds / number * 1e9)
    on.close()
    off.close()
    result = {
        name: {"min_ns": min(v), "median_ns": statistics.median(v)} for name, v in times.items()
    }
    result["median_ratio"] = result["on"]["median_ns"] / result["off"]["median_ns"]
    result["min_ratio"] = result["on"]["min_ns"] / result["off"]["min_ns"]
    return result


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="zeta-bench-redis-")
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            folder,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    return process, f"redis://127.0.0.1:{port}/0"


def run(url: str | None) -> dict[str, Any]:
    server = None
    if url is None:
        server, url = start_redis()
    namespace = "bench-" + uuid.uuid4().hex[:8]
    try:
        with tempfile.TemporaryDirectory() as folder:
            start_at = time.time() + 3.0
            outs = [Path(folder) / f"worker-{i}.json" for i in range(3)]
            root = Path(__file__).resolve().parent.parent
            procs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "benches.shared_state",
                        "--worker",
                        str(i),
                        "--redis-url",
                        url,
                        "--namespace",
                        namespace,
                        "--start-at",
                        str(start_at),
                        "--out",
                        str(outs[i]),
                    ],
                    cwd=root,
                    env={**os.environ, "PYTHONPATH": str(root)},
                )
                for i in range(3)
            ]
            for proc in procs:
                if proc.wait(120) != 0:
                    raise RuntimeError(f"worker exited with {proc.returncode}")
            results = [json.loads(o.read_text()) for o in outs]
        burst_end = next(r["burst_end"] for r in results if r["burst_end"] is not None)
        agreement = {}
        for r in results:
            seen = next(
                (
                    t
                    for t, requests, successes in r["samples"]
                    if t >= burst_end and requests - successes >= BURST
                ),
                None,
            )
            agreement[r["index"]] = None if seen is None else seen - burst_end
        delays = [d for i, d in agreement.items() if i != 0]
        figures: dict[str, Any] = {
            "agreement_s": agreement,
            "all_agree_after_s": None if None in delays else max(delays),
            "commands_per_s": [round(r["commands_per_s"], 1) for r in results],
            "overhead": overhead(url, namespace + "-overhead"),
        }
        return figures
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        worker(args.worker, args.redis_url, args.namespace, args.start_at, Path(args.out))
        return 0
    figures = run(args.redis_url)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(
        f"every instance counts a 100-failure burst after {figures['all_agree_after_s']:.3f} s "
        f"(per instance: {figures['agreement_s']})"
    )
    print(f"Redis commands per second per instance: {figures['commands_per_s']}")
    o = figures["overhead"]
    print(
        f"route()+record(): sharing off {o['off']['median_ns']:.0f} ns median "
        f"({o['off']['min_ns']:.0f} min), on {o['on']['median_ns']:.0f} ns "
        f"({o['on']['min_ns']:.0f}); ratio median {o['median_ratio']:.3f}, min {o['min_ratio']:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
