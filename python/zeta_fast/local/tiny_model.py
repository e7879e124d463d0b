"""Tiny GGUF language models generated on the spot, for running real llama.cpp servers in tests.

No model hub is reachable from CI, and no package ships a small GGUF, so the model is written
here: llama architecture, F32 tensors, a few hundred SentencePiece tokens and a chatml chat
template. The weights are random, but the output projection is shaped so that generation never
produces end-of-sequence or control tokens: every request runs to exactly ``max_tokens`` and
stops with ``finish_reason: "length"``, which gives token accounting tests exact counts. The
letter ``a`` is favoured, so ``"stop": ["a"]`` reliably ends a request with ``"stop"``.

Example:
    >>> import tempfile
    >>> from zeta_fast.local import ensure_tiny_model
    >>> path = ensure_tiny_model(tempfile.mkdtemp(), layers=2, dim=64)
    >>> path.name
    'tiny-chat-l2-d64-v1.gguf'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "TINY_MODEL_FORMAT_VERSION",
    "ModelKind",
    "ensure_tiny_model",
    "tiny_model_filename",
    "write_tiny_model",
]

ModelKind = Literal["chat", "embedding"]

# Bump whenever the bytes written for the same parameters change, so cached files made by an
# older version are never reused (the version is part of the cached file name).
TINY_MODEL_FORMAT_VERSION = 1

# The training context the model declares. llama.cpp caps each slot's context at it, so a
# workload with longer conversations asks for a larger one (``context_length``).
CONTEXT_LENGTH = 2048
N_HEAD = 4
_RMS_EPS = 1e-5
_ROPE_FREQ_BASE = 10000.0

_CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_UNK_ID, _BOS_ID, _EOS_ID = 0, 1, 2
# SentencePiece marks a word-initial space with U+2581; llama.cpp's SPM tokenizer expects it.
_SPACE = "\u2581"

# Logit offsets (in logit units after the final norm). Tokens that must never be sampled sit
# far below every printable token: exp(-100) underflows to 0 even with top-k/min-p disabled
# and a high temperature.
_FORBIDDEN_LOGIT = -100.0
# Other printable tokens get a logit in [-1, 1]. 'a' leads them all, so greedy decoding gives
# "aaaa..." and llama.cpp's default sampling (temperature 0.8, min_p 0.05) picks 'a' about a
# third of the time: a 32-token completion contains one with near certainty. The space keeps
# sampled text word-like.
_A_LOGIT = 3.0
_SPACE_LOGIT = 2.0
# The residual stream's dimension 0 carries this constant; every other contribution is ~0.02,
# so after RMS norm dimension 0 is ~sqrt(dim) and the output bias column dominates the logits.
_CARRIER = 10.0
_WEIGHT_STD = 0.02


def _vocab() -> tuple[list[str], list[int], list[float]]:
    """The token list, token types and SPM scores: specials, 256 bytes, printable ASCII, chatml."""
    import gguf

    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    # Byte fallback lets any text (newlines in the chat template, non-ASCII) be tokenized.
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    printable = [_SPACE] + [chr(c) for c in range(0x21, 0x7F)]
    tokens += printable
    types += [gguf.TokenType.NORMAL] * len(printable)
    tokens += ["<|im_start|>", "<|im_end|>"]
    types += [gguf.TokenType.CONTROL] * 2
    # Single characters never merge, so scores only need to be distinct; specials score 0.
    scores = [0.0 if t != gguf.TokenType.NORMAL else -float(i) for i, t in enumerate(types)]
    return tokens, [int(t) for t in types], scores


def _check_params(kind: str, layers: int, dim: int, context_length: int = CONTEXT_LENGTH) -> None:
    if kind not in ("chat", "embedding"):
        raise ValueError(f"kind must be 'chat' or 'embedding', got {kind!r}")
    for name, value in (("layers", layers), ("dim", dim), ("context_length", context_length)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}: {value!r}")
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    if context_length < 1:
        raise ValueError(f"context_length must be >= 1, got {context_length}")
    # Each of the N_HEAD heads needs an even size for rotary position embeddings.
    if dim < 2 * N_HEAD or dim % (2 * N_HEAD) != 0:
        raise ValueError(f"dim must be a positive multiple of {2 * N_HEAD}, got {dim}")


def _normal(
    rng: np.random.Generator, shape: tuple[int, ...], std: float = _WEIGHT_STD
) -> npt.NDArray[np.float32]:
    return (rng.standard_normal(shape) * std).astype(np.float32)


def write_tiny_model(
    path: str | os.PathLike[str],
    *,
    kind: ModelKind = "chat",
    layers: int = 2,
    dim: int = 64,
    seed: int = 0,
    context_length: int = CONTEXT_LENGTH,
) -> Path:
    """Write a tiny llama-architecture GGUF model to ``path`` (overwriting it).

    The same arguments always give the same bytes. A chat model never emits end-of-sequence, so
    every completion runs to ``max_tokens``; an embedding model declares mean pooling, so a
    llama.cpp server started with embeddings on serves ``/v1/embeddings`` with vectors of
    ``dim`` floats. More ``layers`` or a larger ``dim`` give a slower model per token.

    Args:
        path: Destination file. It is written directly; see :func:`ensure_tiny_model` for an
            atomic, cached variant.
        kind: ``"chat"`` or ``"embedding"``.
        layers: Number of transformer blocks (>= 1).
        dim: Embedding width, a multiple of 8 (4 attention heads of an even size).
        seed: Seed of the random weights.
        context_length: The training context the model declares (tokens); llama.cpp caps a
            slot's context at it. Only metadata: the weights do not depend on it.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError: ``layers``, ``dim`` or ``context_length`` is not an int.
        ValueError: ``kind`` is unknown, or ``layers``/``dim``/``context_length`` are out of
            range.
    """
    # gguf takes ~0.1 s to import; server processes import this package but never need it.
    import gguf

    _check_params(kind, layers, dim, context_length)
    path = Path(path)
    rng = np.random.default_rng(seed)
    tokens, types, scores = _vocab()
    n_vocab = len(tokens)
    n_ff = 2 * dim
    head_dim = dim // N_HEAD

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name(f"zeta-fast-tiny-{kind}-l{layers}-d{dim}")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(context_length)
    writer.add_embedding_length(dim)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(_ROPE_FREQ_BASE)
    writer.add_layer_norm_rms_eps(_RMS_EPS)
    writer.add_vocab_size(n_vocab)
    if kind == "embedding":
        writer.add_pooling_type(gguf.PoolingType.MEAN)

    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_scores(scores)
    writer.add_unk_token_id(_UNK_ID)
    writer.add_bos_token_id(_BOS_ID)
    writer.add_eos_token_id(_EOS_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(_CHATML_TEMPLATE)

    # gguf takes NumPy shapes as (rows, cols), the reverse of ggml's ne order.
    token_embd = _normal(rng, (n_vocab, dim), std=1.0 if kind == "embedding" else _WEIGHT_STD)
    if kind == "chat":
        token_embd[:, 0] = _CARRIER
    writer.add_tensor("token_embd.weight", token_embd)
    for i in range(layers):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", np.ones(dim, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{blk}.{name}.weight", _normal(rng, (dim, dim)))
        writer.add_tensor(f"{blk}.ffn_norm.weight", np.ones(dim, dtype=np.float32))
        writer.add_tensor(f"{blk}.ffn_gate.weight", _normal(rng, (n_ff, dim)))
        writer.add_tensor(f"{blk}.ffn_up.weight", _normal(rng, (n_ff, dim)))
        writer.add_tensor(f"{blk}.ffn_down.weight", _normal(rng, (dim, n_ff)))
    writer.add_tensor("output_norm.weight", np.ones(dim, dtype=np.float32))
    writer.add_tensor("output.weight", _output_projection(rng, tokens, types, dim))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _output_projection(
    rng: np.random.Generator, tokens: list[str], types: list[int], dim: int
) -> npt.NDArray[np.float32]:
    """Output weights whose column 0 turns the constant carrier into a per-token logit bias."""
    import gguf

    n_vocab = len(tokens)
    output = _normal(rng, (n_vocab, dim), std=1.0 / np.sqrt(dim))
    bias = np.full(n_vocab, _FORBIDDEN_LOGIT, dtype=np.float64)
    normal = np.array(types) == int(gguf.TokenType.NORMAL)
    bias[normal] = rng.uniform(-1.0, 1.0, int(normal.sum()))
    bias[tokens.index("a")] = _A_LOGIT
    bias[tokens.index(_SPACE)] = _SPACE_LOGIT
    # After RMS norm the carrier dimension is ~sqrt(dim), so divide it back out.
    output[:, 0] = (bias / np.sqrt(dim)).astype(np.float32)
    return output


def tiny_model_filename(
    *, kind: ModelKind, layers: int, dim: int, context_length: int = CONTEXT_LENGTH
) -> str:
    """The cache file name for a model: it encodes the parameters and the format version.

    The default context length adds nothing to the name, so files cached before the parameter
    existed keep their names (their bytes are the same).
    """
    context = "" if context_length == CONTEXT_LENGTH else f"-c{context_length}"
    return f"tiny-{kind}-l{layers}-d{dim}{context}-v{TINY_MODEL_FORMAT_VERSION}.gguf"


def ensure_tiny_model(
    directory: str | os.PathLike[str],
    *,
    kind: ModelKind = "chat",
    layers: int = 2,
    dim: int = 64,
    context_length: int = CONTEXT_LENGTH,
) -> Path:
    """Return the path of a cached tiny model in ``directory``, writing it only if missing.

    The file is written to a temporary name and moved into place with :func:`os.replace`, so
    concurrent callers (pytest-xdist workers, parallel demos) never load a half-written file.
    Weights use seed 0.

    Args:
        directory: Cache folder; created if needed.
        kind: ``"chat"`` or ``"embedding"``.
        layers: Number of transformer blocks.
        dim: Embedding width, a multiple of 8.
        context_length: The training context the model declares (see :func:`write_tiny_model`).

    Returns:
        The model's path.

    Raises:
        TypeError: ``layers``, ``dim`` or ``context_length`` is not an int.
        ValueError: ``kind`` is unknown, or ``layers``/``dim``/``context_length`` are out of
            range.
    """
    _check_params(kind, layers, dim, context_length)
    directory = Path(directory)
    target = directory / tiny_model_filename(
        kind=kind, layers=layers, dim=dim, context_length=context_length
    )
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        write_tiny_model(
            tmp_name, kind=kind, layers=layers, dim=dim, seed=0, context_length=context_length
        )
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target
