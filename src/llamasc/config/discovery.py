"""Finding models on disk: models folders (recursively) and the Hugging Face cache.

Every ``*.gguf`` below each folder is looked at, and its header read (cached by path, size
and mtime, so a rescan of unchanged files reads nothing):

- **models** get a readable id from the file name, ``qwen3-vl-32b-instruct:q4_k_m`` (the
  quant from the name, else from the metadata). Files of the Hugging Face cache get
  llama.cpp's router ids, ``owner/repo:Q4_K_M``. Ids that would name several files are all
  tie-broken (folder first: ``unsloth/qwen3-8b:q4_k_m``) with a warning; a config entry
  with the same path renames a model.
- **not models**, left out: projectors (``mmproj`` in the name, or a header that says so),
  drafts named as such (``mtp-``, ``eagle3-``, ``dflash-``, ``dspark-``, ``draft-``),
  adapters and imatrix files, and every part but the first of a split model (llama-server
  loads the rest from the first part).
- **projectors** go with every model of their folder (BF16 over F16 over F32), unless
  ``mmproj_auto`` is off.
- **bad files** (not a GGUF, truncated, a split set missing parts) are listed with their
  error and never served; they never stop a scan.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from llamasc.config import naming
from llamasc.config.gguf_meta import GGUFMeta, MetaCache, file_stamp
from llamasc.config.models import ModelEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BadFile:
    """A file that looks like a model but cannot be served, and why."""

    path: Path
    error: str


@dataclass(frozen=True)
class Skipped:
    """A GGUF that is not a model of its own (projector, draft, split part...)."""

    path: Path
    reason: str


@dataclass
class ScanResult:
    """What one scan found. ``entries`` keep a stable order: folder order, then path."""

    entries: list[ModelEntry] = field(default_factory=list)
    bad: list[BadFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _File:
    path: Path
    stem: str
    stamp: tuple[int, int]


@dataclass
class _Candidate:
    """A model file before its id is settled."""

    prefs: list[str]
    path: Path
    source: str
    meta: GGUFMeta
    stamp: tuple[int, ...]
    mmproj: Path | None
    parts: int


def _is_gguf(name: str) -> bool:
    return name.lower().endswith(".gguf")


_PrefsFn = Callable[[_File, GGUFMeta], list[str]]


def _walk(root: Path, *, recursive: bool = True) -> Iterable[tuple[Path, list[_File]]]:
    """(folder, its GGUF files) for every folder below ``root``, sorted, hidden ones skipped;
    symlinked folders are followed once each."""
    seen: set[str] = set()
    # (folder, its real path): only symlinked folders need a realpath() call
    stack = [(root, os.path.realpath(root))]
    while stack:
        folder, real = stack.pop()
        if real in seen:
            continue
        seen.add(real)
        files: list[_File] = []
        subdirs: list[tuple[Path, str]] = []
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot list %s: %s", folder, exc.strerror or exc)
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir():
                    if recursive:
                        sub_real = (
                            os.path.realpath(e.path)
                            if e.is_symlink()
                            else os.path.join(real, e.name)
                        )
                        subdirs.append((folder / e.name, sub_real))
                elif _is_gguf(e.name) and e.is_file():
                    st = e.stat()
                    files.append(_File(folder / e.name, e.name[: -len(".gguf")], file_stamp(st)))
            except OSError:
                continue  # a dangling link or a file removed while we looked
        if files:
            yield folder, files
        stack.extend(reversed(subdirs))


class Scanner:
    """Scans folders and caches; keeps the header cache between scans."""

    def __init__(self, cache: MetaCache | None = None) -> None:
        self.cache = cache or MetaCache()

    def _meta(self, f: _File) -> GGUFMeta | str:
        return self.cache.get(f.path, f.stamp)

    def _folder(
        self,
        files: list[_File],
        result: ScanResult,
        *,
        prefs_of: _PrefsFn,
        source: str,
        mmproj_auto: bool,
    ) -> list[_Candidate]:
        """Classify one folder's files; pair its projector with its models."""
        by_name = {f.path.name: f for f in files}
        projectors: list[tuple[_File, GGUFMeta]] = []
        models: list[tuple[_File, GGUFMeta, list[_File]]] = []
        for f in files:
            split = naming.split_name(f.stem)
            if naming.is_draft_name(f.stem):
                result.skipped.append(Skipped(f.path, "draft model (named as such)"))
                continue
            if split.no != 1:
                result.skipped.append(
                    Skipped(f.path, f"part {split.no} of {split.count} of a split model")
                )
                continue
            meta = self._meta(f)
            if isinstance(meta, str):
                result.bad.append(BadFile(f.path, meta))
                continue
            if naming.is_projector_name(f.stem) or meta.is_projector:
                projectors.append((f, meta))
                result.skipped.append(Skipped(f.path, "vision projector"))
                continue
            if not meta.is_model:
                result.skipped.append(Skipped(f.path, f"not a model ({meta.general_type})"))
                continue
            parts = [f]
            if split.count > 1:
                missing = [
                    f"{n:05d}" for n in range(2, split.count + 1)
                    if split.part_name(n, f.path.suffix) not in by_name
                ]  # fmt: skip
                if missing:
                    result.bad.append(
                        BadFile(
                            f.path,
                            f"split model missing part(s) {', '.join(missing)} "
                            f"of {split.count:05d}",
                        )
                    )
                    continue
                parts += [
                    by_name[split.part_name(n, f.path.suffix)] for n in range(2, split.count + 1)
                ]
            models.append((f, meta, parts))
        mmproj: _File | None = None
        if mmproj_auto and projectors:
            best = naming.best_projector([(p.stem, m.file_type) for p, m in projectors])
            mmproj = projectors[best][0] if best is not None else None
        out: list[_Candidate] = []
        for f, first_meta, parts in models:
            meta = self._with_part_params(first_meta, parts[1:])
            stamp = tuple(v for p in parts for v in p.stamp)
            if mmproj is not None:
                stamp += mmproj.stamp
            out.append(
                _Candidate(
                    prefs_of(f, meta),
                    f.path,
                    source,
                    meta,
                    stamp,
                    mmproj.path if mmproj is not None else None,
                    len(parts),
                )
            )
        return out

    def _with_part_params(self, meta: GGUFMeta, rest: Sequence[_File]) -> GGUFMeta:
        """A split model's parameter count covers every part's tensors."""
        if not rest or meta.parameters is None:
            return meta
        total = meta.parameters
        for part in rest:
            m = self._meta(part)
            if isinstance(m, str) or m.parameters is None:
                return meta
            total += m.parameters
        return replace(meta, parameters=total)

    def scan(
        self,
        dirs: Sequence[Path] = (),
        *,
        hf_cache: bool = False,
        mmproj_auto: bool = True,
        taken: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
        keep: Iterable[Path] = (),
    ) -> ScanResult:
        """Scan ``dirs`` (and the caches, with ``hf_cache``). ``taken`` are ids given
        explicitly elsewhere (model map, config): discovered files do not take them; ``keep``
        are files whose cached headers must survive although this scan did not see them."""
        result = ScanResult()
        candidates: list[_Candidate] = []
        for given in dirs:
            root = Path(given).expanduser()
            if not root.is_dir():
                result.bad.append(BadFile(root, "models directory not found"))
                continue
            candidates += self._root(root, result, mmproj_auto, recursive=True)
        if hf_cache:
            candidates += self._caches(result, mmproj_auto, env)
        ids, warnings = naming.resolve_ids([c.prefs for c in candidates], taken)
        for w in warnings:
            log.warning("%s", w)
        result.warnings += warnings
        result.entries = [
            ModelEntry(
                id=mid,
                path=c.path,
                source=c.source,
                mmproj=c.mmproj,
                meta=c.meta,
                stamp=c.stamp,
                parts=c.parts,
            )
            for mid, c in zip(ids, candidates, strict=True)
        ]
        alive = {str(e.path) for e in result.entries} | {str(b.path) for b in result.bad}
        alive |= {str(s.path) for s in result.skipped} | {str(p) for p in keep}
        self.cache.forget_missing(alive)
        return result

    def _root(
        self,
        root: Path,
        result: ScanResult,
        mmproj_auto: bool,
        *,
        recursive: bool,
        source: str = "models_dir",
    ) -> list[_Candidate]:
        out: list[_Candidate] = []
        for folder, files in _walk(root, recursive=recursive):
            rel = folder.relative_to(root).as_posix()
            label = root.name if rel == "." else rel

            def prefs(f: _File, meta: GGUFMeta, label: str = label, rel: str = rel) -> list[str]:
                plain = naming.model_id(f.stem, meta.file_type)
                deeper = f"{root.name}/{rel}/{plain}" if rel != "." else f"{root}/{plain}"
                return [plain, f"{label}/{plain}", deeper]

            out += self._folder(
                files, result, prefs_of=prefs, source=source, mmproj_auto=mmproj_auto
            )
        return out

    def _caches(
        self, result: ScanResult, mmproj_auto: bool, env: Mapping[str, str] | None
    ) -> list[_Candidate]:
        from llamasc.config.hfcache import cache_dirs, cached_repos

        out: list[_Candidate] = []
        for cache in cache_dirs(env):
            for repo in cached_repos(cache):
                for _, files in _walk(repo.snapshot):

                    def prefs(
                        f: _File, meta: GGUFMeta, name: str = repo.repo, snap: Path = repo.snapshot
                    ) -> list[str]:
                        plain = naming.hf_model_id(name, f.stem)
                        rel = f.path.relative_to(snap).with_suffix("").as_posix()
                        return [plain, f"{plain}@{rel}"]

                    out += self._folder(
                        files,
                        result,
                        prefs_of=prefs,
                        source="hf_cache",
                        mmproj_auto=mmproj_auto,
                    )
            # older llama.cpp caches: flat files beside the repositories
            out += self._root(cache, result, mmproj_auto, recursive=False, source="hf_cache")
        return out


__all__ = ["BadFile", "ScanResult", "Scanner", "Skipped"]
