"""The alert engine: rules, cool-downs, sinks and history over the trend
detectors' changes.

The detectors run in Rust (:mod:`.detectors`): each model's success and
latency detectors, and each model x task type's (``per_task``), in a
:class:`~zeta_fast._core.TrendWatch` that a router's core feeds as it
records each outcome, with no Python call on the request path (an engine
without a router builds its own watch, fed by ``observe``). One background
thread for all engines (or ``process()`` when called) takes the changes
they queued and turns them into alerts through the trend rules, checks the
threshold rules against the tracker's windows once a second, and sends
what fires to the sinks unless the same rule fired for the same model
within its cool-down. Alerts are kept in an ``alerts`` table (SQLite, the
outcome log's file by default) that ``history()`` and ``zeta-fast alerts``
read.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from zeta_fast._core import PerformanceTracker
from zeta_fast.alerts.detectors import Change, TrendWatch
from zeta_fast.alerts.sinks import Alert, LogSink, Sink, WebhookSink
from zeta_fast.config import AlertRuleSpec, AlertsSpec

__all__ = ["AlertEngine", "read_history"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    ts_ms INTEGER NOT NULL, rule TEXT NOT NULL, severity TEXT NOT NULL,
    model TEXT NOT NULL, metric TEXT NOT NULL, kind TEXT NOT NULL,
    value REAL NOT NULL, baseline REAL, message TEXT NOT NULL, task TEXT
);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts (ts_ms);
"""
_FIELDS = (
    "ts_ms",
    "rule",
    "severity",
    "model",
    "metric",
    "kind",
    "value",
    "baseline",
    "message",
    "task",
)


class AlertEngine:
    """Watches every model's outcomes and raises alerts by the rules.

    Args:
        spec: the ``alerts`` section of the configuration.
        models: the model ids watched.
        tracker: read by threshold rules (window success rate, latency).
        history_path: the SQLite file alerts are kept in (None: memory only).
        callbacks: extra sinks, called with each :class:`Alert`.
        start: be processed by the shared background thread every 0.1 s
            (else call ``process()``).
        watch: the detectors, e.g. a router's (``RouterCore.watch_trends``),
            which its core feeds; None: a watch of ``models`` of its own,
            fed by ``observe``.
    """

    def __init__(
        self,
        spec: AlertsSpec,
        models: Iterable[str],
        *,
        tracker: PerformanceTracker | None = None,
        history_path: str | Path | None = None,
        callbacks: Iterable[Sink] = (),
        start: bool = True,
        clock: Callable[[], float] = time.time,
        watch: TrendWatch | None = None,
    ) -> None:
        self.spec = spec
        self.models = list(models)
        self.tracker = tracker
        self.clock = clock
        self.watch = watch if watch is not None else TrendWatch(self.models, per_task=spec.per_task)
        self._last_fired: dict[tuple[str, str, str | None], float] = {}
        self._next_threshold_check = 0.0
        self.sinks: list[Sink] = list(callbacks)
        if spec.log:
            self.sinks.append(LogSink())
        self.webhook = WebhookSink(spec.webhook) if spec.webhook is not None else None
        if self.webhook is not None:
            self.sinks.append(self.webhook)
        self.fired: list[Alert] = []
        #: Errors raised by sinks (the others still ran).
        self.sink_errors: list[str] = []
        #: Outcomes seen per model (for "alert within N requests" figures):
        #: as of ``process()``, and while a trend alert is raised, as of the
        #: outcome that completed its change.
        self.observed: dict[str, int] = dict.fromkeys(self.models, 0)
        self.history_path = Path(history_path) if history_path is not None else None
        if self.history_path is not None:
            self.history_path.parent.mkdir(parents=True, exist_ok=True)
            with sqlite3.connect(self.history_path) as db:
                db.executescript(_SCHEMA)
                columns = {row[1] for row in db.execute("PRAGMA table_info(alerts)")}
                if "task" not in columns:  # a history from before per-task alerts
                    db.execute("ALTER TABLE alerts ADD COLUMN task TEXT")
        #: With several instances (shared state): asked before an alert fires,
        #: true for exactly one of them per rule, model, task and cool-down.
        self.claim: Callable[[str, str, str | None, float], bool] | None = None
        self._lock = threading.Lock()
        self._closed = False
        if start:
            _ticker.add(self)

    # -- the request path ------------------------------------------------------

    def observe(
        self, model: str, success: bool, latency_ms: float, task: str | None = None
    ) -> None:
        """Feeds one outcome (replica faults and successes; not client
        errors) of a request of ``task`` type to the detectors (a router's
        core does this itself for every outcome it records); a model the
        engine does not watch is ignored.

        Raises:
            InvalidInputError: an unknown task type, or a latency that is
                not finite and >= 0.
        """
        if model in self.observed:
            self.watch.observe(model, success, latency_ms, task)

    # -- processing ------------------------------------------------------------

    def process(self) -> list[Alert]:
        """Turns the changes detected since the last call into alerts and
        checks the threshold rules; returns the alerts raised."""
        with self._lock:
            raised: list[Alert] = []
            for model, task, change, observed in self.watch.take_changes():
                self.observed[model] = observed
                raised += self._trend(model, change, task)
            self.observed.update(self.watch.observed())
            now = self.clock()
            if self.tracker is not None and now >= self._next_threshold_check:
                self._next_threshold_check = now + 1.0
                raised += self._thresholds()
            return raised

    def _trend(self, model: str, change: Change, task: str | None = None) -> list[Alert]:
        raised = []
        for rule in self.spec.rules:
            trend = rule.trend
            if trend is None or trend.metric != change.metric:
                continue
            if trend.kind not in ("any", change.kind):
                continue
            if change.metric == "success":
                message = (
                    f"{change.kind} rise in failures: {change.value:.0%} of recent requests "
                    f"(baseline {change.baseline:.1%})"
                )
            else:
                message = (
                    f"{change.kind} rise in latency: {change.value:.0f} ms "
                    f"(baseline {change.baseline:.0f} ms)"
                )
            if task is not None:
                message = f"{task} requests: {message}"
            alert = self._fire(
                rule,
                model,
                change.metric,
                change.kind,
                change.value,
                change.baseline,
                message,
                task,
            )
            if alert is not None:
                raised.append(alert)
        return raised

    def _thresholds(self) -> list[Alert]:
        assert self.tracker is not None
        raised = []
        for rule in self.spec.rules:
            threshold = rule.threshold
            if threshold is None:
                continue
            for model in self.models:
                stats = self.tracker.stats(model)
                if stats.requests < threshold.min_requests:
                    continue
                value = {
                    "success_rate": stats.success_rate,
                    "p95_latency_ms": stats.p95_ms,
                    "mean_latency_ms": stats.mean_latency_ms,
                }[threshold.metric]
                if value is None:
                    continue
                crossed = (threshold.below is not None and value < threshold.below) or (
                    threshold.above is not None and value > threshold.above
                )
                if not crossed:
                    continue
                bound = threshold.below if threshold.below is not None else threshold.above
                side = "below" if threshold.below is not None else "above"
                message = f"{threshold.metric} {value:.4g} {side} {bound:g} over the window"
                alert = self._fire(
                    rule, model, threshold.metric, "threshold", value, bound, message
                )
                if alert is not None:
                    raised.append(alert)
        return raised

    def _fire(
        self,
        rule: AlertRuleSpec,
        model: str,
        metric: str,
        kind: str,
        value: float,
        baseline: float | None,
        message: str,
        task: str | None = None,
    ) -> Alert | None:
        now = self.clock()
        cooldown = rule.cooldown_s if rule.cooldown_s is not None else self.spec.cooldown_s
        # A task's alert is news only when its model's own alert for the rule
        # is not recent (else the model as a whole is already flagged).
        scopes = [(rule.name, model, task)] + ([(rule.name, model, None)] if task else [])
        for scope in scopes:
            last = self._last_fired.get(scope)
            if last is not None and now - last < cooldown:
                return None
        self._last_fired[rule.name, model, task] = now
        if self.claim is not None and not self.claim(rule.name, model, task, cooldown):
            return None  # another instance raised it
        alert = Alert(
            ts_ms=int(now * 1000),
            rule=rule.name,
            severity=rule.severity,
            model=model,
            metric=metric,
            kind=kind,
            value=float(value),
            baseline=None if baseline is None else float(baseline),
            message=message,
            task=task,
        )
        self.fired.append(alert)
        if self.history_path is not None:
            with sqlite3.connect(self.history_path) as db:
                db.execute(
                    f"INSERT INTO alerts ({', '.join(_FIELDS)}) "
                    f"VALUES ({', '.join('?' * len(_FIELDS))})",
                    tuple(alert.to_dict()[f] for f in _FIELDS),
                )
        for sink in self.sinks:
            try:
                sink(alert)
            except Exception as exc:  # one broken sink must not silence the others
                self.sink_errors.append(f"{type(exc).__name__}: {exc}")
        return alert

    # -- reading ----------------------------------------------------------------

    def needs_attention(self) -> dict[str, list[Alert]]:
        """Models with an alert still within its cool-down, and those alerts."""
        now = self.clock()
        out: dict[str, list[Alert]] = {}
        for alert in self.fired:
            rule = next((r for r in self.spec.rules if r.name == alert.rule), None)
            cooldown = (
                rule.cooldown_s
                if rule is not None and rule.cooldown_s is not None
                else self.spec.cooldown_s
            )
            if now * 1000 - alert.ts_ms < cooldown * 1000:
                out.setdefault(alert.model, []).append(alert)
        return out

    def history(self, since_ms: int = 0) -> list[dict[str, Any]]:
        """Alerts kept in the history, oldest first."""
        if self.history_path is None:
            return [a.to_dict() for a in self.fired if a.ts_ms >= since_ms]
        return read_history(self.history_path, since_ms)

    def close(self, timeout_s: float = 10.0) -> None:
        """Processes what is queued and stops the webhook. Idempotent."""
        if self._closed:
            return
        self._closed = True
        _ticker.discard(self)
        self.process()
        if self.webhook is not None:
            self.webhook.close(timeout_s)


class _Ticker:
    """One thread for every engine in the process: each is processed every
    ``interval_s`` (an engine per router would be a thread per router)."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.engines: weakref.WeakSet[AlertEngine] = weakref.WeakSet()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def add(self, engine: AlertEngine) -> None:
        with self.lock:
            self.engines.add(engine)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name="zeta-fast-alerts", daemon=True
                )
                self.thread.start()

    def discard(self, engine: AlertEngine) -> None:
        with self.lock:
            self.engines.discard(engine)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval_s)
            with self.lock:
                engines = list(self.engines)
            for engine in engines:
                try:
                    engine.process()
                except Exception:  # keep watching the others
                    logging.getLogger("zeta_fast.alerts").exception("alert processing failed")


_ticker = _Ticker()


def read_history(path: str | Path, since_ms: int = 0) -> list[dict[str, Any]]:
    """The alerts kept in a history file, oldest first.

    Raises:
        FileNotFoundError: there is no such file.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no alert history at {path}")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        present = {row[1] for row in db.execute("PRAGMA table_info(alerts)")}
        if not present:
            return []  # no alerts table: nothing was ever raised there
        # A history written before a column existed reads it as None.
        columns = [f if f in present else f"NULL AS {f}" for f in _FIELDS]
        rows = db.execute(
            f"SELECT {', '.join(columns)} FROM alerts WHERE ts_ms >= ? ORDER BY ts_ms",
            (since_ms,),
        ).fetchall()
    return [dict(zip(_FIELDS, row, strict=True)) for row in rows]
