"""The quality signals against real servers: two llama.cpp models behind the
gateway, one of whose servers never gets the request's ``response_format``
(a fault proxy strips it, as a server without JSON mode would ignore it).
With grammar-constrained decoding even the random tiny model writes valid
JSON, so only the stripped one fails its answers' structural checks: the
router must move JSON-mode requests to the model that honours them while
the other keeps its share of plain chat. Beside it, through the same
gateway: a regenerated answer, a continued conversation and a judge (a
canned server answers the judge's verdicts; what it judges is real), each
counted per source on /metrics and attributed in the outcome log."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.test_gateway import metrics_of, serve, total
from tests.waiting import wait_until_async
from zeta_fast import PerformanceTracker, Router
from zeta_fast.config import parse_router_config
from zeta_fast.gateway import RunningGateway
from zeta_fast.local.fault_proxy import FaultProxy
from zeta_fast.local.llamacpp import LlamaCppReplica
from zeta_fast.local.tiny_model import ensure_tiny_model

JSON_MODE = {"type": "json_object"}


@pytest.fixture(scope="module")
def two_json_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(honours, strips): two servers of the structured-output tiny model,
    the second behind a proxy that removes ``response_format``."""
    model = ensure_tiny_model(tmp_path_factory.mktemp("signals-model"), structured_output=True)
    honours = LlamaCppReplica(model, alias="honours", parallel=4).start()
    strips = LlamaCppReplica(model, alias="strips", parallel=4).start()
    proxy = FaultProxy("127.0.0.1", strips.port, strip_fields=("response_format",)).start()
    try:
        yield honours.url, proxy.url
    finally:
        proxy.stop()
        strips.stop()
        honours.stop()


def _judge_app(verdicts: list[str]) -> web.Application:
    """A canned judge: answers each grading with the next verdict."""
    asked: list[int] = [0]

    async def grade(request: web.Request) -> web.Response:
        body = await request.json()
        assert body["messages"][0]["content"].endswith("Verdict:")
        reply = verdicts[asked[0] % len(verdicts)]
        asked[0] += 1
        return web.json_response(
            {
                "id": "judge",
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }
                ],
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", grade)
    return app


@contextlib.asynccontextmanager
async def canned_judge(verdicts: list[str]) -> AsyncIterator[str]:
    """A canned judge server on a free port: its base URL."""
    runner = web.AppRunner(_judge_app(verdicts))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def serve_defaults(
    models: list[dict[str, Any]],
    body: Callable[[RunningGateway, aiohttp.ClientSession], Awaitable[None]],
    **dispatch: Any,
) -> None:
    """Runs ``body`` against a gateway of ``models`` as it runs by default
    (signals and learning on), without health checks or an outcome log."""
    serve_config(
        {
            "models": models,
            "dispatch": {"health": {"enabled": False}, **dispatch},
            "outcome_log": {"enabled": False},
        },
        body,
    )


def serve_config(
    raw: dict[str, Any],
    body: Callable[[RunningGateway, aiohttp.ClientSession], Awaitable[None]],
) -> None:
    """Runs ``body`` against a gateway of the config ``raw``, read as the
    gateway reads it (learning on once a signal source is)."""
    config = parse_router_config(raw).for_gateway()
    router = Router(config, tracker=PerformanceTracker(config.window_config(), persist=False))
    try:
        serve(router, body)
    finally:
        router.close()


def _model(name: str, url: str) -> dict[str, Any]:
    return {
        "id": name,
        "capabilities": {"chat": 80, "code": 80, "reasoning": 80, "knowledge": 80},
        "replicas": [{"id": f"{name}-0", "url": url, "max_concurrency": 8}],
    }


def test_json_mode_moves_to_the_model_that_honours_it_and_every_source_is_counted(
    two_json_servers: tuple[str, str], tmp_path: Path
) -> None:
    honours_url, strips_url = two_json_servers
    log_path = tmp_path / "outcomes.sqlite"

    async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
        url = running.url + "/v1/chat/completions"

        async def ask(i: int, json_mode: bool) -> tuple[str, bool]:
            payload: dict[str, Any] = {
                "messages": [{"role": "user", "content": f"Describe item {i} of the list."}],
                "max_tokens": 48,
                "seed": i,
            }
            if json_mode:
                payload["response_format"] = JSON_MODE
            async with session.post(url, json=payload) as response:
                assert response.status == 200, await response.text()
                return response.headers["x-zeta-model"], json_mode

        async def rounds(start: int, count: int) -> list[tuple[str, bool]]:
            # Four at a time, JSON mode and plain chat alternating.
            picks: list[tuple[str, bool]] = []
            for first in range(start, start + count, 4):
                picks += await asyncio.gather(
                    *(ask(i, i % 2 == 0) for i in range(first, first + 4))
                )
            return picks

        learning = await rounds(0, 100)
        after = await rounds(100, 80)
        json_picks = Counter(model for model, json_mode in after if json_mode)
        plain_picks = Counter(model for model, json_mode in after if not json_mode)
        # Within 100 requests, >= 90 % of JSON mode goes where it is honoured...
        assert json_picks["honours"] >= 0.9 * sum(json_picks.values()), (json_picks, learning)
        # ...while the other keeps its share of plain chat (an even split is
        # 20 of 40; the structural record of one kind never touches another).
        assert plain_picks["strips"] >= 10, plain_picks
        kinds = running.gateway.router.core.kind_checks("strips")
        assert kinds["json"][1] >= 1, kinds
        assert kinds["json"][2] <= 2 / 3, kinds
        assert kinds["plain"][1] == 0, kinds
        assert kinds["plain"][2] == 1.0, kinds

        # A regenerated answer (the same conversation again, one session)
        # and a continued one.
        turns = [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "And another one?"},
        ]
        headers = {"x-session-id": "user-7"}
        for messages in (turns[:1], turns[:1], turns):
            payload = {"messages": messages, "max_tokens": 8}
            async with session.post(url, json=payload, headers=headers) as response:
                assert response.status == 200

        samples = await metrics_of(running, session)
        assert (
            total(
                samples, "zeta_verdicts_total", source="structural", model="strips", verdict="bad"
            )
            >= 1
        )
        assert total(samples, "zeta_verdicts_total", source="structural", verdict="good") >= 90
        assert total(samples, "zeta_verdicts_total", source="regeneration", verdict="bad") == 1
        assert total(samples, "zeta_verdicts_total", source="continuation", verdict="good") == 1
        judged = total(samples, "zeta_verdicts_total", source="judge")
        assert judged >= 5, samples
        assert total(samples, "zeta_signal_events_total", signal="judge", event="unparsed") >= 1
        assert total(samples, "zeta_model_kind_check_factor", model="strips", kind="json") <= 2 / 3

    async def main() -> None:
        async with canned_judge(["GOOD 0.9", "BAD 0.7", "maybe?"]) as judge_url:
            await judged(judge_url)

    async def judged(judge_url: str) -> None:
        raw = {
            "models": [_model("honours", honours_url), _model("strips", strips_url)],
            "dispatch": {"health": {"enabled": False}},
            "outcome_log": {"path": str(log_path)},
            "signals": {
                "judge": {
                    "enabled": True,
                    "url": judge_url,
                    "sample": 0.25,
                }
            },
        }
        # Learning is on by default in the gateway once a signal source is.
        assert parse_router_config(raw).for_gateway().learning.enabled is True
        await asyncio.to_thread(serve_config, raw, body)

    asyncio.run(main())
    with sqlite3.connect(log_path) as db:
        rows = db.execute(
            "SELECT source, verdict, confidence, detail, model FROM outcomes"
            " WHERE source IS NOT NULL"
        ).fetchall()
    sources = Counter(row[0] for row in rows)
    assert sources["structural"] >= 1, sources
    assert sources["regeneration"] == 1, sources
    assert sources["judge"] >= 5, sources
    assert sources["continuation"] == 1, sources
    structural = [row for row in rows if row[0] == "structural"]
    assert all(row[1] == 0 and row[3] == "json" and row[4] == "strips" for row in structural), [
        r for r in rows if r[0] == "structural"
    ]
    assert {row[2] for row in rows if row[0] == "judge"} <= {0.9, 0.7}


def test_shadow_comparisons_and_a_judge_among_the_routers_own_models(
    two_json_servers: tuple[str, str],
) -> None:
    """Requests a client pins to the small model are, on a sampled share,
    also sent to the strongest one: short answers are compared by agreement,
    long ones by the judge, here one of the router's own models (a canned
    server that answers verdicts), reached through the router itself."""
    small_url, big_url = two_json_servers

    async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
        url = running.url + "/v1/chat/completions"
        for i in range(24):
            payload = {
                "model": "small",
                "messages": [{"role": "user", "content": f"Give a one-word answer {i}."}],
                # Short answers are compared by agreement, long ones by the judge.
                "max_tokens": 3 if i % 2 else 40,
                "seed": i,
            }
            async with session.post(url, json=payload) as response:
                assert response.status == 200
                assert response.headers["x-zeta-model"] == "small"
        gateway = running.gateway
        assert gateway.shadow is not None
        await wait_until_async(
            lambda: (
                gateway.counters.signals["shadow", "asked"] >= 24 and not gateway.shadow.in_flight
            ),
            timeout_s=60,
        )
        samples = await metrics_of(running, session)
        compared = total(samples, "zeta_verdicts_total", source="shadow", model="small")
        assert compared >= 12, samples
        assert total(samples, "zeta_verdicts_total", source="shadow", model="big") == 0
        # The big model served every shadow request, as real traffic.
        assert total(samples, "zeta_backend_requests_total", model="big", outcome="success") == 24
        # Long answers went to the judge, through the router (its own model).
        events = gateway.counters.signals
        assert events["judge", "asked"] >= 1, events
        judged = total(samples, "zeta_backend_requests_total", model="judge", outcome="success")
        assert judged == events["judge", "asked"], events
        assert events["shadow", "enough"] + events["shadow", "not_enough"] == compared, events

    async def main() -> None:
        async with canned_judge(["GOOD 0.8", "BAD 0.6"]) as judge_url:
            await judged(judge_url)

    async def judged(judge_url: str) -> None:
        small, big = _model("small", small_url), _model("big", big_url)
        small["capabilities"] = {"chat": 60, "knowledge": 60, "reasoning": 60, "code": 60}
        judge = _model("judge", judge_url)
        judge["capabilities"] = {"reasoning": 1}
        raw = {
            "models": [small, big, judge],
            "dispatch": {"health": {"enabled": False}},
            "outcome_log": {"enabled": False},
            "signals": {
                "judge": {"enabled": True, "model": "judge", "sample": 0.0},
                "shadow": {"enabled": True, "sample": 1.0},
            },
        }
        await asyncio.to_thread(serve_config, raw, body)

    asyncio.run(main())


def test_streamed_answers_are_checked_once_they_end(two_json_servers: tuple[str, str]) -> None:
    honours_url, strips_url = two_json_servers

    async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
        url = running.url + "/v1/chat/completions"
        for model in ("honours", "strips"):
            for i in range(3):
                payload = {
                    "model": model,
                    "messages": [{"role": "user", "content": f"Describe item {i}."}],
                    "max_tokens": 128,
                    "response_format": JSON_MODE,
                    "stream": True,
                    "seed": i,
                }
                async with session.post(url, json=payload) as response:
                    assert response.status == 200
                    streamed = await response.read()
                assert streamed.rstrip().endswith(b"data: [DONE]")
        core = running.gateway.router.core
        assert core.kind_checks("honours")["json"][:2] == (3, 0)
        assert core.kind_checks("strips")["json"][:2] == (3, 3)

    serve_defaults([_model("honours", honours_url), _model("strips", strips_url)], body)


def test_a_request_sent_again_after_an_error_is_no_regeneration(
    two_json_servers: tuple[str, str],
) -> None:
    """Only an answer that came can be regenerated: a user resending after
    an error says nothing about any answer (the replica's fault stays the
    replica's, never a verdict on a model's quality)."""
    honours_url, _ = two_json_servers
    port = int(honours_url.rsplit(":", 1)[1])

    with FaultProxy("127.0.0.1", port) as proxy:

        async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
            url = running.url + "/v1/chat/completions"
            payload = {"messages": [{"role": "user", "content": "Name a city."}], "max_tokens": 4}
            headers = {"x-session-id": "user-9"}
            proxy.set_fault(status=503, probability=1.0)
            async with session.post(url, json=payload, headers=headers) as response:
                assert response.status >= 500
            proxy.clear()
            for _ in range(2):  # answered, then regenerated once
                async with session.post(url, json=payload, headers=headers) as response:
                    assert response.status == 200, await response.text()
            counts = {s: g + b for s, _, g, b in running.gateway.router.core.verdict_counts()}
            assert counts.get("regeneration") == 1, counts

        serve_defaults([_model("only", proxy.url)], body, max_attempts=2)
