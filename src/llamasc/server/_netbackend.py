"""A plain-asyncio network backend for httpcore, for the relay's connections to sidecars.

httpcore's default backend goes through anyio, which wraps every read and write in cancel
scopes and rebuilds a dict of socket attributes for each keep-alive check; on a 1-token
completion that was a measurable share of the relay's own cost. This backend talks to an
asyncio protocol directly. It serves plain TCP to loopback children only (no TLS).

It also notes, per task, whether a request had to open a new connection
(:func:`connected_fresh`): the relay replays a failed request only if it was sent on a
reused keep-alive connection.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

import httpcore

_FRESH: contextvars.ContextVar[bool] = contextvars.ContextVar("llamasc_fresh_conn", default=False)


def reset_fresh() -> None:
    _FRESH.set(False)


def connected_fresh() -> bool:
    """True if the current task opened a new upstream connection since ``reset_fresh()``."""
    return _FRESH.get()


class _Protocol(asyncio.Protocol):
    __slots__ = ("_buffer", "_drained", "_eof", "_error", "_paused", "_waiter", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._error: BaseException | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None

    # transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self._buffer.append(data)
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._error = exc
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # used by the stream
    @property
    def readable(self) -> bool:
        return bool(self._buffer) or self._eof


async def _wait(fut: asyncio.Future[None], timeout: float | None, exc: type[Exception]) -> None:  # noqa: ASYNC109
    if timeout is None:
        await fut
        return
    try:
        await asyncio.wait_for(fut, timeout)
    except TimeoutError:
        raise exc(f"timed out after {timeout:g} s") from None


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._p = protocol
        self._transport = transport

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        p = self._p
        while not p._buffer:
            if p._eof:
                if p._error is not None:
                    raise httpcore.ReadError(str(p._error) or type(p._error).__name__)
                return b""
            p._waiter = asyncio.get_running_loop().create_future()
            try:
                await _wait(p._waiter, timeout, httpcore.ReadTimeout)
            finally:
                p._waiter = None
        data = p._buffer.popleft()
        if len(data) > max_bytes:
            p._buffer.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        p = self._p
        if self._transport.is_closing():
            raise httpcore.WriteError("connection closed")
        self._transport.write(buffer)
        if p._paused:
            p._drained = asyncio.get_running_loop().create_future()
            await _wait(p._drained, timeout, httpcore.WriteTimeout)

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("TLS is not used for llama-server children")

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # the loop has seen the peer's EOF (or stray bytes) on an idle connection
            return self._p.readable
        if info == "socket":
            return self._transport.get_extra_info("socket")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend on asyncio protocols (TCP only)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        _FRESH.set(True)
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(_Protocol, host, port), timeout
            )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"connect to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"{exc.strerror or exc} ({host}:{port})") from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Stream(transport, protocol)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


__all__ = ["AsyncioBackend", "connected_fresh", "reset_fresh"]
