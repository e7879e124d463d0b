"""The typed boundary: task types and outcome kinds as enums, replica
status as a typed object, policy names from the core's tables."""

from __future__ import annotations

import pytest

from zeta_fast import (
    InvalidInputError,
    ManualClock,
    OutcomeKind,
    PerformanceTracker,
    ReplicaStatus,
    Router,
    Task,
)
from zeta_fast._core import MODEL_ORDERINGS, REPLICA_POLICIES
from zeta_fast.outcomes import NOT_THE_REPLICAS
from zeta_fast.profiling import TASK_TYPES


def _router() -> Router:
    tracker = PerformanceTracker(clock=ManualClock(0), persist=False)
    return Router("examples/router.yaml", tracker=tracker)


def test_enum_members_are_named_after_their_values() -> None:
    assert [t.value for t in Task.members()] == list(TASK_TYPES)
    for kind in OutcomeKind.members():
        assert repr(kind) == f"OutcomeKind.{kind.value.upper()}"
        assert OutcomeKind.parse(kind.value) == kind
    for task in Task.members():
        assert repr(task) == f"Task.{task.value.upper()}"
        assert Task.parse(task.value) == task
    with pytest.raises(InvalidInputError, match='unknown task "poetry"'):
        Task.parse("poetry")
    with pytest.raises(InvalidInputError, match='unknown outcome kind "meh"'):
        OutcomeKind.parse("meh")


def test_the_replica_fault_rule_is_the_cores() -> None:
    not_faults = {k.value for k in OutcomeKind.members() if not k.is_replica_fault}
    assert not_faults == {"success"} | NOT_THE_REPLICAS
    assert {
        "client_error",
        "context_length",
        "unsupported",
        "cancelled",
        "internal",
    } == NOT_THE_REPLICAS
    assert OutcomeKind.TIMEOUT.is_replica_fault
    assert OutcomeKind.SERVER_ERROR.is_replica_fault


def test_record_outcome_takes_the_enum_or_its_name_and_counts_the_same() -> None:
    router = _router()
    core = router.core
    by_enum = core.route("def add(a, b): return a + b", model="coder-7b")
    core.record_outcome(by_enum, OutcomeKind.CLIENT_ERROR, 5.0)
    by_name = core.route("def add(a, b): return a + b", model="coder-7b")
    core.record_outcome(by_name, "client_error", 5.0)
    counted = sum(s.outcomes["client_error"] for s in core.replica_status("coder-7b"))
    assert counted == 2
    with pytest.raises(TypeError, match="kind must be an OutcomeKind or its name"):
        core.record_outcome(core.route("x", model="coder-7b"), 3, 1.0)
    router.close()


def test_replica_status_is_typed_and_its_dict_says_the_same() -> None:
    router = _router()
    decision = router.route("def add(a, b): return a + b")
    statuses = router.core.replica_status(decision.model_id)
    assert all(isinstance(s, ReplicaStatus) for s in statuses)
    taken = next(s for s in statuses if s.replica_id == decision.replica_id)
    assert taken.in_flight == 1
    assert taken.healthy
    assert taken.breaker == "closed"
    router.record(decision, True, 40.0)
    after = next(
        s for s in router.core.replica_status(decision.model_id) if s.replica_id == taken.replica_id
    )
    assert after.in_flight == 0
    assert after.outcomes["success"] == 1
    assert set(after.outcomes) == {k.value for k in OutcomeKind.members()}
    as_dict = after.to_dict()
    for name in ("replica_id", "healthy", "in_flight", "breaker", "degraded", "outcomes"):
        assert as_dict[name] == getattr(after, name), name
    assert as_dict["latency"]["count"] == after.latency["count"] == 1
    assert "ReplicaStatus(replica_id=" in repr(after)
    router.close()


def test_the_configuration_accepts_exactly_the_cores_policy_names() -> None:
    from zeta_fast.config import parse_router_config
    from zeta_fast.scoring_file import load_document

    document = load_document("examples/router.yaml")
    for name in REPLICA_POLICIES:
        config = parse_router_config({**document, "replica_policy": name})
        assert config.replica_policy == name
    for name in MODEL_ORDERINGS:
        tracker = PerformanceTracker(clock=ManualClock(0), persist=False)
        router = Router(parse_router_config({**document, "model_ordering": name}), tracker=tracker)
        assert router.core.model_ordering == name
        router.close()
