"""The ``zeta-fast`` command line.

- ``zeta-fast score FILE``: scores the candidates of a scoring file (see
  :mod:`zeta_fast.scoring_file`), prints the breakdown as a table and as JSON;
- ``zeta-fast serve --config FILE``: the OpenAI-compatible gateway;
- ``zeta-fast hash-key``: the SHA-256 of an API key, for the configuration;
- ``zeta-fast demo``: real llama.cpp replicas, the gateway, a workload and faults;
- ``zeta-fast bench gateway``: the gateway's added latency against its peers;
- ``zeta-fast bench prefix``: prefix/session-aware replica routing on llama.cpp replicas;
- ``zeta-fast eval profiler --data CSV``: the profiler on labelled prompts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from zeta_fast._core import AdaptiveScorer, ScoreBreakdown
from zeta_fast.scoring_file import ScoringFile, load_scoring_file

__all__ = ["main", "score_report"]


def score_report(scoring: ScoringFile) -> dict[str, Any]:
    """Scores every candidate; returns a JSON-serialisable report, best first."""
    scorer = AdaptiveScorer(scoring.config)
    scored: list[tuple[str, ScoreBreakdown]] = [
        (c.name, scorer.score(c.capability, c.success_rate, c.avg_latency_ms, c.requests))
        for c in scoring.candidates
    ]
    # Stable sort: equal scores keep file order, as best() breaks ties by index.
    ranked = sorted(scored, key=lambda item: -item[1].performance_score)
    return {
        "config": scoring.config.to_dict(),
        "best": ranked[0][0],
        "candidates": [{"name": name, **breakdown.to_dict()} for name, breakdown in ranked],
    }


def _table(report: dict[str, Any]) -> Table:
    table = Table(title="zeta_fast: adaptive scores (best first)")
    for column in (
        "rank",
        "candidate",
        "capability",
        "final score",
        "adjustment",
        "success",
        "latency ms",
        "requests",
        "penalties",
    ):
        table.add_column(
            column, justify="left" if column in ("candidate", "penalties") else "right"
        )
    for rank, row in enumerate(report["candidates"], start=1):
        adjustment = row["performance_adjustment"]
        table.add_row(
            str(rank),
            row["name"],
            f"{row['capability_score']:.2f}",
            f"{row['performance_score']:.3f}",
            f"{adjustment:+.3f}" if row["has_performance_data"] else "no data yet",
            f"{row['success_rate']:.1%}",
            f"{row['avg_latency_ms']:.1f}",
            str(row["requests"]),
            ", ".join(row["penalties"]) or "-",
        )
    return table


def _score_command(args: argparse.Namespace) -> int:
    report = score_report(load_scoring_file(args.file))
    if not args.json:
        console = Console()
        if not console.is_terminal:
            # Piped or captured: rich would assume 80 columns and squash the table.
            console = Console(width=132)
        console.print(_table(report))
    print(json.dumps(report, indent=2))
    return 0


def _eval_profiler_command(args: argparse.Namespace) -> int:
    from zeta_fast.profile_eval import evaluate, load_rows

    report = evaluate(load_rows(args.data, args.split))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    console = Console()
    if not console.is_terminal:
        console = Console(width=132)
    console.print(
        f"{report.rows} prompts ({args.split}): accuracy {report.accuracy:.3f}, "
        f"macro-F1 {report.macro_f1:.3f}, code vs not-code accuracy {report.code_accuracy:.3f}"
    )
    sources = Table(title="accuracy per source")
    for column in ("source", "prompts", "accuracy"):
        sources.add_column(column, justify="left" if column == "source" else "right")
    for source, (rows, accuracy) in report.per_source.items():
        sources.add_row(source, str(rows), f"{accuracy:.3f}")
    console.print(sources)
    guesses = sorted({g for row in report.confusion.values() for g in row})
    matrix = Table(title="confusion (rows: label, columns: profiled as)")
    matrix.add_column("label")
    for guess in guesses:
        matrix.add_column(guess, justify="right")
    for truth, row in report.confusion.items():
        matrix.add_row(truth, *(str(row.get(g, 0)) for g in guesses))
    console.print(matrix)
    return 0


def _serve_command(args: argparse.Namespace) -> int:
    from zeta_fast.config import load_router_config

    # Read before the gateway is imported: a bad file is reported (by main)
    # sooner, and whatever the gateway's own imports do.
    config = load_router_config(args.config)
    from zeta_fast.gateway import run

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run(config, host=args.host, port=args.port, uvloop=not args.no_uvloop)
    return 0


def _hash_key_command(args: argparse.Namespace) -> int:
    from zeta_fast.gateway import hash_key

    key = sys.stdin.readline().rstrip("\n") if args.key == "-" else args.key
    if not key:
        raise ValueError("key must not be empty")
    print(hash_key(key))
    return 0


def _bench_gateway_command(args: argparse.Namespace) -> int:
    from zeta_fast.gateway.bench import BenchSettings, run_bench

    settings = BenchSettings(
        rounds=args.rounds,
        requests_c1=args.requests_c1,
        requests_c16=args.requests_c16,
        chunks=args.chunks,
        contenders=tuple(args.contenders.split(",")),
        max_seconds=args.max_seconds,
    )
    report = run_bench(settings)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    console = _console()
    table = Table(title=f"gateway added latency over direct, ms ({report['rounds_done']} rounds)")
    for column in ("case", "contender", "p50", "added p50 min/med", "added p99 min/med", "rps"):
        table.add_column(column, justify="left" if column in ("case", "contender") else "right")
    for case, rows in report["cases"].items():
        for name, row in rows.items():
            added = (
                f"{row['added_p50_ms_min']:.3f} / {row['added_p50_ms_median']:.3f}"
                if "added_p50_ms_min" in row
                else "-"
            )
            added99 = (
                f"{row['added_p99_ms_min']:.3f} / {row['added_p99_ms_median']:.3f}"
                if "added_p99_ms_min" in row
                else "-"
            )
            table.add_row(
                case,
                name,
                f"{row['p50_ms_median']:.3f}",
                added,
                added99,
                f"{row['throughput_rps_median']:.0f}",
            )
    console.print(table)
    for name, ratio in report["ratios"].items():
        console.print(f"{name}: {ratio:.2f}")
    for name, why in report["skipped"].items():
        console.print(f"skipped {name}: {why}")
    return 0


def _bench_prefix_command(args: argparse.Namespace) -> int:
    from zeta_fast.gateway.prefix_bench import (
        PrefixBenchSettings,
        markdown_table,
        run_prefix_bench,
        write_report,
    )

    overrides: dict[str, Any] = {}
    for name in ("rounds", "sessions", "turns", "concurrency", "cache_ram_mib", "seed"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.mixes is not None:
        overrides["mixes"] = tuple(args.mixes.split(","))
    if args.contenders is not None:
        overrides["contenders"] = tuple(args.contenders.split(","))
    settings = (
        PrefixBenchSettings.quick(**overrides) if args.quick else PrefixBenchSettings(**overrides)
    )
    report = run_prefix_bench(settings)
    print(markdown_table(report))
    for name, why in report["skipped"].items():
        print(f"skipped {name}: {why}")
    print(f"{report['rounds_done']} round(s) in {report['seconds']} s")
    if args.json:
        write_report(report, args.json)
    failed = sum(
        row["failed"] for mix in report["mixes"].values() for row in mix["contenders"].values()
    )
    return 1 if failed else 0


def _bench_soak_command(args: argparse.Namespace) -> int:
    from zeta_fast.gateway.soak import SoakSettings, passed, run_soak

    report = run_soak(
        SoakSettings(
            requests=args.requests,
            concurrency=args.concurrency,
            fault_every=args.fault_every,
            memory_bound_mb=args.memory_bound_mb,
        )
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        console = _console()
        table = Table(title=f"soak: {args.requests} requests in {report['seconds']} s")
        table.add_column("check")
        table.add_column("result", justify="right")
        for name, value in report["checks"].items():
            table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
        console.print(table)
        console.print(f"faults injected: {len(report['faults'])}")
    return 0 if passed(report) else 1


def _demo_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.live import Live
    from rich.logging import RichHandler

    from zeta_fast.demo import DemoSettings, run_demo
    from zeta_fast.demo.plots import write_plots
    from zeta_fast.demo.scenario import DemoState, Sample
    from zeta_fast.demo.view import live_view, summary_tables

    settings = DemoSettings(
        duration_s=args.duration, rate=args.rate, out=Path(args.out), seed=args.seed
    )
    console = _console()
    console.print(
        f"zeta_fast demo: 6 llama.cpp replicas (3 tiny models x 2), the gateway, "
        f"{settings.rate:.0f} requests/s for {settings.duration_s:.0f} s; faults at "
        f"{settings.fault_at:.0%}, heal at {settings.heal_at:.0%}. Output: {settings.out}/"
    )
    # Log lines (a replica going down) print above the live view, not through it.
    logging.basicConfig(
        level=logging.WARNING,
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )
    live = Live(console=console, refresh_per_second=4) if not args.quiet else None

    def on_sample(state: DemoState, sample: Sample) -> None:
        if live is not None:
            live.update(live_view(state, sample))

    with live if live is not None else contextlib.nullcontext():
        report, state = run_demo(settings, on_sample)
    for table in summary_tables(report):
        console.print(table)
    written = [settings.out / "report.json"]
    try:
        written += write_plots(state, settings.out)
        # The dashboard's views of the run, from its outcome log.
        from zeta_fast.dashboard.report import write_report

        written.append(
            Path(write_report(settings.out / "outcomes.sqlite", settings.out / "report")["html"])
        )
    except ImportError:
        console.print("plots skipped: matplotlib is missing (pip install 'zeta_fast[plots]')")
    console.print(
        f"client success {report['client_success_rate']:.2%} over {report['requests']} requests; "
        f"gateway overhead p50 {report['gateway_overhead_ms']['p50']:.3f} ms"
    )
    console.print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _console() -> Console:
    console = Console()
    # Piped or captured: rich would assume 80 columns and squash the tables.
    return console if console.is_terminal else Console(width=132)


def _eval_signals_command(args: argparse.Namespace) -> int:
    from zeta_fast.learning.evaluation import load_table
    from zeta_fast.learning.signals_eval import (
        MIXES,
        SignalRates,
        evaluate_signals,
        write_signal_plot,
    )

    mixes = tuple(args.mixes.split(",")) if args.mixes else MIXES
    rates = SignalRates(
        regen_coverage=args.regen_coverage,
        regen_false=args.regen_false,
        judge_sample=args.judge_sample,
        judge_agreement=args.judge_agreement,
        shadow_sample=args.shadow_sample,
    )
    report = evaluate_signals(
        load_table(args.data),
        mixes=mixes,
        seeds=tuple(range(args.seeds)),
        strong_share=args.strong_share,
        rates=rates,
    )
    report["data"] = Path(args.data).name
    if args.plot:
        title = (
            f"{report['data']}: online PGR by signal mix at {args.strong_share:.0%} strong calls"
        )
        try:
            report["plot"] = str(write_signal_plot(report, args.plot, title))
        except ImportError:
            print("zeta-fast: plot skipped: pip install 'zeta_fast[plots]'", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    console = _console()
    table = Table(
        title=f"learning from the router's own signals, {report['data']}, "
        f"{len(range(args.seeds))} seeds, strong share {args.strong_share:.0%}"
    )
    columns = ("signals", "PGR (mean)", "+- s.e.", "min..max", "labels / request", "shadow calls")
    for column in columns:
        table.add_column(column, justify="left" if column == "signals" else "right")
    for mix, row in report["mixes"].items():
        table.add_row(
            mix,
            f"{row['pgr']:.3f}",
            f"{row['pgr_se']:.3f}",
            f"{row['pgr_min']:.3f}..{row['pgr_max']:.3f}",
            f"{row['labels_per_request']:.3f}",
            f"{row['shadow_calls']:.1%}",
        )
    console.print(table)
    if "plot" in report:
        console.print(f"wrote {report['plot']}")
    return 0


def _eval_routing_command(args: argparse.Namespace) -> int:
    from zeta_fast.learning.evaluation import evaluate, load_table, write_plot

    report = evaluate(
        load_table(args.data), seeds=tuple(range(args.seeds)), test_share=args.test_share
    )
    curves = report.pop("_curves")
    plot = None
    if args.plot:
        report["_curves"] = curves
        try:
            plot = write_plot(report, args.plot)
        except ImportError:
            print("zeta-fast: plot skipped: pip install 'zeta_fast[plots]'", file=sys.stderr)
        report.pop("_curves")
    if plot is not None:
        report["plot"] = str(plot)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    console = _console()
    accuracy = ", ".join(f"{m} {a:.1%}" for m, a in report["accuracy"].items())
    console.print(
        f"{report['data_rows']} prompts ({report['dropped_contaminated']} contaminated dropped), "
        f"{report['n_test']} test per seed, {len(report['seeds'])} seeds; accuracy: {accuracy}; "
        f"strong {report['strong']}, weak {report['weak']}"
    )
    table = Table(title="routing strong vs weak (means over seeds)")
    for column in ("router", "APGR", "CPT(50%)", "CPT(80%)"):
        table.add_column(column, justify="left" if column == "router" else "right")
    for name, row in report["routers"].items():
        table.add_row(
            name,
            f"{row['apgr']:.3f} ± {row['apgr_std']:.3f}",
            f"{row['cpt50']:.1%}",
            f"{row['cpt80']:.1%}",
        )
    console.print(table)
    for feedback, row in report.get("online", {}).items():
        console.print(
            f"online from scratch, {feedback} feedback: PGR {row['pgr']:.3f} "
            f"at {row['strong_share']:.1%} strong calls"
        )
    if plot is not None:
        console.print(f"wrote {plot}")
    return 0


def _alerts_command(args: argparse.Namespace) -> int:
    import time

    from zeta_fast.alerts import read_history

    since = int((time.time() - args.since_minutes * 60) * 1000) if args.since_minutes else 0
    alerts = read_history(args.db, since)
    if args.json:
        print(json.dumps(alerts, indent=2))
        return 0
    table = Table(title=f"alerts in {args.db} ({len(alerts)})")
    for column in ("time (UTC)", "severity", "model", "task", "rule", "kind", "message"):
        table.add_column(column)
    for alert in alerts:
        table.add_row(
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(alert["ts_ms"] / 1000)),
            alert["severity"],
            alert["model"],
            alert["task"] or "all",
            alert["rule"],
            alert["kind"],
            alert["message"],
        )
    _console().print(table)
    return 0


def _learn_command(args: argparse.Namespace) -> int:
    from zeta_fast._core import _write_learned_state
    from zeta_fast.config import load_router_config
    from zeta_fast.learning.training import train_from_log

    config = load_router_config(args.config)
    beside = Path(config.state_path) if config.state_path else None
    db = args.db or config.outcome_log.path or (beside and beside.with_name("outcomes.sqlite"))
    out = args.out or config.learning.state_path or (beside and beside.with_name("learned.bin"))
    if db is None or out is None:
        print(
            "zeta-fast learn: give --db and --out "
            "(the config has no state_path to put them beside)",
            file=sys.stderr,
        )
        return 2
    predictor, report = train_from_log(
        db,
        [m.id for m in config.models],
        config.learning.predictor_params(),
        epochs=args.epochs,
        holdout=args.holdout,
    )
    # As the router saves it: a synced temporary file renamed into place, the
    # previous one kept as .prev, so a crash mid-write leaves a whole file.
    _write_learned_state(Path(out), predictor.to_bytes())
    report["out"] = str(out)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    console = _console()
    console.print(f"learned {report['rows']} outcomes from {db} into {out}")
    table = Table(title="learned outcomes per model")
    table.add_column("model")
    table.add_column("rows", justify="right")
    for model, count in report["per_model"].items():
        table.add_row(model, str(count))
    console.print(table)
    held = report.get("holdout")
    if held and held.get("rows"):
        console.print(
            f"newest {int(held['rows'])} rows, trained on the older ones: accuracy "
            f"{held['accuracy']:.3f} (per-model rate alone {held['baseline_accuracy']:.3f}), "
            f"log loss {held['log_loss']:.3f} ({held['baseline_log_loss']:.3f})"
        )
    return 0


def _report_command(args: argparse.Namespace) -> int:
    import time

    from zeta_fast.config import load_router_config
    from zeta_fast.dashboard.report import write_report

    config = load_router_config(args.config) if args.config else None
    since = int((time.time() - args.since_minutes * 60) * 1000) if args.since_minutes else 0
    written = write_report(args.db, args.out, config, since_ms=since)
    if args.json:
        print(json.dumps({"html": written["html"], "images": written["images"]}))
        return 0
    _console().print(f"wrote {written['html']}")
    for image in written["images"]:
        _console().print(f"wrote {image}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zeta-fast", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="score the candidates of a TOML/YAML/JSON file")
    score.add_argument("file", help="scoring file with [scoring] and [[candidates]]")
    score.add_argument("--json", action="store_true", help="print only the JSON report")
    score.set_defaults(handler=_score_command)
    serve = commands.add_parser("serve", help="run the OpenAI-compatible gateway")
    serve.add_argument("--config", required=True, help="router configuration (YAML/TOML/JSON)")
    serve.add_argument("--host", default=None, help="address to bind (default: gateway.host)")
    serve.add_argument("--port", type=int, default=None, help="port (default: gateway.port)")
    serve.add_argument("--no-uvloop", action="store_true", help="use asyncio's own event loop")
    serve.add_argument(
        "--log-level",
        default="warning",
        choices=("debug", "info", "warning", "error"),
        help="info logs every failed attempt; never a key or a request body",
    )
    serve.set_defaults(handler=_serve_command)
    hashing = commands.add_parser("hash-key", help="print the SHA-256 of an API key for the config")
    hashing.add_argument("key", help="the key, or - to read it from stdin (keeps it out of ps)")
    hashing.set_defaults(handler=_hash_key_command)
    bench = commands.add_parser("bench", help="benchmarks")
    benches = bench.add_subparsers(dest="target", required=True)
    gateway = benches.add_parser(
        "gateway", help="the gateway's added latency vs vllm-router and LiteLLM (127.0.0.1)"
    )
    gateway.add_argument("--rounds", type=int, default=5)
    gateway.add_argument("--requests-c1", type=int, default=300, help="requests per case at 1")
    gateway.add_argument("--requests-c16", type=int, default=1600, help="requests per case at 16")
    gateway.add_argument("--chunks", type=int, default=32, help="SSE events per streamed answer")
    gateway.add_argument(
        "--contenders",
        default="direct,zeta,zeta-bare,vllm-router,litellm",
        help="comma-separated, from direct,zeta,zeta-bare (signals and learning off),"
        "vllm-router,litellm",
    )
    gateway.add_argument("--max-seconds", type=float, default=900.0, help="stop starting rounds")
    gateway.add_argument("--json", action="store_true", help="print the report as JSON")
    gateway.set_defaults(handler=_bench_gateway_command)
    prefix = benches.add_parser(
        "prefix",
        help="prefix/session-aware replica routing on real llama.cpp replicas, vs peers",
    )
    prefix.add_argument("--quick", action="store_true", help="4 sessions x 3 turns, 1 round")
    prefix.add_argument("--rounds", type=int, default=None)
    prefix.add_argument("--sessions", type=int, default=None)
    prefix.add_argument("--turns", type=int, default=None)
    prefix.add_argument("--concurrency", type=int, default=None, help="sessions in flight")
    prefix.add_argument("--mixes", default=None, help="comma-separated, from uniform,skewed")
    prefix.add_argument(
        "--contenders",
        default=None,
        help="comma-separated, from zeta-cache-aware,zeta-power-of-two,"
        "vllm-router-cache-aware,vllm-router-round-robin,oracle",
    )
    prefix.add_argument(
        "--cache-ram-mib",
        type=int,
        default=None,
        help="llama.cpp host prompt cache per replica (0: off; default: scaled to the model)",
    )
    prefix.add_argument("--seed", type=int, default=None)
    prefix.add_argument("--json", default=None, metavar="FILE", help="write the report there")
    prefix.set_defaults(handler=_bench_prefix_command)
    soak = benches.add_parser(
        "soak", help="many requests through the gateway to real llama.cpp replicas, with faults"
    )
    soak.add_argument("--requests", type=int, default=100_000)
    soak.add_argument("--concurrency", type=int, default=16)
    soak.add_argument("--fault-every", type=int, default=4_000, help="requests between faults")
    soak.add_argument("--memory-bound-mb", type=float, default=40.0)
    soak.add_argument("--json", action="store_true", help="print the report as JSON")
    soak.set_defaults(handler=_bench_soak_command)
    alerts = commands.add_parser("alerts", help="the alert history kept with the outcome log")
    alerts.add_argument("--db", required=True, help="the outcome log's SQLite file")
    alerts.add_argument("--since-minutes", type=float, default=None, help="only recent alerts")
    alerts.add_argument("--json", action="store_true", help="print the alerts as JSON")
    alerts.set_defaults(handler=_alerts_command)
    learn = commands.add_parser(
        "learn", help="train the learned router from the outcome log into its state file"
    )
    learn.add_argument("--config", required=True, help="the router's YAML/TOML/JSON config")
    learn.add_argument("--db", help="the outcome log (default: the config's)")
    learn.add_argument("--out", help="the learned state file (default: the config's)")
    learn.add_argument("--epochs", type=int, default=1, help="passes over the rows (default 1)")
    learn.add_argument(
        "--holdout", type=float, default=0.2, help="newest share held out for the report"
    )
    learn.add_argument("--json", action="store_true", help="print one JSON object")
    learn.set_defaults(handler=_learn_command)
    report = commands.add_parser(
        "report", help="the dashboard's views of a run as PNGs and one self-contained HTML file"
    )
    report.add_argument("--db", required=True, help="the run's outcome log (outcomes.sqlite)")
    report.add_argument("--config", help="the router's config (capabilities, thresholds)")
    report.add_argument("--out", default="zeta-report", help="output folder (default zeta-report)")
    report.add_argument("--since-minutes", type=float, help="only the last N minutes")
    report.add_argument("--json", action="store_true", help="print what was written as JSON")
    report.set_defaults(handler=_report_command)
    demo = commands.add_parser(
        "demo", help="real llama.cpp replicas, the gateway, a workload and faults (no GPU)"
    )
    demo.add_argument("--duration", type=float, default=40.0, help="seconds of traffic")
    demo.add_argument("--rate", type=float, default=60.0, help="requests per second")
    demo.add_argument("--out", default="demo-output", help="directory for the report and plots")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no live view")
    demo.set_defaults(handler=_demo_command)
    evaluation = commands.add_parser("eval", help="evaluate a component on labelled data")
    targets = evaluation.add_subparsers(dest="target", required=True)
    profiler = targets.add_parser("profiler", help="task-type accuracy on a labelled CSV")
    profiler.add_argument("--data", required=True, help="CSV with id, source, task_type, prompt")
    profiler.add_argument(
        "--split",
        choices=("all", "train", "test"),
        default="all",
        help="rows by the training split: 'test' is held out from the shipped weights",
    )
    profiler.add_argument("--json", action="store_true", help="print the report as JSON")
    profiler.set_defaults(handler=_eval_profiler_command)
    routing = targets.add_parser(
        "routing", help="APGR and CPT of the learned router on a per-prompt outcome table"
    )
    routing.add_argument(
        "--data", required=True, help="CSV: id, prompt, <model>_correct..., [contaminated, subject]"
    )
    routing.add_argument("--seeds", type=int, default=5, help="train/test splits (seeds 0..N-1)")
    routing.add_argument("--test-share", type=float, default=0.5, help="prompts held out per split")
    routing.add_argument("--plot", default="routing.png", help="PNG of quality vs strong share")
    routing.add_argument("--json", action="store_true", help="print one JSON object")
    routing.set_defaults(handler=_eval_routing_command)
    signals = targets.add_parser(
        "signals",
        help="online learning curves of the learned router per signal mix",
    )
    signals.add_argument(
        "--data", required=True, help="CSV: id, prompt, <model>_correct..., [contaminated, subject]"
    )
    signals.add_argument("--seeds", type=int, default=5, help="streams (seeds 0..N-1)")
    signals.add_argument("--strong-share", type=float, default=0.3, help="strong calls to hold")
    signals.add_argument("--mixes", default="", help="comma-separated mixes (default: all)")
    signals.add_argument(
        "--regen-coverage", type=float, default=0.30, help="bad answers regenerated"
    )
    signals.add_argument("--regen-false", type=float, default=0.05, help="good answers regenerated")
    signals.add_argument("--judge-sample", type=float, default=0.05, help="answers judged")
    signals.add_argument(
        "--judge-agreement", type=float, default=0.80, help="judge right this often"
    )
    signals.add_argument("--shadow-sample", type=float, default=0.05, help="weak answers shadowed")
    signals.add_argument("--plot", default="signals.png", help="PNG of the learning curves")
    signals.add_argument("--json", action="store_true", help="print one JSON object")
    signals.set_defaults(handler=_eval_signals_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``zeta-fast`` script; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"zeta-fast: error: {exc}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
