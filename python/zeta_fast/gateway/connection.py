"""Connection guards below the application: slow clients and malformed HTTP.

aiohttp reads request heads and answers malformed HTTP in its protocol
(``RequestHandler``), before the application and its middlewares; its
only time limit there is the keep-alive timeout, which also ends idle
pooled connections (so it cannot be short without breaking the pools of
load balancers and SDKs), and its error answers are plain text. So the
gateway serves with a ``RequestHandler`` of its own:

- **Head timeout.** A connection whose request head is not complete
  ``header_timeout_s`` after it opened (or after the head's first byte, on
  a kept-alive connection: idle time between requests is aiohttp's
  keep-alive) is closed, with a 408 when it sent part of a head (one that
  sent nothing gets no answer it did not ask for).
- **Body timeout.** A body not complete ``body_timeout_s`` after its head
  makes the handler's read fail with a 408 (answered by the middleware as a
  JSON error), and the connection closes after that answer.
- **Malformed HTTP** (a bad request line or header, a line too long)
  answers a JSON 400 in OpenAI's shape with an ``x-request-id``.

Both timeouts are checked by one sweep over the connections a few times
per timeout, not by a timer per request: a request pays two attribute reads
per received chunk, nothing else. The server also runs the application
inside :class:`~zeta_fast.gateway.edge.Edge` (request ids, JSON errors,
CORS), as its request handler.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from zeta_fast.gateway.edge import Edge
from zeta_fast.gateway.errors import anthropic_path, error_body, error_response
from zeta_fast.gateway.metrics import GatewayCounters
from zeta_fast.gateway.request_id import HEADER, new_request_id, request_id

__all__ = ["EdgeLimits", "EdgeProtocol", "EdgeRunner", "EdgeServer"]

log = logging.getLogger("zeta_fast.gateway")

#: Sweeps per timeout (the shorter one): a slow client is cut at most a
#: quarter of its timeout late.
_SWEEPS_PER_TIMEOUT = 4
_MIN_SWEEP_S = 0.02
_MAX_SWEEP_S = 1.0


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """What the connection guards enforce, and where they count refusals."""

    header_timeout_s: float
    body_timeout_s: float
    counters: GatewayCounters

    @property
    def sweep_s(self) -> float:
        shortest = min(self.header_timeout_s, self.body_timeout_s)
        return min(max(shortest / _SWEEPS_PER_TIMEOUT, _MIN_SWEEP_S), _MAX_SWEEP_S)


class EdgeProtocol(RequestHandler):
    """aiohttp's ``RequestHandler`` with head and body timeouts and JSON errors."""

    __slots__ = ("_body_request", "_body_since", "_head_bytes", "_head_since", "_limits")

    def __init__(self, manager: web.Server, *, limits: EdgeLimits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        # When the pending head began (None: no head pending), and whether
        # any byte of it arrived (only then is a 408 an answer to something).
        self._head_since: float | None = None
        self._head_bytes = False
        self._body_request: web.BaseRequest | None = None
        self._body_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_since = self._loop.time()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages:
            # A complete head (or a parse error, answered at once) is queued.
            self._head_since = None
            self._head_bytes = False
        elif self._waiter is not None and not self._head_bytes:
            # The server waits for a request: these are the first bytes of a head.
            self._head_bytes = True
            if self._head_since is None:
                self._head_since = self._loop.time()

    def check_timeouts(self, now: float) -> None:
        """Cuts this connection if its head or body is overdue (the sweep)."""
        if self.transport is None or self._force_close:
            return
        limits = self._limits
        since = self._head_since
        if since is not None:
            if (
                now - since >= limits.header_timeout_s
                and not self._messages
                and self._waiter is not None
            ):
                self._head_timed_out()
            return
        request = self._current_request
        if request is None:
            self._body_request = None
            return
        if request is not self._body_request:
            if not request.content.is_eof():
                self._body_request = request
                self._body_since = now
            return
        if not request.content.is_eof() and now - self._body_since >= limits.body_timeout_s:
            self._body_timed_out(request)

    def _head_timed_out(self) -> None:
        limits = self._limits
        limits.counters.refused["header_timeout"] += 1
        transport = self.transport
        if self._head_bytes and transport is not None:
            body = error_body(
                408,
                f"request headers not received within {limits.header_timeout_s:g}s",
                "invalid_request_error",
                "header_timeout",
            )
            head = (
                "HTTP/1.1 408 Request Timeout\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n"
                f"{HEADER}: {new_request_id()}\r\n\r\n"
            )
            transport.write(head.encode("ascii") + body)
        # Closes once the 408 is flushed.
        self.force_close()

    def _body_timed_out(self, request: web.BaseRequest) -> None:
        limits = self._limits
        limits.counters.refused["body_timeout"] += 1
        self._body_request = None
        # Close after the 408 instead of reading the rest of the body for
        # aiohttp's lingering time (up to 10 s more of a slow client).
        self._lingering_time = 0.0
        self.close()
        request.content.set_exception(
            web.HTTPRequestTimeout(
                text=f"request body not received within {limits.body_timeout_s:g}s",
                headers={"Connection": "close"},
            )
        )

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to malformed HTTP, or to a failure outside the
        middleware, as a JSON error (aiohttp's own is plain text)."""
        rid = request_id(request)
        if status >= 500:
            log.error("request %s failed: %s %s", rid, request.method, request.path, exc_info=exc)
        if request.writer.output_size > 0:
            # As aiohttp's: an answer already started cannot be replaced.
            raise ConnectionError("the response started; the error cannot be sent")
        if status >= 500:
            text = f"the gateway failed to handle the request (request id {rid})"
            kind, code = "server_error", "internal_error"
        else:
            self._limits.counters.refused["bad_http"] += 1
            detail = (message or "").strip().splitlines()
            log.info(
                "malformed request from %s (request id %s): %s",
                request.remote,
                rid,
                detail[0] if detail else status,
            )
            text = "malformed HTTP request" + (f": {detail[0][:200]}" if detail else "")
            kind, code = "invalid_request_error", "bad_http"
        response = error_response(
            status,
            text,
            kind,
            code,
            anthropic=anthropic_path(request.path),
            headers={HEADER: rid},
        )
        response.force_close()
        return response


class EdgeServer(web.Server):
    """aiohttp's ``Server`` making :class:`EdgeProtocol` connections, with the
    sweep that enforces their timeouts."""

    def __init__(self, plain: web.Server, limits: EdgeLimits, edge: Edge | None = None) -> None:
        super().__init__(
            # The edge around the application as the server's handler: as
            # an aiohttp middleware it would cost ~20 us a request (edge.py).
            plain.request_handler if edge is None else edge.serving(plain.request_handler),
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            # The connections' settings (the runner's access log, the app's
            # debug and handler_args) are kept only there.
            **plain._kwargs,
        )
        self._limits = limits
        self._sweeper: asyncio.TimerHandle | None = self._loop.call_later(
            limits.sweep_s, self._sweep
        )

    def __call__(self) -> EdgeProtocol:
        return EdgeProtocol(self, loop=self._loop, limits=self._limits, **self._kwargs)

    def _sweep(self) -> None:
        now = self._loop.time()
        # A copy: a cut connection leaves the dict while this walks it.
        for protocol in list(self._connections):
            if isinstance(protocol, EdgeProtocol):
                protocol.check_timeouts(now)
        self._sweeper = self._loop.call_later(self._limits.sweep_s, self._sweep)

    async def shutdown(self, timeout: float | None = None) -> None:
        # Slow clients are still cut while requests in flight finish.
        try:
            await super().shutdown(timeout)
        finally:
            if self._sweeper is not None:
                self._sweeper.cancel()
                self._sweeper = None


class EdgeRunner(web.AppRunner):
    """``web.AppRunner`` serving through :class:`EdgeServer`, with ``edge``
    (:class:`~zeta_fast.gateway.edge.Edge`) around the application."""

    def __init__(
        self, app: web.Application, limits: EdgeLimits, edge: Edge | None = None, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits
        self._edge = edge

    async def _make_server(self) -> web.Server:
        return EdgeServer(await super()._make_server(), self._limits, self._edge)
