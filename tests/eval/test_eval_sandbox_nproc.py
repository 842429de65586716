"""Concurrent sandboxes each get their own process limit: one that forks up to its limit and
holds it does not stop the others from forking."""

from __future__ import annotations

import asyncio
import sys
import time

import psutil
import pytest

from llamasc.eval.sandbox import SandboxLimits, run_program

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the full sandbox is Linux's")

NPROC = 24
# forks until the limit refuses, keeps every child alive, says so, then waits to be killed
HOG = """
import os, time
n = 0
while True:
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        time.sleep(120)
        os._exit(0)
    n += 1
print('HOLDING', n, flush=True)
time.sleep(120)
"""
# needs a few processes of its own
FORKER = """
import os
kids = []
for _ in range(6):
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    kids.append(pid)
for pid in kids:
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7
"""


def _hog_processes() -> int:
    """Processes of sandboxes started from our child script (forks keep its command line)."""
    count = 0
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(part.endswith("_child.py") for part in cmdline):
            count += 1
    return count


async def _scenario() -> tuple[list[str], list[str]]:
    hog_limits = SandboxLimits(timeout_s=120, cpu_seconds=60, nproc=NPROC, memory_bytes=256 << 20)
    hog = asyncio.create_task(run_program(HOG, hog_limits))
    # wait (with a deadline, not a sleep) until the hog holds about its whole allowance
    deadline = time.monotonic() + 60
    while _hog_processes() < NPROC and time.monotonic() < deadline:
        assert not hog.done(), (await hog).output_tail
        await asyncio.sleep(0.05)
    assert _hog_processes() >= NPROC, "the hog never reached its process limit"
    others_limits = SandboxLimits(timeout_s=60, cpu_seconds=20, nproc=NPROC)
    others = await asyncio.gather(*(run_program(FORKER, others_limits) for _ in range(3)))
    still_holding = not hog.done()
    hog.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hog
    assert still_holding, "the hog ended before the others ran"
    return [r.status for r in others], [r.detail + r.output_tail for r in others]


def test_each_concurrent_sandbox_has_its_own_process_limit() -> None:
    statuses, details = asyncio.run(_scenario())
    assert statuses == ["passed"] * 3, details
