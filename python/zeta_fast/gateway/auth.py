"""Who may call the gateway, and how often.

Keys are configured as the hex SHA-256 of the key, so a leaked
configuration gives nothing away. A presented key is hashed and compared
with every configured digest in constant time, all of them every time, so
timing tells neither whether a key exists nor which one nearly matched;
every refusal reads the same (401, one message).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field

from zeta_fast.config import ApiKeySpec, RateLimitSpec

__all__ = ["ANONYMOUS", "ApiKeys", "Caller", "TokenBucket", "hash_key"]


def hash_key(key: str) -> str:
    """The hex SHA-256 of an API key: what the configuration stores."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class TokenBucket:
    """``rate`` tokens a second up to ``capacity``; one per request.

    Not thread-safe: the gateway serves from one event loop.
    """

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, spec: RateLimitSpec) -> None:
        self.rate = spec.per_second
        self.capacity = spec.capacity
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def take(self) -> float:
        """Spends a token; returns 0.0, or the seconds until one is there."""
        now = time.monotonic()
        tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate

    def level(self) -> float:
        """The tokens there now; a read, nothing is spent (for the
        ``x-ratelimit-*`` headers)."""
        return min(self.capacity, self.tokens + (time.monotonic() - self.updated) * self.rate)


@dataclass(slots=True)
class Caller:
    """A key that passed (or the anonymous caller when no keys are set)."""

    name: str
    bucket: TokenBucket | None = field(default=None, repr=False)


ANONYMOUS = "anonymous"


class ApiKeys:
    """The configured keys with their rate limits."""

    def __init__(self, keys: list[ApiKeySpec], default_limit: RateLimitSpec | None) -> None:
        self.required = bool(keys)
        self._entries: list[tuple[bytes, Caller]] = []
        for spec in keys:
            limit = spec.rate_limit or default_limit
            self._entries.append(
                (
                    bytes.fromhex(spec.sha256),
                    Caller(spec.name, TokenBucket(limit) if limit is not None else None),
                )
            )
        self.anonymous = Caller(
            ANONYMOUS, TokenBucket(default_limit) if default_limit is not None else None
        )

    def caller(self, authorization: str | None) -> Caller | None:
        """The caller an ``Authorization`` header names; None when refused."""
        if not self.required:
            return self.anonymous
        token = ""
        if authorization is not None and authorization[:7].lower() == "bearer ":
            token = authorization[7:].strip()
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Caller | None = None
        for expected, caller in self._entries:
            # No early exit: the same work whichever entry matches.
            if hmac.compare_digest(expected, digest):
                found = caller
        return found if token else None
