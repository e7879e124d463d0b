"""A request's fault is not the replica's: requests a backend refuses because
of what they ask never open a breaker, mark a replica down, or get retried
on a sibling, whatever client sends them and however many (real llama.cpp
replicas behind fault proxies, real HTTP through the gateway)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
import orjson
import pytest

from tests.llamacpp_fixtures import StartReplicas
from tests.test_gateway import (
    HELLO,
    RunningGateway,
    gateway_router,
    metrics_of,
    serve,
    text_model,
    total,
)
from zeta_fast import PerformanceTracker, Router
from zeta_fast.config import parse_router_config
from zeta_fast.local.fault_proxy import FaultProxy

IMAGE = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    }
]
AUDIO = [
    {
        "role": "user",
        "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}],
    }
]


def _deep_body(depth: int) -> bytes:
    # orjson reads 1,024 levels but writes only 254: written by hand.
    head = b'{"max_tokens": 2, "messages": ' + orjson.dumps(HELLO) + b', "metadata": '
    return head + b"[" * depth + b'"deep"' + b"]" * depth + b"}"


def _breakers_and_health(router: Router) -> list[tuple[str, str, str | None, bool, bool]]:
    return [
        (model.id, s.replica_id, s.breaker, s.healthy, s.degraded)
        for model in router.config.models
        for s in router.core.replica_status(model.id)
    ]


def test_a_flood_of_requests_replicas_refuse_hurts_no_other_client(
    llamacpp_replicas: StartReplicas,
) -> None:
    """Bursts of requests llama.cpp refuses (images and audio to text-only
    models, embeddings to a chat model by name, a message without a role, a
    body too deep to forward) interleaved with normal chat: every normal
    request is answered, every bad one gets a 4xx in OpenAI's shape, no
    breaker opens and no replica is marked or passed over."""
    a, b, c, d = llamacpp_replicas(
        [("a", "small", 2), ("b", "small", 2), ("c", "small", 2), ("d", "small", 2)]
    )
    router = gateway_router(
        [text_model("chat-a", [a.url, b.url]), text_model("chat-b", [c.url, d.url])],
        # A breaker that opens after 3 faults in a row: what the flood would do.
        dispatch={"breaker": {"failure_threshold": 3, "cooldown_s": 60}},
    )
    bad_bodies: list[tuple[str, bytes]] = [
        ("image", orjson.dumps({"messages": IMAGE, "max_tokens": 2})),
        ("audio", orjson.dumps({"messages": AUDIO, "max_tokens": 2})),
        ("named-image", orjson.dumps({"model": "chat-b", "messages": IMAGE, "max_tokens": 2})),
        ("no-role", orjson.dumps({"messages": [{"content": "hi"}], "max_tokens": 2})),
        ("deep", _deep_body(300)),
    ]
    embeddings_to_chat = orjson.dumps({"model": "chat-a", "input": "hello"})

    async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
        url = running.url + "/v1/chat/completions"
        good: Counter[int] = Counter()
        bad: Counter[tuple[str, int]] = Counter()

        async def normal() -> None:
            async with session.post(url, json={"messages": HELLO, "max_tokens": 2}) as response:
                good[response.status] += 1
                await response.read()

        async def refused(name: str, data: bytes, target: str = url) -> None:
            async with session.post(
                target, data=data, headers={"Content-Type": "application/json"}
            ) as response:
                document = await response.json()
                assert set(document) == {"error"}, document
                assert document["error"]["message"]
                bad[name, response.status] += 1

        for _ in range(8):
            await asyncio.gather(
                *(refused(name, data) for name, data in bad_bodies for _ in range(3)),
                refused("embeddings-to-chat", embeddings_to_chat, running.url + "/v1/embeddings"),
                *(normal() for _ in range(4)),
            )
        assert good == {200: 32}
        for name, _ in [*bad_bodies, ("embeddings-to-chat", b"")]:
            statuses = {status for (n, status) in bad if n == name}
            assert statuses == {400}, (name, bad)
        samples = await metrics_of(running, session)
        for kind in ("server_error", "connect", "timeout", "other", "stream_cut"):
            assert total(samples, "zeta_backend_requests_total", outcome=kind) == 0, kind
        # The refusals were learned: images and audio go nowhere now, without
        # a backend attempt; the chat model is skipped for embeddings.
        assert {"images", "audio"} <= set(router.core.unserved("chat-a"))
        assert {"images", "audio"} <= set(router.core.unserved("chat-b"))
        assert "embeddings" in router.core.unserved("chat-a")
        unsupported = total(samples, "zeta_backend_requests_total", outcome="unsupported")
        # Only the first burst's (concurrent) requests reached a replica.
        assert 0 < unsupported <= 16
        for _ in range(5):
            await refused("image", bad_bodies[0][1])
        samples = await metrics_of(running, session)
        after = total(samples, "zeta_backend_requests_total", outcome="unsupported")
        assert after == unsupported

    serve(router, body)
    assert all(
        breaker == "closed" and healthy and not degraded
        for _, _, breaker, healthy, degraded in _breakers_and_health(router)
    ), _breakers_and_health(router)


def test_a_model_that_serves_images_gets_them_and_the_others_keep_their_share(
    llamacpp_replicas: StartReplicas,
) -> None:
    """A model declared unable to serve images is never tried with them;
    one that cannot but is not declared is learned from its refusal; text
    traffic keeps going to both."""
    a, b = llamacpp_replicas([("a", "small", 2), ("b", "small", 2)])
    router = gateway_router(
        [
            text_model("declared", [a.url], unsupported=["images", "audio"]),
            text_model("learned", [b.url]),
        ]
    )
    assert router.core.unserved("declared") == ["images", "audio"]

    async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
        url = running.url + "/v1/chat/completions"
        async with session.post(url, json={"messages": IMAGE, "max_tokens": 2}) as response:
            assert response.status == 400
            error = (await response.json())["error"]
        assert error["code"] == "unsupported_request"
        assert "images" in error["message"]
        # Learned from "learned"'s refusal: now refused before any attempt.
        assert "images" in router.core.unserved("learned")
        async with session.post(url, json={"messages": IMAGE, "max_tokens": 2}) as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "unsupported_request"
        samples = await metrics_of(running, session)
        assert total(samples, "zeta_backend_requests_total", model="declared") == 0
        assert total(samples, "zeta_backend_requests_total", outcome="unsupported") == 1
        served: Counter[str] = Counter()

        async def chat() -> None:
            async with session.post(url, json={"messages": HELLO, "max_tokens": 8}) as response:
                assert response.status == 200
                served[response.headers["x-zeta-model"]] += 1

        # Concurrent, so the near-equal models share the load.
        await asyncio.gather(*(chat() for _ in range(12)))
        assert set(served) == {"declared", "learned"}, served

    serve(router, body)


def _proxied_router(
    proxies: list[FaultProxy], second: list[str] | None = None, **model: Any
) -> Router:
    models = [text_model("m", [p.url for p in proxies], **model)]
    if second is not None:
        models.append(text_model("other", second))
    return gateway_router(models, dispatch={"breaker": {"failure_threshold": 3, "cooldown_s": 60}})


def test_a_500_that_names_no_cause_is_the_requests_when_two_good_replicas_agree(
    llamacpp_replicas: StartReplicas,
) -> None:
    """A 500 whose message says nothing known is held back until another
    replica answers: the same 500 from two replicas that serve other
    requests well means the request is the cause (a 400 naming the backend's
    reason, nobody blamed); a 500 that a sibling does not repeat blames the
    replica that gave it."""
    a, b = llamacpp_replicas([("a", "small", 2), ("b", "small", 2)])
    with FaultProxy("127.0.0.1", a.port) as pa, FaultProxy("127.0.0.1", b.port) as pb:
        router = _proxied_router([pa, pb])

        async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
            url = running.url + "/v1/chat/completions"
            for _ in range(6):  # both replicas earn a good record
                async with session.post(url, json={"messages": HELLO, "max_tokens": 2}) as r:
                    assert r.status == 200
            for proxy in (pa, pb):
                proxy.set_fault(status=500, message="vocab lookup failed for token 0x1f")
            for _ in range(6):
                for proxy in (pa, pb):
                    proxy.set_fault(status=500, message="vocab lookup failed for token 0x1f")
                async with session.post(url, json={"messages": HELLO, "max_tokens": 2}) as r:
                    assert r.status == 400
                    error = (await r.json())["error"]
                assert error["code"] == "rejected_by_backend"
                assert "vocab lookup failed" in error["message"]
                assert "127.0.0.1" not in error["message"]
            samples = await metrics_of(running, session)
            assert total(samples, "zeta_backend_requests_total", outcome="server_error") == 0
            assert total(samples, "zeta_backend_requests_total", outcome="client_error") == 12

            # Only one replica fails: it is blamed, the sibling answers.
            pa.set_fault(status=500, message="CUDA error: an illegal memory access")
            pb.clear()
            statuses = Counter()
            for _ in range(6):
                async with session.post(url, json={"messages": HELLO, "max_tokens": 2}) as r:
                    statuses[r.status] += 1
                    if r.status == 200:
                        assert r.headers["x-zeta-replica"] == "m-1"
            assert statuses == {200: 6}
            samples = await metrics_of(running, session)
            blamed = total(
                samples, "zeta_backend_requests_total", replica="m-0", outcome="server_error"
            )
            assert blamed >= 1
            assert (
                total(samples, "zeta_backend_requests_total", replica="m-1", outcome="server_error")
                == 0
            )

        serve(router, body)


def test_a_model_broken_everywhere_is_blamed_not_excused(
    llamacpp_replicas: StartReplicas,
) -> None:
    """Every replica answering every request with the same 500 is a broken
    model, not a poisoned request: the replicas have no good record, so the
    failures count and the breakers open."""
    a, b = llamacpp_replicas([("a", "small", 2), ("b", "small", 2)])
    with FaultProxy("127.0.0.1", a.port) as pa, FaultProxy("127.0.0.1", b.port) as pb:
        router = _proxied_router([pa, pb])
        for proxy in (pa, pb):
            proxy.set_fault(status=500, message="model failed to load")

        async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
            url = running.url + "/v1/chat/completions"
            statuses = Counter()
            for _ in range(6):
                async with session.post(url, json={"messages": HELLO, "max_tokens": 2}) as r:
                    statuses[r.status] += 1
            assert set(statuses) <= {502, 503}, statuses
            samples = await metrics_of(running, session)
            assert total(samples, "zeta_backend_requests_total", outcome="server_error") >= 6

        serve(router, body)
        assert [s.breaker for s in router.core.replica_status("m")] == ["open", "open"]


def test_a_named_model_is_served_by_its_replicas_and_fallbacks_only(
    llamacpp_replicas: StartReplicas,
) -> None:
    """With its replicas down, a named model is never answered by another
    model: a 502/503 (with Retry-After for the 503), or its configured
    fallback, which x-zeta-model names."""
    a, b, c = llamacpp_replicas([("a", "small", 2), ("b", "small", 2), ("c", "small", 2)])
    with FaultProxy("127.0.0.1", a.port) as pa, FaultProxy("127.0.0.1", b.port) as pb:
        router = _proxied_router([pa, pb], second=[c.url])
        pa.set_fault(reset=True)
        pb.set_fault(reset=True)

        async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
            url = running.url + "/v1/chat/completions"
            seen = Counter()
            for _ in range(10):
                async with session.post(
                    url, json={"model": "m", "messages": HELLO, "max_tokens": 2}
                ) as r:
                    seen[r.status] += 1
                    assert r.headers.get("x-zeta-model") in (None, "m")
                    if r.status == 503:
                        assert int(r.headers["Retry-After"]) >= 1
                        assert (await r.json())["error"]["code"] == "no_replica"
                    else:
                        assert r.status == 502, r.status
                        message = (await r.json())["error"]["message"]
                        assert "could not be reached" in message
            assert seen[503] >= 1, seen  # the breakers opened: refused at once
            samples = await metrics_of(running, session)
            assert total(samples, "zeta_backend_requests_total", model="other") == 0

        serve(router, body)

    with FaultProxy("127.0.0.1", a.port) as pa, FaultProxy("127.0.0.1", b.port) as pb:
        router = _proxied_router([pa, pb], second=[c.url], fallbacks=["other"])
        pa.set_fault(reset=True)
        pb.set_fault(reset=True)

        async def with_fallback(running: RunningGateway, session: aiohttp.ClientSession) -> None:
            url = running.url + "/v1/chat/completions"
            for _ in range(5):
                async with session.post(
                    url, json={"model": "m", "messages": HELLO, "max_tokens": 2}
                ) as r:
                    assert r.status == 200
                    assert r.headers["x-zeta-model"] == "other"
                    assert (await r.json())["model"] == "other"

        serve(router, with_fallback)


def test_the_503_says_when_a_breaker_admits_again(llamacpp_replicas: StartReplicas) -> None:
    """Every replica's breaker open: 503 at once with a Retry-After from
    the breakers' cool-down, documented in OpenAI's error shape."""
    (a,) = llamacpp_replicas([("a", "small", 2)])
    with FaultProxy("127.0.0.1", a.port) as pa:
        router = gateway_router(
            [text_model("m", [pa.url])],
            dispatch={"breaker": {"failure_threshold": 2, "cooldown_s": 30}},
        )
        pa.set_fault(reset=True)

        async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
            url = running.url + "/v1/chat/completions"
            for _ in range(2):
                async with session.post(url, json={"messages": HELLO, "max_tokens": 2}) as r:
                    assert r.status == 502
            async with session.post(url, json={"messages": HELLO, "max_tokens": 2}) as r:
                assert r.status == 503
                assert 25 <= int(r.headers["Retry-After"]) <= 30
                error = (await r.json())["error"]
            assert error["type"] == "overloaded_error"
            assert error["code"] == "no_replica"

        serve(router, body)


def test_a_replica_that_drops_fresh_connections_loses_its_share(
    llamacpp_replicas: StartReplicas,
) -> None:
    """A replica closing 30 % of its connections without a reply used to
    keep its fair share (the client's silent resend absorbed it): now each
    drop counts against it, the retry goes to a sibling, and the replica's
    record has it passed over."""
    a, b, c = llamacpp_replicas([("a", "small", 4), ("b", "small", 4), ("c", "small", 4)])
    with (
        FaultProxy("127.0.0.1", a.port) as pa,
        FaultProxy("127.0.0.1", b.port) as pb,
        FaultProxy("127.0.0.1", c.port) as pc,
    ):
        router = gateway_router([text_model("m", [pa.url, pb.url, pc.url])])
        pa.set_fault(empty=True, probability=0.3, seed=7)

        async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
            url = running.url + "/v1/chat/completions"
            served = Counter()
            for _ in range(150):
                async with session.post(url, json={"messages": HELLO, "max_tokens": 1}) as r:
                    assert r.status == 200
                    served[r.headers["x-zeta-replica"]] += 1
            samples = await metrics_of(running, session)
            dropped = total(
                samples, "zeta_backend_requests_total", replica="m-0", outcome="connect"
            )
            assert dropped >= 3
            # The healthy two take the bulk: the dropping one well under a third.
            assert served["m-0"] < 150 * 0.2, served

        serve(router, body)


def test_assign_is_all_or_nothing(llamacpp_replicas: StartReplicas) -> None:
    """One bad request in a batch: the error is raised and the slots the
    others took are free again."""
    config = parse_router_config(
        {
            "models": [text_model("m", ["http://127.0.0.1:9", "http://127.0.0.1:10"])],
            "dispatch": {"health": {"enabled": False}},
        }
    )
    router = Router(config, tracker=PerformanceTracker(config.window_config(), persist=False))
    batch = ["hello", "def f(): pass", 42, "more"]
    with pytest.raises(TypeError):
        router.assign(batch)
    assert router.in_flight("m") == [0, 0]
    decisions = router.assign(["hello", "world"])
    assert sum(router.in_flight("m")) == 2
    for decision in decisions:
        assert decision is not None
        router.record(decision, success=True, latency_ms=5.0)
    assert router.in_flight("m") == [0, 0]
