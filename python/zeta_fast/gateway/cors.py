"""CORS for browser apps (``gateway.cors_origins``).

A preflight (``OPTIONS`` with ``Origin`` and
``Access-Control-Request-Method``) from an allowed origin is answered at
once, on any path and without a key (browsers send no credentials on
preflights); one from any other origin gets a 403 without CORS headers, so
the browser refuses the request. Answers to an allowed origin name it in
``Access-Control-Allow-Origin`` (echoed, never ``*``: an app that sends an
``Authorization`` header needs its own origin there) and expose the
headers a client reads (the routing headers, ids, rate limits). No origins
configured: no CORS headers at all.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from aiohttp import web
from multidict import CIMultiDict

from zeta_fast.gateway.errors import anthropic_path, error_response

__all__ = ["ALLOWED_HEADERS", "EXPOSED_HEADERS", "MAX_AGE_S", "Cors"]

#: Request headers a browser app may send (besides what a preflight asks).
ALLOWED_HEADERS = (
    "authorization",
    "content-type",
    "x-api-key",
    "x-request-id",
    "x-zeta-decision",
    "anthropic-version",
)
#: Response headers a browser app may read.
EXPOSED_HEADERS = ", ".join(
    (
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
    )
)
_METHODS = "GET, POST, OPTIONS"
#: How long a browser may reuse a preflight's answer (Chromium caps it at 2 h).
MAX_AGE_S = 600
# RFC 9110 token characters: anything else in a requested name is refused
# rather than echoed.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")


class Cors:
    """The policy of ``gateway.cors_origins`` (``"*"``: every origin)."""

    __slots__ = ("any", "origins")

    def __init__(self, origins: Sequence[str]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(o.lower() for o in origins if o != "*")

    def allows(self, origin: str) -> bool:
        return self.any or origin.lower() in self.origins

    @staticmethod
    def is_preflight(request: web.BaseRequest) -> bool:
        headers = request.headers
        return (
            request.method == "OPTIONS"
            and "Origin" in headers
            and "Access-Control-Request-Method" in headers
        )

    def preflight(self, request: web.BaseRequest) -> web.Response:
        """The answer to a preflight; its ``Access-Control-Allow-Origin``
        and ``Vary`` come with every answer's (:meth:`decorate`)."""
        origin = request.headers["Origin"]
        if not self.allows(origin):
            return error_response(
                403,
                f"origin {origin!r} is not allowed",
                "permission_error",
                "cors_origin_not_allowed",
                anthropic=anthropic_path(request.path),
            )
        allowed = list(ALLOWED_HEADERS)
        for name in request.headers.get("Access-Control-Request-Headers", "").split(","):
            name = name.strip().lower()
            if name and name not in allowed and _TOKEN.fullmatch(name):
                allowed.append(name)
        headers = {
            "Access-Control-Allow-Methods": _METHODS,
            "Access-Control-Allow-Headers": ", ".join(allowed),
            "Access-Control-Max-Age": str(MAX_AGE_S),
        }
        if request.headers.get("Access-Control-Request-Private-Network") == "true":
            # Chromium asks before a public page may call a gateway on a
            # private address (localhost, the LAN): the usual case here.
            headers["Access-Control-Allow-Private-Network"] = "true"
        return web.Response(status=204, headers=headers)

    def decorate(self, request: web.BaseRequest, headers: CIMultiDict[str]) -> None:
        """Adds the CORS headers of an answer to ``request``."""
        # Whatever the origin: a cache must not give one origin's answer to another.
        headers.add("Vary", "Origin")
        origin = request.headers.get("Origin")
        if origin is not None and self.allows(origin):
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
