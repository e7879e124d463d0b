"""The dispatch policy kept in the core: breakers, reroutes, budgets,
backoff, engine load and outcome kinds, driven by a manual clock."""

from __future__ import annotations

from typing import Any

import pytest

from zeta_fast import ConfigError, InvalidInputError, ManualClock, PerformanceTracker, Router
from zeta_fast._core import ModelSettings, ResilienceSettings, RouterCore
from zeta_fast.config import parse_router_config
from zeta_fast.exceptions import NoCandidatesError

CODE = "def add(a, b):\n    return a + b"
START = 2_000_000_000_000


def config(**dispatch: Any) -> dict[str, Any]:
    return {
        "replica_policy": "least_loaded",
        # Capability alone ranks the models: these tests are about dispatch.
        "scoring": {"min_requests_for_performance": 1000},
        "dispatch": {"breaker": {"failure_threshold": 3, "cooldown_s": 1.0}, **dispatch},
        "models": [
            {
                "id": "small",
                "capabilities": {"code": 90},
                "context_window": 2048,
                "fallbacks": ["medium"],
                "replicas": [
                    {"id": f"small-{i}", "url": f"http://127.0.0.1:{9100 + i}"} for i in range(2)
                ],
            },
            {
                "id": "large",
                "capabilities": {"code": 80},
                "context_window": 32768,
                "replicas": [{"id": "large-0", "url": "http://127.0.0.1:9200"}],
            },
            {
                "id": "medium",
                "capabilities": {"code": 60},
                "context_window": 2048,
                "replicas": [{"id": "medium-0", "url": "http://127.0.0.1:9300"}],
            },
        ],
    }


def make(**dispatch: Any) -> tuple[Router, ManualClock]:
    clock = ManualClock(START)
    tracker = PerformanceTracker(clock=clock, persist=False)
    router = Router(parse_router_config(config(**dispatch)), tracker=tracker, spread_margin=0.0)
    return router, clock


def status(router: Router, model: str) -> dict[str, dict[str, Any]]:
    return {r.replica_id: r for r in router._core.replica_status(model)}


def test_breaker_opens_probes_after_cooldown_and_closes() -> None:
    router, clock = make()
    core = router._core
    # Fail small-0 three times in a row: its breaker opens.
    for _ in range(3):
        decision = core.route(CODE)
        while decision.replica_id != "small-0":
            core.record_outcome(decision, "success", 5.0)
            decision = core.route(CODE)
        core.record_outcome(decision, "connect", 1.0)
    assert status(router, "small")["small-0"].breaker == "open"
    picks = set()
    for _ in range(20):
        decision = core.route(CODE)
        picks.add(decision.replica_id)
        core.record_outcome(decision, "success", 5.0)
    assert picks == {"small-1"}, "an open breaker takes its replica out"
    # After the cool-down one probe goes to small-0 (least loaded, tie -> 0).
    clock.advance(1_000)
    probe = core.route(CODE)
    assert probe.replica_id == "small-0"
    assert status(router, "small")["small-0"].breaker == "half_open"
    other = core.route(CODE)
    assert other.replica_id == "small-1", "one probe at a time"
    core.record_outcome(other, "success", 5.0)
    core.record_outcome(probe, "success", 5.0)
    second = core.route(CODE)
    assert second.replica_id == "small-0"
    core.record_outcome(second, "success", 5.0)
    assert status(router, "small")["small-0"].breaker == "closed"


def test_client_errors_do_not_trip_the_breaker_nor_the_score() -> None:
    router, _ = make()
    core = router._core
    for _ in range(10):
        decision = core.route(CODE)
        core.record_outcome(decision, "client_error", 3.0)
    rows = status(router, "small")
    assert all(r.breaker == "closed" for r in rows.values())
    assert sum(r.outcomes["client_error"] for r in rows.values()) == 10
    assert router.tracker.stats("small").requests == 0


def test_reroute_tries_another_replica_then_the_fallback_chain() -> None:
    router, _ = make()
    core = router._core
    first = core.route(CODE)
    assert first.model_id == "small"
    core.record_outcome(first, "timeout", 30.0)
    second = core.reroute(first)
    assert second.model_id == "small"
    assert second.replica_id != first.replica_id
    core.record_outcome(second, "server_error", 2.0)
    # Both replicas tried: the configured fallback (medium) beats the
    # better-scored large model.
    third = core.reroute(second, [first])
    assert third.model_id == "medium"
    core.record_outcome(third, "server_error", 2.0)
    fourth = core.reroute(third, [first, second])
    assert fourth.model_id == "large"
    core.record_outcome(fourth, "success", 9.0)
    fifth_from = core.route(CODE)
    core.record_outcome(fifth_from, "success", 1.0)
    with pytest.raises(NoCandidatesError):
        core.reroute(fourth, [first, second, third])


def test_a_prompt_too_long_goes_to_a_longer_context() -> None:
    router, _ = make()
    core = router._core
    first = core.route(CODE)
    core.record_outcome(first, "context_length", 1.0)
    longer = core.reroute(first, needs_longer_context=True)
    assert longer.model_id == "large"
    assert status(router, "small")[first.replica_id].breaker == "closed"


def test_retry_budget_bounds_retries_and_backoff_honours_retry_after() -> None:
    router, clock = make(retry_budget={"ratio": 0.1, "min_per_second": 0.0})
    core = router._core
    spent = 0
    while core.try_retry():
        spent += 1
    assert spent == 100, "starts with its saved-up maximum"
    granted = 0
    for _ in range(200):
        decision = core.route(CODE)
        core.record_outcome(decision, "success", 1.0)
        granted += core.try_retry()
    assert granted == 20
    clock.advance(60_000)
    assert not core.try_retry(), "no time-based refill when min_per_second is 0"
    delays = [core.backoff_ms(3) for _ in range(200)]
    assert min(delays) >= 0.0
    assert max(delays) <= 100.0
    assert max(delays) > 50.0, "jitter spreads over [0, base * 2^2]"
    assert core.backoff_ms(1, 1500.0) == 1500.0


def test_engine_load_steers_replicas_and_goes_stale() -> None:
    router, clock = make()
    core = router._core
    core.set_engine_load("small", "small-0", 12, 0.9)
    for _ in range(5):
        decision = core.route(CODE)
        assert decision.replica_id == "small-1"
        core.record_outcome(decision, "success", 1.0)
    assert status(router, "small")["small-0"].engine_waiting == 12
    clock.advance(5_001)
    assert status(router, "small")["small-0"].engine_waiting == 0, "stale after the TTL"
    assert core.route(CODE).replica_id == "small-0"
    with pytest.raises(InvalidInputError, match="kv_usage must be in"):
        core.set_engine_load("small", "small-0", 0, 1.5)
    with pytest.raises(InvalidInputError, match="unknown replica"):
        core.set_engine_load("small", "nope", 0, 0.0)


def test_outcome_counters_and_bad_input() -> None:
    router, _ = make()
    core = router._core
    decision = core.route(CODE)
    unknown_kind = 'unknown outcome kind "meh"; known: success, timeout'
    with pytest.raises(InvalidInputError, match=unknown_kind):
        core.record_outcome(decision, "meh", 1.0)
    with pytest.raises(InvalidInputError, match="ttft_ms must be finite"):
        core.record_outcome(decision, "success", 1.0, ttft_ms=float("nan"))
    core.record_outcome(
        decision, "success", 12.0, ttft_ms=3.0, prompt_tokens=7, completion_tokens=16
    )
    row = status(router, "small")[decision.replica_id]
    assert (row.prompt_tokens, row.completion_tokens, row.mean_ttft_ms) == (7, 16, 3.0)
    assert row.in_flight == 0
    with pytest.raises(InvalidInputError, match="already recorded"):
        core.record_outcome(decision, "success", 1.0)


@pytest.mark.parametrize(
    ("dispatch", "message"),
    [
        ({"breaker": {"failure_threshold": 0}}, "dispatch.breaker.failure_threshold"),
        ({"max_attempts": 0}, "dispatch.max_attempts"),
        ({"backoff_base_ms": 50, "backoff_max_ms": 10}, "backoff_max_ms must be >="),
        ({"timeouts": {"total_s": -1}}, "dispatch.timeouts.total_s"),
        ({"retry_budget": {"ratio": 2}}, "dispatch.retry_budget.ratio"),
    ],
)
def test_dispatch_config_errors_name_the_field(dispatch: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_router_config(config(**dispatch))


def test_fallbacks_must_name_models() -> None:
    bad = config()
    bad["models"][0]["fallbacks"] = ["ghost"]
    with pytest.raises(ConfigError, match=r"small\.fallbacks names unknown model 'ghost'"):
        parse_router_config(bad)


@pytest.mark.parametrize(
    ("resilience", "message"),
    [
        ({"nope": 1}, 'resilience has no field "nope"'),
        ({"failure_threshold": 0}, "resilience.failure_threshold must be"),
        ({"cooldown_ms": 1.5}, "resilience.cooldown_ms must be a whole number"),
        ({"retry_ratio": 2.0}, "resilience.retry_ratio must be in"),
        ({"hedge_max_tokens": 0.5}, "resilience.hedge_max_tokens must be"),
        ({"backoff_base_ms": 10, "backoff_max_ms": 5}, "resilience.backoff_max_ms must be"),
    ],
)
def test_the_cores_resilience_settings_are_validated(
    resilience: dict[str, float], message: str
) -> None:
    tracker = PerformanceTracker(clock=ManualClock(START), persist=False)
    models = [ModelSettings("m", {"chat": 50.0}, [(0.0, 1.0)], [("r", 0)])]
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        ResilienceSettings(**resilience)
    settings = ResilienceSettings(failure_threshold=7, retry_ratio=0.5)
    assert settings.to_dict()["failure_threshold"] == 7
    assert settings.to_dict()["hedge_ratio"] == ResilienceSettings().to_dict()["hedge_ratio"]
    RouterCore(tracker, models, resilience=settings)
    with pytest.raises(TypeError, match="resilience must be a ResilienceSettings"):
        RouterCore(tracker, models, resilience={"failure_threshold": 7})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"models\[0\] must be a ModelSettings"):
        RouterCore(tracker, [("m", {"chat": 50.0}, [(0.0, 1.0)], [("r", 0)], 0, [])])  # type: ignore[list-item]


def test_metrics_reads_overhead_latency_histograms_and_scores() -> None:
    router, _ = make()
    core = router.core
    for ms in (0.01, 0.05, 0.3, 7.0, 1_000.0):
        core.record_overhead(ms)
    overhead = core.overhead()
    assert overhead["count"] == 5
    assert overhead["sum_ms"] == pytest.approx(1_007.36, abs=1e-3)
    buckets = dict(overhead["buckets"])
    assert (buckets[0.025], buckets[0.05], buckets[0.5], buckets[10.0]) == (1, 2, 3, 4)
    assert buckets[float("inf")] == 5
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InvalidInputError, match="ms must be finite"):
            core.record_overhead(bad)
    assert core.overhead()["count"] == 5

    decision = router.route(CODE)
    core.record_outcome(decision, "timeout", 3_000.0)
    decision = router.route(CODE)
    core.record_outcome(decision, "success", 40.0)
    decision = router.route(CODE)
    core.record_outcome(decision, "cancelled", 40.0)
    latency = {r.replica_id: r.latency for r in core.replica_status("small")}
    assert sum(h["count"] for h in latency.values()) == 2  # the cancelled one has no latency
    assert sum(h["sum_ms"] for h in latency.values()) == pytest.approx(3_040.0)

    scores = {(model, task): b for model, task, b in core.scores()}
    assert set(scores) == {("small", "code"), ("large", "code"), ("medium", "code")}
    assert scores["large", "code"].capability_score == 80.0
    assert scores["small", "code"].requests == 2
