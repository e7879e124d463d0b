"""The learned router live: predictions as the capability term, bounded
exploration, verdicts and feedback, learning from dispatch outcomes, the
cost/quality knob, the learned state saved and restored, retraining from
the outcome log (`zeta-fast learn`), and concurrent learning."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zeta_fast import (
    ConfigError,
    InvalidInputError,
    ManualClock,
    PerformanceTracker,
    Router,
    SnapshotError,
    profile,
)
from zeta_fast.cli import main
from zeta_fast.config import parse_router_config
from zeta_fast.learning.training import read_learned_rows

# Two kinds of knowledge question that the profiler files under one task
# type, so per-task windows cannot tell them apart: only the text can. (With
# the character-gram profiler "Who wrote the novel called Book 0 in the
# library?" sat on the chat / reasoning boundary, so the authors' questions
# are worded as "Which author wrote ...".)
CAPITALS = [f"What is the capital city of country number {i}?" for i in range(40)]
AUTHORS = [f"Which author wrote the novel called Book {i}?" for i in range(40)]


def tracker(path: Path | None = None) -> PerformanceTracker:
    if path is None:
        return PerformanceTracker(clock=ManualClock(2_000_000_000_000), persist=False)
    return PerformanceTracker(clock=ManualClock(2_000_000_000_000), snapshot_path=str(path))


def config(**learning: Any) -> dict[str, Any]:
    return {
        "models": [
            {
                "id": name,
                "capabilities": {"knowledge": cap, "chat": cap, "reasoning": cap, "code": cap},
                "replicas": [{"id": f"{name}-0", "url": "http://127.0.0.1:9"}],
            }
            for name, cap in (("geo", 90.0), ("lit", 80.0))
        ],
        "learning": {"enabled": True, "min_outcomes": 20, "explore": 0.05, **learning},
        "outcome_log": {"enabled": False},
    }


def truth(model: str, prompt: str) -> bool:
    """geo knows capitals, lit knows authors."""
    return (model == "geo") == (prompt in CAPITALS)


def test_both_kinds_share_one_task_type() -> None:
    kinds = {profile(p).task_type for p in CAPITALS[:5] + AUTHORS[:5]}
    assert len(kinds) == 1, kinds


def run(router: Router, rounds: int, rng: np.random.Generator) -> list[tuple[str, str, bool]]:
    """Every request answered (recorded as a success), then judged (feedback)."""
    chosen = []
    for _ in range(rounds):
        prompt = str(rng.choice(CAPITALS + AUTHORS))
        decision = router.route(prompt)
        router.record(decision, True, 20.0)
        router.feedback(decision, truth(decision.model_id, prompt))
        chosen.append((prompt, decision.model_id, decision.explored))
    return chosen


def test_learned_capability_sends_each_kind_to_the_model_that_answers_it() -> None:
    rng = np.random.default_rng(0)
    learned = Router(parse_router_config(config()), tracker=tracker(), spread_margin=0.0)
    history = run(learned, 600, rng)
    last = [(p, m) for p, m, explored in history[-200:] if not explored]
    right = sum(truth(m, p) for p, m in last) / len(last)
    assert right > 0.9, right
    # Without learning the configured capability decides: geo for everything.
    fixed = config()
    fixed["learning"] = {"enabled": False}
    static = Router(parse_router_config(fixed), tracker=tracker(), spread_margin=0.0)
    baseline = run(static, 200, rng)
    assert {m for _, m, _ in baseline} == {"geo"}
    assert learned.predictor is not None
    assert static.predictor is None
    assert learned.predictor.outcomes_seen()["lit"] > 50
    decision = learned.route(AUTHORS[3])
    assert decision.model_id == "lit" or decision.explored
    assert decision.learned_category is not None
    assert decision.learned_category.startswith(decision.task_type)


def test_message_lists_and_bodies_are_learned_from_their_text() -> None:
    router = Router(parse_router_config(config(explore=0.0)), tracker=tracker())
    body = {"messages": [{"role": "user", "content": AUTHORS[1]}]}
    decision = router.route(body)
    assert decision.learned_features is not None
    from zeta_fast.learning import text_features

    expected = text_features(AUTHORS[1], [decision.learned_category or ""])
    assert np.array_equal(decision.learned_features.indices, expected.indices)
    router.record(decision, True, 5.0)
    # A profile alone carries no text: routed on the configured capability.
    decision = router.route(profile=profile(AUTHORS[1]))
    assert decision.learned_features is None
    router.record(decision, True, 5.0)


def test_exploration_is_bounded_and_configurable() -> None:
    for share in (0.0, 0.1):
        router = Router(parse_router_config(config(explore=share)), tracker=tracker())
        explored = 0
        for i in range(3000):
            decision = router.route(CAPITALS[i % 40])
            explored += decision.explored
            router.record(decision, True, 5.0)
        assert abs(explored / 3000 - share) < 0.025, (share, explored)
    with pytest.raises(ConfigError, match=r"learning\.explore"):
        parse_router_config(config(explore=0.9))


def test_feedback_teaches_once_per_decision() -> None:
    router = Router(parse_router_config(config(explore=0.0)), tracker=tracker())
    assert router.predictor is not None
    decision = router.route(CAPITALS[0])
    router.record(decision, True, 5.0)
    before = router.predictor.updates
    assert router.feedback(decision, False) is True
    assert router.predictor.updates == before + 1
    with pytest.raises(InvalidInputError, match="already has a verdict"):
        router.feedback(decision, True)


def test_recorded_outcomes_teach_only_when_asked() -> None:
    for learn_outcomes in (False, True):
        router = Router(
            parse_router_config(config(explore=0.0, learn_from_outcomes=learn_outcomes)),
            tracker=tracker(),
        )
        assert router.predictor is not None
        core = router._core
        for kind in ("success", "timeout", "context_length", "server_error"):
            decision = router.route(CAPITALS[0])
            taught = core.record_outcome(decision, kind, 5.0)
            assert taught is (learn_outcomes and kind in ("success", "context_length"))
        # success and context_length speak about the model; faults do not.
        assert router.predictor.updates == (2 if learn_outcomes else 0)
        for verdict in (True, False):
            assert router.record(router.route(CAPITALS[0]), verdict, 5.0) is learn_outcomes
        assert router.predictor.updates == (4 if learn_outcomes else 0)


def test_cost_knob_trades_quality_for_price() -> None:
    def routed(willingness: float | None) -> tuple[str, float]:
        raw = config()
        raw["learning"] = {"enabled": False}
        raw["models"][0]["cost_per_1k_tokens"] = 0.01  # geo: 90 points, priced
        raw["models"][1]["capabilities"] = dict.fromkeys(raw["models"][1]["capabilities"], 88.0)
        raw["cost"] = {"willingness_to_pay": willingness, "expected_completion_tokens": 100}
        router = Router(parse_router_config(raw), tracker=tracker(), spread_margin=0.0)
        decision = router.route(CAPITALS[0])
        scores = {decision.model_id: decision.capability_score}
        return decision.model_id, scores[decision.model_id]

    # No knob: the better model. A high willingness to pay: still the better
    # one (a cent per 100 tokens costs it < 2 points). A low one: the free one.
    assert routed(None) == ("geo", 90.0)
    model, capability = routed(1.0)
    tokens = profile(CAPITALS[0]).features["token_estimate"] + 100
    assert model == "geo"
    assert capability == pytest.approx(90.0 - 100 * 0.01 * tokens / 1000 / 1.0)
    assert routed(0.01)[0] == "lit"
    with pytest.raises(ConfigError, match=r"cost\.willingness_to_pay"):
        parse_router_config({**config(), "cost": {"willingness_to_pay": 0}})


def test_learned_state_survives_a_restart(tmp_path: Path) -> None:
    saved = tmp_path / "state" / "learned.bin"
    raw = config(explore=0.0, state_path=str(saved))
    first = Router(parse_router_config(raw), tracker=tracker())
    run(first, 200, np.random.default_rng(1))
    assert first.predictor is not None
    probe = first.route(AUTHORS[5])
    expected = first.predictor.utility(probe.learned_features, probe.learned_category)  # type: ignore[arg-type]
    first.record(probe, True, 5.0)
    first.close()
    assert saved.stat().st_size > 0
    second = Router(parse_router_config(raw), tracker=tracker())
    assert second.predictor is not None
    again = second.route(AUTHORS[5])
    # The last record (after the probe) moved the weights a little: compare
    # with the state as saved, which includes it.
    restored = second.predictor.utility(again.learned_features, again.learned_category)  # type: ignore[arg-type]
    assert second.predictor.updates == first.predictor.updates
    assert np.allclose(
        restored, first.predictor.utility(probe.learned_features, probe.learned_category)
    )  # type: ignore[arg-type]
    assert not np.allclose(expected, np.zeros_like(expected))
    second.record(again, True, 5.0)
    second.close()
    # A corrupt file (and no good previous one) is refused with a clear
    # error, not half-loaded.
    saved.write_bytes(b"\x01\x02garbage")
    saved.with_name(saved.name + ".prev").write_bytes(b"\x01\x02garbage")
    with pytest.raises(SnapshotError, match="no usable learned state"):
        Router(parse_router_config(raw), tracker=tracker())


def test_zeta_fast_learn_retrains_from_the_outcome_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = tmp_path / "tracker.snapshot"
    # Half the requests explore, so the log holds both kinds of outcome.
    raw = config(explore=0.5)
    raw["outcome_log"] = {"enabled": True}
    raw["state_path"] = str(snapshot)
    config_file = tmp_path / "router.json"
    config_file.write_text(json.dumps(raw))
    router = Router(config_file, tracker=tracker(snapshot))
    run(router, 500, np.random.default_rng(2))
    decision = router.route(CAPITALS[2])
    router.record(decision, True, 5.0)
    assert router.feedback(decision, True)
    assert router.predictor is not None
    live_updates = router.predictor.updates
    router.close()
    db = snapshot.with_name("outcomes.sqlite")
    rows = read_learned_rows(db)
    assert len(rows) == live_updates == 501
    assert rows[-1].good is True
    out = tmp_path / "retrained.bin"
    assert main(["learn", "--config", str(config_file), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 501 == sum(report["per_model"].values())
    # Written as the router saves: atomically, the previous file kept.
    first = out.read_bytes()
    assert main(["learn", "--config", str(config_file), "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    assert out.with_name(out.name + ".prev").read_bytes() == first
    assert not list(tmp_path.glob("retrained.bin.tmp*"))
    held = report["holdout"]
    # Which model answers which question is learnable from the text: the
    # retrained predictor beats the per-model success rate on newer rows.
    assert held["accuracy"] > held["baseline_accuracy"] + 0.15, held
    assert held["log_loss"] < held["baseline_log_loss"]
    # The retrained state loads into a router and routes like the live one.
    raw["learning"]["state_path"] = str(out)
    raw["learning"]["explore"] = 0.0
    raw["outcome_log"] = {"enabled": False}
    fresh = Router(parse_router_config(raw), tracker=tracker())
    picks = []
    for prompt in CAPITALS[:10] + AUTHORS[:10]:
        d = fresh.route(prompt)
        picks.append(truth(d.model_id, prompt))
        fresh.record(d, True, 5.0)
    assert sum(picks) >= 18, picks


def test_concurrent_verdicts_are_all_counted() -> None:
    """Verdicts from several threads: every count arrives (weights are
    Hogwild SGD, counts are atomic increments)."""
    router = Router(parse_router_config(config(explore=0.1)), tracker=tracker())
    assert router.predictor is not None
    per_thread = 2000

    def worker(seed: int) -> None:
        run(router, per_thread, np.random.default_rng(seed))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert router.predictor.updates == 4 * per_thread
    assert sum(router.predictor.outcomes_seen().values()) == 4 * per_thread
    utility = router.predictor.utility(
        router.route(CAPITALS[0]).learned_features,  # type: ignore[arg-type]
        None,
    )
    assert np.all(np.isfinite(utility))


MMLU = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "data"
    / "routellm_evals"
    / "mmlu.csv"
)


def test_live_learned_router_with_the_cost_knob_on_mmlu() -> None:
    """A learning Router on a real outcome table (bandit feedback through
    `feedback`): a higher willingness to pay buys more strong calls and more
    quality, and at a middle setting it keeps clearly more of the strong
    model's gain than random routing with the same extra spend."""
    from benches.learned_live import sweep

    from zeta_fast.learning.evaluation import load_table

    rows = sweep(load_table(MMLU), (0.005, 0.01, 1.0), seeds=(0,), limit=3000)
    spends = [r["spend_share"] for r in rows]
    qualities = [r["quality"] for r in rows]
    assert spends == sorted(spends), spends
    assert qualities == sorted(qualities), qualities
    middle = rows[1]
    assert 0.2 < middle["spend_share"] < 0.8, middle
    assert middle["pgr"] > middle["spend_share"] + 0.1, middle
    assert rows[-1]["strong_share"] > 0.9


def test_predictions_of_success_latency_and_cost_per_request() -> None:
    """`Router.predict` gives each model's expected success, latency
    (learned from answer times, whatever the verdict) and cost for a request."""
    raw = config(explore=0.0)
    raw["models"][0]["cost_per_1k_tokens"] = 0.002
    raw["cost"] = {"expected_completion_tokens": 50}
    router = Router(parse_router_config(raw), tracker=tracker(), spread_margin=0.0)
    long_question = AUTHORS[0] + " Explain the context of the whole period in detail. " * 15
    for i in range(400):
        for model in ("geo", "lit"):
            prompt = (CAPITALS[i % 40], long_question)[i % 2]
            decision = router.route(prompt, model=model)
            # geo answers in 20 ms, or 20 ms + 2 ms a token; lit always in 300 ms.
            tokens = profile(prompt).features["token_estimate"]
            latency = 20.0 + 2.0 * tokens if model == "geo" else 300.0
            router.record(decision, True, latency)
            router.feedback(decision, truth(model, prompt))
    short = {p["model_id"]: p for p in router.predict(CAPITALS[5])}
    long = {
        p["model_id"]: p
        for p in router.predict({"messages": [{"role": "user", "content": long_question}]})
    }
    assert short["geo"]["success"] > 0.9 > 0.1 > short["lit"]["success"]
    assert long["lit"]["success"] > 0.9
    tokens = profile(long_question).features["token_estimate"]
    assert long["geo"]["expected_latency_ms"] == pytest.approx(20.0 + 2.0 * tokens, rel=0.15)
    assert short["geo"]["expected_latency_ms"] < 0.5 * long["geo"]["expected_latency_ms"]
    assert long["lit"]["expected_latency_ms"] == pytest.approx(300.0, rel=0.1)
    assert long["geo"]["expected_cost"] == pytest.approx(0.002 * (tokens + 50) / 1000)
    assert long["lit"]["expected_cost"] == 0.0
    assert short["geo"]["category"].startswith(profile(CAPITALS[5]).task_type)
    off = config()
    off["learning"] = {"enabled": False}
    with pytest.raises(InvalidInputError, match=r"learning\.enabled"):
        Router(parse_router_config(off), tracker=tracker()).predict("hi")
