"""The gateway's HTTP edge: what every request passes before and after the
application, in one call.

Before the handler: take or make the request's id, answer a
``Content-Length`` over ``max_body_bytes`` with a 413 before a byte of the
body is read (before aiohttp's ``100 Continue`` too), answer CORS
preflights (no key needed). Around it: aiohttp's exceptions (404, 405, 413,
a 408 of the body timeout) and unexpected failures become JSON errors
(:mod:`errors`; a 500 names only the request id, the traceback goes to the
log). After it: ``x-request-id``, the CORS headers and the
``x-ratelimit-*`` headers on the answer.

``zeta_fast.gateway.start`` runs :meth:`Edge.handle` as the server's request
handler, around the application, not as an aiohttp middleware: measured on
the 2-core VM, a middleware that does nothing adds ~20 us a request
(aiohttp builds and looks up the middleware chain per request) and an
``on_response_prepare`` hook that does nothing ~11 us, against ~0 for this
(``Edge.middleware`` is the same for an application served another way).
So a handler that sends a stream, whose headers leave before it returns,
calls :meth:`Edge.decorate` before ``prepare``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import CIMultiDict

from zeta_fast.config import GatewaySpec
from zeta_fast.gateway.cors import Cors
from zeta_fast.gateway.errors import (
    anthropic_path,
    error_response,
    http_exception_response,
    internal_error_response,
)
from zeta_fast.gateway.metrics import GatewayCounters
from zeta_fast.gateway.ratelimit_headers import BUCKET_KEY, add_ratelimit_headers
from zeta_fast.gateway.request_id import HEADER, KEY, new_request_id, request_id, sane

__all__ = ["Edge", "RawHandler"]

log = logging.getLogger("zeta_fast.gateway")

RawHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class Edge:
    """The edge of one gateway (its settings and counters)."""

    def __init__(self, spec: GatewaySpec, counters: GatewayCounters) -> None:
        self._counters = counters
        self._max_body = spec.max_body_bytes
        # A Content-Length with fewer digits is under the limit: no int() to parse.
        self._digits = len(str(spec.max_body_bytes))
        self._cors = Cors(spec.cors_origins) if spec.cors_origins else None
        self._rate_limited = spec.rate_limit is not None or any(
            k.rate_limit is not None for k in spec.api_keys
        )
        self._warned = False

    def serving(self, handler: RawHandler) -> RawHandler:
        """``handler`` (the application's) with the edge around it."""
        return functools.partial(self.handle, handler=handler)

    @property
    def middleware(self) -> Middleware:
        """The edge as an aiohttp middleware, for an application served
        without ``zeta_fast.gateway.start`` (it then runs after routing)."""

        @web.middleware
        async def edge(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            return await self.handle(request, handler)  # type: ignore[arg-type]

        return edge

    async def handle(self, request: web.BaseRequest, handler: RawHandler) -> web.StreamResponse:
        """Serves ``request`` with ``handler`` inside the edge."""
        headers = request.headers
        rid = headers.get(HEADER)
        if rid is None or not sane(rid):
            rid = new_request_id()
        request[KEY] = rid
        declared = headers.get("Content-Length")
        cors = self._cors
        if (
            declared is not None
            and len(declared) >= self._digits
            and (length := int(declared)) > self._max_body
        ):
            response: web.StreamResponse = self._too_large(request, length)
        elif cors is not None and cors.is_preflight(request):
            response = cors.preflight(request)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = (
                    http_exception_response(request, exc)
                    if exc.status >= 400
                    # A redirect or an empty success, as it is (with the edge's headers).
                    else web.Response(
                        status=exc.status, reason=exc.reason, headers=exc.headers, body=exc.body
                    )
                )
            except ConnectionError:
                raise  # the client went away: nothing to answer
            except Exception:
                if request.writer.output_size > 0:
                    # A stream already started: no answer can replace it; the
                    # protocol's handle_error logs it and cuts the connection.
                    raise
                log.exception("request %s failed: %s %s", rid, request.method, request.path)
                response = internal_error_response(request, rid)
        if not response.prepared:
            self.decorate(request, response)
        elif not self._warned and HEADER not in response.headers:
            self._warned = True
            log.warning(
                "%s %s streamed without Edge.decorate: no x-request-id, CORS or "
                "rate-limit headers on it",
                request.method,
                request.path,
            )
        return response

    def decorate(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """Adds the edge's headers to ``response``; a handler that sends a
        stream calls it before ``prepare`` (the edge sees it only once sent)."""
        out: CIMultiDict[str] = response.headers
        out[HEADER] = request_id(request)
        cors = self._cors
        if cors is not None:
            cors.decorate(request, out)
        if self._rate_limited:
            try:
                bucket = request[BUCKET_KEY]
            except KeyError:  # a route without a key check (/health, a 404)
                return
            add_ratelimit_headers(bucket, out)

    def _too_large(self, request: web.BaseRequest, length: int) -> web.Response:
        self._counters.refused["body_too_large"] += 1
        response = error_response(
            413,
            f"request body of {length} bytes over the limit of {self._max_body} bytes",
            "invalid_request_error",
            "body_too_large",
            anthropic=anthropic_path(request.path),
        )
        # The body is not wanted: the client should not reuse the connection.
        response.force_close()
        return response
