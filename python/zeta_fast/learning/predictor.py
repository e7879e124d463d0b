"""Per-model success prediction for the learned router.

For every model, a logistic regression over :func:`text_features`, trained
by stochastic gradient descent, so it learns offline from a table or the
outcome log and online from each recorded outcome alike (an update touches
only the request's few hundred non-zero features). Beside it, a smoothed
success rate per category (a subject, a task type): ``(successes + k *
overall) / (requests + k)``. A model's utility for a request is ``P(success
| text) + prior_weight * prior(category)``; on MMLU the blend beats either
part alone (see ``zeta-fast eval routing``).

With bandit feedback (only the chosen model's outcome is known) pass
``None`` for the others: they are left untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from zeta_fast.learning.features import FEATURE_DIM, Features

__all__ = ["OutcomePredictor"]


class OutcomePredictor:
    """Success predictors for ``models`` over one feature space.

    Args:
        models: the model ids, in the order predictions come out.
        learning_rate: the SGD step (divided by ``1 + epoch`` in ``fit``).
        l2: weight decay applied to the touched weights.
        prior_weight: how much the category prior adds to the utility.
        prior_strength: ``k``, the pseudo-count pulling a category to the
            model's overall success rate.
    """

    def __init__(
        self,
        models: Sequence[str],
        *,
        learning_rate: float = 0.5,
        l2: float = 1e-5,
        prior_weight: float = 2.0,
        prior_strength: float = 20.0,
    ) -> None:
        if not models:
            raise ValueError("models must not be empty")
        if len(set(models)) != len(models):
            raise ValueError(f"models must be unique, got {list(models)}")
        for name, value in (("learning_rate", learning_rate), ("prior_strength", prior_strength)):
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
        for name, value in (("l2", l2), ("prior_weight", prior_weight)):
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        self.models = list(models)
        self.learning_rate = learning_rate
        self.l2 = l2
        self.prior_weight = prior_weight
        self.prior_strength = prior_strength
        self.weights = np.zeros((len(models), FEATURE_DIM))
        # Per model: [successes, requests] overall and per category.
        self._overall = np.zeros((len(models), 2))
        self._by_category: dict[str, npt.NDArray[np.float64]] = {}
        self.updates = 0

    # -- learning ------------------------------------------------------------------

    def update(
        self,
        features: Features,
        outcomes: Sequence[bool | None] | Mapping[str, bool],
        *,
        category: str | None = None,
        learning_rate: float | None = None,
    ) -> None:
        """Learns from one request: ``outcomes`` per model (in ``models``
        order, None where unknown) or a mapping of the known ones."""
        known = self._known(outcomes)
        if not known:
            return
        indices, values = features
        eta = self.learning_rate if learning_rate is None else learning_rate
        rows = np.fromiter((m for m, _ in known), dtype=np.int64)
        targets = np.fromiter((float(y) for _, y in known), dtype=np.float64)
        block = self.weights[np.ix_(rows, indices)]
        probabilities = 1.0 / (1.0 + np.exp(-(block @ values)))
        gradient = (probabilities - targets)[:, None] * values[None, :] + self.l2 * block
        self.weights[np.ix_(rows, indices)] = block - eta * gradient
        stats = None
        if category is not None:
            stats = self._by_category.setdefault(category, np.zeros((len(self.models), 2)))
        for model, success in known:
            self._overall[model] += (float(success), 1.0)
            if stats is not None:
                stats[model] += (float(success), 1.0)
        self.updates += 1

    def _known(
        self, outcomes: Sequence[bool | None] | Mapping[str, bool]
    ) -> list[tuple[int, bool]]:
        if isinstance(outcomes, Mapping):
            unknown = set(outcomes) - set(self.models)
            if unknown:
                raise ValueError(f"unknown model(s) {sorted(unknown)}; known: {self.models}")
            return [(self.models.index(name), bool(y)) for name, y in outcomes.items()]
        if len(outcomes) != len(self.models):
            raise ValueError(
                f"outcomes must have one entry per model ({len(self.models)}), got {len(outcomes)}"
            )
        return [(m, bool(y)) for m, y in enumerate(outcomes) if y is not None]

    def fit(
        self,
        samples: Sequence[tuple[Features, Sequence[bool | None], str | None]],
        *,
        epochs: int = 8,
        seed: int = 0,
    ) -> OutcomePredictor:
        """Trains on (features, outcomes, category) samples for ``epochs``
        shuffled passes, the step shrinking as ``1 / (1 + epoch)``; category
        counts are taken once."""
        rng = np.random.default_rng(seed)
        for epoch in range(epochs):
            eta = self.learning_rate / (1 + epoch)
            for index in rng.permutation(len(samples)):
                features, outcomes, category = samples[index]
                self.update(
                    features, outcomes, category=category if epoch == 0 else None, learning_rate=eta
                )
        return self

    # -- predicting ----------------------------------------------------------------

    def predict(self, features: Features) -> npt.NDArray[np.float64]:
        """P(success) per model from the text alone."""
        indices, values = features
        return 1.0 / (1.0 + np.exp(-(self.weights[:, indices] @ values)))

    def prior(self, category: str | None) -> npt.NDArray[np.float64]:
        """The smoothed success rate per model in ``category`` (overall when None or new)."""
        overall = (self._overall[:, 0] + 1.0) / (self._overall[:, 1] + 2.0)
        stats = self._by_category.get(category) if category is not None else None
        if stats is None:
            return overall
        k = self.prior_strength
        return (stats[:, 0] + k * overall) / (stats[:, 1] + k)

    def utility(self, features: Features, category: str | None = None) -> npt.NDArray[np.float64]:
        """Per model: predicted success plus the weighted category prior."""
        return self.predict(features) + self.prior_weight * self.prior(category)
