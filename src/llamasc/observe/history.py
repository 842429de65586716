"""The request history: one SQLite row per proxied request, written off the request path.

The request path only appends a tuple to an in-memory queue; a writer thread inserts rows in
batches, so a slow disk never slows an answer (if the writer falls far behind, rows are dropped
and counted rather than held without bound). Rows older than ``days`` are deleted at start and
every hour. A database that cannot be opened or written (corrupt, locked, not a database) is
moved aside and recreated, with a warning: the history is a convenience, never a reason to fail.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_PENDING = 10000
_BATCH = 500
_BATCH_PAUSE = 0.25
_PRUNE_EVERY = 3600.0
_STOP = object()

COLUMNS = (
    "time", "client", "model", "sidecar", "flags_hash", "route", "status", "queue_wait",
    "load_wait", "ttft", "duration", "prompt_tokens", "completion_tokens", "tokens_per_second",
    "error_code",
)  # fmt: skip

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    client TEXT,
    model TEXT,
    sidecar TEXT,
    flags_hash TEXT,
    route TEXT,
    status INTEGER,
    queue_wait REAL,
    load_wait REAL,
    ttft REAL,
    duration REAL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    tokens_per_second REAL,
    error_code TEXT
);
CREATE INDEX IF NOT EXISTS requests_time ON requests(time);
CREATE INDEX IF NOT EXISTS requests_model ON requests(model, time);
"""
_PLACES = ", ".join("?" * len(COLUMNS))
_INSERT = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({_PLACES})"  # noqa: S608


def flags_hash(flags: Sequence[str]) -> str:
    """8 hex characters naming a canonical flag set (empty flags: empty string)."""
    if not flags:
        return ""
    return hashlib.sha256("\0".join(flags).encode()).hexdigest()[:8]


def error_code(body: bytes) -> str | None:
    """The ``code`` of an OpenAI-shaped error body, if it is one."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and err.get("code") is not None:
        return str(err["code"])[:100]
    return None


class History:
    """The history database at ``path``, written by a background thread."""

    def __init__(self, path: Path, days: float) -> None:
        self.path = Path(path)
        self.days = days
        self.dropped = 0
        self.written = 0
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._flushed = threading.Condition()

    # ------------------------------------------------------------------ request path

    def add(self, row: tuple[Any, ...]) -> None:
        """Queue one row (a tuple in :data:`COLUMNS` order, flags and error body raw)."""
        if self._queue.qsize() >= MAX_PENDING:
            self.dropped += 1
            return
        self._queue.put(row)

    # ---------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="llamasc-history", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every row queued so far is written (for tests and ``close``)."""
        marker = threading.Event()
        self._queue.put(marker)
        return marker.wait(timeout)

    # ------------------------------------------------------------------------ reading

    def query(
        self, *, limit: int = 100, model: str | None = None, since: float | None = None
    ) -> list[dict[str, Any]]:
        """The latest rows, newest first (an unreadable database reads as empty)."""
        if not self.path.exists():
            return []
        sql = f"SELECT id, {', '.join(COLUMNS)} FROM requests"  # noqa: S608 (constant columns)
        where: list[str] = []
        args: list[Any] = []
        if model:
            where.append("model = ?")
            args.append(model)
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        try:
            with contextlib.closing(self._connect(readonly=True)) as db:
                db.row_factory = sqlite3.Row
                return [dict(r) for r in db.execute(sql, args)]
        except sqlite3.Error as exc:
            log.warning("cannot read the request history %s: %s", self.path, exc)
            return []

    # ------------------------------------------------------------------------- writer

    def _connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        if readonly:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            return sqlite3.connect(uri, uri=True, timeout=2.0)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=2.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        return db

    def _open(self) -> sqlite3.Connection | None:
        for attempt in range(2):
            try:
                return self._connect()
            except (sqlite3.Error, OSError) as exc:
                if attempt == 0 and isinstance(exc, sqlite3.Error):
                    self._recreate(exc)
                    continue
                log.warning("request history disabled: cannot open %s: %s", self.path, exc)
        return None

    def _recreate(self, exc: BaseException) -> None:
        aside = self.path.with_name(f"{self.path.name}.bad-{int(time.time())}")
        log.warning(
            "request history %s is unusable (%s); moved aside to %s and recreated",
            self.path,
            exc,
            aside.name,
        )
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            with contextlib.suppress(OSError):
                src.replace(Path(str(aside) + suffix))

    def _prune(self, db: sqlite3.Connection) -> None:
        cutoff = time.time() - self.days * 86400.0
        db.execute("DELETE FROM requests WHERE time < ?", (cutoff,))

    def _run(self) -> None:
        db = self._open()
        last_prune: float | None = None
        stop = False
        while not stop:
            items = [self._queue.get()]
            while len(items) < _BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [_finish_row(i) for i in items if isinstance(i, tuple)]
            stop = any(i is _STOP for i in items)
            if rows and db is not None:
                db = self._write(db, rows)
            if db is not None and (
                last_prune is None or time.monotonic() - last_prune > _PRUNE_EVERY
            ):
                with contextlib.suppress(sqlite3.Error):
                    self._prune(db)
                last_prune = time.monotonic()
            markers = [i for i in items if isinstance(i, threading.Event)]
            for marker in markers:
                marker.set()
            if not stop and not markers:
                # Rows that arrive meanwhile go in the next transaction: one commit per
                # request would cost the daemon's CPU more than the inserts themselves.
                time.sleep(_BATCH_PAUSE)
        if db is not None:
            db.close()

    def _write(
        self, db: sqlite3.Connection, rows: list[tuple[Any, ...]]
    ) -> sqlite3.Connection | None:
        try:
            with db:
                db.execute("BEGIN")
                db.executemany(_INSERT, rows)
            self.written += len(rows)
            return db
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.close()
            self._recreate(exc)
            fresh = self._open()
            if fresh is not None:
                try:
                    with fresh:
                        fresh.execute("BEGIN")
                        fresh.executemany(_INSERT, rows)
                    self.written += len(rows)
                except sqlite3.Error as again:
                    log.warning("request history: lost %d row(s): %s", len(rows), again)
            return fresh


def _finish_row(item: tuple[Any, ...]) -> tuple[Any, ...]:
    """The writer's share of the work: hash the flags, read the error code."""
    row = list(item)
    flags = row[4]
    row[4] = flags_hash(flags) if isinstance(flags, tuple | list) else flags
    body = row[14]
    row[14] = error_code(body) if isinstance(body, bytes) and body else body
    return tuple(row)


__all__ = ["COLUMNS", "MAX_PENDING", "History", "error_code", "flags_hash"]
