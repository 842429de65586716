"""The part of the SSH launchers that does not depend on the host's OS."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from llamasc.errors import LlamascError, RemoteError, SpawnError
from llamasc.remote.launch import (
    LaunchSpec,
    RunningServer,
    http_health,
    new_launch_id,
    owner_alive,
    owner_info,
    server_argv,
    tail,
    wait_until_ready,
)
from llamasc.remote.transport import CommandResult, Transport

log = logging.getLogger(__name__)

_VERSION = re.compile(r"version:\s*(.+)")
# Below the ephemeral ranges (Linux 32768-60999, Windows 49152-65535), so outgoing connections
# (our SSH forwards among them) cannot take a server's port between our check and its bind.
PORT_RANGE = (20000, 32000)
_BIND_RETRIES = 2


def start_retrying_lost_port(start_once: Callable[[], RunningServer], host: str) -> RunningServer:
    """``start_once()``, again (at most twice more) if llama-server lost the port it was given
    to another process before binding it; ``start_once`` picks a new port each time."""
    for attempt in range(_BIND_RETRIES + 1):
        try:
            return start_once()
        except SpawnError as exc:
            if attempt == _BIND_RETRIES or not exc.lost_port:
                raise
            log.warning("llama-server on %s lost its port; starting it again", host)
    raise AssertionError("unreachable")


def parse_version(output: str) -> str | None:
    """The build from ``llama-server --version`` output (``version: 1234 (abcdef)``)."""
    match = _VERSION.search(output)
    return match.group(1).strip() if match else None


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
        found = parse_version(res.output)
        if not res.ok or found is None:
            lines = tail(res.output, 5)
            raise RemoteError(
                f"cannot run {binary!r} on {self.host} (exit {res.exit_code}): "
                + (lines[-1] if lines else "no output"),
                details=lines,
            )
        return found

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
        for _ in range(20):
            port = self._rng.randrange(*PORT_RANGE)
            if not self.transport.port_in_use(port):
                return port
        raise RemoteError(f"no free port found on {self.host} after 20 tries")

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
        """Start llama-server and wait until it is ready (see :func:`start_retrying_lost_port`)."""
        return start_retrying_lost_port(lambda: self._start_once(spec, timeout=timeout), self.host)

    def _start_once(self, spec: LaunchSpec, *, timeout: float) -> RunningServer:
        port = self._pick_port()
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
            "owner": owner_info(),
        }
        self.transport.write_file(
            self.sftp_path(self.join(server.workdir, "launch.json")), json.dumps(meta).encode()
        )
        try:
            self._spawn(spec, server)
            server.forward = self.transport.forward(port)
            server.base_url = f"http://127.0.0.1:{server.forward.local_port}"
            wait_until_ready(
                health=lambda: http_health(server.base_url),
                exited=lambda: self._exit_code(server),
                log_tail=lambda: self.log_tail(server),
                timeout=timeout,
                what=f"llama-server ({spec.label or spec.binary}) on {self.host}",
            )
            self._after_ready(server)
        except BaseException:
            # Never leave a half-started server behind, also not on Ctrl-C.
            with contextlib.suppress(Exception):
                self.stop(server)
            raise
        return server

    def alive(self, server: RunningServer) -> bool | None:
        if server.base_url and http_health(server.base_url):
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
            if owner_alive(meta):
                continue  # a bench that is still running on this machine owns it
            try:
                if self._reap_one(name, meta):
                    cleaned.append(name)
            except LlamascError as exc:
                log.warning("could not clean up %s on %s: %s", name, self.host, exc)
        return cleaned

    def close(self) -> None:
        self.transport.close()


__all__ = ["PORT_RANGE", "RemoteLauncher", "parse_version"]
