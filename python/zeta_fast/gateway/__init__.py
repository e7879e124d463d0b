"""The OpenAI-compatible gateway (``zeta-fast serve --config FILE``).

Example:
    >>> import asyncio
    >>> from zeta_fast.gateway import start  # doctest: +SKIP
    >>> running = await start(Router("zeta.yaml"), port=0)  # doctest: +SKIP
    >>> running.url  # doctest: +SKIP
    'http://127.0.0.1:40123'
"""

from zeta_fast.gateway.app import AUTO, Gateway
from zeta_fast.gateway.auth import hash_key
from zeta_fast.gateway.serve import RunningGateway, run, start

__all__ = ["AUTO", "Gateway", "RunningGateway", "hash_key", "run", "start"]
