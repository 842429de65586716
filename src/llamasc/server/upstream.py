"""Keep-alive connections to the sidecars: a small pool of :class:`Connection` per sidecar.

A pool is created the first time a sidecar is leased and retired as soon as the sidecar
starts stopping (the pool says so through its ``on_change`` hook; also checked when another
sidecar appears, and everything is closed at shutdown), so idle sockets neither delay a
child's exit nor pile up.

Idle connections are reused newest first. One is dropped before use when the child closed it
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
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from llamasc.server._types import LeaseLike
from llamasc.server.upstream_conn import (
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
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if reusable:
            conn.on_release = self._put_idle
        self._open.add(conn)
        return conn

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


class Upstreams:
    """Upstream per sidecar key. ``live_keys`` tells which sidecars exist and are not stopping."""

    def __init__(
        self, live_keys: Callable[[], Iterable[str]], timeouts: Timeouts = TIMEOUTS
    ) -> None:
        self._live_keys = live_keys
        self._timeouts = timeouts
        self._by_key: dict[str, Upstream] = {}

    def __len__(self) -> int:
        return len(self._by_key)

    def for_lease(self, lease: LeaseLike) -> Upstream:
        up = self._by_key.get(lease.key)
        if up is not None and up.base_url == lease.base_url:
            return up
        if up is not None:  # same flags, new child (it was restarted): old sockets are dead
            up.close()
        up = self._by_key[lease.key] = Upstream(lease.base_url, self._timeouts)
        self.sweep(keep=lease.key)
        return up

    def sweep(self, keep: str | None = None) -> None:
        """Retire the connections of sidecars that are gone or on their way out."""
        live = set(self._live_keys())
        for key in [k for k in self._by_key if k not in live and k != keep]:
            self._by_key.pop(key).retire()

    async def aclose(self) -> None:
        """Close every sidecar's connections (at shutdown)."""
        ups = list(self._by_key.values())
        self._by_key.clear()
        for up in ups:
            up.close()


__all__ = ["KEEPALIVE_EXPIRY", "MAX_IDLE", "TIMEOUTS", "Upstream", "Upstreams"]
