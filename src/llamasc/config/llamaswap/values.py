"""Typed values of a llama-swap document, each checked with an error naming where it is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llamasc.config.llamaswap.model import Filters
from llamasc.errors import ConfigError

TIMEOUT_KEYS = frozenset(
    {"connect", "keepAlive", "responseHeader", "tlsHandshake", "expectContinue", "idleConn"}
)


def num(value: Any, where: str, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: must be >= {minimum:g}, got {value!r}")
    return float(value)


def integer(value: Any, where: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: must be >= {minimum}, got {value!r}")
    return value


def boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: must be true or false, got {value!r}")
    return value


def string(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{where}: must be a string, got {value!r}")
    return str(value)


def mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: must be a mapping")
    return value


def str_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{where}: must be a list of strings")
    return tuple(string(v, where) for v in value)


def parse_filters(raw: Any, where: str) -> Filters:
    body = mapping(raw, where)
    strip_raw = body.get("stripParams", body.get("strip_params", ""))
    strip = tuple(
        p.strip()
        for p in string(strip_raw or "", f"{where} -> stripParams").split(",")
        if p.strip() and p.strip() != "model"  # llama-swap protects "model"
    )
    set_params = dict(mapping(body.get("setParams"), f"{where} -> setParams"))
    by_id_raw = mapping(body.get("setParamsByID"), f"{where} -> setParamsByID")
    by_id = {
        str(k): dict(mapping(v, f"{where} -> setParamsByID -> {k}")) for k, v in by_id_raw.items()
    }
    return Filters(strip, set_params, by_id)


def parse_timeouts(raw: Any, where: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in mapping(raw, where).items():
        if k not in TIMEOUT_KEYS:
            raise ConfigError(f"{where} -> {k}: unknown timeout (known: {sorted(TIMEOUT_KEYS)})")
        out[str(k)] = num(v, f"{where} -> {k}", minimum=0)
    return out


def env_list(raw: Any, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in str_list(raw, where):
        key, eq, value = item.partition("=")
        if not eq or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise ConfigError(f"{where}: entry {item!r} is not KEY=value")
        out[key] = value
    return out


__all__ = [
    "TIMEOUT_KEYS",
    "boolean",
    "env_list",
    "integer",
    "mapping",
    "num",
    "parse_filters",
    "parse_timeouts",
    "str_list",
    "string",
]
