"""Pytest fixtures for tests against real llama.cpp servers running tiny generated models.

Registered in ``conftest.py`` through ``pytest_plugins``. ``tiny_models`` writes the models once
per session; ``llamacpp_replicas`` starts servers for one test and stops them afterwards::

    def test_router(llamacpp_replicas):
        fast, slow = llamacpp_replicas([("fast", "small", 4), ("slow", "large", 1)])
        ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from zeta_fast.local import LlamaCppReplica, ensure_tiny_model, start_replicas

TinyModelName = Literal["small", "large", "embedding"]
ReplicaRequest = tuple[str, TinyModelName, int]
"""(alias, model name, n_parallel slots) for one replica."""
StartReplicas = Callable[[Sequence[ReplicaRequest]], list[LlamaCppReplica]]


@dataclass(frozen=True)
class TinyModels:
    """Paths of the generated test models.

    Attributes:
        small: Chat model, 2 layers of width 64: the fastest.
        large: Chat model, 4 layers of width 128: several times slower per token.
        embedding: Embedding model (mean pooling), 2 layers of width 64: 64-float vectors.
    """

    small: Path
    large: Path
    embedding: Path

    def path(self, name: TinyModelName) -> Path:
        """The path of the model called ``name``."""
        paths: dict[str, Path] = {
            "small": self.small,
            "large": self.large,
            "embedding": self.embedding,
        }
        return paths[name]


SMALL_DIM = 64
LARGE_DIM = 128
EMBEDDING_DIM = 64


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    """Generate the tiny models once per test session (~0.1 s in all)."""
    directory = tmp_path_factory.mktemp("tiny-models")
    return TinyModels(
        small=ensure_tiny_model(directory, kind="chat", layers=2, dim=SMALL_DIM),
        large=ensure_tiny_model(directory, kind="chat", layers=4, dim=LARGE_DIM),
        embedding=ensure_tiny_model(directory, kind="embedding", layers=2, dim=EMBEDDING_DIM),
    )


@pytest.fixture
def llamacpp_replicas(tiny_models: TinyModels) -> Iterator[StartReplicas]:
    """A factory starting real llama.cpp replicas; all are stopped when the test ends.

    Call it with ``[(alias, model_name, n_parallel), ...]`` where ``model_name`` is ``"small"``,
    ``"large"`` or ``"embedding"``; it returns the started replicas in the same order (each
    with ``.url``, ``.port``, ``.pid`` and fault methods). It may be called several times.
    """
    started: list[LlamaCppReplica] = []

    def start(requests: Sequence[ReplicaRequest]) -> list[LlamaCppReplica]:
        replicas = [
            LlamaCppReplica(
                tiny_models.path(model),
                alias=alias,
                parallel=n_parallel,
                embedding=model == "embedding",
            )
            for alias, model, n_parallel in requests
        ]
        started.extend(replicas)
        return start_replicas(replicas)

    yield start
    for replica in started:
        replica.stop()
