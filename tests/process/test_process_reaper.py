"""State file and reaper: leftovers of a previous run die, unrelated processes never do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from process_helpers import alive, free_port, wait_until

from llamasc.process import ChildRecord, LaunchSpec, LlamaServer, StateFile, reap_leftovers
from llamasc.process.spec import build_argv


@pytest.fixture
def dead_daemon() -> dict[str, float]:
    """The identity of a daemon that has exited (a process we ran to completion)."""
    p = psutil.Popen([sys.executable, "-c", "pass"])
    info = {"pid": p.pid, "create_time": p.create_time()}
    p.wait()
    return info


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts as stand-ins for leftovers; all reaped at teardown."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def leftover(spec: LaunchSpec, spawned: list[subprocess.Popen[bytes]]) -> ChildRecord:
    """A llama-server (fake) started the way llamasc starts one, outside any LlamaServer."""
    argv = build_argv(spec)
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=sys.platform != "win32",
    )
    spawned.append(proc)
    # Wait for the wrapper's exec of the fake itself: the record must describe the running
    # program, and a reaper that reads /proc while the exec is under way sees an empty command
    # line (this test's flake on a busy machine: the wrapper's line already ended in the port).
    assert wait_until(lambda: _runs_the_fake(proc.pid, spec.port), 30)
    return ChildRecord.of(proc.pid, psutil.Process(proc.pid).create_time(), spec.port, "k", argv)


def _runs_the_fake(pid: int, port: int) -> bool:
    cmdline = psutil.Process(pid).cmdline()
    return bool(cmdline) and cmdline[-1] == str(port) and "fake_llama_server" in " ".join(cmdline)


def write_state(path: Path, daemon: dict[str, float], records: list[ChildRecord]) -> None:
    children = [r.__dict__ for r in records]
    path.write_text(json.dumps({"version": 1, "daemon": daemon, "children": children}))


def test_state_file_mirrors_children_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state" / "children.json"
    state = StateFile(path)
    a = ChildRecord.of(101, 1.5, 8501, "key-a", ["llama-server", "-m", "a.gguf"])
    b = ChildRecord.of(102, 2.5, 8502, "key-b", ["llama-server", "-m", "b.gguf"])
    state.add_record(a)
    state.add_record(b)
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert data["daemon"]["pid"] == os.getpid()
    assert [ChildRecord.from_json(c) for c in data["children"]] == [a, b]
    state.remove(101)
    state.remove(999)  # unknown: ignored
    assert [c["pid"] for c in json.loads(path.read_text())["children"]] == [102]
    state.clear()
    assert json.loads(path.read_text())["children"] == []
    assert sorted(p.name for p in path.parent.iterdir()) == ["children.json"]  # no temp files


async def _start_and_record(spec: LaunchSpec, state: StateFile) -> LlamaServer:
    server = await LlamaServer.start(spec)
    state.add(server, "the-key")
    return server


@pytest.mark.anyio
async def test_state_file_records_a_real_child(
    fake_spec: Callable[..., LaunchSpec], tmp_path: Path
) -> None:
    state = StateFile(tmp_path / "children.json")
    server = await _start_and_record(fake_spec(), state)
    try:
        (record,) = state.records()
        assert record.pid == server.pid
        assert record.port == server.port
        assert record.key == "the-key"
        assert record.live_process() is not None  # our own child matches its record
    finally:
        await server.stop()
    assert record.live_process() is None  # gone


def test_reaper_kills_a_matching_leftover(
    tmp_path: Path,
    fake_llama_server_bin: Path,
    dead_daemon: dict[str, float],
    spawned: list[subprocess.Popen[bytes]],
) -> None:
    spec = LaunchSpec(fake_llama_server_bin, tmp_path / "m.gguf", ("-c", "512"), free_port())
    record = leftover(spec, spawned)
    path = tmp_path / "children.json"
    write_state(path, dead_daemon, [record])
    assert reap_leftovers(path, grace=2.0) == [record.pid]
    assert wait_until(lambda: not alive(record.pid), 2.0)
    assert not path.exists()
    assert reap_leftovers(path) == []  # nothing left to do


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux boot-time clock")
def test_reaper_kills_a_leftover_after_the_wall_clock_stepped(
    tmp_path: Path,
    fake_llama_server_bin: Path,
    dead_daemon: dict[str, float],
    spawned: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """psutil's creation times are boot time + start ticks, and the kernel's boot time moves
    when the wall clock is stepped (NTP after a suspend or a VM restore): the leftover must
    still be recognised by its creation time since boot."""
    spec = LaunchSpec(fake_llama_server_bin, tmp_path / "m.gguf", ("-c", "512"), free_port())
    record = leftover(spec, spawned)
    path = tmp_path / "children.json"
    write_state(path, dead_daemon, [record])
    import psutil._pslinux as pslinux

    stepped = pslinux.boot_time() + 2.0
    monkeypatch.setattr(pslinux, "boot_time", lambda: stepped)
    assert psutil.Process(record.pid).create_time() - record.create_time > 1.0  # it moved
    assert reap_leftovers(path, grace=2.0) == [record.pid]
    assert wait_until(lambda: not alive(record.pid), 2.0)


def test_reaper_never_touches_unrelated_processes(
    tmp_path: Path,
    fake_llama_server_bin: Path,
    dead_daemon: dict[str, float],
    spawned: list[subprocess.Popen[bytes]],
) -> None:
    spec = LaunchSpec(fake_llama_server_bin, tmp_path / "m.gguf", (), free_port())
    argv = build_argv(spec)
    # 1. a live process with the recorded pid and creation time, but another command line
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    spawned.append(sleeper)
    sleeper_ct = psutil.Process(sleeper.pid).create_time()
    other_cmdline = ChildRecord.of(sleeper.pid, sleeper_ct, spec.port, "k", argv)
    # 2. the right program and arguments, but created at another time (a reused pid)
    real = leftover(spec, spawned)
    reused_pid = ChildRecord(**{**real.__dict__, "create_time": real.create_time - 60})
    # 3. a pid that does not exist any more
    gone = ChildRecord(**{**real.__dict__, "pid": dead_daemon["pid"]})
    path = tmp_path / "children.json"
    write_state(path, dead_daemon, [other_cmdline, reused_pid, gone])
    assert reap_leftovers(path, grace=0.5) == []
    assert alive(sleeper.pid)
    assert alive(real.pid)


def test_reaper_leaves_a_running_daemons_children_alone(
    tmp_path: Path, fake_llama_server_bin: Path, spawned: list[subprocess.Popen[bytes]]
) -> None:
    spec = LaunchSpec(fake_llama_server_bin, tmp_path / "m.gguf", (), free_port())
    record = leftover(spec, spawned)
    me = psutil.Process()
    path = tmp_path / "children.json"
    write_state(path, {"pid": me.pid, "create_time": me.create_time()}, [record])
    assert reap_leftovers(path) == []
    assert alive(record.pid)
    assert path.exists()


@pytest.mark.parametrize(
    "content",
    ["", "not json", "[]", '{"version": 99, "children": []}', '{"version": 1, "children": [{}]}'],
)
def test_reaper_shrugs_off_unusable_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "children.json"
    path.write_text(content)
    assert reap_leftovers(path) == []


def test_reaper_without_a_file(tmp_path: Path) -> None:
    assert reap_leftovers(tmp_path / "missing.json") == []
