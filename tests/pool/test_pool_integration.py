"""The Pool with real processes: LlamaServer running our fake llama-server on loopback."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from pool_fakes import free_block, until

from llamasc.config import ModelCatalog, ModelEntry
from llamasc.errors import SpawnError
from llamasc.pool import Pool, PoolConfig

pytestmark = pytest.mark.anyio


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture(autouse=True)
def _no_leaked_children(isolated_env: Path) -> Iterator[None]:
    """Every test runs with its own LLAMASC_HOME and must leave no child process behind."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    deadline = time.monotonic() + 3.0
    while True:
        leaked = [p for p in me.children(recursive=True) if p.pid not in before and alive(p.pid)]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    for p in leaked:
        p.kill()
    assert not leaked, f"leaked child processes: {[p.pid for p in leaked]}"


@pytest.fixture
def catalog(tmp_path: Path) -> ModelCatalog:
    return ModelCatalog.of(
        [
            ModelEntry("m1", tmp_path / "m1.gguf"),
            ModelEntry("m2", tmp_path / "m2.gguf"),
            ModelEntry("broken", tmp_path / "b.gguf", env={"FAKE_LLAMA_CRASH_ON_START": "1"}),
            ModelEntry("slow", tmp_path / "s.gguf", env={"FAKE_LLAMA_LOAD_DELAY": "60"}),
        ]
    )


def make_pool(binary: Path, catalog: ModelCatalog, **config: Any) -> Pool:
    config.setdefault("port_range", free_block(4))
    config.setdefault("health_interval", 0)
    config.setdefault("stop_grace", 3.0)
    config.setdefault("health_timeout", 20.0)
    return Pool(PoolConfig(**config), catalog, binary, ("-c", "512"))


async def props(base_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        r = await client.get(base_url + "/props", timeout=5)
        r.raise_for_status()
        fake: dict[str, Any] = r.json()["fake"]
        return fake


async def test_spawn_and_reuse(fake_llama_server_bin: Path, catalog: ModelCatalog) -> None:
    async with make_pool(fake_llama_server_bin, catalog) as pool:
        async with pool.lease("m1", ["--seed", "3"]) as lease:
            fake = await props(lease.base_url)
            assert fake["argv"][:4] == ["--ctx-size", "512", "--seed", "3"]
            assert fake["argv"][-2:] == ["--port", str(lease.port)]
            pid = fake["pid"]
        async with pool.lease("m1", ["--seed", "3"]) as again:
            assert (await props(again.base_url))["pid"] == pid
        [info] = pool.sidecars()
        assert info.pid == pid
        assert info.requests_served == 2
        assert pool.logs(info.hash[:8])  # the child's output ring
    assert not alive(pid)


async def test_swap_with_one_slot_stops_the_old_child_first(
    fake_llama_server_bin: Path, catalog: ModelCatalog
) -> None:
    async with make_pool(fake_llama_server_bin, catalog, max_sidecars=1) as pool:
        pids = []
        for model in ("m1", "m2", "m1"):
            async with pool.lease(model, []) as lease:
                pids.append((await props(lease.base_url))["pid"])
                # the previous child is gone before this one was even started
                assert [alive(p) for p in pids] == [False] * (len(pids) - 1) + [True]
                assert [s.model for s in pool.sidecars()] == [model]
    assert len(set(pids)) == 3


async def test_a_single_port_is_reused_only_after_the_old_child_exited(
    fake_llama_server_bin: Path, catalog: ModelCatalog
) -> None:
    lo, _ = free_block(1)
    async with make_pool(
        fake_llama_server_bin, catalog, max_sidecars=1, port_range=(lo, lo)
    ) as pool:
        for model in ("m1", "m2", "m1"):
            async with pool.lease(model, []) as lease:
                assert lease.port == lo
                assert (await props(lease.base_url))["argv"][-1] == str(lo)


async def test_a_port_in_use_by_someone_else_is_skipped(
    fake_llama_server_bin: Path, catalog: ModelCatalog
) -> None:
    lo, hi = free_block(2)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", lo))
        squatter.listen()
        pool = make_pool(fake_llama_server_bin, catalog, port_range=(lo, hi))
        async with pool, pool.lease("m1", []) as lease:
            assert lease.port == hi
            assert (await props(lease.base_url))["argv"][-1] == str(hi)


async def test_a_port_taken_between_the_check_and_the_bind_moves_to_another_port(
    fake_llama_server_bin: Path, catalog: ModelCatalog
) -> None:
    from llamasc.process import LaunchSpec, LlamaServer

    squatters: list[socket.socket] = []

    async def racing_launcher(spec: LaunchSpec, *, ready_timeout: float) -> LlamaServer:
        if not squatters:  # someone else grabs the port the pool just picked
            sq = socket.socket()
            sq.bind(("127.0.0.1", spec.port))
            sq.listen()
            squatters.append(sq)
        return await LlamaServer.start(spec, ready_timeout=ready_timeout)

    lo, hi = free_block(3)
    pool = Pool(
        PoolConfig(port_range=(lo, hi), health_interval=0, stop_grace=3.0, health_timeout=20.0),
        catalog,
        fake_llama_server_bin,
        ("-c", "512"),
        launcher=racing_launcher,
    )
    try:
        async with pool, pool.lease("m1", []) as lease:
            taken = squatters[0].getsockname()[1]
            assert lease.port != taken
            assert (await props(lease.base_url))["argv"][-1] == str(lease.port)
    finally:
        for sq in squatters:
            sq.close()


async def test_a_crashed_child_is_restarted_by_the_next_request(
    fake_llama_server_bin: Path, catalog: ModelCatalog
) -> None:
    async with make_pool(fake_llama_server_bin, catalog) as pool:
        async with pool.lease("m1", []) as lease:
            pid = (await props(lease.base_url))["pid"]
        psutil.Process(pid).kill()
        await until(lambda: pool.sidecars() == [], timeout=10)
        async with pool.lease("m1", []) as lease:
            new_pid = (await props(lease.base_url))["pid"]
        assert new_pid != pid
        assert pool.sidecars()[0].restarts == 1


async def test_a_child_that_cannot_load_fails_the_request_with_its_reason(
    fake_llama_server_bin: Path, catalog: ModelCatalog
) -> None:
    async with make_pool(fake_llama_server_bin, catalog, max_sidecars=1) as pool:
        with pytest.raises(SpawnError, match="failed to load model") as err:
            async with pool.lease("broken", []):
                pass
        assert err.value.returncode == 1
        assert pool.sidecars() == []
        async with pool.lease("m1", []):  # its slot and port are free again
            pass


async def test_close_leaves_no_child_and_the_state_file_empty(
    fake_llama_server_bin: Path, catalog: ModelCatalog, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    pool = make_pool(fake_llama_server_bin, catalog, max_sidecars=2, state_file=state)
    await pool.start()
    async with pool.lease("m1", []), pool.lease("m2", []):
        pass
    recorded = json.loads(state.read_text())["children"]
    pids = {s.pid for s in pool.sidecars()}
    assert {c["pid"] for c in recorded} == pids
    assert {c["port"] for c in recorded} == {s.port for s in pool.sidecars()}
    await pool.close()
    assert not any(alive(p) for p in pids if p is not None)
    assert json.loads(state.read_text())["children"] == []


async def test_stopping_a_loading_child_kills_it_without_waiting_for_the_load(
    fake_llama_server_bin: Path, catalog: ModelCatalog
) -> None:
    async with make_pool(fake_llama_server_bin, catalog, max_sidecars=1) as pool:

        async def use() -> None:
            async with pool.lease("slow", []):
                pass

        waiter = asyncio.create_task(use())
        await until(lambda: [s.state for s in pool.sidecars()] == ["starting"], timeout=10)
        [info] = pool.sidecars()
        await until(lambda: len(_children_on_port(info.port)) == 1, timeout=10)
        [proc] = _children_on_port(info.port)
        # the client gives up; the load goes on (nobody decided to stop it yet)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert [s.state for s in pool.sidecars()] == ["starting"]
        t0 = time.monotonic()
        stopped = await pool.stop_sidecar(info.hash)
        assert time.monotonic() - t0 < 30  # far below the 60 s load
        assert stopped.state == "stopped"
        assert pool.sidecars() == []
        await until(lambda: not alive(proc.pid), timeout=10)


def _children_on_port(port: int) -> list[psutil.Process]:
    """Our child processes started with ``--port <port>``."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            argv = child.cmdline()
        except psutil.Error:
            continue
        if any(a == "--port" and b == str(port) for a, b in itertools.pairwise(argv)):
            found.append(child)
    return found
