"""The results file: append-only JSONL, one complete line per measured request.

Crash safety comes from the write pattern: each record is one ``os.write`` of a whole line
on an ``O_APPEND`` descriptor, then ``fsync``. A crash can therefore only leave a *torn last
line* (no trailing newline); :meth:`ResultStore.load` reports it and truncates the file back
to the last complete line before anything is appended.

Identity: ``(host, model, arm, prompt id, rep, build)``. A rerun skips identities that have an
``ok`` record, and whole arms recorded as ``unsupported`` for that build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from llamasc.errors import DataError

log = logging.getLogger(__name__)

SCHEMA = 1
ARM_MARKER_PROMPT = "*"  # prompt id of the one record that marks a whole arm unsupported


def record_key(*, host: str, model: str, arm: str, prompt_id: str, rep: int, build: str) -> str:
    """The identity of one measurement (sha256 of the identity fields)."""
    ident = json.dumps([host, model, arm, prompt_id, rep, build], ensure_ascii=False)
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


@dataclass
class LoadResult:
    """What was in the file: good records, a dropped torn tail, unreadable line numbers."""

    records: list[dict[str, Any]] = field(default_factory=list)
    torn_tail: bytes | None = None
    bad_lines: list[int] = field(default_factory=list)


def done_keys(records: Iterable[dict[str, Any]], *, retry_unsupported: bool = False) -> set[str]:
    """Keys a rerun must not measure again: ``ok`` requests and ``unsupported`` arm markers."""
    final = ("ok",) if retry_unsupported else ("ok", "unsupported")
    return {
        str(r["key"]) for r in records if r.get("status") in final and isinstance(r.get("key"), str)
    }


def iter_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    for n, line in enumerate(data.split(b"\n"), 1):
        if line.strip():
            yield n, line


class ResultStore:
    """One results file. Use :meth:`load` first, then ``with store:`` + :meth:`append`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def load(self, *, repair: bool = True) -> LoadResult:
        """Read every record; drop (and with ``repair``, truncate away) a torn last line."""
        result = LoadResult()
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return result
        except OSError as exc:
            raise DataError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        end = data.rfind(b"\n") + 1
        if end < len(data):
            result.torn_tail = data[end:]
            data = data[:end]
            if repair:
                log.warning(
                    "%s: dropping a torn last line (%d bytes) left by an interrupted run",
                    self.path,
                    len(result.torn_tail),
                )
                with self.path.open("r+b") as fh:
                    fh.truncate(end)
                    fh.flush()
                    os.fsync(fh.fileno())
        for n, line in iter_lines(data):
            try:
                rec = json.loads(line)
            except ValueError:
                result.bad_lines.append(n)
                continue
            if isinstance(rec, dict):
                result.records.append(rec)
            else:
                result.bad_lines.append(n)
        return result

    def move_aside(self) -> Path | None:
        """``--fresh``: rename the old file next to itself (never delete results)."""
        if not self.path.exists():
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1000):
            suffix = f".{stamp}" + (f"-{n}" if n else "") + ".old"
            target = self.path.with_name(self.path.name + suffix)
            if not target.exists():
                self.path.rename(target)
                return target
        raise DataError(f"cannot find a free name to move {self.path} aside")

    def __enter__(self) -> ResultStore:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one whole line, durably."""
        if self._fd is None:
            raise RuntimeError("ResultStore.append outside 'with store:'")
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        data = line.encode("utf-8")
        written = os.write(self._fd, data)
        while written < len(data):  # only on exotic filesystems; still one line, in order
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)


def read_records(path: Path) -> LoadResult:
    """Read a results file for reporting (no repair: reports never modify results)."""
    if not path.exists():
        raise DataError(f"no results file at {path}")
    return ResultStore(path).load(repair=False)


__all__ = [
    "ARM_MARKER_PROMPT",
    "SCHEMA",
    "LoadResult",
    "ResultStore",
    "done_keys",
    "read_records",
    "record_key",
]
