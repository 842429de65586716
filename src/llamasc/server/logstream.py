"""llama-swap's ``GET /logs/stream`` and ``/logs/stream/{model}``: the log as plain text,
followed until the client disconnects.

- ``/logs/stream``: the daemon's own log (what it writes at its log level) and every
  sidecar's output lines, the latter prefixed ``[model]``.
- ``/logs/stream/{model}``: the output of that model's sidecars only (an alias names its
  model; an unknown one is a 404 JSON error). Sidecars started later are followed too.
- ``?no-history``: only lines written from now on; otherwise the recent history first.

Memory is bounded: the daemon log is kept in one ring of :data:`RING_LINES` lines for the
process (a logging handler installed once), and each stream keeps only the last tail it saw
of each sidecar's own bounded ring. A stream ends when the client goes or the daemon drains.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import StreamingResponse

if TYPE_CHECKING:
    from llamasc.server.state import DaemonState

RING_LINES = 2000
POLL = 0.2  # seconds between looks at the rings (a stream's only timer)
SIDECAR_TAIL = 500
_SIDECAR_LOGGER = "llamasc.process._output"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class LogRing(logging.Handler):
    """The last :data:`RING_LINES` formatted records, each with a sequence number."""

    def __init__(self, size: int = RING_LINES) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(_FORMAT))
        self._lines: deque[tuple[int, str]] = deque(maxlen=size)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == _SIDECAR_LOGGER:
            return  # sidecar output is read from the sidecars' own rings
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self._lock:
            for line in text.splitlines() or [""]:
                self._lines.append((next(self._seq), line))

    def last_seq(self) -> int:
        with self._lock:
            return self._lines[-1][0] if self._lines else 0

    def since(self, seq: int) -> list[tuple[int, str]]:
        """Lines after ``seq`` still in the ring (oldest first)."""
        with self._lock:
            return [(s, ln) for s, ln in self._lines if s > seq]


_ring: LogRing | None = None
_ring_lock = threading.Lock()


def daemon_ring() -> LogRing:
    """The process's ring, on the root logger (installed on first use)."""
    global _ring
    with _ring_lock:
        root = logging.getLogger()
        if _ring is None:
            _ring = LogRing()
        if _ring not in root.handlers:  # setup_logging replaces the root's handlers
            root.addHandler(_ring)
        return _ring


def new_lines(prev: list[str], lines: list[str]) -> list[str]:
    """The lines of ``lines`` after the end of ``prev`` (both tails of one ring buffer)."""
    if not prev:
        return lines
    last = prev[-1]
    for j in range(len(lines) - 1, -1, -1):
        if lines[j] == last and (j == 0 or len(prev) < 2 or lines[j - 1] == prev[-2]):
            return lines[j + 1 :]
    return lines


class LogStream:
    """The two routes' handlers (mounted by :class:`~llamasc.server.swaproutes.SwapRoutes`)."""

    def __init__(self, state: DaemonState) -> None:
        self.state = state
        self.ring = daemon_ring()

    async def all(self, request: Request) -> StreamingResponse:
        history = "no-history" not in request.query_params
        return _text(self._follow(None, history))

    async def model(self, request: Request) -> StreamingResponse:
        model = self.state.catalog.get(request.path_params["model"]).id  # 404 if unknown
        history = "no-history" not in request.query_params
        return _text(self._follow(model, history))

    def _sidecar_lines(self, model: str | None, seen: dict[str, list[str]]) -> list[str]:
        """New output lines of the sidecars (of ``model``), updating ``seen``."""
        pool = self.state.pool
        out: list[str] = []
        live: set[str] = set()
        for info in pool.sidecars():
            if model is not None and info.model != model:
                continue
            live.add(info.hash)
            try:
                lines = list(pool.logs(info.hash, SIDECAR_TAIL))
            except Exception:  # noqa: S112 (the sidecar went meanwhile)
                continue
            fresh = new_lines(seen.get(info.hash, []), lines)
            seen[info.hash] = lines
            out += fresh if model is not None else [f"[{info.model}] {ln}" for ln in fresh]
        for gone in set(seen) - live:
            del seen[gone]
        return out

    async def _follow(self, model: str | None, history: bool) -> AsyncIterator[bytes]:
        seen: dict[str, list[str]] = {}
        seq = 0 if history else self.ring.last_seq()
        first = self._sidecar_lines(model, seen)  # the tails now: history, or skipped
        lines: list[str] = []
        if model is None:
            got = self.ring.since(seq)
            if got:
                seq = got[-1][0]
            lines = [ln for _, ln in got] if history else []
        if history:
            lines += first
        while True:
            if lines:
                yield ("\n".join(lines) + "\n").encode("utf-8", "replace")
            if self.state.draining:
                return
            await asyncio.sleep(POLL)
            lines = []
            if model is None:
                got = self.ring.since(seq)
                if got:
                    seq = got[-1][0]
                    lines = [ln for _, ln in got]
            lines += self._sidecar_lines(model, seen)


def _text(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


__all__ = ["LogRing", "LogStream", "daemon_ring", "new_lines"]
