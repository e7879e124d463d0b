"""`zeta-fast bench prefix` runs end to end on real llama.cpp replicas, and its numbers are
real: tokens were processed, the sticky oracle reused its caches after the first turn, the
token counts from the answers' ``timings`` match the replicas' own counters, and the table has
a row for every contender (skipped ones with their reason). Which router is faster is
reported by the benchmark, not asserted here."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from zeta_fast.gateway.bench import _Processes
from zeta_fast.gateway.prefix_bench import (
    CONTENDERS,
    PrefixBenchSettings,
    _start_zeta,
    make_workload,
    markdown_table,
    run_prefix_bench,
    write_report,
)
from zeta_fast.local.tiny_model import CONTEXT_LENGTH, ensure_tiny_model, tiny_model_filename

VLLM_ROUTERS = ("vllm-router-cache-aware", "vllm-router-round-robin")


def _installed(tool: str) -> bool:
    return Path(sys.executable).with_name(tool).exists() or shutil.which(tool) is not None


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # Every contender is asked for: the ones that cannot run must say why in the report.
    settings = PrefixBenchSettings.quick(
        model_dir=str(tmp_path_factory.mktemp("prefix-models")), contenders=CONTENDERS
    )
    return run_prefix_bench(settings)


def _must_run() -> list[str]:
    wanted = ["oracle", "zeta-power-of-two", "zeta-cache-aware"]
    if _installed("vllm-router"):
        wanted += VLLM_ROUTERS
    return wanted


def test_the_contenders_that_exist_run_and_the_others_say_why(
    quick_report: dict[str, Any],
) -> None:
    rows = quick_report["mixes"]["skewed"]["contenders"]
    skipped = quick_report["skipped"]
    for name in _must_run():
        assert name in rows, (name, skipped.get(name))
    for name in CONTENDERS:
        assert (name in rows) != (name in skipped), name
        if name in skipped:
            assert skipped[name].strip(), name
    if "zeta-cache-aware" in skipped:
        # Until the policy lands, the configuration refuses it: that is the reason given.
        assert "cache_aware" in skipped["zeta-cache-aware"]


def test_the_numbers_are_real(quick_report: dict[str, Any]) -> None:
    settings = quick_report["settings"]
    requests = settings["sessions"] * settings["turns"]
    slot_ctx = quick_report["replica"]["slot_ctx"]
    for name, runs in quick_report["mixes"]["skewed"]["runs"].items():
        assert runs, name
        for run in runs:
            assert run["requests"] == requests, name
            assert run["failed"] == 0, (name, run["errors"])
            assert run["prompt_tokens"] > 0, name
            assert run["ttft_p50_ms"] > 0, name
            assert run["throughput_rps"] > 0, name
            # Both routers pass llama.cpp's timings through, so the answers' own counts
            # are used, and the replicas' counters saw at least those tokens (a router that
            # retried would add some).
            assert run["prompt_tokens_source"] == "timings", name
            assert run["answers_with_timings"] == requests, name
            assert run["prompt_tokens_metrics"] >= run["prompt_tokens"], name
            assert len(run["replica_prompt_tokens"]) == settings["replicas"]
            assert run["tokens_imbalance"] >= 1.0, name
            assert run["in_flight_samples"] > 0, name
            assert 0 < run["max_context_tokens"] <= slot_ctx, name
    oracle = quick_report["mixes"]["skewed"]["runs"]["oracle"][0]
    # The oracle sends nothing a router could add: its counts match the replicas' exactly.
    assert oracle["prompt_tokens_metrics"] == oracle["prompt_tokens"]
    assert oracle["cached_share_after_first_turn"] > 0.5
    assert oracle["prompt_tokens_over_oracle"] == 1.0


def test_the_table_has_every_row(quick_report: dict[str, Any], tmp_path: Path) -> None:
    table = markdown_table(quick_report)
    for name in CONTENDERS:
        assert f"| {name}" in table, name
    for name, why in quick_report["skipped"].items():
        assert f"| {name} | skipped: {why}" in table
    path = tmp_path / "report.json"
    write_report(quick_report, path)
    assert '"rounds_done": 1' in path.read_text()


def test_a_policy_the_configuration_refuses_is_skipped_with_the_reason(tmp_path: Path) -> None:
    processes = _Processes(tmp_path)
    try:
        url, why = _start_zeta(processes, "zeta-nope", "no_such_policy", ["http://127.0.0.1:9"])
    finally:
        processes.stop()
    assert url is None
    assert why is not None
    assert "configuration refused" in why
    assert "no_such_policy" in why
    assert processes.started == []  # refused before any process was started


def test_the_workload_is_deterministic_and_skewed() -> None:
    settings = PrefixBenchSettings()
    skewed = make_workload(settings, "skewed")
    assert skewed == make_workload(settings, "skewed")
    assert skewed != make_workload(PrefixBenchSettings(seed=1), "skewed")
    systems = [s.system for s in skewed.sessions]
    assert systems.count(0) == round(0.8 * settings.sessions)
    assert all(len(s.users) == settings.turns for s in skewed.sessions)
    uniform = make_workload(settings, "uniform")
    counts = [[s.system for s in uniform.sessions].count(i) for i in range(4)]
    assert counts == [settings.sessions // 4] * 4
    # The slot context is sized from this bound; the model declares enough for it.
    assert skewed.max_prompt_tokens(settings.max_tokens) < 8192


def test_a_declared_context_names_its_own_file(tmp_path: Path) -> None:
    import gguf

    # The default keeps the name files were cached under before the parameter existed.
    assert tiny_model_filename(kind="chat", layers=2, dim=64) == "tiny-chat-l2-d64-v1.gguf"
    assert (
        tiny_model_filename(kind="chat", layers=2, dim=64, context_length=CONTEXT_LENGTH)
        == "tiny-chat-l2-d64-v1.gguf"
    )
    path = ensure_tiny_model(tmp_path, layers=2, dim=16, context_length=8192)
    assert path.name == "tiny-chat-l2-d16-c8192-v1.gguf"
    field = gguf.GGUFReader(path).fields["llama.context_length"]
    assert int(field.parts[field.data[0]][0]) == 8192
    with pytest.raises(ValueError, match="context_length"):
        ensure_tiny_model(tmp_path, context_length=0)
