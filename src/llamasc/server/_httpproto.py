"""uvicorn's httptools protocol, with a response's head and first body chunk in one write.

uvicorn writes the status line and headers as soon as ``http.response.start`` is sent, then
each body chunk. On loopback every write can wake the client, so a JSON answer costs two
wake-ups instead of one. Here the head is held until the end of the current event-loop turn:
the relay sends its body in the same turn, so both leave in one ``write``; a streamed answer's
head leaves at the end of that turn at the latest.

``HttpToolsProtocol`` is not part of uvicorn's public API, so this leans on what the tested
releases do with the transport they are given (``write``, ``close``, ``is_closing``,
``set_protocol``, ``get_extra_info``: nothing else, and never ``writelines``, which would pass
a held head). The tested range is :data:`TESTED_UVICORN` (pinned in pyproject.toml); with any
other uvicorn, or ``LLAMASC_COALESCE_HEAD=0``, connections get the plain transport and the
daemon says so once in its log.

Measured with ``benchmarks/bench_overhead_ab.py --coalescing`` (A: ``LLAMASC_COALESCE_HEAD=0``,
B: coalescing; one source tree, 2 shared cores, 1-token chat completions, paired medians):

* behind the fake llama-server (the daemon's own cost): B - A = -0.071 ms at n=1000 (A added
  0.646 ms, B 0.572 ms) and -0.065 ms at n=300 (0.445 vs 0.379 ms): about 11-15 % of what
  the daemon adds, at the same CPU per request (0.69 vs 0.70 ms);
* behind the real llama-server with SmolLM2 (n=300) the difference (+0.87 ms) is below the
  run's noise (both daemons measured faster than direct requests).

Worth its 60 lines while the fallback keeps it from breaking on another uvicorn.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

# uvicorn releases whose HttpToolsProtocol was read and tested with the wrapper: [low, high)
TESTED_UVICORN = ((0, 54), (0, 55))
SWITCH = "LLAMASC_COALESCE_HEAD"


def version_tuple(version: str) -> tuple[int, int]:
    """``"0.54.0"`` -> ``(0, 54)``; anything unparsable -> ``(0, 0)``."""
    m = re.match(r"(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def coalescing_supported(version: str) -> bool:
    """Is ``version`` of uvicorn one whose internals the wrapper was tested against?"""
    low, high = TESTED_UVICORN
    return low <= version_tuple(version) < high


@functools.cache
def coalescing_enabled() -> bool:
    """Whether connections get the coalescing transport (decided, and logged, once)."""
    if os.environ.get(SWITCH, "1") == "0":
        log.info("%s=0: response heads are written as uvicorn writes them", SWITCH)
        return False
    if not coalescing_supported(uvicorn.__version__):
        low, high = TESTED_UVICORN
        log.warning(
            "uvicorn %s is outside the tested range %d.%d-%d.%d: response heads are written "
            "as uvicorn writes them (no head+body coalescing)",
            uvicorn.__version__,
            *low,
            *high,
        )
        return False
    return True


class _CoalescingTransport:
    """Delegates to the real transport; holds back a lone response head for one loop turn."""

    __slots__ = ("_held", "_loop", "_t")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._t = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self._t.write(held + bytes(data))
            return
        if data[:5] == b"HTTP/" and data[-4:] == b"\r\n\r\n":
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
            return
        self._t.write(data)

    def _flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._t.is_closing():
                self._t.write(held)

    def close(self) -> None:
        self._flush()
        self._t.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`_CoalescingTransport` (when enabled)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not coalescing_enabled():
            super().connection_made(transport)
            return
        wrapped: Any = _CoalescingTransport(transport, self.loop)
        super().connection_made(wrapped)


__all__ = [
    "TESTED_UVICORN",
    "CoalescingHttpToolsProtocol",
    "coalescing_enabled",
    "coalescing_supported",
]
