"""What every bench launcher shares: the running-server handle and the protocol.

What to run is :class:`llamasc.process.LaunchSpec`, the daemon's own (with ``port`` 0: the
launcher picks one on the host); the readiness rule, the ``/health`` probe, the free-port
pick and the lost-port retry are :mod:`llamasc.process`'s too. A launcher adds only how to
reach its host.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from llamasc.process.spec import ENV_NAME, LaunchSpec, build_argv
from llamasc.remote.transport import Forward

log = logging.getLogger(__name__)

LAUNCH_PREFIX = "llamasc-bench-"
TAIL_LINES = 20


@dataclass
class RunningServer:
    """A started llama-server on some host; ``base_url`` is reachable from this machine."""

    launch_id: str
    host: str
    port: int
    argv: list[str]
    base_url: str = ""
    pid: int | None = None
    pgid: int | None = None
    workdir: str = ""
    task_name: str = ""
    forward: Forward | None = None
    extra: dict[str, object] = field(default_factory=dict)


class HostLauncher(Protocol):
    """One bench host: starts and stops llama-servers there (local, Linux over SSH, Windows
    over SSH) and reads what the bench needs from it. Not :class:`llamasc.process.Launcher`,
    which only starts one server: the local one is built on it, the SSH ones on its rules."""

    host: str
    os_name: str

    def version(self, binary: str) -> str:
        """``llama-server --version`` on the host: the build string (fails if it cannot run)."""
        ...

    def start(self, spec: LaunchSpec, *, timeout: float) -> RunningServer:
        """Start, wait until ``/health`` is 200, return. Raises SpawnError if it exits first
        (with the log tail), ReadinessTimeoutError on timeout; nothing is left running."""
        ...

    def alive(self, server: RunningServer) -> bool | None:
        """True: answers /health. False: the process is gone. None: cannot tell yet."""
        ...

    def read_text(self, path: str) -> str:
        """A (small) text file on the host, e.g. a llama-swap config."""
        ...

    def path_exists(self, path: str) -> bool: ...

    def environ(self) -> dict[str, str]:
        """The environment a command sees on the host (for ``${env.NAME}`` macros)."""
        ...

    def stop(self, server: RunningServer) -> None:
        """Stop it and confirm it is gone (and its VRAM freed where nvidia-smi exists)."""
        ...

    def reap_stale(self) -> list[str]:
        """Stop servers a crashed earlier bench left behind; returns what was cleaned."""
        ...

    def close(self) -> None: ...


def new_launch_id(port: int) -> str:
    return f"{LAUNCH_PREFIX}{port}-{secrets.token_hex(3)}"


def server_argv(spec: LaunchSpec, port: int) -> list[str]:
    """The full command line on the host: the spec's on ``port``, listening on loopback."""
    return build_argv(dataclasses.replace(spec, port=port, host="127.0.0.1"))


def tail(text: str, lines: int = TAIL_LINES) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()][-lines:]


def parse_pid_column(text: str) -> list[int]:
    """PIDs from the first column of ``nvidia-smi --query-compute-apps=pid,...`` output."""
    return [int(m) for m in re.findall(r"^\s*(\d+)", text, re.MULTILINE)]


def env_lines(env: Mapping[str, str]) -> Sequence[tuple[str, str]]:
    return sorted(env.items())


__all__ = [
    "ENV_NAME",
    "LAUNCH_PREFIX",
    "HostLauncher",
    "LaunchSpec",
    "RunningServer",
    "new_launch_id",
    "server_argv",
    "tail",
]
