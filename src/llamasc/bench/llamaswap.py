"""Reading models and their production flags out of a llama-swap ``config.yaml``.

What llama-swap does with ``models.<id>.cmd``, we do too, in its order:
``${env.NAME}`` first, comment lines dropped, then the macros last-defined-first (the list is
``MODEL_ID``, the global ``macros:`` in order, the model's ``macros:`` overriding globals in
place), then ``${PORT}``; any ``${name}`` left is an error. Lines ending in ``\\`` are joined,
and the result is split like a POSIX shell, or by Windows rules for a Windows host.

Everything else a real config holds (aliases, groups, ttl, proxy, checkEndpoint, filters,
useModelName, matrix, peers, hooks...) is accepted and ignored, except ``env`` (passed to the
server) and ``aliases`` (accepted by ``--models``). A model we cannot bench (another program
in ``cmd``, no ``-m``, an unset variable) is kept with the reason, and only becomes an
error if it is selected.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llamasc.bench.models import BenchModel, split_production_flags
from llamasc.errors import ConfigError
from llamasc.remote.quoting import msvc_split

log = logging.getLogger(__name__)

_MACRO_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_ENV_MACRO = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")
_ANY_MACRO = re.compile(r"\$\{([A-Za-z0-9_.-]+)\}")
_RESERVED = frozenset({"PORT", "MODEL_ID", "PID"})
PORT_PLACEHOLDER = "0"  # --port is the bench's own; the value is dropped with the flag


@dataclass
class SwapConfig:
    """The benchable models of a llama-swap config, and why the others are not."""

    source: str
    models: dict[str, BenchModel] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def ids(self) -> list[str]:
        return sorted({*self.models, *self.problems})

    def select(self, wanted: Sequence[str] | None = None) -> list[BenchModel]:
        """The models to bench: ``wanted`` ids or aliases, or every benchable model."""
        if not wanted:
            if not self.models:
                raise ConfigError(
                    f"{self.source}: no model can be benched",
                    details=[f"{mid}: {why}" for mid, why in sorted(self.problems.items())],
                )
            return [self.models[m] for m in sorted(self.models)]
        chosen: list[BenchModel] = []
        for name in wanted:
            mid = self.aliases.get(name, name)
            if mid in self.problems:
                raise ConfigError(f"{self.source}: model {mid!r}: {self.problems[mid]}")
            if mid not in self.models:
                known = ", ".join(self.ids()) or "none"
                raise ConfigError(f"{self.source}: no model {name!r} (models: {known})")
            if self.models[mid] not in chosen:
                chosen.append(self.models[mid])
        return chosen


def _scalar(value: Any) -> str:
    """A macro value as llama-swap prints it (Go's %v: true/false, not True/False)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _env_substitute(text: str, environ: Mapping[str, str], missing: set[str]) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            missing.add(name)
            return match.group(0)
        return environ[name]

    return _ENV_MACRO.sub(repl, text)


def _macro_list(raw: Any, where: str) -> list[tuple[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: macros must be a mapping")
    out: list[tuple[str, Any]] = []
    for raw_name, value in raw.items():
        name = str(raw_name)
        if not _MACRO_NAME.match(name):
            raise ConfigError(f"{where}: invalid macro name {name!r}")
        if name in _RESERVED:
            raise ConfigError(f"{where}: macro name {name!r} is reserved")
        if isinstance(value, (Mapping, list)):
            continue  # map macros only serve whole YAML values (filters), never cmd
        out.append((name, value))
    return out


def strip_comment_lines(cmd: str) -> str:
    return "\n".join(ln for ln in cmd.split("\n") if not ln.strip().startswith("#"))


def join_continuations(cmd: str) -> str:
    """llama-swap's rule: a line whose trimmed end is ``\\`` continues on the next line."""
    lines = []
    for line in cmd.split("\n"):
        trimmed = line.strip()
        lines.append(trimmed[:-1] + " " if trimmed.endswith("\\") else line)
    return "\n".join(lines)


def split_command(cmd: str, *, windows: bool) -> list[str]:
    if windows:
        return msvc_split(cmd)
    try:
        return shlex.split(cmd, comments=False, posix=True)
    except ValueError as exc:
        raise ConfigError(f"cannot split cmd: {exc}") from None


def _is_llama_server(binary: str) -> bool:
    base = re.split(r"[\\/]", binary)[-1].lower()
    return base.removesuffix(".exe").startswith("llama-server")


def expand_cmd(
    model_id: str,
    cmd: str,
    macros: Sequence[tuple[str, Any]],
    environ: Mapping[str, str],
) -> str:
    """The fully expanded ``cmd`` of one model (raises ConfigError naming what is wrong)."""
    missing: set[str] = set()
    text = _env_substitute(strip_comment_lines(cmd), environ, missing)
    values = [(n, _env_substitute(_scalar(v), environ, missing)) for n, v in macros]
    if missing:
        names = ", ".join(sorted(missing))
        raise ConfigError(f"environment variable(s) not set: {names}")
    for name, value in reversed([("MODEL_ID", model_id), *values]):
        text = text.replace("${" + name + "}", value)
    text = text.replace("${PORT}", PORT_PLACEHOLDER)
    left = _ANY_MACRO.search(text)
    if left:
        raise ConfigError(f"unknown macro ${{{left.group(1)}}} in cmd")
    return text


def _merge_macros(
    global_macros: list[tuple[str, Any]], model_macros: list[tuple[str, Any]]
) -> list[tuple[str, Any]]:
    merged = list(global_macros)
    for name, value in model_macros:
        for i, (existing, _) in enumerate(merged):
            if existing == name:
                merged[i] = (name, value)
                break
        else:
            merged.append((name, value))
    return merged


def _model_env(raw: Any, environ: Mapping[str, str]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise ConfigError("env must be a list of KEY=value strings")
    out: dict[str, str] = {}
    missing: set[str] = set()
    for item in raw:
        key, eq, value = str(item).partition("=")
        if not eq or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise ConfigError(f"env entry {item!r} is not KEY=value")
        out[key] = _env_substitute(value, environ, missing)
    if missing:
        raise ConfigError(f"environment variable(s) not set: {', '.join(sorted(missing))}")
    return out


def _one_model(
    model_id: str,
    body: Any,
    global_macros: list[tuple[str, Any]],
    environ: Mapping[str, str],
    windows: bool,
) -> BenchModel:
    if not isinstance(body, Mapping):
        raise ConfigError("the model entry must be a mapping")
    cmd = body.get("cmd")
    if not isinstance(cmd, str) or not cmd.strip():
        raise ConfigError("cmd is missing or empty")
    macros = _merge_macros(global_macros, _macro_list(body.get("macros"), "macros"))
    argv = split_command(
        join_continuations(expand_cmd(model_id, cmd, macros, environ)), windows=windows
    )
    if not argv:
        raise ConfigError("cmd is empty after expansion")
    if not _is_llama_server(argv[0]):
        raise ConfigError(f"cmd runs {argv[0]!r}, not llama-server (use --model ID=PATH instead)")
    path, flags, dropped = split_production_flags(argv[1:])
    if path is None:
        raise ConfigError("cmd has no -m/--model GGUF path")
    return BenchModel(
        id=model_id,
        path=path,
        flags=tuple(flags),
        env=_model_env(body.get("env"), environ),
        dropped=tuple(dropped),
        binary=argv[0],
        source="llama-swap",
    )


def parse_llama_swap(
    text: str,
    *,
    source: str = "config.yaml",
    environ: Mapping[str, str] | None = None,
    windows: bool = False,
) -> SwapConfig:
    """Parse a llama-swap config's text. ``environ`` serves ``${env.NAME}`` (the host's)."""
    import yaml

    environ = {} if environ is None else environ
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{where}: not valid YAML: {exc}") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("models"), Mapping):
        raise ConfigError(f"{source}: no 'models:' mapping (is this a llama-swap config?)")
    global_macros = _macro_list(data.get("macros"), f"{source}: macros")
    config = SwapConfig(source=source)
    for raw_id, body in data["models"].items():
        model_id = str(raw_id)
        try:
            config.models[model_id] = _one_model(model_id, body, global_macros, environ, windows)
        except ConfigError as exc:
            config.problems[model_id] = exc.message
            continue
        for alias in _aliases(body):
            config.aliases.setdefault(alias, model_id)
    return config


def _aliases(body: Mapping[str, Any]) -> Iterable[str]:
    raw = body.get("aliases") or []
    return [str(a) for a in raw] if isinstance(raw, list) else []


__all__ = [
    "SwapConfig",
    "expand_cmd",
    "join_continuations",
    "parse_llama_swap",
    "split_command",
    "strip_comment_lines",
]
