"""A judge: a model that grades a sampled share of answers, off the request path.

The judge is asked the configured rubric (the question and the answer, cut
to ``max_chars`` each) and answers GOOD or BAD with a confidence. Sampling
(``sample``, default 5 %) and a token budget per minute (``tokens_per_minute``:
the prompt's estimate plus ``max_tokens``) bound what it costs; an answer
sampled past the budget is not graded. A reply it cannot parse is no label
(counted). The judge is one of the router's own models (``model``: routed
to it, its replicas' failures handled as any request's) or any
OpenAI-compatible endpoint (``url``).

How far to trust it is measured, not assumed: every decision the judge
grades that also gets another source's verdict (a regeneration, an
explicit word, a failed structural check) counts an agreement or a
disagreement per source (``agreement()``, on ``/metrics``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from zeta_fast.backends.client import BackendClient, Timeouts
from zeta_fast.backends.errors import BackendError
from zeta_fast.signals.off_path import OffPath

if TYPE_CHECKING:
    import aiohttp

    from zeta_fast._core import Decision
    from zeta_fast.config import JudgeSignalSpec
    from zeta_fast.dispatch import Dispatcher
    from zeta_fast.router import Router

__all__ = ["Judge", "TokenBudget", "answer_text", "parse_verdict", "question_of"]

_log = logging.getLogger("zeta_fast.signals.judge")

_VERDICT = re.compile(r"\b(GOOD|BAD)\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\d.])(0(?:\.\d+)?|1(?:\.0+)?|\.\d+)(?![\d.])")
#: Decisions remembered for agreement (the judge's and others' verdicts).
_LEDGER_SIZE = 10_000


def parse_verdict(reply: str) -> tuple[bool, float] | None:
    """(good, confidence) from a judge's reply: its first GOOD or BAD word
    and the first number in [0, 1] after it (1 when none); None when it
    names neither, or both in its first line (no label)."""
    first_line = reply.strip().split("\n", 1)[0]
    words = {w.upper() for w in _VERDICT.findall(first_line)}
    if len(words) > 1:
        return None
    match = _VERDICT.search(reply)
    if match is None:
        return None
    good = match.group(1).upper() == "GOOD"
    number = _NUMBER.search(reply, match.end())
    confidence = float(number.group(1)) if number is not None else 1.0
    return good, min(max(confidence, 0.0), 1.0)


def question_of(payload: Mapping[str, Any], max_chars: int) -> str:
    """The last user turn's text (content parts' text joined)."""
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(
                    str(p.get("text", "")) for p in content if isinstance(p, Mapping)
                )
            return str(content)[:max_chars]
    return ""


def answer_text(answer: object) -> str | None:
    """A chat completion's first message's text (its tool calls as JSON)."""
    choices = answer.get("choices") if isinstance(answer, Mapping) else None
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, Mapping) else None
    if not isinstance(message, Mapping):
        return None
    content = message.get("content")
    if isinstance(content, str) and content:
        return content
    calls = message.get("tool_calls")
    return orjson.dumps(calls).decode() if calls else None


class TokenBudget:
    """Tokens per minute, refilled continuously, at most a minute's worth."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.per_minute = float(per_minute)
        self._tokens = float(per_minute)
        self._clock = clock
        self._at = clock()

    def take(self, tokens: float) -> bool:
        now = self._clock()
        self._tokens = min(self.per_minute, self._tokens + (now - self._at) * self.per_minute / 60)
        self._at = now
        if tokens > self._tokens:
            return False
        self._tokens -= tokens
        return True


class Judge:
    """Grades sampled answers for one gateway (one event loop).

    Args:
        spec: the ``signals.judge`` settings.
        router: whose ``feedback`` the verdicts go to.
        dispatcher: sends to the judge when it is one of the router's models.
        session: the HTTP session for a judge at ``url``.
        events: where what it does is counted (``(judge, event)`` keys).
        rng: its sampling draws (seeded in tests).
    """

    def __init__(
        self,
        spec: JudgeSignalSpec,
        router: Router,
        dispatcher: Dispatcher,
        session: aiohttp.ClientSession,
        events: Counter[tuple[str, str]],
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.router = router
        self.dispatcher = dispatcher
        self.events = events
        self._rng = rng or random.Random()
        self._budget = TokenBudget(spec.tokens_per_minute, clock)
        self._client: BackendClient | None = None
        if spec.url is not None:
            self._client = BackendClient(
                session,
                str(spec.url),
                timeouts=Timeouts(total_s=spec.timeout_s),
                api_key=spec.api_key,
            )
        #: The gradings/comparisons running off the request path.
        self.in_flight = OffPath()
        #: Decision -> {source: good}, for agreement; oldest first.
        self._ledger: OrderedDict[int, tuple[Decision, dict[str, bool]]] = OrderedDict()
        self._agreement: Counter[tuple[str, bool]] = Counter()

    def agreement(self) -> dict[str, tuple[int, int]]:
        """Per other source: (agreed, disagreed) with the judge's verdicts."""
        sources = {source for source, _ in self._agreement}
        return {s: (self._agreement[s, True], self._agreement[s, False]) for s in sorted(sources)}

    def note(self, decision: Decision, source: str, good: bool) -> None:
        """Another source's verdict on a decision (for agreement)."""
        self._note(decision, source, good)

    def _note(self, decision: Decision, source: str, good: bool) -> None:
        key = id(decision)
        held = self._ledger.get(key)
        if held is None or held[0] is not decision:
            held = (decision, {})
            self._ledger[key] = held
            if len(self._ledger) > _LEDGER_SIZE:
                self._ledger.popitem(last=False)
        verdicts = held[1]
        verdicts[source] = good
        judged = verdicts.get("judge")
        if judged is None:
            return
        others = verdicts.items() if source == "judge" else ((source, good),)
        for other, verdict in others:
            if other != "judge":
                self._agreement[other, verdict == judged] += 1
                self.events["judge", "agree" if verdict == judged else "disagree"] += 1

    def consider(self, decision: Decision, payload: Mapping[str, Any], answer: object) -> bool:
        """Samples an answer for grading; True when a grading was started
        (it runs as a task of its own, off the request path)."""
        if self.spec.sample <= 0.0 or self._rng.random() >= self.spec.sample:
            return False
        if decision.model_id == self.spec.model:
            return False  # the judge does not grade itself
        text = answer_text(answer)
        if text is None:
            return False
        question = question_of(payload, self.spec.max_chars)
        prompt = self.spec.rubric.replace("{question}", question).replace(
            "{answer}", text[: self.spec.max_chars]
        )
        if not self._budget.take(len(prompt) / 4 + self.spec.max_tokens):
            self.events["judge", "over_budget"] += 1
            return False
        self.in_flight.start(self._grade(decision, prompt))
        return True

    async def _ask(self, prompt: str) -> str:
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": self.spec.max_tokens,
            "temperature": 0,
        }
        if self._client is not None:
            body["model"] = self.spec.served_model_name or "judge"
            response = await self._client.post("/v1/chat/completions", orjson.dumps(body))
        else:
            decision = self.router.route(body, model=self.spec.model)
            response = (
                await self.dispatcher.request("/v1/chat/completions", body, decision)
            ).response
        return answer_text(response.json()) or ""

    async def compare(
        self, question: str, candidate: str, reference: str
    ) -> tuple[bool, float] | None:
        """Whether ``candidate`` is as good as ``reference`` (a stronger
        model's answer to the same question): the judge's (good,
        confidence), None when it did not answer or could not be parsed.
        A shadow comparison's call: sampled and budgeted by its caller."""
        cut = self.spec.max_chars
        prompt = (
            self.spec.compare_rubric.replace("{question}", question[:cut])
            .replace("{reference}", reference[:cut])
            .replace("{answer}", candidate[:cut])
        )
        self.events["judge", "asked"] += 1
        try:
            reply = await asyncio.wait_for(self._ask(prompt), self.spec.timeout_s)
        except Exception as exc:  # the comparison is lost, nothing else
            self.events["judge", "failed"] += 1
            _log.info("the judge did not compare: %s", exc)
            return None
        verdict = parse_verdict(reply)
        if verdict is None:
            self.events["judge", "unparsed"] += 1
        return verdict

    async def _grade(self, decision: Decision, prompt: str) -> None:
        self.events["judge", "asked"] += 1
        try:
            reply = await asyncio.wait_for(self._ask(prompt), self.spec.timeout_s)
        except (BackendError, asyncio.TimeoutError, orjson.JSONDecodeError) as exc:
            self.events["judge", "failed"] += 1
            _log.info("the judge did not answer: %s", exc)
            return
        except Exception:  # a grading must never take the gateway down
            self.events["judge", "failed"] += 1
            _log.exception("grading an answer failed")
            return
        verdict = parse_verdict(reply)
        if verdict is None:
            self.events["judge", "unparsed"] += 1
            return
        good, confidence = verdict
        self.events["judge", "good" if good else "bad"] += 1
        self.router.feedback(decision, good, source="judge", confidence=confidence)
        self._note(decision, "judge", good)

    async def close(self) -> None:
        """Waits for the gradings in flight (cancelled after a second)."""
        await self.in_flight.close()
