"""The gateway's HTTP edge over real HTTP and raw sockets, in front of a
canned OpenAI backend: JSON errors (aiohttp's own and malformed HTTP
included, Anthropic's shape on its routes), the path spellings of OpenAI
clients, head and body timeouts against slowloris clients, an early 413,
x-request-id, CORS, and the x-ratelimit-* headers."""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from pydantic import ValidationError

from zeta_fast import PerformanceTracker, Router
from zeta_fast.config import GatewaySpec, parse_router_config
from zeta_fast.gateway import RunningGateway, hash_key, start
from zeta_fast.gateway.app import Gateway
from zeta_fast.gateway.errors import error_response
from zeta_fast.gateway.ratelimit_headers import duration
from zeta_fast.gateway.request_id import request_id
from zeta_fast.local.canned import canned_app

CHAT = {"messages": [{"role": "user", "content": "hello"}]}
KEY = "zk-edge-test-key-123456"
LIMITED_KEY = "zk-edge-limited-key-654321"
HEX_ID = re.compile(r"[0-9a-f]{32}")
OWN_ERROR = b'{"error": {"message": "taken", "type": "conflict", "param": null, "code": "c"}}'


@asynccontextmanager
async def canned_backend() -> AsyncIterator[str]:
    runner = web.AppRunner(canned_app(chunks=4), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serving(**gateway: Any) -> AsyncIterator[RunningGateway]:
    """A gateway (``gateway`` its settings) in front of a canned backend."""
    async with canned_backend() as url:
        config = parse_router_config(
            {
                "models": [
                    {
                        "id": "canned",
                        "capabilities": {"chat": 80, "code": 80},
                        "replicas": [{"id": "canned-0", "url": url}],
                    }
                ],
                "dispatch": {"health": {"enabled": False}},
                "outcome_log": {"enabled": False},
                "gateway": gateway,
            }
        )
        router = Router(config, tracker=PerformanceTracker(config.window_config(), persist=False))
        running = await start(router, port=0)
        try:
            yield running
        finally:
            await running.stop()


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def openai_error(body: bytes) -> dict[str, Any]:
    """The error of an OpenAI-shaped body, checked field by field."""
    document = orjson.loads(body)
    assert set(document) == {"error"}, document
    error = document["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["type"], str)
    assert error["param"] is None
    assert error["code"] is None or isinstance(error["code"], str)
    return error  # type: ignore[no-any-return]


def anthropic_error(body: bytes) -> dict[str, Any]:
    document = orjson.loads(body)
    assert set(document) == {"type", "error"}, document
    assert document["type"] == "error"
    error = document["error"]
    assert set(error) == {"type", "message"}, error
    assert error["type"] in {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
        "request_too_large",
    }
    assert isinstance(error["message"], str)
    return error  # type: ignore[no-any-return]


class RawResponse:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, at: float) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.at = at  # when the head arrived (perf_counter)


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    head = await reader.readuntil(b"\r\n\r\n")
    at = time.perf_counter()
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
    return RawResponse(status, headers, body, at)


async def raw_exchange(running: RunningGateway, data: bytes, timeout: float = 5.0) -> RawResponse:
    """Sends ``data`` as it is on a new connection; the first answer."""
    reader, writer = await asyncio.open_connection(running.host, running.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(read_response(reader), timeout)
    finally:
        writer.close()


async def closed_within(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """What the server sent until it closed (fails if it did not in time)."""
    got = b""
    async with asyncio.timeout(timeout):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionError:
                return got
            if not chunk:
                return got
            got += chunk


def with_extra_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Routes added to the app after ``Gateway.app()`` built it, as a later
    feature would: ``/v1/zeta-test/later``, ``/v1/messages/zeta-test``
    (key-checked like the API), ``/v1/echo-id`` (answers the request id the
    data path reads), ``/v1/boom`` (fails)."""
    built = Gateway.app

    def app(self: Gateway) -> web.Application:
        application = built(self)

        async def later(request: web.Request) -> web.Response:
            return web.json_response({"object": "later", "path": request.path})

        async def messages(request: web.Request) -> web.Response:
            return web.json_response({"type": "message", "path": request.path})

        async def echo_id(request: web.Request) -> web.Response:
            return web.json_response({"request_id": request_id(request)})

        async def item(request: web.Request) -> web.Response:
            return web.json_response({"item": request.match_info["item"], "path": request.path})

        async def own_json(request: web.Request) -> web.Response:
            raise web.HTTPConflict(text=OWN_ERROR.decode(), content_type="application/json")

        async def cut(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            self.edge.decorate(request, response)
            await response.prepare(request)
            await response.write(b"data: one\n\n")
            raise RuntimeError("failed mid-stream")

        async def boom(request: web.Request) -> web.Response:
            raise RuntimeError("secret internal detail: /etc/zeta/db password=hunter2")

        application.router.add_post("/v1/zeta-test/later", later)
        application.router.add_post("/v1/messages/zeta-test", self._guarded(messages))
        application.router.add_get("/v1/echo-id", echo_id)
        application.router.add_get("/v1/boom", boom)
        application.router.add_get("/v1/zeta-test/cut", cut)
        application.router.add_get("/v1/zeta-test/own-json", own_json)
        application.router.add_get("/v1/zeta-test/items/{item}", item)
        return application

    monkeypatch.setattr(Gateway, "app", app)


# -- 1. every error is JSON in the caller's API's shape -------------------------


def test_aiohttp_errors_and_failures_are_openai_json(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with_extra_routes(monkeypatch)

    async def body() -> None:
        async with (
            serving(max_body_bytes=4096) as running,
            aiohttp.ClientSession(running.url) as session,
        ):
            async with session.get("/v1/no-such-route") as response:
                assert response.status == 404
                assert response.content_type == "application/json"
                error = openai_error(await response.read())
            assert error["type"] == "invalid_request_error"
            assert error["message"] == "Invalid URL (GET /v1/no-such-route)"

            async with session.get("/v1/chat/completions") as response:
                assert response.status == 405
                assert "POST" in response.headers["Allow"]
                error = openai_error(await response.read())
            assert error["code"] == "method_not_allowed"

            # A chunked body (no Content-Length) over the limit: aiohttp's own
            # 413 from reading it, on a route that does not catch it.
            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(8):
                    yield b" " * 1024

            async with session.post("/v1/feedback", data=chunks()) as response:
                assert response.status in (404, 413)  # 404: learning off, answered first
                openai_error(await response.read())
            async with session.post("/v1/echo-id", data=chunks()) as response:
                assert response.status == 405
                openai_error(await response.read())

            # A handler's own JSON error is kept as it was.
            async with session.get("/v1/zeta-test/own-json") as response:
                assert response.status == 409
                assert await response.read() == OWN_ERROR

            # An unexpected failure: a generic 500, the details only in the log.
            with caplog.at_level(logging.ERROR, logger="zeta_fast.gateway"):
                async with session.get("/v1/boom") as response:
                    assert response.status == 500
                    raw = await response.read()
                    rid = response.headers["x-request-id"]
            error = openai_error(raw)
            assert error["type"] == "server_error"
            assert rid in error["message"]
            for secret in (b"hunter2", b"secret", b"RuntimeError", b"Traceback", b"/etc"):
                assert secret not in raw
            logged = [r for r in caplog.records if r.name == "zeta_fast.gateway"]
            assert any(rid in r.getMessage() and r.exc_info for r in logged)

            # A failure after a stream started: nothing can replace the
            # answer; the stream is cut (no clean end) and the failure logged.
            with caplog.at_level(logging.ERROR, logger="zeta_fast.gateway"):
                async with session.get("/v1/zeta-test/cut") as response:
                    assert response.status == 200
                    rid = response.headers["x-request-id"]  # a stream has it too
                    with pytest.raises(aiohttp.ClientPayloadError):
                        await response.read()
            assert any(
                rid in r.getMessage() and r.exc_info
                for r in caplog.records
                if r.name == "zeta_fast.gateway"
            )

            # The data path failing the same way (the router raising).
            def broken(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("internal state: hunter2")

            # Router.route is the core's method behind a property: patched on the class.
            monkeypatch.setattr(type(running.gateway.router), "route", property(lambda _: broken))
            async with session.post("/v1/chat/completions", json=CHAT) as response:
                assert response.status == 500
                raw = await response.read()
            assert b"hunter2" not in raw
            assert openai_error(raw)["code"] == "internal_error"

    run(body)


def test_malformed_http_is_a_json_400() -> None:
    async def body() -> None:
        async with serving() as running:
            for request in (
                b"NOT AN HTTP REQUEST\r\n\r\n",
                b"GET /v1/models HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
                b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
            ):
                response = await raw_exchange(running, request)
                assert response.status == 400, request[:40]
                assert response.headers["content-type"].startswith("application/json")
                assert HEX_ID.fullmatch(response.headers["x-request-id"])
                error = openai_error(response.body)
                assert error["code"] == "bad_http"
                assert error["message"].startswith("malformed HTTP request")

    run(body)


def test_anthropic_routes_answer_errors_in_anthropic_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with_extra_routes(monkeypatch)

    async def body() -> None:
        async with (
            serving(
                max_body_bytes=4096, api_keys=[{"name": "a", "sha256": hash_key(KEY)}]
            ) as running,
            aiohttp.ClientSession(running.url) as session,
        ):
            auth = {"Authorization": f"Bearer {KEY}"}
            async with session.post("/v1/messages/zeta-test", json={}, headers=auth) as response:
                assert response.status == 200
            for path in ("/v1/messages/zeta-test", "/messages/zeta-test"):
                async with session.post(path, json={}) as response:
                    assert response.status == 401
                    error = anthropic_error(await response.read())
                assert error["type"] == "authentication_error"
            async with session.get("/v1/messages/no-such-route") as response:
                assert response.status == 404
                assert anthropic_error(await response.read())["type"] == "not_found_error"
            async with session.get("/v1/messages/zeta-test") as response:
                assert response.status == 405
                assert anthropic_error(await response.read())["type"] == "invalid_request_error"
            async with session.post(
                "/messages", data=b"x" * 5000, headers=auth
            ) as response:  # the alias too
                assert response.status == 413
                assert anthropic_error(await response.read())["type"] == "request_too_large"
            # Everything else keeps OpenAI's.
            async with session.get("/v1/chat/no-such-route") as response:
                openai_error(await response.read())

    run(body)
    # The shared function, both shapes, with extra headers.
    response = error_response(429, "slow down", "rate_limit_error", headers={"Retry-After": "2"})
    assert response.headers["Retry-After"] == "2"
    assert response.body is not None
    assert openai_error(response.body)["type"] == "rate_limit_error"  # type: ignore[arg-type]
    for status, kind, expected in (
        (503, "overloaded_error", "overloaded_error"),
        (500, "server_error", "api_error"),
        (400, "invalid_request_error", "invalid_request_error"),
        (403, "whatever", "permission_error"),
    ):
        made = error_response(status, "m", kind, anthropic=True)
        assert made.body is not None
        assert anthropic_error(made.body)["type"] == expected  # type: ignore[arg-type]


# -- 2. the path spellings of OpenAI clients -------------------------------------


def test_v1_routes_are_served_without_v1_and_with_a_trailing_slash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with_extra_routes(monkeypatch)

    async def body() -> None:
        async with serving() as running, aiohttp.ClientSession(running.url) as session:

            async def fetch(method: str, path: str, **kw: Any) -> tuple[int, bytes]:
                async with session.request(method, path, allow_redirects=False, **kw) as response:
                    return response.status, await response.read()

            messages = {"max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
            calls: dict[str, tuple[str, dict[str, Any]]] = {
                "/v1/chat/completions": ("POST", {"json": CHAT}),
                "/v1/completions": ("POST", {"json": {"prompt": "a"}}),
                "/v1/models": ("GET", {}),
                "/v1/embeddings": ("POST", {"json": {"input": "a"}}),
                "/v1/responses": ("POST", {"json": {"input": "hi"}}),
                "/v1/messages": ("POST", {"json": messages}),
                "/v1/zeta-test/later": ("POST", {"json": {}}),  # added after app()
            }
            # The canned backend has no /v1/messages, /v1/responses or
            # embeddings: what the gateway makes of that depends on what it
            # learned from the calls before, so only the others compare.
            stateless = {"/v1/chat/completions", "/v1/completions", "/v1/models"}
            stateless.add("/v1/zeta-test/later")
            for path, (method, kw) in calls.items():
                status, answer = await fetch(method, path, **kw)
                assert b"Invalid URL" not in answer, path
                if path in ("/v1/chat/completions", "/v1/models", "/v1/zeta-test/later"):
                    assert status == 200, path
                bare = path.removeprefix("/v1")
                for alias in (path + "/", bare, bare + "/"):
                    got_status, got = await fetch(method, alias, **kw)
                    assert b"Invalid URL" not in got, alias
                    assert got_status != 405, alias
                    if path in stateless:
                        assert got_status == status, (alias, got_status, got)
                    if path == "/v1/zeta-test/later":
                        assert orjson.loads(got)["path"] == alias  # the same handler
                    elif path in ("/v1/chat/completions", "/v1/completions", "/v1/models"):
                        assert got == answer, alias
            # A route with a variable part too.
            for path in ("/v1/zeta-test/items/7", "/zeta-test/items/7", "/zeta-test/items/7/"):
                status, got = await fetch("GET", path)
                assert status == 200, path
                assert orjson.loads(got) == {"item": "7", "path": path}
            # The rest keep their one spelling.
            assert (await fetch("GET", "/health"))[0] == 200
            for path in ("/health/", "/v1/health", "/dashboard/", "/v1/metrics"):
                status, got = await fetch("GET", path)
                assert status == 404, path
                openai_error(got)

    run(body)


# -- 3. slow clients -----------------------------------------------------------------


def test_slowloris_connections_are_cut_at_the_head_timeout_while_others_are_served() -> None:
    timeout = 0.5

    async def body() -> None:
        async with (
            serving(header_timeout_s=timeout, body_timeout_s=5) as running,
            aiohttp.ClientSession(running.url) as session,
        ):

            async def slowloris() -> tuple[float, float]:
                opened = time.perf_counter()
                reader, writer = await asyncio.open_connection(running.host, running.port)
                writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")

                async def trickle() -> None:
                    # A header line every 0.1 s, never the blank line.
                    for i in range(1000):
                        await asyncio.sleep(0.1)
                        if writer.is_closing() or reader.at_eof():
                            return
                        writer.write(b"x-slow-%d: y\r\n" % i)

                trickling = asyncio.ensure_future(trickle())
                try:
                    await closed_within(reader, timeout + 4.0)
                finally:
                    trickling.cancel()
                    writer.close()
                return opened, time.perf_counter()

            attackers = [asyncio.ensure_future(slowloris()) for _ in range(200)]
            served = []
            while not all(a.done() for a in attackers):
                began = time.perf_counter()
                async with session.post("/v1/chat/completions", json=CHAT) as response:
                    assert response.status == 200
                    await response.read()
                served.append(time.perf_counter() - began)
            spans = [closed - opened for opened, closed in await asyncio.gather(*attackers)]
            # Cut at the timeout (not before), within a sweep and the load's delay after it.
            assert min(spans) >= timeout * 0.9, min(spans)
            assert max(spans) <= timeout + 1.5, max(spans)
            assert len(served) >= 5
            # Never held up by the slow ones: a server that waited on them would
            # serve each request only as they are cut (the timeout or more).
            # The median says it; one request on a loaded 2-core runner may
            # still take a scheduling hiccup (0.52 s once, in a full suite).
            assert statistics.median(served) < timeout / 5, sorted(served)
            assert max(served) < 2 * timeout, sorted(served)
            async with session.get("/metrics") as response:
                text = await response.text()
            assert 'zeta_gateway_refused_total{reason="header_timeout"} 200.0' in text

    run(body)


def test_a_partial_head_gets_a_408_and_a_silent_connection_is_closed() -> None:
    async def body() -> None:
        async with serving(header_timeout_s=0.3) as running:
            reader, writer = await asyncio.open_connection(running.host, running.port)
            sent = time.perf_counter()
            writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
            response = await asyncio.wait_for(read_response(reader), 3.0)
            assert response.status == 408
            assert response.at - sent >= 0.25
            assert response.headers["connection"] == "close"
            assert HEX_ID.fullmatch(response.headers["x-request-id"])
            assert openai_error(response.body)["code"] == "header_timeout"
            assert await closed_within(reader, 1.0) == b""
            writer.close()

            # Nothing sent: closed, and nothing it did not ask for.
            reader, writer = await asyncio.open_connection(running.host, running.port)
            assert await closed_within(reader, 2.0) == b""
            writer.close()

            # A kept-alive connection idle longer than the head timeout is
            # not cut for it: idle time is not a slow head.
            reader, writer = await asyncio.open_connection(running.host, running.port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await read_response(reader)).status == 200
            await asyncio.sleep(0.8)
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await asyncio.wait_for(read_response(reader), 2.0)).status == 200
            writer.close()

    run(body)


def test_a_body_slower_than_the_body_timeout_gets_a_408() -> None:
    async def body() -> None:
        async with serving(body_timeout_s=0.5) as running:
            head = (
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            )
            payload = orjson.dumps(CHAT)
            reader, writer = await asyncio.open_connection(running.host, running.port)
            sent = time.perf_counter()
            writer.write(head % len(payload) + payload[:10])
            response = await asyncio.wait_for(read_response(reader), 3.0)
            assert response.status == 408
            assert response.at - sent >= 0.45
            error = openai_error(response.body)
            assert error["code"] == "request_timeout"
            assert "body" in error["message"]
            assert response.headers["connection"] == "close"
            assert await closed_within(reader, 1.0) == b""
            writer.close()

            # A body in two parts well within the timeout is served.
            reader, writer = await asyncio.open_connection(running.host, running.port)
            writer.write(head % len(payload) + payload[:10])
            await asyncio.sleep(0.15)
            writer.write(payload[10:])
            assert (await asyncio.wait_for(read_response(reader), 3.0)).status == 200
            writer.close()

    run(body)


# -- 4. a Content-Length over the limit --------------------------------------------


def test_a_content_length_over_the_limit_is_a_413_before_the_body() -> None:
    async def body() -> None:
        async with serving(max_body_bytes=4096) as running:
            reader, writer = await asyncio.open_connection(running.host, running.port)
            sent = time.perf_counter()
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 4097\r\n\r\n"
            )
            response = await asyncio.wait_for(read_response(reader), 1.0)
            assert response.at - sent < 0.5
            assert response.status == 413
            assert response.headers["connection"] == "close"
            error = openai_error(response.body)
            assert error["code"] == "body_too_large"
            assert "4097" in error["message"]
            writer.close()
            # A client that waits for 100 Continue gets the 413 instead.
            response = await raw_exchange(
                running,
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                b"Content-Length: 10000\r\n\r\n",
                timeout=1.0,
            )
            assert response.status == 413
            # At the limit it is read as usual.
            payload = orjson.dumps({**CHAT, "pad": "x" * (4096 - len(orjson.dumps(CHAT)) - 9)})
            assert len(payload) == 4096
            response = await raw_exchange(
                running,
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n"
                + payload,
            )
            assert response.status == 200

    run(body)


def test_the_edge_as_a_middleware_for_an_app_served_another_way() -> None:
    async def body() -> None:
        async with canned_backend() as url:
            config = parse_router_config(
                {
                    "models": [
                        {
                            "id": "c",
                            "capabilities": {"chat": 80},
                            "replicas": [{"id": "c0", "url": url}],
                        }
                    ],
                    "dispatch": {"health": {"enabled": False}},
                    "outcome_log": {"enabled": False},
                }
            )
            router = Router(config, tracker=PerformanceTracker(persist=False))
            gateway = Gateway(router)
            app = gateway.app()
            app.middlewares.append(gateway.edge.middleware)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            try:
                async with aiohttp.ClientSession(base) as session:
                    async with session.get("/v1/nope", headers={"x-request-id": "abc"}) as response:
                        assert response.status == 404
                        assert response.headers["x-request-id"] == "abc"
                        openai_error(await response.read())
                    async with session.post("/chat/completions", json=CHAT) as response:
                        assert response.status == 200
                        assert HEX_ID.fullmatch(response.headers["x-request-id"])
            finally:
                await runner.cleanup()
                await router.aclose()
                router.close()

    run(body)


# -- 5. x-request-id ---------------------------------------------------------------


def test_request_ids_taken_made_answered_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with_extra_routes(monkeypatch)

    async def body() -> None:
        async with (
            serving(access_log=True, max_body_bytes=4096) as running,
            aiohttp.ClientSession(running.url) as session,
        ):
            made = []
            for _ in range(3):
                async with session.post("/v1/chat/completions", json=CHAT) as response:
                    assert response.status == 200
                    made.append(response.headers["x-request-id"])
            assert all(HEX_ID.fullmatch(m) for m in made)
            assert len(set(made)) == 3

            sane = "req-2024.07_ABC:xyz 42"
            async with session.post(
                "/v1/chat/completions", json=CHAT, headers={"x-request-id": sane}
            ) as response:
                assert response.headers["x-request-id"] == sane
            # The data path reads the same id.
            async with session.get("/v1/echo-id", headers={"x-request-id": sane}) as response:
                assert (await response.json())["request_id"] == sane
            async with session.get("/v1/echo-id") as response:
                assert (await response.json())["request_id"] == response.headers["x-request-id"]
            # On errors and streams too.
            for method, path, kw in (
                ("GET", "/nope", {}),
                ("POST", "/v1/chat/completions", {"data": b"{not json"}),
                ("POST", "/v1/chat/completions", {"data": b"x" * 5000}),
                ("POST", "/v1/chat/completions", {"json": {**CHAT, "stream": True}}),
            ):
                async with session.request(
                    method, path, headers={"x-request-id": sane}, **kw
                ) as response:
                    await response.read()
                    assert response.headers["x-request-id"] == sane, path
            # Insane ones are replaced.
            for bad in ("x" * 129, "tab\tinside"):
                async with session.get("/health", headers={"x-request-id": bad}) as response:
                    assert HEX_ID.fullmatch(response.headers["x-request-id"]), bad
            raw = await raw_exchange(
                running, b"GET /health HTTP/1.1\r\nHost: x\r\nx-request-id: caf\xc3\xa9\r\n\r\n"
            )
            assert HEX_ID.fullmatch(raw.headers["x-request-id"])

    with caplog.at_level(logging.INFO):
        run(body)
    access = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert any(line.endswith("req-2024.07_ABC:xyz 42") for line in access), access[:3]


# -- 6. CORS -------------------------------------------------------------------------

APP = "https://app.example.com"


def test_cors_preflight_and_answers_for_allowed_origins_only() -> None:
    async def body() -> None:
        async with (
            serving(
                cors_origins=[APP, "http://localhost:5173"],
                api_keys=[{"name": "a", "sha256": hash_key(KEY)}],
            ) as running,
            aiohttp.ClientSession(running.url) as session,
        ):
            preflight = {
                "Origin": APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
            }
            for path in ("/v1/chat/completions", "/chat/completions", "/v1/models"):
                # No key: browsers send none on a preflight.
                async with session.options(path, headers=preflight) as response:
                    assert response.status == 204, path
                    headers = response.headers
                assert headers["Access-Control-Allow-Origin"] == APP
                assert "POST" in headers["Access-Control-Allow-Methods"]
                allowed = {h.strip() for h in headers["Access-Control-Allow-Headers"].split(",")}
                assert allowed >= {
                    "authorization",
                    "content-type",
                    "x-api-key",
                    "x-request-id",
                    "x-zeta-decision",
                    "anthropic-version",
                    "x-stainless-os",
                }
                assert int(headers["Access-Control-Max-Age"]) > 0
                assert "Origin" in headers.getall("Vary")
                assert "Access-Control-Allow-Private-Network" not in headers
            # A public page calling a gateway on a private address (Chromium's ask).
            async with session.options(
                "/v1/models",
                headers={**preflight, "Access-Control-Request-Private-Network": "true"},
            ) as response:
                assert response.status == 204
                assert response.headers["Access-Control-Allow-Private-Network"] == "true"

            # Another origin: refused, and nothing a browser would accept.
            async with session.options(
                "/v1/chat/completions", headers={**preflight, "Origin": "https://evil.example"}
            ) as response:
                assert response.status == 403
                assert "Access-Control-Allow-Origin" not in response.headers
                assert "Access-Control-Allow-Headers" not in response.headers
                openai_error(await response.read())

            auth = {"Authorization": f"Bearer {KEY}", "Origin": APP}
            for kw in ({"json": CHAT}, {"json": {**CHAT, "stream": True}}):
                async with session.post("/v1/chat/completions", headers=auth, **kw) as response:
                    assert response.status == 200
                    await response.read()
                    headers = response.headers
                assert headers["Access-Control-Allow-Origin"] == APP
                assert "Origin" in headers.getall("Vary")
                exposed = {h.strip() for h in headers["Access-Control-Expose-Headers"].split(",")}
                assert exposed >= {
                    "x-zeta-model",
                    "x-zeta-replica",
                    "x-zeta-overhead-ms",
                    "x-zeta-request-id",
                    "x-zeta-decision",
                    "x-request-id",
                    "retry-after",
                    "x-ratelimit-limit-requests",
                    "x-ratelimit-remaining-requests",
                    "x-ratelimit-reset-requests",
                }
            # Errors carry them too (the app must read a 401 to show it).
            async with session.post(
                "/v1/chat/completions", json=CHAT, headers={"Origin": APP}
            ) as response:
                assert response.status == 401
                assert response.headers["Access-Control-Allow-Origin"] == APP
            async with session.post(
                "/v1/chat/completions",
                json=CHAT,
                headers={**auth, "Origin": "https://evil.example"},
            ) as response:
                assert "Access-Control-Allow-Origin" not in response.headers

        # Not configured: no CORS at all.
        async with serving() as running, aiohttp.ClientSession(running.url) as session:
            async with session.options("/v1/chat/completions", headers=preflight) as response:
                assert response.status == 405
                assert not [h for h in response.headers if h.lower().startswith("access-control")]
            async with session.post(
                "/v1/chat/completions", json=CHAT, headers={"Origin": APP}
            ) as response:
                assert response.status == 200
                assert not [h for h in response.headers if h.lower().startswith("access-control")]
                assert "Vary" not in response.headers

        # "*": every origin, echoed.
        async with (
            serving(cors_origins=["*"]) as running,
            aiohttp.ClientSession(running.url) as session,
        ):
            other = "https://anything.example:8443"
            async with session.options(
                "/v1/models", headers={**preflight, "Origin": other}
            ) as response:
                assert response.status == 204
                assert response.headers["Access-Control-Allow-Origin"] == other

    run(body)


# -- 7. x-ratelimit-* -----------------------------------------------------------------

RESET = re.compile(r"(\d+ms|(\d+h)?(\d+m)?\d+(\.\d+)?s)")


def test_ratelimit_headers_follow_the_keys_bucket() -> None:
    async def body() -> None:
        async with (
            serving(
                api_keys=[
                    {"name": "free", "sha256": hash_key(KEY)},
                    {
                        "name": "limited",
                        "sha256": hash_key(LIMITED_KEY),
                        "rate_limit": {"per_second": 2, "burst": 3},
                    },
                ]
            ) as running,
            aiohttp.ClientSession(running.url) as session,
        ):
            limited = {"Authorization": f"Bearer {LIMITED_KEY}"}
            seen = []
            for kw in ({"json": CHAT}, {"json": {**CHAT, "stream": True}}, {"json": CHAT}, {}):
                async with session.post("/v1/chat/completions", headers=limited, **kw) as response:
                    await response.read()
                    seen.append((response.status, dict(response.headers)))
            assert [s for s, _ in seen] == [200, 200, 200, 429]
            for _, headers in seen:
                assert headers["x-ratelimit-limit-requests"] == "3"
                assert RESET.fullmatch(headers["x-ratelimit-reset-requests"])
            remaining = [int(h["x-ratelimit-remaining-requests"]) for _, h in seen]
            assert remaining == [2, 1, 0, 0]
            # One token short of full at 2 a second: 0.5 s, less the time to the answer.
            first_reset = seen[0][1]["x-ratelimit-reset-requests"]
            assert first_reset.endswith("ms")
            assert 300 <= int(first_reset.removesuffix("ms")) <= 500
            assert int(seen[3][1]["Retry-After"]) >= 1
            reset_429 = seen[3][1]["x-ratelimit-reset-requests"]
            assert reset_429.endswith("s")
            assert not reset_429.endswith("ms")  # ~1.5 s to refill three tokens
            # A key without a limit, or a route without a key: no headers.
            async with session.post(
                "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {KEY}"}
            ) as response:
                assert "x-ratelimit-limit-requests" not in response.headers
            async with session.get("/health") as response:
                assert "x-ratelimit-limit-requests" not in response.headers

    run(body)


def test_durations_are_written_as_openai_writes_them() -> None:
    assert duration(0.0) == "0s"
    assert duration(0.25) == "250ms"
    assert duration(0.0001) == "1ms"
    assert duration(1.0) == "1s"
    assert duration(1.5) == "1.5s"
    assert duration(360.0) == "6m0s"
    assert duration(3723.25) == "1h2m3.25s"


# -- 8. the settings -----------------------------------------------------------------


def test_edge_settings_defaults_and_bounds() -> None:
    spec = GatewaySpec()
    assert (spec.header_timeout_s, spec.body_timeout_s, spec.cors_origins) == (10.0, 30.0, [])
    for bad in (
        {"header_timeout_s": 0},
        {"header_timeout_s": 3601},
        {"body_timeout_s": -1},
        {"body_timeout_s": float("inf")},
        {"cors_origins": ["https://app.example.com/"]},
        {"cors_origins": ["app.example.com"]},
        {"cors_origins": ["null"]},
    ):
        with pytest.raises(ValidationError):
            GatewaySpec(**bad)
    assert GatewaySpec(cors_origins=["*", "http://localhost:3000"]).cors_origins[0] == "*"
