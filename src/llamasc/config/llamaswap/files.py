"""Reading llama-swap YAML: one file, or a file plus a ``--config-dir`` of fragments.

Env macros are replaced in the parsed document's strings, so a commented-out ``${env.NAME}``
never asks for a variable and a Windows path in a variable needs no YAML escaping; only a
document that is not YAML until they are in (flow-style ``[${env.KEY}]``) has them replaced
in its text, as llama-swap does. Fragments merge the way llama-swap's
``-config-dir`` does: files sorted by name; ``models``, ``groups``, ``peers``... are maps of
entities where a duplicate id is an error; other maps merge, lists concatenate, and two
different scalars for one key are an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llamasc.config.llamaswap.macros import ENV_MACRO, substitute_env
from llamasc.errors import ConfigError

IDENTITY_MAPS = frozenset(
    {
        "models", "groups", "profiles", "peers", "matrix", "routing.router.settings.groups",
        "routing.router.settings.matrix",
    }
)  # fmt: skip


def _yaml_load(text: str, source: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{source}{where}: not valid YAML: {first}") from None


def load_text(text: str, source: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """One llama-swap YAML document, with its ``${env.NAME}`` macros replaced."""
    try:
        data = substitute_env(_yaml_load(text, source), environ, "")
    except ConfigError as exc:
        if "not valid YAML" not in exc.message:
            raise ConfigError(f"{source}: {exc.message}") from None
        # e.g. flow-style [${env.KEY}]: only valid YAML once the variables are in
        for name in ENV_MACRO.findall(text):
            if name not in environ:
                raise ConfigError(f"{source}: environment variable {name!r} is not set") from None
            text = text.replace("${env." + name + "}", environ[name])
        data = _yaml_load(text, source)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of settings")
    return dict(data)


def merge(dst: dict[str, Any], src: Mapping[str, Any], source: str, path: str = "") -> None:
    """Merge one fragment into ``dst`` in place, by llama-swap's ``-config-dir`` rules."""
    for key, value in src.items():
        child = f"{path}.{key}" if path else str(key)
        if key not in dst or dst[key] is None:
            dst[key] = value
            continue
        old = dst[key]
        if value is None:
            continue
        if child in IDENTITY_MAPS:
            if not isinstance(old, dict) or not isinstance(value, Mapping):
                raise ConfigError(f"{source}: {child}: expected a mapping")
            for ident, body in value.items():
                if ident in old:
                    raise ConfigError(
                        f"{source}: {child} -> {ident}: already defined in another config file"
                    )
                old[ident] = body
        elif isinstance(old, dict) and isinstance(value, Mapping):
            merge(old, value, source, child)
        elif isinstance(old, list) and isinstance(value, list):
            old.extend(value)
        elif old != value:
            raise ConfigError(f"{source}: {child}: conflicts with the value set in another file")


def yaml_files(directory: Path) -> list[Path]:
    """The ``*.yml``/``*.yaml`` files directly in ``directory``, sorted by name."""
    if not directory.is_dir():
        raise ConfigError(f"--config-dir: not a directory: {directory}")
    return sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in (".yml", ".yaml")
    )


def read_sources(
    config: str | os.PathLike[str] | None,
    config_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The merged document of ``config`` and the files of ``config_dir``, and their names."""
    environ = os.environ if environ is None else environ
    paths: list[Path] = []
    if config is not None:
        paths.append(Path(config).expanduser())
    if config_dir is not None:
        extra = yaml_files(Path(config_dir).expanduser())
        if paths and any(p.resolve() == paths[0].resolve() for p in extra):
            raise ConfigError(
                f"{paths[0]} is also in --config-dir {config_dir}; remove it from one"
            )
        paths.extend(extra)
    if not paths:
        raise ConfigError("give a config file or a --config-dir")
    merged: dict[str, Any] = {}
    for p in paths:
        try:
            text = p.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {p}: {exc}") from None
        merge(merged, load_text(text, str(p), environ), str(p))
    return merged, [str(p) for p in paths]


__all__ = ["IDENTITY_MAPS", "load_text", "merge", "read_sources", "yaml_files"]
