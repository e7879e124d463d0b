"""The outcome feed: where every outcome a router learns of goes, once.

An outcome is published when the caller records one (``Router.record``),
when a quality verdict is learned (``Router.feedback``) and for every
attempt the dispatcher makes; the core has recorded it already. The first
two are published by the core itself (``Router.record`` is the native
method), to the subscribers the feed mirrors into it. The feed
hands it to its subscribers, in the order they subscribed: the dashboard's
recent list is one (see ``keep_recent``); so can be anything else with
:class:`OutcomeSubscriber`'s signature. The outcome log and the alert
detectors are not: the core appends to the log and feeds the detectors
itself, in Rust (``RouterCore.log_outcomes``, ``RouterCore.watch_trends``).
Shared state is not one either: it publishes the tracker's windows, which
the core fills.

An outcome is passed as arguments, not built into an object: on the
request path building a record (a ``__slots__`` class, a named tuple)
costs about three times what calling a subscriber does (measured on
CPython 3.11). Subscribers run on the request path (and in the
dispatcher's event loop): they must be quick, must not block and must not
raise.

Whether an outcome says anything about the replica is not derived here:
the publisher says so (``about_replica``) by the one rule there is, the
core's ``OutcomeKind::is_replica_fault``, which ``NOT_THE_REPLICAS`` reads
from the native module.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from zeta_fast._core import OutcomeKind

if TYPE_CHECKING:
    from zeta_fast._core import Decision

#: Outcome kinds that say nothing against a replica: the request's fault,
#: its kind, a cancelled hedge, our own failure (the core's rule).
NOT_THE_REPLICAS = frozenset(
    kind.value
    for kind in OutcomeKind.members()
    if kind is not OutcomeKind.SUCCESS and not kind.is_replica_fault
)

__all__ = [
    "FEEDBACK",
    "NOT_THE_REPLICAS",
    "OutcomeFeed",
    "OutcomeSubscriber",
    "RecentOutcome",
    "keep_recent",
]

#: The kind of a quality verdict given after the outcome (``Router.feedback``).
FEEDBACK = "feedback"

#: (unix time, decision, outcome kind, latency ms) of one dispatched attempt:
#: an item of the dashboard's recent list.
RecentOutcome = tuple[float, "Decision", str, float]


class OutcomeSubscriber(Protocol):
    """What the feed calls with each outcome.

    Args:
        decision: the decision the outcome is of.
        kind: how it ended (``success``, ``timeout``, ``client_error``, ...;
            ``other`` for a failure a caller recorded, ``feedback`` for a
            verdict given later).
        latency_ms: the attempt's time (0 for feedback).
        learned: what the learned router took from it (True good, False
            bad), None when it learned nothing.
        ttft_ms: the time to the first streamed event, when streamed.
        prompt_tokens: tokens the replica reported for the prompt.
        completion_tokens: tokens the replica reported for the answer.
        dispatched: an attempt the dispatcher made (not a caller's record).
        about_replica: it says something about the replica: a success or
            the replica's fault (what the alert detectors watch).
    """

    def __call__(
        self,
        decision: Decision,
        kind: str,
        latency_ms: float,
        learned: bool | None,
        ttft_ms: float | None,
        prompt_tokens: int,
        completion_tokens: int,
        dispatched: bool,
        about_replica: bool,
    ) -> None: ...


class OutcomeFeed:
    """Fans each published outcome out to the subscribers."""

    __slots__ = ("_lock", "_mirror", "subscribers")

    def __init__(
        self, mirror: Callable[[tuple[OutcomeSubscriber, ...]], None] | None = None
    ) -> None:
        #: The subscribers, in the order they are called: a tuple replaced
        #: whole by ``subscribe``/``unsubscribe``, so a publisher reads it
        #: without a lock (and a hot path may loop over it itself).
        self.subscribers: tuple[OutcomeSubscriber, ...] = ()
        self._lock = threading.Lock()
        #: Told every new tuple: a router's core (``RouterCore.set_subscribers``)
        #: publishes a caller's ``record`` and ``feedback`` itself, so that
        #: ``Router.record`` runs no Python frame.
        self._mirror = mirror

    def subscribe(self, subscriber: OutcomeSubscriber) -> OutcomeSubscriber:
        """Adds a subscriber (called after those already there); returns it."""
        with self._lock:
            self.subscribers = (*self.subscribers, subscriber)
            if self._mirror is not None:
                self._mirror(self.subscribers)
        return subscriber

    def unsubscribe(self, subscriber: OutcomeSubscriber) -> None:
        """Removes a subscriber (nothing when it is not one)."""
        with self._lock:
            self.subscribers = tuple(s for s in self.subscribers if s is not subscriber)
            if self._mirror is not None:
                self._mirror(self.subscribers)

    def publish(
        self,
        decision: Decision,
        kind: str,
        latency_ms: float,
        learned: bool | None = None,
        ttft_ms: float | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        dispatched: bool = False,
        about_replica: bool = True,
    ) -> None:
        """Hands an outcome the core has recorded to every subscriber (see
        :class:`OutcomeSubscriber` for the arguments). A caller's verdict
        (``Router.record``) is about the replica, as the core counts it."""
        for subscriber in self.subscribers:
            subscriber(
                decision,
                kind,
                latency_ms,
                learned,
                ttft_ms,
                prompt_tokens,
                completion_tokens,
                dispatched,
                about_replica,
            )


def keep_recent(recent: deque[RecentOutcome]) -> OutcomeSubscriber:
    """The subscriber that keeps the dispatched attempts in ``recent`` (the
    dashboard's recent decisions), newest last."""
    append = recent.append

    def subscriber(
        decision: Decision,
        kind: str,
        latency_ms: float,
        learned: bool | None,
        ttft_ms: float | None,
        prompt_tokens: int,
        completion_tokens: int,
        dispatched: bool,
        about_replica: bool,
    ) -> None:
        if dispatched:
            append((time.time(), decision, kind, latency_ms))

    return subscriber
