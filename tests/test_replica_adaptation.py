"""Replica choice by recent record, against real llama.cpp replicas behind
fault proxies (the scenario of benches/adaptation.py, zeta_fast alone),
and the policy itself with a manual clock."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from benches.adaptation import scenario

from zeta_fast import ConfigError, ManualClock, PerformanceTracker, Router
from zeta_fast.config import parse_router_config


def test_a_slowed_or_failing_replica_loses_its_traffic_and_gets_it_back() -> None:
    rows = {row["fault"]: row for row in asyncio.run(scenario(600, 200, 400, litellm=False))}
    for fault in ("slow", "errors"):
        row = rows[fault]
        assert row["before"] > 0.2, row  # a fair share while healthy
        assert row["off_within"] <= 0.10, row  # >= 90 % off it 20 requests after the fault
        assert row["regained"] >= 0.10, row  # back in rotation after healing
        assert row["success"] >= 0.999, row  # one retry, elsewhere


def router(explore: float = 0.05) -> Router:
    config = parse_router_config(
        {
            "replica_policy": "least_loaded",
            "models": [
                {
                    "id": "m",
                    "capabilities": {"code": 90},
                    "replicas": [
                        {"id": f"m-{i}", "url": f"http://127.0.0.1:{9100 + i}"} for i in range(3)
                    ],
                }
            ],
            "dispatch": {"replicas": {"explore": explore}, "health": {"enabled": False}},
            "alerts": {"enabled": False},
        }
    )
    return Router(config, tracker=PerformanceTracker(clock=ManualClock(0), persist=False))


def test_policy_passes_over_a_failing_replica_but_probes_it() -> None:
    r = router()
    core = r.core
    # Everyone fine, then m-0 fails whenever chosen.
    served: Counter[str] = Counter()
    for i in range(3000):
        decision = core.route("def f(): pass")
        served[decision.replica_id] += 1
        bad = decision.replica_id == "m-0" and i >= 30
        core.record_outcome(decision, "server_error" if bad else "success", 5.0)
    status = {s.replica_id: s for s in core.replica_status("m")}
    assert status["m-0"].degraded is True
    assert status["m-0"].recent_failure_share > 0.5
    assert status["m-0"].breaker == "closed"  # probes' failures do not open it
    # Probes only: about 5 % of the traffic (plus its first 30 requests' share).
    assert 0.02 < served["m-0"] / 3000 < 0.10
    assert status["m-1"].degraded is False


def test_replica_policy_is_validated() -> None:
    with pytest.raises(ConfigError, match="latency_factor"):
        parse_router_config(
            {
                "models": [
                    {
                        "id": "m",
                        "capabilities": {"code": 1},
                        "replicas": [{"id": "a", "url": "http://127.0.0.1:1"}],
                    }
                ],
                "dispatch": {"replicas": {"latency_factor": 0.5}},
            }
        )


def test_relative_latency_rule_catches_what_the_absolute_threshold_misses() -> None:
    """The seed's rule penalises a mean above 500 ms: a model slowed from
    25 ms to 425 ms escapes it. The relative rule (off by default) does not."""

    def two_models(factor: float) -> Router:
        config = parse_router_config(
            {
                "models": [
                    {
                        "id": "big",
                        "capabilities": {"code": 100},
                        "replicas": [{"id": "big-0", "url": "http://127.0.0.1:9201"}],
                    },
                    {
                        "id": "small",
                        "capabilities": {"code": 85},
                        "replicas": [{"id": "small-0", "url": "http://127.0.0.1:9202"}],
                    },
                ],
                "relative_latency_factor": factor,
                "dispatch": {"health": {"enabled": False}},
                "alerts": {"enabled": False},
            }
        )
        clock = ManualClock(1_000_000)
        return Router(
            config,
            tracker=PerformanceTracker(clock=clock, persist=False),
            spread_margin=0.0,
        )

    for factor, expected in ((0.0, "big"), (3.0, "small")):
        r = two_models(factor)
        for model, latency in (("big", 425.0), ("small", 25.0)):
            for _ in range(20):
                decision = r.route("def f(): pass", model=model)
                r.record(decision, True, latency)
        decision = r.route("def f(): pass")
        assert decision.model_id == expected, (factor, decision.to_dict())
        r.record(decision, True, 25.0)
        penalties = {m: s.penalties for m, t, s in r.core.scores() if t == "code"}
        pinned = r.route("def f(): pass", model="big")
        r.record(pinned, True, 425.0)
        if factor:
            assert penalties == {"big": ("relative_latency",), "small": ()}
            assert pinned.penalties == ["relative_latency"]
        else:
            assert penalties == {"big": (), "small": ()}
            assert pinned.penalties == []
    with pytest.raises(ConfigError, match="relative_latency_factor"):
        parse_router_config(
            {
                "models": [
                    {
                        "id": "m",
                        "capabilities": {"code": 1},
                        "replicas": [{"id": "a", "url": "http://127.0.0.1:1"}],
                    }
                ],
                "relative_latency_factor": 0.5,
            }
        )
