"""ReplicaSet from Python: capacity, health, spreading, and threads."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from zeta_fast import ConfigError, ReplicaSet


def test_least_loaded_fills_by_ratio_and_stops_at_capacity() -> None:
    replicas = ReplicaSet([2, 4])
    picks = [replicas.acquire() for _ in range(6)]
    assert picks == [0, 1, 1, 0, 1, 1]
    assert replicas.acquire() is None
    assert replicas.in_flight == [2, 4]
    replicas.release(1)
    assert replicas.acquire() == 1


def test_power_of_two_spreads_over_all_replicas() -> None:
    replicas = ReplicaSet([0] * 4, policy="power_of_two")
    counts = Counter(replicas.acquire() for _ in range(400))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) >= 80
    assert replicas.policy == "power_of_two"


def test_unhealthy_replicas_are_never_chosen() -> None:
    replicas = ReplicaSet([0, 0, 0])
    replicas.set_healthy(1, False)
    assert 1 not in {replicas.acquire() for _ in range(30)}
    assert replicas.try_acquire(1) is False
    assert replicas.is_healthy(1) is False
    replicas.set_healthy(1, True)
    assert replicas.try_acquire(1) is True


def test_errors() -> None:
    with pytest.raises(ConfigError, match="at least one replica"):
        ReplicaSet([])
    with pytest.raises(
        ConfigError,
        match='unknown replica_policy "random"; known: least_loaded, power_of_two, round_robin',
    ):
        ReplicaSet([1], policy="random")
    with pytest.raises(ValueError, match=r"capacities\[1\] must be an integer >= 0, got -1"):
        ReplicaSet([1, -1])
    with pytest.raises(IndexError, match="replica index 5 out of range for 1 replicas"):
        ReplicaSet([1]).release(5)


def test_threads_never_exceed_capacity_and_return_every_slot() -> None:
    capacities = [2, 1, 3]
    replicas = ReplicaSet(capacities, policy="power_of_two")
    held = [0, 0, 0]
    peak = [0, 0, 0]
    lock = threading.Lock()
    violations: list[str] = []

    def work() -> None:
        for _ in range(3_000):
            index = replicas.acquire()
            if index is None:
                continue
            with lock:
                held[index] += 1
                peak[index] = max(peak[index], held[index])
                if held[index] > capacities[index]:
                    violations.append(f"replica {index}: {held[index]}")
            time.sleep(0)  # hold the slot while other threads run
            with lock:
                held[index] -= 1
            replicas.release(index)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert violations == []
    assert replicas.in_flight == [0, 0, 0]
    # The test did exercise concurrency: some replica had several holders at once.
    assert max(peak[i] for i in (0, 2)) >= 2, peak
