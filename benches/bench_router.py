"""route() + record() over 8 models x 4 replicas: zeta_fast's Router against
LiteLLM's Router (latency-based with its logger, and simple-shuffle) over the
same 32 deployments, when the bench extra is installed.

Each item then makes one more call, untimed, and checks what it routed:
zeta_fast's outcome feed sees the decision recorded (the most capable model
for the code prompt, or any model for the learned router, which explores);
LiteLLM's answer is one of the 32 deployments.
"""

from __future__ import annotations

from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benches import router_contenders
from benches.contenders import Contender
from zeta_fast import Decision, Router

CONTENDERS = router_contenders.contenders()
MODEL_IDS = {f"model-{m}" for m in range(router_contenders.MODELS)}
DEPLOYMENT_IDS = {
    f"model-{m}-r{r}"
    for m in range(router_contenders.MODELS)
    for r in range(router_contenders.REPLICAS)
}
#: The highest code capability (80 + m): where the prompt goes without exploration.
MOST_CAPABLE = f"model-{router_contenders.MODELS - 1}"


def _published_by_one_call(router: Router, contender: Contender) -> list[tuple[str, str, float]]:
    """(model, outcome kind, latency ms) of what one call of the contender publishes."""
    fn, args = contender
    published: list[tuple[str, str, float]] = []

    def keep(decision: Decision, kind: str, latency_ms: float, *_: Any) -> None:
        published.append((decision.model_id, kind, latency_ms))

    router.outcomes.subscribe(keep)
    try:
        fn(*args)
    finally:
        router.outcomes.unsubscribe(keep)
    return published


@pytest.mark.parametrize("contender", list(CONTENDERS))
def bench_route_and_record(benchmark: BenchmarkFixture, contender: str) -> None:
    benchmark.group = "route + record, 32 deployments"
    benchmark.name = contender
    fn, args = CONTENDERS[contender]
    result = benchmark(fn, *args)
    router = router_contenders.ROUTERS.get(contender)
    if router is None:
        assert result["model_name"] == "auto"  # type: ignore[index]
        assert result["model_info"]["id"] in DEPLOYMENT_IDS  # type: ignore[index]
        return
    published = _published_by_one_call(router, CONTENDERS[contender])
    if "learned" in contender:
        ((model, kind, latency_ms), (same_model, verdict, _)) = published
        assert model in MODEL_IDS
        assert (same_model, verdict) == (model, "feedback")
    else:
        ((model, kind, latency_ms),) = published
        assert model == MOST_CAPABLE
    assert (kind, latency_ms) == ("success", 120.0)
    assert sum(r.in_flight for r in router.core.replica_status(model)) == 0
