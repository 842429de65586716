"""What a sweep reports while it runs (the CLI turns these into a progress bar)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SweepStarted:
    total: int  # requests to measure now
    skipped: int  # requests already in the results file
    cells: int


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


@dataclass(frozen=True)
class CellFinished:
    model: str
    arm: str
    error: str | None = None


@dataclass(frozen=True)
class RequestDone:
    record: dict[str, Any]


Event = SweepStarted | CellStarting | CellSkipped | CellUnsupported | CellFinished | RequestDone

__all__ = [
    "CellFinished",
    "CellSkipped",
    "CellStarting",
    "CellUnsupported",
    "Event",
    "RequestDone",
    "SweepStarted",
]
