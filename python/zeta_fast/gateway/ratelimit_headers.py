"""OpenAI's ``x-ratelimit-*-requests`` headers from a key's token bucket.

``limit`` is the bucket's size (the burst a key may send at once),
``remaining`` the whole tokens in it now, ``reset`` how long until it is
full again, written as OpenAI writes durations (``"1s"``, ``"250ms"``,
``"6m0s"``). Clients that pace themselves by these headers (the OpenAI
SDKs' retry logic, LiteLLM, LangChain's limiters) then pace to the gateway.
"""

from __future__ import annotations

import math

from aiohttp import web
from multidict import CIMultiDict

from zeta_fast.gateway.auth import TokenBucket

__all__ = ["BUCKET_KEY", "add_ratelimit_headers", "duration"]

#: Where the gateway keeps the caller's bucket on the aiohttp request.
BUCKET_KEY = web.RequestKey("zeta_ratelimit_bucket", TokenBucket)


def duration(seconds: float) -> str:
    """``seconds`` as OpenAI (and Go) write a duration: ``"250ms"``,
    ``"1.5s"``, ``"6m0s"``, ``"1h2m3s"``."""
    if seconds <= 0.0:
        return "0s"
    if seconds < 1.0:
        # Rounded up: "0ms" would read as "now" while a token is not there yet.
        return f"{math.ceil(seconds * 1e3 - 1e-9)}ms"
    seconds = math.ceil(seconds * 1e3 - 1e-9) / 1e3
    hours, rest = divmod(seconds, 3600.0)
    minutes, secs = divmod(rest, 60.0)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    if minutes:
        return f"{int(minutes)}m{text}"
    return text


def add_ratelimit_headers(bucket: TokenBucket, headers: CIMultiDict[str]) -> None:
    """Adds the three headers of ``bucket``'s state now to ``headers``."""
    level = bucket.level()
    headers["x-ratelimit-limit-requests"] = str(int(bucket.capacity))
    headers["x-ratelimit-remaining-requests"] = str(int(level))
    headers["x-ratelimit-reset-requests"] = duration((bucket.capacity - level) / bucket.rate)
