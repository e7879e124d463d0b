"""Tiny GGUF language models generated on the spot, for running real llama.cpp servers in tests.

No model hub is reachable from CI, and no package ships a small GGUF, so the model is written
here: llama architecture, F32 tensors, a few hundred SentencePiece tokens and a chatml chat
template. The weights are random, but the output projection is shaped so that generation never
produces end-of-sequence or control tokens: every request runs to exactly ``max_tokens`` and
stops with ``finish_reason: "length"``, which gives token accounting tests exact counts. The
letter ``a`` is favoured, so ``"stop": ["a"]`` reliably ends a request with ``"stop"``.

The default chat model cannot serve chat completions with a ``response_format`` of type
``json_object`` or ``json_schema``: llama.cpp answers them with HTTP 400 "Failed to initialize
samplers". For those (not for a raw GBNF ``grammar``) its server feeds the chat template's
generation prompt (``<|im_start|>assistant\n``) through the grammar before sampling, and this
SentencePiece tokenizer, like LLaMA's, puts a space before text that follows a special token:
the grammar sees ``<|im_start|> assistant`` where it expects ``<|im_start|>assistant``, rejects
it, and the sampler is not made. ``structured_output=True`` writes a chat model for such
requests: no space prefix, and the characters that end JSON values (quotes, closing brackets)
favoured enough that a constrained answer completes well within 64-128 tokens and then ends
with end-of-sequence. Without a grammar it still runs to ``max_tokens``. It is a separate model
because dropping the space prefix changes prompt token counts, which the default model keeps as
they always were.

Example:
    >>> import tempfile
    >>> from zeta_fast.local import ensure_tiny_model
    >>> path = ensure_tiny_model(tempfile.mkdtemp(), layers=2, dim=64)
    >>> path.name
    'tiny-chat-l2-d64-v1.gguf'
    >>> ensure_tiny_model(tempfile.mkdtemp(), structured_output=True).name
    'tiny-chat-l2-d64-json-v1.gguf'
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

# Logits of the structured-output model that differ from the default one. Grammar sampling
# renormalises over the tokens the grammar allows, so what matters is each allowed token's
# logit against the others: a JSON string ends as soon as '"' is drawn (~12% a character with
# llama.cpp's default sampling here, so strings average ~8 characters), and an object or array
# after a value ends when '}' or ']' beats ',' and the optional space. Nesting ('{', '[') and
# further members (',') are kept rare, so an answer is short. The grammar also offers a
# ```json fence around the answer; forbidding the backtick keeps the content bare JSON.
_STRUCTURED_LOGITS: dict[str, float] = {
    '"': 2.5,
    "}": 2.5,
    "]": 2.5,
    "{": 1.0,
    "[": -1.0,
    ",": -1.0,
    "`": _FORBIDDEN_LOGIT,
}
# A structured-output model's cache names carry this tag after the parameters.
_STRUCTURED_TAG = "-json"


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


def _check_params(
    kind: str,
    layers: int,
    dim: int,
    context_length: int = CONTEXT_LENGTH,
    structured_output: bool = False,
) -> None:
    if kind not in ("chat", "embedding"):
        raise ValueError(f"kind must be 'chat' or 'embedding', got {kind!r}")
    if not isinstance(structured_output, bool):
        raise TypeError(f"structured_output must be a bool, got {structured_output!r}")
    if structured_output and kind != "chat":
        raise ValueError("structured_output needs kind='chat': embedding models generate nothing")
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
    structured_output: bool = False,
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
        structured_output: Write a chat model that serves grammar-constrained requests
            (``response_format`` ``json_object``/``json_schema``): see the module docstring.
            Its prompts tokenize without the SentencePiece space prefix, so they count fewer
            tokens than the default model's.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError: ``layers``, ``dim`` or ``context_length`` is not an int, or
            ``structured_output`` is not a bool.
        ValueError: ``kind`` is unknown, ``layers``/``dim``/``context_length`` are out of
            range, or ``structured_output`` is asked of an embedding model.
    """
    # gguf takes ~0.1 s to import; server processes import this package but never need it.
    import gguf

    _check_params(kind, layers, dim, context_length, structured_output)
    path = Path(path)
    rng = np.random.default_rng(seed)
    tokens, types, scores = _vocab()
    n_vocab = len(tokens)
    n_ff = 2 * dim
    head_dim = dim // N_HEAD

    writer = gguf.GGUFWriter(path, "llama")
    tag = _STRUCTURED_TAG if structured_output else ""
    writer.add_name(f"zeta-fast-tiny-{kind}-l{layers}-d{dim}{tag}")
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
    if structured_output:
        # llama.cpp checks the generation prompt against the grammar token by token; with the
        # space prefix "<|im_start|>assistant\n" tokenizes as "<|im_start|> assistant\n",
        # which no response_format grammar accepts (HTTP 400 "Failed to initialize samplers").
        writer.add_add_space_prefix(False)
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
    writer.add_tensor(
        "output.weight", _output_projection(rng, tokens, types, dim, structured_output)
    )

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _output_projection(
    rng: np.random.Generator,
    tokens: list[str],
    types: list[int],
    dim: int,
    structured_output: bool = False,
) -> npt.NDArray[np.float32]:
    """Output weights whose column 0 turns the constant carrier into a per-token logit bias.

    End-of-sequence keeps its forbidden but finite logit in every model: a grammar that is
    complete allows nothing else, and renormalised over that one token it is certain.
    """
    import gguf

    n_vocab = len(tokens)
    output = _normal(rng, (n_vocab, dim), std=1.0 / np.sqrt(dim))
    bias = np.full(n_vocab, _FORBIDDEN_LOGIT, dtype=np.float64)
    normal = np.array(types) == int(gguf.TokenType.NORMAL)
    bias[normal] = rng.uniform(-1.0, 1.0, int(normal.sum()))
    bias[tokens.index("a")] = _A_LOGIT
    bias[tokens.index(_SPACE)] = _SPACE_LOGIT
    if structured_output:
        # Set after every random draw, so all other weights equal the default model's.
        for token, logit in _STRUCTURED_LOGITS.items():
            bias[tokens.index(token)] = logit
    # After RMS norm the carrier dimension is ~sqrt(dim), so divide it back out.
    output[:, 0] = (bias / np.sqrt(dim)).astype(np.float32)
    return output


def tiny_model_filename(
    *,
    kind: ModelKind,
    layers: int,
    dim: int,
    context_length: int = CONTEXT_LENGTH,
    structured_output: bool = False,
) -> str:
    """The cache file name for a model: it encodes the parameters and the format version.

    The default context length and ``structured_output=False`` add nothing to the name, so
    files cached before those parameters existed keep their names (their bytes are the same).
    """
    context = "" if context_length == CONTEXT_LENGTH else f"-c{context_length}"
    tag = _STRUCTURED_TAG if structured_output else ""
    version = TINY_MODEL_FORMAT_VERSION
    return f"tiny-{kind}-l{layers}-d{dim}{context}{tag}-v{version}.gguf"


def ensure_tiny_model(
    directory: str | os.PathLike[str],
    *,
    kind: ModelKind = "chat",
    layers: int = 2,
    dim: int = 64,
    context_length: int = CONTEXT_LENGTH,
    structured_output: bool = False,
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
        structured_output: A chat model that serves grammar-constrained requests (see
            :func:`write_tiny_model`); cached under its own name.

    Returns:
        The model's path.

    Raises:
        TypeError: ``layers``, ``dim`` or ``context_length`` is not an int, or
            ``structured_output`` is not a bool.
        ValueError: ``kind`` is unknown, ``layers``/``dim``/``context_length`` are out of
            range, or ``structured_output`` is asked of an embedding model.
    """
    _check_params(kind, layers, dim, context_length, structured_output)
    directory = Path(directory)
    target = directory / tiny_model_filename(
        kind=kind,
        layers=layers,
        dim=dim,
        context_length=context_length,
        structured_output=structured_output,
    )
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        write_tiny_model(
            tmp_name,
            kind=kind,
            layers=layers,
            dim=dim,
            seed=0,
            context_length=context_length,
            structured_output=structured_output,
        )
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target
