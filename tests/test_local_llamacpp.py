"""Real llama.cpp servers on tiny generated models: the model's promises and the replica's faults.

No mocks: every test talks HTTP to a llama.cpp server process started by ``zeta_fast.local``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.llamacpp_fixtures import EMBEDDING_DIM, StartReplicas, TinyModels
from zeta_fast.local import (
    LlamaCppReplica,
    ensure_tiny_model,
    start_replicas,
    tiny_model_filename,
    write_tiny_model,
)
from zeta_fast.local.fault_proxy import FaultProxy

# Generous for a loaded CI machine; a tiny-model request takes a few milliseconds.
TIMEOUT_S = 10.0
CHAT = [{"role": "user", "content": "Say something."}]
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
}
# Measured on the structured model: constrained answers took at most ~70 tokens over 300 seeds
# (median ~10 for json_object, ~25 for the schema), so 128 leaves the grammar room to finish.
STRUCTURED_MAX_TOKENS = 128


def _post(url: str, body: dict[str, Any], *, timeout_s: float = TIMEOUT_S) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.load(response)


def _get_text(url: str, *, timeout_s: float = TIMEOUT_S) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return str(response.read().decode())


def _sse_events(url: str, body: dict[str, Any]) -> list[str]:
    """The ``data:`` payloads of a streamed response, in order."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        return [
            line[len("data: ") :]
            for raw in response
            if (line := raw.decode().strip()).startswith("data: ")
        ]


def _process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie awaiting its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LlamaCppReplica]]:
    """A chat and an embedding replica shared by the read-only tests of this module."""
    directory = tmp_path_factory.mktemp("shared-models")
    chat = LlamaCppReplica(ensure_tiny_model(directory), alias="tiny-chat")
    embed = LlamaCppReplica(
        ensure_tiny_model(directory, kind="embedding"), alias="tiny-embed", embedding=True
    )
    start_replicas([chat, embed])
    yield {"chat": chat, "embedding": embed}
    chat.stop()
    embed.stop()


@pytest.fixture(scope="module")
def structured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppReplica]:
    """A replica of the structured-output chat model, shared by this module's grammar tests."""
    model = ensure_tiny_model(tmp_path_factory.mktemp("structured-model"), structured_output=True)
    replica = LlamaCppReplica(model, alias="tiny-json").start()
    yield replica
    replica.stop()


def _structured_chat(
    server: LlamaCppReplica | FaultProxy, response_format: dict[str, Any], seed: int
) -> Any:
    # A fixed seed makes each answer repeatable; several seeds cover different JSON shapes.
    return _post(
        f"{server.url}/v1/chat/completions",
        {
            "messages": CHAT,
            "max_tokens": STRUCTURED_MAX_TOKENS,
            "response_format": response_format,
            "seed": seed,
        },
    )


# -- the generated model -----------------------------------------------------------------------


def test_tiny_model_is_deterministic_per_seed(tmp_path: Path) -> None:
    first = write_tiny_model(tmp_path / "a.gguf", seed=3).read_bytes()
    again = write_tiny_model(tmp_path / "b.gguf", seed=3).read_bytes()
    other = write_tiny_model(tmp_path / "c.gguf", seed=4).read_bytes()
    assert first == again
    assert first != other


def test_ensure_tiny_model_caches_by_parameters(tmp_path: Path) -> None:
    path = ensure_tiny_model(tmp_path, layers=3, dim=32)
    assert path.name == tiny_model_filename(kind="chat", layers=3, dim=32)
    mtime = path.stat().st_mtime_ns
    assert ensure_tiny_model(tmp_path, layers=3, dim=32) == path
    assert path.stat().st_mtime_ns == mtime
    assert ensure_tiny_model(tmp_path, layers=3, dim=64) != path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name, tiny_model_filename(kind="chat", layers=3, dim=64)]
    )


def test_structured_model_is_cached_under_its_own_name(tmp_path: Path) -> None:
    default = ensure_tiny_model(tmp_path)
    structured = ensure_tiny_model(tmp_path, structured_output=True)
    assert structured.name == tiny_model_filename(
        kind="chat", layers=2, dim=64, structured_output=True
    )
    assert structured != default
    assert structured.read_bytes() != default.read_bytes()
    # Files cached before the option existed keep their name.
    assert default.name == tiny_model_filename(kind="chat", layers=2, dim=64)


def test_larger_models_have_more_weights(tiny_models: TinyModels) -> None:
    assert tiny_models.large.stat().st_size > 4 * tiny_models.small.stat().st_size


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"kind": "image"}, ValueError),
        ({"layers": 0}, ValueError),
        ({"dim": 12}, ValueError),
        ({"dim": 64.0}, TypeError),
        ({"kind": "embedding", "structured_output": True}, ValueError),
        ({"structured_output": 1}, TypeError),
    ],
)
def test_tiny_model_rejects_bad_parameters(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        ensure_tiny_model(tmp_path, **kwargs)


# -- what the model promises, checked on a real server ------------------------------------------


def test_server_reports_the_alias(servers: dict[str, LlamaCppReplica]) -> None:
    models = json.loads(_get_text(f"{servers['chat'].url}/v1/models"))
    assert [card["id"] for card in models["data"]] == ["tiny-chat"]


@pytest.mark.parametrize("max_tokens", [1, 7, 48])
def test_chat_runs_to_exactly_max_tokens(
    servers: dict[str, LlamaCppReplica], max_tokens: int
) -> None:
    reply = _post(
        f"{servers['chat'].url}/v1/chat/completions",
        {"model": "anything", "messages": CHAT, "max_tokens": max_tokens},
    )
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == max_tokens
    assert reply["model"] == "tiny-chat"
    assert reply["choices"][0]["message"]["content"].isprintable()


@pytest.mark.parametrize("max_tokens", [1, 7, 48])
def test_completions_run_to_exactly_max_tokens(
    servers: dict[str, LlamaCppReplica], max_tokens: int
) -> None:
    reply = _post(
        f"{servers['chat'].url}/v1/completions", {"prompt": "Once upon", "max_tokens": max_tokens}
    )
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == max_tokens
    assert len(reply["choices"][0]["text"]) == max_tokens


@pytest.mark.parametrize("endpoint", ["completions", "chat/completions"])
def test_stop_sequence_ends_with_stop(servers: dict[str, LlamaCppReplica], endpoint: str) -> None:
    body = {"prompt": "Once upon", "messages": CHAT, "max_tokens": 64, "stop": ["a"]}
    reply = _post(f"{servers['chat'].url}/v1/{endpoint}", body)
    assert reply["choices"][0]["finish_reason"] == "stop"
    assert reply["usage"]["completion_tokens"] < 64


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_structured_model_answers_json_object_with_json(
    structured_server: LlamaCppReplica, seed: int
) -> None:
    reply = _structured_chat(structured_server, {"type": "json_object"}, seed)
    choice = reply["choices"][0]
    # The grammar completed and the model ended the answer itself, within max_tokens.
    assert choice["finish_reason"] == "stop"
    assert reply["usage"]["completion_tokens"] < STRUCTURED_MAX_TOKENS
    assert isinstance(json.loads(choice["message"]["content"]), dict)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_structured_model_answers_json_schema_with_a_matching_object(
    structured_server: LlamaCppReplica, seed: int
) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA},
    }
    reply = _structured_chat(structured_server, response_format, seed)
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "stop"
    answer = json.loads(choice["message"]["content"])
    assert isinstance(answer, dict)
    assert isinstance(answer["answer"], str)


def test_a_proxy_stripping_response_format_plays_a_server_that_ignores_it(
    structured_server: LlamaCppReplica,
) -> None:
    with FaultProxy("127.0.0.1", structured_server.port) as proxy:
        honoured = _structured_chat(proxy, {"type": "json_object"}, seed=0)
        proxy.strip_request_fields("response_format")
        ignored = _structured_chat(proxy, {"type": "json_object"}, seed=0)
        stats = proxy.stats()
    assert isinstance(json.loads(honoured["choices"][0]["message"]["content"]), dict)
    # Without the grammar the model writes free text up to max_tokens.
    assert ignored["choices"][0]["finish_reason"] == "length"
    assert ignored["usage"]["completion_tokens"] == STRUCTURED_MAX_TOKENS
    assert (stats.forwarded, stats.stripped) == (2, 1)


@pytest.mark.parametrize("max_tokens", [1, 48])
def test_structured_model_without_a_grammar_runs_to_max_tokens(
    structured_server: LlamaCppReplica, max_tokens: int
) -> None:
    reply = _post(
        f"{structured_server.url}/v1/chat/completions",
        {"messages": CHAT, "max_tokens": max_tokens},
    )
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == max_tokens
    assert reply["choices"][0]["message"]["content"].isprintable()


def test_chat_stream_carries_every_token_then_done(servers: dict[str, LlamaCppReplica]) -> None:
    events = _sse_events(
        f"{servers['chat'].url}/v1/chat/completions",
        {
            "messages": CHAT,
            "max_tokens": 16,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    text = "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )
    finish = [
        c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c["finish_reason"]
    ]
    usage = [chunk["usage"] for chunk in chunks if chunk.get("usage")]
    assert len(text) == 16
    assert finish == ["length"]
    assert usage[-1]["completion_tokens"] == 16


def test_embeddings_have_the_model_width(servers: dict[str, LlamaCppReplica]) -> None:
    reply = _post(
        f"{servers['embedding'].url}/v1/embeddings", {"input": ["hello world", "goodbye"]}
    )
    vectors = [item["embedding"] for item in reply["data"]]
    assert [len(v) for v in vectors] == [EMBEDDING_DIM, EMBEDDING_DIM]
    assert vectors[0] != vectors[1]


def test_metrics_expose_llamacpp_gauges(servers: dict[str, LlamaCppReplica]) -> None:
    metrics = _get_text(f"{servers['chat'].url}/metrics")
    assert "llamacpp:requests_processing" in metrics
    assert "llamacpp:requests_deferred" in metrics


# -- replica life cycle and faults --------------------------------------------------------------


def test_kill_refuses_connections_and_restart_answers_on_the_same_port(
    llamacpp_replicas: StartReplicas,
) -> None:
    (replica,) = llamacpp_replicas([("victim", "small", 2)])
    port, old_pid = replica.port, replica.pid
    replica.kill()
    assert not replica.running
    with pytest.raises(urllib.error.URLError) as refused:
        _get_text(f"{replica.url}/health")
    assert isinstance(refused.value.reason, ConnectionRefusedError)

    replica.restart()
    assert replica.port == port
    assert replica.pid != old_pid
    reply = _post(f"{replica.url}/v1/completions", {"prompt": "x", "max_tokens": 3})
    assert reply["usage"]["completion_tokens"] == 3


def test_kill_mid_stream_cuts_the_stream_short(llamacpp_replicas: StartReplicas) -> None:
    # One slot gets the whole 2048-token context, so the stream is far from done when killed.
    (replica,) = llamacpp_replicas([("victim", "large", 1)])
    body = {"prompt": "x", "max_tokens": 1500, "stream": True}
    request = urllib.request.Request(
        f"{replica.url}/v1/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    lines: list[bytes] = []
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        lines.append(response.readline())
        replica.kill()
        # Depending on timing the stream ends in EOF or in a broken chunked encoding.
        with contextlib.suppress(http.client.IncompleteRead, ConnectionError):
            lines.extend(response)
    assert lines[0].startswith(b"data: ")
    assert not any(line.startswith(b"data: [DONE]") for line in lines)


def test_pause_times_out_and_resume_answers(llamacpp_replicas: StartReplicas) -> None:
    (replica,) = llamacpp_replicas([("sleepy", "small", 2)])
    replica.pause()
    try:
        # The kernel still accepts the connection; only the answer never comes.
        with pytest.raises(TimeoutError):
            _get_text(f"{replica.url}/health", timeout_s=0.3)
    finally:
        replica.resume()
    assert json.loads(_get_text(f"{replica.url}/health")) == {"status": "ok"}


def test_stop_leaves_no_process_behind(llamacpp_replicas: StartReplicas) -> None:
    replicas = llamacpp_replicas([("a", "small", 1), ("b", "embedding", 1)])
    pids = [r.pid for r in replicas]
    replicas[1].pause()  # a paused server must still stop on SIGTERM
    for replica in replicas:
        replica.stop()
    for pid in pids:
        assert pid is not None
        assert _process_gone(pid)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_context_manager_stops_the_server(tiny_models: TinyModels) -> None:
    with LlamaCppReplica(tiny_models.small, alias="scoped") as replica:
        pid = replica.pid
        assert replica.running
        assert replica.log_path is not None
        log_path = replica.log_path
    assert pid is not None
    assert _process_gone(pid)
    assert not log_path.exists()


def test_server_exits_when_its_parent_dies(tiny_models: TinyModels, tmp_path: Path) -> None:
    # The parent is SIGKILLed, so neither atexit nor __del__ runs: the server must notice alone.
    parent_code = (
        "import sys, time\n"
        "from zeta_fast.local import LlamaCppReplica\n"
        "replica = LlamaCppReplica(sys.argv[1], log_path=sys.argv[2]).start()\n"
        "print(replica.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code, str(tiny_models.small), str(tmp_path / "server.log")],
        stdout=subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        assert not _process_gone(server_pid)
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    deadline = time.monotonic() + 5.0
    while not _process_gone(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _process_gone(server_pid)


def test_a_failed_start_says_why(tmp_path: Path) -> None:
    replica = LlamaCppReplica(tmp_path / "missing.gguf", startup_timeout_s=10.0)
    with pytest.raises(RuntimeError, match="failed to start") as failure:
        replica.start()
    assert "Log tail" in str(failure.value)
    assert not replica.running


def test_pause_and_resume_need_a_running_server(tiny_models: TinyModels) -> None:
    replica = LlamaCppReplica(tiny_models.small)
    with pytest.raises(RuntimeError, match="not running"):
        replica.pause()
    with pytest.raises(RuntimeError, match="not been started"):
        _ = replica.url


def test_replica_rejects_bad_arguments(tiny_models: TinyModels) -> None:
    with pytest.raises(ValueError, match="parallel"):
        LlamaCppReplica(tiny_models.small, parallel=0)
    with pytest.raises(ValueError, match="port"):
        LlamaCppReplica(tiny_models.small, port=70000)
    with pytest.raises(ValueError, match="startup_timeout_s"):
        LlamaCppReplica(tiny_models.small, startup_timeout_s=0)


def test_stop_and_kill_are_idempotent(tiny_models: TinyModels) -> None:
    replica = LlamaCppReplica(tiny_models.small).start()
    replica.stop()
    # A second stop or kill after reaping must not signal a pid that may now be someone else's.
    replica.stop()
    replica.kill()
    assert replica.pid is not None
    assert not replica.running
