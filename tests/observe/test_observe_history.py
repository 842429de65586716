"""The request history: rows as written, retention, and a broken database never fatal."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamasc.observe.history import COLUMNS, History, error_code, flags_hash


def _row(**over: object) -> tuple[object, ...]:
    base: dict[str, object] = {
        "time": time.time(),
        "client": "127.0.0.1",
        "model": "m1",
        "sidecar": "abcdef01",
        "flags_hash": ("--top-k", "20"),
        "route": "/v1/chat/completions",
        "status": 200,
        "queue_wait": 0.001,
        "load_wait": 0.0,
        "ttft": 0.01,
        "duration": 0.02,
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "tokens_per_second": 100.0,
        "error_code": None,
    }
    base.update(over)
    return tuple(base[c] for c in COLUMNS)


@pytest.fixture
def history(tmp_path: Path) -> Iterator[History]:
    h = History(tmp_path / "h" / "history.sqlite3", days=14)
    h.start()
    yield h
    h.close()


def test_rows_are_written_off_thread_and_read_newest_first(history: History) -> None:
    history.add(_row(model="m1"))
    history.add(_row(model="m2", status=404, error_code=b'{"error":{"code":"model_not_found"}}'))
    assert history.flush()
    rows = history.query(limit=10)
    assert [r["model"] for r in rows] == ["m2", "m1"]
    assert rows[0]["status"] == 404
    assert rows[0]["error_code"] == "model_not_found"
    assert rows[1]["flags_hash"] == flags_hash(("--top-k", "20"))
    assert len(rows[1]["flags_hash"]) == 8
    assert rows[1]["prompt_tokens"] == 5
    assert history.query(limit=10, model="m1")[0]["model"] == "m1"
    assert len(history.query(limit=1)) == 1


def test_retention_deletes_rows_older_than_the_days_kept(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    first = History(path, days=1)
    first.start()
    first.add(_row(time=time.time() - 3 * 86400, model="old"))
    first.add(_row(model="new"))
    assert first.flush()
    first.close()
    again = History(path, days=1)  # pruned when the writer starts
    again.start()
    assert again.flush()
    assert [r["model"] for r in again.query(limit=10)] == ["new"]
    again.close()


def test_a_corrupt_database_is_moved_aside_and_recreated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    h = History(path, days=14)
    h.start()
    h.add(_row(model="after"))
    assert h.flush()
    assert [r["model"] for r in h.query(limit=10)] == ["after"]
    h.close()
    assert list(tmp_path.glob("history.sqlite3.bad-*"))
    assert "unusable" in caplog.text


def test_a_locked_database_is_recreated_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    h = History(path, days=14)
    h.start()
    h.add(_row(model="before"))
    assert h.flush()
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds it: our writes time out
    try:
        h.add(_row(model="while-locked"))
        assert h.flush(timeout=20)
    finally:
        locker.close()
    assert "while-locked" in [r["model"] for r in h.query(limit=10)]
    h.close()


def test_error_code_reads_openai_envelopes_only() -> None:
    assert error_code(b'{"error": {"message": "x", "type": "y", "code": "capacity"}}') == "capacity"
    assert error_code(b"not json") is None
    assert error_code(b'{"ok": 1}') is None
    assert flags_hash(()) == ""
