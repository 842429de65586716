"""The Linux launcher through the real sshd, with our fake llama-server: detached start,
survival of the SSH connection, stop (with SIGKILL escalation), orphan reaping."""

from __future__ import annotations

import dataclasses
import json
import random
import stat
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import httpx
import psutil
import pytest

from llamasc.errors import SpawnError
from llamasc.process.spec import LaunchSpec
from llamasc.remote.posix import PosixLauncher
from llamasc.remote.ssh import SSHOptions, SSHTransport
from sshd_fixture import ALIAS, POLLUTED_ENV, SshServer

pytestmark = pytest.mark.sshd
FAKE = Path(__file__).resolve().parent.parent / "fakes" / "fake_llama_server.py"


@pytest.fixture
def launcher(sshd: SshServer, tmp_path: Path) -> Iterator[PosixLauncher]:
    t = SSHTransport(SSHOptions(host=ALIAS, ssh_config=sshd.ssh_config))
    yield PosixLauncher(
        t, remote_dir=str(tmp_path / "remote dir"), stop_timeout=1.0, rng=random.Random()
    )
    t.close()


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    exe = tmp_path / "bin's dir" / "llama-server"
    exe.parent.mkdir()
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def _spec(binary: Path, tmp_path: Path, **env: str) -> LaunchSpec:
    model = tmp_path / 'my "model" $HOME `x`.gguf'
    model.write_bytes(b"GGUF")
    return LaunchSpec(
        binary=PurePosixPath(binary),
        model_path=PurePosixPath(model),
        args=("-c", "512"),
        env=env,
        label="m/off",
    )


def _props(base_url: str) -> dict:  # type: ignore[type-arg]
    return httpx.get(base_url + "/props", timeout=5, trust_env=False).json()  # type: ignore[no-any-return]


def test_start_passes_argv_and_env_intact_and_stop_leaves_nothing(
    launcher: PosixLauncher, binary: Path, tmp_path: Path
) -> None:
    spec = _spec(binary, tmp_path, SECRET_TOKEN="s3cr3t 'quoted' $x")
    server = launcher.start(spec, timeout=20)
    fake = _props(server.base_url)["fake"]
    assert fake["argv"] == server.argv[1:]
    assert server.argv == [
        str(binary),
        *spec.args,
        *("-m", str(spec.model_path), "--host", "127.0.0.1", "--port", str(server.port)),
    ]
    assert fake["env"]["SECRET_TOKEN"] == "s3cr3t 'quoted' $x"
    # the login environment's LLAMA_ARG_* and secrets (sshd's SetEnv) are scrubbed
    assert not set(POLLUTED_ENV) & set(fake["env"])
    assert fake["env"]["XDG_CONFIG_HOME"].startswith(server.workdir)
    proc = psutil.Process(server.pid)
    assert proc.cwd() == server.workdir
    # the secret is in the uploaded script's environment, never on a command line
    assert all("s3cr3t" not in " ".join(p.cmdline()) for p in [proc, *proc.parents()])
    assert launcher.alive(server) is True
    launcher.stop(server)
    assert not psutil.pid_exists(server.pid) or psutil.Process(server.pid).status() == "zombie"
    assert list(Path(launcher._remote_dir or "").iterdir()) == []


def test_server_outlives_the_ssh_connection(
    launcher: PosixLauncher, binary: Path, tmp_path: Path
) -> None:
    server = launcher.start(_spec(binary, tmp_path), timeout=20)
    transport = launcher.transport
    assert isinstance(transport, SSHTransport)
    transport.close()  # the session that started it is gone
    assert psutil.Process(server.pid).is_running()
    # the forward reconnects on the next connection; the server still answers
    assert launcher.alive(server) is True
    launcher.stop(server)


def test_a_server_ignoring_sigterm_is_killed(
    launcher: PosixLauncher, binary: Path, tmp_path: Path
) -> None:
    server = launcher.start(_spec(binary, tmp_path, FAKE_LLAMA_IGNORE_SIGTERM="1"), timeout=20)
    launcher.stop(server)
    assert not psutil.pid_exists(server.pid) or psutil.Process(server.pid).status() == "zombie"


def test_early_exit_raises_spawn_error_with_the_log_tail(
    launcher: PosixLauncher, binary: Path, tmp_path: Path
) -> None:
    with pytest.raises(SpawnError) as info:
        launcher.start(_spec(binary, tmp_path, FAKE_LLAMA_CRASH_ON_START="1"), timeout=20)
    assert info.value.returncode == 1
    assert info.value.stderr_tail[-1].endswith("exiting due to model loading error")
    assert list(Path(launcher._remote_dir or "").iterdir()) == []


def test_reap_stale_stops_an_orphan_of_a_dead_bench(
    launcher: PosixLauncher, binary: Path, tmp_path: Path
) -> None:
    server = launcher.start(_spec(binary, tmp_path), timeout=20)
    meta_path = Path(server.workdir) / "launch.json"
    assert launcher.reap_stale() == []  # its owner (this process) is alive: not an orphan
    meta = json.loads(meta_path.read_text())
    meta["owner"]["pid"] = 0  # as if the bench that started it had been killed
    meta_path.write_text(json.dumps(meta))
    assert launcher.reap_stale() == [server.launch_id]
    assert not psutil.pid_exists(server.pid) or psutil.Process(server.pid).status() == "zombie"
    assert not Path(server.workdir).exists()
    launcher.stop(server)  # stopping what is already gone is fine


def test_version_and_environment(launcher: PosixLauncher, binary: Path) -> None:
    assert launcher.version(str(binary)) == "11434 (fake)"
    assert launcher.environ()["HOME"]
    with pytest.raises(Exception, match="cannot run"):
        launcher.version("/no/such/llama-server")


def test_keep_env_passes_one_variable_on_purpose(
    launcher: PosixLauncher, binary: Path, tmp_path: Path
) -> None:
    spec = _spec(binary, tmp_path)
    spec = dataclasses.replace(spec, env={}, keep_env=("LLAMA_ARG_ALIAS",))
    server = launcher.start(spec, timeout=20)
    try:
        env = _props(server.base_url)["fake"]["env"]
    finally:
        launcher.stop(server)
    assert env["LLAMA_ARG_ALIAS"] == "hijacked"
    assert "LLAMA_ARG_CTX_SIZE" not in env
