"""Request ids (``x-request-id``): the caller's when it is sane, else ours.

A caller's id is kept so its logs and ours name a request the same way; one
that is not printable ASCII of at most 128 characters is replaced (it would
be a way to forge log lines or to make them huge). Ours are 32 hex
characters, like a uuid4's hex: a random per-process prefix and a counter,
unique across processes like uuid4s at a fraction of the cost (no system
call, no formatting: ~0.3 us against ~2 us).
"""

from __future__ import annotations

import itertools
import os

from aiohttp import web

__all__ = ["HEADER", "KEY", "accepted", "new_request_id", "request_id", "sane"]

#: The header that carries it, both ways.
HEADER = "x-request-id"
#: Where the gateway keeps it on the aiohttp request (``request[KEY]``;
#: :func:`request_id` reads it).
KEY = web.RequestKey("request_id", str)
_MAX_LENGTH = 128

# Counting from 2**60, hex() of the counter is 16 digits (for 15 * 2**60
# ids), with no format spec to parse per id.
_FIRST = 1 << 60
_prefix = os.urandom(8).hex()
_counter = itertools.count(_FIRST)


def _reseed() -> None:
    # A forked worker would otherwise hand out its parent's ids.
    global _prefix, _counter
    _prefix = os.urandom(8).hex()
    _counter = itertools.count(_FIRST)


os.register_at_fork(after_in_child=_reseed)


def new_request_id() -> str:
    """A fresh id (32 lowercase hex characters)."""
    return _prefix + hex(next(_counter))[2:]


def sane(value: str) -> bool:
    """Whether a caller's id is kept: printable ASCII, 1 to 128 characters."""
    return 0 < len(value) <= _MAX_LENGTH and value.isascii() and value.isprintable()


def accepted(value: str | None) -> str:
    """``value`` when it is a sane id, else a fresh one."""
    return value if value is not None and sane(value) else new_request_id()


def request_id(request: web.BaseRequest) -> str:
    """The id of ``request``: what the gateway answers as ``x-request-id``
    (for the data path: logs, the outcome log)."""
    try:
        found = request[KEY]
    except KeyError:
        # A request that did not pass the gateway's middleware (an app built
        # without it): one is made now, and kept, so every reader agrees.
        found = request[KEY] = accepted(request.headers.get(HEADER))
    return found
