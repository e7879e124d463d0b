"""The router serving requests against real llama.cpp servers: chat,
completions, embeddings, streaming, error mapping, and every fault of the
backends issue (killed, down, hung, busy, slowed, resets, 429, 503)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.llamacpp_fixtures import EMBEDDING_DIM, StartReplicas, TinyModels
from tests.waiting import wait_until, wait_until_async
from zeta_fast import AdaptiveScorer, PerformanceTracker, Router
from zeta_fast.backends import BackendStatusError, BackendUnavailable, ContextLengthExceeded
from zeta_fast.config import parse_router_config
from zeta_fast.local import LlamaCppReplica
from zeta_fast.local.fault_proxy import FaultProxy

HELLO = [{"role": "user", "content": "Say hello to the team."}]
#: Errors of the last `_load`, shown when an assertion on it fails.
LAST_ERRORS: Counter[str] = Counter()


def model(name: str, urls: list[str], capability: float = 90.0, **extra: Any) -> dict[str, Any]:
    return {
        "id": name,
        "capabilities": {task: capability for task in ("chat", "code", "reasoning", "knowledge")},
        "replicas": [{"id": f"{name}-{i}", "url": url} for i, url in enumerate(urls)],
        **extra,
    }


def make_router(models: list[dict[str, Any]], **top: Any) -> Router:
    dispatch = top.pop("dispatch", {})
    dispatch.setdefault("health", {"enabled": False})
    config = parse_router_config(
        {"replica_policy": "power_of_two", "models": models, "dispatch": dispatch, **top}
    )
    return Router(config, tracker=PerformanceTracker(config.window_config(), persist=False))


@pytest.fixture
def proxies() -> Iterator[list[FaultProxy]]:
    started: list[FaultProxy] = []
    yield started
    for proxy in started:
        proxy.stop()


def proxy_for(replica: LlamaCppReplica, proxies: list[FaultProxy]) -> FaultProxy:
    proxy = FaultProxy("127.0.0.1", replica.port).start()
    proxies.append(proxy)
    return proxy


def test_chat_complete_embed_and_stream_record_their_outcomes(
    llamacpp_replicas: StartReplicas,
) -> None:
    chat_a, chat_b, embedder = llamacpp_replicas(
        [("chat-a", "small", 2), ("chat-b", "small", 2), ("emb", "embedding", 2)]
    )
    router = make_router(
        [
            model("coder", [chat_a.url, chat_b.url]),
            {
                "id": "embedder",
                "capabilities": {"embedding": 95},
                "replicas": [{"id": "embedder-0", "url": embedder.url}],
            },
        ]
    )

    async def main() -> None:
        async with router:
            answer = await router.chat(HELLO, max_tokens=8)
            assert answer.decision.model_id == "coder"
            assert answer.finish_reason == "length"
            assert len(answer.text) == 8
            assert answer.json()["usage"]["completion_tokens"] == 8
            completion = await router.complete("def add(a, b):", max_tokens=5)
            assert completion.json()["choices"][0]["text"]
            vectors = await router.embed(["hello", "world"])
            assert vectors.decision.model_id == "embedder"
            assert [len(d["embedding"]) for d in vectors.json()["data"]] == [EMBEDDING_DIM] * 2
            stream = router.chat_stream(HELLO, max_tokens=16)
            events = [event async for event in stream]
            assert events[-1].endswith(b"data: [DONE]\n\n")
            assert stream.ttft_ms is not None
            assert stream.attempts[-1].kind == "success"

    asyncio.run(main())
    rows = router._core.replica_status("coder")
    assert sum(r.outcomes["success"] for r in rows) == 3
    assert sum(r.completion_tokens for r in rows) == 8 + 5 + 16
    assert all(r.in_flight == 0 for r in rows)
    assert router.tracker.stats("coder").requests == 3
    assert router.tracker.stats("embedder").requests == 1


def test_sync_wrappers_and_stream_text(llamacpp_replicas: StartReplicas) -> None:
    (replica,) = llamacpp_replicas([("only", "small", 2)])
    with make_router([model("coder", [replica.url])]) as router:
        answer = router.chat_sync(HELLO, max_tokens=4, stop=["a"])
        assert answer.finish_reason in ("stop", "length")
        assert router.complete_sync("x", max_tokens=3).json()["usage"]["completion_tokens"] == 3

        async def streamed() -> str:
            return await router.chat_stream(HELLO, max_tokens=12).text()

        assert len(asyncio.run(streamed())) == 12


def test_a_client_error_is_mapped_and_not_retried(llamacpp_replicas: StartReplicas) -> None:
    (replica,) = llamacpp_replicas([("only", "small", 2)])
    router = make_router([model("coder", [replica.url])])
    with pytest.raises(BackendStatusError) as caught:
        router.chat_sync([{"role": "user", "content": "hi"}], max_tokens=-5, n_probs="x")
    assert caught.value.status == 400
    assert caught.value.message
    assert caught.value.attempts == [("coder", "coder-0", "client_error")]
    assert router._core.replica_status("coder")[0].breaker == "closed"
    router.close()


def test_a_prompt_too_long_falls_back_to_a_longer_context(
    tiny_models: TinyModels, llamacpp_replicas: StartReplicas
) -> None:
    short = LlamaCppReplica(tiny_models.small, alias="short", ctx=128, parallel=1).start()
    try:
        (long,) = llamacpp_replicas([("long", "small", 1)])
        router = make_router(
            [
                model("short-ctx", [short.url], 95.0, context_window=128),
                model("long-ctx", [long.url], 60.0, context_window=2048),
            ]
        )
        prompt = [{"role": "user", "content": "tell me more " * 60}]
        answer = router.chat_sync(prompt, max_tokens=4)
        assert answer.decision.model_id == "long-ctx"
        assert [a.kind for a in answer.attempts] == ["context_length", "success"]
        # Nothing to fall back to: the server's error comes out as itself.
        only_short = make_router([model("short-ctx", [short.url], context_window=128)])
        with pytest.raises(ContextLengthExceeded, match="exceed"):
            only_short.chat_sync(prompt, max_tokens=4)
        router.close()
        only_short.close()
    finally:
        short.stop()


async def _load(
    router: Router, total: int, concurrency: int, *, max_tokens: int = 8, on: Any = None
) -> tuple[int, list[str]]:
    """Sends ``total`` chats ``concurrency`` at a time; returns (successes,
    replicas used). ``on(i)`` runs before request i."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(total):
        queue.put_nowait(i)
    ok = 0
    used: list[str] = []
    errors: Counter[str] = Counter()

    async def worker() -> None:
        nonlocal ok
        while not queue.empty():
            i = queue.get_nowait()
            if on is not None:
                on(i)
            try:
                answer = await router.chat(HELLO, max_tokens=max_tokens)
            except Exception as exc:
                errors[f"{type(exc).__name__}: {exc} {getattr(exc, 'attempts', '')}"] += 1
                continue
            ok += 1
            used.append(answer.decision.replica_id)

    # Nothing may hang: the whole load has a hard bound.
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), 120)
    LAST_ERRORS.clear()
    LAST_ERRORS.update(errors)
    return ok, used


def test_a_replica_killed_mid_load_costs_almost_nothing(
    llamacpp_replicas: StartReplicas,
) -> None:
    a, b, c = llamacpp_replicas([("a", "small", 4), ("b", "small", 4), ("c", "small", 4)])
    router = make_router(
        [model("coder", [a.url, b.url, c.url])],
        dispatch={"timeouts": {"first_byte_s": 5, "total_s": 10}, "health": {"enabled": False}},
    )

    def fault(i: int) -> None:
        if i == 500:
            b.kill()

    async def main() -> tuple[int, list[str]]:
        async with router:
            return await _load(router, 2000, 16, max_tokens=4, on=fault)

    ok, used = asyncio.run(main())
    assert ok / 2000 >= 0.999, ok
    after = Counter(used[600:])
    assert after["coder-1"] == 0, "the dead replica's breaker keeps traffic off it"
    rows = {r.replica_id: r for r in router._core.replica_status("coder")}
    assert rows["coder-1"].breaker == "open"
    assert all(r.in_flight == 0 for r in rows.values())


def test_a_replica_down_from_the_start(llamacpp_replicas: StartReplicas) -> None:
    (alive,) = llamacpp_replicas([("alive", "small", 4)])
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    router = make_router([model("coder", [dead, alive.url])])

    async def main() -> tuple[int, list[str]]:
        async with router:
            return await _load(router, 200, 4)

    ok, used = asyncio.run(main())
    assert ok == 200
    assert set(used) == {"coder-1"}
    status = {r.replica_id: r for r in router._core.replica_status("coder")}
    assert status["coder-0"].breaker == "open"
    # Breaker threshold 5: no more than a few connect failures before it opened.
    assert status["coder-0"].outcomes["connect"] <= 5 + 4


def test_health_checks_mark_a_dead_replica_down_and_up_again(
    llamacpp_replicas: StartReplicas,
) -> None:
    a, b = llamacpp_replicas([("a", "small", 2), ("b", "small", 2)])
    router = make_router(
        [model("coder", [a.url, b.url])],
        dispatch={"health": {"interval_s": 0.05, "timeout_s": 0.5, "unhealthy_after": 2}},
    )
    monitor = router.start_health()
    try:
        b.kill()
        wait_until(lambda: not monitor.replicas["coder", "coder-1"].healthy)
        picks = {router.route(HELLO[0]["content"]).replica_id for _ in range(20)}
        assert picks == {"coder-0"}
        b.restart()
        wait_until(lambda: monitor.replicas["coder", "coder-1"].healthy)
    finally:
        router.close()


def test_a_hung_replica_times_out_and_recovers(llamacpp_replicas: StartReplicas) -> None:
    a, b = llamacpp_replicas([("a", "small", 4), ("b", "small", 4)])
    router = make_router(
        [model("coder", [a.url, b.url])],
        dispatch={
            "timeouts": {"connect_s": 0.5, "first_byte_s": 0.3, "total_s": 2},
            "breaker": {"failure_threshold": 2, "cooldown_s": 0.5},
            "health": {"enabled": False},
        },
    )

    def hung() -> Any:
        return router.core.replica_status("coder")[0]

    async def main() -> tuple[int, list[str]]:
        async with router:
            a.pause()
            try:
                ok_while_hung, _ = await _load(router, 100, 4)
            finally:
                a.resume()
            # Past the cool-down: the breaker lets a probe go.
            await wait_until_async(lambda: hung().breaker_admits_in_ms == 0)
            ok_after, used_after = await _load(router, 100, 4)
            return ok_while_hung + ok_after, used_after

    ok, used_after = asyncio.run(main())
    # Every request was answered, though the paused replica never answered:
    # its first-byte timeout fired and the request was retried elsewhere.
    assert ok == 200
    assert hung().outcomes["timeout"] >= 1
    assert "coder-0" in used_after, "the resumed replica serves again"


def test_a_busy_replica_is_seen_through_its_own_metrics(
    llamacpp_replicas: StartReplicas,
) -> None:
    busy, free = llamacpp_replicas([("busy", "small", 1), ("free", "small", 4)])
    router = make_router(
        [model("coder", [busy.url, free.url])],
        replica_policy="least_loaded",
        dispatch={"health": {"interval_s": 0.1, "scrape_interval_s": 0.05, "load_ttl_s": 1}},
    )

    async def flood() -> None:
        # Other clients, not the router, fill the one slot and queue behind it.
        import aiohttp

        async with aiohttp.ClientSession() as session:
            body = {"messages": HELLO, "max_tokens": 1500}
            await asyncio.gather(
                *(session.post(busy.url + "/v1/chat/completions", json=body) for _ in range(6))
            )

    async def main() -> dict[str, Any]:
        task = asyncio.ensure_future(flood())
        monitor = router.start_health()
        await wait_until_async(lambda: router._core.replica_status("coder")[0].engine_waiting > 0)
        status = router._core.replica_status("coder")[0]
        picks = set()
        for _ in range(5):
            decision = router.route("hello there")
            picks.add(decision.replica_id)
            router.record(decision, True, 1.0)
        task.cancel()
        monitor.stop()
        return {"status": status, "picks": picks, "scrapes": monitor.scrapes}

    seen = asyncio.run(main())
    assert seen["status"].engine_waiting > 0, seen
    assert seen["picks"] == {"coder-1"}
    router.close()


def test_resets_429_and_503_are_retried_elsewhere(
    llamacpp_replicas: StartReplicas, proxies: list[FaultProxy]
) -> None:
    a, b = llamacpp_replicas([("a", "small", 4), ("b", "small", 4)])
    flaky = proxy_for(a, proxies)
    router = make_router(
        [model("coder", [flaky.url, b.url])],
        # Half of the flaky replica's half of the traffic fails: 25 % retries,
        # above the default budget's 20 %, so the budget is raised here.
        # Replica choice by recent record is off: this is about retries under
        # a fault that keeps its traffic (see the next test for the choice).
        dispatch={
            "breaker": {"failure_threshold": 1000},
            "retry_budget": {"ratio": 0.5},
            "health": {"enabled": False},
            "replicas": {"enabled": False},
        },
    )

    async def main() -> list[tuple[int, int]]:
        results = []
        async with router:
            flaky.set_fault(reset=True, probability=0.5, seed=1)
            results.append(((await _load(router, 300, 4))[0], 300))
            assert not LAST_ERRORS, LAST_ERRORS.most_common(3)
            flaky.set_fault(status=503, probability=0.5, seed=2)
            results.append(((await _load(router, 300, 4))[0], 300))
            assert not LAST_ERRORS, LAST_ERRORS.most_common(3)
            flaky.set_fault(status=429, retry_after=60, count=1)
            used = (await _load(router, 50, 2))[1]
            results.append((len(used), 50))
            assert flaky.fault is None  # the one 429 was answered
            # Its Retry-After holds the replica, and holds it still: the whole
            # load ran inside the pause, and nothing went to the replica.
            assert router.core.replica_status("coder")[0].breaker_admits_in_ms > 0
            assert Counter(used)["coder-0"] == 0
        return results

    results = asyncio.run(main())
    for ok, total in results:
        assert ok == total
    # The faults were met often (each with probability 0.5 on the flaky
    # replica's share of 300 requests: ~75-100 each, the share depending on
    # timing), and every one was retried elsewhere (ok == total above).
    counts = flaky.faults_injected
    assert counts["reset"] > 50
    assert counts["status"] > 50


def test_traffic_leaves_a_slowed_model_when_the_scorer_says_and_comes_back(
    llamacpp_replicas: StartReplicas, proxies: list[FaultProxy]
) -> None:
    fast, other = llamacpp_replicas([("fast", "small", 2), ("other", "small", 2)])
    slowable = proxy_for(fast, proxies)
    scoring = {"max_acceptable_latency_ms": 50, "min_requests_for_performance": 10}
    router = make_router(
        [model("best", [slowable.url], 100.0), model("second", [other.url], 80.0)],
        scoring=scoring,
        window={"bucket_ms": 400, "buckets": 8},
    )
    config = router.config.adaptive_config()
    scorer = AdaptiveScorer(config)

    def predicted() -> str:
        """The model the scorer's rules choose from what was recorded."""
        scores = {}
        for name, capability in (("best", 100.0), ("second", 80.0)):
            stats = router.tracker.stats(name, task="chat")
            scores[name] = scorer.score(
                capability,
                stats.success_rate or 0.0,
                stats.mean_latency_ms or 0.0,
                requests=stats.requests,
            ).performance_score
        return max(scores, key=scores.__getitem__)

    async def main() -> tuple[int, int]:
        async with router:
            for _ in range(12):
                assert (await router.chat(HELLO, max_tokens=2)).decision.model_id == "best"
            slowable.set_fault(delay_ms=150)
            moved_after = 0
            for n in range(1, 30):
                expected = predicted()
                answer = await router.chat(HELLO, max_tokens=2)
                assert answer.decision.model_id == expected, n
                if expected == "second":
                    moved_after = n
                    break
            slowable.clear()
            # The slow outcomes age out of the 3.2 s window; then capability rules again.
            await wait_until_async(lambda: predicted() == "best", interval_s=0.1)
            back = (await router.chat(HELLO, max_tokens=2)).decision.model_id
            return moved_after, 1 if back == "best" else 0

    moved_after, came_back = asyncio.run(main())
    # 12 fast (~5 ms) + n slowed (~155 ms): the mean passes 50 ms at n = 5 or 6
    # (the exact step is the scorer's, checked above at every request).
    assert 4 <= moved_after <= 8, moved_after
    assert came_back == 1


def test_hedging_answers_from_the_fast_replica(
    llamacpp_replicas: StartReplicas, proxies: list[FaultProxy]
) -> None:
    a, b = llamacpp_replicas([("a", "small", 4), ("b", "small", 4)])
    slow = proxy_for(a, proxies)
    router = make_router(
        [model("coder", [slow.url, b.url])],
        replica_policy="least_loaded",
        dispatch={"hedge": {"enabled": True, "max_extra": 0.5, "min_delay_ms": 20}},
    )

    async def main() -> list[Any]:
        async with router:
            for _ in range(20):  # a latency history for the p95
                await router.chat(HELLO, max_tokens=2)
            slow.set_fault(delay_ms=1000)
            answers = []
            for _ in range(6):
                answers.append(await router.chat(HELLO, max_tokens=2))
            return answers

    answers = asyncio.run(main())
    hedged = [a for a in answers if any(x.hedge for x in a.attempts)]
    assert hedged, [a.attempts for a in answers]
    for answer in hedged:
        # The fast replica's hedge answered; the slowed attempt was cancelled.
        assert answer.decision.replica_id == "coder-1"
        assert {(x.replica_id, x.kind, x.hedge) for x in answer.attempts} == {
            ("coder-0", "cancelled", False),
            ("coder-1", "success", True),
        }
    assert all(r.in_flight == 0 for r in router._core.replica_status("coder"))


def test_a_cascade_escalates_on_a_cut_answer_or_a_failed_check(
    llamacpp_replicas: StartReplicas,
) -> None:
    small, large = llamacpp_replicas([("small", "small", 2), ("large", "large", 2)])
    router = make_router([model("small", [small.url], 70.0), model("large", [large.url], 95.0)])
    # The tiny models always run to max_tokens: a length cut escalates.
    answer = router._run(lambda: router.cascade(HELLO, ["small", "large"], max_tokens=4))
    assert answer.decision.model_id == "large"
    assert answer.escalations == [("small", "length")]
    # A grammar makes each model answer exactly "hi" and stop: a whole,
    # non-empty answer, so only the validator decides whether to escalate.
    whole = {"max_tokens": 4, "grammar": 'root ::= "hi"'}
    checked: list[str] = []

    def accept_anything(answer: Any) -> bool:
        checked.append(answer.decision.model_id)
        return True

    kept = router._run(
        lambda: router.cascade(HELLO, ["small", "large"], validator=accept_anything, **whole)
    )
    assert (kept.decision.model_id, kept.text, kept.escalations) == ("small", "hi", [])
    assert checked == ["small"]
    # A validator that rejects everything escalates; the last model's answer is returned.
    rejected = router._run(
        lambda: router.cascade(HELLO, ["small", "large"], validator=lambda r: False, **whole)
    )
    assert (rejected.decision.model_id, rejected.text) == ("large", "hi")
    assert rejected.escalations == [("small", "validator")]
    # The validator's word is a verdict on each answer it saw, by source.
    verdicts = {(s, m): (g, b) for s, m, g, b in router.core.verdict_counts() if s == "validator"}
    assert verdicts == {("validator", "small"): (1, 1), ("validator", "large"): (0, 1)}
    router.close()


def test_unreachable_everything_raises_the_last_error_with_attempts() -> None:
    router = make_router(
        [model("coder", ["http://127.0.0.1:9", "http://127.0.0.1:7"])],
        dispatch={"max_attempts": 3, "health": {"enabled": False}},
    )
    with pytest.raises(BackendUnavailable) as caught:
        router.chat_sync(HELLO, max_tokens=2)
    assert [a[2] for a in caught.value.attempts] == ["connect", "connect"]
    router.close()
