"""Prefix- and session-aware replica routing (``replica_policy: cache_aware``).

The first tests drive the router's own ``route``/``record_outcome`` (the real
core, no servers); the last one sends multi-turn conversations through the
gateway to real llama.cpp replicas and counts the prompt tokens the engines
had to process, with the policy and without it.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp
import pytest

from tests.llamacpp_fixtures import TinyModels
from tests.test_gateway import gateway_router, metrics_of, text_model
from zeta_fast import PerformanceTracker, Router
from zeta_fast.config import parse_router_config
from zeta_fast.exceptions import ConfigError
from zeta_fast.gateway import start
from zeta_fast.local import LlamaCppReplica, start_replicas

URLS = [f"http://127.0.0.1:{9 + i}" for i in range(4)]
SYSTEM = (
    "You are a coding agent. Tools: search(query), read(path), write(path, text), "
    "run(command). Think step by step, call one tool per turn, report what you found. "
) * 3


def router(policy: str, **top: Any) -> Router:
    """A router over one chat model with four replicas (never contacted)."""
    return gateway_router([text_model("chat", URLS)], replica_policy=policy, **top)


def conversation(c: int, turns: int) -> list[dict[str, str]]:
    """Conversation ``c`` after ``turns`` user turns (and the answers between)."""
    messages = [{"role": "system", "content": SYSTEM}]
    for t in range(turns):
        if t:
            messages.append({"role": "assistant", "content": f"result {c}.{t}: done"})
        messages.append({"role": "user", "content": f"task {c}, step {t}: go on"})
    return messages


def replicas_per_conversation(r: Router, conversations: int, turns: int) -> list[set[str]]:
    """Routes every conversation turn by turn (interleaved, each answered
    before the next), returning the replicas each conversation used."""
    used: list[set[str]] = [set() for _ in range(conversations)]
    for t in range(1, turns + 1):
        for c in range(conversations):
            decision = r.route(conversation(c, t))
            used[c].add(decision.replica_id)
            r.core.record_outcome(decision, "success", 20.0)
    return used


def test_cache_aware_keeps_each_conversation_on_one_replica_and_spreads_them() -> None:
    with router("cache_aware") as r:
        used = replicas_per_conversation(r, conversations=12, turns=6)
    assert all(len(replicas) == 1 for replicas in used), used
    # One system prompt for all: conversations still spread (the work bound).
    homes = {next(iter(replicas)) for replicas in used}
    assert len(homes) >= 2, homes


def test_without_the_policy_conversations_wander() -> None:
    # The control: the same traffic under power_of_two moves conversations.
    with router("power_of_two") as r:
        used = replicas_per_conversation(r, conversations=12, turns=6)
    assert sum(len(replicas) > 1 for replicas in used) >= 6, used


def test_a_session_stays_on_its_replica_whatever_its_prompts() -> None:
    with router("cache_aware") as r:
        first = r.route("hello", session="user-7")
        r.core.record_outcome(first, "success", 10.0)
        for i in range(30):
            decision = r.route(f"unrelated question {i}", session="user-7")
            assert decision.replica_id == first.replica_id
            r.core.record_outcome(decision, "success", 10.0)
        others = set()
        for i in range(40):
            decision = r.route(f"unrelated question {i}", session=f"user-{100 + i}")
            others.add(decision.replica_id)
            r.core.record_outcome(decision, "success", 10.0)
        assert len(others) >= 3, others


def test_the_load_bound_moves_a_conversation_off_a_busy_replica() -> None:
    with router("cache_aware") as r:
        first = r.route(conversation(0, 1))
        r.core.record_outcome(first, "success", 10.0)
        # One request of the conversation in flight on its replica, none
        # elsewhere: a second would be past 1.25 x the mean of four
        # replicas (ceil(1.25 x 2 / 4) = 1).
        held = [r.route(conversation(0, 1))]
        assert {d.replica_id for d in held} == {first.replica_id}
        moved = r.route(conversation(0, 2))
        assert moved.replica_id != first.replica_id
        for decision in (*held, moved):
            r.core.release(decision)
        # Once it is free again, the conversation goes where it went last.
        again = r.route(conversation(0, 3))
        assert again.replica_id == moved.replica_id
        r.core.release(again)


def test_engine_reports_score_the_index_and_correct_it() -> None:
    with router("cache_aware") as r:
        stats = r.core.prefix_cache("chat")
        assert stats is not None
        assert stats["entries"] == 0
        first = r.route(conversation(0, 1))
        r.core.record_outcome(first, "success", 10.0, prompt_tokens=100, cached_tokens=0)
        second = r.route(conversation(0, 2))
        assert second.replica_id == first.replica_id
        # The engine says it reused most of the prompt: a hit.
        r.core.record_outcome(second, "success", 10.0, prompt_tokens=120, cached_tokens=95)
        third = r.route(conversation(0, 3))
        # It says it reused nothing: a miss, and the horizon shrinks.
        r.core.record_outcome(third, "success", 10.0, prompt_tokens=140, cached_tokens=0)
        stats = r.core.prefix_cache("chat")
        assert stats is not None
        row = stats["replicas"][first.replica_id]
        assert (row["reports"], row["hits"], row["misses"]) == (3, 1, 1)
        assert (row["prompt_tokens"], row["cached_tokens"]) == (360, 95)
        assert 0 < row["predicted_tokens"] < 260
        assert row["horizon"] == 0
        assert stats["entries"] > 0
        assert stats["allocated_bytes"] > 0
    with router("power_of_two") as r:
        assert r.core.prefix_cache("chat") is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("block_bytes", 4),
        ("load_slack", -1),
        ("load_factor", 0.5),
        ("max_entries", 1),
        ("session_ttl_s", -1),
        ("unknown_knob", 1),
    ],
)
def test_bad_prefix_settings_are_refused_by_path(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"prefix_cache\.{field}"):
        parse_router_config(
            {
                "models": [text_model("chat", URLS)],
                "replica_policy": "cache_aware",
                "prefix_cache": {field: value},
            }
        )


def test_a_bad_session_is_a_type_error_naming_it() -> None:
    with router("cache_aware") as r:
        with pytest.raises(TypeError, match="session"):
            r.route("hello", session=5)  # type: ignore[arg-type]
        # A prompt whose text cannot be encoded (a lone surrogate in a
        # system turn the profiler does not read) still routes.
        decision = r.route(
            [{"role": "system", "content": "\ud800"}, {"role": "user", "content": "x"}]
        )
        r.core.release(decision)


# --------------------------------------------------------------------------------------------
# Real llama.cpp replicas
# --------------------------------------------------------------------------------------------

SESSIONS = 6
TURNS = 6


async def _converse(url: str, salt: str, concurrency: int) -> tuple[int, int]:
    """Six conversations of six turns through the gateway, three at once;
    returns (prompt tokens, of them processed by the engines: not reused)."""
    totals = [0, 0]
    gate = asyncio.Semaphore(concurrency)

    async def session(http: aiohttp.ClientSession, s: int) -> None:
        # A system prompt of its own: llama.cpp gives a new prompt the idle
        # slot sharing most of it, so with one system prompt for all the
        # engine itself would take one conversation's slot for another's
        # first turn whatever the router did (the benchmark measures that
        # case; this test measures the router).
        system = f"[{salt}-{s}] " + SYSTEM[:60]
        messages: list[dict[str, str]] = [{"role": "system", "content": system}]
        for t in range(TURNS):
            question = f"session {s} turn {t}: read the next file."
            messages.append({"role": "user", "content": question})
            body = {"model": "chat", "messages": messages, "max_tokens": 4}
            async with gate, http.post(f"{url}/v1/chat/completions", json=body) as response:
                assert response.status == 200, await response.text()
                answer = await response.json()
            usage = answer["usage"]
            cached = usage["prompt_tokens_details"]["cached_tokens"]
            totals[0] += usage["prompt_tokens"]
            totals[1] += usage["prompt_tokens"] - cached
            messages.append(
                {"role": "assistant", "content": answer["choices"][0]["message"]["content"]}
            )

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(session(http, s) for s in range(SESSIONS)))
    return totals[0], totals[1]


def test_real_replicas_process_far_fewer_prompt_tokens_with_the_policy(
    tiny_models: TinyModels,
) -> None:
    replicas = start_replicas(
        [LlamaCppReplica(tiny_models.large, alias=f"r{i}", parallel=3) for i in range(3)]
    )
    try:
        urls = [replica.url for replica in replicas]
        processed: dict[str, tuple[int, int]] = {}
        index: dict[str, Any] = {}
        pages: dict[str, Any] = {}
        for policy in ("power_of_two", "cache_aware"):
            chat = text_model("chat", urls)
            for replica in chat["replicas"]:
                replica["max_concurrency"] = 3  # the replicas' slots
            config = parse_router_config(
                {
                    "models": [chat],
                    "replica_policy": policy,
                    "dispatch": {"health": {"enabled": False}},
                }
            )
            r = Router(config, tracker=PerformanceTracker(config.window_config(), persist=False))

            async def main(r: Router = r, policy: str = policy) -> None:
                running = await start(r, port=0)
                try:
                    # A fresh salt: nothing cached by the previous run helps.
                    salt = f"{policy}-{random.random()}"
                    processed[policy] = await _converse(running.url, salt, concurrency=3)
                    async with aiohttp.ClientSession() as http:
                        index[policy] = await metrics_of(running, http)
                        async with http.get(running.url + "/dashboard/data") as response:
                            assert response.status == 200
                            pages[policy] = await response.json()
                finally:
                    await running.stop()

            asyncio.run(main())
    finally:
        for replica in replicas:
            replica.stop()
    total, with_policy = processed["cache_aware"]
    _, without = processed["power_of_two"]
    assert total > 0
    # Each turn re-sends the whole conversation: with every turn on the
    # replica holding it, only the new turn is processed.
    assert with_policy < 0.5 * without, processed
    # Close to the floor: each conversation's first turn, then new turns.
    # The gateway counted what the engines reused, per replica, on /metrics.
    metrics = index["cache_aware"]
    cached = sum(
        v for (name, _), v in metrics.items() if name == "zeta_prefix_cache_cached_tokens_total"
    )
    prompt = sum(
        v for (name, _), v in metrics.items() if name == "zeta_prefix_cache_prompt_tokens_total"
    )
    assert prompt == total
    assert cached == total - with_policy
    assert not any(name.startswith("zeta_prefix_cache") for name, _ in index["power_of_two"])
    # The dashboard shows each replica's measured hit share beside the expected one.
    (chat,) = pages["cache_aware"]["models"]
    for row in chat["replicas"]:
        labels = (("model", "chat"), ("replica", row["id"]))
        reused = metrics["zeta_prefix_cache_cached_tokens_total", labels]
        sent = metrics["zeta_prefix_cache_prompt_tokens_total", labels]
        assert row["cache_hit_share"] == pytest.approx(reused / sent)
        assert 0 < row["cache_expected_share"] <= 1
    (plain,) = pages["power_of_two"]["models"]
    assert all(row["cache_hit_share"] is None for row in plain["replicas"])
