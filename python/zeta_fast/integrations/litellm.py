"""zeta_fast as a LiteLLM routing strategy: existing ``litellm.Router``
deployments adopt it with one call.

    import litellm
    from zeta_fast.integrations.litellm import use_zeta_fast

    router = litellm.Router(model_list=[...])
    strategy = use_zeta_fast(router, capabilities={"openai/coder-7b": {"code": 90, "chat": 60}})

Each LiteLLM model group becomes a zeta_fast ``Router``: every distinct
``litellm_params.model`` is a model, every deployment (``model_info.id``) a
replica. zeta_fast profiles the request, picks the deployment and learns from
LiteLLM's own success and failure callbacks (latency from its timings).
Requires the ``litellm`` package (the ``bench`` extra installs it).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from litellm.integrations.custom_logger import CustomLogger
from litellm.types.router import CustomRoutingStrategyBase

from zeta_fast._core import Decision, PerformanceTracker
from zeta_fast.config import parse_router_config
from zeta_fast.router import Router

__all__ = ["ZetaRoutingStrategy", "use_zeta_fast"]

TEXT_TASKS = ("code", "reasoning", "chat", "knowledge")
TOKEN_KEY = "zeta_fast_decision"


def _seconds(value: object) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float):
        return float(value)
    return 0.0


class ZetaRoutingStrategy(CustomRoutingStrategyBase, CustomLogger):
    """Chooses LiteLLM deployments with zeta_fast and records their outcomes."""

    def __init__(
        self,
        model_list: list[dict[str, Any]],
        *,
        capabilities: Mapping[str, Mapping[str, float]] | None = None,
        default_capability: float = 80.0,
        tracker: PerformanceTracker | None = None,
        spread_margin: float = 10.0,
    ) -> None:
        CustomLogger.__init__(self)
        self.tracker = tracker if tracker is not None else PerformanceTracker(persist=False)
        self._routers: dict[str, Router] = {}
        self._deployments: dict[str, dict[str, Any]] = {}
        self._pending: dict[str, tuple[Router, Decision]] = {}
        self._tokens = itertools.count()
        groups: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for deployment in model_list:
            group = deployment["model_name"]
            model = deployment["litellm_params"]["model"]
            replica = str(
                (deployment.get("model_info") or {}).get("id")
                or f"{model}#{len(self._deployments)}"
            )
            self._deployments[replica] = deployment
            api_base = deployment["litellm_params"].get("api_base") or "http://127.0.0.1"
            groups.setdefault(group, {}).setdefault(model, []).append(
                {
                    "id": replica,
                    # LiteLLM's api_base ends in the API's /v1, a replica's URL may
                    # not (here it only names the deployment: LiteLLM sends).
                    "url": api_base.rstrip("/").removesuffix("/v1"),
                }
            )
        for group, models in groups.items():
            config = parse_router_config(
                {
                    "models": [
                        {
                            "id": model,
                            "capabilities": dict(
                                (capabilities or {}).get(model)
                                or {task: default_capability for task in TEXT_TASKS}
                            ),
                            "replicas": replicas,
                        }
                        for model, replicas in models.items()
                    ]
                }
            )
            self._routers[group] = Router(config, tracker=self.tracker, spread_margin=spread_margin)

    def _choose(
        self,
        model: str,
        messages: list[dict[str, str]] | None,
        input: str | list[Any] | None,
        request_kwargs: dict[str, Any] | None,
    ) -> dict[str, Any]:
        router = self._routers.get(model)
        if router is None:
            raise ValueError(f"no deployments for model group {model!r}")
        request: Any = messages if messages is not None else {"input": input or ""}
        decision = router.route(request)
        metadata = (request_kwargs or {}).get("metadata")
        if isinstance(metadata, dict):
            # LiteLLM hands this metadata dict to its callbacks: the token
            # there matches the outcome to the decision.
            token = f"{id(decision):x}-{next(self._tokens)}"
            metadata[TOKEN_KEY] = token
            self._pending[token] = (router, decision)
        else:
            # Nothing to match an outcome to: free the slot now.
            router.record(decision, True, 0.0)
        return self._deployments[decision.replica_id]

    def get_available_deployment(  # type: ignore[override]
        self,
        model: str,
        messages: list[dict[str, str]] | None = None,
        input: str | list[Any] | None = None,
        specific_deployment: bool | None = False,
        request_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._choose(model, messages, input, request_kwargs)

    async def async_get_available_deployment(  # type: ignore[override]
        self,
        model: str,
        messages: list[dict[str, str]] | None = None,
        input: str | list[Any] | None = None,
        specific_deployment: bool | None = False,
        request_kwargs: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._choose(model, messages, input, request_kwargs)

    def _finish(self, kwargs: dict[str, Any], success: bool, start: Any, end: Any) -> None:
        metadata = (kwargs.get("litellm_params") or {}).get("metadata") or {}
        pending = self._pending.pop(str(metadata.get(TOKEN_KEY)), None)
        if pending is None:
            return
        router, decision = pending
        elapsed = (
            (end - start) if isinstance(end, datetime) and isinstance(start, datetime) else 0.0
        )
        router.record(decision, success, max(0.0, _seconds(elapsed) * 1000.0))

    def log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._finish(kwargs, True, start_time, end_time)

    def log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._finish(kwargs, False, start_time, end_time)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._finish(kwargs, True, start_time, end_time)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self._finish(kwargs, False, start_time, end_time)


def use_zeta_fast(router: Any, **options: Any) -> ZetaRoutingStrategy:
    """Makes a ``litellm.Router`` choose deployments with zeta_fast and feed
    it LiteLLM's outcomes. ``options`` go to ``ZetaRoutingStrategy``."""
    import litellm

    strategy = ZetaRoutingStrategy(router.model_list, **options)
    router.set_custom_routing_strategy(strategy)
    litellm.callbacks.append(strategy)
    return strategy
