"""Shared state under faults, against a real Redis server: the connection
cut in the middle of a publish or a merge (tests/redis_fault_proxy.py), the
server hung with SIGSTOP, and learned weights averaged across instances.

After every fault the instances must see exactly what a plain tracker that
got every outcome of every instance sees: the same requests, successes,
mean latency and percentiles per key (no tolerance: the windows are integer
counters, so anything lost or counted twice shows)."""

from __future__ import annotations

import math
import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import redis

from tests.learned_state import LearnedState, decode_learned_state
from tests.redis_fault_proxy import Command, RedisFaultProxy
from tests.redis_fixtures import RedisServer
from tests.test_shared_state import config, sync
from tests.waiting import wait_until
from zeta_fast import ManualClock, PerformanceTracker, Router
from zeta_fast.config import parse_router_config

# The default window: 60 buckets of 5 s; the clock starts on a bucket's edge.
BUCKET_MS = 5_000
START_MS = 1_700_000_000_000
PROMPTS = (
    "Say hello to the team.",
    "def add(a, b):\n    return a + b",
    "Prove step by step that the square root of 2 is irrational.",
)
# Only ever a hang guard: a wait on state that should hold long before.
HANG_GUARD_S = 60.0


def instances(url: str, clock: ManualClock, count: int, **extra: Any) -> list[Router]:
    """``count`` router instances sharing one namespace and one clock."""
    namespace = uuid.uuid4().hex
    routers = []
    for _ in range(count):
        parsed = parse_router_config(config(url, namespace, **extra))
        tracker = PerformanceTracker(parsed.window_config(), clock=clock, persist=False)
        routers.append(Router(parsed, tracker=tracker))
    return routers


def traffic(routers: list[Router], trackers: list[PerformanceTracker], round_no: int) -> int:
    """Every instance routes and records a few requests of each prompt on
    both replicas; each outcome goes to every tracker in ``trackers`` too.
    Returns how many record calls returned."""
    returned = 0
    for index, router in enumerate(routers):
        for number, prompt in enumerate(PROMPTS):
            held = [router.route(prompt) for _ in range(2)]  # one per replica
            for slot, decision in enumerate(held):
                success = (index + number + slot + round_no) % 3 != 0
                latency = 3.25 + 17.5 * index + 41.0 * number + 7.0 * slot + 101.0 * round_no
                router.record(decision, success, latency)
                returned += 1
                for tracker in trackers:
                    tracker.record(
                        decision.model_id, decision.replica_id, decision.task_type, success, latency
                    )
    return returned


def figures(tracker: PerformanceTracker, key: tuple[str, str, str]) -> tuple[object, ...]:
    seen = tracker.stats(*key)
    return (
        seen.requests,
        seen.successes,
        seen.mean_latency_ms,
        seen.p50_ms,
        seen.p95_ms,
        seen.p99_ms,
    )


def mismatches(routers: list[Router], reference: PerformanceTracker) -> list[str]:
    """Where an instance's merged view differs from the reference, per key."""
    found = []
    for index, router in enumerate(routers):
        for key in reference.keys():  # noqa: SIM118 (a tracker, not a dict)
            seen, expected = figures(router.tracker, key), figures(reference, key)
            if seen != expected:
                found.append(f"instance {index} {key}: {seen} != {expected}")
    return found


def assert_merged_equal(routers: list[Router], reference: PerformanceTracker) -> None:
    assert len(reference.keys()) >= 6  # three tasks on two replicas
    assert mismatches(routers, reference) == []


def shared_of(router: Router) -> Any:
    assert router.shared is not None
    return router.shared


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture
def reference(clock: ManualClock) -> PerformanceTracker:
    return PerformanceTracker(clock=clock, persist=False)


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[RedisFaultProxy]:
    with RedisFaultProxy(redis_server.port) as relay:
        yield relay


def bucket_write(command: Command) -> bool:
    return command[0].upper() == b"HSET" and b":w:" in command[1]


def bucket_read(command: Command) -> bool:
    return command[0].upper() == b"HGETALL" and b":w:" in command[1]


# name: (where the cut falls, cut in the reply, Redis stays down until healed)
CUTS: dict[str, tuple[Callable[[Command], bool], bool, bool]] = {
    # Redis ran the publish up to its first bucket write, then died.
    "in the publish": (bucket_write, False, True),
    # Redis ran the whole publish; the instance never heard it did.
    "in the publish's reply": (bucket_write, True, True),
    # The publish went through; Redis died while answering the merge.
    "in the merge's reply": (bucket_read, True, True),
    # Only this instance's connection is cut in its publish: the others go
    # on merging while it is away, and it publishes again next cycle.
    "in the publish, this instance only": (bucket_write, False, False),
}


def assert_publish_was_torn(redis_server: RedisServer, router: Router) -> None:
    """The cut publish left the bucket counters in Redis but not the
    histogram slices written after them: Redis ran exactly the commands
    before the cut."""
    shared = shared_of(router)
    direct = redis.Redis(port=redis_server.port)
    epoch, _, slice_now, _, bucket_ms, _ = router.tracker.shared_epochs()
    for model, replica, task, buckets, slices in router.tracker.export_shared():
        name = "\x1f".join((shared.instance_id, model, replica, task))
        bucket = {e: f"{r} {s} {t} {u}".encode() for e, r, s, t, u in buckets}
        histogram = {e: ",".join(f"{b}:{c}" for b, c in bins).encode() for e, bins in slices}
        key = f"{shared.namespace}:w:{bucket_ms}:{epoch}"
        assert direct.hget(key, name) == bucket[epoch], (key, name)
        key = f"{shared.namespace}:h:{bucket_ms}:{slice_now}"
        assert direct.hget(key, name) != histogram[slice_now], (key, name)


@pytest.mark.parametrize("where", list(CUTS))
def test_a_cut_connection_loses_and_double_counts_nothing(
    redis_server: RedisServer,
    proxy: RedisFaultProxy,
    clock: ManualClock,
    reference: PerformanceTracker,
    where: str,
) -> None:
    matches, in_reply, stay_down = CUTS[where]
    routers = instances(proxy.url, clock, 3)
    a, b, c = routers
    try:
        traffic(routers, [reference], 1)
        sync(*routers)
        assert_merged_equal(routers, reference)
        traffic(routers, [reference], 2)

        proxy.cut(matches, in_reply=in_reply, stay_down=stay_down)
        # The client does not retry (shared_client makes it without): the
        # cycle fails and the next one publishes again.
        assert not shared_of(a).cycle()
        assert proxy.cuts == 1
        assert shared_of(a).stats.last_error is not None
        if not in_reply:
            assert_publish_was_torn(redis_server, a)
        for router in (b, c):
            # Redis is gone for everyone, or only for the instance cut.
            assert shared_of(router).cycle() is not stay_down
        # Recording goes on while Redis is away, and the outage outlasts
        # a bucket: the buckets written before it are finished when it ends.
        traffic(routers, [reference], 3)
        clock.advance(3 * BUCKET_MS)
        traffic(routers, [reference], 4)

        proxy.heal()
        order = [b, c, a]  # the instance cut first comes back last
        wait_until(lambda: all([shared_of(r).cycle() for r in order]), timeout_s=HANG_GUARD_S)
        sync(*order)
        assert_merged_equal(routers, reference)
    finally:
        proxy.heal()
        for router in routers:
            router.close()


def traffic_must_not_block(
    routers: list[Router], trackers: list[PerformanceTracker], round_no: int
) -> None:
    """``traffic`` in a thread of its own: a route() or record() waiting on
    the hung Redis turns into a failure instead of a hung test."""
    returned: list[int] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            returned.append(traffic(routers, trackers, round_no))
        except BaseException as exc:  # handed to the test thread
            failed.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    # A hang guard only: the calls touch no socket, so they return at once;
    # the deadline never decides a pass.
    wait_until(lambda: not worker.is_alive(), timeout_s=HANG_GUARD_S)
    assert failed == []
    assert returned == [len(routers) * len(PROMPTS) * 2]


def test_a_hung_redis_blocks_no_request_and_loses_nothing(
    redis_server: RedisServer, clock: ManualClock, reference: PerformanceTracker
) -> None:
    # The sync threads run on their own here, every 50 ms.
    routers = instances(redis_server.url, clock, 3, shared_state={"interval_s": 0.05})
    locals_ = [PerformanceTracker(clock=clock, persist=False) for _ in routers]
    assert redis_server.process is not None
    pid = redis_server.process.pid
    try:
        for index, router in enumerate(routers):
            traffic([router], [reference, locals_[index]], 1)
        wait_until(lambda: not mismatches(routers, reference), timeout_s=HANG_GUARD_S)
        assert all(shared_of(r).stats.last_error is None for r in routers)

        os.kill(pid, signal.SIGSTOP)
        for index, router in enumerate(routers):
            traffic_must_not_block([router], [reference, locals_[index]], 2)
        # Each sync thread gives up on its cycle (socket timeouts), says
        # why, and its instance routes on its own state meanwhile.
        wait_until(
            lambda: all(
                not shared_of(r).up and shared_of(r).stats.last_error is not None for r in routers
            ),
            timeout_s=HANG_GUARD_S,
        )
        for router, own in zip(routers, locals_, strict=True):
            assert "Timeout" in shared_of(router).stats.last_error
            assert mismatches([router], own) == []
        for index, router in enumerate(routers):
            traffic_must_not_block([router], [reference, locals_[index]], 3)
        clock.advance(3 * BUCKET_MS)
        for index, router in enumerate(routers):
            traffic_must_not_block([router], [reference, locals_[index]], 4)

        os.kill(pid, signal.SIGCONT)
        try:
            wait_until(
                lambda: (
                    all(shared_of(r).up for r in routers) and not mismatches(routers, reference)
                ),
                timeout_s=HANG_GUARD_S,
            )
        except AssertionError:
            assert_merged_equal(routers, reference)  # says which keys differ
            raise
        assert_merged_equal(routers, reference)
    finally:
        os.kill(pid, signal.SIGCONT)
        for router in routers:
            router.close()


def averaged(own: LearnedState, others: list[LearnedState]) -> dict[str, list[dict[int, float]]]:
    """Federated averaging, computed here: per model, each weight of the
    success and the latency rows is the mean over this instance and the
    others (a weight a state lacks is zero)."""
    expected: dict[str, list[dict[int, float]]] = {}
    for model, mine in own.models.items():
        rows = []
        for row in ("weights", "latency_weights"):
            states = [getattr(mine, row)] + [
                getattr(o.models[model], row) if model in o.models else {} for o in others
            ]
            indices = set().union(*states)
            rows.append(
                {i: math.fsum(s.get(i, 0.0) for s in states) / len(states) for i in indices}
            )
        expected[model] = rows
    return expected


def assert_rows_equal(seen: dict[int, float], expected: dict[int, float]) -> None:
    for index in set(seen) | set(expected):
        assert abs(seen.get(index, 0.0) - expected.get(index, 0.0)) <= 1e-12, index


def test_learned_weights_are_averaged_exactly(
    redis_server: RedisServer, clock: ManualClock
) -> None:
    learning = {"enabled": True, "explore": 0.0, "min_outcomes": 1}
    # Every cycle shares (the cycles are driven by hand, the threads sleep).
    every_cycle = {"learned_interval_s": 1e-6}
    routers = instances(redis_server.url, clock, 3, learning=learning, shared_state=every_cycle)
    direct = redis.Redis(port=redis_server.port)
    try:
        # Each instance learns something else, on overlapping features.
        verdicts = [(True, False, True), (False, False, True), (True, True, False)]
        features = []
        for router, verdict in zip(routers, verdicts, strict=True):
            for _ in range(30):
                for prompt, good in zip(PROMPTS, verdict, strict=True):
                    decision = router.route(prompt)
                    router.record(decision, True, 20.0 + 50.0 * good)
                    assert router.feedback(decision, good)
        for prompt in PROMPTS:
            found = routers[0].route(prompt).learned_features
            assert found is not None
            features.append(found)
        namespace = shared_of(routers[0]).namespace
        # Each averages with what the others last published: the first
        # with their untrained start-up states, the second with one trained
        # state, the third with two, the first again with its own averaged.
        for router in (routers[0], routers[1], routers[2], routers[0]):
            shared = shared_of(router)
            assert router.predictor is not None
            own_bytes = router.predictor.to_bytes()
            own = decode_learned_state(own_bytes)
            published = cast("dict[bytes, bytes]", direct.hgetall(f"{namespace}:learned"))
            others = [
                decode_learned_state(state)
                for name, state in published.items()
                if name != shared.instance_id.encode()
            ]
            assert len(others) == 2
            expected = averaged(own, others)
            assert shared.cycle(), shared.stats.last_error
            # What it published is its own state from before the average.
            assert direct.hget(f"{namespace}:learned", shared.instance_id) == own_bytes
            after = decode_learned_state(router.predictor.to_bytes())
            for model, (weights, latency_weights) in expected.items():
                assert_rows_equal(after.models[model].weights, weights)
                assert_rows_equal(after.models[model].latency_weights, latency_weights)
                # The counts behind the priors stay this instance's own.
                assert after.models[model].overall == own.models[model].overall
                assert after.models[model].latency_seen == own.models[model].latency_seen
            assert after.categories == own.categories
            assert any(
                abs(after.models[m].weights.get(i, 0.0) - w) > 1e-3
                for m in own.models
                for i, w in own.models[m].weights.items()
            ), "the average moved no weight: the states were the same"
            # And the model predicts from those weights.
            for found in features:
                for slot, model in enumerate(router.predictor.models):
                    weights = expected[model][0]
                    z = math.fsum(
                        weights.get(int(i), 0.0) * v
                        for i, v in zip(found.indices, found.values, strict=True)
                    )
                    seen = float(router.predictor.predict(found)[slot])
                    assert abs(seen - 1.0 / (1.0 + math.exp(-z))) <= 1e-12
    finally:
        for router in routers:
            router.close()
