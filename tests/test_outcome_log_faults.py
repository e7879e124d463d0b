"""Routing never depends on the outcome log: a corrupt file, a file locked
by another process, and a full queue, each with real SQLite files. The
router starts at once, routes and records, and the log recovers (or says
what it dropped) on its own."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.waiting import wait_until
from zeta_fast import ManualClock, PerformanceTracker, Router
from zeta_fast.config import parse_router_config
from zeta_fast.exceptions import InvalidInputError

CODE = "def add(a, b):\n    return a + b"


def router_with_log(path: Path, **spec: object) -> Router:
    parsed = parse_router_config(
        {
            "models": [
                {
                    "id": "coder",
                    "capabilities": {"code": 90, "chat": 60},
                    "replicas": [{"id": "coder-a", "url": "http://127.0.0.1:9"}],
                }
            ],
            "alerts": {"enabled": False},
            "outcome_log": {"path": str(path), **spec},
        }
    )
    return Router(parsed, tracker=PerformanceTracker(clock=ManualClock(0), persist=False))


def route_and_record(router: Router, count: int) -> None:
    for _ in range(count):
        router.record(router.route(CODE), True, 5.0)


def test_a_corrupt_file_is_moved_aside_and_routing_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "outcomes.sqlite"
    db.write_bytes(b"not a database " * 1000)
    with caplog.at_level(logging.WARNING, logger="zeta_fast.outcome_log"):
        router = router_with_log(db)
        route_and_record(router, 10)
        log = router.outcome_log
        assert log is not None
        assert log.flush()
        assert log.count() == 10
        router.close()
    aside = list(tmp_path.glob("outcomes.sqlite.corrupt-*"))
    assert len(aside) == 1
    assert aside[0].read_bytes().startswith(b"not a database")
    assert log.last_error is not None
    assert "corrupt" in log.last_error
    assert any("was corrupt" in r.getMessage() for r in caplog.records)


@contextmanager
def locked_elsewhere(db: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``db`` from another process meanwhile."""
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None
        assert locker.stdout.readline().strip() == "locked"
        yield
    finally:
        assert locker.stdin is not None
        locker.stdin.write("\n")
        locker.stdin.flush()
        locker.wait(10)


LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
db.execute("COMMIT")
"""


def test_a_file_locked_by_another_process_neither_blocks_nor_loses_rows(tmp_path: Path) -> None:
    db = tmp_path / "outcomes.sqlite"
    sqlite3.connect(db).close()
    with locked_elsewhere(db):
        router = router_with_log(db)  # starts although the file cannot be opened now
        route_and_record(router, 25)
        log = router.outcome_log
        assert log is not None
        wait_until(lambda: log.last_error is not None)
        assert (log.written, log.dropped, log.pending) == (0, 0, 25)
    assert log.flush()
    assert (log.written, log.dropped, log.count()) == (25, 0, 25)
    router.close()


def test_a_full_queue_drops_counts_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "outcomes.sqlite"
    sqlite3.connect(db).close()
    with locked_elsewhere(db), caplog.at_level(logging.WARNING, logger="zeta_fast.outcome_log"):
        router = router_with_log(db, max_pending=10)
        route_and_record(router, 100)  # every record still succeeds
        log = router.outcome_log
        assert log is not None
        assert log.dropped == 90
        assert log.pending == 10
    assert log.flush()
    assert log.count() == 10
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drops) == 1, [r.getMessage() for r in caplog.records]
    router.close()


def test_record_after_close_is_an_error_not_a_lost_outcome(tmp_path: Path) -> None:
    router = router_with_log(tmp_path / "outcomes.sqlite")
    route_and_record(router, 3)
    in_flight = router.route(CODE)
    router.close()
    log = router.outcome_log
    assert log is not None
    assert log.count() == 3
    with pytest.raises(InvalidInputError, match=r"record\(\): the router is closed"):
        router.record(in_flight, True, 5.0)
    with pytest.raises(InvalidInputError, match=r"route\(\): the router is closed"):
        router.route(CODE)
    assert log.count() == 3
    # The log itself refuses (and counts) what is appended after it closed.
    assert not log.append(in_flight, "success", 1.0)
    assert log.dropped == 1


def test_the_metrics_page_counts_written_and_dropped_rows(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from zeta_fast.gateway.metrics import GatewayCounters, MetricsPage

    db = tmp_path / "outcomes.sqlite"
    sqlite3.connect(db).close()
    with locked_elsewhere(db):
        router = router_with_log(db, max_pending=4)
        route_and_record(router, 10)
        log = router.outcome_log
        assert log is not None
        wait_until(lambda: log.last_error is not None)
    assert log.flush()

    def samples() -> dict[str, float]:
        text = MetricsPage(router, GatewayCounters()).render().decode()
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name.startswith("zeta_outcome_log")
        }

    assert samples() == {
        "zeta_outcome_log_rows_written_total": 4.0,
        "zeta_outcome_log_rows_dropped_total": 6.0,
        "zeta_outcome_log_rows_pending": 0.0,
    }
    router.close()
