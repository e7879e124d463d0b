"""Trend detection and alerts on every model's outcomes.

``Router`` starts an :class:`AlertEngine` from the ``alerts`` section of its
configuration (on by default: failures rising is critical, latency rising a
warning, 5-minute cool-down, logged); add a webhook or threshold rules
there, or Python callbacks with ``router.alerts.sinks.append(fn)``.
"""

from zeta_fast.alerts.detectors import Change, LatencyDetector, SuccessDetector, TrendWatch
from zeta_fast.alerts.engine import AlertEngine, read_history
from zeta_fast.alerts.sinks import Alert, LogSink, WebhookSink

__all__ = [
    "Alert",
    "AlertEngine",
    "Change",
    "LatencyDetector",
    "LogSink",
    "SuccessDetector",
    "TrendWatch",
    "WebhookSink",
    "read_history",
]
