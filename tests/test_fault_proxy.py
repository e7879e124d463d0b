"""FaultProxy against a real aiohttp server, with real HTTP clients."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from tests.waiting import wait_until, wait_until_async
from zeta_fast.local import fault_proxy
from zeta_fast.local.fault_proxy import FAULT_KINDS, Fault, FaultProxy

BIG = b"x" * 100_000
SSE_CHUNKS = 5
SSE_GAP_S = 0.05


class Upstream:
    """An aiohttp server on its own loop in a thread, counting the requests it serves."""

    def __init__(self) -> None:
        self.hits = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        app = web.Application()
        app.router.add_get("/hello", self.hello)
        app.router.add_post("/echo", self.echo)
        app.router.add_post("/inspect", self.inspect)
        app.router.add_get("/big", self.big)
        app.router.add_get("/sse", self.sse)
        self.runner = web.AppRunner(app)
        self.port = 0

    async def hello(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(text="hello")

    async def echo(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(body=await request.read())

    async def inspect(self, request: web.Request) -> web.Response:
        """Echoes the body and, in response headers, the framing headers it came with."""
        self.hits += 1
        body = await request.read()
        received = {
            f"X-Got-{name}": request.headers.get(name, "-")
            for name in ("Content-Length", "Transfer-Encoding", "Expect")
        }
        return web.Response(body=body, headers=received)

    async def big(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.Response(body=BIG)

    async def sse(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(SSE_CHUNKS):
            if i:
                await asyncio.sleep(SSE_GAP_S)
            await response.write(f"data: {i}\n\n".encode())
        await response.write_eof()
        return response

    async def _start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def proxy(upstream: Upstream) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", upstream.port, seed=1234) as p:
        yield p


def one_connection() -> aiohttp.ClientSession:
    """A keep-alive session that puts every request on the same connection."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1),
        timeout=aiohttp.ClientTimeout(total=5),
    )


def get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def raw_exchange(port: int, request: bytes) -> bytes:
    """Sends raw bytes and reads until the proxy closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_passthrough_keeps_one_connection(proxy: FaultProxy) -> None:
    async def main() -> None:
        async with one_connection() as session:
            for i in range(3):
                async with session.get(f"{proxy.url}/hello") as r:
                    assert r.status == 200
                    assert await r.text() == "hello"
                payload = f"body {i}".encode() * 100
                async with session.post(f"{proxy.url}/echo", data=payload) as r:
                    assert await r.read() == payload

    asyncio.run(main())
    stats = proxy.stats()
    assert stats.requests == stats.forwarded == 6
    assert stats.connections == 1
    assert stats.faults == dict.fromkeys(FAULT_KINDS, 0)
    # The client hung up, and so, without stop(), does the proxy.
    wait_until(lambda: proxy.stats().open_connections == 0)


def test_fault_set_after_connect_hits_next_request_on_it(
    proxy: FaultProxy, upstream: Upstream
) -> None:
    async def main() -> None:
        async with one_connection() as session:
            async with session.get(f"{proxy.url}/hello") as r:
                assert r.status == 200
            proxy.set_fault(status=503, message="Loading model")
            hits = upstream.hits
            async with session.post(f"{proxy.url}/echo", data=b"a" * 5000) as r:
                assert r.status == 503
                assert r.headers["Content-Type"].startswith("application/json")
                assert await r.json() == {
                    "error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}
                }
            assert upstream.hits == hits
            proxy.clear()
            # The swallowed body must not be mistaken for the next request.
            async with session.post(f"{proxy.url}/echo", data=b"next") as r:
                assert r.status == 200
                assert await r.read() == b"next"

    asyncio.run(main())
    stats = proxy.stats()
    assert stats.connections == 1
    assert stats.requests == 3
    assert stats.forwarded == 2
    assert stats.faults["status"] == 1


def test_status_429_with_retry_after(proxy: FaultProxy) -> None:
    proxy.set_fault(status=429, retry_after=1)
    with pytest.raises(urllib.error.HTTPError) as info:
        get(f"{proxy.url}/hello")
    error = info.value
    body = error.read()
    assert error.code == 429
    assert error.headers["Retry-After"] == "1"
    assert int(error.headers["Content-Length"]) == len(body)
    assert json.loads(body)["error"]["code"] == 429
    assert json.loads(body)["error"]["type"] == "rate_limit_error"


def test_delay(proxy: FaultProxy) -> None:
    proxy.set_fault(delay_ms=200)
    started = time.perf_counter()
    assert get(f"{proxy.url}/hello") == b"hello"
    assert time.perf_counter() - started >= 0.2
    assert proxy.faults_injected["delay"] == 1


def test_reset(proxy: FaultProxy) -> None:
    proxy.set_fault(reset=True)
    with pytest.raises(ConnectionResetError) as info:
        get(f"{proxy.url}/hello")
    # A reset, not the orderly close that RemoteDisconnected stands for.
    assert not isinstance(info.value, http.client.RemoteDisconnected)
    assert proxy.faults_injected["reset"] == 1


def test_empty(proxy: FaultProxy, upstream: Upstream) -> None:
    proxy.set_fault(empty=True)
    hits = upstream.hits
    with pytest.raises(http.client.RemoteDisconnected):
        get(f"{proxy.url}/hello")
    assert raw_exchange(proxy.port, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n") == b""
    assert upstream.hits == hits
    assert proxy.faults_injected["empty"] == 2


def test_reset_and_empty_on_keep_alive_connection(proxy: FaultProxy) -> None:
    # POST, because aiohttp retries idempotent requests once after a connection error.
    async def main() -> None:
        async with one_connection() as session:
            async with session.post(f"{proxy.url}/echo", data=b"1") as r:
                assert r.status == 200
            proxy.set_fault(reset=True, count=1)
            with pytest.raises(aiohttp.ClientOSError):
                await session.post(f"{proxy.url}/echo", data=b"2")
            proxy.set_fault(empty=True, count=1)
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await session.post(f"{proxy.url}/echo", data=b"3")
            async with session.post(f"{proxy.url}/echo", data=b"4") as r:
                assert await r.read() == b"4"

    asyncio.run(main())
    assert proxy.faults_injected["reset"] == 1
    assert proxy.faults_injected["empty"] == 1
    assert proxy.requests_seen == 4


def test_blackhole_holds_until_cleared(proxy: FaultProxy, upstream: Upstream) -> None:
    proxy.set_fault(blackhole=True)
    with pytest.raises(TimeoutError):
        get(f"{proxy.url}/hello", timeout=0.3)

    async def main() -> None:
        async with one_connection() as session:
            pending = asyncio.ensure_future(session.post(f"{proxy.url}/echo", data=b"lost"))
            # Held by the blackhole (its second request, after the get above).
            await wait_until_async(lambda: proxy.faults_injected["blackhole"] == 2)
            assert not pending.done()
            proxy.clear()
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await asyncio.wait_for(pending, 2)
            async with session.post(f"{proxy.url}/echo", data=b"back") as r:
                assert await r.read() == b"back"

    asyncio.run(main())
    assert proxy.faults_injected["blackhole"] == 2


def test_cut_after_bytes(proxy: FaultProxy) -> None:
    proxy.set_fault(cut_after_bytes=1000)
    received = raw_exchange(proxy.port, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(received) == 1000
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")

    async def main() -> None:
        async with one_connection() as session, session.get(f"{proxy.url}/big") as r:
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()

    asyncio.run(main())
    assert proxy.faults_injected["cut"] == 2


def test_probability_is_seeded_and_about_right(upstream: Upstream) -> None:
    async def statuses_of_200_requests(url: str) -> list[int]:
        statuses = []
        async with one_connection() as session:
            for _ in range(200):
                async with session.get(f"{url}/hello") as r:
                    await r.read()
                    statuses.append(r.status)
        return statuses

    def run() -> list[int]:
        with FaultProxy("127.0.0.1", upstream.port, seed=7) as proxy:
            proxy.set_fault(status=503, probability=0.5)
            statuses = asyncio.run(statuses_of_200_requests(proxy.url))
            assert proxy.faults_injected["status"] == statuses.count(503)
            assert proxy.stats().connections == 1
        return statuses

    first = run()
    assert 70 <= first.count(503) <= 130
    assert set(first) == {200, 503}
    assert run() == first


def test_count(proxy: FaultProxy) -> None:
    fault = proxy.set_fault(status=503, count=3)
    assert fault.count == 3

    async def main() -> list[int]:
        async with one_connection() as session:
            statuses = []
            for _ in range(5):
                async with session.get(f"{proxy.url}/hello") as r:
                    statuses.append(r.status)
            return statuses

    assert asyncio.run(main()) == [503, 503, 503, 200, 200]
    assert proxy.fault is None
    assert proxy.faults_injected["status"] == 3


def test_sse_chunks_arrive_one_by_one(proxy: FaultProxy) -> None:
    async def main() -> list[tuple[float, bytes]]:
        arrivals = []
        async with one_connection() as session, session.get(f"{proxy.url}/sse") as r:
            async for data in r.content.iter_any():
                arrivals.append((time.perf_counter(), data))
        return arrivals

    arrivals = asyncio.run(main())
    text = b"".join(data for _, data in arrivals).decode()
    assert text == "".join(f"data: {i}\n\n" for i in range(SSE_CHUNKS))
    first = next(t for t, data in arrivals if b"data: 0" in data)
    last = next(t for t, data in arrivals if f"data: {SSE_CHUNKS - 1}".encode() in data)
    assert last - first >= 0.75 * SSE_GAP_S * (SSE_CHUNKS - 1)
    assert len(arrivals) >= 3


def test_upstream_unreachable_closes_client_and_keeps_running() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    with FaultProxy("127.0.0.1", dead_port) as proxy:
        for _ in range(2):
            with pytest.raises(http.client.RemoteDisconnected):
                get(f"{proxy.url}/hello")
        assert proxy.stats().upstream_errors == 2
        assert proxy.requests_seen == 2


def test_stop_closes_connections_and_thread_and_restarts(upstream: Upstream) -> None:
    before = set(threading.enumerate())
    proxy = FaultProxy("127.0.0.1", upstream.port).start()
    assert get(f"{proxy.url}/hello") == b"hello"
    proxy.set_fault(blackhole=True)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as held:
        held.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: proxy.faults_injected["blackhole"] == 1)
        proxy.stop()
        assert held.recv(100) == b""
    assert set(threading.enumerate()) <= before
    assert not proxy.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5).close()

    # A restart comes back on the same port, so the URL a router holds stays valid.
    url = proxy.url
    proxy.clear()
    with proxy:
        assert proxy.url == url
        assert get(f"{proxy.url}/hello") == b"hello"
    assert set(threading.enumerate()) <= before


def test_set_fault_from_another_thread_during_traffic(proxy: FaultProxy) -> None:
    async def main() -> list[int]:
        statuses = []
        async with one_connection() as session:
            for i in range(40):
                if i == 20:
                    await asyncio.to_thread(proxy.set_fault, status=500)
                async with session.get(f"{proxy.url}/hello") as r:
                    statuses.append(r.status)
        return statuses

    assert asyncio.run(main()) == [200] * 20 + [500] * 20


def test_invalid_faults_are_refused(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="at most one"):
        proxy.set_fault(reset=True, empty=True)
    with pytest.raises(ValueError, match="probability"):
        proxy.set_fault(status=503, probability=1.5)
    with pytest.raises(ValueError, match="does nothing"):
        proxy.set_fault()
    with pytest.raises(ValueError, match="need status"):
        proxy.set_fault(reset=True, retry_after=1)
    with pytest.raises(ValueError, match="header"):
        Fault(status=503, headers=(("X-Evil", "a\r\nb"),))
    assert proxy.fault is None


def test_chunked_request_body_is_relayed(proxy: FaultProxy) -> None:
    request = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    response = raw_exchange(proxy.port, request)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert response.endswith(b"hello world")


@pytest.mark.parametrize(
    "head",
    [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    ],
    ids=["chunked", "expect-continue"],
)
def test_status_without_a_readable_body_answers_and_hangs_up(
    proxy: FaultProxy, head: bytes
) -> None:
    proxy.set_fault(status=503)
    response = raw_exchange(proxy.port, head)
    assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Connection: close\r\n" in response
    assert response.endswith(b'"type": "unavailable_error"}}')


# -- stripping request fields ------------------------------------------------------------------

CHAT_BODY = {
    "model": "tiny",
    "messages": [{"role": "user", "content": "Say something."}],
    "response_format": {"type": "json_object"},
    "max_tokens": 8,
}
WITHOUT_FORMAT = {k: v for k, v in CHAT_BODY.items() if k != "response_format"}


@pytest.fixture
def stripping_proxy(upstream: Upstream) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", upstream.port, strip_fields=("response_format",)) as p:
        yield p


def inspect_request(
    connection: http.client.HTTPConnection, body: bytes | Iterator[bytes], **headers: str
) -> tuple[bytes, http.client.HTTPResponse]:
    """POSTs to /inspect on ``connection`` (kept open); an iterator body goes chunked."""
    connection.request(
        "POST",
        "/inspect",
        body=body,
        headers={"Content-Type": "application/json", **headers},
        encode_chunked=not isinstance(body, bytes),
    )
    response = connection.getresponse()
    return response.read(), response


def test_strip_removes_the_field_and_fixes_content_length(stripping_proxy: FaultProxy) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", stripping_proxy.port, timeout=5)
    with contextlib.closing(connection):
        received, response = inspect_request(connection, json.dumps(CHAT_BODY).encode())
    assert response.status == 200
    assert json.loads(received) == WITHOUT_FORMAT
    assert list(json.loads(received)) == list(WITHOUT_FORMAT)  # the other fields keep order
    assert response.headers["X-Got-Content-Length"] == str(len(received))
    stats = stripping_proxy.stats()
    assert (stats.requests, stats.forwarded, stats.stripped) == (1, 1, 1)


def test_strip_on_a_keep_alive_connection_with_several_requests(
    stripping_proxy: FaultProxy,
) -> None:
    # Odd spacing shows that a body without the field goes on byte for byte.
    plain = b'{ "model" : "tiny",  "messages": [] }'
    connection = http.client.HTTPConnection("127.0.0.1", stripping_proxy.port, timeout=5)
    with contextlib.closing(connection):
        first, _ = inspect_request(connection, json.dumps(CHAT_BODY).encode())
        second, _ = inspect_request(connection, plain)
        third, _ = inspect_request(connection, json.dumps(CHAT_BODY).encode())
    assert json.loads(first) == json.loads(third) == WITHOUT_FORMAT
    assert second == plain
    stats = stripping_proxy.stats()
    assert stats.connections == 1
    assert (stats.requests, stats.forwarded, stats.stripped) == (3, 3, 2)


def test_strip_on_an_aiohttp_keep_alive_session(stripping_proxy: FaultProxy) -> None:
    async def main() -> list[object]:
        async with one_connection() as session:
            received = []
            for body in (CHAT_BODY, WITHOUT_FORMAT):
                async with session.post(f"{stripping_proxy.url}/inspect", json=body) as r:
                    received.append(json.loads(await r.read()))
            return received

    assert asyncio.run(main()) == [WITHOUT_FORMAT, WITHOUT_FORMAT]
    stats = stripping_proxy.stats()
    assert (stats.connections, stats.stripped) == (1, 1)


@pytest.mark.parametrize(
    "body",
    [
        b"response_format=json_object",
        b'{"response_format": {"type": "json_object"}',  # cut short
        b'["response_format", {"response_format": 1}]',  # JSON, but no object
        b'"response_format"',
        b'{"nested": {"response_format": 1}}',  # only top-level fields go
        b"\xff\xfe\x00{not utf-8",
    ],
    ids=["form", "truncated", "array", "string", "nested", "binary"],
)
def test_strip_leaves_other_bodies_untouched(stripping_proxy: FaultProxy, body: bytes) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", stripping_proxy.port, timeout=5)
    with contextlib.closing(connection):
        received, response = inspect_request(connection, body)
        # The connection still finds the next request.
        again, _ = inspect_request(connection, json.dumps(CHAT_BODY).encode())
    assert received == body
    assert response.headers["X-Got-Content-Length"] == str(len(body))
    assert json.loads(again) == WITHOUT_FORMAT
    assert stripping_proxy.stats().stripped == 1


def test_strip_rewrites_a_chunked_body_with_a_content_length(
    stripping_proxy: FaultProxy,
) -> None:
    encoded = json.dumps(CHAT_BODY).encode()
    pieces = iter([encoded[:10], encoded[10:11], encoded[11:]])
    connection = http.client.HTTPConnection("127.0.0.1", stripping_proxy.port, timeout=5)
    with contextlib.closing(connection):
        received, response = inspect_request(connection, pieces)
        # Decoding found the request's end, so the next one on the connection is parsed too.
        plain, second = inspect_request(connection, iter([b"hello ", b"world"]))
    assert json.loads(received) == WITHOUT_FORMAT
    assert response.headers["X-Got-Transfer-Encoding"] == "-"
    assert response.headers["X-Got-Content-Length"] == str(len(received))
    # A chunked body that is not JSON goes on chunked, as it came.
    assert plain == b"hello world"
    assert second.headers["X-Got-Transfer-Encoding"] == "chunked"
    stats = stripping_proxy.stats()
    assert (stats.connections, stats.requests, stats.stripped) == (1, 2, 1)


def test_strip_reads_chunk_extensions_and_keeps_trailers_untouched(
    stripping_proxy: FaultProxy,
) -> None:
    body = json.dumps(CHAT_BODY).encode()
    with_extension = (
        b"POST /inspect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + b"%x;name=value\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
    )
    response = raw_exchange(stripping_proxy.port, with_extension)
    assert json.loads(response.partition(b"\r\n\r\n")[2]) == WITHOUT_FORMAT
    with_trailer = with_extension.replace(b"0\r\n\r\n", b"0\r\nX-Sum: 1\r\n\r\n")
    response = raw_exchange(stripping_proxy.port, with_trailer)
    assert json.loads(response.partition(b"\r\n\r\n")[2]) == CHAT_BODY
    assert b"X-Got-Transfer-Encoding: chunked\r\n" in response
    assert stripping_proxy.stats().stripped == 1


def test_strip_decodes_a_chunked_body_arriving_in_pieces(stripping_proxy: FaultProxy) -> None:
    body = json.dumps(CHAT_BODY).encode()
    request = (
        b"POST /inspect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n"
        + b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7])
            for i in range(0, len(body), 7)
        )
        + b"0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", stripping_proxy.port), timeout=5) as sock:
        # Unbuffered small writes: the final CRLF CRLF, too, may be split between reads.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(request), 3):
            sock.sendall(request[i : i + 3])
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert json.loads(response.partition(b"\r\n\r\n")[2]) == WITHOUT_FORMAT
    assert stripping_proxy.stats().stripped == 1


def test_strip_relays_malformed_chunks_as_they_came(stripping_proxy: FaultProxy) -> None:
    request = (
        b"POST /inspect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"
    )
    # What the upstream makes of them is its business: the proxy changes nothing.
    response = raw_exchange(stripping_proxy.port, request)
    assert response.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    assert b"0x5" in response  # aiohttp quotes the chunk size it got
    assert stripping_proxy.stats().forwarded == 1
    assert stripping_proxy.stats().stripped == 0


def test_strip_leaves_bodies_past_the_cap_untouched(
    stripping_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = json.dumps(CHAT_BODY).encode()
    monkeypatch.setattr(fault_proxy, "MAX_HELD_BODY", len(body) - 1)
    connection = http.client.HTTPConnection("127.0.0.1", stripping_proxy.port, timeout=5)
    with contextlib.closing(connection):
        received, _ = inspect_request(connection, body)
        chunked, response = inspect_request(connection, iter([body[:5], body[5:]]))
    assert received == chunked == body
    assert response.headers["X-Got-Transfer-Encoding"] == "chunked"
    assert stripping_proxy.stats().stripped == 0


def test_strip_answers_expect_continue_itself(stripping_proxy: FaultProxy) -> None:
    body = json.dumps(CHAT_BODY).encode()
    head = (
        b"POST /inspect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", stripping_proxy.port), timeout=5) as sock:
        sock.sendall(head)
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(1)
        sock.sendall(body)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert response.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"X-Got-Expect: -\r\n" in response
    assert json.loads(response.partition(b"\r\n\r\n")[2]) == WITHOUT_FORMAT


def test_strip_is_switched_at_run_time_and_counted(proxy: FaultProxy) -> None:
    body = json.dumps(CHAT_BODY).encode()
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    with contextlib.closing(connection):
        assert proxy.strip_fields == ()
        untouched, _ = inspect_request(connection, body)
        # Set while the connection is open: it applies from the next request on.
        assert proxy.strip_request_fields("max_tokens", "response_format", "max_tokens") == (
            "max_tokens",
            "response_format",
        )
        both, _ = inspect_request(connection, body)
        proxy.set_fault(status=503, count=1)
        _, refused = inspect_request(connection, body)
        proxy.clear()  # a fault's end leaves stripping on
        again, _ = inspect_request(connection, body)
        proxy.strip_request_fields()
        back, _ = inspect_request(connection, body)
    assert untouched == back == body
    expected = {k: v for k, v in CHAT_BODY.items() if k not in ("max_tokens", "response_format")}
    assert json.loads(both) == json.loads(again) == expected
    assert refused.status == 503
    stats = proxy.stats()
    assert (stats.requests, stats.forwarded, stats.stripped) == (5, 4, 2)
    proxy.reset_stats()
    assert proxy.stats().stripped == 0


def test_strip_field_names_are_checked(upstream: Upstream) -> None:
    with pytest.raises(TypeError, match="not one string"):
        FaultProxy("127.0.0.1", upstream.port, strip_fields="response_format")
    proxy = FaultProxy("127.0.0.1", upstream.port)
    with pytest.raises(TypeError, match="must be a str"):
        proxy.strip_request_fields(b"response_format")  # type: ignore[arg-type]
    assert proxy.strip_fields == ()
