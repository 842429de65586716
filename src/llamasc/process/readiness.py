"""The one readiness rule for a llama-server, wherever it runs.

Ready means: ``GET /health`` answered 200 while the process had not exited (and, locally,
the port is really the child's own). Until then, look again after a short delay that backs
off, at once when something happened (a ready line was printed, the process exited), and
give up at the deadline. The daemon's children (:class:`~llamasc.process.LlamaServer`) and
the bench's remote servers (``remote/_base.py``) differ only in how they ask: a raw probe
on loopback or through an SSH forward, the exit code from the waiter thread or from the
wrapper's ``exit.txt``.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable

PROBE_TIMEOUT = 0.5


class Readiness(enum.Enum):
    READY = "ready"
    EXITED = "exited"
    TIMEOUT = "timeout"


async def wait_ready(
    *,
    exited: Callable[[], Awaitable[bool]],
    probe: Callable[[float], Awaitable[int | None]],
    timeout: float,  # noqa: ASYNC109 (a deadline for the whole wait, not one call)
    first: float,
    most: float,
    confirm: Callable[[], bool] = lambda: True,
    wake: asyncio.Event | None = None,
    probe_timeout: float = PROBE_TIMEOUT,
) -> Readiness:
    """Poll until ready, exited or ``timeout`` seconds passed; which one it was.

    ``exited()``: has the process ended? ``probe(limit)``: the status of ``GET /health``
    (None: no answer within ``limit``). ``confirm()``: after a 200, is it really ours?
    ``wake``: set by the caller when it is worth looking again at once. The delay between
    looks starts at ``first`` and doubles up to ``most``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = first
    while True:
        if wake is not None:
            wake.clear()
        if await exited():
            return Readiness.EXITED
        remaining = deadline - loop.time()
        status = await probe(min(probe_timeout, max(remaining, 0.01)))
        if status == 200 and confirm():
            return Readiness.READY
        remaining = deadline - loop.time()
        if remaining <= 0:
            return Readiness.TIMEOUT
        if wake is None:
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, most)
            continue
        try:
            async with asyncio.timeout(min(delay, remaining)):
                await wake.wait()
            delay = first  # something happened: look again at once
        except TimeoutError:
            delay = min(delay * 2, most)


__all__ = ["PROBE_TIMEOUT", "Readiness", "wait_ready"]
