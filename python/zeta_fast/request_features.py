"""What a request needs of a model beyond text in, text out.

Some servers cannot serve some requests however healthy they are: a
text-only llama.cpp model refuses images and audio, a chat server refuses
embeddings, a server without the Responses or Messages route answers 404.
The router skips such models for such requests (declared per model as
``unsupported``, or learned from a refusal), so a request's needs are
read here, once, as a bit mask the core checks with one comparison.

The names and their order are the core's (``zeta_fast._core.REQUEST_FEATURES``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zeta_fast._core import REQUEST_FEATURES

__all__ = ["REQUEST_FEATURES", "feature_bit", "feature_names", "needs_of"]

_BIT = {name: 1 << index for index, name in enumerate(REQUEST_FEATURES)}
IMAGES = _BIT["images"]
AUDIO = _BIT["audio"]
TOOLS = _BIT["tools"]
JSON_SCHEMA = _BIT["json_schema"]
EMBEDDINGS = _BIT["embeddings"]
RESPONSES = _BIT["responses"]
MESSAGES = _BIT["messages"]

#: Content part types, as OpenAI's chat, its Responses API and Anthropic's
#: Messages API spell them.
_PART_NEEDS = {
    "image_url": IMAGES,
    "input_image": IMAGES,
    "image": IMAGES,
    "input_audio": AUDIO,
    "audio": AUDIO,
}

#: Needs of a route, whatever the body says.
_ROUTE_NEEDS = {
    "/v1/embeddings": EMBEDDINGS,
    "/v1/responses": RESPONSES,
    "/v1/messages": MESSAGES,
    "/v1/messages/count_tokens": MESSAGES,
}


def feature_bit(name: str) -> int:
    """The bit of a feature name.

    Raises:
        ValueError: ``name`` is not one of ``REQUEST_FEATURES``.
    """
    try:
        return _BIT[name]
    except KeyError:
        raise ValueError(
            f"feature must be one of {', '.join(REQUEST_FEATURES)}, got {name!r}"
        ) from None


def feature_names(mask: int) -> list[str]:
    """The names of the features in a mask."""
    return [name for name, bit in _BIT.items() if mask & bit]


def _parts_need(content: object) -> int:
    needs = 0
    if isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping):
                needs |= _PART_NEEDS.get(part.get("type"), 0)  # type: ignore[arg-type]
                # Responses input items nest their parts one level down.
                inner = part.get("content")
                if isinstance(inner, list):
                    needs |= _parts_need(inner)
    return needs


def needs_of(path: str, payload: Mapping[str, Any], raw: bytes | None = None) -> int:
    """The features a request to ``path`` with body ``payload`` needs.

    Reads only what decides it: the route, ``tools``, the response format,
    and the types of content parts. ``raw``, the body's bytes, lets a body
    without any ``"type"`` key (plain text chat) skip the walk.
    """
    needs = _ROUTE_NEEDS.get(path, 0)
    if payload.get("tools") or payload.get("functions"):
        needs |= TOOLS
    if raw is not None and b'"type"' not in raw:
        # Parts, response formats and Responses items all say their type.
        return needs
    response_format = payload.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") in (
        "json_schema",
        "json_object",
    ):
        needs |= JSON_SCHEMA
    text = payload.get("text")
    if isinstance(text, Mapping):
        fmt = text.get("format")
        if isinstance(fmt, Mapping) and fmt.get("type") in ("json_schema", "json_object"):
            needs |= JSON_SCHEMA
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, Mapping):
                needs |= _parts_need(message.get("content"))
    items = payload.get("input")
    if isinstance(items, list) and path != "/v1/embeddings":
        needs |= _parts_need(items)
    return needs
