"""The gateway through the official client SDKs, as users drive it: openai
(sync and async: Chat Completions, Completions, Embeddings, Models, the
Responses API), anthropic (Messages), LiteLLM and LangChain as clients, over
real HTTP to one gateway in front of real llama.cpp replicas.

One gateway serves the whole module (set up once: ~2 s): two chat models,
``fast`` (2 replicas of the small model) and ``deep`` (1 replica of the large
one), and ``embedder``. It runs on its own event loop in a thread, so the
synchronous clients call it from the test's thread like any program would.
The replicas' llama.cpp aliases (``s0``, ``l0``...) differ from the router's
model ids on purpose: an answer must name the model the router chose.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import anthropic
import httpx2
import litellm
import openai
import pytest
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from tests.llamacpp_fixtures import EMBEDDING_DIM, TinyModels
from tests.test_gateway import gateway_router, text_model
from zeta_fast.gateway import RunningGateway, hash_key, start
from zeta_fast.local import LlamaCppReplica, start_replicas
from zeta_fast.router import Router

KEY = "zk-sdk-user-1234567890"
# Keys with a bucket of one request a second, one per SDK's rate-limit test.
OPENAI_LIMITED = "zk-sdk-openai-limited-1234567890"
ANTHROPIC_LIMITED = "zk-sdk-anthropic-limited-1234567890"
HELLO = [{"role": "user", "content": "Say hello to the team."}]
#: Each replica serves 2 slots of its 2048-token context: 1024 a request.
TOO_LONG = "x " * 1500  # ~3000 tokens (the tiny models' tokens are characters)
MAX_BODY_BYTES = 32 * 1024

#: Configured model -> its replicas' ids.
REPLICAS = {"fast": ("fast-0", "fast-1"), "deep": ("deep-0",), "embedder": ("embedder-0",)}
CHAT_MODELS = ("fast", "deep")
#: The model names llama.cpp itself reports: never what a client is told.
ALIASES = ("s0", "s1", "l0", "e0")


@contextlib.contextmanager
def gateway_in_thread(router: Router) -> Iterator[str]:
    """Serves ``router`` on a free port from an event loop in a thread; yields its URL."""
    loop = asyncio.new_event_loop()
    started: concurrent.futures.Future[RunningGateway] = concurrent.futures.Future()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            started.set_result(loop.run_until_complete(start(router, port=0)))
        except BaseException as exc:
            started.set_exception(exc)
            return
        loop.run_forever()

    thread = threading.Thread(target=serve, name="sdk-gateway", daemon=True)
    thread.start()
    running = started.result(timeout=60)
    try:
        yield running.url
    finally:
        asyncio.run_coroutine_threadsafe(running.stop(), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


@pytest.fixture(scope="module")
def gateway(tiny_models: TinyModels) -> Iterator[str]:
    """The gateway's base URL (``http://127.0.0.1:PORT``), for the whole module."""
    replicas = start_replicas(
        [
            LlamaCppReplica(tiny_models.small, alias="s0", parallel=2),
            LlamaCppReplica(tiny_models.small, alias="s1", parallel=2),
            LlamaCppReplica(tiny_models.large, alias="l0", parallel=2),
            LlamaCppReplica(tiny_models.embedding, alias="e0", parallel=2, embedding=True),
        ]
    )
    try:
        s0, s1, l0, e0 = replicas
        limited = {"per_second": 1.0, "burst": 1}
        router = gateway_router(
            [
                text_model("fast", [s0.url, s1.url]),
                text_model(
                    "deep",
                    [l0.url],
                    capabilities={"chat": 70, "code": 95, "reasoning": 90, "knowledge": 80},
                ),
                {
                    "id": "embedder",
                    "capabilities": {"embedding": 90},
                    "replicas": [{"id": "embedder-0", "url": e0.url}],
                },
            ],
            gateway={
                "max_body_bytes": MAX_BODY_BYTES,
                "api_keys": [
                    {"name": "user", "sha256": hash_key(KEY)},
                    {
                        "name": "openai-limited",
                        "sha256": hash_key(OPENAI_LIMITED),
                        "rate_limit": limited,
                    },
                    {
                        "name": "anthropic-limited",
                        "sha256": hash_key(ANTHROPIC_LIMITED),
                        "rate_limit": limited,
                    },
                ],
            },
        )
        with gateway_in_thread(router) as url:
            yield url
    finally:
        for replica in replicas:
            replica.stop()


@pytest.fixture(scope="module")
def oai(gateway: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway + "/v1", api_key=KEY, max_retries=0, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def claude(gateway: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway, api_key=KEY, max_retries=0, timeout=60) as client:
        yield client


def routed(headers: Mapping[str, str], among: tuple[str, ...] = CHAT_MODELS) -> str:
    """Checks the decision headers; returns the model they name."""
    model = headers["x-zeta-model"]
    assert model in among, model
    assert headers["x-zeta-replica"] in REPLICAS[model], headers["x-zeta-replica"]
    assert 0.0 <= float(headers["x-zeta-overhead-ms"]) < 250.0
    return model


def recorder() -> tuple[list[tuple[int, str | None]], dict[str, Any]]:
    """An httpx2 response hook listing (status, Retry-After) of every attempt a client makes."""
    seen: list[tuple[int, str | None]] = []

    def hook(response: httpx2.Response) -> None:
        seen.append((response.status_code, response.headers.get("retry-after")))

    return seen, {"response": [hook]}


# -- openai: Chat Completions, Completions, Embeddings, Models ------------------------------


def test_openai_chat_completion(oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(model="auto", messages=HELLO, max_tokens=4)
    assert raw.status_code == 200
    routed(raw.headers)
    completion = raw.parse()
    assert completion.object == "chat.completion"
    (choice,) = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.total_tokens == 4 + completion.usage.prompt_tokens

    # A named model is the one that answers.
    raw = oai.chat.completions.with_raw_response.create(model="deep", messages=HELLO, max_tokens=2)
    assert routed(raw.headers) == "deep"
    assert raw.headers["x-zeta-replica"] == "deep-0"
    assert raw.parse().usage.completion_tokens == 2


def test_openai_chat_stream_with_usage(oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="auto",
        messages=HELLO,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["content-type"] == "text/event-stream"
    routed(raw.headers)
    chunks = list(raw.parse())
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length"
    # include_usage: one last chunk with the usage and no choices.
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    # One character a token: the deltas are the tokens the usage counts.
    assert usage.completion_tokens == len(deltas) == 5
    assert len("".join(deltas)) == 5
    assert usage.prompt_tokens > 0


def test_openai_completions(oai: openai.OpenAI) -> None:
    raw = oai.completions.with_raw_response.create(model="fast", prompt="Once upon", max_tokens=3)
    assert routed(raw.headers) == "fast"
    completion = raw.parse()
    assert completion.object == "text_completion"
    (choice,) = completion.choices
    assert len(choice.text) == 3
    assert choice.finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


def test_openai_embeddings(oai: openai.OpenAI) -> None:
    # The SDK asks for base64 unless told otherwise and decodes it: both ways.
    for encoding in (openai.omit, "float"):
        raw = oai.embeddings.with_raw_response.create(
            model="auto", input=["one", "two", "three"], encoding_format=encoding
        )
        assert routed(raw.headers, among=("embedder",)) == "embedder"
        answer = raw.parse()
        assert [d.index for d in answer.data] == [0, 1, 2]
        assert [len(d.embedding) for d in answer.data] == [EMBEDDING_DIM] * 3
        assert all(isinstance(x, float) for x in answer.data[0].embedding)
        assert answer.data[0].embedding != answer.data[1].embedding
        assert answer.usage.prompt_tokens > 0
    single = oai.embeddings.create(model="embedder", input="four")
    assert len(single.data) == 1
    assert len(single.data[0].embedding) == EMBEDDING_DIM


def test_openai_models_list_and_retrieve(oai: openai.OpenAI) -> None:
    listed = [m.id for m in oai.models.list()]
    assert listed == ["auto", "fast", "deep", "embedder"]
    for name in ("fast", "deep", "embedder"):
        model = oai.models.retrieve(name)
        assert model.id == name
        assert model.object == "model"
        assert model.owned_by == "zeta_fast"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("gpt-9")


def test_openai_request_parameters_pass_through(oai: openai.OpenAI) -> None:
    # n and logprobs: two choices, each with per-token log-probabilities.
    answer = oai.chat.completions.create(
        model="fast", messages=HELLO, max_tokens=3, n=2, logprobs=True, top_logprobs=2
    )
    assert [c.index for c in answer.choices] == [0, 1]
    for choice in answer.choices:
        assert choice.logprobs is not None
        tokens = choice.logprobs.content
        assert tokens is not None
        assert len(tokens) == 3
        assert "".join(t.token for t in tokens) == choice.message.content
        assert all(len(t.top_logprobs) == 2 and t.logprob <= 0.0 for t in tokens)

    # stop: the tiny models favour "a", so a stop at "a" ends well before 32 tokens.
    stopped = oai.chat.completions.create(model="fast", messages=HELLO, max_tokens=32, stop=["a"])
    assert stopped.choices[0].finish_reason == "stop"
    assert "a" not in (stopped.choices[0].message.content or "")
    assert stopped.usage is not None
    assert stopped.usage.completion_tokens < 32

    # seed: the same seed samples the same text (on either replica), another seed another.
    def sample(seed: int) -> str:
        answer = oai.chat.completions.create(
            model="fast", messages=HELLO, max_tokens=12, seed=seed, temperature=1.0
        )
        return answer.choices[0].message.content or ""

    first = sample(11)
    assert len(first) == 12
    assert sample(11) == first
    assert sample(11) == first
    assert sample(12) != first

    # tools: a whole tool-calling turn (an assistant tool call without
    # content, then the tool's result) is accepted, routed and answered.
    tools: list[Any] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    question = {"role": "user", "content": "What is the weather in Paris?"}
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    turn: list[Any] = [
        question,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
    ]
    alone = oai.chat.completions.create(model="fast", messages=[question], max_tokens=2)
    raw = oai.chat.completions.with_raw_response.create(
        model="auto", messages=turn, tools=tools, tool_choice="auto", max_tokens=4
    )
    routed(raw.headers)
    answered = raw.parse()
    assert answered.choices[0].message.content
    assert answered.usage is not None
    assert alone.usage is not None
    # The tool call and its result reached the model's prompt.
    assert answered.usage.prompt_tokens > alone.usage.prompt_tokens + 10


def test_openai_decision_and_request_id_headers(oai: openai.OpenAI) -> None:
    ids = []
    for model in ("fast", "deep"):
        raw = oai.chat.completions.with_raw_response.create(
            model=model, messages=HELLO, max_tokens=2
        )
        assert routed(raw.headers) == model
        request_id = raw.headers.get("x-request-id")
        assert request_id, dict(raw.headers)
        # The SDK hands it over as the answer's _request_id.
        assert raw.parse()._request_id == request_id
        ids.append(request_id)
    assert ids[0] != ids[1]


def test_openai_answers_name_the_router_model(oai: openai.OpenAI) -> None:
    """``model`` in an answer is the router's model id (the one in
    x-zeta-model), not the llama.cpp alias of the replica that served it."""
    raw = oai.chat.completions.with_raw_response.create(model="auto", messages=HELLO, max_tokens=2)
    assert raw.parse().model == routed(raw.headers)

    raw = oai.chat.completions.with_raw_response.create(
        model="deep", messages=HELLO, max_tokens=3, stream=True
    )
    assert routed(raw.headers) == "deep"
    assert {chunk.model for chunk in raw.parse()} == {"deep"}

    raw = oai.completions.with_raw_response.create(model="auto", prompt="Once", max_tokens=2)
    assert raw.parse().model == routed(raw.headers)

    raw = oai.embeddings.with_raw_response.create(model="auto", input="one")
    assert raw.parse().model == routed(raw.headers, among=("embedder",))


def test_openai_async_client(gateway: str) -> None:
    async def main() -> None:
        async with openai.AsyncOpenAI(
            base_url=gateway + "/v1", api_key=KEY, max_retries=0, timeout=60
        ) as client:
            chat, stream, completion, embedded = await asyncio.gather(
                client.chat.completions.create(model="auto", messages=HELLO, max_tokens=4),
                client.chat.completions.create(
                    model="fast",
                    messages=HELLO,
                    max_tokens=4,
                    stream=True,
                    stream_options={"include_usage": True},
                ),
                client.completions.create(model="deep", prompt="Once upon", max_tokens=3),
                client.embeddings.create(model="auto", input=["one", "two"]),
            )
            assert chat.choices[0].message.content
            assert chat.usage is not None
            assert chat.usage.completion_tokens == 4
            chunks = [chunk async for chunk in stream]
            deltas = [c.choices[0].delta.content for c in chunks if c.choices]
            text = "".join(d for d in deltas if d)
            assert chunks[-1].usage is not None
            assert chunks[-1].usage.completion_tokens == len(text) == 4
            assert len(completion.choices[0].text) == 3
            assert [len(d.embedding) for d in embedded.data] == [EMBEDDING_DIM] * 2

            raw = await client.chat.completions.with_raw_response.create(
                model="fast", messages=HELLO, max_tokens=2
            )
            assert routed(raw.headers) == "fast"
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(model="gpt-9", messages=HELLO)

    asyncio.run(main())


# -- openai: errors ---------------------------------------------------------------------------


def test_openai_unknown_model_is_not_found(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="gpt-9", messages=HELLO, max_tokens=2)
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    assert "gpt-9" in caught.value.message


def test_openai_bad_key_is_an_authentication_error(gateway: str) -> None:
    with openai.OpenAI(base_url=gateway + "/v1", api_key="zk-wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            client.chat.completions.create(model="auto", messages=HELLO, max_tokens=2)
        assert caught.value.status_code == 401
        assert caught.value.type == "authentication_error"
        assert caught.value.response.headers["www-authenticate"] == "Bearer"
        with pytest.raises(openai.AuthenticationError):
            client.models.list()


def test_openai_rate_limit_honours_retry_after(gateway: str) -> None:
    url = gateway + "/v1"
    with openai.OpenAI(base_url=url, api_key=OPENAI_LIMITED, max_retries=0) as once:
        # A bucket of one: the second request in a row is refused.
        assert once.chat.completions.create(model="auto", messages=HELLO, max_tokens=2).choices
        with pytest.raises(openai.RateLimitError) as caught:
            once.chat.completions.create(model="auto", messages=HELLO, max_tokens=2)
    refused = caught.value
    assert refused.status_code == 429
    assert refused.type == "rate_limit_error"
    assert "openai-limited" in refused.message
    assert 1 <= int(refused.response.headers["retry-after"]) <= 60

    # With retries on, the SDK waits what Retry-After says, then gets through:
    # one refusal, one answer (its own shorter back-off would be refused again).
    seen, hooks = recorder()
    with (
        httpx2.Client(event_hooks=hooks) as http,
        openai.OpenAI(base_url=url, api_key=OPENAI_LIMITED, max_retries=2, http_client=http) as sdk,
    ):
        began = time.monotonic()
        answer = sdk.chat.completions.create(model="auto", messages=HELLO, max_tokens=2)
        waited = time.monotonic() - began
    assert answer.choices[0].message.content
    assert [status for status, _ in seen] == [429, 200]
    retry_after = seen[0][1]
    assert retry_after is not None
    assert waited >= float(retry_after) - 0.05


def test_openai_context_overflow_is_a_bad_request(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(
            model="fast", messages=[{"role": "user", "content": TOO_LONG}], max_tokens=2
        )
    assert caught.value.status_code == 400
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.type == "invalid_request_error"


def test_openai_body_over_the_limit_is_413(oai: openai.OpenAI) -> None:
    big = [{"role": "user", "content": "y" * (MAX_BODY_BYTES + 1024)}]
    with pytest.raises(openai.APIStatusError) as caught:
        oai.chat.completions.create(model="auto", messages=big, max_tokens=2)
    # The SDK has no class of its own for 413: the base APIStatusError.
    assert type(caught.value) is openai.APIStatusError
    assert caught.value.status_code == 413
    assert caught.value.code == "body_too_large"


# -- openai: the Responses API ----------------------------------------------------------------


def test_openai_responses(oai: openai.OpenAI) -> None:
    raw = oai.responses.with_raw_response.create(
        model="auto", input="Say hello to the team.", max_output_tokens=4
    )
    assert raw.status_code == 200
    model = routed(raw.headers)
    response = raw.parse()
    assert response.object == "response"
    assert response.status == "completed"
    assert len(response.output_text) == 4
    assert response.usage is not None
    assert response.usage.output_tokens == 4
    assert response.usage.input_tokens > 0
    assert response.model == model


def test_openai_responses_stream(oai: openai.OpenAI) -> None:
    raw = oai.responses.with_raw_response.create(
        model="fast", input="Say hello to the team.", max_output_tokens=5, stream=True
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert routed(raw.headers) == "fast"
    events = list(raw.parse())
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    completed = events[-1].response
    assert completed.status == "completed"
    assert completed.output_text == "".join(deltas)
    assert completed.usage is not None
    assert completed.usage.output_tokens == len(deltas) == 5
    assert completed.model == "fast"


# -- anthropic: Messages ----------------------------------------------------------------------


def test_anthropic_messages(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(model="auto", max_tokens=4, messages=HELLO)
    assert raw.status_code == 200
    model = routed(raw.headers)
    message = raw.parse()
    assert message.type == "message"
    assert message.role == "assistant"
    (block,) = message.content
    assert block.type == "text"
    assert len(block.text) == 4
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 4
    assert message.usage.input_tokens > 0
    assert message.model == model


def test_anthropic_messages_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="fast", max_tokens=5, messages=HELLO) as stream:
        assert routed(stream.response.headers) == "fast"
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert final.content[0].type == "text"
    assert final.content[0].text == "".join(pieces)
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == len(pieces) == 5
    assert final.model == "fast"


def test_anthropic_count_tokens(claude: anthropic.Anthropic) -> None:
    counted = claude.messages.count_tokens(model="fast", messages=HELLO)
    assert counted.input_tokens > 0
    message = claude.messages.create(model="fast", max_tokens=2, messages=HELLO)
    usage = message.usage
    read = (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    assert counted.input_tokens == usage.input_tokens + read
    longer = claude.messages.count_tokens(
        model="fast", messages=[{"role": "user", "content": "Say hello to the whole team."}]
    )
    assert longer.input_tokens == counted.input_tokens + len(" whole")


def anthropic_error(exc: anthropic.APIStatusError) -> str:
    """The error's type, checked to be in Anthropic's shape."""
    body = exc.body
    assert isinstance(body, dict), body
    assert body["type"] == "error", body
    assert body["error"]["message"]
    return str(body["error"]["type"])


def test_anthropic_errors(gateway: str, claude: anthropic.Anthropic) -> None:
    with (
        anthropic.Anthropic(base_url=gateway, api_key="zk-wrong", max_retries=0) as stranger,
        pytest.raises(anthropic.AuthenticationError) as auth,
    ):
        stranger.messages.create(model="auto", max_tokens=2, messages=HELLO)
    assert auth.value.status_code == 401
    assert anthropic_error(auth.value) == "authentication_error"

    with pytest.raises(anthropic.NotFoundError) as unknown:
        claude.messages.create(model="claude-9", max_tokens=2, messages=HELLO)
    assert unknown.value.status_code == 404
    assert anthropic_error(unknown.value) == "not_found_error"
    assert "claude-9" in unknown.value.message

    with pytest.raises(anthropic.BadRequestError) as overflow:
        claude.messages.create(
            model="fast", max_tokens=2, messages=[{"role": "user", "content": TOO_LONG}]
        )
    assert overflow.value.status_code == 400
    assert anthropic_error(overflow.value) == "invalid_request_error"


def test_anthropic_rate_limit_honours_retry_after(gateway: str) -> None:
    with anthropic.Anthropic(base_url=gateway, api_key=ANTHROPIC_LIMITED, max_retries=0) as once:
        # A bucket of one: the second request in a row is refused.
        assert once.messages.create(model="auto", max_tokens=2, messages=HELLO).content
        with pytest.raises(anthropic.RateLimitError) as caught:
            once.messages.create(model="auto", max_tokens=2, messages=HELLO)
    assert caught.value.status_code == 429
    assert anthropic_error(caught.value) == "rate_limit_error"
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60

    seen, hooks = recorder()
    with (
        httpx2.Client(event_hooks=hooks) as http,
        anthropic.Anthropic(
            base_url=gateway, api_key=ANTHROPIC_LIMITED, max_retries=2, http_client=http
        ) as sdk,
    ):
        began = time.monotonic()
        message = sdk.messages.create(model="auto", max_tokens=2, messages=HELLO)
        waited = time.monotonic() - began
    assert message.usage.output_tokens == 2
    assert [status for status, _ in seen] == [429, 200]
    retry_after = seen[0][1]
    assert retry_after is not None
    assert waited >= float(retry_after) - 0.05


# -- LiteLLM as a client ----------------------------------------------------------------------


def litellm_headers(response: Any) -> dict[str, str]:
    """The gateway's headers, as LiteLLM passes them on (``llm_provider-`` prefixed)."""
    extra = response._hidden_params["additional_headers"]
    return {k.removeprefix("llm_provider-"): v for k, v in extra.items()}


def test_litellm_completion(gateway: str) -> None:
    common: dict[str, Any] = {
        "model": "openai/auto",
        "api_base": gateway + "/v1",
        "api_key": KEY,
        "messages": HELLO,
        "max_tokens": 4,
    }
    response = litellm.completion(**common)
    routed(litellm_headers(response))
    assert response.choices[0].message.content
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 4

    chunks = list(litellm.completion(**common, stream=True, stream_options={"include_usage": True}))
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    usages = [c.usage for c in chunks if getattr(c, "usage", None) is not None]
    assert usages, chunks
    assert usages[-1].completion_tokens == len(deltas) == 4

    async def ask() -> Any:
        return await litellm.acompletion(**{**common, "model": "openai/deep"})

    answer = asyncio.run(ask())
    assert routed(litellm_headers(answer)) == "deep"
    assert answer.choices[0].message.content
    assert answer.usage.completion_tokens == 4


def test_litellm_reports_the_router_model(gateway: str) -> None:
    response = litellm.completion(
        model="openai/auto",
        api_base=gateway + "/v1",
        api_key=KEY,
        messages=HELLO,
        max_tokens=2,
    )
    assert response.model == routed(litellm_headers(response))
    assert response.model not in ALIASES


# -- LangChain -----------------------------------------------------------------------------


def chat_openai(gateway: str, max_tokens: int = 4) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=gateway + "/v1",
        api_key=KEY,
        model="auto",
        max_tokens=max_tokens,
        max_retries=0,
        include_response_headers=True,
        stream_usage=True,
    )


def test_langchain_chat_openai(gateway: str) -> None:
    llm = chat_openai(gateway)
    message = llm.invoke("Say hello to the team.")
    routed(message.response_metadata["headers"])
    assert isinstance(message.content, str)
    assert message.content
    assert message.response_metadata["finish_reason"] == "length"
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] == 4

    chunks = list(llm.stream("Say hello to the team."))
    pieces = [c.content for c in chunks if c.content]
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    routed(whole.response_metadata["headers"])
    assert whole.content == "".join(str(p) for p in pieces)
    assert whole.usage_metadata is not None
    assert whole.usage_metadata["output_tokens"] == len(pieces) == 4

    later = asyncio.run(llm.ainvoke("Say hello to the team."))
    routed(later.response_metadata["headers"])
    assert later.content
    assert later.usage_metadata is not None
    assert later.usage_metadata["output_tokens"] == 4


def test_langchain_reports_the_router_model(gateway: str) -> None:
    llm = chat_openai(gateway, max_tokens=2)
    message = llm.invoke("Say hello.")
    assert message.response_metadata["model_name"] == routed(message.response_metadata["headers"])
    whole = None
    for chunk in llm.stream("Say hello."):
        whole = chunk if whole is None else whole + chunk
    assert whole is not None
    assert whole.response_metadata["model_name"] == routed(whole.response_metadata["headers"])


def test_langchain_embeddings(gateway: str) -> None:
    embeddings = OpenAIEmbeddings(
        base_url=gateway + "/v1",
        api_key=KEY,
        model="auto",
        check_embedding_ctx_length=False,
        max_retries=0,
    )
    vectors = embeddings.embed_documents(["one", "two", "three"])
    assert [len(v) for v in vectors] == [EMBEDDING_DIM] * 3
    assert vectors[0] != vectors[1]
    query = embeddings.embed_query("one")
    assert query == pytest.approx(vectors[0], abs=1e-5)
