"""``--host localhost``: llama-server as a local child, started and stopped exactly as the
daemon starts and stops its own (:class:`llamasc.process.LlamaServer`): the same environment
scrub, readiness rule, no-orphan policy (own process group; Linux parent-death signal;
Windows kill-on-close Job Object), lost-port retry and leftover reaping (a state file per
launch, :func:`llamasc.process.reap_leftovers`).

``LlamaServer`` is async and, on Linux, its child dies with the thread that spawned it: the
launcher runs one event loop in a thread of its own that lives until :meth:`close` (or the
bench's exit), and every launch is spawned there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from llamasc.errors import RemoteError
from llamasc.process.environment import llamasc_home
from llamasc.process.ports import pick_free_port, retry_lost_port
from llamasc.process.reaper import StateFile, reap_leftovers
from llamasc.process.server import LlamaServer
from llamasc.remote._base import checked_version
from llamasc.remote.launch import (
    LAUNCH_PREFIX,
    LaunchSpec,
    RunningServer,
    new_launch_id,
    parse_pid_column,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


def default_state_dir(env: dict[str, str] | None = None) -> Path:
    """Where local launches keep their state files and logs."""
    return llamasc_home(env) / "bench-launches"


class _LoopThread:
    """One event loop in a daemon thread; coroutines are run there and waited for here."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="llamasc-bench-launches", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        finished = threading.Event()

        async def guarded() -> T:
            try:
                return await coro
            finally:
                finished.set()

        future = asyncio.run_coroutine_threadsafe(guarded(), self.loop)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C here: cancel the launch there (a child on its way up is killed and
            # reaped), and wait for that before the bench goes on to exit.
            future.cancel()
            finished.wait(timeout=30)
            raise

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


class LocalLauncher:
    """Launch llama-server on this machine, through the daemon's :class:`LlamaServer`."""

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
        self._loop: _LoopThread | None = None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            self._loop = _LoopThread()
        return self._loop.run(coro)

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
        return checked_version(binary, res.stdout + res.stderr, res.returncode)

    def start(self, spec: LaunchSpec, *, timeout: float) -> RunningServer:
        """Start it on a free loopback port (another one if it lost that one) and wait until
        it is ready; it is recorded in its own state file until :meth:`stop`."""
        self.state_dir.mkdir(parents=True, exist_ok=True)

        async def start(port: int) -> tuple[str, LlamaServer]:
            launch_id = new_launch_id(port)
            started = dataclasses.replace(
                spec,
                port=port,
                host="127.0.0.1",
                log_file=self.state_dir / f"{launch_id}.log",
                label=spec.label or launch_id,
            )
            return launch_id, await LlamaServer.start(started, ready_timeout=timeout)

        try:
            launch_id, child = self._run(
                retry_lost_port(start, pick_free_port(), lambda _: pick_free_port())
            )
        except BaseException:
            self._remove_logs()
            raise
        state = StateFile(self.state_dir / f"{launch_id}.json")
        state.add(child, launch_id)
        return RunningServer(
            launch_id=launch_id,
            host=self.host,
            port=child.port,
            argv=list(child.argv),
            base_url=child.base_url,
            pid=child.pid,
            pgid=child.pid,
            workdir=str(self.state_dir),
            extra={"child": child, "state": state},
        )

    def _remove_logs(self) -> None:
        """Logs of launches that never got a state file (they failed to start)."""
        for log_path in self.state_dir.glob(f"{LAUNCH_PREFIX}*.log"):
            if not log_path.with_suffix(".json").exists():
                with contextlib.suppress(OSError):
                    log_path.unlink()

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
        child = server.extra.get("child")
        if not isinstance(child, LlamaServer) or child.returncode is not None:
            return False
        return True if self._run(child.check_health()) else None

    def stop(self, server: RunningServer) -> None:
        child = server.extra.get("child")
        if isinstance(child, LlamaServer) and self._run(child.stop(self.stop_timeout)) is None:
            raise RemoteError(f"llama-server pid {child.pid} is still running after SIGKILL")
        self._wait_vram_freed(server)
        state = server.extra.get("state")
        if isinstance(state, StateFile):
            with contextlib.suppress(OSError):
                state.path.unlink()
        with contextlib.suppress(OSError):
            (self.state_dir / f"{server.launch_id}.log").unlink()

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
        """Stop the servers of benches that died without stopping them (their state files
        name them; a live sibling bench's are left alone); what was stopped."""
        cleaned: list[str] = []
        if not self.state_dir.is_dir():
            return cleaned
        for path in sorted(self.state_dir.glob(f"{LAUNCH_PREFIX}*.json")):
            for pid in reap_leftovers(path, grace=self.stop_timeout):
                log.warning("stopped llama-server pid %d that an earlier bench left running", pid)
                cleaned.append(f"{path.stem} (pid {pid})")
            if not path.exists():  # reaped (or nothing left to reap): its log goes too
                with contextlib.suppress(OSError):
                    path.with_suffix(".log").unlink()
        return cleaned

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None


__all__ = ["LocalLauncher", "default_state_dir"]
