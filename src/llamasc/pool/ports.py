"""Ports for the sidecars, from ``PORT_RANGE`` (default 8500-8599).

A port is handed out only if nobody listens on it (we try to bind it), and it comes back
only once the sidecar that held it has exited, so a new sidecar never races an old one for it.
Allocation walks the range round-robin from the last port given, so a port that was just
freed is the last one reused.
"""

from __future__ import annotations

import logging
import threading

from llamasc.errors import ConfigError, SpawnError
from llamasc.process.ports import port_is_free

log = logging.getLogger(__name__)

DEFAULT_PORT_RANGE = (8500, 8599)


def parse_port_range(text: str) -> tuple[int, int]:
    """``"8500-8599"`` -> ``(8500, 8599)``; a single ``"8500"`` is a range of one."""
    lo_s, sep, hi_s = text.strip().partition("-")
    try:
        lo = int(lo_s)
        hi = int(hi_s) if sep else lo
    except ValueError:
        raise ConfigError(f"PORT_RANGE must look like 8500-8599, got {text!r}") from None
    return check_port_range((lo, hi))


def check_port_range(port_range: tuple[int, int]) -> tuple[int, int]:
    lo, hi = port_range
    if not (1 <= lo <= hi <= 65535):
        raise ConfigError(f"PORT_RANGE {lo}-{hi} is not a range of ports within 1-65535")
    return lo, hi


class PortAllocator:
    """Hands out free ports from an inclusive range. Safe to share between threads."""

    def __init__(self, port_range: tuple[int, int] = DEFAULT_PORT_RANGE, host: str = "127.0.0.1"):
        self.lo, self.hi = check_port_range(port_range)
        self.host = host
        self._taken: set[int] = set()
        self._next = self.lo
        self._lock = threading.Lock()

    @property
    def taken(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._taken)

    def allocate(self) -> int:
        """A port that is free now and not held by one of our sidecars.

        Raises SpawnError when every port of the range is busy: that is why the sidecar
        cannot start, and the request that wanted it should hear so.
        """
        with self._lock:
            size = self.hi - self.lo + 1
            for i in range(size):
                port = self.lo + (self._next - self.lo + i) % size
                if port in self._taken or not port_is_free(port, self.host):
                    continue
                self._taken.add(port)
                self._next = self.lo + (port - self.lo + 1) % size
                return port
        raise SpawnError(
            f"no free port in PORT_RANGE {self.lo}-{self.hi} on {self.host} "
            f"({len(self._taken)} held by llama-server children, the rest in use by others)"
        )

    def release(self, port: int) -> None:
        """Give ``port`` back. Call only after the sidecar that held it has exited."""
        with self._lock:
            self._taken.discard(port)


__all__ = [
    "DEFAULT_PORT_RANGE",
    "PortAllocator",
    "check_port_range",
    "parse_port_range",
    "port_is_free",
]
