"""``--host localhost``: llama-server as a local child process, no SSH, no shell.

Each launch gets a directory under the llamasc state directory (pid file, log, argv) so a
bench that was killed outright can have its orphans stopped by the next run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

from llamasc.errors import RemoteError, SpawnError
from llamasc.process._control import platform_control
from llamasc.process.environment import scrubbed_env, warn_system_config
from llamasc.remote._base import parse_version, start_retrying_lost_port
from llamasc.remote.launch import (
    LAUNCH_PREFIX,
    LaunchSpec,
    RunningServer,
    http_health,
    new_launch_id,
    owner_alive,
    owner_info,
    parse_pid_column,
    server_argv,
    tail,
    wait_until_ready,
)
from llamasc.remote.ssh import free_local_port

if TYPE_CHECKING:
    from llamasc.process._control import ChildControl

log = logging.getLogger(__name__)


def default_state_dir(env: dict[str, str] | None = None) -> Path:
    """Where local launches keep their pid files and logs."""
    env = dict(os.environ) if env is None else env
    if env.get("LLAMASC_HOME"):
        base = Path(env["LLAMASC_HOME"]).expanduser()
    elif sys.platform == "win32":
        base = Path(env.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "llamasc"
    else:
        base = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "llamasc"
    return base / "bench-launches"


def _log_tail(path: Path) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 16384))
            return tail(fh.read().decode("utf-8", "replace"))
    except OSError:
        return []


class LocalLauncher:
    """Launch llama-server on this machine."""

    host = "localhost"
    os_name = "windows" if sys.platform == "win32" else "linux"

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        stop_timeout: float = 20.0,
        vram_timeout: float = 30.0,
    ) -> None:
        self.state_dir = state_dir or default_state_dir()
        self.stop_timeout = stop_timeout
        self.vram_timeout = vram_timeout

    def version(self, binary: str) -> str:
        try:
            res = subprocess.run(
                [binary, "--version"],
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RemoteError(f"cannot run {binary!r}: {exc}") from None
        found = parse_version(res.stdout + res.stderr)
        if res.returncode != 0 or found is None:
            lines = tail(res.stdout + res.stderr, 5)
            raise RemoteError(
                f"cannot run {binary!r} (exit {res.returncode}): "
                + (lines[-1] if lines else "no output"),
                details=lines,
            )
        return found

    def start(self, spec: LaunchSpec, *, timeout: float) -> RunningServer:
        return start_retrying_lost_port(lambda: self._start_once(spec, timeout), self.host)

    def _start_once(self, spec: LaunchSpec, timeout: float) -> RunningServer:
        port = free_local_port()
        launch_id = new_launch_id(port)
        workdir = self.state_dir / launch_id
        workdir.mkdir(parents=True, exist_ok=True)
        server = RunningServer(
            launch_id=launch_id,
            host=self.host,
            port=port,
            argv=server_argv(spec, port),
            workdir=str(workdir),
            base_url=f"http://127.0.0.1:{port}",
        )
        (workdir / "launch.json").write_text(
            json.dumps(
                {"port": port, "argv": server.argv, "label": spec.label, "owner": owner_info()}
            )
        )
        logfile = workdir / "server.log"
        # The daemon's own spawn policy: its own session/group (a stop reaches the whole
        # tree), on Linux a parent-death signal (a bench killed with -9 leaves no server;
        # spawned from the sweep's main thread, which lives as long as the bench), on
        # Windows a kill-on-close Job Object; and the same environment scrub.
        control = platform_control()
        kwargs = control.popen_kwargs()
        env = scrubbed_env(spec.env, keep=spec.keep_env)
        warn_system_config()
        with logfile.open("wb") as out:
            kwargs.update(stdout=out, stderr=subprocess.STDOUT)
            try:
                proc = subprocess.Popen(server.argv, env=env, cwd=workdir, **kwargs)
            except OSError as exc:
                shutil.rmtree(workdir, ignore_errors=True)
                raise SpawnError(f"cannot start {spec.binary!r}: {exc}") from None
        control.adopt(proc)
        server.pid = server.pgid = proc.pid
        server.extra["proc"] = proc
        server.extra["control"] = control
        (workdir / "pid").write_text(str(proc.pid))
        try:
            wait_until_ready(
                health=lambda: http_health(server.base_url),
                exited=proc.poll,
                log_tail=lambda: _log_tail(logfile),
                timeout=timeout,
                what=f"llama-server ({spec.label or spec.binary})",
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop(server)
            raise
        return server

    def path_exists(self, path: str) -> bool:
        return Path(path).expanduser().exists()

    def read_text(self, path: str) -> str:
        try:
            return Path(path).expanduser().read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise RemoteError(f"cannot read {path}: {exc.strerror or exc}") from None

    def environ(self) -> dict[str, str]:
        return dict(os.environ)

    def alive(self, server: RunningServer) -> bool | None:
        proc = server.extra.get("proc")
        if isinstance(proc, subprocess.Popen) and proc.poll() is not None:
            return False
        return True if http_health(server.base_url) else None

    def stop(self, server: RunningServer) -> None:
        proc = server.extra.get("proc")
        control = server.extra.get("control")
        if isinstance(proc, subprocess.Popen) and control is not None:
            self._stop_child(proc, cast("ChildControl", control))
        elif server.pid is not None:
            self._stop_pid(server.pid)
        self._wait_vram_freed(server)
        if server.workdir.endswith(server.launch_id):
            shutil.rmtree(server.workdir, ignore_errors=True)

    def _signal(self, pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if sys.platform == "win32":
                os.kill(pid, sig)
            else:
                os.killpg(pid, sig)

    def _stop_child(self, proc: subprocess.Popen[bytes], control: ChildControl) -> None:
        """Stop a child we started, the way the daemon stops its own."""
        try:
            if proc.poll() is None:
                control.soft_stop(proc)
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    log.warning("llama-server pid %d ignored the stop; killing it", proc.pid)
                    control.hard_kill(proc)
                    proc.wait(timeout=10)
        finally:
            control.release(proc)  # stray descendants go too; Windows: the job is closed

    def _stop_pid(self, pid: int) -> None:
        import psutil

        self._signal(pid, signal.SIGTERM)
        try:
            psutil.Process(pid).wait(timeout=self.stop_timeout)
        except psutil.NoSuchProcess:
            return
        except psutil.TimeoutExpired:
            self._signal(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
            with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
                psutil.Process(pid).wait(timeout=10)
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            raise RemoteError(f"llama-server pid {pid} is still running after SIGKILL")

    def _wait_vram_freed(self, server: RunningServer) -> None:
        smi = shutil.which("nvidia-smi")
        if smi is None or server.pid is None:
            return
        deadline = time.monotonic() + self.vram_timeout
        while True:
            res = subprocess.run(
                [smi, "--query-compute-apps=pid", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            holders = set(parse_pid_column(res.stdout))
            if res.returncode != 0 or server.pid not in holders:
                return
            if time.monotonic() >= deadline:
                raise RemoteError(f"llama-server pid {server.pid} still holds GPU memory")
            time.sleep(0.5)

    def reap_stale(self) -> list[str]:
        import psutil

        cleaned: list[str] = []
        if not self.state_dir.is_dir():
            return cleaned
        for workdir in sorted(self.state_dir.iterdir()):
            if not workdir.name.startswith(LAUNCH_PREFIX) or not workdir.is_dir():
                continue
            try:
                meta = json.loads((workdir / "launch.json").read_text())
            except (OSError, ValueError):
                meta = {}
            if owner_alive(meta):
                continue
            try:
                pid = int((workdir / "pid").read_text().strip())
            except (OSError, ValueError):
                pid = None
            ours = False
            if pid is not None:
                with contextlib.suppress(psutil.Error):
                    proc = psutil.Process(pid)
                    ours = (
                        Path(proc.cwd()).resolve() == workdir.resolve()
                        and proc.status() != psutil.STATUS_ZOMBIE
                    )
            if ours and pid is not None:
                log.warning("stopping llama-server pid %d left running by an earlier bench", pid)
                self._stop_pid(pid)
                cleaned.append(workdir.name)
            shutil.rmtree(workdir, ignore_errors=True)
        return cleaned

    def close(self) -> None:
        return None


__all__ = ["LocalLauncher", "default_state_dir"]
