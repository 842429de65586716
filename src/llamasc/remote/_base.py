"""The part of the SSH launchers that does not depend on the host's OS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from abc import ABC, abstractmethod
from typing import Any

from llamasc.errors import LlamascError, ReadinessTimeoutError, RemoteError, SpawnError
from llamasc.process._health import probe_health
from llamasc.process.ports import pick_free_port, retry_lost_port
from llamasc.process.readiness import Readiness, wait_ready
from llamasc.process.reaper import owner_alive, owner_identity
from llamasc.remote.launch import LaunchSpec, RunningServer, new_launch_id, server_argv, tail
from llamasc.remote.transport import CommandResult, Transport

log = logging.getLogger(__name__)

_VERSION = re.compile(r"version:\s*(.+)")
POLL_FIRST = 0.1  # seconds between readiness looks at first (each costs SSH round trips) ...
POLL_MAX = 1.0  # ... backing off to this


def forward_health(server: RunningServer, timeout: float = 2.0) -> bool:
    """True when the server's ``/health`` answers 200 through its port forward."""
    if server.forward is None:
        return False
    status = asyncio.run(probe_health("127.0.0.1", server.forward.local_port, timeout))
    return status == 200


def parse_version(output: str) -> str | None:
    """The build from ``llama-server --version`` output (``version: 1234 (abcdef)``)."""
    match = _VERSION.search(output)
    return match.group(1).strip() if match else None


def checked_version(binary: str, output: str, exit_code: int, *, where: str = "") -> str:
    """The build ``llama-server --version`` printed; RemoteError (its last line) if it failed."""
    found = parse_version(output)
    if exit_code != 0 or found is None:
        lines = tail(output, 5)
        raise RemoteError(
            f"cannot run {binary!r}{where} (exit {exit_code}): "
            + (lines[-1] if lines else "no output"),
            details=lines,
        )
    return found


class RemoteLauncher(ABC):
    """Start/stop llama-server on a host reached through a :class:`Transport`."""

    os_name = "unknown"

    def __init__(
        self,
        transport: Transport,
        *,
        remote_dir: str | None = None,
        stop_timeout: float = 20.0,
        vram_timeout: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.transport = transport
        self.host = transport.host
        self._remote_dir = remote_dir
        self.stop_timeout = stop_timeout
        self.vram_timeout = vram_timeout
        self._rng = rng or random.Random()

    # -- OS specifics ----------------------------------------------------------------------

    @abstractmethod
    def base_dir(self) -> str:
        """The host-side directory holding one sub-directory per launch."""

    @abstractmethod
    def join(self, *parts: str) -> str: ...

    @abstractmethod
    def sftp_path(self, path: str) -> str: ...

    @abstractmethod
    def version_command(self, binary: str) -> str: ...

    @abstractmethod
    def _spawn(self, spec: LaunchSpec, server: RunningServer) -> None:
        """Write the wrapper and start it detached; raise RemoteError if that fails."""

    @abstractmethod
    def _after_ready(self, server: RunningServer) -> None:
        """Learn the PIDs of a server that is up."""

    @abstractmethod
    def _stop_process(self, server: RunningServer) -> None:
        """Stop the process (and its task/group), confirm it is gone and its VRAM freed,
        remove the launch directory."""

    @abstractmethod
    def _reap_one(self, launch_id: str, meta: dict[str, Any]) -> bool:
        """Stop a launch left by an earlier bench if it still runs; True when it did."""

    # -- shared ----------------------------------------------------------------------------

    def run(self, command: str, *, timeout: float = 60.0, retry: bool = True) -> CommandResult:
        return self.transport.run(command, timeout=timeout, retry=retry)

    def version(self, binary: str) -> str:
        res = self.run(self.version_command(binary), timeout=60.0)
        return checked_version(binary, res.output, res.exit_code, where=f" on {self.host}")

    @abstractmethod
    def environ_command(self) -> str: ...

    def environ(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in self.run(self.environ_command()).stdout.splitlines():
            key, eq, value = line.rstrip("\r").partition("=")
            if eq and key and " " not in key:
                out[key] = value
        return out

    def path_exists(self, path: str) -> bool:
        return self.transport.exists(self.sftp_path(path))

    def read_text(self, path: str) -> str:
        try:
            data = self.transport.read_file(self.sftp_path(path))
        except FileNotFoundError:
            raise RemoteError(f"no file {path} on {self.host}") from None
        return data.decode("utf-8-sig", "replace")

    def _pick_port(self) -> int:
        return pick_free_port(
            lambda port: not self.transport.port_in_use(port), where=self.host, rng=self._rng
        )

    def _exit_code(self, server: RunningServer) -> int | None:
        path = self.sftp_path(self.join(server.workdir, "exit.txt"))
        if not self.transport.exists(path):
            return None
        text = self.transport.read_file(path).decode("ascii", "replace").strip()
        try:
            return int(text.split()[0])
        except (ValueError, IndexError):
            return -1

    def log_tail(self, server: RunningServer) -> list[str]:
        path = self.sftp_path(self.join(server.workdir, "server.log"))
        try:
            data = self.transport.read_file(path, max_bytes=16384)
        except (FileNotFoundError, RemoteError):
            return []
        return tail(data.decode("utf-8", "replace"))

    def start(self, spec: LaunchSpec, *, timeout: float) -> RunningServer:
        """Start llama-server and wait until it is ready, on another port if it lost its
        first one (:func:`llamasc.process.ports.retry_lost_port`)."""

        async def start(port: int) -> RunningServer:
            return await self._start_once(spec, port, ready_timeout=timeout)

        return asyncio.run(retry_lost_port(start, self._pick_port(), lambda _: self._pick_port()))

    async def _start_once(
        self, spec: LaunchSpec, port: int, *, ready_timeout: float
    ) -> RunningServer:
        launch_id = new_launch_id(port)
        server = RunningServer(
            launch_id=launch_id,
            host=self.host,
            port=port,
            argv=server_argv(spec, port),
            workdir=self.join(self.base_dir(), launch_id),
        )
        self.transport.makedirs(self.sftp_path(server.workdir))
        meta = {
            "port": port,
            "argv": server.argv,
            "label": spec.label,
            "created": time.time(),
            "owner": owner_identity(),
        }
        self.transport.write_file(
            self.sftp_path(self.join(server.workdir, "launch.json")), json.dumps(meta).encode()
        )
        what = f"llama-server ({spec.label or spec.binary}) on {self.host}"
        try:
            self._spawn(spec, server)
            server.forward = self.transport.forward(port)
            server.base_url = f"http://127.0.0.1:{server.forward.local_port}"
            local_port = server.forward.local_port

            async def exited() -> bool:
                return self._exit_code(server) is not None

            outcome = await wait_ready(
                exited=exited,
                probe=lambda limit: probe_health("127.0.0.1", local_port, limit),
                timeout=ready_timeout,
                first=POLL_FIRST,
                most=POLL_MAX,
                probe_timeout=2.0,
            )
            if outcome is Readiness.EXITED:
                code = self._exit_code(server)
                lines = self.log_tail(server)
                last = lines[-1] if lines else "no output"
                raise SpawnError(
                    f"{what} exited with code {code} before it was ready: {last}",
                    exit_code=code,
                    stderr_tail=lines,
                )
            if outcome is Readiness.TIMEOUT:
                raise ReadinessTimeoutError(
                    f"{what} was not ready after {ready_timeout:.0f}s",
                    details=self.log_tail(server),
                )
            self._after_ready(server)
        except BaseException:
            # Never leave a half-started server behind, also not on Ctrl-C.
            with contextlib.suppress(Exception):
                self.stop(server)
            raise
        return server

    def alive(self, server: RunningServer) -> bool | None:
        if forward_health(server):
            return True
        if self._exit_code(server) is not None:
            return False  # the wrapper recorded the server's exit status
        return None

    def stop(self, server: RunningServer) -> None:
        if server.forward is not None:
            server.forward.close()
            server.forward = None
        self._stop_process(server)

    def reap_stale(self) -> list[str]:
        cleaned: list[str] = []
        base = self.base_dir()
        for name in self.transport.listdir(self.sftp_path(base)):
            if not name.startswith("llamasc-bench-"):
                continue
            meta: dict[str, Any] = {}
            with contextlib.suppress(Exception):
                raw = self.transport.read_file(self.sftp_path(self.join(base, name, "launch.json")))
                meta = json.loads(raw)
            if owner_alive(meta.get("owner")):
                continue  # a bench that is still running on this machine owns it
            try:
                if self._reap_one(name, meta):
                    cleaned.append(name)
            except LlamascError as exc:
                log.warning("could not clean up %s on %s: %s", name, self.host, exc)
        return cleaned

    def close(self) -> None:
        self.transport.close()


__all__ = ["RemoteLauncher", "checked_version", "forward_health", "parse_version"]
