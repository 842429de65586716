"""What the proxy and the admin routes share: the pool, the upstream connections, the status."""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from llamasc.config import ModelCatalog
from llamasc.config.settings import Settings
from llamasc.server._types import PoolLike
from llamasc.server.flaggate import FlagGate
from llamasc.server.observing import build_observer
from llamasc.server.upstream import Upstreams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LlamaServerInfo:
    """The llama-server binary the daemon runs, as shown by ``GET /health``."""

    path: Path | None = None
    version: str = "unknown"


class DaemonState:
    """One daemon's shared state. ``draining`` turns new requests away with 503."""

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
        self.upstreams = Upstreams(
            lambda: (s.hash for s in pool.sidecars() if s.state != "stopping")
        )
        if hasattr(pool, "on_change"):  # the real pool: hear of stops as they begin
            pool.on_change = self.upstreams.sweep
        self.body_limit = settings.body_limit
        self._api_key = settings.api_key.encode() if settings.api_key else None
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        self.draining = False
        # metrics, events and history (None with --no-observability)
        self.observer = build_observer(settings, pool)
        self._pool_started = False
        self._closed = False

    @property
    def auth_required(self) -> bool:
        return self._api_key is not None

    def authorized(self, authorization: bytes | None) -> bool:
        """Constant-time check of an ``Authorization: Bearer <key>`` header value."""
        if self._api_key is None:
            return True
        if not authorization or authorization[:7].lower() != b"bearer ":
            return False
        return hmac.compare_digest(authorization[7:].strip(), self._api_key)

    def uptime(self) -> float:
        return time.monotonic() - self._started_mono

    async def startup(self) -> None:
        """Start the pool once (reaps leftovers of an earlier daemon)."""
        if not self._pool_started:
            self._pool_started = True
            if self.observer is not None:
                self.observer.start()
            await self.pool.start()

    async def shutdown(self) -> None:
        """Refuse new requests, close upstream connections, stop every child. Idempotent."""
        self.draining = True
        if self._closed:
            return
        self._closed = True
        await self.upstreams.aclose()
        await self.pool.close(grace=self.settings.stop_grace)
        log.info("all sidecars stopped")
        if self.observer is not None:
            self.observer.close()


__all__ = ["DaemonState", "LlamaServerInfo"]
