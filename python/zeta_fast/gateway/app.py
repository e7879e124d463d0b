"""The OpenAI-compatible gateway: aiohttp's own server in front of the router.

Per request it does only what must be done: check the key and the rate
limit, read the body (bounded), parse it once with orjson (routing profiles
the messages), take a decision in the core, send the body on with the
aiohttp client of :mod:`zeta_fast.dispatch` (retries, fallback, hedging,
recording), and pass the backend's bytes back unparsed. Streams are relayed
event by event as they arrive (aiohttp sets TCP_NODELAY on both sides, and
each event is written and drained at once).

Routes: ``POST /v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``; ``GET /v1/models``, ``/health``, ``/metrics``;
``/dashboard`` (the page: no data in it) and ``/dashboard/data`` (what it
shows, behind the same keys as the API; see :mod:`zeta_fast.dashboard`). Every
answer carries ``x-zeta-model``, ``x-zeta-replica`` and
``x-zeta-overhead-ms`` (the gateway's own time: everything but the backend
attempts); ``x-zeta-decision: 1`` on a request (or ``decision_record`` in
the configuration) adds the decision record. With learning on, answers also
carry ``x-zeta-request-id``, and ``POST /v1/feedback`` with ``{"request_id":
..., "good": true|false}`` teaches the learned router whether the answer was
good (the latest ``feedback_window`` answers can be judged, once each).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from zeta_fast._core import Decision
from zeta_fast.backends.client import split_events
from zeta_fast.backends.errors import BackendError
from zeta_fast.dashboard import STATIC_FILES, History, live_view, static_file
from zeta_fast.exceptions import InvalidInputError, NoCandidatesError, UnsupportedRequestError
from zeta_fast.gateway import paths
from zeta_fast.gateway.auth import ApiKeys, Caller
from zeta_fast.gateway.edge import Edge
from zeta_fast.gateway.errors import anthropic_path, error_response
from zeta_fast.gateway.failures import (
    backend_error_response,
    failure_reason,
    stream_error_event,
)
from zeta_fast.gateway.metrics import GatewayCounters, MetricsPage
from zeta_fast.gateway.ratelimit_headers import BUCKET_KEY
from zeta_fast.gateway.request_id import request_id
from zeta_fast.gateway.validation import RequestShapeError, check_request
from zeta_fast.outcome_log import current_request_id
from zeta_fast.profiling import profiled_shape
from zeta_fast.request_features import needs_of
from zeta_fast.routed import Attempt, backend_time_ms
from zeta_fast.router import Router
from zeta_fast.signals import Conversations, Judge, Shadow
from zeta_fast.signals.regeneration import caller_identity

__all__ = ["AUTO", "Gateway"]

log = logging.getLogger("zeta_fast.gateway")

#: The model name that lets the router choose.
AUTO = "auto"

_JSON = "application/json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def session_of(headers: Mapping[str, str], payload: Mapping[str, Any]) -> str | None:
    """The conversation a request belongs to, for session affinity: the
    ``x-session-id`` header, else OpenAI's ``user`` field, else Anthropic's
    ``metadata.user_id``; None when the client names none."""
    session = headers.get("x-session-id")
    if session:
        return session
    user = payload.get("user")
    if isinstance(user, str) and user:
        return user
    metadata = payload.get("metadata")
    if isinstance(metadata, dict):
        user_id = metadata.get("user_id")
        if isinstance(user_id, str) and user_id:
            return user_id
    return None


def _error(
    status: int, message: str, kind: str, code: str | None = None, *, anthropic: bool = False
) -> web.Response:
    """An error in OpenAI's shape (Anthropic's with ``anthropic``)."""
    return error_response(status, message, kind, code, anthropic=anthropic)


def _event_json(event: bytes) -> dict[str, Any]:
    start = event.find(b"data:")
    try:
        data = orjson.loads(event[start + 5 :]) if start >= 0 else None
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


class Gateway:
    """The HTTP application around one ``Router``.

    Build it inside the event loop that will serve it (``app()`` and the
    dispatcher bind to that loop); ``zeta_fast.gateway.serve`` runs it.
    """

    def __init__(self, router: Router) -> None:
        self.router = router
        self.spec = router.config.gateway
        self.keys = ApiKeys(self.spec.api_keys, self.spec.rate_limit)
        self.counters = GatewayCounters()
        #: Request ids, JSON errors, CORS, rate-limit headers (see edge.py):
        #: ``serve.start`` runs it around this application.
        self.edge = Edge(self.spec, self.counters)
        self.metrics = MetricsPage(router, self.counters)
        # This loop's dispatcher, held: asking the router each time costs an
        # asyncio.get_running_loop(), which on CPython 3.11 is a getpid()
        # system call (measured: ~3 % of the gateway's CPU).
        self._dispatcher = router.dispatcher()
        self._model_ids = frozenset(m.id for m in router.config.models)
        cards: list[dict[str, Any]] = [
            {"id": AUTO, "object": "model", "created": 0, "owned_by": "zeta_fast"},
            *(
                {
                    "id": model.id,
                    "object": "model",
                    "created": 0,
                    "owned_by": "zeta_fast",
                    "capabilities": model.capabilities,
                    "replicas": [r.id for r in model.replicas],
                }
                for model in router.config.models
            ),
        ]
        self._models_body = orjson.dumps({"object": "list", "data": cards})
        self._model_cards = {str(card["id"]): orjson.dumps(card) for card in cards}
        self._ready = True
        # Answers that can still be judged, oldest first (learning on only).
        #: Responses API answer id -> (model, replica) that holds its state.
        self._responses: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._judgeable: OrderedDict[str, Decision] | None = (
            OrderedDict() if router.predictor is not None else None
        )
        self._request_ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()
        #: Model figures a second apart for the dashboard's charts (10 minutes).
        self.history = History(600)
        signals = router.config.signals
        #: Regenerations and continued conversations (chat requests).
        self.conversations: Conversations[Decision] | None = (
            Conversations(signals.regeneration.window_s, signals.regeneration.max_conversations)
            if signals.regeneration.enabled
            else None
        )
        #: The judge of sampled answers, when configured.
        self.judge: Judge | None = (
            Judge(
                signals.judge,
                router,
                self._dispatcher,
                self._dispatcher.session,
                self.counters.signals,
            )
            if signals.judge.enabled
            else None
        )
        #: Shadow comparisons with the strongest candidate, when configured.
        self.shadow: Shadow | None = (
            Shadow(signals.shadow, router, self._dispatcher, self.counters.signals, self.judge)
            if signals.shadow.enabled
            else None
        )
        self._sampler: asyncio.Task[None] | None = None
        self._static = {name: static_file(name) for name in STATIC_FILES}

    def app(self) -> web.Application:
        """The aiohttp application (its body limit is ``max_body_bytes``)."""
        app = web.Application(client_max_size=self.spec.max_body_bytes, handler_args={})
        app.router.add_post("/v1/chat/completions", self._proxy("/v1/chat/completions"))
        app.router.add_post("/v1/completions", self._proxy("/v1/completions"))
        app.router.add_post("/v1/embeddings", self._proxy("/v1/embeddings"))
        app.router.add_post("/v1/responses", self._proxy("/v1/responses"))
        app.router.add_post("/v1/messages", self._proxy("/v1/messages"))
        app.router.add_post("/v1/messages/count_tokens", self._proxy("/v1/messages/count_tokens"))
        app.router.add_get("/v1/models", self._guarded(self._list_models))
        app.router.add_get("/v1/models/{model}", self._guarded(self._get_model))
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._guarded(self._metrics))
        app.router.add_post("/v1/feedback", self._guarded(self._feedback))
        app.router.add_get("/dashboard", self._dashboard_page)
        app.router.add_get("/dashboard/static/{name}", self._dashboard_static)
        app.router.add_get("/dashboard/data", self._guarded(self._dashboard_data))
        # At startup: the aliases cover routes added after this returns too.
        app.on_startup.append(paths.on_startup)
        app.on_startup.append(self._start_sampler)
        app.on_cleanup.append(self._stop_sampler)
        return app

    # -- the dashboard ----------------------------------------------------------

    async def _dashboard_page(self, request: web.Request) -> web.Response:
        return web.Response(body=self._static["index.html"], content_type="text/html")

    async def _dashboard_static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = self._static.get(name)
        if body is None:
            raise web.HTTPNotFound()
        return web.Response(body=body, content_type=STATIC_FILES[name])

    async def _dashboard_data(self, request: web.Request) -> web.Response:
        view = live_view(
            self.router, self.history, self.router.recent, signal_events=self.counters.signals
        )
        return web.Response(
            body=orjson.dumps(view, option=orjson.OPT_SERIALIZE_NUMPY),
            content_type=_JSON,
            headers={"Cache-Control": "no-store"},
        )

    async def _start_sampler(self, app: web.Application) -> None:
        async def sample() -> None:
            while True:
                try:
                    self.history.sample(self.router)
                except Exception:  # a bad sample must not end the charts
                    log.exception("dashboard sample failed")
                await asyncio.sleep(1.0)

        self._sampler = asyncio.get_running_loop().create_task(sample())

    async def _stop_sampler(self, app: web.Application) -> None:
        if self.shadow is not None:
            await self.shadow.close()
        if self.judge is not None:
            await self.judge.close()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler

    # -- access ---------------------------------------------------------------

    def _admit(self, request: web.Request) -> tuple[Caller | None, web.Response | None]:
        authorization = request.headers.get("Authorization")
        if authorization is None and "x-api-key" in request.headers:
            # Anthropic's clients send the key in x-api-key.
            authorization = "Bearer " + request.headers["x-api-key"]
        caller = self.keys.caller(authorization)
        if caller is None:
            self.counters.refused["auth"] += 1
            response = _error(
                401,
                "invalid or missing API key",
                "authentication_error",
                anthropic=anthropic_path(request.path),
            )
            response.headers["WWW-Authenticate"] = "Bearer"
            return None, response
        if caller.bucket is not None:
            # The answer's x-ratelimit-* headers are read from it (edge.py).
            request[BUCKET_KEY] = caller.bucket
            wait_s = caller.bucket.take()
            if wait_s > 0.0:
                self.counters.refused["rate_limit"] += 1
                response = _error(
                    429,
                    f"rate limit of key {caller.name!r} exceeded",
                    "rate_limit_error",
                    anthropic=anthropic_path(request.path),
                )
                response.headers["Retry-After"] = str(max(1, int(wait_s + 0.999)))
                return None, response
        return caller, None

    def _guarded(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            _, refusal = self._admit(request)
            return refusal if refusal is not None else await handler(request)

        return guarded

    # -- the data path ----------------------------------------------------------

    def _proxy(self, path: str) -> Handler:
        route = path.removeprefix("/v1/")

        async def handle(request: web.Request) -> web.StreamResponse:
            arrived = time.perf_counter()
            self.counters.in_flight += 1
            try:
                response = await self._serve(request, path, arrived)
            finally:
                self.counters.in_flight -= 1
            self.counters.responses[route, response.status] += 1
            return response

        return handle

    async def _serve(self, request: web.Request, path: str, arrived: float) -> web.StreamResponse:
        anthropic = path.startswith("/v1/messages")
        # Every attempt of this request is logged under its id.
        current_request_id.set(request_id(request))
        caller, refusal = self._admit(request)
        if refusal is not None:
            return refusal
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.counters.refused["body_too_large"] += 1
            return _error(
                413,
                f"request body over the limit of {self.spec.max_body_bytes} bytes",
                "invalid_request_error",
                "body_too_large",
                anthropic=anthropic,
            )
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            self.counters.refused["bad_request"] += 1
            return _error(
                400, f"body is not valid JSON: {exc}", "invalid_request_error", anthropic=anthropic
            )
        if not isinstance(payload, dict):
            self.counters.refused["bad_request"] += 1
            return _error(
                400, "body must be a JSON object", "invalid_request_error", anthropic=anthropic
            )
        try:
            check_request(path, payload, body)
        except RequestShapeError as exc:
            self.counters.refused["bad_request"] += 1
            return _error(400, str(exc), "invalid_request_error", anthropic=anthropic)
        name = payload.get("model")
        replica: str | None = None
        if name is None or name == AUTO:
            model = None
        elif isinstance(name, str) and name in self._model_ids:
            model = name
        else:
            self.counters.refused["unknown_model"] += 1
            return _error(
                404,
                f"model {name!r} is not served here",
                "not_found_error" if anthropic else "invalid_request_error",
                "model_not_found",
                anthropic=anthropic,
            )
        previous = payload.get("previous_response_id")
        if isinstance(previous, str):
            # The replica that answered it holds that response's state.
            held = self._responses.get(previous)
            if held is not None:
                model, replica = held
        try:
            decision = self.router.route(
                profiled_shape(path, payload),
                model=model,
                needs=needs_of(path, payload, body),
                replica=replica,
                session=session_of(request.headers, payload),
            )
        except NoCandidatesError:
            self.counters.refused["no_replica"] += 1
            response = _error(
                503,
                "no replica can take the request now",
                "overloaded_error",
                "no_replica",
                anthropic=anthropic,
            )
            response.headers["Retry-After"] = str(self._retry_after_s(model))
            return response
        except UnsupportedRequestError as exc:
            self.counters.refused["unsupported"] += 1
            return _error(
                400, str(exc), "invalid_request_error", "unsupported_request", anthropic=anthropic
            )
        except (InvalidInputError, TypeError) as exc:
            self.counters.refused["bad_request"] += 1
            return _error(400, str(exc), "invalid_request_error", anthropic=anthropic)
        record = self.spec.decision_record or request.headers.get("x-zeta-decision") == "1"
        if payload.get("stream") is True:
            return await self._stream(request, path, payload, decision, arrived, record, caller)
        try:
            answer = await self._dispatcher.request(path, payload, decision)
        except BackendError as exc:
            self.router.core.record_overhead(
                max((time.perf_counter() - arrived) * 1e3 - exc.backend_ms, 0.0)
            )
            return backend_error_response(exc, anthropic)
        except InvalidInputError as exc:
            self.counters.refused["bad_request"] += 1
            return _error(400, str(exc), "invalid_request_error", anthropic=anthropic)
        body = answer.body
        if self.conversations is not None and path == "/v1/chat/completions":
            # Only an answer that came is one a user can regenerate; the one
            # that served it (after retries or a fallback) is its decision.
            self._observe_conversation(request, payload, answer.decision, caller)
        if path == "/v1/responses":
            self._remember_response(answer.json(), answer.decision)
        elif path == "/v1/chat/completions" and (self.judge or self.shadow) is not None:
            document = answer.json()
            if self.judge is not None:
                self.judge.consider(answer.decision, payload, document)
            if self.shadow is not None:
                self.shadow.consider(answer.decision, payload, document)
        overhead_ms = max(
            (time.perf_counter() - arrived) * 1e3 - backend_time_ms(answer.attempts), 0.0
        )
        if record:
            document = orjson.loads(body)
            document["zeta"] = self._record(answer.decision, answer.attempts, overhead_ms)
            body = orjson.dumps(document)
        response = web.Response(body=body, content_type=_JSON)
        self._headers(response, answer.decision, overhead_ms)
        self.router.core.record_overhead(overhead_ms)
        return response

    def _observe_conversation(
        self,
        request: web.Request,
        payload: dict[str, Any],
        decision: Decision,
        caller: Caller | None,
    ) -> None:
        """A regenerated answer is a bad verdict on the earlier one; a
        conversation that goes on, a weak good one (``signals.regeneration``).
        The caller is its key's name and its session or user; without keys,
        its address and session."""
        assert self.conversations is not None
        session = session_of(request.headers, payload)
        # Without keys every caller is the anonymous one: its address tells
        # clients apart.
        key = caller.name if caller is not None and caller is not self.keys.anonymous else None
        who = caller_identity(key, session, request.remote)
        verdict = self.conversations.observe(
            who, payload.get("messages"), decision, identified=session is not None
        )
        if verdict is None:
            return
        source = "regeneration" if verdict.regenerated else "continuation"
        good = not verdict.regenerated
        self.counters.signals[source, "seen"] += 1
        try:
            self.router.feedback(verdict.earlier, good, source=source)
        except InvalidInputError:
            return  # that answer already has this source's verdict
        if self.judge is not None:
            self.judge.note(verdict.earlier, source, good)

    def _remember_response(self, document: Any, decision: Decision) -> None:
        """Keeps which replica made a Responses API answer, so a follow-up
        naming it (``previous_response_id``) goes back there."""
        response_id = document.get("id") if isinstance(document, dict) else None
        if isinstance(response_id, str):
            self._responses[response_id] = (decision.model_id, decision.replica_id)
            if len(self._responses) > self.spec.feedback_window:
                self._responses.popitem(last=False)

    def _retry_after_s(self, model: str | None) -> int:
        """When to try again after a 503: the soonest a breaker of the
        request's models admits again, else the next health check, at
        least 1 s (``Retry-After`` counts whole seconds)."""
        soonest_ms: float | None = None
        models = [model] if model is not None else [m.id for m in self.router.config.models]
        for model_id in models:
            for status in self.router.core.replica_status(model_id):
                wait = status.breaker_admits_in_ms
                if status.healthy and wait > 0:
                    soonest_ms = wait if soonest_ms is None else min(soonest_ms, wait)
        if soonest_ms is None:
            health = self.router.config.dispatch.health
            soonest_ms = health.interval_s * 1e3 if health.enabled else 1000.0
        return max(1, math.ceil(soonest_ms / 1e3))

    async def _stream(
        self,
        request: web.Request,
        path: str,
        payload: dict[str, Any],
        decision: Decision,
        arrived: float,
        record: bool,
        caller: Caller | None = None,
    ) -> web.StreamResponse:
        anthropic = path.startswith("/v1/messages")
        stream = self._dispatcher.open_stream(path, payload, decision)
        events = aiter(stream)
        try:
            # Until the first event the request can still fail over, and the
            # client can still get a proper error status.
            first = await anext(events)
        except StopAsyncIteration:
            return _error(
                502,
                "the model's replica sent an empty stream",
                "upstream_error",
                anthropic=anthropic,
            )
        except BackendError as exc:
            self.router.core.record_overhead(
                max((time.perf_counter() - arrived) * 1e3 - exc.backend_ms, 0.0)
            )
            return backend_error_response(exc, anthropic)
        except InvalidInputError as exc:
            self.counters.refused["bad_request"] += 1
            return _error(400, str(exc), "invalid_request_error", anthropic=anthropic)
        if self.conversations is not None and path == "/v1/chat/completions":
            self._observe_conversation(request, payload, stream.decision, caller)
        if path == "/v1/responses":
            for event in split_events(first):
                self._remember_response(_event_json(event).get("response"), stream.decision)
        waited = (stream.ttft_ms or 0.0) + backend_time_ms(stream.attempts)
        overhead_ms = max((time.perf_counter() - arrived) * 1e3 - waited, 0.0)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        self._headers(response, stream.decision, overhead_ms)
        if record:
            response.headers["x-zeta-decision"] = orjson.dumps(
                self._record(stream.decision, stream.attempts, overhead_ms)
            ).decode()
        # Its headers leave with prepare(), before the edge sees the answer.
        self.edge.decorate(request, response)
        try:
            await response.prepare(request)
            await response.write(first)
            async for event in events:
                await response.write(event)
            await response.write_eof()
        except BackendError as exc:
            # Cut after events reached the client: nothing to retry; end the
            # stream with an error event so the client knows it is incomplete.
            self.counters.streams_cut += 1
            await response.write(stream_error_event(path, failure_reason(exc)))
        finally:
            # Also when the client went away: upstream reading stops, recorded as cancelled.
            await events.aclose()  # type: ignore[attr-defined]
            backend_ms = backend_time_ms(stream.attempts)
            self.router.core.record_overhead(
                max((time.perf_counter() - arrived) * 1e3 - backend_ms, 0.0)
            )
        return response

    def _headers(
        self, response: web.StreamResponse, decision: Decision, overhead_ms: float
    ) -> None:
        headers = response.headers
        headers["x-zeta-model"] = decision.model_id
        headers["x-zeta-replica"] = decision.replica_id
        headers["x-zeta-overhead-ms"] = f"{overhead_ms:.3f}"
        judgeable = self._judgeable
        if judgeable is not None and decision.learned_category is not None:
            request_id = f"{self._id_prefix}-{next(self._request_ids)}"
            judgeable[request_id] = decision
            if len(judgeable) > self.spec.feedback_window:
                judgeable.popitem(last=False)
            headers["x-zeta-request-id"] = request_id

    async def _feedback(self, request: web.Request) -> web.Response:
        if self._judgeable is None:
            return _error(404, "learning is off: no feedback is taken", "invalid_request_error")
        try:
            payload = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _error(400, f"body is not valid JSON: {exc}", "invalid_request_error")
        request_id = payload.get("request_id") if isinstance(payload, dict) else None
        good = payload.get("good") if isinstance(payload, dict) else None
        if not isinstance(request_id, str) or not isinstance(good, bool):
            return _error(
                400,
                'body must be {"request_id": "<x-zeta-request-id>", "good": true|false}',
                "invalid_request_error",
            )
        decision = self._judgeable.pop(request_id, None)
        if decision is None:
            return _error(
                404,
                f"request_id {request_id!r} is unknown, already judged or too old",
                "invalid_request_error",
                "unknown_request_id",
            )
        learned = self.router.feedback(decision, good)
        return web.json_response({"request_id": request_id, "learned": learned})

    @staticmethod
    def _record(decision: Decision, attempts: list[Attempt], overhead_ms: float) -> dict[str, Any]:
        return {
            "decision": decision.to_dict(),
            "attempts": [
                {
                    "model": a.model_id,
                    "replica": a.replica_id,
                    "outcome": a.kind,
                    "latency_ms": round(a.latency_ms, 3),
                    "hedge": a.hedge,
                }
                for a in attempts
            ],
            "overhead_ms": round(overhead_ms, 3),
        }

    # -- the rest ---------------------------------------------------------------

    async def _list_models(self, request: web.Request) -> web.Response:
        return web.Response(body=self._models_body, content_type=_JSON)

    async def _get_model(self, request: web.Request) -> web.Response:
        card = self._model_cards.get(request.match_info["model"])
        if card is None:
            return _error(
                404,
                f"model {request.match_info['model']!r} is not served here",
                "invalid_request_error",
                "model_not_found",
            )
        return web.Response(body=card, content_type=_JSON)

    async def _metrics(self, request: web.Request) -> web.Response:
        # Rendering reads every replica's counters: off the loop's hot path
        # only in that it is on demand; it takes ~1 ms for a dozen replicas.
        return web.Response(
            body=self.metrics.render(),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    async def _health(self, request: web.Request) -> web.Response:
        """200 while every model has a replica it can route to, 200
        "degraded" while some do, 503 when none does or while shutting down."""
        models: dict[str, dict[str, Any]] = {}
        for model in self.router.config.models:
            statuses = self.router.core.replica_status(model.id)
            usable = [s.replica_id for s in statuses if s.healthy and s.breaker != "open"]
            models[model.id] = {"replicas": len(statuses), "usable": usable}
        serving = sum(1 for m in models.values() if m["usable"])
        if not self._ready or serving == 0:
            status, code = "down", 503
        elif serving < len(models):
            status, code = "degraded", 200
        else:
            status, code = "ok", 200
        body = orjson.dumps({"status": status, "models": models})
        return web.Response(status=code, body=body, content_type=_JSON)

    def draining(self) -> None:
        """Marks the gateway as shutting down (``/health`` answers 503)."""
        self._ready = False
