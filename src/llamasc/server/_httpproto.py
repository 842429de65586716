"""uvicorn's httptools protocol, with a response's head and first body chunk in one write.

uvicorn writes the status line and headers as soon as ``http.response.start`` is sent, then
each body chunk. On loopback every write can wake the client, so a JSON answer costs two
wake-ups instead of one. Here the head is held until the end of the current event-loop turn:
the relay sends its body in the same turn, so both leave in one ``write``; a streamed answer's
head leaves at the end of that turn at the latest.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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
    """uvicorn's httptools protocol over a :class:`_CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        wrapped: Any = _CoalescingTransport(transport, self.loop)
        super().connection_made(wrapped)


__all__ = ["CoalescingHttpToolsProtocol"]
