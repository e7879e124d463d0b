"""The router: profile a request, score the candidate models from live
metrics, take a replica slot, and learn from the outcome.

The work happens in the Rust core (``RouterCore``); this module turns a
validated ``RouterConfig`` into it and profiles requests.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zeta_fast._core import Decision, PerformanceTracker, RequestProfile, RouterCore
from zeta_fast.config import RouterConfig, load_router_config
from zeta_fast.exceptions import NoCandidatesError

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
        self.tracker = (
            tracker if tracker is not None else PerformanceTracker(self.config.window_config())
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
        self._core = RouterCore(
            self.tracker,
            models,
            list(self.config.contexts),
            self.config.adaptive_config(),
            self.config.replica_policy,
            spread_margin,
            self.config.dispatch.resilience(),
        )
        # The hot path goes straight to the native methods: no Python frame
        # between the caller and Rust (the methods below document them).
        self.route = self._core.route  # type: ignore[method-assign]
        self.record = self._core.record  # type: ignore[method-assign]

    def route(
        self,
        request: Any = None,
        *,
        context: str | None = None,
        profile: RequestProfile | None = None,
    ) -> Decision:
        """Chooses a model and a replica for a request and takes a slot on it.

        ``request`` is anything ``zeta_fast.profile`` takes; pass ``profile``
        instead when it is already known. Record the outcome with ``record``,
        which frees the slot.

        Raises:
            NoCandidatesError: every capable model's replicas are down or full.
            InvalidInputError: no model serves the task, or the context is unknown.
        """
        return self._core.route(request, context=context, profile=profile)

    def record(self, decision: Decision, success: bool, latency_ms: float) -> None:
        """Records the outcome of a routed request and frees its replica slot."""
        self._core.record(decision, success, latency_ms)

    def assign(
        self, requests: Iterable[Any], *, context: str | None = None
    ) -> list[Decision | None]:
        """Routes a batch at once: each request holds its slot until recorded,
        so the batch spreads over replicas and near-equal models. Requests
        that find every replica full get ``None``."""
        decisions: list[Decision | None] = []
        for request in requests:
            try:
                decisions.append(self.route(request, context=context))
            except NoCandidatesError:
                decisions.append(None)
        return decisions

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
