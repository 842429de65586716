"""LlamaServer against the fake llama-server: real processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import psutil
import pytest
from process_helpers import alive, free_port, wait_until

from llamasc.errors import ReadinessTimeoutError, SpawnError
from llamasc.process import LaunchSpec, LlamaServer

pytestmark = pytest.mark.anyio
MakeSpec = Callable[..., LaunchSpec]


async def props(server: LlamaServer) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=server.base_url) as c:
        data: dict[str, object] = (await c.get("/props")).json()
        return data


async def test_ready_right_after_the_fake_says_so(fake_spec: MakeSpec) -> None:
    server = await LlamaServer.start(fake_spec("--fake-load-delay", "0.5"))
    try:
        fake = (await props(server))["fake"]
        assert isinstance(fake, dict)
        assert server.ready_at is not None
        # Typically a few ms: the readiness line wakes the prober at once.
        assert 0 <= server.ready_at - fake["ready_at"] < 0.5
        assert server.ready_at - server.started_at >= 0.5
        assert fake["pid"] == server.pid
        assert server.returncode is None
        assert await server.check_health()
        # the output thread may read the line a moment after /health said 200
        assert wait_until(lambda: any("listening on" in line for line in server.tail()), 10)
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        assert abs(server.create_time - psutil.Process(server.pid).create_time()) < 0.01
        if sys.platform != "win32":
            assert os.getpgid(server.pid) == server.pid  # leads its own group
    finally:
        assert await server.stop() == 0
    assert not alive(server.pid)
    assert not await server.check_health(timeout=0.5)


async def test_ready_from_health_alone_when_logs_are_off(fake_spec: MakeSpec) -> None:
    server = await LlamaServer.start(fake_spec("--log-disable"))
    try:
        assert server.tail() == []
        assert await server.check_health()
    finally:
        await server.stop()


async def test_crash_on_start_is_a_spawn_error_with_the_cause(fake_spec: MakeSpec) -> None:
    with pytest.raises(SpawnError) as err:
        await LlamaServer.start(fake_spec("--fake-crash-on-start"))
    e = err.value
    assert e.returncode == 1
    assert str(e).startswith("llama-server exited with code 1 before it was ready: ")
    assert "llama_model_load: error loading model: fake: failed to load model" in str(e)
    assert e.stderr_tail[-1].endswith("exiting due to model loading error")
    assert 1 < len(e.stderr_tail) <= 20


async def test_bind_failure_is_a_spawn_error(fake_spec: MakeSpec) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(SpawnError, match="couldn't bind HTTP server socket") as err:
            await LlamaServer.start(fake_spec(port=port))
    assert err.value.returncode == 1


async def test_a_healthy_squatter_is_not_mistaken_for_our_child(
    fake_spec: MakeSpec, fake_llama_server_bin: Path
) -> None:
    """Another llama-server on our port answers /health 200; ours fails to bind."""
    other = await LlamaServer.start(fake_spec())
    try:
        with pytest.raises(SpawnError, match="couldn't bind"):
            await LlamaServer.start(fake_spec(port=other.port))
    finally:
        await other.stop()


async def test_hang_times_out_and_the_child_is_gone(fake_spec: MakeSpec) -> None:
    seen: list[int] = []
    spec = fake_spec("--fake-hang")
    t0 = time.monotonic()
    with pytest.raises(ReadinessTimeoutError) as err:
        await LlamaServer.start(spec, ready_timeout=0.5, on_line=lambda _: seen.append(1))
    assert 0.5 <= time.monotonic() - t0 < 5
    assert f"port {spec.port} was not ready after 0.5s" in str(err.value)
    assert any("loading model" in d for d in err.value.details)
    assert seen  # the child did talk
    assert not wait_until(lambda: _port_open(spec.port), 0.1)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_stop_escalates_to_kill_within_grace(fake_spec: MakeSpec) -> None:
    server = await LlamaServer.start(fake_spec("--fake-ignore-sigterm"))
    t0 = time.monotonic()
    rc = await server.stop(grace=0.3)
    took = time.monotonic() - t0
    assert rc == (-9 if sys.platform != "win32" else 1)
    assert 0.3 <= took < 3
    assert not alive(server.pid)


async def test_stop_is_idempotent_and_concurrent_safe(fake_spec: MakeSpec) -> None:
    server = await LlamaServer.start(fake_spec())
    first, second = await asyncio.gather(server.stop(), server.stop())
    assert first == second == 0
    assert await server.stop() == 0
    assert await server.wait() == 0


async def test_cancelling_start_kills_the_child(fake_spec: MakeSpec) -> None:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    loading = asyncio.Event()

    def on_line(line: str) -> None:
        if "loading model" in line:
            loading.set()

    task = asyncio.ensure_future(LlamaServer.start(fake_spec("--fake-hang"), on_line=on_line))
    await asyncio.wait_for(loading.wait(), 10)
    child = next(p for p in me.children(recursive=True) if p.pid not in before)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not alive(child.pid)  # gone (and reaped) by the time the cancellation lands


async def test_child_environment_is_scrubbed(
    fake_spec: MakeSpec, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    for name, value in {
        "LLAMA_ARG_PORT": "1",
        "LLAMA_ARG_CTX_SIZE": "99",
        "LLAMA_API_KEY": "leaked",
        "HF_TOKEN": "leaked",
        "AIP_MODE": "PREDICTION",
        "LLAMA_SERVER_ROUTER_PORT": "1",
        "XDG_CONFIG_HOME": str(isolated_env / "user-config"),
    }.items():
        monkeypatch.setenv(name, value)
    server = await LlamaServer.start(fake_spec(env={"CUDA_VISIBLE_DEVICES": "3"}))
    try:
        fake = (await props(server))["fake"]
        assert isinstance(fake, dict)
        env = fake["env"]
        for name in ("LLAMA_ARG_PORT", "LLAMA_ARG_CTX_SIZE", "LLAMA_API_KEY", "HF_TOKEN"):
            assert name not in env
        assert "AIP_MODE" not in env
        assert "LLAMA_SERVER_ROUTER_PORT" not in env
        assert env["CUDA_VISIBLE_DEVICES"] == "3"
        assert env["NO_COLOR"] == "1"
        config_home = Path(env["XDG_CONFIG_HOME"])
        assert config_home.is_relative_to(isolated_env / "home")
        assert list(config_home.iterdir()) == []
        async with httpx.AsyncClient(base_url=server.base_url) as c:
            # LLAMA_API_KEY would have locked the API: it did not reach the child.
            assert (await c.get("/v1/models")).status_code == 200
    finally:
        await server.stop()


def _last_line_ends(server: LlamaServer, text: str) -> bool:
    last = server.tail(1)
    return bool(last) and last[0].endswith(text)


async def test_ring_buffer_and_log_file(fake_spec: MakeSpec, tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "sidecar.log"
    spec = fake_spec(ring_lines=3, log_file=log_file)
    for _ in range(2):
        server = await LlamaServer.start(spec)
        # ready is /health's 200: the output thread may read the lines a moment later
        assert wait_until(partial(_last_line_ends, server, f"listening on {server.base_url}"), 10)
        assert len(server.tail(50)) == 3
        await server.stop()
    text = log_file.read_text(encoding="utf-8")
    assert text.count("--- llamasc ") == 2  # appended, one header per start
    assert text.count("listening on") == 2
    assert text.count("cleaning up before exit") == 2  # drained to the very end


async def test_on_line_runs_in_the_loop_thread(fake_spec: MakeSpec) -> None:
    threads: set[int] = set()
    lines: list[str] = []

    def on_line(line: str) -> None:
        threads.add(threading.get_ident())
        lines.append(line)

    server = await LlamaServer.start(fake_spec(), on_line=on_line)
    await server.stop()
    assert threads == {threading.get_ident()}
    assert any("loading model" in line for line in lines)


async def test_on_line_errors_do_not_break_the_child(
    fake_spec: MakeSpec, caplog: pytest.LogCaptureFixture
) -> None:
    def bad(line: str) -> None:
        raise ValueError("boom")

    server = await LlamaServer.start(fake_spec(), on_line=bad)
    assert await server.check_health()
    await server.stop()
    assert "on_line callback failed" in caplog.text


async def test_an_exit_after_ready_is_observed(fake_spec: MakeSpec) -> None:
    server = await LlamaServer.start(fake_spec("--fake-crash-after-requests", "1"))
    async with httpx.AsyncClient(base_url=server.base_url) as c:
        r = await c.post("/v1/chat/completions", json={"messages": [], "max_tokens": 1})
        assert r.status_code == 200
    rc = await asyncio.wait_for(server.wait(), 10)
    assert rc == (-9 if sys.platform != "win32" else 137)
    assert server.returncode == rc
    assert not await server.check_health(timeout=0.5)
    assert await server.stop() == rc


async def test_missing_binary_is_a_spawn_error(tmp_path: Path) -> None:
    spec = LaunchSpec(tmp_path / "no-such-llama-server", tmp_path / "m.gguf", (), free_port())
    with pytest.raises(SpawnError, match="cannot run llama-server"):
        await LlamaServer.start(spec)


async def test_grandchildren_die_with_the_group(
    tmp_path: Path, fake_llama_server_bin: Path
) -> None:
    """A wrapper that forks (no exec) must not leave the real server running after stop."""
    if sys.platform == "win32":
        pytest.skip("POSIX process groups")
    wrapper = tmp_path / "forking-wrapper"
    wrapper.write_text(f'#!/bin/sh\n"{fake_llama_server_bin}" "$@"\n')
    wrapper.chmod(0o755)
    spec = LaunchSpec(wrapper, tmp_path / "m.gguf", (), free_port())
    server = await LlamaServer.start(spec)
    inner = psutil.Process(server.pid).children(recursive=True)
    assert inner  # the wrapper's child is the one listening
    await server.stop(grace=2)
    assert wait_until(lambda: not any(alive(p.pid) for p in inner), 2.0)
