"""What differs between OpenAI-compatible servers: health endpoints, load
metrics, error bodies. llama.cpp's server and vLLM are measured or documented
(see the README's backends section); ``openai`` is any other server.

Backends never import scoring: a flavour turns server specifics into plain
values (healthy or not, an ``EngineLoad``, a ``BackendStatusError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from zeta_fast.backends.errors import (
    BackendStatusError,
    ContextLengthExceeded,
    RateLimited,
    RequestRejected,
    UnsupportedRequest,
)

__all__ = ["FLAVORS", "EngineLoad", "LlamaCppFlavor", "OpenAIFlavor", "VLLMFlavor"]


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """An engine's own view of its load, from its metrics page."""

    running: float
    waiting: float
    kv_usage: float = 0.0


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from inference servers; back off as usual
    return seconds if seconds >= 0 else None


#: Phrases of a server saying it cannot serve a kind of request at all.
_UNSUPPORTED_PHRASES = (
    "not supported",
    "unsupported",
    "does not support",
    "not implemented",
    "not enabled",
    "start it with",
)

#: Phrases of a server refusing what a request asks, in whatever status it
#: chose (llama.cpp answers a malformed message with a 500).
_REJECTION_PHRASES = (
    "failed to parse",
    "parse error",
    "invalid request",
    "invalid json",
    "invalid value",
    "invalid type",
    "invalid role",
    "invalid message",
    "invalid content",
    "invalid parameter",
    "invalid input",
    "missing '",
    'missing "',
    "missing required",
    "must be a",
    "must be one of",
    "must have",
    "is required",
    "not allowed",
    "malformed",
    "unknown parameter",
    "unrecognized",
)
# Words like "invalid" or "expected" alone also fill genuine server faults
# ("unexpected error", "invalid device"): a 500 that matches none of these
# is judged by whether another replica fails it the same way (dispatch).

#: Words of a refusal message, and the request feature each names.
_FEATURE_WORDS = (
    ("image", "images"),
    ("vision", "images"),
    ("audio", "audio"),
    ("embedding", "embeddings"),
    ("tool", "tools"),
    ("function call", "tools"),
    ("json_schema", "json_schema"),
    ("response_format", "json_schema"),
    ("grammar", "json_schema"),
    # llama.cpp's hint for both images and audio: the last resort.
    ("mmproj", "images"),
)

#: Routes whose absence on a server is a feature it lacks.
_ROUTE_FEATURES = (
    ("/v1/responses", "responses"),
    ("/v1/messages", "messages"),
    ("/v1/embeddings", "embeddings"),
)


def _feature_named(text: str) -> str | None:
    for word, feature in _FEATURE_WORDS:
        if word in text:
            return feature
    return None


def _route_feature(url: str) -> str | None:
    for route, feature in _ROUTE_FEATURES:
        if route in url:
            return feature
    return None


def _sum_samples(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Sums each named gauge over its label sets (vLLM labels by model)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in names:
                found[sample.name] = found.get(sample.name, 0.0) + float(sample.value)
    return found


class OpenAIFlavor:
    """Any OpenAI-compatible server: health from ``/v1/models``, no metrics."""

    name = "openai"
    health_path = "/v1/models"
    metrics_path: str | None = None
    #: Phrases of a context-length refusal in an error message.
    context_phrases: tuple[str, ...] = ("context length", "context_length", "too long")

    def healthy(self, status: int, body: bytes) -> bool:
        """Whether a health endpoint's answer means the replica can serve."""
        return status == 200

    def engine_load(self, metrics_text: str) -> EngineLoad | None:
        """The engine's load from its metrics page, ``None`` when absent."""
        return None

    def parse_error_body(self, body: bytes) -> tuple[str, str | None]:
        """(message, type) from an error body: OpenAI's shape, or plain text."""
        try:
            data: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            text = body.decode("utf-8", "replace").strip()
            return (text[:500] or "no error body", None)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            message = str(error.get("message") or error.get("msg") or error)
            kind = error.get("type") or error.get("code")
            return (message, None if kind is None else str(kind))
        if isinstance(error, str):
            return (error, None)
        if isinstance(data, dict) and "message" in data:
            return (str(data["message"]), data.get("type"))
        return (body.decode("utf-8", "replace")[:500], None)

    def is_context_error(self, status: int, message: str, error_type: str | None) -> bool:
        """Whether an error says the prompt did not fit the context."""
        if status not in (400, 413, 422):
            return False
        text = f"{error_type or ''} {message}".lower()
        return any(phrase in text for phrase in self.context_phrases)

    def error(
        self, status: int, body: bytes, headers: Mapping[str, str], url: str
    ) -> BackendStatusError:
        """The exception for an HTTP error answer."""
        message, error_type = self.parse_error_body(body)
        kwargs: dict[str, Any] = {
            "url": url,
            "status": status,
            "error_type": error_type,
            "body": body,
            "retry_after_s": _retry_after(headers),
        }
        if status == 429:
            return RateLimited(message, **kwargs)
        if self.is_context_error(status, message, error_type):
            return ContextLengthExceeded(message, **kwargs)
        return self.classify(status, message, error_type, url, kwargs)

    def classify(
        self,
        status: int,
        message: str,
        error_type: str | None,
        url: str,
        kwargs: dict[str, Any],
    ) -> BackendStatusError:
        """Who caused an error answer, by what it says: the request's kind
        (unsupported), the request itself (rejected), or the replica."""
        text = message.lower()
        kind = (error_type or "").lower()
        if status == 501 or (
            status in (400, 404, 405, 422, 500)
            and (kind == "not_supported_error" or any(p in text for p in _UNSUPPORTED_PHRASES))
        ):
            feature = _feature_named(text) or _route_feature(url)
            return UnsupportedRequest(message, feature=feature, **kwargs)
        if status in (404, 405) and "model" not in text and _route_feature(url) is not None:
            # The server has no such route (an older release): it lacks the API.
            return UnsupportedRequest(message, feature=_route_feature(url), **kwargs)
        if status == 500 and (
            kind == "invalid_request_error" or any(p in text for p in _REJECTION_PHRASES)
        ):
            return RequestRejected(message, **kwargs)
        return BackendStatusError(message, **kwargs)


class LlamaCppFlavor(OpenAIFlavor):
    """llama.cpp's server: ``/health`` (503 while loading), ``llamacpp:*``
    metrics, ``exceed_context_size_error`` for prompts too long."""

    name = "llamacpp"
    health_path = "/health"
    metrics_path = "/metrics"
    context_phrases = ("exceed_context_size", "context size", "context length")

    def healthy(self, status: int, body: bytes) -> bool:
        if status != 200:
            return False
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        return isinstance(data, dict) and data.get("status") == "ok"

    def engine_load(self, metrics_text: str) -> EngineLoad | None:
        found = _sum_samples(
            metrics_text, ("llamacpp:requests_processing", "llamacpp:requests_deferred")
        )
        if not found:
            return None
        return EngineLoad(
            running=found.get("llamacpp:requests_processing", 0.0),
            waiting=found.get("llamacpp:requests_deferred", 0.0),
        )


class VLLMFlavor(OpenAIFlavor):
    """vLLM's server: ``/health`` (200, empty body), ``vllm:*`` metrics
    labelled by model, context errors as 400 "maximum context length"."""

    name = "vllm"
    health_path = "/health"
    metrics_path = "/metrics"
    context_phrases = ("maximum context length", "context length", "too long")
    _names = (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
    )

    def engine_load(self, metrics_text: str) -> EngineLoad | None:
        found = _sum_samples(metrics_text, self._names)
        if not found:
            return None
        # Newer releases name it kv_cache_usage_perc; older gpu_cache_usage_perc.
        kv = found.get("vllm:kv_cache_usage_perc", found.get("vllm:gpu_cache_usage_perc", 0.0))
        return EngineLoad(
            running=found.get("vllm:num_requests_running", 0.0),
            waiting=found.get("vllm:num_requests_waiting", 0.0),
            kv_usage=min(max(kv, 0.0), 1.0),
        )


FLAVORS: dict[str, OpenAIFlavor] = {
    "openai": OpenAIFlavor(),
    "llamacpp": LlamaCppFlavor(),
    "vllm": VLLMFlavor(),
}
