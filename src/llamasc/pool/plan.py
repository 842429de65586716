"""How to make room for one waiter: which sidecars to stop now and which to drain.

A pure function over the residents (``eviction.Resident``) and their charges; the scheduler
commits the plan or, when there is none, lets the waiter wait. Rules, in order:

1. Group conflicts must go: idle ones are stopped; busy ones are drained, but only when the
   waiter is starving (waited ``max_wait``) and they have been resident ``min_resident``
   seconds; a conflict still starting is waited for.
2. Then idle residents, least recently used first, until the waiter fits once they exit.
3. Still short and starving: busy residents are drained, least busy first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from llamasc.pool.admission import Usage, add, fits
from llamasc.pool.eviction import GroupRule, Resident, SidecarState, drainable, idle_victims


def plan_room(
    target_key: str,
    group: str | None,
    residents: Sequence[Resident],
    *,
    must: Sequence[Resident],
    groups: Mapping[str, GroupRule],
    charges: Mapping[str, Usage],
    later: Mapping[str, float],
    need: Usage,
    starving: bool,
    now: float,
    min_resident: float,
) -> tuple[list[Resident], list[Resident]] | None:
    """``(stop now, drain)`` so that ``need`` fits into ``later`` (what is free once the
    stops in progress end), or None when the waiter has to wait as things are."""
    free = dict(later)
    if any(r.state is SidecarState.STARTING for r in must):
        return None
    stops = [r for r in must if r.in_flight == 0]
    drains = [r for r in must if r.in_flight > 0 and not r.draining]
    if drains and (not starving or any(r.ready_at + min_resident > now for r in drains)):
        return None
    for r in must:
        if not r.draining:  # a draining one's charge is already counted in ``later``
            add(free, charges[r.key])
    taken = {r.key for r in must}
    for r in idle_victims(target_key, group, residents, groups):
        if fits(free, need):
            break
        if r.key not in taken and not r.draining:
            stops.append(r)
            taken.add(r.key)
            add(free, charges[r.key])
    if fits(free, need):
        return stops, drains
    if not starving:
        return None
    for r in drainable(target_key, group, residents, groups, now=now, min_resident=min_resident):
        if fits(free, need):
            break
        if r.key not in taken:
            drains.append(r)
            taken.add(r.key)
            add(free, charges[r.key])
    return (stops, drains) if fits(free, need) else None


__all__ = ["plan_room"]
