"""Keep-alive connections to a sidecar: a small pool of :class:`Connection`, owned by it.

The pool's sidecars open theirs when they are ready, retire it as soon as they start
stopping (idle sockets close at once, busy ones after their answer) and close it when they
are gone, so idle sockets neither delay a sidecar's exit nor pile up, and nothing has to sweep
them (:mod:`llamasc.pool.sidecars`). A lease hands it to the relay (``lease.upstream``).

Idle connections are reused newest first. One is dropped before use when the sidecar closed it
or sent anything while it was idle, or when it idled longer than :data:`KEEPALIVE_EXPIRY`.
The close can still race our write: a request that fails on a *reused* connection before any
response byte arrived is retried once on a brand-new connection (which is closed after that
answer); a request that failed on a fresh connection is reported, never replayed, since the
child may have received it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from llamasc.pool.upstream_conn import (
    Connection,
    Timeouts,
    UpstreamClosed,
    UpstreamConnectError,
    UpstreamTimeout,
)

log = logging.getLogger(__name__)

# llama-server (cpp-httplib) drops idle keep-alive connections after 5 s: let ours go first.
KEEPALIVE_EXPIRY = 4.0
MAX_IDLE = 32
TIMEOUTS = Timeouts()


class Upstream:
    """The connections to one sidecar (one base URL)."""

    def __init__(self, base_url: str, timeouts: Timeouts = TIMEOUTS) -> None:
        self.base_url = base_url
        url = urlsplit(base_url)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"not a plain http:// URL: {base_url!r}")
        self.host = url.hostname
        self.port = url.port or 80
        self.netloc = url.netloc.encode()
        self.timeouts = timeouts
        # insertion-ordered: popitem() hands out the most recently used connection
        self._idle: dict[Connection, None] = {}
        self._open: set[Connection] = set()
        self._closed = False

    def head(self, method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        """A request head with our Host; ``headers`` must include Content-Length."""
        lines = [method, b" ", target, b" HTTP/1.1\r\nhost: ", self.netloc, b"\r\n"]
        for name, value in headers:
            lines += (name, b": ", value, b"\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    async def send(self, data: bytes) -> Connection:
        """Send one request (head and body in ``data``); returns its connection with the
        response head read. Read the body with ``read()``, then ``release()`` it."""
        conn = self._take_idle()
        if conn is not None:
            try:
                await conn.request(data)
                return conn
            except UpstreamClosed as exc:
                conn.release()
                log.debug("stale keep-alive connection to %s (%s); retrying", self.base_url, exc)
            except BaseException:
                conn.release()
                raise
            conn = await self._connect(reusable=False)
        else:
            conn = await self._connect(reusable=True)
        try:
            await conn.request(data)
        except BaseException:
            conn.release()
            raise
        return conn

    def _take_idle(self) -> Connection | None:
        idle = self._idle
        if not idle:
            return None
        oldest_ok = asyncio.get_running_loop().time() - KEEPALIVE_EXPIRY
        while idle:
            conn = idle.popitem()[0]
            if conn.idle_since >= oldest_ok and conn.usable:
                return conn
            conn.close()
        return None

    def _put_idle(self, conn: Connection) -> None:
        if self._closed or len(self._idle) >= MAX_IDLE:
            conn.close()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        self._idle[conn] = None

    def _lost(self, conn: Connection) -> None:
        self._idle.pop(conn, None)
        self._open.discard(conn)

    async def _connect(self, *, reusable: bool) -> Connection:
        if self._closed:
            raise UpstreamClosed(f"connections to {self.base_url} were closed")
        loop = asyncio.get_running_loop()
        timeouts = self.timeouts

        def factory() -> Connection:
            return Connection(timeouts, self._lost)

        try:
            # asyncio.timeout: 3.11's wait_for can swallow a cancellation (and leak the socket)
            async with asyncio.timeout(timeouts.connect):
                _, conn = await loop.create_connection(factory, self.host, self.port)
        except TimeoutError:
            raise UpstreamTimeout(
                f"connecting to {self.host}:{self.port} timed out after {timeouts.connect:g} s"
            ) from None
        except OSError as exc:
            raise UpstreamConnectError(f"{exc.strerror or exc} ({self.host}:{self.port})") from None
        assert conn.transport is not None
        if self.closed():  # closed while we connected: nobody would close this one
            conn.close()
            raise UpstreamClosed(f"connections to {self.base_url} were closed")
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if reusable:
            conn.on_release = self._put_idle
        self._open.add(conn)
        return conn

    def closed(self) -> bool:
        """Retired or closed: no new connections."""
        return self._closed

    def retire(self) -> None:
        """Take no more requests: idle connections close now, busy ones after their answer.

        An idle keep-alive connection makes a stopping llama-server wait for it (about
        0.1 s, cpp-httplib's poll interval) before it exits, which every swap would pay.
        """
        self._closed = True
        for conn in list(self._idle):
            conn.close()
        self._idle.clear()

    def close(self) -> None:
        """Close every connection, idle or in use (a request using one fails)."""
        self._closed = True
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
        self._open.clear()


__all__ = ["KEEPALIVE_EXPIRY", "MAX_IDLE", "TIMEOUTS", "Upstream"]
