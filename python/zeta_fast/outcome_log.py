"""The outcome log: every decision and how it ended, in an embedded SQLite
database, for learning and analysis.

The request path only appends a tuple to a deque (an atomic C operation,
tens of nanoseconds, no I/O); a background thread takes what is there every
``flush_interval_s`` (or sooner when it fills) and writes the batch in one
transaction, turning decisions into rows there. The database is
in WAL mode so readers (exports, dashboards) never block the writer. The
queue is bounded: past ``max_pending`` rows an append is dropped and counted
(``dropped``), never waited on. Rows older than ``retention_days`` are
deleted at start and every ``prune_every_s``.

Columns: ``ts_ms, model, replica, task, complexity, context, outcome,
success, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cost,
capability, score, adjustment, penalties, runners_up, profile`` (the last
three JSON text), then the learned router's ``learned`` (NULL when the row
was not learned, else the outcome learned: 1 good, 0 bad), ``category``
and ``features`` (the request's feature indices, little-endian u32, for
rows that were learned: ``zeta-fast learn`` retrains from them). A
``feedback`` row is a quality verdict given after the outcome.
"""

from __future__ import annotations

import contextvars
import csv
import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from zeta_fast._core import Decision

__all__ = ["COLUMNS", "OutcomeLog"]

COLUMNS = (
    "ts_ms",
    "model",
    "replica",
    "task",
    "complexity",
    "context",
    "outcome",
    "success",
    "latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "capability",
    "score",
    "adjustment",
    "penalties",
    "runners_up",
    "profile",
    "learned",
    "category",
    "features",
    "request_id",
)

# Columns added after the first release: added to older files on open.
_ADDED_COLUMNS = (
    ("learned", "INTEGER"),
    ("category", "TEXT"),
    ("features", "BLOB"),
    ("request_id", "TEXT"),
)

#: The id of the request being served (a gateway's ``x-request-id``), set
#: by whoever serves it; every attempt of that request is logged with it.
#: A context variable: each request is its own asyncio task, and the hedged
#: copies a request launches inherit it.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "zeta_fast_request_id", default=None
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outcomes (
    ts_ms INTEGER NOT NULL,
    model TEXT NOT NULL,
    replica TEXT NOT NULL,
    task TEXT NOT NULL,
    complexity REAL NOT NULL,
    context TEXT,
    outcome TEXT NOT NULL,
    success INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    capability REAL NOT NULL,
    score REAL NOT NULL,
    adjustment REAL NOT NULL,
    penalties TEXT NOT NULL,
    runners_up TEXT NOT NULL,
    profile TEXT
);
CREATE INDEX IF NOT EXISTS outcomes_ts ON outcomes (ts_ms);
CREATE INDEX IF NOT EXISTS outcomes_model ON outcomes (model, ts_ms);
"""

# (ms, decision, outcome kind, latency, ttft, prompt tokens, completion tokens,
# learned, request id)
_Pending = tuple[int, Decision, str, float, float | None, int, int, bool | None, str | None]


class OutcomeLog:
    """Appends outcomes to SQLite from a background thread.

    Args:
        path: the database file (created with its directory).
        costs: model id -> price per 1,000 tokens, for the ``cost`` column.
        max_pending: rows held before appends are dropped (and counted).
        flush_interval_s: the longest a row waits before it is written.
        retention_days: rows older than this are deleted; None keeps all.

    Example:
        >>> log = OutcomeLog(path)  # doctest: +SKIP
        >>> log.append(decision, "success", 12.5, prompt_tokens=20)  # doctest: +SKIP
        >>> log.flush(); log.count()  # doctest: +SKIP
        1
    """

    def __init__(
        self,
        path: str | Path,
        *,
        costs: Mapping[str, float] | None = None,
        max_pending: int = 100_000,
        flush_interval_s: float = 0.2,
        retention_days: float | None = 30.0,
        prune_every_s: float = 600.0,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s!r}")
        if retention_days is not None and not retention_days > 0:
            raise ValueError(f"retention_days must be > 0 or None, got {retention_days!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.costs = dict(costs or {})
        self.max_pending = max_pending
        self.flush_interval_s = flush_interval_s
        self.retention_days = retention_days
        self.prune_every_s = prune_every_s
        #: Rows not logged because the pending list was full.
        self.dropped = 0
        #: Rows written to the database.
        self.written = 0
        #: The last error of the writer thread, if any (it keeps going).
        self.last_error: str | None = None
        self._pending: deque[_Pending] = deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        with self._connect() as db:
            db.executescript(_SCHEMA)
            present = {row[1] for row in db.execute("PRAGMA table_info(outcomes)")}
            for name, kind in _ADDED_COLUMNS:
                if name not in present:
                    db.execute(f"ALTER TABLE outcomes ADD COLUMN {name} {kind}")
        self._prune()
        self._thread = threading.Thread(target=self._run, name="zeta-fast-outcome-log", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a crash loses at most the last transactions, never the file.
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # -- the request path ------------------------------------------------------

    def append(
        self,
        decision: Decision,
        outcome: str,
        latency_ms: float,
        *,
        ttft_ms: float | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        learned: bool | None = None,
    ) -> bool:
        """Queues one outcome; False (and ``dropped`` counts it) when full.
        ``learned``: the outcome the learned router took from it, if any."""
        pending = self._pending
        if len(pending) >= self.max_pending or self._closed:
            self.dropped += 1
            return False
        pending.append(
            (
                time.time_ns() // 1_000_000,
                decision,
                outcome,
                latency_ms,
                ttft_ms,
                prompt_tokens,
                completion_tokens,
                learned,
                current_request_id.get(),
            )
        )
        if len(pending) >= 4096:
            self._wake.set()
        return True

    # -- the writer --------------------------------------------------------------

    def _run(self) -> None:
        db = self._connect()
        next_prune = time.monotonic() + self.prune_every_s
        try:
            while True:
                self._wake.wait(self.flush_interval_s)
                self._wake.clear()
                pending = self._pending
                if pending:
                    # Not idle before the rows leave the queue: flush() must not
                    # see an empty queue while a batch is still being written.
                    self._idle.clear()
                    # popleft and append are atomic: appends racing this lose nothing.
                    batch = [pending.popleft() for _ in range(len(pending))]
                    try:
                        self._write(db, batch)
                    except Exception as exc:  # the writer must outlive a bad batch
                        self.last_error = f"{type(exc).__name__}: {exc}"
                        self.dropped += len(batch)
                if not self._pending:
                    self._idle.set()
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.prune_every_s
                    try:
                        self._prune(db)
                    except sqlite3.Error as exc:
                        self.last_error = f"{type(exc).__name__}: {exc}"
                if self._closed and not self._pending:
                    return
        finally:
            self._idle.set()
            db.close()

    def _write(self, db: sqlite3.Connection, batch: list[_Pending]) -> None:
        rows = [self._row(item) for item in batch]
        with db:
            db.executemany(
                f"INSERT INTO outcomes ({', '.join(COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(COLUMNS))})",
                rows,
            )
        self.written += len(rows)

    def _row(self, item: _Pending) -> tuple[Any, ...]:
        ts, decision, outcome, latency, ttft, prompt, completion, learned, request_id = item
        price = self.costs.get(decision.model_id, 0.0)
        profile = decision.profile
        return (
            ts,
            decision.model_id,
            decision.replica_id,
            decision.task_type,
            decision.complexity,
            decision.context,
            outcome,
            int(outcome == "success"),
            latency,
            ttft,
            prompt,
            completion,
            price * (prompt + completion) / 1000.0,
            decision.capability_score,
            decision.performance_score,
            decision.performance_adjustment,
            json.dumps(decision.penalties),
            json.dumps(decision.runners_up),
            json.dumps(profile.to_dict()) if profile is not None else None,
            None if learned is None else int(learned),
            decision.learned_category,
            features.to_bytes()
            if learned is not None and (features := decision.learned_features) is not None
            else None,
            request_id,
        )

    def _prune(self, db: sqlite3.Connection | None = None) -> int:
        if self.retention_days is None:
            return 0
        cutoff = int((time.time() - self.retention_days * 86_400) * 1000)
        own = db is None
        connection = self._connect() if db is None else db
        try:
            with connection:
                deleted = connection.execute(
                    "DELETE FROM outcomes WHERE ts_ms < ?", (cutoff,)
                ).rowcount
        finally:
            if own:
                connection.close()
        return int(deleted)

    # -- readers -------------------------------------------------------------------

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Waits until everything appended so far is written; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self._pending and self._idle.is_set():
                return True
            self._wake.set()
            self._idle.wait(0.01)
        return not self._pending and self._idle.is_set()

    def count(self) -> int:
        """Rows in the database."""
        with self._read() as db:
            return int(db.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])

    def rows(self, since_ms: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """Rows at or after ``since_ms``, oldest first, as dicts."""
        return list(self._iter_rows(since_ms, limit))

    def _iter_rows(self, since_ms: int, limit: int | None) -> Iterator[dict[str, Any]]:
        query = f"SELECT {', '.join(COLUMNS)} FROM outcomes WHERE ts_ms >= ? ORDER BY ts_ms"
        args: tuple[int, ...] = (since_ms,)
        if limit is not None:
            query += " LIMIT ?"
            args += (limit,)
        with self._read() as db:
            for row in db.execute(query, args):
                yield dict(zip(COLUMNS, row, strict=True))

    def export_csv(self, path: str | Path, since_ms: int = 0) -> int:
        """Writes the rows (header first) to a CSV file; returns how many."""
        count = 0
        with Path(path).open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for row in self._iter_rows(since_ms, None):
                writer.writerow(
                    row[c].hex() if isinstance(row[c], bytes) else row[c] for c in COLUMNS
                )
                count += 1
        return count

    def export_parquet(self, path: str | Path, since_ms: int = 0) -> int:
        """Writes the rows to a Parquet file; returns how many.

        Raises:
            ImportError: pyarrow is not installed (``pip install pyarrow``).
        """
        try:
            import pyarrow as pa  # type: ignore[import-not-found, import-untyped, unused-ignore]
            import pyarrow.parquet as pq  # type: ignore[import-not-found, import-untyped, unused-ignore]
        except ImportError as exc:
            raise ImportError("export_parquet needs pyarrow: pip install pyarrow") from exc
        rows = self.rows(since_ms)
        table = pa.table({c: [r[c] for r in rows] for c in COLUMNS})
        pq.write_table(table, str(path))
        return len(rows)

    class _Reader:
        def __init__(self, path: Path) -> None:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)

        def __enter__(self) -> sqlite3.Connection:
            return self.db

        def __exit__(self, *exc: object) -> None:
            self.db.close()

    def _read(self) -> OutcomeLog._Reader:
        return OutcomeLog._Reader(self.path)

    def close(self, timeout_s: float = 10.0) -> None:
        """Writes what is pending, then stops the writer. Idempotent."""
        if self._closed:
            return
        self.flush(timeout_s)
        self._closed = True
        self._wake.set()
        self._thread.join(timeout_s)

    def __enter__(self) -> OutcomeLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
