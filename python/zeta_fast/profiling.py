"""Request profiling: what a request is and how hard it looks.

The text work (hashed n-gram task classifier, complexity cues) runs in Rust;
this module only finds the text in the request's shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zeta_fast._core import RequestProfile, _profile_text

__all__ = ["TASK_TYPES", "RequestProfile", "profile", "profiled_shape"]

TASK_TYPES = ("code", "reasoning", "chat", "knowledge", "embedding")


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        # OpenAI content parts: [{"type": "text", "text": ...}, {"type": "image_url", ...}]
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def _input_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return "\n".join(item for item in value if isinstance(item, str))
    return ""


def _request_text(
    request: str | Sequence[Mapping[str, Any]] | Mapping[str, Any], endpoint: str | None = None
) -> tuple[str, int, bool]:
    """The text ``profile`` reads in a request, its message count and
    whether it is an embedding request (the learned router needs the text
    itself; the core calls this)."""
    embedding = endpoint is not None and endpoint.rstrip("/").endswith("embeddings")
    if isinstance(request, str):
        return request, 1, embedding
    if isinstance(request, Mapping):
        if "messages" in request:
            return _request_text(request["messages"], endpoint)
        if "prompt" in request:
            return _input_text(request["prompt"]), 1, embedding
        if "input" in request:
            return _input_text(request["input"]), 1, True
        raise TypeError(
            "request must have messages, prompt or input, got keys: " + ", ".join(map(str, request))
        )
    if isinstance(request, Sequence):
        user = [
            _content_text(message.get("content"))
            for message in request
            if isinstance(message, Mapping) and message.get("role", "user") == "user"
        ]
        return "\n".join(user), max(1, len(request)), embedding
    raise TypeError(
        f"request must be a str, a messages list or a request dict, got {type(request).__name__}"
    )


def profiled_shape(path: str, payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """What ``profile`` should read of a body sent to ``path``: the
    Responses API's ``input`` is a conversation (or a prompt), not the
    embeddings API's ``input``, which a bare body would be taken for."""
    if path != "/v1/responses":
        return payload
    items = payload.get("input")
    if isinstance(items, list):
        return {"messages": items}
    return {"prompt": items if isinstance(items, str) else ""}


def profile(
    request: str | Sequence[Mapping[str, Any]] | Mapping[str, Any], *, endpoint: str | None = None
) -> RequestProfile:
    """Profiles a request: a prompt string, an OpenAI ``messages`` list, or a
    request body (chat, completion or embeddings).

    Embedding requests are recognised from their shape: the endpoint (one
    ending in ``/embeddings``) or a body with ``input`` and no ``messages``
    or ``prompt``. For conversations, the user turns are profiled and the
    number of messages counts towards complexity.

    Raises:
        TypeError: the request is none of the shapes above.

    Example:
        >>> from zeta_fast import profile
        >>> profile("def add(a, b):\\n    return a + b").task_type
        'code'
        >>> profile({"model": "e5", "input": ["hello"]}).task_type
        'embedding'
    """
    return _profile_text(*_request_text(request, endpoint))
