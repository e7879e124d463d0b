"""Learning which model suits which request, from recorded outcomes.

- :mod:`zeta_fast.learning.features`: local text features (no external API);
- :mod:`zeta_fast.learning.predictor`: per-model success predictors
  (online logistic regression) with smoothed per-category priors;
- :mod:`zeta_fast.learning.evaluation`: offline evaluation on per-prompt
  outcome tables (APGR, CPT), ``zeta-fast eval routing``;
- :mod:`zeta_fast.learning.training`: retraining from the outcome log,
  ``zeta-fast learn``.

The live router uses the same predictor (``learning:`` in the router's
configuration; ``Router.predictor``).
"""

from zeta_fast.learning.features import FEATURE_DIM, text_features
from zeta_fast.learning.predictor import OutcomePredictor

__all__ = ["FEATURE_DIM", "OutcomePredictor", "text_features"]
