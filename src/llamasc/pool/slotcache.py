"""The prompt cache across swaps: each slot's KV cache saved when its sidecar is swapped out,
restored when the same sidecar key starts again.

llama-server does the work (``POST /slots/{id}?action=save|restore`` with a file name, in the
directory given by ``--slot-save-path``); this module decides where the files go, which slots
are worth saving and how much disk they may take:

- One directory per sidecar key under the cache root (a slot file is only valid for the same
  model and flags, which is what the key is), file ``llamasc-<key>-slot<N>.bin``. The names are
  llamasc's: a client never chooses one.
- An operator who gave ``--slot-save-path`` (BASE_ARGS, model ``args``) keeps that directory,
  for their own ``/slots`` calls too: llama-server takes one directory, so llamasc's files go
  there, under the same ``llamasc-<key>-`` names (which keep them apart from the operator's).
- A slot holding fewer than ``min_tokens`` tokens is not saved (its prefill is cheap; saving
  costs swap time); neither is an empty one.
- All files together stay within ``max_bytes``: least recently used (saved or restored) first
  out.
- A save or a restore that fails is logged and forgotten: the request just prefills.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)

SLOT_SAVE_PATH = "--slot-save-path"
_PREFIX = "llamasc-"
_SUFFIX = ".bin"
# Saving or restoring a big model's long context takes seconds; a stuck sidecar must not hold a
# swap forever.
_TIMEOUT = 120.0


@dataclass
class SlotReport:
    """What one save or restore did: slots done, tokens and bytes moved, seconds taken."""

    slots: int = 0
    tokens: int = 0
    bytes: int = 0
    seconds: float = 0.0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)


def operator_dir(flags: Sequence[str]) -> Path | None:
    """The ``--slot-save-path`` the operator gave among ``flags``, if any (the last wins)."""
    found: Path | None = None
    for i, tok in enumerate(flags[:-1]):
        if tok == SLOT_SAVE_PATH:
            found = Path(flags[i + 1])
    return found


def slot_file(key: str, slot: int) -> str:
    return f"{_PREFIX}{key}-slot{slot}{_SUFFIX}"


class SlotCache:
    """Where each key's slot files live, and the save/restore calls to a running sidecar."""

    def __init__(
        self,
        root: Path,
        *,
        min_tokens: int,
        max_bytes: int,
        transport: httpx.AsyncBaseTransport | None = None,  # tests: a failing fake
    ) -> None:
        self.root = Path(root)
        self._transport = transport
        self.min_tokens = min_tokens
        self.max_bytes = max_bytes
        self._dirs: set[Path] = set()  # operator directories llamasc has written into

    # ------------------------------------------------------------------ location

    def directory(self, key: str, flags: Sequence[str]) -> Path:
        """The directory the sidecar of ``key`` saves to (created)."""
        theirs = operator_dir(flags)
        where = theirs if theirs is not None else self.root / key
        if theirs is not None:
            self._dirs.add(theirs)
        where.mkdir(parents=True, exist_ok=True)
        return where

    def launch_args(self, key: str, flags: Sequence[str]) -> tuple[str, ...]:
        """What to add to the sidecar's flags: ``--slot-save-path DIR`` unless it has one."""
        if "--no-slots" in flags:
            return ()
        where = self.directory(key, flags)
        return () if operator_dir(flags) is not None else (SLOT_SAVE_PATH, str(where))

    def saved(self, key: str, flags: Sequence[str]) -> dict[int, Path]:
        """Slot id -> its saved file, for ``key``."""
        where = operator_dir(flags) or self.root / key
        head = f"{_PREFIX}{key}-slot"
        found: dict[int, Path] = {}
        with contextlib.suppress(OSError):
            for path in where.iterdir():
                name = path.name
                if name.startswith(head) and name.endswith(_SUFFIX):
                    number = name[len(head) : -len(_SUFFIX)]
                    if number.isdigit():
                        found[int(number)] = path
        return found

    def sizes(self) -> dict[str, int]:
        """Key -> bytes on disk (for the ``llamasc_slot_cache_bytes`` metric)."""
        out: dict[str, int] = {}
        for path, size, _ in self._files():
            key = path.name[len(_PREFIX) :].rsplit("-slot", 1)[0]
            out[key] = out.get(key, 0) + size
        return out

    # ------------------------------------------------------------------- effects

    async def save(self, base_url: str, key: str, flags: Sequence[str]) -> SlotReport:
        """Save every slot of the sidecar at ``base_url`` worth saving. Never raises."""
        report = SlotReport()
        if "--no-slots" in flags:
            return report
        started = time.monotonic()
        try:
            async with self._client(base_url) as http:
                slots = await _slots(http)
                for slot in slots:
                    sid = slot.get("id")
                    tokens = slot.get("n_prompt_tokens")
                    if not isinstance(sid, int) or not isinstance(tokens, int):
                        report.skipped += 1  # never used since the start: nothing new in it
                        continue
                    if tokens <= 0 or tokens < self.min_tokens:
                        report.skipped += 1
                        continue
                    body = await _action(http, sid, "save", slot_file(key, sid), report)
                    if body is not None:
                        report.slots += 1
                        report.tokens += _int(body.get("n_saved"))
                        report.bytes += _int(body.get("n_written"))
        except (httpx.HTTPError, ValueError) as exc:
            report.failed.append(f"GET /slots: {exc}")
        report.seconds = time.monotonic() - started
        self.enforce_size()
        _log(key, "saved", report)
        return report

    async def restore(self, base_url: str, key: str, flags: Sequence[str]) -> SlotReport:
        """Load the saved slots of ``key`` into the fresh sidecar at ``base_url``. Never raises."""
        report = SlotReport()
        files = {} if "--no-slots" in flags else self.saved(key, flags)
        if not files:
            return report
        started = time.monotonic()
        try:
            async with self._client(base_url) as http:
                for sid, path in sorted(files.items()):
                    body = await _action(http, sid, "restore", path.name, report)
                    if body is None:
                        continue
                    report.slots += 1
                    report.tokens += _int(body.get("n_restored"))
                    report.bytes += _int(body.get("n_read"))
                    with contextlib.suppress(OSError):
                        os.utime(path)  # used: the last to go when the disk bound bites
        except httpx.HTTPError as exc:
            report.failed.append(str(exc))
        report.seconds = time.monotonic() - started
        _log(key, "restored", report)
        return report

    def _client(self, base_url: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base_url, timeout=_TIMEOUT, transport=self._transport)

    def enforce_size(self) -> list[Path]:
        """Delete the least recently used files until all fit in ``max_bytes``."""
        files = sorted(self._files(), key=lambda f: f[2])
        total = sum(size for _, size, _ in files)
        deleted: list[Path] = []
        for path, size, _ in files:
            if total <= self.max_bytes:
                break
            try:
                path.unlink()
            except OSError as exc:
                log.warning("slot cache: could not delete %s: %s", path.name, exc)
                continue
            total -= size
            deleted.append(path)
        if deleted:
            log.info("slot cache: deleted %d least recently used file(s)", len(deleted))
        return deleted

    def _files(self) -> list[tuple[Path, int, float]]:
        """(path, bytes, mtime) of every slot file of llamasc's."""
        out: list[tuple[Path, int, float]] = []
        dirs = [p for p in self._subdirs()] + sorted(self._dirs)
        for where in dirs:
            with contextlib.suppress(OSError):
                for path in where.iterdir():
                    if path.name.startswith(_PREFIX) and path.name.endswith(_SUFFIX):
                        with contextlib.suppress(OSError):
                            st = path.stat()
                            out.append((path, st.st_size, st.st_mtime))
        return out

    def _subdirs(self) -> list[Path]:
        with contextlib.suppress(OSError):
            return [p for p in self.root.iterdir() if p.is_dir()]
        return []


async def _slots(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await http.get("/slots")
    r.raise_for_status()
    data = r.json()
    if not isinstance(data, list):
        raise ValueError("GET /slots did not answer a list")
    return [s for s in data if isinstance(s, dict)]


async def _action(
    http: httpx.AsyncClient, sid: int, action: str, filename: str, report: SlotReport
) -> dict[str, Any] | None:
    """One ``POST /slots/{sid}?action=...``; None (and a line in ``report.failed``) if it
    failed."""
    try:
        r = await http.post(f"/slots/{sid}", params={"action": action}, json={"filename": filename})
        body = r.json() if r.content else {}
    except (httpx.HTTPError, ValueError) as exc:
        report.failed.append(f"slot {sid}: {exc or type(exc).__name__}")
        return None
    if r.status_code != 200 or not isinstance(body, dict) or "error" in body:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else r.text[:200]
        report.failed.append(f"slot {sid}: HTTP {r.status_code}: {message}")
        return None
    return body


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _log(key: str, what: str, report: SlotReport) -> None:
    if report.slots:
        log.info(
            "%s: %s %d slot(s), %d tokens, %.1f MiB in %.2fs",
            *(key[:12], what, report.slots, report.tokens, report.bytes / 2**20, report.seconds),
        )
    for failure in report.failed:  # the request just prefills: a warning, never an error
        log.warning("%s: slot cache %s failed: %s", key[:12], what[:-1], failure)


__all__ = ["SLOT_SAVE_PATH", "SlotCache", "SlotReport", "operator_dir", "slot_file"]
