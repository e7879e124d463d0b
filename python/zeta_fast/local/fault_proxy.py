"""A fault-injecting TCP proxy for testing a router against a real HTTP server.

``FaultProxy`` listens on 127.0.0.1 and relays bytes to one upstream server
(a llama.cpp server, say). Faults are switched on and off at run time from
any thread and hit individual HTTP/1.1 requests, also on keep-alive
connections opened before the fault was set::

    with FaultProxy("127.0.0.1", server_port) as proxy:
        proxy.set_fault(status=503, probability=0.5)
        ...  # point the router at proxy.url
        proxy.clear()

The proxy understands just enough HTTP/1.1 to find where requests begin:
the request line, the headers and a ``Content-Length`` body. A forwarded
request with a chunked body or an ``Upgrade`` header turns the rest of its
connection into a plain byte relay, where no further faults apply; one that
the proxy answers itself (``status``) without reading its body (chunked, or
``Expect: 100-continue``) gets ``Connection: close``. Requests are expected
one at a time per connection (no pipelining), as common HTTP clients send them.

Apart from faults, the proxy can strip named top-level fields from the JSON
bodies of the requests it forwards, to play a server that never receives
(and so never honours) them::

    proxy.strip_request_fields("response_format")  # or FaultProxy(..., strip_fields=...)

A request is then held until its whole body is in. A body that is a JSON
object with any of the fields goes on without them, re-serialised compactly
(the values are unchanged) with its ``Content-Length`` set to match; any
other body, and a request the proxy does not forward, is not changed. A
chunked body is decoded to be read and, when stripped, forwarded with a
``Content-Length`` instead; one whose chunks do not parse, that carries
trailer fields or that exceeds ``MAX_HELD_BODY`` bytes passes untouched (a
chunked one then as a byte relay, as above). With ``Expect: 100-continue``
the proxy answers ``100 Continue`` itself and forwards the request without
that header. Compressed bodies (``Content-Encoding``) are not JSON to the
proxy and pass untouched.

Size: one file because every fault shares the relay loop and its timing; a test
fixture, not a product path.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import random
import socket
import struct
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Final, Literal

__all__ = ["FAULT_KINDS", "MAX_HELD_BODY", "Fault", "FaultKind", "FaultProxy", "FaultProxyStats"]

_log = logging.getLogger(__name__)

FaultKind = Literal["delay", "reset", "empty", "blackhole", "status", "cut"]
"""The name a fault is counted under in ``FaultProxyStats.faults``."""

FAULT_KINDS: Final[tuple[FaultKind, ...]] = (
    "delay",
    "reset",
    "empty",
    "blackhole",
    "status",
    "cut",
)
"""Every fault kind, in a stable order."""

_READ_SIZE: Final = 64 * 1024
# A head larger than this is not an HTTP request head worth parsing.
_MAX_HEAD: Final = 64 * 1024
_CONNECT_TIMEOUT_S: Final = 10.0
_THREAD_TIMEOUT_S: Final = 10.0

MAX_HELD_BODY: Final = 8 * 1024 * 1024
"""The largest request body held back to strip fields from; larger ones pass untouched.

LLM request bodies are kilobytes; the cap keeps an upload from being buffered whole.
"""
# What a chunk-size line may hold (size, extensions) before the body counts as malformed.
_MAX_CHUNK_LINE: Final = 4096
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"

# The error types a llama.cpp server puts in its OpenAI-style error bodies.
_ERROR_TYPES: Final[Mapping[int, str]] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "server_error",
    501: "not_supported_error",
    503: "unavailable_error",
}


@dataclass(frozen=True)
class Fault:
    """One fault setting, as made by ``FaultProxy.set_fault`` (see there).

    At most one of ``reset``, ``empty``, ``blackhole``, ``status`` and
    ``cut_after_bytes`` is set; ``delay_ms`` may come with any of them.
    ``count`` is ``None`` for a fault that stays until cleared.
    """

    delay_ms: float = 0.0
    reset: bool = False
    empty: bool = False
    blackhole: bool = False
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    message: str | None = None
    error_type: str | None = None
    cut_after_bytes: int | None = None
    probability: float = 1.0
    count: int | None = None

    def __post_init__(self) -> None:
        actions = sum(
            (
                self.reset,
                self.empty,
                self.blackhole,
                self.status is not None,
                self.cut_after_bytes is not None,
            )
        )
        if actions > 1:
            raise ValueError(
                "at most one of reset, empty, blackhole, status and cut_after_bytes may be set"
            )
        if not self.delay_ms >= 0:
            raise ValueError(f"delay_ms must be >= 0, got {self.delay_ms!r}")
        if actions == 0 and self.delay_ms == 0:
            raise ValueError("the fault does nothing: set delay_ms or a failure")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP error status (400..599), got {self.status}")
        if self.cut_after_bytes is not None and self.cut_after_bytes < 0:
            raise ValueError(f"cut_after_bytes must be >= 0, got {self.cut_after_bytes}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {self.probability!r}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        for name, value in self.headers:
            # A stray line break would let a header smuggle in more of the response.
            if any(c in name + value for c in "\r\n") or not name or ":" in name:
                raise ValueError(f"invalid response header {name!r}: {value!r}")

    @property
    def kinds(self) -> tuple[FaultKind, ...]:
        """The kinds this fault is counted under when it hits a request."""
        kinds: list[FaultKind] = []
        if self.delay_ms > 0:
            kinds.append("delay")
        if self.reset:
            kinds.append("reset")
        if self.empty:
            kinds.append("empty")
        if self.blackhole:
            kinds.append("blackhole")
        if self.status is not None:
            kinds.append("status")
        if self.cut_after_bytes is not None:
            kinds.append("cut")
        return tuple(kinds)


@dataclass(frozen=True)
class FaultProxyStats:
    """A snapshot of a proxy's counters.

    Attributes:
        requests: requests seen (every request head parsed, faulted or not).
        forwarded: requests sent on to the upstream server.
        faults: faults injected, per kind; every kind is present.
        connections: client connections accepted.
        open_connections: client connections open now.
        upstream_errors: times the upstream server could not be reached.
        stripped: forwarded requests whose JSON body had fields stripped
            (see ``FaultProxy.strip_request_fields``).
    """

    requests: int
    forwarded: int
    faults: Mapping[FaultKind, int]
    connections: int
    open_connections: int
    upstream_errors: int
    stripped: int = 0


@dataclass(frozen=True)
class _Head:
    """What the proxy needs to know about one request head."""

    content_length: int
    keep_alive: bool
    # The end of the request cannot be found (chunked body, protocol upgrade).
    opaque: bool
    # The client waits for "100 Continue" before it sends the body.
    expects_continue: bool
    # The body is chunked and nothing else hides where the request ends, so
    # decoding the chunks finds it (done only to strip fields).
    decodable_chunked: bool = False


def _parse_head(head: bytes) -> _Head:
    lines = head.split(b"\r\n")
    parts = lines[0].split()
    version = parts[2].upper() if len(parts) == 3 else b"HTTP/1.1"
    content_length = 0
    bad_request_line = len(parts) != 3
    opaque = bad_request_line
    chunked = upgrade = False
    expects_continue = False
    connection: set[bytes] = set()
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            try:
                content_length = int(value)
            except ValueError:
                opaque = True
            if content_length < 0:
                opaque = True
        elif name == b"upgrade":
            opaque = upgrade = True
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            opaque = chunked = True
        elif name == b"connection":
            connection.update(token.strip() for token in value.lower().split(b","))
        elif name == b"expect" and value.lower() == b"100-continue":
            expects_continue = True
    if version == b"HTTP/1.0":
        keep_alive = b"keep-alive" in connection
    else:
        keep_alive = b"close" not in connection
    # With chunked framing a Content-Length, valid or not, is ignored (RFC 9112, 6.3).
    decodable = chunked and not (upgrade or bad_request_line)
    return _Head(max(content_length, 0), keep_alive, opaque, expects_continue, decodable)


def _without_headers(head: bytes, names: tuple[bytes, ...]) -> bytes:
    """The request head less the header lines called any of ``names`` (lower case)."""
    lines = head[:-4].split(b"\r\n")
    kept = [lines[0]]
    kept += [line for line in lines[1:] if line.partition(b":")[0].strip().lower() not in names]
    return b"\r\n".join(kept) + b"\r\n\r\n"


def _with_content_length(head: bytes, length: int) -> bytes:
    """The request head framed by ``Content-Length: length`` (any chunked framing dropped)."""
    head = _without_headers(head, (b"content-length", b"transfer-encoding"))
    return head[:-2] + b"Content-Length: %d\r\n\r\n" % length


def _strip_json_fields(body: bytes, fields: tuple[str, ...]) -> bytes | None:
    """``body`` without the top-level ``fields``; None if it is no JSON object or has none."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers bytes that are not UTF-8/16/32 as well as bad JSON.
        return None
    if not isinstance(document, dict) or not any(field in document for field in fields):
        return None
    for field in fields:
        document.pop(field, None)
    # ASCII escapes keep any lone surrogate a client escaped encodable.
    return json.dumps(document, separators=(",", ":")).encode()


_HEX_DIGITS: Final = frozenset(b"0123456789abcdefABCDEF")


@dataclass(frozen=True)
class _Dechunked:
    """A chunked body decoded: its payload and where its last byte lies."""

    payload: bytes
    # Bytes of the chunked encoding, the final CRLF included.
    size: int
    has_trailers: bool


def _dechunk(data: bytes | bytearray) -> _Dechunked | None:
    """Decodes the chunked body at the start of ``data``; None while it is incomplete.

    Raises:
        ValueError: the bytes are no chunked encoding.
    """
    pos = 0
    payload = bytearray()
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            if len(data) - pos > _MAX_CHUNK_LINE:
                raise ValueError("chunk-size line too long")
            return None
        # int() alone would also take "0x", "_", signs and spaces, which HTTP does not.
        size_field = bytes(data[pos:line_end]).partition(b";")[0].rstrip(b" \t")
        if not size_field or not set(size_field) <= _HEX_DIGITS:
            raise ValueError(f"bad chunk size {size_field!r}")
        size = int(size_field, 16)
        pos = line_end + 2
        if size == 0:
            break
        if len(data) < pos + size + 2:
            return None
        if data[pos + size : pos + size + 2] != b"\r\n":
            raise ValueError("chunk data not followed by CRLF")
        payload += data[pos : pos + size]
        pos += size + 2
    has_trailers = False
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            if len(data) - pos > _MAX_CHUNK_LINE:
                raise ValueError("trailer line too long")
            return None
        if line_end == pos:
            return _Dechunked(bytes(payload), pos + 2, has_trailers)
        has_trailers = True
        pos = line_end + 2


class _HeldRequest:
    """A forwarded request kept back until its body is complete, to strip fields from it."""

    def __init__(self, head: bytes, parsed: _Head, fields: tuple[str, ...]) -> None:
        self.head = head
        self.chunked = parsed.decodable_chunked
        self.body_left = parsed.content_length
        self.fields = fields
        # The body's bytes as the client sent them.
        self.raw = bytearray()
        self._decoded: _Dechunked | None = None

    def feed(self, buf: bytearray) -> Literal["more", "done", "relay"]:
        """Moves the request's bytes out of ``buf``.

        Returns "more" while the body is incomplete, "done" once it is whole
        (later bytes stay in ``buf``), and "relay" for a chunked body that
        cannot be decoded or grows past ``MAX_HELD_BODY``: the caller sends
        it on as it came.
        """
        if not self.chunked:
            taken = buf[: self.body_left]
            del buf[: len(taken)]
            self.raw += taken
            self.body_left -= len(taken)
            return "done" if self.body_left == 0 else "more"
        seen = len(self.raw)
        self.raw += buf
        buf.clear()
        # Checked before decoding, so the outcome does not depend on how the bytes arrived.
        if len(self.raw) > MAX_HELD_BODY:
            return "relay"
        # A chunked body ends in CRLF CRLF; decoding only when one has just arrived
        # keeps a body sent in many small reads from being re-parsed for each.
        if b"\r\n\r\n" not in self.raw[max(seen - 3, 0) :]:
            return "more"
        try:
            decoded = _dechunk(self.raw)
        except ValueError:
            return "relay"
        if decoded is None:
            return "more"
        buf[:0] = self.raw[decoded.size :]
        del self.raw[decoded.size :]
        self._decoded = decoded
        return "done"

    def as_received(self) -> bytes:
        """The request as it came (less an ``Expect`` the proxy answered)."""
        return self.head + bytes(self.raw)

    def stripped(self) -> bytes | None:
        """The complete request without the fields; None when it is to go on as it came."""
        if self._decoded is not None:
            # Trailer fields would have to move into the head: rare enough to leave alone.
            if self._decoded.has_trailers:
                return None
            body = _strip_json_fields(self._decoded.payload, self.fields)
        else:
            body = _strip_json_fields(bytes(self.raw), self.fields)
        if body is None:
            return None
        return _with_content_length(self.head, len(body)) + body


def _canned_response(fault: Fault, keep_alive: bool) -> bytes:
    status = fault.status if fault.status is not None else 503
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    error_type = fault.error_type or _ERROR_TYPES.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
    message = fault.message if fault.message is not None else f"injected fault: {phrase}"
    body = json.dumps({"error": {"code": status, "message": message, "type": error_type}}).encode()
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{name}: {value}" for name, value in fault.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # Streamed tokens must leave as soon as they arrive, not wait for Nagle.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Session:
    """One client connection and, once a request is forwarded, its upstream one."""

    def __init__(
        self, proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.client_reader = reader
        self.client_writer = writer
        self.up_reader: asyncio.StreamReader | None = None
        self.up_writer: asyncio.StreamWriter | None = None
        self.up_task: asyncio.Task[None] | None = None
        self.closing = False
        # Response bytes still allowed through before the connection is cut.
        self.cut_remaining: int | None = None
        # Whether the client wants the connection kept after the current request.
        self.keep_alive = True

    def close(self) -> None:
        """Closes both sides, letting already written bytes go out first."""
        self.closing = True
        self.client_writer.close()
        if self.up_writer is not None:
            self.up_writer.close()

    def abort(self, *, reset: bool = False) -> None:
        """Drops both sides at once; with ``reset`` the client gets a TCP RST."""
        self.closing = True
        if reset:
            sock = self.client_writer.get_extra_info("socket")
            if sock is not None:
                # Linger 0: close() sends RST, so the client sees ECONNRESET, not EOF.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.client_writer.transport.abort()
        if self.up_writer is not None:
            self.up_writer.transport.abort()

    async def run(self) -> None:
        """Relays until either side closes, a fault ends it, or the proxy stops."""
        try:
            half_closed = await self._pump_client()
            if half_closed and self.up_writer is not None and self.up_task is not None:
                # The client only stopped sending: the upstream may still owe it a response.
                with contextlib.suppress(OSError, RuntimeError):
                    if self.up_writer.can_write_eof():
                        self.up_writer.write_eof()
                await self.up_task
        finally:
            self.close()
            if self.up_task is not None:
                self.up_task.cancel()
                await asyncio.gather(self.up_task, return_exceptions=True)
            for writer in (self.client_writer, self.up_writer):
                if writer is not None:
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()

    async def _pump_client(self) -> bool:
        """Client -> upstream; returns whether the client half-closed cleanly."""
        buf = bytearray()
        body_left = 0
        fault: Fault | None = None
        # A request kept back until its body is whole, to strip fields from it.
        held: _HeldRequest | None = None
        # http: parse requests; opaque: relay bytes as they are; discard: swallow all.
        mode: Literal["http", "opaque", "discard"] = "http"
        while True:
            try:
                data = await self.client_reader.read(_READ_SIZE)
            except OSError:
                self.close()
                return False
            if not data:
                return not self.closing
            if mode == "discard":
                continue
            if mode == "opaque":
                if not await self._to_upstream(data):
                    return False
                continue
            buf += data
            while buf:
                if held is not None:
                    progress = held.feed(buf)
                    if progress == "more":
                        break
                    request = held.stripped() if progress == "done" else None
                    if not await self._to_upstream(request or held.as_received()):
                        return False
                    self.proxy._count_forwarded(stripped=request is not None)
                    held = None
                    if progress == "relay":
                        # The request's end is unknown, as for any chunked body left alone.
                        mode = "opaque"
                        if buf and not await self._to_upstream(bytes(buf)):
                            return False
                        buf.clear()
                        break
                    continue
                if body_left > 0:
                    chunk = bytes(buf[:body_left])
                    del buf[: len(chunk)]
                    body_left -= len(chunk)
                    if _forwards(fault) and not await self._to_upstream(chunk):
                        return False
                    if body_left == 0 and not await self._end_request(fault):
                        return False
                    continue
                # Clients may send stray line breaks between requests (RFC 9112, 2.2).
                while buf[:2] == b"\r\n":
                    del buf[:2]
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > _MAX_HEAD:
                        mode = "opaque"
                        if not await self._to_upstream(bytes(buf)):
                            return False
                        buf.clear()
                    break
                head_bytes = bytes(buf[: end + 4])
                del buf[: end + 4]
                head = _parse_head(head_bytes)
                fault = self.proxy._decide()
                if fault is not None and fault.reset:
                    if fault.delay_ms > 0:
                        await asyncio.sleep(fault.delay_ms / 1000)
                    self.abort(reset=True)
                    return False
                if fault is not None and fault.blackhole:
                    mode = "discard"
                    self.proxy._hold(self)
                    buf.clear()
                    break
                self.keep_alive = head.keep_alive
                self.cut_remaining = fault.cut_after_bytes if fault is not None else None
                if fault is not None and fault.delay_ms > 0:
                    await asyncio.sleep(fault.delay_ms / 1000)
                if not _forwards(fault) and (head.opaque or head.expects_continue):
                    # The end of the body cannot be found, or it may never come:
                    # answer now and hang up once the client has read the answer.
                    self._answer_and_linger(fault)
                    mode = "discard"
                    buf.clear()
                    break
                fields = self.proxy.strip_fields
                if fields and _forwards(fault) and _holdable(head):
                    if head.expects_continue:
                        # The upstream cannot be asked: its head would need the final length.
                        self.client_writer.write(_CONTINUE)
                        head_bytes = _without_headers(head_bytes, (b"expect",))
                    held = _HeldRequest(head_bytes, head, fields)
                    continue
                if _forwards(fault):
                    if not await self._to_upstream(head_bytes):
                        return False
                    self.proxy._count_forwarded()
                if head.opaque:
                    mode = "opaque"
                    if buf and not await self._to_upstream(bytes(buf)):
                        return False
                    buf.clear()
                    break
                body_left = head.content_length
                if body_left == 0 and not await self._end_request(fault):
                    return False

    def _answer_and_linger(self, fault: Fault | None) -> None:
        """Answers a request whose body is not read, then half-closes the connection."""
        # Closing outright with unread request bytes would send a RST that can
        # destroy the answer in flight; the client hangs up once it has read it.
        if fault is not None and fault.status is not None:
            self.client_writer.write(_canned_response(fault, keep_alive=False))
        with contextlib.suppress(OSError, RuntimeError):
            if self.client_writer.can_write_eof():
                self.client_writer.write_eof()

    async def _end_request(self, fault: Fault | None) -> bool:
        """Answers a fully read request that is not forwarded; False ends the connection."""
        if fault is None or _forwards(fault):
            return True
        if fault.empty or self.closing:
            self.close()
            return False
        self.client_writer.write(_canned_response(fault, self.keep_alive))
        try:
            await self.client_writer.drain()
        except OSError:
            self.close()
            return False
        if not self.keep_alive:
            self.close()
            return False
        return True

    async def _to_upstream(self, data: bytes) -> bool:
        """Sends to the upstream, connecting first if needed; False ends the connection."""
        if self.closing:
            return False
        writer = self.up_writer or await self._connect()
        if writer is None:
            return False
        writer.write(data)
        try:
            await writer.drain()
        except OSError:
            self.close()
            return False
        return True

    async def _connect(self) -> asyncio.StreamWriter | None:
        """Opens the upstream connection; None (and the client hung up on) if it fails."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.proxy.upstream_host, self.proxy.upstream_port),
                _CONNECT_TIMEOUT_S,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            _log.debug("upstream %s unreachable: %s", self.proxy._upstream_label, exc)
            self.proxy._count_upstream_error()
            self.close()
            return None
        self.up_reader, self.up_writer = reader, writer
        _set_nodelay(writer)
        self.up_task = asyncio.get_running_loop().create_task(self._pump_upstream())
        return writer

    async def _pump_upstream(self) -> None:
        """Upstream -> client, chunk by chunk, cutting the stream when told to."""
        assert self.up_reader is not None
        try:
            while True:
                data = await self.up_reader.read(_READ_SIZE)
                if not data:
                    break
                cut = self.cut_remaining
                if cut is not None and len(data) >= cut:
                    self.client_writer.write(data[:cut])
                    await self.client_writer.drain()
                    break
                if cut is not None:
                    self.cut_remaining = cut - len(data)
                self.client_writer.write(data)
                await self.client_writer.drain()
        except OSError:
            pass
        finally:
            # The upstream hung up (or the stream was cut): so does the proxy.
            self.close()


def _holdable(head: _Head) -> bool:
    """Whether the proxy can find this request's whole body and hold it to strip fields."""
    if head.decodable_chunked:
        return True
    return not head.opaque and 0 < head.content_length <= MAX_HELD_BODY


def _field_names(names: Iterable[str]) -> tuple[str, ...]:
    """Validated field names, in order, without repeats."""
    if isinstance(names, (str, bytes)):
        # A lone "response_format" would otherwise be taken letter by letter.
        raise TypeError(f"strip_fields takes a sequence of names, not one string: {names!r}")
    fields: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"a field name must be a str, got {type(name).__name__}: {name!r}")
        if name not in fields:
            fields.append(name)
    return tuple(fields)


def _forwards(fault: Fault | None) -> bool:
    """Whether a request under this fault goes on to the upstream server."""
    return fault is None or not (fault.empty or fault.blackhole or fault.status is not None)


class FaultProxy:
    """A TCP proxy on 127.0.0.1 that injects faults into HTTP requests.

    The proxy runs its own event loop in a daemon thread, so it serves
    synchronous tests and code on any other event loop alike. All methods
    are thread-safe; ``stop()`` must not be called from the proxy's own
    thread.

    Args:
        upstream_host: host of the server to relay to.
        upstream_port: its port.
        listen_port: port to listen on; 0 picks a free one at the first
            ``start()``, which later restarts keep.
        seed: seed of the random draws behind ``probability``.
        strip_fields: top-level JSON fields to strip from forwarded request
            bodies from the start (see ``strip_request_fields``).

    Raises:
        TypeError: ``strip_fields`` is a single string or holds a non-string.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        listen_port: int = 0,
        seed: int = 0,
        strip_fields: Iterable[str] = (),
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self._port = listen_port
        self._upstream_label = f"{upstream_host}:{upstream_port}"
        # Guards the fault, the random draws and the counters.
        self._lock = threading.Lock()
        # Serialises start() and stop().
        self._state_lock = threading.Lock()
        self._rng = random.Random(seed)
        self._fault: Fault | None = None
        self._remaining: int | None = None
        self._requests = 0
        self._forwarded = 0
        self._connections = 0
        self._open_connections = 0
        self._upstream_errors = 0
        self._stripped = 0
        self._faults: dict[FaultKind, int] = dict.fromkeys(FAULT_KINDS, 0)
        self._strip_fields = _field_names(strip_fields)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Touched only on the proxy's loop.
        self._server: asyncio.Server | None = None
        self._sessions: dict[_Session, asyncio.Task[None]] = {}
        self._held: set[_Session] = set()

    # -- life cycle -------------------------------------------------------

    def start(self) -> FaultProxy:
        """Starts listening; returns the proxy. A stopped proxy may be started again."""
        with self._state_lock:
            if self._thread is not None:
                raise RuntimeError("FaultProxy is already running")
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=self._run_loop,
                args=(loop,),
                name=f"FaultProxy->{self._upstream_label}",
                daemon=True,
            )
            thread.start()
            try:
                future = asyncio.run_coroutine_threadsafe(self._listen(), loop)
                self._port = future.result(_THREAD_TIMEOUT_S)
            except BaseException:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(_THREAD_TIMEOUT_S)
                raise
            self._loop, self._thread = loop, thread
        return self

    def stop(self) -> None:
        """Closes the listener and every open connection and joins the thread.

        Does nothing when the proxy is not running.
        """
        with self._state_lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            if threading.current_thread() is thread:
                raise RuntimeError("FaultProxy.stop() cannot run on the proxy's own thread")
            self._loop = self._thread = None
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_THREAD_TIMEOUT_S)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(_THREAD_TIMEOUT_S)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        if self._port == 0:
            raise RuntimeError("FaultProxy has not been started")
        return self._port

    @property
    def url(self) -> str:
        """The proxy's base URL, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the proxy is accepting connections."""
        return self._thread is not None

    # -- faults -----------------------------------------------------------

    def set_fault(
        self,
        *,
        delay_ms: float = 0.0,
        reset: bool = False,
        empty: bool = False,
        blackhole: bool = False,
        status: int | None = None,
        retry_after: int | None = None,
        headers: Mapping[str, str] | None = None,
        message: str | None = None,
        error_type: str | None = None,
        cut_after_bytes: int | None = None,
        probability: float = 1.0,
        count: int | None = None,
        seed: int | None = None,
    ) -> Fault:
        """Replaces the current fault; it applies from the next request on.

        Args:
            delay_ms: latency added before the request is forwarded (or
                answered, or reset); may come with one of the faults below.
            reset: reset the connection (the client sees ECONNRESET).
            empty: close the connection without a reply.
            blackhole: swallow the request and never answer; the connection
                is held until the fault is cleared or replaced, or the proxy
                stops, and then closed.
            status: answer with this error status and an OpenAI-style JSON
                error body instead of forwarding; the connection stays usable.
            retry_after: with ``status``, the ``Retry-After`` header, seconds.
            headers: with ``status``, more response headers.
            message: with ``status``, the error message.
            error_type: with ``status``, the error ``type``; by default the
                one a llama.cpp server uses (``unavailable_error`` for 503).
            cut_after_bytes: forward the request, then close the connection
                after this many bytes of the response (status line included).
            probability: chance that a request is hit (seeded draws).
            count: the fault clears itself after hitting this many requests.
            seed: reseed the random draws.

        Returns:
            The fault now in force.

        Raises:
            ValueError: for an inconsistent or out-of-range setting.
        """
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = str(retry_after)
        if extra and status is None:
            raise ValueError("retry_after and headers need status")
        fault = Fault(
            delay_ms=delay_ms,
            reset=reset,
            empty=empty,
            blackhole=blackhole,
            status=status,
            headers=tuple(extra.items()),
            message=message,
            error_type=error_type,
            cut_after_bytes=cut_after_bytes,
            probability=probability,
            count=count,
        )
        with self._lock:
            if seed is not None:
                self._rng.seed(seed)
            self._fault = fault
            self._remaining = count
        self._release_held()
        return fault

    def clear(self) -> None:
        """Removes the fault and closes connections held by a blackhole."""
        with self._lock:
            self._fault = None
            self._remaining = None
        self._release_held()

    @property
    def fault(self) -> Fault | None:
        """The fault in force, its ``count`` being the hits left; None if none."""
        with self._lock:
            if self._fault is None or self._remaining is None:
                return self._fault
            return dataclasses.replace(self._fault, count=self._remaining)

    # -- request rewriting ------------------------------------------------

    def strip_request_fields(self, *names: str) -> tuple[str, ...]:
        """Strips these top-level fields from forwarded JSON request bodies.

        Replaces the names set before, from the next request on (on open
        keep-alive connections too); no names stops stripping. ``clear()``
        leaves stripping as it is: it is not a fault. A request that loses
        a field counts in ``stats().stripped``; bodies that are not JSON
        objects, or have none of the fields, go on byte for byte (see the
        module docstring for chunked bodies and ``Expect``).

        Args:
            names: the field names, e.g. ``"response_format"``.

        Returns:
            The names in force, without repeats.

        Raises:
            TypeError: a name is not a string.
        """
        fields = _field_names(names)
        with self._lock:
            self._strip_fields = fields
        return fields

    @property
    def strip_fields(self) -> tuple[str, ...]:
        """The top-level JSON fields stripped from forwarded request bodies."""
        with self._lock:
            return self._strip_fields

    # -- counters ---------------------------------------------------------

    def stats(self) -> FaultProxyStats:
        """A consistent snapshot of all counters."""
        with self._lock:
            return FaultProxyStats(
                requests=self._requests,
                forwarded=self._forwarded,
                faults=dict(self._faults),
                connections=self._connections,
                open_connections=self._open_connections,
                upstream_errors=self._upstream_errors,
                stripped=self._stripped,
            )

    @property
    def requests_seen(self) -> int:
        """Requests seen so far, faulted or not."""
        with self._lock:
            return self._requests

    @property
    def faults_injected(self) -> dict[FaultKind, int]:
        """Faults injected so far, per kind (every kind present)."""
        with self._lock:
            return dict(self._faults)

    def reset_stats(self) -> None:
        """Sets every counter back to zero, except ``open_connections``."""
        with self._lock:
            self._requests = self._forwarded = self._connections = self._upstream_errors = 0
            self._stripped = 0
            self._faults = dict.fromkeys(FAULT_KINDS, 0)

    # -- internals --------------------------------------------------------

    def _decide(self) -> Fault | None:
        """Counts a new request and draws the fault that hits it, if any."""
        with self._lock:
            self._requests += 1
            fault = self._fault
            if fault is None:
                return None
            if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                return None
            if self._remaining is not None:
                self._remaining -= 1
                if self._remaining <= 0:
                    self._fault = self._remaining = None
            for kind in fault.kinds:
                self._faults[kind] += 1
        _log.debug("fault %s on a request to %s", "+".join(fault.kinds), self._upstream_label)
        return fault

    def _count_forwarded(self, *, stripped: bool = False) -> None:
        with self._lock:
            self._forwarded += 1
            self._stripped += stripped

    def _count_upstream_error(self) -> None:
        with self._lock:
            self._upstream_errors += 1

    def _hold(self, session: _Session) -> None:
        self._held.add(session)

    def _release_held(self) -> None:
        loop = self._loop
        if loop is None:
            return
        # The loop may be closing under a concurrent stop(), which closes them anyway.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._close_held)

    def _close_held(self) -> None:
        held, self._held = self._held, set()
        for session in held:
            session.close()

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            # Normally nothing is left; anything that is must not outlive the loop.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self._port)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        _set_nodelay(writer)
        session = _Session(self, reader, writer)
        self._sessions[session] = task
        with self._lock:
            self._connections += 1
            self._open_connections += 1
        try:
            await session.run()
        except asyncio.CancelledError:
            # Only _shutdown() cancels a session, and ending it quietly keeps Python
            # 3.11's start_server from logging the cancelled task as an error.
            pass
        finally:
            self._sessions.pop(session, None)
            self._held.discard(session)
            with self._lock:
                self._open_connections -= 1

    async def _shutdown(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        sessions = list(self._sessions.items())
        for session, task in sessions:
            session.abort()
            task.cancel()
        await asyncio.gather(*(task for _, task in sessions), return_exceptions=True)
        self._held.clear()
        if server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), _THREAD_TIMEOUT_S)
