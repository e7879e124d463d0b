"""`zeta-fast bench gateway` runs end to end: every contender (the bench
extra installs vLLM's router and LiteLLM's proxy) serves every case through
its own process without a failed request. Speed itself is reported by the
benchmark, not asserted here."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from zeta_fast.gateway.bench import CASES, BenchSettings, run_bench


def _installed(tool: str) -> bool:
    return Path(sys.executable).with_name(tool).exists() or shutil.which(tool) is not None


def test_bench_runs_every_contender_through_every_case() -> None:
    wanted = ["direct", "zeta"] + [t for t in ("vllm-router", "litellm") if _installed(t)]
    if len(wanted) < 4:
        pytest.fail(f"the bench extra is missing: only {wanted} (make bench-setup)")
    settings = BenchSettings(
        rounds=1, requests_c1=20, requests_c16=48, warmup=4, contenders=tuple(wanted)
    )
    report = run_bench(settings)
    assert report["rounds_done"] == 1
    assert report["skipped"] == {}
    assert set(report["cases"]) == {f"{mode}-c{c}" for mode, c in CASES}
    for case, rows in report["cases"].items():
        assert set(rows) == set(wanted), case
        for name, row in rows.items():
            assert row["failed"] == 0, (case, name)
            assert row["throughput_rps_median"] > 0
            if name != "direct":
                assert "added_p50_ms_median" in row
    assert "sse-c16_zeta_over_vllm_router_throughput" in report["ratios"]
