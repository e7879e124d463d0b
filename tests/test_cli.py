"""The `zeta-fast score` command, run as a real process on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zeta_fast import AdaptiveScorer
from zeta_fast.scoring_file import load_scoring_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "candidates.toml"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zeta_fast.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_example_file_scores_and_ranks() -> None:
    result = run_cli("score", str(EXAMPLE), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    names = [c["name"] for c in report["candidates"]]
    assert report["best"] == names[0] == "coder-7b"
    # The unreliable reasoner is halved; the new model keeps its capability.
    by_name = {c["name"]: c for c in report["candidates"]}
    assert by_name["reasoner-14b"]["penalties"] == ["low_success_rate"]
    assert by_name["reasoner-14b"]["performance_score"] == pytest.approx(38.025)
    assert by_name["chat-4b"]["has_performance_data"] is False
    assert by_name["chat-4b"]["performance_score"] == 72.0
    assert by_name["coder-7b-slow"]["penalties"] == ["high_latency"]
    scores = [c["performance_score"] for c in report["candidates"]]
    assert scores == sorted(scores, reverse=True)
    # The report agrees with the library.
    direct = AdaptiveScorer().score(85, 0.99, 120, 100)
    assert by_name["coder-7b"] == {"name": "coder-7b", **direct.to_dict()}


def test_table_and_json_are_printed() -> None:
    result = run_cli("score", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "adaptive scores" in result.stdout
    assert "coder-7b" in result.stdout
    assert '"best": "coder-7b"' in result.stdout


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_yaml_and_json_files_read_the_same(tmp_path: Path, suffix: str) -> None:
    toml_version = load_scoring_file(EXAMPLE)
    data = {
        "scoring": toml_version.config.to_dict(),
        "candidates": [c.__dict__ for c in toml_version.candidates],
    }
    path = tmp_path / f"candidates{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        import yaml

        path.write_text(yaml.safe_dump(data))
    assert load_scoring_file(path) == toml_version


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '[[candidates]]\nname="a"\ncapability=80\nsuccess_rate=1.5\navg_latency_ms=1\nrequests=1\n',
            "candidates[0].success_rate must be in [0, 1], got 1.5",
        ),
        (
            '[[candidates]]\nname="a"\ncapability=80\nsuccess_rate=1\navg_latency_ms=1\nrequests=1.5\n',
            "candidates[0].requests must be an integer, got float: 1.5",
        ),
        (
            '[scoring]\nlatency_weight=0.5\n[[candidates]]\nname="a"\ncapability=80\n'
            "success_rate=1\navg_latency_ms=1\nrequests=1\n",
            "scoring.capability_weight + success_rate_weight + latency_weight must be 1.0",
        ),
        ('[[candidates]]\nname="a"\n', "candidates[0] is missing capability"),
        ("candidates = []\n", "candidates must be a non-empty list"),
        ("[scoring]\nfoo = 1\n", 'AdaptiveConfig has no field "foo"'),
        ("oops = [\n", "cannot parse"),
    ],
)
def test_bad_files_exit_2_with_the_path_of_the_bad_value(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    result = run_cli("score", str(path))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("score", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "No such file" in result.stderr
