"""Scale-out through a real Redis server: instances' windows merge exactly
and in any order, in-flight load is shared (no herding onto one replica),
Redis going away and coming back, an instance killed with kill -9 (its
share stays until it leaves the window), warm starts from Redis or the
local snapshot, alerts raised once, learned weights averaged."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.redis_fixtures import RedisServer
from tests.waiting import wait_until
from zeta_fast import PerformanceTracker, Router
from zeta_fast.config import parse_router_config

TEXT_TASKS = ("chat", "code", "reasoning", "knowledge")
PROMPT = "Say hello to the team."


def config(url: str, namespace: str, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "replica_policy": "least_loaded",
        "models": [
            {
                "id": "m",
                "capabilities": dict.fromkeys(TEXT_TASKS, 80),
                "replicas": [
                    {"id": "r0", "url": "http://127.0.0.1:9"},
                    {"id": "r1", "url": "http://127.0.0.1:9"},
                ],
            }
        ],
        "shared_state": {"enabled": True, "url": url, "namespace": namespace, "interval_s": 60},
        "outcome_log": {"enabled": False},
        "alerts": {"enabled": False},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def instance(url: str, namespace: str, **extra: Any) -> Router:
    parsed = parse_router_config(config(url, namespace, **extra))
    return Router(parsed, tracker=PerformanceTracker(parsed.window_config(), persist=False))


def sync(*routers: Router) -> None:
    """Every instance publishes, then every instance merges."""
    for _ in range(2):
        for router in routers:
            assert router.shared is not None
            assert router.shared.cycle(), router.shared.stats.last_error


def record(router: Router, outcomes: list[tuple[bool, float]]) -> None:
    for success, latency in outcomes:
        router.record(router.route(PROMPT), success, latency)


def test_windows_merge_exactly_and_in_any_order(redis_server: RedisServer) -> None:
    ns = uuid.uuid4().hex
    routers = [instance(redis_server.url, ns) for _ in range(3)]
    reference = PerformanceTracker(persist=False)
    streams = [
        [(True, 20.0 + i) for i in range(30)] + [(False, 300.0)] * 10,
        [(True, 55.5)] * 20,
        [(False, 1200.0)] * 5 + [(True, 8.0)] * 7,
    ]
    for router, stream in zip(routers, streams, strict=True):
        record(router, stream)
        for success, latency in stream:
            reference.record("m", "r0", "chat", success, latency)
    try:
        for order in ([0, 1, 2], [2, 0, 1]):
            sync(*(routers[i] for i in order))
            expected = reference.stats("m")
            for router in routers:
                seen = router.tracker.stats("m")
                assert (seen.requests, seen.successes) == (expected.requests, expected.successes)
                assert seen.mean_latency_ms == pytest.approx(expected.mean_latency_ms, abs=0.01)
                assert (seen.p50_ms, seen.p95_ms, seen.p99_ms) == (
                    expected.p50_ms,
                    expected.p95_ms,
                    expected.p99_ms,
                )
        # What scoring reads is the merged view too.
        scores = {task: b for model, task, b in routers[2].core.scores() if model == "m"}
        assert scores[routers[2].route(PROMPT).task_type].success_rate == pytest.approx(
            expected.success_rate
        )
        assert all(r.shared is not None and r.shared.stats.remote_instances == 2 for r in routers)
    finally:
        for router in routers:
            router.close()


def test_in_flight_load_is_shared_so_routers_do_not_herd(redis_server: RedisServer) -> None:
    """Router A has 6 requests running on r0 (its r1 marked down for it);
    B and C then each take 6 more, syncing between picks: with sharing
    they fill r1; without, each splits its own 6 evenly and r0 stays hot."""

    def run(shared: bool) -> list[int]:
        ns = uuid.uuid4().hex
        extra = {} if shared else {"shared_state": {"enabled": False}}
        a, b, c = (instance(redis_server.url, ns, **extra) for _ in range(3))
        try:
            a.core.set_healthy("m", "r1", False)
            held = [a.route(PROMPT) for _ in range(6)]
            assert {d.replica_id for d in held} == {"r0"}
            for _ in range(6):
                for router in (b, c):
                    if shared:
                        sync(a, b, c)
                    held.append(router.route(PROMPT))
            load = [sum(d.replica_id == r for d in held) for r in ("r0", "r1")]
            if shared:
                sync(a, b, c)
                assert a.core.remote_in_flight("m") == [
                    sum(d.replica_id == r for d in held[6:]) for r in ("r0", "r1")
                ]
            return load
        finally:
            for router in (a, b, c):
                router.close()

    with_sharing, without = run(True), run(False)
    print({"with sharing": with_sharing, "without": without})
    assert sum(with_sharing) == sum(without) == 18
    assert abs(with_sharing[0] - with_sharing[1]) <= 2, with_sharing
    assert without == [12, 6], without


def shared_metrics(router: Router) -> dict[str, float]:
    """The shared-state lines of the gateway's /metrics page, parsed."""
    from prometheus_client.parser import text_string_to_metric_families

    from zeta_fast.gateway.metrics import GatewayCounters, MetricsPage

    page = MetricsPage(router, GatewayCounters()).render().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name.startswith("zeta_shared_state")
    }


def test_redis_down_routes_on_local_state_and_republishes_when_back(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    ns = uuid.uuid4().hex
    a, b = instance(redis_server.url, ns), instance(redis_server.url, ns)
    try:
        record(a, [(True, 10.0)] * 40)
        record(b, [(True, 30.0)] * 10)
        sync(a, b)
        assert b.tracker.stats("m").requests == 50
        redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="zeta_fast.shared"):
            assert b.shared is not None
            assert not b.shared.cycle()
        assert "routing on local state" in caplog.text
        assert not b.shared.up
        assert b.shared.stats.errors >= 1
        assert shared_metrics(b)["zeta_shared_state_up"] == 0.0
        # Local state only, and routing goes on.
        assert b.tracker.stats("m").requests == 10
        record(b, [(True, 10.0)] * 5)
        redis_server.start()  # same port, empty: everything is published again
        sync(a, b)
        assert b.shared.up
        assert shared_metrics(b)["zeta_shared_state_up"] == 1.0
        assert shared_metrics(b)["zeta_shared_state_remote_instances"] == 1.0
        assert b.tracker.stats("m").requests == 55
        assert a.tracker.stats("m").requests == 55
    finally:
        a.close()
        b.close()


CHILD = textwrap.dedent(
    """
    import sys, time
    from zeta_fast import PerformanceTracker, Router, WindowConfig
    from zeta_fast.config import parse_router_config
    from tests.test_shared_state import config, record, SMALL_WINDOW
    raw = config(sys.argv[1], sys.argv[2], window=SMALL_WINDOW)
    raw["shared_state"]["interval_s"] = 0.05
    parsed = parse_router_config(raw)
    router = Router(parsed, tracker=PerformanceTracker(parsed.window_config(), persist=False))
    record(router, [(True, 10.0)] * 40)
    assert router.shared.cycle()  # the 40 outcomes are in Redis now
    print("ready", flush=True)
    time.sleep(60)  # alive until the test kills it
    """
)
# 20 buckets of 150 ms: a 3 s window, so expiry is seen within a test.
SMALL_WINDOW = {"bucket_ms": 150, "buckets": 20, "histogram_slices": 4}


def test_killed_instance_share_stays_until_it_leaves_the_window(
    redis_server: RedisServer,
) -> None:
    ns = uuid.uuid4().hex
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, redis_server.url, ns],
        cwd=root,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        # A new instance starts warm from Redis: the dead one's share is there.
        fresh = instance(redis_server.url, ns, window=SMALL_WINDOW)
        try:
            assert fresh.tracker.stats("m").requests == 40
            # ... until its buckets leave the window (3 s), then it is gone.
            shared = fresh.shared
            assert shared is not None
            wait_until(
                lambda: shared.cycle() and fresh.tracker.stats("m").requests == 0,
                timeout_s=30,
                interval_s=0.1,
            )
        finally:
            fresh.close()
    finally:
        if child.poll() is None:
            child.kill()


def test_warm_start_from_redis_else_from_the_local_snapshot(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    ns = uuid.uuid4().hex
    state = tmp_path / "tracker.snapshot"
    # An earlier life of this instance left a snapshot with 7 outcomes.
    earlier = Router(
        parse_router_config({**config(redis_server.url, ns), "state_path": str(state)})
    )
    record(earlier, [(True, 10.0)] * 7)
    assert earlier.shared is not None
    earlier.shared.stop()
    earlier.close()
    earlier.tracker.close()
    redis_server.stop()
    redis_server.start()  # Redis empty: the snapshot is the warm start
    own = Router(parse_router_config({**config(redis_server.url, ns), "state_path": str(state)}))
    try:
        assert own.tracker.restored_from is not None
        assert own.tracker.stats("m").requests == 7
    finally:
        own.close()
        own.tracker.close()
    # Another instance is publishing: a restart starts from Redis instead
    # (its old outcomes are in Redis already, under its old name, or gone).
    other = instance(redis_server.url, ns)
    record(other, [(False, 10.0)] * 3)
    assert other.shared is not None
    other.shared.cycle()
    again = Router(parse_router_config({**config(redis_server.url, ns), "state_path": str(state)}))
    try:
        assert again.tracker.restored_from is None
        assert again.tracker.stats("m").requests == 3 + 7  # the others' share, once
    finally:
        again.close()
        again.tracker.close()
        other.close()


def test_an_alert_fires_once_across_instances(redis_server: RedisServer) -> None:
    ns = uuid.uuid4().hex
    extra = {
        "alerts": {"enabled": True, "log": False, "cooldown_s": 1.0},
        "dispatch": {"breaker": {"failure_threshold": 1000}},
    }
    routers = [instance(redis_server.url, ns, **extra) for _ in range(3)]
    try:
        for router in routers:
            record(router, [(True, 20.0)] * 300)
        for router in routers:
            assert router.alerts is not None
            assert router.alerts.process() == []
        for router in routers:  # every instance sees the fault
            record(router, [(False, 20.0)] * 40)
        for router in routers:
            assert router.alerts is not None
            router.alerts.process()
        for router in routers:  # another pass, as the engines' own ticker makes
            assert router.alerts is not None
            assert router.alerts.process() == []
        fired = [a for r in routers if r.alerts is not None for a in r.alerts.fired]
        assert len(fired) == 1, fired
        assert fired[0].rule == "failures-rising"
    finally:
        for router in routers:
            router.close()


def test_learned_weights_are_averaged_across_instances(redis_server: RedisServer) -> None:
    ns = uuid.uuid4().hex
    learning = {"enabled": True, "explore": 0.0, "min_outcomes": 1}
    every_cycle = {"learned_interval_s": 0.001}
    teacher = instance(redis_server.url, ns, learning=learning, shared_state=every_cycle)
    pupil = instance(redis_server.url, ns, learning=learning, shared_state=every_cycle)
    try:
        assert teacher.predictor is not None
        assert pupil.predictor is not None
        for _ in range(200):
            decision = teacher.route(PROMPT)
            teacher.record(decision, True, 10.0)
            teacher.feedback(decision, False)  # the model answers this badly
        features = teacher.route(PROMPT).learned_features
        assert features is not None
        taught = float(teacher.predictor.predict(features)[0])
        before = float(pupil.predictor.predict(features)[0])
        assert taught < 0.2 < before
        assert teacher.shared is not None
        assert pupil.shared is not None
        teacher.shared.cycle()  # publishes its state
        pupil.shared.cycle()  # averages it in
        after = float(pupil.predictor.predict(features)[0])
        assert after < before - 0.1, (before, after)
    finally:
        teacher.close()
        pupil.close()


def test_config_names_bad_shared_settings() -> None:
    from zeta_fast import ConfigError

    with pytest.raises(ConfigError, match=r"shared_state\.interval_s"):
        parse_router_config(config("redis://x", "ns", shared_state={"interval_s": 0}))
    with pytest.raises(ConfigError, match=r"shared_state\.namespace"):
        parse_router_config(config("redis://x", "ns", shared_state={"namespace": "a b"}))


def test_scale_out_bench_runs_three_real_instances(redis_server: RedisServer) -> None:
    """benches/shared_state.py (three processes, one Redis) must not rot:
    every instance counts the burst another instance saw, and the figures
    are sane (their values are the benchmark's business, not this test's)."""
    from benches import shared_state

    figures = shared_state.run(redis_server.url)
    assert figures["all_agree_after_s"] is not None
    assert figures["agreement_s"][0] < figures["all_agree_after_s"]
    assert all(rate > 0 for rate in figures["commands_per_s"])
    overhead = figures["overhead"]
    assert 0 < overhead["on"]["min_ns"] <= overhead["on"]["median_ns"]


def test_through_redis_sentinel(redis_server: RedisServer, tmp_path: Path) -> None:
    """With `sentinels`, instances find the master through a real Redis
    Sentinel (the same server binary in sentinel mode) and share as before."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor shared 127.0.0.1 {redis_server.port} 1\n"
    )
    sentinel = subprocess.Popen(
        [redis_server.binary, str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        probe_client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                if probe_client.execute_command("SENTINEL", "get-master-addr-by-name", "shared"):
                    break
            except redis.ConnectionError:
                pass
            assert time.monotonic() < deadline, "sentinel did not start"
            time.sleep(0.05)
        ns = uuid.uuid4().hex
        via = {"sentinels": [f"127.0.0.1:{port}"], "sentinel_master": "shared", "url": "redis://"}
        a, b = instance("", ns, shared_state=via), instance("", ns, shared_state=via)
        try:
            record(a, [(True, 10.0)] * 12)
            sync(a, b)
            assert b.tracker.stats("m").requests == 12
            assert redis.Redis(port=redis_server.port).exists(f"{ns}:alive")
        finally:
            a.close()
            b.close()
    finally:
        sentinel.terminate()
        sentinel.wait(10)


def test_through_a_redis_cluster(tmp_path: Path) -> None:
    """With `cluster: true`, instances share through a real three-node Redis
    Cluster (keys spread over the nodes' hash slots)."""
    import shutil
    import socket

    import redis

    binary = shutil.which("redis-server")
    assert binary is not None
    # A cluster node also listens on port + 10000 (its bus): pick three
    # distinct ports below 55536 whose bus ports are free too.
    ports: list[int] = []
    rng = random.Random()
    while len(ports) < 3:
        port = rng.randrange(20000, 45000)
        if port in ports:
            continue
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        ports.append(port)
    nodes = []
    try:
        for port in ports:
            folder = tmp_path / str(port)
            folder.mkdir()
            nodes.append(
                subprocess.Popen(
                    [
                        binary,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(folder / "nodes.conf"),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(folder),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in ports:
            deadline = time.monotonic() + 10
            while True:
                try:
                    redis.Redis(host="127.0.0.1", port=port).ping()
                    break
                except redis.ConnectionError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
        # Slots split three ways, then the nodes introduced to each other.
        thirds = [(0, 5460), (5461, 10922), (10923, 16383)]
        for port, (low, high) in zip(ports, thirds, strict=True):
            redis.Redis(host="127.0.0.1", port=port).execute_command(
                "CLUSTER", "ADDSLOTSRANGE", low, high
            )
        for port in ports[1:]:
            redis.Redis(host="127.0.0.1", port=port).execute_command(
                "CLUSTER", "MEET", "127.0.0.1", ports[0]
            )
        deadline = time.monotonic() + 20
        clients = [redis.Redis(host="127.0.0.1", port=port) for port in ports]

        def formed() -> bool:
            return all(
                b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO")
                and len(c.execute_command("CLUSTER", "SLOTS")) == 3
                for c in clients
            )

        while not formed():
            assert time.monotonic() < deadline, "cluster did not form"
            time.sleep(0.1)
        # Nodes may still say "down" for a moment: wait until writes to
        # every node go through.
        from redis.cluster import RedisCluster

        probe = RedisCluster(host="127.0.0.1", port=ports[0])
        while True:
            try:
                for i in range(30):
                    probe.set(f"probe-{i}", i)
                break
            except redis.RedisError:
                assert time.monotonic() < deadline, "cluster did not take writes"
                time.sleep(0.1)
        for i in range(30):
            probe.delete(f"probe-{i}")
        ns = uuid.uuid4().hex
        via = {"cluster": True}
        url = f"redis://127.0.0.1:{ports[0]}/0"
        a, b, c = (instance(url, ns, shared_state=via) for _ in range(3))
        try:
            record(a, [(True, 10.0)] * 12)
            record(b, [(False, 30.0)] * 3)
            sync(a, b, c)
            for router in (a, b, c):
                assert router.tracker.stats("m").requests == 15
                assert router.tracker.stats("m").successes == 12
            # The window's keys landed on more than one node.
            holders = sum(
                1 for port in ports if redis.Redis(host="127.0.0.1", port=port).dbsize() > 0
            )
            assert holders >= 2
        finally:
            for router in (a, b, c):
                router.close()
    finally:
        for node in nodes:
            node.terminate()
            node.wait(10)


def test_dashboard_data_shows_the_shared_state(redis_server: RedisServer) -> None:
    from zeta_fast.dashboard import live_view

    ns = uuid.uuid4().hex
    a, b = instance(redis_server.url, ns), instance(redis_server.url, ns)
    try:
        sync(a, b)
        view = live_view(a)
        assert view["shared"]["enabled"]
        assert view["shared"]["up"]
        assert view["shared"]["remote_instances"] == 1
        redis_server.stop()
        assert a.shared is not None
        a.shared.cycle()
        assert live_view(a)["shared"]["up"] is False
    finally:
        a.close()
        b.close()


def test_a_failing_cycle_callback_does_not_stop_sharing(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    ns = uuid.uuid4().hex
    a, b = instance(redis_server.url, ns), instance(redis_server.url, ns)
    try:
        assert a.shared is not None

        def broken(_: object) -> None:
            raise ValueError("a peer's learned state of another version")

        a.shared.on_cycle.append(broken)
        with caplog.at_level(logging.ERROR, logger="zeta_fast.shared"):
            assert a.shared.cycle()
        assert "callback failed" in caplog.text
        record(b, [(True, 10.0)] * 4)
        sync(a, b)
        assert a.tracker.stats("m").requests == 4
    finally:
        a.close()
        b.close()


def _conversation(c: int, turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "You are a coding agent with tools. " * 8}]
    for t in range(turns):
        if t:
            messages.append({"role": "assistant", "content": f"step {c}.{t} done"})
        messages.append({"role": "user", "content": f"conversation {c}, turn {t}"})
    return messages


def test_cache_aware_placements_are_shared_so_instances_agree(redis_server: RedisServer) -> None:
    # Two gateways in front of the same four replicas: a conversation
    # started on one instance continues on the replica holding it when its
    # next turn reaches the other instance.
    ns = f"prefix-{os.getpid()}"
    four = {
        "id": "m",
        "capabilities": dict.fromkeys(TEXT_TASKS, 80),
        "replicas": [{"id": f"r{i}", "url": "http://127.0.0.1:9"} for i in range(4)],
    }
    a, b = (
        instance(redis_server.url, ns, replica_policy="cache_aware", models=[four])
        for _ in range(2)
    )
    try:
        homes = {}
        for c in range(12):
            decision = a.route(_conversation(c, 1))
            homes[c] = decision.replica_id
            a.record(decision, True, 10.0)
        sync(a, b)
        for c in range(12):
            decision = b.route(_conversation(c, 2))
            assert decision.replica_id == homes[c], c
            b.record(decision, True, 10.0)
        # And back: b's placements reached a (nothing is applied twice or lost).
        sync(a, b)
        stats = a.core.prefix_cache("m")
        assert stats is not None
        assert stats["sessions"] == 12
        assert sum(row["requests"] for row in stats["replicas"].values()) == 24
        # A corrupt record in the stream is refused and counted, not fatal.
        assert a.shared is not None
        a.shared.client.xadd(f"{ns}:prefix:m", {"i": "someone-else", "d": b"\x07\x00\x00"})
        errors = a.shared.stats.errors
        assert a.shared.cycle()
        assert a.shared.stats.errors == errors + 1
    finally:
        a.close()
        b.close()
