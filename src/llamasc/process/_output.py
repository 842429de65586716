"""Draining a child's output: a reader thread feeding a ring buffer, a file, the log and the loop.

llama-server writes its whole log to stderr (merged into stdout here). The pipe must be
read continuously: a child that fills a pipe buffer blocks in its next log call, mid
request. So a thread reads it from the first byte to EOF, whatever the event loop does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import IO, Any

log = logging.getLogger(__name__)

MAX_LINE = 8192
_READ_SIZE = 65536
# A read this big means the child logs a lot (-v): keep up rather than rest (Windows pipes
# hold about 4 KiB).
_REST_BELOW = 4096
READY_LINE = re.compile(r"listening on (?:https?|unix)://(\S+)")
# This llama-server build prefixes lines with elapsed time and a level: "0.00.006.367 E ".
LOG_PREFIX = re.compile(r"^\d+\.\d+\.\d+\.\d+ ([A-Z]) ")
ERROR_WORDS = re.compile(
    r"(?i)\berror\b|couldn't|failed|invalid|abort|GGML_ASSERT|terminate called|exception"
)
# Error lines that wrap the real cause rather than state it.
GENERIC_ERRORS = ("common_fit_params:",)


def strip_log_prefix(line: str) -> str:
    """``"0.00.006.986 E llama_model_load: ..."`` -> ``"llama_model_load: ..."``."""
    return LOG_PREFIX.sub("", line, count=1)


def meaningful_line(lines: Iterable[str]) -> str:
    """The line that best says why llama-server gave up, without its log prefix.

    llama-server's first error names the cause ("invalid magic characters", "couldn't bind
    HTTP server socket", "error: invalid argument"); the error lines after it are wrappers
    and the exit notice. Falls back to the last non-empty line.
    """
    last = ""
    for line in lines:
        if not line.strip():
            continue
        text = strip_log_prefix(line).strip()
        last = text
        m = LOG_PREFIX.match(line)
        is_error = m.group(1) == "E" if m else bool(ERROR_WORDS.search(text))
        if is_error and not text.startswith(GENERIC_ERRORS):
            return text
    return last


class OutputPump:
    """Reads a child's merged output to EOF on a daemon thread.

    Every line goes to the ring buffer (last ``ring_lines``), the optional log file, the
    daemon log at DEBUG with ``prefix``, and (in the event loop thread) ``on_line``. A
    readiness line (``listening on http://...``) also calls ``on_ready_line``; EOF calls
    ``on_eof``.
    """

    def __init__(
        self,
        stream: IO[bytes],
        *,
        loop: asyncio.AbstractEventLoop,
        ring_lines: int,
        prefix: str,
        log_file: IO[str] | None = None,
        on_line: Callable[[str], None] | None = None,
        on_ready_line: Callable[[str], None] | None = None,
        on_eof: Callable[[], None] | None = None,
    ) -> None:
        self._stream = stream
        self._loop = loop
        self._ring: collections.deque[str] = collections.deque(maxlen=ring_lines)
        self._lock = threading.Lock()
        self._prefix = prefix
        self._file = log_file
        self._on_line = on_line
        self._on_ready_line = on_ready_line
        self._on_eof = on_eof
        self._pace = 0.0
        self._hurry = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"llamasc-output{prefix.strip()}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def pace(self, seconds: float) -> None:
        """From now on, rest ``seconds`` after each read (see ``_run``)."""
        self._pace = seconds

    def hurry(self) -> None:
        """Stop resting: the child is on its way out and its last lines are wanted now."""
        self._pace = 0.0
        self._hurry.set()

    def tail(self, n: int) -> list[str]:
        """The last ``n`` lines (fewer if the child said less)."""
        with self._lock:
            lines = list(self._ring)
        return lines[-n:] if n > 0 else []

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is left to tell
            self._loop.call_soon_threadsafe(fn, *args)

    def _write_file(self, line: str) -> None:
        if self._file is None:
            return
        try:
            self._file.write(line + "\n")
        except (OSError, ValueError) as exc:
            log.warning("%scannot write the sidecar log file any more: %s", self._prefix, exc)
            self._file = None

    def _run(self) -> None:
        # Whole reads, not readline: llama-server writes several lines per request just as
        # its answer leaves, and each line handled apart would be another GIL hand-off and
        # log-file write competing with the relay on the event loop thread.
        # Once the child is ready, the reader also rests a moment after each read (``pace``):
        # a request's closing lines then wait in the pipe while its answer is relayed, rather
        # than wake this thread at that very moment. Measured side by side on 2 cores
        # (benchmarks/bench_overhead_ab.py): 0.05-0.5 ms less added latency per short request,
        # a noisy figure. The pipe holds far more than llama-server logs in that time, and
        # llama.cpp's logger queues rather than block its other threads on a full pipe.
        read = getattr(self._stream, "read1", self._stream.read)  # read1: one syscall at most
        pending = b""
        try:
            while data := read(_READ_SIZE):
                chunks = (pending + data).split(b"\n")
                pending = chunks.pop()
                if len(pending) > MAX_LINE:  # a runaway line: cut it, keep reading
                    chunks.append(pending)
                    pending = b""
                self._lines(chunks)
                if self._pace and len(data) < _REST_BELOW:  # a flood is drained at once
                    self._hurry.wait(self._pace)
            if pending:
                self._lines([pending])
        except (OSError, ValueError) as exc:  # the pipe was closed under us
            log.debug("%soutput reader stopped: %s", self._prefix, exc)
        finally:
            self._stream.close()
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
            if self._on_eof is not None:
                self._post(self._on_eof)

    def _lines(self, chunks: list[bytes]) -> None:
        lines = [c[:MAX_LINE].decode("utf-8", "replace").rstrip("\r") for c in chunks]
        with self._lock:
            self._ring.extend(lines)
        if self._file is not None:
            self._write_file("\n".join(lines))
        if log.isEnabledFor(logging.DEBUG):
            for line in lines:
                log.debug("%s%s", self._prefix, line)
        for line in lines:
            if self._on_ready_line is not None and READY_LINE.search(line):
                self._post(self._on_ready_line, line)
            if self._on_line is not None:
                self._post(self._on_line, line)
