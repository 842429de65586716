"""Rescanning the models without a restart: ``POST /models?reload=1``, ``--watch-models``
and SIGHUP all end in :meth:`ModelRescanner.rescan`.

A rescan rebuilds the catalog from the daemon's settings (folders, caches, model map, config
entries; headers of unchanged files come from the cache), swaps it in, and tells the pool:
sidecars of removed models finish their requests in flight and stop; sidecars of changed
files (same path, new size or mtime, or another projector) restart on their next idle moment.
A rescan never stops the daemon: bad files are listed, a broken model map keeps the old
catalog and reports why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llamasc.config.catalog import Discovered, build_catalog
from llamasc.config.discovery import Scanner
from llamasc.config.models import ModelCatalog

if TYPE_CHECKING:
    from llamasc.server.state import DaemonState

log = logging.getLogger(__name__)


@dataclass
class RescanReport:
    """What a rescan changed (ids), and what it found wrong."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)  # sidecar hashes stopping once idle
    bad: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    models: int = 0

    @property
    def any_change(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def json(self) -> dict[str, Any]:
        return {
            "success": True,
            "models": self.models,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "retired": self.retired,
            "bad": self.bad,
            "warnings": self.warnings,
        }


def diff_catalogs(old: ModelCatalog, new: ModelCatalog) -> tuple[list[str], list[str], list[str]]:
    """(added, removed, changed) ids, in catalog order."""
    added = [i for i in new.ids() if i not in old]
    removed = [i for i in old.ids() if i not in new]
    changed = [i for i in new.ids() if i in old and new.models[i] != old.models[i]]
    return added, removed, changed


def _keep_generations(found: Discovered, old: ModelCatalog) -> Discovered:
    """A rescan keeps what a config reload numbered (``ModelEntry.generation``, part of the
    sidecar key): only a real change of the file makes a model "changed"."""
    entries = {
        mid: dataclasses.replace(e, generation=old.models[mid].generation)
        if mid in old.models and old.models[mid].generation != e.generation
        else e
        for mid, e in found.catalog.models.items()
    }
    catalog = ModelCatalog(entries, aliases=dict(found.catalog.aliases))
    return dataclasses.replace(found, catalog=catalog)


class ModelRescanner:
    """Keeps the header cache and the last discovery; applies rescans to a daemon."""

    def __init__(self, scanner: Scanner, discovered: Discovered) -> None:
        self.scanner = scanner
        self.discovered = discovered
        self._lock = asyncio.Lock()

    async def rescan(self, state: DaemonState) -> RescanReport:
        """Rescan now and apply the result. Raises ConfigError (keeping the old catalog)
        when the settings' model map has become unreadable."""
        async with self._lock:
            found = await asyncio.to_thread(
                build_catalog, state.settings, scanner=self.scanner, strict=False
            )
            old = state.catalog
            found = _keep_generations(found, old)
            added, removed, changed = diff_catalogs(old, found.catalog)
            report = RescanReport(
                added, removed, changed,
                bad=[{"path": str(b.path), "error": b.error} for b in found.bad],
                warnings=list(found.warnings), models=len(found.catalog),
            )  # fmt: skip
            self.discovered = found
            if report.any_change:
                state.catalog = found.catalog
                replace = getattr(state.pool, "replace_catalog", None)
                if replace is not None:
                    report.retired = list(replace(found.catalog))
                log.info(
                    "models rescanned: %d models (%d added, %d removed, %d changed)",
                    *(len(found.catalog), len(added), len(removed), len(changed)),
                )
            return report

    async def watch(self, state: DaemonState, interval: float) -> None:
        """``--watch-models``: rescan every ``interval`` seconds (unchanged files cost one
        stat each); apply only what changed. Runs until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.rescan(state)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("model rescan failed: %s", exc)


def install_rescan_on_sighup(state: DaemonState) -> bool:
    """SIGHUP rescans the models (POSIX; the integrator may join this with the config
    reload's handler). Returns whether a handler was installed."""
    if sys.platform == "win32" or not hasattr(signal, "SIGHUP"):
        return False
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        task = loop.create_task(rescan_logged(state), name="rescan-sighup")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    except (RuntimeError, ValueError):  # not the main thread (a daemon run by tests)
        return False
    return True


async def rescan_logged(state: DaemonState) -> None:
    try:
        await state.rescan_models()
    except Exception as exc:
        log.warning("model rescan (SIGHUP) failed: %s", exc)


__all__ = [
    "ModelRescanner",
    "RescanReport",
    "diff_catalogs",
    "install_rescan_on_sighup",
]
