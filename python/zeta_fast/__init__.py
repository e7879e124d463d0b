"""zeta_fast: adaptive LLM request routing with a Rust core.

Example:
    >>> import zeta_fast
    >>> scorer = zeta_fast.AdaptiveScorer()
    >>> round(scorer.score(85, 0.99, 120, requests=100).performance_score, 2)
    88.95
"""

from __future__ import annotations

from zeta_fast._core import (
    GIL_RELEASE_MIN_CANDIDATES,
    AdaptiveConfig,
    AdaptiveScorer,
    ScoreBreakdown,
    __version__,
)
from zeta_fast.exceptions import ConfigError, InvalidInputError, NoCandidatesError, ZetaError

__all__ = [
    "GIL_RELEASE_MIN_CANDIDATES",
    "AdaptiveConfig",
    "AdaptiveScorer",
    "ConfigError",
    "InvalidInputError",
    "NoCandidatesError",
    "ScoreBreakdown",
    "ZetaError",
    "__version__",
]
