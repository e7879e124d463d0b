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

from zeta_fast._core import OutcomePredictor as _NativePredictor
from zeta_fast.learning.features import Features

__all__ = ["OutcomePredictor"]


class OutcomePredictor:
    """Success predictors for ``models`` over one feature space (the
    arithmetic runs in the core, the same code the live router uses).

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
        learning_rate: float = 0.3,
        l2: float = 1e-5,
        prior_weight: float = 2.0,
        prior_strength: float = 40.0,
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
        self.prior_weight = prior_weight
        self._native = _NativePredictor(
            self.models,
            {
                "learning_rate": learning_rate,
                "l2": l2,
                "prior_weight": prior_weight,
                "prior_strength": prior_strength,
            },
        )

    @classmethod
    def _wrap(cls, native: _NativePredictor) -> OutcomePredictor:
        """A facade over a router's own predictor (shared, not copied)."""
        self = cls.__new__(cls)
        self.models = list(native.models)
        params = native.params
        self.learning_rate = params["learning_rate"]
        self.prior_weight = params["prior_weight"]
        self._native = native
        return self

    @property
    def updates(self) -> int:
        """Requests learned so far."""
        return self._native.updates

    def outcomes_seen(self) -> dict[str, int]:
        """Outcomes learned per model."""
        return dict(zip(self.models, self._native.outcomes_seen(), strict=True))

    # -- learning ------------------------------------------------------------------

    def update(
        self,
        features: Features,
        outcomes: Sequence[bool | float | None] | Mapping[str, bool | float],
        *,
        category: str | None = None,
        learning_rate: float | None = None,
        weight: float = 1.0,
    ) -> None:
        """Learns from one request: ``outcomes`` per model (in ``models``
        order, None where unknown) or a mapping of the known ones; each a
        verdict (True good) or a probability in [0, 1] that the answer was
        good (a soft target: a verdict from a source that is not always
        right). ``weight`` (in (0, 10]) is how much the verdicts count: it
        scales the step, and the priors count them as that share of an
        outcome."""
        known = self._known(outcomes)
        if all(isinstance(y, bool) for _, y in known):
            self._native.update(
                features, [(m, bool(y)) for m, y in known], category, learning_rate, weight
            )
        else:
            self._native.update_targets(
                features, [(m, float(y)) for m, y in known], category, learning_rate, weight
            )

    def _known(
        self, outcomes: Sequence[bool | float | None] | Mapping[str, bool | float]
    ) -> list[tuple[int, bool | float]]:
        if isinstance(outcomes, Mapping):
            unknown = set(outcomes) - set(self.models)
            if unknown:
                raise ValueError(f"unknown model(s) {sorted(unknown)}; known: {self.models}")
            return [(self.models.index(name), _verdict(y)) for name, y in outcomes.items()]
        if len(outcomes) != len(self.models):
            raise ValueError(
                f"outcomes must have one entry per model ({len(self.models)}), got {len(outcomes)}"
            )
        return [(m, _verdict(y)) for m, y in enumerate(outcomes) if y is not None]

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
        known = [self._known(outcomes) for _, outcomes, _ in samples]
        update = self._native.update
        for epoch in range(epochs):
            eta = self.learning_rate / (1 + epoch)
            for index in rng.permutation(len(samples)):
                features, _, category = samples[index]
                update(features, known[index], category if epoch == 0 else None, eta)
        return self

    # -- predicting ----------------------------------------------------------------

    def predict(self, features: Features) -> npt.NDArray[np.float64]:
        """P(success) per model from the text alone."""
        return self._native.predict(features)

    def prior(self, category: str | None) -> npt.NDArray[np.float64]:
        """The smoothed success rate per model in ``category`` (overall when None or new)."""
        return self._native.prior(category)

    def utility(self, features: Features, category: str | None = None) -> npt.NDArray[np.float64]:
        """Per model: predicted success plus the weighted category prior."""
        return self._native.utility(features, category)

    def categories(self) -> list[tuple[str, dict[str, tuple[float, float]]]]:
        """Categories seen so far, with (successes, requests) per model, each
        verdict counted by its weight (a weak signal counts a share of one)."""
        return [
            (name, dict(zip(self.models, counts, strict=True)))
            for name, counts in self._native.categories()
        ]

    # -- saving --------------------------------------------------------------------

    def average_with(self, states: list[bytes]) -> int:
        """Averages the weights with other instances' ``to_bytes()`` states
        (federated averaging; the category counts stay this one's own)."""
        return self._native.average_with(states)

    def to_bytes(self) -> bytes:
        """The learned state: sparse weights and counts."""
        return self._native.to_bytes()

    def restore(self, data: bytes) -> None:
        """Loads ``to_bytes()`` output; models are matched by id."""
        self._native.restore(data)


def _verdict(value: object) -> bool | float:
    """A verdict as given: a bool (or 0/1 as numpy gives them) stays one, any
    other number is a soft target."""
    if isinstance(value, bool | np.bool_) or value in (0, 1):
        return bool(value)
    return float(value)  # type: ignore[arg-type]
