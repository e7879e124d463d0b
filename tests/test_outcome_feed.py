"""One outcome feed: ``Router.record``, ``Router.feedback`` and every
dispatched attempt publish to it once, and the outcome log, the alerts and
the recent list are its subscribers; ``Router`` is a facade whose methods
are its own (none replaced on the instance)."""

from __future__ import annotations

import ast
import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from zeta_fast import ManualClock, PerformanceTracker, Router
from zeta_fast._core import Decision
from zeta_fast.config import parse_router_config
from zeta_fast.dispatch import RoutedStream
from zeta_fast.local.canned import canned_app
from zeta_fast.outcomes import FEEDBACK, OutcomeFeed

ROOT = Path(__file__).resolve().parent.parent
CODE = "def add(a, b):\n    return a + b"

# (decision, kind, latency, learned, ttft, prompt tokens, completion tokens,
# dispatched, about replica)
Seen = tuple[Decision, str, float, bool | None, float | None, int, int, bool, bool]


class Collector:
    def __init__(self) -> None:
        self.seen: list[Seen] = []

    def __call__(
        self,
        decision: Decision,
        kind: str,
        latency_ms: float,
        learned: bool | None,
        ttft_ms: float | None,
        prompt_tokens: int,
        completion_tokens: int,
        dispatched: bool,
        about_replica: bool,
    ) -> None:
        self.seen.append(
            (
                decision,
                kind,
                latency_ms,
                learned,
                ttft_ms,
                prompt_tokens,
                completion_tokens,
                dispatched,
                about_replica,
            )
        )


def tracker() -> PerformanceTracker:
    return PerformanceTracker(clock=ManualClock(2_000_000_000_000), persist=False)


def config(urls: dict[str, str], tmp_path: Path | None = None, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "models": [
            {
                "id": name,
                "capabilities": {"code": 90.0 - i, "chat": 90.0 - i, "knowledge": 90.0 - i},
                "replicas": [{"id": f"{name}-0", "url": url}],
            }
            for i, (name, url) in enumerate(urls.items())
        ],
        "dispatch": {"health": {"enabled": False}},
        "outcome_log": (
            {"enabled": True, "path": str(tmp_path / "outcomes.sqlite")}
            if tmp_path is not None
            else {"enabled": False}
        ),
        **extra,
    }
    return raw


def test_feed_calls_subscribers_in_order_until_unsubscribed() -> None:
    feed = OutcomeFeed()
    calls: list[str] = []

    def first(*outcome: Any) -> None:
        calls.append(f"first {outcome[1]}")

    def second(*outcome: Any) -> None:
        calls.append(f"second {outcome[1]}")

    assert feed.subscribe(first) is first
    feed.subscribe(second)
    assert feed.subscribers == (first, second)
    decision: Any = object()
    feed.publish(decision, "success", 1.0)
    feed.unsubscribe(first)
    feed.unsubscribe(first)  # not one any more: nothing happens
    feed.publish(decision, "timeout", 2.0)
    assert calls == ["first success", "second success", "second timeout"]


def test_route_record_and_feedback_are_the_class_methods() -> None:
    router = Router("examples/router.yaml", tracker=tracker())
    try:
        for name in ("route", "record", "feedback", "assign", "predict"):
            assert name not in vars(router), name
            assert getattr(type(router), name) is getattr(Router, name)
        # Every option goes through (a context changes the model's range).
        decision = router.route(CODE, context="interactive", needs=0)
        assert decision.model_id == "coder-7b"
        router.record(decision, True, 3.0)
    finally:
        router.close()


def test_record_and_feedback_are_native_and_publish_to_the_feed_as_it_stands() -> None:
    router = Router(
        parse_router_config(config({"a": "http://127.0.0.1:9", "b": "http://127.0.0.1:9"})),
        tracker=tracker(),
    )
    try:
        # No Python frame between the caller and the core.
        for name in ("route", "record", "feedback"):
            assert type(getattr(router, name)).__name__ == "builtin_function_or_method", name
        record = router.record  # held across subscription changes, as a hot loop holds it
        seen = router.outcomes.subscribe(Collector())
        record(router.route(CODE), True, 1.0)
        router.outcomes.unsubscribe(seen)
        record(router.route(CODE), True, 2.0)
        assert [s[2] for s in seen.seen] == [1.0]

        def broken(*outcome: Any) -> None:
            raise RuntimeError("subscriber failed")

        router.outcomes.subscribe(broken)
        decision = router.route(CODE)
        with pytest.raises(RuntimeError, match="subscriber failed"):
            record(decision, True, 3.0)
        # Recorded before the subscribers ran: the slot is free, once.
        assert router.in_flight("a") == [0]
        assert router.in_flight("b") == [0]
        with pytest.raises(ValueError, match="already recorded"):
            record(decision, True, 3.0)
        with pytest.raises(TypeError, match="subscribers"):
            router._core.set_subscribers([broken])
        with pytest.raises(TypeError, match="callable"):
            router._core.set_subscribers((broken, 5))
    finally:
        router.close()


def test_record_publishes_the_verdict_once() -> None:
    router = Router(
        parse_router_config(config({"a": "http://127.0.0.1:9", "b": "http://127.0.0.1:9"})),
        tracker=tracker(),
    )
    try:
        seen = router.outcomes.subscribe(Collector())
        good = router.route(CODE)
        assert router.record(good, True, 12.0) is False  # learning is off
        bad = router.route(CODE)
        router.record(bad, False, 30.0)
        assert [s[1:] for s in seen.seen] == [
            ("success", 12.0, None, None, 0, 0, False, True),
            ("other", 30.0, None, None, 0, 0, False, True),
        ]
        assert seen.seen[0][0] is good
        # The alerts saw both (a caller's verdict is about the replica); the
        # recent list keeps dispatched attempts only.
        assert router.alerts is not None
        router.alerts.process()
        assert router.alerts.observed["a"] == 2
        assert list(router.recent) == []
        assert router.in_flight("a") == [0]
    finally:
        router.close()


def test_feedback_is_published_as_a_verdict_not_about_the_replica(tmp_path: Path) -> None:
    raw = config({"a": "http://127.0.0.1:9", "b": "http://127.0.0.1:9"}, tmp_path)
    raw["learning"] = {"enabled": True, "explore": 0.0}
    router = Router(parse_router_config(raw), tracker=tracker())
    try:
        seen = router.outcomes.subscribe(Collector())
        decision = router.route("What is the capital city of France?")
        router.record(decision, True, 5.0)
        assert router.feedback(decision, False) is True
        kinds = [(s[1], s[3], s[7], s[8]) for s in seen.seen]
        # Outcomes teach only with learn_from_outcomes; the verdict does.
        assert kinds == [("success", None, False, True), (FEEDBACK, False, False, False)]
        assert router.alerts is not None
        router.alerts.process()
        assert router.alerts.observed[decision.model_id] == 1
        assert router.outcome_log is not None
        router.outcome_log.flush()
        rows = router.outcome_log.rows()
        assert [(r["outcome"], r["learned"]) for r in rows] == [("success", None), ("feedback", 0)]
    finally:
        router.close()


def _refusing_app() -> web.Application:
    async def refuse(request: web.Request) -> web.Response:
        body = orjson.dumps({"error": {"message": "temperature must be positive"}})
        return web.Response(status=400, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", refuse)
    return app


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def test_dispatched_attempts_reach_every_subscriber_once(tmp_path: Path) -> None:
    from zeta_fast.backends.errors import BackendError

    async def main() -> tuple[Router, Collector]:
        async with (
            serving(canned_app("served", chunks=3)) as good,
            serving(_refusing_app()) as refusing,
        ):
            router = Router(
                parse_router_config(config({"good": good, "refusing": refusing}, tmp_path)),
                tracker=tracker(),
            )
            seen = router.outcomes.subscribe(Collector())
            hello = [{"role": "user", "content": "hello"}]
            answer = await router.chat(hello, max_tokens=4)
            assert answer.decision.model_id == "good"
            # What the gateway does: the loop's dispatcher, held, and a
            # stream opened on it.
            dispatcher = router.dispatcher()
            assert router.dispatcher() is dispatcher
            body = {"messages": hello, "stream": True}
            decision = router.route(body)
            stream = dispatcher.open_stream("/v1/chat/completions", body, decision)
            assert (await stream.text()).strip() == "tok0 tok1 tok2"
            with pytest.raises(BackendError):
                await router.chat(hello, model="refusing", temperature=-1)
            await router.aclose()
            return router, seen

    router, seen = asyncio.run(main())
    try:
        outcomes = [(s[0].model_id, s[1], s[7], s[8]) for s in seen.seen]
        assert outcomes == [
            ("good", "success", True, True),
            ("good", "success", True, True),
            ("refusing", "client_error", True, False),
        ]
        assert seen.seen[1][4] is not None  # the stream's time to first event
        assert seen.seen[1][6] == 3  # its completion tokens
        assert [(d.model_id, kind) for _, d, kind, _ in router.recent] == [
            ("good", "success"),
            ("good", "success"),
            ("refusing", "client_error"),
        ]
        assert router.alerts is not None
        router.alerts.process()
        # A refused request says nothing against the replica.
        assert router.alerts.observed == {"good": 2, "refusing": 0}
        assert router.outcome_log is not None
        router.outcome_log.flush()
        logged = [(r["model"], r["outcome"]) for r in router.outcome_log.rows()]
        assert logged == [("good", "success"), ("good", "success"), ("refusing", "client_error")]
    finally:
        router.close()


def test_a_stream_is_opened_by_the_dispatcher() -> None:
    router = Router("examples/router.yaml", tracker=tracker())
    try:
        stream = RoutedStream(router.route(CODE))
        with pytest.raises(RuntimeError, match=r"RoutedStream\.open"):
            aiter(stream)
        router.record(stream.decision, True, 1.0)
    finally:
        router.close()


def test_dispatcher_needs_a_running_loop() -> None:
    router = Router("examples/router.yaml", tracker=tracker())
    try:
        with pytest.raises(RuntimeError):
            router.dispatcher()
    finally:
        router.close()


def test_routing_alone_imports_no_http_client() -> None:
    script = (
        "import sys\n"
        "from zeta_fast import PerformanceTracker, Router\n"
        "r = Router('examples/router.yaml', tracker=PerformanceTracker(persist=False))\n"
        "r.record(r.route('hello'), True, 1.0)\n"
        "r.close()\n"
        "print(sorted(m for m in ('aiohttp', 'zeta_fast.dispatch') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_dispatch_imports_neither_the_alerts_nor_the_outcome_log_nor_the_router() -> None:
    tree = ast.parse((ROOT / "python/zeta_fast/dispatch.py").read_text())
    imported = {
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert not {name for name in imported if name.startswith("zeta_fast.alerts")}
    assert not {name for name in imported if name.startswith("zeta_fast.router")}
    assert "zeta_fast.outcome_log.OutcomeLog" not in imported
