"""200 distinct flag sets at once against MAX_SIDECARS=2: never more than 2 children, every
request answered 200 or 503, and no file descriptor left behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections import Counter
from pathlib import Path

import httpx
import psutil
import pytest
from server_fakes import DaemonFactory, chat, wait_until

FLAG_SETS = 200


def _fake_children(ignore: frozenset[int] = frozenset()) -> int:
    n = 0
    for p in psutil.Process().children(recursive=True):
        try:
            if p.pid not in ignore and any("fake_llama_server" in a for a in p.cmdline()):
                n += 1
        except psutil.Error:
            continue
    return n


def _fds() -> dict[str, str]:
    out = {}
    for f in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the fd of listdir itself is gone by now
            out[f] = os.readlink(f"/proc/self/fd/{f}")
    return out


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="counts /proc/self/fd")
def test_hammer_distinct_flag_sets(daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    others = frozenset(p.pid for p in psutil.Process().children(recursive=True))
    d = daemon_factory(max_sidecars="2", queue_timeout="1.5")
    # steady state first: one request through and its sidecar stopped again
    assert httpx.post(d.url + "/v1/chat/completions", json=chat("m1"), timeout=30).is_success
    assert httpx.delete(d.url + "/sidecars", params={"all": "1"}, timeout=30).is_success
    fds_before = _fd_count()
    most = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, _fake_children(others))
            stop.wait(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    async def hammer() -> Counter[int]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=d.url, timeout=60, limits=limits) as c:

            async def one(i: int) -> int:
                r = await c.post(
                    "/v1/chat/completions",
                    json=chat("m1" if i % 2 else "m2", 2),
                    headers={"X-Agent-Flags": f"--top-k {i + 1}"},
                )
                if r.status_code == 503:
                    assert r.json()["error"]["code"] == "capacity"
                    assert "retry-after" in r.headers
                return r.status_code

            return Counter(await asyncio.gather(*(one(i) for i in range(FLAG_SETS))))

    try:
        statuses = asyncio.run(hammer())
    finally:
        stop.set()
        watcher.join(5)
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] >= 2
    assert 1 <= most <= 2
    assert len(d.sidecars()) <= 2
    # with every sidecar stopped, no connection to any of them may stay open
    assert httpx.delete(d.url + "/sidecars", params={"all": "1"}, timeout=30).is_success
    wait_until(lambda: _fd_count() <= fds_before, 5, f"fds back to {fds_before}: {_fds()}")
    d.stop()
    assert _fake_children(others) == 0
