"""``zeta-fast bench prefix``: what prefix- and session-aware replica routing saves, measured
on real llama.cpp replicas in one run.

The replicas: ``replicas`` (3) llama.cpp servers (xllamacpp, each its own process, 1 thread,
``parallel`` (2) slots) serving one generated chat model (``layers`` x ``dim``: 4 x 128, a
declared context of 8192) large enough that prompt processing dominates time to first token
here: on a 2-core VM a 1,000-token prompt takes ~150 ms to process, a reused one ~20-30 ms
for the new tokens plus ~1 ms per answer token. Each slot's context holds the workload's
longest conversation (computed from the workload, checked before starting). Cache settings,
set explicitly by :mod:`zeta_fast.local.cached_replica` (see there for what each does):
``cache_prompt`` on, ``slot_prompt_similarity`` 0.1, ``n_cache_reuse`` 0, ``kv_unified``
off, and llama-server's host prompt cache (``cache_ram_mib``) on but scaled to this model:
as many tokens as the 8 GiB default holds for an 8B model (Llama-3-8B: 128 KiB of KV per
token, 64 k tokens), 128 MiB for 4 x 128 (2 KiB per token); ``--cache-ram-mib`` changes it
(0: off, a replica then remembers only what its slots hold).

The workload (deterministic from ``seed``): ``sessions`` (16) conversations of ``turns``
(10) turns, ``concurrency`` (6) of them in flight at once, each one's turns one after the
other. Every session opens with one of ``system_prompts`` (4) long agent-like system prompts
(~``system_prompt_chars`` characters; the model's tokens are single characters, so ~1,200
tokens); each turn appends a user message and then the answer that came back, so prompts
grow. Mixes: ``uniform`` (sessions spread over the system prompts) and ``skewed`` (one system
prompt in ``skew`` = 80 % of the sessions). Every request is a streamed
``/v1/chat/completions`` with ``stream_options.include_usage``, ``max_tokens`` (8), the header
``x-session-id: <session>`` and ``"user": <session>`` in the body. Each contender's run gets
fresh random salts at the start of every system prompt and fresh session ids (of fixed
lengths, so token counts are the same), so nothing a previous run left in a cache helps.

Contenders, run one at a time, interleaved in rounds (order rotated each round):

- ``zeta-cache-aware``: ``zeta-fast serve`` with ``replica_policy: cache_aware`` (a build
  whose configuration refuses the policy reports it as skipped, with the reason);
- ``zeta-power-of-two``: ``zeta-fast serve`` with ``replica_policy: power_of_two``;
- ``vllm-router-cache-aware`` / ``vllm-router-round-robin``: PyPI ``vllm-router`` with
  ``--policy cache_aware`` (its default thresholds) / ``--policy round_robin``;
- ``oracle``: the client sends every session to one replica directly, the one with the
  fewest sessions in flight when it starts, and keeps it there: the sticky-session oracle,
  with the active sessions spread evenly (why not ``i mod replicas``: see ``_Target``).

Per contender run: TTFT p50/p99 (to the first chunk with content), prompt tokens processed
(the sum of llama.cpp's ``timings.prompt_n`` from each stream's last chunk; both routers pass
``timings`` through unchanged; if any answer lacks it the sum of the replicas'
``llamacpp:prompt_tokens_total`` deltas is used instead, and ``prompt_tokens_source`` says
which), the cached share (sum ``cache_n`` / (sum ``cache_n`` + sum ``prompt_n``)), requests
per second, and load imbalance over the replicas as max/mean of the tokens each processed
(``/metrics`` deltas, which every contender has) and of each replica's time-averaged
in-flight requests (``llamacpp:requests_processing`` + ``llamacpp:requests_deferred``
sampled every ``sample_interval_s``). Ratios per round: prompt tokens / the oracle's and
TTFT p50 / ``zeta-power-of-two``'s. Reported: min and median over rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

from zeta_fast.gateway.bench import (
    HOST,
    _fast_loop,
    _Processes,
    _tool,
    free_port,
    single_model_config,
)
from zeta_fast.loadgen import percentile

__all__ = [
    "CONTENDERS",
    "MIXES",
    "PrefixBenchSettings",
    "Workload",
    "make_workload",
    "markdown_table",
    "run_prefix_bench",
    "write_report",
]

CONTENDERS: Final = (
    "zeta-cache-aware",
    "zeta-power-of-two",
    "vllm-router-cache-aware",
    "vllm-router-round-robin",
    "oracle",
)
MIXES: Final = ("uniform", "skewed")
MODEL_ID: Final = "tiny"
# Declared by the generated model: llama.cpp caps each slot's context at it.
MODEL_CONTEXT: Final = 8192
# Context overhead per chatml message beyond its content: <|im_start|>, the role, a newline,
# <|im_end|> and a newline (the role is at most 9 characters, "assistant").
_MESSAGE_OVERHEAD_TOKENS: Final = 16
# BOS and the generation prompt (<|im_start|>assistant\n).
_PROMPT_OVERHEAD_TOKENS: Final = 16
# llama-server's default host prompt cache and the KV bytes per token of the 8B model it is
# sized for (Llama-3-8B: 32 layers x 8 KV heads x 128 x K,V x f16).
_LLAMA_SERVER_CACHE_RAM_MIB: Final = 8192
_REFERENCE_KV_BYTES_PER_TOKEN: Final = 32 * 8 * 128 * 2 * 2
_SALT_HEX: Final = 8


@dataclass
class PrefixBenchSettings:
    """What ``run_prefix_bench`` runs; the defaults are the full benchmark."""

    sessions: int = 16
    turns: int = 10
    concurrency: int = 6
    system_prompts: int = 4
    system_prompt_chars: int = 1200
    user_chars: tuple[int, int] = (60, 180)
    max_tokens: int = 8
    mixes: tuple[str, ...] = MIXES
    skew: float = 0.8
    rounds: int = 3
    replicas: int = 3
    parallel: int = 2
    threads: int = 1
    layers: int = 4
    dim: int = 128
    #: The host prompt cache per replica; None: scaled to the model (see the module doc).
    cache_ram_mib: int | None = None
    seed: int = 0
    contenders: tuple[str, ...] = CONTENDERS
    sample_interval_s: float = 0.05
    request_timeout_s: float = 120.0
    #: No round starts after this many seconds (the rounds done are reported).
    max_seconds: float = 3600.0
    #: Where the generated model is cached; a temporary folder when None.
    model_dir: str | None = None

    @classmethod
    def quick(cls, **overrides: Any) -> PrefixBenchSettings:
        """A run small enough for a test: 4 sessions x 3 turns, 1 round, the skewed mix."""
        settings = cls(
            sessions=4,
            turns=3,
            concurrency=3,
            system_prompts=2,
            system_prompt_chars=600,
            mixes=("skewed",),
            rounds=1,
        )
        return replace(settings, **overrides)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.contenders) - set(CONTENDERS))
        if unknown:
            raise ValueError(f"unknown contender(s) {unknown}; known: {list(CONTENDERS)}")
        bad_mixes = sorted(set(self.mixes) - set(MIXES))
        if bad_mixes:
            raise ValueError(f"unknown mix(es) {bad_mixes}; known: {list(MIXES)}")
        for name in ("sessions", "turns", "concurrency", "system_prompts", "rounds", "replicas"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.skew <= 1.0:
            raise ValueError(f"skew must be in [0, 1], got {self.skew}")
        low, high = self.user_chars
        if not 1 <= low <= high:
            raise ValueError(
                f"user_chars must be (low, high) with 1 <= low <= high, got {low, high}"
            )

    def kv_bytes_per_token(self) -> int:
        """The generated model's KV cache per token: K and V, f16, every layer."""
        return 2 * self.layers * self.dim * 2

    def effective_cache_ram_mib(self) -> int:
        """``cache_ram_mib``, or the llama-server default scaled to this model's KV size."""
        if self.cache_ram_mib is not None:
            return self.cache_ram_mib
        scaled = (
            _LLAMA_SERVER_CACHE_RAM_MIB * self.kv_bytes_per_token() / _REFERENCE_KV_BYTES_PER_TOKEN
        )
        return max(1, math.ceil(scaled))


# --------------------------------------------------------------------------------------------
# The workload
# --------------------------------------------------------------------------------------------

_WORDS: Final = (
    "agent",
    "tool",
    "call",
    "plan",
    "step",
    "result",
    "observe",
    "retry",
    "file",
    "search",
    "read",
    "write",
    "test",
    "build",
    "deploy",
    "review",
    "check",
    "parse",
    "schema",
    "field",
    "value",
    "error",
    "status",
    "request",
    "response",
    "cache",
    "token",
    "budget",
    "policy",
    "rule",
    "always",
    "never",
    "must",
    "should",
    "output",
    "format",
    "json",
    "markdown",
    "table",
    "list",
    "summary",
    "context",
    "memory",
    "task",
    "goal",
    "user",
    "system",
    "assistant",
    "function",
    "argument",
    "return",
    "limit",
    "timeout",
    "log",
    "trace",
    "metric",
    "alert",
    "config",
    "option",
    "default",
    "path",
    "branch",
    "commit",
    "patch",
    "diff",
    "merge",
)


@dataclass(frozen=True)
class Session:
    """One conversation: its system prompt (an index) and its user messages, one per turn."""

    index: int
    system: int
    users: tuple[str, ...]


@dataclass(frozen=True)
class Workload:
    """Deterministic from the seed; each run adds its own salts and session ids."""

    mix: str
    system_prompts: tuple[str, ...]
    sessions: tuple[Session, ...]

    def max_prompt_tokens(self, max_tokens: int) -> int:
        """An upper bound on the tokens of any request's context, the answer included.

        The model's tokens are single characters (byte fallback for anything else, and the
        workload is ASCII), so characters bound tokens.
        """
        salt = _SALT_HEX + 3  # "[" salt "] "
        longest = 0
        for session in self.sessions:
            turns = len(session.users)
            chars = salt + len(self.system_prompts[session.system])
            chars += sum(len(user) for user in session.users) + (turns - 1) * max_tokens
            messages = 1 + 2 * turns - 1
            tokens = chars + messages * _MESSAGE_OVERHEAD_TOKENS + _PROMPT_OVERHEAD_TOKENS
            longest = max(longest, tokens + max_tokens)
        return longest


def _text(rng: random.Random, chars: int, opening: str = "") -> str:
    words = [opening] if opening else []
    length = len(opening)
    while length < chars:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:chars]


def make_workload(settings: PrefixBenchSettings, mix: str) -> Workload:
    """The sessions and system prompts of ``mix``, the same for the same settings."""
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}; known: {list(MIXES)}")
    rng = random.Random(settings.seed * 1_000 + MIXES.index(mix))
    prompts = tuple(
        _text(
            rng,
            settings.system_prompt_chars,
            f"You are agent {i}. Follow the rules and use the tools below.",
        )
        for i in range(settings.system_prompts)
    )
    count = settings.sessions
    if mix == "uniform" or settings.system_prompts == 1:
        systems = [i % settings.system_prompts for i in range(count)]
        rng.shuffle(systems)
    else:
        # Exactly round(skew * sessions) sessions on prompt 0, the others cycle through the rest:
        # a seed never turns "80 %" into 60 or 100.
        hot = set(rng.sample(range(count), round(settings.skew * count)))
        others = iter(range(count))
        systems = [
            0 if i in hot else 1 + next(others) % (settings.system_prompts - 1)
            for i in range(count)
        ]
    low, high = settings.user_chars
    sessions = tuple(
        Session(
            index=i,
            system=systems[i],
            users=tuple(
                _text(rng, rng.randint(low, high), f"Turn {turn + 1}:")
                for turn in range(settings.turns)
            ),
        )
        for i in range(count)
    )
    return Workload(mix, prompts, sessions)


# --------------------------------------------------------------------------------------------
# One contender's run of a workload
# --------------------------------------------------------------------------------------------


@dataclass
class _Request:
    session: int
    turn: int
    ok: bool = False
    error: str | None = None
    ttft_ms: float = math.nan
    latency_ms: float = math.nan
    prompt_n: int | None = None
    cache_n: int | None = None
    reconnects: int = 0


@dataclass(frozen=True)
class _Target:
    """Where a contender's requests go: a router's one URL, or (the oracle) every replica's.

    With several URLs a session is pinned, when it starts, to the replica with the fewest
    sessions in flight (the lowest index on a tie) and stays there: the active sessions are
    spread evenly, so with ``concurrency <= replicas * parallel`` each one keeps a slot and
    its cache. Pinning by session index alone is not enough: sessions of a replica that
    falls behind pile up there (the others' workers move on to the next sessions), and
    sessions sharing a system prompt then take over each other's slots, which llama.cpp
    cuts back to the common prefix instead of saving them to its host cache.
    """

    urls: tuple[str, ...]
    model: str


class _Placement:
    """Which URL each session of one run uses (see :class:`_Target`)."""

    def __init__(self, target: _Target) -> None:
        self._urls = target.urls
        self._active = [0] * len(target.urls)

    def open(self) -> int:
        replica = min(range(len(self._urls)), key=lambda i: (self._active[i], i))
        self._active[replica] += 1
        return replica

    def close(self, replica: int) -> None:
        self._active[replica] -= 1

    def url(self, replica: int) -> str:
        return self._urls[replica]


def _parse_metrics(text: str) -> dict[str, float]:
    """llama.cpp's Prometheus text: ``name value`` lines, no labels."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        try:
            values[name] = float(value.split()[0])
        except (ValueError, IndexError):
            continue
    return values


# llama.cpp's HTTP server closes a connection after a streamed answer although its headers
# offer keep-alive, so the next request on that pooled connection fails to write. Such an
# error before any answer came means the server never took the request: it is sent again
# (counted as a reconnect), as the routers' own clients do; the pool may hold a few such
# connections, hence more than one more try.
_STALE_CONNECTION: Final = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)
_ATTEMPTS: Final = 4


async def _scrape(client: aiohttp.ClientSession, url: str) -> dict[str, float]:
    for attempt in range(_ATTEMPTS):
        try:
            async with client.get(
                f"{url}/metrics", timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                response.raise_for_status()
                return _parse_metrics(await response.text())
        except _STALE_CONNECTION:
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


async def _stream_turn(
    client: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    session_id: str,
    record: _Request,
    timeout_s: float,
) -> str:
    """Sends one streamed turn; fills ``record``; returns the answer's text.

    TTFT and latency count from the first attempt, so a reconnect is not hidden.
    """
    answer: list[str] = []
    payload = orjson.dumps(body)
    started = time.perf_counter()
    for attempt in range(_ATTEMPTS):
        answered = False
        try:
            async with client.post(
                url,
                data=payload,
                headers={"Content-Type": "application/json", "x-session-id": session_id},
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                answered = True
                if response.status != 200:
                    record.error = f"HTTP {response.status}: {(await response.text())[:200]}"
                    return ""
                async for raw in response.content:
                    line = raw.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        break
                    event = orjson.loads(data)
                    if "error" in event:
                        record.error = f"stream error: {str(event['error'])[:200]}"
                        return ""
                    for choice in event.get("choices") or ():
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            if not answer:
                                record.ttft_ms = (time.perf_counter() - started) * 1e3
                            answer.append(content)
                    timings = event.get("timings")
                    if isinstance(timings, dict):
                        # llama.cpp puts them in the last chunk; the last seen wins.
                        record.prompt_n = int(timings.get("prompt_n", 0))
                        record.cache_n = int(timings.get("cache_n", 0))
            break
        except _STALE_CONNECTION as exc:
            if answered or attempt == _ATTEMPTS - 1:
                record.error = f"{type(exc).__name__}: {exc}"
                return ""
            record.reconnects += 1
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            return ""
    record.latency_ms = (time.perf_counter() - started) * 1e3
    if math.isnan(record.ttft_ms):
        record.ttft_ms = record.latency_ms
    record.ok = True
    return "".join(answer)


async def _sample_in_flight(
    client: aiohttp.ClientSession,
    replicas: Sequence[str],
    interval_s: float,
    stop: asyncio.Event,
    samples: list[list[float]],
) -> None:
    """Appends each replica's processing + deferred requests every ``interval_s``."""
    while not stop.is_set():
        tick = time.perf_counter()
        scraped = await asyncio.gather(
            *(_scrape(client, url) for url in replicas), return_exceptions=True
        )
        for values, result in zip(samples, scraped, strict=True):
            if isinstance(result, BaseException):
                continue
            values.append(
                result.get("llamacpp:requests_processing", 0.0)
                + result.get("llamacpp:requests_deferred", 0.0)
            )
        remaining = interval_s - (time.perf_counter() - tick)
        if remaining > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), remaining)


def _imbalance(values: Sequence[float]) -> float:
    """max / mean; NaN when there is nothing."""
    mean = statistics.fmean(values) if values else 0.0
    return max(values) / mean if mean > 0 else math.nan


async def _run_workload(
    client: aiohttp.ClientSession,
    target: _Target,
    workload: Workload,
    replicas: Sequence[str],
    settings: PrefixBenchSettings,
) -> dict[str, Any]:
    """One contender's pass over the workload with fresh salts and session ids."""
    run_id = secrets.token_hex(4)
    salts = [secrets.token_hex(_SALT_HEX // 2) for _ in workload.system_prompts]
    systems = [
        f"[{salt}] {prompt}" for salt, prompt in zip(salts, workload.system_prompts, strict=True)
    ]
    records: list[_Request] = []
    pending = list(workload.sessions)

    placement = _Placement(target)

    async def converse(session: Session) -> None:
        replica = placement.open()
        try:
            await turns(session, placement.url(replica))
        finally:
            placement.close(replica)

    async def turns(session: Session, url: str) -> None:
        session_id = f"{run_id}-s{session.index:03d}"
        messages: list[dict[str, str]] = [{"role": "system", "content": systems[session.system]}]
        for turn, user in enumerate(session.users):
            messages.append({"role": "user", "content": user})
            body = {
                "model": target.model,
                "messages": messages,
                "max_tokens": settings.max_tokens,
                "stream": True,
                "stream_options": {"include_usage": True},
                "user": session_id,
            }
            record = _Request(session.index, turn)
            records.append(record)
            answer = await _stream_turn(
                client,
                url,
                body,
                session_id,
                record,
                settings.request_timeout_s,
            )
            if not record.ok:
                return  # the conversation cannot go on without its answer
            messages.append({"role": "assistant", "content": answer})

    async def worker() -> None:
        while pending:
            await converse(pending.pop(0))

    before = await asyncio.gather(*(_scrape(client, url) for url in replicas))
    samples: list[list[float]] = [[] for _ in replicas]
    stop = asyncio.Event()
    sampler = asyncio.create_task(
        _sample_in_flight(client, replicas, settings.sample_interval_s, stop, samples)
    )
    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(settings.concurrency)))
    finally:
        wall_s = time.perf_counter() - started
        stop.set()
        await sampler
    after = await asyncio.gather(*(_scrape(client, url) for url in replicas))
    return _run_summary(records, before, after, samples, wall_s)


def _run_summary(
    records: list[_Request],
    before: Sequence[dict[str, float]],
    after: Sequence[dict[str, float]],
    samples: Sequence[Sequence[float]],
    wall_s: float,
) -> dict[str, Any]:
    ok = [r for r in records if r.ok]
    ttfts = [r.ttft_ms for r in ok]
    later = [r.ttft_ms for r in ok if r.turn > 0]
    first = [r.ttft_ms for r in ok if r.turn == 0]
    with_timings = [r for r in ok if r.prompt_n is not None and r.cache_n is not None]
    prompt_n = sum(r.prompt_n or 0 for r in with_timings)
    cache_n = sum(r.cache_n or 0 for r in with_timings)
    later_timed = [r for r in with_timings if r.turn > 0]
    later_prompt = sum(r.prompt_n or 0 for r in later_timed)
    later_cache = sum(r.cache_n or 0 for r in later_timed)
    per_replica = [
        a.get("llamacpp:prompt_tokens_total", 0.0) - b.get("llamacpp:prompt_tokens_total", 0.0)
        for b, a in zip(before, after, strict=True)
    ]
    in_flight = [statistics.fmean(s) if s else 0.0 for s in samples]
    timings_complete = bool(ok) and len(with_timings) == len(ok)
    metrics_tokens = sum(per_replica)
    errors = sorted({r.error for r in records if r.error})
    return {
        "requests": len(records),
        "failed": len(records) - len(ok),
        "reconnects": sum(r.reconnects for r in records),
        "errors": errors[:5],
        "wall_s": wall_s,
        "throughput_rps": len(ok) / wall_s if wall_s > 0 else 0.0,
        "ttft_p50_ms": percentile(ttfts, 0.5),
        "ttft_p99_ms": percentile(ttfts, 0.99),
        "ttft_p50_first_turn_ms": percentile(first, 0.5),
        "ttft_p50_later_turns_ms": percentile(later, 0.5),
        # timings when every answer had them (they count exactly this run's requests),
        # else the replicas' counters.
        "prompt_tokens": float(prompt_n) if timings_complete else metrics_tokens,
        "prompt_tokens_source": "timings" if timings_complete else "metrics",
        "prompt_tokens_metrics": metrics_tokens,
        "answers_with_timings": len(with_timings),
        # The longest context a request used (reused + processed): it must fit a slot.
        "max_context_tokens": max(
            ((r.prompt_n or 0) + (r.cache_n or 0) for r in with_timings), default=0
        ),
        "cache_tokens": float(cache_n),
        "cached_share": cache_n / (cache_n + prompt_n) if cache_n + prompt_n else math.nan,
        "cached_share_after_first_turn": (
            later_cache / (later_cache + later_prompt) if later_cache + later_prompt else math.nan
        ),
        "replica_prompt_tokens": per_replica,
        "tokens_imbalance": _imbalance(per_replica),
        "replica_in_flight_mean": in_flight,
        "in_flight_imbalance": _imbalance(in_flight),
        "in_flight_samples": min((len(s) for s in samples), default=0),
    }


# --------------------------------------------------------------------------------------------
# The contenders
# --------------------------------------------------------------------------------------------


def _start_zeta(
    processes: _Processes, name: str, policy: str, replicas: Sequence[str]
) -> tuple[str | None, str | None]:
    """Starts ``zeta-fast serve`` with ``policy``; (URL, None) or (None, why skipped)."""
    # Imported here: the configuration's validation is what tells a policy that does not
    # exist yet from one that does, before a process is started for nothing.
    from zeta_fast.config import parse_router_config
    from zeta_fast.exceptions import ConfigError

    directory = processes.directory
    port = free_port()
    config = single_model_config(
        MODEL_ID,
        [(f"r{i}", url) for i, url in enumerate(replicas)],
        port=port,
        state_path=directory / f"{name}-state.snapshot",
    )
    config["replica_policy"] = policy
    try:
        parse_router_config(config)
    except ConfigError as exc:
        return None, f"configuration refused: {' '.join(str(exc).split())}"
    path = directory / f"{name}.json"
    path.write_text(json.dumps(config))
    try:
        processes.start(
            name,
            [sys.executable, "-m", "zeta_fast.cli", "serve", "--config", str(path)],
            f"http://{HOST}:{port}/health",
        )
    except RuntimeError as exc:
        return None, f"did not start: {str(exc)[-500:]}"
    return f"http://{HOST}:{port}", None


def _start_vllm_router(
    processes: _Processes, name: str, policy: str, replicas: Sequence[str]
) -> tuple[str | None, str | None]:
    binary = _tool("vllm-router")
    if binary is None:
        return None, "not installed (pip install 'zeta_fast[bench]')"
    port = free_port()
    try:
        processes.start(
            name,
            [
                binary,
                "--host",
                HOST,
                "--port",
                str(port),
                "--policy",
                policy,
                "--log-level",
                "error",
                "--prometheus-port",
                str(free_port()),
                "--worker-urls",
                *replicas,
            ],
            f"http://{HOST}:{port}/health",
        )
    except RuntimeError as exc:
        return None, f"did not start: {str(exc)[-500:]}"
    return f"http://{HOST}:{port}", None


def _start_contenders(
    processes: _Processes, replicas: Sequence[str], wanted: Sequence[str]
) -> tuple[dict[str, _Target], dict[str, str]]:
    targets: dict[str, _Target] = {}
    skipped: dict[str, str] = {}
    starters = {
        "zeta-cache-aware": (_start_zeta, "cache_aware", "auto"),
        "zeta-power-of-two": (_start_zeta, "power_of_two", "auto"),
        "vllm-router-cache-aware": (_start_vllm_router, "cache_aware", MODEL_ID),
        "vllm-router-round-robin": (_start_vllm_router, "round_robin", MODEL_ID),
    }
    for name in wanted:
        if name == "oracle":
            urls = tuple(f"{url}/v1/chat/completions" for url in replicas)
            targets[name] = _Target(urls, MODEL_ID)
            continue
        start, policy, model = starters[name]
        base, why = start(processes, name, policy, replicas)
        if base is None:
            skipped[name] = why or "did not start"
            continue
        targets[name] = _Target((f"{base}/v1/chat/completions",), model)
    return targets, skipped


async def _warm(
    client: aiohttp.ClientSession, targets: dict[str, _Target], timeout_s: float
) -> None:
    """One short request per contender (and replica, for the oracle): connections open, and
    the routers have seen every replica answer once. Salted, so no later prompt shares it."""
    for target in targets.values():
        for index in range(3):
            body = {
                "model": target.model,
                "messages": [{"role": "user", "content": f"warm {secrets.token_hex(4)}"}],
                "max_tokens": 1,
                "stream": True,
            }
            record = _Request(index, 0)
            url = target.urls[index % len(target.urls)]
            await _stream_turn(client, url, body, "warm", record, timeout_s)
            if not record.ok:
                raise RuntimeError(f"warm-up request failed: {record.error}")


# --------------------------------------------------------------------------------------------
# Rounds, summaries, the table
# --------------------------------------------------------------------------------------------

_SUMMARISED: Final = (
    "ttft_p50_ms",
    "ttft_p99_ms",
    "ttft_p50_first_turn_ms",
    "ttft_p50_later_turns_ms",
    "prompt_tokens",
    "cached_share",
    "cached_share_after_first_turn",
    "throughput_rps",
    "tokens_imbalance",
    "in_flight_imbalance",
    "prompt_tokens_over_oracle",
    "ttft_p50_over_zeta_power_of_two",
    "wall_s",
)


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "rounds": len(runs),
        "failed": sum(r["failed"] for r in runs),
        "reconnects": sum(r["reconnects"] for r in runs),
    }
    for key in _SUMMARISED:
        values = _finite([r[key] for r in runs if key in r])
        if values:
            row[key] = {"min": min(values), "median": statistics.median(values)}
    row["prompt_tokens_source"] = sorted({r["prompt_tokens_source"] for r in runs})
    row["errors"] = sorted({e for r in runs for e in r["errors"]})[:5]
    return row


def _add_ratios(by_contender: dict[str, list[dict[str, Any]]]) -> None:
    """Per round: prompt tokens / the oracle's, TTFT p50 / zeta-power-of-two's."""
    oracle = by_contender.get("oracle", [])
    power = by_contender.get("zeta-power-of-two", [])
    for runs in by_contender.values():
        for index, run in enumerate(runs):
            if index < len(oracle) and oracle[index]["prompt_tokens"] > 0:
                run["prompt_tokens_over_oracle"] = (
                    run["prompt_tokens"] / oracle[index]["prompt_tokens"]
                )
            if index < len(power) and power[index]["ttft_p50_ms"] > 0:
                run["ttft_p50_over_zeta_power_of_two"] = (
                    run["ttft_p50_ms"] / power[index]["ttft_p50_ms"]
                )


async def _rounds(
    settings: PrefixBenchSettings,
    replicas: Sequence[str],
    targets: dict[str, _Target],
    report: dict[str, Any],
) -> None:
    workloads = {mix: make_workload(settings, mix) for mix in settings.mixes}
    names = list(targets)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        mix: {name: [] for name in names} for mix in settings.mixes
    }
    deadline = time.monotonic() + settings.max_seconds
    # Idle connections are dropped after 2 s: llama.cpp's HTTP server closes them after 5 s,
    # and a pooled connection it has just closed fails the next request's write.
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=2.0)
    done = 0
    async with aiohttp.ClientSession(connector=connector) as client:
        await _warm(client, targets, settings.request_timeout_s)
        for round_index in range(settings.rounds):
            if round_index and time.monotonic() > deadline:
                break
            shift = round_index % max(1, len(names))
            order = names[shift:] + names[:shift]
            for mix, workload in workloads.items():
                for name in order:
                    run = await _run_workload(client, targets[name], workload, replicas, settings)
                    run["round"] = round_index
                    runs[mix][name].append(run)
            done += 1
    report["rounds_done"] = done
    report["mixes"] = {}
    for mix, by_contender in runs.items():
        _add_ratios(by_contender)
        report["mixes"][mix] = {
            "sessions": [asdict(s) | {"users": len(s.users)} for s in workloads[mix].sessions],
            "contenders": {name: _summarise(r) for name, r in by_contender.items() if r},
            "runs": by_contender,
        }


def _cell(row: dict[str, Any], key: str, digits: int, suffix: str = "") -> str:
    value = row.get(key)
    if not value:
        return "-"
    return f"{value['min']:.{digits}f} / {value['median']:.{digits}f}{suffix}"


def markdown_table(report: dict[str, Any]) -> str:
    """The report as markdown: one table per mix, a row per contender (skipped ones too)."""
    lines: list[str] = []
    columns = (
        ("TTFT p50 ms", "ttft_p50_ms", 1),
        ("TTFT p99 ms", "ttft_p99_ms", 1),
        ("prompt tokens", "prompt_tokens", 0),
        ("/ oracle", "prompt_tokens_over_oracle", 2),
        ("cached share", "cached_share", 3),
        ("req/s", "throughput_rps", 2),
        ("token imbalance", "tokens_imbalance", 2),
        ("in-flight imbalance", "in_flight_imbalance", 2),
        ("TTFT p50 / zeta-p2", "ttft_p50_over_zeta_power_of_two", 2),
    )
    settings = report["settings"]
    for mix, result in report.get("mixes", {}).items():
        lines.append(
            f"### {mix}: {settings['sessions']} sessions x {settings['turns']} turns, "
            f"concurrency {settings['concurrency']}, {report['rounds_done']} round(s), "
            "min / median over rounds"
        )
        lines.append("")
        lines.append("| contender | " + " | ".join(title for title, _, _ in columns) + " |")
        lines.append("|---" * (len(columns) + 1) + "|")
        for name in settings["contenders"]:
            row = result["contenders"].get(name)
            if row is None:
                why = report["skipped"].get(name, "not run")
                lines.append(f"| {name} | skipped: {why} |" + " |" * (len(columns) - 1))
                continue
            cells = [_cell(row, key, digits) for _, key, digits in columns]
            failed = f" ({row['failed']} failed)" if row["failed"] else ""
            lines.append(f"| {name}{failed} | " + " | ".join(cells) + " |")
        lines.append("")
    sources = {
        name: row["prompt_tokens_source"]
        for result in report.get("mixes", {}).values()
        for name, row in result["contenders"].items()
    }
    reconnects = {
        name: row["reconnects"]
        for result in report.get("mixes", {}).values()
        for name, row in result["contenders"].items()
        if row["reconnects"]
    }
    if reconnects:
        lines.append(
            "requests sent again after llama.cpp closed a kept-alive connection: "
            + ", ".join(f"{name} {count}" for name, count in sorted(reconnects.items()))
        )
    if sources:
        lines.append(
            "prompt tokens from: "
            + ", ".join(f"{name} {'/'.join(src)}" for name, src in sorted(sources.items()))
        )
    return "\n".join(lines)


def run_prefix_bench(settings: PrefixBenchSettings) -> dict[str, Any]:
    """Runs the benchmark; returns the report (see the module's docstring)."""
    # Imported here: gguf and the replica launcher are the local extra's.
    from zeta_fast.local import ensure_tiny_model, start_replicas
    from zeta_fast.local.cached_replica import CachedLlamaCppReplica

    workloads = [make_workload(settings, mix) for mix in settings.mixes]
    longest = max(w.max_prompt_tokens(settings.max_tokens) for w in workloads)
    # A multiple of 256 with room to spare: the slot must hold the whole conversation.
    slot_ctx = 256 * math.ceil((longest + 64) / 256)
    if slot_ctx > MODEL_CONTEXT:
        raise ValueError(
            f"the longest conversation needs {longest} tokens per slot, more than the model's "
            f"{MODEL_CONTEXT}: fewer turns or shorter prompts"
        )
    cache_ram_mib = settings.effective_cache_ram_mib()
    report: dict[str, Any] = {
        "settings": asdict(settings) | {"contenders": list(settings.contenders)},
        "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "replica": {
            "layers": settings.layers,
            "dim": settings.dim,
            "model_context": MODEL_CONTEXT,
            "slot_ctx": slot_ctx,
            "longest_conversation_tokens_bound": longest,
            "parallel": settings.parallel,
            "threads": settings.threads,
            "cache_prompt": True,
            "slot_prompt_similarity": 0.1,
            "cache_ram_mib": cache_ram_mib,
            "n_cache_reuse": 0,
        },
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="zeta-prefix-bench-") as work:
        directory = Path(work)
        model = ensure_tiny_model(
            settings.model_dir or directory / "models",
            layers=settings.layers,
            dim=settings.dim,
            context_length=MODEL_CONTEXT,
        )
        processes = _Processes(directory)
        replicas = [
            CachedLlamaCppReplica(
                model,
                alias=f"r{i}",
                ctx=slot_ctx * settings.parallel,
                parallel=settings.parallel,
                threads=settings.threads,
                cache_ram_mib=cache_ram_mib,
                log_path=directory / f"replica-{i}.log",
            )
            for i in range(settings.replicas)
        ]
        try:
            start_replicas(replicas)
            urls = [replica.url for replica in replicas]
            targets, skipped = _start_contenders(processes, urls, settings.contenders)
            report["skipped"] = skipped
            with _fast_loop():
                asyncio.run(_rounds(settings, urls, targets, report))
        finally:
            processes.stop()
            for replica in replicas:
                replica.stop()
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def write_report(report: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Writes the report as JSON (NaN as null, so any JSON reader takes it)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    Path(path).write_text(json.dumps(clean(report), indent=2))
