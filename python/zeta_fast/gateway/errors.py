"""Error bodies: OpenAI's shape, or Anthropic's on the Anthropic routes.

OpenAI: ``{"error": {"message", "type", "param": null, "code"}}``.
Anthropic (paths under ``/v1/messages``): ``{"type": "error", "error":
{"type", "message"}}`` with one of Anthropic's error types. Every error the
gateway answers, aiohttp's own included, is built here, so a client's SDK
can always parse it.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import web

__all__ = [
    "ANTHROPIC_TYPES",
    "anthropic_path",
    "anthropic_type",
    "error_body",
    "error_response",
    "http_exception_response",
    "internal_error_response",
]

_JSON = "application/json"

#: Anthropic's error types (``error.type`` of its error bodies).
ANTHROPIC_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
        "request_too_large",
    }
)

_ANTHROPIC_BY_STATUS = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}

# aiohttp's exceptions carry only a status; the names clients see for them.
_KIND_BY_STATUS = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
_CODE_BY_STATUS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    431: "headers_too_large",
}

#: Headers of an aiohttp exception that say something to the client
#: (``Allow`` of a 405, ``Retry-After``, ``WWW-Authenticate``, ``Location``,
#: ``Connection: close`` of a body timeout).
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "Location", "Connection")


def anthropic_path(path: str) -> bool:
    """Whether errors on ``path`` take Anthropic's shape (``/v1/messages``
    and its routes, with or without the ``/v1`` prefix)."""
    return path.startswith("/v1/messages") or path.startswith("/messages")


def anthropic_type(status: int, kind: str) -> str:
    """Anthropic's error type for an error: ``kind`` when it is one of
    Anthropic's but the generic ``invalid_request_error``, else the one its
    status means (a 404 is ``not_found_error``, a 413 ``request_too_large``:
    OpenAI says ``invalid_request_error`` for both)."""
    if kind in ANTHROPIC_TYPES and kind != "invalid_request_error":
        return kind
    found = _ANTHROPIC_BY_STATUS.get(status)
    if found is not None:
        return found
    return "invalid_request_error" if status < 500 else "api_error"


def error_body(
    status: int, message: str, kind: str, code: str | None = None, *, anthropic: bool = False
) -> bytes:
    """The JSON of an error (see :func:`error_response`)."""
    if anthropic:
        return orjson.dumps(
            {"type": "error", "error": {"type": anthropic_type(status, kind), "message": message}}
        )
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def error_response(
    status: int,
    message: str,
    kind: str,
    code: str | None = None,
    *,
    anthropic: bool = False,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An error answer: OpenAI's shape, or Anthropic's with ``anthropic``
    (``kind`` then goes through :func:`anthropic_type`)."""
    return web.Response(
        status=status,
        body=error_body(status, message, kind, code, anthropic=anthropic),
        content_type=_JSON,
        headers=headers,
    )


def http_exception_response(request: web.BaseRequest, exc: web.HTTPException) -> web.Response:
    """An aiohttp exception (404, 405, 413, ...) as a JSON error; one a
    handler raised with a JSON body of its own keeps that body."""
    status = exc.status
    kept = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
    if exc.content_type == _JSON and isinstance(exc.body, bytes):
        return web.Response(status=status, body=exc.body, content_type=_JSON, headers=kept)
    if status == 404:
        # OpenAI's wording for an unknown path.
        message = f"Invalid URL ({request.method} {request.path})"
    elif status == 405:
        allowed = exc.headers.get("Allow", "")
        message = f"method {request.method} is not allowed on {request.path} (allowed: {allowed})"
    elif status == 413:
        message = f"request body over the limit of {request.client_max_size} bytes"
    else:
        # aiohttp's texts are "<status>: <reason>" unless a handler set its own.
        message = exc.text or exc.reason
        if message.startswith(f"{status}: "):
            message = exc.reason
    kind = _KIND_BY_STATUS.get(status) or (
        "invalid_request_error" if status < 500 else "server_error"
    )
    return error_response(
        status,
        message,
        kind,
        _CODE_BY_STATUS.get(status),
        anthropic=anthropic_path(request.path),
        headers=kept or None,
    )


def internal_error_response(request: web.BaseRequest, request_id: str) -> web.Response:
    """A 500 that says nothing of the failure but the id to look it up by."""
    return error_response(
        500,
        f"the gateway failed to handle the request (request id {request_id})",
        "server_error",
        "internal_error",
        anthropic=anthropic_path(request.path),
    )
