"""Run real inference servers on this machine: tiny generated models, llama.cpp replicas,
a fault proxy."""

from __future__ import annotations

from zeta_fast.local.llamacpp import LlamaCppReplica, start_replicas
from zeta_fast.local.tiny_model import (
    TINY_MODEL_FORMAT_VERSION,
    ModelKind,
    ensure_tiny_model,
    tiny_model_filename,
    write_tiny_model,
)

__all__ = [
    "TINY_MODEL_FORMAT_VERSION",
    "LlamaCppReplica",
    "ModelKind",
    "ensure_tiny_model",
    "start_replicas",
    "tiny_model_filename",
    "write_tiny_model",
]
