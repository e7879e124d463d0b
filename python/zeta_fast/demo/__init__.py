"""``zeta-fast demo``: real llama.cpp replicas of three tiny models, the
gateway, a mixed workload from a licensed prompt sample, faults halfway,
a live view, a summary, PNG plots and a JSON report."""

from zeta_fast.demo.scenario import DemoSettings, run_demo

__all__ = ["DemoSettings", "run_demo"]
