"""A llama.cpp replica whose prompt-cache settings are spelled out, for prefix-cache benchmarks.

:class:`~zeta_fast.local.llamacpp.LlamaCppReplica` starts llama.cpp with xllamacpp's defaults.
A benchmark that measures how much prompt processing a router saves must not depend on
defaults that may move between xllamacpp releases, so this child sets every knob that decides
what a replica can reuse (values as ``CommonParams`` names them; the defaults of xllamacpp
2026.10 in brackets):

- ``cache_prompt`` = True [True]: a slot keeps the KV of its last prompt and a request whose
  prompt starts with it processes only the rest (``timings.cache_n`` reused, ``prompt_n``
  processed).
- ``slot_prompt_similarity`` = 0.1 [0.1]: a request goes to the idle slot whose cached prompt
  shares the largest part of its own (if at least that share), else to the least recently used.
- ``cache_ram_mib`` = ``--cache-ram-mib`` [8192]: the host prompt cache. When a slot is taken
  over by another prompt, its KV is saved to RAM and restored when a later request matches
  it, so a replica remembers more conversations than it has slots. Kept on (it is
  llama-server's behaviour), but bounded so three replicas on a small machine stay small.
- ``n_cache_reuse`` = 0 [0]: no KV shifting of reused chunks: only a common prefix counts.
- ``kv_unified`` = False [False]: each slot has ``ctx / parallel`` tokens of its own.

Run it as ``python -m zeta_fast.local.cached_replica --model M --alias A [--cache-ram-mib N]``
(the same arguments as :mod:`zeta_fast.local.llamacpp`, plus the cache ones); the parent
class starts, watches and stops it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from zeta_fast.local.llamacpp import LlamaCppReplica, serve, server_parser

__all__ = ["CachedLlamaCppReplica", "main"]

DEFAULT_CACHE_RAM_MIB = 512
DEFAULT_SLOT_PROMPT_SIMILARITY = 0.1


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = server_parser(
        "python -m zeta_fast.local.cached_replica",
        "Run one llama.cpp server with explicit prompt-cache settings.",
    )
    parser.add_argument("--cache-ram-mib", type=int, default=DEFAULT_CACHE_RAM_MIB)
    parser.add_argument(
        "--slot-prompt-similarity", type=float, default=DEFAULT_SLOT_PROMPT_SIMILARITY
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one server until SIGTERM or SIGINT; prints ``LISTENING <url>`` once it is up."""
    args = _parse_args(argv)

    def cache_settings(params: Any, _xllamacpp: Any) -> None:
        params.cache_prompt = True
        params.slot_prompt_similarity = args.slot_prompt_similarity
        params.cache_ram_mib = args.cache_ram_mib
        params.n_cache_reuse = 0
        params.kv_unified = False

    return serve(args, cache_settings)


class CachedLlamaCppReplica(LlamaCppReplica):
    """A :class:`LlamaCppReplica` started through this module, with its cache settings.

    Args:
        model: Path of a GGUF model.
        cache_ram_mib: Size of the host prompt cache (0 turns it off).
        slot_prompt_similarity: The prompt share above which a request reuses a slot's cache.
        **kwargs: As for :class:`LlamaCppReplica` (``alias``, ``ctx``, ``parallel``, ...);
            ``embedding`` is not supported.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        cache_ram_mib: int = DEFAULT_CACHE_RAM_MIB,
        slot_prompt_similarity: float = DEFAULT_SLOT_PROMPT_SIMILARITY,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("embedding"):
            raise ValueError("CachedLlamaCppReplica serves chat only")
        if cache_ram_mib < 0:
            raise ValueError(f"cache_ram_mib must be >= 0, got {cache_ram_mib}")
        if not 0.0 <= slot_prompt_similarity <= 1.0:
            raise ValueError(
                f"slot_prompt_similarity must be in [0, 1], got {slot_prompt_similarity}"
            )
        super().__init__(model, **kwargs)
        self.cache_ram_mib = cache_ram_mib
        self.slot_prompt_similarity = slot_prompt_similarity

    def _command(self) -> list[str]:
        # The parent class's arguments, with this module as the entry point.
        command = super()._command()
        command[command.index("zeta_fast.local.llamacpp")] = "zeta_fast.local.cached_replica"
        return [
            *command,
            "--cache-ram-mib",
            str(self.cache_ram_mib),
            "--slot-prompt-similarity",
            str(self.slot_prompt_similarity),
        ]


if __name__ == "__main__":
    sys.exit(main())
