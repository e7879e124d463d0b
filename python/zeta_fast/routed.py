"""What a dispatched request gives back: the answer (``RoutedResponse``)
or the stream (``RoutedStream``) with the decision that served it, and
every ``Attempt`` made on the way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from zeta_fast.backends.client import split_events

if TYPE_CHECKING:
    from zeta_fast._core import Decision
    from zeta_fast.backends.client import BackendResponse

__all__ = ["Attempt", "RoutedResponse", "RoutedStream", "backend_time_ms"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a request: where it went and how it ended."""

    model_id: str
    replica_id: str
    kind: str
    latency_ms: float
    hedge: bool = False


@dataclass(slots=True)
class RoutedResponse:
    """A backend's answer with the decision that served it."""

    response: BackendResponse
    decision: Decision
    attempts: list[Attempt]
    latency_ms: float
    #: In a cascade, (model, reason) for every model whose answer was passed over.
    escalations: list[tuple[str, str]] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        """The answer's bytes, exactly as the backend sent them."""
        return self.response.body

    def json(self) -> Any:
        """The answer parsed."""
        return self.response.json()

    @property
    def text(self) -> str:
        """The first choice's text (chat or completion), '' when none."""
        choices = self.json().get("choices") or []
        if not choices:
            return ""
        first = choices[0]
        message = first.get("message")
        if isinstance(message, dict):
            return str(message.get("content") or "")
        return str(first.get("text") or "")

    @property
    def finish_reason(self) -> str | None:
        """The first choice's finish reason."""
        choices = self.json().get("choices") or []
        return choices[0].get("finish_reason") if choices else None


def backend_time_ms(attempts: list[Attempt]) -> float:
    """Time spent waiting on backends over some attempts; a hedged copy
    overlaps the attempt it shadows, so it is not counted again."""
    return sum(a.latency_ms for a in attempts if not a.hedge)


@dataclass(slots=True)
class RoutedStream:
    """A streamed answer: iterate it for the raw SSE bytes as they arrive
    (each item one or more whole ``data: ...\\n\\n`` events, ``data:
    [DONE]`` last), or ``chunks()`` for them parsed; ``decision`` is the
    replica serving it (it changes when an attempt fails over before the
    first event), ``attempts`` and ``ttft_ms`` fill in as they happen. Made
    by ``open`` (``Dispatcher.open_stream``, ``Router.forward_stream``,
    ``Router.chat_stream``)."""

    decision: Decision
    attempts: list[Attempt] = field(default_factory=list)
    ttft_ms: float | None = None
    _events: AsyncIterator[bytes] | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(
        cls, decision: Decision, events: Callable[[RoutedStream], AsyncIterator[bytes]]
    ) -> RoutedStream:
        """A stream for ``decision`` whose events are ``events(stream)``:
        what produces them is given the stream, to keep its decision,
        attempts and time to the first event up to date."""
        stream = cls(decision)
        stream._events = events(stream)
        return stream

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._events is None:
            raise RuntimeError("a RoutedStream has no events: make it with RoutedStream.open")
        return self._events

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The events parsed (``[DONE]`` left out)."""
        async for events in self:
            for event in split_events(events):
                payload = event.removeprefix(b"data: ").strip()
                if payload != b"[DONE]":
                    yield orjson.loads(payload)

    async def text(self) -> str:
        """Reads the whole stream and joins the text deltas."""
        parts: list[str] = []
        async for chunk in self.chunks():
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                parts.append(str(delta.get("content") or choice.get("text") or ""))
        return "".join(parts)
