"""The scheduler's vocabulary: the effects it decides and the records it keeps.

Effects are commands for the pool's run loop (``Start``, ``Stop``, ``Grant``, ``Reject``);
each is answered later by an event (ready / start_failed, stopped, released).
``SidecarRecord``, ``Waiter`` and ``View`` are the scheduler's own records, plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from llamasc.pool.admission import DEFAULT_PROFILE, Profile
from llamasc.pool.eviction import SidecarState

RequestId: TypeAlias = int
StopReason: TypeAlias = Literal[
    "evict", "memory", "group", "drain", "ttl", "requested", "shutdown", "retired"
]
RejectReason: TypeAlias = Literal[
    "capacity", "start_failed", "shutting_down", "concurrency_limit", "insufficient_memory"
]


@dataclass(frozen=True, slots=True)
class Start:
    """Spawn a sidecar for ``key``; answer with ``ready`` or ``start_failed``."""

    key: str


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop the sidecar of ``key`` (or abort its start); answer with ``stopped``."""

    key: str
    reason: StopReason


@dataclass(frozen=True, slots=True)
class Grant:
    """Request ``req_id`` may use the ready sidecar of ``key``; answer later with ``released``."""

    req_id: RequestId
    key: str


@dataclass(frozen=True, slots=True)
class Reject:
    """Request ``req_id`` will not be served. ``error`` is the start error for start_failed;
    ``detail`` is ``"queue_full"`` when a capacity rejection came without any wait, and the
    need and the budget for insufficient_memory."""

    req_id: RequestId
    reason: RejectReason
    error: BaseException | None = None
    detail: str = ""


Effect: TypeAlias = Start | Stop | Grant | Reject


@dataclass(slots=True)
class SidecarRecord:
    """The scheduler's record of one live sidecar. ``gen`` tells instances of a key apart."""

    key: str
    state: SidecarState
    gen: int
    in_flight: int = 0
    last_used: float = 0.0
    profile: Profile = DEFAULT_PROFILE
    ready_at: float = 0.0
    draining: bool = False
    retiring: bool = False  # draining because its model changed or went away
    measured: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Waiter:
    req_id: RequestId
    key: str
    deadline: float
    arrival: float
    seq: int
    profile: Profile


@dataclass(frozen=True, slots=True)
class View:
    """A sidecar as eviction sees it (satisfies ``eviction.Resident``)."""

    key: str
    state: SidecarState
    in_flight: int
    waiters: int
    last_used: float
    model: str
    group: str | None
    pinned: bool
    draining: bool
    ready_at: float


__all__ = [
    "Effect",
    "Grant",
    "Reject",
    "RejectReason",
    "RequestId",
    "SidecarRecord",
    "Start",
    "Stop",
    "StopReason",
    "View",
    "Waiter",
]
