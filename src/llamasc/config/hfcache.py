"""Where the Hugging Face hub cache and llama.cpp's cache are, and which snapshot to read.

Nothing here downloads anything: llamasc only imports what is already on disk.

- The hub cache: ``HF_HUB_CACHE`` (or the older ``HUGGINGFACE_HUB_CACHE``), else
  ``HF_HOME/hub``, else ``XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``
  (what ``huggingface_hub`` uses).
- llama.cpp's cache: ``LLAMA_CACHE``, else ``XDG_CACHE_HOME/llama.cpp`` / ``~/.cache/llama.cpp``
  (``%LOCALAPPDATA%\\llama.cpp`` on Windows), when it exists. Recent llama.cpp builds keep the
  hub layout there; older ones kept flat ``*.gguf`` files, which are imported like a models
  folder.

A repository is ``models--OWNER--NAME/``; its files are read from the snapshot its
``refs/main`` names (else any ref, else the newest snapshot), as llama.cpp does.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

_COMMIT = re.compile(r"[0-9a-fA-F]{40}")
_PREFIX = "models--"


@dataclass(frozen=True)
class CacheRepo:
    """One cached repository: ``owner/name`` and the snapshot folder to import from."""

    repo: str
    snapshot: Path


def hub_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return Path(env[var]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "huggingface" / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def llama_cache_dir(
    env: Mapping[str, str] | None = None, platform: str | None = None
) -> Path | None:
    """``LLAMA_CACHE``, else llama.cpp's default cache folder if it exists."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if env.get("LLAMA_CACHE"):
        return Path(env["LLAMA_CACHE"]).expanduser()
    if platform == "win32":
        base = env.get("LOCALAPPDATA")
        default = Path(base) / "llama.cpp" if base else None
    elif env.get("XDG_CACHE_HOME"):
        default = Path(env["XDG_CACHE_HOME"]).expanduser() / "llama.cpp"
    else:
        default = Path.home() / ".cache" / "llama.cpp"
    return default if default is not None and default.is_dir() else None


def cache_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """The cache folders to import from, each once, those that exist."""
    out: list[Path] = []
    seen: set[str] = set()
    for d in (hub_cache_dir(env), llama_cache_dir(env)):
        if d is None or not d.is_dir():
            continue
        key = os.path.normcase(os.path.realpath(d))
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _ref_commit(repo_dir: Path) -> str | None:
    refs = repo_dir / "refs"
    try:
        names = sorted(p.name for p in refs.iterdir() if p.is_file())
    except OSError:
        return None
    for name in ["main", *[n for n in names if n != "main"]]:
        try:
            commit = (refs / name).read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if _COMMIT.fullmatch(commit) and (repo_dir / "snapshots" / commit).is_dir():
            return commit
    return None


def _newest_snapshot(snapshots: Path) -> Path | None:
    try:
        dirs = [p for p in snapshots.iterdir() if p.is_dir()]
    except OSError:
        return None
    return max(dirs, key=lambda p: p.stat().st_mtime_ns, default=None)


def cached_repos(cache_dir: Path) -> Iterator[CacheRepo]:
    """Every ``models--OWNER--NAME`` repository of a hub-layout cache, sorted by name."""
    try:
        entries = sorted(cache_dir.iterdir())
    except OSError:
        return
    for repo_dir in entries:
        name = repo_dir.name
        if not name.startswith(_PREFIX) or not repo_dir.is_dir():
            continue
        parts = name[len(_PREFIX) :].split("--")
        if len(parts) != 2 or not all(parts):
            continue
        commit = _ref_commit(repo_dir)
        snapshot = (
            repo_dir / "snapshots" / commit if commit else _newest_snapshot(repo_dir / "snapshots")
        )
        if snapshot is not None:
            yield CacheRepo("/".join(parts), snapshot)


__all__ = ["CacheRepo", "cache_dirs", "cached_repos", "hub_cache_dir", "llama_cache_dir"]
