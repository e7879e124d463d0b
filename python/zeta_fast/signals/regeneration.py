"""What users do with an answer: regenerate it, or go on.

A regenerated answer is the same conversation's last user turn sent again
by the same caller within a window: the earlier answer was, most likely,
not good enough. A conversation that goes on (a request whose messages hold
an earlier answer and a new user turn after it) kept that answer: a weak
good verdict. Conversations are keyed by a hash of the caller and their
messages' roles and contents (BLAKE2b, 16 bytes), never the text itself,
and forgotten after the window or past a bound, oldest first.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

__all__ = ["ConversationVerdict", "Conversations", "caller_identity", "conversation_key"]

T = TypeVar("T")


def caller_identity(key: str | None, session: str | None, address: str | None) -> str:
    """Who a conversation belongs to: the API key's name and the session
    (or user) it names; without a key (a gateway without keys), the
    client's address stands in for it, so two anonymous clients' identical
    conversations stay apart."""
    return "\0".join((key or "", session or "", "" if key else address or ""))


def conversation_key(caller: str, messages: Sequence[object]) -> bytes:
    """The key of a caller's conversation up to (and with) ``messages``:
    roles and contents only, so a client's extra fields do not matter."""
    turns = [
        (m.get("role"), m.get("content")) if isinstance(m, Mapping) else None for m in messages
    ]
    digest = hashlib.blake2b(caller.encode("utf-8", "surrogatepass"), digest_size=16)
    digest.update(b"\0")
    try:
        digest.update(orjson.dumps(turns))
    except (TypeError, orjson.JSONEncodeError):
        digest.update(repr(turns).encode("utf-8", "surrogatepass"))
    return digest.digest()


@dataclass(frozen=True, slots=True)
class ConversationVerdict(Generic[T]):
    """What a request says of an earlier answer: ``regenerated`` (bad) or
    ``continued`` (weakly good), with the earlier answer's handle."""

    earlier: T
    regenerated: bool


def _last_index(messages: Sequence[object], role: str, before: int) -> int | None:
    for index in range(before - 1, -1, -1):
        message = messages[index]
        if isinstance(message, Mapping) and message.get("role") == role:
            return index
    return None


class Conversations(Generic[T]):
    """Remembers each conversation's latest answer (any handle: a router
    decision) for ``window_s``, at most ``max_conversations`` of them."""

    def __init__(
        self,
        window_s: float,
        max_conversations: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        if max_conversations < 1:
            raise ValueError(f"max_conversations must be >= 1, got {max_conversations!r}")
        self.window_s = window_s
        self.max_conversations = max_conversations
        self._clock = clock
        self._answers: OrderedDict[bytes, tuple[float, T]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def _take(self, key: bytes, now: float) -> T | None:
        held = self._answers.pop(key, None)
        if held is None or now - held[0] > self.window_s:
            return None
        return held[1]

    def observe(
        self, caller: str, messages: Any, answer: T, *, identified: bool = True
    ) -> ConversationVerdict[T] | None:
        """Notes that ``answer`` serves this request and says what the
        request tells of an earlier answer, if anything. ``messages`` is the
        request's list (anything else: nothing is noted).

        ``identified``: the caller named its user or session. Without it a
        first turn sent again is no regeneration: many users behind one
        address or key ask "hello" alike, and scripts resend prompts; a
        conversation with an earlier answer in it is specific enough."""
        if not isinstance(messages, list):
            return None
        last_user = _last_index(messages, "user", len(messages))
        if last_user is None:
            return None
        now = self._clock()
        key = conversation_key(caller, messages[: last_user + 1])
        verdict: ConversationVerdict[T] | None = None
        answered = _last_index(messages, "assistant", last_user)
        earlier = self._take(key, now)
        if earlier is not None and (identified or answered is not None):
            verdict = ConversationVerdict(earlier, regenerated=True)
        elif earlier is None and answered is not None:
            # The answer before this user turn, kept by the client: the
            # request that got it ended with the user turn before it.
            previous = self._take(conversation_key(caller, messages[:answered]), now)
            if previous is not None:
                verdict = ConversationVerdict(previous, regenerated=False)
        self._answers[key] = (now, answer)
        self._answers.move_to_end(key)
        while len(self._answers) > self.max_conversations:
            self._answers.popitem(last=False)
        # Expired entries at the old end go too (the dict is in time order).
        while self._answers:
            oldest = next(iter(self._answers.values()))
            if now - oldest[0] <= self.window_s:
                break
            self._answers.popitem(last=False)
        return verdict
