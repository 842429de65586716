"""A child that stops answering (SIGSTOP) costs its clients the upstream timeouts, not
minutes: 504 before the answer, an SSE error event mid-stream, and the child is replaced."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from server_fakes import DaemonFactory, ThreadDaemon, chat

from llamasc.config.settings import settings_from_sources

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGSTOP is POSIX")

DEADLINE = 30.0


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def warm(d: ThreadDaemon, c: httpx.Client) -> int:
    r = c.post("/v1/chat/completions", json=chat("m1"))
    assert r.status_code == 200, r.text
    (sidecar,) = d.sidecars()
    return int(sidecar["pid"])


def test_defaults_suit_slow_prefills() -> None:
    s = settings_from_sources(env={})
    assert (s.upstream_first_byte_timeout, s.upstream_idle_timeout) == (600.0, 120.0)
    s = settings_from_sources(env={"LLAMASC_UPSTREAM_IDLE_TIMEOUT": "5"})
    assert s.upstream_idle_timeout == 5.0


def test_a_hung_child_is_a_504_then_replaced(
    daemon_factory: DaemonFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    d = daemon_factory(upstream_first_byte_timeout="1", health_interval="600")
    with httpx.Client(base_url=d.url, timeout=DEADLINE) as c:
        pid = warm(d, c)
        with stopped(pid):
            for n in (1, 2, 3):  # the pool's default: 3 failed checks replace a child
                t0 = time.monotonic()
                r = c.post("/v1/chat/completions", json=chat("m1"))
                assert r.status_code == 504, r.text
                assert r.json()["error"]["code"] == "upstream_timeout"
                assert "first byte" in r.json()["error"]["message"]
                assert time.monotonic() - t0 < DEADLINE / 2
                assert f"timed out answering a request, health check {n}/3" in caplog.text
        deadline = time.monotonic() + DEADLINE
        while True:  # replaced by a new child, without waiting for the health loop
            r = c.post("/v1/chat/completions", json=chat("m1"))
            pids = {s["pid"] for s in d.sidecars()}
            if r.status_code == 200 and pid not in pids:
                break
            assert time.monotonic() < deadline, (r.status_code, pids)
            time.sleep(0.05)


def test_a_stream_that_goes_silent_ends_with_an_sse_error_event(
    daemon_factory: DaemonFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_TOKEN_DELAY", "0.1")
    monkeypatch.setenv("FAKE_LLAMA_CHUNKS", "200")
    d = daemon_factory(upstream_idle_timeout="1", health_interval="600")
    with httpx.Client(base_url=d.url, timeout=DEADLINE) as c:
        pid = warm(d, c)
        body = chat("m1", max_tokens=200, stream=True)
        with c.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            first = next(ln for ln in lines if ln.startswith("data: "))
            assert "choices" in first
            t0 = time.monotonic()
            with stopped(pid):
                events = [ln[6:] for ln in lines if ln.startswith("data: ")]
            assert time.monotonic() - t0 < DEADLINE / 2
    error = json.loads(events[-1])["error"]
    assert error["code"] == "upstream_timeout"
    assert "silence" in error["message"]
