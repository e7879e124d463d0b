"""zeta_fast as a routing strategy inside the real ``litellm.Router``.

LiteLLM runs for real: its Router, its completion call (with its own
``mock_response`` for successes, and a real refused HTTP connection on
127.0.0.1 for failures), and its success/failure callbacks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
litellm = pytest.importorskip("litellm", reason="the bench extra (litellm) is not installed")

from zeta_fast.integrations.litellm import use_zeta_fast  # noqa: E402

# Port 9 (discard) on loopback: nothing listens, so a real request is refused at once.
CLOSED = "http://127.0.0.1:9/v1"
CAPABILITIES = {
    "openai/coder-7b": {"code": 92, "chat": 60, "reasoning": 70, "knowledge": 60},
    "openai/chat-4b": {"chat": 90, "code": 50, "reasoning": 60, "knowledge": 70},
}


def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """LiteLLM delivers its callbacks from a worker thread after the call returns."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def router() -> object:
    model_list = [
        {
            "model_name": "auto",
            "litellm_params": {"model": model, "api_base": CLOSED, "api_key": "none", "timeout": 2},
            "model_info": {"id": replica},
        }
        for model, replica in (
            ("openai/coder-7b", "coder-a"),
            ("openai/coder-7b", "coder-b"),
            ("openai/chat-4b", "chat-a"),
        )
    ]
    router = litellm.Router(model_list=model_list, num_retries=0)
    yield router
    # LiteLLM spreads registered callbacks over several module-level lists.
    for name in (
        "callbacks",
        "success_callback",
        "failure_callback",
        "_async_success_callback",
        "_async_failure_callback",
        "input_callback",
    ):
        callbacks = getattr(litellm, name, None)
        if isinstance(callbacks, list):
            callbacks.clear()


def test_zeta_chooses_deployments_and_learns_from_litellm_callbacks(router: object) -> None:
    strategy = use_zeta_fast(router, capabilities=CAPABILITIES)
    code = [{"role": "user", "content": "def add(a, b):\n    return a + b"}]
    chat = [{"role": "user", "content": "Write a short poem about the sea at night."}]
    for _ in range(3):
        reply = router.completion(model="auto", messages=code, mock_response="ok")  # type: ignore[attr-defined]
        assert reply._hidden_params["model_id"] in ("coder-a", "coder-b")
    reply = router.completion(model="auto", messages=chat, mock_response="ok")  # type: ignore[attr-defined]
    assert reply._hidden_params["model_id"] == "chat-a"
    assert eventually(lambda: strategy.tracker.stats("openai/coder-7b", task="code").requests == 3)
    assert eventually(lambda: strategy.tracker.stats("openai/chat-4b", task="chat").successes == 1)
    assert strategy.tracker.stats("openai/coder-7b").successes == 3


def test_failures_reach_the_tracker_and_free_the_slot(router: object) -> None:
    strategy = use_zeta_fast(router, capabilities=CAPABILITIES)
    chat = [{"role": "user", "content": "Write a short poem about the sea at night."}]
    with pytest.raises(Exception):  # noqa: B017, PT011 - LiteLLM's connection error class varies
        router.completion(model="auto", messages=chat)  # type: ignore[attr-defined]
    assert eventually(lambda: strategy.tracker.stats("openai/chat-4b", task="chat").requests == 1)
    stats = strategy.tracker.stats("openai/chat-4b", task="chat")
    assert (stats.requests, stats.successes) == (1, 0)
    assert strategy._routers["auto"].in_flight("openai/chat-4b") == [0]
