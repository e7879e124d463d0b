"""The backend layer on its own: flavours against the servers' documented
responses (vLLM cannot run on these machines, so its specifics are tested
against fixtures of its documented API shape), and the client's error
mapping and stream handling against a small aiohttp server: an extra layer
under the tests with real llama.cpp servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from zeta_fast.backends import (
    FLAVORS,
    BackendClient,
    BackendError,
    BackendStatusError,
    BackendTimeout,
    ContextLengthExceeded,
    RateLimited,
    StreamInterrupted,
    Timeouts,
    new_session,
    split_events,
)

# vLLM's documented shapes (OpenAI-compatible server, /metrics with labels).
VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen-14b"} 7.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="qwen-14b"} 3.0
vllm:num_requests_waiting{engine="1",model_name="qwen-14b"} 2.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="qwen-14b"} 0.42
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="stop",model_name="qwen-14b"} 120.0
"""
VLLM_OLD_METRICS = """\
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 1.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.9
"""
VLLM_CONTEXT_ERROR = (
    b'{"object":"error","message":"This model\'s maximum context length is 4096 tokens. '
    b'However, you requested 5000 tokens (4000 in the messages, 1000 in the completion).",'
    b'"type":"BadRequestError","param":null,"code":400}'
)
VLLM_ERROR = (
    b'{"error":{"message":"The model `x` does not exist.","type":"NotFoundError",'
    b'"param":null,"code":404}}'
)
LLAMACPP_METRICS = """\
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 4
"""
LLAMACPP_CONTEXT_ERROR = (
    b'{"error":{"code":400,"message":"the request exceeds the available context size, '
    b'try increasing it","type":"exceed_context_size_error","n_prompt_tokens":300,'
    b'"n_ctx":128}}'
)


def test_vllm_metrics_sum_over_labels_and_read_either_kv_name() -> None:
    vllm = FLAVORS["vllm"]
    load = vllm.engine_load(VLLM_METRICS)
    assert load is not None
    assert (load.running, load.waiting, load.kv_usage) == (7.0, 5.0, 0.42)
    old = vllm.engine_load(VLLM_OLD_METRICS)
    assert old is not None
    assert (old.waiting, old.kv_usage) == (1.0, 0.9)
    assert vllm.engine_load("# nothing here\n") is None


def test_llamacpp_metrics_and_health() -> None:
    llamacpp = FLAVORS["llamacpp"]
    load = llamacpp.engine_load(LLAMACPP_METRICS)
    assert load is not None
    assert (load.running, load.waiting) == (1.0, 4.0)
    assert llamacpp.healthy(200, b'{"status":"ok"}')
    assert not llamacpp.healthy(503, b'{"error":{"code":503,"message":"Loading model"}}')
    assert not llamacpp.healthy(200, b"not json")
    # vLLM's /health is an empty 200.
    assert FLAVORS["vllm"].healthy(200, b"")
    assert not FLAVORS["vllm"].healthy(503, b"")


@pytest.mark.parametrize(
    ("flavor", "status", "body", "headers", "kind", "error_type"),
    [
        ("vllm", 400, VLLM_CONTEXT_ERROR, {}, ContextLengthExceeded, "BadRequestError"),
        ("vllm", 404, VLLM_ERROR, {}, BackendStatusError, "NotFoundError"),
        ("llamacpp", 400, LLAMACPP_CONTEXT_ERROR, {}, ContextLengthExceeded, None),
        ("llamacpp", 429, b'{"error":{"message":"busy"}}', {"Retry-After": "2"}, RateLimited, None),
        ("openai", 500, b"plain text failure", {}, BackendStatusError, None),
    ],
)
def test_error_bodies_map_to_the_hierarchy(
    flavor: str,
    status: int,
    body: bytes,
    headers: dict[str, str],
    kind: type[BackendStatusError],
    error_type: str | None,
) -> None:
    error = FLAVORS[flavor].error(status, body, headers, "http://replica")
    assert type(error) is kind
    assert error.status == status
    assert error.message
    if error_type is not None:
        assert error.error_type == error_type
    if status == 429:
        assert error.retry_after_s == 2.0
        assert error.retryable
    assert error.retryable == (status >= 500 or status == 429 or kind is ContextLengthExceeded)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def _run(handler: Handler, body: Callable[[BackendClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        runner, url = await _serve(handler)
        session = new_session()
        try:
            client = BackendClient(
                session,
                url,
                flavor="vllm",
                timeouts=Timeouts(connect_s=1, first_byte_s=0.2, total_s=2),
            )
            return await body(client)
        finally:
            await session.close()
            await runner.cleanup()

    return asyncio.run(main())


async def _collect(client: BackendClient) -> list[bytes]:
    response = await client.open_stream("/v1/chat/completions", b"{}")
    return [event async for event in client.events(response)]


def _sse(events: list[bytes], delay_s: float = 0.0) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
            if delay_s:
                await asyncio.sleep(delay_s)
        return response

    return handler


def test_a_vllm_error_event_inside_a_200_stream_is_an_interruption() -> None:
    handler = _sse(
        [
            b'data: {"choices":[{"delta":{"content":"he"}}]}\n\n',
            b'data: {"error":{"message":"engine died","type":"InternalServerError",'
            b'"code":500}}\n\n',
        ]
    )
    with pytest.raises(StreamInterrupted, match="error mid-stream"):
        _run(handler, _collect)


def test_a_stream_without_done_is_an_interruption_and_a_full_one_is_not() -> None:
    chunk = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'
    with pytest.raises(StreamInterrupted, match="ended before its last event"):
        _run(_sse([chunk, chunk]), _collect)
    # Events split across TCP writes are put back together; whatever whole
    # events one read brings come as one item, nothing held back.
    batches = _run(_sse([chunk[:10], chunk[10:] + chunk, b"data: [DONE]\n\n"]), _collect)
    assert all(batch.endswith(b"\n\n") for batch in batches)
    events = [event for batch in batches for event in split_events(batch)]
    assert events == [chunk, chunk, b"data: [DONE]\n\n"]


def test_a_silent_stream_times_out_between_chunks() -> None:
    chunk = b'data: {"choices":[]}\n\n'
    with pytest.raises(StreamInterrupted) as caught:
        _run(_sse([chunk, chunk], delay_s=0.5), _collect)
    assert isinstance(caught.value.__cause__, TimeoutError | asyncio.TimeoutError)


def test_no_first_byte_in_time_is_a_first_byte_timeout() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(1.0)
        return web.json_response({})

    async def call(client: BackendClient) -> Any:
        return await client.post("/v1/chat/completions", b"{}")

    with pytest.raises(BackendTimeout) as caught:
        _run(slow, call)
    assert caught.value.phase == "first_byte"
    assert caught.value.__cause__ is not None


def test_models_and_an_http_error_before_a_stream() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/models":
            return web.json_response(
                {"object": "list", "data": [{"id": "qwen-14b", "owned_by": "vllm"}]}
            )
        return web.Response(status=503, body=b'{"error":{"message":"overloaded","code":503}}')

    async def body(client: BackendClient) -> tuple[list[str], BaseException | None]:
        models = await client.models()
        try:
            await client.open_stream("/v1/chat/completions", b"{}")
        except BackendStatusError as exc:
            return models, exc
        return models, None

    models, error = _run(handler, body)
    assert models == ["qwen-14b"]
    assert isinstance(error, BackendStatusError)
    assert error.status == 503
    assert error.retryable


def test_a_rare_close_is_retried_on_a_new_connection_and_frequent_ones_fail() -> None:
    """The keep-alive race: the server drops a pooled connection without
    answering (as servers do with idle ones); the request goes again, once,
    on a new connection. A replica that closes connections without an
    answer often is dying or overloaded: once such closes pass 5 % of its
    recent requests there is no silent second try, so they count against it."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    async def scenario(answers_per_connection: int, requests: int) -> tuple[int, list[str]]:
        connections = 0

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            answered = 0
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    await reader.readexactly(length)
                    if answered >= answers_per_connection:
                        return  # closes without a word
                    answered += 1
                    writer.write(answer)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        session = new_session()
        client = BackendClient(session, f"http://127.0.0.1:{port}")
        outcomes = []
        try:
            for _ in range(requests):
                try:
                    response = await client.post("/v1/chat/completions", b"{}")
                    outcomes.append(f"ok {response.status}")
                except BackendError as exc:
                    outcomes.append(exc.kind)
        finally:
            await session.close()
            server.close()
            await server.wait_closed()
        return connections, outcomes

    # Every 50th connection answers once, then drops the next request on it:
    # that request goes again on a new connection (1 in 50 stays under 5 %).
    connections, outcomes = asyncio.run(scenario(answers_per_connection=50, requests=120))
    assert outcomes == ["ok 200"] * 120
    assert connections == 3
    # Every connection dropped: the first request is tried twice (as a race
    # would be), then the closes are too frequent to forgive and each
    # request fails after one try.
    connections, outcomes = asyncio.run(scenario(answers_per_connection=0, requests=6))
    assert outcomes == ["connect"] * 6
    assert connections == 7
