"""Which sidecar to stop so that another one can start: a plain function, no logging.

The policy is least-recently-used among sidecars that nobody needs right now: ready, no
request in flight and no request waiting for them. A sidecar that is serving is never
chosen; the scheduler makes the newcomer wait instead. Keeping this a pure function of its
inputs lets the scheduler call it speculatively on every drain and lets tests enumerate it.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Protocol


class SidecarState(StrEnum):
    """The life of one sidecar as the scheduler sees it (gone sidecars have no state)."""

    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"


class Candidate(Protocol):
    """What eviction needs to know about one sidecar."""

    @property
    def key(self) -> str: ...
    @property
    def state(self) -> SidecarState: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def waiters(self) -> int: ...
    @property
    def last_used(self) -> float: ...


def evictable(candidate: Candidate) -> bool:
    """True when stopping this sidecar would interrupt nobody."""
    return (
        candidate.state is SidecarState.READY
        and candidate.in_flight == 0
        and candidate.waiters == 0
    )


def choose_victim(target_key: str, sidecars: Iterable[Candidate]) -> str | None:
    """The key to stop to make room for ``target_key``, or None if every sidecar is needed.

    Ties on ``last_used`` go to the smallest key, so the choice never depends on dict order.
    """
    best: Candidate | None = None
    for c in sidecars:
        if c.key == target_key or not evictable(c):
            continue
        if best is None or (c.last_used, c.key) < (best.last_used, best.key):
            best = c
    return None if best is None else best.key


__all__ = ["Candidate", "SidecarState", "choose_victim", "evictable"]
