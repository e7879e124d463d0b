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
