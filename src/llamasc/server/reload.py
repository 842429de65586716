"""Reloading the configuration of a running daemon (SIGHUP, ``--watch-config``).

A model whose GGUF, environment and operator args did not change keeps its running
children (same pid). A changed model gets a new sidecar key, so its next request starts a
new child; the old children are stopped once their in-flight requests finish. A removed
model's new requests get 404, and its children go the same way. A new model is available at
once. A new file that does not load is logged with its problem and the old config stays.
Both outcomes are published on ``/api/events`` (``config_reloaded`` with what changed,
``config_reload_failed`` with the problem): a reload is asynchronous to a SIGHUP, and a
request sent before it is applied is served by the configuration then in force.

Only the models and what the routes read per request (listing fields, filters, API keys)
change on a reload; pool-wide settings (bind, MAX_SIDECARS, ports) need a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llamasc.config import ModelCatalog
from llamasc.config.settings import Settings
from llamasc.errors import LlamascError

if TYPE_CHECKING:
    from llamasc.pool.pool import Pool
    from llamasc.server.state import DaemonState

log = logging.getLogger(__name__)

WATCH_INTERVAL = 2.0
DRAIN_POLL = 0.05


@dataclass
class ReloadResult:
    ok: bool
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    error: str | None = None


def diff_catalogs(old: ModelCatalog, new: ModelCatalog) -> tuple[ModelCatalog, ReloadResult]:
    """The catalog to serve (changed models one generation up) and what changed."""
    result = ReloadResult(ok=True)
    entries = {}
    for mid, entry in new.models.items():
        before = old.models.get(mid)
        if before is None:
            result.added.append(mid)
            entries[mid] = entry
        elif entry.runs_like(before):
            entries[mid] = dataclasses.replace(entry, generation=before.generation)
            result.kept.append(mid)
        else:
            entries[mid] = dataclasses.replace(entry, generation=before.generation + 1)
            result.changed.append(mid)
    result.removed = [mid for mid in old.models if mid not in new.models]
    return ModelCatalog(entries, aliases=dict(new.aliases)), result


class Reloader:
    """Holds how to re-read the settings, and performs reloads on one daemon."""

    def __init__(
        self,
        state: DaemonState,
        pool: Pool,
        load: Callable[[], Settings],
        build: Callable[[Settings], ModelCatalog],
        watch_paths: Sequence[str] = (),
    ) -> None:
        self.state = state
        self.pool = pool
        self._load = load
        self._build = build
        self.watch_paths = list(watch_paths)
        self._lock = asyncio.Lock()
        self._drains: set[asyncio.Task[None]] = set()

    async def reload(self) -> ReloadResult:
        """Re-read the config and apply it; never raises for a bad file."""
        async with self._lock:
            try:
                settings = await asyncio.to_thread(self._load)
                fresh = await asyncio.to_thread(self._build, settings)
            except LlamascError as exc:
                log.error("config reload failed, keeping the old config: %s", exc.message)
                self._publish("config_reload_failed", error=exc.message)
                return ReloadResult(ok=False, error=exc.message)
            catalog, result = diff_catalogs(self.state.catalog, fresh)
            old_keys = {
                s.hash
                for s in self.pool.sidecars()
                if s.model in result.changed or s.model in result.removed
            }
            self.pool.replace_catalog(catalog)
            self.state.apply_reload(settings, catalog)
            for key in old_keys:
                task = asyncio.get_running_loop().create_task(self._retire(key))
                self._drains.add(task)
                task.add_done_callback(self._drains.discard)
            log.info(
                "config reloaded: added %s, changed %s, removed %s, kept %s",
                *(", ".join(x) or "none" for x in (
                    result.added, result.changed, result.removed, result.kept)),
            )  # fmt: skip
            self._publish(
                "config_reloaded",
                added=result.added,
                changed=result.changed,
                removed=result.removed,
                kept=result.kept,
            )
            return result

    def _publish(self, type: str, **data: object) -> None:
        """Tell ``/api/events`` subscribers: a client sees when the new config is in force."""
        observer = self.state.observer
        if observer is not None:
            observer.publish(type, **data)

    async def _retire(self, key: str) -> None:
        """Stop one old child once nothing is in flight on it."""
        while True:
            live = [s for s in self.pool.sidecars() if s.hash == key]
            if not live or live[0].state == "stopping":
                return
            if live[0].in_flight == 0:
                break
            await asyncio.sleep(DRAIN_POLL)
        with contextlib.suppress(LlamascError):  # it may have gone on its own meanwhile
            await self.pool.stop_sidecar(key)

    async def settle(self) -> None:
        while self._drains:
            await asyncio.gather(*list(self._drains), return_exceptions=True)

    async def watch(self, interval: float = WATCH_INTERVAL) -> None:
        """Poll the config files' mtime and size (following symlinks, so a bind-mounted file
        or a Kubernetes ConfigMap swap is seen) and reload when they change."""

        def stamp() -> list[tuple[float, int] | None]:
            out: list[tuple[float, int] | None] = []
            for p in self.watch_paths:
                try:
                    st = os.stat(p)
                    out.append((st.st_mtime, st.st_size))
                except OSError:
                    out.append(None)
            return out

        last = stamp()
        while True:
            await asyncio.sleep(interval)
            now = stamp()
            if now != last:
                last = now
                log.info("config file changed; reloading")
                await self.reload()


__all__ = ["ReloadResult", "Reloader", "diff_catalogs"]
