"""route() + record() over 8 models x 4 replicas: zeta_fast's Router against
LiteLLM's Router (latency-based with its logger, and simple-shuffle) over the
same 32 deployments, when the bench extra is installed."""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benches import router_contenders

CONTENDERS = router_contenders.contenders()


@pytest.mark.parametrize("contender", list(CONTENDERS))
def bench_route_and_record(benchmark: BenchmarkFixture, contender: str) -> None:
    benchmark.group = "route + record, 32 deployments"
    benchmark.name = contender
    fn, args = CONTENDERS[contender]
    benchmark(fn, *args)
