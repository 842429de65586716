"""Append-only, crash-safe result files: one JSON line per answered question.

A record is keyed by (benchmark, endpoint, model, canonical flags, question id, prompt version,
sampling parameters). Records of one run configuration (everything but the question id) share
a file, ``<out>/<benchmark>/<model>-<run id>.jsonl``, so a resumed run reads one file.

Durability: each record is one complete line written with a single ``write`` on an O_APPEND
descriptor, then flushed and fsynced, so a crash loses at most the questions in flight and
never leaves a half record followed by good ones. A torn last line from an older crash (or any
undecodable line) is reported and skipped, and the next append starts on a fresh line.
Summaries are written whole to a temporary file and renamed over the old one (``os.replace``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamasc.eval.data import Benchmark

log = logging.getLogger(__name__)


def _canon_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class RunSpec:
    """What makes two answers to the same question interchangeable."""

    benchmark: Benchmark
    endpoint: str
    model: str
    flags: tuple[str, ...]
    prompt_version: str
    sampling: Mapping[str, Any] = field(hash=False)

    def identity(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "endpoint": self.endpoint,
            "model": self.model,
            "flags": list(self.flags),
            "prompt_version": self.prompt_version,
            "sampling": dict(self.sampling),
        }

    @property
    def run_id(self) -> str:
        return hashlib.sha256(_canon_json(self.identity()).encode()).hexdigest()[:12]

    def key(self, question_id: str) -> str:
        """The resume key of one question's answer."""
        ident = {**self.identity(), "question": question_id}
        return hashlib.sha256(_canon_json(ident).encode()).hexdigest()

    @property
    def label(self) -> str:
        """``model`` or ``model [flags]``, for tables."""
        model = self.model or "(default model)"
        return f"{model} [{' '.join(self.flags)}]" if self.flags else model

    def slug(self) -> str:
        # a model id may be a path (llama-server names its model after the file)
        base = (self.model or "default").replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        model = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("_")[:60]
        return f"{model or 'model'}-{self.run_id}"


def atomic_write_text(path: Path, text: str) -> None:
    """Write a whole file so readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@dataclass
class Loaded:
    """What was on disk: good records by key, and how many lines were unreadable."""

    records: dict[str, dict[str, Any]]
    corrupt_lines: list[int]


class ResultStore:
    """The records file of one run configuration."""

    def __init__(self, out_dir: Path, spec: RunSpec) -> None:
        self.spec = spec
        self.dir = out_dir / spec.benchmark
        self.path = self.dir / f"{spec.slug()}.jsonl"
        self._fd: int | None = None

    @property
    def summary_base(self) -> Path:
        return self.path.with_suffix("")

    def load(self) -> Loaded:
        """Read every good record of this configuration; skip (and count) corrupt lines."""
        records: dict[str, dict[str, Any]] = {}
        corrupt: list[int] = []
        if not self.path.exists():
            return Loaded(records, corrupt)
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        for lineno, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                corrupt.append(lineno)
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("key"), str):
                corrupt.append(lineno)
                continue
            if rec["key"] == self.spec.key(str(rec.get("qid"))):
                records[rec["key"]] = rec
        if corrupt:
            log.warning("%s: skipped %d corrupt line(s): %s", self.path, len(corrupt), corrupt)
        return Loaded(records, corrupt)

    def fresh(self) -> Path | None:
        """Move an existing file aside (never delete answers); returns where it went."""
        if not self.path.exists():
            return None
        backup = self.path.with_name(f"{self.path.name}.{time.strftime('%Y%m%d-%H%M%S')}.bak")
        os.replace(self.path, backup)
        return backup

    def open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        size = os.fstat(self._fd).st_size
        if size:
            with self.path.open("rb") as fh:
                fh.seek(size - 1)
                torn = fh.read(1) != b"\n"
            if torn:
                # a crash cut the last line short: end it so the next record stands alone
                os.write(self._fd, b"\n")

    def append(self, record: dict[str, Any]) -> None:
        """Write one record as one line: a single write, then fsync."""
        if self._fd is None:
            self.open()
        assert self._fd is not None
        line = (_canon_json(record) + "\n").encode("utf-8")
        written = os.write(self._fd, line)
        if written != len(line):  # pragma: no cover - regular files do not short-write
            raise OSError(f"short write to {self.path}")
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def iter_run_files(out_dir: Path) -> Iterator[Path]:
    """Every records file under an output directory."""
    if out_dir.is_dir():
        yield from sorted(out_dir.glob("*/*.jsonl"))


def read_records(path: Path) -> tuple[list[dict[str, Any]], int]:
    """All decodable records of a file and the count of corrupt lines (for ``report``)."""
    records: list[dict[str, Any]] = []
    corrupt = 0
    for raw in path.read_bytes().split(b"\n"):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            corrupt += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            corrupt += 1
    return records, corrupt


__all__ = [
    "Loaded",
    "ResultStore",
    "RunSpec",
    "atomic_write_text",
    "iter_run_files",
    "read_records",
]
