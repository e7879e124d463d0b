"""The router: profile a request, score the candidate models from live
metrics, take a replica slot, and learn from the outcome.

``Router`` is a facade. The work happens in the Rust core (``RouterCore``),
which this module builds from a validated ``RouterConfig``; the core itself
appends every outcome it records to the outcome log and feeds the alert
detectors (in Rust, no Python call), and publishes it to one
:class:`~zeta_fast.outcomes.OutcomeFeed` for Python subscribers (the
dashboard's recent list); and what runs in the background (threads, event loops, dispatchers,
health checks, shared state) is the :class:`~zeta_fast.runtime.Runtime`'s.
"""

from __future__ import annotations

import contextlib
import operator
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from zeta_fast._core import (
    Decision,
    ModelSettings,
    PerformanceTracker,
    RequestProfile,
    RouterCore,
)
from zeta_fast.config import RouterConfig, load_router_config
from zeta_fast.exceptions import InvalidInputError, NoCandidatesError
from zeta_fast.learning.predictor import OutcomePredictor
from zeta_fast.outcomes import OutcomeFeed, RecentOutcome
from zeta_fast.request_features import needs_of
from zeta_fast.runtime import Runtime, connect_shared

if TYPE_CHECKING:
    # Dispatch pulls in aiohttp: imported on first use, so scoring-only users
    # do not pay for it at import time.
    from zeta_fast.alerts.engine import AlertEngine
    from zeta_fast.dispatch import Dispatcher, RoutedResponse, RoutedStream
    from zeta_fast.health import HealthMonitor
    from zeta_fast.outcome_log import OutcomeLog
    from zeta_fast.shared import SharedState

T = TypeVar("T")


class RouteCall(Protocol):
    """The signature of ``Router.route`` (the core's native method)."""

    def __call__(
        self,
        request: Any = None,
        *,
        context: str | None = None,
        profile: RequestProfile | None = None,
        model: str | None = None,
        needs: int = 0,
        replica: str | None = None,
        session: str | None = None,
    ) -> Decision: ...


class RecordCall(Protocol):
    """The signature of ``Router.record`` (the core's native method)."""

    def __call__(self, decision: Decision, success: bool, latency_ms: float) -> bool: ...


class FeedbackCall(Protocol):
    """The signature of ``Router.feedback`` (the core's native method)."""

    def __call__(
        self,
        decision: Decision,
        good: bool,
        *,
        source: str | None = None,
        confidence: float | None = None,
    ) -> bool: ...


__all__ = ["Decision", "Router"]


def build_core(
    config: RouterConfig, tracker: PerformanceTracker, spread_margin: float
) -> RouterCore:
    """The native core for a configuration, recording into ``tracker``."""
    models = [
        ModelSettings(
            model.id,
            dict(model.capabilities),
            [model.complexity_range]
            + [config.complexity_range(model.id, name) for name in config.contexts],
            [(replica.id, replica.max_concurrency) for replica in model.replicas],
            model.context_window or 0,
            list(model.fallbacks),
        )
        for model in config.models
    ]
    learning = config.learning
    cost = config.cost
    core = RouterCore(
        tracker,
        models,
        list(config.contexts),
        config.adaptive_config(),
        config.replica_policy,
        spread_margin,
        config.dispatch.resilience(config.relative_latency_factor, config.prefix_cache),
        learning.settings() if learning.enabled else None,
        None
        if cost.willingness_to_pay is None
        else {
            "cost_per_1k_tokens": [m.cost_per_1k_tokens for m in config.models],
            "willingness_to_pay": cost.willingness_to_pay,
            "expected_completion_tokens": cost.expected_completion_tokens,
        },
        model_ordering_name=config.model_ordering,
    )
    for spec in config.models:
        if spec.unsupported:
            core.set_unserved(spec.id, list(spec.unsupported))
    return core


_ROUTE_DOC = """``route(request=None, *, context=None, profile=None, model=None,
needs=0, replica=None, session=None) -> Decision``: chooses a model and a replica
for a request and takes a slot on it.

This is the native ``RouterCore.route`` of the router's core, bound:
a call goes straight to Rust, with no Python frame between the caller
and the decision (the property's getter is C, ``operator.attrgetter``;
nothing is stored on the instance).

``request`` is anything ``zeta_fast.profile`` takes; pass ``profile``
instead when it is already known; ``model`` names the model to use
instead of choosing one (retries then stay on its replicas and its
``fallbacks``). ``needs`` is what the request needs beyond text
(``zeta_fast.request_features.needs_of(path, body)``): models that
cannot serve it are skipped. ``replica`` (with ``model``) is taken
when it can take the request (it holds the conversation's state).
``session`` names the conversation: under ``replica_policy:
cache_aware`` it stays on one replica (the prompt's prefix does the
same without it).
Record the outcome with ``record``, which frees the slot.

Raises:
    NoCandidatesError: every capable model's replicas are down or full.
    UnsupportedRequestError: no model (or not ``model``) serves ``needs``.
    InvalidInputError: no model serves the task, or the context is unknown.
"""

_RECORD_DOC = """``record(decision, success, latency_ms) -> bool``: records the
outcome of a routed request and frees its replica slot (and appends it to
the outcome log when there is one); then hands it to ``outcomes``'
subscribers. ``success`` is the caller's verdict: with
``learning.learn_from_outcomes`` the learned router learns it (a quality
verdict goes to ``feedback``); returns whether it did.

Like ``route``, the native ``RouterCore.record`` of the router's core,
bound (no Python frame).

Raises:
    InvalidInputError: the decision was recorded already, is another
        router's, or the router is closed; ``latency_ms`` is not finite and >= 0.
"""

_FEEDBACK_DOC = """``feedback(decision, good, *, source="explicit", confidence=1.0) -> bool``:
a quality verdict on a decision's answer, after its outcome was recorded (by
``record`` or by dispatch): counted per source (``RouterCore.verdict_counts``),
attributed in the outcome log (source, verdict, confidence), learned with the
source's weight (``learning.source_weights``) times ``confidence``, and handed
to ``outcomes``' subscribers when learned (kind ``feedback``, not about the
replica). ``source``: ``explicit`` (the caller's word), ``validator``,
``judge``, ``shadow``, ``structural``, ``regeneration``, ``continuation``.
Once per decision and source; True when learned (learning on, the request's
text known, a weight above 0). The native ``RouterCore.feedback``, bound.
"""


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
        >>> router.record(decision, success=True, latency_ms=42.0)  # learning is off
        False
        >>> router.close()
    """

    def __init__(
        self,
        config: RouterConfig | str | Path,
        *,
        tracker: PerformanceTracker | None = None,
        spread_margin: float = 10.0,
    ) -> None:
        self.config = config if isinstance(config, RouterConfig) else load_router_config(config)
        shared_client, restore = connect_shared(self.config)
        # A tracker the router made is the router's to close (its final
        # snapshot, its saver thread); one passed in may serve others.
        self._owns_tracker = tracker is None
        self.tracker = (
            tracker
            if tracker is not None
            else PerformanceTracker(
                self.config.window_config(), snapshot_path=self.config.state_path, restore=restore
            )
        )
        self._core = build_core(self.config, self.tracker, spread_margin)
        native = self._core.predictor
        #: The learned router's predictor, shared with the core (None when
        #: ``learning.enabled`` is off).
        self.predictor = OutcomePredictor._wrap(native) if native is not None else None
        #: Where every outcome goes once the core has it, for Python
        #: subscribers: the recent list, and anyone else (the outcome log
        #: and the alerts are fed by the core itself, in Rust).
        self.outcomes = OutcomeFeed(mirror=self._core.set_subscribers)
        self._runtime = Runtime(
            self.config, self.tracker, self._core, self.predictor, self.outcomes, shared_client
        )
        # The native methods the hot path calls, looked up once.
        self._route = self._core.route

    # -- what runs beside routing (the runtime's) ------------------------------

    @property
    def outcome_log(self) -> OutcomeLog | None:
        """Every decision and its outcome, in SQLite (None when off)."""
        return self._runtime.outcome_log

    @property
    def recent(self) -> deque[RecentOutcome]:
        """The latest dispatched attempts, newest last (a dashboard's
        "recent decisions"): (unix time, decision, outcome kind, latency ms)."""
        return self._runtime.recent

    @property
    def alerts(self) -> AlertEngine | None:
        """Trend detection and alert rules (None when off)."""
        return self._runtime.alerts

    @property
    def shared(self) -> SharedState | None:
        """The link to the other instances through Redis (None when
        ``shared_state.enabled`` is off)."""
        return self._runtime.shared

    @property
    def health(self) -> HealthMonitor | None:
        """The background health checks while they run (see
        ``start_health``), else None."""
        return self._runtime.health

    # -- routing -----------------------------------------------------------------

    if TYPE_CHECKING:

        @property
        def route(self) -> RouteCall: ...

        @property
        def record(self) -> RecordCall: ...

        @property
        def feedback(self) -> FeedbackCall: ...

    else:
        route = property(operator.attrgetter("_core.route"), doc=_ROUTE_DOC)
        # The core's own methods (no Python frame): they record, then hand
        # the outcome to the feed's subscribers, which the feed mirrors into
        # the core.
        record = property(operator.attrgetter("_core.record"), doc=_RECORD_DOC)
        feedback = property(operator.attrgetter("_core.feedback"), doc=_FEEDBACK_DOC)

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

    def dispatcher(self) -> Dispatcher:
        """The running event loop's dispatcher (made on first use, which
        starts the health checks when ``dispatch.health.enabled``): what
        sends requests with their retries and fallbacks and records every
        attempt. A server on one loop holds it: its ``request`` and
        ``open_stream`` are ``forward`` and ``forward_stream`` without the
        loop lookup.

        Raises:
            RuntimeError: called outside a running event loop.
        """
        return self._runtime.dispatcher()

    async def _send(
        self,
        path: str,
        payload: dict[str, Any],
        context: str | None,
        model: str | None,
    ) -> RoutedResponse:
        dispatcher = self._runtime.dispatcher()
        decision = self._route(payload, context=context, model=model, needs=needs_of(path, payload))
        return await dispatcher.request(path, payload, decision)

    async def forward(
        self, path: str, payload: dict[str, Any], decision: Decision
    ) -> RoutedResponse:
        """Sends an OpenAI request body to ``path`` (``/v1/chat/completions``,
        ``/v1/completions``, ``/v1/embeddings``) for a decision already taken
        with ``route``, retrying and falling back as configured; every
        attempt is recorded. What a gateway does with a client's body."""
        return await self._runtime.dispatcher().request(path, payload, decision)

    def forward_stream(
        self, path: str, payload: dict[str, Any], decision: Decision
    ) -> RoutedStream:
        """``forward`` for a streamed body (``"stream": true``): iterate the
        result for the SSE events as they arrive."""
        return self._runtime.dispatcher().open_stream(path, payload, decision)

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
        decision = self._route(payload, context=context, model=model, needs=needs_of(path, payload))
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
        length limit, or ``validator`` returning False (its word on each
        answer it sees is a ``validator`` verdict). Returns the first
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
            elif validator is not None:
                passed = bool(validator(answer))
                # The validator's word is a verdict on that model's answer
                # (source "validator"), learned when learning is on.
                with contextlib.suppress(InvalidInputError):
                    self.feedback(answer.decision, passed, source="validator")
                if not passed:
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
        return self._runtime.run(make)

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
        return self._runtime.start_health()

    async def aclose(self) -> None:
        """Closes this loop's connections and stops the health checks."""
        await self._runtime.aclose()

    def close(self) -> None:
        """Stops the health checks and the sync wrappers' loop, closing
        their connections (use ``aclose`` for an async caller's loop), and
        writes what the outcome log still holds. A tracker the router made
        (from ``state_path``) writes its final snapshot and stops its saver;
        one passed in is left to its owner. Routing and recording are
        refused from then on (InvalidInputError: the router is closed), so
        no outcome is taken and then lost."""
        self._core.close()
        self._runtime.close()
        if self._owns_tracker:
            self.tracker.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
        self.close()
