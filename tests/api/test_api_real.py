"""llamasc.load / aload / connect with the real llama-server and SmolLM2-135M."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

import llamasc
from free_ports import free_port_block
from llamasc.config.settings import settings_from_sources
from llamasc.errors import FlagError, SidecarExitedError
from llamasc.server import Daemon

pytestmark = pytest.mark.real

FLAGS = "-c 4096 -np 2 -t 2"
HI = [{"role": "user", "content": "Say hello."}]


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(scope="module")
def model(llama_server_bin: Path, smollm2_path: Path) -> Iterator[llamasc.Model]:
    with llamasc.load(smollm2_path, flags=FLAGS, binary=llama_server_bin) as m:
        yield m


_http = httpx.Client(timeout=10)


@pytest.fixture(scope="module", autouse=True)
def _close_http() -> Iterator[None]:
    yield
    _http.close()


def slots(m: llamasc.Model) -> list[dict[str, Any]]:
    return list(_http.get(m.base_url + "/slots").json())


def busy(m: llamasc.Model) -> int:
    return sum(bool(s["is_processing"]) for s in slots(m))


def test_generate_and_chat_return_completions_with_timings(model: llamasc.Model) -> None:
    done = model.generate("The capital of France is", max_tokens=8, temperature=0)
    assert done.text
    assert done.finish_reason in ("length", "stop")
    assert done.timings.decode_tokens is not None
    assert done.timings.decode_tokens > 0
    assert done.timings.decode_tokens_per_second
    assert done.timings.decode_tokens_per_second > 0
    reply = model.chat(HI, max_tokens=8, seed=1)
    assert reply.text
    assert reply.usage.get("completion_tokens", 0) > 0
    assert reply.model == "SmolLM2-135M-Instruct.Q4_1"  # the alias llamasc gave it


def test_streams_yield_pieces_that_add_up_to_the_completion(model: llamasc.Model) -> None:
    stream = model.chat_stream(HI, max_tokens=12, temperature=0)
    pieces = list(stream)
    assert len(pieces) > 1
    assert stream.completion is not None
    assert "".join(pieces) == stream.completion.text
    assert stream.completion.timings.decode_tokens_per_second
    again = model.generate_stream("1, 2, 3,", max_tokens=6, temperature=0, stop=["\n"])
    assert "".join(again).strip()


def test_breaking_out_of_a_stream_frees_the_slot_at_once(model: llamasc.Model) -> None:
    speed = model.generate("Once upon a time", max_tokens=32, temperature=0, ignore_eos=True)
    tps = speed.timings.decode_tokens_per_second
    assert tps
    max_tokens = 1500
    full_generation_s = max_tokens / tps
    prompt = "Once upon a time"
    for i, _ in enumerate(model.generate_stream(prompt, max_tokens=max_tokens, ignore_eos=True)):
        if i == 3:
            break
    broke_at = time.monotonic()
    wait_until(lambda: busy(model) == 0, max(10.0, full_generation_s), "the slot to be idle")
    assert time.monotonic() - broke_at < full_generation_s / 2
    # the same for a stream left with `with`, however it is referred to
    with model.chat_stream(HI, max_tokens=max_tokens, ignore_eos=True) as stream:
        assert next(stream)
        wait_until(lambda: busy(model) == 1, 30, "the slot to be busy")
    broke_at = time.monotonic()
    wait_until(lambda: busy(model) == 0, max(10.0, full_generation_s), "the slot to be idle")
    assert time.monotonic() - broke_at < full_generation_s / 2


def test_two_threads_generate_at_once(model: llamasc.Model) -> None:
    processing_seen = threading.Event()
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            results[name] = "".join(
                model.generate_stream("Count: 1, 2,", max_tokens=40, ignore_eos=True)
            )
        except BaseException as exc:
            errors.append(exc)

    def watch() -> None:  # both slots busy at the same moment = generated at once
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(results) < 2:
            if busy(model) == 2:
                processing_seen.set()
                return
            time.sleep(0.01)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    watcher = threading.Thread(target=watch)
    for t in (*threads, watcher):
        t.start()
    for t in (*threads, watcher):
        t.join(300)  # generous: CI machines can be slow and busy
    assert not errors
    assert results["a"]
    assert results["b"]
    assert processing_seen.is_set()


def test_kill_mid_stream_raises_the_exit_and_close_leaves_nothing(
    llama_server_bin: Path, smollm2_path: Path
) -> None:
    m = llamasc.load(smollm2_path, flags="-c 2048 -np 1 -t 2", binary=llama_server_bin)
    pid = m.pid
    assert pid is not None
    assert psutil.pid_exists(pid)
    stream = m.generate_stream("Once", max_tokens=2000, ignore_eos=True)
    assert next(stream)
    assert next(stream)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(SidecarExitedError) as err:
        stream.collect()
    assert err.value.returncode == -signal.SIGKILL
    assert "SIGKILL" in str(err.value)
    assert f"pid {pid}" in str(err.value)
    assert err.value.stderr_tail  # llama-server's last lines
    assert m.error is err.value
    with pytest.raises(SidecarExitedError):  # and it says so at once from then on
        m.chat(HI, max_tokens=2)
    m.close()
    assert gone(pid)


def test_close_stops_the_child_and_its_loop_thread(
    llama_server_bin: Path, smollm2_path: Path
) -> None:
    before = {t.ident for t in threading.enumerate()}
    with llamasc.load(smollm2_path, flags="-c 512 -np 1 -t 2", binary=llama_server_bin) as m:
        pid = m.pid
        assert pid is not None
        assert m.chat("Hi", max_tokens=2).text is not None
    assert gone(pid)
    assert not any(
        c.pid == pid for c in psutil.Process().children(recursive=True) if c.is_running()
    )
    wait_until(
        lambda: {t.ident for t in threading.enumerate()} <= before,
        timeout=10,
        what="the model's threads to end",
    )


def test_bad_flags_raise_one_flag_error(smollm2_path: Path) -> None:
    with pytest.raises(FlagError) as err:
        llamasc.load(smollm2_path, flags="--port 9 -c nope --top-k 20")
    assert len(err.value.details) == 2


def test_aload_streams_and_cancelling_the_task_frees_the_slot(
    llama_server_bin: Path, smollm2_path: Path
) -> None:
    async def main() -> None:
        async with llamasc.aload(smollm2_path, flags=FLAGS, binary=llama_server_bin) as m:
            pieces = [p async for p in m.chat_stream(HI, max_tokens=8)]
            assert pieces
            got: list[str] = []

            async def consume() -> None:
                async for piece in m.generate_stream("Once", max_tokens=1500, ignore_eos=True):
                    got.append(piece)

            task = asyncio.create_task(consume())
            async with asyncio.timeout(60):
                while len(got) < 3:
                    await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with httpx.AsyncClient(base_url=m.base_url, timeout=10) as http:
                async with asyncio.timeout(10):
                    while any(s["is_processing"] for s in (await http.get("/slots")).json()):
                        await asyncio.sleep(0.02)
            two = await asyncio.gather(m.chat("a", max_tokens=4), m.generate("b", max_tokens=4))
            assert all(c.finish_reason for c in two)
            pid = m.pid
        assert pid is not None
        assert gone(pid)

    asyncio.run(main())


def test_connect_to_a_real_daemon_with_flags(
    tmp_path: Path, llama_server_bin: Path, smollm2_path: Path, isolated_env: Path
) -> None:
    model_map = tmp_path / "models.json"
    model_map.write_text(json.dumps({"smol": str(smollm2_path)}))
    lo, hi = free_port_block(10)
    settings = settings_from_sources(
        env={},
        cli={
            "llama_server_bin": str(llama_server_bin),
            "model_map_file": str(model_map),
            "bind": "127.0.0.1:0",
            "port_range": f"{lo}-{hi}",
            "base_args": '["-c", "512", "-np", "1", "-t", "2"]',
            "home": str(tmp_path / "home"),
        },
    )
    ready = threading.Event()
    daemon = Daemon(settings, on_ready=lambda info: ready.set())

    def serve() -> None:
        with asyncio.Runner(loop_factory=daemon.uv_config.get_loop_factory()) as runner:
            runner.run(daemon.serve())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert ready.wait(30)
        with llamasc.connect(daemon.url + "/v1", model="smol", flags="--top-k 20") as m:
            reply = m.chat(HI, max_tokens=4)
            assert reply.text
            assert reply.finish_reason
            assert "".join(m.generate_stream("Hi", max_tokens=4))
        sidecars = httpx.get(daemon.url + "/sidecars", timeout=10).json()["sidecars"]
        assert len(sidecars) == 1
        assert "--top-k" in json.dumps(sidecars[0])
        with llamasc.connect(daemon.url, model="smol", flags="--port 1") as m:
            with pytest.raises(FlagError) as err:
                m.chat(HI, max_tokens=2)
            assert m.error is err.value
            assert err.value.details
    finally:
        daemon.stop()
        thread.join(30)
