"""What the gateway checks of a request body before any replica sees it.

A body a backend would refuse because of what it asks must be refused
here, as the client's 400, and never reach a replica: llama.cpp answers a
message without ``role`` with a 500, which would otherwise count against
the replica and be retried on every other one. Only the shape is checked
(the fields each route cannot do without, roles, nesting depth); parameter
values stay the backends' to judge, since each accepts its own extensions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_DEPTH", "RequestShapeError", "check_request"]

#: Deepest nesting of objects and arrays taken. orjson reads 1,024 levels
#: but writes only 254, so a deeper body could not be sent on; real
#: requests (tool schemas included) stay far below this.
MAX_DEPTH = 128

_CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_MESSAGES_ROLES = frozenset({"user", "assistant"})


class RequestShapeError(ValueError):
    """The body lacks what its route needs or is shaped wrongly; the
    message names the field."""


def _depth_ok(value: Any, limit: int) -> bool:
    # Iterative: a recursive walk would itself hit Python's recursion limit.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return False
        if isinstance(item, dict):
            stack.extend(
                (child, depth + 1) for child in item.values() if isinstance(child, dict | list)
            )
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return True


def _check_messages(messages: Any, roles: frozenset[str], field: str = "messages") -> None:
    if not isinstance(messages, list) or not messages:
        raise RequestShapeError(f"{field} must be a non-empty list of messages")
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise RequestShapeError(
                f"{field}[{index}] must be an object, got {type(message).__name__}"
            )
        role = message.get("role")
        if role is None:
            raise RequestShapeError(f"{field}[{index}].role is missing")
        if not isinstance(role, str) or role not in roles:
            raise RequestShapeError(
                f"{field}[{index}].role must be one of {', '.join(sorted(roles))}, got {role!r}"
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise RequestShapeError(
                f"{field}[{index}].content must be a string or a list of parts, "
                f"got {type(content).__name__}"
            )


def check_request(path: str, payload: Mapping[str, Any], raw: bytes | None = None) -> None:
    """Checks a parsed body for its route; ``raw``, its bytes, lets the
    depth walk be skipped when too few brackets exist to nest that deep.

    Raises:
        RequestShapeError: with the field and what is wrong with it.
    """
    shallow = raw is not None and raw.count(b"{") + raw.count(b"[") < MAX_DEPTH
    if not shallow and not _depth_ok(payload, MAX_DEPTH):
        raise RequestShapeError(f"body is nested deeper than {MAX_DEPTH} levels")
    if path == "/v1/chat/completions":
        _check_messages(payload.get("messages"), _CHAT_ROLES)
    elif path == "/v1/completions":
        prompt = payload.get("prompt")
        if not isinstance(prompt, str | list):
            raise RequestShapeError("prompt must be a string or a list")
    elif path == "/v1/embeddings":
        if not isinstance(payload.get("input"), str | list):
            raise RequestShapeError("input must be a string or a list")
    elif path in ("/v1/messages", "/v1/messages/count_tokens"):
        _check_messages(payload.get("messages"), _MESSAGES_ROLES)
    elif path == "/v1/responses":
        items = payload.get("input")
        if not isinstance(items, str | list):
            raise RequestShapeError("input must be a string or a list of input items")
