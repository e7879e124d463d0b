"""The outcome log: real SQLite files in WAL mode, written by a background
thread; nothing lost under concurrent appends, drops counted when full,
retention, CSV export, and the router and dispatcher writing to it."""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.llamacpp_fixtures import StartReplicas
from zeta_fast import ManualClock, PerformanceTracker, Router
from zeta_fast.config import parse_router_config
from zeta_fast.outcome_log import COLUMNS, OutcomeLog

CODE = "def add(a, b):\n    return a + b"


def config(**top: object) -> dict[str, object]:
    return {
        "models": [
            {
                "id": "coder",
                "capabilities": {"code": 90, "chat": 60},
                "cost_per_1k_tokens": 0.5,
                "replicas": [{"id": "coder-a", "url": "http://127.0.0.1:9"}],
            }
        ],
        "dispatch": {"health": {"enabled": False}},
        **top,
    }


def router_with_log(path: Path, **spec: object) -> Router:
    parsed = parse_router_config(config(outcome_log={"path": str(path), **spec}))
    return Router(parsed, tracker=PerformanceTracker(clock=ManualClock(0), persist=False))


def test_rows_carry_the_decision_and_the_outcome(tmp_path: Path) -> None:
    db = tmp_path / "outcomes.sqlite"
    router = router_with_log(db)
    assert router.outcome_log is not None
    decision = router.route(CODE)
    router.record(decision, True, 12.5)
    failed = router.route(CODE)
    router.record(failed, False, 80.0)
    log = router.outcome_log
    log.append(router.route(CODE), "timeout", 3000.0, prompt_tokens=100, completion_tokens=900)
    assert log.flush()
    rows = log.rows()
    assert [r["outcome"] for r in rows] == ["success", "other", "timeout"]
    first = rows[0]
    assert (first["model"], first["replica"], first["task"]) == ("coder", "coder-a", "code")
    assert first["success"] == 1
    assert first["latency_ms"] == 12.5
    assert first["capability"] == 90.0
    assert json.loads(first["profile"])["task_type"] == "code"
    assert json.loads(first["penalties"]) == []
    assert rows[2]["cost"] == pytest.approx(0.5 * 1000 / 1000)
    assert log.dropped == 0
    router.close()
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0] == 3


def test_the_json_columns_read_back_as_the_decision_and_profile_give_them(
    tmp_path: Path,
) -> None:
    # Every character a model id may hold (the config refuses quotes,
    # backslashes and control characters; the Rust tests escape those).
    ids = ["org/model:7b@q4+v1.2", "a-b_c", "Z.9", "x:y/z"]
    raw = {
        "models": [
            {
                "id": model,
                "capabilities": {"code": 90 - i, "chat": 60},
                "replicas": [{"id": f"{model}-r", "url": f"http://127.0.0.1:{9 + i}"}],
            }
            for i, model in enumerate(ids)
        ],
        "dispatch": {"health": {"enabled": False}},
        "outcome_log": {"path": str(tmp_path / "outcomes.sqlite")},
    }
    router = Router(
        parse_router_config(raw),
        tracker=PerformanceTracker(clock=ManualClock(0), persist=False),
    )
    log = router.outcome_log
    assert log is not None
    prompts = [CODE, "Prove that the square root of 2 is irrational, step by step.", "hi?"]
    decisions = [router.route(prompt) for prompt in prompts]
    for decision in decisions:
        router.record(decision, True, 10.0)
    assert log.flush()
    rows = log.rows()
    assert len(rows) == len(prompts)
    for decision, row in zip(decisions, rows, strict=True):
        assert decision.profile is not None
        assert json.loads(row["profile"]) == decision.profile.to_dict()
        assert [tuple(pair) for pair in json.loads(row["runners_up"])] == [
            (model, score) for model, score in decision.runners_up
        ]
        assert (row["model"], row["replica"]) == (decision.model_id, decision.replica_id)
    assert {m for row in rows for m, _ in json.loads(row["runners_up"])} <= set(ids)
    router.close()


def test_concurrent_appends_lose_nothing(tmp_path: Path) -> None:
    router = router_with_log(tmp_path / "outcomes.sqlite")
    log = router.outcome_log
    assert log is not None
    decision = router.route(CODE)
    per_thread, threads = 20_000, 4

    def append_many() -> None:
        for i in range(per_thread):
            log.append(decision, "success", float(i))

    workers = [threading.Thread(target=append_many) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert log.flush(30.0)
    assert log.dropped == 0
    assert log.written == log.count() == per_thread * threads
    router.close()


def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path: Path) -> None:
    log = OutcomeLog(tmp_path / "o.sqlite", max_pending=100, flush_interval_s=60.0)
    router = router_with_log(tmp_path / "unused.sqlite", enabled=False)
    assert router.outcome_log is None
    decision = router.route(CODE)
    accepted = sum(log.append(decision, "success", 1.0) for _ in range(1_000))
    # The writer sleeps for its 60 s interval, so an append that waited for
    # room would take all 1,000 (a flush every 60 s) and drop none. It may
    # take a batch meanwhile; whatever was refused is counted.
    assert log.max_pending <= accepted < 1_000
    assert log.dropped == 1_000 - accepted
    log.close()
    assert log.count() == accepted


def test_retention_deletes_old_rows_and_csv_export(tmp_path: Path) -> None:
    db = tmp_path / "o.sqlite"
    log = OutcomeLog(db, retention_days=1.0)
    router = router_with_log(tmp_path / "unused.sqlite", enabled=False)
    decision = router.route(CODE)
    for _ in range(5):
        log.append(decision, "success", 1.0)
    log.close()
    old = int((time.time() - 3 * 86_400) * 1000)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE outcomes SET ts_ms = ? WHERE rowid <= 2", (old,))
    reopened = OutcomeLog(db, retention_days=1.0)
    assert reopened.count() == 3
    exported = tmp_path / "out.csv"
    assert reopened.export_csv(exported) == 3
    with exported.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == COLUMNS
    assert {r["model"] for r in rows} == {"coder"}
    reopened.close()
    with pytest.raises(ValueError, match="retention_days must be > 0"):
        OutcomeLog(db, retention_days=0)


def test_dispatched_attempts_are_logged_with_tokens(
    llamacpp_replicas: StartReplicas, tmp_path: Path
) -> None:
    a, b = llamacpp_replicas([("a", "small", 2), ("b", "small", 2)])
    db = tmp_path / "outcomes.sqlite"
    parsed = parse_router_config(
        {
            "models": [
                {
                    "id": "coder",
                    "capabilities": {"code": 90, "chat": 80},
                    "cost_per_1k_tokens": 2.0,
                    "replicas": [
                        {"id": "a", "url": a.url},
                        {"id": "b", "url": b.url},
                    ],
                }
            ],
            "dispatch": {"health": {"enabled": False}},
            "outcome_log": {"path": str(db)},
        }
    )
    router = Router(parsed, tracker=PerformanceTracker(persist=False))
    b.kill()

    async def main() -> None:
        async with router:
            for _ in range(6):
                await router.chat([{"role": "user", "content": "hi"}], max_tokens=3)

    asyncio.run(main())  # __aexit__ closes the router, writing the log
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT replica, outcome, completion_tokens, cost FROM outcomes"
        ).fetchall()
    successes = [r for r in rows if r[1] == "success"]
    assert len(successes) == 6
    assert all(r[0] == "a" and r[2] == 3 for r in successes)
    assert all(r[3] > 0 for r in successes)
    # The dead replica's failed attempts are there too.
    assert {r[1] for r in rows if r[0] == "b"} == {"connect"}


def test_parquet_export(tmp_path: Path) -> None:
    import pyarrow.parquet as pq  # the parquet extra, installed by scripts/setup.sh

    log = OutcomeLog(tmp_path / "o.sqlite")
    router = router_with_log(tmp_path / "unused.sqlite", enabled=False)
    for latency in (1.0, 2.0, 3.0):
        log.append(router.route(CODE), "success", latency)
    log.flush()
    assert log.export_parquet(tmp_path / "o.parquet") == 3
    table = pq.read_table(tmp_path / "o.parquet")
    assert table.column_names == list(COLUMNS)
    assert table.column("latency_ms").to_pylist() == [1.0, 2.0, 3.0]
    log.close()
