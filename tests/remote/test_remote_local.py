"""The local launcher (``--host localhost``) with our fake llama-server."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import psutil
import pytest

from llamasc.errors import RemoteError, SpawnError
from llamasc.remote.launch import LaunchSpec
from llamasc.remote.local import LocalLauncher

FAKE = Path(__file__).resolve().parent.parent / "fakes" / "fake_llama_server.py"


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    exe = tmp_path / "bin" / "llama-server"
    exe.parent.mkdir()
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_start_stop_and_state_dir(binary: Path, tmp_path: Path) -> None:
    launcher = LocalLauncher(tmp_path / "state", stop_timeout=2)
    server = launcher.start(LaunchSpec(str(binary), ("-m", "x.gguf"), {"A": "1"}), timeout=20)
    meta = json.loads((Path(server.workdir) / "launch.json").read_text())
    assert meta["argv"] == server.argv
    assert launcher.alive(server) is True
    launcher.stop(server)
    assert server.pid is not None
    assert _gone(server.pid)
    assert launcher.alive(server) is False
    assert list((tmp_path / "state").iterdir()) == []


def test_early_exit_is_a_spawn_error(
    binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_CRASH_ON_START", "1")
    launcher = LocalLauncher(tmp_path / "state")
    with pytest.raises(SpawnError, match="exited with code 1") as info:
        launcher.start(LaunchSpec(str(binary), ("-m", "x.gguf")), timeout=20)
    assert "exiting due to model loading error" in info.value.stderr_tail[-1]


def test_orphans_of_a_dead_bench_are_reaped(binary: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    launcher = LocalLauncher(state, stop_timeout=2)
    server = launcher.start(LaunchSpec(str(binary), ("-m", "x.gguf")), timeout=20)
    assert launcher.reap_stale() == []
    meta_path = Path(server.workdir) / "launch.json"
    meta = json.loads(meta_path.read_text())
    meta["owner"]["pid"] = 0
    meta_path.write_text(json.dumps(meta))
    assert LocalLauncher(state).reap_stale() == [server.launch_id]
    assert server.pid is not None
    assert _gone(server.pid)
    launcher.stop(server)


def test_version_of_a_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match="cannot run"):
        LocalLauncher(tmp_path).version(str(tmp_path / "nope"))
