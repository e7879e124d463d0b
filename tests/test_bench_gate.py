"""The benchmark gate's decision (not a timing test): a floor no run can
reach fails it with exit status 1, a contender the floors name but the run
lacks is an error, and the floors kept in the repo name contenders that
exist. Tiny rounds: the figures are not what is checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from benches import check

ROOT = Path(__file__).resolve().parent.parent


def test_a_floor_out_of_reach_fails_the_gate(tmp_path: Path) -> None:
    floors = tmp_path / "floors.toml"
    floors.write_text(
        "[[floor]]\n"
        'scenario = "record() one outcome"\n'
        'numerator = "Python deque window + lock, running sums"\n'
        'denominator = "zeta_fast tracker.record(model, replica, task, ...)"\n'
        "floor = 1e12\n"
    )
    run = subprocess.run(
        [
            *(sys.executable, "-m", "benches.check", "--rounds", "1", "--round-ms", "1"),
            *("--floors", str(floors), "--json", str(tmp_path / "out.json")),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAIL record() one outcome" in run.stdout
    assert "1 ratio(s) below their floor" in run.stderr
    assert '"passed": false' in (tmp_path / "out.json").read_text()


def test_a_floor_naming_a_missing_contender_is_an_error(tmp_path: Path) -> None:
    floors = tmp_path / "floors.toml"
    floors.write_text(
        '[[floor]]\nscenario = "record() one outcome"\nnumerator = "nobody"\n'
        'denominator = "zeta_fast tracker.record(model, replica, task, ...)"\nfloor = 1.0\n'
    )
    with pytest.raises(SystemExit, match="names a contender the run lacks"):
        check.run(1, 0.001, floors)


def test_the_kept_floors_are_met_by_their_own_contenders_names() -> None:
    """Every floor in the repo names a scenario and contenders the gate runs."""
    _, checks = check.run(1, 0.001)
    floors = tomllib.loads(check.FLOORS.read_text())["floor"]
    required = [f for f in floors if not f.get("optional", False)]
    assert len(checks) >= len(required) >= 5
    assert {(c.scenario, c.numerator) for c in checks} >= {
        (f["scenario"], f["numerator"]) for f in required
    }
    assert all(c.ratio > 0 for c in checks)
