"""The live dashboard in a real browser: headless Chromium loads /dashboard
from a gateway in front of real llama.cpp replicas; the rendered values are
read back and checked against the tracker; screenshots are written to
test-artifacts/; then a replica is slowed and the page must show its
model's latency penalty (and the alert) on its first poll after the router
applies it (the page polls every 500 ms)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import aiohttp
import pytest

from tests.cdp import Browser
from tests.llamacpp_fixtures import StartReplicas
from tests.waiting import wait_until_async
from zeta_fast import PerformanceTracker, Router, profile
from zeta_fast._core import ReplicaStatus
from zeta_fast.config import parse_router_config
from zeta_fast.gateway import RunningGateway, hash_key, start
from zeta_fast.local.fault_proxy import FaultProxy

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("ZETA_TEST_ARTIFACTS", ROOT / "test-artifacts"))
KEY = "zk-dashboard-test-key-0001"
PROMPT = "Say hello to the team."
TASK = profile(PROMPT).task_type
TEXT_TASKS = ("chat", "code", "reasoning", "knowledge")


def dashboard_router(fast: list[str], slow: str) -> Router:
    config = parse_router_config(
        {
            "models": [
                {
                    "id": "fast",
                    "capabilities": dict.fromkeys(TEXT_TASKS, 80),
                    "replicas": [{"id": f"fast-{i}", "url": url} for i, url in enumerate(fast)],
                },
                {
                    "id": "slowpoke",
                    "capabilities": dict.fromkeys(TEXT_TASKS, 85),
                    "replicas": [{"id": "slowpoke-0", "url": slow}],
                },
            ],
            "dispatch": {"health": {"enabled": False}, "max_attempts": 1},
            "gateway": {"api_keys": [{"name": "viewer", "sha256": hash_key(KEY)}]},
            "learning": {"enabled": True, "learn_from_outcomes": True, "min_outcomes": 5},
            "alerts": {"log": False},
            "outcome_log": {"enabled": False},
        }
    )
    return Router(config, tracker=PerformanceTracker(config.window_config(), persist=False))


async def send(
    session: aiohttp.ClientSession, url: str, model: str = "auto", tokens: int = 2
) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": tokens}
    headers = {"Authorization": f"Bearer {KEY}"}
    async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status == 200, await response.text()
        await response.read()


async def traffic(
    session: aiohttp.ClientSession, url: str, model: str, workers: int, stop: asyncio.Event
) -> None:
    async def worker() -> None:
        while not stop.is_set():
            await send(session, url, model)

    await asyncio.gather(*(worker() for _ in range(workers)))


async def page_data_time(browser: Browser) -> float:
    """When the server produced the data the page shows (its ``ts``)."""
    shown = await browser.evaluate("document.getElementById('updated').dataset.v || '0'")
    return float(shown)


async def next_poll_after(browser: Browser, moment: float) -> None:
    """Waits until the page shows data read wholly after ``moment`` (server
    clock): the poll whose data was stamped after it may have read some of
    it before, so the poll after that one, which the page only sends once
    that one is shown."""
    first: list[float] = []

    async def stamped_after(since: float) -> bool:
        shown = await page_data_time(browser)
        if shown > since:
            first.append(shown)
            return True
        return False

    await wait_until_async(lambda: stamped_after(moment), interval_s=0.05)
    await wait_until_async(lambda: stamped_after(first[0]), interval_s=0.05)


def replica_state(status: ReplicaStatus) -> str:
    """A replica's state as the page words it (dashboard.js), from the core."""
    if not status.healthy:
        return "down"
    if status.breaker != "closed":
        return f"breaker {status.breaker}"
    return "degraded" if status.degraded else "ok"


def close(shown: str, expected: float | None) -> bool:
    if expected is None:
        return shown == ""
    return shown != "" and abs(float(shown) - expected) <= 1e-9 * max(1.0, abs(expected))


def test_live_dashboard_in_headless_chromium(llamacpp_replicas: StartReplicas) -> None:
    fast_a, fast_b, slow = llamacpp_replicas(
        [("fast-a", "small", 4), ("fast-b", "small", 4), ("slow", "small", 8)]
    )
    proxy = FaultProxy("127.0.0.1", slow.port).start()
    router = dashboard_router([fast_a.url, fast_b.url], proxy.url)

    async def scenario() -> None:
        running: RunningGateway = await start(router, port=0)
        try:
            async with aiohttp.ClientSession() as session, Browser() as browser:
                url = running.url
                # The data is behind the API's keys; the page shell is not.
                async with session.get(url + "/dashboard/data") as response:
                    assert response.status == 401
                async with session.get(url + "/dashboard") as response:
                    assert response.status == 200
                    assert "zeta_fast dashboard" in await response.text()
                # Traffic to both models, then quiet, so the page can be compared.
                await asyncio.gather(*(send(session, url) for _ in range(30)))
                await asyncio.gather(*(send(session, url, "slowpoke") for _ in range(12)))
                await browser.goto(f"{url}/dashboard#key={KEY}")
                await wait_until_async(
                    lambda: browser.evaluate(
                        "document.querySelectorAll('#models tbody tr').length === 2"
                    ),
                    interval_s=0.05,
                )
                await next_poll_after(browser, time.time())  # after the last request
                shown = await browser.values()
                for model in ("fast", "slowpoke"):
                    stats = router.tracker.stats(model)
                    assert int(shown[f"model:{model}:requests"]) == stats.requests > 0
                    assert close(shown[f"model:{model}:success"], stats.success_rate)
                    assert close(shown[f"model:{model}:p50"], stats.p50_ms)
                    assert close(shown[f"model:{model}:p95"], stats.p95_ms)
                    assert close(shown[f"model:{model}:p99"], stats.p99_ms)
                    assert shown[f"model:{model}:in_flight"] == "0"
                    for status in router.core.replica_status(model):
                        key = f"replica:{model}:{status.replica_id}"
                        assert int(shown[f"{key}:requests"]) == sum(status.outcomes.values())
                        # The state the core gives (two llama.cpp twins on a
                        # loaded 2-core box can measure one as the slow one).
                        assert shown[f"{key}:state"] == replica_state(status)
                        replica = router.tracker.stats(model, replica=status.replica_id)
                        for q in ("p50", "p95", "p99"):
                            assert close(shown[f"{key}:{q}"], getattr(replica, f"{q}_ms"))
                for model_id, task, breakdown in router.core.scores():
                    key = f"score:{model_id}:{task}"
                    assert close(shown[f"{key}:capability"], breakdown.capability_score)
                    assert close(shown[f"{key}:score"], breakdown.performance_score)
                assert f"penalty:slowpoke:{TASK}:high_latency" not in shown
                # The learned router's view: categories with a winner.
                assert any(k.startswith("learned:") and k.endswith(":winner") for k in shown)
                # The quality signals: every answer's structural check, by source.
                checked = [
                    (g, b) for s, _, g, b in router.core.verdict_counts() if s == "structural"
                ]
                assert int(shown["signals:structural:good"]) == sum(g for g, _ in checked) > 0
                assert int(shown["signals:structural:bad"]) == sum(b for _, b in checked)
                assert "alerts-open-none" in shown
                page = await browser.screenshot(ARTIFACTS / "dashboard.png")
                assert page.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
                assert page.stat().st_size > 20_000

                # Slow the only replica of "slowpoke" far past the latency bar.
                proxy.set_fault(delay_ms=900)
                stop = asyncio.Event()
                load = asyncio.create_task(traffic(session, url, "slowpoke", 8, stop))

                def penalised() -> bool:
                    return any(
                        m == "slowpoke" and t == TASK and "high_latency" in b.penalties
                        for m, t, b in router.core.scores()
                    )

                async def shown_penalty() -> bool:
                    values = await browser.values()
                    return f"penalty:slowpoke:{TASK}:high_latency" in values

                try:
                    await wait_until_async(penalised, 30, interval_s=0.05)
                    await next_poll_after(browser, time.time())
                    assert await shown_penalty()
                    alerts = router.alerts
                    assert alerts is not None
                    await wait_until_async(
                        lambda: any(a.model == "slowpoke" for a in alerts.fired),
                        30,
                        interval_s=0.05,
                    )
                    await next_poll_after(browser, time.time())
                    assert await browser.evaluate(
                        "document.querySelectorAll('[data-k^=\"alert-open:slowpoke:\"]').length > 0"
                    )
                    reason = await browser.evaluate(
                        f"document.querySelector('[data-k=\"penalty:slowpoke:{TASK}:high_latency\"]').textContent"
                    )
                    assert "above 500 ms" in reason, reason
                    await browser.screenshot(ARTIFACTS / "dashboard-slowed.png")
                finally:
                    stop.set()
                    proxy.clear()
                    with contextlib.suppress(Exception):
                        await load
        finally:
            await running.stop()
            proxy.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize("path", ["/dashboard/static/nope.js", "/dashboard/static/..%2Fviews.py"])
def test_only_the_page_files_are_served(path: str, llamacpp_replicas: StartReplicas) -> None:
    (replica,) = llamacpp_replicas([("a", "small", 1)])
    router = dashboard_router([replica.url], replica.url)

    async def scenario() -> None:
        running = await start(router, port=0)
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(running.url + path) as response:
                    assert response.status == 404
                async with session.get(running.url + "/dashboard/static/dashboard.js") as response:
                    assert response.status == 200
                    assert response.content_type == "text/javascript"
        finally:
            await running.stop()

    asyncio.run(scenario())


def test_report_of_a_real_run(llamacpp_replicas: StartReplicas, tmp_path: Path) -> None:
    """A run against real llama.cpp replicas (one answering 503 half the
    time for a while) logged to SQLite; `zeta-fast report` turns the log
    into PNGs and one self-contained HTML file whose numbers are the log's,
    and which renders in Chromium from a file, without a server."""
    import json
    import re
    import sqlite3

    from zeta_fast.cli import main

    good, flaky = llamacpp_replicas([("good", "small", 4), ("flaky", "small", 4)])
    proxy = FaultProxy("127.0.0.1", flaky.port).start()
    state = tmp_path / "state" / "tracker.snapshot"
    config_file = tmp_path / "router.json"
    config_file.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "id": "steady",
                        "capabilities": dict.fromkeys(TEXT_TASKS, 80),
                        "replicas": [{"id": "steady-0", "url": good.url}],
                    },
                    {
                        "id": "shaky",
                        "capabilities": dict.fromkeys(TEXT_TASKS, 90),
                        "replicas": [{"id": "shaky-0", "url": proxy.url}],
                    },
                ],
                "dispatch": {"health": {"enabled": False}, "max_attempts": 2},
                "learning": {"enabled": True, "learn_from_outcomes": True},
                "alerts": {"log": False},
                "state_path": str(state),
            }
        )
    )
    router = Router(config_file)

    async def run() -> None:
        async with router:
            for i in range(90):
                if i == 30:
                    proxy.set_fault(status=503, probability=0.5, seed=2)
                if i == 60:
                    proxy.clear()
                await router.chat([{"role": "user", "content": PROMPT}], max_tokens=2)

    try:
        asyncio.run(run())
    finally:
        router.close()
        proxy.stop()
    db = state.with_name("outcomes.sqlite")
    out = tmp_path / "report"
    assert (
        main(["report", "--db", str(db), "--config", str(config_file), "--out", str(out), "--json"])
        == 0
    )
    html = (out / "report.html").read_text()
    # Self-contained: no file or address outside the page itself.
    assert not re.search(r'(src|href)="(?!data:)', html)
    for name in ("timeline.png", "scores.png", "learned.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    embedded = json.loads(
        re.search(r"window\.ZETA_DATA = (.*?);</script>", html, re.S).group(1).replace("<\\/", "</")  # type: ignore[union-attr]
    )
    with sqlite3.connect(db) as con:
        logged = dict(
            con.execute(
                "SELECT model, COUNT(*) FROM outcomes WHERE outcome NOT IN "
                "('client_error', 'context_length', 'cancelled', 'feedback') GROUP BY model"
            ).fetchall()
        )
        failed = con.execute(
            # Verdicts (a failed structural check) are rows too, not attempts.
            "SELECT COUNT(*) FROM outcomes WHERE model = 'shaky' AND success = 0"
            " AND outcome != 'feedback'"
        ).fetchone()[0]
    assert {m["id"]: m["requests"] for m in embedded["models"]} == logged
    shaky = next(m for m in embedded["models"] if m["id"] == "shaky")
    assert failed > 0
    assert shaky["success_rate"] == pytest.approx(1 - failed / logged["shaky"])
    assert embedded["learned"]["enabled"]
    assert embedded["learned"]["categories"]

    async def render() -> dict[str, str]:
        async with Browser() as browser:
            await browser.goto((out / "report.html").as_uri())
            await wait_until_async(
                lambda: browser.evaluate(
                    "document.getElementById('status')?.textContent === 'report'"
                ),
                interval_s=0.05,
            )
            shown = await browser.values()
            await browser.screenshot(ARTIFACTS / "report.png")
            return shown

    shown = asyncio.run(render())
    assert int(shown["model:shaky:requests"]) == logged["shaky"]
    assert close(shown["model:shaky:success"], shaky["success_rate"])
