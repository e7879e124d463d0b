"""Route-and-record contenders: zeta_fast's Router against LiteLLM's Router
over the same 32 deployments (8 models x 4 replicas)."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from benches.contenders import Contender
from zeta_fast import ManualClock, PerformanceTracker, Router, profile
from zeta_fast.config import parse_router_config

MODELS = 8
REPLICAS = 4
PROMPT = ("Write a Python function that merges two sorted lists and explain its complexity. " * 20)[
    :1024
]


def zeta_router(learning: bool = False) -> Router:
    models = [
        {
            "id": f"model-{m}",
            "capabilities": {"code": 80 + m, "chat": 70 + m, "reasoning": 75 + m, "knowledge": 70},
            "replicas": [
                {"id": f"model-{m}-r{r}", "url": f"http://127.0.0.1:{8000 + m * REPLICAS + r}"}
                for r in range(REPLICAS)
            ],
        }
        for m in range(MODELS)
    ]
    tracker = PerformanceTracker(clock=ManualClock(2_100_000_000_000), persist=False)
    raw: dict[str, Any] = {"models": models}
    if learning:
        raw["learning"] = {"enabled": True}
    router = Router(parse_router_config(raw), tracker=tracker)
    for _ in range(20):  # live metrics for every deployment
        router.record(router.route(PROMPT), True, 120.0)
    return router


def litellm_router(strategy: str) -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    model_list = [
        {
            "model_name": "auto",
            "litellm_params": {
                "model": f"openai/model-{m}",
                "api_base": f"http://127.0.0.1:{8000 + m * REPLICAS + r}/v1",
                "api_key": "none",
            },
            "model_info": {"id": f"model-{m}-r{r}"},
        }
        for m in range(MODELS)
        for r in range(REPLICAS)
    ]
    return litellm.Router(model_list=model_list, routing_strategy=strategy)


#: The Router behind each zeta_fast contender of the last ``contenders()``
#: (their calls are the core's own methods, which do not lead back to it).
ROUTERS: dict[str, Router] = {}


def contenders() -> dict[str, Contender]:
    router = zeta_router()
    given = profile(PROMPT)
    route, record = router.route, router.record
    learner = zeta_router(learning=True)
    route_learned, record_learned, feedback = learner.route, learner.record, learner.feedback

    def learned() -> None:
        decision = route_learned(PROMPT)
        record_learned(decision, True, 120.0)
        feedback(decision, True)

    found: dict[str, Contender] = {
        "zeta_fast route()+record(), 1 KB prompt profiled": (
            lambda: record(route(PROMPT), True, 120.0),
            (),
        ),
        "zeta_fast route()+record(), profile given": (
            lambda: record(route(profile=given), True, 120.0),
            (),
        ),
        "zeta_fast learned route()+record()+feedback(), 1 KB prompt": (learned, ()),
    }
    ROUTERS.clear()
    ROUTERS.update({name: learner if "learned" in name else router for name in found})
    try:
        litellm_latency = litellm_router("latency-based-routing")
        litellm_shuffle = litellm_router("simple-shuffle")
    except ImportError:
        return found
    messages = [{"role": "user", "content": PROMPT}]
    # The latency-based strategy learns through this logger, as a real
    # request's success callback would call it.
    handler = litellm_latency.lowestlatency_logger
    end = datetime.now()
    start = end - timedelta(milliseconds=120)

    def latency_based() -> object:
        deployment = litellm_latency.get_available_deployment(model="auto", messages=messages)
        kwargs = {
            "litellm_params": {
                "metadata": {"model_group": "auto", "deployment": deployment["model_info"]["id"]},
                "model_info": deployment["model_info"],
            },
            "call_type": "completion",
        }
        handler.log_success_event(kwargs, None, start, end)
        return deployment

    found["LiteLLM Router latency-based (decision + its latency logger)"] = (latency_based, ())
    found["LiteLLM Router simple-shuffle (decision only)"] = (
        lambda: litellm_shuffle.get_available_deployment(model="auto", messages=messages),
        (),
    )
    return found
