"""The quality signals' parts on their own: the structural checks, the
regeneration tracker, the judge's verdict parser, and the core's verdict
sources (weights, once per source, counts, the per-kind check record).
The same signals against real llama.cpp servers: tests/test_signals_real.py."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeta_fast import PerformanceTracker, Router
from zeta_fast._core import ANSWER_CHECKS, VERDICT_SOURCES
from zeta_fast.answer_checks import CHECKS, check_chat_answer, is_degenerate
from zeta_fast.config import parse_router_config
from zeta_fast.exceptions import ConfigError, InvalidInputError
from zeta_fast.request_features import JSON_SCHEMA, TOOLS
from zeta_fast.signals import Conversations, parse_verdict

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def answer(content: str | None, finish: str = "stop", **message: Any) -> dict[str, Any]:
    return {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": finish,
            }
        ]
    }


def call(name: str, arguments: str) -> dict[str, Any]:
    return {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}


def test_the_check_names_are_the_cores() -> None:
    assert CHECKS == ANSWER_CHECKS


@pytest.mark.parametrize(
    ("payload", "reply", "expected"),
    [
        ({}, answer("Paris."), "ok"),
        ({}, answer(""), "empty"),
        ({}, answer("   \n"), "empty"),
        ({}, {"choices": []}, "empty"),
        ({}, answer("Paris", finish="length"), "length"),
        ({"max_tokens": 5}, answer("Paris", finish="length"), "ok"),
        ({}, answer("I am sorry. " * 100), "repetition"),
        ({"response_format": {"type": "json_object"}}, answer('{"a": 1}'), "ok"),
        ({"response_format": {"type": "json_object"}}, answer("sure: {a}"), "json"),
        ({"response_format": {"type": "json_object"}}, answer("[1, 2]"), "json"),
        # Cut by the client's own limit: the model's fault only if it never began as JSON.
        (
            {"response_format": {"type": "json_object"}, "max_tokens": 4},
            answer('{"a": "lo', finish="length"),
            "ok",
        ),
        (
            {"response_format": {"type": "json_object"}, "max_tokens": 4},
            answer("Here it is", finish="length"),
            "json",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}},
            answer('{"answer": "yes"}'),
            "ok",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}},
            answer('{"answer": 3}'),
            "json_schema",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": SCHEMA}}},
            answer("no json"),
            "json_schema",
        ),
        # A schema that is not one is the client's error: nothing to hold against the model.
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": 7}}}},
            answer('{"answer": 3}'),
            "ok",
        ),
        ({"tools": [TOOL]}, answer(None, tool_calls=[call("weather", '{"city": "Oslo"}')]), "ok"),
        ({"tools": [TOOL]}, answer("It is sunny."), "ok"),
        ({"tools": [TOOL], "tool_choice": "required"}, answer("It is sunny."), "tools"),
        ({"tools": [TOOL]}, answer(None, tool_calls=[call("forecast", "{}")]), "tools"),
        ({"tools": [TOOL]}, answer(None, tool_calls=[call("weather", "{city")]), "tools"),
        (
            {"tools": [TOOL]},
            answer(None, tool_calls=[call("weather", '{"town": "Oslo"}')]),
            "tools",
        ),
        ({"tools": [TOOL]}, answer(None, tool_calls="weather"), "tools"),
        ({"tools": [TOOL]}, answer(None), "empty"),
    ],
)
def test_each_check_finds_its_failure(
    payload: dict[str, Any], reply: dict[str, Any], expected: str
) -> None:
    assert check_chat_answer(payload, reply) == expected


def test_natural_and_random_text_is_not_degenerate() -> None:
    prose = (
        "Routing decides which model serves each request. It weighs capability, "
        "recent success and latency, and it learns from what happens next. "
    )
    varied = " ".join(f"{prose[i % 40 :]} step {i} of {i * 7 % 13}" for i in range(30))
    assert not is_degenerate(varied)
    assert not is_degenerate("no " * 50)  # short: a style, not a loop
    assert is_degenerate("the same line over and over\n" * 80)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(payload=json_values, reply=json_values)
def test_any_json_gets_a_check_name_and_never_an_exception(payload: Any, reply: Any) -> None:
    request = (
        payload if isinstance(payload, dict) else {"response_format": payload, "tools": payload}
    )
    assert check_chat_answer(request, reply) in CHECKS


def test_regenerations_and_continuations_by_caller_and_window() -> None:
    now = [0.0]
    conversations: Conversations[str] = Conversations(300.0, 100, clock=lambda: now[0])
    first = [{"role": "user", "content": "Name a colour."}]
    assert conversations.observe("alice", first, "a1") is None
    # The same first turn again, from the same named caller: a regeneration.
    again = conversations.observe("alice", first, "a2")
    assert again is not None
    assert again.regenerated
    assert again.earlier == "a1"
    # Another caller asking the same is nobody's regeneration.
    assert conversations.observe("bob", first, "b1") is None
    # An unnamed caller's first turn sent twice is not one either (scripts, shared addresses).
    assert conversations.observe("anon", first, "n1", identified=False) is None
    assert conversations.observe("anon", first, "n2", identified=False) is None
    # The conversation goes on after a2: a continuation of a2.
    on = [*first, {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "More?"}]
    went_on = conversations.observe("alice", on, "a3")
    assert went_on is not None
    assert not went_on.regenerated
    assert went_on.earlier == "a2"
    # A multi-turn conversation sent again is a regeneration even unnamed.
    went_on = conversations.observe("anon", on, "n3", identified=False)
    assert went_on is not None
    assert not went_on.regenerated
    assert went_on.earlier == "n2"
    again = conversations.observe("anon", on, "n4", identified=False)
    assert again is not None
    assert again.regenerated
    assert again.earlier == "n3"
    # Past the window nothing is remembered.
    now[0] = 301.0
    assert conversations.observe("alice", on, "a4") is None
    # Not a conversation: nothing noted.
    assert conversations.observe("alice", "hello", "x") is None
    assert conversations.observe("alice", [{"role": "system", "content": "x"}], "x") is None


def test_conversations_are_bounded_and_refuse_bad_settings() -> None:
    conversations: Conversations[int] = Conversations(300.0, 10)
    for i in range(100):
        conversations.observe("c", [{"role": "user", "content": str(i)}], i)
    assert len(conversations) == 10
    with pytest.raises(ValueError, match="window_s"):
        Conversations(0.0, 10)
    with pytest.raises(ValueError, match="max_conversations"):
        Conversations(1.0, 0)


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("GOOD 0.9", (True, 0.9)),
        ("bad, confidence 0.25", (False, 0.25)),
        ("Verdict: GOOD", (True, 1.0)),
        ("GOOD 7", (True, 1.0)),  # no number in [0, 1]: full confidence
        ("GOOD or BAD? I cannot tell", None),
        ("maybe", None),
        ("", None),
    ],
)
def test_judge_verdicts_parse_or_give_no_label(
    reply: str, verdict: tuple[bool, float] | None
) -> None:
    assert parse_verdict(reply) == verdict


def two_models(**top: Any) -> Router:
    models = [
        {
            "id": name,
            "capabilities": {"chat": 80, "knowledge": 80, "reasoning": 80, "code": 80},
            "replicas": [{"id": f"{name}-0", "url": "http://127.0.0.1:9", "max_concurrency": 64}],
        }
        for name in ("a", "b")
    ]
    config = parse_router_config({"models": models, "outcome_log": {"enabled": False}, **top})
    return Router(config, tracker=PerformanceTracker(config.window_config(), persist=False))


def test_verdict_sources_are_counted_weighted_and_taken_once_each() -> None:
    assert VERDICT_SOURCES[0] == "explicit"
    router = two_models(learning={"enabled": True, "source_weights": {"regeneration": 0.0}})
    decision = router.route("What is the capital of France?")
    router.record(decision, True, 10.0)
    assert router.feedback(decision, True) is True
    assert router.feedback(decision, False, source="judge", confidence=0.5) is True
    # Weight 0: counted, not learned.
    assert router.feedback(decision, False, source="regeneration") is False
    with pytest.raises(InvalidInputError, match="this source"):
        router.feedback(decision, True, source="judge")
    with pytest.raises(InvalidInputError, match="verdict source"):
        router.feedback(decision, True, source="oracle")
    with pytest.raises(InvalidInputError, match="confidence"):
        router.feedback(decision, True, source="shadow", confidence=float("nan"))
    with pytest.raises(TypeError):
        router.feedback(decision, True, source=3)  # type: ignore[arg-type]
    counts = {(s, m): (g, b) for s, m, g, b in router.core.verdict_counts()}
    model = decision.model_id
    assert counts == {
        ("explicit", model): (1, 0),
        ("judge", model): (0, 1),
        ("regeneration", model): (0, 1),
    }
    # A verdict is learned as the probability that the answer was good: the
    # judge's half-confident "bad" is a coin (half a success of one request).
    assert router.predictor is not None
    (_, per_model), *_ = router.predictor.categories()
    assert per_model[model] == (1.5, 2.0)
    router.close()


def test_bad_source_weights_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="oracle"):
        two_models(learning={"enabled": True, "source_weights": {"oracle": 1.0}})
    with pytest.raises(ConfigError, match="source_weights"):
        two_models(learning={"enabled": True, "source_weights": {"judge": 11.0}})


def test_failed_checks_of_one_kind_move_that_kind_only() -> None:
    router = two_models()
    json_request = {
        "messages": [{"role": "user", "content": "List three colours."}],
        "response_format": {"type": "json_object"},
    }
    for _ in range(6):
        decision = router.route(json_request, model="b", needs=JSON_SCHEMA)
        router.record(decision, True, 10.0)
        assert router.core.check_answer(decision, "json") is False  # a kind fact, not learned
        with pytest.raises(InvalidInputError, match="once"):
            router.core.check_answer(decision, "ok")
    checked, failed, factor = router.core.kind_checks("b")["json"]
    assert (checked, failed) == (6, 6)
    assert factor == pytest.approx(0.25)
    assert router.core.kind_checks("b")["plain"] == (0, 0, 1.0)
    assert router.core.kind_checks("b")["tools"] == (0, 0, 1.0)
    json_picks = {router.route(json_request, needs=JSON_SCHEMA).model_id for _ in range(20)}
    assert json_picks == {"a"}
    # Tools and plain requests still see b at its full capability.
    tools = router.route({"messages": json_request["messages"], "tools": [TOOL]}, needs=TOOLS)
    plain = router.route("List three colours.")
    assert tools.capability_score == plain.capability_score == 80.0
    with pytest.raises(InvalidInputError, match="structural check"):
        router.core.check_answer(plain, "wrong")
    router.close()


def test_text_failures_are_learned_and_every_verdict_is_logged(tmp_path: Any) -> None:
    path = tmp_path / "outcomes.sqlite"
    router = two_models(learning={"enabled": True})
    config = router.config.model_copy(
        update={
            "outcome_log": router.config.outcome_log.model_copy(
                update={"enabled": True, "path": str(path)}
            )
        }
    )
    router.close()
    router = Router(config, tracker=PerformanceTracker(config.window_config(), persist=False))
    decision = router.route("Write a short poem about the sea.")
    router.record(decision, True, 10.0)
    assert router.core.check_answer(decision, "repetition") is True
    assert router.feedback(decision, True, source="continuation") is True
    router.close()
    import sqlite3

    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT outcome, source, verdict, confidence, detail, learned FROM outcomes"
            " WHERE source IS NOT NULL ORDER BY rowid"
        ).fetchall()
    assert rows == [
        ("feedback", "structural", 0, 1.0, "repetition", 0),
        ("feedback", "continuation", 1, 0.7, None, 1),
    ]
    assert orjson.loads(orjson.dumps(rows))  # plain values, no secrets, no text


def test_learning_is_on_by_default_in_the_gateway_only_when_a_source_is() -> None:
    models = [
        {"id": "a", "capabilities": {"chat": 80}, "replicas": [{"id": "a0", "url": "http://h:1"}]}
    ]
    config = parse_router_config({"models": models})
    assert config.learning.enabled is None
    assert config.for_gateway().learning.enabled is True
    off = parse_router_config(
        {
            "models": models,
            "signals": {"structural": {"enabled": False}, "regeneration": {"enabled": False}},
        }
    )
    assert off.for_gateway().learning.enabled is None
    explicit = parse_router_config({"models": models, "learning": {"enabled": False}})
    assert explicit.for_gateway().learning.enabled is False
    with pytest.raises(ConfigError, match="judge"):
        parse_router_config({"models": models, "signals": {"judge": {"enabled": True}}})


def test_short_answers_agree_when_their_normal_text_is_equal() -> None:
    from zeta_fast.signals import agree

    assert agree("B.", " b ", 32) is True
    assert agree("Paris", "Lyon", 32) is False
    assert agree("x" * 40, "x" * 40, 32) is None  # long: agreement says little


def test_shadow_compares_with_the_strongest_model_for_the_task_only() -> None:
    from collections import Counter

    from zeta_fast.signals import Shadow

    models = [
        {"id": name, "capabilities": caps, "replicas": [{"id": f"{name}0", "url": "http://h:1"}]}
        for name, caps in (
            ("small", {"chat": 60, "code": 90}),
            ("big", {"chat": 90, "code": 80}),
        )
    ]
    config = parse_router_config(
        {
            "models": models,
            "outcome_log": {"enabled": False},
            "signals": {"shadow": {"enabled": True}},
        }
    )
    router = Router(config, tracker=PerformanceTracker(config.window_config(), persist=False))
    shadow = Shadow(config.signals.shadow, router, None, Counter(), None)  # type: ignore[arg-type]
    chat = router.route("Tell me a story about a dragon.", model="small")
    assert chat.task_type == "chat"
    assert shadow.strongest_for(chat) == "big"
    code = router.route("def add(a, b):\n    return a + b\n", model="small")
    assert code.task_type == "code"
    assert shadow.strongest_for(code) is None  # small is the strongest coder
    assert shadow.strongest_for(router.route("Tell me a story.", model="big")) is None
    router.close()


def _table(tmp_path: Any, rows: int = 400) -> Any:
    """Two models: the strong one right on every question about cats, the
    weak one on every question about dogs and half the rest."""
    import random

    from zeta_fast.learning.evaluation import load_table

    rng = random.Random(3)
    path = tmp_path / "table.csv"
    lines = ["id,prompt,weak_correct,strong_correct"]
    for i in range(rows):
        animal = rng.choice(["cat", "dog", "bird"])
        weak = int(animal == "dog" or (animal == "bird" and rng.random() < 0.5))
        strong = int(animal != "dog" or rng.random() < 0.5)
        lines.append(f"{i},What does the {animal} number {i} eat?,{weak},{strong}")
    path.write_text("\n".join(lines) + "\n")
    return load_table(path)


def test_the_signal_evaluation_learns_more_with_truer_signals(tmp_path: Any) -> None:
    from zeta_fast.learning.signals_eval import evaluate_signals, write_signal_plot

    report = evaluate_signals(
        _table(tmp_path), mixes=("none", "regeneration", "explicit", "full"), seeds=(0, 1)
    )
    pgr = {mix: row["pgr"] for mix, row in report["mixes"].items()}
    assert pgr["explicit"] > pgr["none"] + 0.1, pgr
    assert pgr["full"] > pgr["none"] + 0.1, pgr
    assert pgr["regeneration"] > pgr["none"], pgr
    for row in report["mixes"].values():
        assert abs(row["strong_share"] - 0.3) < 0.08  # every mix spends about the same strong calls
        assert len(row["curve"]) == 20
    assert report["mixes"]["none"]["labels_per_request"] == 0
    assert report["mixes"]["full"]["labels_per_request"] == 2
    plot = write_signal_plot(report, tmp_path / "curves.png", "test")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="unknown signal mix"):
        evaluate_signals(_table(tmp_path), mixes=("psychic",))
    with pytest.raises(ValueError, match="strong_share"):
        evaluate_signals(_table(tmp_path), strong_share=1.5)


def test_the_automatic_mix_pays_its_shadow_calls_out_of_the_strong_budget(tmp_path: Any) -> None:
    from zeta_fast.learning.signals_eval import SignalRates, evaluate_signals

    rates = SignalRates(shadow_sample=0.15)
    report = evaluate_signals(
        _table(tmp_path, rows=1200), mixes=("shadow", "automatic"), seeds=(0, 1, 2), rates=rates
    )
    shadow, automatic = report["mixes"]["shadow"], report["mixes"]["automatic"]
    # The shadow mix's strong calls come on top of the routed share...
    assert abs(shadow["strong_share"] - 0.3) < 0.05
    assert shadow["shadow_calls"] > 0.07
    # ...the automatic mix's are part of it: routed plus shadowed is the share.
    assert automatic["shadow_calls"] > 0.05
    spent = automatic["strong_share"] + automatic["shadow_calls"]
    assert abs(spent - 0.3) < 0.05, automatic
    assert automatic["strong_share"] < shadow["strong_share"] - 0.05
    # Regeneration and the judge label the answers it routed as well.
    assert automatic["labels_per_request"] > shadow["labels_per_request"]
    assert 0.0 < automatic["pgr_se"] < 0.5


def test_eval_signals_command_prints_json(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from zeta_fast.cli import main

    table = _table(tmp_path)
    path = tmp_path / "t.csv"
    lines = ["id,prompt,weak_correct,strong_correct"] + [
        f"{i},{p},{o[0]},{o[1]}"
        for i, (p, o) in enumerate(zip(table.prompts, table.outcomes, strict=True))
    ]
    path.write_text("\n".join(lines) + "\n")
    status = main(
        [
            "eval",
            "signals",
            "--data",
            str(path),
            "--seeds",
            "1",
            "--mixes",
            "none,explicit",
            "--plot",
            str(tmp_path / "s.png"),
            "--json",
        ]
    )
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["mixes"]) == {"none", "explicit"}
    assert (tmp_path / "s.png").exists()
    assert main(["eval", "signals", "--data", str(path), "--mixes", "psychic"]) == 2


def test_users_signals_are_learned_as_likely_not_certain() -> None:
    from zeta_fast._core import DEFAULT_CONFIDENCE

    confidence = dict(zip(VERDICT_SOURCES, DEFAULT_CONFIDENCE, strict=True))
    assert confidence["explicit"] == confidence["judge"] == 1.0
    assert 0.5 < confidence["regeneration"] < 1.0
    router = two_models(learning={"enabled": True})
    decision = router.route("Summarise the plot of a famous novel.")
    router.record(decision, True, 10.0)
    assert router.feedback(decision, False, source="regeneration") is True
    assert router.predictor is not None
    (_, per_model), *_ = router.predictor.categories()
    # Weight 0.5, target 1 - 0.7: 0.15 of a success in half a request.
    successes, requests = per_model[decision.model_id]
    assert requests == pytest.approx(0.5)
    assert successes == pytest.approx(0.15)
    router.close()


def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def test_a_streamed_answer_adds_up_to_the_answer_it_is_checked_as() -> None:
    from zeta_fast.answer_checks import streamed_answer

    def delta(finish: str | None = None, **part: Any) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": part, "finish_reason": finish}]}

    stream = _sse(
        delta(role="assistant"), delta(content='{"a"'), delta(content=": 1}", finish="stop")
    )
    answer = streamed_answer(stream)
    assert answer is not None
    assert answer["choices"][0]["message"]["content"] == '{"a": 1}'
    assert check_chat_answer({"response_format": {"type": "json_object"}}, answer) == "ok"
    cut = _sse(delta(content='{"a"'), delta(finish="length"))
    assert (
        check_chat_answer({"response_format": {"type": "json_object"}}, streamed_answer(cut))
        == "length"
    )
    tools = _sse(
        delta(tool_calls=[{"index": 0, "function": {"name": "weather", "arguments": '{"ci'}}]),
        delta(
            tool_calls=[{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}],
            finish="tool_calls",
        ),
    )
    assert check_chat_answer({"tools": [TOOL]}, streamed_answer(tools)) == "ok"
    broken = _sse(
        delta(tool_calls=[{"index": 0, "function": {"name": "weather", "arguments": "{ci"}}])
    )
    assert check_chat_answer({"tools": [TOOL]}, streamed_answer(broken)) == "tools"
    assert streamed_answer(b"event: ping\n\ndata: not json\n\n") is None


def test_a_conversation_belongs_to_its_key_and_session_or_else_its_address() -> None:
    from zeta_fast.signals.regeneration import caller_identity

    # Without keys, two clients at different addresses are two callers...
    assert caller_identity(None, None, "10.0.0.1") != caller_identity(None, None, "10.0.0.2")
    # ...and the session tells apart two users at one address.
    assert caller_identity(None, "u1", "10.0.0.1") != caller_identity(None, "u2", "10.0.0.1")
    # With a key, its name (and session) say who: the address may change.
    assert caller_identity("team-a", "u1", "10.0.0.1") == caller_identity(
        "team-a", "u1", "10.9.9.9"
    )
    assert caller_identity("team-a", None, "x") != caller_identity("team-b", None, "x")
