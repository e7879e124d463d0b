"""The same-run comparison harness runs and reports sane figures (it must not rot)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_compare_harness_reports_every_contender(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benches.compare",
            "--quick",
            "--only",
            "over 8",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(out.read_text())["results"]
    names = {r["contender"] for r in figures}
    assert "pure Python, tuned loop (lists)" in names
    assert "NumPy reference (arrays)" in names
    zeta = next(r for r in figures if r["contender"] == "zeta_fast.best (numpy arrays)")
    assert zeta["median_ratio_to_zeta"] == 1.0
    for r in figures:
        assert 0 < r["min_ns"] <= r["median_ns"]


def test_unknown_scenario_is_an_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benches.compare", "--quick", "--only", "nothing like this"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "no scenario matches" in result.stderr


def test_the_targets_bench_reports_every_target_beside_the_yardstick() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benches.targets", "--rounds", "1", "--cpu-requests", "2000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("yardstick (tuned pure-Python decision over 8) here: min ")
    # The name, then the figures (the name is padded to 44 characters).
    rows = {line[:44].strip(): line[44:].split() for line in lines[2:]}
    assert set(rows) == {
        "bare, profile given",
        "defaults, profile given",
        "defaults, 1 KB prompt profiled",
        "defaults, learned + feedback, 1 KB prompt",
        "defaults, process CPU, profile given",
    }
    for name, cells in rows.items():
        # us min / median, ratio min / median, the target's ratio, met.
        figures = [float(c) for c in cells if c not in ("/", "yes", "no")]
        assert len(figures) == 5, (name, cells)
        assert 0 < figures[0] <= figures[1], (name, cells)
        assert 0 < figures[2] <= figures[3], (name, cells)
        assert cells[-1] in ("yes", "no")
    # The learned path does more than the bare one, whatever the machine.
    assert float(rows["defaults, learned + feedback, 1 KB prompt"][0]) > float(
        rows["bare, profile given"][0]
    )
