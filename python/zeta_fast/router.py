"""The router: profile a request, score the candidate models from live
metrics, take a replica slot, and learn from the outcome.

The work happens in the Rust core (``RouterCore``); this module turns a
validated ``RouterConfig`` into it and profiles requests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from zeta_fast._core import Decision, PerformanceTracker, RequestProfile, RouterCore
from zeta_fast.alerts.engine import AlertEngine
from zeta_fast.config import RouterConfig, load_router_config
from zeta_fast.exceptions import NoCandidatesError
from zeta_fast.learning.predictor import OutcomePredictor
from zeta_fast.outcome_log import OutcomeLog
from zeta_fast.request_features import needs_of

if TYPE_CHECKING:
    # Dispatch pulls in aiohttp: imported on first use, so scoring-only users
    # do not pay for it at import time.
    from zeta_fast.dispatch import Dispatcher, RecentOutcome, RoutedResponse, RoutedStream
    from zeta_fast.health import HealthMonitor
    from zeta_fast.shared import SharedState

T = TypeVar("T")
_log = logging.getLogger("zeta_fast.router")

__all__ = ["Decision", "Router"]

# (id, capabilities, ranges, replicas, context_window, fallbacks): RouterCore's model rows.
ModelTuple = tuple[
    str, dict[str, float], list[tuple[float, float]], list[tuple[str, int]], int, list[str]
]


class Router:
    """Routes requests to a model and a replica, and learns from outcomes.

    Args:
        config: a ``RouterConfig`` or the path of a YAML/TOML/JSON file.
        tracker: where outcomes are recorded; by default a new persisting
            ``PerformanceTracker`` with the configuration's window.
        spread_margin: models within this many score points of the best
            share load (least busy first), so a batch spreads over
            near-equal models instead of piling onto the top one.

    Example:
        >>> from zeta_fast import ManualClock, PerformanceTracker, Router
        >>> router = Router("examples/router.yaml",
        ...                 tracker=PerformanceTracker(clock=ManualClock(0), persist=False))
        >>> decision = router.route("def add(a, b):\\n    return a + b")
        >>> decision.model_id, decision.task_type
        ('coder-7b', 'code')
        >>> router.record(decision, success=True, latency_ms=42.0)
    """

    def __init__(
        self,
        config: RouterConfig | str | Path,
        *,
        tracker: PerformanceTracker | None = None,
        spread_margin: float = 10.0,
    ) -> None:
        self.config = config if isinstance(config, RouterConfig) else load_router_config(config)
        shared_client, restore = self._shared_client()
        self.tracker = (
            tracker
            if tracker is not None
            else PerformanceTracker(
                self.config.window_config(), snapshot_path=self.config.state_path, restore=restore
            )
        )
        models: list[ModelTuple] = [
            (
                model.id,
                dict(model.capabilities),
                [model.complexity_range]
                + [self.config.complexity_range(model.id, name) for name in self.config.contexts],
                [(replica.id, replica.max_concurrency) for replica in model.replicas],
                model.context_window or 0,
                list(model.fallbacks),
            )
            for model in self.config.models
        ]
        learning = self.config.learning
        cost = self.config.cost
        self._core = RouterCore(
            self.tracker,
            models,
            list(self.config.contexts),
            self.config.adaptive_config(),
            self.config.replica_policy,
            spread_margin,
            {
                **self.config.dispatch.resilience(),
                "relative_latency_factor": self.config.relative_latency_factor,
            },
            learning.core_args() if learning.enabled else None,
            None
            if cost.willingness_to_pay is None
            else {
                "cost_per_1k_tokens": [m.cost_per_1k_tokens for m in self.config.models],
                "willingness_to_pay": cost.willingness_to_pay,
                "expected_completion_tokens": cost.expected_completion_tokens,
            },
        )
        for spec in self.config.models:
            if spec.unsupported:
                self._core.set_unserved(spec.id, list(spec.unsupported))
        native = self._core.predictor
        #: The learned router's predictor, shared with the core (None when
        #: ``learning.enabled`` is off).
        self.predictor = OutcomePredictor._wrap(native) if native is not None else None
        self._learned_saver = self._start_learned_state()
        #: Every decision and its outcome, in SQLite (None when off).
        self.outcome_log = self._open_outcome_log()
        #: The latest dispatched attempts, newest last (a dashboard's
        #: "recent decisions"): (unix time, decision, outcome kind, latency ms).
        self.recent: deque[RecentOutcome] = deque(maxlen=200)
        #: Trend detection and alert rules (None when off).
        self.alerts: AlertEngine | None = None
        if self.config.alerts.enabled:
            self.alerts = AlertEngine(
                self.config.alerts,
                [m.id for m in self.config.models],
                tracker=self.tracker,
                history_path=self.outcome_log.path if self.outcome_log is not None else None,
            )
        #: The link to the other instances through Redis (None when
        #: ``shared_state.enabled`` is off).
        self.shared: SharedState | None = None
        if shared_client is not None:
            self.shared = self._start_shared(shared_client)
        # The hot path goes straight to the native methods: no Python frame
        # between the caller and Rust (the methods below document them).
        self.route = self._core.route  # type: ignore[method-assign]
        if self.outcome_log is None and self.alerts is None:
            self.record = self._core.record  # type: ignore[method-assign]
            self.feedback = self._core.feedback  # type: ignore[method-assign]
        self._dispatchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Dispatcher] = (
            weakref.WeakKeyDictionary()
        )
        self._last_dispatcher: tuple[weakref.ref[asyncio.AbstractEventLoop], Dispatcher] | None = (
            None
        )
        self._health: HealthMonitor | None = None
        self._sync: _LoopThread | None = None
        self._lock = threading.Lock()

    def route(
        self,
        request: Any = None,
        *,
        context: str | None = None,
        profile: RequestProfile | None = None,
        model: str | None = None,
        needs: int = 0,
        replica: str | None = None,
    ) -> Decision:
        """Chooses a model and a replica for a request and takes a slot on it.

        ``request`` is anything ``zeta_fast.profile`` takes; pass ``profile``
        instead when it is already known; ``model`` names the model to use
        instead of choosing one (retries then stay on its replicas and its
        ``fallbacks``). ``needs`` is what the request needs beyond text
        (``zeta_fast.request_features.needs_of(path, body)``): models that
        cannot serve it are skipped. ``replica`` (with ``model``) is taken
        when it can take the request (it holds the conversation's state).
        Record the outcome with ``record``, which frees the slot.

        Raises:
            NoCandidatesError: every capable model's replicas are down or full.
            UnsupportedRequestError: no model (or not ``model``) serves ``needs``.
            InvalidInputError: no model serves the task, or the context is unknown.
        """
        return self._core.route(
            request, context=context, profile=profile, model=model, needs=needs, replica=replica
        )

    def record(self, decision: Decision, success: bool, latency_ms: float) -> bool:
        """Records the outcome of a routed request and frees its replica slot
        (and appends it to the outcome log when there is one). ``success``
        is the caller's verdict: with ``learning.learn_from_outcomes`` the
        learned router learns it (a quality verdict goes to ``feedback``);
        returns whether it did."""
        taught = self._core.record(decision, success, latency_ms)
        if self.outcome_log is not None:
            self.outcome_log.append(
                decision,
                "success" if success else "other",
                latency_ms,
                learned=success if taught else None,
            )
        if self.alerts is not None:
            self.alerts.observe(decision.model_id, success, latency_ms, decision.task_type)
        return taught

    def predict(self, request: Any) -> list[dict[str, Any]]:
        """What the learned router expects of each model for ``request`` (a
        prompt, a messages list or a body): ``success`` (probability of a
        good answer from the text), ``prior`` (the category's smoothed
        rate), ``learned_capability`` and ``ramp`` (how far it replaces the
        configured capability), ``expected_latency_ms`` (learned from the
        model's answer times; None until 5 are known) and
        ``expected_cost`` (``cost_per_1k_tokens`` x (estimated prompt tokens
        + ``cost.expected_completion_tokens``) / 1000).

        Raises:
            InvalidInputError: learning is off.
        """
        found = self._core.predict(request)
        prices = {m.id: m.cost_per_1k_tokens for m in self.config.models}
        tokens = found["prompt_tokens"] + self.config.cost.expected_completion_tokens
        return [
            {
                **entry,
                "category": found["category"],
                "expected_cost": prices[entry["model_id"]] * tokens / 1000.0,
            }
            for entry in found["models"]
        ]

    def feedback(self, decision: Decision, good: bool) -> bool:
        """A quality verdict on a decision's answer, after its outcome was
        recorded (by ``record`` or by dispatch): the learned router learns
        it. Once per decision; True when learned (learning on and the
        request's text known)."""
        learned = self._core.feedback(decision, good)
        if learned and self.outcome_log is not None:
            self.outcome_log.append(decision, "feedback", 0.0, learned=good)
        return learned

    def _shared_client(self) -> tuple[Any, bool]:
        """The Redis client when shared state is on, and whether to restore
        the local snapshot: not when Redis holds a window already (then this
        instance starts warm from the others, not from its own past)."""
        spec = self.config.shared_state
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
        window = self.config.window_config()
        try:
            warm = window_in_redis(client, spec.namespace, window.bucket_ms, window.buckets)
        except redis.RedisError as exc:
            _log.warning("shared state unavailable at start (%s): starting from local state", exc)
            warm = False
        return client, not warm

    def _start_shared(self, client: Any) -> SharedState:
        from zeta_fast.shared import SharedState

        spec = self.config.shared_state
        shared = SharedState(
            client,
            self.tracker,
            self._core,
            {m.id: [r.id for r in m.replicas] for m in self.config.models},
            namespace=spec.namespace,
            instance_id=spec.instance_id,
            interval_s=spec.interval_s,
            stale_after_s=spec.stale_after_s,
        )
        if self.alerts is not None:
            self.alerts.claim = shared.claim_alert
        predictor = self.predictor
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
        return shared.start()

    def _start_learned_state(self) -> _LearnedStateSaver | None:
        """Loads the learned state when its file exists and keeps saving it."""
        if self.predictor is None:
            return None
        path = self.config.learning.state_path
        if path is None:
            snapshot = self.tracker.snapshot_path
            if snapshot is None:
                return None
            path = str(Path(snapshot).with_name("learned.bin"))
        saver = _LearnedStateSaver(self.predictor, Path(path), self.config.learning.save_interval_s)
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

    def assign(
        self, requests: Iterable[Any], *, context: str | None = None
    ) -> list[Decision | None]:
        """Routes a batch at once: each request holds its slot until recorded,
        so the batch spreads over replicas and near-equal models. Requests
        that find every replica full get ``None``. All or nothing: when one
        request is bad the error is raised and no slot stays taken."""
        decisions: list[Decision | None] = []
        try:
            for request in requests:
                try:
                    decisions.append(self._core.route(request, context=context))
                except NoCandidatesError:
                    decisions.append(None)
        except BaseException:
            for taken in decisions:
                if taken is not None:
                    self._core.release(taken)
            raise
        return decisions

    @property
    def core(self) -> RouterCore:
        """The native core: per-replica status, scores and histograms for
        metrics pages and dashboards (``replica_status``, ``scores``, ``overhead``)."""
        return self._core

    def complexity_range(self, model: str, context: str | None = None) -> tuple[float, float]:
        """The complexity range ``model`` suits now in ``context`` (its own by default)."""
        return self._core.complexity_range(model, context)

    def tune_ranges(
        self, *, min_requests: int = 20, target_success_rate: float = 0.95, step: float = 0.05
    ) -> list[dict[str, Any]]:
        """Moves complexity thresholds from recorded outcomes.

        For every model whose range ends below 1 (a smaller model handing the
        hardest requests to a larger one), in every context: when it kept
        succeeding (>= ``target_success_rate``) on the hardest requests it was
        given (the complexity decile just under its edge, at least
        ``min_requests`` of them), its edge moves up by ``step`` so it takes
        harder requests; when it fell more than 10 points short, down. Call
        it periodically; returns the changes made.
        """
        return self._core.tune_ranges(min_requests, target_success_rate, step)

    def in_flight(self, model: str) -> list[int]:
        """Requests running on each replica of ``model``."""
        return self._core.in_flight(model)

    def set_healthy(self, model: str, replica: str, healthy: bool) -> None:
        """Marks a replica healthy or not; unhealthy replicas are never chosen."""
        self._core.set_healthy(model, replica, healthy)

    # -- dispatch: profile -> route -> send -> record ------------------------

    def _dispatcher(self) -> Dispatcher:
        loop = asyncio.get_running_loop()
        last = self._last_dispatcher
        # The common case, one serving loop: no WeakKeyDictionary lookup (~1 us).
        if last is not None and last[0]() is loop:
            return last[1]
        dispatcher = self._dispatchers.get(loop)
        if dispatcher is None:
            from zeta_fast.dispatch import Dispatcher

            dispatcher = Dispatcher(
                self._core, self.config, self.outcome_log, self.alerts, self.recent
            )
            self._dispatchers[loop] = dispatcher
            if self.config.dispatch.health.enabled:
                self.start_health()
        self._last_dispatcher = (weakref.ref(loop), dispatcher)
        return dispatcher

    async def _send(
        self,
        path: str,
        payload: dict[str, Any],
        context: str | None,
        model: str | None,
    ) -> RoutedResponse:
        dispatcher = self._dispatcher()
        decision = self._core.route(
            payload, context=context, model=model, needs=needs_of(path, payload)
        )
        return await dispatcher.request(path, payload, decision)

    async def forward(
        self, path: str, payload: dict[str, Any], decision: Decision
    ) -> RoutedResponse:
        """Sends an OpenAI request body to ``path`` (``/v1/chat/completions``,
        ``/v1/completions``, ``/v1/embeddings``) for a decision already taken
        with ``route``, retrying and falling back as configured; every
        attempt is recorded. What a gateway does with a client's body."""
        return await self._dispatcher().request(path, payload, decision)

    def forward_stream(
        self, path: str, payload: dict[str, Any], decision: Decision
    ) -> RoutedStream:
        """``forward`` for a streamed body (``"stream": true``): iterate the
        result for the SSE events as they arrive."""
        from zeta_fast.dispatch import RoutedStream

        stream = RoutedStream(decision)
        stream._events = self._dispatcher().stream(path, payload, decision, stream)
        return stream

    async def chat(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        context: str | None = None,
        model: str | None = None,
        **params: Any,
    ) -> RoutedResponse:
        """Sends a chat completion to the model and replica the router picks
        (or to ``model``), retrying and falling back as configured, and
        records the outcome. ``params`` are OpenAI body fields
        (``max_tokens``, ``temperature``, ...).

        Raises:
            BackendError: every allowed attempt failed (see ``.attempts``).
            NoCandidatesError: no replica can take it now.
        """
        payload = {**params, "messages": list(messages)}
        payload.pop("stream", None)
        return await self._send("/v1/chat/completions", payload, context, model)

    async def complete(
        self,
        prompt: str | list[str],
        *,
        context: str | None = None,
        model: str | None = None,
        **params: Any,
    ) -> RoutedResponse:
        """Sends a (legacy) completion request; see ``chat``."""
        payload = {**params, "prompt": prompt}
        payload.pop("stream", None)
        return await self._send("/v1/completions", payload, context, model)

    async def embed(
        self,
        input: str | list[str],
        *,
        model: str | None = None,
        **params: Any,
    ) -> RoutedResponse:
        """Sends an embeddings request to an embedding model; see ``chat``."""
        payload = {**params, "input": input}
        return await self._send("/v1/embeddings", payload, None, model)

    def chat_stream(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        context: str | None = None,
        model: str | None = None,
        **params: Any,
    ) -> RoutedStream:
        """Streams a chat completion: iterate the result (inside a running
        event loop) for the raw SSE events as they arrive. Usage is asked for
        (``stream_options.include_usage``) so tokens are recorded. A failure
        before the first event is retried like ``chat``; after it, never.
        """
        payload = {**params, "messages": list(messages), "stream": True}
        payload.setdefault("stream_options", {"include_usage": True})
        path = "/v1/chat/completions"
        decision = self._core.route(
            payload, context=context, model=model, needs=needs_of(path, payload)
        )
        return self.forward_stream(path, payload, decision)

    async def cascade(
        self,
        messages: Sequence[dict[str, Any]],
        models: Sequence[str],
        *,
        validator: Callable[[RoutedResponse], bool] | None = None,
        **params: Any,
    ) -> RoutedResponse:
        """Runs the cheapest model first and escalates along ``models`` when
        its answer fails a check: an error, an empty answer, one cut by the
        length limit, or ``validator`` returning False. Returns the first
        answer that passes (or the last model's); ``escalations`` on it
        lists (model, reason) for every step that did not.
        """
        from zeta_fast.backends.errors import BackendError

        if not models:
            raise ValueError("cascade needs at least one model, got []")
        escalations: list[tuple[str, str]] = []
        last: RoutedResponse | None = None
        error: BackendError | None = None
        for index, name in enumerate(models):
            final = index == len(models) - 1
            try:
                answer = await self.chat(messages, model=name, **params)
            except BackendError as exc:
                error = exc
                escalations.append((name, f"error:{exc.kind}"))
                continue
            last = answer
            reason = None
            if not answer.text.strip():
                reason = "empty"
            elif answer.finish_reason == "length":
                reason = "length"
            elif validator is not None and not validator(answer):
                reason = "validator"
            if reason is None or final:
                answer.escalations = escalations
                return answer
            escalations.append((name, reason))
        if last is not None:
            last.escalations = escalations
            return last
        assert error is not None
        raise error

    # -- synchronous wrappers ------------------------------------------------

    def _run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        with self._lock:
            if self._sync is None:
                self._sync = _LoopThread()
        return self._sync.run(make())

    def chat_sync(self, messages: Sequence[dict[str, Any]], **kwargs: Any) -> RoutedResponse:
        """``chat`` for code without an event loop (runs on the router's own)."""
        return self._run(lambda: self.chat(messages, **kwargs))

    def complete_sync(self, prompt: str | list[str], **kwargs: Any) -> RoutedResponse:
        """``complete`` for code without an event loop."""
        return self._run(lambda: self.complete(prompt, **kwargs))

    def embed_sync(self, input: str | list[str], **kwargs: Any) -> RoutedResponse:
        """``embed`` for code without an event loop."""
        return self._run(lambda: self.embed(input, **kwargs))

    # -- lifecycle -----------------------------------------------------------

    def start_health(self) -> HealthMonitor:
        """Starts background health checks and load scrapes (idempotent;
        dispatching starts them when ``dispatch.health.enabled``)."""
        from zeta_fast.health import HealthMonitor

        with self._lock:
            if self._health is None:
                self._health = HealthMonitor(self._core, self.config)
            return self._health.start()

    async def aclose(self) -> None:
        """Closes this loop's connections and stops the health checks."""
        self._last_dispatcher = None
        dispatcher = self._dispatchers.pop(asyncio.get_running_loop(), None)
        if dispatcher is not None:
            await dispatcher.close()
        self._stop_background()

    def _stop_background(self) -> None:
        if self._health is not None:
            self._health.stop()
            self._health = None

    def close(self) -> None:
        """Stops the health checks and the sync wrappers' loop, closing
        their connections (use ``aclose`` for an async caller's loop), and
        writes what the outcome log still holds."""
        self._stop_background()
        if self.shared is not None:
            self.shared.stop()
        if self._learned_saver is not None:
            self._learned_saver.stop()
        if self.alerts is not None:
            self.alerts.close()
        if self.outcome_log is not None:
            self.outcome_log.close()
        if self._sync is not None:
            sync, self._sync = self._sync, None
            sync.run(self._close_sync_dispatcher())
            sync.stop()

    async def _close_sync_dispatcher(self) -> None:
        self._last_dispatcher = None
        dispatcher = self._dispatchers.pop(asyncio.get_running_loop(), None)
        if dispatcher is not None:
            await dispatcher.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
        self.close()


class _LearnedStateSaver:
    """Saves the learned state every ``interval_s`` when it changed, and on
    ``stop``: written to a temporary file, synced, then renamed over the
    old one, so a crash leaves the previous state whole."""

    def __init__(self, predictor: OutcomePredictor, path: Path, interval_s: float) -> None:
        self.predictor = predictor
        self.path = path
        self.interval_s = interval_s
        self._saved_updates = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def load(self) -> bool:
        """Restores a saved state; False when there is none."""
        if not self.path.exists():
            return False
        self.predictor.restore(self.path.read_bytes())
        self._saved_updates = self.predictor.updates
        return True

    def save(self) -> bool:
        """Writes the state if it changed since the last save."""
        with self._lock:
            updates = self.predictor.updates
            if updates == self._saved_updates:
                return False
            data = self.predictor.to_bytes()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            with temporary.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
            self._saved_updates = updates
            return True

    def start(self) -> _LearnedStateSaver:
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
