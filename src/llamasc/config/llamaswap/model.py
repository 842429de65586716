"""What a llama-swap config means, as llamasc reads it: plain frozen records, no behaviour."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["llama-server", "opaque"]


@dataclass(frozen=True)
class Filters:
    """``filters.stripParams`` / ``setParams`` / ``setParamsByID`` of a model (or a peer)."""

    strip_params: tuple[str, ...] = ()
    set_params: Mapping[str, Any] = field(default_factory=dict)
    set_params_by_id: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.strip_params or self.set_params or self.set_params_by_id)


@dataclass(frozen=True)
class SwapModel:
    """One ``models.<id>`` entry, macros expanded (``${PORT}``/``${PID}`` stay for launch)."""

    id: str
    kind: Kind
    argv: tuple[str, ...]  # the expanded, split cmd (with ${PORT} left in)
    cmd_stop: tuple[str, ...] = ()
    proxy: str = "http://localhost:${PORT}"
    check_endpoint: str = "/health"
    uses_port: bool = False
    gguf: str | None = None  # llama-server models: the -m file
    args: tuple[str, ...] = ()  # llama-server models: the operator arguments
    dropped: tuple[str, ...] = ()  # llama-server models: what the pool sets itself
    env: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    ttl: float | None = None  # None: globalTTL; 0: never
    unload_timeout: float | None = None
    unlisted: bool = False
    name: str = ""
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    concurrency_limit: int | None = None
    send_loading_state: bool | None = None
    use_model_name: str = ""
    filters: Filters = field(default_factory=Filters)
    timeouts: Mapping[str, float] = field(default_factory=dict)
    priority: int = 0


@dataclass(frozen=True)
class SwapGroup:
    members: tuple[str, ...]
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False


@dataclass(frozen=True)
class SwapPeer:
    """``peers.<id>``: another OpenAI-compatible server whose models we forward to."""

    id: str
    proxy: str
    models: tuple[str, ...]
    api_key: str = ""
    filters: Filters = field(default_factory=Filters)
    timeouts: Mapping[str, float] = field(default_factory=dict)


@dataclass
class SwapConfig:
    """A whole llama-swap config: its models, and every problem and warning found."""

    source: str
    models: dict[str, SwapModel] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> model id
    groups: dict[str, SwapGroup] = field(default_factory=dict)
    peers: dict[str, SwapPeer] = field(default_factory=dict)
    preload: tuple[str, ...] = ()
    api_keys: tuple[str, ...] = ()
    health_check_timeout: float | None = None
    log_level: str | None = None
    start_port: int | None = None
    global_ttl: float | None = None
    unload_timeout: float | None = None
    send_loading_state: bool = False
    include_aliases_in_list: bool = False
    errors: list[str] = field(default_factory=list)
    model_errors: dict[str, str] = field(default_factory=dict)  # model id -> first problem
    warnings: list[str] = field(default_factory=list)

    def resolve(self, name: str) -> str:
        """A model id for ``name`` (an id or an alias); the name itself if neither."""
        return name if name in self.models else self.aliases.get(name, name)


__all__ = ["Filters", "Kind", "SwapConfig", "SwapGroup", "SwapModel", "SwapPeer"]
