"""The pool's settings (the daemon fills them from flags and llama-sidecar's env vars)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llamasc.config.scheduling import (
    DEFAULT_SLOT_CACHE_MIN_TOKENS,
    DEFAULT_SLOT_CACHE_SIZE,
    ModelScheduling,
)
from llamasc.errors import ConfigError
from llamasc.pool.admission import Group
from llamasc.pool.ports import DEFAULT_PORT_RANGE, check_port_range
from llamasc.pool.upstream_conn import Timeouts


@dataclass
class PoolConfig:
    """How many sidecars, on which ports, and how long to wait for what.

    - ``max_sidecars``: sidecars at most (starting, ready and stopping all count; with
      ``overlap_swaps``, one stopping sidecar does not).
    - ``queue_timeout``: how long a request waits for room before a 503 (capacity).
    - ``max_queue``: requests waiting at most; more are refused at once with a 503.
    - ``health_timeout``: how long a sidecar may take to become ready.
    - ``health_interval`` / ``health_failures``: a ready sidecar is checked every interval and
      replaced after that many failed checks in a row (0 interval: never checked).
    - ``stop_grace``: seconds between SIGTERM and SIGKILL.
    - ``overlap_swaps``: start a sidecar while the one evicted for it still exits (one such
      exiting sidecar is then not counted), instead of after its exit.
    - ``state_file``: where live sidecars are recorded, to reap them after a crash.
    - ``log_dir``: each sidecar's log goes to ``<log_dir>/<hash[:16]>.log`` when set.
    - ``upstream_timeouts``: of the keep-alive connections each ready sidecar owns
      (``pool.upstream``): first byte and mid-answer silence.

    Scheduling (``config.scheduling`` documents each):

    - ``memory_budget``: bytes per device; ``{}`` counts sidecars only. None: measure what
      the devices have free when the pool starts.
    - ``max_wait`` / ``min_resident``: the starvation bound (None: no bound) and the
      shortest stay of a swapped-in model.
    - ``models``: per-model ttl, pin, priority, concurrency, send_loading_state, args.
    - ``slot_cache``: the directory of the prompt cache across swaps (``pool.slotcache``),
      one subdirectory per sidecar key; None: off. ``slot_cache_min_tokens``: slots holding
      fewer tokens are not saved; ``slot_cache_size``: bytes on disk at most, LRU out first.
    - ``ttl``: the default idle time-to-live (0 = never); ``preload``: models started at
      start-up; ``groups``: llama-swap's groups.
    """

    max_sidecars: int = 2
    port_range: tuple[int, int] = DEFAULT_PORT_RANGE
    queue_timeout: float = 60.0
    health_timeout: float = 60.0
    health_interval: float = 30.0
    health_failures: int = 3
    stop_grace: float = 5.0
    overlap_swaps: bool = False
    state_file: Path | None = None
    log_dir: Path | None = None
    host: str = "127.0.0.1"
    max_queue: int = 512
    memory_budget: dict[str, int] | None = field(default_factory=dict)
    max_wait: float | None = None
    min_resident: float = 0.0
    models: dict[str, ModelScheduling] = field(default_factory=dict)
    ttl: float = 0.0
    preload: tuple[str, ...] = ()
    groups: dict[str, Group] = field(default_factory=dict)
    slot_cache: Path | None = None
    slot_cache_min_tokens: int = DEFAULT_SLOT_CACHE_MIN_TOKENS
    slot_cache_size: int = DEFAULT_SLOT_CACHE_SIZE
    upstream_timeouts: Timeouts = field(default_factory=Timeouts)

    def __post_init__(self) -> None:
        if self.max_sidecars < 1:
            raise ConfigError(f"MAX_SIDECARS must be at least 1, got {self.max_sidecars}")
        check_port_range(self.port_range)
        for name in ("queue_timeout", "health_timeout", "health_interval", "stop_grace"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.health_failures < 1:
            raise ConfigError(f"health_failures must be at least 1, got {self.health_failures}")
        if self.max_queue < 1:
            raise ConfigError(f"max_queue must be at least 1, got {self.max_queue}")


__all__ = ["PoolConfig"]
