"""OpenAI-compatible backends (llama.cpp, vLLM, others) over aiohttp.

Nothing here knows about scoring: a backend sends bytes and reports what
happened as values or as the exceptions of ``zeta_fast.backends.errors``.
"""

from zeta_fast.backends.client import (
    BackendClient,
    BackendResponse,
    StreamUsage,
    Timeouts,
    new_session,
    split_events,
)
from zeta_fast.backends.errors import (
    BackendError,
    BackendStatusError,
    BackendTimeout,
    BackendUnavailable,
    ContextLengthExceeded,
    RateLimited,
    StreamInterrupted,
)
from zeta_fast.backends.flavors import FLAVORS, EngineLoad

__all__ = [
    "FLAVORS",
    "BackendClient",
    "BackendError",
    "BackendResponse",
    "BackendStatusError",
    "BackendTimeout",
    "BackendUnavailable",
    "ContextLengthExceeded",
    "EngineLoad",
    "RateLimited",
    "StreamInterrupted",
    "StreamUsage",
    "Timeouts",
    "new_session",
    "split_events",
]
