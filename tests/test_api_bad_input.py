"""Bad input at every entry point of the API: a clear exception naming the
field and the value (TypeError for a wrong type, InvalidInputError, a
ValueError, for a bad value), never PyO3's unnamed wording, a
RecursionError or a crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zeta_fast
from zeta_fast import (
    AdaptiveConfig,
    AdaptiveScorer,
    CandidatePool,
    InvalidInputError,
    ManualClock,
    PerformanceTracker,
    ReplicaSet,
    Router,
    WindowConfig,
)
from zeta_fast._core import ModelSettings, RouterCore
from zeta_fast.profiling import request_text

LONE_SURROGATE = "\ud800"


def bad(value: object) -> Any:
    """A value of the wrong type, passed on purpose (typed Any for mypy)."""
    return value


@pytest.fixture
def router() -> Iterator[Router]:
    tracker = PerformanceTracker(clock=ManualClock(0), persist=False)
    routed = Router("examples/router.yaml", tracker=tracker)
    yield routed
    routed.close()


@pytest.fixture
def tracker() -> PerformanceTracker:
    return PerformanceTracker(clock=ManualClock(0), persist=False)


def _raises(kind: type[Exception], call: Callable[[], object], *names: str) -> str:
    """Runs ``call``, expecting exactly ``kind`` (or a subclass) with every
    one of ``names`` in the message; returns the message."""
    with pytest.raises(kind) as caught:
        call()
    message = str(caught.value)
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"
    return message


# -- 1. profile(endpoint=...) --------------------------------------------------------------


@pytest.mark.parametrize("endpoint", [0, b"/v1/embeddings", ["/v1/embeddings"]])
def test_profile_endpoint_of_another_type_is_a_named_type_error(endpoint: Any) -> None:
    _raises(TypeError, lambda: zeta_fast.profile("hi", endpoint=endpoint), "endpoint", "str")
    _raises(TypeError, lambda: request_text("hi", endpoint=endpoint), "endpoint")


def test_profile_endpoint_still_takes_a_str_or_none() -> None:
    assert zeta_fast.profile({"input": ["x"]}, endpoint=None).task_type == "embedding"
    assert zeta_fast.profile("hello", endpoint="/v1/embeddings").task_type == "embedding"


# -- 2. deeply nested requests ----------------------------------------------------------------


def _nested_bodies(depth: int) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": "hello"}
    for _ in range(depth):
        body = {"messages": body}
    return body


def test_a_request_nested_past_the_limit_names_the_limit() -> None:
    message = _raises(
        InvalidInputError, lambda: zeta_fast.profile(_nested_bodies(1_000)), "request", "limit"
    )
    assert "32" in message
    # Within the limit it is read as before.
    assert request_text(_nested_bodies(8)) == ("hello", 1, False)


def test_route_refuses_a_request_nested_past_the_limit(router: Router) -> None:
    _raises(InvalidInputError, lambda: router.route(_nested_bodies(1_000)), "limit")


def test_a_hundred_thousand_levels_neither_recurse_nor_overflow_the_stack() -> None:
    # In a child process: a stack overflow would kill the interpreter.
    script = textwrap.dedent(
        """
        import zeta_fast
        from zeta_fast import InvalidInputError
        depth = 100_000
        body = {"messages": "hello"}
        for _ in range(depth):
            body = {"messages": body}
        try:
            zeta_fast.profile(body)
        except InvalidInputError as err:
            assert "limit" in str(err), err
        else:
            raise SystemExit("a 100,000-deep body was accepted")
        content = "hello"
        for _ in range(depth):
            content = [content] if _ % 2 else {"text": content}
        for request in (
            [{"role": "user", "content": content}],
            [{"role": "user", "content": [content]}],
            {"prompt": [content]},
            {"input": content},
            [[content]],
        ):
            zeta_fast.profile(request)
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


# -- 3. counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("requests", [-1, 2**64, 2**200])
def test_score_counts_out_of_range_are_invalid_input_naming_the_field(requests: int) -> None:
    message = _raises(
        InvalidInputError,
        lambda: AdaptiveScorer().score(80, 0.9, 100, requests),
        "requests",
        str(requests),
    )
    assert "integer" in message


def test_batch_counts_with_a_fraction_are_refused_as_score_refuses_them() -> None:
    scorer = AdaptiveScorer()
    cap, rate, latency = [80.0, 70.0], [0.9, 0.9], [100.0, 100.0]
    requests: Any
    for requests in ([10, 10.5], np.array([10.0, 10.5]), (10, 10.5)):
        with pytest.raises(InvalidInputError, match=r"requests\[1\] .*10\.5"):
            scorer.score_many(cap, rate, latency, requests)
        with pytest.raises(InvalidInputError, match=r"requests\[1\] .*10\.5"):
            scorer.best(cap, rate, latency, requests)
    grid = np.full((2, 2), 80.0), np.full((2, 2), 0.9), np.full((2, 2), 100.0)
    fractional = np.array([[1.0, 2.0], [3.0, 0.25]])
    with pytest.raises(InvalidInputError, match=r"requests\[1, 1\] .*0\.25"):
        scorer.best_per_row(*grid, fractional)
    # Whole counts in float arrays are still taken.
    assert scorer.best(cap, rate, latency, np.array([10.0, 2.0**60])) == 0


def test_batch_counts_beyond_a_float64_are_invalid_input() -> None:
    _raises(
        InvalidInputError,
        lambda: AdaptiveScorer().score_many([80.0], [0.9], [100.0], [2**1100]),
        "requests[0]",
    )


def test_router_counts_name_their_field(router: Router) -> None:
    core = router.core
    _raises(InvalidInputError, lambda: router.route("hi", needs=-1), "needs", "-1")
    _raises(InvalidInputError, lambda: router.route("hi", needs=2**32), "needs")
    _raises(TypeError, lambda: router.route("hi", needs=bad(1.5)), "needs")
    _raises(TypeError, lambda: router.route("hi", needs=True), "needs")
    _raises(InvalidInputError, lambda: core.tune_ranges(-1), "min_requests")
    _raises(InvalidInputError, lambda: core.backoff_ms(2**40), "retry")
    _raises(InvalidInputError, lambda: core.set_remote_in_flight("coder-7b", [-1]), "counts[0]")
    decision = core.route("hi")
    _raises(
        InvalidInputError,
        lambda: core.record_outcome(decision, "success", 1.0, prompt_tokens=-1),
        "prompt_tokens",
    )
    _raises(
        InvalidInputError,
        lambda: core.record_outcome(decision, "success", 1.0, completion_tokens=2**64),
        "completion_tokens",
    )
    # A refused outcome does not use the decision up.
    assert core.record_outcome(decision, "success", 1.0, prompt_tokens=3) in (True, False)


def test_other_counts_name_their_field() -> None:
    _raises(InvalidInputError, lambda: ReplicaSet([1]).try_acquire(-1), "index")
    _raises(InvalidInputError, lambda: ManualClock(2**64), "start_ms")
    _raises(InvalidInputError, lambda: WindowConfig(buckets=-1), "buckets")
    _raises(InvalidInputError, lambda: AdaptiveConfig(min_requests_for_performance=-5), "min_req")
    _raises(
        InvalidInputError,
        lambda: ModelSettings("m", {"chat": 50}, [(0.0, 1.0)], [("r", -1)]),
        "replicas[0][1]",
    )


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.integers(max_value=-1), st.integers(min_value=2**64)))
def test_any_count_out_of_range_is_invalid_input_with_its_value(requests: int) -> None:
    with pytest.raises(InvalidInputError, match=rf"requests .*{requests}"):
        AdaptiveScorer().score(80, 0.9, 100, requests)


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0, 1e12).filter(lambda v: not v.is_integer()),
    st.integers(0, 4),
)
def test_a_fraction_anywhere_in_a_batch_is_named_by_its_position(value: float, at: int) -> None:
    requests = [1.0] * 5
    requests[at] = value
    with pytest.raises(InvalidInputError, match=rf"requests\[{at}\]"):
        AdaptiveScorer().score_many([80.0] * 5, [0.9] * 5, [100.0] * 5, requests)


# -- 4. wrong types and lone surrogates in str arguments ------------------------------------------


def test_tracker_names_its_str_arguments(tracker: PerformanceTracker) -> None:
    _raises(TypeError, lambda: tracker.stats(bad(5)), "model", "str")
    _raises(TypeError, lambda: tracker.stats("m", replica=bad(5)), "replica")
    _raises(TypeError, lambda: tracker.stats("m", task=bad(b"t")), "task")
    for field, args in (
        ("model", (LONE_SURROGATE, "r", "t")),
        ("replica", ("m", LONE_SURROGATE, "t")),
        ("task", ("m", "r", LONE_SURROGATE)),
    ):
        with pytest.raises(InvalidInputError, match=rf"{field} must be valid UTF-8"):
            tracker.record(*args, True, 1.0)
        with pytest.raises(InvalidInputError, match=rf"{field} .*\\ud800"):
            tracker.key(*args)
    _raises(InvalidInputError, lambda: tracker.stats(LONE_SURROGATE), "model", "UTF-8")
    _raises(TypeError, lambda: PerformanceTracker(persist=bad(1)), "persist")
    _raises(TypeError, lambda: PerformanceTracker(snapshot_path=bad(5)), "snapshot_path")


def test_router_names_its_arguments(router: Router) -> None:
    core = router.core
    decision = router.route("hello")
    _raises(
        TypeError, lambda: router.record(decision, success=bad(None), latency_ms=1.0), "success"
    )
    _raises(TypeError, lambda: router.record(decision, bad(1), 1.0), "success")
    _raises(TypeError, lambda: router.record(decision, True, bad("1")), "latency_ms")
    # Refused on its arguments, the decision can still be recorded.
    router.record(decision, True, 1.0)
    _raises(TypeError, lambda: router.route("hi", context=bad(5)), "context")
    _raises(TypeError, lambda: router.route("hi", model=bad(5)), "model")
    _raises(TypeError, lambda: core.route("hi", model="coder-7b", replica=bad(5)), "replica")
    _raises(InvalidInputError, lambda: router.route("hi", context=LONE_SURROGATE), "context")
    _raises(InvalidInputError, lambda: router.route("hi", model=LONE_SURROGATE), "model")
    _raises(InvalidInputError, lambda: router.route(LONE_SURROGATE), "request", "UTF-8")
    _raises(InvalidInputError, lambda: core.in_flight(LONE_SURROGATE), "model")
    _raises(TypeError, lambda: core.in_flight(bad(5)), "model")
    _raises(TypeError, lambda: core.set_healthy("coder-7b", "coder-7b-a", bad(1)), "healthy")
    _raises(
        TypeError, lambda: core.set_engine_load("coder-7b", "coder-7b-a", 1, bad("x")), "kv_usage"
    )
    _raises(TypeError, lambda: core.learn_unserved("coder-7b", "images", bad(None)), "ttl_s")
    _raises(TypeError, lambda: core.set_unserved("coder-7b", bad("images")), "features")
    _raises(TypeError, lambda: core.complexity_range("coder-7b", context=bad(3)), "context")
    other = core.route("hi")
    _raises(TypeError, lambda: core.feedback(other, bad(1)), "good")
    _raises(TypeError, lambda: core.reroute(other, tried=bad(5)), "tried")
    _raises(TypeError, lambda: core.record_outcome(other, "success", bad("slow")), "latency_ms")
    core.release(other)


def test_message_text_with_a_lone_surrogate_names_where_it_is() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "fine"},
        {"role": "user", "content": [{"type": "text", "text": LONE_SURROGATE}]},
    ]
    _raises(InvalidInputError, lambda: zeta_fast.profile(messages), "messages[1].content[0].text")
    _raises(
        InvalidInputError,
        lambda: zeta_fast.profile([{"role": "user", "content": LONE_SURROGATE}]),
        "messages[0].content",
    )
    _raises(InvalidInputError, lambda: zeta_fast.profile({"prompt": LONE_SURROGATE}), "prompt")
    _raises(
        InvalidInputError, lambda: zeta_fast.profile({"input": ["a", LONE_SURROGATE]}), "input[1]"
    )
    _raises(InvalidInputError, lambda: zeta_fast.profile("x", endpoint=LONE_SURROGATE), "endpoint")


def test_settings_and_pools_name_their_str_arguments(tracker: PerformanceTracker) -> None:
    _raises(InvalidInputError, lambda: ModelSettings(LONE_SURROGATE, {}, [], []), "id")
    _raises(
        InvalidInputError,
        lambda: ModelSettings(
            "m", {"chat": 5}, [(0.0, 1.0)], [("r", 1)], fallbacks=[LONE_SURROGATE]
        ),
        "fallbacks[0]",
    )
    _raises(
        TypeError,
        lambda: ModelSettings("m", {"chat": 5}, [bad((0.0, "1"))], [("r", 1)]),
        "ranges[0][1]",
    )
    pool = CandidatePool(tracker, {"m": {"chat": 50.0}})
    _raises(InvalidInputError, lambda: pool.best(LONE_SURROGATE), "task")
    _raises(InvalidInputError, lambda: CandidatePool(tracker, {LONE_SURROGATE: {}}), "candidates")
    _raises(InvalidInputError, lambda: ReplicaSet([1], policy=LONE_SURROGATE), "policy")
    _raises(InvalidInputError, lambda: WindowConfig.from_dict({LONE_SURROGATE: 1}), "key")
    _raises(InvalidInputError, lambda: AdaptiveConfig.from_dict({LONE_SURROGATE: 1}), "key")
    _raises(
        TypeError,
        lambda: RouterCore(tracker, [], contexts=bad("ab")),
        "contexts",
    )


@settings(max_examples=80, deadline=None)
@given(st.text(min_size=0, max_size=8), st.sampled_from(["model", "replica", "task"]))
def test_a_surrogate_anywhere_in_a_name_is_named(text: str, field: str) -> None:
    tracker = PerformanceTracker(clock=ManualClock(0), persist=False)
    names = {"model": "m", "replica": "r", "task": "t"}
    names[field] = text[: len(text) // 2] + LONE_SURROGATE + text[len(text) // 2 :]
    with pytest.raises(InvalidInputError, match=field):
        tracker.record(names["model"], names["replica"], names["task"], True, 1.0)


# -- 5. booleans and complex numbers are no numbers ---------------------------------------------


NOT_NUMBERS = [True, np.True_, np.bool_(False), 1 + 0j, np.complex128(1), np.array(True)]


@pytest.mark.parametrize("value", NOT_NUMBERS, ids=repr)
def test_booleans_and_complex_numbers_are_refused_as_numbers(
    value: Any, tracker: PerformanceTracker, router: Router
) -> None:
    scorer = AdaptiveScorer()
    _raises(TypeError, lambda: scorer.score(value, 0.9, 100, 1), "capability", "number")
    _raises(TypeError, lambda: scorer.score(50, 0.9, value, 1), "avg_latency_ms")
    _raises(TypeError, lambda: scorer.score_many([value], [0.9], [100.0], [1]), "capability")
    _raises(TypeError, lambda: tracker.record("m", "r", "t", True, value), "latency_ms")
    decision = router.route("hi")
    _raises(TypeError, lambda: router.record(decision, True, value), "latency_ms")
    router.core.release(decision)
    _raises(TypeError, lambda: AdaptiveConfig(latency_weight=value), "latency_weight")
    _raises(
        TypeError,
        lambda: ModelSettings("m", {"chat": value}, [(0.0, 1.0)], [("r", 1)]),
        "capabilities.chat",
    )


@pytest.mark.parametrize(
    "value", [np.float64(50), np.float32(50), np.int64(50), np.uint8(50), 50, 50.0], ids=repr
)
def test_numpy_float_and_int_scalars_are_still_numbers(
    value: Any, tracker: PerformanceTracker, router: Router
) -> None:
    breakdown = AdaptiveScorer().score(value, 0.9, value, bad(np.int64(3)))
    assert breakdown.capability_score == 50.0
    tracker.record("m", "r", "t", bad(np.bool_(True)), value)
    assert tracker.stats("m").requests == 1
    decision = router.route("hi")
    router.record(decision, bad(np.True_), value)


# -- 6. paths are str, as the stub says --------------------------------------------------------


def test_restored_from_and_snapshot_path_are_str(tmp_path: Path) -> None:
    path = tmp_path / "tracker.snapshot"
    first = PerformanceTracker(clock=ManualClock(0), snapshot_path=path)
    assert isinstance(first.snapshot_path, str)
    assert first.snapshot_path == str(path)
    assert first.restored_from is None
    first.record("m", "r", "t", True, 1.0)
    first.close()
    again = PerformanceTracker(clock=ManualClock(0), snapshot_path=str(path))
    assert isinstance(again.restored_from, str)
    assert Path(again.restored_from) == path
    again.close()
