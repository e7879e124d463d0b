"""A shortened soak through `zeta-fast serve` against real llama.cpp replicas
with every kind of fault (the full one: `zeta-fast bench soak`, 100,000
requests): bounded memory, no lost outcome, nothing stuck."""

from __future__ import annotations

from zeta_fast.gateway.soak import FAULTS, SoakSettings, passed, run_soak


def test_soak_with_every_fault_kind_loses_nothing_and_leaks_nothing() -> None:
    settings = SoakSettings(requests=14_000, fault_every=2_000, memory_bound_mb=40.0)
    report = run_soak(settings)
    checks = report["checks"]
    assert {f["kind"] for f in report["faults"]} == set(FAULTS)
    assert passed(report), (checks, report["client"]["failure_messages"])
    assert checks["client_success_rate"] >= 0.999, report["client"]["failure_messages"]
    # The gateway's own count of attempts agrees with what the client saw.
    assert report["final"]["attempts"]["success"] == report["client"]["complete"]
