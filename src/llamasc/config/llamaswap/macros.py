"""llama-swap's macros: ``${env.NAME}``, ``${name}`` (global and per model), and the reserved
``${PORT}``, ``${MODEL_ID}`` and ``${PID}``.

The rules, as llama-swap applies them:

- ``${env.NAME}`` is replaced first, everywhere; an unset variable is a load error.
- A model's macros are the global ``macros:`` in order, with the model's own ``macros:``
  overriding a global of the same name in place and adding new ones after. They are
  substituted last-defined first, so a macro may use macros defined *before* it and never
  one defined after it (which also rules out cycles).
- A value that is exactly ``${name}`` takes the macro's own YAML type (``ctx: ${ctx}`` stays a
  number in ``metadata``); inside a longer string it is printed as Go's ``%v`` would.
- ``${MODEL_ID}`` is the model's id; ``${PORT}`` and ``${PID}`` are left for launch time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from llamasc.errors import ConfigError

MACRO_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
ENV_MACRO = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")
ANY_MACRO = re.compile(r"\$\{([A-Za-z0-9_-]+)\}")
RESERVED = frozenset({"PORT", "MODEL_ID", "PID"})
LAUNCH_TIME = frozenset({"PORT", "PID"})

Macros = list[tuple[str, Any]]


def go_str(value: Any) -> str:
    """A macro value as llama-swap prints it (Go's %v: true/false, not True/False)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def substitute_env(value: Any, environ: Mapping[str, str], where: str) -> Any:
    """Replace every ``${env.NAME}`` in the strings of ``value`` (a YAML tree)."""
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in environ:
                raise ConfigError(f"{where}: environment variable {name!r} is not set")
            text = environ[name]
            if any(c in text for c in "\n\r\x00"):
                raise ConfigError(f"{where}: environment variable {name!r} holds a newline")
            return text

        return ENV_MACRO.sub(repl, value)
    if isinstance(value, Mapping):
        return {
            k: substitute_env(v, environ, f"{where} -> {k}" if where else str(k))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [substitute_env(v, environ, where) for v in value]
    return value


def parse_macros(raw: Any, where: str, known: Sequence[str] = ()) -> Macros:
    """A ``macros:`` mapping, checked: names, reserved names, and no use of a later macro.

    ``known`` are names defined before this mapping (the globals, for a model's macros).
    """
    if raw is None:
        return []
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping of name: value")
    out: Macros = []
    defined = list(known)
    names = [str(n) for n in raw]
    for i, (raw_name, value) in enumerate(raw.items()):
        name = str(raw_name)
        if not MACRO_NAME.match(name):
            raise ConfigError(f"{where} -> {name}: invalid macro name (letters, digits, _ and -)")
        if name in RESERVED:
            raise ConfigError(f"{where} -> {name}: macro name {name!r} is reserved")
        if value is None or isinstance(value, list):
            raise ConfigError(f"{where} -> {name}: a macro is a string, number, bool or map")
        for used in ANY_MACRO.findall(_flat(value)):
            if used == name:
                raise ConfigError(f"{where} -> {name}: macro uses itself (a cycle)")
            if used in RESERVED or used in defined:
                continue
            if used in names[i + 1 :]:
                raise ConfigError(
                    f"{where} -> {name}: uses ${{{used}}}, which is defined after it "
                    "(a macro may only use macros defined before it)"
                )
        defined.append(name)
        out.append((name, value))
    return out


def _flat(value: Any) -> str:
    if isinstance(value, Mapping):
        return " ".join(f"{k} {_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return " ".join(_flat(v) for v in value)
    return value if isinstance(value, str) else ""


def merge_macros(global_macros: Macros, model_macros: Macros) -> Macros:
    """The globals in order, a model's macro overriding its namesake in place."""
    merged = list(global_macros)
    for name, value in model_macros:
        for i, (existing, _) in enumerate(merged):
            if existing == name:
                merged[i] = (name, value)
                break
        else:
            merged.append((name, value))
    return merged


def _substitute_one(value: Any, slug: str, macro: Any, name: str, where: str) -> Any:
    if isinstance(value, str):
        if value == slug:
            return macro
        if slug in value:
            if isinstance(macro, Mapping):
                raise ConfigError(f"{where}: macro {name!r} is a map and can only be a whole value")
            return value.replace(slug, go_str(macro))
        return value
    if isinstance(value, Mapping):  # keys too: setParamsByID keys are often ${MODEL_ID}:x
        return {
            (k.replace(slug, go_str(macro)) if isinstance(k, str) else k): _substitute_one(
                v, slug, macro, name, where
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute_one(v, slug, macro, name, where) for v in value]
    return value


def expand(value: Any, macros: Macros, model_id: str, where: str) -> Any:
    """Substitute the macros (last-defined first) and ``${MODEL_ID}`` into ``value``.

    Any ``${name}`` left but ``${PORT}``/``${PID}`` is an error naming ``where``.
    """
    for name, macro in reversed([("MODEL_ID", model_id), *macros]):
        value = _substitute_one(value, "${" + name + "}", macro, name, where)
    left = [m for m in ANY_MACRO.findall(_flat(value)) if m not in LAUNCH_TIME]
    if left:
        raise ConfigError(f"{where}: unknown macro ${{{left[0]}}}")
    return value


__all__ = [
    "ANY_MACRO",
    "ENV_MACRO",
    "MACRO_NAME",
    "RESERVED",
    "Macros",
    "expand",
    "go_str",
    "merge_macros",
    "parse_macros",
    "substitute_env",
]
