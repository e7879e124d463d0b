"""Background health checks and engine load scrapes, off the request path.

A daemon thread runs its own event loop and aiohttp session (so it works
whatever loop, or none, the application uses). Every ``interval_s`` each
replica's health endpoint is asked: ``unhealthy_after`` failures in a row
mark it down in the core (never chosen), the first pass marks it up again.
Every ``scrape_interval_s`` the engines' metrics pages are read and their own
queue (llama.cpp ``requests_deferred``, vLLM ``num_requests_waiting``) and KV
use stored in the core, where replica selection weighs them; the core
ignores a scrape older than ``load_ttl_s``, so a scrape that stops coming
never pins a replica as busy.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass

from zeta_fast._core import RouterCore
from zeta_fast.backends.client import BackendClient, Timeouts, new_session
from zeta_fast.backends.errors import BackendError
from zeta_fast.config import RouterConfig

__all__ = ["HealthMonitor", "ReplicaHealth"]

log = logging.getLogger("zeta_fast.health")


@dataclass(slots=True)
class ReplicaHealth:
    """What the monitor knows of one replica."""

    model_id: str
    replica_id: str
    healthy: bool = True
    failures_in_a_row: int = 0
    last_check: float = 0.0
    #: When it was last marked down (monotonic seconds), 0 if never.
    down_since: float = 0.0


class HealthMonitor:
    """Checks every replica of a router in the background."""

    def __init__(self, core: RouterCore, config: RouterConfig) -> None:
        self.core = core
        self.config = config
        self.spec = config.dispatch.health
        self.replicas = {
            (m.id, r.id): ReplicaHealth(m.id, r.id) for m in config.models for r in m.replicas
        }
        # With the replica's credentials: a check passes the same auth as a
        # request (a replica behind an authenticating proxy answers 401 else).
        self._urls = {
            (m.id, r.id): (str(r.url), r.backend, r.authorization())
            for m in config.models
            for r in m.replicas
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checks = 0
        self.scrapes = 0

    def start(self) -> HealthMonitor:
        """Starts the checks (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(
                target=lambda: asyncio.run(self._main()), name="zeta-fast-health", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stops the checks and waits for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    async def _main(self) -> None:
        session = new_session()
        timeouts = Timeouts(connect_s=self.spec.timeout_s, total_s=self.spec.timeout_s)
        clients = {
            key: BackendClient(
                session, url, flavor=backend, timeouts=timeouts, authorization=authorization
            )
            for key, (url, backend, authorization) in self._urls.items()
        }
        next_check = next_scrape = 0.0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                jobs = []
                if now >= next_check:
                    next_check = now + self.spec.interval_s
                    jobs += [self._check(key, client) for key, client in clients.items()]
                if now >= next_scrape:
                    next_scrape = now + self.spec.scrape_interval_s
                    jobs += [self._scrape(key, client) for key, client in clients.items()]
                if jobs:
                    await asyncio.gather(*jobs)
                wake = min(next_check, next_scrape) - time.monotonic()
                await asyncio.sleep(min(max(wake, 0.005), 0.1))
        finally:
            await session.close()

    async def _check(self, key: tuple[str, str], client: BackendClient) -> None:
        state = self.replicas[key]
        ok = await client.health(self.spec.timeout_s)
        state.last_check = time.monotonic()
        self.checks += 1
        if ok:
            state.failures_in_a_row = 0
            if not state.healthy:
                log.info("replica %s/%s is healthy again", *key)
                state.healthy = True
                self.core.set_healthy(key[0], key[1], True)
            return
        state.failures_in_a_row += 1
        if state.healthy and state.failures_in_a_row >= self.spec.unhealthy_after:
            log.warning(
                "replica %s/%s failed %d health checks: down", *key, state.failures_in_a_row
            )
            state.healthy = False
            state.down_since = state.last_check
            self.core.set_healthy(key[0], key[1], False)

    async def _scrape(self, key: tuple[str, str], client: BackendClient) -> None:
        try:
            load = await client.engine_load(self.spec.timeout_s)
        except (BackendError, ValueError):
            return  # no fresh scrape: the last one ages out in the core
        if load is None:
            return
        self.scrapes += 1
        waiting = max(round(load.waiting), 0)
        self.core.set_engine_load(key[0], key[1], waiting, load.kv_usage)
