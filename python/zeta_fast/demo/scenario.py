"""The demo: three "models" served by real llama.cpp replicas, the gateway in
front, a mixed workload, and faults halfway through.

Timeline (fractions of ``duration_s``): healthy until ``fault_at``; then
one replica of the large reasoner answers ``slow_ms`` late (through a fault
proxy) and one replica of the coder is killed (SIGKILL); at ``heal_at`` the
slow replica is healed (the killed one stays dead). Requests arrive at a
steady ``rate`` (open loop, like real traffic). The rolling window is 10 s
so the router's reaction shows within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from zeta_fast.config import parse_router_config
from zeta_fast.demo.workload import DemoRequest, mixed_workload
from zeta_fast.gateway import RunningGateway, start
from zeta_fast.loadgen import percentile
from zeta_fast.local import LlamaCppReplica, ensure_tiny_model, start_replicas
from zeta_fast.local.fault_proxy import FaultProxy
from zeta_fast.router import Router

__all__ = ["MODELS", "DemoSettings", "Outcome", "Sample", "run_demo"]

#: (model id, tiny model, capabilities): a small coder, an embedder, a large reasoner.
MODELS: list[tuple[str, str, dict[str, float]]] = [
    ("coder-small", "small", {"code": 88, "chat": 72, "knowledge": 62, "reasoning": 58}),
    ("embedder", "embedding", {"embedding": 90}),
    ("reasoner-large", "large", {"reasoning": 92, "knowledge": 88, "chat": 84, "code": 80}),
]
SLOWED = ("reasoner-large", "reasoner-large-a")
KILLED = ("coder-small", "coder-small-b")


@dataclass
class DemoSettings:
    duration_s: float = 40.0
    rate: float = 60.0
    out: Path = Path("demo-output")
    live: bool = True
    fault_at: float = 0.4
    heal_at: float = 0.75
    slow_ms: float = 300.0
    seed: int = 0
    sample_every_s: float = 0.5


@dataclass(slots=True)
class Outcome:
    """One answer as the client saw it."""

    t: float
    status: int
    latency_ms: float
    model: str
    replica: str
    overhead_ms: float
    task_type: str
    phase: str


@dataclass
class Sample:
    """The router's state at one moment (for the live view and the plots)."""

    t: float
    served: dict[str, int]  # model -> answers since the previous sample
    replicas: dict[str, int]  # replica -> answers since the previous sample
    scores: dict[str, float]  # "model/task" -> score now
    penalties: dict[str, list[str]]  # "model/task" -> penalties applied now
    breakers: dict[str, str]  # replica -> breaker state
    healthy: dict[str, bool]
    in_flight: dict[str, int]
    degraded: dict[str, bool]  # replica -> passed over for its recent record


@dataclass
class DemoState:
    settings: DemoSettings
    started: float = field(default_factory=time.perf_counter)
    outcomes: list[Outcome] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    phase: str = "healthy"
    sent: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def now(self) -> float:
        return time.perf_counter() - self.started

    def event(self, text: str) -> None:
        self.events.append((round(self.now(), 2), text))


def demo_config(urls: dict[str, list[str]], state_path: Path) -> dict[str, Any]:
    """The router configuration of the demo (``urls``: model -> replica URLs)."""
    return {
        "replica_policy": "power_of_two",
        "state_path": str(state_path),
        # A short window and a latency bar near the large model's own speed,
        # so that a slowed replica shows in seconds.
        "window": {"bucket_ms": 1000, "buckets": 10, "histogram_slices": 5},
        "scoring": {"max_acceptable_latency_ms": 60.0, "min_requests_for_performance": 10},
        "dispatch": {
            "max_attempts": 3,
            "breaker": {"failure_threshold": 3, "cooldown_s": 2.0},
            "health": {"interval_s": 0.5, "timeout_s": 0.5, "unhealthy_after": 2},
        },
        "gateway": {"host": "127.0.0.1", "port": 0},
        "models": [
            {
                "id": model_id,
                "capabilities": capabilities,
                "replicas": [
                    {"id": f"{model_id}-{letter}", "url": url, "backend": "llamacpp"}
                    for letter, url in zip("ab", urls[model_id], strict=True)
                ],
            }
            for model_id, _, capabilities in MODELS
        ],
    }


def _start_servers(
    models_dir: Path,
) -> tuple[list[LlamaCppReplica], dict[tuple[str, str], FaultProxy], dict[str, list[str]]]:
    paths = {
        "small": ensure_tiny_model(models_dir, kind="chat", layers=2, dim=64),
        "large": ensure_tiny_model(models_dir, kind="chat", layers=4, dim=128),
        "embedding": ensure_tiny_model(models_dir, kind="embedding", layers=2, dim=64),
    }
    replicas = [
        LlamaCppReplica(
            paths[tiny],
            alias=f"{model_id}-{letter}",
            parallel=4,
            # llama.cpp splits the context between its slots: 2,048 tokens each.
            ctx=4 * 2048,
            embedding=tiny == "embedding",
        )
        for model_id, tiny, _ in MODELS
        for letter in "ab"
    ]
    start_replicas(replicas)
    proxies: dict[tuple[str, str], FaultProxy] = {}
    urls: dict[str, list[str]] = defaultdict(list)
    for replica in replicas:
        model_id = replica.alias.rsplit("-", 1)[0]
        proxy = FaultProxy("127.0.0.1", replica.port).start()
        proxies[model_id, replica.alias] = proxy
        urls[model_id].append(proxy.url)
    return replicas, proxies, dict(urls)


async def _send(
    session: aiohttp.ClientSession,
    running: RunningGateway,
    request: DemoRequest,
    state: DemoState,
) -> None:
    phase = state.phase
    began = time.perf_counter()
    try:
        async with session.post(
            running.url + request.path,
            data=request.body,
            headers={"Content-Type": "application/json"},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            body = await response.read()
            headers = response.headers
            if response.status != 200:
                state.errors[f"{response.status} {_error_code(body)}"] += 1
            state.outcomes.append(
                Outcome(
                    t=state.now(),
                    status=response.status,
                    latency_ms=(time.perf_counter() - began) * 1e3,
                    model=headers.get("x-zeta-model", ""),
                    replica=headers.get("x-zeta-replica", ""),
                    overhead_ms=float(headers.get("x-zeta-overhead-ms", "nan")),
                    task_type=request.task_type,
                    phase=phase,
                )
            )
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        state.errors[type(exc).__name__] += 1
        state.outcomes.append(
            Outcome(state.now(), 0, 0.0, "", "", float("nan"), request.task_type, phase)
        )


def _error_code(body: bytes) -> str:
    try:
        error = orjson.loads(body).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return "?"
    return str(error.get("code") or error.get("type") or "?")


def _sample(router: Router, state: DemoState, since: int) -> Sample:
    recent = state.outcomes[since:]
    served = Counter(o.model for o in recent if o.status == 200)
    by_replica = Counter(o.replica for o in recent if o.status == 200)
    scores, penalties = {}, {}
    for model_id, task, breakdown in router.core.scores():
        scores[f"{model_id}/{task}"] = round(breakdown.performance_score, 2)
        penalties[f"{model_id}/{task}"] = list(breakdown.penalties)
    breakers, healthy, in_flight, degraded = {}, {}, {}, {}
    for model_id, _, _ in MODELS:
        for status in router.core.replica_status(model_id):
            replica = status.replica_id
            breakers[replica] = status.breaker or "none"
            healthy[replica] = status.healthy
            in_flight[replica] = status.in_flight
            degraded[replica] = status.degraded
    return Sample(
        t=round(state.now(), 2),
        served=dict(served),
        replicas=dict(by_replica),
        scores=scores,
        penalties=penalties,
        breakers=breakers,
        healthy=healthy,
        in_flight=in_flight,
        degraded=degraded,
    )


async def _drive(
    settings: DemoSettings,
    running: RunningGateway,
    proxies: dict[tuple[str, str], FaultProxy],
    replicas: list[LlamaCppReplica],
    state: DemoState,
    on_sample: Callable[[DemoState, Sample], None],
) -> None:
    router = running.gateway.router
    total = max(1, round(settings.duration_s * settings.rate))
    workload = mixed_workload(total, seed=settings.seed)
    tasks: set[asyncio.Task[None]] = set()
    gap = 1.0 / settings.rate
    next_sample = settings.sample_every_s
    sampled_upto = 0
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        state.started = time.perf_counter()
        state.event("workload started: mixed chat, code, reasoning, knowledge, embeddings")
        for index, request in enumerate(workload):
            due = index * gap
            delay = due - state.now()
            if delay > 0:
                await asyncio.sleep(delay)
            elapsed = state.now()
            if state.phase == "healthy" and elapsed >= settings.fault_at * settings.duration_s:
                state.phase = "fault"
                proxies[SLOWED].set_fault(delay_ms=settings.slow_ms)
                state.event(f"fault: {SLOWED[1]} slowed by {settings.slow_ms:.0f} ms")
                killed = next(r for r in replicas if r.alias == KILLED[1])
                killed.kill()
                state.event(f"fault: {KILLED[1]} killed (SIGKILL)")
            elif state.phase == "fault" and elapsed >= settings.heal_at * settings.duration_s:
                state.phase = "healed"
                proxies[SLOWED].clear()
                state.event(f"healed: {SLOWED[1]} answers at full speed again")
            if elapsed >= next_sample:
                sample = _sample(router, state, sampled_upto)
                sampled_upto = len(state.outcomes)
                state.samples.append(sample)
                on_sample(state, sample)
                next_sample += settings.sample_every_s
            task = asyncio.ensure_future(_send(session, running, request, state))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            state.sent += 1
        if tasks:
            await asyncio.wait(tasks, timeout=35)
        state.samples.append(_sample(router, state, sampled_upto))
        on_sample(state, state.samples[-1])
        state.event("workload finished")


def summarise(state: DemoState) -> dict[str, Any]:
    """The JSON report: totals, per model and replica, per phase, and what
    the router did about the faults."""
    outcomes = state.outcomes
    ok = [o for o in outcomes if o.status == 200]
    phases: dict[str, Any] = {}
    for phase in ("healthy", "fault", "healed"):
        part = [o for o in outcomes if o.phase == phase]
        good = [o for o in part if o.status == 200]
        models = Counter(o.model for o in good)
        replicas = Counter(o.replica for o in good)
        reasoner = sum(v for k, v in replicas.items() if k.startswith("reasoner-large"))
        phases[phase] = {
            "requests": len(part),
            "success_rate": len(good) / len(part) if part else None,
            "p50_ms": percentile([o.latency_ms for o in good], 0.5),
            "p99_ms": percentile([o.latency_ms for o in good], 0.99),
            "by_model": dict(models),
            "by_replica": dict(sorted(replicas.items())),
            "slowed_replica_share_of_its_model": (
                replicas.get(SLOWED[1], 0) / reasoner if reasoner else None
            ),
            "reasoning_to_reasoner_share": _share(
                [o for o in good if o.task_type == "reasoning"], "reasoner-large"
            ),
        }
    kill_t = next((t for t, text in state.events if "killed" in text), None)
    # Requests sent after the kill: one the replica answered just before it
    # died may finish reading a few ms after the kill's timestamp.
    after_kill = [o for o in ok if kill_t is not None and o.t - o.latency_ms / 1e3 > kill_t]
    avoided = next(
        (
            s.t
            for s in state.samples
            if kill_t is not None
            and s.t >= kill_t
            and (
                s.degraded.get(KILLED[1])
                or s.breakers.get(KILLED[1]) == "open"
                or not s.healthy.get(KILLED[1], True)
            )
        ),
        None,
    )
    opened = next(
        (
            s.t
            for s in state.samples
            if kill_t is not None and s.t >= kill_t and s.breakers.get(KILLED[1]) == "open"
        ),
        None,
    )
    down = next(
        (
            s.t
            for s in state.samples
            if kill_t is not None and s.t >= kill_t and not s.healthy.get(KILLED[1], True)
        ),
        None,
    )
    overheads = [o.overhead_ms for o in ok if o.overhead_ms == o.overhead_ms]
    return {
        "settings": {
            k: str(v) if isinstance(v, Path) else v for k, v in asdict(state.settings).items()
        },
        "requests": len(outcomes),
        "answered_200": len(ok),
        "client_success_rate": len(ok) / len(outcomes) if outcomes else None,
        "statuses": dict(Counter(o.status for o in outcomes)),
        "client_errors": dict(state.errors),
        "latency_ms": {
            "p50": percentile([o.latency_ms for o in ok], 0.5),
            "p99": percentile([o.latency_ms for o in ok], 0.99),
        },
        "gateway_overhead_ms": {
            "p50": percentile(overheads, 0.5),
            "p99": percentile(overheads, 0.99),
        },
        "phases": phases,
        "killed_replica": {
            "replica": KILLED[1],
            "answers_after_kill": sum(1 for o in after_kill if o.replica == KILLED[1]),
            "avoided_after_s": _since(kill_t, avoided),
            "breaker_open_after_s": _since(kill_t, opened),
            "health_down_after_s": _since(kill_t, down),
        },
        "events": state.events,
    }


def _since(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 2)


def _share(outcomes: list[Outcome], model: str) -> float | None:
    if not outcomes:
        return None
    return sum(1 for o in outcomes if o.model == model) / len(outcomes)


def run_demo(
    settings: DemoSettings, on_sample: Callable[[DemoState, Sample], None] | None = None
) -> tuple[dict[str, Any], DemoState]:
    """Runs the whole demo; stops everything it started. Returns the report
    and the raw state (outcomes and samples) for the plots."""
    out = settings.out
    out.mkdir(parents=True, exist_ok=True)
    state = DemoState(settings)
    replicas, proxies, urls = _start_servers(out / "models")
    state.event(
        f"started {len(replicas)} llama.cpp replicas (pids "
        f"{', '.join(str(r.pid) for r in replicas)})"
    )
    try:
        config = parse_router_config(demo_config(urls, out / "learned-state.snapshot"))
        # A fresh start each run: the demo shows learning from nothing.
        for stale in [*out.glob("learned-state.snapshot*"), *out.glob("outcomes.sqlite*")]:
            stale.unlink()

        async def main() -> None:
            router = Router(config)
            running = await start(router, port=0)
            state.event(f"gateway listening on {running.url} (live page: {running.url}/dashboard)")
            try:
                await _drive(settings, running, proxies, replicas, state, on_sample or _ignore)
            finally:
                await running.stop()

        asyncio.run(main())
    finally:
        for proxy in proxies.values():
            with contextlib.suppress(Exception):
                proxy.stop()
        for replica in replicas:
            with contextlib.suppress(Exception):
                replica.stop()
    report = _finite(summarise(state))
    (out / "report.json").write_text(json.dumps(report, indent=2, default=_jsonable))
    (out / "samples.json").write_text(
        json.dumps([asdict(s) for s in state.samples], default=_jsonable)
    )
    return report, state


def _ignore(state: DemoState, sample: Sample) -> None:
    return None


def _finite(value: Any) -> Any:
    """NaN (no data) as None: JSON has no NaN."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _jsonable(value: object) -> object:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)
