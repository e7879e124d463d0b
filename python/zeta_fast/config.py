"""The router's configuration: models, their replicas, and request contexts.

Read from YAML, TOML or JSON and validated as a whole; every error names the
path of the bad value (``models[2].replicas[0].url``) and the value::

    scoring:                      # AdaptiveConfig fields, optional
      max_acceptable_latency_ms: 800
    window:                       # WindowConfig fields, optional
      buckets: 60
    replica_policy: power_of_two  # or least_loaded, round_robin, cache_aware
    model_ordering: spread        # or by_score (strictly best score first)
    state_path: /var/lib/zeta/tracker.snapshot  # learned state; a per-user default when unset
    contexts:                     # named request contexts, optional
      interactive:
        complexity_ranges:        # per model, overriding its own range
          reasoner-14b: [0.6, 1.0]
    models:
      - id: coder-7b
        capabilities: {code: 90, chat: 70}   # 0..100 per task type
        complexity_range: [0.0, 0.6]         # the requests it suits
        cost_per_1k_tokens: 0.0002
        context_window: 8192                 # tokens; a prompt too long goes to a longer one
        fallbacks: [reasoner-14b]            # tried, in order, when it fails
        replicas:
          - id: coder-7b-a
            url: http://127.0.0.1:8001
            backend: llamacpp                # or vllm
            max_concurrency: 4               # 0 = unlimited
            timeouts: {total_s: 30}          # overrides dispatch.timeouts
    dispatch:                     # retries, timeouts, breakers, hedging (all optional)
      max_attempts: 3
      timeouts: {connect_s: 2, first_byte_s: 30, total_s: 120}
      breaker: {failure_threshold: 5, cooldown_s: 5, success_threshold: 2}
    gateway:                      # `zeta-fast serve` (all optional)
      host: 127.0.0.1
      port: 8080
      max_body_bytes: 4194304
      header_timeout_s: 10        # a request's head must arrive within it (slowloris)
      body_timeout_s: 30          # and its body within this after the head
      cors_origins: [https://app.example.com]   # browser apps; none: no CORS
      api_keys:                   # none: no authentication
        - name: team-a            # shown in metrics, never the key
          sha256: 9f86d0...       # `zeta-fast hash-key` prints it
          rate_limit: {per_second: 50, burst: 100}

A model serves the task types it has a capability for; among those, the ones
whose complexity range (in the request's context) contains the request's
complexity are the candidates, and all capable models when none does.

Size: one file because the pydantic models form one tree validated as a whole
(cross-field rules need the whole document), and its error wording lives once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AnyUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from zeta_fast._core import (
    MODEL_ORDERINGS,
    REPLICA_POLICIES,
    REQUEST_FEATURES,
    VERDICT_SOURCES,
    AdaptiveConfig,
    LearningSettings,
    ResilienceSettings,
    WindowConfig,
)
from zeta_fast.exceptions import ConfigError
from zeta_fast.redact import (
    basic_authorization,
    is_secret_name,
    redact_text,
    redact_url,
    split_userinfo,
    url_secrets,
)
from zeta_fast.scoring_file import load_document

__all__ = [
    "AlertRuleSpec",
    "AlertsSpec",
    "ApiKeySpec",
    "BreakerSpec",
    "ContextSpec",
    "CostSpec",
    "DispatchSpec",
    "GatewaySpec",
    "HealthSpec",
    "HedgeSpec",
    "LearningSpec",
    "ModelSpec",
    "OutcomeLogSpec",
    "RateLimitSpec",
    "ReplicaAdaptSpec",
    "ReplicaSpec",
    "ReplicaTimeoutSpec",
    "RetryBudgetSpec",
    "RouterConfig",
    "SharedStateSpec",
    "ThresholdRuleSpec",
    "TimeoutSpec",
    "TrendRuleSpec",
    "WebhookSpec",
    "load_router_config",
    "parse_router_config",
]

TASK_TYPES = ("code", "reasoning", "chat", "knowledge", "embedding")


def _refuse_bool(value: Any) -> Any:
    # pydantic's lax mode reads True as 1, and YAML reads yes/no/on/off as
    # booleans: `port: yes` would quietly become port 1.
    if isinstance(value, bool):
        raise PydanticCustomError(
            "bool_for_number",
            "Input should be a number, not a boolean (YAML reads yes, no, on and off as booleans)",
        )
    return value


def _takes_number(annotation: Any) -> bool:
    """Whether a field is an int or a float (maybe Annotated, maybe optional)."""
    if get_origin(annotation) is Annotated:
        return _takes_number(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        return any(_takes_number(arg) for arg in get_args(annotation))
    return annotation in (int, float)


Capability = Annotated[
    float, BeforeValidator(_refuse_bool), Field(ge=0.0, le=100.0, allow_inf_nan=False)
]
Complexity = Annotated[
    float, BeforeValidator(_refuse_bool), Field(ge=0.0, le=1.0, allow_inf_nan=False)
]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/@+-]+$")]


class _Frozen(BaseModel):
    # hide_input: a ValidationError's text would quote the values it got,
    # secrets too (parse_router_config words its own, without them).
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False, hide_input_in_errors=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # Any int or float field of any section; numbers inside a field's
        # list or mapping (capabilities, ranges) refuse one through their type.
        name = info.field_name
        if isinstance(value, bool) and name and _takes_number(cls.model_fields[name].annotation):
            return _refuse_bool(value)
        return value


def _credentials_apart(data: Any) -> Any:
    """Moves the ``user:password@`` of ``data["url"]`` into ``username``
    and ``password`` before validation: the URL the rest of the router
    sees, names in errors and logs, and hands to its HTTP client, has none."""
    if not isinstance(data, dict):
        return data
    raw = data.get("url")
    if not isinstance(raw, str | AnyUrl):
        return data
    try:
        bare, user, password = split_userinfo(str(raw))
    except ValueError:
        return data  # not a URL: its own validation says so
    if user is None:
        return data
    if data.get("username") is not None or data.get("password") is not None:
        raise ValueError("credentials both in url and in username/password: give them once")
    return {**data, "url": bare, "username": user or None, "password": password}


Seconds = Annotated[float, Field(gt=0.0, le=86_400.0, allow_inf_nan=False)]

_ORIGIN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#\s@]+")


class TimeoutSpec(_Frozen):
    """Timeouts of one request attempt, in seconds (``None``: no limit).

    ``connect_s`` bounds opening a connection, ``first_byte_s`` the wait for
    the response to start (headers, or a stream's first event), ``total_s``
    the whole attempt, a stream included.
    """

    connect_s: Seconds | None = 2.0
    first_byte_s: Seconds | None = 60.0
    total_s: Seconds | None = 300.0


class ReplicaTimeoutSpec(_Frozen):
    """Per-replica overrides of ``dispatch.timeouts``; unset fields inherit."""

    connect_s: Seconds | None = None
    first_byte_s: Seconds | None = None
    total_s: Seconds | None = None


class ReplicaSpec(_Frozen):
    """One serving endpoint of a model."""

    id: Name
    url: HttpUrl
    backend: Literal["llamacpp", "vllm", "openai"] = "llamacpp"
    max_concurrency: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    timeouts: ReplicaTimeoutSpec = Field(default_factory=ReplicaTimeoutSpec)
    api_key: str | None = Field(default=None, repr=False)
    #: HTTP Basic credentials of its requests (health checks too): given
    #: here, or as ``user:password@`` in ``url``, which then keeps none.
    username: str | None = Field(default=None, repr=False)
    password: str | None = Field(default=None, repr=False)
    #: The model name this replica's server expects in request bodies (vLLM
    #: checks it against ``--served-model-name``); the model's id when unset.
    #: Answers always name the router's model id.
    served_model_name: Name | None = None

    _userinfo = model_validator(mode="before")(_credentials_apart)

    @field_validator("url")
    @classmethod
    def _no_api_path(cls, value: HttpUrl) -> HttpUrl:
        # The backend client appends the API's own paths to this URL
        # (/v1/chat/completions, /v1/embeddings, /health, /metrics): one
        # ending in /v1 would send every request to /v1/v1/...
        if (value.path or "").rstrip("/").endswith("/v1"):
            raise ValueError(
                "must not end in /v1: the router appends /v1/chat/completions (and the "
                "other API paths) itself, so give the server's root: drop the /v1"
            )
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> ReplicaSpec:
        if self.api_key and (self.username is not None or self.password is not None):
            raise ValueError("set api_key (Bearer) or a user and password (Basic), not both")
        return self

    def authorization(self) -> str | None:
        """The ``Authorization`` header of its requests: ``Bearer`` with
        ``api_key``, ``Basic`` with ``username`` and ``password``, or None."""
        if self.api_key:
            return f"Bearer {self.api_key}"
        return basic_authorization(self.username, self.password)


# The defaults of the settings the core takes are the core's: read once here
# from its own types, so they are written in one place.
_RESILIENCE: dict[str, Any] = ResilienceSettings().to_dict()
_LEARNING: dict[str, Any] = LearningSettings().to_dict()


class BreakerSpec(_Frozen):
    """Per-replica circuit breaker: opens after ``failure_threshold``
    consecutive failures, lets one probe through after ``cooldown_s``, closes
    after ``success_threshold`` successful probes."""

    failure_threshold: Annotated[int, Field(ge=1, le=1023)] = _RESILIENCE["failure_threshold"]
    cooldown_s: Annotated[float, Field(ge=0.0, le=86_400.0, allow_inf_nan=False)] = (
        _RESILIENCE["cooldown_ms"] / 1000
    )
    success_threshold: Annotated[int, Field(ge=1, le=1023)] = _RESILIENCE["success_threshold"]


class RetryBudgetSpec(_Frozen):
    """Retries allowed: ``ratio`` of the traffic plus ``min_per_second``."""

    ratio: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = _RESILIENCE["retry_ratio"]
    min_per_second: Annotated[float, Field(ge=0.0, le=1e6, allow_inf_nan=False)] = _RESILIENCE[
        "retry_min_per_second"
    ]


class HedgeSpec(_Frozen):
    """Hedged requests: a second copy to another replica when the first has
    not answered within its replica's recent p95 latency (at least
    ``min_delay_ms``), at most ``max_extra`` of the traffic."""

    enabled: bool = False
    max_extra: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = _RESILIENCE[
        "hedge_ratio"
    ]
    min_delay_ms: Annotated[float, Field(ge=0.0, le=600_000.0, allow_inf_nan=False)] = 10.0


class HealthSpec(_Frozen):
    """Background checks: each replica's health endpoint every ``interval_s``
    (down after ``unhealthy_after`` failures in a row, up at the first pass),
    and the engine's own load scraped from ``/metrics`` every
    ``scrape_interval_s`` (a scrape older than ``load_ttl_s`` is ignored)."""

    enabled: bool = True
    interval_s: Seconds = 2.0
    timeout_s: Seconds = 1.0
    unhealthy_after: Annotated[int, Field(ge=1, le=1000)] = 2
    scrape_interval_s: Seconds = 1.0
    load_ttl_s: Seconds = _RESILIENCE["engine_load_ttl_ms"] / 1000


class ReplicaAdaptSpec(_Frozen):
    """Choosing among a model's replicas by how each has done lately: one
    whose recent failure share is ``fail_margin`` above the best replica's,
    or whose recent latency is ``latency_factor`` times the median
    replica's, gets only ``explore`` of the requests (probes) until it is
    seen to be well again. ``alpha`` is the newest outcome's weight."""

    enabled: bool = _RESILIENCE["replica_adaptation"]
    alpha: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = _RESILIENCE[
        "replica_alpha"
    ]
    fail_margin: Annotated[float, Field(gt=0.0, le=1.0, allow_inf_nan=False)] = _RESILIENCE[
        "replica_fail_margin"
    ]
    latency_factor: Annotated[float, Field(ge=0.0, le=1000.0, allow_inf_nan=False)] = _RESILIENCE[
        "replica_latency_factor"
    ]
    explore: Annotated[float, Field(ge=0.0, le=0.5, allow_inf_nan=False)] = _RESILIENCE[
        "replica_explore"
    ]

    @field_validator("latency_factor")
    @classmethod
    def _factor(cls, value: float) -> float:
        if 0.0 < value <= 1.0:
            raise ValueError(f"must be 0 (off) or > 1, got {value}")
        return value


class PrefixCacheSpec(_Frozen):
    """The ``cache_aware`` replica policy: each conversation goes to the
    replica that holds its prompt prefix in the engine's KV cache, within a
    bound on load. The rendered prompt is hashed in ``block_bytes`` blocks;
    each model keeps at most ``max_entries`` (block, replica) entries
    (about 20 bytes each; the oldest forgotten first) and ``max_sessions``
    sessions, each bound to its replica ``session_ttl_s`` after its last
    request. No replica takes a request while its requests would exceed
    ``load_factor`` times the mean, rounded up, plus ``load_slack``."""

    block_bytes: Annotated[int, Field(ge=16, le=65_536)] = _RESILIENCE["prefix_block_bytes"]
    max_entries: Annotated[int, Field(ge=2, le=1 << 32)] = _RESILIENCE["prefix_max_entries"]
    load_factor: Annotated[float, Field(ge=1.0, le=100.0, allow_inf_nan=False)] = _RESILIENCE[
        "prefix_load_factor"
    ]
    load_slack: Annotated[int, Field(ge=0, le=1 << 20)] = _RESILIENCE["prefix_load_slack"]
    min_match_blocks: Annotated[int, Field(ge=1, le=1 << 20)] = _RESILIENCE[
        "prefix_min_match_blocks"
    ]
    session_ttl_s: Annotated[float, Field(ge=0.0, le=7 * 86_400.0, allow_inf_nan=False)] = (
        _RESILIENCE["session_ttl_ms"] / 1000
    )
    max_sessions: Annotated[int, Field(ge=2, le=1 << 32)] = _RESILIENCE["max_sessions"]


class DispatchSpec(_Frozen):
    """How requests are sent: attempts, timeouts, retries, breakers, hedging."""

    max_attempts: Annotated[int, Field(ge=1, le=20)] = 3
    max_total_s: Seconds = 600.0
    timeouts: TimeoutSpec = Field(default_factory=TimeoutSpec)
    backoff_base_ms: Annotated[float, Field(ge=0.0, le=60_000.0, allow_inf_nan=False)] = (
        _RESILIENCE["backoff_base_ms"]
    )
    backoff_max_ms: Annotated[float, Field(ge=0.0, le=600_000.0, allow_inf_nan=False)] = (
        _RESILIENCE["backoff_max_ms"]
    )
    retry_budget: RetryBudgetSpec = Field(default_factory=RetryBudgetSpec)
    breaker: BreakerSpec = Field(default_factory=BreakerSpec)
    hedge: HedgeSpec = Field(default_factory=HedgeSpec)
    health: HealthSpec = Field(default_factory=HealthSpec)
    replicas: ReplicaAdaptSpec = Field(default_factory=ReplicaAdaptSpec)
    #: How long a model that refused a kind of request (images, embeddings,
    #: a route its server lacks) is skipped for such requests before it is
    #: tried again (a server may be redeployed with the feature).
    unsupported_ttl_s: Annotated[float, Field(ge=0.0, le=86_400.0, allow_inf_nan=False)] = 600.0

    @model_validator(mode="after")
    def _backoff_ordered(self) -> DispatchSpec:
        if self.backoff_max_ms < self.backoff_base_ms:
            raise ValueError(
                f"backoff_max_ms must be >= backoff_base_ms, got {self.backoff_max_ms}"
            )
        return self

    def resilience(
        self, relative_latency_factor: float = 0.0, prefix: PrefixCacheSpec | None = None
    ) -> ResilienceSettings:
        """The native core's dispatch settings (with the scoring's relative
        latency rule, which the core applies among the candidates, and the
        ``cache_aware`` policy's settings)."""
        prefix = prefix or PrefixCacheSpec()
        return ResilienceSettings(
            failure_threshold=self.breaker.failure_threshold,
            cooldown_ms=round(self.breaker.cooldown_s * 1000),
            success_threshold=self.breaker.success_threshold,
            retry_ratio=self.retry_budget.ratio,
            retry_min_per_second=self.retry_budget.min_per_second,
            hedge_ratio=self.hedge.max_extra,
            backoff_base_ms=self.backoff_base_ms,
            backoff_max_ms=self.backoff_max_ms,
            engine_load_ttl_ms=round(self.health.load_ttl_s * 1000),
            replica_adaptation=int(self.replicas.enabled),
            replica_alpha=self.replicas.alpha,
            replica_fail_margin=self.replicas.fail_margin,
            replica_latency_factor=self.replicas.latency_factor,
            replica_explore=self.replicas.explore,
            relative_latency_factor=relative_latency_factor,
            prefix_block_bytes=prefix.block_bytes,
            prefix_max_entries=prefix.max_entries,
            prefix_load_factor=prefix.load_factor,
            prefix_load_slack=prefix.load_slack,
            prefix_min_match_blocks=prefix.min_match_blocks,
            session_ttl_ms=round(prefix.session_ttl_s * 1000),
            max_sessions=prefix.max_sessions,
        )


class RateLimitSpec(_Frozen):
    """A token bucket: ``per_second`` requests on average, bursts of ``burst``."""

    per_second: Annotated[float, Field(gt=0.0, le=1e9, allow_inf_nan=False)]
    burst: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None

    @property
    def capacity(self) -> float:
        """The bucket's size: ``burst``, else one second's worth (at least 1)."""
        return float(self.burst) if self.burst is not None else max(self.per_second, 1.0)


class ApiKeySpec(_Frozen):
    """One API key, stored as the hex SHA-256 of the key (never the key)."""

    name: Name
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] = Field(repr=False)
    rate_limit: RateLimitSpec | None = None


class GatewaySpec(_Frozen):
    """The OpenAI-compatible gateway (``zeta-fast serve``)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    #: Larger request bodies get 413 before they are read.
    max_body_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 4 << 20
    #: Keys allowed in; none configured: no authentication.
    api_keys: list[ApiKeySpec] = Field(default_factory=list)
    #: The limit of every key without its own (and of all traffic without keys).
    rate_limit: RateLimitSpec | None = None
    #: Add the decision record to every response (a client can ask per
    #: request with the header ``x-zeta-decision: 1``).
    decision_record: bool = False
    #: How long a shutdown waits for requests in flight.
    shutdown_timeout_s: Seconds = 30.0
    #: One line per request on the ``aiohttp.access`` logger (off: it costs ~10 us).
    access_log: bool = False
    #: With learning on: answers carry ``x-zeta-request-id`` and this many of
    #: the latest can still be judged with ``POST /v1/feedback``.
    feedback_window: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    #: Seconds a client has to send a request's head (request line and
    #: headers), from the connection's opening, or on a kept-alive
    #: connection from the head's first byte (idle time between requests
    #: is not counted). A slower one (slowloris) is closed, with a 408 when
    #: it sent part of a head.
    header_timeout_s: Annotated[float, Field(ge=0.01, le=3600.0, allow_inf_nan=False)] = 10.0
    #: Seconds a request's body has to arrive, from the end of its head; a
    #: slower one gets a 408 and its connection is closed. The default
    #: takes the largest body (``max_body_bytes``) at ~140 KB/s.
    body_timeout_s: Annotated[float, Field(ge=0.01, le=3600.0, allow_inf_nan=False)] = 30.0
    #: Origins browser apps may call the gateway from
    #: (``https://app.example.com``, a port when not the scheme's; ``"*"``:
    #: any). Empty: no CORS headers at all, and preflights get a 405.
    cors_origins: list[str] = Field(default_factory=list)

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            # A browser's Origin never has a path: one configured with a
            # trailing slash would never match.
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: expected scheme://host[:port]"
                    ' without a path, or "*"'
                )
        return value

    @model_validator(mode="after")
    def _unique_keys(self) -> GatewaySpec:
        names = [k.name for k in self.api_keys]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate api key name(s) {', '.join(duplicates)}")
        digests = [k.sha256.lower() for k in self.api_keys]
        if len(set(digests)) != len(digests):
            raise ValueError("two api keys have the same sha256")
        return self


class OutcomeLogSpec(_Frozen):
    """The outcome log (SQLite): on by default beside the tracker's snapshot."""

    enabled: bool = True
    #: The database file; by default ``outcomes.sqlite`` beside the
    #: snapshot (no log when the tracker does not persist and no path is set).
    path: str | None = None
    retention_days: Annotated[float, Field(gt=0.0, le=36_500.0, allow_inf_nan=False)] | None = 30.0
    max_pending: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000


class StructuralSignalSpec(_Frozen):
    """Structural checks of every answer (``zeta_fast.answer_checks``): JSON
    that does not parse or match the schema asked for, malformed tool calls,
    empty, looping or cut-short answers. Free: on by default."""

    enabled: bool = True


class RegenerationSignalSpec(_Frozen):
    """A user regenerating an answer (the same conversation's last user turn
    sent again by the same caller within ``window_s``) is a bad verdict on
    the earlier answer; a conversation that goes on (the answer kept, a new
    user turn after it) a weak good one. The gateway keys conversations by
    a hash of their messages and the caller, never the text itself."""

    enabled: bool = True
    window_s: Seconds = 300.0
    #: Conversations remembered at most (the oldest are forgotten first).
    max_conversations: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000


#: What the judge is asked (``{question}`` and ``{answer}`` are filled in).
DEFAULT_RUBRIC = (
    "You grade an AI assistant's answer. Reply with one word, GOOD or BAD, then a "
    "confidence from 0 to 1.\nGOOD: correct, on topic and complete for the question. "
    "BAD: wrong, off topic, refusing without cause, or incomplete.\n\n"
    "Question:\n{question}\n\nAnswer:\n{answer}\n\nVerdict:"
)


#: What the judge is asked in a shadow comparison.
DEFAULT_COMPARE_RUBRIC = (
    "Two AI assistants answered the same question. The reference answer comes from a "
    "stronger model. Is the candidate answer as good as the reference for the user: as "
    "correct and as complete? Reply with one word, GOOD (as good) or BAD (worse), then a "
    "confidence from 0 to 1.\n\nQuestion:\n{question}\n\nReference answer:\n"
    "{reference}\n\nCandidate answer:\n{answer}\n\nVerdict:"
)


class JudgeSignalSpec(_Frozen):
    """A model that grades a sampled share of answers, off the request path:
    one of the router's own (``model``) or any OpenAI-compatible endpoint
    (``url``, with ``served_model_name`` and ``api_key``). A verdict it
    cannot parse is no label."""

    enabled: bool = False
    model: Name | None = None
    url: HttpUrl | None = None
    served_model_name: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    #: Share of answers graded.
    sample: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.05
    #: Tokens (prompt estimate + max_tokens) the judge may use per minute;
    #: a sampled answer past the budget is not graded.
    tokens_per_minute: Annotated[int, Field(ge=1, le=1_000_000_000)] = 20_000
    max_tokens: Annotated[int, Field(ge=1, le=4096)] = 8
    #: Characters of the question and of the answer shown to the judge.
    max_chars: Annotated[int, Field(ge=100, le=1_000_000)] = 4_000
    rubric: Annotated[str, Field(min_length=1)] = DEFAULT_RUBRIC
    #: Asked in shadow comparisons (``{question}``, ``{reference}``, ``{answer}``).
    compare_rubric: Annotated[str, Field(min_length=1)] = DEFAULT_COMPARE_RUBRIC
    timeout_s: Seconds = 30.0

    @model_validator(mode="after")
    def _one_target(self) -> JudgeSignalSpec:
        if self.enabled and (self.model is None) == (self.url is None):
            raise ValueError("signals.judge needs exactly one of model or url")
        if "{answer}" not in self.rubric:
            raise ValueError("signals.judge.rubric must contain {answer}")
        return self


class ShadowSignalSpec(_Frozen):
    """Shadow comparisons: for a sampled, budgeted share of the chat requests
    a cheaper model answered, the strongest candidate answers too (off the
    request path) and agreement (short answers) or the judge says whether
    the cheaper answer was enough."""

    enabled: bool = False
    sample: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.02
    #: Tokens the shadow requests may use per minute (prompt estimate + max_tokens).
    tokens_per_minute: Annotated[int, Field(ge=1, le=1_000_000_000)] = 20_000
    #: Answers up to this long (normalised) are compared by agreement.
    max_agreement_chars: Annotated[int, Field(ge=1, le=10_000)] = 32


class SignalsSpec(_Frozen):
    """The quality signals the router collects itself (see docs/signals.md)."""

    structural: StructuralSignalSpec = Field(default_factory=StructuralSignalSpec)
    regeneration: RegenerationSignalSpec = Field(default_factory=RegenerationSignalSpec)
    judge: JudgeSignalSpec = Field(default_factory=JudgeSignalSpec)
    shadow: ShadowSignalSpec = Field(default_factory=ShadowSignalSpec)

    def any_enabled(self) -> bool:
        """Whether any source is on (the gateway then learns by default)."""
        return (
            self.structural.enabled
            or self.regeneration.enabled
            or self.judge.enabled
            or self.shadow.enabled
        )


class LearningSpec(_Frozen):
    """The learned router (see ``zeta_fast.learning``): per-request success
    predictions from local text features become the capability term.

    The predictor learns quality verdicts, ``Router.feedback(decision,
    good)``. With ``learn_from_outcomes`` it also learns recorded outcomes:
    ``Router.record(decision, success, ...)`` and, from dispatch, an answer
    (good) or a prompt too long for the model (bad); replica faults
    (timeouts, 5xx, refused connections) never teach it. That only helps
    when an answer's arrival says something about its quality."""

    #: None (the default): on in the gateway whenever a signal source is on
    #: (``signals``: structural checks and regenerations are by default),
    #: off in a library ``Router`` (its answers do not pass through it).
    enabled: bool | None = None
    #: How much each verdict source counts (its weight times the verdict's
    #: confidence; 0 stops a source's learning, its verdicts still counted):
    #: the core's defaults for the sources not named.
    source_weights: dict[str, Annotated[float, Field(ge=0.0, le=10.0, allow_inf_nan=False)]] = (
        Field(default_factory=dict)
    )
    #: Outcomes of a model before its learned capability fully replaces the
    #: configured one (a linear ramp from the first).
    min_outcomes: Annotated[int, Field(ge=1, le=10_000_000)] = _LEARNING["min_outcomes"]
    #: Share of requests sent to a random other candidate (bandit exploration).
    explore: Annotated[float, Field(ge=0.0, le=0.5, allow_inf_nan=False)] = _LEARNING["explore"]
    learn_from_outcomes: bool = _LEARNING["learn_from_outcomes"]
    learning_rate: Annotated[float, Field(gt=0.0, le=100.0, allow_inf_nan=False)] = _LEARNING[
        "learning_rate"
    ]
    l2: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = _LEARNING["l2"]
    prior_weight: Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)] = _LEARNING[
        "prior_weight"
    ]
    prior_strength: Annotated[float, Field(gt=0.0, le=1e6, allow_inf_nan=False)] = _LEARNING[
        "prior_strength"
    ]
    #: Where the learned state is saved (on close and every
    #: ``save_interval_s``); by default ``learned.bin`` beside the snapshot.
    state_path: str | None = None
    save_interval_s: Annotated[float, Field(gt=0.0, le=86_400.0, allow_inf_nan=False)] = 10.0

    def predictor_params(self) -> dict[str, float]:
        """The predictor's own settings (``OutcomePredictor`` keywords)."""
        return {
            "learning_rate": self.learning_rate,
            "l2": self.l2,
            "prior_weight": self.prior_weight,
            "prior_strength": self.prior_strength,
        }

    def settings(self) -> LearningSettings:
        """The settings the core takes, validated by the core's own type."""
        return LearningSettings(
            min_outcomes=self.min_outcomes,
            explore=self.explore,
            learn_from_outcomes=self.learn_from_outcomes,
            source_weights=self.source_weights,
            **self.predictor_params(),
        )

    @field_validator("source_weights")
    @classmethod
    def _known_sources(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(VERDICT_SOURCES))
        if unknown:
            known = ", ".join(VERDICT_SOURCES)
            raise ValueError(f"unknown verdict source(s) {', '.join(unknown)}; known: {known}")
        return value


class CostSpec(_Frozen):
    """The cost/quality knob: each model's expected cost for a request
    (``cost_per_1k_tokens`` x (estimated prompt + ``expected_completion_tokens``))
    is taken off its capability, ``willingness_to_pay`` dollars costing the
    full 100 points. Unset: cost plays no part."""

    willingness_to_pay: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] | None = None
    expected_completion_tokens: Annotated[int, Field(ge=0, le=10_000_000)] = 256


class SharedStateSpec(_Frozen):
    """Several router instances routing as one through Redis (see
    ``zeta_fast.shared``): windows, in-flight load, learned weights and
    alert cool-downs are shared; the request path never waits on Redis."""

    enabled: bool = False
    #: ``redis://``, ``rediss://`` (TLS) or ``unix://`` address of the Redis
    #: server; with ``sentinels``, only its database number and password count.
    #: Its ``user:password@`` is kept apart, in ``username`` and ``password``.
    url: str = "redis://127.0.0.1:6379/0"
    username: str | None = Field(default=None, repr=False)
    password: str | None = Field(default=None, repr=False)
    #: Redis Sentinel instead of a fixed server: ``host:port`` of each
    #: sentinel, and the name of the monitored master (failover is followed).
    sentinels: list[str] = Field(default_factory=list)
    sentinel_master: str = "mymaster"
    #: ``url`` names one node of a Redis Cluster (the others are discovered).
    cluster: bool = False

    @model_validator(mode="after")
    def _one_topology(self) -> SharedStateSpec:
        if self.cluster and self.sentinels:
            raise ValueError("choose sentinels or cluster, not both")
        return self

    _userinfo = model_validator(mode="before")(_credentials_apart)

    @field_validator("sentinels")
    @classmethod
    def _sentinel_addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            host, _, port = entry.rpartition(":")
            # Never quoted back: a password may have been put here.
            if not host or not port.isdigit() or "@" in entry:
                raise ValueError("each must be host:port (a password goes in url, not here)")
        return value

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # The URL without a secret query value (redis-py reads password= there).
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "url" else value)

    #: Instances with the same namespace (and window) route as one.
    namespace: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x1f\s]+$")] = "zeta"
    #: Unique per instance; by default host-pid-random.
    instance_id: (
        Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x1f\s]+$")] | None
    ) = None
    #: How often each instance publishes its state and merges the others'.
    interval_s: Annotated[float, Field(gt=0.0, le=60.0, allow_inf_nan=False)] = 0.25
    #: An instance silent this long no longer counts for in-flight load.
    stale_after_s: Annotated[float, Field(gt=0.0, le=3600.0, allow_inf_nan=False)] = 2.0
    #: How often learned weights are averaged across instances.
    learned_interval_s: Annotated[float, Field(gt=0.0, le=3600.0, allow_inf_nan=False)] = 5.0
    #: Redis socket timeouts (the sync thread's, never a request's).
    timeout_s: Annotated[float, Field(gt=0.0, le=60.0, allow_inf_nan=False)] = 0.5


class TrendRuleSpec(_Frozen):
    """Alert on a detected change of a model's success or latency."""

    metric: Literal["success", "latency"]
    kind: Literal["sudden", "drift", "any"] = "any"


class ThresholdRuleSpec(_Frozen):
    """Alert while a model's window figure crosses a bound."""

    metric: Literal["success_rate", "p95_latency_ms", "mean_latency_ms"]
    below: Annotated[float, Field(allow_inf_nan=False)] | None = None
    above: Annotated[float, Field(allow_inf_nan=False)] | None = None
    min_requests: Annotated[int, Field(ge=1, le=1_000_000)] = 20

    @model_validator(mode="after")
    def _one_bound(self) -> ThresholdRuleSpec:
        if (self.below is None) == (self.above is None):
            raise ValueError("set exactly one of below and above")
        return self


class AlertRuleSpec(_Frozen):
    """One alert rule: a trend or a threshold, its severity and cool-down."""

    name: Name
    severity: Literal["info", "warning", "critical"] = "warning"
    trend: TrendRuleSpec | None = None
    threshold: ThresholdRuleSpec | None = None
    #: No second alert of this rule for the same model within this time.
    cooldown_s: Annotated[float, Field(ge=0.0, le=86_400.0, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> AlertRuleSpec:
        if (self.trend is None) == (self.threshold is None):
            raise ValueError(f"rule {self.name!r}: set exactly one of trend and threshold")
        return self


def _default_rules() -> list[AlertRuleSpec]:
    return [
        AlertRuleSpec(
            name="failures-rising", severity="critical", trend=TrendRuleSpec(metric="success")
        ),
        AlertRuleSpec(
            name="latency-rising", severity="warning", trend=TrendRuleSpec(metric="latency")
        ),
    ]


class WebhookSpec(_Frozen):
    """Alerts POSTed as JSON, retried with backoff."""

    #: Used as given but shown as its origin only (a receiver's token is
    #: often its path, or in its query); ``user:password@`` in it is kept
    #: apart, in ``username`` and ``password``, and sent as HTTP Basic auth.
    url: HttpUrl
    retries: Annotated[int, Field(ge=0, le=20)] = 3
    timeout_s: Seconds = 5.0
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    username: str | None = Field(default=None, repr=False)
    password: str | None = Field(default=None, repr=False)

    _userinfo = model_validator(mode="before")(_credentials_apart)

    @model_validator(mode="after")
    def _one_auth(self) -> WebhookSpec:
        basic = self.username is not None or self.password is not None
        if basic and any(name.lower() == "authorization" for name in self.headers):
            raise ValueError("set an Authorization header or a user and password, not both")
        return self

    def request_headers(self) -> dict[str, str]:
        """The headers of each POST: ``headers``, and the Basic credentials."""
        basic = basic_authorization(self.username, self.password)
        return {**self.headers, "Authorization": basic} if basic else dict(self.headers)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (redact_url(str(value), keep_path=False) if name == "url" else value)


class AlertsSpec(_Frozen):
    """Trend detection and alert rules (see ``zeta_fast.alerts``)."""

    enabled: bool = True
    rules: list[AlertRuleSpec] = Field(default_factory=_default_rules)
    #: Also watch every model x task type, so a model failing at one kind of
    #: request is flagged before the others dilute it (trend rules; a task's
    #: alert is held back while its model's own alert for the rule is recent).
    per_task: bool = True
    cooldown_s: Annotated[float, Field(ge=0.0, le=86_400.0, allow_inf_nan=False)] = 300.0
    log: bool = True
    webhook: WebhookSpec | None = None


class ModelSpec(_Frozen):
    """A model: what it is good at, the requests it suits, its replicas."""

    id: Name
    capabilities: dict[str, Capability] = Field(min_length=1)
    complexity_range: tuple[Complexity, Complexity] = (0.0, 1.0)
    cost_per_1k_tokens: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0
    context_window: Annotated[int, Field(ge=1, le=100_000_000)] | None = None
    fallbacks: list[Name] = Field(default_factory=list)
    replicas: list[ReplicaSpec] = Field(min_length=1)
    #: Request features its servers cannot serve: it is never a candidate for
    #: such requests (refusals found at run time are learned too, see
    #: ``dispatch.unsupported_ttl_s``).
    unsupported: list[str] = Field(default_factory=list)

    @field_validator("unsupported")
    @classmethod
    def _known_features(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(REQUEST_FEATURES))
        if unknown:
            raise ValueError(
                f"unknown request feature(s) {', '.join(unknown)}; "
                f"expected {', '.join(REQUEST_FEATURES)}"
            )
        return value

    @field_validator("capabilities")
    @classmethod
    def _known_tasks(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(TASK_TYPES))
        if unknown:
            raise ValueError(
                f"unknown task type(s) {', '.join(unknown)}; expected {', '.join(TASK_TYPES)}"
            )
        return value

    @field_validator("complexity_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"must be [low, high] with low <= high, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _unique_replicas(self) -> ModelSpec:
        ids = [r.id for r in self.replicas]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate replica id(s) {', '.join(duplicates)}")
        return self


class ContextSpec(_Frozen):
    """A named request context with its own complexity ranges per model."""

    complexity_ranges: dict[str, tuple[Complexity, Complexity]] = Field(default_factory=dict)


def _one_of(value: str, names: tuple[str, ...]) -> str:
    """``value`` when it is one of ``names`` (the core's policy tables)."""
    if value not in names:
        quoted = [repr(name) for name in names]
        expected = f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        # The same error type and wording as a Literal field's.
        raise PydanticCustomError(
            "literal_error", "Input should be {expected}", {"expected": expected}
        )
    return value


class RouterConfig(_Frozen):
    """The whole configuration, validated; build with ``load_router_config``."""

    models: list[ModelSpec] = Field(min_length=1)
    contexts: dict[str, ContextSpec] = Field(default_factory=dict)
    #: How a model's replica is chosen: one of ``zeta_fast._core.REPLICA_POLICIES``.
    replica_policy: str = "power_of_two"
    #: The ``cache_aware`` replica policy's prefix index and load bound.
    prefix_cache: PrefixCacheSpec = Field(default_factory=PrefixCacheSpec)
    #: The order scored models are tried in: one of ``zeta_fast._core.MODEL_ORDERINGS``.
    model_ordering: str = "spread"
    scoring: dict[str, Any] = Field(default_factory=dict)
    window: dict[str, Any] = Field(default_factory=dict)
    dispatch: DispatchSpec = Field(default_factory=DispatchSpec)
    gateway: GatewaySpec = Field(default_factory=GatewaySpec)
    #: The file the learned state (the tracker's snapshot) is kept in; the
    #: tracker's default place when unset.
    state_path: str | None = None
    outcome_log: OutcomeLogSpec = Field(default_factory=OutcomeLogSpec)
    alerts: AlertsSpec = Field(default_factory=AlertsSpec)
    learning: LearningSpec = Field(default_factory=LearningSpec)
    signals: SignalsSpec = Field(default_factory=SignalsSpec)
    cost: CostSpec = Field(default_factory=CostSpec)
    shared_state: SharedStateSpec = Field(default_factory=SharedStateSpec)
    #: Off (0) by default: only the absolute ``scoring.max_acceptable_latency_ms``.
    #: Else a model whose mean latency is this many times the median of the
    #: other candidates' (and 10 ms more) gets the high-latency penalty too.
    relative_latency_factor: Annotated[float, Field(ge=0.0, le=1000.0, allow_inf_nan=False)] = 0.0

    @field_validator("replica_policy")
    @classmethod
    def _known_replica_policy(cls, value: str) -> str:
        return _one_of(value, REPLICA_POLICIES)

    @field_validator("model_ordering")
    @classmethod
    def _known_model_ordering(cls, value: str) -> str:
        return _one_of(value, MODEL_ORDERINGS)

    @field_validator("relative_latency_factor")
    @classmethod
    def _relative(cls, value: float) -> float:
        if 0.0 < value <= 1.0:
            raise ValueError(f"must be 0 (off) or > 1, got {value}")
        return value

    def for_gateway(self) -> RouterConfig:
        """This configuration as the gateway runs it: learning on when it is
        left unset (``learning.enabled: null``) and a signal source is on."""
        if self.learning.enabled is None and self.signals.any_enabled():
            learning = self.learning.model_copy(update={"enabled": True})
            return self.model_copy(update={"learning": learning})
        return self

    @model_validator(mode="after")
    def _references(self) -> RouterConfig:
        ids = [m.id for m in self.models]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate model id(s) {', '.join(duplicates)}")
        replica_ids = [r.id for m in self.models for r in m.replicas]
        shared = sorted({i for i in replica_ids if replica_ids.count(i) > 1})
        if shared:
            raise ValueError(f"replica id(s) used by several models: {', '.join(shared)}")
        for spec in self.models:
            for target in spec.fallbacks:
                if target not in ids:
                    raise ValueError(f"{spec.id}.fallbacks names unknown model {target!r}")
                if target == spec.id:
                    raise ValueError(f"{spec.id}.fallbacks names the model itself")
        for name, context in self.contexts.items():
            for model, (low, high) in context.complexity_ranges.items():
                if model not in ids:
                    raise ValueError(
                        f"contexts.{name}.complexity_ranges names unknown model {model!r}"
                    )
                if low > high:
                    raise ValueError(
                        f"contexts.{name}.complexity_ranges.{model} must be [low, high] "
                        f"with low <= high, got {[low, high]}"
                    )
        return self

    def adaptive_config(self) -> AdaptiveConfig:
        """The scoring section as an ``AdaptiveConfig`` (defaults where omitted)."""
        try:
            return AdaptiveConfig.from_dict(self.scoring)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"scoring.{exc}") from exc

    def window_config(self) -> WindowConfig:
        """The window section as a ``WindowConfig`` (defaults where omitted)."""
        try:
            return WindowConfig.from_dict(self.window)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"window.{exc}") from exc

    def complexity_range(self, model: str, context: str | None = None) -> tuple[float, float]:
        """The range a model suits in a context (its own when not overridden)."""
        spec = next(m for m in self.models if m.id == model)
        if context is not None and context in self.contexts:
            return self.contexts[context].complexity_ranges.get(model, spec.complexity_range)
        return spec.complexity_range


def _secrets_in(value: Any) -> set[str]:
    """Every secret in raw configuration data: the values of secret fields
    (``api_key``, ``password``, ``sha256``, a ``headers`` mapping's) and
    the passwords and secret query values of URLs."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            secret = isinstance(key, str) and is_secret_name(key)
            if secret and isinstance(item, str):
                found.add(item)
            elif secret and isinstance(item, dict):
                found |= {v for v in item.values() if isinstance(v, str)}
            else:
                found |= _secrets_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= _secrets_in(item)
    elif isinstance(value, str) and ("@" in value or "?" in value):
        found.update(url_secrets(value))
    return found


def _problems(errors: list[ErrorDetails], data: Any) -> str:
    """A ConfigError's text, ``path: message (got value)`` per problem,
    with no secret: a value under a secret field is never shown, URLs lose
    their userinfo and secret query values, and the secrets of ``data``
    are masked wherever a message quotes them."""
    problems = []
    for error in errors:
        location = tuple(error["loc"])
        got = error.get("input")
        # A value with "@" may be a URL whose userinfo is too malformed to
        # be recognised (and masked) as such: not quoted either.
        hidden = (
            isinstance(got, dict | list)
            or (isinstance(got, str) and "@" in got)
            or any(isinstance(part, str) and is_secret_name(part) for part in location)
        )
        shown = "" if hidden else f" (got {got!r})"
        problems.append(f"{_path(location)}: {error['msg']}{shown}")
    text = "invalid router configuration:\n  " + "\n  ".join(problems)
    # Masking a very short one would garble the text; it is never shown as
    # a value anyway (the rule above), only possibly inside another's.
    return redact_text(text, {s for s in _secrets_in(data) if len(s) >= 4})


def _path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def parse_router_config(data: dict[str, Any]) -> RouterConfig:
    """Validates a configuration mapping.

    Raises:
        ConfigError: listing every problem as ``path: message (got value)``.
    """
    errors: list[ErrorDetails] = []
    try:
        config = RouterConfig.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    if errors:
        # Raised outside the except block: the ConfigError keeps no link
        # (__context__) to pydantic's error, whose entries hold raw input.
        raise ConfigError(_problems(errors, data))
    # The native sections validate themselves: surface their errors now.
    config.adaptive_config()
    config.window_config()
    return config


def load_router_config(path: str | Path) -> RouterConfig:
    """Reads and validates a YAML, TOML or JSON router configuration file.

    Raises:
        ConfigError: the file cannot be parsed, breaks one of ``load_document``'s
            bounds (size, depth, duplicate keys, ...) or a value is invalid (with its path).
        FileNotFoundError: the file does not exist.
    """
    return parse_router_config(load_document(path))
