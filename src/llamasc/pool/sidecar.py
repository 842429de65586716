"""What the pool knows about each sidecar, and what it hands to callers.

``ServerHandle`` and ``Launcher``, from :mod:`llamasc.process.launcher`, are the only things
the pool needs from a llama-server process (``llamasc.process.LlamaServer`` satisfies them,
and tests pass recording fakes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from llamasc.errors import UpstreamError
from llamasc.pool.upstream import Upstream
from llamasc.process.launcher import Launcher, ServerHandle
from llamasc.process.rpc import rpc_workers


@dataclass(eq=False)
class Sidecar:
    """One sidecar of the pool, from its Start to its exit (mutable; the pool owns it)."""

    key: str
    model_id: str
    flags: tuple[str, ...]
    port: int
    restarts: int
    started: float = field(default_factory=time.time)
    handle: ServerHandle | None = None
    ready_at: float | None = None
    stopping: bool = False
    stop_reason: str = ""
    health_failures: int = 0
    requests_served: int = 0
    last_timings: dict[str, Any] | None = None
    memory_measured: dict[str, int] | None = None
    # its keep-alive connections: opened once it is ready, retired when it starts stopping,
    # closed when it is gone (this sidecar's, so nobody has to sweep them)
    upstream: Upstream | None = None
    start_task: asyncio.Task[None] | None = None
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def base_url(self) -> str:
        return self.handle.base_url if self.handle is not None else ""


@dataclass(frozen=True)
class SidecarInfo:
    """A snapshot of one sidecar, for ``llamasc ps`` and the status API."""

    hash: str
    model: str
    flags: tuple[str, ...]
    port: int
    pid: int | None
    state: str
    started: float
    ready_at: float | None
    last_used: float | None
    in_flight: int
    requests_served: int
    last_timings: dict[str, Any] | None
    restarts: int
    memory_projected: dict[str, int] | None = None  # bytes per device, before the start
    memory_measured: dict[str, int] | None = None  # bytes per device, once ready

    def to_dict(self) -> dict[str, Any]:
        """The one JSON form of a sidecar (``/sidecars``, ``ps``, the event stream): every
        field, times as Unix seconds, memory as ``{"projected", "measured"}`` bytes per
        device, and the RPC workers its model is spread over."""
        return sidecar_dict(self)


def _plain(value: Any) -> Any:
    """An enum's value and a datetime's Unix time, for JSON."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return value


def sidecar_dict(info: Any) -> dict[str, Any]:
    """:meth:`SidecarInfo.to_dict` for any object with its fields (tests' stand-ins too)."""
    timings = getattr(info, "last_timings", None)
    flags = list(info.flags)
    return {
        "hash": info.hash,
        "model": info.model,
        "flags": flags,
        "port": info.port,
        "pid": info.pid,
        "state": _plain(info.state),
        "started": _plain(info.started),
        "ready_at": _plain(getattr(info, "ready_at", None)),
        "last_used": _plain(info.last_used),
        "in_flight": info.in_flight,
        "requests_served": info.requests_served,
        "restarts": getattr(info, "restarts", 0),
        "last_timings": dict(timings) if timings else None,
        "memory": {
            "projected": getattr(info, "memory_projected", None),
            "measured": getattr(info, "memory_measured", None),
        },
        "rpc_workers": [w.address for w in rpc_workers(flags)],
    }


class TimeoutSink(Protocol):
    """Who hears that a leased sidecar timed out (the pool; no import of it needed here)."""

    def sidecar_timed_out(self, sidecar: Sidecar) -> None: ...


class Lease:
    """The right to send requests to one ready sidecar until the lease is released."""

    __slots__ = ("_pool", "_sidecar", "key", "model_id", "port", "released", "req_id", "timings")

    def __init__(self, pool: TimeoutSink, req_id: int, sidecar: Sidecar) -> None:
        self._pool = pool
        self._sidecar = sidecar
        self.req_id = req_id
        self.key = sidecar.key
        self.model_id = sidecar.model_id
        self.port = sidecar.port
        self.released = False
        self.timings: dict[str, Any] | None = None  # of this lease's answer, for the metrics

    @property
    def base_url(self) -> str:
        return self._sidecar.base_url

    @property
    def sidecar(self) -> Sidecar:
        return self._sidecar

    @property
    def upstream(self) -> Upstream:
        """The sidecar's own connections (a lease is granted only to a ready sidecar)."""
        up = self._sidecar.upstream
        if up is None:
            raise UpstreamError(f"sidecar {self.key[:12]} for {self.model_id!r} is not ready")
        return up

    def record(self, timings: dict[str, Any] | None) -> None:
        """Remember the ``timings`` of the last answer, shown by ``llamasc ps``."""
        if timings is not None:
            self._sidecar.last_timings = timings
            self.timings = timings

    def report_timeout(self) -> None:
        """The sidecar did not answer in time: that counts as a failed health check."""
        self._pool.sidecar_timed_out(self._sidecar)

    def __repr__(self) -> str:
        return f"<Lease {self.model_id} {self.key[:12]} port={self.port}>"


__all__ = ["Launcher", "Lease", "ServerHandle", "Sidecar", "SidecarInfo", "sidecar_dict"]
