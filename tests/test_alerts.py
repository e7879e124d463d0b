"""Trend detection and alerts: the detectors' false-positive rate on 100,000
healthy requests and their delays on faults, the engine's rules, cool-downs
and history, a real webhook, and alerts raised by real llama.cpp faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.llamacpp_fixtures import StartReplicas
from zeta_fast import ManualClock, PerformanceTracker, Router
from zeta_fast.alerts import Alert, AlertEngine, LatencyDetector, SuccessDetector, TrendWatch
from zeta_fast.backends import BackendError
from zeta_fast.cli import main
from zeta_fast.config import AlertsSpec, parse_router_config
from zeta_fast.local.fault_proxy import FaultProxy

Detector = SuccessDetector | LatencyDetector


def healthy(rng: random.Random) -> tuple[bool, float]:
    """99 % success, ~25 ms with log-normal noise (sigma 0.3)."""
    return rng.random() > 0.01, math.exp(rng.gauss(math.log(25.0), 0.3))


def test_no_false_alarm_in_100k_healthy_requests() -> None:
    rng = random.Random(7)
    success, latency = SuccessDetector(), LatencyDetector()
    alarms = []
    for _ in range(100_000):
        ok, ms = healthy(rng)
        alarms += [c for c in (success.observe(ok), latency.observe(ms)) if c is not None]
    assert alarms == []
    with pytest.raises(ValueError, match="window must be >= 2 and <= 100000, got 1"):
        SuccessDetector(window=1)


def _delay(
    detector: Detector, warm: Callable[[], object], fault: Callable[[], object]
) -> tuple[int, str]:
    for _ in range(1000):
        detector.observe(warm())  # type: ignore[arg-type]
    for n in range(1, 5001):
        change = detector.observe(fault())  # type: ignore[arg-type]
        if change is not None:
            return n, change.kind
    raise AssertionError("never detected")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_faults_are_detected_and_told_apart(seed: int) -> None:
    rng = random.Random(seed)
    ok = lambda: rng.random() > 0.01  # noqa: E731
    ms = lambda: math.exp(rng.gauss(math.log(25.0), 0.3))  # noqa: E731
    # Half the requests failing: within 20 requests, sudden.
    n, kind = _delay(SuccessDetector(), ok, lambda: rng.random() > 0.5)
    assert (n <= 20, kind) == (True, "sudden")
    # +400 ms on a 25 ms baseline: within 10, sudden.
    n, kind = _delay(LatencyDetector(), ms, lambda: ms() + 400)
    assert (n <= 10, kind) == (True, "sudden")
    # Failures creeping from 1 % to 8 %: a drift, within 1,000.
    n, kind = _delay(SuccessDetector(), ok, lambda: rng.random() > 0.08)
    assert (n <= 1000, kind) == (True, "drift")
    # 30 % slower: a drift, within 200.
    n, kind = _delay(LatencyDetector(), ms, lambda: ms() * 1.3)
    assert (n <= 200, kind) == (True, "drift")


def engine(spec: dict[str, object], **kwargs: object) -> AlertEngine:
    return AlertEngine(AlertsSpec.model_validate(spec), ["m"], start=False, **kwargs)  # type: ignore[arg-type]


def test_rules_cooldowns_callbacks_and_history(tmp_path: Path) -> None:
    now = [1_000.0]
    got: list[Alert] = []
    history = tmp_path / "outcomes.sqlite"
    alerts = engine(
        {
            "log": False,
            "cooldown_s": 60,
            "rules": [
                {"name": "errors", "severity": "critical", "trend": {"metric": "success"}},
                {"name": "slow-drift", "trend": {"metric": "latency", "kind": "drift"}},
            ],
        },
        history_path=history,
        callbacks=[got.append],
        clock=lambda: now[0],
    )
    rng = random.Random(3)
    for _ in range(500):
        ok, ms = healthy(rng)
        alerts.observe("m", ok, ms)
    assert alerts.process() == []
    for _ in range(200):  # a hard failure
        alerts.observe("m", rng.random() > 0.6, 25.0)
    raised = alerts.process()
    assert [(a.rule, a.kind, a.severity) for a in raised] == [("errors", "sudden", "critical")]
    assert got == raised
    # Still failing a minute later, but within the cool-down: no flood.
    for _ in range(200):
        alerts.observe("m", rng.random() > 0.6, 25.0)
    assert alerts.process() == []
    assert set(alerts.needs_attention()) == {"m"}
    now[0] += 61  # past the cool-down
    for _ in range(300):
        alerts.observe("m", False, 25.0)
    assert [a.rule for a in alerts.process()] == ["errors"]
    # A sudden latency jump is not a drift: that rule does not fire.
    for _ in range(100):
        alerts.observe("m", True, 500.0)
    assert alerts.process() == []
    alerts.close()
    rows = alerts.history()
    assert [r["rule"] for r in rows] == ["errors", "errors"]
    assert main(["alerts", "--db", str(history), "--json"]) == 0


def test_a_model_failing_at_one_task_is_flagged_for_that_task(tmp_path: Path) -> None:
    """Code is 10 % of a model's traffic: when code requests start failing
    the model as a whole moves from 1 % to ~11 % failures, which its own
    detectors take long to see; the code detector flags it within a few
    code requests, naming the task, and the model-level alert (when it
    comes) holds later task alerts of the rule back."""
    history = tmp_path / "outcomes.sqlite"
    alerts = engine(
        {"log": False, "rules": [{"name": "errors", "trend": {"metric": "success"}}]},
        history_path=history,
    )
    rng = random.Random(5)
    tasks = ["chat"] * 9 + ["code"]
    for _ in range(3000):
        ok, ms = healthy(rng)
        alerts.observe("m", ok, ms, rng.choice(tasks))
    assert alerts.process() == []
    code_requests = 0
    raised: list[Alert] = []
    while not raised:
        task = rng.choice(tasks)
        ok, ms = healthy(rng)
        code_requests += task == "code"
        alerts.observe("m", ok and task != "code", ms, task)
        raised = alerts.process()
    assert [(a.task, a.kind) for a in raised] == [("code", "sudden")], raised
    assert code_requests <= 12, code_requests
    assert raised[0].message.startswith("code requests:")
    alerts.close()
    assert [r["task"] for r in alerts.history()] == ["code"]
    # Without per-task detectors the same fault is seen later, if at all.
    flat = engine(
        {
            "log": False,
            "per_task": False,
            "rules": [{"name": "errors", "trend": {"metric": "success"}}],
        }
    )
    rng = random.Random(5)
    for _ in range(3000):
        ok, ms = healthy(rng)
        flat.observe("m", ok, ms, rng.choice(tasks))
    flat.process()
    seen = 0
    for _ in range(200):
        task = rng.choice(tasks)
        ok, ms = healthy(rng)
        seen += task == "code"
        flat.observe("m", ok and task != "code", ms, task)
        if flat.process():
            break
    assert seen > code_requests, (seen, code_requests)


def test_threshold_rules_read_the_tracker() -> None:
    clock = ManualClock(0)
    tracker = PerformanceTracker(clock=clock, persist=False)
    for i in range(30):
        tracker.record("m", "r", "code", i % 3 != 0, 10.0)  # 67 % success
    alerts = engine(
        {
            "log": False,
            "rules": [
                {
                    "name": "low-success",
                    "threshold": {"metric": "success_rate", "below": 0.9, "min_requests": 20},
                }
            ],
        },
        tracker=tracker,
    )
    raised = alerts.process()
    assert [(a.rule, a.kind, a.model) for a in raised] == [("low-success", "threshold", "m")]
    assert raised[0].value == pytest.approx(20 / 30)
    with pytest.raises(ValueError, match="set exactly one of below and above"):
        AlertsSpec.model_validate(
            {"rules": [{"name": "x", "threshold": {"metric": "success_rate"}}]}
        )


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A real HTTP server that fails the first POST with 500, then accepts."""
    received: list[dict[str, object]] = []
    calls = [0]
    ready = threading.Event()
    port: list[int] = []
    loop = asyncio.new_event_loop()

    async def hook(request: web.Request) -> web.Response:
        calls[0] += 1
        if calls[0] == 1:
            return web.Response(status=500)
        received.append(await request.json())
        return web.Response(status=204)

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.append(runner.addresses[0][1])
        return runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(serve())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(5)
    yield f"http://127.0.0.1:{port[0]}/hook", received
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_webhook_posts_and_retries(receiver: tuple[str, list[dict[str, object]]]) -> None:
    url, received = receiver
    alerts = engine({"log": False, "webhook": {"url": url, "retries": 2}})
    assert alerts.webhook is not None
    alerts.webhook.backoff_s = 0.05
    for _ in range(100):
        alerts.observe("m", True, 20.0)
    for _ in range(40):
        alerts.observe("m", False, 20.0)
    assert len(alerts.process()) == 1
    alerts.close()
    assert (alerts.webhook.delivered, alerts.webhook.attempts) == (1, 2)
    assert received[0]["rule"] == "failures-rising"
    assert received[0]["model"] == "m"
    json.dumps(received)


def test_real_faults_raise_alerts_within_a_few_requests(
    llamacpp_replicas: StartReplicas,
) -> None:
    (replica,) = llamacpp_replicas([("a", "small", 4)])
    proxy = FaultProxy("127.0.0.1", replica.port).start()
    config = parse_router_config(
        {
            "models": [
                {
                    "id": "coder",
                    "capabilities": {"chat": 80},
                    "replicas": [{"id": "a", "url": proxy.url}],
                }
            ],
            "dispatch": {
                "max_attempts": 1,
                "health": {"enabled": False},
                "breaker": {"failure_threshold": 1000},
            },
            # No cool-down: every detection is an alert, so a latency alarm
            # the machine itself causes in the healthy phase (a real slow-down
            # of a real server on a loaded 2-core box) cannot hide the fault's.
            "alerts": {"log": False, "cooldown_s": 0},
        }
    )
    router = Router(config, tracker=PerformanceTracker(persist=False))
    assert router.alerts is not None
    fired_at: list[tuple[str, int]] = []
    router.alerts.sinks.append(lambda a: fired_at.append((a.rule, router.alerts.observed["coder"])))  # type: ignore[union-attr]

    async def send(n: int) -> None:
        for _ in range(n):
            # Failures are the point here: the 503s reach the caller (one attempt).
            with contextlib.suppress(BackendError):
                await router.chat([{"role": "user", "content": "hi"}], max_tokens=2)

    async def scenario() -> tuple[int, int]:
        async with router:
            await send(100)
            assert router.alerts is not None
            router.alerts.process()
            # Healthy: no failure alert (latency is the machine's to vary).
            assert [rule for rule, _ in fired_at if rule == "failures-rising"] == []
            start_errors = router.alerts.observed["coder"]  # all processed just above
            proxy.set_fault(status=503, probability=0.5, seed=1)
            await send(60)
            router.alerts.process()
            proxy.clear()
            await send(100)
            router.alerts.process()
            start_slow = router.alerts.observed["coder"]
            proxy.set_fault(delay_ms=300)
            await send(15)
            router.alerts.process()
            proxy.clear()
            return start_errors, start_slow

    try:
        start_errors, start_slow = asyncio.run(scenario())
    finally:
        proxy.stop()

    def first(rule: str, since: int) -> int:
        """Requests from ``since`` to the first ``rule`` alert after it."""
        return min(at for name, at in fired_at if name == rule and at > since) - since

    assert first("failures-rising", start_errors) <= 30
    assert first("latency-rising", start_slow) <= 10


def test_a_router_raises_alerts_from_record_alone() -> None:
    """With the default configuration the core feeds the detectors as it
    records: no Python subscriber, yet ``router.record()`` alone raises
    the model's alert when half its requests fail, and a task's alert when
    only that task's requests fail."""

    def model(model_id: str) -> dict[str, object]:
        replica = {"id": f"{model_id}-0", "url": "http://127.0.0.1:9"}
        return {"id": model_id, "capabilities": {"chat": 80, "code": 80}, "replicas": [replica]}

    config = parse_router_config(
        {
            "models": [model("a"), model("b")],
            "dispatch": {"breaker": {"failure_threshold": 1000}, "health": {"enabled": False}},
        }
    )
    router = Router(config, tracker=PerformanceTracker(persist=False))
    prompts = {"code": "def add(a, b):\n    return a + b", "chat": "Tell me a joke about cats"}
    rng = random.Random(11)

    def record(model_id: str, task: str, fails: bool) -> list[Alert]:
        decision = router.route(prompts[task], model=model_id)
        assert (decision.model_id, decision.task_type) == (model_id, task)
        ok, ms = healthy(rng)
        router.record(decision, ok and not fails, ms)
        assert router.alerts is not None
        return router.alerts.process()

    try:
        assert router.alerts is not None
        assert router.outcomes.subscribers == ()  # nothing in Python hears of an outcome
        for _ in range(1000):  # ~100 code requests each: past the code detectors' warm-up
            for model_id in ("a", "b"):
                assert record(model_id, "code" if rng.random() < 0.1 else "chat", False) == []
        assert router.alerts.observed == {"a": 1000, "b": 1000}
        # a: half of every request failing.
        n, raised = 0, []
        while not raised and n < 100:
            n += 1
            raised = record("a", "chat", rng.random() < 0.5)
        assert [(a.rule, a.model, a.task, a.kind) for a in raised] == [
            ("failures-rising", "a", None, "sudden")
        ]
        assert n <= 20, n
        # b: its code requests failing (a tenth of its traffic).
        code, raised = 0, []
        while not raised and code < 100:
            task = "code" if rng.random() < 0.1 else "chat"
            code += task == "code"
            raised = record("b", task, task == "code")
        assert [(a.rule, a.model, a.task) for a in raised] == [("failures-rising", "b", "code")]
        assert code <= 12, code
        assert router.alerts.watch.overflowed == 0
        assert router.alerts.watch.capacity == TrendWatch(["x"]).capacity  # one default
    finally:
        router.close()


def test_bad_detector_settings_and_observations_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"warmup must be >= 1, got 0"):
        SuccessDetector(warmup=0)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\], got 1.5"):
        LatencyDetector(alpha=1.5)
    with pytest.raises(ValueError, match=r"sudden_ratio must be finite and > 0, got 0\.0"):
        LatencyDetector(sudden_ratio=0.0)
    with pytest.raises(ValueError, match="latency_ms must be finite and >= 0, got nan"):
        LatencyDetector().observe(math.nan)
    alerts = engine({"log": False})
    with pytest.raises(ValueError, match='unknown task "poetry"'):
        alerts.observe("m", True, 10.0, "poetry")
    alerts.observe("not-watched", True, 10.0)  # ignored, as before
    alerts.process()
    assert alerts.observed == {"m": 0}
    alerts.close()
