"""Where alerts go: a Python callback, a structured log line, a webhook
(a real HTTP POST of the alert as JSON, retried with backoff from a thread
of its own so that a slow receiver never holds detection up)."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from zeta_fast.config import WebhookSpec

__all__ = ["Alert", "LogSink", "WebhookSink"]

log = logging.getLogger("zeta_fast.alerts")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert, as every sink and the history see it."""

    ts_ms: int
    rule: str
    severity: str
    model: str
    metric: str
    kind: str  # "sudden", "drift" or "threshold"
    value: float
    baseline: float | None
    message: str
    #: The task type the alert is about; None for the model as a whole.
    task: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


Sink = Callable[[Alert], None]

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


class LogSink:
    """One line per alert on ``zeta_fast.alerts``, its fields in ``extra``."""

    def __call__(self, alert: Alert) -> None:
        log.log(
            _LEVELS.get(alert.severity, logging.WARNING),
            "alert %s [%s] %s: %s",
            alert.rule,
            alert.severity,
            alert.model,
            alert.message,
            extra={"alert": alert.to_dict()},
        )


class WebhookSink:
    """POSTs each alert as JSON; retries ``retries`` times with backoff
    (0.5 s doubling) on errors and 5xx; gives up after that, counting it."""

    def __init__(self, spec: WebhookSpec, backoff_s: float = 0.5) -> None:
        self.spec = spec
        self.backoff_s = backoff_s
        self.delivered = 0
        self.failed = 0
        self.attempts = 0
        self._queue: queue.SimpleQueue[Alert | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="zeta-fast-webhook", daemon=True)
        self._thread.start()

    def __call__(self, alert: Alert) -> None:
        self._queue.put(alert)

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            self._deliver(alert)

    def _deliver(self, alert: Alert) -> None:
        body = json.dumps(alert.to_dict()).encode()
        headers = {"Content-Type": "application/json", **self.spec.request_headers()}
        delay = self.backoff_s
        for attempt in range(self.spec.retries + 1):
            self.attempts += 1
            request = urllib.request.Request(
                str(self.spec.url), data=body, headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.spec.timeout_s) as response:
                    if response.status < 300:
                        self.delivered += 1
                        return
            except urllib.error.HTTPError as exc:
                if exc.code < 500 and exc.code != 429:
                    break  # the receiver refuses it: retrying will not help
            except (urllib.error.URLError, OSError):
                pass
            if attempt < self.spec.retries:
                time.sleep(delay)
                delay *= 2
        self.failed += 1
        log.warning("alert %s for %s not delivered to the webhook", alert.rule, alert.model)

    def close(self, timeout_s: float = 10.0) -> None:
        """Delivers what is queued (within ``timeout_s``), then stops."""
        self._queue.put(None)
        self._thread.join(timeout_s)
