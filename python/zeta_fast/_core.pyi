"""Type stubs and documentation for the native module ``zeta_fast._core``.

Import the names from ``zeta_fast``; this module is private.
"""

from typing import Any, final

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike

__all__ = [
    "GIL_RELEASE_MIN_CANDIDATES",
    "AdaptiveConfig",
    "AdaptiveScorer",
    "ScoreBreakdown",
    "__version__",
]

__version__: str

GIL_RELEASE_MIN_CANDIDATES: int
"""Batches of at least this many candidates are scored with the GIL released."""

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
        """Names of the penalties that applied: ``low_success_rate``, ``high_latency``."""
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
