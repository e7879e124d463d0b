"""The OpenAI-compatible gateway against real llama.cpp replicas over real
HTTP: the API, decision headers and records, /metrics read back with
prometheus_client's parser, /health, keys, rate limits, body limits,
failover, client disconnects, and a clean shutdown of `zeta-fast serve`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.llamacpp_fixtures import EMBEDDING_DIM, StartReplicas
from tests.waiting import wait_until_async
from zeta_fast import PerformanceTracker, Router
from zeta_fast.config import parse_router_config
from zeta_fast.gateway import RunningGateway, hash_key, start
from zeta_fast.local.fault_proxy import FaultProxy

HELLO = [{"role": "user", "content": "Say hello to the team."}]
CODE = [{"role": "user", "content": "def add(a, b):\n    return a + b\n# write tests for it"}]
KEY_A = "zk-test-a-1234567890"
KEY_B = "zk-test-b-0987654321"


def text_model(name: str, urls: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "id": name,
        "capabilities": {"chat": 80, "code": 90, "reasoning": 70, "knowledge": 70},
        "replicas": [{"id": f"{name}-{i}", "url": url} for i, url in enumerate(urls)],
        **extra,
    }


def gateway_router(models: list[dict[str, Any]], **top: Any) -> Router:
    dispatch = top.pop("dispatch", {})
    dispatch.setdefault("health", {"enabled": False})
    config = parse_router_config({"models": models, "dispatch": dispatch, **top})
    return Router(config, tracker=PerformanceTracker(config.window_config(), persist=False))


def serve(router: Router, body: Callable[[RunningGateway, aiohttp.ClientSession], Awaitable[None]]):
    """Runs ``body`` against the gateway of ``router`` on a free port."""

    async def main() -> None:
        running = await start(router, port=0)
        try:
            async with aiohttp.ClientSession() as session:
                await body(running, session)
        finally:
            await running.stop()

    asyncio.run(main())


async def metrics_of(running: RunningGateway, session: aiohttp.ClientSession, **kw: Any) -> dict:
    async with session.get(running.url + "/metrics", **kw) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def test_openai_api_with_decision_headers_records_and_metrics(
    llamacpp_replicas: StartReplicas,
) -> None:
    a, b, emb = llamacpp_replicas([("a", "small", 2), ("b", "small", 2), ("e", "embedding", 2)])
    router = gateway_router(
        [
            text_model("coder", [a.url, b.url]),
            {
                "id": "embedder",
                "capabilities": {"embedding": 90},
                "replicas": [{"id": "embedder-0", "url": emb.url}],
            },
        ]
    )

    async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
        url = running.url
        async with session.get(url + "/v1/models") as response:
            listed = [m["id"] for m in (await response.json())["data"]]
        assert listed == ["auto", "coder", "embedder"]

        async with session.post(
            url + "/v1/chat/completions", json={"model": "auto", "messages": CODE, "max_tokens": 4}
        ) as response:
            assert response.status == 200
            answer = await response.json()
            headers = response.headers
        assert answer["object"] == "chat.completion"
        assert answer["usage"]["completion_tokens"] == 4
        assert "zeta" not in answer  # the record is opt-in
        assert headers["x-zeta-model"] == "coder"
        assert headers["x-zeta-replica"] in ("coder-0", "coder-1")
        assert 0.0 <= float(headers["x-zeta-overhead-ms"]) < 100.0

        async with session.post(
            url + "/v1/completions",
            json={"model": "coder", "prompt": "Once upon", "max_tokens": 3},
            headers={"x-zeta-decision": "1"},
        ) as response:
            assert response.status == 200
            answer = await response.json()
        assert answer["object"] == "text_completion"
        record = answer["zeta"]
        assert record["decision"]["model_id"] == "coder"
        assert record["decision"]["replica_id"] == response.headers["x-zeta-replica"]
        assert [a["outcome"] for a in record["attempts"]] == ["success"]
        assert record["overhead_ms"] == pytest.approx(
            float(response.headers["x-zeta-overhead-ms"]), abs=1e-3
        )

        async with session.post(
            url + "/v1/embeddings", json={"model": "auto", "input": ["one", "two"]}
        ) as response:
            assert response.status == 200
            vectors = (await response.json())["data"]
        assert response.headers["x-zeta-model"] == "embedder"
        assert [len(v["embedding"]) for v in vectors] == [EMBEDDING_DIM, EMBEDDING_DIM]

        # Streams are relayed event by event, [DONE] last, with the headers.
        async with session.post(
            url + "/v1/chat/completions",
            json={"messages": HELLO, "max_tokens": 6, "stream": True},
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            assert response.headers["x-zeta-model"] == "coder"
            events = [e for e in (await response.read()).split(b"\n\n") if e]
        assert events[-1] == b"data: [DONE]"
        chunks = [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"

        # Errors in OpenAI's shape.
        async with session.post(
            url + "/v1/chat/completions", json={"model": "gpt-9", "messages": HELLO}
        ) as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "model_not_found"
        async with session.post(url + "/v1/chat/completions", data=b"{not json") as response:
            assert response.status == 400
            assert "not valid JSON" in (await response.json())["error"]["message"]
        async with session.post(url + "/v1/chat/completions", data=b"[1, 2]") as response:
            assert response.status == 400
        # A body of the wrong shape never reaches a replica: the gateway says why.
        async with session.post(
            url + "/v1/chat/completions", json={"messages": "not a list"}
        ) as response:
            assert response.status == 400
            assert (
                "messages must be a non-empty list" in (await response.json())["error"]["message"]
            )
        # A bad parameter value is the request's fault: the backend's 400 as it was.
        async with session.post(
            url + "/v1/chat/completions", json={"messages": HELLO, "n": 0}
        ) as response:
            assert response.status == 400
            assert "'n'" in (await response.json())["error"]["message"]

        samples = await metrics_of(running, session)
        chats = total(samples, "zeta_backend_requests_total", model="coder", outcome="success")
        assert chats == 3  # chat, completion, stream
        assert (
            value(
                samples,
                "zeta_backend_requests_total",
                model="embedder",
                replica="embedder-0",
                outcome="success",
            )
            == 1
        )
        assert total(samples, "zeta_backend_requests_total", outcome="client_error") == 1
        # Every attempt that reached a replica is in its latency histogram.
        assert total(samples, "zeta_backend_request_duration_seconds_count", model="coder") == 4
        assert (
            total(samples, "zeta_backend_request_duration_seconds_bucket", model="coder", le="+Inf")
            == 4
        )
        assert total(samples, "zeta_replica_in_flight") == 0
        assert (
            value(
                samples,
                "zeta_replica_breaker_state",
                model="coder",
                replica="coder-0",
                state="closed",
            )
            == 1
        )
        assert value(samples, "zeta_model_score", model="coder", task="code") == 90.0
        assert (
            value(
                samples,
                "zeta_model_penalty_active",
                model="coder",
                task="code",
                penalty="high_latency",
            )
            == 0
        )
        assert (
            value(samples, "zeta_gateway_responses_total", route="chat/completions", status="200")
            == 2
        )
        assert (
            value(samples, "zeta_gateway_responses_total", route="chat/completions", status="404")
            == 1
        )
        assert value(samples, "zeta_gateway_refused_total", reason="bad_request") == 3
        # One overhead observation per routed request (the 404, bad JSON, bad shapes: none).
        assert value(samples, "zeta_router_overhead_seconds_count") == 5
        assert value(samples, "zeta_gateway_in_flight") == 0
        tokens = total(samples, "zeta_backend_tokens_total", model="coder", type="completion")
        assert tokens >= 4 + 3

        async with session.get(url + "/health") as response:
            health = await response.json()
        assert response.status == 200
        assert health["status"] == "ok"
        assert health["models"]["coder"]["usable"] == ["coder-0", "coder-1"]

    serve(router, body)


def test_unclaimed_task_types_are_served_and_recorded(llamacpp_replicas: StartReplicas) -> None:
    (a,) = llamacpp_replicas([("a", "small", 2)])
    router = gateway_router(
        [{"id": "coder", "capabilities": {"code": 90}, "replicas": [{"id": "c", "url": a.url}]}]
    )

    async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
        for _ in range(3):
            async with session.post(
                running.url + "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 2},
            ) as response:
                assert response.status == 200
        # Recorded under the task the model serves, so scoring sees them.
        assert router.tracker.stats("coder", task="code").requests == 3

    serve(router, body)


def test_feedback_teaches_the_learned_router_through_the_gateway(
    llamacpp_replicas: StartReplicas,
) -> None:
    """Two real llama.cpp models behind the gateway with learning on: each
    answer carries x-zeta-request-id, a client judges it with POST
    /v1/feedback, and the router learns which model answers which kind of
    question (one task type holds both, so only the text tells them apart)."""
    geo, lit = llamacpp_replicas([("geo", "small", 2), ("lit", "small", 2)])
    capitals = [f"What is the capital city of country number {i}?" for i in range(20)]
    authors = [f"Who wrote the novel called Book {i} in the library?" for i in range(20)]
    models = [
        text_model("geo", [geo.url], capabilities={"knowledge": 90, "chat": 90}),
        text_model("lit", [lit.url], capabilities={"knowledge": 80, "chat": 80}),
    ]
    router = gateway_router(
        models,
        learning={"enabled": True, "min_outcomes": 20, "explore": 0.1},
        outcome_log={"enabled": False},
    )

    async def ask(session: aiohttp.ClientSession, url: str, prompt: str) -> tuple[str, str]:
        body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 2}
        async with session.post(url + "/v1/chat/completions", json=body) as response:
            assert response.status == 200
            return response.headers["x-zeta-model"], response.headers["x-zeta-request-id"]

    async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
        for i in range(160):
            prompt = (capitals + authors)[(i * 7) % 40]
            model, request_id = await ask(session, running.url, prompt)
            good = (model == "geo") == (prompt in capitals)
            async with session.post(
                running.url + "/v1/feedback", json={"request_id": request_id, "good": good}
            ) as response:
                assert response.status == 200
                assert await response.json() == {"request_id": request_id, "learned": True}
            if i == 0:  # once only, and a clear error otherwise
                async with session.post(
                    running.url + "/v1/feedback", json={"request_id": request_id, "good": good}
                ) as again:
                    assert again.status == 404
                    assert (await again.json())["error"]["code"] == "unknown_request_id"
                async with session.post(
                    running.url + "/v1/feedback", json={"request_id": request_id}
                ) as bad:
                    assert bad.status == 400
        # Exploration sends ~10 % to a random other model on purpose: judge
        # the picks the router chose (the decision record says which).
        chosen = []
        for prompt in capitals[:10] + authors[:10]:
            body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 2}
            headers = {"x-zeta-decision": "1"}
            async with session.post(
                running.url + "/v1/chat/completions", json=body, headers=headers
            ) as response:
                assert response.status == 200
                decision = (await response.json())["zeta"]["decision"]
            if not decision["explored"]:
                chosen.append((decision["model_id"] == "geo") == (prompt in capitals))
        assert len(chosen) >= 10, "exploration took more than half of 20 picks"
        assert sum(chosen) >= len(chosen) - 1, chosen

    serve(router, body)
    assert router.predictor is not None
    # The 160 verdicts, and each answer whose structural check found its
    # text wanting (two random tokens can be blank: "empty").
    failed_checks = sum(b for s, _, _, b in router.core.verdict_counts() if s == "structural")
    assert router.predictor.updates == 160 + failed_checks


def test_keys_rate_limits_and_body_limit(
    llamacpp_replicas: StartReplicas, caplog: pytest.LogCaptureFixture
) -> None:
    (a,) = llamacpp_replicas([("a", "small", 4)])
    router = gateway_router(
        [text_model("coder", [a.url])],
        gateway={
            "max_body_bytes": 4096,
            "access_log": True,
            "api_keys": [
                {"name": "team-a", "sha256": hash_key(KEY_A)},
                {
                    "name": "team-b",
                    "sha256": hash_key(KEY_B),
                    "rate_limit": {"per_second": 0.5, "burst": 3},
                },
            ],
        },
    )
    chat = {"messages": HELLO, "max_tokens": 2}

    async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
        url = running.url + "/v1/chat/completions"
        refusals = []
        for headers in (
            {},
            {"Authorization": "Bearer wrong-key"},
            {"Authorization": f"Basic {KEY_A}"},
            {"Authorization": "Bearer "},
            {"Authorization": f"Bearer {hash_key(KEY_A)}"},  # the digest is not the key
        ):
            async with session.post(url, json=chat, headers=headers) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"] == "Bearer"
                refusals.append(await response.read())
        # Every refusal reads the same: nothing says which part failed.
        assert len(set(refusals)) == 1
        async with session.get(
            running.url + "/metrics", headers={"Authorization": "Bearer nope"}
        ) as response:
            assert response.status == 401
        async with session.post(
            url, json=chat, headers={"Authorization": f"Bearer {KEY_A}"}
        ) as response:
            assert response.status == 200
        # team-b: a burst of 3, then 429 with a Retry-After.
        statuses = []
        for _ in range(5):
            async with session.post(
                url, json=chat, headers={"Authorization": f"Bearer {KEY_B}"}
            ) as response:
                statuses.append(response.status)
                if response.status == 429:
                    assert int(response.headers["Retry-After"]) >= 1
                    assert "team-b" in (await response.json())["error"]["message"]
        assert statuses == [200, 200, 200, 429, 429]
        # team-a has no limit of its own: unaffected.
        async with session.post(
            url, json=chat, headers={"Authorization": f"Bearer {KEY_A}"}
        ) as response:
            assert response.status == 200
        big = {"messages": [{"role": "user", "content": "x" * 8192}]}
        async with session.post(
            url, json=big, headers={"Authorization": f"Bearer {KEY_A}"}
        ) as response:
            assert response.status == 413
            assert (await response.json())["error"]["code"] == "body_too_large"
        samples = await metrics_of(running, session, headers={"Authorization": f"Bearer {KEY_A}"})
        assert value(samples, "zeta_gateway_refused_total", reason="auth") == 6
        assert value(samples, "zeta_gateway_refused_total", reason="rate_limit") == 2
        assert value(samples, "zeta_gateway_refused_total", reason="body_too_large") == 1

    with caplog.at_level(logging.DEBUG):
        serve(router, body)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "POST /v1/chat/completions" in logged  # the access log was on
    for secret in (KEY_A, KEY_B):
        assert secret not in logged


def test_failover_and_client_disconnects(llamacpp_replicas: StartReplicas) -> None:
    a, b = llamacpp_replicas([("a", "small", 4), ("b", "small", 4)])
    router = gateway_router([text_model("coder", [a.url, b.url])])

    async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
        url = running.url + "/v1/chat/completions"

        async def one() -> int:
            async with session.post(url, json={"messages": HELLO, "max_tokens": 2}) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(one() for _ in range(40)))
        assert set(statuses) == {200}
        a.kill()
        statuses = await asyncio.gather(*(one() for _ in range(200)))
        assert set(statuses) == {200}  # the dead replica's failures were retried elsewhere

        # A client that hangs up mid-stream: the attempt ends as cancelled, the slot is freed.
        async with session.post(
            url, json={"messages": HELLO, "max_tokens": 200, "stream": True}
        ) as response:
            assert response.status == 200
            await response.content.readuntil(b"\n\n")
            response.close()
        await wait_until_async(lambda: router.in_flight("coder") == [0, 0])
        cancelled = sum(s.outcomes["cancelled"] for s in router.core.replica_status("coder"))
        assert cancelled == 1

    serve(router, body)


def test_every_replica_down_is_a_clean_gateway_error(llamacpp_replicas: StartReplicas) -> None:
    (a,) = llamacpp_replicas([("a", "small", 2)])
    router = gateway_router([text_model("coder", [a.url])], dispatch={"max_attempts": 2})

    async def body(running: RunningGateway, session: aiohttp.ClientSession) -> None:
        a.kill()
        async with session.post(
            running.url + "/v1/chat/completions", json={"messages": HELLO}
        ) as response:
            assert response.status == 502
            error = (await response.json())["error"]
        assert error["type"] == "upstream_error"
        assert error["code"] == "connect"

    serve(router, body)


def test_serve_shuts_down_cleanly_finishing_requests_and_saving_state(
    llamacpp_replicas: StartReplicas, tmp_path: Path
) -> None:
    (a,) = llamacpp_replicas([("a", "small", 2)])
    proxy = FaultProxy("127.0.0.1", a.port).start()
    try:
        state = tmp_path / "tracker.snapshot"
        config = tmp_path / "zeta.json"
        config.write_text(
            orjson.dumps(
                {
                    "models": [text_model("coder", [proxy.url])],
                    "state_path": str(state),
                    "dispatch": {"health": {"enabled": False}},
                    "gateway": {"port": 0, "shutdown_timeout_s": 10},
                }
            ).decode()
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "zeta_fast.cli", "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert "listening on" in line, line
            url = line.split("listening on ")[1].strip()

            async def refused() -> bool:
                try:
                    async with aiohttp.ClientSession() as fresh, fresh.get(url + "/health"):
                        return False
                except aiohttp.ClientConnectionError:
                    return True

            async def client() -> None:
                async with aiohttp.ClientSession() as session:
                    for _ in range(3):
                        async with session.post(
                            url + "/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2}
                        ) as response:
                            assert response.status == 200
                    proxy.set_fault(delay_ms=1500)
                    seen = proxy.requests_seen
                    slow = asyncio.ensure_future(
                        session.post(
                            url + "/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2}
                        )
                    )
                    # The slow request is at the replica, held by the delay: in flight.
                    await wait_until_async(lambda: proxy.requests_seen > seen)
                    process.send_signal(signal.SIGTERM)
                    # No longer accepting...
                    await wait_until_async(refused, interval_s=0.05)
                    assert not slow.done()
                    # ...but the request in flight is answered.
                    response = await slow
                    assert response.status == 200
                    assert (await response.json())["object"] == "chat.completion"

            asyncio.run(client())
            assert process.wait(timeout=20) == 0
            rest = process.stdout.read()
            assert "stopped" in rest
        finally:
            if process.poll() is None:
                process.kill()
    finally:
        proxy.stop()
    # The learned state was saved: a new tracker starts with all four outcomes.
    restored = PerformanceTracker(snapshot_path=state)
    try:
        assert restored.stats("coder").lifetime_requests == 4
    finally:
        restored.close()


def test_hash_key_command(capsys: pytest.CaptureFixture[str]) -> None:
    from zeta_fast.cli import main

    assert main(["hash-key", KEY_A]) == 0
    assert capsys.readouterr().out.strip() == hash_key(KEY_A)
    assert main(["hash-key", ""]) == 2
