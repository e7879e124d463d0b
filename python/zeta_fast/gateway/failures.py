"""A failed upstream as the gateway's client sees it: the HTTP error for a
request every allowed attempt of which failed, the event that ends a
stream cut after it started, and the reason, safe to show (never a
replica's address)."""

from __future__ import annotations

import math
from typing import Any

import orjson
from aiohttp import web

from zeta_fast.backends.errors import (
    BackendError,
    BackendStatusError,
    BackendTimeout,
    RateLimited,
    RequestRejected,
    UnsupportedRequest,
)
from zeta_fast.gateway.errors import error_response

__all__ = ["backend_error_response", "failure_reason", "stream_error_event"]

_JSON = "application/json"

#: What a failure of each kind is, in words a client may see (no address).
FAILURES = {
    "connect": "the replica could not be reached or closed the connection without an answer",
    "timeout": "the replica did not answer in time",
    "stream_cut": "the replica's stream ended before its last event",
    "other": "the replica failed",
}


def failure_reason(exc: BackendError) -> str:
    """The backend's reason, safe to show a client: its own error message
    for an HTTP error (at most 300 characters, printable), else what kind
    of failure it was; never the replica's address."""
    if isinstance(exc, BackendStatusError):
        text = "".join(c if c.isprintable() else " " for c in exc.message[:300])
        return f"HTTP {exc.status}: {text}"
    reason = FAILURES.get(exc.kind, FAILURES["other"])
    cause = exc.__cause__
    return f"{reason} ({type(cause).__name__})" if cause is not None else reason


def stream_error_event(path: str, reason: str) -> bytes:
    """The event that tells a client its stream is incomplete, in the
    route's own shape (no ``[DONE]`` or final event follows it)."""
    message = f"the model's stream failed: {reason}"
    data: dict[str, Any]
    if path.startswith("/v1/messages"):
        data = {"type": "error", "error": {"type": "api_error", "message": message}}
        return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"
    if path == "/v1/responses":
        data = {
            "type": "error",
            "code": "upstream_error",
            "message": message,
            "param": None,
        }
        return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"
    return (
        b"data: "
        + orjson.dumps({"error": {"message": message, "type": "upstream_error"}})
        + b"\n\n"
    )


def backend_error_response(exc: BackendError, anthropic: bool = False) -> web.Response:
    """The client's view of a request every allowed attempt of which failed."""
    if isinstance(exc, RateLimited):
        response = error_response(
            429,
            "every replica is rate limited",
            "rate_limit_error",
            "rate_limited",
            anthropic=anthropic,
        )
        if exc.retry_after_s is not None:
            response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
        return response
    if isinstance(exc, UnsupportedRequest):
        what = exc.feature or "what it asks"
        return error_response(
            400,
            f"the model cannot serve requests with {what}: {failure_reason(exc)}",
            "invalid_request_error",
            "unsupported_request",
            anthropic=anthropic,
        )
    if isinstance(exc, RequestRejected):
        return error_response(
            400,
            f"the model's server rejected the request: {failure_reason(exc)}",
            "invalid_request_error",
            "rejected_by_backend",
            anthropic=anthropic,
        )
    if isinstance(exc, BackendStatusError) and not exc.retryable:
        # The request's own fault (a bad parameter): the backend's answer as it was.
        return web.Response(status=exc.status, body=exc.body or b"{}", content_type=_JSON)
    if isinstance(exc, BackendStatusError) and exc.kind == "context_length":
        return error_response(
            400,
            exc.message,
            "invalid_request_error",
            "context_length_exceeded",
            anthropic=anthropic,
        )
    tried = ", ".join(f"{model}/{replica} {kind}" for model, replica, kind in exc.attempts)
    detail = f" (attempts: {tried})" if tried else ""
    if isinstance(exc, BackendTimeout):
        return error_response(
            504,
            f"the model did not answer in time{detail}: {failure_reason(exc)}",
            "timeout_error",
            exc.phase,
            anthropic=anthropic,
        )
    return error_response(
        502,
        f"the model's replicas failed{detail}: {failure_reason(exc)}",
        "upstream_error",
        exc.kind,
        anthropic=anthropic,
    )
