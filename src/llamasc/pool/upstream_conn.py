"""One keep-alive HTTP/1.1 connection to a sidecar: an asyncio protocol with httptools parsing.

This replaces httpcore on the relay's hot path. A general client validates, traces and wraps
every step in cancel scopes; here a request is one ``transport.write`` of head and body
together (each write that wakes llama-server costs a context switch), and the response is
parsed by httptools callbacks straight into a small buffer the relay drains. Only what
llama-server's children need: plain TCP on loopback, one request at a time per connection,
Content-Length, chunked and close-delimited bodies.

The errors tell the relay how far a request got: :class:`UpstreamClosed` means the connection
ended before a single response byte arrived (a reused connection may just have been stale),
:class:`UpstreamProtocolError` that the answer was malformed or cut short.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import httptools


class UpstreamIOError(Exception):
    """The connection to a sidecar failed."""


class UpstreamConnectError(UpstreamIOError):
    """No connection could be opened."""


class UpstreamTimeout(UpstreamIOError):
    """Connecting, sending or waiting for the answer took longer than allowed."""


class UpstreamClosed(UpstreamIOError):
    """The connection ended (or could not be written) before any response byte arrived."""


class UpstreamProtocolError(UpstreamIOError):
    """The answer was not valid HTTP, or ended before its body did."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed per step; ``None`` waits forever.

    ``first_byte`` runs from the request's send to the first byte of the response body: a
    long prompt's prefill on a big model may take minutes before llama-server sends anything
    (a stream's head comes at once, its first event only after the prefill). ``idle`` is the
    longest silence between two pieces of the body after that.
    """

    connect: float | None = 5.0
    first_byte: float | None = 600.0
    idle: float | None = 120.0
    write: float | None = 60.0


# Pause reading the child once this much of its answer waits for a slow client.
_HIGH_WATER = 256 * 1024


class Connection(asyncio.Protocol):
    """One connection; ``request()`` then ``read()`` until ``b""``, then ``release()``.

    ``on_release`` gets the connection back when its answer was read to the end and both
    sides agree to keep it alive; otherwise ``release()`` closes it.
    """

    def __init__(self, timeouts: Timeouts, on_lost: Callable[[Connection], None]) -> None:
        self.timeouts = timeouts
        self.on_lost = on_lost
        self.on_release: Callable[[Connection], None] | None = None
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.closed = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._parser = httptools.HttpResponseParser(self)
        self._busy = False  # a request is in flight: bytes from the peer belong to it
        self._got_bytes = False
        self._head_done = False
        self._complete = False
        self._keep_alive = False
        self._until_close = False
        self._info = False  # parsing a 1xx interim answer, which is skipped
        self._error: UpstreamIOError | None = None
        self._body: list[bytes] = []
        self._body_seen = False  # a body byte of this answer arrived: from now on, idle
        self._buffered = 0
        self._reading_paused = False
        self._write_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None

    # -- transport callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        if not self._busy or self._complete:
            # stray bytes on an idle connection: its state is unknown, never reuse it
            self._keep_alive = False
            self.close()
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self._complete:
                self._fail(UpstreamProtocolError(f"invalid HTTP response: {exc}"))
            self._keep_alive = False
            self.close()
        if self._buffered > _HIGH_WATER and not self._reading_paused and self.transport:
            self._reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        return False  # let the transport close; connection_lost settles the request

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._busy and not self._complete and self._error is None:
            if self._head_done and self._until_close:
                self._complete = True  # a body without length ends with the connection
            elif not self._got_bytes:
                self._error = UpstreamClosed(_reason(exc, "closed without answering"))
            else:
                self._error = UpstreamProtocolError(_reason(exc, "closed mid-answer"))
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self.on_lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # -- httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._complete:
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._complete:  # bytes after the answer: the connection is spoilt, not the answer
            self._keep_alive = False
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._info = True
            self.headers = []
            return
        self.status = status
        self._head_done = True
        framed = status in (204, 304)
        for name, value in self.headers:
            lname = name.lower()
            if lname == b"content-length" or (
                lname == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                framed = True
        self._until_close = not framed
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return
        self._body.append(body)
        self._body_seen = True
        self._buffered += len(body)
        self._wake()

    def on_message_complete(self) -> None:
        if self._info:
            self._info = False
            return
        if self._complete:
            self._keep_alive = False
            return
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive() and not self._until_close
        self._wake()

    # -- the client side -------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """Still open and not touched by the peer since its last answer."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    async def request(self, data: bytes) -> None:
        """Send ``data`` (request head and body) and wait for the response head."""
        transport = self.transport
        if transport is None or self.closed or transport.is_closing():
            raise UpstreamClosed("connection already closed")
        self._busy = True
        self._got_bytes = self._head_done = self._complete = self._keep_alive = False
        self._body_seen = False
        self.status = 0
        self.headers = []
        transport.write(data)
        if self._write_paused and not self.closed:
            self._drain = asyncio.get_running_loop().create_future()
            try:
                await self._until(self._drain, self.timeouts.write, "sending the request")
            finally:
                self._drain = None
        while not self._head_done:
            if self._error is not None:
                raise self._error
            await self._wait(self.timeouts.first_byte, "waiting for the first byte of the answer")

    async def read(self) -> bytes:
        """The body bytes received since the last call; ``b""`` once the body is complete."""
        while True:
            if self._body:
                body = self._body
                data = body[0] if len(body) == 1 else b"".join(body)
                self._body = []
                self._buffered = 0
                if self._reading_paused and self.transport is not None:
                    self._reading_paused = False
                    self.transport.resume_reading()
                return data
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            if self._body_seen:
                await self._wait(self.timeouts.idle, "of silence in the middle of the answer")
            else:
                await self._wait(
                    self.timeouts.first_byte, "waiting for the first byte of the answer"
                )

    def release(self) -> None:
        """Give the connection back for reuse, or close it if its answer was not all read."""
        self._busy = False
        self._body = []
        self._buffered = 0
        if (
            self._complete
            and self._keep_alive
            and self._error is None
            and self.on_release is not None
            and self.usable
        ):
            self.on_release(self)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- waiting ---------------------------------------------------------------------------

    def _fail(self, error: UpstreamIOError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self, timeout: float | None, what: str) -> None:  # noqa: ASYNC109
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._until(self._waiter, timeout, what)
        finally:
            self._waiter = None

    @staticmethod
    async def _until(fut: asyncio.Future[None], timeout: float | None, what: str) -> None:  # noqa: ASYNC109
        if timeout is None:
            await fut
            return
        # asyncio.timeout, not wait_for: on Python 3.11, wait_for swallows a cancellation
        # that arrives as the future completes (the next chunk of a stream), so a client
        # that left was not noticed and llama-server kept generating for nobody
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            raise UpstreamTimeout(f"timed out after {timeout:g} s {what}") from None


def _reason(exc: Exception | None, default: str) -> str:
    if exc is None:
        return default
    return f"{default}: {exc}" if str(exc) else f"{default}: {type(exc).__name__}"


__all__ = [
    "Connection",
    "Timeouts",
    "UpstreamClosed",
    "UpstreamConnectError",
    "UpstreamIOError",
    "UpstreamProtocolError",
    "UpstreamTimeout",
]
