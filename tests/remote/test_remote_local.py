"""The local launcher (``--host localhost``) with our fake llama-server."""

from __future__ import annotations

import json
import stat
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from llamasc.errors import RemoteError, SpawnError
from llamasc.process.spec import LaunchSpec
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


def _spec(binary: Path, env: dict[str, str] | None = None, **kw: object) -> LaunchSpec:
    return LaunchSpec(binary, Path("x.gguf"), (), env=env or {}, **kw)  # type: ignore[arg-type]


def test_start_stop_and_state_dir(binary: Path, tmp_path: Path) -> None:
    launcher = LocalLauncher(tmp_path / "state", stop_timeout=2)
    server = launcher.start(_spec(binary, {"A": "1"}), timeout=20)
    state = json.loads((tmp_path / "state" / f"{server.launch_id}.json").read_text())
    [record] = state["children"]
    assert (record["pid"], record["port"], record["key"]) == (
        server.pid,
        server.port,
        server.launch_id,
    )
    assert server.argv[-4:] == ["--host", "127.0.0.1", "--port", str(server.port)]
    assert (tmp_path / "state" / f"{server.launch_id}.log").is_file()
    assert launcher.alive(server) is True
    launcher.stop(server)
    assert server.pid is not None
    assert _gone(server.pid)
    assert launcher.alive(server) is False
    assert list((tmp_path / "state").iterdir()) == []
    launcher.close()


def test_a_local_launch_is_the_daemons_llamaserver(binary: Path, tmp_path: Path) -> None:
    """The same LlamaServer as the daemon's children: its own process group, and (Linux) a
    parent-death signal, spawned in the launcher's loop thread, which outlives the launch."""
    from llamasc.process import LlamaServer

    launcher = LocalLauncher(tmp_path / "state", stop_timeout=2)
    server = launcher.start(_spec(binary), timeout=20)
    try:
        assert isinstance(server.extra["child"], LlamaServer)
        assert server.pid is not None
        if sys.platform != "win32":
            import os

            assert os.getpgid(server.pid) == server.pid
    finally:
        launcher.stop(server)
        launcher.close()


def test_early_exit_is_a_spawn_error(
    binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_LLAMA_CRASH_ON_START", "1")
    launcher = LocalLauncher(tmp_path / "state")
    with pytest.raises(SpawnError, match="exited with code 1") as info:
        launcher.start(_spec(binary), timeout=20)
    assert any("exiting due to model loading error" in ln for ln in info.value.stderr_tail)
    assert list((tmp_path / "state").iterdir()) == []  # a failed start leaves nothing
    launcher.close()


def test_orphans_of_a_dead_bench_are_reaped(binary: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    launcher = LocalLauncher(state, stop_timeout=2)
    server = launcher.start(_spec(binary), timeout=20)
    assert launcher.reap_stale() == []  # our own live launch is not a leftover
    assert launcher.alive(server) is True
    state_path = state / f"{server.launch_id}.json"
    data = json.loads(state_path.read_text())
    data["daemon"]["pid"] = 0  # as if the bench that started it had been killed
    state_path.write_text(json.dumps(data))
    assert LocalLauncher(state).reap_stale() == [f"{server.launch_id} (pid {server.pid})"]
    assert server.pid is not None
    assert _gone(server.pid)
    assert list(state.iterdir()) == []
    launcher.stop(server)  # stopping what is already gone is fine
    launcher.close()


def test_version_of_a_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match="cannot run"):
        LocalLauncher(tmp_path).version(str(tmp_path / "nope"))


def test_a_local_launch_gets_the_daemons_environment_scrub(
    binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LLAMA_ARG_* in the user's shell would silently change what bench measures."""
    monkeypatch.setenv("LLAMASC_HOME", str(tmp_path / "home"))
    for name, value in {
        "LLAMA_ARG_CTX_SIZE": "64",
        "LLAMA_ARG_N_PARALLEL": "7",
        "LLAMA_ARG_SPEC_TYPE": "ngram-simple",
        "HF_TOKEN": "secret",
        "LLAMA_ARG_THREADS": "3",
    }.items():
        monkeypatch.setenv(name, value)
    launcher = LocalLauncher(tmp_path / "state", stop_timeout=2)
    spec = _spec(binary, {"A": "1"}, keep_env=("LLAMA_ARG_THREADS",))
    server = launcher.start(spec, timeout=20)
    try:
        with urllib.request.urlopen(f"{server.base_url}/props", timeout=10) as resp:
            env = json.load(resp)["fake"]["env"]
    finally:
        launcher.stop(server)
    assert not {"LLAMA_ARG_CTX_SIZE", "LLAMA_ARG_N_PARALLEL", "LLAMA_ARG_SPEC_TYPE"} & set(env)
    assert "HF_TOKEN" not in env
    assert env["LLAMA_ARG_THREADS"] == "3"  # --keep-env
    assert env["A"] == "1"
    assert Path(env["XDG_CONFIG_HOME"]).is_dir()  # the user's llama.cpp config.ini is not read


@pytest.mark.real
def test_the_real_server_of_a_local_bench_ignores_the_users_llama_arg_variables(
    llama_server_bin: Path, smollm2_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What llama-server itself reports (/props), with the user's shell full of LLAMA_ARG_*:
    the context, slots and alias are llama-server's defaults, not the shell's."""
    monkeypatch.setenv("LLAMASC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LLAMA_ARG_CTX_SIZE", "64")
    monkeypatch.setenv("LLAMA_ARG_N_PARALLEL", "7")
    monkeypatch.setenv("LLAMA_ARG_ALIAS", "hijacked")
    launcher = LocalLauncher(tmp_path / "state", stop_timeout=10)
    args = ("-c", "1024", "--no-warmup")
    server = launcher.start(LaunchSpec(llama_server_bin, smollm2_path, args), timeout=120)
    try:
        with urllib.request.urlopen(f"{server.base_url}/props", timeout=30) as resp:
            props = json.load(resp)
    finally:
        launcher.stop(server)
    assert props["default_generation_settings"]["n_ctx"] == 1024
    assert props["total_slots"] != 7
    assert props["model_alias"] != "hijacked"
