"""Small helpers shared by the process tests (imported as ``process_helpers``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil

from free_ports import free_port  # noqa: F401  (re-exported for the tests here)


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie is dead: it only waits to be reaped)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()
