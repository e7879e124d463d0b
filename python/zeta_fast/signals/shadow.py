"""Shadow comparisons: run both models and decide.

For a sampled, budgeted share of the chat requests a cheaper model answered,
the same request also goes to the strongest candidate (the model with the
highest configured capability for the request's task), off the request
path, and its answer is the reference: was the cheaper answer enough? Short
answers are compared by agreement (normalised text equal: a letter, a
number, a name); longer ones by the judge, asked whether the candidate is
as good as the reference. The verdict goes to the cheaper model's decision
(source ``shadow``): it teaches the small/large choice directly, on the
requests where it was made. The shadow request is real traffic of the
strong model, recorded and checked as any other; its answer never reaches
the client.
"""

from __future__ import annotations

import copy
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from zeta_fast.backends.errors import BackendError
from zeta_fast.exceptions import InvalidInputError, NoCandidatesError, UnsupportedRequestError
from zeta_fast.signals.judge import TokenBudget, answer_text, question_of
from zeta_fast.signals.off_path import OffPath

if TYPE_CHECKING:
    from zeta_fast._core import Decision
    from zeta_fast.config import ShadowSignalSpec
    from zeta_fast.dispatch import Dispatcher
    from zeta_fast.router import Router
    from zeta_fast.signals.judge import Judge

__all__ = ["Shadow", "agree"]

_log = logging.getLogger("zeta_fast.signals.shadow")
_PUNCTUATION = re.compile(r"[\s.,;:!?\"'`()\[\]{}]+")
#: How sure an agreement verdict on short answers is taken to be.
AGREEMENT_CONFIDENCE = 0.9


def _normal(text: str) -> str:
    return _PUNCTUATION.sub(" ", text.lower()).strip()


def agree(candidate: str, reference: str, max_chars: int) -> bool | None:
    """Whether two short answers agree (normalised text equal); None when
    either is longer than ``max_chars`` (agreement says little there)."""
    a, b = _normal(candidate), _normal(reference)
    if len(a) > max_chars or len(b) > max_chars:
        return None
    return a == b


class Shadow:
    """Shadow comparisons for one gateway (one event loop)."""

    def __init__(
        self,
        spec: ShadowSignalSpec,
        router: Router,
        dispatcher: Dispatcher,
        events: Counter[tuple[str, str]],
        judge: Judge | None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.router = router
        self.dispatcher = dispatcher
        self.events = events
        self.judge = judge
        self._rng = rng or random.Random()
        self._budget = TokenBudget(spec.tokens_per_minute, clock)
        #: The gradings/comparisons running off the request path.
        self.in_flight = OffPath()
        # Per task: the models by configured capability, strongest first.
        self._by_capability: dict[str, list[tuple[float, str]]] = {}
        for model in router.config.models:
            for task, capability in model.capabilities.items():
                self._by_capability.setdefault(task, []).append((float(capability), model.id))
        for ranked in self._by_capability.values():
            ranked.sort(reverse=True)

    def strongest_for(self, decision: Decision) -> str | None:
        """The most capable model for the decision's task, when it is not
        the decision's own and is more capable than it."""
        ranked = self._by_capability.get(decision.task_type, [])
        own = next((c for c, m in ranked if m == decision.model_id), None)
        if not ranked or own is None:
            return None
        capability, strongest = ranked[0]
        return strongest if strongest != decision.model_id and capability > own else None

    def consider(self, decision: Decision, payload: Mapping[str, Any], answer: object) -> bool:
        """Samples an answered request for a shadow comparison; True when
        one was started (a task of its own, off the request path)."""
        if self.spec.sample <= 0.0 or self._rng.random() >= self.spec.sample:
            return False
        strongest = self.strongest_for(decision)
        text = answer_text(answer)
        if strongest is None or text is None:
            return False
        limit = payload.get("max_tokens") or payload.get("max_completion_tokens") or 256
        prompt_chars = sum(len(str(m.get("content", ""))) for m in payload.get("messages", []))
        if not self._budget.take(prompt_chars / 4 + float(limit)):
            self.events["shadow", "over_budget"] += 1
            return False
        body = copy.deepcopy(dict(payload))
        body.pop("stream", None)
        self.in_flight.start(self._compare(decision, strongest, body, text))
        return True

    async def _compare(
        self, decision: Decision, strongest: str, body: dict[str, Any], candidate: str
    ) -> None:
        self.events["shadow", "asked"] += 1
        try:
            target = self.router.route(body, model=strongest)
            answered = await self.dispatcher.request("/v1/chat/completions", body, target)
            reference = answer_text(answered.json())
        except (BackendError, NoCandidatesError, UnsupportedRequestError, InvalidInputError) as exc:
            self.events["shadow", "failed"] += 1
            _log.info("the shadow request to %s failed: %s", strongest, exc)
            return
        except Exception:  # a comparison must never take the gateway down
            self.events["shadow", "failed"] += 1
            _log.exception("a shadow comparison failed")
            return
        if reference is None:
            self.events["shadow", "failed"] += 1
            return
        verdict: tuple[bool, float] | None = None
        agreed = agree(candidate, reference, self.spec.max_agreement_chars)
        if agreed is not None:
            verdict = (agreed, AGREEMENT_CONFIDENCE)
        elif self.judge is not None:
            verdict = await self.judge.compare(question_of(body, 4_000), candidate, reference)
        if verdict is None:
            self.events["shadow", "no_comparison"] += 1
            return
        good, confidence = verdict
        self.events["shadow", "enough" if good else "not_enough"] += 1
        try:
            self.router.feedback(decision, good, source="shadow", confidence=confidence)
        except InvalidInputError:
            return  # already compared
        if self.judge is not None:
            self.judge.note(decision, "shadow", good)

    async def close(self) -> None:
        """Waits for the comparisons in flight (cancelled after a second)."""
        await self.in_flight.close()
