"""The demo's workload: a small licensed prompt sample shipped with the
package (see ``PROMPTS_LICENSES.md``), turned into OpenAI request bodies."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

__all__ = ["DemoRequest", "load_prompts", "mixed_workload"]

EMBEDDING_CHUNK_CHARS = 400


@dataclass(frozen=True, slots=True)
class DemoRequest:
    """One request of the workload: where it goes and its body."""

    path: str
    body: bytes
    task_type: str
    stream: bool


def load_prompts() -> list[dict[str, str]]:
    """The shipped sample: id, source, license, task_type, prompt."""
    text = resources.files("zeta_fast.demo").joinpath("prompts.jsonl").read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def mixed_workload(
    count: int, *, seed: int = 0, stream_share: float = 0.2, max_tokens: int = 16
) -> list[DemoRequest]:
    """``count`` requests drawn from the sample with a fixed seed: chat
    completions (a ``stream_share`` of them streamed) and embeddings, all
    with ``model: auto`` so the router chooses."""
    prompts = load_prompts()
    rng = random.Random(seed)
    requests = []
    for _ in range(count):
        prompt = rng.choice(prompts)
        if prompt["task_type"] == "embedding":
            # Documents are embedded in chunks; the tiny embedder's batch is 512 tokens.
            embed = {"model": "auto", "input": prompt["prompt"][:EMBEDDING_CHUNK_CHARS]}
            requests.append(DemoRequest("/v1/embeddings", orjson.dumps(embed), "embedding", False))
            continue
        stream = rng.random() < stream_share
        body: dict[str, Any] = {
            "model": "auto",
            "messages": [{"role": "user", "content": prompt["prompt"]}],
            "max_tokens": max_tokens,
            "stream": stream,
        }
        requests.append(
            DemoRequest("/v1/chat/completions", orjson.dumps(body), prompt["task_type"], stream)
        )
    return requests
