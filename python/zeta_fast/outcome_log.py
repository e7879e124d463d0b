"""The outcome log: every decision and how it ended, in an embedded SQLite
database, for learning and analysis.

The writing is the Rust core's (``_core.OutcomeLogWriter``): a router's core
appends every outcome it records itself, with no Python call on the request
path, and a Rust thread writes the queued rows in one transaction every
``flush_interval_s`` (sooner when 4,096 wait), building the JSON columns
there, without the GIL. The database is in WAL mode so readers (exports,
dashboards, this class's readers) never block the writer.

Routing never depends on the log: the queue is bounded (past
``max_pending`` rows an append is dropped and counted in ``dropped``, never
waited on); a file locked by another process or on a full disk keeps its
rows queued and is retried; a corrupt file is moved aside
(``outcomes.sqlite.corrupt-<ms>``) and a new log started. Each kind of
trouble is logged once (logger ``zeta_fast.outcome_log``) and kept in
``last_error``. Rows older than ``retention_days`` are deleted at start and
every ``prune_every_s``.

Columns: ``ts_ms, model, replica, task, complexity, context, outcome,
success, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cost,
capability, score, adjustment, penalties, runners_up, profile`` (the last
three JSON text), then the learned router's ``learned`` (NULL when the row
was not learned, else the outcome learned: 1 good, 0 bad), ``category``
and ``features`` (the request's feature indices, little-endian u32, for
rows that were learned: ``zeta-fast learn`` retrains from them) and
``request_id`` (a gateway's ``x-request-id``). A ``feedback`` row is a
quality verdict given after the outcome.
"""

from __future__ import annotations

import contextvars
import csv
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from zeta_fast._core import OUTCOME_LOG_COLUMNS, Decision, OutcomeLogWriter

__all__ = ["COLUMNS", "OutcomeLog"]

#: The columns, in table order: the Rust writer's.
COLUMNS: tuple[str, ...] = OUTCOME_LOG_COLUMNS

#: The id of the request being served (a gateway's ``x-request-id``), set
#: by whoever serves it; every attempt of that request is logged with it.
#: A context variable: each request is its own asyncio task, and the hedged
#: copies a request launches inherit it.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "zeta_fast_request_id", default=None
)


class OutcomeLog:
    """Outcomes in SQLite: the Rust writer (a thread of its own) and the
    readers (counts, rows, CSV and Parquet exports).

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
        self.costs = dict(costs or {})
        self.max_pending = max_pending
        self.flush_interval_s = flush_interval_s
        self.retention_days = retention_days
        self.prune_every_s = prune_every_s
        #: The Rust writer: what a router's core appends to directly.
        self.writer = OutcomeLogWriter(
            str(self.path),
            costs=self.costs,
            max_pending=max_pending,
            flush_interval_s=flush_interval_s,
            retention_days=retention_days,
            prune_every_s=prune_every_s,
        )

    @property
    def dropped(self) -> int:
        """Rows not logged: the queue was full, or the log was closed."""
        return self.writer.dropped

    @property
    def written(self) -> int:
        """Rows written to the database."""
        return self.writer.written

    @property
    def pending(self) -> int:
        """Rows queued or kept for a retry, not yet written."""
        return self.writer.pending

    @property
    def last_error(self) -> str | None:
        """The last trouble the writer met, if any (it keeps going)."""
        return self.writer.last_error

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
        """Queues one outcome of a decision not recorded through a router
        with this log (those are appended by the core); False (and
        ``dropped`` counts it) when full. ``learned``: the outcome the
        learned router took from it, if any."""
        return self.writer.append(
            decision,
            outcome,
            latency_ms,
            ttft_ms=ttft_ms,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            learned=learned,
            request_id=current_request_id.get(),
        )

    # -- readers -------------------------------------------------------------------

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Waits until everything appended so far is written; False on timeout."""
        return self.writer.flush(timeout_s)

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
        """Writes what is pending (up to ``timeout_s``), then stops the
        writer; rows it could not write are counted in ``dropped``. Idempotent."""
        self.writer.close(timeout_s)

    def __enter__(self) -> OutcomeLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
