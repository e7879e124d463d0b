"""What can go wrong talking to a backend, as one exception hierarchy.

Every error carries the replica's URL, the outcome ``kind`` the router
records for it, and whether another attempt may help (``retryable``); the
underlying exception is kept as ``__cause__``::

    BackendError
    ├── BackendTimeout          (connect, first byte or total; retryable)
    ├── BackendUnavailable      (refused, reset, closed without reply; retryable)
    ├── StreamInterrupted       (a stream cut or failed mid-way; retryable only
    │                            while nothing has reached the caller)
    └── BackendStatusError      (an HTTP error with the server's error body)
        ├── RateLimited         (429; retryable, honours Retry-After)
        ├── ContextLengthExceeded (the prompt does not fit; goes to a longer context)
        ├── UnsupportedRequest  (the model cannot serve this kind of request:
        │                        another model may; never the replica's fault)
        ├── RequestRejected     (the server refused what the request asks, even
        │                        in a 500: the request's fault, never retried)
        └── ...                 (5xx and 408 retryable, other 4xx not)

Who caused a failure decides what it touches: only replica faults (timeouts,
refused or dropped connections, 5xx that are not about the request, cut
streams) count against a replica's breaker, health and record.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendStatusError",
    "BackendTimeout",
    "BackendUnavailable",
    "ContextLengthExceeded",
    "RateLimited",
    "RequestRejected",
    "StreamInterrupted",
    "UnsupportedRequest",
]


class BackendError(Exception):
    """A request to a backend replica failed."""

    kind = "other"
    retryable = False

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url
        #: (model, replica, kind) of every attempt made, filled in by the router.
        self.attempts: list[tuple[str, str, str]] = []
        #: Time spent in those attempts (ms, hedged copies not counted twice).
        self.backend_ms = 0.0


class BackendTimeout(BackendError):
    """No connection, no first byte, or no complete answer in time."""

    kind = "timeout"
    retryable = True

    def __init__(self, message: str, *, url: str = "", phase: str = "total") -> None:
        super().__init__(message, url=url)
        #: "connect", "first_byte" or "total".
        self.phase = phase


class BackendUnavailable(BackendError):
    """The replica could not be reached or dropped the connection."""

    kind = "connect"
    retryable = True


class StreamInterrupted(BackendError):
    """A streamed answer ended without its final event, or carried an error."""

    kind = "stream_cut"
    retryable = True

    def __init__(self, message: str, *, url: str = "", delivered: bool = False) -> None:
        super().__init__(message, url=url)
        #: Whether part of the stream already reached the caller (then it is
        #: never retried: the caller would see the answer twice).
        self.delivered = delivered
        self.retryable = not delivered


class BackendStatusError(BackendError):
    """The server answered with an HTTP error; its error body is parsed."""

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status: int,
        error_type: str | None = None,
        body: bytes = b"",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, url=url)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.body = body
        self.retry_after_s = retry_after_s
        self.retryable = status == 408 or status == 429 or status >= 500
        self.kind = "server_error" if self.retryable else "client_error"

    def __str__(self) -> str:
        kind = f" {self.error_type}" if self.error_type else ""
        return f"HTTP {self.status}{kind} from {self.url or 'backend'}: {self.message}"


class RateLimited(BackendStatusError):
    """429: the replica sheds load; wait at least ``retry_after_s`` for it."""

    def __init__(self, message: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.kind = "rate_limited"


class ContextLengthExceeded(BackendStatusError):
    """The prompt (plus ``max_tokens``) does not fit the model's context."""

    def __init__(self, message: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.kind = "context_length"
        self.retryable = True


class UnsupportedRequest(BackendStatusError):
    """The model's server cannot serve this kind of request (501, a route it
    lacks, "image input is not supported"): not the replica's fault. The
    router skips the model for such requests (``feature``, when known) and
    tries one that can, unless the caller named this model."""

    def __init__(self, message: str, *, feature: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.kind = "unsupported"
        #: The request feature it refused (a name of ``REQUEST_FEATURES``), if known.
        self.feature = feature
        self.retryable = True


class RequestRejected(BackendStatusError):
    """The server refused what the request asks (a malformed message, an
    invalid parameter), whatever its status says: the request's fault,
    answered as a 400 and never retried on another replica."""

    def __init__(self, message: str, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.kind = "client_error"
        self.retryable = False
