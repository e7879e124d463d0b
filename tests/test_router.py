"""Router: candidates by task and complexity, contexts, replica slots, the
next-best model at capacity, batch spreading, and the feedback loop."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from zeta_fast import (
    InvalidInputError,
    ManualClock,
    NoCandidatesError,
    PerformanceTracker,
    Router,
    profile,
)
from zeta_fast.config import load_router_config, parse_router_config

ROOT = Path(__file__).resolve().parent.parent
SIMPLE_CODE = "def add(a, b):\n    return a + b"
HARD_REASONING = (
    "Prove step by step that the sum of the first n odd numbers is n^2, then derive the closed "
    "form; explain why each step must hold and compute it for n = 10, 20, 35 exactly. "
) * 4


def tracker() -> PerformanceTracker:
    return PerformanceTracker(clock=ManualClock(2_000_000_000_000), persist=False)


@pytest.fixture
def router() -> Router:
    return Router(ROOT / "examples" / "router.yaml", tracker=tracker())


def three_models(capacity: int = 0, replicas: int = 1) -> dict[str, Any]:
    return {
        "replica_policy": "least_loaded",
        "models": [
            {
                "id": name,
                "capabilities": {"code": cap},
                "replicas": [
                    {
                        "id": f"{name}-{i}",
                        "url": f"http://127.0.0.1:{9000 + i}",
                        "max_concurrency": capacity,
                    }
                    for i in range(replicas)
                ],
            }
            for name, cap in (("a", 92.0), ("b", 88.0), ("c", 85.0))
        ],
    }


def test_task_and_complexity_choose_the_model(router: Router) -> None:
    simple = router.route(SIMPLE_CODE)
    assert (simple.model_id, simple.task_type) == ("coder-7b", "code")
    assert simple.complexity < 0.4
    hard = router.route(HARD_REASONING)
    assert (hard.model_id, hard.task_type) == ("reasoner-14b", "reasoning")
    assert hard.complexity > 0.6
    assert router.route({"model": "auto", "input": ["hi"]}).model_id == "embedder-4b"
    assert simple.replica_id in ("coder-7b-a", "coder-7b-b")


def test_contexts_override_ranges(router: Router) -> None:
    # A code request of complexity ~0.61: past coder-7b's [0, 0.6], inside
    # reasoner-14b's [0.4, 1]; in "interactive" the reasoner only takes >= 0.7.
    text = (
        "Write a Python class that must implement an LRU cache; explain why each step works, "
        "then compare the complexity. def get(self, key):\n    return self.data[key]\n"
    ) * 11
    request = profile(text)
    assert request.task_type == "code"
    assert 0.6 < request.complexity < 0.7
    assert router.route(profile=request).model_id == "reasoner-14b"
    interactive = router.route(profile=request, context="interactive")
    assert interactive.context == "interactive"
    # Nobody suits it there: every capable model is a fallback, best score first.
    assert interactive.model_id == "coder-7b"
    with pytest.raises(InvalidInputError, match='unknown context "batch"; known: interactive'):
        router.route(SIMPLE_CODE, context="batch")


def test_decision_record_and_runners_up(router: Router) -> None:
    decision = router.route(SIMPLE_CODE)
    record = json.loads(json.dumps(decision.to_dict()))
    assert record["model_id"] == "coder-7b"
    assert record["profile"]["task_type"] == "code"
    assert [r["model_id"] for r in record["runners_up"]] == ["reasoner-14b"]
    for field in (
        "capability_score",
        "performance_score",
        "performance_adjustment",
        "has_performance_data",
        "success_rate",
        "avg_latency_ms",
        "penalties",
    ):
        assert field in record
    assert sum(router.in_flight("coder-7b")) == 1
    router.record(decision, True, 35.0)
    assert sum(router.in_flight("coder-7b")) == 0
    stats = router.tracker.stats("coder-7b", task="code")
    assert (stats.requests, stats.mean_latency_ms) == (1, 35.0)
    with pytest.raises(InvalidInputError, match="already recorded"):
        router.record(decision, True, 35.0)


def test_full_model_passes_requests_to_the_next_best() -> None:
    router = Router(parse_router_config(three_models(capacity=2, replicas=2)), tracker=tracker())
    placed = router.assign([SIMPLE_CODE] * 13)
    models = Counter(d.model_id if d else None for d in placed)
    assert models == {"a": 4, "b": 4, "c": 4, None: 1}
    assert router.in_flight("a") == [2, 2]
    with pytest.raises(
        NoCandidatesError, match="every candidate's replicas are down or at capacity"
    ):
        router.route(SIMPLE_CODE)
    first = next(d for d in placed if d and d.model_id == "a")
    router.record(first, True, 10.0)
    assert router.route(SIMPLE_CODE).model_id == "a"


def test_a_batch_spreads_over_near_equal_models() -> None:
    # 92 / 88 / 85 with equal (no) live data and no capacity limits: 300 at once.
    router = Router(parse_router_config(three_models()), tracker=tracker())
    placed = router.assign([SIMPLE_CODE] * 300)
    counts = Counter(d.model_id for d in placed if d)
    print("distribution of 300 concurrent requests:", dict(counts))
    assert sum(counts.values()) == 300
    assert set(counts) == {"a", "b", "c"}
    assert min(counts.values()) >= 90
    # Without the spread margin the top model takes everything.
    greedy = Router(parse_router_config(three_models()), tracker=tracker(), spread_margin=0.0)
    assert Counter(d.model_id for d in greedy.assign([SIMPLE_CODE] * 30) if d) == {"a": 30}


def test_unhealthy_replicas_are_skipped(router: Router) -> None:
    router.set_healthy("coder-7b", "coder-7b-a", False)
    replicas = set()
    for _ in range(6):
        decision = router.route(SIMPLE_CODE)
        replicas.add(decision.replica_id)
        router.record(decision, True, 5.0)
    assert replicas == {"coder-7b-b"}
    with pytest.raises(InvalidInputError, match="unknown replica"):
        router.set_healthy("coder-7b", "nope", False)


def test_outcomes_steer_the_next_decisions() -> None:
    # The scores alone steer here: a breaker would take a out after 5 failures.
    config = {**three_models(), "dispatch": {"breaker": {"failure_threshold": 100}}}
    router = Router(parse_router_config(config), tracker=tracker(), spread_margin=0.0)
    for _ in range(10):
        decision = router.route(SIMPLE_CODE)
        assert decision.model_id == "a"
        router.record(decision, False, 100.0)
    # a now fails every time: halved, it drops below b.
    decision = router.route(SIMPLE_CODE)
    assert decision.model_id == "b"
    assert [model for model, _ in decision.runners_up] == ["c", "a"]
    assert dict(decision.runners_up)["a"] < 50.0


def test_unserved_tasks_and_bad_input(router: Router) -> None:
    config = three_models()
    only_code = Router(parse_router_config(config), tracker=tracker())
    # A text task nobody declares goes to the text models at their best text
    # capability, and is recorded under the task the chosen model serves.
    poem = only_code.route("Write a poem about rain.")
    assert poem.profile is not None
    assert poem.profile.task_type == "chat"
    assert (poem.model_id, poem.task_type, poem.capability_score) == ("a", "code", 92.0)
    assert [m for m, _ in poem.runners_up] == ["b", "c"]
    only_code.record(poem, True, 5.0)
    assert only_code.tracker.stats("a", task="code").requests == 1
    # A named model that does not serve the task is recorded the same way.
    named = only_code.route("Write a poem about rain.", model="c")
    assert (named.model_id, named.task_type) == ("c", "code")
    only_code.record(named, True, 5.0)
    assert only_code.tracker.stats("c", task="code").requests == 1
    # An embedding is no text task: without an embedding model it has nowhere to go.
    with pytest.raises(InvalidInputError, match="task has no capable model in this router"):
        only_code.route({"input": "embed me"})
    with pytest.raises(TypeError, match="needs a request or a profile"):
        router.route()
    decision = router.route(SIMPLE_CODE)
    with pytest.raises(InvalidInputError, match="latency_ms must be finite"):
        router.record(decision, True, -1.0)
    router.record(decision, True, 1.0)  # a failed record did not consume it


def test_thresholds_move_with_the_small_models_record() -> None:
    # Breakers would take coder-7b's replicas out after 5 failures each.
    example = load_router_config(ROOT / "examples" / "router.yaml").model_dump(mode="json")
    example["dispatch"] = {"breaker": {"failure_threshold": 100}}
    router = Router(parse_router_config(example), tracker=tracker())
    # coder-7b suits [0, 0.6]: requests just under 0.6 are its hardest.
    text = (
        "Write a Python class that must implement an LRU cache; explain why each step works, "
        "then compare the complexity. def get(self, key):\n    return self.data[key]\n"
    ) * 9
    edge = profile(text)
    assert 0.5 <= edge.complexity < 0.6
    assert router.complexity_range("coder-7b") == (0.0, 0.6)
    for _ in range(19):
        decision = router.route(profile=edge)
        assert decision.model_id == "coder-7b"
        router.record(decision, True, 50.0)
    assert router.tune_ranges() == [], "19 < 20 requests: no evidence yet"
    decision = router.route(profile=edge)
    router.record(decision, True, 50.0)
    changes = router.tune_ranges()
    assert [(c["model_id"], c["context"], c["old_high"]) for c in changes] == [
        ("coder-7b", None, 0.6)
    ]
    assert changes[0]["new_high"] == pytest.approx(0.65)
    assert router.complexity_range("coder-7b") == pytest.approx((0.0, 0.65))
    # It starts failing on them (the large model is down, so they all go to
    # it): the edge comes back down.
    router.set_healthy("reasoner-14b", "reasoner-14b-a", False)
    router.set_healthy("reasoner-14b", "reasoner-14b-b", False)
    for _ in range(20):
        decision = router.route(profile=edge)
        assert decision.model_id == "coder-7b"
        router.record(decision, False, 50.0)
    assert router.tune_ranges()[0]["new_high"] == pytest.approx(0.6)
    # Contexts keep their own ranges.
    assert router.complexity_range("reasoner-14b", "interactive") == (0.7, 1.0)
    with pytest.raises(ValueError, match="target_success_rate must be in"):
        router.tune_ranges(target_success_rate=0.0)
