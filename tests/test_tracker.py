"""PerformanceTracker from Python: windows, views, validation, threads, memory."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from zeta_fast import (
    GIL_RELEASE_MIN_RECORDS,
    InvalidInputError,
    ManualClock,
    PerformanceTracker,
    WindowConfig,
)

START_MS = 1_700_000_000_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture
def tracker(clock: ManualClock) -> PerformanceTracker:
    return PerformanceTracker(clock=clock, persist=False)


def test_stats_per_key_model_task_and_model(tracker: PerformanceTracker) -> None:
    tracker.record("coder", "r1", "code", True, 100.0)
    tracker.record("coder", "r2", "code", False, 300.0)
    tracker.record("coder", "r1", "chat", True, 50.0)
    tracker.record("other", "r1", "code", True, 1.0)
    assert tracker.stats("coder").requests == 3
    code = tracker.stats("coder", task="code")
    assert (code.requests, code.successes, code.success_rate) == (2, 1, 0.5)
    assert code.mean_latency_ms == pytest.approx(200.0)
    leaf = tracker.stats("coder", replica="r2", task="code")
    assert leaf.success_rate == 0.0
    assert leaf.keys == 1
    assert tracker.stats("nobody").requests == 0
    assert tracker.stats("nobody").success_rate is None
    assert tracker.keys() == [
        ("coder", "r1", "chat"),
        ("coder", "r1", "code"),
        ("coder", "r2", "code"),
        ("other", "r1", "code"),
    ]


def test_percentiles_within_two_percent(tracker: PerformanceTracker) -> None:
    rng = np.random.default_rng(0)
    latencies = rng.lognormal(np.log(200), 0.8, 20_000)
    for value in latencies:
        tracker.record("m", "r", "t", True, float(value))
    stats = tracker.stats("m")
    for name, q in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99)):
        exact = float(np.percentile(latencies, q, method="inverted_cdf"))
        assert getattr(stats, name) == pytest.approx(exact, rel=0.02), name
    assert stats.mean_latency_ms == pytest.approx(latencies.mean(), rel=1e-4)
    assert tracker.window.percentile_relative_error <= 0.02


def test_buckets_expire_as_time_moves(tracker: PerformanceTracker, clock: ManualClock) -> None:
    tracker.record("m", "r", "t", False, 900.0)
    clock.advance(299_000)
    assert tracker.stats("m").requests == 1
    clock.advance(1_000)
    expired = tracker.stats("m")
    assert expired.requests == 0
    assert expired.p99_ms is None
    assert expired.lifetime_requests == 1
    assert expired.lifetime_success_rate == 0.0


def test_custom_window_shape(clock: ManualClock) -> None:
    window = WindowConfig(bucket_ms=1_000, buckets=10, histogram_slices=2)
    tracker = PerformanceTracker(window, clock=clock, persist=False)
    tracker.record("m", "r", "t", True, 5.0)
    clock.advance(10_000)
    assert tracker.stats("m").requests == 0
    assert tracker.window == window
    assert window.horizon_s == 10.0


def test_ewma_follows_recent_latency(tracker: PerformanceTracker) -> None:
    tracker.record("m", "r", "t", True, 100.0)
    tracker.record("m", "r", "t", True, 200.0)
    assert tracker.stats("m").ewma_latency_ms == pytest.approx(110.0)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("m", "r", "t", True, float("nan")), InvalidInputError, "latency_ms must be finite"),
        (
            ("m", "r", "t", True, -1.0),
            InvalidInputError,
            "latency_ms must be finite and >= 0, got -1.0",
        ),
        (("m", "r", "t", True, float("inf")), InvalidInputError, "got inf"),
        (("m", "r", "t", 1, 1.0), TypeError, "success must be a bool, got int: 1"),
        (("m", "r", "t", True, "1"), TypeError, "latency_ms must be a number, got str: '1'"),
        ((1, "r", "t", True, 1.0), TypeError, "model must be a str, got int: 1"),
        (("", "r", "t", True, 1.0), InvalidInputError, "model must be a non-empty string"),
    ],
)
def test_bad_records_raise_and_record_nothing(
    tracker: PerformanceTracker, args: tuple[object, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        tracker.record(*args)  # type: ignore[arg-type]
    assert tracker.keys() == [] or tracker.stats("m").requests == 0


def test_numpy_bools_are_accepted(tracker: PerformanceTracker) -> None:
    tracker.record("m", "r", "t", np.bool_(True), np.float64(3.0))
    assert tracker.stats("m").successes == 1


def test_key_handles_record_without_lookup(tracker: PerformanceTracker) -> None:
    key = tracker.key("m", "r", "t")
    key.record(True, 10.0)
    key.record(False, 30.0)
    assert (key.model, key.replica, key.task) == ("m", "r", "t")
    assert key.stats().requests == 2
    assert tracker.stats("m").mean_latency_ms == pytest.approx(20.0)


def test_record_many_one_key_and_per_outcome_keys(tracker: PerformanceTracker) -> None:
    n = 1_000
    success = np.arange(n) % 4 != 0
    latency = np.linspace(1.0, 100.0, n)
    assert tracker.record_many(("m", "r", "t"), success, latency) == n
    stats = tracker.stats("m")
    assert (stats.requests, stats.successes) == (n, 750)
    keys = [tracker.key("m", f"r{i % 3}", "t") for i in range(n)]
    tracker.record_many(keys, success.tolist(), latency.tolist())
    assert tracker.stats("m", replica="r2").requests == sum(1 for i in range(n) if i % 3 == 2)


def test_record_many_validates_everything_first(tracker: PerformanceTracker) -> None:
    latency = np.ones(10)
    latency[7] = np.nan
    with pytest.raises(InvalidInputError, match=r"latency_ms\[7\] must be finite"):
        tracker.record_many(("m", "r", "t"), np.ones(10, dtype=bool), latency)
    assert tracker.stats("m").requests == 0
    with pytest.raises(InvalidInputError, match="success has 3 entries, expected 2"):
        tracker.record_many(("m", "r", "t"), [True, True, False], [1.0, 2.0])
    with pytest.raises(TypeError, match="success must be an array of bools"):
        tracker.record_many(("m", "r", "t"), np.ones(2), [1.0, 2.0])
    with pytest.raises(InvalidInputError, match="keys has 1 entries, expected 2"):
        tracker.record_many([("m", "r", "t")], [True, True], [1.0, 2.0])


def test_record_many_large_batch_counts_exactly(tracker: PerformanceTracker) -> None:
    # Above the threshold the batch runs with the GIL released (the
    # benchmarks show the effect); the totals must be exact either way.
    n = GIL_RELEASE_MIN_RECORDS * 3
    tracker.record_many(("m", "r", "t"), np.ones(n, dtype=bool), np.full(n, 5.0))
    stats = tracker.stats("m")
    assert (stats.requests, stats.successes) == (n, n)
    assert stats.mean_latency_ms == pytest.approx(5.0)


def test_threads_recording_lose_no_update(tracker: PerformanceTracker) -> None:
    per_thread = 20_000
    threads = 8

    def work(index: int) -> None:
        key = ("m", f"r{index % 2}", "t")
        for i in range(per_thread):
            tracker.record(*key, i % 10 != 0, 2.0)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    stats = tracker.stats("m")
    assert stats.requests == threads * per_thread
    assert stats.successes == threads * per_thread * 9 // 10
    assert stats.mean_latency_ms == pytest.approx(2.0)
    assert stats.consistent


def test_readers_see_consistent_snapshots_while_writers_run(tracker: PerformanceTracker) -> None:
    stop = threading.Event()

    def writer() -> None:
        # Bounded: the frozen clock puts every record in one slot, whose
        # latency word counts requests modulo 2^24 (16.7M per slot, the
        # documented limit), which two unbounded writers can pass while the
        # reader waits for the GIL on a loaded machine.
        key = tracker.key("m", "r", "t")
        for _ in range(4_000_000):
            if stop.is_set():
                return
            key.record(True, 7.0)

    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(500):
            stats = tracker.stats("m")
            assert stats.successes == stats.requests
            if stats.requests:
                # The latency word is whole: exactly 7 ms per request it counts.
                assert stats.mean_latency_ms == pytest.approx(7.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def test_memory_per_key_is_bounded(tracker: PerformanceTracker) -> None:
    for i in range(10_000):
        tracker.record(f"model-{i // 100}", f"replica-{i % 100}", "code", True, 1.0)
    assert len(tracker.keys()) == 10_000
    per_key = tracker.memory_bytes / 10_000
    assert per_key <= 8 * 1024, per_key


def test_window_config_validation() -> None:
    with pytest.raises(ValueError, match="histogram_slices must be an integer >= 1 that divides"):
        WindowConfig(buckets=60, histogram_slices=7)
    with pytest.raises(ValueError, match="latency_max_ms must be finite and > latency_min_ms"):
        WindowConfig(latency_min_ms=10.0, latency_max_ms=5.0)
    with pytest.raises(TypeError, match=r"bucket_ms must be an integer, got float: 5\.5"):
        WindowConfig(bucket_ms=5.5)  # type: ignore[arg-type]
    config = WindowConfig(buckets=120, bucket_ms=2_500, histogram_slices=6)
    assert WindowConfig.from_dict(config.to_dict()) == config


def test_manual_clock_and_tracker_clock(tracker: PerformanceTracker, clock: ManualClock) -> None:
    assert tracker.now_ms() == START_MS
    clock.set(START_MS + 5)
    assert tracker.now_ms() == START_MS + 5
    with pytest.raises(ValueError, match="ms must be an integer >= 0"):
        clock.advance(-1)
