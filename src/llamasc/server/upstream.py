"""Keep-alive connections to the sidecars: one httpcore connection pool per sidecar.

A pool is created the first time a sidecar is leased and closed once the sidecar is gone
(noticed when another sidecar appears, when an operator stops sidecars, and at shutdown),
so idle sockets to dead children do not pile up.

Stale keep-alive: llama-server closes idle connections after a few seconds. httpcore drops
connections it can see were closed, but the close can race our write. A request that fails on
a *reused* connection before any response byte arrived is retried once on a brand-new
connection; a request that failed on a fresh connection is reported, never replayed, since
the child may have received it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

import httpcore

from llamasc.server._netbackend import AsyncioBackend, connected_fresh, reset_fresh
from llamasc.server._types import LeaseLike

log = logging.getLogger(__name__)

# llama-server (cpp-httplib) drops idle keep-alive connections after 5 s: let ours go first.
KEEPALIVE_EXPIRY = 4.0
# Generation can legitimately take minutes before the first byte of a non-stream answer.
TIMEOUTS: dict[str, float | None] = {"connect": 5.0, "read": None, "write": 60.0, "pool": None}
_EXT: dict[str, Any] = {"timeout": TIMEOUTS}
_STALE_ERRORS = (httpcore.RemoteProtocolError, httpcore.ReadError, httpcore.WriteError)


_BACKEND = AsyncioBackend()


class Upstream:
    """The connections to one sidecar (one base URL)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        url = httpcore.URL(base_url)
        self.scheme, self.host, self.port = url.scheme, url.host, url.port
        self.origin = url.origin
        netloc = self.host + (b":%d" % self.port if self.port is not None else b"")
        self.host_header = (b"host", netloc)
        self.pool = httpcore.AsyncConnectionPool(
            max_connections=256,
            max_keepalive_connections=32,
            keepalive_expiry=KEEPALIVE_EXPIRY,
            network_backend=_BACKEND,
        )

    def _request(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> httpcore.Request:
        url = httpcore.URL(scheme=self.scheme, host=self.host, port=self.port, target=target)
        return httpcore.Request(method, url, headers=headers, content=body, extensions=_EXT)

    async def send(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[httpcore.Response, httpcore.AsyncHTTPConnection | None]:
        """Send one request; returns the response (headers read, body not) and, after a retry,
        the one-off connection the caller must close once the body is consumed."""
        reset_fresh()
        try:
            return await self.pool.handle_async_request(
                self._request(method, target, headers, body)
            ), None
        except _STALE_ERRORS as exc:
            if connected_fresh():
                raise
            log.debug("stale keep-alive connection to %s (%s); retrying once", self.base_url, exc)
        conn = httpcore.AsyncHTTPConnection(
            self.origin, keepalive_expiry=0.0, network_backend=_BACKEND
        )
        try:
            resp = await conn.handle_async_request(self._request(method, target, headers, body))
        except BaseException:
            await conn.aclose()
            raise
        return resp, conn

    async def aclose(self) -> None:
        await self.pool.aclose()


class Upstreams:
    """Upstream per sidecar key. ``live_keys`` tells which sidecars still exist."""

    def __init__(self, live_keys: Callable[[], Iterable[str]]) -> None:
        self._live_keys = live_keys
        self._by_key: dict[str, Upstream] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._by_key)

    def for_lease(self, lease: LeaseLike) -> Upstream:
        up = self._by_key.get(lease.key)
        if up is not None and up.base_url == lease.base_url:
            return up
        if up is not None:  # same flags, new child (it was restarted): old sockets are dead
            self._close_later(up)
        up = self._by_key[lease.key] = Upstream(lease.base_url)
        self.sweep(keep=lease.key)
        return up

    def sweep(self, keep: str | None = None) -> None:
        """Close the connections of sidecars that no longer exist."""
        live = set(self._live_keys())
        for key in [k for k in self._by_key if k not in live and k != keep]:
            self._close_later(self._by_key.pop(key))

    def _close_later(self, up: Upstream) -> None:
        task = asyncio.get_running_loop().create_task(up.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        ups = list(self._by_key.values())
        self._by_key.clear()
        await asyncio.gather(*(u.aclose() for u in ups), *self._closing, return_exceptions=True)


__all__ = ["KEEPALIVE_EXPIRY", "TIMEOUTS", "Upstream", "Upstreams"]
