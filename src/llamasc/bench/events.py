"""What a sweep reports while it runs (the CLI turns these into a progress bar)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Prepared:
    """Models resolved, results file opened: what the user should know before it runs."""

    models: tuple[tuple[str, tuple[str, ...]], ...]  # (model id, production flags dropped)
    skipped_models: tuple[tuple[str, str], ...]  # (model id, why it cannot be benched)
    moved_aside: str | None
    host_os: str


@dataclass(frozen=True)
class SweepStarted:
    total: int  # requests to measure now
    skipped: int  # requests already in the results file
    cells: int
    reaped: tuple[str, ...] = ()
    torn_tail_bytes: int = 0
    changed_flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class CellStarting:
    model: str
    arm: str
    requests: int


@dataclass(frozen=True)
class CellSkipped:
    model: str
    arm: str


@dataclass(frozen=True)
class CellUnsupported:
    model: str
    arm: str
    error: str
    abandoned: int = 0  # planned requests that will not be measured


@dataclass(frozen=True)
class CellFinished:
    model: str
    arm: str
    error: str | None = None
    abandoned: int = 0  # planned requests left unmeasured (measured on the next run)


@dataclass(frozen=True)
class RequestDone:
    record: dict[str, Any]


Event = (
    Prepared
    | SweepStarted
    | CellStarting
    | CellSkipped
    | CellUnsupported
    | CellFinished
    | RequestDone
)

__all__ = [
    "CellFinished",
    "CellSkipped",
    "CellStarting",
    "CellUnsupported",
    "Event",
    "Prepared",
    "RequestDone",
    "SweepStarted",
]
