"""What the proxy and the admin routes share: the pool, the upstream connections, the status."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamasc.config import ModelCatalog
from llamasc.config.settings import Settings
from llamasc.server._types import PoolLike
from llamasc.server.flaggate import FlagGate
from llamasc.server.observing import build_observer

if TYPE_CHECKING:
    from llamasc.server.rescan import ModelRescanner, RescanReport

log = logging.getLogger(__name__)

DRAIN_MESSAGE = "llamasc is shutting down"


@dataclass(frozen=True)
class LlamaServerInfo:
    """The llama-server binary the daemon runs, as shown by ``GET /health``."""

    path: Path | None = None
    version: str = "unknown"


class DaemonState:
    """One daemon's shared state. ``draining`` turns new requests away with 503.

    Requests waiting for a sidecar (loading, or the pool full) register in ``waiters``:
    setting ``draining`` (from any thread) cancels them at once, and each answers 503
    ``shutting_down``; requests already being answered get the shutdown grace.
    """

    def __init__(
        self,
        settings: Settings,
        pool: PoolLike,
        catalog: ModelCatalog,
        gate: FlagGate,
        llama_server: LlamaServerInfo,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.catalog = catalog
        self.gate = gate
        self.llama_server = llama_server
        self.body_limit = settings.body_limit
        # models whose config says `embeddings = false`: no route-implied --embedding/--reranking
        self.no_modes = frozenset(m for m, ms in settings.models.items() if not ms.embeddings)
        self.pooling = {m: ms.pooling for m, ms in settings.models.items() if ms.pooling}
        from llamasc.server.filters import BodyFilters  # llama-swap filters (issue 13)

        self.filters = BodyFilters(catalog, settings.models)
        from llamasc.server.peers import Peers  # models on other hosts (issue 13)

        self.peers = Peers(settings.peers)
        keys = [k for k in (settings.api_key, *settings.api_keys) if k]
        self._api_key = keys[0].encode() if keys else None
        self._api_keys = tuple(k.encode() for k in keys)
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        self._draining = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiters: set[asyncio.Task[Any]] = set()
        # the router API's bookkeeping: last failed /models/load per model, its load tasks
        self.load_failures: dict[str, int] = {}
        self.background: set[asyncio.Task[None]] = set()
        self._old_peers: list[Any] = []
        # metrics, events and history (None with --no-observability)
        self.observer = build_observer(settings, pool)
        self._pool_started = False
        self._closed = False
        self.rescanner: ModelRescanner | None = None  # set by the daemon (model discovery)

    def apply_reload(self, settings: Settings, catalog: ModelCatalog) -> None:
        """A reloaded config: the models, their listing fields and filters, the API keys."""
        from llamasc.server.filters import BodyFilters
        from llamasc.server.peers import Peers

        self._old_peers.append(self.peers)
        self.settings = settings
        self.catalog = catalog
        self.filters = BodyFilters(catalog, settings.models)
        self.peers = Peers(settings.peers)  # the old clients close with the daemon
        keys = [k for k in (settings.api_key, *settings.api_keys) if k]
        self._api_key = keys[0].encode() if keys else None
        self._api_keys = tuple(k.encode() for k in keys)
        self.no_modes = frozenset(m for m, ms in settings.models.items() if not ms.embeddings)
        self.pooling = {m: ms.pooling for m, ms in settings.models.items() if ms.pooling}

    @property
    def draining(self) -> bool:
        return self._draining

    @draining.setter
    def draining(self, value: bool) -> None:
        self._draining = value
        loop = self.loop
        if value and loop is not None and not loop.is_closed():
            # RuntimeError: the loop closed meanwhile, so nobody is waiting any more
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._release_waiters)

    def _release_waiters(self) -> None:
        if self.waiters:
            log.info("shutting down: %d waiting request(s) answered 503", len(self.waiters))
        for task in list(self.waiters):
            task.cancel(DRAIN_MESSAGE)

    @property
    def auth_required(self) -> bool:
        return self._api_key is not None

    def authorized(self, authorization: bytes | None, x_api_key: bytes | None = None) -> bool:
        """Constant-time check of ``Authorization: Bearer <key>`` or (Anthropic's clients)
        ``x-api-key: <key>``."""
        if self._api_key is None:
            return True
        if authorization:
            scheme = authorization[:6].lower()
            if scheme == b"bearer" and authorization[6:7] == b" ":
                return self._key_ok(authorization[7:].strip())
            if scheme == b"basic " and len(self._api_keys) > 0:
                return self._key_ok(basic_password(authorization[6:].strip()))
            return False
        if x_api_key:  # what Anthropic's clients send
            return self._key_ok(x_api_key.strip())
        return False

    def _key_ok(self, given: bytes) -> bool:
        """Constant time in the key, checked against every configured key (llama-swap's
        ``apiKeys`` is a list), so the time taken tells nothing about which one is close."""
        ok = False
        for key in self._api_keys:
            ok |= hmac.compare_digest(given, key)
        return ok

    def uptime(self) -> float:
        return time.monotonic() - self._started_mono

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The one start path: the pool (and observer) run inside, and everything is stopped
        on the way out, however it ends. The app's lifespan is this, and ``Daemon.serve``
        enters it itself before serving so that a failed start is one clear error."""
        try:
            await self.startup()
            yield
        finally:
            await self.shutdown()

    async def startup(self) -> None:
        """Start the pool once (reaps leftovers of an earlier daemon)."""
        self.loop = asyncio.get_running_loop()
        if not self._pool_started:
            self._pool_started = True
            if self.observer is not None:
                self.observer.start()
            await self.pool.start()

    async def rescan_models(self) -> RescanReport:
        """Rescan the models folders and caches and apply what changed (see
        :mod:`llamasc.server.rescan`); also what SIGHUP and ``--watch-models`` run."""
        if self.rescanner is None:
            from llamasc.config.catalog import Discovered
            from llamasc.config.discovery import Scanner
            from llamasc.server.rescan import ModelRescanner

            self.rescanner = ModelRescanner(Scanner(), Discovered(self.catalog))
        return await self.rescanner.rescan(self)

    async def shutdown(self) -> None:
        """Refuse new requests, stop every sidecar (which closes its connections). Idempotent."""
        self.draining = True
        if self._closed:
            return
        self._closed = True
        for task in list(self.background):
            task.cancel()
        for peers in (self.peers, *self._old_peers):
            await peers.aclose()
        await self.pool.close(grace=self.settings.stop_grace)
        # The event loop closes the sockets of the connections the sidecars just closed on
        # its next turn: take that turn here, before whoever runs us closes the loop.
        await asyncio.sleep(0)
        log.info("all sidecars stopped")
        if self.observer is not None:
            self.observer.close()


def basic_password(b64: bytes) -> bytes:
    """The password of a Basic credential (llama-swap's key may be sent as ``user:KEY``)."""
    import base64
    import binascii

    try:
        decoded = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        return b""
    return decoded.partition(b":")[2]


__all__ = ["DRAIN_MESSAGE", "DaemonState", "LlamaServerInfo", "basic_password"]
