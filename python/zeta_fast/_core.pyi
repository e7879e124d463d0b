"""Type stubs and documentation for the native module ``zeta_fast._core``.

Import the names from ``zeta_fast``; this module is private.

Size: the stubs of the whole native module in one file, as stubtest and
type checkers read it; each class is documented where it is declared.
"""

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, final

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike

__all__ = [
    "ANSWER_CHECKS",
    "DEFAULT_CONFIDENCE",
    "FEATURE_DIM",
    "GIL_RELEASE_MIN_CANDIDATES",
    "GIL_RELEASE_MIN_RECORDS",
    "MODEL_ORDERINGS",
    "OUTCOME_LOG_COLUMNS",
    "REPLICA_POLICIES",
    "REQUEST_FEATURES",
    "REQUEST_KINDS",
    "SNAPSHOT_FORMAT_VERSION",
    "VERDICT_SOURCES",
    "AdaptiveConfig",
    "AdaptiveScorer",
    "CandidatePool",
    "Change",
    "Decision",
    "Features",
    "LatencyDetector",
    "LearningSettings",
    "ManualClock",
    "ModelSettings",
    "OutcomeKind",
    "OutcomeLogWriter",
    "OutcomePredictor",
    "PerformanceTracker",
    "ReplicaSet",
    "ReplicaStatus",
    "RequestProfile",
    "ResilienceSettings",
    "RouterCore",
    "ScoreBreakdown",
    "SuccessDetector",
    "Task",
    "TrackerKey",
    "TrackerStats",
    "TrendWatch",
    "WindowConfig",
    "__version__",
    "_profile_features",
    "_profile_text",
    "_read_learned_state",
    "_shutdown",
    "_text_features",
    "_write_learned_state",
    "profile",
    "request_text",
]

__version__: str

GIL_RELEASE_MIN_CANDIDATES: int
"""Batches of at least this many candidates are scored with the GIL released."""

GIL_RELEASE_MIN_RECORDS: int
"""``record_many`` batches of at least this many outcomes run with the GIL released."""

OUTCOME_LOG_COLUMNS: tuple[str, ...]
"""The outcome log's columns, in table order (the writer's, in Rust)."""

REPLICA_POLICIES: tuple[str, ...]
"""Names of the replica policies (``replica_policy``), one file each in
``rust/src/policies/``."""

MODEL_ORDERINGS: tuple[str, ...]
"""Names of the model orderings (``model_ordering``): ``spread`` tries
near-best models least busy first, ``by_score`` strictly best first."""

SNAPSHOT_FORMAT_VERSION: int
"""The snapshot file format this build writes and reads."""

def _shutdown() -> None:
    """Final snapshot of every persisting tracker; registered with ``atexit``.
    A final save that fails is printed as a ``RuntimeWarning``."""

@final
class AdaptiveConfig:
    """Validated, immutable configuration of the adaptive score.

    Every argument is keyword-only and optional; the defaults are the
    specification's. Weights must be finite, >= 0 and sum to 1.0 within 0.01;
    ``min_acceptable_success_rate`` and the penalty factors lie in (0, 1];
    ``max_acceptable_latency_ms`` is finite and > 0; ``min_requests_for_performance``
    is an integer >= 1.

    Raises:
        ConfigError: (a ``ValueError``) a value is out of range or a name unknown;
            the message names the field and the value.
        TypeError: a value has the wrong type.

    Example:
        >>> from zeta_fast import AdaptiveConfig
        >>> config = AdaptiveConfig(max_acceptable_latency_ms=250.0)
        >>> config.replace(min_requests_for_performance=20).min_requests_for_performance
        20
        >>> AdaptiveConfig.from_dict(config.to_dict()) == config
        True
    """

    def __new__(
        cls,
        *,
        capability_weight: float | None = None,
        success_rate_weight: float | None = None,
        latency_weight: float | None = None,
        min_acceptable_success_rate: float | None = None,
        max_acceptable_latency_ms: float | None = None,
        min_requests_for_performance: int | None = None,
        low_success_rate_penalty: float | None = None,
        high_latency_penalty: float | None = None,
    ) -> AdaptiveConfig:
        """Builds and validates a configuration; omitted (or ``None``) fields take
        the defaults: 0.60, 0.25, 0.15, 0.90, 500.0, 10, 0.5, 0.8."""
    @staticmethod
    def from_dict(data: dict[str, Any]) -> AdaptiveConfig:
        """Builds a configuration from a dict such as ``to_dict()`` returns.

        Missing keys take their defaults; unknown keys raise ``ConfigError``.

        Example:
            >>> AdaptiveConfig.from_dict({"latency_weight": 0.15}).latency_weight
            0.15
        """
    def to_dict(self) -> dict[str, float | int]:
        """The fields as a plain, JSON-serialisable dict.

        Example:
            >>> AdaptiveConfig().to_dict()["min_requests_for_performance"]
            10
        """
    def replace(self, **changes: float) -> AdaptiveConfig:
        """A copy with some fields changed, validated again.

        Example:
            >>> AdaptiveConfig().replace(high_latency_penalty=0.9).high_latency_penalty
            0.9
        """
    @property
    def capability_weight(self) -> float:
        """Weight of the capability score (0..100) in the blend."""
    @property
    def success_rate_weight(self) -> float:
        """Weight of the success rate (scaled to 0..100) in the blend."""
    @property
    def latency_weight(self) -> float:
        """Weight of the latency score (0..100) in the blend."""
    @property
    def min_acceptable_success_rate(self) -> float:
        """Below this success rate the low-reliability penalty applies."""
    @property
    def max_acceptable_latency_ms(self) -> float:
        """Above this mean latency the high-latency penalty applies."""
    @property
    def min_requests_for_performance(self) -> int:
        """Fewer requests than this and the score is the capability alone."""
    @property
    def low_success_rate_penalty(self) -> float:
        """Factor applied when the success rate is below the threshold."""
    @property
    def high_latency_penalty(self) -> float:
        """Factor applied when the latency is above the threshold."""
    def __eq__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __getnewargs_ex__(self) -> tuple[tuple[()], dict[str, float | int]]: ...

@final
class ScoreBreakdown:
    """Why a candidate scored what it did: the fields of a decision record.

    Example:
        >>> from zeta_fast import AdaptiveScorer
        >>> b = AdaptiveScorer().score(88, 0.60, 450, requests=100)
        >>> b.penalties, round(b.performance_score, 3)
        (('low_success_rate',), 38.025)
    """

    @property
    def capability_score(self) -> float:
        """The capability the candidate came in with (0..100)."""
    @property
    def performance_score(self) -> float:
        """The final score: penalised blend, or the capability without enough data."""
    @property
    def performance_adjustment(self) -> float:
        """``performance_score - capability_score``."""
    @property
    def has_performance_data(self) -> bool:
        """Whether ``requests >= min_requests_for_performance``."""
    @property
    def success_rate(self) -> float:
        """The success rate that was scored (0..1)."""
    @property
    def avg_latency_ms(self) -> float:
        """The mean latency that was scored, in milliseconds."""
    @property
    def requests(self) -> int:
        """The number of requests behind the live metrics."""
    @property
    def latency_score(self) -> float:
        """Latency on the 0..100 scale."""
    @property
    def blended_score(self) -> float:
        """The weighted blend before penalties."""
    @property
    def penalty_factor(self) -> float:
        """Product of the applied penalty factors (1.0 when none applied)."""
    @property
    def penalties(self) -> tuple[str, ...]:
        """Names of the penalties that applied: ``low_success_rate``, ``high_latency``
        (and ``relative_latency``, the router's optional relative rule)."""
    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-serialisable dict (penalties as a list).

        Example:
            >>> import json
            >>> from zeta_fast import AdaptiveScorer
            >>> record = AdaptiveScorer().score(85, 0.99, 120, 100).to_dict()
            >>> json.loads(json.dumps(record))["penalties"]
            []
        """

@final
class AdaptiveScorer:
    """Scores routing candidates: capability blended with live performance.

    ``latency_score = clamp(100 - latency_ms / (2 * max_acceptable_latency_ms) * 100, 0, 100)``;
    ``blend = capability * w_c + success_rate * 100 * w_s + latency_score * w_l``;
    the blend is multiplied by ``low_success_rate_penalty`` when the success rate is
    below ``min_acceptable_success_rate`` and by ``high_latency_penalty`` when the
    latency is above ``max_acceptable_latency_ms``; with fewer than
    ``min_requests_for_performance`` requests the score is the capability alone.

    Inputs: capability in [0, 100], success_rate in [0, 1], latency and request
    counts finite and >= 0. Anything else raises ``InvalidInputError`` naming the
    field and position, never a NaN score.

    Example:
        >>> import numpy as np
        >>> from zeta_fast import AdaptiveScorer
        >>> scorer = AdaptiveScorer()
        >>> scorer.best(np.array([92.0, 88.0]), np.array([0.6, 0.99]),
        ...             np.array([200.0, 150.0]), np.array([50, 50]))
        1
    """

    def __new__(cls, config: AdaptiveConfig | None = None) -> AdaptiveScorer: ...
    @property
    def config(self) -> AdaptiveConfig:
        """The configuration this scorer applies."""
    def score(
        self, capability: float, success_rate: float, avg_latency_ms: float, requests: int
    ) -> ScoreBreakdown:
        """Scores one candidate and explains the result.

        Raises:
            InvalidInputError: a value is out of range or not finite.
            TypeError: a value is not a number (or ``requests`` not an integer).

        Example:
            >>> round(AdaptiveScorer().score(85, 0.99, 120, 100).performance_adjustment, 2)
            3.95
        """
    def score_many(
        self,
        capability: ArrayLike,
        success_rate: ArrayLike,
        avg_latency_ms: ArrayLike,
        requests: ArrayLike,
        *,
        release_gil: bool | None = None,
    ) -> npt.NDArray[np.float64]:
        """Final scores of many candidates at once.

        All four inputs share one shape: ``(candidates,)`` or
        ``(requests, candidates)``. C-contiguous float64 arrays (and int64 for
        ``requests``) are read without a copy; anything else array-like is
        converted first. Empty inputs give an empty result.

        Args:
            release_gil: release the GIL while scoring. ``None`` (default)
                releases it for batches of at least ``GIL_RELEASE_MIN_CANDIDATES``.

        Raises:
            InvalidInputError: shapes differ, or a value is out of range; the
                message names the field and the index.

        Example:
            >>> AdaptiveScorer().score_many([85.0, 88.0], [0.99, 0.6], [120.0, 450.0], [100, 100])
            array([88.95 , 38.025])
        """
    def best(
        self,
        capability: ArrayLike,
        success_rate: ArrayLike,
        avg_latency_ms: ArrayLike,
        requests: ArrayLike,
    ) -> int:
        """Index of the best of 1-D candidates; ties go to the lowest index.

        Raises:
            NoCandidatesError: there are no candidates.
            InvalidInputError: as for ``score_many``, or the inputs are not 1-D.

        Example:
            >>> AdaptiveScorer().best([50.0, 90.0, 90.0], [1.0] * 3, [0.0] * 3, [0] * 3)
            1
        """
    def best_per_row(
        self,
        capability: ArrayLike,
        success_rate: ArrayLike,
        avg_latency_ms: ArrayLike,
        requests: ArrayLike,
    ) -> npt.NDArray[np.int64]:
        """Index of the best candidate of each row of a ``(requests, candidates)`` batch.

        Ties go to the lowest index. Zero rows give an empty array.

        Raises:
            NoCandidatesError: rows exist but have no candidates.
            InvalidInputError: as for ``score_many``, or the inputs are not 2-D.

        Example:
            >>> import numpy as np
            >>> cap = np.array([[90.0, 80.0], [70.0, 95.0]])
            >>> ones = np.ones((2, 2))
            >>> AdaptiveScorer().best_per_row(cap, ones, ones, np.zeros((2, 2), dtype=np.int64))
            array([0, 1])
        """

@final
class WindowConfig:
    """The shape of a tracker's rolling windows (validated, immutable).

    Defaults: 60 buckets of 5,000 ms (a 5-minute horizon), latency histograms
    in 4 slices over 0.1 ms .. 300,000 ms at 4 % bin steps (percentiles within
    2 %), EWMA weight 0.1.

    Example:
        >>> from zeta_fast import WindowConfig
        >>> WindowConfig(bucket_ms=1000, buckets=30, histogram_slices=3).horizon_s
        30.0
    """

    def __new__(
        cls,
        *,
        bucket_ms: int | None = None,
        buckets: int | None = None,
        histogram_slices: int | None = None,
        latency_min_ms: float | None = None,
        latency_max_ms: float | None = None,
        ewma_alpha: float | None = None,
    ) -> WindowConfig: ...
    @staticmethod
    def from_dict(data: dict[str, Any]) -> WindowConfig:
        """Builds a configuration from a dict such as ``to_dict()`` returns."""
    def to_dict(self) -> dict[str, float | int]:
        """The fields as a plain dict."""
    @property
    def bucket_ms(self) -> int:
        """Width of one time bucket, in milliseconds."""
    @property
    def buckets(self) -> int:
        """Buckets in the window."""
    @property
    def histogram_slices(self) -> int:
        """Slices the latency histogram covers the window in (divides ``buckets``)."""
    @property
    def latency_min_ms(self) -> float:
        """Lower edge of the latency histogram."""
    @property
    def latency_max_ms(self) -> float:
        """Upper edge of the latency histogram."""
    @property
    def ewma_alpha(self) -> float:
        """Weight of the newest sample in the latency EWMA."""
    @property
    def horizon_s(self) -> float:
        """The window's horizon in seconds."""
    @property
    def percentile_relative_error(self) -> float:
        """Worst-case relative error of reported percentiles (1.98 %)."""
    def __eq__(self, other: object, /) -> bool: ...

@final
class ManualClock:
    """A clock that moves only when told to (ms since the Unix epoch).

    Example:
        >>> from zeta_fast import ManualClock
        >>> clock = ManualClock(1_000)
        >>> clock.advance(500)
        >>> clock.now_ms
        1500
    """

    def __new__(cls, start_ms: int | None = None) -> ManualClock: ...
    @property
    def now_ms(self) -> int:
        """The clock's time."""
    def advance(self, ms: int) -> None:
        """Moves the clock forward by ``ms``."""
    def set(self, now_ms: int) -> None:
        """Sets the clock; it may go backwards."""

@final
class TrackerStats:
    """Statistics of one or more windows read at one moment.

    Window figures cover the tracker's horizon; ``lifetime_*`` figures cover
    everything ever recorded. Rates and latencies are ``None`` without data.
    """

    @property
    def requests(self) -> int: ...
    @property
    def successes(self) -> int: ...
    @property
    def success_rate(self) -> float | None: ...
    @property
    def mean_latency_ms(self) -> float | None: ...
    @property
    def p50_ms(self) -> float | None: ...
    @property
    def p95_ms(self) -> float | None: ...
    @property
    def p99_ms(self) -> float | None: ...
    @property
    def ewma_latency_ms(self) -> float | None:
        """Request-weighted mean of the keys' latency EWMAs."""
    @property
    def lifetime_requests(self) -> int: ...
    @property
    def lifetime_successes(self) -> int: ...
    @property
    def lifetime_success_rate(self) -> float | None: ...
    @property
    def lifetime_mean_latency_ms(self) -> float | None: ...
    @property
    def keys(self) -> int:
        """How many (model, replica, task) windows were aggregated."""
    @property
    def consistent(self) -> bool:
        """False only if rotations kept tearing the read (never seen in tests)."""
    def to_dict(self) -> dict[str, Any]:
        """The statistics as a JSON-serialisable dict."""

@final
class TrackerKey:
    """A handle on one (model, replica, task) window: records without a lookup."""

    @property
    def model(self) -> str: ...
    @property
    def replica(self) -> str: ...
    @property
    def task(self) -> str: ...
    def record(self, success: bool, latency_ms: float) -> None:
        """Records one outcome for this key."""
    def stats(self) -> TrackerStats:
        """This key's statistics, read now."""

@final
class PerformanceTracker:
    """Live performance per (model, replica, task) in lock-free rolling windows.

    ``record`` is lock-free (a concurrent index lookup and four atomic
    updates) and safe from any number of Python or Rust threads; readers
    never block writers. Unless ``persist=False``, the tracker restores the
    newest good snapshot at start, saves one every ``snapshot_interval_s`` in
    a background thread and a final one on ``close()`` (or at interpreter
    exit). ``snapshot_path`` defaults to ``$ZETA_FAST_STATE_DIR``, else
    ``$XDG_STATE_HOME/zeta_fast``, else ``~/.local/state/zeta_fast``, file
    ``tracker.snapshot``; the previous snapshot is kept as ``.prev``.

    Raises:
        SnapshotError: no usable snapshot exists (both files bad), the window
            shape differs from the snapshot's, or another tracker holds the file.

    Example:
        >>> from zeta_fast import ManualClock, PerformanceTracker
        >>> tracker = PerformanceTracker(clock=ManualClock(10_000), persist=False)
        >>> tracker.record("coder-7b", "replica-1", "code", True, 120.0)
        >>> tracker.record("coder-7b", "replica-2", "code", False, 480.0)
        >>> stats = tracker.stats("coder-7b", task="code")
        >>> stats.requests, stats.success_rate, stats.mean_latency_ms
        (2, 0.5, 300.0)
    """

    def __new__(
        cls,
        window: WindowConfig | None = None,
        *,
        clock: ManualClock | None = None,
        persist: bool = True,
        snapshot_path: str | os.PathLike[str] | None = None,
        snapshot_interval_s: float = 1.0,
        restore: bool = True,
    ) -> PerformanceTracker: ...
    def record(self, model: str, replica: str, task: str, success: bool, latency_ms: float) -> None:
        """Records one outcome (latency finite and >= 0).

        Raises:
            InvalidInputError: the latency is negative, NaN or inf, or a name is empty.
            TypeError: a name is not a ``str``, ``success`` not a bool.
        """
    def key(self, model: str, replica: str, task: str) -> TrackerKey:
        """A handle on one key, registering it if new."""
    def record_many(
        self,
        keys: TrackerKey | tuple[str, str, str] | list[TrackerKey | tuple[str, str, str]],
        success: npt.ArrayLike,
        latency_ms: npt.ArrayLike,
    ) -> int:
        """Records many outcomes; returns how many.

        ``keys`` is one key for every outcome or a list with one per outcome.
        Everything is validated first, so bad input records nothing; batches of
        at least ``GIL_RELEASE_MIN_RECORDS`` run with the GIL released.
        """
    def stats(
        self, model: str, replica: str | None = None, task: str | None = None
    ) -> TrackerStats:
        """Statistics aggregated on read over the model's windows, narrowed by
        replica and task when given."""
    def export_shared(
        self,
    ) -> list[
        tuple[
            str,
            str,
            str,
            list[tuple[int, int, int, int, int]],
            list[tuple[int, list[tuple[int, int]]]],
        ]
    ]:
        """Non-empty window buckets and histogram slices per key, to share."""
    def shared_epochs(self) -> tuple[int, int, int, int, int, int]:
        """(epoch now, oldest epoch, slice now, oldest slice, bucket_ms, bins)."""
    def set_remote(
        self,
        entries: list[tuple[str, str, str, tuple[int, int, int, int], list[tuple[int, int]]]],
    ) -> int:
        """Replaces the other instances' share of every key."""
    def keys(self) -> list[tuple[str, str, str]]:
        """Every key as (model, replica, task), sorted."""
    def now_ms(self) -> int:
        """The tracker's current time, ms since the Unix epoch."""
    @property
    def window(self) -> WindowConfig: ...
    @property
    def memory_bytes(self) -> int:
        """Bytes held by all windows (7,904 bytes per key by default)."""
    @property
    def snapshot_path(self) -> str | None: ...
    @property
    def restored_from(self) -> str | None:
        """The snapshot file the tracker started from, if any."""
    @property
    def restored_taken_at_ms(self) -> int | None:
        """When the restored snapshot was taken: everything recorded before is in it."""
    @property
    def restore_warning(self) -> str | None:
        """Why the newest snapshot was skipped at start-up, if it was."""
    def save(self) -> int:
        """Saves a snapshot now; returns its size in bytes."""
    def saver_status(self) -> dict[str, Any] | None:
        """Saves, failures and the last error of the background saver."""
    def close(self) -> None:
        """Stops the saver after a final snapshot and releases the file;
        idempotent. Raises ``SnapshotError`` when that final save fails (an
        earlier failure a later save superseded is only in ``saver_status``)."""
    def __enter__(self) -> PerformanceTracker: ...
    def __exit__(self, exc_type: object, exc: object, traceback: object) -> bool: ...

@final
class CandidatePool:
    """Candidate models with a capability per task, scored from the tracker.

    Each decision reads every candidate's live metrics from its windows: per
    (model, task) over all replicas, falling back to the whole model when
    that has fewer than ``min_requests_for_performance`` requests, and to the
    capability alone below that. Nothing is passed in per decision.

    Example:
        >>> from zeta_fast import CandidatePool, ManualClock, PerformanceTracker
        >>> tracker = PerformanceTracker(clock=ManualClock(0), persist=False)
        >>> pool = CandidatePool(tracker, {"big": {"code": 92}, "small": {"code": 88}})
        >>> pool.best("code")
        'big'
        >>> for i in range(10):
        ...     pool.record("big", "r1", "code", i < 6, 100.0)
        >>> pool.best("code")
        'small'
    """

    def __new__(
        cls,
        tracker: PerformanceTracker,
        candidates: dict[str, dict[str, float]],
        config: AdaptiveConfig | None = None,
        *,
        relative_latency_factor: float = 0.0,
    ) -> CandidatePool:
        """``relative_latency_factor`` (0: off, else > 1): a candidate slower
        than that many times the median of the others (and 10 ms more) gets
        the high-latency penalty, as in a router with the same setting."""
    def best(self, task: str) -> str:
        """The best model id for ``task``; ties go to the model listed first."""
    def score(self, task: str) -> list[tuple[str, ScoreBreakdown]]:
        """Every capable model's score for ``task``, explained, in pool order."""
    def record(self, model: str, replica: str, task: str, success: bool, latency_ms: float) -> None:
        """Records an outcome in the pool's tracker (the feedback loop)."""
    @property
    def models(self) -> list[str]: ...
    @property
    def tasks(self) -> list[str]: ...
    @property
    def tracker(self) -> PerformanceTracker: ...

@final
class RequestProfile:
    """What a request is and how hard it looks (see ``zeta_fast.profile``).

    Example:
        >>> from zeta_fast import profile
        >>> p = profile("Write a haiku about autumn")
        >>> p.task_type, 0.0 <= p.complexity <= 1.0
        ('chat', True)
    """

    @property
    def task_type(self) -> str:
        """``code``, ``reasoning``, ``chat``, ``knowledge`` or ``embedding``."""
    @property
    def complexity(self) -> float:
        """0 (trivial) ..= 1 (hard): 0.35 length + 0.25 step/constraint cues +
        0.15 math + 0.15 code + 0.10 conversation depth, each part saturating."""
    @property
    def task_probabilities(self) -> dict[str, float]:
        """The classifier's probability for each text task type."""
    @property
    def features(self) -> dict[str, int]:
        """The measurements behind the profile (chars, token_estimate, lines,
        words, code_lines, code_fences, math_markers, multi_step_cues,
        constraint_cues, question_marks, turns)."""
    def to_dict(self) -> dict[str, Any]:
        """The profile as a JSON-serialisable dict."""

def _profile_text(text: str, turns: int = 1, embedding: bool = False) -> RequestProfile:
    """Profiles a request text."""

def profile(request: Any, *, endpoint: str | None = None) -> RequestProfile:
    """Profiles a request of any shape ``request_text`` reads (``zeta_fast.profile``)."""

def request_text(request: Any, *, endpoint: str | None = None) -> tuple[str, int, bool]:
    """The text ``profile`` reads in a request (a prompt; the user turns of a
    messages list, content parts' ``text`` included; a body's ``messages``,
    ``prompt`` or ``input``), its message count and whether it is an
    embedding request.

    Raises:
        TypeError: the request is none of those shapes.
    """

FEATURE_DIM: int
"""Length of the learned router's feature vectors."""

REQUEST_FEATURES: tuple[str, ...]
#: Who gives verdicts on answers (``RouterCore.feedback``'s ``source``).
VERDICT_SOURCES: tuple[str, ...]
#: Per verdict source: how likely its verdict is right when it says no more.
DEFAULT_CONFIDENCE: tuple[float, ...]
#: Structural check results (``RouterCore.check_answer``), ``ok`` first.
ANSWER_CHECKS: tuple[str, ...]
#: Request kinds the structural checks tell apart.
REQUEST_KINDS: tuple[str, ...]
"""Request features a model may be unable to serve, in bit order."""

@final
class Features:
    """A sparse feature vector of a request (``FEATURE_DIM`` long)."""

    @property
    def indices(self) -> npt.NDArray[np.uint32]:
        """Indices of the non-zero entries (word buckets repeat per occurrence)."""
    @property
    def values(self) -> npt.NDArray[np.float64]:
        """The entries' values."""
    def __len__(self) -> int: ...
    def to_bytes(self) -> bytes:
        """The indices, packed as the outcome log keeps them: sorted, as LEB128
        gaps after a 4-byte marker (the values follow from the indices)."""
    @staticmethod
    def from_bytes(data: bytes) -> Features:
        """Rebuilds features from ``to_bytes()`` (or from an older log's plain
        little-endian u32 indices)."""

def _text_features(text: str, categories: list[str] = ...) -> Features:
    """The features of a text with its categories."""

def _write_learned_state(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes ``OutcomePredictor.to_bytes()`` output atomically, the previous
    file kept as ``.prev``; ``SnapshotError`` for bytes that would not load,
    ``OSError`` when the write fails."""

def _read_learned_state(
    path: str | os.PathLike[str],
) -> tuple[bytes, Path, str | None] | None:
    """The newest good learned state (the file, else its ``.prev``): its
    bytes, the file it came from, why the newer file was skipped; None when
    neither exists; ``SnapshotError`` when neither is usable or one is not a
    regular file."""

@final
class OutcomePredictor:
    """Per-model success predictors (see ``zeta_fast.learning.OutcomePredictor``)."""

    def __new__(
        cls, models: list[str], params: dict[str, float] | None = None
    ) -> OutcomePredictor: ...
    @property
    def models(self) -> list[str]: ...
    @property
    def params(self) -> dict[str, float]: ...
    @property
    def updates(self) -> int: ...
    def outcomes_seen(self) -> list[int]: ...
    def update(
        self,
        features: Features,
        known: list[tuple[int, bool]],
        category: str | None = None,
        learning_rate: float | None = None,
        weight: float = 1.0,
    ) -> None: ...
    def update_targets(
        self,
        features: Features,
        known: list[tuple[int, float]],
        category: str | None = None,
        learning_rate: float | None = None,
        weight: float = 1.0,
    ) -> None:
        """Learns one request from soft targets: (model index, probability
        that its answer was good) pairs."""
    def predict(self, features: Features) -> npt.NDArray[np.float64]: ...
    def prior(self, category: str | None = None) -> npt.NDArray[np.float64]: ...
    def utility(
        self, features: Features, category: str | None = None
    ) -> npt.NDArray[np.float64]: ...
    def to_bytes(self) -> bytes: ...
    def restore(self, data: bytes) -> None: ...
    def average_with(self, states: list[bytes]) -> int: ...
    def categories(self) -> list[tuple[str, list[tuple[float, float]]]]: ...

def _profile_features(text: str) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """The task classifier's distinct word- and character-space buckets of a
    text (for training)."""

@final
class ReplicaSet:
    """The replicas of one model: lock-free in-flight counters with capacity
    limits, and the choice of a replica.

    ``policy`` is ``"least_loaded"`` (lowest in-flight / capacity, ties to the
    lowest index) or ``"power_of_two"`` (the less loaded of two random ones).
    A slot is taken by compare-and-swap below capacity, so no interleaving of
    threads ever runs more requests on a replica than it allows; a capacity
    of 0 means unlimited.

    Example:
        >>> from zeta_fast import ReplicaSet
        >>> replicas = ReplicaSet([1, 2])
        >>> [replicas.acquire() for _ in range(4)]
        [0, 1, 1, None]
        >>> replicas.release(0)
        >>> replicas.in_flight
        [0, 2]
    """

    def __new__(cls, capacities: Sequence[int], policy: str = "least_loaded") -> ReplicaSet: ...
    def acquire(self) -> int | None:
        """Chooses a healthy replica with room and takes a slot on it; ``None``
        when all are down or full (the caller routes to its next-best model)."""
    def try_acquire(self, index: int) -> bool:
        """Takes a slot on one replica if it is healthy and has room."""
    def release(self, index: int) -> None:
        """Gives a slot back when the request ends, whatever its outcome."""
    def set_healthy(self, index: int, healthy: bool) -> None:
        """Marks a replica healthy or not; unhealthy ones are never chosen."""
    def is_healthy(self, index: int) -> bool: ...
    @property
    def in_flight(self) -> list[int]:
        """Requests running on each replica now."""
    @property
    def policy(self) -> str: ...
    def __len__(self) -> int: ...

@final
class Decision:
    """One routing decision: which model and replica, and why (see ``Router``)."""

    @property
    def model_id(self) -> str: ...
    @property
    def replica_id(self) -> str: ...
    @property
    def task_type(self) -> str: ...
    @property
    def complexity(self) -> float: ...
    @property
    def context(self) -> str | None: ...
    @property
    def profile(self) -> RequestProfile | None: ...
    @property
    def capability_score(self) -> float: ...
    @property
    def explored(self) -> bool:
        """Sent to a random other candidate by the learned router's exploration."""
    @property
    def pinned(self) -> bool:
        """The caller named the model: retries stay on it and its fallbacks."""
    @property
    def needs(self) -> int:
        """The request features it needs (a bit mask of ``REQUEST_FEATURES``)."""
    @property
    def learned_category(self) -> str | None:
        """The learned router's category of the request (None: not learned)."""
    @property
    def learned_features(self) -> Features | None:
        """The request's learned features (None: learning off or no text)."""
    @property
    def performance_score(self) -> float: ...
    @property
    def performance_adjustment(self) -> float: ...
    @property
    def has_performance_data(self) -> bool: ...
    @property
    def success_rate(self) -> float: ...
    @property
    def avg_latency_ms(self) -> float: ...
    @property
    def penalties(self) -> list[str]: ...
    @property
    def runners_up(self) -> list[tuple[str, float]]:
        """The other candidates in the order they were considered, with scores."""
    def to_dict(self) -> dict[str, Any]:
        """The decision record as a JSON-serialisable dict."""

@final
class RouterCore:
    """The native router behind ``zeta_fast.Router``."""

    def __new__(
        cls,
        tracker: PerformanceTracker,
        models: list[ModelSettings],
        contexts: list[str] = ...,
        config: AdaptiveConfig | None = None,
        policy: str = "power_of_two",
        spread_margin: float = 10.0,
        resilience: ResilienceSettings | None = None,
        learning: LearningSettings | None = None,
        cost: dict[str, Any] | None = None,
        model_ordering_name: str = "spread",
    ) -> RouterCore: ...
    @property
    def model_ordering(self) -> str:
        """The model ordering's name (one of ``MODEL_ORDERINGS``)."""
    def feedback(
        self,
        decision: Decision,
        good: bool,
        *,
        source: str | None = None,
        confidence: float | None = None,
    ) -> bool:
        """Learns a quality verdict on a decision's answer from ``source``
        (one of ``VERDICT_SOURCES``; ``explicit`` by default) with
        ``confidence`` in [0, 1] (once per decision and source), then hands
        it to the subscribers when learned."""
    def check_answer(self, decision: Decision, check: str) -> bool:
        """Records the structural check of a decision's answer (once): ``ok``
        or the failure (one of ``ANSWER_CHECKS``); True when learned."""
    def verdict_counts(self) -> list[tuple[str, str, int, int]]:
        """``(source, model_id, good, bad)`` for every source and model with a verdict."""
    def kind_checks(self, model: str) -> dict[str, tuple[int, int, float]]:
        """Per request kind: recent (checked, failed) structural checks and
        the capability factor they give."""
    def predict(self, request: Any) -> dict[str, Any]:
        """Per model: success probability, prior, learned capability, expected latency."""
    @property
    def predictor(self) -> OutcomePredictor | None:
        """The learned router's predictor (None when learning is off)."""
    def route(
        self,
        request: Any = None,
        *,
        context: str | None = None,
        profile: RequestProfile | None = None,
        model: str | None = None,
        needs: int = 0,
        replica: str | None = None,
        session: str | None = None,
    ) -> Decision:
        """Routes a request (or a known profile) and takes a replica slot;
        with ``model`` and ``replica``, that replica when it can take it;
        ``session`` names the conversation (``cache_aware`` keeps it on one
        replica).

        Raises:
            UnsupportedRequestError: no model (or not ``model``) serves a
                feature in ``needs``.
        """
    def release(self, decision: Decision) -> bool:
        """Gives a decision's slot back without recording an outcome; False
        when it was already recorded or released."""
    def set_unserved(self, model: str, features: list[str]) -> None:
        """Declares the request features a model cannot serve."""
    def learn_unserved(self, model: str, feature: str, ttl_s: float) -> None:
        """Skips a model for requests with ``feature`` for ``ttl_s`` (it refused one)."""
    def unserved(self, model: str) -> list[str]:
        """The features a model cannot serve now, declared and learned."""
    def record(self, decision: Decision, success: bool, latency_ms: float) -> bool:
        """Records a decision's outcome and frees its replica slot (once),
        then hands it to the subscribers; true when the learned router
        learned it."""
    def set_subscribers(self, subscribers: tuple[Callable[..., None], ...]) -> None:
        """The callables ``record`` and ``feedback`` hand each outcome to
        (``zeta_fast.outcomes.OutcomeSubscriber``'s arguments); a tuple
        replaced whole, empty for none."""
    def watch_trends(self, per_task: bool = True) -> TrendWatch:
        """A trend watch over this router's models that the core feeds every
        recorded outcome about a replica, in Rust (no Python call); each
        call adds another."""
    def complexity_range(self, model: str, context: str | None = None) -> tuple[float, float]: ...
    def tune_ranges(
        self, min_requests: int = 20, target_success_rate: float = 0.95, step: float = 0.05
    ) -> list[dict[str, Any]]: ...
    def in_flight(self, model: str) -> list[int]: ...
    def set_remote_in_flight(self, model: str, counts: list[int]) -> None:
        """What other router instances have running on each replica."""
    def remote_in_flight(self, model: str) -> list[int]: ...
    def set_healthy(self, model: str, replica: str, healthy: bool) -> None: ...
    def reroute(
        self,
        decision: Decision,
        tried: list[Decision] = ...,
        needs_longer_context: bool = False,
    ) -> Decision:
        """Where to send a failed request next: another replica of its model,
        then its fallback chain, then the other candidates by score."""
    def record_outcome(
        self,
        decision: Decision,
        kind: OutcomeKind | str,
        latency_ms: float,
        *,
        ttft_ms: float | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        request_id: str | None = None,
        cached_tokens: int | None = None,
    ) -> bool:
        """Records how a dispatched request ended and frees its replica slot;
        true when the learned router learned it. ``request_id`` is kept in
        the outcome log; ``cached_tokens`` (of ``prompt_tokens``, those the
        engine reused) scores the ``cache_aware`` policy's prefix index."""
    def close(self) -> None:
        """Refuses every later ``route`` and ``record`` (InvalidInputError)."""
    def log_outcomes(self, writer: OutcomeLogWriter | None) -> None:
        """Appends every outcome recorded from now on to ``writer``, in
        Rust; None detaches the log."""
    def record_overhead(self, ms: float) -> None:
        """Counts ``ms`` of the caller's own time on one request (a gateway's
        overhead) in a lifetime histogram.

        Raises:
            InvalidInputError: ``ms`` is negative, NaN or inf.
        """
    def overhead(self) -> dict[str, Any]:
        """The overhead histogram: ``{"buckets": [(le_ms, cumulative_count)],
        "sum_ms": float, "count": int}``, ``+Inf`` last."""
    def scores(self) -> list[tuple[str, str, ScoreBreakdown]]:
        """Every model's score now for every task it serves, as routing sees
        it: ``(model_id, task, breakdown)`` in configuration order."""
    def try_retry(self) -> bool:
        """Spends a retry token; False when retries are over budget."""
    def try_hedge(self) -> bool:
        """Spends a hedge token; False when hedges are over budget."""
    def budget_tokens(self) -> tuple[float, float]:
        """(retry tokens, hedge tokens) left."""
    def backoff_ms(self, retry: int, retry_after_ms: float | None = None) -> float:
        """The jittered wait before retry number ``retry`` (1 = first)."""
    def replica_p95_ms(self, decision: Decision) -> float | None:
        """The recent p95 latency of the decision's replica."""
    def set_engine_load(self, model: str, replica: str, waiting: int, kv_usage: float) -> None:
        """Stores an engine's own load report for a replica, taken now."""
    def hold_replica(self, decision: Decision, hold_ms: float) -> None:
        """Keeps the decision's replica out of selection for ``hold_ms``."""
    def reset_breaker(self, model: str, replica: str) -> None:
        """Closes a replica's circuit breaker."""
    def share_prefixes(self) -> bool:
        """Starts keeping the ``cache_aware`` models' placements for other
        router instances; False when no model uses the policy."""
    def export_prefix(self, model: str) -> tuple[bytes, int]:
        """The placements made since the last call, packed, and how many
        were dropped for want of room (empty unless sharing is on)."""
    def import_prefix(self, model: str, data: bytes) -> int:
        """Applies another instance's placements; the count applied.

        Raises:
            InvalidInputError: the record does not parse (nothing applied).
        """
    def prefix_cache(self, model: str) -> dict[str, Any] | None:
        """The ``cache_aware`` policy's prefix index for a model: ``entries``,
        ``sessions``, ``allocated_bytes`` and per replica id its
        ``requests``, ``horizon`` (requests back its entries are trusted;
        None: unknown), ``reports``, ``hits``, ``misses``,
        ``predicted_tokens``, ``cached_tokens``, ``prompt_tokens`` and
        ``recent_work``; None under other policies."""
    def replica_status(self, model: str) -> list[ReplicaStatus]:
        """Each replica of a model: health, breaker, load, outcome counters,
        a lifetime latency histogram, its recent record and whether that
        record has it passed over (see ``ReplicaStatus``)."""

@final
class ReplicaStatus:
    """One replica's state now (``RouterCore.replica_status``).

    Example:
        >>> from zeta_fast import ManualClock, PerformanceTracker, Router
        >>> router = Router("examples/router.yaml",
        ...                 tracker=PerformanceTracker(clock=ManualClock(0), persist=False))
        >>> status = router.core.replica_status("coder-7b")[0]
        >>> status.replica_id, status.healthy, status.breaker, status.outcomes["success"]
        ('coder-7b-a', True, 'closed', 0)
    """

    @property
    def replica_id(self) -> str: ...
    @property
    def healthy(self) -> bool:
        """False when marked unhealthy (health checks): never chosen then."""
    @property
    def in_flight(self) -> int:
        """Requests this router has running on it."""
    @property
    def breaker(self) -> str | None:
        """The breaker's state: ``closed``, ``open`` or ``half_open``."""
    @property
    def breaker_admits_in_ms(self) -> int:
        """How long until the breaker admits a request again (0: now)."""
    @property
    def engine_waiting(self) -> int:
        """Requests the engine reports queued (its last scrape, while fresh)."""
    @property
    def engine_kv_usage(self) -> float:
        """KV-cache use the engine reports, 0..1."""
    @property
    def outcomes(self) -> dict[str, int]:
        """Outcomes by kind (every ``OutcomeKind`` value)."""
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def mean_ttft_ms(self) -> float | None:
        """Mean time to the first streamed event (None before a stream)."""
    @property
    def latency(self) -> dict[str, Any]:
        """The lifetime latency histogram, shaped as ``RouterCore.overhead()``."""
    @property
    def recent_failure_share(self) -> float | None:
        """Its recent failure share (None before its first outcome)."""
    @property
    def recent_latency_ms(self) -> float | None:
        """Its recent latency (None before its first answer)."""
    @property
    def degraded(self) -> bool:
        """Passed over for being slow or failing beside its twins."""
    def to_dict(self) -> dict[str, Any]:
        """The status as a JSON-serialisable dict."""

@final
class Task:
    """A task type a model can declare a capability for.

    Example:
        >>> from zeta_fast import Task
        >>> Task.CODE.value, Task.parse("chat") == Task.CHAT
        ('code', True)
    """

    CODE: Task
    REASONING: Task
    CHAT: Task
    KNOWLEDGE: Task
    EMBEDDING: Task
    @property
    def value(self) -> str:
        """The name configurations and decisions use (``"code"``, ...)."""
    @staticmethod
    def members() -> list[Task]:
        """Every task type, in the core's order."""
    @staticmethod
    def parse(value: str) -> Task:
        """The task type named ``value``.

        Raises:
            InvalidInputError: no task type has that name.
        """

@final
class OutcomeKind:
    """How a dispatched request ended, and whether that counts against the
    replica (``record_outcome`` takes it or its name).

    Example:
        >>> from zeta_fast import OutcomeKind
        >>> OutcomeKind.CLIENT_ERROR.value, OutcomeKind.CLIENT_ERROR.is_replica_fault
        ('client_error', False)
        >>> OutcomeKind.TIMEOUT.is_replica_fault
        True
    """

    SUCCESS: OutcomeKind
    TIMEOUT: OutcomeKind
    CONNECT: OutcomeKind
    RATE_LIMITED: OutcomeKind
    SERVER_ERROR: OutcomeKind
    STREAM_CUT: OutcomeKind
    CONTEXT_LENGTH: OutcomeKind
    CLIENT_ERROR: OutcomeKind
    UNSUPPORTED: OutcomeKind
    CANCELLED: OutcomeKind
    INTERNAL: OutcomeKind
    OTHER: OutcomeKind
    @property
    def value(self) -> str:
        """The name metrics, logs and ``record_outcome`` use."""
    @property
    def is_replica_fault(self) -> bool:
        """Whether it counts against the replica (window, breaker, health)."""
    @staticmethod
    def members() -> list[OutcomeKind]:
        """Every kind, in counter order."""
    @staticmethod
    def parse(value: str) -> OutcomeKind:
        """The kind named ``value``.

        Raises:
            InvalidInputError: no kind has that name.
        """

@final
class ModelSettings:
    """One model as the core takes it, validated when built (a non-empty
    id; capabilities in [0, 100] for known task types; complexity ranges
    within [0, 1], its own first, then one per context; at least one
    replica, ids unique).

    Example:
        >>> from zeta_fast._core import ModelSettings
        >>> ModelSettings("coder", {"code": 90}, [(0.0, 0.6)], [("coder-a", 4)]).replicas
        [('coder-a', 4)]
    """

    def __new__(
        cls,
        id: str,
        capabilities: dict[str, float],
        ranges: list[tuple[float, float]],
        replicas: list[tuple[str, int]],
        context_window: int = 0,
        fallbacks: list[str] = ...,
    ) -> ModelSettings: ...
    @property
    def id(self) -> str: ...
    @property
    def capabilities(self) -> list[tuple[str, float]]: ...
    @property
    def ranges(self) -> list[tuple[float, float]]: ...
    @property
    def replicas(self) -> list[tuple[str, int]]: ...
    @property
    def context_window(self) -> int: ...
    @property
    def fallbacks(self) -> list[str]: ...

@final
class ResilienceSettings:
    """The dispatch settings the core takes (breakers, retry and hedge
    budgets, backoff, engine-load TTL, replica adaptation, the relative
    latency rule), validated when built. Their defaults are written once, in
    the core; ``ResilienceSettings().to_dict()`` reads them.

    Example:
        >>> from zeta_fast._core import ResilienceSettings
        >>> ResilienceSettings(failure_threshold=7).to_dict()["failure_threshold"]
        7

    Raises:
        ConfigError: a value out of range, or a field it does not have.
    """

    def __new__(cls, **fields: float) -> ResilienceSettings: ...
    def to_dict(self) -> dict[str, Any]:
        """Every field with its value."""

@final
class LearningSettings:
    """The learned router's settings (``min_outcomes``, ``explore``,
    ``learn_from_outcomes``, ``source_weights`` (source -> weight),
    ``learning_rate``, ``l2``, ``prior_weight``, ``prior_strength``),
    validated when built; defaults are the core's.

    Raises:
        ConfigError: a value out of range.
        InvalidInputError: a setting it does not have.
    """

    def __new__(cls, **fields: float | bool | dict[str, float]) -> LearningSettings: ...
    def to_dict(self) -> dict[str, Any]:
        """Every setting with its value."""

@final
class OutcomeLogWriter:
    """The outcome log's writer (SQLite), with a thread of its own."""

    def __new__(
        cls,
        path: str,
        *,
        costs: dict[str, float] = ...,
        max_pending: int = 100_000,
        flush_interval_s: float = 0.2,
        retention_days: float | None = ...,  # 30.0
        prune_every_s: float = 600.0,
    ) -> OutcomeLogWriter: ...
    def append(
        self,
        decision: Decision,
        outcome: str,
        latency_ms: float,
        *,
        ttft_ms: float | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        learned: bool | None = None,
        request_id: str | None = None,
    ) -> bool: ...
    def flush(self, timeout_s: float = 10.0) -> bool: ...
    def close(self, timeout_s: float = 10.0) -> None: ...
    @property
    def written(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def pending(self) -> int: ...
    @property
    def last_error(self) -> str | None: ...

@final
class Change:
    """A detected change: ``metric`` is ``"success"`` or ``"latency"``,
    ``kind`` ``"sudden"`` or ``"drift"``; ``value`` is the recent level
    (failure share, or latency ms) and ``baseline`` the level before.

    Raises:
        InvalidInputError: an unknown metric or kind.
    """

    def __new__(cls, metric: str, kind: str, value: float, baseline: float) -> Change: ...
    @property
    def metric(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def baseline(self) -> float: ...

@final
class SuccessDetector:
    """Failures of one stream: a sudden jump of their share over the last
    ``window`` outcomes, or a slow rise (Page-Hinkley), after ``warmup``
    outcomes (see ``zeta_fast.alerts.detectors``).

    Example:
        >>> from zeta_fast.alerts import SuccessDetector
        >>> detector = SuccessDetector()
        >>> [detector.observe(True) for _ in range(100)].count(None)
        100
        >>> change = next(c for _ in range(20) if (c := detector.observe(False)))
        >>> change.metric, change.kind, change.value, round(change.baseline, 4)
        ('success', 'sudden', 0.3, 0.004)

    Raises:
        ConfigError: a setting out of range (``window`` >= 2, ``warmup``
            >= 1, ``0 < alpha <= 1``, ``threshold`` > 0, finite floats).
    """

    def __new__(
        cls,
        *,
        window: int = 20,
        warmup: int = 50,
        alpha: float = 0.002,
        sudden_margin: float = 0.25,
        delta: float = 0.05,
        threshold: float = 8.0,
    ) -> SuccessDetector: ...
    def observe(self, success: bool) -> Change | None:
        """One outcome: the change it completes, if any."""
    @property
    def seen(self) -> int:
        """Outcomes observed so far."""

@final
class LatencyDetector:
    """Latency of one stream on a log scale: a sudden jump of the recent
    median, or a slow rise (Page-Hinkley on standardised log latency).

    Raises:
        ConfigError: a setting out of range (as ``SuccessDetector``;
            ``sudden_sigmas`` >= 0, ``sudden_ratio`` > 0).
    """

    def __new__(
        cls,
        *,
        window: int = 20,
        warmup: int = 50,
        alpha: float = 0.002,
        sudden_sigmas: float = 4.0,
        sudden_ratio: float = 1.5,
        delta: float = 0.5,
        threshold: float = 25.0,
    ) -> LatencyDetector: ...
    def observe(self, latency_ms: float) -> Change | None:
        """One successful request's latency: the change it completes, if any.

        Raises:
            InvalidInputError: ``latency_ms`` is negative, NaN or inf.
        """
    @property
    def seen(self) -> int:
        """Latencies observed so far."""

@final
class TrendWatch:
    """The success and latency detectors of every model (and, with
    ``per_task``, of every model x task type), and the changes they
    detected, queued for ``take_changes`` (at most ``capacity``; the rest
    are counted in ``overflowed``). A router's comes from
    ``RouterCore.watch_trends`` and is fed by its core; one built here is
    fed by ``observe``.

    Example:
        >>> from zeta_fast.alerts import TrendWatch
        >>> watch = TrendWatch(["a"])
        >>> for i in range(106):
        ...     watch.observe("a", i < 100, 20.0, "code")
        >>> [(m, t, c.kind, n) for m, t, c, n in watch.take_changes()]
        [('a', None, 'sudden', 106), ('a', 'code', 'sudden', 106)]

    Raises:
        ConfigError: ``capacity`` < 1.
        InvalidInputError: a model named twice.
    """

    def __new__(
        cls, models: Sequence[str], *, per_task: bool = True, capacity: int = 1024
    ) -> TrendWatch: ...
    def observe(
        self, model_id: str, success: bool, latency_ms: float, task: str | None = None
    ) -> None:
        """One outcome about the replica (a success, or its fault) of a
        request of ``task`` type.

        Raises:
            InvalidInputError: an unknown model or task type, or a latency
                that is negative, NaN or inf.
        """
    def take_changes(self) -> list[tuple[str, str | None, Change, int]]:
        """The changes detected since the last call, oldest first: (model
        id, task type or None for the model as a whole, change, the model's
        outcomes observed when it was detected)."""
    def observed(self) -> dict[str, int]:
        """Outcomes observed so far, per model id."""
    @property
    def models(self) -> list[str]: ...
    @property
    def per_task(self) -> bool: ...
    @property
    def capacity(self) -> int: ...
    @property
    def overflowed(self) -> int:
        """Changes dropped because ``capacity`` were already waiting."""
