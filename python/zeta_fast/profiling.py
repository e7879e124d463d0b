"""Request profiling: what a request is and how hard it looks.

All of it runs in Rust: finding the text in the request's shape
(``request_text``), the hashed n-gram task classifier and the complexity
cues. This module adds the shape rules of the gateway's routes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zeta_fast import _core
from zeta_fast._core import RequestProfile, request_text

__all__ = ["TASK_TYPES", "RequestProfile", "profile", "profiled_shape", "request_text"]

TASK_TYPES = ("code", "reasoning", "chat", "knowledge", "embedding")


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
    return _core.profile(request, endpoint=endpoint)
