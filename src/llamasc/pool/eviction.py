"""Which sidecars to stop so that another one can start: plain functions, no logging.

The policy is least-recently-used among sidecars that nobody needs right now: ready, no
request in flight and no request waiting for them. A sidecar that is serving is never
chosen; the scheduler makes the newcomer wait instead. Keeping these pure functions of their
inputs lets the scheduler call them speculatively on every drain and lets tests enumerate them.

Beyond plain LRU (``choose_victim``), for residents that know their model and group:

- ``conflicts``: the sidecars a group rule says must go before the target starts
  (``swap``: the other members of its group; ``exclusive``: members of other groups that are
  not ``persistent``, and models in no group).
- ``protected``: never stopped for the target (pinned, or persistent in another group).
- ``idle_victims``: evictable, unprotected residents, least recently used first.
- ``drainable``: busy residents that the starvation bound may drain (stop taking requests,
  finish those in flight, then stop), once they have been resident ``min_resident`` seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


class Resident(Candidate, Protocol):
    """A sidecar as the group, pin and starvation rules see it."""

    @property
    def model(self) -> str: ...
    @property
    def group(self) -> str | None: ...
    @property
    def pinned(self) -> bool: ...
    @property
    def draining(self) -> bool: ...
    @property
    def ready_at(self) -> float: ...


class GroupRule(Protocol):
    @property
    def swap(self) -> bool: ...
    @property
    def exclusive(self) -> bool: ...
    @property
    def persistent(self) -> bool: ...


def conflicts(
    target_key: str,
    target_group: str | None,
    residents: Iterable[Resident],
    groups: Mapping[str, GroupRule],
) -> list[Resident]:
    """Live residents a group rule says must stop before ``target_key`` may start."""
    if target_group is None:
        return []
    rule = groups[target_group]
    out: list[Resident] = []
    for r in residents:
        if r.key == target_key or r.state is SidecarState.STOPPING:
            continue
        if r.group == target_group:
            if rule.swap:
                out.append(r)
        elif rule.exclusive and (r.group is None or not groups[r.group].persistent):
            out.append(r)
    return out


def protected(target_group: str | None, r: Resident, groups: Mapping[str, GroupRule]) -> bool:
    """True when ``r`` is never stopped to make room for a member of ``target_group``."""
    if r.pinned:
        return True
    return r.group is not None and r.group != target_group and groups[r.group].persistent


def _idle(r: Resident) -> bool:
    return r.state is SidecarState.READY and r.in_flight == 0 and (r.waiters == 0 or r.draining)


def idle_victims(
    target_key: str,
    target_group: str | None,
    residents: Iterable[Resident],
    groups: Mapping[str, GroupRule],
) -> list[Resident]:
    """Residents that may be stopped now for the target, least recently used first."""
    found = [
        r
        for r in residents
        if r.key != target_key and _idle(r) and not protected(target_group, r, groups)
    ]
    return sorted(found, key=lambda r: (r.last_used, r.key))


def drainable(
    target_key: str,
    target_group: str | None,
    residents: Iterable[Resident],
    groups: Mapping[str, GroupRule],
    *,
    now: float,
    min_resident: float,
) -> list[Resident]:
    """Busy residents the starvation bound may drain for the target, least busy first."""
    found = [
        r
        for r in residents
        if r.key != target_key
        and r.state is SidecarState.READY
        and not r.draining
        and not _idle(r)
        and r.ready_at + min_resident <= now
        and not protected(target_group, r, groups)
    ]
    return sorted(found, key=lambda r: (r.in_flight, r.last_used, r.key))


__all__ = [
    "Candidate",
    "GroupRule",
    "Resident",
    "SidecarState",
    "choose_victim",
    "conflicts",
    "drainable",
    "evictable",
    "idle_victims",
    "protected",
]
