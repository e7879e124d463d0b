"""Running the gateway: start, serve until told to stop, shut down cleanly.

Shutdown (SIGTERM, SIGINT, or ``RunningGateway.stop``): ``/health`` turns
503 so a load balancer drains the instance, the listening socket closes,
requests in flight finish (up to ``shutdown_timeout_s``), the backend
connections close, and the learned state (the tracker's snapshot) is saved.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from zeta_fast.config import RouterConfig, load_router_config
from zeta_fast.gateway.app import Gateway
from zeta_fast.gateway.connection import EdgeLimits, EdgeRunner
from zeta_fast.router import Router

__all__ = ["RunningGateway", "run", "start"]

log = logging.getLogger("zeta_fast.gateway")

#: Allocations between two young-generation collections (Python's default: 700).
GC_GEN0_THRESHOLD = 20_000
#: aiohttp's access-log line with the request's id last (the x-request-id
#: answered), to find a request's line from what its client was told.
ACCESS_LOG_FORMAT = '%a %t "%r" %s %b "%{Referer}i" "%{User-Agent}i" %{x-request-id}o'


@dataclass
class RunningGateway:
    """A gateway serving on ``host:port`` in the current event loop."""

    gateway: Gateway
    runner: web.AppRunner
    host: str
    port: int
    _stopped: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        """Where it listens, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        """Drains and stops; saves the learned state. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.gateway.draining()
        # Stops listening, waits for the handlers in flight, closes connections.
        await self.runner.cleanup()
        router = self.gateway.router
        await router.aclose()
        # Saved before close: a tracker the router made is closed with it
        # (its final snapshot written), and a closed tracker saves no more.
        if router.tracker.snapshot_path is not None:
            saved = router.tracker.save()
            log.info("learned state saved: %d bytes", saved)
        router.close()


async def start(
    router: Router, *, host: str | None = None, port: int | None = None
) -> RunningGateway:
    """Starts serving ``router`` in the running loop; port 0 picks a free one."""
    spec = router.config.gateway
    gateway = Gateway(router)
    runner = EdgeRunner(
        gateway.app(),
        EdgeLimits(spec.header_timeout_s, spec.body_timeout_s, gateway.counters),
        gateway.edge,
        handle_signals=False,
        access_log=logging.getLogger("aiohttp.access") if spec.access_log else None,
        access_log_format=ACCESS_LOG_FORMAT,
        shutdown_timeout=spec.shutdown_timeout_s,
    )
    await runner.setup()
    bind_host = spec.host if host is None else host
    site = web.TCPSite(
        runner,
        bind_host,
        spec.port if port is None else port,
        backlog=1024,
        reuse_address=True,
    )
    await site.start()
    bound = int(runner.addresses[0][1])
    return RunningGateway(gateway, runner, bind_host, bound)


def _use_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def run(
    config: RouterConfig | str | Path,
    *,
    host: str | None = None,
    port: int | None = None,
    uvloop: bool = True,
) -> None:
    """Serves until SIGTERM or SIGINT, then shuts down cleanly (blocking)."""
    if uvloop:
        _use_uvloop()

    async def main() -> None:
        loaded = config if isinstance(config, RouterConfig) else load_router_config(config)
        router = Router(loaded.for_gateway())
        running = await start(router, host=host, port=port)
        asked = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, asked.set)
        # Everything built so far lives as long as the server: out of the
        # collector's way. A request allocates many short-lived objects
        # (aiohttp's); a larger first generation collects them less often.
        gc.freeze()
        gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
        print(f"zeta-fast gateway listening on {running.url}", flush=True)
        await asked.wait()
        print("zeta-fast gateway: shutting down (finishing requests in flight)", flush=True)
        await running.stop()
        print("zeta-fast gateway: stopped", flush=True)

    asyncio.run(main())
