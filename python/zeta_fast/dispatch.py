"""Dispatch: send a routed request to its replica, retry, fall back, hedge,
and record every attempt's outcome in the core.

The policies are the core's (breakers, retry and hedge budgets, backoff,
reroutes); this module only does the I/O between those decisions:

- an attempt that fails with a retryable error (connect, timeout, 408/429/5xx,
  a stream cut before anything reached the caller) is recorded, then the core
  picks the next target (another replica of the model, the model's fallback
  chain, then the other candidates; a longer context for a prompt that did
  not fit), after a jittered backoff of at least the server's Retry-After;
- attempts are bounded by ``max_attempts``, the retry budget and
  ``max_total_s``, so there are no retry loops;
- a stream is never retried once an event reached the caller;
- a failure is classified by who caused it before it touches anything: a
  request a model cannot serve (``unsupported``) moves to a model that can
  and marks the model, not the replica; a request the server refused
  (``client_error``) is never retried; a 500 that names no cause is held
  back until another replica answers the same request: the same 500 again
  from replicas that serve other requests well means the request is the
  cause (answered as a 400, nobody blamed), anything else blames the
  first replica;
- hedging (non-streamed requests, opt-in): when the answer has not come
  within the replica's recent p95, a copy goes to another replica, within
  the hedge budget; the first good answer wins and the other is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from zeta_fast._core import Decision, RouterCore
from zeta_fast.answer_checks import check_chat_answer, streamed_answer
from zeta_fast.backends.client import (
    BackendClient,
    BackendResponse,
    StreamUsage,
    Timeouts,
    Usage,
    new_session,
    stream_ends,
)
from zeta_fast.backends.errors import (
    BackendError,
    BackendStatusError,
    RequestRejected,
    StreamInterrupted,
    UnsupportedRequest,
)
from zeta_fast.config import RouterConfig
from zeta_fast.exceptions import InvalidInputError, NoCandidatesError, UnsupportedRequestError
from zeta_fast.outcome_log import current_request_id
from zeta_fast.outcomes import NOT_THE_REPLICAS
from zeta_fast.request_features import feature_names
from zeta_fast.routed import Attempt, RoutedResponse, RoutedStream, backend_time_ms

if TYPE_CHECKING:
    from zeta_fast.outcomes import OutcomeFeed

_log = logging.getLogger("zeta_fast.dispatch")

#: A ``"model": "..."`` member of a JSON object (not text inside a string:
#: there its quotes are escaped), in an answer body or stream events.
#: What an outcome without a usage block reports.
NO_USAGE = Usage(0, 0, None)
_CHAT = "/v1/chat/completions"
#: A streamed answer past this many bytes is relayed but not checked.
_MAX_CHECKED_STREAM = 4 << 20
_MODEL_FIELD = re.compile(rb'([{,]\s*)"model"\s*:\s*"(?:[^"\\]|\\.)*"')


class _Renamer:
    """Rewrites the ``model`` fields of one replica's answers to the
    router's model id. The regex runs until the field as this server writes
    it is known (``"model":"small-a"``); then a plain ``bytes.replace``
    does it, a C loop, and a batch with no model field costs one search."""

    __slots__ = ("_new", "_replacement", "_seen")

    def __init__(self, model_id: str) -> None:
        self._new = b'"model":' + orjson.dumps(model_id)
        self._replacement = rb"\1" + self._new
        self._seen: bytes | None = None

    def __call__(self, data: bytes) -> bytes:
        seen = self._seen
        if seen is not None and seen in data:
            return data if seen == self._new else data.replace(seen, self._new)
        if b'"model"' not in data:
            return data
        match = _MODEL_FIELD.search(data)
        if match is None:
            return data
        self._seen = match.group(0)[len(match.group(1)) :]
        return _MODEL_FIELD.sub(self._replacement, data)


__all__ = ["Attempt", "Dispatcher", "RoutedResponse", "RoutedStream", "backend_time_ms"]


@dataclass(slots=True)
class _Suspect:
    """A replica's 500 that named no cause, not yet blamed on anyone: its
    slot is free, its outcome waits for the next replica's answer."""

    decision: Decision
    latency_ms: float
    signature: tuple[int, str]
    settled: bool = False


def _signature(exc: BackendStatusError) -> tuple[int, str]:
    # Two replicas of one model failing one request identically say the
    # same thing: the status and the message, ids and numbers aside.
    return exc.status, "".join(c for c in exc.message[:200] if not c.isdigit())


def _retry_after_ms(exc: BackendError) -> float | None:
    if isinstance(exc, BackendStatusError) and exc.retry_after_s is not None:
        return exc.retry_after_s * 1e3
    return None


class Dispatcher:
    """Sends requests for one router on one event loop (aiohttp sessions
    belong to a loop): one shared session, one client per replica. Every
    attempt's outcome is recorded in the core and published to ``feed``
    (the router's: its outcome log, alerts and recent list).

    ``Router.dispatcher()`` gives the running loop's; a server holds it
    (asking the router per request costs a loop lookup)."""

    def __init__(
        self,
        core: RouterCore,
        config: RouterConfig,
        feed: OutcomeFeed | None = None,
    ) -> None:
        self.core = core
        self.config = config
        self.feed = feed
        self.session = new_session()
        spec = config.dispatch
        self.unsupported_ttl_s = spec.unsupported_ttl_s
        #: Chat answers get their structural checks (``zeta_fast.answer_checks``).
        self.checks_answers = config.signals.structural.enabled
        self.clients: dict[tuple[str, str], BackendClient] = {}
        #: The model name each replica's server expects in the body.
        self._served: dict[tuple[str, str], str] = {}
        self._renamers: dict[tuple[str, str], _Renamer] = {}
        for model in config.models:
            for replica in model.replicas:
                own = replica.timeouts
                timeouts = Timeouts(
                    connect_s=own.connect_s or spec.timeouts.connect_s,
                    first_byte_s=own.first_byte_s or spec.timeouts.first_byte_s,
                    total_s=own.total_s or spec.timeouts.total_s,
                )
                self._served[model.id, replica.id] = replica.served_model_name or model.id
                self.clients[model.id, replica.id] = BackendClient(
                    self.session,
                    str(replica.url),
                    flavor=replica.backend,
                    timeouts=timeouts,
                    authorization=replica.authorization(),
                )

    async def close(self) -> None:
        """Closes the session and its pooled connections."""
        await self.session.close()

    def _client(self, decision: Decision) -> BackendClient:
        return self.clients[decision.model_id, decision.replica_id]

    def _renamer(self, decision: Decision) -> _Renamer:
        """What puts the router's model id in an answer's ``model`` fields
        (servers answer with their own alias, which clients then show)."""
        key = (decision.model_id, decision.replica_id)
        renamer = self._renamers.get(key)
        if renamer is None:
            renamer = self._renamers[key] = _Renamer(decision.model_id)
        return renamer

    def _body(self, payload: dict[str, Any], decision: Decision) -> bytes:
        """The body for the decision's replica. A body that cannot be
        encoded (nested past orjson's 254 levels) is the request's fault:
        its slot is given back, nothing is recorded, and the caller gets
        ``InvalidInputError`` (a 400 through the gateway)."""
        # vLLM checks `model` against the name it serves; llama.cpp ignores it.
        payload["model"] = self._served[decision.model_id, decision.replica_id]
        try:
            return orjson.dumps(payload)
        except orjson.JSONEncodeError as exc:
            self.core.release(decision)
            raise InvalidInputError(f"request body cannot be forwarded: {exc}") from None

    def _record(
        self,
        decision: Decision,
        kind: str,
        latency_ms: float,
        ttft_ms: float | None = None,
        usage: Usage = NO_USAGE,
    ) -> None:
        """The one place an attempt's outcome goes: the core (windows,
        breaker, counters, the slot freed, the prefix index scored against
        the engine's cached tokens), then the feed."""
        taught = self.core.record_outcome(
            decision,
            kind,
            latency_ms,
            ttft_ms=ttft_ms,
            prompt_tokens=usage[0],
            completion_tokens=usage[1],
            request_id=current_request_id.get(),
            cached_tokens=usage[2],
        )
        feed = self.feed
        if feed is not None:
            feed.publish(
                decision,
                kind,
                latency_ms,
                # The core says whether it learned this outcome (and it
                # learns a success as good, anything else as bad).
                learned=(kind == "success") if taught else None,
                ttft_ms=ttft_ms,
                prompt_tokens=usage[0],
                completion_tokens=usage[1],
                dispatched=True,
                # Successes and replica faults, as the core's windows see them.
                about_replica=kind not in NOT_THE_REPLICAS,
            )

    def _record_failure(
        self,
        decision: Decision,
        exc: BaseException,
        started: float,
        attempts: list[Attempt],
        suspects: list[_Suspect] | None = None,
    ) -> str:
        """Records a failed attempt by who caused it. With ``suspects``, a
        500 that names no cause is held back there instead (see ``_settle``)."""
        latency = (time.perf_counter() - started) * 1e3
        if isinstance(exc, BackendError):
            kind = exc.kind
        elif isinstance(exc, asyncio.CancelledError):
            kind = "cancelled"
        else:
            # Our own failure around the attempt, not the replica's.
            kind = "internal"
        if (
            suspects is not None
            and type(exc) is BackendStatusError
            and exc.status == 500
            and self.core.release(decision)
        ):
            suspects.append(_Suspect(decision, latency, _signature(exc)))
        else:
            self._record(decision, kind, latency)
        if isinstance(exc, UnsupportedRequest):
            self._learn_unsupported(decision, exc)
        attempts.append(Attempt(decision.model_id, decision.replica_id, kind, latency))
        if kind != "cancelled":
            _log.info(
                "attempt at %s/%s failed after %.1f ms (%s, request %s): %s",
                decision.model_id,
                decision.replica_id,
                latency,
                kind,
                current_request_id.get(),
                exc,
            )
        if isinstance(exc, BackendError):
            retry_after = _retry_after_ms(exc)
            if retry_after:  # "Retry-After: 0" asks for no pause
                # The replica asked for a pause: nobody routes to it until then.
                self.core.hold_replica(decision, retry_after)
        return kind

    def _learn_unsupported(self, decision: Decision, exc: UnsupportedRequest) -> None:
        """Marks the model as unable to serve what it refused, for a while.
        A refusal naming no feature the request needs is pinned on the
        request's only one."""
        needed = feature_names(decision.needs)
        # What the request needs decides between a vague message's guesses.
        if (exc.feature is None or exc.feature not in needed) and len(needed) == 1:
            exc.feature = needed[0]
        if exc.feature is not None:
            self.core.learn_unserved(decision.model_id, exc.feature, self.unsupported_ttl_s)
            _log.warning(
                "model %s cannot serve requests with %s: skipped for them for %.0f s",
                decision.model_id,
                exc.feature,
                self.unsupported_ttl_s,
            )

    def _blame(self, suspect: _Suspect, kind: str) -> None:
        if not suspect.settled:
            suspect.settled = True
            self._record(suspect.decision, kind, suspect.latency_ms)

    def _settle(self, suspects: list[_Suspect], failed: Decision, exc: BaseException) -> None:
        """Decides held-back 500s once another attempt failed with ``exc``.
        When this attempt's 500 was held back too and an earlier replica
        gave the same one, the request is the cause: all of them are
        recorded as client errors and ``RequestRejected`` is raised. Else
        the earlier ones are their replicas' faults; this one waits."""
        current = suspects[-1] if suspects and suspects[-1].decision is failed else None
        earlier = [s for s in suspects if s is not current and not s.settled]
        same = [s for s in earlier if current is not None and s.signature == current.signature]
        # Only replicas that serve other requests well clear themselves: a
        # model failing everything the same way is broken, not poisoned.
        if (
            current is not None
            and same
            and all(self._answers_well(s.decision) for s in (*same, current))
        ):
            for suspect in (*same, current):
                self._blame(suspect, "client_error")
            assert isinstance(exc, BackendStatusError)
            rejected = RequestRejected(
                f"{exc.message} (the same answer from {len(same) + 1} replicas: "
                "the request is the cause)",
                url=exc.url,
                status=exc.status,
                error_type=exc.error_type,
                body=exc.body,
            )
            rejected.attempts, rejected.backend_ms = exc.attempts, exc.backend_ms
            raise rejected from exc
        for suspect in earlier:
            self._blame(suspect, "server_error")

    def _answers_well(self, decision: Decision) -> bool:
        """Whether the decision's replica has a good recent record (rare
        path: the status read builds every replica's figures)."""
        for status in self.core.replica_status(decision.model_id):
            if status.replica_id == decision.replica_id:
                share = status.recent_failure_share
                return share is not None and share < 0.5
        return False

    def _flush(self, suspects: list[_Suspect]) -> None:
        """No attempt can tell any more: what is held back is the replica's."""
        for suspect in suspects:
            self._blame(suspect, "server_error")

    async def _next(
        self,
        failed: Decision,
        exc: BackendError,
        tried: list[Decision],
        attempts: list[Attempt],
        deadline: float,
        suspects: list[_Suspect] | None = None,
    ) -> Decision:
        """The decision for the next attempt, after the backoff; raises
        ``exc`` (with the attempts) when no further attempt is allowed."""
        exc.attempts = [(a.model_id, a.replica_id, a.kind) for a in attempts]
        exc.backend_ms = backend_time_ms(attempts)
        if suspects:
            self._settle(suspects, failed, exc)
        if isinstance(exc, UnsupportedRequest):
            # Another model may serve it, unless the caller chose this one
            # or the refusal names nothing to skip the model for.
            if failed.pinned or exc.feature is None:
                raise exc
            if len(attempts) >= self.config.dispatch.max_attempts:
                raise exc
            try:
                decision = self.core.reroute(failed, tried)
            except (NoCandidatesError, UnsupportedRequestError):
                raise exc from None
            tried.append(failed)
            return decision
        if not exc.retryable or len(attempts) >= self.config.dispatch.max_attempts:
            raise exc
        # Retry-After is honoured where it was said: that replica is held
        # (see _record_failure) and the retry goes elsewhere after the usual backoff.
        delay_s = self.core.backoff_ms(len(attempts)) / 1e3
        if time.monotonic() + delay_s >= deadline or not self.core.try_retry():
            raise exc
        try:
            decision = self.core.reroute(
                failed, tried, needs_longer_context=exc.kind == "context_length"
            )
        except (NoCandidatesError, UnsupportedRequestError):
            raise exc from None
        tried.append(failed)
        if delay_s > 0:
            try:
                await asyncio.sleep(delay_s)
            except BaseException:
                self._record(decision, "cancelled", 0.0)
                raise
        return decision

    async def request(
        self,
        path: str,
        payload: dict[str, Any],
        decision: Decision,
    ) -> RoutedResponse:
        """Sends a non-streamed request, retrying and falling back as the
        policies allow, and records every attempt.

        Raises:
            BackendError: the last attempt's error, with ``attempts`` set.
        """
        begin = time.perf_counter()
        deadline = time.monotonic() + self.config.dispatch.max_total_s
        attempts: list[Attempt] = []
        tried: list[Decision] = []
        suspects: list[_Suspect] = []
        try:
            while True:
                try:
                    if self.config.dispatch.hedge.enabled:
                        response, decision = await self._hedged(
                            path, payload, decision, attempts, deadline
                        )
                    else:
                        response = await self._plain(
                            path, payload, decision, attempts, deadline, suspects
                        )
                except BackendError as exc:
                    decision = await self._next(decision, exc, tried, attempts, deadline, suspects)
                    continue
                response.body = self._renamer(decision)(response.body)
                response._data = None
                if self.checks_answers and path == _CHAT:
                    self._check_answer(payload, response, decision)
                return RoutedResponse(
                    response, decision, attempts, (time.perf_counter() - begin) * 1e3
                )
        finally:
            if suspects:
                self._flush(suspects)

    def _check_answer(
        self, payload: dict[str, Any], response: BackendResponse, decision: Decision
    ) -> None:
        """The answer's structural check, to the core (the model's record for
        the request's kind, and a bad verdict when the text itself failed)."""
        try:
            check = check_chat_answer(payload, response.json())
        except orjson.JSONDecodeError:
            check = "empty"  # a 200 whose body is not JSON answers nothing
        self.core.check_answer(decision, check)
        if check != "ok":
            _log.info(
                "answer from %s/%s failed its %s check (request %s)",
                decision.model_id,
                decision.replica_id,
                check,
                current_request_id.get(),
            )

    def _record_success(
        self,
        decision: Decision,
        latency_ms: float,
        ttft_ms: float | None,
        usage: Usage,
        attempts: list[Attempt],
        hedge: bool = False,
    ) -> None:
        self._record(decision, "success", latency_ms, ttft_ms, usage)
        attempts.append(
            Attempt(decision.model_id, decision.replica_id, "success", latency_ms, hedge)
        )

    async def _plain(
        self,
        path: str,
        payload: dict[str, Any],
        decision: Decision,
        attempts: list[Attempt],
        deadline: float,
        suspects: list[_Suspect] | None = None,
    ) -> BackendResponse:
        """One attempt; records its outcome, whatever it is."""
        body = self._body(payload, decision)
        started = time.perf_counter()
        try:
            response = await self._client(decision).post(
                path, body, total_cap_s=max(deadline - time.monotonic(), 0.001)
            )
        except BaseException as exc:
            self._record_failure(decision, exc, started, attempts, suspects)
            raise
        self._record_success(
            decision, response.latency_ms, response.ttft_ms, response.usage(), attempts
        )
        return response

    async def _hedged(
        self,
        path: str,
        payload: dict[str, Any],
        decision: Decision,
        attempts: list[Attempt],
        deadline: float,
    ) -> tuple[BackendResponse, Decision]:
        """One attempt with a possible hedge; records both copies itself."""
        hedge = self.config.dispatch.hedge
        p95 = self.core.replica_p95_ms(decision)
        runs: dict[asyncio.Task[BackendResponse], tuple[Decision, float, bool]] = {}

        def launch(target: Decision, is_hedge: bool) -> None:
            body = self._body(payload, target)  # serialised now: launches may share payload
            cap = max(deadline - time.monotonic(), 0.001)
            task = asyncio.ensure_future(self._client(target).post(path, body, total_cap_s=cap))
            runs[task] = (target, time.perf_counter(), is_hedge)

        launch(decision, False)
        if p95 is not None:
            done, _ = await asyncio.wait(runs, timeout=max(p95, hedge.min_delay_ms) / 1e3)
            if not done and self.core.try_hedge():
                with contextlib.suppress(NoCandidatesError, UnsupportedRequestError):
                    launch(self.core.reroute(decision), True)
        last_error: BaseException | None = None
        try:
            while runs:
                done, _ = await asyncio.wait(runs, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    target, started, is_hedge = runs.pop(task)
                    exc = task.exception()
                    if exc is None:
                        response = task.result()
                        self._record_success(
                            target,
                            response.latency_ms,
                            response.ttft_ms,
                            response.usage(),
                            attempts,
                            is_hedge,
                        )
                        return response, target
                    self._record_failure(target, exc, started, attempts)
                    last_error = exc
        finally:
            # The loser is cancelled; what it had taken so far is recorded as
            # its latency (a lower bound), so a slow replica still pays for it.
            for task, (target, started, is_hedge) in runs.items():
                task.cancel()
                latency = (time.perf_counter() - started) * 1e3
                self._record(target, "cancelled", latency)
                attempts.append(
                    Attempt(target.model_id, target.replica_id, "cancelled", latency, is_hedge)
                )
        assert last_error is not None
        raise last_error

    def open_stream(self, path: str, payload: dict[str, Any], decision: Decision) -> RoutedStream:
        """A streamed request for a decision already taken (nothing is sent
        until the result is iterated): its events, retried and falling back
        as the policies allow until the first one reached the caller, and
        its ``decision``, ``attempts`` and ``ttft_ms`` as they happen."""
        return RoutedStream.open(
            decision, lambda stream: self._stream(path, payload, decision, stream)
        )

    async def _stream(
        self, path: str, payload: dict[str, Any], decision: Decision, result: RoutedStream
    ) -> AsyncIterator[bytes]:
        """The events of a streamed request; attempts are retried only until
        the first event reached the caller."""
        spec = self.config.dispatch
        deadline = time.monotonic() + spec.max_total_s
        tried: list[Decision] = []
        suspects: list[_Suspect] = []
        ends = stream_ends(path)
        try:
            while True:
                body = self._body(payload, decision)
                started = time.perf_counter()
                result.decision = decision
                client = self._client(decision)
                rename = self._renamer(decision)
                delivered = False
                usage = StreamUsage()
                ttft: float | None = None
                # The answer's bytes, for its structural check once it ended
                # (parsed once then, not per event on the relay path).
                kept: list[bytes] | None = [] if self.checks_answers and path == _CHAT else None
                kept_bytes = 0
                try:
                    response = await client.open_stream(
                        path, body, total_cap_s=max(deadline - time.monotonic(), 0.001)
                    )
                    async for events in client.events(response, usage, ends):
                        if ttft is None:
                            ttft = (time.perf_counter() - started) * 1e3
                            result.ttft_ms = ttft
                        delivered = True
                        if kept is not None:
                            kept_bytes += len(events)
                            if kept_bytes > _MAX_CHECKED_STREAM:
                                kept = None  # too long to keep: not checked
                            else:
                                kept.append(events)
                        yield rename(events)
                except BackendError as exc:
                    if delivered and isinstance(exc, StreamInterrupted):
                        exc.delivered, exc.retryable = True, False
                    self._record_failure(
                        decision, exc, started, result.attempts, None if delivered else suspects
                    )
                    decision = await self._next(
                        decision, exc, tried, result.attempts, deadline, suspects
                    )
                    continue
                except BaseException as exc:
                    # The caller stopped reading (or was cancelled): not the replica's fault.
                    self._record_failure(
                        decision, asyncio.CancelledError(), started, result.attempts
                    )
                    if isinstance(exc, GeneratorExit):
                        return
                    raise
                latency = (time.perf_counter() - started) * 1e3
                self._record_success(decision, latency, ttft, usage.totals(), result.attempts)
                if kept is not None:
                    answer = streamed_answer(b"".join(kept))
                    self.core.check_answer(
                        decision, "empty" if answer is None else check_chat_answer(payload, answer)
                    )
                return
        finally:
            if suspects:
                self._flush(suspects)
