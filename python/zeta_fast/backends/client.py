"""One OpenAI-compatible HTTP client on aiohttp, for every backend.

One ``aiohttp.ClientSession`` (one connection pool, keep-alive, TCP_NODELAY
set by aiohttp on every connection) serves all replicas of a router; a
``BackendClient`` is one replica's URL, flavour and timeouts on top of it.
Request bodies go out as bytes and answers come back as bytes, parsed only
for what the router needs (usage, finish reason), so a gateway can pass them
through untouched. httpx stays off this path: measured here, it adds ~1.2 ms
per request over aiohttp.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import aiohttp
import orjson
from yarl import URL

from zeta_fast.backends.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    StreamInterrupted,
)
from zeta_fast.backends.flavors import FLAVORS, EngineLoad, OpenAIFlavor
from zeta_fast.redact import basic_authorization, split_userinfo

__all__ = [
    "BackendClient",
    "BackendResponse",
    "StreamUsage",
    "Timeouts",
    "Usage",
    "new_session",
    "split_events",
    "stream_ends",
    "usage_of_event",
]

_JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-attempt timeouts in seconds (``None``: no limit). ``first_byte_s``
    also bounds the silence between two chunks of a stream."""

    connect_s: float | None = 2.0
    first_byte_s: float | None = 60.0
    total_s: float | None = 300.0

    def client_timeout(self, total_cap_s: float | None = None) -> aiohttp.ClientTimeout:
        """aiohttp's timeout for one attempt, the total capped at ``total_cap_s``."""
        total = self.total_s
        if total_cap_s is not None:
            total = total_cap_s if total is None else min(total, total_cap_s)
        return aiohttp.ClientTimeout(
            total=total, sock_connect=self.connect_s, sock_read=self.first_byte_s
        )


#: Per request, how much of the recent share of closed pooled connections
#: is kept (an average over ~50 requests).
_CLOSED_DECAY = 0.98
#: Above this recent share, a closed pooled connection is no keep-alive race.
_RACE_SHARE = 0.05

#: How long an idle pooled connection is kept.
KEEPALIVE_TIMEOUT_S = 4.0


def new_session(limit_per_host: int = 0) -> aiohttp.ClientSession:
    """The shared session: pooled keep-alive connections, no cookies, no
    automatic decompression work beyond what servers ask for."""
    connector = aiohttp.TCPConnector(
        limit=0,
        limit_per_host=limit_per_host,
        # Below the servers' own idle timeout (llama.cpp's and uvicorn's, so
        # vLLM's, are 5 s): a connection they closed while idle in the pool
        # would fail the next POST on it (measured in the soak test).
        keepalive_timeout=KEEPALIVE_TIMEOUT_S,
        ttl_dns_cache=300,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        json_serialize=lambda value: orjson.dumps(value).decode(),
    )


@dataclass(slots=True)
class BackendResponse:
    """A complete (non-streamed) answer: raw bytes, parsed on demand."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    latency_ms: float
    ttft_ms: float
    _data: Any = field(default=None, repr=False)

    def json(self) -> Any:
        """The body parsed (once)."""
        if self._data is None:
            self._data = orjson.loads(self.body)
        return self._data

    def usage(self) -> Usage:
        """Prompt, completion and cached prompt tokens from the body's
        ``usage`` (OpenAI's names, or the Responses and Messages APIs'
        input/output) and llama.cpp's ``timings``."""
        try:
            data = self.json()
        except orjson.JSONDecodeError:
            return Usage(0, 0, None)
        return _usage_of(data) or Usage(0, 0, None)


class Usage(NamedTuple):
    """Tokens an answer reported: its prompt's (those reused from the
    engine's cache included), its completion's, and of the prompt's those
    the engine reused (``None`` when it did not say)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None


def _count(value: object) -> int:
    # A server's token count, whatever it sent: never a crash on the data path.
    return value if isinstance(value, int) and value >= 0 else 0


def _cached(usage: dict[str, Any], data: dict[str, Any]) -> int | None:
    """Prompt tokens the engine reused: OpenAI's and vLLM's (and
    llama.cpp's) ``prompt_tokens_details.cached_tokens``, the Responses
    API's ``input_tokens_details``, Anthropic's ``cache_read_input_tokens``,
    else llama.cpp's ``timings.cache_n``."""
    for key in ("prompt_tokens_details", "input_tokens_details"):
        details = usage.get(key)
        if isinstance(details, dict):
            cached = details.get("cached_tokens")
            if isinstance(cached, int) and cached >= 0:
                return cached
    read = usage.get("cache_read_input_tokens")
    if isinstance(read, int) and read >= 0:
        return read
    timings = data.get("timings")
    if isinstance(timings, dict):
        cache_n = timings.get("cache_n")
        if isinstance(cache_n, int) and cache_n >= 0:
            return cache_n
    return None


def _usage_of(data: object) -> Usage | None:
    """The usage of a parsed body or event: at its top (OpenAI, Anthropic's
    ``message_delta``), or in the ``response`` (Responses) or ``message``
    (Anthropic's ``message_start``) it describes."""
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    for holder in ("response", "message"):
        inner = data.get(holder)
        if usage is None and isinstance(inner, dict):
            usage = inner.get("usage")
    if not isinstance(usage, dict):
        return None
    return Usage(
        _count(usage.get("prompt_tokens", usage.get("input_tokens"))),
        _count(usage.get("completion_tokens", usage.get("output_tokens"))),
        _cached(usage, data),
    )


def _map_exception(exc: BaseException, url: str) -> BackendError:
    """aiohttp's and asyncio's exceptions as the backend hierarchy."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return BackendTimeout(f"connect to {url} timed out", url=url, phase="connect")
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return BackendTimeout(f"no data from {url} in time", url=url, phase="first_byte")
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return BackendTimeout(f"request to {url} timed out", url=url, phase="total")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return StreamInterrupted(f"{url} cut the answer short: {exc}", url=url)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return BackendUnavailable(f"{url} unavailable: {exc}", url=url)
    return BackendError(f"{url}: {exc!r}", url=url)


class BackendClient:
    """One replica: its base URL, flavour and timeouts, on a shared session."""

    __slots__ = (
        "_auth",
        "_closed_share",
        "_get_headers",
        "_timeout",
        "_urls",
        "base_url",
        "flavor",
        "session",
        "timeouts",
    )

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        flavor: str | OpenAIFlavor = "openai",
        timeouts: Timeouts | None = None,
        api_key: str | None = None,
        authorization: str | None = None,
    ) -> None:
        """Every request carries ``authorization`` as its ``Authorization``
        header (``ReplicaSpec.authorization()``), else ``api_key`` as a Bearer
        token, else the ``user:password@`` of ``base_url`` as HTTP Basic auth."""
        self.session = session
        # base_url is kept (and sent to aiohttp) without userinfo: it is in
        # every error message, and aiohttp's own errors name the URL it got.
        bare, user, password = split_userinfo(base_url)
        self.base_url = bare.rstrip("/")
        self.flavor = FLAVORS[flavor] if isinstance(flavor, str) else flavor
        self.timeouts = timeouts or Timeouts()
        self._timeout = self.timeouts.client_timeout()
        if authorization is None and api_key:
            authorization = f"Bearer {api_key}"
        if authorization is None:
            authorization = basic_authorization(user, password)
        headers = dict(_JSON)
        # Built once: a request only points at these dicts.
        self._get_headers: dict[str, str] = {}
        if authorization:
            headers["Authorization"] = self._get_headers["Authorization"] = authorization
        self._auth = headers
        self._urls: dict[str, URL] = {}
        #: Recent share of requests that found their pooled connection closed
        #: (an average over ~50 requests), see ``_send``.
        self._closed_share = 0.0

    def _timeout_for(self, total_cap_s: float | None) -> aiohttp.ClientTimeout:
        # Only a deadline nearer than the attempt's own total needs a new object.
        total = self.timeouts.total_s
        if total_cap_s is None or (total is not None and total_cap_s >= total):
            return self._timeout
        return self.timeouts.client_timeout(total_cap_s)

    async def post(
        self, path: str, body: bytes, *, total_cap_s: float | None = None
    ) -> BackendResponse:
        """POSTs a JSON body and reads the whole answer.

        Raises:
            BackendStatusError: an HTTP error (with the server's message).
            BackendTimeout, BackendUnavailable: no (complete) answer.
        """
        url = self.base_url + path
        start = time.perf_counter()
        try:
            async with await self._send(url, body, total_cap_s) as response:
                first = time.perf_counter()
                raw = await response.read()
                if response.status >= 400:
                    raise self.flavor.error(response.status, raw, response.headers, url)
                end = time.perf_counter()
                return BackendResponse(
                    status=response.status,
                    body=raw,
                    headers=response.headers,
                    latency_ms=(end - start) * 1e3,
                    ttft_ms=(first - start) * 1e3,
                )
        except BackendError:
            raise
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise _map_exception(exc, url) from exc

    async def _send(
        self, url: str, body: bytes, total_cap_s: float | None
    ) -> aiohttp.ClientResponse:
        """POSTs, once more on a new connection when a pooled one turns out
        to have been closed by the server before the request got through
        (as Go's HTTP client does): servers close idle keep-alive
        connections (llama.cpp after 5 s, or after 100 requests, through a
        proxy without saying so), and a request racing that close never
        reached them. Measured in the soak test: ~1 request in 4,000. Only
        while such closes stay rare (under 5 % of the replica's recent
        requests): a replica closing connections often is at fault."""
        timeout = self._timeout_for(total_cap_s)
        target = self._urls.get(url)
        if target is None:
            # Parsed once: aiohttp would parse a str URL on every request.
            target = self._urls[url] = URL(url)
        share = self._closed_share * _CLOSED_DECAY
        try:
            response = await self.session.post(
                target, data=body, headers=self._auth, timeout=timeout
            )
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
            share += 1.0 - _CLOSED_DECAY
            self._closed_share = share
            # The race is rare (1 in ~4,000 measured); a replica that closes
            # connections without an answer often is dying or shedding load:
            # no silent second try then, so the drop counts against it and
            # the retry goes to another replica. (Telling a pooled connection
            # from a fresh one takes an aiohttp trace: ~20 us a request.)
            if not (share < _RACE_SHARE and _closed_before_answer(exc)):
                raise
        else:
            self._closed_share = share
            return response
        try:
            return await self.session.post(target, data=body, headers=self._auth, timeout=timeout)
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
            # Closed again: that counts too.
            self._closed_share = self._closed_share * _CLOSED_DECAY + (1.0 - _CLOSED_DECAY)
            raise

    async def open_stream(
        self, path: str, body: bytes, *, total_cap_s: float | None = None
    ) -> aiohttp.ClientResponse:
        """Sends a streaming request and returns once the answer's headers
        arrived (an HTTP error is raised here, before any event)."""
        url = self.base_url + path
        try:
            response = await self._send(url, body, total_cap_s)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise _map_exception(exc, url) from exc
        if response.status >= 400:
            try:
                raw = await response.read()
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                raise _map_exception(exc, url) from exc
            finally:
                response.release()
            raise self.flavor.error(response.status, raw, response.headers, url)
        return response

    async def events(
        self,
        response: aiohttp.ClientResponse,
        usage: StreamUsage | None = None,
        ends: tuple[bytes, ...] = (b"data: [DONE]",),
    ) -> AsyncIterator[bytes]:
        """The server-sent events of a streaming answer as they arrive: each
        item is every complete event of one read (``data: ...\\n\\n``,
        one or more, raw), so a relay writes once per read, not once per
        event, and holds nothing back. The final ``data: [DONE]`` is passed
        on too; ``usage`` (when given) picks up a usage block on the way.
        ``ends``: what marks a complete stream (see ``stream_ends``).

        Raises:
            StreamInterrupted: the stream ended before ``[DONE]`` or carried
                an error event (vLLM reports late errors that way); the
                events before the error are yielded first.
        """
        url = self.base_url
        buffer = b""
        done = False
        try:
            async for chunk in response.content.iter_any():
                buffer = buffer + chunk if buffer else chunk
                end = buffer.rfind(b"\n\n")
                if end < 0:
                    continue
                batch, buffer = buffer[: end + 2], buffer[end + 2 :]
                if b'"error"' in batch:
                    good: list[bytes] = []
                    for event in split_events(batch):
                        if _is_error_event(event):
                            if good:
                                yield b"".join(good)
                            raise StreamInterrupted(
                                f"{url} sent an error mid-stream: {event[:300]!r}", url=url
                            )
                        good.append(event)
                if usage is not None and b'"usage"' in batch:
                    for event in split_events(batch):
                        found = usage_of_event(event)
                        if found is not None:
                            prompt, completion, cached = found
                            usage.prompt_tokens = prompt or usage.prompt_tokens
                            usage.completion_tokens = completion or usage.completion_tokens
                            if cached is not None:
                                usage.cached_tokens = cached
                if not done:
                    for marker in ends:
                        if marker in batch:
                            done = True
                yield batch
        except BackendError:
            raise
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise StreamInterrupted(f"stream from {url} failed: {exc!r}", url=url) from exc
        finally:
            response.release()
        if not done:
            raise StreamInterrupted(f"stream from {url} ended before its last event", url=url)

    async def get(self, path: str, timeout_s: float) -> tuple[int, bytes]:
        """A GET with one overall timeout (health checks, metrics, models)."""
        url = self.base_url + path
        try:
            async with self.session.get(
                url, headers=self._get_headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
            raise _map_exception(exc, url) from exc

    async def health(self, timeout_s: float = 1.0) -> bool:
        """Whether the replica answers its health endpoint as serving."""
        try:
            status, body = await self.get(self.flavor.health_path, timeout_s)
        except BackendError:
            return False
        return self.flavor.healthy(status, body)

    async def engine_load(self, timeout_s: float = 1.0) -> EngineLoad | None:
        """The engine's own load from its metrics page (None when it has none)."""
        if self.flavor.metrics_path is None:
            return None
        status, body = await self.get(self.flavor.metrics_path, timeout_s)
        if status != 200:
            return None
        return self.flavor.engine_load(body.decode("utf-8", "replace"))

    async def models(self, timeout_s: float = 2.0) -> list[str]:
        """Model ids the server lists at ``/v1/models``."""
        status, body = await self.get("/v1/models", timeout_s)
        if status >= 400:
            raise self.flavor.error(status, body, {}, self.base_url + "/v1/models")
        data = orjson.loads(body)
        return [str(card["id"]) for card in data.get("data", []) if "id" in card]


def _closed_before_answer(exc: BaseException) -> bool:
    """Whether a POST failed on a connection the server had already closed,
    before any answer: the body could not be written, or the connection
    ended with no response at all. Refused connections are not this."""
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientConnectionResetError):
        return True
    return type(exc) is aiohttp.ClientOSError and "Can not write request" in str(exc)


def split_events(batch: bytes) -> list[bytes]:
    """The events of a batch (as ``events`` yields them), each with its ``\\n\\n``."""
    return [part + b"\n\n" for part in batch.split(b"\n\n") if part]


@dataclass(slots=True)
class StreamUsage:
    """Tokens a stream reported in its usage block (zeros until it does)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Of the prompt's, those the engine reused (None until it says).
    cached_tokens: int | None = None

    def totals(self) -> Usage:
        """What the stream reported, as an answer's ``usage()`` gives it."""
        return Usage(self.prompt_tokens, self.completion_tokens, self.cached_tokens)


#: What ends a complete stream, per route: OpenAI's chat and completions
#: end in ``[DONE]``; the Responses API in a terminal ``response.*`` event;
#: Anthropic's Messages API in ``message_stop``.
_STREAM_ENDS: dict[str, tuple[bytes, ...]] = {
    "/v1/responses": (b'"response.completed"', b'"response.incomplete"'),
    "/v1/messages": (b'"message_stop"',),
}
_DEFAULT_ENDS = (b"data: [DONE]",)


def stream_ends(path: str) -> tuple[bytes, ...]:
    """The markers of a complete stream on ``path``."""
    return _STREAM_ENDS.get(path, _DEFAULT_ENDS)


def _event_data(event: bytes) -> bytes:
    # An event is ``data: ...`` lines, optionally after an ``event: name`` line.
    start = event.find(b"data:")
    return event[start + 5 :].strip() if start >= 0 else b""


def _is_error_event(event: bytes) -> bool:
    try:
        data = orjson.loads(_event_data(event))
    except orjson.JSONDecodeError:
        return False
    if not isinstance(data, dict) or "choices" in data:
        return False
    kind = data.get("type")
    # Anthropic's and the Responses API's error events, and a failed response.
    if kind in ("error", "response.failed"):
        return True
    # Other Responses events carry the response, whose "error" is null.
    if isinstance(kind, str) and kind.startswith("response."):
        return False
    # OpenAI and vLLM: {"error": {...}} after the stream started.
    return data.get("error") is not None


def usage_of_event(event: bytes) -> Usage | None:
    """The tokens an event's usage block gives (see ``_usage_of``), 0 for a
    count it does not give; None when it carries no usage."""
    if b'"usage"' not in event or b'"usage":null' in event:
        return None
    try:
        data = orjson.loads(_event_data(event))
    except orjson.JSONDecodeError:
        return None
    return _usage_of(data)
