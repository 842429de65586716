"""Port blocks for pools under test, below the ephemeral range.

Ephemeral ports are what our own (and other tests') outgoing connections take, so one of them
could grab a child's port between the pool's check and the child's bind.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(n: int) -> tuple[int, int]:
    """n consecutive ports, each free now, below the ephemeral range."""
    try:
        eph_lo = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        eph_lo = 32768
    top = max(eph_lo, 12000) - n
    for _ in range(100):
        base = random.randrange(10000, top)
        if all(_bindable(p) for p in range(base, base + n)):
            return base, base + n - 1
    raise AssertionError("no block of free ports found")


def free_port() -> int:
    """One port, free now, below the ephemeral range (see the module docstring)."""
    return free_port_block(1)[0]
