"""The routes agents use (OpenAI's Responses API, Anthropic's Messages API)
and every error status the gateway answers, over real HTTP against real
llama.cpp replicas (and small servers of the test's own where a behaviour
llama.cpp lacks is needed: stored responses, a missing route)."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.llamacpp_fixtures import StartReplicas
from tests.test_gateway import (
    HELLO,
    KEY_A,
    RunningGateway,
    gateway_router,
    metrics_of,
    serve,
    text_model,
    total,
    value,
)
from zeta_fast.gateway import hash_key
from zeta_fast.local.fault_proxy import FaultProxy


def _events(raw: bytes) -> list[tuple[str | None, dict[str, Any] | str]]:
    """(event name, data) of each server-sent event."""
    out: list[tuple[str | None, dict[str, Any] | str]] = []
    for block in raw.split(b"\n\n"):
        if not block.strip():
            continue
        name = None
        data = b""
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data += line[5:].strip()
        out.append((name, data.decode() if data == b"[DONE]" else orjson.loads(data)))
    return out


def test_responses_and_messages_are_routed_streamed_and_named_by_the_router(
    llamacpp_replicas: StartReplicas,
) -> None:
    a, b = llamacpp_replicas([("a", "small", 2), ("b", "small", 2)])
    router = gateway_router(
        [text_model("fast", [a.url]), text_model("other", [b.url])],
        gateway={"api_keys": [{"name": "team", "sha256": hash_key(KEY_A)}]},
    )
    bearer = {"Authorization": f"Bearer {KEY_A}"}

    async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
        url = running.url
        # Responses, plain: profiled as a conversation, not as embeddings input.
        async with session.post(
            url + "/v1/responses",
            json={"model": "auto", "input": "Say hello.", "max_output_tokens": 4},
            headers=bearer,
        ) as r:
            assert r.status == 200
            answer = await r.json()
            model = r.headers["x-zeta-model"]
        assert answer["object"] == "response"
        assert answer["model"] == model  # the router's id, not llama.cpp's alias
        assert answer["usage"]["output_tokens"] == 4
        # Responses, streamed: relayed to its final event and recorded with its usage.
        async with session.post(
            url + "/v1/responses",
            json={"model": "fast", "input": "Count.", "max_output_tokens": 3, "stream": True},
            headers=bearer,
        ) as r:
            assert r.status == 200
            events = _events(await r.read())
        names = [name for name, _ in events]
        assert names[0] == "response.created"
        assert names[-1] == "response.completed"
        final = events[-1][1]
        assert isinstance(final, dict)
        assert final["response"]["model"] == "fast"
        assert final["response"]["usage"]["output_tokens"] == 3

        # Messages with Anthropic's x-api-key, plain, streamed, count_tokens.
        anthropic = {"x-api-key": KEY_A, "anthropic-version": "2023-06-01"}
        async with session.post(
            url + "/v1/messages",
            json={"model": "other", "messages": HELLO, "max_tokens": 4},
            headers=anthropic,
        ) as r:
            assert r.status == 200
            message = await r.json()
        assert message["type"] == "message"
        assert message["model"] == "other"
        assert message["usage"]["output_tokens"] == 4
        async with session.post(
            url + "/v1/messages",
            json={"model": "other", "messages": HELLO, "max_tokens": 3, "stream": True},
            headers=anthropic,
        ) as r:
            assert r.status == 200
            events = _events(await r.read())
        assert events[0][0] == "message_start"
        assert events[-1][0] == "message_stop"
        start = events[0][1]
        assert isinstance(start, dict)
        assert start["message"]["model"] == "other"
        async with session.post(
            url + "/v1/messages/count_tokens",
            json={"model": "other", "messages": HELLO},
            headers=anthropic,
        ) as r:
            assert r.status == 200
            assert (await r.json())["input_tokens"] > 0

        # Anthropic's error shape on its routes, OpenAI's elsewhere.
        async with session.post(
            url + "/v1/messages", json={"messages": HELLO, "max_tokens": 2}
        ) as r:
            assert r.status == 401
            error = await r.json()
        assert error["type"] == "error"
        assert error["error"]["type"] == "authentication_error"
        async with session.post(
            url + "/v1/messages",
            json={"model": "nope", "messages": HELLO, "max_tokens": 2},
            headers=anthropic,
        ) as r:
            assert r.status == 404
            assert (await r.json())["error"]["type"] == "not_found_error"

        samples = await metrics_of(running, session, headers=bearer)
        # Every stream ended complete: recorded as successes with their tokens.
        assert total(samples, "zeta_backend_requests_total", outcome="stream_cut") == 0
        assert total(samples, "zeta_backend_requests_total", outcome="success") == 5
        completion = total(samples, "zeta_backend_tokens_total", type="completion")
        assert completion >= 4 + 3 + 4 + 3

        # GET /v1/models/{id}
        async with session.get(url + "/v1/models/fast", headers=bearer) as r:
            assert r.status == 200
            assert (await r.json())["id"] == "fast"
        async with session.get(url + "/v1/models/nope", headers=bearer) as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == "model_not_found"

    serve(router, body)


def _stateful_responses_server(name: str) -> web.Application:
    """A Responses API server that keeps its responses, as vLLM does with
    ``store``: a follow-up naming a response another server made is a 404."""
    stored: set[str] = set()
    ids = itertools.count(1)

    async def respond(request: web.Request) -> web.Response:
        body = await request.json()
        previous = body.get("previous_response_id")
        if previous is not None and previous not in stored:
            error = {"error": {"message": f"Response {previous} not found", "type": "invalid"}}
            return web.json_response(error, status=404)
        response_id = f"resp_{name}_{next(ids)}"
        stored.add(response_id)
        return web.json_response(
            {
                "id": response_id,
                "object": "response",
                "model": name,
                "output": [{"type": "message", "content": [{"type": "output_text", "text": "ok"}]}],
                "usage": {"input_tokens": 3, "output_tokens": 1},
            }
        )

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    app = web.Application()
    app.router.add_post("/v1/responses", respond)
    app.router.add_get("/v1/models", health)
    return app


async def _start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


def test_a_previous_response_id_goes_back_to_the_replica_that_holds_it() -> None:
    async def main() -> None:
        servers = [await _start(_stateful_responses_server(f"s{i}")) for i in range(3)]
        try:
            router = gateway_router(
                [
                    {
                        **text_model("m", [url for _, url in servers]),
                        "replicas": [
                            {"id": f"m-{i}", "url": url, "backend": "openai"}
                            for i, (_, url) in enumerate(servers)
                        ],
                    }
                ]
            )
            from zeta_fast.gateway import start

            running = await start(router, port=0)
            try:
                async with aiohttp.ClientSession() as session:
                    chains: list[list[str]] = []
                    for _ in range(4):
                        previous = None
                        replicas = []
                        for _turn in range(4):
                            payload: dict[str, Any] = {"model": "auto", "input": "next turn"}
                            if previous is not None:
                                payload["previous_response_id"] = previous
                            async with session.post(
                                running.url + "/v1/responses", json=payload
                            ) as r:
                                assert r.status == 200, await r.text()
                                previous = (await r.json())["id"]
                                replicas.append(r.headers["x-zeta-replica"])
                        chains.append(replicas)
                    # Each conversation stayed on the replica that holds its responses.
                    assert all(len(set(chain)) == 1 for chain in chains), chains
            finally:
                await running.stop()
        finally:
            for runner, _ in servers:
                await runner.cleanup()

    asyncio.run(main())


def test_a_backend_without_a_route_is_skipped_for_it_not_blamed(
    llamacpp_replicas: StartReplicas,
) -> None:
    """An OpenAI-compatible server without /v1/messages answers 404: that
    model is skipped for Messages requests from then on (one that serves
    them answers), and nothing counts against the replica."""
    (real,) = llamacpp_replicas([("a", "small", 2)])

    async def main() -> None:
        app = web.Application()

        async def chat(request: web.Request) -> web.Response:
            return web.json_response({"choices": [{"message": {"content": "x"}}], "model": "old"})

        app.router.add_post("/v1/chat/completions", chat)
        runner, url = await _start(app)
        try:
            router = gateway_router(
                [
                    {
                        **text_model("old", [url]),
                        "replicas": [{"id": "old-0", "url": url, "backend": "openai"}],
                    },
                    text_model("new", [real.url]),
                ]
            )
            from zeta_fast.gateway import start

            running = await start(router, port=0)
            try:
                async with aiohttp.ClientSession() as session:
                    served = Counter()
                    for _ in range(6):
                        async with session.post(
                            running.url + "/v1/messages",
                            json={"messages": HELLO, "max_tokens": 2},
                        ) as r:
                            assert r.status == 200, await r.text()
                            served[r.headers["x-zeta-model"]] += 1
                    assert served == {"new": 6}
                    assert "messages" in router.core.unserved("old")
                    # Named, it cannot: a clear 400 in Anthropic's shape.
                    async with session.post(
                        running.url + "/v1/messages",
                        json={"model": "old", "messages": HELLO, "max_tokens": 2},
                    ) as r:
                        assert r.status == 400
                        error = await r.json()
                    assert error["type"] == "error"
                    assert "messages" in error["error"]["message"]
                    samples = await metrics_of(running, session)
                    assert total(samples, "zeta_backend_requests_total", outcome="unsupported") <= 1
                    for kind in ("server_error", "connect", "other"):
                        assert total(samples, "zeta_backend_requests_total", outcome=kind) == 0
                status = router.core.replica_status("old")[0]
                assert status.breaker == "closed"
                assert not status.degraded
            finally:
                await running.stop()
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_every_error_status_over_http(llamacpp_replicas: StartReplicas) -> None:
    """504 for a replica that never answers, 429 with the replicas'
    Retry-After, 400 for a context overflow, 502 for an empty answer and a
    cut one (naming the reason, not the address), /v1/feedback with
    learning off, and a stream cut after its 200: an error event, no
    [DONE], counted on /metrics, nothing left in flight."""
    a, b = llamacpp_replicas([("a", "small", 2), ("b", "small", 2)])
    with FaultProxy("127.0.0.1", a.port) as pa, FaultProxy("127.0.0.1", b.port) as pb:
        router = gateway_router(
            [text_model("m", [pa.url, pb.url], context_window=1024)],
            dispatch={
                "timeouts": {"first_byte_s": 0.5, "total_s": 2},
                "breaker": {"failure_threshold": 50},
                "replicas": {"enabled": False},
            },
        )
        url_of = {"chat": "/v1/chat/completions"}

        async def post(session: aiohttp.ClientSession, running: RunningGateway, **body: Any):
            payload = {"messages": HELLO, "max_tokens": 2, **body}
            async with session.post(running.url + url_of["chat"], json=payload) as r:
                return r.status, dict(r.headers), await r.read()

        async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
            for proxy in (pa, pb):
                proxy.set_fault(blackhole=True)
            status, _, raw = await post(session, running)
            assert status == 504
            assert orjson.loads(raw)["error"]["type"] == "timeout_error"
            for proxy in (pa, pb):
                proxy.set_fault(status=429, retry_after=7)
            status, headers, raw = await post(session, running)
            assert status == 429
            assert int(headers["Retry-After"]) >= 7
            assert orjson.loads(raw)["error"]["type"] == "rate_limit_error"
            for proxy in (pa, pb):
                proxy.clear()
            router.core.reset_breaker("m", "m-0")
            router.core.reset_breaker("m", "m-1")
            status, _, raw = await post(
                session, running, messages=[{"role": "user", "content": "hello " * 3000}]
            )
            assert status == 400
            assert orjson.loads(raw)["error"]["code"] == "context_length_exceeded"
            for proxy in (pa, pb):
                proxy.set_fault(empty=True)
            status, _, raw = await post(session, running)
            assert status == 502
            message = orjson.loads(raw)["error"]["message"]
            assert "could not be reached" in message
            assert "127.0.0.1" not in message
            for proxy in (pa, pb):
                proxy.set_fault(cut_after_bytes=40)
            status, _, raw = await post(session, running)
            assert status == 502
            for proxy in (pa, pb):
                proxy.clear()
            async with session.post(
                running.url + "/v1/feedback", json={"request_id": "x", "good": True}
            ) as r:
                assert r.status == 404
                assert "learning is off" in (await r.json())["error"]["message"]

            # A stream cut after its first events reached the client.
            before = await metrics_of(running, session)
            for proxy in (pa, pb):
                proxy.set_fault(cut_after_bytes=900)
            async with session.post(
                running.url + url_of["chat"],
                json={"messages": HELLO, "max_tokens": 64, "stream": True},
            ) as r:
                assert r.status == 200
                raw = await r.read()
            for proxy in (pa, pb):
                proxy.clear()
            events = _events(raw)
            assert "[DONE]" not in [data for _, data in events], events[-3:]
            last = events[-1][1]
            assert isinstance(last, dict)
            assert "stream failed" in last["error"]["message"]
            after = await metrics_of(running, session)
            assert value(after, "zeta_gateway_streams_cut_total") == 1
            cut = total(after, "zeta_backend_requests_total", outcome="stream_cut") - total(
                before, "zeta_backend_requests_total", outcome="stream_cut"
            )
            assert cut == 1
            assert total(after, "zeta_replica_in_flight") == 0
            assert value(after, "zeta_gateway_in_flight") == 0

        serve(router, body)


@pytest.mark.parametrize("served", [None, "served-name"])
def test_the_body_names_the_served_model_and_the_answer_the_router_model(
    served: str | None,
) -> None:
    seen: list[str] = []

    async def chat(request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        seen.append(payload["model"])
        if payload.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            chunk = {"model": "alias-7", "choices": [{"delta": {"content": "hi"}, "index": 0}]}
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
            return response
        # Text that looks like a model field stays as it is.
        text = 'say {"model":"alias-7"}'
        return web.json_response(
            {"model": "alias-7", "choices": [{"message": {"content": text}, "index": 0}]}
        )

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        runner, url = await _start(app)
        replica: dict[str, Any] = {"id": "r0", "url": url, "backend": "openai"}
        if served is not None:
            replica["served_model_name"] = served
        router = gateway_router([{**text_model("router-id", [url]), "replicas": [replica]}])
        from zeta_fast.gateway import start

        running = await start(router, port=0)
        try:
            async with aiohttp.ClientSession() as session:
                target = running.url + "/v1/chat/completions"
                async with session.post(target, json={"messages": HELLO}) as r:
                    answer = await r.json()
                assert answer["model"] == "router-id"
                assert answer["choices"][0]["message"]["content"] == 'say {"model":"alias-7"}'
                async with session.post(target, json={"messages": HELLO, "stream": True}) as r:
                    events = _events(await r.read())
                first = events[0][1]
                assert isinstance(first, dict)
                assert first["model"] == "router-id"
        finally:
            await running.stop()
            await runner.cleanup()

    asyncio.run(main())
    assert seen == [served or "router-id"] * 2


def test_the_request_id_is_answered_logged_and_in_the_outcome_log(
    llamacpp_replicas: StartReplicas, tmp_path: Any
) -> None:
    (a,) = llamacpp_replicas([("a", "small", 2)])
    with FaultProxy("127.0.0.1", a.port) as pa:
        router = gateway_router(
            [text_model("m", [pa.url, a.url])],
            outcome_log={"enabled": True, "path": str(tmp_path / "outcomes.sqlite")},
        )

        async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
            target = running.url + "/v1/chat/completions"
            payload = {"messages": HELLO, "max_tokens": 2}
            async with session.post(
                target, json=payload, headers={"x-request-id": "client-req-1"}
            ) as r:
                assert r.status == 200
                assert r.headers["x-request-id"] == "client-req-1"
            # A failed attempt and its retry: both rows carry the id.
            pa.set_fault(status=503, count=1)
            router.core.reset_breaker("m", "m-0")
            ids = []
            for _ in range(20):
                async with session.post(target, json=payload) as r:
                    assert r.status == 200
                    ids.append(r.headers["x-request-id"])
                if pa.faults_injected.get("status") == 1 and len(ids) >= 4:
                    break
            assert pa.faults_injected.get("status") == 1
            assert len(set(ids)) == len(ids)
            assert all(len(i) == 32 for i in ids)

        serve(router, body)
        assert router.outcome_log is not None
        router.outcome_log.flush()
        import sqlite3

        with sqlite3.connect(tmp_path / "outcomes.sqlite") as db:
            rows = db.execute("SELECT request_id, outcome FROM outcomes").fetchall()
        assert ("client-req-1", "success") in rows
        assert all(request_id is not None for request_id, _ in rows), rows
        failed = [request_id for request_id, outcome in rows if outcome == "server_error"]
        assert len(failed) == 1
        for request_id in failed:
            assert (request_id, "success") in rows
