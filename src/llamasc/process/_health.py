"""Asking a child whether it is ready, and whether the port is really its own.

The probe is a bare HTTP/1.1 GET over asyncio streams: it runs on any event loop
(including the selector loop uvicorn uses on Windows), costs well under a millisecond on
loopback, and keeps httpx out of the process layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psutil

log = logging.getLogger(__name__)


async def probe_health(host: str, port: int, limit: float, path: str = "/health") -> int | None:
    """The HTTP status of ``GET path``, or None if nothing answered within ``limit`` seconds."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_connection(host, port)
            hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n".encode()
            )
            status_line = await reader.readline()
    except (OSError, TimeoutError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await writer.wait_closed()
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
        return None
    try:
        return int(parts[1])
    except ValueError:
        return None


def port_owned_by(pid: int, port: int) -> bool | None:
    """Whether ``pid`` (or one of its descendants) listens on TCP ``port``; None: cannot tell.

    Used when a child answers /health but never printed its readiness line: another
    process could be squatting the port while our child fails to bind it.
    """
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        for proc in procs:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                    return True
    except psutil.NoSuchProcess:
        return False
    except (psutil.Error, OSError) as exc:
        log.debug("cannot inspect the sockets of pid %d: %s", pid, exc)
        return None
    return False
