"""Ports for llama-server children: is one free, pick one, and start again on another one
when the child lost its port to another process between our check and its bind.

The daemon hands out ports from its own ``PORT_RANGE`` (``pool/ports.py``, built on
:func:`port_is_free`); everything else (``llamasc bench``, ``llamasc.load``) picks at random
from :data:`PORT_RANGE`, below the ephemeral ranges (Linux 32768-60999, Windows 49152-65535),
so our own outgoing connections (SSH forwards among them) cannot take the port first.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from llamasc.errors import SpawnError

log = logging.getLogger(__name__)

T = TypeVar("T")
PORT_RANGE = (20000, 32000)
BIND_RETRIES = 2  # starts again on another port at most this often


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could bind ``host:port`` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        if sys.platform != "win32":
            # ignore TIME_WAIT leftovers like llama-server's own listener does; on Windows
            # this option would let us bind over a live listener, so leave it off there
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                log.debug("port %d on %s unusable: %s", port, host, exc)
            return False
    return True


def pick_free_port(
    is_free: Callable[[int], bool] | None = None,
    *,
    where: str = "this machine",
    port_range: tuple[int, int] = PORT_RANGE,
    rng: random.Random | None = None,
    tries: int = 50,
) -> int:
    """A random port of ``port_range`` that ``is_free`` (default: bindable on loopback here).

    ``is_free`` is how to tell on another machine (an SSH probe of the remote port).
    """
    check = is_free or port_is_free
    pick = rng or random.Random()
    for _ in range(tries):
        port = pick.randrange(*port_range)
        if check(port):
            return port
    raise SpawnError(f"no free port found on {where} after {tries} tries")


async def retry_lost_port(
    start: Callable[[int], Awaitable[T]],
    port: int,
    next_port: Callable[[int], int],
    *,
    retries: int = BIND_RETRIES,
) -> T:
    """``await start(port)``; if the child lost ``port`` before binding it (``SpawnError``
    with ``lost_port``), ``next_port(port)`` gives another and it starts again, at most
    ``retries`` times. Any other failure is raised at once."""
    for attempt in range(retries + 1):
        try:
            return await start(port)
        except SpawnError as exc:
            if attempt == retries or not exc.lost_port:
                raise
            new_port = next_port(port)
            log.warning(
                "port %d was taken before llama-server could bind it; retrying on %d",
                port,
                new_port,
            )
            port = new_port
    raise AssertionError("unreachable")


__all__ = ["BIND_RETRIES", "PORT_RANGE", "pick_free_port", "port_is_free", "retry_lost_port"]
