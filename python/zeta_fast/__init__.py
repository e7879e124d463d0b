"""zeta_fast: adaptive LLM request routing with a Rust core.

Example:
    >>> import zeta_fast
    >>> scorer = zeta_fast.AdaptiveScorer()
    >>> round(scorer.score(85, 0.99, 120, requests=100).performance_score, 2)
    88.95
"""

from __future__ import annotations

import atexit

from zeta_fast._core import (
    GIL_RELEASE_MIN_CANDIDATES,
    GIL_RELEASE_MIN_RECORDS,
    SNAPSHOT_FORMAT_VERSION,
    AdaptiveConfig,
    AdaptiveScorer,
    CandidatePool,
    Decision,
    ManualClock,
    OutcomeKind,
    PerformanceTracker,
    ReplicaSet,
    ReplicaStatus,
    RequestProfile,
    ScoreBreakdown,
    Task,
    TrackerKey,
    TrackerStats,
    WindowConfig,
    __version__,
    _shutdown,
)
from zeta_fast.exceptions import (
    ConfigError,
    InvalidInputError,
    NoCandidatesError,
    SnapshotError,
    SnapshotWarning,
    UnsupportedRequestError,
    ZetaError,
)
from zeta_fast.profiling import TASK_TYPES, profile
from zeta_fast.router import Router

# Clean shutdown: every tracker that persists writes a final snapshot.
atexit.register(_shutdown)

__all__ = [
    "GIL_RELEASE_MIN_CANDIDATES",
    "GIL_RELEASE_MIN_RECORDS",
    "SNAPSHOT_FORMAT_VERSION",
    "TASK_TYPES",
    "AdaptiveConfig",
    "AdaptiveScorer",
    "CandidatePool",
    "ConfigError",
    "Decision",
    "InvalidInputError",
    "ManualClock",
    "NoCandidatesError",
    "OutcomeKind",
    "PerformanceTracker",
    "ReplicaSet",
    "ReplicaStatus",
    "RequestProfile",
    "Router",
    "ScoreBreakdown",
    "SnapshotError",
    "SnapshotWarning",
    "Task",
    "TrackerKey",
    "TrackerStats",
    "UnsupportedRequestError",
    "WindowConfig",
    "ZetaError",
    "__version__",
    "profile",
]
