"""``zeta-fast bench soak``: many requests through ``zeta-fast serve`` against
real llama.cpp replicas, with a fault every ``fault_every`` requests, then
checks that nothing leaked, nothing was lost and nothing got stuck.

Three replicas of one tiny model sit behind fault proxies; the gateway runs
as its own process so that its memory is measured alone (``VmRSS``, sampled
every second). Faults rotate, each lasting one second: a replica killed
(then restarted), answering 503, resetting connections, answering 200 ms
late, cutting streams short. The checks, reported in the JSON:

- memory: the gateway's RSS growth from the end of the warm-up (10 % of the
  requests) to the end stays under ``memory_bound_mb``;
- no lost outcome: the gateway answered every request the client sent, and
  recorded exactly one successful attempt for every complete answer;
- nothing stuck: no request or replica slot in flight at the end, every
  breaker closed and every replica healthy, and each replica served its
  share of the last period's traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from zeta_fast.gateway.bench import HOST, free_port, single_model_config, wait_ready
from zeta_fast.local import LlamaCppReplica, ensure_tiny_model, start_replicas
from zeta_fast.local.fault_proxy import FaultProxy

__all__ = ["SoakSettings", "passed", "run_soak"]

FAULTS = ("kill", "errors_503", "resets", "slow", "cut_streams")


@dataclass
class SoakSettings:
    requests: int = 100_000
    concurrency: int = 16
    fault_every: int = 4_000
    stream_share: float = 0.2
    memory_bound_mb: float = 40.0
    replicas: int = 3


@dataclass
class _Client:
    answered: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    messages: list[str] = field(default_factory=list)
    complete: int = 0
    cut: int = 0
    by_replica: Counter[str] = field(default_factory=Counter)
    last_period: Counter[str] = field(default_factory=Counter)


def _code(body: bytes, status: int) -> str:
    try:
        error = orjson.loads(body).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return str(status)
    return f"{status} {error.get('type')}/{error.get('code')}"


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def _total(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


async def _inject(
    kind: str,
    replica: LlamaCppReplica,
    proxy: FaultProxy,
    restore_after_s: float,
) -> None:
    """One fault, healed after ``restore_after_s`` (bounded in time, not in
    count: health checks pass through the proxy too, and a faulty health
    endpoint keeps a replica down as long as it lasts)."""
    if kind == "kill":
        replica.kill()
        await asyncio.sleep(restore_after_s)
        await asyncio.to_thread(replica.restart)
        return
    if kind == "errors_503":
        proxy.set_fault(status=503)
    elif kind == "resets":
        proxy.set_fault(reset=True)
    elif kind == "slow":
        proxy.set_fault(delay_ms=200)
    elif kind == "cut_streams":
        proxy.set_fault(cut_after_bytes=600)
    await asyncio.sleep(restore_after_s)
    proxy.clear()


async def _load(
    settings: SoakSettings,
    url: str,
    replicas: list[LlamaCppReplica],
    proxies: list[FaultProxy],
    gateway_pid: int,
    report: dict[str, Any],
) -> _Client:
    client = _Client()
    plain = orjson.dumps({"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2})
    streamed = orjson.dumps(
        {"messages": [{"role": "user", "content": "Count."}], "max_tokens": 4, "stream": True}
    )
    stream_every = max(1, round(1 / settings.stream_share)) if settings.stream_share > 0 else 0
    sent = 0
    faults: list[dict[str, Any]] = []
    memory: list[tuple[int, float]] = []
    pending: set[asyncio.Task[None]] = set()
    last_period_start = settings.requests - settings.fault_every
    headers = {"Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=30)

    async def one(session: aiohttp.ClientSession, index: int) -> None:
        stream = stream_every > 0 and index % stream_every == 0
        try:
            async with session.post(
                url + "/v1/chat/completions",
                data=streamed if stream else plain,
                headers=headers,
                timeout=timeout,
            ) as response:
                body = await response.read()
                client.answered[response.status] += 1
                if response.status != 200:
                    client.failures[_code(body, response.status)] += 1
                    client.messages.append(
                        f"request {index}: " + body.decode("utf-8", "replace")[:300]
                    )
                    return
                replica = response.headers.get("x-zeta-replica", "?")
                client.by_replica[replica] += 1
                if index >= last_period_start:
                    client.last_period[replica] += 1
                if stream and not body.endswith(b"data: [DONE]\n\n"):
                    client.cut += 1  # cut after events reached us: reported, not retried
                else:
                    client.complete += 1
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            client.errors[type(exc).__name__] += 1

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal sent
        while sent < settings.requests:
            index = sent
            sent += 1
            if index and index % settings.fault_every == 0 and index < last_period_start:
                number = index // settings.fault_every - 1
                kind = FAULTS[number % len(FAULTS)]
                target = number % len(replicas)
                faults.append({"at": index, "kind": kind, "replica": replicas[target].alias})
                task = asyncio.ensure_future(
                    _inject(kind, replicas[target], proxies[target], restore_after_s=1.0)
                )
                pending.add(task)
                task.add_done_callback(pending.discard)
            await one(session, index)

    async def watch_memory() -> None:
        while sent < settings.requests:
            memory.append((sent, _rss_mb(gateway_pid)))
            await asyncio.sleep(1.0)

    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        watcher = asyncio.ensure_future(watch_memory())
        await asyncio.gather(*(worker(session) for _ in range(settings.concurrency)))
        watcher.cancel()
        if pending:
            await asyncio.wait(pending)
    memory.append((sent, _rss_mb(gateway_pid)))
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["faults"] = faults
    report["memory_mb"] = memory
    return client


async def _final_state(url: str, replicas: int) -> dict[str, Any]:
    """Scrapes /metrics once health checks had time to see every replica back."""
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 15.0
        while True:
            async with session.get(url + "/metrics") as response:
                samples = _samples(await response.text())
            healthy = _total(samples, "zeta_replica_healthy")
            closed = _total(samples, "zeta_replica_breaker_state", state="closed")
            if (healthy == replicas and closed == replicas) or time.monotonic() > deadline:
                return {
                    "gateway_responses": _total(samples, "zeta_gateway_responses_total"),
                    "gateway_in_flight": _total(samples, "zeta_gateway_in_flight"),
                    "replica_in_flight": _total(samples, "zeta_replica_in_flight"),
                    "healthy_replicas": healthy,
                    "closed_breakers": closed,
                    "attempts": {
                        kind: _total(samples, "zeta_backend_requests_total", outcome=kind)
                        for kind in (
                            "success",
                            "timeout",
                            "connect",
                            "server_error",
                            "stream_cut",
                            "cancelled",
                            "client_error",
                            "other",
                        )
                    },
                }
            await asyncio.sleep(0.5)


def run_soak(settings: SoakSettings) -> dict[str, Any]:
    """Runs the soak; returns the report with ``checks`` (name -> passed)."""
    report: dict[str, Any] = {"settings": asdict(settings)}
    with tempfile.TemporaryDirectory(prefix="zeta-soak-") as directory:
        work = Path(directory)
        model = ensure_tiny_model(work, kind="chat", layers=2, dim=64)
        replicas = start_replicas(
            [LlamaCppReplica(model, alias=f"r{i}", parallel=4) for i in range(settings.replicas)]
        )
        proxies: list[FaultProxy] = []
        gateway: subprocess.Popen[bytes] | None = None
        try:
            proxies = [FaultProxy(HOST, r.port).start() for r in replicas]
            port = free_port()
            config = single_model_config(
                "tiny",
                [(r.alias, p.url) for r, p in zip(replicas, proxies, strict=True)],
                port=port,
                state_path=work / "state.snapshot",
                dispatch={
                    "breaker": {"failure_threshold": 5, "cooldown_s": 1.0},
                    "health": {"interval_s": 0.5, "timeout_s": 0.5},
                },
            )
            (work / "zeta.json").write_text(json.dumps(config))
            argv = [sys.executable, "-m", "zeta_fast.cli", "serve", "--config"]
            argv += [str(work / "zeta.json"), "--log-level", "info"]
            with (work / "gateway.log").open("wb") as log:
                # The child keeps its own copy of the file descriptor.
                gateway = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
            url = f"http://{HOST}:{port}"
            wait_ready(url + "/health", gateway, 30.0, work / "gateway.log")
            client = asyncio.run(_load(settings, url, replicas, proxies, gateway.pid, report))
            final = asyncio.run(_final_state(url, settings.replicas))
            report["gateway_log_tail"] = (work / "gateway.log").read_text()[-20_000:].splitlines()
        finally:
            if gateway is not None and gateway.poll() is None:
                gateway.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    gateway.wait(timeout=20)
            for proxy in proxies:
                proxy.stop()
            for replica in replicas:
                replica.stop()
    report["client"] = {
        "answered": dict(client.answered),
        "errors": dict(client.errors),
        "failures": dict(client.failures),
        "failure_messages": client.messages[:20],
        "complete": client.complete,
        "cut_streams": client.cut,
        "by_replica": dict(client.by_replica),
        "last_period_by_replica": dict(client.last_period),
    }
    report["final"] = final
    report["checks"] = _checks(settings, report, client, final)
    return report


def _checks(
    settings: SoakSettings, report: dict[str, Any], client: _Client, final: dict[str, Any]
) -> dict[str, Any]:
    memory = report["memory_mb"]
    warm = next((mb for sent, mb in memory if sent >= settings.requests // 10), memory[0][1])
    growth = max(mb for _, mb in memory) - warm
    answered = sum(client.answered.values())
    ok = client.answered.get(200, 0)
    share = 1.0 / settings.replicas
    last = client.last_period
    last_total = sum(last.values()) or 1
    return {
        "memory_growth_mb": round(growth, 1),
        "memory_within_bound": growth <= settings.memory_bound_mb,
        "every_request_answered": answered == settings.requests and not client.errors,
        "gateway_counted_every_response": final["gateway_responses"] == answered,
        "one_success_per_complete_answer": final["attempts"]["success"] == client.complete,
        "client_success_rate": ok / settings.requests,
        "nothing_in_flight": final["gateway_in_flight"] == 0 and final["replica_in_flight"] == 0,
        "all_replicas_back": final["healthy_replicas"] == settings.replicas
        and final["closed_breakers"] == settings.replicas,
        "every_replica_served_last_period": all(
            last.get(r, 0) / last_total >= share / 2
            for r in (f"r{i}" for i in range(settings.replicas))
        ),
    }


def passed(report: dict[str, Any]) -> bool:
    """Whether every boolean check passed."""
    return all(v for v in report["checks"].values() if isinstance(v, bool))
