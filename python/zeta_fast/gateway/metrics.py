"""The gateway's ``/metrics`` page, in the Prometheus text format.

Everything is read from the router's core when the page is scraped: the
per-replica outcome counters and latency histograms the dispatcher already
keeps (one atomic add each), the tracker's windows, the scores routing
would compute now, breakers and in-flight counts. A request pays nothing
for metrics (a ``prometheus_client`` ``observe`` would cost it 2-4 us);
``prometheus_client`` only formats the page.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from zeta_fast.router import Router

__all__ = ["GatewayCounters", "MetricsPage"]

BREAKER_STATES = ("closed", "open", "half_open")


class GatewayCounters:
    """What only the gateway sees: responses by route and status, refusals."""

    __slots__ = ("in_flight", "refused", "responses", "signals", "streams_cut")

    def __init__(self) -> None:
        self.responses: Counter[tuple[str, int]] = Counter()
        self.refused: Counter[str] = Counter()
        self.in_flight = 0
        #: Streams that failed after their headers were sent (the client got
        #: a 200 and an error event instead of the stream's last event).
        self.streams_cut = 0
        #: (signal, event) -> count: what the signal sources did.
        self.signals: Counter[tuple[str, str]] = Counter()


def _seconds_buckets(histogram: dict[str, Any]) -> list[tuple[str, float]]:
    buckets = []
    for le_ms, count in histogram["buckets"]:
        le = "+Inf" if le_ms == float("inf") else repr(le_ms / 1e3)
        buckets.append((le, float(count)))
    return buckets


class _RouterCollector(Collector):
    def __init__(self, router: Router, counters: GatewayCounters) -> None:
        self.router = router
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        yield from self._replicas()
        yield from self._models()
        yield from self._gateway()
        yield from self._shared()
        yield from self._outcome_log()
        yield from self._prefix_cache()
        yield from self._signals()

    def _signals(self) -> Iterable[Metric]:
        """Verdicts on answers per source, model and verdict (learned or
        not), each model's structural check record per request kind, and
        the signals' own counters (judge calls, regenerations seen)."""
        verdicts = CounterMetricFamily(
            "zeta_verdicts",
            "Verdicts on answers, by who gave them (source), model and verdict.",
            labels=["source", "model", "verdict"],
        )
        for source, model_id, good, bad in self.router.core.verdict_counts():
            verdicts.add_metric([source, model_id, "good"], good)
            verdicts.add_metric([source, model_id, "bad"], bad)
        factor = GaugeMetricFamily(
            "zeta_model_kind_check_factor",
            "What recent structural checks multiply the model's capability by, per request kind.",
            labels=["model", "kind"],
        )
        failed = GaugeMetricFamily(
            "zeta_model_kind_checks_failed",
            "Failed structural checks among the model's recent ones, per request kind.",
            labels=["model", "kind"],
        )
        for model in self.router.config.models:
            for kind, (_, failures, scale) in self.router.core.kind_checks(model.id).items():
                factor.add_metric([model.id, kind], scale)
                failed.add_metric([model.id, kind], failures)
        signals = CounterMetricFamily(
            "zeta_signal_events",
            "What the signal sources did: judge calls, unparsed verdicts, budget skips, "
            "regenerations and continuations seen.",
            labels=["signal", "event"],
        )
        for (signal, event), count in sorted(self.counters.signals.items()):
            signals.add_metric([signal, event], count)
        return [verdicts, factor, failed, signals]

    def _prefix_cache(self) -> Iterable[Metric]:
        """The ``cache_aware`` policy's index and how its expectation
        compares with what the engines report they reused."""
        labels = ["model", "replica"]
        prompt = CounterMetricFamily(
            "zeta_prefix_cache_prompt_tokens",
            "Prompt tokens of answers whose engine reported its cache use.",
            labels=labels,
        )
        cached = CounterMetricFamily(
            "zeta_prefix_cache_cached_tokens",
            "Of those, the tokens the engine reused from its KV cache (measured).",
            labels=labels,
        )
        predicted = CounterMetricFamily(
            "zeta_prefix_cache_predicted_tokens",
            "Of those, the tokens the router expected cached (its index's estimate).",
            labels=labels,
        )
        misses = CounterMetricFamily(
            "zeta_prefix_cache_misses",
            "Answers where a prefix the router expected cached was not (the index corrected).",
            labels=labels,
        )
        entries = GaugeMetricFamily(
            "zeta_prefix_cache_entries",
            "(block, replica) entries the index keeps.",
            labels=["model"],
        )
        memory = GaugeMetricFamily(
            "zeta_prefix_cache_bytes", "Bytes the index and its sessions hold.", labels=["model"]
        )
        sessions = GaugeMetricFamily(
            "zeta_prefix_cache_sessions", "Sessions bound to a replica.", labels=["model"]
        )
        found = False
        for model in self.router.config.models:
            index = self.router.core.prefix_cache(model.id)
            if index is None:
                continue
            found = True
            entries.add_metric([model.id], index["entries"])
            memory.add_metric([model.id], index["allocated_bytes"])
            sessions.add_metric([model.id], index["sessions"])
            for replica, row in index["replicas"].items():
                key = [model.id, replica]
                prompt.add_metric(key, row["prompt_tokens"])
                cached.add_metric(key, row["cached_tokens"])
                predicted.add_metric(key, row["predicted_tokens"])
                misses.add_metric(key, row["misses"])
        if not found:
            return []
        return [prompt, cached, predicted, misses, entries, memory, sessions]

    def _outcome_log(self) -> Iterable[Metric]:
        log = self.router.outcome_log
        if log is None:
            return []
        written = CounterMetricFamily(
            "zeta_outcome_log_rows_written", "Outcome rows written to the outcome log."
        )
        written.add_metric([], log.written)
        dropped = CounterMetricFamily(
            "zeta_outcome_log_rows_dropped",
            "Outcome rows not logged: the queue was full (a slow or locked file) or it was closed.",
        )
        dropped.add_metric([], log.dropped)
        pending = GaugeMetricFamily(
            "zeta_outcome_log_rows_pending", "Rows queued or held for a retry, not yet written."
        )
        pending.add_metric([], log.pending)
        return [written, dropped, pending]

    def _shared(self) -> Iterable[Metric]:
        shared = self.router.shared
        if shared is None:
            return []
        up = GaugeMetricFamily(
            "zeta_shared_state_up",
            "1 while the shared state (Redis) is reachable; 0: routing on local state.",
        )
        up.add_metric([], 1.0 if shared.up else 0.0)
        errors = CounterMetricFamily(
            "zeta_shared_state_errors", "Failed shared-state cycles and calls."
        )
        errors.add_metric([], shared.stats.errors)
        commands = CounterMetricFamily(
            "zeta_shared_state_commands", "Redis commands sent by this instance."
        )
        commands.add_metric([], shared.stats.commands)
        instances = GaugeMetricFamily(
            "zeta_shared_state_remote_instances",
            "Other live instances (a heartbeat within stale_after_s).",
        )
        instances.add_metric([], shared.stats.remote_instances)
        cycle = GaugeMetricFamily(
            "zeta_shared_state_cycle_seconds", "Time of the last publish + merge cycle."
        )
        cycle.add_metric([], shared.stats.last_cycle_ms / 1e3)
        return [up, errors, commands, instances, cycle]

    def _replicas(self) -> Iterable[Metric]:
        labels = ["model", "replica"]
        requests = CounterMetricFamily(
            "zeta_backend_requests",
            "Attempts sent to a replica, by how they ended.",
            labels=[*labels, "outcome"],
        )
        latency = HistogramMetricFamily(
            "zeta_backend_request_duration_seconds",
            "Time of each attempt at a replica (cancelled hedges excluded).",
            labels=labels,
        )
        tokens = CounterMetricFamily(
            "zeta_backend_tokens", "Tokens reported by replicas.", labels=[*labels, "type"]
        )
        in_flight = GaugeMetricFamily(
            "zeta_replica_in_flight", "Requests running on a replica now.", labels=labels
        )
        healthy = GaugeMetricFamily(
            "zeta_replica_healthy", "1 when health checks pass (or none run).", labels=labels
        )
        breaker = GaugeMetricFamily(
            "zeta_replica_breaker_state",
            "1 for the circuit breaker's current state.",
            labels=[*labels, "state"],
        )
        waiting = GaugeMetricFamily(
            "zeta_engine_requests_waiting",
            "Requests queued inside the engine (last scrape, when fresh).",
            labels=labels,
        )
        kv_usage = GaugeMetricFamily(
            "zeta_engine_kv_cache_usage_ratio",
            "The engine's KV-cache use, 0..1 (last scrape, when fresh).",
            labels=labels,
        )
        ttft = GaugeMetricFamily(
            "zeta_replica_mean_ttft_seconds",
            "Mean time to the first streamed event.",
            labels=labels,
        )
        for model in self.router.config.models:
            for status in self.router.core.replica_status(model.id):
                key = [model.id, status.replica_id]
                for outcome, count in status.outcomes.items():
                    requests.add_metric([*key, outcome], count)
                histogram = status.latency
                latency.add_metric(
                    key, _seconds_buckets(histogram), sum_value=histogram["sum_ms"] / 1e3
                )
                tokens.add_metric([*key, "prompt"], status.prompt_tokens)
                tokens.add_metric([*key, "completion"], status.completion_tokens)
                in_flight.add_metric(key, status.in_flight)
                healthy.add_metric(key, 1.0 if status.healthy else 0.0)
                for state in BREAKER_STATES:
                    breaker.add_metric([*key, state], 1.0 if status.breaker == state else 0.0)
                if status.engine_waiting is not None:
                    waiting.add_metric(key, status.engine_waiting)
                if status.engine_kv_usage is not None:
                    kv_usage.add_metric(key, status.engine_kv_usage)
                if status.mean_ttft_ms is not None:
                    ttft.add_metric(key, status.mean_ttft_ms / 1e3)
        return [requests, latency, tokens, in_flight, healthy, breaker, waiting, kv_usage, ttft]

    def _models(self) -> Iterable[Metric]:
        window_requests = GaugeMetricFamily(
            "zeta_model_window_requests",
            "Requests in the model's rolling window (what scoring sees).",
            labels=["model"],
        )
        success = GaugeMetricFamily(
            "zeta_model_window_success_ratio",
            "Success rate over the model's rolling window.",
            labels=["model"],
        )
        quantiles = GaugeMetricFamily(
            "zeta_model_window_latency_seconds",
            "Latency percentiles over the model's rolling window.",
            labels=["model", "quantile"],
        )
        score = GaugeMetricFamily(
            "zeta_model_score",
            "The score routing gives the model for a task now (0..100).",
            labels=["model", "task"],
        )
        capability = GaugeMetricFamily(
            "zeta_model_capability",
            "The model's configured capability for a task (0..100).",
            labels=["model", "task"],
        )
        penalty = GaugeMetricFamily(
            "zeta_model_penalty_active",
            "1 while a penalty applies to the model's score for a task.",
            labels=["model", "task", "penalty"],
        )
        for model in self.router.config.models:
            stats = self.router.tracker.stats(model.id)
            window_requests.add_metric([model.id], stats.requests)
            if stats.success_rate is not None:
                success.add_metric([model.id], stats.success_rate)
            for name, value in (("0.5", stats.p50_ms), ("0.95", stats.p95_ms)):
                if value is not None:
                    quantiles.add_metric([model.id, name], value / 1e3)
            if stats.p99_ms is not None:
                quantiles.add_metric([model.id, "0.99"], stats.p99_ms / 1e3)
        for model_id, task, breakdown in self.router.core.scores():
            score.add_metric([model_id, task], breakdown.performance_score)
            capability.add_metric([model_id, task], breakdown.capability_score)
            applied = set(breakdown.penalties)
            for name in ("low_success_rate", "high_latency", "relative_latency"):
                penalty.add_metric([model_id, task, name], 1.0 if name in applied else 0.0)
        return [window_requests, success, quantiles, score, capability, penalty]

    def _gateway(self) -> Iterable[Metric]:
        overhead = self.router.core.overhead()
        duration = HistogramMetricFamily(
            "zeta_router_overhead_seconds",
            "The gateway's own time per request: all of it but the backend attempts.",
        )
        duration.add_metric([], _seconds_buckets(overhead), sum_value=overhead["sum_ms"] / 1e3)
        responses = CounterMetricFamily(
            "zeta_gateway_responses",
            "Responses the gateway sent, by route and HTTP status.",
            labels=["route", "status"],
        )
        for (route, status), count in sorted(self.counters.responses.items()):
            responses.add_metric([route, str(status)], count)
        refused = CounterMetricFamily(
            "zeta_gateway_refused",
            "Requests refused before routing, by reason.",
            labels=["reason"],
        )
        for reason, count in sorted(self.counters.refused.items()):
            refused.add_metric([reason], count)
        in_flight = GaugeMetricFamily(
            "zeta_gateway_in_flight", "Requests the gateway is serving now."
        )
        in_flight.add_metric([], self.counters.in_flight)
        cut = CounterMetricFamily(
            "zeta_gateway_streams_cut",
            "Streams that failed after their 200 was sent (ended with an error event).",
        )
        cut.add_metric([], self.counters.streams_cut)
        retry_tokens, hedge_tokens = self.router.core.budget_tokens()
        budget = GaugeMetricFamily(
            "zeta_budget_tokens", "Retry and hedge tokens left.", labels=["budget"]
        )
        budget.add_metric(["retry"], retry_tokens)
        budget.add_metric(["hedge"], hedge_tokens)
        return [duration, responses, refused, in_flight, cut, budget]


class MetricsPage:
    """Renders the page on demand."""

    def __init__(self, router: Router, counters: GatewayCounters) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_RouterCollector(router, counters))

    def render(self) -> bytes:
        """The page now, in the Prometheus text format (version 0.0.4)."""
        return generate_latest(self.registry)
