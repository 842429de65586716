"""What a key asks of the pool, and the arithmetic of whether it fits: plain data, no I/O.

A sidecar's *charge* is what it holds per resource: bytes per device (``host``, ``cuda0``...)
and one ``slots`` unit, so ``MAX_SIDECARS`` is just one more budget. Its charge is the larger
of what was projected before it started and what was measured once it was ready. A resource
missing from the budget is unbounded (no budget at all: count only).

The :class:`Ledger` keeps two views of what is free: *now* (every live sidecar holds its
charge, stopping ones included, since a stopping sidecar still holds its memory) and *later*
(once the stopping sidecars have exited). A newcomer starts when it fits now; it waits for
stops in progress when it fits later; requests admitted to wait claim their share of both,
so a later, smaller request cannot take the room an earlier one is waiting for.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

SLOTS = "slots"
Usage: TypeAlias = Mapping[str, float]


@dataclass(frozen=True, slots=True)
class Group:
    """llama-swap's group rules for its ``members`` (model ids)."""

    name: str
    members: frozenset[str]
    swap: bool = True  # only one member loaded at a time
    exclusive: bool = True  # loading a member stops the members of other groups
    persistent: bool = False  # never stopped by another group's load


@dataclass(frozen=True, slots=True)
class Profile:
    """What the scheduler needs to know about a key besides its name.

    ``need`` is the projected memory per device in bytes (``slots`` is added by the
    scheduler). ``concurrency`` bounds the requests in flight for the whole ``model``.
    """

    model: str = ""
    need: Mapping[str, float] = field(default_factory=dict)
    priority: int = 0
    ttl: float = 0.0
    pin: bool = False
    concurrency: int | None = None
    send_loading_state: bool = False


DEFAULT_PROFILE = Profile()


def charge(need: Usage, measured: Usage | None = None) -> dict[str, float]:
    """One sidecar's hold: the larger of projection and measurement, plus its slot."""
    out = {d: float(v) for d, v in need.items() if d != SLOTS}
    for d, v in (measured or {}).items():
        if d != SLOTS:
            out[d] = max(out.get(d, 0.0), float(v))
    out[SLOTS] = 1.0
    return out


def fits(free: Usage, need: Usage) -> bool:
    """True when ``need`` fits into ``free`` on every bounded resource."""
    return all(free[d] >= v for d, v in need.items() if d in free and v > 0)


def add(into: dict[str, float], amount: Usage, sign: float = 1.0) -> None:
    for d in into:
        into[d] += sign * amount.get(d, 0.0)


class Ledger:
    """Free resources now and after the stops in progress (see the module docstring)."""

    def __init__(self, budget: Usage) -> None:
        self.budget = dict(budget)
        self.now = dict(budget)
        self.later = dict(budget)

    def hold(self, amount: Usage, *, stopping: bool, overlapped: bool = False) -> None:
        """A live sidecar holds ``amount``; an ``overlapped`` stopping sidecar holds no slot."""
        now = {d: v for d, v in amount.items() if not (overlapped and d == SLOTS)}
        add(self.now, now, -1.0)
        if not stopping:
            add(self.later, amount, -1.0)

    def release_later(self, amount: Usage) -> None:
        """A live sidecar was just told to stop: its charge is free once it exits."""
        add(self.later, amount)

    def claim(self, amount: Usage) -> None:
        """A newcomer takes ``amount`` (started now, or waiting for stops to finish)."""
        add(self.now, amount, -1.0)
        add(self.later, amount, -1.0)


def too_big(
    profile: Profile, budget: Usage, pinned: Iterable[Usage] = ()
) -> tuple[str, float, float, float] | None:
    """``(device, need, budget, pinned)`` when the key cannot fit even alone (beside the
    pinned sidecars, which never leave), else None."""
    held: dict[str, float] = {d: 0.0 for d in budget}
    for p in pinned:
        add(held, p)
    for d, v in profile.need.items():
        if d == SLOTS or d not in budget:
            continue
        if v > budget[d] - held[d]:
            return d, float(v), float(budget[d]), held[d]
    return None


def gib(n: float) -> str:
    """``31.2 GiB`` / ``241 MiB``: sizes the way a user reads them."""
    if n >= 1024**3:
        return f"{n / 1024**3:.1f} GiB"
    return f"{math.ceil(n / 1024**2)} MiB"


def insufficient_memory_message(model: str, found: tuple[str, float, float, float]) -> str:
    device, need, budget, pinned = found
    text = f"{model} needs {gib(need)} on {device}; the budget is {gib(budget)}"
    if pinned > 0:
        text += f", {gib(pinned)} of it held by pinned models"
    return text


def check_pins(pins: Mapping[str, Usage], budget: Usage, max_sidecars: int) -> list[str]:
    """Problems with a set of pinned models (id -> projected need): they must fit together."""
    problems: list[str] = []
    if len(pins) > max_sidecars:
        problems.append(
            f"{len(pins)} pinned models ({', '.join(sorted(pins))}) but MAX_SIDECARS is "
            f"{max_sidecars}"
        )
    total: dict[str, float] = {d: 0.0 for d in budget}
    for need in pins.values():
        add(total, need)
    for d, v in total.items():
        if d != SLOTS and v > budget[d]:
            problems.append(
                f"pinned models ({', '.join(sorted(pins))}) need {gib(v)} on {d}; "
                f"the budget is {gib(budget[d])}"
            )
    return problems


__all__ = [
    "DEFAULT_PROFILE",
    "SLOTS",
    "Group",
    "Ledger",
    "Profile",
    "Usage",
    "charge",
    "check_pins",
    "fits",
    "gib",
    "insufficient_memory_message",
    "too_big",
]
