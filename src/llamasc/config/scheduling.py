"""The scheduling settings of the native config file, and their one-value CLI/env forms.

Per model (``[models.<id>]``)::

    ttl = 300                   # stop it after 300 s idle (0 = never; default --ttl)
    pin = true                  # never evicted for another model (start-up checks it fits)
    priority = 10               # higher goes first among waiting models
    concurrency = 4             # requests in flight at most; more wait, then 429
    send_loading_state = true   # streaming chats that wait for a start get reasoning deltas
    args = ["-c", "65536"]      # operator flags for this model, over BASE_ARGS

Top level::

    memory_budget = "cuda0=22GiB,host=48GiB"   # or a table {cuda0 = "22GiB", host = "48GiB"}
    max_wait = 10          # a request for an unloaded model waits at most this for a busy one
    min_resident = 2       # a swapped-in model stays at least this long unless it goes idle
    preload = ["smollm2-135m"]
    ttl = 0                # the default per-model ttl
    [groups.coders]        # llama-swap's groups
    members = ["qwen3-coder", "glm-air"]
    swap = true            # only one member loaded at a time
    exclusive = true       # loading a member stops the members of other groups
    persistent = false     # true: never stopped by another group's load

The slot cache (``slot_cache``, ``slot_cache_min_tokens``, ``slot_cache_size``) keeps each
slot's KV cache across a swap. Parsing only: the pool enforces all of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_MAX_WAIT = 10.0
DEFAULT_MIN_RESIDENT = 2.0
DEFAULT_SLOT_CACHE_MIN_TOKENS = 1024
DEFAULT_SLOT_CACHE_SIZE = 20 * 1024**3

# a device name as the budget spells it: host, cpu, cuda0, rocm1, vulkan0, metal...
# a local device (cuda0, host, ...) or an RPC worker's: rpc:HOST:PORT as in --rpc
_DEVICE = re.compile(r"^(?:[a-z][a-z0-9_]*|rpc:(?:\[[0-9a-f:.]+\]|[a-z0-9_.-]+):\d+)$")
_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?i?b?)$", re.IGNORECASE)
_UNIT = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "ki": 1024, "kib": 1024, "m": 1000**2,
    "mb": 1000**2, "mi": 1024**2, "mib": 1024**2, "g": 1000**3, "gb": 1000**3,
    "gi": 1024**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "ti": 1024**4, "tib": 1024**4,
}  # fmt: skip


def parse_bytes(text: str | int | float) -> int:
    """``"22GiB"`` -> 23622320128; a bare number is bytes."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("size")
        return int(text)
    if not isinstance(text, str):
        raise ValueError("size")
    m = _SIZE.match(text.strip())
    if m is None or m.group(2).lower() not in _UNIT:
        raise ValueError("size")
    return int(float(m.group(1)) * _UNIT[m.group(2).lower()])


def parse_memory_budget(value: Any) -> dict[str, int] | None:
    """``"cuda0=22GiB,host=48GiB"`` (or a mapping) -> ``{"cuda0": ..., "host": ...}`` bytes.

    ``"auto"`` or empty means: measure what the devices report free at start-up (None).
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "auto"):
            return None
        pairs: list[tuple[str, Any]] = []
        for part in text.split(","):
            name, sep, size = part.partition("=")
            if not sep:
                raise ValueError("budget")
            pairs.append((name, size))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        raise ValueError("budget")
    budget: dict[str, int] = {}
    for name, size in pairs:
        device = str(name).strip().lower()
        if not _DEVICE.match(device) or device in budget:
            raise ValueError("budget")
        budget["host" if device in ("cpu", "ram") else device] = parse_bytes(size)
    return budget or None


def parse_id_list(value: Any) -> Any:
    """``"a,b"`` (env and CLI form) -> ``["a", "b"]``; lists pass through."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class GroupSettings(BaseModel):
    """One group of models, with llama-swap's semantics (and its defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    members: tuple[str, ...] = Field(min_length=1)
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False


class ModelScheduling(BaseModel):
    """The per-model scheduling fields, mixed into ``[models.<id>]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ttl: float | None = Field(default=None, ge=0)  # None: the daemon's --ttl
    pin: bool = False
    priority: int = 0
    concurrency: int | None = Field(default=None, ge=1)
    send_loading_state: bool = False
    args: tuple[str, ...] = ()


class SchedulingSettings(BaseModel):
    """The top-level scheduling fields, mixed into :class:`~llamasc.config.Settings`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_budget: dict[str, int] | None = None
    max_wait: float = Field(default=DEFAULT_MAX_WAIT, ge=0)
    min_resident: float = Field(default=DEFAULT_MIN_RESIDENT, ge=0)
    ttl: float = Field(default=0.0, ge=0)
    preload: tuple[str, ...] = ()
    groups: dict[str, GroupSettings] = Field(default_factory=dict)
    slot_cache: bool = True
    slot_cache_min_tokens: int = Field(default=DEFAULT_SLOT_CACHE_MIN_TOKENS, ge=0)
    slot_cache_size: int = Field(default=DEFAULT_SLOT_CACHE_SIZE, ge=0)

    @field_validator("memory_budget", mode="before")
    @classmethod
    def _parse_budget(cls, value: Any) -> Any:
        return parse_memory_budget(value)

    @field_validator("preload", mode="before")
    @classmethod
    def _parse_preload(cls, value: Any) -> Any:
        return parse_id_list(value)

    @field_validator("slot_cache_size", mode="before")
    @classmethod
    def _parse_cache_size(cls, value: Any) -> Any:
        return parse_bytes(value) if isinstance(value, str) else value

    @field_validator("groups")
    @classmethod
    def _one_group_per_model(cls, value: dict[str, GroupSettings]) -> dict[str, GroupSettings]:
        seen: dict[str, str] = {}
        for name, group in value.items():
            for member in group.members:
                if member in seen:
                    raise ValueError(f"model {member!r} is in groups {seen[member]!r} and {name!r}")
                seen[member] = name
        return value


# field -> (environment variable, command-line option), merged into settings.SOURCES
SCHEDULING_SOURCES: dict[str, tuple[str | None, str | None]] = {
    "memory_budget": ("LLAMASC_MEMORY_BUDGET", "--memory-budget"),
    "max_wait": ("LLAMASC_MAX_WAIT", "--max-wait"),
    "min_resident": ("LLAMASC_MIN_RESIDENT", "--min-resident"),
    "ttl": ("LLAMASC_TTL", "--ttl"),
    "preload": ("LLAMASC_PRELOAD", "--preload"),
    "slot_cache": ("LLAMASC_SLOT_CACHE", "--no-slot-cache"),
    "slot_cache_min_tokens": ("LLAMASC_SLOT_CACHE_MIN_TOKENS", "--slot-cache-min-tokens"),
    "slot_cache_size": ("LLAMASC_SLOT_CACHE_SIZE", "--slot-cache-size"),
}

SCHEDULING_EXPECT: dict[str, str] = {
    "memory_budget": "DEVICE=SIZE pairs, e.g. cuda0=22GiB,host=48GiB (or auto)",
    "max_wait": "a number of seconds >= 0",
    "min_resident": "a number of seconds >= 0",
    "ttl": "a number of seconds >= 0 (0 = never)",
    "preload": "model ids separated by commas",
    "slot_cache": "true or false",
    "slot_cache_min_tokens": "an integer >= 0",
    "slot_cache_size": "a size, e.g. 20GiB",
}


def check_model_refs(
    known: set[str], preload: tuple[str, ...], groups: Mapping[str, GroupSettings]
) -> list[str]:
    """Problems with ids in ``preload`` and ``groups`` that name no configured model."""
    problems = [f"preload: unknown model {m!r}" for m in preload if m not in known]
    for name, group in groups.items():
        problems += [
            f"groups -> {name} -> members: unknown model {m!r}"
            for m in group.members
            if m not in known
        ]
    return problems


__all__ = [
    "DEFAULT_MAX_WAIT",
    "DEFAULT_MIN_RESIDENT",
    "DEFAULT_SLOT_CACHE_MIN_TOKENS",
    "DEFAULT_SLOT_CACHE_SIZE",
    "SCHEDULING_EXPECT",
    "SCHEDULING_SOURCES",
    "GroupSettings",
    "ModelScheduling",
    "SchedulingSettings",
    "check_model_refs",
    "parse_bytes",
    "parse_id_list",
    "parse_memory_budget",
]
