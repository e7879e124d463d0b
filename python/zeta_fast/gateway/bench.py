"""``zeta-fast bench gateway``: what the gateway adds to a request, beside
its peers, measured in one run.

Every contender runs as its own process on 127.0.0.1 in front of the same
backends: two canned OpenAI-compatible servers (``zeta_fast.local.canned``:
fixed answers at once, so a router's own time is not drowned by an
engine's). Contenders: ``direct`` (the client calls the backends itself),
``zeta`` (``zeta-fast serve`` as configured by default: the signals and
learning on), ``zeta-bare`` (the same with the signals and learning off),
``vllm-router`` (PyPI ``vllm-router``, round
robin) and ``litellm`` (the LiteLLM proxy, simple shuffle), the last two
when installed (the ``bench`` extra). In each round every contender runs
every case (JSON and SSE with ``chunks`` events, at concurrency 1 and 16),
in an order rotated round by round; a contender's *added* latency is its
p50 (p99) minus direct's in the same round and case. Reported: min and
median over rounds, and the ratios of the targets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from zeta_fast.loadgen import run_load

__all__ = ["BenchSettings", "run_bench"]

HOST = "127.0.0.1"
CASES = (("json", 1), ("json", 16), ("sse", 1), ("sse", 16))
LITELLM_KEY = "sk-zeta-bench-" + secrets.token_hex(16)


@dataclass
class BenchSettings:
    rounds: int = 5
    requests_c1: int = 300
    requests_c16: int = 1600
    chunks: int = 32
    contenders: tuple[str, ...] = ("direct", "zeta", "zeta-bare", "vllm-router", "litellm")
    max_seconds: float = 900.0
    warmup: int = 50


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float, log: Path) -> None:
    """Polls ``url`` until it answers; raises with the log's tail when the
    process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{url}: process exited with {process.returncode}:\n{log.read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return
        except urllib.error.HTTPError:
            return  # it answers: up
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s:\n{log.read_text()[-2000:]}")


@dataclass
class _Processes:
    directory: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], ready: str, timeout_s: float = 60.0
    ) -> subprocess.Popen[bytes]:
        log = self.directory / f"{name}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "LITELLM_LOG": "ERROR"}
        with log.open("wb") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.started.append(process)
        wait_ready(ready, process, timeout_s, log)
        return process

    def stop(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.terminate()
        for process in self.started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def single_model_config(
    model_id: str,
    replicas: list[tuple[str, str]],
    *,
    port: int,
    state_path: Path,
    backend: str = "llamacpp",
    dispatch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A gateway configuration of one model serving every text task from
    ``replicas`` ((id, url) pairs), on ``HOST:port``."""
    return {
        "models": [
            {
                "id": model_id,
                "capabilities": dict.fromkeys(("chat", "code", "reasoning", "knowledge"), 80),
                "replicas": [
                    {"id": replica_id, "url": url, "backend": backend}
                    for replica_id, url in replicas
                ],
            }
        ],
        "state_path": str(state_path),
        "dispatch": dispatch or {},
        "gateway": {"host": HOST, "port": port},
    }


def _tool(name: str) -> str | None:
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


def _start_contenders(
    processes: _Processes, backends: list[str], wanted: tuple[str, ...]
) -> tuple[dict[str, str], dict[str, str]]:
    """Starts the routers; returns (name -> base URL) and (name -> why skipped)."""
    urls: dict[str, str] = {}
    skipped: dict[str, str] = {}
    directory = processes.directory
    for name in ("zeta", "zeta-bare"):
        if name not in wanted:
            continue
        port = free_port()
        config = single_model_config(
            "canned",
            [(f"canned-{i}", url) for i, url in enumerate(backends)],
            port=port,
            state_path=directory / f"{name}-state.snapshot",
            backend="vllm",
        )
        if name == "zeta-bare":
            # The defaults' signals (structural checks, regenerations) and
            # the learning they turn on, off: what they cost, side by side.
            config["signals"] = {
                "structural": {"enabled": False},
                "regeneration": {"enabled": False},
            }
            config["learning"] = {"enabled": False}
        path = directory / f"{name}.json"
        path.write_text(json.dumps(config))
        processes.start(
            name,
            [sys.executable, "-m", "zeta_fast.cli", "serve", "--config", str(path)],
            f"http://{HOST}:{port}/health",
        )
        urls[name] = f"http://{HOST}:{port}"
    if "vllm-router" in wanted:
        binary = _tool("vllm-router")
        if binary is None:
            skipped["vllm-router"] = "not installed (pip install 'zeta_fast[bench]')"
        else:
            port = free_port()
            processes.start(
                "vllm-router",
                [
                    binary,
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                    "--policy",
                    "round_robin",
                    "--log-level",
                    "error",
                    "--prometheus-port",
                    str(free_port()),
                    "--worker-urls",
                    *backends,
                ],
                f"http://{HOST}:{port}/health",
            )
            urls["vllm-router"] = f"http://{HOST}:{port}"
    if "litellm" in wanted:
        binary = _tool("litellm")
        if binary is None:
            skipped["litellm"] = "not installed (pip install 'zeta_fast[bench]')"
        else:
            port = free_port()
            model_list = [
                {
                    "model_name": "canned",
                    "litellm_params": {
                        "model": "openai/canned",
                        "api_base": f"{url}/v1",
                        "api_key": "unused",
                    },
                }
                for url in backends
            ]
            path = directory / "litellm.json"
            path.write_text(
                json.dumps(
                    {
                        "model_list": model_list,
                        "router_settings": {"routing_strategy": "simple-shuffle"},
                        "litellm_settings": {"telemetry": False, "drop_params": True},
                        # It refuses to start without one; sent with every request.
                        "general_settings": {"master_key": LITELLM_KEY},
                    }
                )
            )
            processes.start(
                "litellm",
                [binary, "--config", str(path), "--host", HOST, "--port", str(port)],
                f"http://{HOST}:{port}/health/liveliness",
                timeout_s=180.0,
            )
            urls["litellm"] = f"http://{HOST}:{port}"
    return urls, skipped


def _body(stream: bool, model: str) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Say hello to the team, briefly."}],
            "max_tokens": 32,
            "stream": stream,
        }
    )


async def _rounds(
    settings: BenchSettings, backends: list[str], routers: dict[str, str], report: dict[str, Any]
) -> None:
    names = (["direct"] if "direct" in settings.contenders else []) + list(routers)
    targets: dict[str, list[str]] = {
        "direct": [f"{url}/v1/chat/completions" for url in backends],
        **{name: [f"{url}/v1/chat/completions"] for name, url in routers.items()},
    }
    models = {name: ("auto" if name.startswith("zeta") else "canned") for name in names}
    headers: dict[str, dict[str, str]] = {name: {} for name in names}
    headers["litellm"] = {"Authorization": f"Bearer {LITELLM_KEY}"}
    per_round: dict[str, dict[str, list[dict[str, float]]]] = {
        f"{mode}-c{c}": {name: [] for name in names} for mode, c in CASES
    }
    deadline = time.monotonic() + settings.max_seconds
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        for name in names:  # warm connections and caches
            for mode in ("json", "sse"):
                await run_load(
                    session,
                    targets[name],
                    [_body(mode == "sse", models[name])],
                    count=settings.warmup,
                    concurrency=4,
                    headers=headers[name],
                )
        done_rounds = 0
        for round_index in range(settings.rounds):
            if time.monotonic() > deadline:
                break
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            for mode, concurrency in CASES:
                count = settings.requests_c1 if concurrency == 1 else settings.requests_c16
                for name in order:
                    result = await run_load(
                        session,
                        targets[name],
                        [_body(mode == "sse", models[name])],
                        count=count,
                        concurrency=concurrency,
                        headers=headers[name],
                    )
                    summary = result.summary()
                    summary["failed"] = result.sent - result.ok
                    per_round[f"{mode}-c{concurrency}"][name].append(summary)
            done_rounds += 1
    report["rounds_done"] = done_rounds
    report["cases"] = _summarise(per_round)
    report["ratios"] = _ratios(report["cases"])


def _summarise(
    per_round: dict[str, dict[str, list[dict[str, float]]]],
) -> dict[str, dict[str, dict[str, float]]]:
    cases: dict[str, dict[str, dict[str, float]]] = {}
    for case, by_name in per_round.items():
        direct = by_name.get("direct", [])
        cases[case] = {}
        for name, rounds in by_name.items():
            if not rounds:
                continue
            row: dict[str, float] = {
                "p50_ms_median": statistics.median(r["p50_ms"] for r in rounds),
                "p99_ms_median": statistics.median(r["p99_ms"] for r in rounds),
                "throughput_rps_median": statistics.median(r["throughput_rps"] for r in rounds),
                "failed": sum(r["failed"] for r in rounds),
            }
            if name != "direct" and direct:
                added50 = [r["p50_ms"] - d["p50_ms"] for r, d in zip(rounds, direct, strict=False)]
                added99 = [r["p99_ms"] - d["p99_ms"] for r, d in zip(rounds, direct, strict=False)]
                row |= {
                    "added_p50_ms_min": min(added50),
                    "added_p50_ms_median": statistics.median(added50),
                    "added_p99_ms_min": min(added99),
                    "added_p99_ms_median": statistics.median(added99),
                }
            cases[case][name] = row
    return cases


def _ratios(cases: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """The targets' ratios, from the medians over rounds."""
    ratios: dict[str, float] = {}

    def added(case: str, name: str, key: str = "added_p50_ms_median") -> float | None:
        row = cases.get(case, {}).get(name)
        return None if row is None or key not in row else row[key]

    for case in cases:
        zeta = added(case, "zeta")
        if zeta is None:
            continue
        vllm = added(case, "vllm-router")
        if vllm is not None and vllm > 0:
            ratios[f"{case}_zeta_over_vllm_router_added_p50"] = zeta / vllm
        litellm = added(case, "litellm")
        if litellm is not None and zeta > 0:
            ratios[f"{case}_litellm_over_zeta_added_p50"] = litellm / zeta
        zeta_rps = cases[case]["zeta"]["throughput_rps_median"]
        vllm_row = cases[case].get("vllm-router")
        if vllm_row is not None and vllm_row["throughput_rps_median"] > 0:
            ratios[f"{case}_zeta_over_vllm_router_throughput"] = (
                zeta_rps / vllm_row["throughput_rps_median"]
            )
        bare = added(case, "zeta-bare")
        if bare is not None and bare > 0:
            ratios[f"{case}_zeta_defaults_over_bare_added_p50"] = zeta / bare
    for concurrency in (1, 16):
        sse = added(f"sse-c{concurrency}", "zeta", "added_p99_ms_median")
        plain = added(f"json-c{concurrency}", "zeta", "added_p99_ms_median")
        if sse is not None and plain is not None and plain > 0:
            ratios[f"c{concurrency}_zeta_sse_over_json_added_p99"] = sse / plain
    return ratios


@contextlib.contextmanager
def _fast_loop() -> Iterator[None]:
    """uvloop for the load client when installed: the less CPU the client
    takes on a small machine, the more the contenders have (the same for all)."""
    try:
        import uvloop
    except ImportError:
        yield
        return
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(previous)


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="zeta-bench-") as directory:
        yield Path(directory)


def run_bench(settings: BenchSettings) -> dict[str, Any]:
    """Runs the benchmark; returns the report (see the module's docstring)."""
    report: dict[str, Any] = {
        "settings": settings.__dict__ | {"contenders": list(settings.contenders)},
        "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    with _workdir() as directory:
        processes = _Processes(directory)
        try:
            backends = []
            for i in range(2):
                port = free_port()
                processes.start(
                    f"backend-{i}",
                    [
                        sys.executable,
                        "-m",
                        "zeta_fast.local.canned",
                        "--port",
                        str(port),
                        "--chunks",
                        str(settings.chunks),
                    ],
                    f"http://{HOST}:{port}/health",
                )
                backends.append(f"http://{HOST}:{port}")
            routers, skipped = _start_contenders(processes, backends, settings.contenders)
            report["skipped"] = skipped
            started = time.monotonic()
            with _fast_loop():
                asyncio.run(_rounds(settings, backends, routers, report))
            report["seconds"] = round(time.monotonic() - started, 1)
        finally:
            processes.stop()
    return report
