"""CandidatePool: the feedback loop from recorded outcomes to the next decision."""

from __future__ import annotations

import pytest

from zeta_fast import (
    AdaptiveConfig,
    CandidatePool,
    InvalidInputError,
    ManualClock,
    NoCandidatesError,
    PerformanceTracker,
)

START_MS = 1_800_000_000_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture
def pool(clock: ManualClock) -> CandidatePool:
    tracker = PerformanceTracker(clock=clock, persist=False)
    return CandidatePool(
        tracker,
        {
            "reasoner-14b": {"code": 92.0, "reasoning": 95.0},
            "coder-7b": {"code": 88.0},
            "chat-4b": {"chat": 80.0, "code": 60.0},
        },
    )


def test_capability_alone_until_ten_outcomes(pool: CandidatePool) -> None:
    assert pool.best("code") == "reasoner-14b"
    assert pool.best("chat") == "chat-4b"
    assert pool.models == ["reasoner-14b", "coder-7b", "chat-4b"]
    assert sorted(pool.tasks) == ["chat", "code", "reasoning"]


def test_success_drop_loses_top_rank_and_recovery_regains_it(
    pool: CandidatePool, clock: ManualClock
) -> None:
    # Both healthy: 99 % success, fast. The more capable model leads.
    for i in range(100):
        pool.record("reasoner-14b", "r1", "code", i % 100 != 0, 120.0)
        pool.record("coder-7b", "r1", "code", i % 100 != 0, 120.0)
    assert pool.best("code") == "reasoner-14b"
    # A new window: the reasoner now fails 40 % of the time.
    clock.advance(300_000)
    for _ in range(10):
        pool.record("coder-7b", "r1", "code", True, 120.0)
    for i in range(9):
        pool.record("reasoner-14b", "r1", "code", i % 5 < 3, 120.0)
        assert pool.best("code") == "reasoner-14b", "under 10 outcomes: capability only"
    pool.record("reasoner-14b", "r1", "code", False, 120.0)
    assert pool.best("code") == "coder-7b", "10 outcomes at 60 %: penalised"
    scores = dict(pool.score("code"))
    assert scores["reasoner-14b"].penalties == ("low_success_rate",)
    assert scores["reasoner-14b"].success_rate == pytest.approx(0.6)
    # It recovers: still penalised while the bad buckets are in the window...
    clock.advance(60_000)
    for _ in range(20):
        pool.record("reasoner-14b", "r1", "code", True, 120.0)
    assert pool.best("code") == "coder-7b", "26 of 30 in the window: still under 90 %"
    # ...and regains the top rank once they expire.
    clock.advance(245_000)
    for _ in range(10):
        pool.record("coder-7b", "r1", "code", True, 120.0)
    assert pool.best("code") == "reasoner-14b"
    assert dict(pool.score("code"))["reasoner-14b"].success_rate == 1.0


def test_slow_model_is_penalised(pool: CandidatePool) -> None:
    for _ in range(20):
        pool.record("reasoner-14b", "r1", "code", True, 900.0)
        pool.record("coder-7b", "r1", "code", True, 100.0)
    assert pool.best("code") == "coder-7b"
    assert dict(pool.score("code"))["reasoner-14b"].penalties == ("high_latency",)


def test_replicas_aggregate_and_model_level_fallback(pool: CandidatePool) -> None:
    for i in range(10):
        pool.record("coder-7b", f"r{i % 2}", "code", True, float(10 * i))
    coder = dict(pool.score("code"))["coder-7b"]
    assert coder.requests == 10
    assert coder.avg_latency_ms == pytest.approx(45.0)
    # chat-4b has code capability but only chat traffic: the model view counts.
    for _ in range(10):
        pool.record("chat-4b", "r1", "chat", False, 100.0)
    chat_for_code = dict(pool.score("code"))["chat-4b"]
    assert chat_for_code.has_performance_data
    assert chat_for_code.success_rate == 0.0


def test_new_keys_are_picked_up_without_rebuilding(pool: CandidatePool) -> None:
    assert pool.best("reasoning") == "reasoner-14b"
    for _ in range(10):
        pool.tracker.record("reasoner-14b", "fresh-replica", "reasoning", False, 50.0)
    assert dict(pool.score("reasoning"))["reasoner-14b"].has_performance_data


def test_config_applies(clock: ManualClock) -> None:
    tracker = PerformanceTracker(clock=clock, persist=False)
    strict = CandidatePool(
        tracker,
        {"a": {"t": 90.0}, "b": {"t": 80.0}},
        AdaptiveConfig(min_requests_for_performance=50),
    )
    for _ in range(20):
        strict.record("a", "r", "t", False, 1.0)
    assert strict.best("t") == "a", "20 < 50 requests: capability only"


def test_errors(pool: CandidatePool, clock: ManualClock) -> None:
    with pytest.raises(InvalidInputError, match="task has no capable model in this pool"):
        pool.best("translation")
    with pytest.raises(TypeError, match="task must be a str"):
        pool.best(3)  # type: ignore[arg-type]
    tracker = PerformanceTracker(clock=clock, persist=False)
    with pytest.raises(NoCandidatesError):
        CandidatePool(tracker, {})
    with pytest.raises(ValueError, match=r"capability must be in \[0, 100\], got 120.0"):
        CandidatePool(tracker, {"a": {"t": 120.0}})
    with pytest.raises(TypeError, match="candidates must be a dict"):
        CandidatePool(tracker, [("a", {"t": 1.0})])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tracker must be a PerformanceTracker"):
        CandidatePool(object(), {"a": {"t": 1.0}})  # type: ignore[arg-type]
