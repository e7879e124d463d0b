"""What runs beside a router's request path: its threads and event loops.

A :class:`Runtime` belongs to one ``Router`` and owns, in the order they
start:

- the learned state's saver thread (learning on, with a file to save to);
- the outcome log (its Rust writer thread) and the alert engine (the shared
  alert thread), both fed by the core itself as it records an outcome (no
  Python call), and the recent list the dashboard shows (subscribed to the
  router's :class:`OutcomeFeed` with the first dispatcher);
- the shared-state thread (``shared_state.enabled``), which also shares
  the learned state and decides which instance raises an alert;
- on demand: one :class:`~zeta_fast.dispatch.Dispatcher` per event loop
  that dispatches, the health checks' thread, and the event loop thread
  the synchronous wrappers (``chat_sync``, ...) run on.

``close`` stops them in an order that loses nothing: the health checks,
the shared state (a last publish), the learned state (a last save), the
alerts, the outcome log (what it still holds is written), then the
synchronous wrappers' loop and its connections. ``aclose`` closes the
calling loop's connections and stops the health checks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from zeta_fast._core import _read_learned_state, _write_learned_state
from zeta_fast.alerts.engine import AlertEngine
from zeta_fast.exceptions import SnapshotWarning
from zeta_fast.outcome_log import OutcomeLog
from zeta_fast.outcomes import (
    OutcomeFeed,
    RecentOutcome,
    keep_recent,
)

if TYPE_CHECKING:
    # Dispatch and the health checks pull in aiohttp: imported on first
    # use, so scoring-only users do not pay for it.
    from zeta_fast._core import PerformanceTracker, RouterCore
    from zeta_fast.config import RouterConfig
    from zeta_fast.dispatch import Dispatcher
    from zeta_fast.health import HealthMonitor
    from zeta_fast.learning.predictor import OutcomePredictor
    from zeta_fast.shared import SharedState

T = TypeVar("T")
_log = logging.getLogger("zeta_fast.router")

__all__ = ["LearnedStateSaver", "Runtime", "connect_shared"]

#: How many dispatched attempts the recent list keeps.
RECENT_SIZE = 200


def connect_shared(config: RouterConfig) -> tuple[Any, bool]:
    """The Redis client when shared state is on (None when off), and
    whether to restore the local snapshot: not when Redis holds a window
    already (then this instance starts warm from the others, not from its
    own past). Called before the tracker is made."""
    spec = config.shared_state
    if not spec.enabled:
        return None, True
    try:
        import redis
    except ImportError as exc:
        raise ImportError(
            "shared_state needs the redis client: pip install 'zeta_fast[redis]'"
        ) from exc
    from zeta_fast.shared import shared_client, window_in_redis

    client = shared_client(spec)
    window = config.window_config()
    try:
        warm = window_in_redis(client, spec.namespace, window.bucket_ms, window.buckets)
    except redis.RedisError as exc:
        _log.warning("shared state unavailable at start (%s): starting from local state", exc)
        warm = False
    return client, not warm


class Runtime:
    """The threads, loops and background parts of one router.

    Args:
        config: the router's configuration.
        tracker: the router's tracker.
        core: the router's native core.
        predictor: the learned router's predictor (None: learning off).
        feed: the router's outcome feed; the recent list subscribes to it
            here (the log and the alerts are fed by the core).
        shared_client: the Redis client from ``connect_shared`` (None: off).
    """

    def __init__(
        self,
        config: RouterConfig,
        tracker: PerformanceTracker,
        core: RouterCore,
        predictor: OutcomePredictor | None,
        feed: OutcomeFeed,
        shared_client: Any = None,
    ) -> None:
        self.config = config
        self.tracker = tracker
        self.core = core
        self.feed = feed
        self.learned_saver = self._start_learned_state(predictor)
        self.outcome_log = self._open_outcome_log()
        if self.outcome_log is not None:
            # The core appends every outcome it records: no Python call.
            core.log_outcomes(self.outcome_log.writer)
        #: The dispatched attempts, newest last: subscribed with the first
        #: dispatcher (before it there are none, and ``Router.record`` does
        #: not pay for a subscriber that keeps nothing of its outcomes).
        self.recent: deque[RecentOutcome] = deque(maxlen=RECENT_SIZE)
        self._keeping_recent = False
        self.alerts: AlertEngine | None = None
        if config.alerts.enabled:
            self.alerts = AlertEngine(
                config.alerts,
                [m.id for m in config.models],
                tracker=tracker,
                history_path=self.outcome_log.path if self.outcome_log is not None else None,
                # The core feeds its detectors as it records: no subscriber.
                watch=core.watch_trends(config.alerts.per_task),
            )
        self.shared: SharedState | None = None
        if shared_client is not None:
            self.shared = self._start_shared(shared_client, predictor)
        self._dispatchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Dispatcher] = (
            weakref.WeakKeyDictionary()
        )
        self._last_dispatcher: tuple[weakref.ref[asyncio.AbstractEventLoop], Dispatcher] | None = (
            None
        )
        self._health: HealthMonitor | None = None
        self._sync: _LoopThread | None = None
        self._lock = threading.Lock()

    # -- what starts with the router ------------------------------------------

    def _start_learned_state(self, predictor: OutcomePredictor | None) -> LearnedStateSaver | None:
        """Loads the learned state when its file exists and keeps saving it."""
        if predictor is None:
            return None
        path = self.config.learning.state_path
        if path is None:
            snapshot = self.tracker.snapshot_path
            if snapshot is None:
                return None
            path = str(Path(snapshot).with_name("learned.bin"))
        saver = LearnedStateSaver(predictor, Path(path), self.config.learning.save_interval_s)
        saver.load()
        return saver.start()

    def _open_outcome_log(self) -> OutcomeLog | None:
        spec = self.config.outcome_log
        if not spec.enabled:
            return None
        path = spec.path
        if path is None:
            snapshot = self.tracker.snapshot_path
            if snapshot is None:
                return None
            path = str(Path(snapshot).with_name("outcomes.sqlite"))
        return OutcomeLog(
            path,
            costs={m.id: m.cost_per_1k_tokens for m in self.config.models},
            max_pending=spec.max_pending,
            retention_days=spec.retention_days,
        )

    def _start_shared(self, client: Any, predictor: OutcomePredictor | None) -> SharedState:
        from zeta_fast.shared import SharedState

        spec = self.config.shared_state
        shared = SharedState(
            client,
            self.tracker,
            self.core,
            {m.id: [r.id for r in m.replicas] for m in self.config.models},
            namespace=spec.namespace,
            instance_id=spec.instance_id,
            interval_s=spec.interval_s,
            stale_after_s=spec.stale_after_s,
        )
        if self.alerts is not None:
            self.alerts.claim = shared.claim_alert
        if predictor is not None:
            next_share = [0.0]

            def share_learned(state: SharedState) -> None:
                # Federated averaging every learned_interval_s, in the sync thread.
                now = time.monotonic()
                if now < next_share[0]:
                    return
                next_share[0] = now + spec.learned_interval_s
                others = state.share_learned(predictor.to_bytes())
                if others:
                    predictor.average_with(others)

            shared.on_cycle.append(share_learned)
        if self.core.share_prefixes():
            # Every cache_aware model's placements, each sync cycle.
            models = [m.id for m in self.config.models]
            core = self.core

            def share_prefixes(state: SharedState) -> None:
                state.share_prefixes(core, models)

            shared.on_cycle.append(share_prefixes)
        return shared.start()

    # -- on demand --------------------------------------------------------------

    def dispatcher(self) -> Dispatcher:
        """The running event loop's dispatcher, made on first use (which
        starts the health checks when ``dispatch.health.enabled``).

        Raises:
            RuntimeError: no event loop is running in this thread.
        """
        loop = asyncio.get_running_loop()
        last = self._last_dispatcher
        # The common case, one serving loop: no WeakKeyDictionary lookup (~1 us).
        if last is not None and last[0]() is loop:
            return last[1]
        dispatcher = self._dispatchers.get(loop)
        if dispatcher is None:
            from zeta_fast.dispatch import Dispatcher

            dispatcher = Dispatcher(self.core, self.config, self.feed)
            self._dispatchers[loop] = dispatcher
            with self._lock:
                if not self._keeping_recent:
                    self._keeping_recent = True
                    self.feed.subscribe(keep_recent(self.recent))
            if self.config.dispatch.health.enabled:
                self.start_health()
        self._last_dispatcher = (weakref.ref(loop), dispatcher)
        return dispatcher

    @property
    def health(self) -> HealthMonitor | None:
        """The health checks while they run, else None."""
        return self._health

    def start_health(self) -> HealthMonitor:
        """Starts the health checks and load scrapes (idempotent)."""
        from zeta_fast.health import HealthMonitor

        with self._lock:
            if self._health is None:
                self._health = HealthMonitor(self.core, self.config)
            return self._health.start()

    def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Runs a coroutine on the synchronous wrappers' loop (started on
        first use) and waits for its result."""
        with self._lock:
            if self._sync is None:
                self._sync = _LoopThread()
        return self._sync.run(make())

    # -- stopping ---------------------------------------------------------------

    async def aclose(self) -> None:
        """Closes the running loop's dispatcher and stops the health checks."""
        await self._close_dispatcher()
        self._stop_health()

    def close(self) -> None:
        """Stops everything (see the module's docstring for the order)."""
        self._stop_health()
        if self.shared is not None:
            self.shared.stop()
        if self.learned_saver is not None:
            self.learned_saver.stop()
        if self.alerts is not None:
            self.alerts.close()
        if self.outcome_log is not None:
            self.outcome_log.close()
        if self._sync is not None:
            sync, self._sync = self._sync, None
            sync.run(self._close_dispatcher())
            sync.stop()

    async def _close_dispatcher(self) -> None:
        self._last_dispatcher = None
        dispatcher = self._dispatchers.pop(asyncio.get_running_loop(), None)
        if dispatcher is not None:
            await dispatcher.close()

    def _stop_health(self) -> None:
        if self._health is not None:
            self._health.stop()
            self._health = None


class LearnedStateSaver:
    """Saves the learned state every ``interval_s`` when it changed, and on
    ``stop``, in the snapshot's format (magic, version, length, CRC-32) and
    the snapshot's way (a synced temporary file renamed into place, the
    previous file kept as ``.prev``), so a crash leaves a whole file and a
    damaged one is refused rather than loaded."""

    def __init__(self, predictor: OutcomePredictor, path: Path, interval_s: float) -> None:
        self.predictor = predictor
        self.path = path
        self.interval_s = interval_s
        #: Why the newest file was skipped by ``load``, if it was.
        self.restore_warning: str | None = None
        self._saved_updates = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def load(self) -> bool:
        """Restores the newest good saved state (the file, else its
        ``.prev``, with a :class:`SnapshotWarning`); False when there is none.

        Raises:
            SnapshotError: neither file is usable (each one's problem is
                named), or one is not a regular file (a named pipe, a folder).
        """
        found = _read_learned_state(self.path)
        if found is None:
            return False
        data, source, problem = found
        if problem is not None:
            self.restore_warning = (
                f"{self.path} was unusable ({problem}); "
                f"restored the previous learned state {source}"
            )
            warnings.warn(self.restore_warning, SnapshotWarning, stacklevel=2)
        self.predictor.restore(data)
        self._saved_updates = self.predictor.updates
        return True

    def save(self) -> bool:
        """Writes the state if it changed since the last save.

        Raises:
            OSError: the file could not be written.
        """
        with self._lock:
            updates = self.predictor.updates
            if updates == self._saved_updates:
                return False
            data = self.predictor.to_bytes()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _write_learned_state(self.path, data)
            self._saved_updates = updates
            return True

    def start(self) -> LearnedStateSaver:
        self._thread = threading.Thread(target=self._run, name="zeta-fast-learned", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.save()
            except OSError as exc:  # a full disk must not kill the saver
                _log.warning("could not save the learned state to %s: %s", self.path, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.save()


class _LoopThread:
    """An event loop in a daemon thread, for the synchronous wrappers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="zeta-fast-sync", daemon=True
        )
        self.thread.start()

    def run(self, coroutine: Awaitable[T]) -> T:
        future = asyncio.run_coroutine_threadsafe(_awaited(coroutine), self.loop)
        return future.result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5.0)
        self.loop.close()


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable
