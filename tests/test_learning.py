"""The learned router's parts: features, the per-model predictor (full and
bandit feedback), the routing metrics on hand-computed cases, table
loading, and `zeta-fast eval routing` on the shared MMLU outcomes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from zeta_fast.cli import main
from zeta_fast.learning import FEATURE_DIM, OutcomePredictor, text_features
from zeta_fast.learning.evaluation import evaluate, load_table, routing_curve

ROOT = Path(__file__).resolve().parent.parent
MMLU = ROOT.parent / "shared" / "data" / "routellm_evals" / "mmlu.csv"


def test_features_are_sparse_bounded_and_deterministic() -> None:
    features = text_features("Integrate x^2 from 0 to 3.", ["calculus"])
    indices, values = features.indices, features.values
    again = text_features("Integrate x^2 from 0 to 3.", ["calculus"])
    assert np.array_equal(indices, again.indices)
    assert np.array_equal(values, again.values)
    assert indices.min() >= 0
    assert indices.max() == FEATURE_DIM - 1  # the bias
    assert len(indices) == len(values) < 200
    other = text_features("Integrate x^2 from 0 to 3.", ["history"]).indices
    assert set(indices) != set(other)  # the category is a feature


def test_features_pack_small_and_read_back_from_either_format() -> None:
    from zeta_fast.learning.features import Features

    features = text_features("Merge two sorted lists in Python, then explain why. " * 20, ["code"])
    packed = features.to_bytes()
    plain = features.indices.astype("<u4").tobytes()
    assert len(packed) * 3 < len(plain), (len(packed), len(plain))
    want = sorted(zip(features.indices.tolist(), features.values.tolist(), strict=True))
    for blob in (packed, plain):  # an older log's plain u32 indices still read
        back = Features.from_bytes(blob)
        assert sorted(zip(back.indices.tolist(), back.values.tolist(), strict=True)) == want
    with pytest.raises(ValueError, match="features"):
        Features.from_bytes(packed + b"\x80")  # a gap cut short
    with pytest.raises(ValueError, match="multiple of 4"):
        Features.from_bytes(plain[:-1])


def test_routing_curve_by_hand() -> None:
    strong = np.array([1, 1, 0, 1], dtype=np.int8)
    weak = np.array([0, 1, 1, 0], dtype=np.int8)
    score = np.array([0.9, 0.1, 0.0, 0.5])
    shares, quality = routing_curve(score, strong, weak)
    # Order 0, 3, 1, 2: strong for the first k, weak for the rest.
    assert shares.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert quality.tolist() == [0.5, 0.75, 1.0, 1.0, 0.75]


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    import csv

    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_learnable_table_of_three_models(tmp_path: Path) -> None:
    """The small model fails on calculus and the medium one on history;
    the large one is right nearly always: the learned router finds the
    calculus prompts from their words alone (no subject column)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(600):
        hard = i % 3 == 0
        topic = "Integrate the function" if hard else "Name the capital city of"
        rows.append(
            {
                "id": f"q{i}",
                "prompt": f"{topic} number {rng.integers(1000)}?",
                "small_correct": int(not hard and rng.random() < 0.95),
                "medium_correct": int(rng.random() < 0.8),
                "large_correct": int(rng.random() < 0.97),
            }
        )
    report = evaluate(load_table(_write(tmp_path / "t.csv", rows)), seeds=(0, 1), online=False)
    assert (report["strong"], report["weak"]) == ("large", "small")
    assert report["routers"]["random"]["apgr"] == pytest.approx(0.5)
    # Nearly as good as knowing the answers.
    assert report["apgr"] > 0.9 * report["routers"]["oracle"]["apgr"]
    assert report["cpt80"] < 0.45
    assert "category_prior" not in report["routers"]
    assert report["n_test"] == 300


def test_bad_tables_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"missing column\(s\) \['prompt'\]"):
        load_table(_write(tmp_path / "a.csv", [{"id": "1", "a_correct": 1, "b_correct": 0}]))
    with pytest.raises(ValueError, match="at least two <model>_correct"):
        load_table(_write(tmp_path / "b.csv", [{"id": "1", "prompt": "p", "a_correct": 1}]))
    rows = [{"id": str(i), "prompt": "p", "a_correct": 1, "b_correct": "yes"} for i in range(5)]
    with pytest.raises(ValueError, match=r"b\.csv:2: b_correct must be 0 or 1, got 'yes'"):
        load_table(_write(tmp_path / "b.csv", rows))


def test_predictor_learns_online_and_from_bandit_feedback() -> None:
    predictor = OutcomePredictor(["small", "large"])
    hard = text_features("prove the theorem about primes")
    easy = text_features("say hello")
    for _ in range(200):
        predictor.update(hard, [False, True], category="math")
        predictor.update(easy, [True, True], category="chat")
    p_hard, p_easy = predictor.predict(hard), predictor.predict(easy)
    assert p_hard[0] < 0.2 < 0.8 < p_hard[1]
    assert p_easy[0] > 0.8
    assert predictor.prior("math")[0] < predictor.prior("chat")[0]
    # Bandit feedback: only the chosen model's outcome; the other is untouched.
    before = predictor.predict(hard)
    predictor.update(hard, {"small": True})
    after = predictor.predict(hard)
    assert after[1] == before[1]
    assert after[0] > before[0]
    # No known outcome: nothing is learned, not even the category's counts.
    learned = (predictor.updates, predictor.outcomes_seen(), predictor.prior("math").tolist())
    predictor.update(hard, [None, None], category="math")
    np.testing.assert_array_equal(predictor.predict(hard), after)
    assert (predictor.updates, predictor.outcomes_seen(), predictor.prior("math").tolist()) == (
        learned
    )
    with pytest.raises(ValueError, match=r"unknown model\(s\) \['medium'\]"):
        predictor.update(hard, {"medium": True})
    with pytest.raises(ValueError, match="one entry per model"):
        predictor.update(hard, [True])
    with pytest.raises(ValueError, match="learning_rate must be finite and > 0"):
        OutcomePredictor(["a"], learning_rate=0.0)


def test_eval_routing_on_mmlu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "routing.png"
    args = ["eval", "routing", "--data", str(MMLU), "--seeds", "1", "--plot", str(plot)]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_test"] == 7019
    assert report["dropped_contaminated"] == 5
    assert (report["strong"], report["weak"]) == ("gpt4_1106", "mixtral_8x7b")
    routers = report["routers"]
    learned, prior, random = routers["learned"], routers["category_prior"], routers["random"]
    assert routers["oracle"]["apgr"] > 1.25
    assert random["apgr"] == pytest.approx(0.5)
    # Seed 0: the learned router beats the per-subject prior, which beats random.
    assert learned["apgr"] > prior["apgr"] > 0.6
    assert learned["cpt50"] < prior["cpt50"] < 0.5
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Learning from scratch on the stream, 30 % strong calls (random: PGR 0.3).
    online = report["online"]
    assert online["full"]["pgr"] >= 0.45
    assert online["bandit"]["pgr"] >= 0.40
    assert all(abs(row["strong_share"] - 0.3) < 0.03 for row in online.values())
